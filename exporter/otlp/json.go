package otlp

import (
	"strconv"
	"unicode/utf8"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// AppendJSONRequest appends to dst one ExportTraceServiceRequest in the
// OTLP/JSON encoding: the protobuf JSON mapping with lowerCamelCase keys,
// trace and span ids as hex strings, enums as integers and 64-bit integers
// as decimal strings, the same spans in the same order as AppendRequest.
func (e *Encoder) AppendJSONRequest(dst []byte, batch []*exporter.Record) []byte {
	dst = append(dst, `{"resourceSpans":[`...)
	first := true
	for i, res := range batch {
		if seenBefore(batch, i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, `{"resource":{"attributes":[`...)
		w := attrs{b: dst, json: true}
		e.resourceAttrs(&w, res)
		dst = append(w.b, `]},"scopeSpans":[{"scope":{"name":`...)
		dst = appendJSONString(dst, Scope)
		if e.Version != "" {
			dst = append(dst, `,"version":`...)
			dst = appendJSONString(dst, e.Version)
		}
		dst = append(dst, `},"spans":[`...)
		n := 0
		for _, r := range batch[i:] {
			if !sameResource(r, res) {
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = appendJSONSpan(dst, r, &r.Server)
			for c := range r.Clients {
				dst = append(dst, ',')
				dst = appendJSONSpan(dst, r, &r.Clients[c])
			}
		}
		dst = append(dst, `],"schemaUrl":`...)
		dst = appendJSONString(dst, SchemaURL)
		dst = append(dst, `}]}`...)
	}
	return append(dst, `]}`...)
}

func appendJSONSpan(dst []byte, r *exporter.Record, s *exporter.Span) []byte {
	dst = append(dst, `{"traceId":"`...)
	dst = r.TraceID.AppendHex(dst)
	dst = append(dst, `","spanId":"`...)
	dst = s.ID.AppendHex(dst)
	dst = append(dst, '"')
	if r.TraceState != "" {
		dst = append(dst, `,"traceState":`...)
		dst = appendJSONString(dst, r.TraceState)
	}
	if parent := parentOf(r, s); parent.IsValid() {
		dst = append(dst, `,"parentSpanId":"`...)
		dst = parent.AppendHex(dst)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"flags":`...)
	dst = strconv.AppendUint(dst, uint64(spanFlags(r, s)), 10)
	if s.Name != "" {
		dst = append(dst, `,"name":`...)
		dst = appendJSONString(dst, s.Name)
	}
	if s.Kind == exporter.KindClient {
		dst = append(dst, `,"kind":3`...)
	} else {
		dst = append(dst, `,"kind":2`...)
	}
	start := s.Start.UnixNano()
	dst = append(dst, `,"startTimeUnixNano":`...)
	dst = appendJSONNanos(dst, start)
	dst = append(dst, `,"endTimeUnixNano":`...)
	dst = appendJSONNanos(dst, start+int64(s.Duration))
	dst = append(dst, `,"attributes":[`...)
	w := attrs{b: dst, json: true}
	spanAttrs(&w, r, s)
	dst = append(w.b, ']')
	if len(s.Annotations) > 0 {
		dst = append(dst, `,"events":[`...)
		for i, a := range s.Annotations {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"timeUnixNano":`...)
			dst = appendJSONNanos(dst, a.Time.UnixNano())
			dst = append(dst, `,"name":`...)
			dst = appendJSONString(dst, a.Value)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if failed(s) {
		dst = append(dst, `,"status":{`...)
		if s.Error != "" {
			dst = append(dst, `"message":`...)
			dst = appendJSONString(dst, s.Error)
			dst = append(dst, ',')
		}
		dst = append(dst, `"code":2}`...)
	}
	return append(dst, '}')
}

// appendJSONNanos appends a fixed64 time as the decimal string the protobuf
// JSON mapping gives 64-bit integers.
func appendJSONNanos(dst []byte, ns int64) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, uint64(ns), 10)
	return append(dst, '"')
}

func appendJSONStringAttr[V string | []byte](dst []byte, key string, value V) []byte {
	dst = append(dst, `{"key":`...)
	dst = appendJSONString(dst, key)
	dst = append(dst, `,"value":{"stringValue":`...)
	dst = appendJSONString(dst, value)
	return append(dst, `}}`...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, each run of invalid UTF-8 replaced by U+FFFD.
func appendJSONString[V string | []byte](dst []byte, s V) []byte {
	dst = append(dst, '"')
	start, lastBad := 0, -1
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			// A run of invalid bytes is one U+FFFD, as strings.ToValidUTF8
			// (and so the protobuf encoding) has it.
			dst = append(dst, s[start:i]...)
			if i != lastBad {
				dst = append(dst, `\ufffd`...)
			}
			i++
			start, lastBad = i, i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
