package headers

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Sinks keep the compiler from discarding benchmarked work.
var (
	wbBenchSC  SpanContext
	wbBenchErr error
	wbBenchCtx context.Context
)

// w3cBenchHeaders are the W3C benchmark inputs: a valid traceparent with the
// spec's tracestate, no trace headers at all, and a bogus traceparent.
func w3cBenchHeaders() []struct {
	name string
	h    http.Header
} {
	return []struct {
		name string
		h    http.Header
	}{
		{"valid", hdrWB("traceparent", w3cTestParent, "tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "Accept", "*/*")},
		{"missing", hdrWB("Accept", "*/*", "User-Agent", "bench")},
		{"bogus", hdrWB("traceparent", "00-"+w3cTestTraceID+"-"+w3cTestSpanID+"-0g", "tracestate", "congo=t61rcWkgMzE")},
	}
}

func BenchmarkW3CExtract(b *testing.B) {
	c, _ := NewCodec(FormatW3C)
	for _, bm := range w3cBenchHeaders() {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				wbBenchSC = SpanContext{}
				wbBenchErr = c.Extract(bm.h, &wbBenchSC)
			}
		})
	}
}

func BenchmarkOTelTraceContextExtract(b *testing.B) {
	p := propagation.TraceContext{}
	ctx := context.Background()
	for _, bm := range w3cBenchHeaders() {
		b.Run(bm.name, func(b *testing.B) {
			carrier := propagation.HeaderCarrier(bm.h)
			b.ReportAllocs()
			for b.Loop() {
				wbBenchCtx = p.Extract(ctx, carrier)
			}
		})
	}
}

// wbBenchContext is the context the inject benchmarks write: sampled, with a
// parent and the spec's tracestate.
func wbBenchContext(b *testing.B) SpanContext {
	return SpanContext{
		TraceID: wbTraceID(b, w3cTestTraceID), SpanID: wbSpanID(b, w3cTestSpanID), ParentID: wbSpanID(b, b3TestParentID),
		Sampling: SamplingAccept, TraceState: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
	}
}

// otelBenchContext is wbBenchContext as an OpenTelemetry context.
func otelBenchContext(b *testing.B) context.Context {
	sc := wbBenchContext(b)
	ts, err := trace.ParseTraceState(sc.TraceState)
	if err != nil {
		b.Fatal(err)
	}
	return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID(sc.TraceID), SpanID: trace.SpanID(sc.SpanID), TraceFlags: trace.FlagsSampled, TraceState: ts,
	}))
}

// benchInject measures c writing sc into an http.Header through a Writer,
// as the proxy does.
func benchInject(b *testing.B, c Codec, sc SpanContext) {
	h := http.Header{}
	var w Writer
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		c.Inject(&sc, &w)
		w.Apply(h)
	}
}

// benchOTelInject measures p writing ctx into an http.Header.
func benchOTelInject(b *testing.B, p propagation.TextMapPropagator, ctx context.Context) {
	h := http.Header{}
	carrier := propagation.HeaderCarrier(h)
	b.ReportAllocs()
	for b.Loop() {
		p.Inject(ctx, carrier)
	}
}

func BenchmarkW3CInject(b *testing.B) {
	c, _ := NewCodec(FormatW3C)
	benchInject(b, c, wbBenchContext(b))
}

func BenchmarkOTelTraceContextInject(b *testing.B) {
	benchOTelInject(b, propagation.TraceContext{}, otelBenchContext(b))
}

// b3BenchMulti and b3BenchSingle carry the same context in the two B3 forms.
var (
	b3BenchMulti = hdrWB("X-B3-TraceId", b3TestTraceID, "X-B3-SpanId", b3TestSpanID,
		"X-B3-ParentSpanId", b3TestParentID, "X-B3-Sampled", "1", "Accept", "*/*")
	b3BenchSingle = hdrWB("b3", b3TestTraceID+"-"+b3TestSpanID+"-1-"+b3TestParentID, "Accept", "*/*")
)

func benchB3Extract(b *testing.B, h http.Header) {
	c, _ := NewCodec(FormatB3)
	b.ReportAllocs()
	for b.Loop() {
		wbBenchSC = SpanContext{}
		wbBenchErr = c.Extract(h, &wbBenchSC)
	}
}

func benchOTelB3Extract(b *testing.B, h http.Header, enc b3.Encoding) {
	p := b3.New(b3.WithInjectEncoding(enc))
	ctx := context.Background()
	carrier := propagation.HeaderCarrier(h)
	b.ReportAllocs()
	for b.Loop() {
		wbBenchCtx = p.Extract(ctx, carrier)
	}
}

func BenchmarkB3ExtractMulti(b *testing.B)  { benchB3Extract(b, b3BenchMulti) }
func BenchmarkB3ExtractSingle(b *testing.B) { benchB3Extract(b, b3BenchSingle) }

func BenchmarkOTelB3ExtractMulti(b *testing.B) {
	benchOTelB3Extract(b, b3BenchMulti, b3.B3MultipleHeader)
}

func BenchmarkOTelB3ExtractSingle(b *testing.B) {
	benchOTelB3Extract(b, b3BenchSingle, b3.B3SingleHeader)
}

func BenchmarkB3Inject(b *testing.B) {
	sc := wbBenchContext(b)
	b.Run("multi", func(b *testing.B) { benchInject(b, b3MultiCodec{}, sc) })
	b.Run("single", func(b *testing.B) { benchInject(b, b3SingleCodec{}, sc) })
}

func BenchmarkOTelB3Inject(b *testing.B) {
	ctx := otelBenchContext(b)
	b.Run("multi", func(b *testing.B) {
		benchOTelInject(b, b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader)), ctx)
	})
	b.Run("single", func(b *testing.B) {
		benchOTelInject(b, b3.New(b3.WithInjectEncoding(b3.B3SingleHeader)), ctx)
	})
}
