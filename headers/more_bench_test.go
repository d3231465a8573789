package headers

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/contrib/propagators/aws/xray"
	"go.opentelemetry.io/contrib/propagators/jaeger"
	"go.opentelemetry.io/contrib/propagators/ot"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Sinks of the benchmarks of this file.
var (
	moreBenchSC  SpanContext
	moreBenchErr error
	moreBenchCtx context.Context
)

// moreBenchCase is one benchmark input.
type moreBenchCase struct {
	name string
	h    http.Header
}

// moreBenchInputs holds, per format, a valid, a missing and a bogus input.
func moreBenchInputs(b *testing.B) map[Format][]moreBenchCase {
	missing := mhdr("Accept", "*/*", "User-Agent", "bench")
	return map[Format][]moreBenchCase{
		FormatJaeger: {
			{"valid", mhdr("uber-trace-id", jgTraceID+":"+jgSpanID+":0:1", "Accept", "*/*")},
			{"valid-baggage", mhdr("uber-trace-id", jgTraceID+":"+jgSpanID+":0:1", "uberctx-user", "alice", "uberctx-tenant", "t1")},
			{"missing", missing},
			{"bogus", mhdr("uber-trace-id", jgTraceID+":"+jgSpanID+":0:zz")},
		},
		FormatOT: {
			{"valid", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "true")},
			{"missing", missing},
			{"bogus", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", "xyz", "ot-tracer-sampled", "true")},
		},
		FormatBaggage: {
			{"valid", mhdr("baggage", "userId=alice,serverNode=DF%2028,isProduction=false")},
			{"missing", missing},
			{"bogus", mhdr("baggage", "bogus,a b=c")},
		},
		FormatXRay: {
			{"valid", mhdr("X-Amzn-Trace-Id", "Root="+xrRoot+";Parent="+xrParent+";Sampled=1")},
			{"missing", missing},
			{"bogus", mhdr("X-Amzn-Trace-Id", "Root="+xrRoot+";Parent=zz;Sampled=1")},
		},
		FormatDatadog: {
			{"valid", ddHeaders("1234567890123456789", "987654321", "x-datadog-sampling-priority", "1", "x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000")},
			{"missing", missing},
			{"bogus", ddHeaders("18446744073709551616", "2")},
		},
		FormatRequestID: {
			{"valid", mhdr("X-Request-ID", "0f8fad5b-d9cb-469f-a165-70867728950e")},
			{"missing", missing},
			{"bogus", mhdr("X-Request-ID", "a\x00b")},
		},
		FormatCustom: {
			{"valid", mhdr("X-Trace-ID", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "X-Span-ID", jgSpanID, "X-Sampled", "1")},
			{"missing", missing},
			{"bogus", mhdr("X-Trace-ID", "4bf92f35-77b3-4da6-a3ce-929d0e0e473z")},
		},
	}
}

// moreBenchCodec returns the codec of f, configured ones with the headers
// the inputs use.
func moreBenchCodec(b *testing.B, f Format) Codec {
	switch f {
	case FormatRequestID:
		return mRequestID(b, "", false, 0)
	case FormatCustom:
		return mCustom(b, false)
	}
	return mcodec(b, f)
}

func benchMoreExtract(b *testing.B, f Format) {
	c := moreBenchCodec(b, f)
	for _, bm := range moreBenchInputs(b)[f] {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				moreBenchSC = SpanContext{}
				moreBenchErr = c.Extract(bm.h, &moreBenchSC)
			}
		})
	}
}

func BenchmarkJaegerExtract(b *testing.B)    { benchMoreExtract(b, FormatJaeger) }
func BenchmarkOTExtract(b *testing.B)        { benchMoreExtract(b, FormatOT) }
func BenchmarkBaggageExtract(b *testing.B)   { benchMoreExtract(b, FormatBaggage) }
func BenchmarkXRayExtract(b *testing.B)      { benchMoreExtract(b, FormatXRay) }
func BenchmarkDatadogExtract(b *testing.B)   { benchMoreExtract(b, FormatDatadog) }
func BenchmarkRequestIDExtract(b *testing.B) { benchMoreExtract(b, FormatRequestID) }
func BenchmarkCustomExtract(b *testing.B)    { benchMoreExtract(b, FormatCustom) }

