package caddymodule

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// realProxy provisions Caddy's reverse_proxy to a local upstream, so the
// handler benchmarks below run its real attempt loop and net/http
// transport, on a kept-alive connection after the first request.
func realProxy(b *testing.B) caddyhttp.Handler {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	b.Cleanup(up.Close)
	rp := new(reverseproxy.Handler)
	js := `{"upstreams":[{"dial":"` + strings.TrimPrefix(up.URL, "http://") + `"}]}`
	if err := json.Unmarshal([]byte(js), rp); err != nil {
		b.Fatal(err)
	}
	// reverse_proxy provisions inside a running http app.
	if err := caddy.Load([]byte(`{"admin":{"disabled":true},"apps":{"http":{}}}`), true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { caddy.Stop() })
	if err := rp.Provision(caddy.ActiveContext()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rp.Cleanup() })
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return rp.ServeHTTP(w, r, nil)
	})
}

// benchProxied runs mw in front of the real reverse_proxy, for a caller
// that sends traceparent (none when empty).
func benchProxied(b *testing.B, mw caddyhttp.MiddlewareHandler, traceparent string) {
	next := realProxy(b)
	base := newBenchRequest(traceparent)
	base = base.WithContext(context.WithValue(base.Context(), caddyhttp.ServerCtxKey, new(caddyhttp.Server)))
	w := &nopWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx := context.WithValue(base.Context(), caddyhttp.VarsCtxKey, map[string]any{
			caddyhttp.ClientIPVarKey: "192.0.2.10", caddyhttp.TrustedProxyVarKey: false})
		ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer())
		r := base.Clone(ctx)
		clear(w.h)
		if err := mw.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandlerReverseProxy is the handler in front of Caddy's real
// reverse_proxy and a local upstream on a reused connection: what a proxied
// request costs end to end in process, with the baseline of reverse_proxy
// alone in the same run.
func BenchmarkHandlerReverseProxy(b *testing.B) {
	b.Run("tracingproxy/sampled/w3c+b3", func(b *testing.B) {
		benchProxied(b, ourHandler(b, `{}`), benchTraceparent)
	})
	b.Run("tracingproxy/unsampled", func(b *testing.B) {
		benchProxied(b, ourHandler(b, `{"sample_ratio":0}`), "")
	})
	b.Run("baseline/reverse_proxy-only", func(b *testing.B) {
		benchProxied(b, passThrough{}, benchTraceparent)
	})
}
