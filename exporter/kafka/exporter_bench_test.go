package kafka

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/zipkin"
	"github.com/tracingproxy/tracingproxy/headers"
)

const benchRecords = 512 // the Queue's default batch size

// benchBatch is the batch the zipkin and otlp benchmarks use: each record a
// SERVER span and a CLIENT span with the tags the proxy writes, plus the
// segment id the skywalking encoding needs.
func benchBatch() []*exporter.Record {
	batch := make([]*exporter.Record, benchRecords)
	start := time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)
	for i := range batch {
		server, client := headers.NewSpanID(), headers.NewSpanID()
		path := fmt.Sprintf("/orders/%d", 1000+i)
		batch[i] = &exporter.Record{
			Service:        "orders-legacy",
			Instance:       "proxy-1",
			TraceID:        headers.NewTraceID(),
			SegmentID:      fmt.Sprintf("%x", headers.NewTraceID()),
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

const benchSpans = 2 * benchRecords

var benchEncodings = []string{EncodingZipkinJSON, EncodingSkyWalking, EncodingOTLPProto}

// BenchmarkEncode is the encoding alone: the keys and messages of a batch
// into the exporter's warm buffer, as Export does before producing.
func BenchmarkEncode(b *testing.B) {
	batch := benchBatch()
	for _, enc := range benchEncodings {
		b.Run(enc, func(b *testing.B) {
			e := &Exporter{encoding: enc}
			for i := range batch {
				e.send = append(e.send, i)
			}
			if err := e.encode(batch); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(e.buf)))
			b.ReportAllocs()
			m0 := mallocs()
			for b.Loop() {
				if err := e.encode(batch); err != nil {
					b.Fatal(err)
				}
			}
			reportPerSpan(b, benchSpans, m0)
		})
	}
}

// BenchmarkExport is the produce cost per span: a whole Export of a batch
// (encoding, the client's batching and compression, the produce request
// and its acknowledgement) to an in-process broker that acknowledges
// without storing (kfake.BlackholeProduce), so the broker's storage is
// not measured. The broker's own decoding of the request runs on the same
// cores.
func BenchmarkExport(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, DefaultZipkinTopic, DefaultSkyWalkingTopic, DefaultOTLPTopic), kfake.BlackholeProduce())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	batch := benchBatch()
	for _, enc := range benchEncodings {
		for _, comp := range []string{CompressionNone, CompressionSnappy} {
			b.Run(enc+"/"+comp, func(b *testing.B) {
				e, err := New(Config{Brokers: c.ListenAddrs(), Encoding: enc, Compression: comp, KeepAlive: -1})
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = e.Shutdown(context.Background()) }()
				if err := e.Export(context.Background(), batch); err != nil { // connect, learn the topic
					b.Fatal(err)
				}
				b.ReportAllocs()
				m0 := mallocs()
				for b.Loop() {
					if err := e.Export(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
				}
				reportPerSpan(b, benchSpans, m0)
			})
		}
	}
}

// BenchmarkExportLinger shows why the client does not linger: the same
// Export of a batch of 1 or 512 records with ProducerLinger(0), as New
// configures it, and with franz-go's default of 10ms. The Queue has batched
// already and waits for the whole batch, so a linger is added to every
// export whatever its size.
func BenchmarkExportLinger(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, DefaultZipkinTopic), kfake.BlackholeProduce())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	full := benchBatch()
	for _, n := range []int{1, benchRecords} {
		for _, linger := range []time.Duration{0, franzGoDefaultLinger} {
			b.Run(fmt.Sprintf("records=%d/linger=%s", n, linger), func(b *testing.B) {
				e, err := newWith(Config{Brokers: c.ListenAddrs()}, kgo.ProducerLinger(linger))
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = e.Shutdown(context.Background()) }()
				batch := full[:n]
				if err := e.Export(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := e.Export(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// franzGoDefaultLinger is kgo's ProducerLinger default, which New overrides.
const franzGoDefaultLinger = 10 * time.Millisecond

// BenchmarkZipkinHTTPExport is the reference for BenchmarkExport in the
// same run: the same batch through the Zipkin HTTP exporter to a local
// collector that discards the body.
func BenchmarkZipkinHTTPExport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	e, err := zipkin.New(zipkin.Config{URL: srv.URL + "/api/v2/spans"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Shutdown(context.Background()) }()
	batch := benchBatch()
	b.ReportAllocs()
	m0 := mallocs()
	for b.Loop() {
		if err := e.Export(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	reportPerSpan(b, benchSpans, m0)
}

// reportPerSpan adds ns/span and allocs/span; mallocs0 is the malloc count
// read before the timed loop. Mallocs are the process's, the client's
// goroutines and the in-process broker's included.
func reportPerSpan(b *testing.B, spans int, mallocs0 uint64) {
	n := float64(b.N) * float64(spans)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/span")
	b.ReportMetric(float64(mallocs()-mallocs0)/n, "allocs/span")
}

func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}
