// Command loadtest serves the local backends of the load test in
// scripts/loadtest.sh: an upstream that answers every request with a small
// body, and collectors that decode every batch and count its spans: Zipkin
// v2 JSON on POST /api/v2/spans and OTLP/HTTP protobuf on POST /v1/traces
// (the collector address), OTLP/gRPC (the otlp-grpc address), and an
// in-process Kafka cluster (franz-go's kfake) whose topics a consumer reads
// back, decoding every message as its topic's consumer would: a Zipkin v2
// JSON list on zipkin, a SkyWalking SegmentObject on skywalking-segments, an
// OTLP ExportTraceServiceRequest on otlp_spans. GET /count on the collector
// reports the spans and batches (messages, for Kafka) received over all of
// them.
//
// Every listener takes a free loopback port unless a flag names one. Once
// all listen, it prints one name=address line per listener on stdout, then
// "ready"; with -spare n it also reserves n free loopback ports for the
// script's own processes (spare1=..., spare2=...), closed again before it
// prints them.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // gzip-compressed OTLP/gRPC
	"google.golang.org/protobuf/proto"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"

	"github.com/tracingproxy/tracingproxy/exporter/kafka"
)

// counter counts received spans and batches, and batches that did not
// decode.
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

// zipkinSpans decodes a Zipkin v2 JSON list of spans, counting them.
func (c *counter) zipkinSpans(body io.Reader) error {
	var batch []struct {
		TraceID string `json:"traceId"`
		ID      string `json:"id"`
	}
	if err := json.NewDecoder(body).Decode(&batch); err != nil {
		return err
	}
	for _, s := range batch {
		if s.TraceID == "" || s.ID == "" {
			return errors.New("a span without traceId or id")
		}
	}
	c.spans.Add(int64(len(batch)))
	c.batches.Add(1)
	return nil
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

// kafkaTopics are the span topics the consumer reads, the exporter's
// default for each encoding; the management topic is seeded so that the
// skywalking encoding's instance registration has somewhere to go.
var kafkaTopics = []string{kafka.DefaultZipkinTopic, kafka.DefaultSkyWalkingTopic, kafka.DefaultOTLPTopic}

// kafkaPartitions is the partitions of each topic, a small cluster's.
const kafkaPartitions = 4

// consume reads every span topic of the cluster from its start until ctx
// is done, decoding each message by its topic into c.
func consume(ctx context.Context, brokers []string, c *counter) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(kafkaTopics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		return err
	}
	go func() {
		defer cl.Close()
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachError(func(topic string, p int32, err error) {
				if ctx.Err() == nil {
					log.Printf("kafka fetch %s/%d: %v", topic, p, err)
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				if err := decodeMessage(c, r); err != nil {
					c.bad.Add(1)
					log.Printf("kafka %s: %v", r.Topic, err)
				}
			})
		}
	}()
	return nil
}

// decodeMessage counts the spans of one Kafka message.
func decodeMessage(c *counter, r *kgo.Record) error {
	if len(r.Key) != 32 {
		return fmt.Errorf("key %q is not a 32-hex trace id", r.Key)
	}
	switch r.Topic {
	case kafka.DefaultSkyWalkingTopic:
		var seg agentv3.SegmentObject
		if err := proto.Unmarshal(r.Value, &seg); err != nil {
			return err
		}
		c.spans.Add(int64(len(seg.Spans)))
		c.batches.Add(1)
	case kafka.DefaultOTLPTopic:
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(r.Value, &req); err != nil {
			return err
		}
		c.add(&req)
	default:
		return c.zipkinSpans(bytes.NewReader(r.Value))
	}
	return nil
}

// listen listens on addr, 127.0.0.1:0 (a free port) when empty.
func listen(addr string) net.Listener {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	return l
}

func main() {
	upstreamAddr := flag.String("upstream", "", "upstream listen address (default: a free loopback port)")
	collectorAddr := flag.String("collector", "", "collector listen address, Zipkin and OTLP/HTTP (default: a free loopback port)")
	otlpGRPCAddr := flag.String("otlp-grpc", "", "OTLP/gRPC collector listen address (default: a free loopback port)")
	spare := flag.Int("spare", 0, "free loopback ports to reserve and print for other processes")
	flag.Parse()

	var c counter
	upstream, collector, otlpGRPC := listen(*upstreamAddr), listen(*collectorAddr), listen(*otlpGRPCAddr)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(kafkaPartitions, append(kafkaTopics, kafka.DefaultManagementTopic)...))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	ctx, stopConsumer := context.WithCancel(context.Background())
	defer stopConsumer()
	if err := consume(ctx, cluster.ListenAddrs(), &c); err != nil {
		log.Fatal(err)
	}

	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, traceService{c: &c})
	go func() { log.Fatal(srv.Serve(otlpGRPC)) }()
	go func() {
		log.Fatal(http.Serve(upstream, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "ok\n")
		})))
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/spans", func(w http.ResponseWriter, r *http.Request) {
		if err := c.zipkinSpans(r.Body); err != nil {
			c.bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			c.bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "spans %d batches %d rejected %d\n", c.spans.Load(), c.batches.Load(), c.bad.Load())
	})
	go func() { log.Fatal(http.Serve(collector, mux)) }()

	fmt.Printf("upstream=%s\ncollector=%s\notlp_grpc=%s\nkafka=%s\n",
		upstream.Addr(), collector.Addr(), otlpGRPC.Addr(), cluster.ListenAddrs()[0])
	spares := make([]net.Listener, *spare) // held together, so that they differ
	for i := range spares {
		spares[i] = listen("")
	}
	for i, l := range spares {
		fmt.Printf("spare%d=%s\n", i+1, l.Addr())
		_ = l.Close()
	}
	fmt.Println("ready")

	stop, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	<-stop.Done()
}
