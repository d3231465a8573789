package kafka

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/skywalking"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

func traceHex(r *exporter.Record) string { return hex.EncodeToString(r.TraceID[:]) }

// TestEncodings produces one batch in each encoding to its default topic
// and decodes every message with the consumers' own models: zipkin-go's
// SpanModel, the SkyWalking and OTLP protobuf stubs.
func TestEncodings(t *testing.T) {
	c := cluster(t, []string{DefaultZipkinTopic, DefaultSkyWalkingTopic, DefaultOTLPTopic})
	brokers := c.ListenAddrs()
	batch := []*exporter.Record{record(1), record(2), record(0)}
	for _, tc := range []struct {
		encoding, topic string
		check           func(t *testing.T, r *exporter.Record, value []byte)
	}{
		{EncodingZipkinJSON, DefaultZipkinTopic, func(t *testing.T, r *exporter.Record, value []byte) {
			var spans []model.SpanModel
			if err := json.Unmarshal(value, &spans); err != nil {
				t.Fatalf("not a Zipkin v2 span list: %v\n%s", err, value)
			}
			if len(spans) != r.SpanCount() {
				t.Fatalf("%d spans, want %d", len(spans), r.SpanCount())
			}
			for i, s := range spans {
				if s.TraceID.String() != traceHex(r) {
					t.Errorf("span %d trace id %s, want %s", i, s.TraceID, traceHex(r))
				}
			}
			if spans[0].Kind != model.Server || uint64(spans[0].ID) != be64(r.Server.ID[:]) {
				t.Errorf("first span %v %x, want the SERVER span %x", spans[0].Kind, uint64(spans[0].ID), r.Server.ID)
			}
			for i := range r.Clients {
				if s := spans[i+1]; s.Kind != model.Client || uint64(*s.ParentID) != be64(r.Server.ID[:]) {
					t.Errorf("span %d: %v parent %v, want a CLIENT child of the SERVER span", i+1, s.Kind, s.ParentID)
				}
			}
		}},
		{EncodingSkyWalking, DefaultSkyWalkingTopic, func(t *testing.T, r *exporter.Record, value []byte) {
			var seg agentv3.SegmentObject
			if err := proto.Unmarshal(value, &seg); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&seg, skywalking.Segment(r)) {
				t.Errorf("segment differs from skywalking.Segment: %v", &seg)
			}
			if len(seg.Spans) != r.SpanCount() || seg.TraceSegmentId != r.SegmentID {
				t.Errorf("segment %s with %d spans, want %s with %d", seg.TraceSegmentId, len(seg.Spans), r.SegmentID, r.SpanCount())
			}
		}},
		{EncodingOTLPProto, DefaultOTLPTopic, func(t *testing.T, r *exporter.Record, value []byte) {
			var req coltracepb.ExportTraceServiceRequest
			if err := proto.Unmarshal(value, &req); err != nil {
				t.Fatal(err)
			}
			if len(req.ProtoReflect().GetUnknown()) > 0 || len(req.ResourceSpans) != 1 || len(req.ResourceSpans[0].ScopeSpans) != 1 {
				t.Fatalf("want one resource with one scope, got %v", &req)
			}
			spans := req.ResourceSpans[0].ScopeSpans[0].Spans
			if len(spans) != r.SpanCount() {
				t.Fatalf("%d spans, want %d", len(spans), r.SpanCount())
			}
			for i, s := range spans {
				if hex.EncodeToString(s.TraceId) != traceHex(r) {
					t.Errorf("span %d trace id %x, want %s", i, s.TraceId, traceHex(r))
				}
				want := tracepb.Span_SPAN_KIND_CLIENT
				if i == 0 {
					want = tracepb.Span_SPAN_KIND_SERVER
				}
				if s.Kind != want {
					t.Errorf("span %d kind %v, want %v", i, s.Kind, want)
				}
			}
		}},
	} {
		t.Run(tc.encoding, func(t *testing.T) {
			e := newExporter(t, Config{Brokers: brokers, Encoding: tc.encoding, Service: "orders-legacy", Instance: "proxy-1", KeepAlive: -1})
			if err := export(e, 10*time.Second, batch...); err != nil {
				t.Fatal(err)
			}
			msgs := consume(t, brokers, tc.topic, len(batch))
			if len(msgs) != len(batch) {
				t.Fatalf("%d messages, want one per record (%d)", len(msgs), len(batch))
			}
			byKey := map[string]*exporter.Record{}
			for _, r := range batch {
				byKey[traceHex(r)] = r
			}
			for _, m := range msgs {
				r := byKey[string(m.Key)]
				if r == nil {
					t.Fatalf("message key %q is no record's trace id", m.Key)
				}
				delete(byKey, string(m.Key))
				tc.check(t, r, m.Value)
			}
		})
	}
}

