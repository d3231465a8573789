package zipkin

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// Constant JSON fragments, in the order a span is written.
const (
	fragTraceID    = `{"traceId":"`
	fragID         = `","id":"`
	fragParentID   = `","parentId":"`
	fragKindServer = `","kind":"SERVER"`
	fragKindClient = `","kind":"CLIENT"`
	fragName       = `,"name":`
	fragTimestamp  = `,"timestamp":`
	fragDuration   = `,"duration":`
	fragDebug      = `,"debug":true`
	fragLocal      = `,"localEndpoint":{"serviceName":`
	fragRemote     = `,"remoteEndpoint":{`
	fragIPv4       = `"ipv4":"`
	fragIPv6       = `"ipv6":"`
	fragService    = `"serviceName":`
	fragPort       = `"port":`
	fragTags       = `,"tags":{`
	fragAnnotation = `{"timestamp":`
	fragAnnValue   = `,"value":`
	fragStatusKey  = `"` + exporter.TagHTTPStatusCode + `":"`
	fragErrorKey   = `"` + exporter.TagError + `":`
	fragReasonKey  = `"` + exporter.TagSamplingReason + `":`
	fragSW8Key     = `"` + exporter.TagSW8TraceID + `":`
)

const hexDigits = "0123456789abcdef"

// plainSafe and lowerSafe mark the ASCII bytes copied unchanged into a JSON
// string; lowerSafe also stops at A-Z, which lowercased names rewrite.
var plainSafe, lowerSafe = func() (plain, lower [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		plain[c] = c != '"' && c != '\\'
		lower[c] = plain[c] && (c < 'A' || c > 'Z')
	}
	return plain, lower
}()

// AppendJSON appends the batch to dst as one Zipkin v2 JSON array (the
// ListOfSpans body of POST /api/v2/spans) and returns the extended buffer.
// Each record contributes its SERVER span followed by its CLIENT spans; nil
// records are skipped. On a buffer that is already large enough it allocates
// nothing.
func AppendJSON(dst []byte, batch []*exporter.Record) []byte {
	dst = append(dst, '[')
	first := true
	for _, r := range batch {
		if r == nil {
			continue
		}
		var hex [32]byte
		r.TraceID.AppendHex(hex[:0])
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendSpan(dst, r, &r.Server, &hex)
		for i := range r.Clients {
			dst = append(dst, ',')
			dst = appendSpan(dst, r, &r.Clients[i], &hex)
		}
	}
	return append(dst, ']')
}

// AppendSpanJSON appends one span of r to dst as a Zipkin v2 JSON object.
// s is &r.Server or one of &r.Clients[i]; its Kind decides how it is written.
func AppendSpanJSON(dst []byte, r *exporter.Record, s *exporter.Span) []byte {
	var hex [32]byte
	r.TraceID.AppendHex(hex[:0])
	return appendSpan(dst, r, s, &hex)
}

// appendSpan writes one span; hex holds the 32 hex digits of r.TraceID.
func appendSpan(dst []byte, r *exporter.Record, s *exporter.Span, hex *[32]byte) []byte {
	dst = append(dst, fragTraceID...)
	if r.TraceID64 && r.TraceID.Is64() {
		dst = append(dst, hex[16:]...)
	} else {
		dst = append(dst, hex[:]...)
	}
	dst = append(dst, fragID...)
	dst = s.ID.AppendHex(dst)
	parent := s.ParentID
	if s.Kind != exporter.KindServer && !parent.IsValid() && s != &r.Server {
		// A client or local span is the SERVER span's child, unless it
		// is the record's first span itself (a standalone egress call).
		parent = r.Server.ID
	}
	if parent.IsValid() {
		dst = append(dst, fragParentID...)
		dst = parent.AppendHex(dst)
	}
	switch s.Kind {
	case exporter.KindClient:
		dst = append(dst, fragKindClient...)
	case exporter.KindLocal:
		dst = append(dst, '"') // a local span has no kind
	default:
		dst = append(dst, fragKindServer...)
	}
	if s.Name != "" {
		dst = append(dst, fragName...)
		dst = appendString(dst, s.Name, true)
	}
	if us := s.Start.UnixMicro(); us > 0 {
		dst = append(dst, fragTimestamp...)
		dst = strconv.AppendInt(dst, us, 10)
	}
	dst = append(dst, fragDuration...)
	dst = strconv.AppendInt(dst, durationMicros(s.Start, s.Duration), 10)
	if r.Debug {
		dst = append(dst, fragDebug...)
	}
	if r.Service != "" {
		dst = append(dst, fragLocal...)
		dst = appendString(dst, r.Service, true)
		dst = append(dst, '}')
	}
	dst = appendRemote(dst, s.Peer)
	dst = appendAnnotations(dst, s.Annotations)
	dst = appendTags(dst, r, s, hex)
	return append(dst, '}')
}

