package caddymodule

// Regression tests for bugs a review found; each failed before its fix.

import (
	"context"
	"errors"
	"fmt"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/sampler"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRegressionTwoHandlersMetrics(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	handle /a* {
		tracingproxy {
			exporter log
		}
		reverse_proxy %s
	}
	handle {
		tracingproxy {
			service_name other
			exporter log
		}
		reverse_proxy %s
	}`, up.hostport(), up.hostport()))
	get(t, "/a", nil)
	get(t, "/b", nil)
	res, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("/metrics status %d: %.600s", res.StatusCode, body)
	}
}

func TestRegressionSameNameQueuesHidden(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	handle /a* {
		tracingproxy {
			exporter log {
				batch_size 1
			}
		}
		reverse_proxy %s
	}
	handle {
		tracingproxy {
			exporter log {
				batch_size 2
			}
		}
		reverse_proxy %s
	}`, up.hostport(), up.hostport()))
	for i := 0; i < 3; i++ {
		get(t, "/a", nil)
	}
	for i := 0; i < 5; i++ {
		get(t, "/b", nil)
	}
	var total uint64
	queuePool.Range(func(_, v any) bool {
		pq := v.(*pooledQueue)
		t.Logf("queue %q enqueued %d", pq.name, pq.q.Stats().Enqueued)
		total += pq.q.Stats().Enqueued
		return true
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{})
	for i := 0; i < 5; i++ {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "tracingproxy_exporter_records_enqueued_total" {
				var sum float64
				for _, m := range mf.Metric {
					sum += m.GetCounter().GetValue()
				}
				t.Logf("scrape %d: %d series, sum %g (queues hold %d)", i, len(mf.Metric), sum, total)
				if sum != float64(total) {
					t.Errorf("scrape %d reports %g enqueued, queues accepted %d", i, sum, total)
				}
			}
		}
	}
}

type capturingExporter struct {
	mu   sync.Mutex
	recs []*exporter.Record
}

func (c *capturingExporter) Export(_ context.Context, b []*exporter.Record) error {
	c.mu.Lock()
	c.recs = append(c.recs, b...)
	c.mu.Unlock()
	return nil
}
func (c *capturingExporter) Shutdown(context.Context) error { return nil }

func regressionHandler(t *testing.T, js string) (*Handler, *capturingExporter, *exporter.Queue) {
	h, err := provision(t, js)
	if err != nil {
		t.Fatal(err)
	}
	ce := &capturingExporter{}
	q := exporter.NewQueue(ce, exporter.QueueConfig{BatchSize: 1, FlushInterval: time.Millisecond})
	saved := h.queues
	h.queues = []*pooledQueue{{q: q, name: "cap"}}
	t.Cleanup(func() { h.queues = saved; q.Shutdown(context.Background()) })
	return h, ce, q
}

func regressionReq(method, target string, hdr http.Header) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if hdr != nil {
		r.Header = hdr
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	return r.WithContext(ctx)
}

func TestRegressionLongPathDropsSW8(t *testing.T) {
	h, _, _ := regressionHandler(t, `{"propagation":{"inject":["w3c","sw8"]},"exporters":[{"type":"log"}]}`)
	var up http.Header
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		up = r.Header.Clone()
		return nil
	})
	in := http.Header{"Sw8": {"1-MGFmNzY1MTkxNmNkNDNkZDg0NDhlYjIxMWM4MDMxOWM=-NWU3YjE0ZjM4MjNkNDRkYmJmMzQ1NjcxNGIyMzlkNmE=-1-Y2FsbGVy-aW5zdA==-L2FwaQ==-cHJveHk6ODA="}}
	for _, n := range []int{100, 1600} {
		r := regressionReq("GET", "/"+strings.Repeat("a", n), in.Clone())
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
		t.Logf("path len %d: upstream traceparent=%q sw8 present=%v", n, up.Get("Traceparent"), up.Get("Sw8") != "")
		if up.Get("Sw8") == "" {
			t.Errorf("path of %d bytes: the upstream got no sw8 (caller's sw8 removed, none injected)", n)
		}
	}
}

