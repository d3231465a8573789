package otlp

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/otlptest"
)

// The differential test and the benchmark describe the same requests to
// OpenTelemetry-Go as the SDK itself would hold them: SpanStubs with the
// records' ids, times, kinds, parents, tracestate and flags, the stable
// HTTP attributes built with OpenTelemetry's own semconv package (names
// and types are theirs, not ours), events, the status rules, and the
// resource and scope. OpenTelemetry-Go's exporter then transforms and
// marshals them.

// differentialRecords are requests of every shape: a 404 continued from a
// caller with a failed attempt and a retry, a new root answered 502 over
// TLS, a gRPC call that failed with grpc-status 5, a method the
// conventions do not know, and a second service.
func differentialRecords() []*exporter.Record {
	a := testRecord()
	b := testRecord()
	b.Server.ParentID = headers.SpanID{}
	b.Server.ID = headers.SpanID{7, 7, 7, 7, 7, 7, 7, 7}
	b.TraceState, b.Flags, b.Scheme = "", exporter.FlagSampled, "https"
	b.Server.Status, b.Server.Error = 502, "upstream: connection refused"
	b.Clients = b.Clients[:1]
	c := testRecord()
	c.Service, c.Instance = "inventory", ""
	c.TraceID[0] = 0x77
	c.Server.Status, c.Server.Error = 200, "grpc-status 5 NOT_FOUND: no such item"
	c.Server.Tags = append(c.Server.Tags, exporter.Tag{Key: exporter.TagGRPCStatusCode, Value: "5"})
	c.Server.Tags[0] = exporter.Tag{Key: exporter.TagHTTPMethod, Value: "PURGE"}
	c.Clients = c.Clients[1:]
	c.Clients[0].Status = 200
	c.Clients[0].Tags = []exporter.Tag{{Key: exporter.TagHTTPMethod, Value: "PURGE"}, {Key: exporter.TagResendCount, Value: "0"}, {Key: exporter.TagConnectionReused, Value: "true"}}
	return []*exporter.Record{a, b, c}
}

// otelSpans describes the records as OpenTelemetry-Go's SDK holds spans.
func otelSpans(t testing.TB, batch []*exporter.Record, version string) []sdktrace.ReadOnlySpan {
	t.Helper()
	var stubs tracetest.SpanStubs
	for _, r := range batch {
		res := []attribute.KeyValue{semconv.ServiceName(r.Service)}
		if r.Instance != "" {
			res = append(res, semconv.ServiceInstanceID(r.Instance))
		}
		res = append(res, semconv.TelemetrySDKName("tracingproxy"), semconv.TelemetrySDKLanguageGo)
		if version != "" {
			res = append(res, semconv.TelemetrySDKVersion(version))
		}
		ts, err := trace.ParseTraceState(r.TraceState)
		if err != nil {
			t.Fatal(err)
		}
		own := func(id headers.SpanID) trace.SpanContext {
			return trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID(r.TraceID), SpanID: trace.SpanID(id), TraceFlags: trace.TraceFlags(r.Flags), TraceState: ts})
		}
		for i := -1; i < len(r.Clients); i++ {
			s, kind, parent := &r.Server, trace.SpanKindServer, trace.SpanContext{}
			if s.ParentID.IsValid() {
				parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID(r.TraceID), SpanID: trace.SpanID(s.ParentID), TraceFlags: trace.TraceFlags(r.Flags), TraceState: ts, Remote: true})
			}
			if i >= 0 {
				s, kind, parent = &r.Clients[i], trace.SpanKindClient, own(r.Server.ID)
			}
			stub := tracetest.SpanStub{
				Name: s.Name, SpanContext: own(s.ID), Parent: parent, SpanKind: kind,
				StartTime: s.Start, EndTime: s.Start.Add(s.Duration),
				Attributes:           semconvAttributes(r, s),
				Resource:             resource.NewSchemaless(res...),
				InstrumentationScope: instrumentation.Scope{Name: "tracingproxy", Version: version, SchemaURL: semconv.SchemaURL},
			}
			for _, a := range s.Annotations {
				stub.Events = append(stub.Events, sdktrace.Event{Name: a.Value, Time: a.Time})
			}
			if s.Error != "" || s.Status >= 500 || kind == trace.SpanKindClient && s.Status >= 400 {
				stub.Status = sdktrace.Status{Code: codes.Error, Description: s.Error}
			}
			stubs = append(stubs, stub)
		}
	}
	return stubs.Snapshots()
}

