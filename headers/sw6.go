package headers

import (
	"errors"
	"math"
	"net/http"
	"strconv"
)

// SkyWalking v2 cross-process propagation (sw6, SkyWalking 6 and 7): the
// header name and the errors a malformed value yields.
const headerSW6 = "Sw6"

var (
	// ErrSW6Empty is an sw6 header with an empty value.
	ErrSW6Empty = errors.New("sw6: empty value")
	// ErrSW6TooLong is a value of 2 KiB or more; the protocol requires less.
	ErrSW6TooLong = errors.New("sw6: value of 2 KiB or more")
	// ErrSW6FieldCount is a value that has neither 7 nor 9 fields.
	ErrSW6FieldCount = errors.New("sw6: not 7 or 9 fields")
	// ErrSW6Sample is a sample flag other than 0 or 1.
	ErrSW6Sample = errors.New("sw6: sample flag not 0 or 1")
	// ErrSW6EmptyField is an empty base64 field.
	ErrSW6EmptyField = errors.New("sw6: empty field")
	// ErrSW6Base64 is a field that is not standard, padded base64.
	ErrSW6Base64 = errors.New("sw6: malformed base64")
	// ErrSW6SpanID is a parent span id that is not a decimal int32 >= 0.
	ErrSW6SpanID = errors.New("sw6: parent span id not a decimal int32 >= 0")
	// ErrSW6InstanceID is a parent or entry service instance id that is not
	// a decimal int32 >= 0.
	ErrSW6InstanceID = errors.New("sw6: service instance id not a decimal int32 >= 0")
	// ErrSW6Name is a peer or endpoint that is neither "#" followed by a
	// name nor a decimal integer id, or a peer with an empty name.
	ErrSW6Name = errors.New("sw6: peer or endpoint neither #name nor integer id")
)

const (
	// sw6Short and sw6Full are the field counts of the two forms of sw6:
	// without and with the entry and parent endpoints.
	sw6Short = 7
	sw6Full  = 9
)

func init() { register(FormatSW6, func() Codec { return sw6Codec{} }) }

// sw6Codec reads and writes the legacy SkyWalking v2 sw6 header, which
// current OAP servers no longer accept but SkyWalking 6 and 7 agents send:
//
//	sw6: {sample}-{b64 trace id}-{b64 parent segment id}-{parent span id}-
//	     {parent instance id}-{entry instance id}-{b64 peer}
//	     [-{b64 entry endpoint}-{b64 parent endpoint}]
//
// Peer and endpoints are "#" followed by a name, or an integer id registered
// with a v6 OAP. Extraction maps the value onto SpanContext.SW: TraceID,
// SegmentID, SpanID, Address (the peer, "#" removed), Endpoint (the parent
// endpoint, "#" removed; empty for the 7-field form and for the "no parent
// endpoint" id -1), Instance (the parent instance id in decimal); Service is
// empty, v2 has none. An integer id is kept as its decimal string. TraceID,
// SpanID and Sampling are derived as for sw8. With several sw6 fields the
// first is read. It allocates one string on valid input and nothing on
// invalid input.
type sw6Codec struct{}

// Format returns FormatSW6.
func (sw6Codec) Format() Format { return FormatSW6 }

// Fields returns the sw6 header name.
func (sw6Codec) Fields() []string { return []string{headerSW6} }

// Extract reads the first sw6 field of h.
func (sw6Codec) Extract(h http.Header, sc *SpanContext) error {
	vs := h[headerSW6]
	if len(vs) == 0 {
		return ErrAbsent
	}
	return parseSW6(vs[0], sc)
}

// sw6Kept lists the base64 fields of sw6 that extraction keeps, in the order
// they are decoded into one buffer: trace id, peer, parent endpoint, and the
// parent segment id last, so that spanIDFromSW can append its suffix right
// after it.
var sw6Kept = [...]int{1, 6, 8, 2}

func parseSW6(v string, sc *SpanContext) error {
	if v == "" {
		return ErrSW6Empty
	}
	if len(v) >= swMaxLen {
		return ErrSW6TooLong
	}
	var f [sw6Full]string
	nf := splitDash(v, f[:])
	if nf != sw6Short && nf != sw6Full {
		return ErrSW6FieldCount
	}
	sampling, ok := swSampling(f[0])
	if !ok {
		return ErrSW6Sample
	}
	spanID, ok := parseSWUint(f[3])
	if !ok {
		return ErrSW6SpanID
	}
	parentInstance, ok := parseSWUint(f[4])
	if !ok {
		return ErrSW6InstanceID
	}
	if _, ok := parseSWUint(f[5]); !ok {
		return ErrSW6InstanceID
	}

	// Decode into a small stack buffer when the fields fit, as they do for
	// the values agents write, so the common case clears less memory.
	need := len(f[4]) + swSpanSuffixLen
	for i := 1; i < nf; i++ {
		if i != 3 && i != 4 && i != 5 {
			need += len(f[i]) / 4 * 3
		}
	}
	if need <= swSmallBufLen {
		var buf [swSmallBufLen]byte
		return decodeSW6(buf[:], &f, nf, spanID, parentInstance, sampling, sc)
	}
	var buf [swBufLen]byte
	return decodeSW6(buf[:], &f, nf, spanID, parentInstance, sampling, sc)
}

