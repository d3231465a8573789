package kafka

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
)

var t0 = time.Date(2026, 12, 4, 7, 0, 0, 0, time.UTC)

// record is a proxied request with n upstream attempts, a fresh trace.
func record(n int) *exporter.Record {
	r := &exporter.Record{
		Service:   "orders-legacy",
		Instance:  "proxy-1",
		TraceID:   headers.NewTraceID(),
		SegmentID: fmt.Sprintf("%x", headers.NewTraceID()),
		Server: exporter.Span{
			Kind: exporter.KindServer, ID: headers.NewSpanID(), ParentID: headers.NewSpanID(),
			Name: "GET /orders/{id}", Start: t0, Duration: 42 * time.Millisecond, Status: 200,
			Peer: "10.1.2.3:51234",
			Tags: []exporter.Tag{{Key: exporter.TagHTTPMethod, Value: "GET"}, {Key: exporter.TagHTTPPath, Value: "/orders/7"}},
		},
	}
	for i := range n {
		r.Clients = append(r.Clients, exporter.Span{
			Kind: exporter.KindClient, ID: headers.NewSpanID(), ParentID: r.Server.ID,
			Name: "GET /orders/{id}", Start: t0.Add(time.Duration(i+1) * time.Millisecond), Duration: 30 * time.Millisecond,
			Status: 200, Peer: "10.0.0.9:8080",
		})
	}
	return r
}

// cluster starts an in-process Kafka cluster with the topics, 4 partitions
// each.
func cluster(t testing.TB, topics []string, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(4, topics...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// freePort returns a loopback port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newExporter(t testing.TB, cfg Config) *Exporter {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return e
}

func export(e *Exporter, timeout time.Duration, batch ...*exporter.Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return e.Export(ctx, batch)
}

// consume reads the topic from the start until it holds at least n
// messages, failing after a generous deadline; then it polls once more, so
// that extra messages already there are seen too.
func consume(t testing.TB, brokers []string, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		done := len(out) >= n
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
		if done {
			return out
		}
	}
	t.Fatalf("topic %s: %d messages after 30s, want %d", topic, len(out), n)
	return nil
}
