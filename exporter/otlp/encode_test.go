package otlp

import (
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var t0 = time.UnixMilli(1740830400123).Add(456789 * time.Nanosecond)

func testRecord() *exporter.Record {
	return &exporter.Record{
		Service:        "orders-legacy",
		Instance:       "proxy-1",
		TraceID:        headers.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SamplingReason: "rate",
		Flags:          exporter.FlagSampled | exporter.FlagRandom,
		TraceState:     "vendor=a1,other=b2",
		Scheme:         "https",
		Server: exporter.Span{
			Kind:     exporter.KindServer,
			ID:       headers.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
			ParentID: headers.SpanID{9, 9, 9, 9, 9, 9, 9, 9},
			Name:     "GET /orders/{id}",
			Start:    t0,
			Duration: 42 * time.Millisecond,
			Status:   404,
			Peer:     "10.1.2.3:51234",
			Tags: []exporter.Tag{
				{Key: "http.method", Value: "GET"},
				{Key: "http.path", Value: "/orders/7"},
				{Key: "http.host", Value: "shop.example:8443"},
				{Key: "http.response.size", Value: "512"},
				{Key: "request_id", Value: "r-1"},
				{Key: "http.route", Value: "/orders/{id}"},
				{Key: "http.request.header.user-agent", Value: "curl/8"},
				{Key: "http.request.header.x-tenant", Value: "t1"},
				{Key: "http.response.header.content-type", Value: "text/plain"},
			},
		},
		Clients: []exporter.Span{
			{Kind: exporter.KindClient, ID: headers.SpanID{2, 2, 2, 2, 2, 2, 2, 2}, Name: "GET", Start: t0.Add(time.Millisecond),
				Duration: 3 * time.Millisecond, Error: "dial tcp: connection refused", Peer: "[::1]:8080",
				Tags: []exporter.Tag{{Key: "peer.address", Value: "[::1]:8080"}, {Key: "http.request.resend_count", Value: "0"},
					{Key: "error.type", Value: "connection_refused"}},
				Annotations: []exporter.Annotation{{Time: t0.Add(time.Millisecond), Value: "connect.start"}, {Time: t0.Add(4 * time.Millisecond), Value: "connect.done"}}},
			{Kind: exporter.KindClient, ID: headers.SpanID{3, 3, 3, 3, 3, 3, 3, 3}, Name: "GET", Start: t0.Add(5 * time.Millisecond),
				Duration: 30 * time.Millisecond, Status: 404, Peer: "backend:9000"},
		},
	}
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func strs(k string, v ...string) *commonpb.KeyValue {
	vals := make([]*commonpb.AnyValue, len(v))
	for i, s := range v {
		vals[i] = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
	}
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}}}
}

func nanos(t time.Time) uint64 { return uint64(t.UnixNano()) }

// decode unmarshals b with the official stubs and fails on any field the
// stubs do not know: the encoding must be exactly the schema.
func decode(t testing.TB, b []byte) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	var req coltracepb.ExportTraceServiceRequest
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, &req); err != nil {
		t.Fatalf("official stubs refuse the encoding: %v", err)
	}
	noUnknown(t, req.ProtoReflect())
	return &req
}

func noUnknown(t testing.TB, m protoreflect.Message) {
	t.Helper()
	if len(m.GetUnknown()) > 0 {
		t.Fatalf("%s has unknown fields %x", m.Descriptor().FullName(), m.GetUnknown())
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				noUnknown(t, v.List().Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			noUnknown(t, v.Message())
		}
		return true
	})
}

