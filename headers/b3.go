package headers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors of the B3 codecs. Each is a package-level value, so returning one
// allocates nothing; those about ids also match ErrMalformedID or ErrZeroID
// with errors.Is.
var (
	// ErrB3TraceID is a trace id that is not 16 or 32 lowercase hex digits.
	ErrB3TraceID = fmt.Errorf("b3: trace id: %w", ErrMalformedID)
	// ErrB3ZeroTraceID is an all-zero trace id.
	ErrB3ZeroTraceID = fmt.Errorf("b3: trace id: %w", ErrZeroID)
	// ErrB3SpanID is a span id that is not 16 lowercase hex digits.
	ErrB3SpanID = fmt.Errorf("b3: span id: %w", ErrMalformedID)
	// ErrB3ZeroSpanID is an all-zero span id.
	ErrB3ZeroSpanID = fmt.Errorf("b3: span id: %w", ErrZeroID)
	// ErrB3ParentID is a parent span id that is not 16 lowercase hex digits.
	ErrB3ParentID = fmt.Errorf("b3: parent span id: %w", ErrMalformedID)
	// ErrB3ZeroParentID is an all-zero parent span id.
	ErrB3ZeroParentID = fmt.Errorf("b3: parent span id: %w", ErrZeroID)
	// ErrB3Scope is a trace id without a span id, or a span id without a
	// trace id.
	ErrB3Scope = errors.New("b3: trace id and span id must come together")
	// ErrB3ParentScope is a parent span id without a trace and span id.
	ErrB3ParentScope = errors.New("b3: parent span id without trace and span id")
	// ErrB3Sampled is an X-B3-Sampled value other than 1, 0, true or false.
	ErrB3Sampled = errors.New("b3: invalid X-B3-Sampled")
	// ErrB3SamplingState is a b3 single-header sampling state other than 1,
	// 0 or d.
	ErrB3SamplingState = errors.New("b3: invalid sampling state in b3 header")
	// ErrB3NoContext is a set of B3 headers that carries neither ids nor a
	// sampling decision (for example X-B3-Flags: 0 alone).
	ErrB3NoContext = errors.New("b3: headers carry neither ids nor a sampling decision")
)

// Canonical header keys of the B3 codecs.
const (
	headerB3             = "B3"
	headerB3TraceID      = "X-B3-Traceid"
	headerB3SpanID       = "X-B3-Spanid"
	headerB3ParentSpanID = "X-B3-Parentspanid"
	headerB3Sampled      = "X-B3-Sampled"
	headerB3Flags        = "X-B3-Flags"
)

// b3Fields is what both B3 codecs own in a request: the headers of both
// encodings, so a stale header of either form never reaches the upstream.
var b3Fields = []string{
	headerB3, headerB3TraceID, headerB3SpanID, headerB3ParentSpanID, headerB3Sampled, headerB3Flags,
}

// b3SingleMaxLen is the longest b3 single header:
// {32 hex}-{16 hex}-{state}-{16 hex}.
const b3SingleMaxLen = 32 + 1 + 16 + 1 + 1 + 1 + 16

func init() {
	register(FormatB3, func() Codec { return b3MultiCodec{} })
	register(FormatB3Single, func() Codec { return b3SingleCodec{} })
}

// b3MultiCodec writes the X-B3-* headers. It reads both encodings, see
// extractB3.
type b3MultiCodec struct{}

// Format returns FormatB3.
func (b3MultiCodec) Format() Format { return FormatB3 }

// Fields returns the headers of both B3 encodings.
func (b3MultiCodec) Fields() []string { return append([]string(nil), b3Fields...) }

// Extract reads B3 from h, the single header first, see extractB3.
func (b3MultiCodec) Extract(h http.Header, sc *SpanContext) error { return extractB3(h, sc) }

