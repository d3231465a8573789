package headers

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// SkyWalking v3 cross-process propagation (sw8): the header name and the
// errors a malformed value yields. sw8-correlation and sw8-x are not owned by
// the codec: they pass through unchanged.
const headerSW8 = "Sw8"

var (
	// ErrSW8Empty is an sw8 header with an empty value.
	ErrSW8Empty = errors.New("sw8: empty value")
	// ErrSW8TooLong is a value of 2 KiB or more; the protocol requires less.
	ErrSW8TooLong = errors.New("sw8: value of 2 KiB or more")
	// ErrSW8FieldCount is a value that does not have exactly 8 fields.
	ErrSW8FieldCount = errors.New("sw8: not 8 fields")
	// ErrSW8Sample is a sample flag other than 0 or 1.
	ErrSW8Sample = errors.New("sw8: sample flag not 0 or 1")
	// ErrSW8EmptyField is an empty base64 field; the protocol requires all.
	ErrSW8EmptyField = errors.New("sw8: empty field")
	// ErrSW8Base64 is a field that is not standard, padded base64.
	ErrSW8Base64 = errors.New("sw8: malformed base64")
	// ErrSW8SpanID is a parent span id that is not a decimal int32 >= 0.
	ErrSW8SpanID = errors.New("sw8: parent span id not a decimal int32 >= 0")
	// ErrSWControl is a decoded field holding a control character, or an
	// id (trace, segment) holding anything but printable ASCII: such a
	// value would reach log lines and the backend's storage as is.
	ErrSWControl = errors.New("sw8/sw6: decoded field holds control characters or a malformed id")
)

const (
	// swMaxLen bounds sw8 and sw6 values: both protocols require less.
	swMaxLen = 2048
	// swBufLen holds every base64 field of a value shorter than swMaxLen,
	// decoded, plus the suffix spanIDFromSW appends.
	swBufLen = swMaxLen/4*3 + swSpanSuffixLen
	// swSmallBufLen is the buffer for the values agents usually write.
	swSmallBufLen = 512
	// sw8Fields is the number of fields of an sw8 value.
	sw8Fields = 8
)

func init() { register(FormatSW8, func() Codec { return sw8Codec{} }) }

// sw8Codec reads and writes SkyWalking v3 sw8:
//
//	sw8: {sample}-{b64 trace id}-{b64 parent segment id}-{parent span id}-
//	     {b64 parent service}-{b64 parent instance}-{b64 parent endpoint}-
//	     {b64 address used at client}
//
// Extraction fills SpanContext.SW with the caller's fields, TraceID from the
// SkyWalking trace id (TraceIDFromSW), SpanID from the caller's segment and
// span (SpanIDFromSW) and Sampling from the sample flag (1 accept, 0 deny).
// With several sw8 fields the first is read. It allocates one string, shared
// by every decoded field, on valid input and nothing on invalid input.
type sw8Codec struct{}

// Format returns FormatSW8.
func (sw8Codec) Format() Format { return FormatSW8 }

// Fields returns the sw8 header name.
func (sw8Codec) Fields() []string { return []string{headerSW8} }

// Extract reads the first sw8 field of h.
func (sw8Codec) Extract(h http.Header, sc *SpanContext) error {
	vs := h[headerSW8]
	if len(vs) == 0 {
		return ErrAbsent
	}
	return parseSW8(vs[0], sc)
}

// sw8Order is the order in which the base64 fields of sw8 are decoded into
// one buffer: the parent segment id last, so that spanIDFromSW can append its
// suffix right after it.
var sw8Order = [...]int{1, 4, 5, 6, 7, 2}

func parseSW8(v string, sc *SpanContext) error {
	if v == "" {
		return ErrSW8Empty
	}
	if len(v) >= swMaxLen {
		return ErrSW8TooLong
	}
	var f [sw8Fields]string
	if splitDash(v, f[:]) != sw8Fields {
		return ErrSW8FieldCount
	}
	sampling, ok := swSampling(f[0])
	if !ok {
		return ErrSW8Sample
	}
	spanID, ok := parseSWUint(f[3])
	if !ok {
		return ErrSW8SpanID
	}
	// Decode into a small stack buffer when the fields fit, as they do for
	// the values agents write, so the common case clears less memory.
	need := swSpanSuffixLen
	for _, i := range sw8Order {
		need += len(f[i]) / 4 * 3
	}
	if need <= swSmallBufLen {
		var buf [swSmallBufLen]byte
		return decodeSW8(buf[:], &f, spanID, sampling, sc)
	}
	var buf [swBufLen]byte
	return decodeSW8(buf[:], &f, spanID, sampling, sc)
}