func TestEncodeMatchesStubs(t *testing.T) {
	r := testRecord()
	enc := Encoder{Version: "v1.2.3"}
	got := decode(t, enc.AppendRequest(nil, []*exporter.Record{r}))
	tid := r.TraceID[:]
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			str("service.name", "orders-legacy"), str("service.instance.id", "proxy-1"),
			str("telemetry.sdk.name", "tracingproxy"), str("telemetry.sdk.language", "go"), str("telemetry.sdk.version", "v1.2.3"),
		}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			SchemaUrl: "https://opentelemetry.io/schemas/1.26.0",
			Scope:     &commonpb.InstrumentationScope{Name: "tracingproxy", Version: "v1.2.3"},
			Spans: []*tracepb.Span{
				{
					TraceId: tid, SpanId: r.Server.ID[:], TraceState: "vendor=a1,other=b2", ParentSpanId: r.Server.ParentID[:], Name: "GET /orders/{id}",
					Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: nanos(t0), EndTimeUnixNano: nanos(t0.Add(42 * time.Millisecond)),
					Attributes: []*commonpb.KeyValue{
						str("url.scheme", "https"),
						num("http.response.status_code", 404), str("client.address", "10.1.2.3"), str("network.peer.address", "10.1.2.3"),
						num("network.peer.port", 51234), str("http.request.method", "GET"), str("url.path", "/orders/7"),
						str("server.address", "shop.example"), num("server.port", 8443), num("http.response.body.size", 512), str("request_id", "r-1"),
						str("http.route", "/orders/{id}"), str("user_agent.original", "curl/8"),
						strs("http.request.header.x-tenant", "t1"), strs("http.response.header.content-type", "text/plain"),
						str("tracingproxy.sampling_reason", "rate"),
					},
					// Sampled and random; the parent (the caller's span) is
					// remote. A SERVER 404 is not an error.
					Flags: 0x303,
				},
				{
					TraceId: tid, SpanId: r.Clients[0].ID[:], TraceState: "vendor=a1,other=b2", ParentSpanId: r.Server.ID[:], Name: "GET",
					Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: nanos(t0.Add(time.Millisecond)), EndTimeUnixNano: nanos(t0.Add(4 * time.Millisecond)),
					Attributes: []*commonpb.KeyValue{str("server.address", "::1"), num("server.port", 8080),
						num("http.request.resend_count", 0), str("error.type", "connection_refused")},
					Events: []*tracepb.Span_Event{{TimeUnixNano: nanos(t0.Add(time.Millisecond)), Name: "connect.start"},
						{TimeUnixNano: nanos(t0.Add(4 * time.Millisecond)), Name: "connect.done"}},
					Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "dial tcp: connection refused"},
					Flags:  0x103, // the parent (the SERVER span) is local
				},
				{
					TraceId: tid, SpanId: r.Clients[1].ID[:], TraceState: "vendor=a1,other=b2", ParentSpanId: r.Server.ID[:], Name: "GET",
					Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: nanos(t0.Add(5 * time.Millisecond)), EndTimeUnixNano: nanos(t0.Add(35 * time.Millisecond)),
					Attributes: []*commonpb.KeyValue{num("http.response.status_code", 404), str("server.address", "backend"), num("server.port", 9000), str("error.type", "404")},
					Status:     &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}, // a CLIENT 4xx is
					Flags:      0x103,
				},
			},
		}},
	}}}
	if !proto.Equal(got, want) {
		t.Fatalf("decoded\n%s\nwant\n%s", prototext.Format(got), prototext.Format(want))
	}
}

