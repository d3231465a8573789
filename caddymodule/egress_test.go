package caddymodule

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
	"github.com/tracingproxy/tracingproxy/stitch"
)

// startCaddySites loads a whole Caddyfile body (several site blocks) with
// the global options the tests need.
func startCaddySites(t *testing.T, sites string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort, LoadRequestTimeout: 15 * time.Second})
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	auto_https off
	grace_period 1ns
	skip_install_trust
	persist_config off
}
%s
`, adminPort, httpPort, sites)
	tester.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	return tester
}

// legacyApp is a service that knows nothing of tracing: for each inbound
// request /orders/<n> it calls its dependency through the egress listener
// at /charge/<n> (the ground truth of which request made the call travels
// in the path, which the proxy does not read for attribution), forwarding
// only the headers the query names (fwd=X-Request-Id,...), and answers with
// the dependency's status. With before set, a request waits there until
// that many requests arrived; with after set, it waits after its call
// until that many calls were made.
type legacyApp struct {
	*httptest.Server
	egressURL     string
	before, after *barrier
	mu            sync.Mutex
	got           []http.Header // inbound request headers
}

// barrier lets callers through once n of them arrived.
type barrier struct {
	mu   sync.Mutex
	n    int
	open chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, open: make(chan struct{})} }

// wait blocks until n callers waited (or 10s passed).
func (b *barrier) wait() {
	b.mu.Lock()
	if b.n--; b.n == 0 {
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
	case <-time.After(10 * time.Second):
	}
}

func newLegacyApp(t *testing.T, egressURL string) *legacyApp {
	a := &legacyApp{egressURL: egressURL}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.got = append(a.got, r.Header.Clone())
		a.mu.Unlock()
		if a.before != nil {
			a.before.wait()
		}
		out, _ := http.NewRequest(http.MethodGet, a.egressURL+"/charge/"+strings.TrimPrefix(r.URL.Path, "/orders/"), nil)
		for _, name := range strings.Split(r.URL.Query().Get("fwd"), ",") {
			if v := r.Header.Get(name); name != "" && v != "" {
				out.Header.Set(name, v)
			}
		}
		res, err := client.Do(out)
		if a.after != nil {
			a.after.wait()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		w.WriteHeader(res.StatusCode)
		io.WriteString(w, "order placed")
	}))
	t.Cleanup(a.Close)
	return a
}

// stitchSites is the Caddyfile of orders-legacy's ingress (stitch options
// in stitch) and one egress listener on egressPort to payments.
func stitchSites(c *zipkintest.Collector, app, payments string, egressPort int, stitchOpt, egressOpt string) string {
	return fmt.Sprintf(`http://127.0.0.1:%d {
	tracingproxy {
		service_name orders-legacy
		%s
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	tracingproxy {
		service_name orders-legacy
		%s
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s {
		header_up Host {upstream_hostport}
	}
}
`, httpPort, stitchOpt, c.URL(), app, egressPort, egressOpt, c.URL(), payments)
}

// stitchCounters reads tracingproxy_stitch_total by method.
func stitchCounters() map[string]uint64 {
	m := map[string]uint64{}
	for i := range stitchCounts {
		m[stitch.Method(i).String()] = stitchCounts[i].Load()
	}
	return m
}

// spansOfKind returns the spans of a trace of one kind ("" for local).
func spansOfKind(spans []zipkintest.Span, traceID, kind string) []zipkintest.Span {
	var out []zipkintest.Span
	for _, s := range spans {
		k := ""
		if s.Kind != nil {
			k = *s.Kind
		}
		if s.TraceID == traceID && k == kind {
			out = append(out, s)
		}
	}
	return out
}

// egressSpan finds the egress CLIENT span (the one tagged with the
// stitch method) of a trace.
func egressSpans(spans []zipkintest.Span) []zipkintest.Span {
	var out []zipkintest.Span
	for _, s := range spans {
		if _, ok := s.Tags["tracingproxy.stitch"]; ok {
			out = append(out, s)
		}
	}
	return out
}

func TestEgressJoinsTheInboundTrace(t *testing.T) {
	for _, tc := range []struct {
		name, methods, fwd, want string
	}{
		{"sole_inflight", "sole_inflight", "", "sole_inflight"},
		{"request_id", "request_id", "X-Request-Id", "request_id"},
		{"process", "process", "", "process"},
		{"header", "header request_id", "Traceparent,X-Request-Id", "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := zipkintest.NewCollector(t)
			payments := newUpstream(t)
			egressPort := freePort()
			app := newLegacyApp(t, fmt.Sprintf("http://127.0.0.1:%d", egressPort))
			startCaddySites(t, stitchSites(c, app.URL, payments.hostport(), egressPort, "stitch "+tc.methods, "egress"))
			before := stitchCounters()

			const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			res, body := get(t, "/orders/1?fwd="+tc.fwd, map[string][]string{"Traceparent": {caller}})
			if res.StatusCode != 200 || body != "order placed" {
				t.Fatalf("got %d %q", res.StatusCode, body)
			}
			spans := c.WaitSpans(t, 3, 5*time.Second)
			const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
			servers := spansOfKind(spans, traceID, "SERVER")
			if len(servers) != 1 {
				t.Fatalf("SERVER spans %+v, want 1", servers)
			}
			server := servers[0]
			eg := egressSpans(spans)
			if len(eg) != 1 {
				t.Fatalf("egress spans %+v, want 1", eg)
			}
			e := eg[0]
			if clients := spansOfKind(spans, traceID, "CLIENT"); len(clients) != 1 || clients[0].ID != e.ID {
				// The hop into the service is a local span: Zipkin's
				// dependency links see orders-legacy call payments only.
				t.Errorf("CLIENT spans %+v, want only the egress call's", clients)
			}
			if hop := spansOfKind(spans, traceID, ""); len(hop) != 1 || hop[0].ParentID == nil || *hop[0].ParentID != server.ID {
				t.Errorf("local spans %+v, want the hop into the service, child of the SERVER span", hop)
			}
			if e.TraceID != traceID || e.Kind == nil || *e.Kind != "CLIENT" {
				t.Errorf("egress span in trace %s kind %v, want a CLIENT span of %s", e.TraceID, e.Kind, traceID)
			}
			if got := e.Tags["tracingproxy.stitch"]; got != tc.want {
				t.Errorf("tracingproxy.stitch = %q, want %q", got, tc.want)
			}
			if e.LocalEndpoint == nil || strOf(e.LocalEndpoint.ServiceName) != "orders-legacy" {
				t.Errorf("egress localEndpoint %v, want orders-legacy", e.LocalEndpoint)
			}
			wantParent := server.ID
			if tc.want == "header" {
				// The service forwarded what it received: the context
				// of the ingress CLIENT span.
				_, wantParent, _ = parseTraceparent(t, app.got[0].Get("Traceparent"))
			}
			if e.ParentID == nil || *e.ParentID != wantParent {
				t.Errorf("egress parentId %v, want %s", e.ParentID, wantParent)
			}
			ph := payments.last(t)
			tid, pid, flags := parseTraceparent(t, ph.Get("Traceparent"))
			if tid != traceID || pid != e.ID || flags != "1" {
				t.Errorf("payments got traceparent %s, want trace %s naming the egress span %s, sampled", ph.Get("Traceparent"), traceID, e.ID)
			}
			if got := ph.Get("X-B3-Spanid"); got != e.ID {
				t.Errorf("payments got X-B3-SpanId %q, want the egress span %s", got, e.ID)
			}
			if got := stitchCounters()[tc.want] - before[tc.want]; got != 1 {
				t.Errorf("tracingproxy_stitch_total{method=%q} grew by %d, want 1", tc.want, got)
			}
		})
	}
}

// strOf is *p, or "" for nil.
func strOf(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// getAll sends the requests at once and fails unless each gets a 200.
func getAll(t *testing.T, paths []string, hdr map[string][]string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(paths))
	for _, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, proxyURL+p, nil)
			for k, vs := range hdr {
				req.Header[k] = vs
			}
			res, err := testClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				errs <- fmt.Errorf("GET %s: %d", p, res.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// serverOf maps each SERVER span's path to the span.
func serverOf(spans []zipkintest.Span) map[string]zipkintest.Span {
	m := map[string]zipkintest.Span{}
	for _, s := range spans {
		if s.Kind != nil && *s.Kind == "SERVER" {
			m[s.Tags["http.path"]] = s
		}
	}
	return m
}

// Concurrent requests, each given an X-Request-ID by the ingress that the
// service forwards: every call joins the trace of the request that made it.
func TestEgressRequestIDUnderConcurrency(t *testing.T) {
	const n = 8
	c := zipkintest.NewCollector(t)
	payments := newUpstream(t)
	egressPort := freePort()
	app := newLegacyApp(t, fmt.Sprintf("http://127.0.0.1:%d", egressPort))
	app.before, app.after = newBarrier(n), newBarrier(n)
	startCaddySites(t, stitchSites(c, app.URL, payments.hostport(), egressPort, "stitch request_id", "egress"))

	var paths []string
	for i := 0; i < n; i++ {
		paths = append(paths, fmt.Sprintf("/orders/%d?fwd=X-Request-Id", i))
	}
	getAll(t, paths, nil)
	spans := c.WaitSpans(t, 3*n, 5*time.Second)
	servers := serverOf(spans)
	ids := map[string]bool{}
	for _, h := range app.got {
		ids[h.Get("X-Request-Id")] = true
	}
	if len(ids) != n || ids[""] {
		t.Errorf("the service got request ids %v, want %d distinct generated ones", ids, n)
	}
	eg := egressSpans(spans)
	if len(eg) != n {
		t.Fatalf("%d egress spans, want %d", len(eg), n)
	}
	for _, e := range eg {
		order := strings.TrimPrefix(e.Tags["http.path"], "/charge/")
		srv, ok := servers["/orders/"+order]
		if !ok {
			t.Fatalf("no SERVER span for the call %s", e.Tags["http.path"])
		}
		if e.Tags["tracingproxy.stitch"] != "request_id" || e.TraceID != srv.TraceID || strOf(e.ParentID) != srv.ID {
			t.Errorf("call %s: method %q trace %s parent %s; want request_id, the trace %s and parent %s of its request",
				e.Tags["http.path"], e.Tags["tracingproxy.stitch"], e.TraceID, strOf(e.ParentID), srv.TraceID, srv.ID)
		}
		if e.Tags["request_id"] != srv.Tags["request_id"] || e.Tags["request_id"] == "" {
			t.Errorf("call %s: request_id tag %q, its request's %q", e.Tags["http.path"], e.Tags["request_id"], srv.Tags["request_id"])
		}
	}
}

// A client reusing another in-flight request's X-Request-ID cannot make the
// service's calls join that request's trace: two live requests with one id
// are ambiguous, and the calls get new traces naming both candidates.
func TestEgressReusedRequestIDIsNeverAGuess(t *testing.T) {
	c := zipkintest.NewCollector(t)
	payments := newUpstream(t)
	egressPort := freePort()
	app := newLegacyApp(t, fmt.Sprintf("http://127.0.0.1:%d", egressPort))
	app.before, app.after = newBarrier(2), newBarrier(2)
	startCaddySites(t, stitchSites(c, app.URL, payments.hostport(), egressPort, "stitch request_id sole_inflight", "egress"))
	before := stitchCounters()

	getAll(t, []string{"/orders/1?fwd=X-Request-Id", "/orders/2?fwd=X-Request-Id"}, map[string][]string{"X-Request-Id": {"shared-id"}})
	spans := c.WaitSpans(t, 6, 5*time.Second)
	servers := serverOf(spans)
	for _, h := range app.got {
		if got := h.Get("X-Request-Id"); got != "shared-id" {
			t.Errorf("the service got X-Request-ID %q, want the client's unchanged", got)
		}
	}
	a, b := servers["/orders/1"], servers["/orders/2"]
	eg := egressSpans(spans)
	if len(eg) != 2 {
		t.Fatalf("%d egress spans, want 2", len(eg))
	}
	for _, e := range eg {
		if got := e.Tags["tracingproxy.stitch"]; got != "none" {
			t.Errorf("call %s stitched by %q, want none", e.Tags["http.path"], got)
		}
		if e.TraceID == a.TraceID || e.TraceID == b.TraceID || e.ParentID != nil {
			t.Errorf("call %s in trace %s with parent %v: want a new root trace", e.Tags["http.path"], e.TraceID, e.ParentID)
		}
		cands := strings.Split(e.Tags["tracingproxy.stitch.candidates"], ",")
		if len(cands) != 2 || !(cands[0] == a.ID && cands[1] == b.ID || cands[0] == b.ID && cands[1] == a.ID) {
			t.Errorf("candidates %v, want both in-flight SERVER spans %s and %s", cands, a.ID, b.ID)
		}
		if tp := payments.reqs; len(tp) != 2 {
			t.Fatalf("payments got %d calls", len(tp))
		}
	}
	for _, h := range payments.reqs {
		tid, _, _ := parseTraceparent(t, h.Get("Traceparent"))
		if tid == a.TraceID || tid == b.TraceID {
			t.Errorf("payments continued an inbound trace %s", tid)
		}
	}
	if got := stitchCounters()["none"] - before["none"]; got != 2 {
		t.Errorf("tracingproxy_stitch_total{method=none} grew by %d, want 2", got)
	}
	// The counter as Caddy's /metrics serves it, every method listed.
	scraped := scrapeStitch(t)
	for m, n := range stitchCounters() {
		if scraped[m] != n {
			t.Errorf("/metrics tracingproxy_stitch_total{method=%q} = %d, want %d", m, scraped[m], n)
		}
	}
}

// scrapeStitch reads tracingproxy_stitch_total by method from the admin
// endpoint's /metrics.
func scrapeStitch(t *testing.T) map[string]uint64 {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	out := map[string]uint64{}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, `tracingproxy_stitch_total{method="`)
		if !ok {
			continue
		}
		m, v, _ := strings.Cut(rest, `"} `)
		var n uint64
		fmt.Sscan(v, &n)
		out[m] = n
	}
	if len(out) != 5 {
		t.Fatalf("/metrics has tracingproxy_stitch_total for %v, want the 5 outcomes", out)
	}
	return out
}

