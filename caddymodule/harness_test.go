package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// Ports of the Caddy instance the tests of this package run (caddytest runs
// one in process and reloads its configuration per test). They are free
// ports picked and held (see freePort) when the test binary starts, so two
// runs at once (packages side by side, CI beside a developer) never share
// one.
var (
	adminPort = freePort()
	httpPort  = freePort()
)

// proxyURL is where the tested Caddy serves.
var proxyURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)

// startCaddy loads a site block (with the global options the tests need
// prepended) into the test Caddy instance.
func startCaddy(t *testing.T, site string) *caddytest.Tester {
	t.Helper()
	return startCaddyWith(t, "", site)
}

// startCaddyWith is startCaddy with extra global options.
func startCaddyWith(t *testing.T, globals, site string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort, LoadRequestTimeout: 15 * time.Second})
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	auto_https off
	grace_period 1ns
	skip_install_trust
	persist_config off
%s
}
http://127.0.0.1:%d {
%s
}
`, adminPort, httpPort, globals, httpPort, site)
	tester.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	return tester
}

// upstream is a real HTTP service that records the headers it receives.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []http.Header
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Header.Clone())
		u.mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		if code := r.URL.Query().Get("status"); code != "" {
			var c int
			fmt.Sscan(code, &c)
			w.WriteHeader(c)
		}
		if d := r.URL.Query().Get("sleep"); d != "" {
			dur, _ := time.ParseDuration(d)
			time.Sleep(dur)
		}
		io.WriteString(w, "hello from upstream")
	}))
	t.Cleanup(u.Close)
	return u
}

// hostport is the upstream's dial address.
func (u *upstream) hostport() string { return strings.TrimPrefix(u.URL, "http://") }

// last returns the headers of the last request the upstream received.
func (u *upstream) last(t *testing.T) http.Header {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

// count returns how many requests the upstream received.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// testClient opens a connection per request: a reload restarts the server,
// and a kept-alive connection could meet its close.
var testClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get sends a GET through the proxy with the given headers and returns the
// response and its body.
func get(t *testing.T, path string, hdr map[string][]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, proxyURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, err := testClient.Do(req)
	for try := 0; err != nil && try < 3 && reloadRace(err); try++ {
		// Caddy reloads by opening a new SO_REUSEPORT listener beside the
		// old one; a connection the kernel queued on the old one is reset
		// when it closes, before any handler saw the request. Retry.
		res, err = testClient.Do(req)
	}
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// reloadRace reports whether err is a connection closed before any response,
// as a reload's closing listener does.
func reloadRace(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// deadPort returns a local address nothing listens on.
func deadPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func formatNames[F fmt.Stringer](fs []F) string {
	var names []string
	for _, f := range fs {
		names = append(names, f.String())
	}
	return strings.Join(names, ",")
}

// flushQueues exports everything the pooled queues hold.
func flushQueues(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	queuePool.Range(func(_, v any) bool {
		if err := v.(*pooledQueue).q.ForceFlush(ctx); err != nil {
			t.Errorf("flushing %s: %v", v.(*pooledQueue).name, err)
		}
		return true
	})
}
