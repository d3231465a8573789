package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/tracing"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// discardExporter accepts every batch and keeps nothing: the benchmarks
// measure the request path, not a backend.
type discardExporter struct{}

func (discardExporter) Export(context.Context, []*exporter.Record) error { return nil }
func (discardExporter) Shutdown(context.Context) error                   { return nil }

// upstreamLike stands in for reverse_proxy: it sets the placeholders
// reverse_proxy sets and answers 200.
var upstreamLike = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set(phUpstreamHostport, "127.0.0.1:9000")
	repl.Set(phUpstreamDuration, 50*time.Microsecond)
	repl.Set(phUpstreamStatus, 200)
	w.WriteHeader(http.StatusOK)
	_, err := w.Write([]byte("ok"))
	return err
})

// newBenchRequest is a request as Caddy's server hands it to handlers: with
// a replacer, vars and extra log fields in its context.
func newBenchRequest(traceparent string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/orders/42", nil)
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
	r = r.WithContext(ctx)
	if traceparent != "" {
		r.Header.Set("Traceparent", traceparent)
	}
	return r
}

// nopWriter is a response writer that keeps nothing.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

const benchTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// benchHandler runs one middleware per iteration on a fresh request state,
// the same way for ours and Caddy's.
func benchHandler(b *testing.B, mw caddyhttp.MiddlewareHandler, traceparent string) {
	benchHandlerOn(b, mw, newBenchRequest(traceparent), upstreamLike)
}

// benchHandlerOn is benchHandler with a prepared base request and next.
func benchHandlerOn(b *testing.B, mw caddyhttp.MiddlewareHandler, base *http.Request, next caddyhttp.Handler) {
	w := &nopWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A fresh vars map (holding client_ip) and log fields per request,
		// as Caddy's server makes them.
		ctx := context.WithValue(base.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.10"})
		ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
		r := base.Clone(ctx)
		clear(w.h)
		if err := mw.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
}

// ourHandler provisions the tracingproxy handler with the given JSON and a
// discarding exporter queue.
func ourHandler(b *testing.B, js string) *Handler {
	h, err := provision(b, js)
	if err != nil {
		b.Fatal(err)
	}
	q := exporter.NewQueue(discardExporter{}, exporter.QueueConfig{Size: 1 << 16})
	own := h.queues
	h.queues = []*pooledQueue{{name: "discard", q: q}}
	b.Cleanup(func() {
		q.Shutdown(context.Background())
		h.queues = own // so Cleanup releases the pooled queue Provision took
	})
	return h
}

func BenchmarkHandler(b *testing.B) {
	b.Run("tracingproxy/sampled/w3c+b3", func(b *testing.B) {
		benchHandler(b, ourHandler(b, `{}`), benchTraceparent)
	})
	b.Run("tracingproxy/sampled/new-root", func(b *testing.B) {
		benchHandler(b, ourHandler(b, `{}`), "")
	})
	b.Run("tracingproxy/sampled/w3c+b3+sw8+server_timing", func(b *testing.B) {
		benchHandler(b, ourHandler(b, `{"propagation":{"inject":["w3c","b3","sw8"]},"response_headers":{"server_timing":true,"trace_id":"X-Trace-Id"}}`), benchTraceparent)
	})
	b.Run("tracingproxy/sampled/w3c+b3/server-without-access-log", func(b *testing.B) {
		base := newBenchRequest(benchTraceparent)
		base = base.WithContext(context.WithValue(base.Context(), caddyhttp.ServerCtxKey, new(caddyhttp.Server)))
		benchHandlerOn(b, ourHandler(b, `{}`), base, upstreamLike)
	})
	b.Run("tracingproxy/unsampled", func(b *testing.B) {
		benchHandler(b, ourHandler(b, `{"sample_ratio":0}`), "")
	})
	b.Run("caddy-tracing/sampled", func(b *testing.B) {
		// Caddy's own handler records and batches spans with the
		// OpenTelemetry SDK; "none" exports them nowhere, as our
		// discarding queue does.
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
		defer os.Unsetenv("OTEL_TRACES_EXPORTER")
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		ct := &tracing.Tracing{SpanName: "bench"}
		if err := ct.Provision(ctx); err != nil {
			b.Fatal(err)
		}
		defer ct.Cleanup()
		benchHandler(b, ct, benchTraceparent)
	})
	b.Run("baseline/next-only", func(b *testing.B) {
		benchHandler(b, passThrough{}, benchTraceparent)
	})
}

// passThrough is a middleware that only calls next: the harness's own cost.
type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

// BenchmarkHandlerMemoryExporter is the sampled handler with the memory
// exporter's real pooled queue (its worker converts and stores every record
// on another goroutine) beside the discarding queue of BenchmarkHandler, in
// the same run.
func BenchmarkHandlerMemoryExporter(b *testing.B) {
	b.Run("discard", func(b *testing.B) {
		benchHandler(b, ourHandler(b, `{}`), benchTraceparent)
	})
	b.Run("memory", func(b *testing.B) {
		h, err := provision(b, `{"exporters":[{"type":"memory","max_traces":1000}]}`)
		if err != nil {
			b.Fatal(err)
		}
		benchHandler(b, h, benchTraceparent)
		b.StopTimer()
		if st := traceStore.Stats(); st.Traces > 1000 {
			b.Fatalf("store beyond its bound: %+v", st)
		}
	})
}
