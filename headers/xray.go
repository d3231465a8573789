package headers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors of the AWS X-Ray codec. Each is a package-level value, so returning
// one allocates nothing; those about ids also match ErrMalformedID or
// ErrZeroID with errors.Is.
var (
	// ErrXRayTooLong is an X-Amzn-Trace-Id longer than 2048 bytes.
	ErrXRayTooLong = errors.New("xray: X-Amzn-Trace-Id longer than 2048 bytes")
	// ErrXRayPart is a part that is not key=value, with a key that is not a
	// token or a value with control or non-ASCII characters.
	ErrXRayPart = errors.New("xray: X-Amzn-Trace-Id part is not key=value of printable ASCII")
	// ErrXRayNoRoot is a header without a Root key.
	ErrXRayNoRoot = errors.New("xray: no Root")
	// ErrXRayDuplicate is Root, Parent or Sampled given twice.
	ErrXRayDuplicate = errors.New("xray: Root, Parent or Sampled given twice")
	// ErrXRayRoot is a Root that is not 1-{8 hex}-{24 hex}, lowercase.
	ErrXRayRoot = fmt.Errorf("xray: Root: %w", ErrMalformedID)
	// ErrXRayZeroRoot is a Root whose 32 hex digits are all zero.
	ErrXRayZeroRoot = fmt.Errorf("xray: Root: %w", ErrZeroID)
	// ErrXRayParent is a Parent that is not 16 lowercase hex digits.
	ErrXRayParent = fmt.Errorf("xray: Parent: %w", ErrMalformedID)
	// ErrXRayZeroParent is an all-zero Parent.
	ErrXRayZeroParent = fmt.Errorf("xray: Parent: %w", ErrZeroID)
	// ErrXRaySampled is a Sampled other than 0, 1 or ?.
	ErrXRaySampled = errors.New("xray: Sampled not 0, 1 or ?")
)

// X-Ray header key, its known keys and lengths.
const (
	headerXRay      = "X-Amzn-Trace-Id"
	xrayKeyRoot     = "Root"
	xrayKeyParent   = "Parent"
	xrayKeySampled  = "Sampled"
	xrayRootLen     = 35 // 1-{8 hex}-{24 hex}
	xrayMaxLen      = 2048
	xrayFixedPrefix = len("Root=") + xrayRootLen + len(";Parent=") + 16 + len(";Sampled=") + 1
)

func init() { register(FormatXRay, func() Codec { return xrayCodec{} }) }

// xrayCodec reads and writes the AWS X-Ray trace header:
//
//	X-Amzn-Trace-Id: Root=1-{8 hex epoch}-{24 hex};Parent={16 hex};Sampled={0|1|?}
//
// Parts are separated by ';' (OWS around them is trimmed, empty parts
// skipped), keys are case-sensitive and in any order. Root's 32 hex digits
// (epoch and random part) are the TraceID. Parent is the caller's span;
// a Root without Parent (an AWS load balancer starting the trace) yields a
// trace id without span id, so HasIDs is false and the caller decides
// whether to keep the trace id. Sampled 1 accepts, 0 denies, ? or absent
// leaves sampling unset. Every other key=value part (Self=, Lineage=, a
// custom key) is kept in SpanContext.XRayExtra and re-emitted: as a
// substring of the header when those parts are adjacent without a tab
// between them (no allocation), else joined into one new string without
// OWS. Values must be printable ASCII; the
// header is capped at 2048 bytes.
type xrayCodec struct{}

// Format returns FormatXRay.
func (xrayCodec) Format() Format { return FormatXRay }

// Fields returns X-Amzn-Trace-Id.
func (xrayCodec) Fields() []string { return []string{headerXRay} }

// Extract reads the first X-Amzn-Trace-Id field of h.
func (xrayCodec) Extract(h http.Header, sc *SpanContext) error {
	vs := h[headerXRay]
	if len(vs) == 0 {
		return ErrAbsent
	}
	return parseXRay(vs[0], sc)
}

// xrayPart returns the bounds of the part of v starting at start (ending at
// the next ';' or the end), trimmed of OWS, and the start of the next part.
func xrayPart(v string, start int) (ps, pe, next int) {
	end := strings.IndexByte(v[start:], ';')
	if end < 0 {
		end = len(v)
	} else {
		end += start
	}
	ps, pe = start, end
	for ps < pe && (v[ps] == ' ' || v[ps] == '\t') {
		ps++
	}
	for pe > ps && (v[pe-1] == ' ' || v[pe-1] == '\t') {
		pe--
	}
	return ps, pe, end + 1
}

// splitXRayPart splits a trimmed part into key and value, checking that the
// key is a token and the value printable ASCII.
func splitXRayPart(part string) (key, value string, ok bool) {
	key, value, ok = strings.Cut(part, "=")
	if !ok || !isToken(key) {
		return "", "", false
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 || c > 0x7e {
			return "", "", false
		}
	}
	return key, value, true
}