func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// TestTraceStaysInOnePartition: every record of a trace is keyed by its
// trace id, so all land in the same partition.
func TestTraceStaysInOnePartition(t *testing.T) {
	c := cluster(t, []string{"spans"})
	e := newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans"})
	var batch []*exporter.Record
	for range 6 {
		trace := record(1).TraceID
		for range 4 { // four hops of one trace through the proxy
			r := record(1)
			r.TraceID = trace
			batch = append(batch, r)
		}
	}
	if err := export(e, 10*time.Second, batch...); err != nil {
		t.Fatal(err)
	}
	msgs := consume(t, c.ListenAddrs(), "spans", len(batch))
	partitions := map[string]map[int32]bool{}
	used := map[int32]bool{}
	for _, m := range msgs {
		if partitions[string(m.Key)] == nil {
			partitions[string(m.Key)] = map[int32]bool{}
		}
		partitions[string(m.Key)][m.Partition] = true
		used[m.Partition] = true
	}
	if len(partitions) != 6 {
		t.Fatalf("%d distinct keys, want 6 traces", len(partitions))
	}
	for k, ps := range partitions {
		if len(ps) != 1 {
			t.Errorf("trace %s spread over partitions %v", k, ps)
		}
	}
	if len(used) < 2 {
		t.Errorf("six traces all in one partition of four: keys are not hashed")
	}
}

// TestSkyWalkingManagement: the instance registers on the management topic
// with the key OAP's kafka-fetcher reads as InstanceProperties, then keeps
// alive with the instance name as key.
func TestSkyWalkingManagement(t *testing.T) {
	c := cluster(t, []string{"prod-skywalking-segments", "prod-skywalking-managements"})
	var mu sync.Mutex // OnError runs on the management goroutine
	var errs []error
	newExporter(t, Config{
		Brokers: c.ListenAddrs(), Encoding: EncodingSkyWalking, Topic: "prod-skywalking-segments",
		Service: "orders-legacy", Instance: "proxy-1", Version: "v9", KeepAlive: 20 * time.Millisecond,
		OnError: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
		},
	})
	msgs := consume(t, c.ListenAddrs(), "prod-skywalking-managements", 3)
	if string(msgs[0].Key) != "register-proxy-1" {
		t.Fatalf("first management message key %q, want register-proxy-1", msgs[0].Key)
	}
	var props managementv3.InstanceProperties
	if err := proto.Unmarshal(msgs[0].Value, &props); err != nil {
		t.Fatal(err)
	}
	if want := skywalking.InstanceProperties("orders-legacy", "proxy-1", "v9"); !proto.Equal(&props, want) {
		t.Errorf("properties %v, want %v", &props, want)
	}
	for _, m := range msgs[1:] {
		if string(m.Key) != "proxy-1" {
			t.Fatalf("keepAlive key %q, want proxy-1", m.Key)
		}
		var ping managementv3.InstancePingPkg
		if err := proto.Unmarshal(m.Value, &ping); err != nil {
			t.Fatal(err)
		}
		if ping.Service != "orders-legacy" || ping.ServiceInstance != "proxy-1" {
			t.Errorf("ping %v", &ping)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 0 {
		t.Errorf("management errors with a live broker: %v", errs)
	}
}

// TestBrokerRefusesEveryMessage: a broker answering a non-retriable error
// to every produce fails the batch for good (the Queue drops it as
// rejected).
func TestBrokerRefusesEveryMessage(t *testing.T) {
	c := cluster(t, []string{"spans"})
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.TopicAuthorizationFailed, Count: -1})
	e := newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans"})
	err := export(e, 10*time.Second, record(1), record(1))
	if err == nil || !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("err = %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if retry, _ := exporter.IsRetryable(err); retry {
		t.Errorf("a refusal for good is retryable: %v", err)
	}
}