// An https target: the service speaks plain HTTP to the egress listener,
// which originates TLS to the target with the target's Host, so the trace
// headers are written even though the real call is HTTPS.
func TestEgressOriginatesTLS(t *testing.T) {
	c := zipkintest.NewCollector(t)
	var mu sync.Mutex
	var got []*http.Request
	payments := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Clone(r.Context()))
		mu.Unlock()
		io.WriteString(w, "charged")
	}))
	t.Cleanup(payments.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: payments.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	egressPort := freePort()
	app := newLegacyApp(t, fmt.Sprintf("http://127.0.0.1:%d", egressPort))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(payments.URL, "https://"))
	// The test certificate names example.com, which resolves nowhere: the
	// target is dialled by address and verified by that name.
	startCaddySites(t, fmt.Sprintf(`http://127.0.0.1:%d {
	tracingproxy {
		service_name orders-legacy
		stitch sole_inflight
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s
}
`, httpPort, c.URL(), app.URL)+fmt.Sprintf(`http://127.0.0.1:%d {
	tracingproxy {
		service_name orders-legacy
		egress
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s {
		header_up Host example.com:%s
		transport http {
			tls_trust_pool file %s
			tls_server_name example.com
		}
	}
}
`, egressPort, c.URL(), payments.URL, port, ca))
	res, body := get(t, "/orders/7", nil)
	if res.StatusCode != 200 || body != "order placed" {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	spans := c.WaitSpans(t, 3, 5*time.Second)
	eg := egressSpans(spans)
	if len(eg) != 1 {
		t.Fatalf("egress spans %+v", eg)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("payments got %d requests", len(got))
	}
	r := got[0]
	if r.TLS == nil || r.Host != "example.com:"+port || r.URL.Path != "/charge/7" {
		t.Errorf("payments got TLS %v Host %q path %q, want TLS, the target's Host and the service's path", r.TLS != nil, r.Host, r.URL.Path)
	}
	if _, pid, _ := parseTraceparent(t, r.Header.Get("Traceparent")); pid != eg[0].ID {
		t.Errorf("payments got traceparent %q, want it to name the egress span %s", r.Header.Get("Traceparent"), eg[0].ID)
	}
}

