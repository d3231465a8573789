package otlptest

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// DecodeProto strictly decodes a protobuf ExportTraceServiceRequest: the
// official stubs, no unknown field at any level, and Check.
func DecodeProto(b []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	var req coltracepb.ExportTraceServiceRequest
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("official stubs refuse the request: %w", err)
	}
	return &req, Check(&req)
}

// DecodeJSON strictly decodes an OTLP/JSON ExportTraceServiceRequest:
// trace and span ids must be lowercase hex (the OTLP/JSON rule, unlike the
// protobuf JSON mapping's base64), then protojson with no unknown field,
// and Check.
func DecodeJSON(b []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if err := hexIDs(doc); err != nil {
		return nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("protojson refuses the request: %w", err)
	}
	return &req, Check(&req)
}

// hexIDs rewrites the hex ids of an OTLP/JSON document as the base64 that
// protojson reads.
func hexIDs(v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == "traceId" || k == "spanId" || k == "parentSpanId" {
				s, ok := x.(string)
				raw, err := hex.DecodeString(s)
				if !ok || err != nil || strings.ToLower(s) != s {
					return fmt.Errorf("%s %v is not a lowercase hex string", k, x)
				}
				v[k] = base64.StdEncoding.EncodeToString(raw)
				continue
			}
			if err := hexIDs(x); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := hexIDs(x); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check applies the rules a collector relies on to a decoded request: no
// unknown field, a service.name on every resource, and for every span a
// 16-byte non-zero trace id, an 8-byte non-zero span id, an empty or 8-byte
// parent, a kind, a name, an end not before its start, flags that say
// whether the parent is remote, and attributes with a key, a value and no
// key twice.
func Check(req *coltracepb.ExportTraceServiceRequest) error {
	if err := noUnknown(req.ProtoReflect()); err != nil {
		return err
	}
	if len(req.ResourceSpans) == 0 {
		return errors.New("request holds no resource spans")
	}
	for _, rs := range req.ResourceSpans {
		name := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				name = kv.GetValue().GetStringValue()
			}
		}
		if name == "" {
			return errors.New("resource without service.name")
		}
		if err := attributesOK("resource", rs.GetResource().GetAttributes()); err != nil {
			return err
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				if err := spanOK(s); err != nil {
					return fmt.Errorf("span %x: %w", s.SpanId, err)
				}
			}
		}
	}
	return nil
}

func spanOK(s *tracepb.Span) error {
	switch {
	case len(s.TraceId) != 16 || allZero(s.TraceId):
		return fmt.Errorf("trace id %x is not 16 non-zero bytes", s.TraceId)
	case len(s.SpanId) != 8 || allZero(s.SpanId):
		return fmt.Errorf("span id %x is not 8 non-zero bytes", s.SpanId)
	case len(s.ParentSpanId) != 0 && (len(s.ParentSpanId) != 8 || allZero(s.ParentSpanId)):
		return fmt.Errorf("parent span id %x is not 8 non-zero bytes", s.ParentSpanId)
	case s.Kind == tracepb.Span_SPAN_KIND_UNSPECIFIED:
		return errors.New("no kind")
	case s.Name == "":
		return errors.New("no name")
	case s.StartTimeUnixNano == 0 || s.EndTimeUnixNano < s.StartTimeUnixNano:
		return fmt.Errorf("times %d..%d", s.StartTimeUnixNano, s.EndTimeUnixNano)
	case s.Flags&uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) == 0:
		return fmt.Errorf("flags %#x do not say whether the parent is remote", s.Flags)
	case s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR && s.Status.GetMessage() != "":
		return fmt.Errorf("status message %q without an error status", s.Status.GetMessage())
	}
	for _, e := range s.Events {
		if e.Name == "" || e.TimeUnixNano == 0 {
			return fmt.Errorf("event %v", e)
		}
	}
	return attributesOK("span", s.Attributes)
}

func attributesOK(where string, kvs []*commonpb.KeyValue) error {
	seen := map[string]bool{}
	for _, kv := range kvs {
		if kv.GetKey() == "" || kv.GetValue() == nil || kv.GetValue().Value == nil {
			return fmt.Errorf("%s attribute %q without a key or a value", where, kv.GetKey())
		}
		if seen[kv.GetKey()] {
			return fmt.Errorf("%s attribute %q twice", where, kv.GetKey())
		}
		seen[kv.GetKey()] = true
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// noUnknown fails on any field the stubs do not know, at any depth.
func noUnknown(m protoreflect.Message) error {
	if len(m.GetUnknown()) > 0 {
		return fmt.Errorf("%s has unknown fields %x", m.Descriptor().FullName(), m.GetUnknown())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = noUnknown(v.List().Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			err = noUnknown(v.Message())
		}
		return err == nil
	})
	return err
}
