package headers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors of the OpenTracing codec. Each is a package-level value, so
// returning one allocates nothing; those about ids also match ErrMalformedID
// or ErrZeroID with errors.Is.
var (
	// ErrOTTraceID is an ot-tracer-traceid that is not 1 to 32 hex digits.
	ErrOTTraceID = fmt.Errorf("ot: trace id: %w", ErrMalformedID)
	// ErrOTZeroTraceID is a trace id of value zero.
	ErrOTZeroTraceID = fmt.Errorf("ot: trace id: %w", ErrZeroID)
	// ErrOTSpanID is an ot-tracer-spanid that is not 1 to 16 hex digits.
	ErrOTSpanID = fmt.Errorf("ot: span id: %w", ErrMalformedID)
	// ErrOTZeroSpanID is a span id of value zero.
	ErrOTZeroSpanID = fmt.Errorf("ot: span id: %w", ErrZeroID)
	// ErrOTSampled is an ot-tracer-sampled other than true, false, 1 or 0.
	ErrOTSampled = errors.New("ot: invalid ot-tracer-sampled")
	// ErrOTScope is a trace id without a span id or the reverse, or a
	// sampled flag without ids.
	ErrOTScope = errors.New("ot: trace id and span id must come together")
)

// Header keys of the OpenTracing codec, canonical, and the prefix of the
// baggage headers (one per item, ot-baggage-{key}).
const (
	headerOTTraceID    = "Ot-Tracer-Traceid"
	headerOTSpanID     = "Ot-Tracer-Spanid"
	headerOTSampled    = "Ot-Tracer-Sampled"
	otBaggagePrefix    = "Ot-Baggage-"
	otSampledTrue      = "true"
	otSampledFalse     = "false"
	otSampledTrueNum   = "1"
	otSampledFalseNum  = "0"
	otTraceIDMaxDigits = 32
)

func init() { register(FormatOT, func() Codec { return otCodec{} }) }

// otCodec reads and writes the OpenTracing basic tracer's HTTP headers:
//
//	ot-tracer-traceid: {16 or 32 hex}
//	ot-tracer-spanid:  {16 hex}
//	ot-tracer-sampled: true|false
//	ot-baggage-{key}:  {value}
//
// Ids are read like Jaeger's: 1 to 32 (trace) or 1 to 16 (span) hex digits
// of either case, left-padded, because the Go basic tracer writes them with
// strconv.FormatUint, without leading zeros; up to 16 trace-id digits are a
// 64-bit id. ot-tracer-sampled reads true/false (and 1/0) in any case;
// absent, sampling is unset. Trace and span id must come together.
//
// When the ids are valid the ot-baggage-* headers are read into
// SpanContext.Baggage (see prefixedBaggage: values percent-decoded
// leniently, '+' literal); that is the one allocation, made only when such
// headers are present.
type otCodec struct{}

// Format returns FormatOT.
func (otCodec) Format() Format { return FormatOT }

// Fields returns the three ot-tracer-* headers.
func (otCodec) Fields() []string {
	return []string{headerOTTraceID, headerOTSpanID, headerOTSampled}
}

// Extract reads the first value of each ot-tracer-* header and the
// ot-baggage-* headers.
func (otCodec) Extract(h http.Header, sc *SpanContext) error {
	tid, hasTrace := firstValue(h, headerOTTraceID)
	sid, hasSpan := firstValue(h, headerOTSpanID)
	sampled, hasSampled := firstValue(h, headerOTSampled)
	if !hasTrace && !hasSpan && !hasSampled {
		return ErrAbsent
	}
	if !hasTrace || !hasSpan {
		return ErrOTScope
	}
	if err := parseVarTraceID(trimOWS(tid), sc, ErrOTTraceID, ErrOTZeroTraceID); err != nil {
		return err
	}
	if !decodeVarHex(sc.SpanID[:], trimOWS(sid)) {
		return ErrOTSpanID
	}
	if !sc.SpanID.IsValid() {
		return ErrOTZeroSpanID
	}
	if hasSampled {
		switch s := trimOWS(sampled); {
		case strings.EqualFold(s, otSampledTrue) || s == otSampledTrueNum:
			sc.Sampling = SamplingAccept
		case strings.EqualFold(s, otSampledFalse) || s == otSampledFalseNum:
			sc.Sampling = SamplingDeny
		default:
			return ErrOTSampled
		}
	}
	sc.Baggage, _ = prefixedBaggage(h, otBaggagePrefix, false)
	return nil
}

// firstValue returns the first value of the canonical key in h.
func firstValue(h http.Header, key string) (string, bool) {
	if v := h[key]; len(v) > 0 {
		return v[0], true
	}
	return "", false
}

// Inject writes ot-tracer-traceid (16 hex digits when the id arrived 64 bits
// wide, else 32), ot-tracer-spanid, ot-tracer-sampled true (accept, debug)
// or false (deny; nothing when unset), and one ot-baggage-{key} header per
// member of sc.Baggage with its percent-encoded value. A context without ids
// writes nothing.
func (otCodec) Inject(sc *SpanContext, w *Writer) {
	if !sc.HasIDs() {
		return
	}
	var b [otTraceIDMaxDigits]byte
	w.Set(headerOTTraceID, string(appendTraceID64(b[:0], sc)))
	w.Set(headerOTSpanID, string(sc.SpanID.AppendHex(b[:0])))
	switch {
	case sc.Sampling.Sampled():
		w.Set(headerOTSampled, otSampledTrue)
	case sc.Sampling == SamplingDeny:
		w.Set(headerOTSampled, otSampledFalse)
	}
	injectPrefixedBaggage(sc, w, otBaggagePrefix, false)
}
