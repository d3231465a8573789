package headers

import (
	"errors"
	"net/http"
	"strings"
)

// Errors of the W3C baggage codec. A baggage list is never dropped whole for
// a bad member: the valid members are kept and the error says what was lost.
var (
	// ErrBaggageMember is a baggage list with list-members that do not
	// follow the grammar (key, value or property); they were dropped.
	ErrBaggageMember = errors.New("baggage: invalid list-member dropped")
	// ErrBaggageLimit is a baggage list with more than 64 members or 8192
	// bytes; the members beyond were dropped whole.
	ErrBaggageLimit = errors.New("baggage: list-members beyond 64 members or 8192 bytes dropped")
)

// headerBaggage is the canonical key of the W3C baggage header.
const headerBaggage = "Baggage"

// Limits of a propagated baggage list: the minimum the specification
// requires a platform to propagate, which is also what we propagate at most.
const (
	baggageMaxMembers = 64
	baggageMaxBytes   = 8192
)

func init() { register(FormatBaggage, func() Codec { return baggageCodec{} }) }

// baggageCodec reads and writes the W3C baggage header
// (https://www.w3.org/TR/baggage/):
//
//	baggage: key=value;property;k=v, key2=value2
//
// Baggage is not a trace context, so the codec is a Merger: in a Propagator
// it does not compete with the trace formats but adds its members to the
// winner's SpanContext.Baggage (see Merge).
//
// Validation follows the specification's grammar: a key and a property key
// are RFC 7230 tokens; a value is baggage-octets (printable ASCII without
// space, DQUOTE, ',', ';' and '\') in which every '%' starts a two-digit
// escape; OWS around members, '=' and ';' is allowed. Several baggage fields
// form one list. The specification lets a receiver remove a member that is
// not in the format and drop members beyond its limits in any order: the
// codec drops each invalid member (keeping the rest, and returning
// ErrBaggageMember), and keeps members left to right while they fit in 64
// members and 8192 bytes, dropping the others whole (ErrBaggageLimit).
// Empty members (",,") are skipped silently. A tab, which can only be OWS,
// is written as a space.
//
// A single field whose members are all valid and within the limits is kept
// as a substring of itself: no allocation. Otherwise the kept members are
// joined into one new string, the only allocation.
type baggageCodec struct{}

// Format returns FormatBaggage.
func (baggageCodec) Format() Format { return FormatBaggage }

// Fields returns Baggage.
func (baggageCodec) Fields() []string { return []string{headerBaggage} }

// Extract reads the baggage fields of h into sc.Baggage, replacing what it
// held. On ErrBaggageMember or ErrBaggageLimit sc.Baggage holds the members
// that were kept.
func (c baggageCodec) Extract(h http.Header, sc *SpanContext) error {
	sc.Baggage = ""
	return c.Merge(h, sc)
}

// Merge reads the baggage fields of h and adds their members to
// sc.Baggage. When sc.Baggage already holds members (from Jaeger uberctx-*
// or OpenTracing ot-baggage-* headers of the winning format), the W3C
// members come first and the others follow unless the W3C list names their
// key, within the same limits; that join is one allocation.
func (baggageCodec) Merge(h http.Header, sc *SpanContext) error {
	fields := h[headerBaggage]
	if len(fields) == 0 {
		return ErrAbsent
	}
	list, err := parseBaggage(fields)
	switch {
	case list == "":
	case sc.Baggage == "":
		sc.Baggage = list
	default:
		sc.Baggage = mergeBaggage(list, sc.Baggage)
	}
	return err
}

// Inject writes sc.Baggage as one baggage header, without members that are
// not in the format or beyond the limits; nothing when none is left.
func (baggageCodec) Inject(sc *SpanContext, w *Writer) {
	if sc.Baggage == "" {
		return
	}
	if list, _ := parseBaggage([]string{sc.Baggage}); list != "" {
		w.Set(headerBaggage, list)
	}
}

