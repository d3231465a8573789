package headers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors of the W3C Trace Context codec. Each is a package-level value, so
// returning one allocates nothing; those about ids also match ErrMalformedID
// or ErrZeroID with errors.Is.
var (
	// ErrW3CMultipleTraceparent is a request with more than one traceparent
	// field.
	ErrW3CMultipleTraceparent = errors.New("w3c: more than one traceparent field")
	// ErrW3CLength is a traceparent shorter than 55 characters.
	ErrW3CLength = errors.New("w3c: traceparent too short")
	// ErrW3CVersion is a version that is not two lowercase hex digits, or
	// the forbidden version ff.
	ErrW3CVersion = errors.New("w3c: invalid traceparent version")
	// ErrW3CDelimiter is a traceparent whose fields are not separated by
	// '-', or a future version whose flags are followed by neither the end
	// nor '-'.
	ErrW3CDelimiter = errors.New("w3c: traceparent fields not separated by '-'")
	// ErrW3CExtraData is data after the flags of a version 00 traceparent.
	ErrW3CExtraData = errors.New("w3c: data after the flags of a version 00 traceparent")
	// ErrW3CTraceID is a trace-id that is not 32 lowercase hex digits.
	ErrW3CTraceID = fmt.Errorf("w3c: traceparent trace-id: %w", ErrMalformedID)
	// ErrW3CZeroTraceID is an all-zero trace-id.
	ErrW3CZeroTraceID = fmt.Errorf("w3c: traceparent trace-id: %w", ErrZeroID)
	// ErrW3CParentID is a parent-id that is not 16 lowercase hex digits.
	ErrW3CParentID = fmt.Errorf("w3c: traceparent parent-id: %w", ErrMalformedID)
	// ErrW3CZeroParentID is an all-zero parent-id.
	ErrW3CZeroParentID = fmt.Errorf("w3c: traceparent parent-id: %w", ErrZeroID)
	// ErrW3CFlags is trace-flags that are not two lowercase hex digits.
	ErrW3CFlags = errors.New("w3c: invalid traceparent trace-flags")
)

// Canonical header keys of the W3C Trace Context codec.
const (
	headerTraceparent = "Traceparent"
	headerTracestate  = "Tracestate"
)

// W3C trace-flags this codec knows; every other bit is treated as zero.
const (
	w3cFlagSampled = 0x01
	w3cFlagRandom  = 0x02
)

// Limits of the W3C tracestate list.
const (
	// w3cMaxMembers is the most list-members a valid tracestate holds.
	w3cMaxMembers = 32
	// w3cMaxKey and w3cMaxValue bound a key's and a value's length.
	w3cMaxKey   = 256
	w3cMaxValue = 256
	// w3cPropagateLen is how much tracestate is propagated untouched; a
	// longer one is truncated by whole members.
	w3cPropagateLen = 512
	// w3cLongMember is the length above which a member is dropped first
	// when truncating.
	w3cLongMember = 128
)

// w3cTraceparentLen is the length of a version 00 traceparent.
const w3cTraceparentLen = 55

// w3cFields is what the W3C codec owns in a request.
var w3cFields = []string{headerTraceparent, headerTracestate}

func init() { register(FormatW3C, func() Codec { return w3cCodec{} }) }

// w3cCodec reads and writes W3C Trace Context: traceparent and tracestate.
//
// Extraction follows the level-2 rules: a version 00 traceparent is exactly
// 55 characters (after surrounding OWS, which HTTP/1 servers strip anyway); a future version (neither 00 nor ff) may be longer, with a
// '-' after the flags, and is re-emitted as 00 keeping only the known flags
// (sampled 0x01, random 0x02). An invalid traceparent makes the format absent
// and its tracestate is not read. An invalid tracestate (a bad member, more
// than 32 members) is dropped whole while the traceparent is kept; a
// tracestate that names a key twice is kept with the first member of that
// key, the later ones dropped.
//
// Extraction allocates nothing, except one string for the joined value when
// a request carries several non-empty tracestate fields or a duplicated key.
type w3cCodec struct{}

// Format returns FormatW3C.
func (w3cCodec) Format() Format { return FormatW3C }

// Fields returns Traceparent and Tracestate.
func (w3cCodec) Fields() []string { return append([]string(nil), w3cFields...) }

// Extract reads traceparent and tracestate from h.
func (w3cCodec) Extract(h http.Header, sc *SpanContext) error {
	tp := h[headerTraceparent]
	switch len(tp) {
	case 0:
		return ErrAbsent
	case 1:
	default:
		return ErrW3CMultipleTraceparent
	}
	if err := parseTraceparent(trimOWS(tp[0]), sc); err != nil {
		return err
	}
	sc.TraceState = parseTracestate(h[headerTracestate])
	return nil
}

