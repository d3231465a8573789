package otlp

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
)

// Scope is the instrumentation scope and telemetry.sdk.name of the spans.
const Scope = "tracingproxy"

// SchemaURL names the version of the OpenTelemetry semantic conventions the
// attributes follow (the stable HTTP conventions), as the scope's schema_url.
const SchemaURL = "https://opentelemetry.io/schemas/1.26.0"

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// OTLP span kinds, status codes and span flags (opentelemetry/proto/trace/v1).
const (
	kindInternal = 1
	kindServer   = 2
	kindClient   = 3
	statusError  = 2
	// flagHasIsRemote says the span knows whether its parent is remote;
	// flagIsRemote that it is (SpanFlags, above the W3C trace flags).
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

// Encoder appends ExportTraceServiceRequest messages. Its zero value is
// ready; Version is reported as the scope version and
// telemetry.sdk.version.
type Encoder struct {
	Version string
}

// AppendRequest appends to dst one ExportTraceServiceRequest holding the
// batch's spans in protobuf wire format, one ResourceSpans per service and
// instance, in the order the batch first names them.
func (e *Encoder) AppendRequest(dst []byte, batch []*exporter.Record) []byte {
	for i, r := range batch {
		if seenBefore(batch, i) {
			continue
		}
		var m int
		dst, m = openField(dst, 1) // resource_spans
		dst = e.appendResourceSpans(dst, batch[i:], r)
		dst = closeField(dst, m)
	}
	return dst
}

// sameResource reports whether two records belong to one resource: the
// same service and instance.
func sameResource(a, b *exporter.Record) bool {
	return a.Service == b.Service && a.Instance == b.Instance
}

// seenBefore reports whether a record before batch[i] has its resource.
// With one service per batch, as a handler's queue has, the first record
// answers at once.
func seenBefore(batch []*exporter.Record, i int) bool {
	for _, r := range batch[:i] {
		if sameResource(r, batch[i]) {
			return true
		}
	}
	return false
}

// appendResourceSpans writes the resource of res and the spans of every
// record of rest that has it.
func (e *Encoder) appendResourceSpans(dst []byte, rest []*exporter.Record, res *exporter.Record) []byte {
	var m, a int
	dst, m = openField(dst, 1) // resource
	w := attrs{b: dst, field: 1}
	e.resourceAttrs(&w, res)
	dst = closeField(w.b, m)
	dst, m = openField(dst, 2) // scope_spans
	dst, a = openField(dst, 1) // scope
	dst = appendString(dst, 1, Scope)
	dst = appendString(dst, 2, e.Version)
	dst = closeField(dst, a)
	for _, r := range rest {
		if !sameResource(r, res) {
			continue
		}
		dst = appendSpan(dst, r, &r.Server)
		for k := range r.Clients {
			dst = appendSpan(dst, r, &r.Clients[k])
		}
	}
	dst = appendString(dst, 3, SchemaURL)
	return closeField(dst, m)
}

// resourceAttrs writes the resource: the proxy's service and instance, and
// tracingproxy as the telemetry SDK.
func (e *Encoder) resourceAttrs(w *attrs, r *exporter.Record) {
	w.str("service.name", r.Service)
	if r.Instance != "" {
		w.str("service.instance.id", r.Instance)
	}
	w.str("telemetry.sdk.name", Scope)
	w.str("telemetry.sdk.language", "go")
	if e.Version != "" {
		w.str("telemetry.sdk.version", e.Version)
	}
}

func appendSpan(dst []byte, r *exporter.Record, s *exporter.Span) []byte {
	var m int
	dst, m = openField(dst, 2) // spans
	dst = appendBytes(dst, 1, r.TraceID[:])
	dst = appendBytes(dst, 2, s.ID[:])
	dst = appendString(dst, 3, r.TraceState)
	if parent := parentOf(r, s); parent.IsValid() {
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
	w := attrs{b: dst, field: 9}
	spanAttrs(&w, r, s)
	dst = w.b
	for _, a := range s.Annotations {
		var ev int
		dst, ev = openField(dst, 11) // events
		dst = appendFixed64(dst, 1, uint64(a.Time.UnixNano()))
		dst = appendString(dst, 2, a.Value)
		dst = closeField(dst, ev)
	}
	if failed(s) {
		var st int
		dst, st = openField(dst, 15)
		dst = appendString(dst, 2, s.Error)
		dst = appendVarintField(dst, 3, statusError)
		dst = closeField(dst, st)
	}
	dst = protoTag(dst, 16, wireFixed32)
	dst = binary.LittleEndian.AppendUint32(dst, spanFlags(r, s))
	return closeField(dst, m)
}

// parentOf is the span's parent: the caller's span for the SERVER span
// (none at a trace's root), the SERVER span for a CLIENT or local span.
func parentOf(r *exporter.Record, s *exporter.Span) headers.SpanID {
	if s.Kind != exporter.KindServer && !s.ParentID.IsValid() && s != &r.Server {
		return r.Server.ID
	}
	return s.ParentID
}

// spanFlags are the W3C trace flags the proxy propagated, and whether the
// parent is remote: the SERVER span's parent is the caller's span, a
// CLIENT span's the SERVER span in this process.
func spanFlags(r *exporter.Record, s *exporter.Span) uint32 {
	f := uint32(r.Flags) | flagHasIsRemote
	if s.Kind == exporter.KindServer && s.ParentID.IsValid() {
		f |= flagIsRemote
	}
	return f
}

// failed is the OpenTelemetry HTTP status rule: every 5xx is an error, a
// 4xx only on the client side (the server answered its caller as
// designed), and a span that got no answer failed.
func failed(s *exporter.Span) bool {
	return s.Error != "" || s.Status >= 500 || (s.Kind == exporter.KindClient && s.Status >= 400)
}

// spanAttrs writes the span's attributes in the stable HTTP semantic
// conventions; tags the conventions have no name for keep theirs.
func spanAttrs(w *attrs, r *exporter.Record, s *exporter.Span) {
	server := s.Kind == exporter.KindServer
	if server && r.Scheme != "" {
		w.str(exporter.OTelURLScheme, r.Scheme)
	}
	if s.Status > 0 {
		w.int(exporter.OTelHTTPResponseStatusCode, int64(s.Status))
	}
	if s.Peer != "" {
		host, port := splitHostPort(s.Peer)
		if server {
			w.str(exporter.OTelClientAddress, host)
			w.str(exporter.OTelNetworkPeerAddress, host)
			if port > 0 {
				w.int(exporter.OTelNetworkPeerPort, int64(port))
			}
		} else {
			w.str(exporter.OTelServerAddress, host)
			if port > 0 {
				w.int(exporter.OTelServerPort, int64(port))
			}
		}
	}
	if failed(s) && !hasTag(s, exporter.TagErrorType) {
		// error.type is low-cardinality: the status when there was one,
		// "_OTHER" otherwise, as the conventions ask; an attempt's own
		// error.type tag (connection_refused, timeout, ...) says more.
		if s.Status > 0 {
			var b [20]byte
			w.bytes(exporter.OTelErrorType, strconv.AppendInt(b[:0], int64(s.Status), 10))
		} else {
			w.str(exporter.OTelErrorType, "_OTHER")
		}
	}
	for _, t := range s.Tags {
		switch t.Key {
		case exporter.TagHTTPMethod:
			method(w, t.Value)
		case exporter.TagHTTPHost:
			if server {
				host, port := splitHostPort(t.Value)
				w.str(exporter.OTelServerAddress, host)
				if port > 0 {
					w.int(exporter.OTelServerPort, int64(port))
				}
			} else {
				w.str(t.Key, t.Value)
			}
		case exporter.TagPeerAddress:
			// server.address and server.port above.
		case exporter.TagGRPCStatusCode, exporter.TagResendCount, exporter.TagHTTPResponseSize:
			if n, err := strconv.ParseInt(t.Value, 10, 64); err == nil {
				w.int(exporter.OTelKey(t.Key), n)
			} else {
				w.str(t.Key, t.Value)
			}
		default:
			switch {
			case t.Key == exporter.TagRequestHeaderPrefix+"user-agent":
				w.str(exporter.OTelUserAgentOriginal, t.Value)
			case strings.HasPrefix(t.Key, exporter.TagRequestHeaderPrefix), strings.HasPrefix(t.Key, exporter.TagResponseHeaderPrefix):
				// The conventions' header attributes are string arrays.
				w.strArray(t.Key, t.Value)
			default:
				w.str(exporter.OTelKey(t.Key), t.Value)
			}
		}
	}
	if server && r.SamplingReason != "" {
		w.str("tracingproxy.sampling_reason", r.SamplingReason)
	}
}

// method writes http.request.method: one of the methods the conventions
// know, or _OTHER with the method sent as http.request.method_original.
func method(w *attrs, m string) {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		w.str(exporter.OTelHTTPRequestMethod, m)
	default:
		w.str(exporter.OTelHTTPRequestMethod, "_OTHER")
		w.str(exporter.OTelHTTPRequestMethodOriginal, m)
	}
}

// tagValue returns the value of the span's tag with the key.
func tagValue(s *exporter.Span, key string) (string, bool) {
	for _, t := range s.Tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}

// hasTag reports whether s carries a tag with the key.
func hasTag(s *exporter.Span, key string) bool {
	_, ok := tagValue(s, key)
	return ok
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

// attrs appends KeyValue attributes, as repeated protobuf field `field`,
// or as the elements of an OTLP/JSON array when json is set.
type attrs struct {
	b     []byte
	field int
	json  bool
	n     int // attributes written, for JSON's commas
}

func (w *attrs) str(key, value string) {
	if w.json {
		w.b = appendJSONStringAttr(w.comma(), key, value)
		return
	}
	w.b = appendStringAttr(w.b, w.field, key, value)
}

func (w *attrs) bytes(key string, value []byte) {
	if w.json {
		w.b = appendJSONStringAttr(w.comma(), key, value)
		return
	}
	w.b = appendStringAttr(w.b, w.field, key, value)
}

func (w *attrs) int(key string, value int64) {
	if w.json {
		b := append(w.comma(), `{"key":`...)
		b = appendJSONString(b, key)
		b = append(b, `,"value":{"intValue":"`...)
		b = strconv.AppendInt(b, value, 10)
		w.b = append(b, `"}}`...)
		return
	}
	var m, v int
	w.b, m = openField(w.b, w.field)
	w.b = appendString(w.b, 1, key)
	w.b, v = openField(w.b, 2)
	w.b = protoTag(w.b, 3, wireVarint)
	w.b = binary.AppendUvarint(w.b, uint64(value))
	w.b = closeField(w.b, v)
	w.b = closeField(w.b, m)
}

// strArray writes a string-array attribute of one element.
func (w *attrs) strArray(key, value string) {
	if w.json {
		b := append(w.comma(), `{"key":`...)
		b = appendJSONString(b, key)
		b = append(b, `,"value":{"arrayValue":{"values":[{"stringValue":`...)
		b = appendJSONString(b, value)
		w.b = append(b, `}]}}}`...)
		return
	}
	var m, v, a, e int
	w.b, m = openField(w.b, w.field)
	w.b = appendString(w.b, 1, key)
	w.b, v = openField(w.b, 2)
	w.b, a = openField(w.b, 5) // array_value
	w.b, e = openField(w.b, 1) // values
	w.b = protoTag(w.b, 1, wireBytes)
	w.b = appendLenString(w.b, value)
	w.b = closeField(w.b, e)
	w.b = closeField(w.b, a)
	w.b = closeField(w.b, v)
	w.b = closeField(w.b, m)
}

// comma returns the buffer with the separator the next JSON element needs.
func (w *attrs) comma() []byte {
	w.n++
	if w.n > 1 {
		return append(w.b, ',')
	}
	return w.b
}

// appendStringAttr appends a KeyValue with a string AnyValue as field f.
func appendStringAttr[V string | []byte](dst []byte, f int, key string, value V) []byte {
	var m, v int
	dst, m = openField(dst, f)
	dst = appendString(dst, 1, key)
	dst, v = openField(dst, 2)
	dst = protoTag(dst, 1, wireBytes) // string_value, written even when empty
	dst = appendLenString(dst, value)
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
	return appendLenString(protoTag(dst, f, wireBytes), s)
}

// appendLenString appends the length and bytes of a protobuf string, which
// must be UTF-8: a collector refuses the whole request otherwise, so
// invalid bytes (a request path may hold any) become U+FFFD.
func appendLenString[V string | []byte](dst []byte, s V) []byte {
	at := len(dst)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	start := len(dst)
	dst = append(dst, s...)
	if utf8.Valid(dst[start:]) {
		return dst
	}
	v := strings.ToValidUTF8(string(dst[start:]), "\uFFFD")
	dst = binary.AppendUvarint(dst[:at], uint64(len(v)))
	return append(dst, v...)
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