// An egress listener serves only loopback clients unless allow_clients
// says otherwise; a refused call reaches nothing.
func TestEgressRefusesClientsOutsideAllowClients(t *testing.T) {
	payments := newUpstream(t)
	egressPort := freePort()
	t.Run("allow_clients excludes loopback", func(t *testing.T) {
		startCaddySites(t, fmt.Sprintf(`http://127.0.0.1:%d {
	tracingproxy {
		service_name orders-legacy
		egress {
			allow_clients 10.0.0.0/8
		}
		exporter log
	}
	reverse_proxy %s
}`, egressPort, payments.hostport()))
		before := egressRefused[refusedClient].Load()
		res, err := testClient.Get(fmt.Sprintf("http://127.0.0.1:%d/charge/1", egressPort))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden || payments.count() != 0 {
			t.Errorf("status %d, payments got %d calls; want 403 and none", res.StatusCode, payments.count())
		}
		if egressRefused[refusedClient].Load() != before+1 {
			t.Errorf("refusal not counted")
		}
	})
	t.Run("default refuses a non-loopback client", func(t *testing.T) {
		ip := firstIPv4()
		if ip == "" {
			t.Skip("no non-loopback IPv4 address to call from")
		}
		startCaddySites(t, fmt.Sprintf(`http://:%d {
	bind %s 127.0.0.1
	tracingproxy {
		service_name orders-legacy
		egress
		exporter log
	}
	reverse_proxy %s
}`, egressPort, ip, payments.hostport()))
		res, err := testClient.Get(fmt.Sprintf("http://%s:%d/charge/1", ip, egressPort))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden || payments.count() != 0 {
			t.Errorf("status %d, payments got %d calls; want 403 and none", res.StatusCode, payments.count())
		}
		// The same listener serves a loopback client.
		res, err = testClient.Get(fmt.Sprintf("http://127.0.0.1:%d/charge/1", egressPort))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || payments.count() != 1 {
			t.Errorf("loopback client: status %d, payments got %d calls; want 200 and 1", res.StatusCode, payments.count())
		}
	})
}

