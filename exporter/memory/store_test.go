package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
)

// span builds a stored span of service svc.
func span(trace, id, parent, svc, kind, name string, ts, dur int64, tags map[string]string) Span {
	return Span{TraceID: trace, ID: id, ParentID: parent, Kind: kind, Name: name, Timestamp: ts, Duration: dur,
		LocalEndpoint: &Endpoint{ServiceName: svc}, Tags: tags}
}

func traceID(i int) string { return fmt.Sprintf("%032x", i+1) }
func spanID(i int) string  { return fmt.Sprintf("%016x", i+1) }

func TestStoreGroupsByTraceAndEvictsOldestFirst(t *testing.T) {
	s := NewStore(3, 1<<30)
	now := time.Now().UnixMicro()
	for i := 0; i < 5; i++ {
		s.Add(span(traceID(i), spanID(0), "", "a", "SERVER", "get /", now, 10, nil))
		s.Add(span(traceID(i), spanID(1), spanID(0), "a", "CLIENT", "get /", now+1, 5, nil))
	}
	st := s.Stats()
	if st.Traces != 3 || st.Evicted != 2 || st.Spans != 10 {
		t.Fatalf("stats = %+v, want 3 traces, 2 evicted, 10 spans", st)
	}
	for i := 0; i < 2; i++ {
		if s.Trace(traceID(i)) != nil {
			t.Errorf("trace %d still stored: the oldest go first", i)
		}
	}
	if got := s.Trace(traceID(4)); len(got) != 2 {
		t.Errorf("newest trace has %d spans, want 2", len(got))
	}
	// A 64-bit spelling of a padded id finds the same trace.
	if got := s.Trace(fmt.Sprintf("%016x", 5)); len(got) != 2 {
		t.Errorf("16-hex lookup found %d spans, want 2", len(got))
	}
}

func TestStoreByteBound(t *testing.T) {
	s := NewStore(1<<20, 64<<10)
	big := map[string]string{"payload": string(make([]byte, 4096))}
	for i := 0; i < 1000; i++ {
		s.Add(span(traceID(i), spanID(0), "", "a", "SERVER", "get /", 1, 1, big))
	}
	st := s.Stats()
	if st.Bytes > 64<<10 || st.Traces == 0 || st.Evicted != uint64(1000-st.Traces) {
		t.Fatalf("stats = %+v: want bytes <= 64 KiB, every trace beyond counted as evicted", st)
	}
}

func TestStoreReplacesARepeatedSpan(t *testing.T) {
	s := NewStore(10, 1<<20)
	s.Add(span(traceID(0), spanID(0), "", "a", "SERVER", "get /", 1, 1, nil))
	before := s.Stats().Bytes
	s.Add(span(traceID(0), spanID(0), "", "a", "SERVER", "get /", 1, 1, nil))
	if got := s.Trace(traceID(0)); len(got) != 1 {
		t.Fatalf("%d spans after a repeated report, want 1", len(got))
	}
	if after := s.Stats().Bytes; after != before {
		t.Errorf("bytes %d after replacing, want %d", after, before)
	}
}

func TestStoreMemoryStaysAtItsBound(t *testing.T) {
	// 200,000 records through the exporter into a store bounded at 1,000
	// traces: it never holds more.
	s := NewStore(1000, 8<<20)
	e := NewExporter(s)
	batch := make([]*exporter.Record, 0, 512)
	start := time.Now()
	for i := 0; i < 200000; i++ {
		r := &exporter.Record{Service: "orders", TraceID: headers.NewTraceID(),
			Server:  exporter.Span{Kind: exporter.KindServer, ID: headers.NewSpanID(), Name: "GET /orders/{id}", Start: start, Duration: time.Millisecond, Status: 200},
			Clients: []exporter.Span{{Kind: exporter.KindClient, ID: headers.NewSpanID(), Name: "GET /orders/{id}", Start: start, Duration: time.Millisecond / 2, Status: 200, Peer: "127.0.0.1:9000"}}}
		r.Clients[0].ParentID = r.Server.ID
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			if err := e.Export(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
			if st := s.Stats(); st.Traces > 1000 || st.Bytes > 8<<20 {
				t.Fatalf("store beyond its bound: %+v", st)
			}
		}
	}
	// Every exported trace was stored once; all but the newest 1,000 were
	// evicted.
	exported := uint64(512 * (200000 / 512))
	if st := s.Stats(); st.Traces != 1000 || st.Evicted != exported-1000 || st.Spans != 2*exported {
		t.Fatalf("stats = %+v, want 1000 traces, %d evicted, %d spans", st, exported-1000, 2*exported)
	}
}

// TestEgressOnlyRecordIsOneClientSpan stores the record of a stitched
// service's outbound call that joined no inbound request (its only span,
// in Server, is the call's CLIENT span, a root of a new trace or a child of
// the context it continued): the store holds one CLIENT span of the
// service, with its parent and its stitch tag.
func TestEgressOnlyRecordIsOneClientSpan(t *testing.T) {
	s := NewStore(10, 1<<20)
	e := NewExporter(s)
	start := time.Now()
	for _, parent := range []headers.SpanID{{}, {1, 2, 3, 4, 5, 6, 7, 8}} {
		id := headers.NewSpanID()
		rec := &exporter.Record{
			Service: "orders-legacy", Instance: "i", TraceID: headers.NewTraceID(),
			Server: exporter.Span{Kind: exporter.KindClient, ID: id, ParentID: parent, Name: "POST /pay",
				Start: start, Duration: time.Millisecond, Status: 200, Peer: "10.0.0.7:8080",
				Tags: []exporter.Tag{{Key: exporter.TagStitch, Value: "none"}, {Key: "peer.service", Value: "payments"}}},
		}
		if err := e.Export(context.Background(), []*exporter.Record{rec}); err != nil {
			t.Fatal(err)
		}
		got := s.Trace(rec.TraceID.String())
		if len(got) != 1 {
			t.Fatalf("stored %d spans, want the call's one", len(got))
		}
		sp := got[0]
		wantParent := ""
		if parent.IsValid() {
			wantParent = parent.String()
		}
		if sp.Kind != "CLIENT" || sp.ID != id.String() || sp.ParentID != wantParent || sp.LocalEndpoint == nil ||
			sp.LocalEndpoint.ServiceName != "orders-legacy" || sp.Tags[exporter.TagStitch] != "none" {
			t.Errorf("stored %+v, want one CLIENT span %s of orders-legacy, parent %q, tagged stitch none", sp, id, wantParent)
		}
	}
}