func TestEncodeStatusRules(t *testing.T) {
	for _, tt := range []struct {
		kind   exporter.Kind
		status int
		err    string
		want   tracepb.Status_StatusCode
	}{
		{exporter.KindServer, 200, "", tracepb.Status_STATUS_CODE_UNSET},
		{exporter.KindServer, 499, "", tracepb.Status_STATUS_CODE_UNSET},
		{exporter.KindServer, 500, "", tracepb.Status_STATUS_CODE_ERROR},
		{exporter.KindServer, 200, "upstream reset", tracepb.Status_STATUS_CODE_ERROR},
		{exporter.KindClient, 302, "", tracepb.Status_STATUS_CODE_UNSET},
		{exporter.KindClient, 400, "", tracepb.Status_STATUS_CODE_ERROR},
		{exporter.KindClient, 503, "", tracepb.Status_STATUS_CODE_ERROR},
	} {
		r := &exporter.Record{Service: "s", Server: exporter.Span{Kind: tt.kind, Status: tt.status, Error: tt.err, Start: t0}}
		got := decode(t, (&Encoder{}).AppendRequest(nil, []*exporter.Record{r}))
		span := got.ResourceSpans[0].ScopeSpans[0].Spans[0]
		if c := span.GetStatus().GetCode(); c != tt.want {
			t.Errorf("%v %d %q: status %v, want %v", tt.kind, tt.status, tt.err, c, tt.want)
		}
	}
}

// Records of different services get a resource each; long values need
// length varints wider than the reserved slot, short ones narrower.
func TestEncodeResourcesAndLengths(t *testing.T) {
	long := strings.Repeat("x", 3<<20)
	a, b := testRecord(), testRecord()
	b.Service = "billing"
	b.Server.Tags = append(b.Server.Tags, exporter.Tag{Key: "big", Value: long})
	c := testRecord()
	c.Service = "billing"
	got := decode(t, (&Encoder{}).AppendRequest(nil, []*exporter.Record{a, b, c}))
	if n := len(got.ResourceSpans); n != 2 {
		t.Fatalf("%d resource spans, want 2", n)
	}
	if n := len(got.ResourceSpans[1].ScopeSpans[0].Spans); n != 6 {
		t.Fatalf("billing has %d spans, want 6", n)
	}
	var found bool
	for _, kv := range got.ResourceSpans[1].ScopeSpans[0].Spans[0].Attributes {
		if kv.Key == "big" {
			found = kv.Value.GetStringValue() == long
		}
	}
	if !found {
		t.Fatal("the 3 MiB attribute did not survive")
	}
}

func TestEncodeZeroAllocs(t *testing.T) {
	batch := []*exporter.Record{testRecord(), testRecord()}
	enc := Encoder{Version: "v1"}
	buf := enc.AppendRequest(nil, batch)
	if n := testing.AllocsPerRun(100, func() { buf = enc.AppendRequest(buf[:0], batch) }); n != 0 {
		t.Fatalf("%v allocations per encode with a warm buffer, want 0", n)
	}
}

func BenchmarkEncode(b *testing.B) {
	batch := make([]*exporter.Record, 64)
	for i := range batch {
		batch[i] = testRecord()
	}
	spans := 0
	for _, r := range batch {
		spans += r.SpanCount()
	}
	enc := Encoder{Version: "v1"}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.AppendRequest(buf[:0], batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*spans), "ns/span")
}

// A batch that interleaves services (handlers of several services sharing
// one exporter) still gets one resource per service, as OpenTelemetry-Go
// groups them, with the spans in batch order within it.
func TestEncodeGroupsResources(t *testing.T) {
	a, b, c := testRecord(), testRecord(), testRecord()
	b.Service = "billing"
	c.Server.ID = headers.SpanID{0xc}
	got := decode(t, (&Encoder{}).AppendRequest(nil, []*exporter.Record{a, b, c}))
	if n := len(got.ResourceSpans); n != 2 {
		t.Fatalf("%d resource spans, want 2", n)
	}
	spans := got.ResourceSpans[0].ScopeSpans[0].Spans
	if len(spans) != 6 || spans[0].SpanId[0] != a.Server.ID[0] || spans[3].SpanId[0] != 0xc {
		t.Fatalf("orders-legacy spans %d, first %x, fourth %x: want a's three then c's", len(spans), spans[0].SpanId, spans[3].SpanId)
	}
	if got.ResourceSpans[1].Resource.Attributes[0].Value.GetStringValue() != "billing" {
		t.Fatalf("second resource %v", got.ResourceSpans[1].Resource)
	}
}