// semconvAttributes are a span's attributes as the OpenTelemetry semantic
// conventions name and type them.
func semconvAttributes(r *exporter.Record, s *exporter.Span) []attribute.KeyValue {
	server := s.Kind == exporter.KindServer
	var kv []attribute.KeyValue
	if server && r.Scheme != "" {
		kv = append(kv, semconv.URLScheme(r.Scheme))
	}
	if s.Status > 0 {
		kv = append(kv, semconv.HTTPResponseStatusCode(s.Status))
	}
	if s.Peer != "" {
		host, port := splitHostPort(s.Peer)
		if server {
			kv = append(kv, semconv.ClientAddress(host), semconv.NetworkPeerAddress(host), semconv.NetworkPeerPort(port))
		} else {
			kv = append(kv, semconv.ServerAddress(host), semconv.ServerPort(port))
		}
	}
	failed := s.Error != "" || s.Status >= 500 || !server && s.Status >= 400
	hasType := false
	for _, t := range s.Tags {
		hasType = hasType || t.Key == exporter.TagErrorType
	}
	if failed && !hasType {
		if s.Status > 0 {
			kv = append(kv, semconv.ErrorTypeKey.String(strconv.Itoa(s.Status)))
		} else {
			kv = append(kv, semconv.ErrorTypeOther)
		}
	}
	for _, t := range s.Tags {
		n, _ := strconv.Atoi(t.Value)
		switch {
		case t.Key == exporter.TagHTTPMethod && t.Value == "GET":
			kv = append(kv, semconv.HTTPRequestMethodGet)
		case t.Key == exporter.TagHTTPMethod:
			kv = append(kv, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(t.Value))
		case t.Key == exporter.TagHTTPPath:
			kv = append(kv, semconv.URLPath(t.Value))
		case t.Key == exporter.TagHTTPHost:
			host, port := splitHostPort(t.Value)
			kv = append(kv, semconv.ServerAddress(host), semconv.ServerPort(port))
		case t.Key == exporter.TagHTTPRoute:
			kv = append(kv, semconv.HTTPRoute(t.Value))
		case t.Key == exporter.TagHTTPResponseSize:
			kv = append(kv, semconv.HTTPResponseBodySize(n))
		case t.Key == exporter.TagResendCount:
			kv = append(kv, semconv.HTTPRequestResendCount(n))
		case t.Key == exporter.TagGRPCStatusCode:
			kv = append(kv, semconv.RPCGRPCStatusCodeKey.Int(n))
		case t.Key == exporter.TagPeerAddress:
		case t.Key == "http.request.header.user-agent":
			kv = append(kv, semconv.UserAgentOriginal(t.Value))
		case strings.HasPrefix(t.Key, "http.request.header."), strings.HasPrefix(t.Key, "http.response.header."):
			kv = append(kv, attribute.StringSlice(t.Key, []string{t.Value}))
		default:
			kv = append(kv, attribute.String(t.Key, t.Value))
		}
	}
	if server && r.SamplingReason != "" {
		kv = append(kv, attribute.String("tracingproxy.sampling_reason", r.SamplingReason))
	}
	return kv
}

// normalise orders what OTLP leaves unordered: resources by service name
// (OpenTelemetry-Go groups them through a map), attributes by key; an
// absent status is the empty one OpenTelemetry-Go always writes.
func normalise(req *coltracepb.ExportTraceServiceRequest) {
	byKey := func(a, b *commonpb.KeyValue) int { return cmp.Compare(a.Key, b.Key) }
	name := func(rs *tracepb.ResourceSpans) string {
		for _, kv := range rs.Resource.Attributes {
			if kv.Key == "service.name" {
				return kv.Value.GetStringValue()
			}
		}
		return ""
	}
	slices.SortFunc(req.ResourceSpans, func(a, b *tracepb.ResourceSpans) int { return cmp.Compare(name(a), name(b)) })
	for _, rs := range req.ResourceSpans {
		slices.SortFunc(rs.Resource.Attributes, byKey)
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				slices.SortFunc(s.Attributes, byKey)
				if s.Status == nil {
					s.Status = &tracepb.Status{}
				}
			}
		}
	}
}

// TestDifferentialWithOpenTelemetryGo sends the same requests through
// OpenTelemetry-Go's own OTLP exporters (HTTP and gRPC) and through ours to
// strict collectors on the official stubs: both decode to the same
// ExportTraceServiceRequest, resource, scope, ids, parents, times, kinds,
// attributes (names and types), events, status, tracestate and flags.
func TestDifferentialWithOpenTelemetryGo(t *testing.T) {
	const version = "v1.2.3"
	batch := differentialRecords()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		new    func(testing.TB) *otlptest.Collector
		client func(c *otlptest.Collector) otlptrace.Client
	}{
		{"http", otlptest.NewHTTP, func(c *otlptest.Collector) otlptrace.Client {
			return otlptracehttp.NewClient(otlptracehttp.WithEndpointURL(c.URL()), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
		}},
		{"grpc", func(t testing.TB) *otlptest.Collector { return otlptest.NewGRPC(t) }, func(c *otlptest.Collector) otlptrace.Client {
			return otlptracegrpc.NewClient(otlptracegrpc.WithEndpoint(c.Addr()), otlptracegrpc.WithInsecure(), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			theirs, ours := tc.new(t), tc.new(t)
			exp, err := otlptrace.New(ctx, tc.client(theirs))
			if err != nil {
				t.Fatal(err)
			}
			defer exp.Shutdown(ctx)
			if err := exp.ExportSpans(ctx, otelSpans(t, batch, version)); err != nil {
				t.Fatalf("OpenTelemetry-Go's exporter: %v", err)
			}
			if err := export(newExporter(t, Config{URL: ours.URL(), Version: version}), batch...); err != nil {
				t.Fatal(err)
			}
			want, rejected := theirs.Requests()
			if len(want) != 1 || len(rejected) != 0 {
				t.Fatalf("OpenTelemetry-Go's request: %d accepted, rejected %v", len(want), rejected)
			}
			got, rejected := ours.Requests()
			if len(got) != 1 || len(rejected) != 0 {
				t.Fatalf("our request: %d accepted, rejected %v", len(got), rejected)
			}
			normalise(want[0])
			normalise(got[0])
			if !proto.Equal(got[0], want[0]) {
				t.Fatalf("ours decoded\n%s\nOpenTelemetry-Go's\n%s", prototext.Format(got[0]), prototext.Format(want[0]))
			}
		})
	}
}
