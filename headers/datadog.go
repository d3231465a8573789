package headers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Errors of the Datadog codec. Each is a package-level value, so returning
// one allocates nothing; those about ids also match ErrMalformedID or
// ErrZeroID with errors.Is.
var (
	// ErrDatadogTraceID is an x-datadog-trace-id that is not a decimal
	// uint64.
	ErrDatadogTraceID = fmt.Errorf("datadog: trace id: %w", ErrMalformedID)
	// ErrDatadogZeroTraceID is a trace id of 0.
	ErrDatadogZeroTraceID = fmt.Errorf("datadog: trace id: %w", ErrZeroID)
	// ErrDatadogParentID is an x-datadog-parent-id that is not a decimal
	// uint64.
	ErrDatadogParentID = fmt.Errorf("datadog: parent id: %w", ErrMalformedID)
	// ErrDatadogZeroParentID is a parent id of 0.
	ErrDatadogZeroParentID = fmt.Errorf("datadog: parent id: %w", ErrZeroID)
	// ErrDatadogPriority is an x-datadog-sampling-priority that is not a
	// small decimal integer.
	ErrDatadogPriority = errors.New("datadog: sampling priority not a decimal integer")
	// ErrDatadogScope is a trace id without a parent id, or Datadog headers
	// without a trace id.
	ErrDatadogScope = errors.New("datadog: trace id and parent id must come together")
)

// Header keys of the Datadog codec, canonical, and its limits.
const (
	headerDDTraceID  = "X-Datadog-Trace-Id"
	headerDDParentID = "X-Datadog-Parent-Id"
	headerDDPriority = "X-Datadog-Sampling-Priority"
	headerDDOrigin   = "X-Datadog-Origin"
	headerDDTags     = "X-Datadog-Tags"
	// ddTagTID carries the upper 64 bits of a 128-bit trace id.
	ddTagTID = "_dd.p.tid"
	// ddMaxTags is Datadog's default cap on x-datadog-tags: a longer list
	// is neither read nor written.
	ddMaxTags = 512
	// ddMaxOrigin caps x-datadog-origin.
	ddMaxOrigin = 256
	// ddTIDMember is the length of "_dd.p.tid=" and 16 hex digits.
	ddTIDMember = len(ddTagTID) + 1 + 16
)

// datadogFields is what the Datadog codec owns in a request.
var datadogFields = []string{headerDDTraceID, headerDDParentID, headerDDPriority, headerDDOrigin, headerDDTags}

func init() { register(FormatDatadog, func() Codec { return datadogCodec{} }) }

// datadogCodec reads and writes Datadog's propagation headers:
//
//	x-datadog-trace-id:          {decimal uint64: the low 64 bits}
//	x-datadog-parent-id:         {decimal uint64}
//	x-datadog-sampling-priority: {-1|0|1|2}
//	x-datadog-origin:            {origin}
//	x-datadog-tags:              _dd.p.tid={16 hex: the high 64 bits},k=v,...
//
// Zero ids are invalid; trace and parent id must come together. A
// sampling priority of 0 or less (reject, user reject) denies, above 0
// (keep, user keep) accepts; absent, sampling is unset. A valid _dd.p.tid
// (16 lowercase hex, not zero) makes the trace id 128 bits; without it the
// id is 64 bits (SpanContext.TraceID64). The origin (printable ASCII, at
// most 256 bytes) and the tags list (k=v members of printable ASCII, at
// most 512 bytes, as Datadog tracers cap it) are kept as substrings of the
// headers and re-emitted; an invalid one is dropped alone, the trace
// context kept. Extraction allocates nothing.
type datadogCodec struct{}

// Format returns FormatDatadog.
func (datadogCodec) Format() Format { return FormatDatadog }

// Fields returns the five x-datadog-* headers.
func (datadogCodec) Fields() []string { return append([]string(nil), datadogFields...) }

// Extract reads the first value of each x-datadog-* header of h.
func (datadogCodec) Extract(h http.Header, sc *SpanContext) error {
	tid, hasTrace := firstValue(h, headerDDTraceID)
	pid, hasParent := firstValue(h, headerDDParentID)
	prio, hasPrio := firstValue(h, headerDDPriority)
	origin, hasOrigin := firstValue(h, headerDDOrigin)
	tags, hasTags := firstValue(h, headerDDTags)
	if !hasTrace && !hasParent && !hasPrio && !hasOrigin && !hasTags {
		return ErrAbsent
	}
	if !hasTrace || !hasParent {
		return ErrDatadogScope
	}
	lo, ok := parseDecimalUint64(trimOWS(tid))
	if !ok {
		return ErrDatadogTraceID
	}
	if lo == 0 {
		return ErrDatadogZeroTraceID
	}
	span, ok := parseDecimalUint64(trimOWS(pid))
	if !ok {
		return ErrDatadogParentID
	}
	if span == 0 {
		return ErrDatadogZeroParentID
	}
	if hasPrio {
		p, ok := parseDatadogPriority(trimOWS(prio))
		if !ok {
			return ErrDatadogPriority
		}
		sc.Sampling = SamplingDeny
		if p > 0 {
			sc.Sampling = SamplingAccept
		}
	}
	clear(sc.TraceID[:8])
	binary.BigEndian.PutUint64(sc.TraceID[8:], lo)
	binary.BigEndian.PutUint64(sc.SpanID[:], span)
	sc.TraceID64 = true
	if o := trimOWS(origin); validDatadogOrigin(o) {
		sc.DatadogOrigin = o
	}
	if t := trimOWS(tags); t != "" && validDatadogTags(t) {
		sc.DatadogTags = t
		if hi, ok := datadogTID(t); ok {
			copy(sc.TraceID[:8], hi[:])
			sc.TraceID64 = false
		}
	}
	return nil
}

