package legacyapp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// call is one outbound call the target received.
type call struct {
	path, gt, i string
	header      http.Header
	remote      string // the connection it came on
}

// target records the app's outbound calls.
type target struct {
	*httptest.Server
	mu    sync.Mutex
	calls []call
}

func newTarget(t *testing.T) *target {
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.calls = append(tg.calls, call{
			path: r.URL.Path, gt: r.URL.Query().Get("gt"), i: r.URL.Query().Get("i"),
			header: r.Header.Clone(), remote: r.RemoteAddr,
		})
		tg.mu.Unlock()
		io.WriteString(w, "paid")
	}))
	t.Cleanup(tg.Close)
	return tg
}

// work sends n concurrent GET /work requests, request k with gt g<k> and
// X-Request-ID id-<k>, and returns the replies by gt.
func work(t *testing.T, app *App, n int) map[string]Reply {
	t.Helper()
	var (
		mu      sync.Mutex
		replies = map[string]Reply{}
		wg      sync.WaitGroup
	)
	client := &http.Client{Timeout: 15 * time.Second}
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/work?gt=g%d", app.URL(), k), nil)
			req.Header.Set("X-Request-ID", fmt.Sprintf("id-%d", k))
			res, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var r Reply
			if err := json.NewDecoder(res.Body).Decode(&r); err != nil || res.StatusCode != 200 {
				t.Errorf("status %d, reply %+v, %v", res.StatusCode, r, err)
				return
			}
			mu.Lock()
			replies[r.GT] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return replies
}

// overlapping reports whether two replies served by one process overlapped
// in time.
func overlapping(replies map[string]Reply) bool {
	byPID := map[int][]Reply{}
	for _, r := range replies {
		byPID[r.PID] = append(byPID[r.PID], r)
	}
	for _, rs := range byPID {
		slices.SortFunc(rs, func(a, b Reply) int { return int((a.Start - b.Start) * 1e9) })
		for i := 1; i < len(rs); i++ {
			if rs[i].Start < rs[i-1].End {
				return true
			}
		}
	}
	return false
}

func TestLegacyApp(t *testing.T) {
	const (
		requests = 8
		calls    = 2
		workers  = 4
	)
	for _, model := range Models {
		for _, keepAlive := range []bool{false, true} {
			for _, forward := range []bool{false, true} {
				name := fmt.Sprintf("%s/keepalive=%t/forward=%t", model, keepAlive, forward)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					tg := newTarget(t)
					app := Start(t, Config{
						Model: model, Workers: workers, Upstream: tg.URL, Calls: calls,
						Pause: 20 * time.Millisecond, KeepAlive: keepAlive, ForwardRequestID: forward,
					})
					replies := work(t, app, requests)
					if len(replies) != requests {
						t.Fatalf("%d replies, want %d", len(replies), requests)
					}

					// The model: which processes served, and whether one
					// process ever served two requests at once.
					pids := map[int]bool{}
					for _, r := range replies {
						pids[r.PID] = true
						want := app.PID
						if model == Prefork {
							if !slices.Contains(app.Workers, r.PID) {
								t.Errorf("request %s served by pid %d, not a worker %v", r.GT, r.PID, app.Workers)
							}
							want = r.PID
						}
						if r.PID != want {
							t.Errorf("request %s served by pid %d, want the app's %d", r.GT, r.PID, app.PID)
						}
					}
					switch model {
					case Prefork:
						if len(app.Workers) != workers || len(pids) < 2 {
							t.Errorf("workers %v served from %d processes, want %d workers and several serving", app.Workers, len(pids), workers)
						}
						if overlapping(replies) {
							t.Error("a prefork worker served two requests at once")
						}
					case Single:
						if overlapping(replies) {
							t.Error("the single-threaded app served two requests at once")
						}
					case Thread:
						if !overlapping(replies) {
							t.Error("the threaded app never served two requests at once")
						}
					}

					// The calls: the ground truth in path and query, no
					// trace header, the request id only when forwarded.
					tg.mu.Lock()
					defer tg.mu.Unlock()
					if len(tg.calls) != requests*calls {
						t.Fatalf("target received %d calls, want %d", len(tg.calls), requests*calls)
					}
					conns := map[string]bool{}
					seen := map[string]bool{}
					for _, c := range tg.calls {
						conns[c.remote] = true
						seen[c.path] = true
						if c.path != "/pay/"+c.gt+"/"+c.i {
							t.Errorf("call %s carries gt=%s i=%s in its query", c.path, c.gt, c.i)
						}
						k := strings.TrimPrefix(c.gt, "g")
						for name := range c.header {
							allowed := name == "Accept-Encoding" || (name == "Connection" && !keepAlive) ||
								(name == "X-Request-Id" && forward)
							if !allowed {
								t.Errorf("call %s carries header %s: %q", c.path, name, c.header[name])
							}
						}
						if got, want := c.header.Get("X-Request-Id"), "id-"+k; forward && got != want {
							t.Errorf("call %s: X-Request-ID %q, want the inbound %q", c.path, got, want)
						}
					}
					for k := range requests {
						for i := range calls {
							if p := fmt.Sprintf("/pay/g%d/%d", k, i); !seen[p] {
								t.Errorf("no call %s", p)
							}
						}
					}

					// Connections: one per call without keep-alive; kept
					// per process, or pooled by threads, with it.
					switch {
					case !keepAlive && len(conns) != requests*calls:
						t.Errorf("%d connections for %d calls, want one each", len(conns), requests*calls)
					case keepAlive && model == Single && len(conns) != 1:
						t.Errorf("%d connections, want the one the process keeps", len(conns))
					case keepAlive && model == Prefork && len(conns) > len(pids):
						t.Errorf("%d connections from %d processes, want at most one each", len(conns), len(pids))
					case keepAlive && model == Thread && len(conns) >= requests*calls:
						t.Errorf("%d connections for %d calls: none was reused", len(conns), requests*calls)
					}
				})
			}
		}
	}
}