// baggageLimit keeps members left to right while they fit the limits. Run
// twice over the same members, it makes the same decisions.
type baggageLimit struct {
	n    int // members kept
	size int // bytes of the kept members joined with ","
}

// fits reports whether a member of length l still fits, and counts it.
func (b *baggageLimit) fits(l int) bool {
	next := b.size + l
	if b.n > 0 {
		next++
	}
	if b.n == baggageMaxMembers || next > baggageMaxBytes {
		return false
	}
	b.n++
	b.size = next
	return true
}

// baggageMembers iterates over the non-empty members of baggage fields,
// trimmed of OWS.
type baggageMembers struct {
	fields []string
	rest   string
	empty  int // empty members skipped
}

func (it *baggageMembers) next() (string, bool) {
	for {
		for it.rest == "" {
			if len(it.fields) == 0 {
				return "", false
			}
			it.rest, it.fields = it.fields[0], it.fields[1:]
		}
		var m string
		m, it.rest, _ = strings.Cut(it.rest, ",")
		if m = trimOWS(m); m != "" {
			return m, true
		}
		it.empty++
	}
}

// parseBaggage validates baggage fields as one list and returns the members
// kept, joined by ",", and ErrBaggageMember or ErrBaggageLimit when some
// were dropped (ErrBaggageMember first).
func parseBaggage(fields []string) (string, error) {
	var lim baggageLimit
	var err error
	clean := len(fields) == 1
	it := baggageMembers{fields: fields}
	for m, ok := it.next(); ok; m, ok = it.next() {
		if _, _, valid := splitBaggageMember(m); !valid {
			err, clean = ErrBaggageMember, false
			continue
		}
		if !lim.fits(len(m)) {
			if err == nil {
				err = ErrBaggageLimit
			}
			clean = false
		}
	}
	if lim.n == 0 {
		return "", err
	}
	if clean && it.empty == 0 {
		// One field, every member kept: the field itself, if it is no
		// longer than the limit with its inner OWS and has no tab, which
		// is never written.
		if f := trimTracestate(fields[0]); len(f) <= baggageMaxBytes && strings.IndexByte(f, '\t') < 0 {
			return f, nil
		}
	}
	var buf [baggageMaxBytes]byte
	out := buf[:0]
	lim = baggageLimit{}
	it = baggageMembers{fields: fields}
	for m, ok := it.next(); ok; m, ok = it.next() {
		if _, _, valid := splitBaggageMember(m); valid && lim.fits(len(m)) {
			if len(out) > 0 {
				out = append(out, ',')
			}
			out = appendMember(out, m)
		}
	}
	return string(out), err
}