// parseTraceparent parses one traceparent value into sc.
func parseTraceparent(s string, sc *SpanContext) error {
	if len(s) < w3cTraceparentLen {
		return ErrW3CLength
	}
	hi, lo := hexValue[s[0]], hexValue[s[1]]
	if hi > 0x0f || lo > 0x0f || hi == 0x0f && lo == 0x0f {
		return ErrW3CVersion
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return ErrW3CDelimiter
	}
	if len(s) > w3cTraceparentLen {
		if hi == 0 && lo == 0 {
			return ErrW3CExtraData
		}
		if s[w3cTraceparentLen] != '-' {
			return ErrW3CDelimiter
		}
	}
	if !decodeHex(sc.TraceID[:], s[3:35]) {
		return ErrW3CTraceID
	}
	if !sc.TraceID.IsValid() {
		return ErrW3CZeroTraceID
	}
	if !decodeHex(sc.SpanID[:], s[36:52]) {
		return ErrW3CParentID
	}
	if !sc.SpanID.IsValid() {
		return ErrW3CZeroParentID
	}
	fhi, flo := hexValue[s[53]], hexValue[s[54]]
	if fhi > 0x0f || flo > 0x0f {
		return ErrW3CFlags
	}
	flags := fhi<<4 | flo
	sc.Sampling = SamplingDeny
	if flags&w3cFlagSampled != 0 {
		sc.Sampling = SamplingAccept
	}
	sc.Random = flags&w3cFlagRandom != 0
	return nil
}

// parseTracestate validates the tracestate fields as one list and returns
// it, or "" when it is absent or invalid. One field is returned as a
// substring of itself (without leading and trailing OWS and empty members);
// several non-empty fields are joined into one new string. A list that names
// a key twice is inherited with the first member of each key: the later
// duplicates are dropped (one new string).
func parseTracestate(fields []string) string {
	if len(fields) == 0 {
		return ""
	}
	var sc tracestateScan
	for _, f := range fields {
		if !sc.scan(f) {
			return ""
		}
	}
	if sc.dup {
		return dedupTracestate(fields)
	}
	if len(fields) == 1 {
		return trimTracestate(fields[0])
	}
	n, nonEmpty, last := 0, 0, ""
	for _, f := range fields {
		if f = trimTracestate(f); f != "" {
			if nonEmpty > 0 {
				n++
			}
			n += len(f)
			nonEmpty++
			last = f
		}
	}
	if nonEmpty <= 1 {
		return last
	}
	var b strings.Builder
	b.Grow(n)
	for _, f := range fields {
		if f = trimTracestate(f); f != "" {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(f)
		}
	}
	return b.String()
}

// dedupTracestate joins the members of validated tracestate fields with ','
// keeping only the first member of each key, each without surrounding OWS.
func dedupTracestate(fields []string) string {
	var kept [w3cMaxMembers]string
	n, size := 0, 0
	for _, f := range fields {
		for rest := f; rest != ""; {
			var m string
			m, rest, _ = strings.Cut(rest, ",")
			if m = trimOWS(m); m == "" || n == w3cMaxMembers {
				continue
			}
			key, _, _ := strings.Cut(m, "=")
			seen := false
			for _, k := range kept[:n] {
				if k[:strings.IndexByte(k, '=')] == key {
					seen = true
					break
				}
			}
			if !seen {
				kept[n] = m
				n++
				size += len(m) + 1
			}
		}
	}
	var b strings.Builder
	b.Grow(size)
	for i, m := range kept[:n] {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m)
	}
	return b.String()
}

// trimTracestate strips OWS and empty members from both ends of a list.
func trimTracestate(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == ',') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t' || s[len(s)-1] == ',') {
		s = s[:len(s)-1]
	}
	return s
}

// trimOWS strips spaces and tabs from both ends of s.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// tracestateScan validates the fields of one tracestate, joined with ',',
// as they are scanned: at most 32 non-empty members, each a valid
// key=value. It remembers each member's key to notice a key named twice.
type tracestateScan struct {
	keys [w3cMaxMembers]string
	n    int
	dup  bool
}

