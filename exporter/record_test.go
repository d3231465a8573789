package exporter

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/tracingproxy/tracingproxy/headers"
)

func TestKindString(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		want string
	}{
		{"server", KindServer, "SERVER"},
		{"client", KindClient, "CLIENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.kind.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRecordSpanCount(t *testing.T) {
	tests := []struct {
		name    string
		clients int
		want    int
	}{
		{"server only", 0, 1},
		{"one upstream attempt", 1, 2},
		{"three upstream attempts", 3, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Record{Clients: make([]Span, tc.clients)}
			if got := r.SpanCount(); got != tc.want {
				t.Fatalf("SpanCount() = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestRecordSize(t *testing.T) {
	const empty = 256 + 128 // a record and its SERVER span, without strings
	tests := []struct {
		name   string
		record Record
		want   int
	}{
		{"empty", Record{}, empty},
		{"service and instance", Record{Service: "orders", Instance: "i-1"}, empty + 9},
		{"skywalking ids", Record{SegmentID: "seg", SWTraceID: "trace"}, empty + 8},
		{"skywalking parent", Record{Parent: headers.SkyWalking{TraceID: "t", SegmentID: "s", SpanID: 3,
			Service: "svc", Instance: "in", Endpoint: "/e", Address: "a:1"}}, empty + 12},
		{"sampling reason", Record{SamplingReason: "ratio"}, empty + 5},
		{"server span strings", Record{Server: Span{Name: "get /", Error: "boom", Peer: "1.2.3.4:5"}}, empty + 5 + 4 + 9},
		{"server tag", Record{Server: Span{Tags: []Tag{{Key: "k", Value: "vv"}}}}, empty + 32 + 3},
		{"client spans", Record{Clients: []Span{{}, {Name: "get /", Tags: []Tag{{Key: "a", Value: "b"}}}}},
			empty + 128 + 128 + 5 + 32 + 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.record.Size(); got != tc.want {
				t.Fatalf("Size() = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestRecordSizeTracksHeap checks that Size, which bounds queue_bytes, stays
// within a factor of two of what records really hold on the heap.
func TestRecordSizeTracksHeap(t *testing.T) {
	tests := []struct {
		name string
		make func(i int) *Record
	}{
		{"typical", testRecord},
		{"three attempts, many tags", func(i int) *Record {
			r := testRecord(i)
			for range 2 {
				r.Clients = append(r.Clients, r.Clients[0])
			}
			for j := range r.Clients {
				for k := range 10 {
					r.Clients[j].Tags = append(r.Clients[j].Tags, Tag{Key: fmt.Sprintf("tag.%d", k), Value: fmt.Sprintf("%032d", i)})
				}
			}
			r.Server.Error = strings.Repeat("e", 200)
			return r
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const n = 5000
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			keep := make([]*Record, n)
			for i := range keep {
				keep[i] = tc.make(i)
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			heap := float64(m1.HeapAlloc-m0.HeapAlloc) / n
			size := float64(keep[0].Size())
			runtime.KeepAlive(keep)
			t.Logf("Size() = %.0f bytes, heap %.0f bytes a record (ratio %.2f)", size, heap, size/heap)
			if size < heap/2 || size > heap*2 {
				t.Fatalf("Size() = %.0f, but a record holds %.0f bytes of heap", size, heap)
			}
		})
	}
}
