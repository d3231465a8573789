package exporter

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The reference is OpenTelemetry's BatchSpanProcessor.OnEnd, the enqueue
// step of the design the Queue follows (a channel instead of a ring), with
// the same queue and batch sizes.

// discardSpanExporter is an otel SpanExporter that keeps nothing.
type discardSpanExporter struct{}

func (discardSpanExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpanExporter) Shutdown(context.Context) error                             { return nil }

// stuckSpanExporter is an otel SpanExporter that hangs until its context ends.
type stuckSpanExporter struct{ entered chan struct{} }

func (e stuckSpanExporter) ExportSpans(ctx context.Context, _ []sdktrace.ReadOnlySpan) error {
	e.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}
func (stuckSpanExporter) Shutdown(context.Context) error { return nil }

func otelSpan() sdktrace.ReadOnlySpan {
	return tracetest.SpanStub{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	})}.Snapshot()
}

// reportDrops adds the share of calls that dropped a record, to show whether
// the worker kept up.
func reportDrops(b *testing.B, q *Queue) {
	b.ReportMetric(float64(totalDropped(q.Stats().Dropped))/float64(b.N), "drops/op")
}

// BenchmarkEnqueue measures Enqueue from one goroutine with a worker that
// exports to a backend that discards everything.
func BenchmarkEnqueue(b *testing.B) {
	q := NewQueue(discardExporter{}, QueueConfig{})
	defer q.Shutdown(context.Background())
	r := testRecord(1)
	b.ReportAllocs()
	for b.Loop() {
		q.Enqueue(r)
	}
	reportDrops(b, q)
}

// BenchmarkEnqueueBytes is BenchmarkEnqueue with a byte bound, which costs
// a Record.Size per call.
func BenchmarkEnqueueBytes(b *testing.B) {
	q := NewQueue(discardExporter{}, QueueConfig{Bytes: 8 << 20})
	defer q.Shutdown(context.Background())
	r := testRecord(1)
	b.ReportAllocs()
	for b.Loop() {
		q.Enqueue(r)
	}
	reportDrops(b, q)
}

// BenchmarkEnqueueParallel measures Enqueue from every P at once, as many
// requests finishing together do.
func BenchmarkEnqueueParallel(b *testing.B) {
	q := NewQueue(discardExporter{}, QueueConfig{})
	defer q.Shutdown(context.Background())
	r := testRecord(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			q.Enqueue(r)
		}
	})
	reportDrops(b, q)
}

// BenchmarkEnqueueFull measures Enqueue into a full queue whose exporter is
// stuck, so every call drops a record.
func BenchmarkEnqueueFull(b *testing.B) {
	for _, drop := range []string{DropOldest, DropNewest} {
		b.Run(drop, func(b *testing.B) {
			exp := newStuckExporter()
			q := NewQueue(exp, QueueConfig{Size: 2048, BatchSize: 512, Drop: drop, Timeout: time.Hour, FlushInterval: time.Hour})
			r := testRecord(1)
			for range 512 + 2048 {
				q.Enqueue(r)
			}
			<-exp.entered
			b.ReportAllocs()
			for b.Loop() {
				q.Enqueue(r)
			}
			b.StopTimer()
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			_ = q.Shutdown(ctx)
		})
	}
}

func BenchmarkOtelBatchSpanProcessorOnEnd(b *testing.B) {
	bsp := sdktrace.NewBatchSpanProcessor(discardSpanExporter{},
		sdktrace.WithMaxQueueSize(8192), sdktrace.WithMaxExportBatchSize(512))
	defer bsp.Shutdown(context.Background())
	s := otelSpan()
	b.ReportAllocs()
	for b.Loop() {
		bsp.OnEnd(s)
	}
}

func BenchmarkOtelBatchSpanProcessorOnEndParallel(b *testing.B) {
	bsp := sdktrace.NewBatchSpanProcessor(discardSpanExporter{},
		sdktrace.WithMaxQueueSize(8192), sdktrace.WithMaxExportBatchSize(512))
	defer bsp.Shutdown(context.Background())
	s := otelSpan()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bsp.OnEnd(s)
		}
	})
}

func BenchmarkOtelBatchSpanProcessorOnEndFull(b *testing.B) {
	exp := stuckSpanExporter{entered: make(chan struct{}, 1)}
	bsp := sdktrace.NewBatchSpanProcessor(exp, sdktrace.WithMaxQueueSize(2048),
		sdktrace.WithMaxExportBatchSize(512), sdktrace.WithExportTimeout(time.Hour))
	s := otelSpan()
	for range 512 + 2048 {
		bsp.OnEnd(s)
	}
	<-exp.entered
	b.ReportAllocs()
	for b.Loop() {
		bsp.OnEnd(s)
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_ = bsp.Shutdown(ctx)
}