// decodeSW6 decodes the nf fields of f into buf, which has room for all of
// them and the spanIDFromSW suffix, and fills sc from one string: the parent
// instance id in decimal, then the decoded fields of sw6Kept.
func decodeSW6(buf []byte, f *[sw6Full]string, nf int, spanID, parentInstance int32, sampling Sampling, sc *SpanContext) error {
	instanceEnd := len(strconv.AppendInt(buf[:0], int64(parentInstance), 10))
	n := instanceEnd
	var start, end [len(sw6Kept)]int
	for k, i := range sw6Kept {
		start[k] = n
		if i >= nf {
			end[k] = n
			continue
		}
		m, err := decodeSW6Field(buf[n:], f[i])
		if err != nil {
			return err
		}
		n += m
		end[k] = n
	}
	const trace, peer, endpoint, segment = 0, 1, 2, 3
	skip, ok := sw6Name(buf[start[peer]:end[peer]])
	if !ok || start[peer]+skip == end[peer] {
		return ErrSW6Name
	}
	start[peer] += skip
	if nf == sw6Full {
		skip, ok = sw6Name(buf[start[endpoint]:end[endpoint]])
		if !ok {
			return ErrSW6Name
		}
		start[endpoint] += skip
		if skip == 0 && string(buf[start[endpoint]:end[endpoint]]) == "-1" {
			start[endpoint] = end[endpoint]
		}
		// The entry endpoint is checked, not kept: decode it past the
		// kept strings, where the span id suffix then overwrites it.
		m, err := decodeSW6Field(buf[n:], f[7])
		if err != nil {
			return err
		}
		if _, ok := sw6Name(buf[n : n+m]); !ok {
			return ErrSW6Name
		}
	}
	if !swPrintable(buf[start[trace]:end[trace]]) || !swPrintable(buf[start[segment]:end[segment]]) ||
		!swNoControl(buf[start[peer]:end[peer]]) || !swNoControl(buf[start[endpoint]:end[endpoint]]) {
		return ErrSWControl
	}
	sc.TraceID, sc.TraceID64 = swTraceID(buf[start[trace]:end[trace]])
	sc.SpanID = spanIDFromSW(buf[start[segment]:], end[segment]-start[segment], spanID)
	sc.Sampling = sampling
	s := string(buf[:n])
	sc.SW = SkyWalking{
		TraceID:   s[start[trace]:end[trace]],
		SegmentID: s[start[segment]:end[segment]],
		SpanID:    spanID,
		Instance:  s[:instanceEnd],
		Endpoint:  s[start[endpoint]:end[endpoint]],
		Address:   s[start[peer]:end[peer]],
	}
	return nil
}

// decodeSW6Field decodes one non-empty base64 field of sw6 into dst.
func decodeSW6Field(dst []byte, field string) (int, error) {
	if field == "" {
		return 0, ErrSW6EmptyField
	}
	m, ok := decodeBase64(dst, field)
	if !ok {
		return 0, ErrSW6Base64
	}
	return m, nil
}

// sw6Name checks a decoded peer or endpoint: "#" and a name, for which it
// returns 1, the length of the "#" to skip, or a decimal int32 id with an
// optional "-", for which it returns 0.
func sw6Name(b []byte) (skip int, ok bool) {
	if len(b) > 0 && b[0] == '#' {
		return 1, true
	}
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return 0, false
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
		if v > math.MaxInt32+1 {
			return 0, false
		}
	}
	return 0, v <= math.MaxInt32 || b[0] == '-'
}

// Inject writes sc as sw6, for SkyWalking 6 and 7 receivers (write it only
// when configured to). It writes the 9-field form with sc.SW.Endpoint as both
// entry and parent endpoint, or the 7-field form when Endpoint is empty. Peer
// and endpoints are written as "#" and the name, so an id that extraction
// kept as a decimal string travels on as a name. The parent and entry
// service instance ids are both sc.SW.Instance when it is a decimal int32
// >= 0, else 0: v2 instance ids are integers a v6 OAP hands out at
// registration, which the proxy does not perform, and 0 is v2's "no id".
//
// Like sw8 it writes nothing when sc has no trace id, sc.SW.SegmentID or
// Address is empty, sc.SW.SpanID is negative, or the value would reach 2 KiB.
// It allocates the one header string.
func (sw6Codec) Inject(sc *SpanContext, w *Writer) {
	if v, ok := encodeSW6(sc); ok {
		w.Set(headerSW6, v)
	}
}

func encodeSW6(sc *SpanContext) (string, bool) {
	sw := &sc.SW
	if sw.SegmentID == "" || sw.Address == "" || sw.SpanID < 0 {
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
	instance, ok := parseSWUint(sw.Instance)
	if !ok {
		instance = 0
	}
	n := 1 + sw6Short - 1 + base64Len(tidLen) + base64Len(len(sw.SegmentID)) + decimalLen(sw.SpanID) +
		2*decimalLen(instance) + base64Len(1+len(sw.Address))
	if sw.Endpoint != "" {
		n += 2 + 2*base64Len(1+len(sw.Endpoint))
	}
	if n >= swMaxLen {
		return "", false
	}
	var stack, name [swMaxLen]byte
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
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(instance), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(instance), 10)
	b = append(b, '-')
	b = appendBase64(b, append(append(name[:0], '#'), sw.Address...))
	if sw.Endpoint != "" {
		endpoint := append(append(name[:0], '#'), sw.Endpoint...)
		b = append(b, '-')
		b = appendBase64(b, endpoint)
		b = append(b, '-')
		b = appendBase64(b, endpoint)
	}
	return string(b), true
}