// scan validates one tracestate field in a single pass.
//
//	list-member = key "=" value / OWS, members separated by OWS "," OWS
//	key         = [a-z0-9][a-z0-9_*/@-]{0,255}
//	value       = 1 to 256 of %x20-7E except "," and "=", not ending in a space
//
// The key grammar is level 2's: '@' is an ordinary key character anywhere
// but first (foo@, foo@@bar and a 242-character tenant are keys). A trailing
// space is OWS before the delimiter, so it is not part of the value. The
// value must not be empty: the specification's ABNF is 0*255(chr) nblk-chr,
// and the W3C test suite drops "foo=,bar=3". A duplicated key is not
// invalid; it sets dup.
func (sc *tracestateScan) scan(f string) bool {
	for i := 0; i < len(f); {
		if c := f[i]; c == ' ' || c == '\t' || c == ',' {
			i++
			continue
		}
		if sc.n == w3cMaxMembers || !tracestateKeyFirst[f[i]] {
			return false
		}
		start := i
		for i++; i < len(f) && tracestateKeyChar[f[i]]; i++ {
		}
		if i == len(f) || f[i] != '=' || i-start > w3cMaxKey {
			return false
		}
		key := f[start:i]
		start = i + 1
		for i = start; i < len(f) && tracestateValueChar[f[i]]; i++ {
		}
		end := i
		for end > start && f[end-1] == ' ' {
			end--
		}
		if end == start || end-start > w3cMaxValue {
			return false
		}
		for i < len(f) && (f[i] == ' ' || f[i] == '\t') {
			i++
		}
		if i < len(f) && f[i] != ',' {
			return false
		}
		if !sc.dup {
			for _, k := range sc.keys[:sc.n] {
				if k == key {
					sc.dup = true
					break
				}
			}
		}
		sc.keys[sc.n] = key
		sc.n++
	}
	return true
}

// Byte classes of the tracestate grammar.
var (
	// tracestateKeyFirst marks a key's first character: a-z 0-9.
	tracestateKeyFirst = byteClass(func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' })
	// tracestateKeyChar marks the rest of a key: a-z 0-9 _ - * / @.
	tracestateKeyChar = byteClass(func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_-*/@", c) >= 0
	})
	// tracestateValueChar marks a value's characters: printable ASCII
	// other than ',' and '='.
	tracestateValueChar = byteClass(func(c byte) bool { return c >= 0x20 && c <= 0x7e && c != ',' && c != '=' })
)

// byteClass tabulates a byte predicate.
func byteClass(in func(c byte) bool) (t [256]bool) {
	for i := range t {
		t[i] = in(byte(i))
	}
	return t
}

// Inject writes traceparent, version 00 with sc's trace and span id, and
// tracestate when sc has one. A context without ids writes nothing. Debug
// sampling is written as sampled; the random flag is written when sc.Random
// is set and the trace id did not arrive 64 bits wide (a padded id is not
// random in its upper half).
func (w3cCodec) Inject(sc *SpanContext, w *Writer) {
	if !sc.HasIDs() {
		return
	}
	var flags byte
	if sc.Sampling.Sampled() {
		flags |= w3cFlagSampled
	}
	if sc.Random && !sc.TraceID64 {
		flags |= w3cFlagRandom
	}
	buf := w.Buffer()
	start := len(buf)
	buf = append(buf, make([]byte, w3cTraceparentLen)...)
	b := buf[start:]
	b[0], b[1], b[2] = '0', '0', '-'
	encodeHex(b[3:35], sc.TraceID[:])
	b[35] = '-'
	encodeHex(b[36:52], sc.SpanID[:])
	b[52] = '-'
	b[53], b[54] = hexDigits[flags>>4], hexDigits[flags&0x0f]
	w.SetBuilt(headerTraceparent, buf)
	if ts := truncateTracestate(sc.TraceState); ts != "" {
		w.Set(headerTracestate, ts)
	}
}

// truncateTracestate returns ts unchanged when it is at most 512 characters.
// Otherwise it drops whole members, in the specification's order: every
// member longer than 128 characters, then members from the right until the
// rest fits. ts is a validated list, so it has at most 32 members.
func truncateTracestate(ts string) string {
	if len(ts) <= w3cPropagateLen {
		return ts
	}
	var members [w3cMaxMembers]string
	n := 0
	for rest := ts; rest != "" && n < w3cMaxMembers; {
		var m string
		m, rest, _ = strings.Cut(rest, ",")
		if m = trimOWS(m); m != "" {
			members[n] = m
			n++
		}
	}
	var keep [w3cMaxMembers]bool
	size := -1
	for i := 0; i < n; i++ {
		keep[i] = true
		size += len(members[i]) + 1
	}
	// The specification's order: every member longer than 128 characters
	// goes first, then members from the right until the rest fits.
	for i := n - 1; i >= 0; i-- {
		if len(members[i]) > w3cLongMember {
			keep[i] = false
			size -= len(members[i]) + 1
		}
	}
	for i := n - 1; i >= 0 && size > w3cPropagateLen; i-- {
		if keep[i] {
			keep[i] = false
			size -= len(members[i]) + 1
		}
	}
	var b [w3cPropagateLen]byte
	out := b[:0]
	for i := 0; i < n; i++ {
		if keep[i] {
			if len(out) > 0 {
				out = append(out, ',')
			}
			out = append(out, members[i]...)
		}
	}
	return string(out)
}