// Inject writes X-B3-TraceId (16 hex digits wide when the id arrived that
// way), X-B3-SpanId, X-B3-ParentSpanId when sc has a parent, and either
// X-B3-Flags: 1 (debug) or X-B3-Sampled: 1/0 (nothing when sampling is
// unset). A context without ids writes only the sampling header.
func (b3MultiCodec) Inject(sc *SpanContext, w *Writer) {
	if sc.HasIDs() {
		w.SetBuilt(headerB3TraceID, appendB3TraceID(w.Buffer(), sc))
		w.SetBuilt(headerB3SpanID, sc.SpanID.AppendHex(w.Buffer()))
		if sc.ParentID.IsValid() {
			w.SetBuilt(headerB3ParentSpanID, sc.ParentID.AppendHex(w.Buffer()))
		}
	}
	switch sc.Sampling {
	case SamplingDebug:
		w.Set(headerB3Flags, "1")
	case SamplingAccept:
		w.Set(headerB3Sampled, "1")
	case SamplingDeny:
		w.Set(headerB3Sampled, "0")
	}
}

// b3SingleCodec writes the b3 single header. It reads both encodings, see
// extractB3.
type b3SingleCodec struct{}

// Format returns FormatB3Single.
func (b3SingleCodec) Format() Format { return FormatB3Single }

// Fields returns the headers of both B3 encodings.
func (b3SingleCodec) Fields() []string { return append([]string(nil), b3Fields...) }

// Extract reads B3 from h, the single header first, see extractB3.
func (b3SingleCodec) Extract(h http.Header, sc *SpanContext) error { return extractB3(h, sc) }

// Inject writes b3: {traceId}-{spanId}[-{1|0|d}[-{parentSpanId}]], the trace
// id 16 hex digits wide when it arrived that way. The parent is written only
// with a sampling state, as the grammar requires. A context without ids
// writes the sampling state alone (b3: 0, 1 or d), or nothing when it is
// unset.
func (b3SingleCodec) Inject(sc *SpanContext, w *Writer) {
	state := b3SamplingState(sc.Sampling)
	if !sc.HasIDs() {
		if state != "" {
			w.Set(headerB3, state)
		}
		return
	}
	out := appendB3TraceID(w.Buffer(), sc)
	out = append(out, '-')
	out = sc.SpanID.AppendHex(out)
	if state != "" {
		out = append(out, '-')
		out = append(out, state...)
		if sc.ParentID.IsValid() {
			out = append(out, '-')
			out = sc.ParentID.AppendHex(out)
		}
	}
	w.SetBuilt(headerB3, out)
}

// b3SamplingState returns the single-header sampling state, "" when sampling
// is unset.
func b3SamplingState(s Sampling) string {
	switch s {
	case SamplingAccept:
		return "1"
	case SamplingDeny:
		return "0"
	case SamplingDebug:
		return "d"
	}
	return ""
}

// appendB3TraceID appends the trace id, 16 hex digits when it arrived 64 bits
// wide and still fits, else 32.
func appendB3TraceID(dst []byte, sc *SpanContext) []byte {
	if sc.TraceID64 && sc.TraceID.Is64() {
		return sc.TraceID.AppendHex64(dst)
	}
	return sc.TraceID.AppendHex(dst)
}

// extractB3 reads B3 from h for both codecs. A valid b3 single header wins
// over the multi headers. A malformed one falls back to the multi headers,
// as zipkin-go and OpenTelemetry do, and its error is returned when they are
// absent or malformed too. Of repeated fields the first value is read.
func extractB3(h http.Header, sc *SpanContext) error {
	single, ok := firstB3Value(h, headerB3)
	if !ok {
		return extractB3Multi(h, sc)
	}
	err := parseB3Single(single, sc)
	if err == nil {
		return nil
	}
	*sc = SpanContext{}
	if extractB3Multi(h, sc) == nil {
		return nil
	}
	return err
}

// firstB3Value returns the first value of the canonical key in h.
func firstB3Value(h http.Header, key string) (string, bool) {
	if v := h[key]; len(v) > 0 {
		return v[0], true
	}
	return "", false
}