// appendMember appends a valid member, its OWS tabs written as spaces: a
// tab can only be OWS there, and no codec writes a control character.
func appendMember(dst []byte, m string) []byte {
	for i := 0; i < len(m); i++ {
		if c := m[i]; c == '\t' {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// mergeBaggage joins two valid lists: every member of first, then the
// members of second whose key first does not name, while they fit the
// limits.
func mergeBaggage(first, second string) string {
	var keys [baggageMaxMembers]string
	var lim baggageLimit
	var buf [baggageMaxBytes]byte
	out := buf[:0]
	for i, list := range [2]string{first, second} {
		it := baggageMembers{fields: []string{list}}
	members:
		for m, ok := it.next(); ok; m, ok = it.next() {
			key, _, valid := splitBaggageMember(m)
			if !valid {
				continue
			}
			if i == 1 {
				for _, k := range keys[:lim.n] {
					if k == key {
						continue members
					}
				}
			}
			if !lim.fits(len(m)) {
				continue
			}
			keys[lim.n-1] = key
			if len(out) > 0 {
				out = append(out, ',')
			}
			out = appendMember(out, m)
		}
	}
	return string(out)
}

// splitBaggageMember validates one list-member, trimmed of OWS, and returns
// its key and its value (percent-encoded, without properties):
//
//	list-member = key OWS "=" OWS value *( OWS ";" OWS property )
//	property    = key OWS "=" OWS value / key OWS
func splitBaggageMember(m string) (key, value string, ok bool) {
	i := scanToken(m, 0)
	if i == 0 {
		return "", "", false
	}
	key = m[:i]
	i = skipOWS(m, i)
	if i == len(m) || m[i] != '=' {
		return "", "", false
	}
	i = skipOWS(m, i+1)
	start := i
	if i, ok = scanBaggageValue(m, i); !ok {
		return "", "", false
	}
	value = m[start:i]
	for i = skipOWS(m, i); i < len(m); i = skipOWS(m, i) {
		if m[i] != ';' {
			return "", "", false
		}
		i = skipOWS(m, i+1)
		j := scanToken(m, i)
		if j == i {
			return "", "", false
		}
		i = skipOWS(m, j)
		if i < len(m) && m[i] == '=' {
			if i, ok = scanBaggageValue(m, skipOWS(m, i+1)); !ok {
				return "", "", false
			}
		}
	}
	return key, value, true
}

// scanToken returns the end of the RFC 7230 token starting at s[i].
func scanToken(s string, i int) int {
	for i < len(s) && tokenChar[s[i]] {
		i++
	}
	return i
}

// skipOWS returns the index of the first byte at or after i that is not a
// space or a tab.
func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// scanBaggageValue returns the end of the baggage value starting at s[i]:
// baggage-octets, each '%' followed by two hex digits of either case.
func scanBaggageValue(s string, i int) (int, bool) {
	for i < len(s) && baggageOctet[s[i]] {
		if s[i] == '%' {
			if i+2 >= len(s) || hexValueFold[s[i+1]] > 0x0f || hexValueFold[s[i+2]] > 0x0f {
				return i, false
			}
			i += 2
		}
		i++
	}
	return i, true
}

// Byte classes of the baggage grammar, and hex of either case.
var (
	// tokenChar marks RFC 7230 tchar.
	tokenChar = byteClass(func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
	})
	// baggageOctet marks %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E.
	baggageOctet = byteClass(func(c byte) bool {
		return c == 0x21 || c >= 0x23 && c <= 0x2b || c >= 0x2d && c <= 0x3a ||
			c >= 0x3c && c <= 0x5b || c >= 0x5d && c <= 0x7e
	})
	// hexValueFold maps a hex digit of either case to its value, anything
	// else to 0xff.
	hexValueFold = func() (t [256]byte) {
		t = hexValue
		for c := byte('A'); c <= 'F'; c++ {
			t[c] = c - 'A' + 10
		}
		return t
	}()
)

// isToken reports whether s is a non-empty RFC 7230 token.
func isToken(s string) bool { return s != "" && scanToken(s, 0) == len(s) }

// prefixedBaggage reads the baggage of a format that sends one header per
// item, named prefix+key (Jaeger uberctx-, OpenTracing ot-baggage-), into a
// W3C baggage-string. The prefix is matched without regard to case; the key
// is the rest of the header name, lowercased (header names are
// case-insensitive), and must be a token. Of several values the first is
// read. The value is percent-decoded leniently (a '%' without two hex
// digits is literal; '+' is a space when plusSpace is set, as URL query
// encoding has it) and re-encoded as a baggage value. Headers are taken in
// the order of their names, the first 64 at most, while they fit 8192
// bytes; the rest are dropped whole, and dropped reports it. It returns ""
// when none is kept, and allocates the one string otherwise.
func prefixedBaggage(h http.Header, prefix string, plusSpace bool) (list string, dropped bool) {
	var names [baggageMaxMembers]string
	n := 0
	for k, vs := range h {
		if len(vs) == 0 || len(k) <= len(prefix) || !strings.EqualFold(k[:len(prefix)], prefix) || !isToken(k[len(prefix):]) {
			continue
		}
		i := n
		switch {
		case n < len(names):
			n++
		case k >= names[n-1]:
			dropped = true
			continue
		default:
			dropped = true
			i = n - 1
		}
		for ; i > 0 && names[i-1] > k; i-- {
			names[i] = names[i-1]
		}
		names[i] = k
	}
	if n == 0 {
		return "", dropped
	}
	var lim baggageLimit
	var keep [baggageMaxMembers]bool
	for i, k := range names[:n] {
		keep[i] = lim.fits(len(k) - len(prefix) + 1 + encodedBaggageLen(h[k][0], plusSpace))
		dropped = dropped || !keep[i]
	}
	var b strings.Builder
	b.Grow(lim.size)
	for i, k := range names[:n] {
		if !keep[i] {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		for j := len(prefix); j < len(k); j++ {
			c := k[j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
		}
		b.WriteByte('=')
		appendBaggageValue(&b, h[k][0], plusSpace)
	}
	return b.String(), dropped
}

// decodeNext decodes the byte of v at i, leniently: a valid %XX escape is
// one byte, '+' is a space when plusSpace is set, anything else is itself.
// It returns the byte and the index after it.
func decodeNext(v string, i int, plusSpace bool) (byte, int) {
	c := v[i]
	switch {
	case c == '%' && i+2 < len(v) && hexValueFold[v[i+1]] <= 0x0f && hexValueFold[v[i+2]] <= 0x0f:
		return hexValueFold[v[i+1]]<<4 | hexValueFold[v[i+2]], i + 3
	case c == '+' && plusSpace:
		return ' ', i + 1
	}
	return c, i + 1
}

// encodedBaggageLen returns the length of v, decoded leniently, once
// percent-encoded as a baggage value.
func encodedBaggageLen(v string, plusSpace bool) int {
	n := 0
	for i := 0; i < len(v); {
		var c byte
		c, i = decodeNext(v, i, plusSpace)
		if baggageOctet[c] && c != '%' {
			n++
		} else {
			n += 3
		}
	}
	return n
}

// appendBaggageValue writes v, decoded leniently, percent-encoded as a
// baggage value: baggage-octets other than '%' as themselves, every other
// byte as %XX.
func appendBaggageValue(b *strings.Builder, v string, plusSpace bool) {
	const upperHex = "0123456789ABCDEF"
	for i := 0; i < len(v); {
		var c byte
		c, i = decodeNext(v, i, plusSpace)
		if baggageOctet[c] && c != '%' {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0x0f])
		}
	}
}

// injectPrefixedBaggage writes each valid member of sc.Baggage as a header
// prefix+key (prefix in canonical header form; prefix+key is then canonical
// too, the key's first letter upper case only after a '-') whose
// value is the member's percent-encoded value, properties dropped. With
// plusSpace, a literal '+' is written %2B, because the receiver decodes '+'
// as a space. Two keys that differ only in case name one header: the later
// member wins, as Writer.Set has it. It allocates the name and the value of
// each header.
func injectPrefixedBaggage(sc *SpanContext, w *Writer, prefix string, plusSpace bool) {
	if sc.Baggage == "" {
		return
	}
	var lim baggageLimit
	it := baggageMembers{fields: []string{sc.Baggage}}
	for m, ok := it.next(); ok; m, ok = it.next() {
		key, value, valid := splitBaggageMember(m)
		if !valid || !lim.fits(len(m)) {
			continue
		}
		var name strings.Builder
		name.Grow(len(prefix) + len(key))
		name.WriteString(prefix)
		upper := strings.HasSuffix(prefix, "-")
		for j := 0; j < len(key); j++ {
			c := key[j]
			switch {
			case upper && c >= 'a' && c <= 'z':
				c -= 'a' - 'A'
			case !upper && c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			}
			upper = c == '-'
			name.WriteByte(c)
		}
		val := value
		if plusSpace && strings.IndexByte(value, '+') >= 0 {
			var b strings.Builder
			b.Grow(len(value) + 2*strings.Count(value, "+"))
			for j := 0; j < len(value); j++ {
				if value[j] == '+' {
					b.WriteString("%2B")
				} else {
					b.WriteByte(value[j])
				}
			}
			val = b.String()
		}
		w.Set(name.String(), val)
	}
}