// Bad stitch and egress options are refused when the configuration loads,
// naming the option.
func TestStitchBadConfigIsRefused(t *testing.T) {
	for _, tc := range []struct{ name, caddyfile, want string }{
		{"unknown method", `:1 {
	tracingproxy {
		stitch header guess
	}
}`, `stitch methods: stitch: unknown method "guess"`},
		{"method twice", `:1 {
	tracingproxy {
		stitch {
			methods process process
		}
	}
}`, `method "process" given twice`},
		{"bad request id header", `:1 {
	tracingproxy {
		stitch {
			request_id_header "X Bad"
		}
	}
}`, `stitch request_id_header: "X Bad" is not a valid header name`},
		{"unknown stitch option", `:1 {
	tracingproxy {
		stitch {
			ttl 5m
		}
	}
}`, `unknown stitch option "ttl"`},
		{"bad allow_clients", `:1 {
	tracingproxy {
		egress {
			allow_clients everyone
		}
	}
}`, `egress allow_clients: "everyone" is not all`},
		{"allow_destinations without forward_proxy", `:1 {
	tracingproxy {
		egress {
			allow_destinations payments.internal:8080
		}
	}
}`, "egress allow_destinations needs forward_proxy"},
		{"bad allow_destinations port", `:1 {
	tracingproxy {
		egress {
			forward_proxy
			allow_destinations payments.internal:http
		}
	}
}`, `egress allow_destinations: "payments.internal:http" has port "http", want 1-65535`},
		{"bad allow_destinations host", `:1 {
	tracingproxy {
		egress {
			forward_proxy
			allow_destinations pay*ments
		}
	}
}`, `egress allow_destinations: "pay*ments" is not host[:port]`},
		{"forward_proxy takes no argument", `:1 {
	tracingproxy {
		egress {
			forward_proxy on
		}
	}
}`, "wrong argument count"},
		{"stitch and egress on one handler", `:1 {
	tracingproxy {
		stitch
		egress
	}
}`, "stitch and egress cannot be set on one handler"},
		{"one service, two stitch options", `:1 {
	tracingproxy {
		service_name orders-legacy
		stitch request_id
	}
}
:2 {
	tracingproxy {
		service_name orders-legacy
		stitch process
	}
}`, `handlers of service_name "orders-legacy" have different stitch options`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n\tadmin off\n\tauto_https off\n}\n"+tc.caddyfile), nil)
			if err == nil {
				err = caddy.Validate(mustConfig(t, cfg))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// mustConfig decodes a JSON configuration.
func mustConfig(t *testing.T, js []byte) *caddy.Config {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// A flood of unique request ids, sent or generated, keeps the service's id
// map at max_ids.
func TestStitchIDFloodKeepsTheMapAtItsBound(t *testing.T) {
	c := zipkintest.NewCollector(t)
	payments := newUpstream(t)
	egressPort := freePort()
	app := newLegacyApp(t, fmt.Sprintf("http://127.0.0.1:%d", egressPort))
	startCaddySites(t, stitchSites(c, app.URL, payments.hostport(), egressPort, "stitch request_id {\n\t\t\tmax_ids 10\n\t\t}", "egress"))
	for i := 0; i < 40; i++ {
		hdr := map[string][]string{"X-Request-Id": {fmt.Sprintf("flood-%d", i)}}
		if i%2 == 1 {
			hdr = nil // the ingress generates one
		}
		if res, _ := get(t, fmt.Sprintf("/orders/%d?fwd=X-Request-Id", i), hdr); res.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, res.StatusCode)
		}
	}
	var reg *stitch.Registry
	stitchPool.Range(func(key, v any) bool {
		if k := key.(string); strings.HasPrefix(k, "orders-legacy\x00") && strings.HasSuffix(k, "|10|0|0") { // this test's max_ids
			reg = v.(*pooledRegistry).reg
		}
		return true
	})
	if reg == nil {
		t.Fatal("no registry for orders-legacy")
	}
	if n := reg.IDs(); n != 10 {
		t.Fatalf("id map holds %d ids after 40 unique ones, want max_ids 10", n)
	}
	// The newest ids still stitch.
	spans := c.WaitSpans(t, 120, 10*time.Second) // SERVER, the hop, the call
	last := 0
	for _, e := range egressSpans(spans) {
		if e.Tags["http.path"] == "/charge/39" && e.Tags["tracingproxy.stitch"] == "request_id" {
			last++
		}
	}
	if last != 1 {
		t.Errorf("the last call was not stitched by request_id")
	}
}

// One inbound record holds at most maxJoinedCalls calls, with distinct
// Exit span ids; later calls, and calls after the record settled, are
// records of their own.
func TestEgressSinkBounded(t *testing.T) {
	var s egressSink
	ids := map[int32]bool{}
	for i := 0; i < maxJoinedCalls; i++ {
		id, ok := s.attach()
		if !ok || ids[id] || id < egressExitBase {
			t.Fatalf("call %d: id %d, %v", i, id, ok)
		}
		ids[id] = true
	}
	if _, ok := s.attach(); ok {
		t.Fatalf("call %d joined the record", maxJoinedCalls+1)
	}
	var t2 egressSink
	t2.settle(nil, nil)
	if _, ok := t2.attach(); ok {
		t.Fatal("a call joined a settled record")
	}
}

// TestEgressSW8NamesTheTarget checks the sw8 target address an egress
// listener without upstream_address writes: like the ingress handler's,
// the request's Host (the listener) until an upstream was called, then the
// target reverse_proxy called, so OAP can map the Exit span's peer onto
// the called service.
func TestEgressSW8NamesTheTarget(t *testing.T) {
	payments := newUpstream(t)
	egressPort := freePort()
	app := newLegacyApp(t, fmt.Sprintf("http://127.0.0.1:%d", egressPort))
	startCaddySites(t, fmt.Sprintf(`http://127.0.0.1:%d {
	tracingproxy {
		service_name orders-legacy
		stitch sole_inflight
		exporter log
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	tracingproxy {
		service_name orders-legacy
		egress
		propagation {
			inject w3c sw8
		}
		exporter log
	}
	reverse_proxy %s
}
`, httpPort, app.URL, egressPort, payments.hostport()))
	for i, want := range []string{fmt.Sprintf("127.0.0.1:%d", egressPort), payments.hostport()} {
		if res, body := get(t, fmt.Sprintf("/orders/%d", i), nil); res.StatusCode != 200 || body != "order placed" {
			t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
		}
		if got := upstreamSW8(t, payments).address; got != want {
			t.Errorf("call %d: sw8 target address %q, want %q", i, got, want)
		}
	}
}

// TestREADMEEgressCaddyfileLoads adapts README's egress example (the
// ingress site and both kinds of egress listener of one service) and has
// Caddy load and provision it without starting it, as tracingproxy
// validate does, so the documented configuration is one tracingproxy runs.
func TestREADMEEgressCaddyfileLoads(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var example string
	for _, block := range strings.Split(string(b), "```caddyfile\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, "forward_proxy") && strings.Contains(block, "stitch ") {
			example = block
			break
		}
	}
	if example == "" {
		t.Fatal("README has no Caddyfile example with stitch and an egress forward proxy")
	}
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(example), nil)
	if err != nil {
		t.Fatalf("adapting README's egress example: %v", err)
	}
	if n := strings.Count(string(js), `"handler":"tracingproxy"`); n != 3 {
		t.Errorf("README's egress example has %d tracingproxy handlers, want 3 (ingress, listener, forward proxy)", n)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("README's egress example does not load: %v", err)
	}
}

