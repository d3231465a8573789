package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// attemptLike stands in for one reverse_proxy attempt on a kept-alive
// connection, without the network: it derives the attempt's request the way
// reverse_proxy does (a context value and its own ClientTrace composed over
// the request's), then fires the hooks net/http's transport fires on a reused
// connection, in its order, before answering as upstreamLike does. It runs
// the same on a handler with no client trace of its own, so the difference
// between two handlers is the cost of their tracing of the attempt alone.
var attemptLike = attemptWith(true)

// attemptWith is attemptLike, with reverse_proxy's own client trace when
// proxyTrace is set. Without it, no ClientTrace is composed over ours: the
// difference between two handlers is then their own work per attempt,
// without the reflection net/http/httptrace pays to compose two traces
// (BenchmarkAttemptCompose).
func attemptWith(proxyTrace bool) caddyhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := context.WithValue(r.Context(), attemptBenchKey{}, "dial info")
		if proxyTrace {
			ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
				Got1xxResponse: func(int, textproto.MIMEHeader) error { return nil },
			})
		}
		return fireHooks(w, r.WithContext(ctx))
	}
}

// fireHooks fires the hooks of req's client trace as net/http's transport
// does on a reused connection, then answers as upstreamLike.
func fireHooks(w http.ResponseWriter, req *http.Request) error {
	t := httptrace.ContextClientTrace(req.Context())
	if t == nil {
		return upstreamLike.ServeHTTP(w, req)
	}
	if t.GetConn != nil {
		t.GetConn("127.0.0.1:9000")
	}
	if t.GotConn != nil {
		t.GotConn(httptrace.GotConnInfo{Reused: true, WasIdle: true})
	}
	if t.WroteHeaders != nil {
		t.WroteHeaders()
	}
	if t.WroteRequest != nil {
		t.WroteRequest(httptrace.WroteRequestInfo{})
	}
	if t.GotFirstResponseByte != nil {
		t.GotFirstResponseByte()
	}
	return upstreamLike.ServeHTTP(w, req)
}

// attemptBenchKey is the key of attemptLike's stand-in for reverse_proxy's
// dial info.
type attemptBenchKey struct{}

// BenchmarkHandlerAttempt is the sampled handler in front of one upstream
// attempt on a reused connection (attemptLike). The file compiles unchanged
// with handler_bench_test.go in a tree before per-attempt tracing, so both
// trees can be measured in one run (BENCHMARKS.md).
func BenchmarkHandlerAttempt(b *testing.B) {
	for _, c := range []struct{ name, js, traceparent string }{
		{"sampled/w3c+b3", `{}`, benchTraceparent},
		{"sampled/new-root", `{}`, ""},
		{"unsampled", `{"sample_ratio":0}`, ""},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchHandlerOn(b, ourHandler(b, c.js), newBenchRequest(c.traceparent), attemptLike)
		})
	}
	b.Run("sampled/w3c+b3/without-proxy-trace", func(b *testing.B) {
		benchHandlerOn(b, ourHandler(b, `{}`), newBenchRequest(benchTraceparent), attemptWith(false))
	})
}
