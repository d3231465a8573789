package zipkin

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
)

const benchRecords = 512 // the Queue's default batch size

// benchBatch is a realistic batch: each record a SERVER span and a CLIENT
// span with the tags the proxy writes.
func benchBatch() []*exporter.Record {
	batch := make([]*exporter.Record, benchRecords)
	start := time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)
	for i := range batch {
		server, client := headers.NewSpanID(), headers.NewSpanID()
		path := fmt.Sprintf("/orders/%d", 1000+i)
		batch[i] = &exporter.Record{
			Service:        "orders-legacy",
			TraceID:        headers.NewTraceID(),
			SamplingReason: "ratio",
			Server: exporter.Span{
				Kind: exporter.KindServer, ID: server, ParentID: headers.NewSpanID(),
				Name: "GET /orders/{id}", Start: start, Duration: 12345678 * time.Nanosecond,
				Status: 200, Peer: "192.0.2.10:53422",
				Tags: []exporter.Tag{{Key: "http.method", Value: "GET"}, {Key: "http.path", Value: path},
					{Key: "http.host", Value: "orders.example.com"}},
			},
			Clients: []exporter.Span{{
				Kind: exporter.KindClient, ID: client, ParentID: server,
				Name: "GET /orders/{id}", Start: start.Add(150 * time.Microsecond), Duration: 12 * time.Millisecond,
				Status: 200, Peer: "10.0.0.5:8080",
				Tags: []exporter.Tag{{Key: "http.method", Value: "GET"}, {Key: "http.path", Value: path},
					{Key: "peer.service", Value: "orders-upstream"}},
			}},
		}
	}
	return batch
}

func spanCount(batch []*exporter.Record) int {
	n := 0
	for _, r := range batch {
		n += r.SpanCount()
	}
	return n
}

// zipkinGoSpans is benchBatch as zipkin-go's model, with the same fields and
// tags AppendJSON writes.
func zipkinGoSpans(batch []*exporter.Record) []*model.SpanModel {
	var spans []*model.SpanModel
	local := &model.Endpoint{ServiceName: "orders-legacy"}
	for _, r := range batch {
		tid := model.TraceID{High: binary.BigEndian.Uint64(r.TraceID[:8]), Low: binary.BigEndian.Uint64(r.TraceID[8:])}
		for _, s := range append([]exporter.Span{r.Server}, r.Clients...) {
			host, port, _ := net.SplitHostPort(s.Peer)
			var p uint64
			_, _ = fmt.Sscan(port, &p)
			parent := model.ID(s.ParentID.Uint64())
			tags := map[string]string{"http.status_code": fmt.Sprint(s.Status)}
			kind := model.Client
			if s.Kind == exporter.KindServer {
				kind = model.Server
				tags["sampling.reason"] = r.SamplingReason
			}
			for _, t := range s.Tags {
				tags[t.Key] = t.Value
			}
			spans = append(spans, &model.SpanModel{
				SpanContext:    model.SpanContext{TraceID: tid, ID: model.ID(s.ID.Uint64()), ParentID: &parent},
				Name:           s.Name,
				Kind:           kind,
				Timestamp:      s.Start,
				Duration:       s.Duration,
				LocalEndpoint:  local,
				RemoteEndpoint: &model.Endpoint{IPv4: net.ParseIP(host), Port: uint16(p)},
				Tags:           tags,
			})
		}
	}
	return spans
}

// reportPerSpan adds ns/span and allocs/span; mallocs0 is the malloc count
// read before the timed loop.
func reportPerSpan(b *testing.B, spans int, mallocs0 uint64) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	n := float64(b.N) * float64(spans)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/span")
	b.ReportMetric(float64(m.Mallocs-mallocs0)/n, "allocs/span")
}

func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// BenchmarkEncode512 encodes a 512-record batch into a warmed buffer, as
// Exporter.Export does.
func BenchmarkEncode512(b *testing.B) {
	batch := benchBatch()
	buf := AppendJSON(nil, batch)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	m0 := mallocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], batch)
	}
	reportPerSpan(b, spanCount(batch), m0)
}

// BenchmarkZipkinGoMarshal512 encodes the same spans as zipkin-go's HTTP
// reporter does: json.Marshal of the []*model.SpanModel.
func BenchmarkZipkinGoMarshal512(b *testing.B) {
	spans := zipkinGoSpans(benchBatch())
	out, err := json.Marshal(spans)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	m0 := mallocs()
	for b.Loop() {
		if _, err := json.Marshal(spans); err != nil {
			b.Fatal(err)
		}
	}
	reportPerSpan(b, len(spans), m0)
}

// BenchmarkExport512 is a whole export to a local collector that discards
// the body: encoding, optional gzip, the HTTP round trip.
func BenchmarkExport512(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	batch := benchBatch()
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			e, err := New(Config{URL: srv.URL + "/api/v2/spans", Gzip: gz})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = e.Shutdown(context.Background()) }()
			b.ReportAllocs()
			m0 := mallocs()
			for b.Loop() {
				if err := e.Export(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			reportPerSpan(b, spanCount(batch), m0)
		})
	}
}
