package otlp

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// Scope is the instrumentation scope and telemetry.sdk.name of the spans.
const Scope = "tracingproxy"

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// OTLP span kinds and status codes (opentelemetry/proto/trace/v1).
const (
	kindInternal = 1
	kindServer   = 2
	kindClient   = 3
	statusError  = 2
	// flagSampled is W3C trace-flags' sampled bit, carried in Span.flags:
	// every exported record was sampled.
	flagSampled = 0x01
)

// Encoder appends ExportTraceServiceRequest messages. Its zero value is
// ready; Version is reported as the scope version and
// telemetry.sdk.version.
type Encoder struct {
	Version string
}

// AppendRequest appends to dst one ExportTraceServiceRequest holding the
// batch's spans, one ResourceSpans per run of records with the same service
// and instance.
func (e *Encoder) AppendRequest(dst []byte, batch []*exporter.Record) []byte {
	for i := 0; i < len(batch); {
		j := i + 1
		for j < len(batch) && batch[j].Service == batch[i].Service && batch[j].Instance == batch[i].Instance {
			j++
		}
		var m int
		dst, m = openField(dst, 1) // resource_spans
		dst = e.appendResourceSpans(dst, batch[i:j])
		dst = closeField(dst, m)
		i = j
	}
	return dst
}

func (e *Encoder) appendResourceSpans(dst []byte, run []*exporter.Record) []byte {
	var m, a int
	dst, m = openField(dst, 1) // resource
	dst = appendStringAttr(dst, 1, "service.name", run[0].Service)
	if run[0].Instance != "" {
		dst = appendStringAttr(dst, 1, "service.instance.id", run[0].Instance)
	}
	dst = appendStringAttr(dst, 1, "telemetry.sdk.name", Scope)
	dst = appendStringAttr(dst, 1, "telemetry.sdk.language", "go")
	if e.Version != "" {
		dst = appendStringAttr(dst, 1, "telemetry.sdk.version", e.Version)
	}
	dst = closeField(dst, m)
	dst, m = openField(dst, 2) // scope_spans
	dst, a = openField(dst, 1) // scope
	dst = appendString(dst, 1, Scope)
	dst = appendString(dst, 2, e.Version)
	dst = closeField(dst, a)
	for _, r := range run {
		dst = appendSpan(dst, r, &r.Server)
		for k := range r.Clients {
			dst = appendSpan(dst, r, &r.Clients[k])
		}
	}
	return closeField(dst, m)
}

func appendSpan(dst []byte, r *exporter.Record, s *exporter.Span) []byte {
	var m int
	dst, m = openField(dst, 2) // spans
	dst = appendBytes(dst, 1, r.TraceID[:])
	dst = appendBytes(dst, 2, s.ID[:])
	client := s.Kind == exporter.KindClient
	parent := s.ParentID
	if s.Kind != exporter.KindServer && !parent.IsValid() {
		parent = r.Server.ID
	}
	if parent.IsValid() {
		dst = appendBytes(dst, 4, parent[:])
	}
	dst = appendString(dst, 5, s.Name)
	switch s.Kind {
	case exporter.KindClient:
		dst = appendVarintField(dst, 6, kindClient)
	case exporter.KindLocal:
		dst = appendVarintField(dst, 6, kindInternal)
	default:
		dst = appendVarintField(dst, 6, kindServer)
	}
	start := s.Start.UnixNano()
	dst = appendFixed64(dst, 7, uint64(start))
	dst = appendFixed64(dst, 8, uint64(start+int64(s.Duration)))
	dst = appendAttributes(dst, r, s)
	for _, a := range s.Annotations {
		var ev int
		dst, ev = openField(dst, 11) // events
		dst = appendFixed64(dst, 1, uint64(a.Time.UnixNano()))
		dst = appendString(dst, 2, a.Value)
		dst = closeField(dst, ev)
	}
	// The OpenTelemetry HTTP rules: every 5xx is an error, a 4xx only on
	// the client side (the server answered the caller as designed), and a
	// span that got no answer failed.
	if s.Error != "" || s.Status >= 500 || (client && s.Status >= 400) {
		var st int
		dst, st = openField(dst, 15)
		msg := s.Error
		dst = appendString(dst, 2, msg)
		dst = appendVarintField(dst, 3, statusError)
		dst = closeField(dst, st)
	}
	dst = protoTag(dst, 16, wireFixed32)
	dst = binary.LittleEndian.AppendUint32(dst, flagSampled)
	return closeField(dst, m)
}

