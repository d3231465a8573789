package headers

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// Errors of the custom-header codec. Each is a package-level value, so
// returning one allocates nothing; those about ids also match ErrMalformedID
// or ErrZeroID with errors.Is.
var (
	// ErrCustomConfig is a CustomConfig without a trace id header, with a
	// header name that is not a token, or with one name twice.
	ErrCustomConfig = errors.New("custom: invalid configuration")
	// ErrCustomTraceID is a trace id that is not 16 or 32 hex digits or a
	// UUID.
	ErrCustomTraceID = fmt.Errorf("custom: trace id: %w", ErrMalformedID)
	// ErrCustomZeroTraceID is an all-zero trace id.
	ErrCustomZeroTraceID = fmt.Errorf("custom: trace id: %w", ErrZeroID)
	// ErrCustomSpanID is a span id that is not 1 to 16 hex digits.
	ErrCustomSpanID = fmt.Errorf("custom: span id: %w", ErrMalformedID)
	// ErrCustomZeroSpanID is an all-zero span id.
	ErrCustomZeroSpanID = fmt.Errorf("custom: span id: %w", ErrZeroID)
	// ErrCustomParentID is a parent id that is not 1 to 16 hex digits.
	ErrCustomParentID = fmt.Errorf("custom: parent id: %w", ErrMalformedID)
	// ErrCustomSampled is a sampled value other than 1, 0, true or false.
	ErrCustomSampled = errors.New("custom: sampled not 1, 0, true or false")
	// ErrCustomScope is a span id, parent id or sampled header without a
	// trace id.
	ErrCustomScope = errors.New("custom: headers without a trace id")
)

// CustomConfig names the headers of an in-house trace format. Only
// TraceIDHeader is required; an empty name is a header the format lacks.
// Names are canonicalized (textproto.CanonicalMIMEHeaderKey).
type CustomConfig struct {
	// TraceIDHeader carries the trace id: 16 or 32 hex digits or a UUID
	// (8-4-4-4-12), hex of either case. For example X-Trace-ID.
	TraceIDHeader string
	// SpanIDHeader carries the caller's span id: 1 to 16 hex digits of
	// either case, left-padded. For example X-Span-ID.
	SpanIDHeader string
	// ParentIDHeader carries the caller's parent span id, like the span
	// id; 0 means none. For example X-Parent-ID.
	ParentIDHeader string
	// SampledHeader carries the sampling decision: 1/true or 0/false, in
	// any case. For example X-Sampled.
	SampledHeader string
	// UUID writes the trace id in UUID form (8-4-4-4-12, lowercase) instead
	// of hex; set it when the receivers expect UUIDs.
	UUID bool
}

// customCodec reads and writes operator-named headers: see NewCustomCodec.
type customCodec struct {
	cfg    CustomConfig
	fields []string
}

// NewCustomCodec returns the codec (FormatCustom) of the headers cfg names.
//
// Extraction needs the trace id header; without it, the other headers are
// ErrCustomScope. A 16-digit trace id is a 64-bit id (TraceID64). A trace id
// without a span id (no span header configured, or none sent) is a
// trace-only context: HasIDs is false and the caller decides whether to keep
// the trace id. Span and parent ids may be shorter than 16 digits (in-house
// systems often print integers without leading zeros) and are left-padded.
// Extraction allocates nothing.
//
// Injection writes the trace id as 32 lowercase hex digits (16 when it
// arrived 64 bits wide, as B3 does), or in UUID form when cfg.UUID is set,
// whatever form it arrived in; the span id and parent id as 16 hex digits
// when valid; sampled as 1 or 0 (nothing when unset). A context without a
// trace id writes nothing.
func NewCustomCodec(cfg CustomConfig) (Codec, error) {
	if cfg.TraceIDHeader == "" {
		return nil, fmt.Errorf("%w: trace id header is required", ErrCustomConfig)
	}
	names := []*string{&cfg.TraceIDHeader, &cfg.SpanIDHeader, &cfg.ParentIDHeader, &cfg.SampledHeader}
	c := customCodec{}
	for _, n := range names {
		if *n == "" {
			continue
		}
		if !isToken(*n) {
			return nil, fmt.Errorf("%w: header name %q is not a valid HTTP field name", ErrCustomConfig, *n)
		}
		*n = textproto.CanonicalMIMEHeaderKey(*n)
		for _, f := range c.fields {
			if f == *n {
				return nil, fmt.Errorf("%w: header %q named twice", ErrCustomConfig, *n)
			}
		}
		c.fields = append(c.fields, *n)
	}
	c.cfg = cfg
	return c, nil
}