// parseB3Single parses b3: {traceId}-{spanId}[-{1|0|d}[-{parentSpanId}]], or
// a sampling state alone.
func parseB3Single(s string, sc *SpanContext) error {
	if len(s) == 1 {
		return parseB3State(s[0], sc)
	}
	tid, rest, ok := strings.Cut(s, "-")
	if !ok {
		if len(tid) == 16 || len(tid) == 32 {
			return ErrB3Scope
		}
		return ErrB3TraceID
	}
	if err := parseB3TraceID(tid, sc); err != nil {
		return err
	}
	sid, rest, ok := strings.Cut(rest, "-")
	if err := parseB3SpanID(sid, &sc.SpanID, ErrB3SpanID, ErrB3ZeroSpanID); err != nil {
		return err
	}
	if !ok {
		return nil
	}
	state, pid, ok := strings.Cut(rest, "-")
	if len(state) != 1 {
		return ErrB3SamplingState
	}
	if err := parseB3State(state[0], sc); err != nil {
		return err
	}
	if !ok {
		return nil
	}
	return parseB3SpanID(pid, &sc.ParentID, ErrB3ParentID, ErrB3ZeroParentID)
}

// parseB3State reads a single-header sampling state.
func parseB3State(c byte, sc *SpanContext) error {
	switch c {
	case '1':
		sc.Sampling = SamplingAccept
	case '0':
		sc.Sampling = SamplingDeny
	case 'd':
		sc.Sampling = SamplingDebug
	default:
		return ErrB3SamplingState
	}
	return nil
}

// extractB3Multi reads the X-B3-* headers.
func extractB3Multi(h http.Header, sc *SpanContext) error {
	tid, hasTrace := firstB3Value(h, headerB3TraceID)
	sid, hasSpan := firstB3Value(h, headerB3SpanID)
	pid, hasParent := firstB3Value(h, headerB3ParentSpanID)
	sampled, hasSampled := firstB3Value(h, headerB3Sampled)
	flags, hasFlags := firstB3Value(h, headerB3Flags)
	if !hasTrace && !hasSpan && !hasParent && !hasSampled && !hasFlags {
		return ErrAbsent
	}
	if hasTrace != hasSpan {
		return ErrB3Scope
	}
	if hasTrace {
		if err := parseB3TraceID(tid, sc); err != nil {
			return err
		}
		if err := parseB3SpanID(sid, &sc.SpanID, ErrB3SpanID, ErrB3ZeroSpanID); err != nil {
			return err
		}
	}
	if hasParent {
		if !hasTrace {
			return ErrB3ParentScope
		}
		if err := parseB3SpanID(pid, &sc.ParentID, ErrB3ParentID, ErrB3ZeroParentID); err != nil {
			return err
		}
	}
	if hasSampled {
		switch {
		case sampled == "1" || strings.EqualFold(sampled, "true"):
			sc.Sampling = SamplingAccept
		case sampled == "0" || strings.EqualFold(sampled, "false"):
			sc.Sampling = SamplingDeny
		default:
			return ErrB3Sampled
		}
	}
	if hasFlags && flags == "1" {
		sc.Sampling = SamplingDebug
	}
	if !hasTrace && sc.Sampling == SamplingUnset {
		return ErrB3NoContext
	}
	return nil
}

// parseB3TraceID parses 16 or 32 lowercase hex digits into sc.
func parseB3TraceID(s string, sc *SpanContext) error {
	switch len(s) {
	case 32:
		if !decodeHex(sc.TraceID[:], s) {
			return ErrB3TraceID
		}
	case 16:
		sc.TraceID = TraceID{}
		if !decodeHex(sc.TraceID[8:], s) {
			return ErrB3TraceID
		}
		sc.TraceID64 = true
	default:
		return ErrB3TraceID
	}
	if !sc.TraceID.IsValid() {
		return ErrB3ZeroTraceID
	}
	return nil
}

// parseB3SpanID parses 16 lowercase hex digits into id, returning malformed
// or zero for the two ways it can fail.
func parseB3SpanID(s string, id *SpanID, malformed, zero error) error {
	if !decodeHex(id[:], s) {
		return malformed
	}
	if !id.IsValid() {
		return zero
	}
	return nil
}