func TestRegressionUpgradeStatus(t *testing.T) {
	h, ce, q := regressionHandler(t, `{"exporters":[{"type":"log"}]}`)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusSwitchingProtocols)
		return nil
	})
	r := regressionReq("GET", "/ws", nil)
	if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
		t.Fatal(err)
	}
	q.ForceFlush(context.Background())
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if len(ce.recs) != 1 {
		t.Fatalf("%d records", len(ce.recs))
	}
	if s := ce.recs[0].Server.Status; s != 101 {
		t.Errorf("upgrade recorded with status %d, want 101", s)
	}
}

func TestRegressionRaceHeadersAfterReturn(t *testing.T) {
	h, _, _ := regressionHandler(t, `{"propagation":{"extract":["w3c","b3","sw8","jaeger","baggage"],"inject":["w3c","b3","sw8","jaeger","ot","baggage"]},"sampler":{"keep_errors":true,"ratio":0.5},"exporters":[{"type":"log"}]}`)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(500)
		return nil
	})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				hdr := http.Header{
					"Traceparent": {fmt.Sprintf("00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033%02x-01", g+1)},
					"Tracestate":  {"a=b,c=d"},
					"Baggage":     {fmt.Sprintf("k%d=v%d,x=y", g, i)},
				}
				r := regressionReq("GET", "/p", hdr)
				if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
					t.Error(err)
					return
				}
				b := r.Header.Get("Baggage")
				want := fmt.Sprintf("k%d=v%d,x=y", g, i)
				if b != want {
					t.Errorf("baggage after return %q want %q", b, want)
					return
				}
				for k, v := range r.Header {
					_ = k + v[0]
				}
				_ = r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)["trace_id"].(fmt.Stringer).String()
			}
		}(g)
	}
	wg.Wait()
}

func decCount(reason sampler.Reason, sampled bool) uint64 {
	if m := decisionCounts.Load(); m != nil {
		if c := (*m)[decisionKey{reason, sampled}]; c != nil {
			return c.Load()
		}
	}
	return 0
}

func TestRegressionKeepErrors404AndDoubleCount(t *testing.T) {
	h, ce, q := regressionHandler(t, `{"sampler":{"ratio":0,"keep_errors":true},"exporters":[{"type":"log"}]}`)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(http.StatusNotFound, errors.New("file not found"))
	})
	r0, e0 := decCount("ratio", false), decCount("error", true)
	h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/missing", nil), next)
	q.ForceFlush(context.Background())
	if dr, de := decCount("ratio", false)-r0, decCount("error", true)-e0; dr != 1 || de != 0 {
		t.Errorf("decisions for one 404: ratio/false +%d, error/true +%d; want +1, +0", dr, de)
	}
	ce.mu.Lock()
	if len(ce.recs) > 0 {
		t.Errorf("a 404 was kept by keep_errors: status %d reason %q", ce.recs[0].Server.Status, ce.recs[0].SamplingReason)
	}
	ce.mu.Unlock()

	// A 503 is kept, and counted once, as kept.
	r0, e0 = decCount("ratio", false), decCount("error", true)
	h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/down", nil), caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusServiceUnavailable)
		return nil
	}))
	q.ForceFlush(context.Background())
	if dr, de := decCount("ratio", false)-r0, decCount("error", true)-e0; dr != 0 || de != 1 {
		t.Errorf("decisions for one kept 503: ratio/false +%d, error/true +%d; want +0, +1", dr, de)
	}
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if len(ce.recs) != 1 || ce.recs[0].SamplingReason != "error" {
		t.Errorf("the 503 was not kept with reason error: %d records", len(ce.recs))
	}
}

func TestRegressionRewrittenPath(t *testing.T) {
	h, ce, q := regressionHandler(t, `{"exporters":[{"type":"log"}]}`)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		r.URL.Path = "/orders" // what uri strip_prefix /api does, in place
		return nil
	})
	h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/api/orders", nil), next)
	q.ForceFlush(context.Background())
	ce.mu.Lock()
	defer ce.mu.Unlock()
	s := ce.recs[0].Server
	t.Logf("SERVER name %q tags %v", s.Name, s.Tags)
	if s.Name != "GET /api/orders" {
		t.Errorf("SERVER span named %q, the client asked for GET /api/orders", s.Name)
	}
}