// Format returns FormatCustom.
func (customCodec) Format() Format { return FormatCustom }

// Fields returns the configured header names.
func (c customCodec) Fields() []string { return append([]string(nil), c.fields...) }

// get returns the first value of the configured header key, trimmed of OWS;
// an unconfigured header is absent.
func (customCodec) get(h http.Header, key string) (string, bool) {
	if key == "" {
		return "", false
	}
	v, ok := firstValue(h, key)
	return trimOWS(v), ok
}

// Extract reads the configured headers of h.
func (c customCodec) Extract(h http.Header, sc *SpanContext) error {
	tid, hasTrace := c.get(h, c.cfg.TraceIDHeader)
	sid, hasSpan := c.get(h, c.cfg.SpanIDHeader)
	pid, hasParent := c.get(h, c.cfg.ParentIDHeader)
	sampled, hasSampled := c.get(h, c.cfg.SampledHeader)
	if !hasTrace {
		if hasSpan || hasParent || hasSampled {
			return ErrCustomScope
		}
		return ErrAbsent
	}
	if err := parseCustomTraceID(tid, sc); err != nil {
		return err
	}
	if hasSpan {
		if !decodeVarHex(sc.SpanID[:], sid) {
			return ErrCustomSpanID
		}
		if !sc.SpanID.IsValid() {
			return ErrCustomZeroSpanID
		}
	}
	if hasParent && !decodeVarHex(sc.ParentID[:], pid) {
		return ErrCustomParentID
	}
	if hasSampled {
		switch {
		case sampled == "1" || strings.EqualFold(sampled, "true"):
			sc.Sampling = SamplingAccept
		case sampled == "0" || strings.EqualFold(sampled, "false"):
			sc.Sampling = SamplingDeny
		default:
			return ErrCustomSampled
		}
	}
	return nil
}

// parseCustomTraceID parses 16 or 32 hex digits of either case, or a UUID,
// into sc.TraceID.
func parseCustomTraceID(s string, sc *SpanContext) error {
	switch len(s) {
	case 16, 32:
		return parseVarTraceID(s, sc, ErrCustomTraceID, ErrCustomZeroTraceID)
	case uuidLen:
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return ErrCustomTraceID
		}
		t := &sc.TraceID
		if !decodeVarHex(t[0:4], s[0:8]) || !decodeVarHex(t[4:6], s[9:13]) || !decodeVarHex(t[6:8], s[14:18]) ||
			!decodeVarHex(t[8:10], s[19:23]) || !decodeVarHex(t[10:], s[24:]) {
			return ErrCustomTraceID
		}
		sc.TraceID64 = false
		if !sc.TraceID.IsValid() {
			return ErrCustomZeroTraceID
		}
		return nil
	}
	return ErrCustomTraceID
}

// Inject writes the configured headers from sc.
func (c customCodec) Inject(sc *SpanContext, w *Writer) {
	if !sc.TraceID.IsValid() {
		return
	}
	var b [uuidLen]byte
	if c.cfg.UUID {
		w.Set(c.cfg.TraceIDHeader, string(appendUUID(b[:0], sc.TraceID[:])))
	} else {
		w.Set(c.cfg.TraceIDHeader, string(appendTraceID64(b[:0], sc)))
	}
	if c.cfg.SpanIDHeader != "" && sc.SpanID.IsValid() {
		w.Set(c.cfg.SpanIDHeader, string(sc.SpanID.AppendHex(b[:0])))
	}
	if c.cfg.ParentIDHeader != "" && sc.ParentID.IsValid() {
		w.Set(c.cfg.ParentIDHeader, string(sc.ParentID.AppendHex(b[:0])))
	}
	if c.cfg.SampledHeader != "" {
		switch {
		case sc.Sampling.Sampled():
			w.Set(c.cfg.SampledHeader, "1")
		case sc.Sampling == SamplingDeny:
			w.Set(c.cfg.SampledHeader, "0")
		}
	}
}