// appendAnnotations writes the annotations array; nothing when there are
// none. Zipkin requires a timestamp, so an annotation without one is left
// out.
func appendAnnotations(dst []byte, as []exporter.Annotation) []byte {
	open := len(dst)
	dst = append(dst, `,"annotations":[`...)
	n := 0
	for _, a := range as {
		us := a.Time.UnixMicro()
		if us <= 0 {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, fragAnnotation...)
		dst = strconv.AppendInt(dst, us, 10)
		dst = append(dst, fragAnnValue...)
		dst = appendString(dst, a.Value, false)
		dst = append(dst, '}')
	}
	if n == 0 {
		return dst[:open]
	}
	return append(dst, ']')
}

// durationMicros is the span's length in whole microseconds, at least 1 as
// Zipkin requires. It is the distance between the truncated start and end
// instants rather than the rounded duration, so that a span that nests inside
// another in time still nests after truncation.
func durationMicros(start time.Time, d time.Duration) int64 {
	if start.IsZero() {
		return max(int64(d/time.Microsecond), 1)
	}
	return max(start.Add(d).UnixMicro()-start.UnixMicro(), 1)
}

// appendRemote writes the remoteEndpoint of a peer host:port: ipv4 or ipv6
// when the host is an IP address, else the host as a lowercase serviceName;
// port when it is a valid non-zero port. Nothing is written for an empty
// peer.
func appendRemote(dst []byte, peer string) []byte {
	host, port := splitHostPort(peer)
	if host == "" && port == 0 {
		return dst
	}
	dst = append(dst, fragRemote...)
	if ip, ok := parseIP(host); ok {
		if ip.Is4() {
			dst = append(dst, fragIPv4...)
		} else {
			dst = append(dst, fragIPv6...)
		}
		dst = ip.AppendTo(dst)
		dst = append(dst, '"')
	} else if host != "" {
		dst = append(dst, fragService...)
		dst = appendString(dst, host, true)
	}
	if port != 0 {
		if host != "" {
			dst = append(dst, ',')
		}
		dst = append(dst, fragPort...)
		dst = strconv.AppendUint(dst, uint64(port), 10)
	}
	return append(dst, '}')
}

// splitHostPort splits host:port, [ipv6]:port, a bare host or a bare IPv6
// address. The port is zero when absent, malformed or out of range.
func splitHostPort(peer string) (host string, port uint16) {
	if peer == "" {
		return "", 0
	}
	if peer[0] == '[' {
		end := strings.IndexByte(peer, ']')
		if end < 0 {
			return peer, 0
		}
		host, rest := peer[1:end], peer[end+1:]
		if len(rest) > 1 && rest[0] == ':' {
			port = parsePort(rest[1:])
		}
		return host, port
	}
	i := strings.LastIndexByte(peer, ':')
	if i < 0 {
		return peer, 0
	}
	if strings.IndexByte(peer[:i], ':') >= 0 {
		return peer, 0 // a bare IPv6 address
	}
	return peer[:i], parsePort(peer[i+1:])
}

// parsePort parses a decimal port in 1-65535, returning 0 otherwise.
func parsePort(s string) uint16 {
	if s == "" || len(s) > 5 {
		return 0
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0
	}
	return uint16(n)
}