// decodeSW8 decodes the base64 fields of f into buf, which has room for all
// of them and the spanIDFromSW suffix, and fills sc from one string.
func decodeSW8(buf []byte, f *[sw8Fields]string, spanID int32, sampling Sampling, sc *SpanContext) error {
	var end [len(sw8Order)]int
	n := 0
	for k, i := range sw8Order {
		if f[i] == "" {
			return ErrSW8EmptyField
		}
		m, ok := decodeBase64(buf[n:], f[i])
		if !ok {
			return ErrSW8Base64
		}
		n += m
		end[k] = n
	}
	if !swPrintable(buf[:end[0]]) || !swPrintable(buf[end[4]:end[5]]) || !swNoControl(buf[end[0]:end[4]]) {
		return ErrSWControl
	}
	sc.TraceID, sc.TraceID64 = swTraceID(buf[:end[0]])
	sc.SpanID = spanIDFromSW(buf[end[4]:], end[5]-end[4], spanID)
	sc.Sampling = sampling
	s := string(buf[:n])
	sc.SW = SkyWalking{
		TraceID:   s[:end[0]],
		Service:   s[end[0]:end[1]],
		Instance:  s[end[1]:end[2]],
		Endpoint:  s[end[2]:end[3]],
		Address:   s[end[3]:end[4]],
		SegmentID: s[end[4]:end[5]],
		SpanID:    spanID,
	}
	return nil
}

// swPrintable reports whether an id is printable ASCII without spaces, as
// SkyWalking's trace and segment ids are.
func swPrintable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// swNoControl reports whether a decoded name (service, instance, endpoint,
// address) holds no ASCII control character.
func swNoControl(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// swTraceID maps decoded SkyWalking trace id bytes to the TraceID and whether
// it arrived 64 bits wide (16 hex digits).
func swTraceID(b []byte) (TraceID, bool) {
	id, hex := traceIDFromSW(b)
	return id, hex && len(b) == 16
}

// swSampling maps the SkyWalking sample flag to a Sampling state.
func swSampling(s string) (Sampling, bool) {
	switch s {
	case "1":
		return SamplingAccept, true
	case "0":
		return SamplingDeny, true
	}
	return SamplingUnset, false
}

// Inject writes sc as sw8, naming sc.SW.SegmentID and sc.SW.SpanID (the
// proxy's segment and Exit span) as the parent of the next hop, with the
// trace id SWTraceID returns and the sample flag 1 when sc.Sampling is
// sampled, else 0.
//
// It writes nothing when the value would be one that receivers reject: when
// sc has no trace id (neither sc.SW.TraceID nor a valid sc.TraceID), when
// sc.SW.SegmentID, Service, Instance, Endpoint or Address is empty (the
// protocol requires every field; the SkyWalking agents and this codec refuse
// empty ones), when sc.SW.SpanID is negative, or when the value would reach
// 2 KiB (callers bound Endpoint). It allocates the one header string.
func (sw8Codec) Inject(sc *SpanContext, w *Writer) {
	if v, ok := encodeSW8(sc); ok {
		w.Set(headerSW8, v)
	}
}

func encodeSW8(sc *SpanContext) (string, bool) {
	sw := &sc.SW
	if sw.SegmentID == "" || sw.Service == "" || sw.Instance == "" || sw.Endpoint == "" ||
		sw.Address == "" || sw.SpanID < 0 {
		return "", false
	}
	var hexID [32]byte
	tidLen := len(sw.TraceID)
	if tidLen == 0 {
		if !sc.TraceID.IsValid() {
			return "", false
		}
		encodeHex(hexID[:], sc.TraceID[:])
		tidLen = len(hexID)
	}
	n := 1 + sw8Fields - 1 + base64Len(tidLen) + base64Len(len(sw.SegmentID)) + decimalLen(sw.SpanID) +
		base64Len(len(sw.Service)) + base64Len(len(sw.Instance)) + base64Len(len(sw.Endpoint)) +
		base64Len(len(sw.Address))
	if n >= swMaxLen {
		return "", false
	}
	var stack [swMaxLen]byte
	b := stack[:0]
	if sc.Sampling.Sampled() {
		b = append(b, '1', '-')
	} else {
		b = append(b, '0', '-')
	}
	if sw.TraceID != "" {
		b = appendBase64(b, sw.TraceID)
	} else {
		b = appendBase64(b, hexID[:])
	}
	b = append(b, '-')
	b = appendBase64(b, sw.SegmentID)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(sw.SpanID), 10)
	for _, s := range [...]string{sw.Service, sw.Instance, sw.Endpoint, sw.Address} {
		b = append(b, '-')
		b = appendBase64(b, s)
	}
	return string(b), true
}