// parseDecimalUint64 parses 1 to 20 decimal digits into a uint64, refusing
// overflow, signs and anything else. Unlike strconv.ParseUint it allocates no
// error.
func parseDecimalUint64(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		if n > (1<<64-1-uint64(c))/10 {
			return 0, false
		}
		n = n*10 + uint64(c)
	}
	return n, true
}

// parseDatadogPriority parses an optional '-' and 1 to 3 decimal digits.
func parseDatadogPriority(s string) (int, bool) {
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 3 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + int(c)
	}
	if neg {
		n = -n
	}
	return n, true
}

// validDatadogOrigin reports whether o is 1 to 256 bytes of visible ASCII
// other than ',' ';' '='.
func validDatadogOrigin(o string) bool {
	if o == "" || len(o) > ddMaxOrigin {
		return false
	}
	for i := 0; i < len(o); i++ {
		if c := o[i]; c <= 0x20 || c >= 0x7f || c == ',' || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

// validDatadogTags reports whether t, at most 512 bytes, is a list of
// key=value members separated by ',': keys of visible ASCII without '=',
// values of printable ASCII, neither with ','.
func validDatadogTags(t string) bool {
	if len(t) > ddMaxTags {
		return false
	}
	for rest := t; ; {
		var m string
		var more bool
		m, rest, more = strings.Cut(rest, ",")
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" {
			return false
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c <= 0x20 || c >= 0x7f {
				return false
			}
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c >= 0x7f {
				return false
			}
		}
		if !more {
			return true
		}
	}
}

// datadogTID returns the value of the first _dd.p.tid in a valid tags list
// when it is 16 lowercase hex digits, not all zero.
func datadogTID(t string) (hi [8]byte, ok bool) {
	for rest := t; rest != ""; {
		var m string
		m, rest, _ = strings.Cut(rest, ",")
		if k, v, _ := strings.Cut(m, "="); k == ddTagTID {
			ok = decodeHex(hi[:], v) && hi != [8]byte{}
			return hi, ok
		}
	}
	return hi, false
}

// Inject writes x-datadog-trace-id (the low 64 bits of the trace id, in
// decimal), x-datadog-parent-id (the span id), x-datadog-sampling-priority
// 2 (debug, as user keep), 1 (accept) or 0 (deny; nothing when unset),
// x-datadog-origin when sc has a valid one, and x-datadog-tags: the valid
// sc.DatadogTags without _dd.p.tid, followed by _dd.p.tid={upper 16 hex}
// when the upper 64 bits are not zero; if that list would exceed 512 bytes
// only _dd.p.tid is written. A context without ids, or whose low 64 bits are
// zero (Datadog cannot name it), writes nothing.
func (datadogCodec) Inject(sc *SpanContext, w *Writer) {
	lo := binary.BigEndian.Uint64(sc.TraceID[8:])
	if !sc.HasIDs() || lo == 0 {
		return
	}
	var b [20]byte
	w.Set(headerDDTraceID, string(strconv.AppendUint(b[:0], lo, 10)))
	w.Set(headerDDParentID, string(strconv.AppendUint(b[:0], sc.SpanID.Uint64(), 10)))
	switch sc.Sampling {
	case SamplingDebug:
		w.Set(headerDDPriority, "2")
	case SamplingAccept:
		w.Set(headerDDPriority, "1")
	case SamplingDeny:
		w.Set(headerDDPriority, "0")
	}
	if validDatadogOrigin(sc.DatadogOrigin) {
		w.Set(headerDDOrigin, sc.DatadogOrigin)
	}
	var t [ddMaxTags + 1 + ddTIDMember]byte
	out := t[:0]
	if sc.DatadogTags != "" && validDatadogTags(sc.DatadogTags) {
		for rest := sc.DatadogTags; rest != ""; {
			var m string
			m, rest, _ = strings.Cut(rest, ",")
			if k, _, _ := strings.Cut(m, "="); k == ddTagTID {
				continue
			}
			if len(out) > 0 {
				out = append(out, ',')
			}
			out = append(out, m...)
		}
	}
	if !sc.TraceID.Is64() {
		if len(out)+1+ddTIDMember > ddMaxTags {
			out = out[:0]
		}
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = append(out, ddTagTID+"="...)
		out = appendHex(out, sc.TraceID[:8])
	}
	if len(out) > 0 {
		w.Set(headerDDTags, string(out))
	}
}