// TestEgressMalformedTraceHeaderIsNoAnswer sends an egress call carrying a
// malformed traceparent, as a service might forward a mangled one: the call
// goes through unchanged in status and body, method header does not answer
// (the next method does), and the target gets a valid traceparent naming
// the egress span instead of the malformed one.
func TestEgressMalformedTraceHeaderIsNoAnswer(t *testing.T) {
	c := zipkintest.NewCollector(t)
	payments := newUpstream(t)
	egressPort := freePort()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/charge/1?status=402", egressPort), nil)
		out.Header.Set("Traceparent", "00-not-a-trace-id-at-all-01")
		res, err := client.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		w.WriteHeader(res.StatusCode)
		w.Write(b)
	}))
	t.Cleanup(app.Close)
	startCaddySites(t, stitchSites(c, app.URL, payments.hostport(), egressPort, "stitch header sole_inflight", "egress"))
	res, body := get(t, "/orders/1", nil)
	if res.StatusCode != http.StatusPaymentRequired || body != "hello from upstream" {
		t.Fatalf("got %d %q, want payments' 402 and body through both hops", res.StatusCode, body)
	}
	spans := c.WaitSpans(t, 3, 5*time.Second)
	eg := egressSpans(spans)
	if len(eg) != 1 {
		t.Fatalf("egress spans %+v, want one", eg)
	}
	if got := eg[0].Tags["tracingproxy.stitch"]; got != "sole_inflight" {
		t.Errorf("tracingproxy.stitch %q, want sole_inflight: a malformed header is no answer", got)
	}
	tp := payments.last(t).Get("Traceparent")
	if trace, pid, _ := parseTraceparent(t, tp); pid != eg[0].ID || trace != eg[0].TraceID {
		t.Errorf("payments got traceparent %q, want one naming the egress span %s of trace %s", tp, eg[0].ID, eg[0].TraceID)
	}
}
