package skywalking

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/swtest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
)

// t0 is 1740830400123.456789 ms after the epoch.
var t0 = time.UnixMilli(1740830400123).Add(456789 * time.Nanosecond)

// testRecord is a proxied request that continued a SkyWalking caller's
// trace: the first upstream attempt was refused, the second answered 503.
func testRecord() *exporter.Record {
	return &exporter.Record{
		Service:   "orders-legacy",
		Instance:  "proxy-1@10.0.0.5",
		TraceID:   headers.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SegmentID: "6f1c2a9e4b7d4e0f8a3b5c7d9e1f2a3b",
		SWTraceID: "a7c3e1f0b2d44c6e8f0a1b3c5d7e9f00.51.17408304001230001",
		Server: exporter.Span{
			Kind:     exporter.KindServer,
			Name:     "GET /orders/{id}",
			Start:    t0,
			Duration: 42*time.Millisecond + 400*time.Microsecond,
			Status:   503,
			Peer:     "10.1.2.3:51234",
			Tags: []exporter.Tag{
				{Key: "request_id", Value: "r-1"},
				{Key: "http.path", Value: "/orders/7"},
				{Key: "http.method", Value: "GET"},
			},
		},
		Clients: []exporter.Span{
			{
				Kind:     exporter.KindClient,
				Name:     "GET /orders/7",
				Start:    t0.Add(time.Millisecond),
				Duration: 3 * time.Millisecond,
				Error:    "dial tcp 10.0.0.9:8080: connect: connection refused",
				Peer:     "10.0.0.9:8080",
				Tags:     []exporter.Tag{{Key: "http.method", Value: "GET"}, {Key: "http.path", Value: "/orders/7"}},
			},
			{
				Kind:     exporter.KindClient,
				Name:     "GET /orders/7",
				Start:    t0.Add(5 * time.Millisecond),
				Duration: 30 * time.Millisecond,
				Status:   503,
				Peer:     "10.0.0.10:8080",
				Tags:     []exporter.Tag{{Key: "http.method", Value: "GET"}, {Key: "http.path", Value: "/orders/7"}},
				Annotations: []exporter.Annotation{
					{Time: t0.Add(5 * time.Millisecond), Value: "connect.start"},
					{Time: t0.Add(6 * time.Millisecond), Value: "connect.done"},
					{Time: t0.Add(7 * time.Millisecond), Value: "ws"},
				},
			},
		},
		Parent: headers.SkyWalking{
			TraceID:   "a7c3e1f0b2d44c6e8f0a1b3c5d7e9f00.51.17408304001230001",
			SegmentID: "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f50",
			SpanID:    3,
			Service:   "frontend",
			Instance:  "fe-1@10.0.0.2",
			Endpoint:  "/checkout",
			Address:   "orders-proxy:8080",
		},
	}
}

func kv(k, v string) *commonv3.KeyStringValuePair {
	return &commonv3.KeyStringValuePair{Key: k, Value: v}
}

// wantSegment is testRecord as the SkyWalking protocol specifies it.
func wantSegment() *agentv3.SegmentObject {
	const traceID = "a7c3e1f0b2d44c6e8f0a1b3c5d7e9f00.51.17408304001230001"
	return &agentv3.SegmentObject{
		TraceId:         traceID,
		TraceSegmentId:  "6f1c2a9e4b7d4e0f8a3b5c7d9e1f2a3b",
		Service:         "orders-legacy",
		ServiceInstance: "proxy-1@10.0.0.5",
		Spans: []*agentv3.SpanObject{
			{
				SpanId:       0,
				ParentSpanId: -1,
				StartTime:    1740830400123,
				EndTime:      1740830400165,
				Refs: []*agentv3.SegmentReference{{
					RefType:                  agentv3.RefType_CrossProcess,
					TraceId:                  traceID,
					ParentTraceSegmentId:     "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f50",
					ParentSpanId:             3,
					ParentService:            "frontend",
					ParentServiceInstance:    "fe-1@10.0.0.2",
					ParentEndpoint:           "/checkout",
					NetworkAddressUsedAtPeer: "orders-proxy:8080",
				}},
				OperationName: "GET /orders/{id}",
				Peer:          "10.1.2.3:51234",
				SpanType:      agentv3.SpanType_Entry,
				SpanLayer:     agentv3.SpanLayer_Http,
				ComponentId:   5004,
				IsError:       true,
				Tags: []*commonv3.KeyStringValuePair{
					kv("http.method", "GET"), kv("url", "/orders/7"), kv("http.status_code", "503"), kv("request_id", "r-1"),
				},
			},
			{
				SpanId:        1,
				ParentSpanId:  0,
				StartTime:     1740830400124,
				EndTime:       1740830400127,
				OperationName: "GET /orders/7",
				Peer:          "10.0.0.9:8080",
				SpanType:      agentv3.SpanType_Exit,
				SpanLayer:     agentv3.SpanLayer_Http,
				ComponentId:   5005,
				IsError:       true,
				Tags:          []*commonv3.KeyStringValuePair{kv("http.method", "GET"), kv("url", "/orders/7")},
				Logs: []*agentv3.Log{{
					Time: 1740830400127,
					Data: []*commonv3.KeyStringValuePair{
						kv("event", "error"), kv("message", "dial tcp 10.0.0.9:8080: connect: connection refused"),
					},
				}},
			},
			{
				SpanId:        2,
				ParentSpanId:  0,
				StartTime:     1740830400128,
				EndTime:       1740830400158,
				OperationName: "GET /orders/7",
				Peer:          "10.0.0.10:8080",
				SpanType:      agentv3.SpanType_Exit,
				SpanLayer:     agentv3.SpanLayer_Http,
				ComponentId:   5005,
				IsError:       true,
				Tags: []*commonv3.KeyStringValuePair{
					kv("http.method", "GET"), kv("url", "/orders/7"), kv("http.status_code", "503"),
				},
				Logs: []*agentv3.Log{
					{Time: 1740830400128, Data: []*commonv3.KeyStringValuePair{kv("event", "connect.start")}},
					{Time: 1740830400129, Data: []*commonv3.KeyStringValuePair{kv("event", "connect.done")}},
					{Time: 1740830400130, Data: []*commonv3.KeyStringValuePair{kv("event", "ws")}},
				},
			},
		},
	}
}

