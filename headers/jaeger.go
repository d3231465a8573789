package headers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors of the Jaeger codec. Each is a package-level value, so returning one
// allocates nothing; those about ids also match ErrMalformedID or ErrZeroID
// with errors.Is.
var (
	// ErrJaegerFields is an uber-trace-id that is not four fields separated
	// by ':' (or its URL encoding %3A).
	ErrJaegerFields = errors.New("jaeger: uber-trace-id is not four fields separated by ':'")
	// ErrJaegerTraceID is a trace id that is not 1 to 32 hex digits.
	ErrJaegerTraceID = fmt.Errorf("jaeger: trace id: %w", ErrMalformedID)
	// ErrJaegerZeroTraceID is a trace id of value zero.
	ErrJaegerZeroTraceID = fmt.Errorf("jaeger: trace id: %w", ErrZeroID)
	// ErrJaegerSpanID is a span id that is not 1 to 16 hex digits.
	ErrJaegerSpanID = fmt.Errorf("jaeger: span id: %w", ErrMalformedID)
	// ErrJaegerZeroSpanID is a span id of value zero.
	ErrJaegerZeroSpanID = fmt.Errorf("jaeger: span id: %w", ErrZeroID)
	// ErrJaegerParentID is a parent span id that is not 1 to 16 hex digits.
	ErrJaegerParentID = fmt.Errorf("jaeger: parent span id: %w", ErrMalformedID)
	// ErrJaegerFlags is flags that are not 1 or 2 hex digits.
	ErrJaegerFlags = errors.New("jaeger: flags not 1 or 2 hex digits")
)

// Header keys of the Jaeger codec: the canonical trace header and the prefix
// of the baggage headers (one per item, uberctx-{key}).
const (
	headerJaeger        = "Uber-Trace-Id"
	jaegerBaggagePrefix = "Uberctx-"
)

// Jaeger flags this codec knows; the others (firehose 0x08) are ignored.
const (
	jaegerFlagSampled = 0x01
	jaegerFlagDebug   = 0x02
)

// jaegerMaxLen is the longest uber-trace-id Inject writes:
// {32 hex}:{16 hex}:0:{flag}.
const jaegerMaxLen = 32 + 1 + 16 + 1 + 1 + 1 + 1

func init() { register(FormatJaeger, func() Codec { return jaegerCodec{} }) }

// jaegerCodec reads and writes Jaeger's native propagation:
//
//	uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}
//	uberctx-{key}: {value}
//
// Ids are hex of variable length, left-padded (Jaeger clients write them
// without leading zeros); hex digits of either case are read. A trace id of
// up to 16 digits is a 64-bit id (SpanContext.TraceID64). Zero trace and span
// ids are invalid; the deprecated parent span id may be 0 and is kept in
// ParentID otherwise. Flags 0x02 (debug) give SamplingDebug, else 0x01
// (sampled) SamplingAccept, else SamplingDeny. A value URL-encoded by a
// client library carries its separators as %3A: they are read as ':' in
// place, without decoding or allocating (hex digits are never encoded, so
// no other escape can be valid). Of several fields the first is read.
//
// When the trace header is valid, the uberctx-* headers are read into
// SpanContext.Baggage (see prefixedBaggage: values URL-decoded as Jaeger
// clients encode them, '+' a space); that is the one allocation, made only
// when such headers are present. They are not among Fields, since their
// names vary: a stale one passes through unless baggage injection rewrites
// it.
type jaegerCodec struct{}

// Format returns FormatJaeger.
func (jaegerCodec) Format() Format { return FormatJaeger }

// Fields returns Uber-Trace-Id.
func (jaegerCodec) Fields() []string { return []string{headerJaeger} }

// Extract reads the first uber-trace-id field of h and the uberctx-*
// headers.
func (jaegerCodec) Extract(h http.Header, sc *SpanContext) error {
	vs := h[headerJaeger]
	if len(vs) == 0 {
		return ErrAbsent
	}
	if err := parseJaeger(trimOWS(vs[0]), sc); err != nil {
		return err
	}
	sc.Baggage, _ = prefixedBaggage(h, jaegerBaggagePrefix, true)
	return nil
}

