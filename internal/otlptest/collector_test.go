package otlptest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/testutil"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// valid is a request every rule accepts; each bad case breaks one rule.
func valid() *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "s")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8), Name: "GET /",
			Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: 10, EndTimeUnixNano: 20, Flags: 0x101,
			Attributes: []*commonpb.KeyValue{str("url.path", "/")},
		}, {
			TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{3}, 8), ParentSpanId: bytes.Repeat([]byte{2}, 8), Name: "GET",
			Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: 11, EndTimeUnixNano: 19, Flags: 0x101,
		}}}},
	}}}
}

func TestCheckRefusesWhatCollectorsRefuse(t *testing.T) {
	if err := Check(valid()); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	span := func(r *coltracepb.ExportTraceServiceRequest) *tracepb.Span {
		return r.ResourceSpans[0].ScopeSpans[0].Spans[0]
	}
	for name, breakIt := range map[string]func(r *coltracepb.ExportTraceServiceRequest){
		"no service.name":  func(r *coltracepb.ExportTraceServiceRequest) { r.ResourceSpans[0].Resource.Attributes = nil },
		"zero trace id":    func(r *coltracepb.ExportTraceServiceRequest) { span(r).TraceId = make([]byte, 16) },
		"short span id":    func(r *coltracepb.ExportTraceServiceRequest) { span(r).SpanId = []byte{1} },
		"zero parent":      func(r *coltracepb.ExportTraceServiceRequest) { span(r).ParentSpanId = make([]byte, 8) },
		"no kind":          func(r *coltracepb.ExportTraceServiceRequest) { span(r).Kind = 0 },
		"no name":          func(r *coltracepb.ExportTraceServiceRequest) { span(r).Name = "" },
		"end before start": func(r *coltracepb.ExportTraceServiceRequest) { span(r).EndTimeUnixNano = 5 },
		"no remote flag":   func(r *coltracepb.ExportTraceServiceRequest) { span(r).Flags = 1 },
		"attribute twice": func(r *coltracepb.ExportTraceServiceRequest) {
			span(r).Attributes = append(span(r).Attributes, str("url.path", "/x"))
		},
		"attribute unset":   func(r *coltracepb.ExportTraceServiceRequest) { span(r).Attributes[0].Value = &commonpb.AnyValue{} },
		"message, no error": func(r *coltracepb.ExportTraceServiceRequest) { span(r).Status = &tracepb.Status{Message: "x"} },
		"no resource spans": func(r *coltracepb.ExportTraceServiceRequest) { r.ResourceSpans = nil },
	} {
		r := valid()
		breakIt(r)
		if err := Check(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A field the stubs do not know, deep in a span.
	b, _ := proto.Marshal(valid())
	s := valid()
	s.ResourceSpans[0].ScopeSpans[0].Spans[0].ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	b2, _ := proto.Marshal(s)
	if _, err := DecodeProto(b); err != nil {
		t.Fatalf("valid encoding refused: %v", err)
	}
	if _, err := DecodeProto(b2); err == nil || !strings.Contains(err.Error(), "unknown fields") {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := DecodeJSON([]byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090A0B0C0D0E0F10","spanId":"0102030405060708","name":"x","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2","flags":256}]}]}]}`)); err == nil {
		t.Error("uppercase hex trace id accepted")
	}
	if _, err := DecodeJSON([]byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2","flags":256,"color":"red"}]}]}]}`)); err == nil {
		t.Error("unknown JSON field accepted")
	}
}

// Refusing closes the port, recovering reopens the same one; a partial
// success keeps all but the rejected spans.
func TestCollectorFaults(t *testing.T) {
	c := NewHTTP(t)
	b, _ := proto.Marshal(valid())
	post := func() (int, error) {
		res, err := http.Post(c.URL(), "application/x-protobuf", bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	c.Set(t, Fault{Mode: ModeRefuse})
	if _, err := net.Dial("tcp", c.Addr()); err == nil {
		t.Fatal("a refusing collector accepted a connection")
	}
	c.Set(t, Fault{Mode: ModePartial, Reject: 1})
	if code, err := post(); err != nil || code != http.StatusOK {
		t.Fatalf("after recovering: %d %v", code, err)
	}
	if n := len(c.Spans()); n != 1 {
		t.Fatalf("partial success kept %d spans, want 2 - 1", n)
	}
	c.Set(t, Fault{Mode: ModeStatus, Status: http.StatusTooManyRequests, RetryAfter: "1"})
	if code, _ := post(); code != http.StatusTooManyRequests {
		t.Fatalf("status fault answered %d", code)
	}
	if a := c.Attempts(); len(a) != 2 || a[1].Status != http.StatusTooManyRequests || a[1].Accepted || !a[0].Accepted || a[0].Spans != 2 {
		t.Fatalf("attempts %+v", a)
	}
}

// TestCollectorDelayKeepsOnlyWhatAWaitingClientGets checks that a late
// answer counts as received when the client waits for it and never when
// the client gave up (it would send the spans again), over HTTP and gRPC.
func TestCollectorDelayKeepsOnlyWhatAWaitingClientGets(t *testing.T) {
	b, _ := proto.Marshal(valid())
	postHTTP := func(c *Collector, patience time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.URL(), bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/x-protobuf")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err == nil && (res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/x-protobuf") {
			err = fmt.Errorf("answered %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		return err
	}
	postGRPC := func(c *Collector, patience time.Duration) error {
		conn, err := grpc.NewClient(c.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		_, err = coltracepb.NewTraceServiceClient(conn).Export(ctx, valid())
		return err
	}
	for _, tc := range []struct {
		name string
		new  func(testing.TB) *Collector
		post func(*Collector, time.Duration) error
	}{
		{"http", NewHTTP, postHTTP},
		{"grpc", func(t testing.TB) *Collector { return NewGRPC(t) }, postGRPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.new(t)
			c.Set(t, Fault{Mode: ModeDelay, Delay: 20 * time.Millisecond})
			if err := tc.post(c, 5*time.Second); err != nil {
				t.Fatalf("a client waiting for the late answer: %v", err)
			}
			c.Set(t, Fault{Mode: ModeDelay, Delay: 300 * time.Millisecond})
			if err := tc.post(c, 50*time.Millisecond); err == nil {
				t.Fatal("a client that gave up got an answer")
			}
			testutil.Eventually(t, 5*time.Second, "both attempts to end", func() bool { return len(c.Attempts()) == 2 })
			if a := c.Attempts(); !a[0].Accepted || a[1].Accepted {
				t.Errorf("attempts %+v, want the waited-for one accepted and the abandoned one not", a)
			}
			if n := len(c.Spans()); n != 2 {
				t.Errorf("collector holds %d spans, want the 2 of the answered request", n)
			}
		})
	}
}
