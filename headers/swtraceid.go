package headers

import (
	"crypto/sha256"
	"strconv"
)

// swStackLen bounds the strings TraceIDFromSW and SpanIDFromSW copy to the
// stack before hashing. SkyWalking trace ids are at most 150 characters, so
// longer input is unusual; it is hashed from a heap copy (one allocation).
const swStackLen = 256

// TraceIDFromSW maps a SkyWalking trace id string onto a 128-bit TraceID. It
// is the fleet-wide contract of "one trace, every format": every tracingproxy
// derives the same TraceID from the same SkyWalking trace id, so a trace that
// enters as sw8 carries one id in W3C, B3 and Zipkin whichever proxy sees it.
//
// The rule, applied to the bytes of s exactly as received (no trimming, no
// case folding):
//   - exactly 32 lowercase hex digits, not all zero: the id those digits
//     spell; hex is true. This is what tracingproxy writes into sw8 for a
//     W3C or B3 trace, so such ids map back to themselves.
//   - exactly 16 lowercase hex digits, not all zero: the 64-bit id they
//     spell, left-padded with eight zero bytes as a 64-bit B3 id is; hex is
//     true.
//   - any other non-empty string (agent ids "<32hex>.<thread>.<seq>", UUIDs
//     with dashes, uppercase or all-zero hex, free text): the first 16 bytes
//     of SHA-256(s); hex is false.
//   - the empty string: the zero TraceID; hex is false.
//
// It does not allocate for s of up to 256 bytes.
func TraceIDFromSW(s string) (id TraceID, hex bool) {
	if id, ok := hexSWTraceID(s); ok {
		return id, true
	}
	if s == "" {
		return TraceID{}, false
	}
	if len(s) <= swStackLen {
		var b [swStackLen]byte
		n := copy(b[:], s)
		return hashSWTraceID(b[:n]), false
	}
	return hashSWTraceID([]byte(s)), false
}

// traceIDFromSW applies the TraceIDFromSW rule to b. SHA-256 runs on b in
// place, so callers pass bytes they already hold (a decode buffer) to stay
// allocation-free.
func traceIDFromSW(b []byte) (TraceID, bool) {
	if id, ok := hexSWTraceID(b); ok {
		return id, true
	}
	if len(b) == 0 {
		return TraceID{}, false
	}
	return hashSWTraceID(b), false
}

// hexSWTraceID applies the hex cases of the TraceIDFromSW rule.
func hexSWTraceID[T string | []byte](s T) (TraceID, bool) {
	var id TraceID
	var ok bool
	switch len(s) {
	case 32:
		ok = decodeHexTo(id[:], s)
	case 16:
		ok = decodeHexTo(id[8:], s)
	}
	return id, ok && id.IsValid()
}

// hashSWTraceID applies the hash case of the TraceIDFromSW rule.
func hashSWTraceID(b []byte) TraceID {
	sum := sha256.Sum256(b)
	var id TraceID
	copy(id[:], sum[:16])
	return id
}

// decodeHexTo decodes exactly 2*len(dst) lowercase hex digits from s, a
// string or bytes.
func decodeHexTo[T string | []byte](dst []byte, s T) bool {
	for i := range dst {
		hi, lo := hexValue[s[2*i]], hexValue[s[2*i+1]]
		if hi > 0x0f || lo > 0x0f {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

// SWTraceID returns the SkyWalking trace id string to write for sc: the
// caller's SkyWalking trace id verbatim when sc carries one, otherwise the 32
// lowercase hex digits of sc.TraceID (also for a 64-bit id, which sw8 has no
// narrower form for), or "" when sc has no valid trace id. TraceIDFromSW maps
// the result back to sc.TraceID. It allocates the hex string.
func SWTraceID(sc *SpanContext) string {
	if sc.SW.TraceID != "" {
		return sc.SW.TraceID
	}
	if sc.TraceID.IsValid() {
		return sc.TraceID.String()
	}
	return ""
}

// SpanIDFromSW derives the 64-bit SpanID that stands for span spanID of the
// SkyWalking segment segmentID, which has no 64-bit span id of its own: the
// first 8 bytes of SHA-256(segmentID + "#" + spanID in decimal). The sw8 and
// sw6 codecs set SpanContext.SpanID this way, so the Zipkin parent of the
// proxy's SERVER span is the same stable id on every request and every proxy
// that sees the same caller span. A proxy that writes sw8 can name its CLIENT
// span SpanIDFromSW(its segment, its Exit span id) so that the next proxy's
// Zipkin parent link matches it.
//
// It does not allocate for segment ids of up to 240 bytes.
func SpanIDFromSW(segmentID string, spanID int32) SpanID {
	if len(segmentID)+swSpanSuffixLen <= swStackLen {
		var b [swStackLen]byte
		n := copy(b[:], segmentID)
		return spanIDFromSW(b[:], n, spanID)
	}
	b := make([]byte, len(segmentID)+swSpanSuffixLen)
	n := copy(b, segmentID)
	return spanIDFromSW(b, n, spanID)
}

// swSpanSuffixLen is room for "#" and an int32 in decimal ("-2147483648").
const swSpanSuffixLen = 12

// spanIDFromSW applies the SpanIDFromSW rule to the segment id in b[:n]. It
// writes the "#<spanID>" suffix into b[n:], which must have room for
// swSpanSuffixLen bytes.
func spanIDFromSW(b []byte, n int, spanID int32) SpanID {
	b[n] = '#'
	in := strconv.AppendInt(b[:n+1], int64(spanID), 10)
	sum := sha256.Sum256(in)
	var id SpanID
	copy(id[:], sum[:8])
	return id
}