// appendAttributes writes the span's attributes in the stable HTTP
// semantic conventions.
func appendAttributes(dst []byte, r *exporter.Record, s *exporter.Span) []byte {
	if s.Status > 0 {
		dst = appendIntAttr(dst, 9, "http.response.status_code", int64(s.Status))
	}
	if s.Peer != "" {
		host, port := splitHostPort(s.Peer)
		if s.Kind == exporter.KindClient {
			dst = appendStringAttr(dst, 9, "server.address", host)
			if port > 0 {
				dst = appendIntAttr(dst, 9, "server.port", int64(port))
			}
		} else {
			dst = appendStringAttr(dst, 9, "client.address", host)
			dst = appendStringAttr(dst, 9, "network.peer.address", host)
			if port > 0 {
				dst = appendIntAttr(dst, 9, "network.peer.port", int64(port))
			}
		}
	}
	if (s.Error != "" || s.Status >= 500 || (s.Kind == exporter.KindClient && s.Status >= 400)) && !hasTag(s, exporter.TagErrorType) {
		// error.type is low-cardinality: the status when there was one,
		// "_OTHER" otherwise, as the conventions ask; an attempt's own
		// error.type tag (connection_refused, timeout, ...) says more.
		if s.Status > 0 {
			var b [20]byte
			dst = appendStringAttr(dst, 9, "error.type", strconv.AppendInt(b[:0], int64(s.Status), 10))
		} else {
			dst = appendStringAttr(dst, 9, "error.type", "_OTHER")
		}
	}
	for _, t := range s.Tags {
		switch t.Key {
		case "http.method":
			dst = appendStringAttr(dst, 9, "http.request.method", t.Value)
		case "http.path":
			dst = appendStringAttr(dst, 9, "url.path", t.Value)
		case "http.query":
			dst = appendStringAttr(dst, 9, "url.query", t.Value)
		case "http.host":
			if s.Kind == exporter.KindServer {
				dst = appendStringAttr(dst, 9, "server.address", t.Value)
			} else {
				dst = appendStringAttr(dst, 9, "http.host", t.Value)
			}
		case exporter.TagPeerAddress:
			// server.address and server.port above.
		case exporter.TagGRPCStatusCode:
			if n, err := strconv.ParseInt(t.Value, 10, 64); err == nil {
				dst = appendIntAttr(dst, 9, exporter.OTelRPCGRPCStatusCode, n)
			} else {
				dst = appendStringAttr(dst, 9, t.Key, t.Value)
			}
		case exporter.TagResendCount:
			if n, err := strconv.ParseInt(t.Value, 10, 64); err == nil {
				dst = appendIntAttr(dst, 9, t.Key, n)
			} else {
				dst = appendStringAttr(dst, 9, t.Key, t.Value)
			}
		case "http.response.size":
			if n, err := strconv.ParseInt(t.Value, 10, 64); err == nil {
				dst = appendIntAttr(dst, 9, "http.response.body.size", n)
			} else {
				dst = appendStringAttr(dst, 9, t.Key, t.Value)
			}
		default:
			dst = appendStringAttr(dst, 9, t.Key, t.Value)
		}
	}
	if r.SamplingReason != "" && s.Kind == exporter.KindServer {
		dst = appendStringAttr(dst, 9, "tracingproxy.sampling_reason", r.SamplingReason)
	}
	return dst
}