// splitDash splits v at '-' into dst and returns the number of fields, or
// len(dst)+1 when v has more fields than dst holds.
func splitDash(v string, dst []string) int {
	for i := range dst {
		field, rest, found := strings.Cut(v, "-")
		dst[i] = field
		if !found {
			return i + 1
		}
		v = rest
	}
	return len(dst) + 1
}

// parseSWUint parses a decimal int32 >= 0: ASCII digits only (leading zeros
// allowed), no sign, no spaces. Unlike strconv it allocates nothing when it
// fails.
func parseSWUint(s string) (int32, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		if n > math.MaxInt32 {
			return 0, false
		}
	}
	return int32(n), true
}

// decimalLen returns the number of digits of v >= 0 in decimal.
func decimalLen(v int32) int {
	n := 1
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

// The standard base64 alphabet (RFC 4648 section 4), used with padding by
// sw8 and sw6.
const base64Std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// base64Value maps an ASCII byte to its value in base64Std, or 0xff.
var base64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(base64Std); i++ {
		t[base64Std[i]] = byte(i)
	}
	return t
}()

// base64Len returns the padded base64 length of n bytes.
func base64Len(n int) int { return (n + 2) / 3 * 4 }

// appendBase64 appends the padded standard base64 encoding of src to dst. It
// takes a string or bytes so that neither needs converting (and copying).
func appendBase64[T string | []byte](dst []byte, src T) []byte {
	i := 0
	for ; i+3 <= len(src); i += 3 {
		v := uint(src[i])<<16 | uint(src[i+1])<<8 | uint(src[i+2])
		dst = append(dst, base64Std[v>>18&0x3f], base64Std[v>>12&0x3f], base64Std[v>>6&0x3f], base64Std[v&0x3f])
	}
	switch len(src) - i {
	case 2:
		v := uint(src[i])<<16 | uint(src[i+1])<<8
		dst = append(dst, base64Std[v>>18&0x3f], base64Std[v>>12&0x3f], base64Std[v>>6&0x3f], '=')
	case 1:
		v := uint(src[i]) << 16
		dst = append(dst, base64Std[v>>18&0x3f], base64Std[v>>12&0x3f], '=', '=')
	}
	return dst
}

// decodeBase64 decodes the padded standard base64 in s into dst, which must
// have room for len(s)/4*3 bytes, and returns the decoded length. It accepts
// what base64.StdEncoding accepts (non-zero bits after the last symbol
// included) except line breaks, which a header value cannot contain.
func decodeBase64(dst []byte, s string) (int, bool) {
	if len(s)%4 != 0 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i += 4 {
		a, b, c, d := base64Value[s[i]], base64Value[s[i+1]], base64Value[s[i+2]], base64Value[s[i+3]]
		if i+4 == len(s) && s[i+3] == '=' {
			if s[i+2] == '=' {
				if a|b > 0x3f {
					return 0, false
				}
				dst[n] = a<<2 | b>>4
				return n + 1, true
			}
			if a|b|c > 0x3f {
				return 0, false
			}
			dst[n] = a<<2 | b>>4
			dst[n+1] = b<<4 | c>>2
			return n + 2, true
		}
		if a|b|c|d > 0x3f {
			return 0, false
		}
		dst[n] = a<<2 | b>>4
		dst[n+1] = b<<4 | c>>2
		dst[n+2] = c<<6 | d
		n += 3
	}
	return n, true
}