func TestSegment(t *testing.T) {
	tests := []struct {
		name   string
		record func(r *exporter.Record)
		want   func(s *agentv3.SegmentObject)
	}{
		{
			name:   "sw8 caller, refused then 503 upstream",
			record: func(*exporter.Record) {},
			want:   func(*agentv3.SegmentObject) {},
		},
		{
			name: "no sw8 caller: no reference, 32-hex trace id",
			record: func(r *exporter.Record) {
				r.Parent = headers.SkyWalking{}
				r.SWTraceID = ""
			},
			want: func(s *agentv3.SegmentObject) {
				s.TraceId = "4bf92f3577b34da6a3ce929d0e0e4736"
				s.Spans[0].Refs = nil
			},
		},
		{
			name: "success: no error flags",
			record: func(r *exporter.Record) {
				r.Server.Status = 200
				r.Clients = r.Clients[1:]
				r.Clients[0].Status = 200
			},
			want: func(s *agentv3.SegmentObject) {
				s.Spans[0].IsError = false
				s.Spans[0].Tags[2].Value = "200"
				s.Spans = []*agentv3.SpanObject{s.Spans[0], s.Spans[2]}
				s.Spans[1].SpanId = 1
				s.Spans[1].IsError = false
				s.Spans[1].Tags[2].Value = "200"
			},
		},
		{
			name: "4xx is not an error",
			record: func(r *exporter.Record) {
				r.Server.Status = 404
				r.Clients = r.Clients[1:]
				r.Clients[0].Status = 404
			},
			want: func(s *agentv3.SegmentObject) {
				s.Spans[0].IsError = false
				s.Spans[0].Tags[2].Value = "404"
				s.Spans = []*agentv3.SpanObject{s.Spans[0], s.Spans[2]}
				s.Spans[1].SpanId = 1
				s.Spans[1].IsError = false
				s.Spans[1].Tags[2].Value = "404"
			},
		},
		{
			name: "a relayed WebSocket session is a Local span without a peer",
			record: func(r *exporter.Record) {
				r.Server.Status = 101
				r.Clients = r.Clients[:1]
				r.Clients[0].Error, r.Clients[0].Status = "", 101
				r.Clients = append(r.Clients, exporter.Span{
					Kind:     exporter.KindLocal,
					Name:     "websocket /orders/{id}",
					Start:    t0.Add(10 * time.Millisecond),
					Duration: 20 * time.Millisecond,
					Tags:     []exporter.Tag{{Key: exporter.TagSessionClosedBy, Value: "client"}},
				})
			},
			want: func(s *agentv3.SegmentObject) {
				s.Spans[0].IsError = false
				s.Spans[0].Tags[2].Value = "101"
				s.Spans[1].IsError = false
				s.Spans[1].Logs = nil
				s.Spans[1].Tags = append(s.Spans[1].Tags, kv("http.status_code", "101"))
				s.Spans[2] = &agentv3.SpanObject{
					SpanId:        2,
					ParentSpanId:  0,
					StartTime:     1740830400133,
					EndTime:       1740830400153,
					OperationName: "websocket /orders/{id}",
					SpanType:      agentv3.SpanType_Local,
					SpanLayer:     agentv3.SpanLayer_Unknown,
					Tags:          []*commonv3.KeyStringValuePair{kv("session.closed_by", "client")},
				}
			},
		},
		{
			name: "upstream never picked: unknown peer, no client tags",
			record: func(r *exporter.Record) {
				r.Clients = r.Clients[:1]
				r.Clients[0].Peer = ""
				r.Clients[0].Tags = nil
			},
			want: func(s *agentv3.SegmentObject) {
				s.Spans = s.Spans[:2]
				s.Spans[1].Peer = UnknownPeer
				s.Spans[1].Tags = nil
			},
		},
		{
			name: "server error message logged",
			record: func(r *exporter.Record) {
				r.Server.Error = "no upstreams available"
				r.Server.Status = 0
				r.Clients = nil
			},
			want: func(s *agentv3.SegmentObject) {
				s.Spans = s.Spans[:1]
				s.Spans[0].Tags = []*commonv3.KeyStringValuePair{kv("http.method", "GET"), kv("url", "/orders/7"), kv("request_id", "r-1")}
				s.Spans[0].Logs = []*agentv3.Log{{
					Time: 1740830400165,
					Data: []*commonv3.KeyStringValuePair{kv("event", "error"), kv("message", "no upstreams available")},
				}}
			},
		},
		{
			name: "zipkin status tag dropped, other tags kept in order",
			record: func(r *exporter.Record) {
				r.Server.Tags = append(r.Server.Tags, exporter.Tag{Key: "http.status_code", Value: "503"}, exporter.Tag{Key: "peer.service", Value: "web"})
			},
			want: func(s *agentv3.SegmentObject) {
				s.Spans[0].Tags = append(s.Spans[0].Tags, kv("peer.service", "web"))
			},
		},
		{
			name: "invalid UTF-8 repaired",
			record: func(r *exporter.Record) {
				r.Server.Name = "GET /a\xff"
				r.Server.Tags = []exporter.Tag{{Key: "http.path", Value: "/a\xff"}}
				r.Clients = nil
			},
			want: func(s *agentv3.SegmentObject) {
				s.Spans = s.Spans[:1]
				s.Spans[0].OperationName = "GET /a\uFFFD"
				s.Spans[0].Tags = []*commonv3.KeyStringValuePair{kv("url", "/a\uFFFD"), kv("http.status_code", "503")}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRecord()
			tt.record(r)
			want := wantSegment()
			tt.want(want)
			got := Segment(r)
			equalProto(t, "segment", got, want)
			if _, err := proto.Marshal(got); err != nil {
				t.Errorf("proto.Marshal: %v", err)
			}
		})
	}
}