// benchOTelMoreExtract runs an OpenTelemetry propagator over the same inputs.
func benchOTelMoreExtract(b *testing.B, f Format, p propagation.TextMapPropagator) {
	ctx := context.Background()
	for _, bm := range moreBenchInputs(b)[f] {
		b.Run(bm.name, func(b *testing.B) {
			carrier := propagation.HeaderCarrier(bm.h)
			b.ReportAllocs()
			for b.Loop() {
				moreBenchCtx = p.Extract(ctx, carrier)
			}
		})
	}
}

func BenchmarkOTelJaegerExtract(b *testing.B) { benchOTelMoreExtract(b, FormatJaeger, jaeger.Jaeger{}) }
func BenchmarkOTelOTExtract(b *testing.B)     { benchOTelMoreExtract(b, FormatOT, ot.OT{}) }
func BenchmarkOTelBaggageExtract(b *testing.B) {
	benchOTelMoreExtract(b, FormatBaggage, propagation.Baggage{})
}
func BenchmarkOTelXRayExtract(b *testing.B) { benchOTelMoreExtract(b, FormatXRay, xray.Propagator{}) }

// moreBenchContext is the context the inject benchmarks write: sampled, with
// three baggage members, X-Ray extras and Datadog tags.
func moreBenchContext(b *testing.B) SpanContext {
	return SpanContext{
		TraceID: mTraceID(b, jgTraceID), SpanID: mSpanID(b, jgSpanID), Sampling: SamplingAccept,
		Baggage: "userId=alice,serverNode=DF%2028,isProduction=false", RequestID: "0f8fad5b-d9cb-469f-a165-70867728950e",
		XRayExtra: "Lineage=a87bd80c:1", DatadogTags: "_dd.p.dm=-4",
	}
}

func BenchmarkMoreInject(b *testing.B) {
	for _, f := range []Format{FormatJaeger, FormatOT, FormatBaggage, FormatXRay, FormatDatadog, FormatRequestID, FormatCustom} {
		c := moreBenchCodec(b, f)
		for _, name := range []string{"ids", "ids+baggage"} {
			sc := moreBenchContext(b)
			if name == "ids" {
				sc.Baggage = ""
			}
			if f == FormatBaggage && name == "ids" {
				continue
			}
			b.Run(f.String()+"/"+name, func(b *testing.B) {
				var w Writer
				b.ReportAllocs()
				for b.Loop() {
					w.Reset()
					c.Inject(&sc, &w)
				}
			})
		}
	}
}

// otelMoreContext is moreBenchContext as an OpenTelemetry context with
// baggage.
func otelMoreContext(b *testing.B, withBaggage bool) context.Context {
	sc := moreBenchContext(b)
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID(sc.TraceID), SpanID: trace.SpanID(sc.SpanID), TraceFlags: trace.FlagsSampled,
	}))
	if !withBaggage {
		return ctx
	}
	bag, err := baggage.Parse(sc.Baggage)
	if err != nil {
		b.Fatal(err)
	}
	return baggage.ContextWithBaggage(ctx, bag)
}

func BenchmarkOTelMoreInject(b *testing.B) {
	for _, tc := range []struct {
		name string
		p    propagation.TextMapPropagator
		bag  bool
	}{
		{"jaeger/ids", jaeger.Jaeger{}, false},
		{"ot/ids", ot.OT{}, false},
		{"ot/ids+baggage", ot.OT{}, true},
		{"baggage/ids+baggage", propagation.Baggage{}, true},
		{"xray/ids", xray.Propagator{}, false},
	} {
		ctx := otelMoreContext(b, tc.bag)
		b.Run(tc.name, func(b *testing.B) {
			h := http.Header{}
			b.ReportAllocs()
			for b.Loop() {
				clear(h)
				tc.p.Inject(ctx, propagation.HeaderCarrier(h))
			}
		})
	}
}
