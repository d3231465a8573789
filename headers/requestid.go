package headers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/textproto"
)

// ErrRequestIDInvalid is a request id that is empty, longer than the
// configured cap, or holds characters outside printable ASCII. It is treated
// as absent: not recorded, not forwarded (replaced when generation is on).
var ErrRequestIDInvalid = errors.New("requestid: request id empty, too long or not printable ASCII")

// Defaults of the request id codec.
const (
	headerRequestID        = "X-Request-Id"
	requestIDDefaultMaxLen = 200
	uuidLen                = 36
)

// requestIDCodec passes a request id header through: see NewRequestIDCodec.
type requestIDCodec struct {
	header   string
	generate bool
	maxLen   int
}

// NewRequestIDCodec returns the codec of a request id header (FormatRequestID).
// header is the header name, X-Request-ID when empty (X-Correlation-ID is a
// common alternative); it is canonicalized and must be a token. When
// generate is set, a request without a valid id gets a new random UUIDv4.
// maxLen caps the id's length, 200 when 0 or less.
//
// A request id is not a trace context and is never made a trace id (the
// client chooses it): the codec is a Merger that records the id in
// SpanContext.RequestID whichever trace format won, and Inject writes it
// back unchanged. An id longer than maxLen, empty, or with a byte outside
// printable ASCII (0x20-0x7E) is treated as absent and reported as
// ErrRequestIDInvalid. Extraction allocates nothing, except the one string
// of a generated id.
func NewRequestIDCodec(header string, generate bool, maxLen int) (Codec, error) {
	if header == "" {
		header = headerRequestID
	}
	if !isToken(header) {
		return nil, fmt.Errorf("requestid: header name %q is not a valid HTTP field name", header)
	}
	if maxLen <= 0 {
		maxLen = requestIDDefaultMaxLen
	}
	return requestIDCodec{header: textproto.CanonicalMIMEHeaderKey(header), generate: generate, maxLen: maxLen}, nil
}

// Format returns FormatRequestID.
func (requestIDCodec) Format() Format { return FormatRequestID }

// Fields returns the configured header name.
func (c requestIDCodec) Fields() []string { return []string{c.header} }

// Extract records the request id of h in sc.RequestID, see Merge.
func (c requestIDCodec) Extract(h http.Header, sc *SpanContext) error { return c.Merge(h, sc) }

// Merge records the first value of the header, trimmed of OWS, in
// sc.RequestID, touching nothing else. When the header is absent or invalid
// sc.RequestID is a generated id if generation is on, else empty, and
// ErrAbsent or ErrRequestIDInvalid is returned.
func (c requestIDCodec) Merge(h http.Header, sc *SpanContext) error {
	sc.RequestID = ""
	err := ErrAbsent
	if vs := h[c.header]; len(vs) > 0 {
		if v := trimOWS(vs[0]); c.valid(v) {
			sc.RequestID = v
			return nil
		}
		err = ErrRequestIDInvalid
	}
	if c.generate {
		sc.RequestID = newRequestID()
	}
	return err
}

// valid reports whether v is 1 to maxLen bytes of printable ASCII, not
// starting or ending with a space.
func (c requestIDCodec) valid(v string) bool {
	if v == "" || len(v) > c.maxLen || v[0] == ' ' || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// Inject writes sc.RequestID when it is valid.
func (c requestIDCodec) Inject(sc *SpanContext, w *Writer) {
	if c.valid(sc.RequestID) {
		w.Set(c.header, sc.RequestID)
	}
}

// newRequestID returns a random UUIDv4 (RFC 9562) in its 36-character form,
// from the lock-free generator of math/rand/v2: a request id needs to be
// unique, not secret.
func newRequestID() string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], rand.Uint64())
	binary.BigEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	var b [uuidLen]byte
	appendUUID(b[:0], u[:])
	return string(b[:])
}

// appendUUID appends 16 bytes in the 8-4-4-4-12 hex form.
func appendUUID(dst, u []byte) []byte {
	dst = appendHex(dst, u[:4])
	dst = append(dst, '-')
	dst = appendHex(dst, u[4:6])
	dst = append(dst, '-')
	dst = appendHex(dst, u[6:8])
	dst = append(dst, '-')
	dst = appendHex(dst, u[8:10])
	dst = append(dst, '-')
	return appendHex(dst, u[10:])
}