// parseJaeger parses one uber-trace-id value into sc.
func parseJaeger(v string, sc *SpanContext) error {
	tid, rest, ok := cutJaeger(v)
	if !ok {
		return ErrJaegerFields
	}
	sid, rest, ok := cutJaeger(rest)
	if !ok {
		return ErrJaegerFields
	}
	pid, flags, ok := cutJaeger(rest)
	if !ok {
		return ErrJaegerFields
	}
	if _, _, more := cutJaeger(flags); more {
		return ErrJaegerFields
	}
	if err := parseVarTraceID(tid, sc, ErrJaegerTraceID, ErrJaegerZeroTraceID); err != nil {
		return err
	}
	if !decodeVarHex(sc.SpanID[:], sid) {
		return ErrJaegerSpanID
	}
	if !sc.SpanID.IsValid() {
		return ErrJaegerZeroSpanID
	}
	if !decodeVarHex(sc.ParentID[:], pid) {
		return ErrJaegerParentID
	}
	var f [1]byte
	if !decodeVarHex(f[:], flags) {
		return ErrJaegerFlags
	}
	switch {
	case f[0]&jaegerFlagDebug != 0:
		sc.Sampling = SamplingDebug
	case f[0]&jaegerFlagSampled != 0:
		sc.Sampling = SamplingAccept
	default:
		sc.Sampling = SamplingDeny
	}
	return nil
}

// cutJaeger cuts s around the first ':' or URL-encoded %3A (either case).
func cutJaeger(s string) (before, after string, found bool) {
	if strings.IndexByte(s, '%') < 0 {
		return strings.Cut(s, ":")
	}
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == ':':
			return s[:i], s[i+1:], true
		case s[i] == '%' && i+2 < len(s) && s[i+1] == '3' && (s[i+2] == 'A' || s[i+2] == 'a'):
			return s[:i], s[i+3:], true
		}
	}
	return s, "", false
}

// parseVarTraceID parses 1 to 32 hex digits of either case into sc.TraceID,
// left-padded; up to 16 digits set sc.TraceID64.
func parseVarTraceID(s string, sc *SpanContext, malformed, zero error) error {
	sc.TraceID64 = len(s) <= 16
	dst := sc.TraceID[:]
	if sc.TraceID64 {
		clear(dst[:8])
		dst = dst[8:]
	}
	if !decodeVarHex(dst, s) {
		return malformed
	}
	if !sc.TraceID.IsValid() {
		return zero
	}
	return nil
}

// decodeVarHex decodes 1 to 2*len(dst) hex digits of either case into dst,
// right-aligned and left-padded with zeros. Like decodeHex it checks the
// digits once at the end. On failure dst holds garbage.
func decodeVarHex(dst []byte, s string) bool {
	if len(s) == 0 || len(s) > 2*len(dst) {
		return false
	}
	clear(dst)
	var bad byte
	j := len(dst) - (len(s)+1)/2 // the byte that takes the first digits
	if len(s)&1 != 0 {
		v := hexValueFold[s[0]]
		bad, dst[j] = v, v&0x0f
		s, j = s[1:], j+1
	}
	for i := 1; i < len(s); i += 2 {
		hi, lo := hexValueFold[s[i-1]], hexValueFold[s[i]]
		bad |= hi | lo
		dst[j+i>>1] = hi<<4 | lo
	}
	return bad <= 0x0f
}

// appendTraceID64 appends the trace id, 16 hex digits when it arrived 64
// bits wide and still fits, else 32.
func appendTraceID64(dst []byte, sc *SpanContext) []byte {
	if sc.TraceID64 && sc.TraceID.Is64() {
		return sc.TraceID.AppendHex64(dst)
	}
	return sc.TraceID.AppendHex(dst)
}

// Inject writes uber-trace-id: the trace id (16 hex digits when it arrived 64
// bits wide, else 32), the span id, the deprecated parent 0, and flags 3
// (debug), 1 (sampled) or 0; and one uberctx-{key} header per member of
// sc.Baggage (see injectPrefixedBaggage), '+' escaped as %2B since Jaeger
// clients URL-decode values. A context without ids writes nothing.
func (jaegerCodec) Inject(sc *SpanContext, w *Writer) {
	if !sc.HasIDs() {
		return
	}
	var b [jaegerMaxLen]byte
	out := appendTraceID64(b[:0], sc)
	out = append(out, ':')
	out = sc.SpanID.AppendHex(out)
	out = append(out, ":0:"...)
	switch sc.Sampling {
	case SamplingDebug:
		out = append(out, '3')
	case SamplingAccept:
		out = append(out, '1')
	default:
		out = append(out, '0')
	}
	w.Set(headerJaeger, string(out))
	injectPrefixedBaggage(sc, w, jaegerBaggagePrefix, true)
}
