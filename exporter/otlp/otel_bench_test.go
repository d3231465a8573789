package otlp

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// marshalClient is an otlptrace.Client that does what OpenTelemetry-Go's
// OTLP clients do with a batch before sending it: proto.Marshal of the
// request the exporter's transform built.
type marshalClient struct{ bytes int }

func (*marshalClient) Start(context.Context) error { return nil }
func (*marshalClient) Stop(context.Context) error  { return nil }
func (c *marshalClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rs})
	c.bytes = len(b)
	return err
}

// BenchmarkEncodeVsOpenTelemetryGo encodes the same batch (64 requests, 192
// spans) with our encoder and with OpenTelemetry-Go's exporter transform +
// marshal (otlptrace.New over marshalClient), in the same run.
func BenchmarkEncodeVsOpenTelemetryGo(b *testing.B) {
	batch := make([]*exporter.Record, 0, 64)
	for len(batch) < cap(batch) {
		batch = append(batch, differentialRecords()...)
	}
	batch = batch[:64]
	spans := 0
	for _, r := range batch {
		spans += r.SpanCount()
	}
	b.Run("tracingproxy", func(b *testing.B) {
		enc := Encoder{Version: "v1"}
		buf := enc.AppendRequest(nil, batch)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			buf = enc.AppendRequest(buf[:0], batch)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*spans), "ns/span")
		b.ReportMetric(float64(len(buf))/float64(spans), "B/span-wire")
	})
	b.Run("opentelemetry-go", func(b *testing.B) {
		ctx := context.Background()
		client := &marshalClient{}
		exp, err := otlptrace.New(ctx, client)
		if err != nil {
			b.Fatal(err)
		}
		ro := otelSpans(b, batch, "v1")
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := exp.ExportSpans(ctx, ro); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*spans), "ns/span")
		b.ReportMetric(float64(client.bytes)/float64(spans), "B/span-wire")
	})
}