// hasTag reports whether s carries a tag with the key.
func hasTag(s *exporter.Span, key string) bool {
	for _, t := range s.Tags {
		if t.Key == key {
			return true
		}
	}
	return false
}

// splitHostPort splits host:port, [v6]:port or a bare host.
func splitHostPort(peer string) (string, int) {
	if strings.HasPrefix(peer, "[") {
		if i := strings.Index(peer, "]"); i > 0 {
			host, rest := peer[1:i], peer[i+1:]
			if strings.HasPrefix(rest, ":") {
				return host, parsePort(rest[1:])
			}
			return host, 0
		}
		return peer, 0
	}
	if i := strings.LastIndexByte(peer, ':'); i >= 0 && strings.IndexByte(peer[:i], ':') < 0 {
		return peer[:i], parsePort(peer[i+1:])
	}
	return peer, 0
}

func parsePort(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > math.MaxUint16 {
		return 0
	}
	return n
}

// appendStringAttr appends a KeyValue with a string AnyValue as field f.
func appendStringAttr[V string | []byte](dst []byte, f int, key string, value V) []byte {
	var m, v int
	dst, m = openField(dst, f)
	dst = appendString(dst, 1, key)
	dst, v = openField(dst, 2)
	dst = protoTag(dst, 1, wireBytes) // string_value, written even when empty
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	dst = append(dst, value...)
	dst = closeField(dst, v)
	return closeField(dst, m)
}

// appendIntAttr appends a KeyValue with an int AnyValue as field f.
func appendIntAttr(dst []byte, f int, key string, value int64) []byte {
	var m, v int
	dst, m = openField(dst, f)
	dst = appendString(dst, 1, key)
	dst, v = openField(dst, 2)
	dst = protoTag(dst, 3, wireVarint)
	dst = binary.AppendUvarint(dst, uint64(value))
	dst = closeField(dst, v)
	return closeField(dst, m)
}

func protoTag(dst []byte, f, wire int) []byte {
	return binary.AppendUvarint(dst, uint64(f)<<3|uint64(wire))
}

// appendString appends a non-empty string field; proto3 leaves empty ones
// out.
func appendString(dst []byte, f int, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protoTag(dst, f, wireBytes)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst []byte, f int, b []byte) []byte {
	dst = protoTag(dst, f, wireBytes)
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendVarintField(dst []byte, f int, v uint64) []byte {
	return binary.AppendUvarint(protoTag(dst, f, wireVarint), v)
}

func appendFixed64(dst []byte, f int, v uint64) []byte {
	return binary.LittleEndian.AppendUint64(protoTag(dst, f, wireFixed64), v)
}

// lenSlot is the room openField leaves for a nested message's length: a
// 3-byte varint holds up to 2 MiB; closeField moves the body when the
// length needs fewer or more bytes.
const lenSlot = 3

// openField starts the length-delimited field f and returns the offset of
// its reserved length slot, for closeField.
func openField(dst []byte, f int) ([]byte, int) {
	dst = protoTag(dst, f, wireBytes)
	mark := len(dst)
	return append(dst, 0, 0, 0), mark
}

// closeField writes the length of the message begun at mark with the
// minimal varint, moving its body to close the gap.
func closeField(dst []byte, mark int) []byte {
	body := len(dst) - mark - lenSlot
	var lb [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(lb[:], uint64(body))
	switch {
	case n < lenSlot:
		copy(dst[mark+n:], dst[mark+lenSlot:])
		dst = dst[:len(dst)-(lenSlot-n)]
	case n > lenSlot:
		dst = append(dst, lb[:n-lenSlot]...)
		copy(dst[mark+n:], dst[mark+lenSlot:mark+lenSlot+body])
	}
	copy(dst[mark:], lb[:n])
	return dst
}