// TestHTTPProxy checks that the app honours HTTP_PROXY as clients do: calls
// go to the forward proxy in absolute form, except to hosts NO_PROXY names.
func TestHTTPProxy(t *testing.T) {
	var (
		mu   sync.Mutex
		uris []string
	)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		uris = append(uris, r.RequestURI)
		mu.Unlock()
	}))
	t.Cleanup(proxy.Close)
	tg := newTarget(t)
	cases := []struct {
		name, upstream, noProxy string
		viaProxy                bool
	}{
		{"through the proxy", "http://payments.invalid:8080", "", true},
		{"NO_PROXY names the host", tg.URL, "localhost,127.0.0.1", false},
		{"NO_PROXY names a parent domain", "http://payments.internal.example", ".example", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			uris = nil
			mu.Unlock()
			tg.mu.Lock()
			tg.calls = nil
			tg.mu.Unlock()
			app := Start(t, Config{Model: Single, Upstream: tc.upstream, HTTPProxy: proxy.URL, NoProxy: tc.noProxy, Calls: 1})
			res, err := http.Get(app.URL() + "/work?gt=g0")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			mu.Lock()
			got := uris
			mu.Unlock()
			tg.mu.Lock()
			direct := len(tg.calls)
			tg.mu.Unlock()
			switch {
			case tc.viaProxy && (len(got) != 1 || got[0] != tc.upstream+"/pay/g0/0?gt=g0&i=0"):
				t.Errorf("the proxy received %q, want the call in absolute form", got)
			case !tc.viaProxy && len(got) != 0:
				t.Errorf("the proxy received %q, want none", got)
			case tc.upstream == tg.URL && direct != 1:
				t.Errorf("the target received %d calls directly, want 1", direct)
			}
		})
	}
}

// TestCallTimeout checks that --call-timeout bounds each outbound call: a
// target that never answers costs the request that long, and the reply says
// the call failed, rather than holding a worker for the default 15s.
func TestCallTimeout(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	const timeout = 300 * time.Millisecond
	app := Start(t, Config{Model: Single, Upstream: hang.URL, Calls: 1, CallTimeout: timeout})
	start := time.Now()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(app.URL() + "/work?gt=g0")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	took := time.Since(start)
	var r Reply
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusBadGateway || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "timed out") {
		t.Errorf("status %d, reply %+v: want 502 and the call's timeout", res.StatusCode, r)
	}
	if took < timeout || took > 5*time.Second {
		t.Errorf("the request took %s with a %s call timeout", took, timeout)
	}
}

// TestStops checks that the app never outlives its starter: its workers end
// when the parent is killed, it stops on SIGTERM (as a container's main
// process must), and nothing is left once its test ends.
func TestStops(t *testing.T) {
	var pids []int
	waitGone := func(t *testing.T, pids []int, within time.Duration) {
		t.Helper()
		testutil.Eventually(t, within, fmt.Sprintf("processes %v to end", pids), func() bool {
			return !slices.ContainsFunc(pids, alive)
		})
	}
	t.Run("parent killed", func(t *testing.T) {
		app := Start(t, Config{Model: Prefork, Workers: 3, Upstream: "http://127.0.0.1:1"})
		pids = append([]int{app.PID}, app.Workers...)
		if len(app.Workers) != 3 {
			t.Fatalf("workers %v, want 3", app.Workers)
		}
		// Only the parent: the workers must notice on their own, well
		// before the cleanup's kill of the whole process group.
		if err := syscall.Kill(app.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGone(t, app.Workers, 10*time.Second)
	})
	t.Run("SIGTERM", func(t *testing.T) {
		app := Start(t, Config{Model: Prefork, Workers: 2, Upstream: "http://127.0.0.1:1"})
		if err := syscall.Kill(app.PID, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitGone(t, append([]int{app.PID}, app.Workers...), 10*time.Second)
	})
	t.Run("stdin closed", func(t *testing.T) {
		app := Start(t, Config{Model: Thread, Upstream: "http://127.0.0.1:1"})
		pids = append(pids, app.PID)
	})
	waitGone(t, pids, 10*time.Second)
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