// parseIP parses host as an IP address without a zone, IPv4-mapped IPv6
// unmapped to IPv4 (Zipkin prefers ipv4 for mapped addresses). Hosts that
// cannot be addresses are rejected before netip, whose errors allocate.
func parseIP(host string) (netip.Addr, bool) {
	if host == "" {
		return netip.Addr{}, false
	}
	if strings.IndexByte(host, ':') < 0 {
		for i := 0; i < len(host); i++ {
			if c := host[i]; c != '.' && (c < '0' || c > '9') {
				return netip.Addr{}, false
			}
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// appendTags writes the tags object: the status code, the error, for the
// SERVER span the sampling reason and the caller's SkyWalking trace id, then
// s.Tags in order. A tag whose key was already written is skipped, so the
// derived tags win. Nothing is written when there are no tags.
func appendTags(dst []byte, r *exporter.Record, s *exporter.Span, hex *[32]byte) []byte {
	open := len(dst)
	dst = append(dst, fragTags...)
	// keys holds the offsets in dst of each quoted key written so far.
	var keysBuf [16][2]int
	keys := keysBuf[:0]
	if s.Status != 0 {
		start := len(dst)
		dst = append(dst, fragStatusKey...)
		keys = append(keys, [2]int{start, start + len(exporter.TagHTTPStatusCode) + 2})
		dst = strconv.AppendInt(dst, int64(s.Status), 10)
		dst = append(dst, '"')
	}
	if s.Error != "" {
		dst, keys = appendDerivedTag(dst, keys, fragErrorKey, s.Error)
	}
	if s.Kind == exporter.KindServer {
		if r.SamplingReason != "" {
			dst, keys = appendDerivedTag(dst, keys, fragReasonKey, r.SamplingReason)
		}
		if id := r.Parent.TraceID; id != "" && id != string(hex[:]) {
			dst, keys = appendDerivedTag(dst, keys, fragSW8Key, id)
		}
	}
	for _, t := range s.Tags {
		before := len(dst)
		if len(keys) > 0 {
			dst = append(dst, ',')
		}
		start := len(dst)
		dst = appendString(dst, t.Key, false)
		if seen(dst, keys, start) {
			dst = dst[:before]
			continue
		}
		keys = append(keys, [2]int{start, len(dst)})
		dst = append(dst, ':')
		dst = appendString(dst, t.Value, false)
	}
	if len(keys) == 0 {
		return dst[:open]
	}
	return append(dst, '}')
}

// appendDerivedTag writes one derived tag; frag is its quoted key and colon.
func appendDerivedTag(dst []byte, keys [][2]int, frag, value string) ([]byte, [][2]int) {
	if len(keys) > 0 {
		dst = append(dst, ',')
	}
	start := len(dst)
	dst = append(dst, frag...)
	keys = append(keys, [2]int{start, len(dst) - 1})
	return appendString(dst, value, false), keys
}

// seen reports whether the key written at dst[start:] equals one of keys.
func seen(dst []byte, keys [][2]int, start int) bool {
	k := dst[start:]
	for _, o := range keys {
		if bytes.Equal(dst[o[0]:o[1]], k) {
			return true
		}
	}
	return false
}

// appendString writes s as a quoted JSON string: quotes, backslashes and
// control characters escaped, U+2028 and U+2029 escaped for JavaScript
// readers, and each byte of invalid UTF-8 replaced by U+FFFD, written raw so
// that equal strings are always written alike (tag keys are deduplicated on
// their written form). With lower set it lowercases s as strings.ToLower
// does.
func appendString(dst []byte, s string, lower bool) []byte {
	safe := &plainSafe
	if lower {
		safe = &lowerSafe
	}
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch {
			case 'A' <= c && c <= 'Z':
				dst = append(dst, c+'a'-'A')
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, string(utf8.RuneError)...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		case lower && unicode.ToLower(r) != r:
			dst = append(dst, s[start:i]...)
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