// A panicking next (reverse_proxy aborting a response with
// http.ErrAbortHandler) is recorded as a failure, and the panic goes on.
func TestRegressionAbortedResponseIsRecorded(t *testing.T) {
	h, ce, q := regressionHandler(t, `{"exporters":[{"type":"log"}]}`)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		panic(http.ErrAbortHandler)
	})
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("panic %v, want http.ErrAbortHandler passed on", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/stream", nil), next)
	}()
	q.ForceFlush(context.Background())
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if len(ce.recs) != 1 || !strings.Contains(ce.recs[0].Server.Error, "aborted") {
		t.Fatalf("records %d, want one with an aborted error", len(ce.recs))
	}
}

// Under inject preserve, a single-header B3 caller is answered with the
// single header.
func TestRegressionPreserveAnswersB3InItsForm(t *testing.T) {
	h, _, _ := regressionHandler(t, `{"propagation":{"extract":["w3c","b3"],"inject":["preserve"]},"exporters":[{"type":"log"}]}`)
	var up http.Header
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		up = r.Header.Clone()
		return nil
	})
	h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/", http.Header{"B3": {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}}), next)
	if up.Get("B3") == "" || up.Get("X-B3-Traceid") != "" {
		t.Errorf("single b3 caller answered with %v, want the single header only", up)
	}
	h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/", http.Header{"X-B3-Traceid": {"80f198ee56343ba864fe8b2a57d3eff7"}, "X-B3-Spanid": {"e457b5a2e4d86bd1"}}), next)
	if up.Get("B3") != "" || up.Get("X-B3-Traceid") == "" {
		t.Errorf("multi b3 caller answered with %v, want the multi headers only", up)
	}
}

// A link-local IPv6 client with a zone still matches its range.
func TestRegressionZonedClientMatchesTrust(t *testing.T) {
	tp, err := parseTrust([]string{"private_ranges"})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "fe80::1%eth0"})
	if !tp.trusted(r.WithContext(ctx)) {
		t.Errorf("%s is not in private_ranges", "fe80::1%eth0")
	}
}

// The pool key holds placeholders' values, so a changed environment builds
// a new exporter.
func TestRegressionPoolKeyFollowsTheEnvironment(t *testing.T) {
	ec := &ExporterConfig{Type: exporterZipkin, URL: "http://h/api/v2/spans", Headers: map[string]string{"Authorization": "{env.TP_TEST_TOKEN}"}}
	t.Setenv("TP_TEST_TOKEN", "one")
	k1, _ := ec.poolKey(&Handler{})
	t.Setenv("TP_TEST_TOKEN", "two")
	k2, _ := ec.poolKey(&Handler{})
	if k1 == k2 {
		t.Errorf("the pool key did not change with the token: %s", k1)
	}
}

// PROTOCOLS.md, sw6: "Read it, continue the trace, and write sw8 (and sw6
// only if asked)" — under inject preserve too.
func TestRegressionPreserveAnswersSW6WithSW8(t *testing.T) {
	h, _, _ := regressionHandler(t, `{"service_name":"svc","propagation":{"extract":["w3c","b3","sw8","sw6"],"inject":["preserve"]},"exporters":[{"type":"log"}]}`)
	var up http.Header
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		up = r.Header.Clone()
		return nil
	})
	// sw6: 1-b64(a.1.2)-b64(seg)-3-10-11-b64(#host:80)
	sw6 := "1-YS4xLjI=-c2Vn-3-10-11-I2hvc3Q6ODA="
	h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/", http.Header{"Sw6": {sw6}}), next)
	if up.Get("Sw8") == "" || up.Get("Sw6") != "" {
		t.Fatalf("sw6 caller answered with sw8 %q, sw6 %q; want sw8 only", up.Get("Sw8"), up.Get("Sw6"))
	}
	var sc headers.SpanContext
	if err := mustCodec(t, "sw8").Extract(up, &sc); err != nil || sc.SW.TraceID != "a.1.2" {
		t.Errorf("sw8 out carries trace %q (%v), want the sw6 caller's a.1.2", sc.SW.TraceID, err)
	}
}

func mustCodec(t *testing.T, name string) headers.Codec {
	t.Helper()
	cs, err := headers.Codecs([]string{name})
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}
