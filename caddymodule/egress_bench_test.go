package caddymodule

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/stitch"
)

// stitchedPair provisions a service's ingress and egress handlers in one
// configuration (so the egress handler reads the ingress registry), each
// exporting to a discarding queue.
func stitchedPair(b *testing.B, ingressJS, egressJS string) (in, eg *Handler) {
	// A context of a loaded configuration: handlers find their service's
	// entry in one of its apps.
	ctx, err := caddy.ProvisionContext(&caddy.Config{Admin: &caddy.AdminConfig{Disabled: true}})
	if err != nil {
		b.Fatal(err)
	}
	mk := func(js string) *Handler {
		h := new(Handler)
		if err := json.Unmarshal([]byte(js), h); err != nil {
			b.Fatal(err)
		}
		if err := h.Provision(ctx); err != nil {
			b.Fatal(err)
		}
		q := exporter.NewQueue(discardExporter{}, exporter.QueueConfig{Size: 1 << 16})
		own := h.queues
		h.queues = []*pooledQueue{{name: "discard", q: q}}
		b.Cleanup(func() {
			q.Shutdown(context.Background())
			h.queues = own
			h.Cleanup()
		})
		return h
	}
	return mk(ingressJS), mk(egressJS)
}

// inflight registers n in-flight inbound requests with ids bg-0.. in the
// ingress handler's registry.
func inflight(b *testing.B, h *Handler, n int) {
	for i := 0; i < n; i++ {
		in := &stitch.Ingress{Ctx: headers.SpanContext{TraceID: headers.NewTraceID(), SpanID: headers.NewSpanID()}, RequestID: "bg-" + strconv.Itoa(i)}
		h.stitchReg.reg.Begin(in)
		b.Cleanup(func() { h.stitchReg.reg.End(in) })
	}
}

// BenchmarkHandlerStitch is the added CPU of stitching: per inbound request
// (the ingress handler with stitch on, against the same handler without
// it) and per egress call (the egress handler, by each method), with
// discarding exporters, all sampled.
func BenchmarkHandlerStitch(b *testing.B) {
	const svc = `"service_name":"orders-legacy"`
	b.Run("ingress/no-stitch", func(b *testing.B) {
		benchHandler(b, ourHandler(b, `{`+svc+`}`), benchTraceparent)
	})
	b.Run("ingress/stitch/request-id-generated", func(b *testing.B) {
		in, _ := stitchedPair(b, `{`+svc+`,"stitch":{}}`, `{`+svc+`,"egress":{}}`)
		inflight(b, in, 64)
		benchHandler(b, in, benchTraceparent)
	})
	b.Run("ingress/stitch/request-id-sent", func(b *testing.B) {
		in, _ := stitchedPair(b, `{`+svc+`,"stitch":{}}`, `{`+svc+`,"egress":{}}`)
		inflight(b, in, 64)
		base := newBenchRequest(benchTraceparent)
		base.Header.Set("X-Request-Id", "6f1e2a4c-93d1-4b7e-8a55-0c2d9e7f1b3a")
		benchHandlerOn(b, in, base, upstreamLike)
	})
	b.Run("ingress/stitch/no-request-id-method", func(b *testing.B) {
		in, _ := stitchedPair(b, `{`+svc+`,"stitch":{"methods":["process","sole_inflight"]}}`, `{`+svc+`,"egress":{}}`)
		inflight(b, in, 64)
		benchHandler(b, in, benchTraceparent)
	})
	egress := func(b *testing.B, methods string, n int, id string, want stitch.Method) {
		in, eg := stitchedPair(b, `{`+svc+`,"stitch":{"methods":[`+methods+`]}}`, `{`+svc+`,"egress":{}}`)
		inflight(b, in, n)
		base := newBenchRequest("")
		base.RemoteAddr = "127.0.0.1:40000"
		if id != "" {
			base.Header.Set("X-Request-Id", id)
		}
		before := stitchCounts[want].Load()
		benchHandlerOn(b, eg, base, upstreamLike)
		if got := stitchCounts[want].Load() - before; got != uint64(b.N) {
			b.Fatalf("%d of %d calls attributed by %v", got, b.N, want)
		}
	}
	b.Run("egress/request_id/64-in-flight", func(b *testing.B) { egress(b, `"request_id"`, 64, "bg-7", stitch.MethodRequestID) })
	b.Run("egress/sole_inflight", func(b *testing.B) { egress(b, `"sole_inflight"`, 1, "", stitch.MethodSoleInflight) })
	b.Run("egress/none/64-in-flight", func(b *testing.B) { egress(b, `"request_id","sole_inflight"`, 64, "", stitch.MethodNone) })
	b.Run("egress/header", func(b *testing.B) {
		_, eg := stitchedPair(b, `{`+svc+`,"stitch":{}}`, `{`+svc+`,"egress":{}}`)
		base := newBenchRequest(benchTraceparent)
		base.RemoteAddr = "127.0.0.1:40000"
		benchHandlerOn(b, eg, base, upstreamLike)
	})
}