// TestOversizedMessagePartial: a record too large for max_message_bytes is
// refused alone; the batch is a partial success counting its spans.
func TestOversizedMessagePartial(t *testing.T) {
	c := cluster(t, []string{"spans"})
	e := newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans", MaxMessageBytes: 4096})
	big := record(2)
	big.Server.Tags = append(big.Server.Tags, exporter.Tag{Key: "big", Value: strings.Repeat("x", 8192)})
	err := export(e, 10*time.Second, record(1), big, record(1))
	n, ok := exporter.IsPartial(err)
	if !ok || n != big.SpanCount() {
		t.Fatalf("err = %v, want a partial success rejecting %d spans", err, big.SpanCount())
	}
	if msgs := consume(t, c.ListenAddrs(), "spans", 2); len(msgs) != 2 {
		t.Errorf("%d messages delivered, want the 2 that fit", len(msgs))
	}
}

// TestSlowBrokerBoundedByContext: a broker that does not answer produce
// requests costs one attempt's timeout, retryable; once it answers, the
// retry delivers.
func TestSlowBrokerBoundedByContext(t *testing.T) {
	c := cluster(t, []string{"spans"})
	release := make(chan struct{})
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	e := newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans", DeliveryTimeout: 300 * time.Millisecond})
	r := record(1)
	start := time.Now()
	err := export(e, 300*time.Millisecond, r)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Export took %s past a 300ms deadline", took)
	}
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Fatalf("err = %v, want retryable", err)
	}
	close(release)
	testutil.Eventually(t, 30*time.Second, "a retry to be delivered", func() bool { return export(e, 2*time.Second, r) == nil })
	msgs := consume(t, c.ListenAddrs(), "spans", 1)
	for _, m := range msgs {
		if string(m.Key) != traceHex(r) {
			t.Errorf("key %q, want %s", m.Key, traceHex(r))
		}
	}
}

// TestShutdownHonoursContext: Shutdown returns at its deadline even with
// the broker gone.
func TestShutdownHonoursContext(t *testing.T) {
	e, err := New(Config{Brokers: []string{"127.0.0.1:" + strconv.Itoa(freePort(t))}, Encoding: EncodingSkyWalking, Service: "s", Instance: "i"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_ = e.Shutdown(ctx)
	if time.Since(start) > 6*time.Second {
		t.Errorf("Shutdown took %s", time.Since(start))
	}
	if err2 := e.Shutdown(ctx); err2 != e.err {
		t.Errorf("second Shutdown = %v, want the first's", err2)
	}
}

// TestShutdownLeaksNoGoroutine: exporters with keepAlive, used and shut
// down, leave no goroutine behind.
func TestShutdownLeaksNoGoroutine(t *testing.T) {
	c := cluster(t, []string{DefaultSkyWalkingTopic, DefaultManagementTopic})
	base := testutil.Goroutines()
	for range 3 {
		e, err := New(Config{Brokers: c.ListenAddrs(), Encoding: EncodingSkyWalking, Service: "s", Instance: "i", KeepAlive: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := export(e, 10*time.Second, record(1)); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	base.Settle(t, 10*time.Second)
}
