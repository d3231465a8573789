// Command loadtest serves the two local backends of the load test in
// scripts/loadtest.sh: an upstream that answers every request with a small
// body, and a collector that decodes every batch and counts its spans: Zipkin
// v2 JSON on POST /api/v2/spans, OTLP/HTTP protobuf on POST /v1/traces, and
// OTLP/gRPC on the -otlp-grpc address. GET /count on the collector reports
// the spans and batches received over all three.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // gzip-compressed OTLP/gRPC
	"google.golang.org/protobuf/proto"
)

// counter counts received spans and batches.
type counter struct {
	spans, batches, bad atomic.Int64
}

func (c *counter) add(req *coltracepb.ExportTraceServiceRequest) {
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans.Add(int64(len(ss.Spans)))
		}
	}
	c.batches.Add(1)
}

// traceService is the OTLP/gRPC receiver.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	c *counter
}

func (s traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.c.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func main() {
	upstream := flag.String("upstream", "127.0.0.1:19000", "upstream listen address")
	collector := flag.String("collector", "127.0.0.1:19411", "collector listen address (Zipkin and OTLP/HTTP)")
	otlpGRPC := flag.String("otlp-grpc", "127.0.0.1:14317", "OTLP/gRPC collector listen address")
	flag.Parse()

	var c counter
	spans, batches, bad := &c.spans, &c.batches, &c.bad
	l, err := net.Listen("tcp", *otlpGRPC)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, traceService{c: &c})
	go func() { log.Fatal(srv.Serve(l)) }()
	go func() {
		log.Fatal(http.ListenAndServe(*upstream, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok\n")
		})))
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/spans", func(w http.ResponseWriter, r *http.Request) {
		var batch []struct {
			TraceID string `json:"traceId"`
			ID      string `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		spans.Add(int64(len(batch)))
		batches.Add(1)
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "spans %d batches %d rejected %d\n", spans.Load(), batches.Load(), bad.Load())
	})
	log.Fatal(http.ListenAndServe(*collector, mux))
}