func parseXRay(v string, sc *SpanContext) error {
	if len(v) > xrayMaxLen {
		return ErrXRayTooLong
	}
	var hasRoot, hasParent, hasSampled bool
	extraStart, extraEnd, extras, extraLen := 0, 0, 0, 0
	adjacent, interrupted := true, false
	for start := 0; start <= len(v); {
		ps, pe, next := xrayPart(v, start)
		start = next
		if ps == pe {
			interrupted = extras > 0
			continue
		}
		key, value, ok := splitXRayPart(v[ps:pe])
		if !ok {
			return ErrXRayPart
		}
		switch key {
		case xrayKeyRoot:
			if hasRoot {
				return ErrXRayDuplicate
			}
			hasRoot = true
			if err := parseXRayRoot(value, &sc.TraceID); err != nil {
				return err
			}
		case xrayKeyParent:
			if hasParent {
				return ErrXRayDuplicate
			}
			hasParent = true
			if !decodeHex(sc.SpanID[:], value) {
				return ErrXRayParent
			}
			if !sc.SpanID.IsValid() {
				return ErrXRayZeroParent
			}
		case xrayKeySampled:
			if hasSampled {
				return ErrXRayDuplicate
			}
			hasSampled = true
			switch value {
			case "1":
				sc.Sampling = SamplingAccept
			case "0":
				sc.Sampling = SamplingDeny
			case "?":
			default:
				return ErrXRaySampled
			}
		default:
			if extras == 0 {
				extraStart = ps
			} else {
				extraLen++
				adjacent = adjacent && !interrupted
			}
			extras++
			extraLen += pe - ps
			extraEnd = pe
			interrupted = false
			continue
		}
		interrupted = extras > 0
	}
	if !hasRoot {
		return ErrXRayNoRoot
	}
	switch {
	case extras == 0:
	case adjacent && strings.IndexByte(v[extraStart:extraEnd], '\t') < 0:
		sc.XRayExtra = v[extraStart:extraEnd]
	default:
		sc.XRayExtra = joinXRayExtra(v, extraLen)
	}
	return nil
}

// joinXRayExtra joins the parts of a valid header v that are not Root,
// Parent or Sampled with ';'; n is the joined length.
func joinXRayExtra(v string, n int) string {
	var b strings.Builder
	b.Grow(n)
	for start := 0; start <= len(v); {
		ps, pe, next := xrayPart(v, start)
		start = next
		if ps == pe {
			continue
		}
		switch key, _, _ := strings.Cut(v[ps:pe], "="); key {
		case xrayKeyRoot, xrayKeyParent, xrayKeySampled:
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(v[ps:pe])
	}
	return b.String()
}

// parseXRayRoot parses 1-{8 hex}-{24 hex} into t.
func parseXRayRoot(s string, t *TraceID) error {
	if len(s) != xrayRootLen || s[0] != '1' || s[1] != '-' || s[10] != '-' {
		return ErrXRayRoot
	}
	if !decodeHex(t[:4], s[2:10]) || !decodeHex(t[4:], s[11:]) {
		return ErrXRayRoot
	}
	if !t.IsValid() {
		return ErrXRayZeroRoot
	}
	return nil
}

// validXRayExtra reports whether s is fit to re-emit: ';'-separated
// key=value parts of printable ASCII, short enough for the header cap.
func validXRayExtra(s string) bool {
	if len(s) > xrayMaxLen-xrayFixedPrefix-1 {
		return false
	}
	for start := 0; start <= len(s); {
		ps, pe, next := xrayPart(s, start)
		start = next
		if ps == pe {
			continue
		}
		key, _, ok := splitXRayPart(s[ps:pe])
		if !ok || key == xrayKeyRoot || key == xrayKeyParent || key == xrayKeySampled {
			return false
		}
	}
	return true
}

// Inject writes Root=1-{first 8 hex of the trace id}-{other 24};Parent={span
// id};Sampled={1|0|?} (1 for accept and debug, ? when unset), followed by
// sc.XRayExtra when it is fit to re-emit. A context without ids writes
// nothing. A 64-bit trace id gives an epoch part of zeros.
func (xrayCodec) Inject(sc *SpanContext, w *Writer) {
	if !sc.HasIDs() {
		return
	}
	extra := sc.XRayExtra
	if extra != "" && !validXRayExtra(extra) {
		extra = ""
	}
	var b [xrayFixedPrefix]byte
	out := append(b[:0], "Root=1-"...)
	out = appendHex(out, sc.TraceID[:4])
	out = append(out, '-')
	out = appendHex(out, sc.TraceID[4:])
	out = append(out, ";Parent="...)
	out = sc.SpanID.AppendHex(out)
	out = append(out, ";Sampled="...)
	switch sc.Sampling {
	case SamplingAccept, SamplingDebug:
		out = append(out, '1')
	case SamplingDeny:
		out = append(out, '0')
	default:
		out = append(out, '?')
	}
	if extra == "" {
		w.Set(headerXRay, string(out))
		return
	}
	var v strings.Builder
	v.Grow(len(out) + 1 + len(extra))
	v.Write(out)
	v.WriteByte(';')
	v.WriteString(extra)
	w.Set(headerXRay, v.String())
}