// TestSegmentJSONShape checks the protobuf-JSON the HTTP receiver gets:
// lowerCamelCase names, enum names, int64 times as JSON strings.
func TestSegmentJSONShape(t *testing.T) {
	body, err := appendSegmentsJSON(nil, []*agentv3.SegmentObject{Segment(testRecord()), Segment(testRecord())})
	if err != nil {
		t.Fatal(err)
	}
	s := string(body)
	for _, want := range []string{`"traceSegmentId"`, `"serviceInstance"`, `"parentSpanId"`, `"spanType"`, `"Exit"`, `"spanLayer"`, `"Http"`,
		`"componentId"`, `"networkAddressUsedAtPeer"`, `"startTime"`, `"1740830400123"`} {
		if !strings.Contains(strings.ReplaceAll(s, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("JSON lacks %s:\n%s", want, s)
		}
	}
	if s[0] != '[' || s[len(s)-1] != ']' {
		t.Errorf("JSON is not an array: %s", s)
	}
}

func FuzzSegment(f *testing.F) {
	f.Add("GET /orders/{id}", "/orders/7", "10.0.0.9:8080", "refused", "abc.1.2", "seg", 503, int64(42))
	f.Add("\xff", "\xfe\xfe", "", "", "", "", 0, int64(-1))
	f.Fuzz(func(t *testing.T, name, path, peer, errMsg, swTrace, segID string, status int, durMs int64) {
		r := testRecord()
		r.Server.Name, r.SWTraceID, r.SegmentID, r.Parent.Endpoint = name, swTrace, segID, path
		r.Server.Tags = append(r.Server.Tags, exporter.Tag{Key: path, Value: name})
		r.Clients[0].Peer, r.Clients[0].Error, r.Clients[0].Status = peer, errMsg, status
		r.Clients[0].Tags = []exporter.Tag{{Key: "http.path", Value: path}, {Key: "http.method", Value: name}}
		r.Clients[1].Duration = time.Duration(durMs) * time.Millisecond
		seg := Segment(r)
		b, err := proto.Marshal(seg)
		if err != nil {
			t.Fatalf("proto.Marshal: %v", err)
		}
		var back agentv3.SegmentObject
		if err := proto.Unmarshal(b, &back); err != nil {
			t.Fatalf("proto.Unmarshal: %v", err)
		}
		if !proto.Equal(seg, &back) {
			t.Fatal("protobuf round trip changed the segment")
		}
		j, err := protojson.Marshal(seg)
		if err != nil {
			t.Fatalf("protojson.Marshal: %v", err)
		}
		backJSON, err := swtest.DecodeSegment(j)
		if err != nil {
			t.Fatalf("strict protojson decoding: %v", err)
		}
		if !proto.Equal(seg, backJSON) {
			t.Fatal("JSON round trip changed the segment")
		}
		for _, sp := range seg.Spans[1:] {
			if sp.Peer == "" {
				t.Fatal("exit span without peer")
			}
		}
		if !utf8.ValidString(seg.Spans[0].OperationName) {
			t.Fatal("invalid UTF-8 operation name")
		}
	})
}
