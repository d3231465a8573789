package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/kafka"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// record is a request with n upstream attempts.
func record(n int) *exporter.Record {
	start := time.Date(2026, 12, 4, 7, 0, 0, 0, time.UTC)
	r := &exporter.Record{
		Service: "loadtest", Instance: "proxy-1", TraceID: headers.NewTraceID(),
		SegmentID: fmt.Sprintf("%x", headers.NewTraceID()),
		Server: exporter.Span{Kind: exporter.KindServer, ID: headers.NewSpanID(), Name: "GET /orders/{id}",
			Start: start, Duration: time.Millisecond, Status: 200, Peer: "127.0.0.1:40000"},
	}
	for range n {
		r.Clients = append(r.Clients, exporter.Span{Kind: exporter.KindClient, ID: headers.NewSpanID(), ParentID: r.Server.ID,
			Name: "GET /orders/{id}", Start: start, Duration: time.Millisecond, Status: 200, Peer: "127.0.0.1:9000"})
	}
	return r
}

// TestKafkaConsumerCountsEverySpan: what the kafka exporter produces in
// each encoding, the load test's consumer decodes and counts span for span,
// message for message.
func TestKafkaConsumerCountsEverySpan(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(kafkaPartitions, append(kafkaTopics, kafka.DefaultManagementTopic)...))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var c counter
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := consume(ctx, cluster.ListenAddrs(), &c); err != nil {
		t.Fatal(err)
	}
	batch := []*exporter.Record{record(1), record(2), record(0)} // 6 spans
	wantSpans, wantMsgs := int64(0), int64(0)
	for _, enc := range []string{kafka.EncodingZipkinJSON, kafka.EncodingSkyWalking, kafka.EncodingOTLPProto} {
		e, err := kafka.New(kafka.Config{Brokers: cluster.ListenAddrs(), Encoding: enc, Service: "loadtest", Instance: "proxy-1"})
		if err != nil {
			t.Fatal(err)
		}
		ectx, ecancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = e.Export(ectx, batch)
		ecancel()
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantSpans += 6
		wantMsgs += int64(len(batch))
		testutil.Eventually(t, 30*time.Second, enc+" messages to be counted", func() bool { return c.batches.Load() >= wantMsgs })
		if got := c.spans.Load(); got != wantSpans {
			t.Errorf("after %s: %d spans counted, want %d", enc, got, wantSpans)
		}
	}
	if c.batches.Load() != wantMsgs || c.bad.Load() != 0 {
		t.Errorf("%d messages counted (want %d), %d bad", c.batches.Load(), wantMsgs, c.bad.Load())
	}
}

// TestDecodeMessageRefuses what no exporter sends: a key that is no trace
// id, a value that is not its topic's encoding.
func TestDecodeMessageRefuses(t *testing.T) {
	key := []byte("4bf92f3577b34da6a3ce929d0e0e4736")
	for name, r := range map[string]*kgo.Record{
		"no key":           {Topic: kafka.DefaultZipkinTopic, Value: []byte(`[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"00f067aa0ba902b7"}]`)},
		"zipkin object":    {Topic: kafka.DefaultZipkinTopic, Key: key, Value: []byte(`{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"00f067aa0ba902b7"}`)},
		"zipkin no id":     {Topic: kafka.DefaultZipkinTopic, Key: key, Value: []byte(`[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736"}]`)},
		"segment garbage":  {Topic: kafka.DefaultSkyWalkingTopic, Key: key, Value: []byte{0xff, 0xff, 0xff}},
		"otlp not a proto": {Topic: kafka.DefaultOTLPTopic, Key: key, Value: []byte("[]")},
	} {
		var c counter
		if err := decodeMessage(&c, r); err == nil {
			t.Errorf("%s: decoded", name)
		}
		if c.spans.Load() != 0 {
			t.Errorf("%s: counted %d spans", name, c.spans.Load())
		}
	}
}
