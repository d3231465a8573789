package headers

import (
	"encoding/binary"
	"math/rand/v2"
)

// TraceID is a 128-bit trace identifier. A 64-bit identifier (B3, Jaeger) is
// stored left-padded with zeros; SpanContext.TraceID64 remembers that it
// arrived that way, so it can be re-emitted 16 hex digits wide.
type TraceID [16]byte

// SpanID is a 64-bit span identifier.
type SpanID [8]byte

const hexDigits = "0123456789abcdef"

// hexValue maps an ASCII byte to its lowercase hex value, or 0xff when the
// byte is not a lowercase hex digit. Uppercase is invalid in W3C and B3.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < 16; i++ {
		t[hexDigits[i]] = byte(i)
	}
	return t
}()

// IsValid reports whether the trace id is not all zeros.
func (t TraceID) IsValid() bool { return t != TraceID{} }

// Is64 reports whether the upper 64 bits are zero, so the id fits B3's or
// Jaeger's 64-bit form.
func (t TraceID) Is64() bool { return binary.BigEndian.Uint64(t[:8]) == 0 }

// String returns the 32 lowercase hex digits of the id.
func (t TraceID) String() string {
	var b [32]byte
	encodeHex(b[:], t[:])
	return string(b[:])
}

// AppendHex appends the 32 lowercase hex digits of the id to dst.
func (t TraceID) AppendHex(dst []byte) []byte { return appendHex(dst, t[:]) }

// AppendHex64 appends the lower 16 hex digits of the id to dst.
func (t TraceID) AppendHex64(dst []byte) []byte { return appendHex(dst, t[8:]) }

// IsValid reports whether the span id is not all zeros.
func (s SpanID) IsValid() bool { return s != SpanID{} }

// String returns the 16 lowercase hex digits of the id.
func (s SpanID) String() string {
	var b [16]byte
	encodeHex(b[:], s[:])
	return string(b[:])
}

// AppendHex appends the 16 lowercase hex digits of the id to dst.
func (s SpanID) AppendHex(dst []byte) []byte { return appendHex(dst, s[:]) }

// Uint64 returns the id as a big-endian integer.
func (s SpanID) Uint64() uint64 { return binary.BigEndian.Uint64(s[:]) }

// NewTraceID returns a random, valid 128-bit trace id. It uses the lock-free
// top-level functions of math/rand/v2, whose generator is seeded from the OS.
func NewTraceID() TraceID {
	var t TraceID
	for !t.IsValid() {
		binary.BigEndian.PutUint64(t[:8], rand.Uint64())
		binary.BigEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t
}

// NewSpanID returns a random, valid span id.
func NewSpanID() SpanID {
	var s SpanID
	for !s.IsValid() {
		binary.BigEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}

// ParseTraceID parses 32 or 16 lowercase hex digits (16 are left-padded). It
// reports whether the input was 64-bit wide. The all-zero id is invalid.
func ParseTraceID(s string) (t TraceID, is64 bool, err error) {
	switch len(s) {
	case 32:
		if !decodeHex(t[:], s) {
			return TraceID{}, false, ErrMalformedID
		}
	case 16:
		if !decodeHex(t[8:], s) {
			return TraceID{}, false, ErrMalformedID
		}
		is64 = true
	default:
		return TraceID{}, false, ErrMalformedID
	}
	if !t.IsValid() {
		return TraceID{}, false, ErrZeroID
	}
	return t, is64, nil
}

// ParseSpanID parses exactly 16 lowercase hex digits. The all-zero id is
// invalid.
func ParseSpanID(s string) (SpanID, error) {
	var id SpanID
	if len(s) != 16 || !decodeHex(id[:], s) {
		return SpanID{}, ErrMalformedID
	}
	if !id.IsValid() {
		return SpanID{}, ErrZeroID
	}
	return id, nil
}

// encodeHex writes 2*len(src) lowercase hex digits into dst.
func encodeHex(dst, src []byte) {
	for i, v := range src {
		dst[i*2] = hexDigits[v>>4]
		dst[i*2+1] = hexDigits[v&0x0f]
	}
}

func appendHex(dst, src []byte) []byte {
	for _, v := range src {
		dst = append(dst, hexDigits[v>>4], hexDigits[v&0x0f])
	}
	return dst
}

// decodeHex decodes exactly 2*len(dst) lowercase hex digits from s. It
// checks the digits once at the end (no valid value has a high bit set, every
// invalid one has all of them), so the loop has no data-dependent branch; on
// failure dst holds garbage.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	var bad byte
	for i := 1; i < len(s); i += 2 {
		hi, lo := hexValue[s[i-1]], hexValue[s[i]]
		bad |= hi | lo
		dst[i>>1] = hi<<4 | lo
	}
	return bad <= 0x0f
}
