package otlp

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tracingproxy/tracingproxy/exporter"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// decodeJSON decodes an OTLP/JSON body strictly: the OTLP JSON rules (hex
// ids) undone, then protojson with no unknown field allowed.
func decodeJSON(t testing.TB, b []byte) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
					raw, err := hex.DecodeString(s)
					if err != nil || strings.ToLower(s) != s {
						t.Fatalf("%s %q is not lowercase hex", k, s)
					}
					v[k] = base64.StdEncoding.EncodeToString(raw)
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	b, _ = json.Marshal(doc)
	var req coltracepb.ExportTraceServiceRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, &req); err != nil {
		t.Fatalf("protojson refuses the encoding: %v", err)
	}
	return &req
}

// The JSON encoding carries exactly the spans of the protobuf one, strings
// that need escaping and invalid UTF-8 included.
func TestJSONMatchesProtobuf(t *testing.T) {
	odd := testRecord()
	odd.Service = "billing"
	odd.TraceState = ""
	odd.Server.Name = "get /\"quoted\"\\path\n\t\x01"
	odd.Server.Tags = append(odd.Server.Tags, exporter.Tag{Key: "http.path", Value: "/bad\xff\xfeutf8/é"},
		exporter.Tag{Key: "http.method", Value: "PURGE"}, exporter.Tag{Key: "grpc.status_code", Value: "5"})
	odd.Server.ParentID = [8]byte{}
	batch := []*exporter.Record{testRecord(), testRecord(), odd}
	enc := Encoder{Version: "v1.2.3"}
	pb := decode(t, enc.AppendRequest(nil, batch))
	js := decodeJSON(t, enc.AppendJSONRequest(nil, batch))
	if !proto.Equal(pb, js) {
		t.Fatalf("JSON decoded\n%s\nprotobuf decoded\n%s", prototext.Format(js), prototext.Format(pb))
	}
	found := false
	for _, kv := range pb.ResourceSpans[1].ScopeSpans[0].Spans[0].Attributes {
		if kv.Key == "url.path" && kv.Value.GetStringValue() == "/bad\uFFFDutf8/é" {
			found = true
		}
	}
	if !found {
		t.Error("invalid UTF-8 in a path was not replaced by U+FFFD")
	}
}

func TestJSONZeroAllocs(t *testing.T) {
	batch := []*exporter.Record{testRecord(), testRecord()}
	enc := Encoder{Version: "v1"}
	buf := enc.AppendJSONRequest(nil, batch)
	if n := testing.AllocsPerRun(100, func() { buf = enc.AppendJSONRequest(buf[:0], batch) }); n != 0 {
		t.Fatalf("%v allocations per JSON encode with a warm buffer, want 0", n)
	}
}
