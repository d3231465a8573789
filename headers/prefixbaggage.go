package headers

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// ErrPrefixBaggageConfig is a baggage header prefix that is empty, not an
// RFC 7230 token, or covers a header that carries trace context or frames
// the request.
var ErrPrefixBaggageConfig = errors.New("baggage: invalid header prefix")

// prefixReserved lists headers a baggage prefix must not cover, besides the
// Fields of the registered codecs: with them the codec would read them as
// baggage, and a caller's baggage member could overwrite them upstream.
var prefixReserved = []string{
	"Authorization", "Connection", "Content-Length", "Content-Type", "Cookie", "Forwarded",
	"Host", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
}

// prefixBaggageCodec carries baggage in one header per member, named by an
// operator's prefix: see NewPrefixBaggageCodec.
type prefixBaggageCodec struct {
	prefix string // canonical
}

// NewPrefixBaggageCodec returns the codec (FormatPrefixBaggage) of baggage
// sent as one header per member, {prefix}{key}: {value}, such as
// X-Baggage-User: alice for the prefix X-Baggage-. It carries the same
// SpanContext.Baggage that W3C baggage, Jaeger uberctx-* and OpenTracing
// ot-baggage-* read and write, so members cross between these formats.
//
// The prefix must be a non-empty RFC 7230 token; it is matched without
// regard to case and written in canonical form
// (textproto.CanonicalMIMEHeaderKey). It must not cover a header that
// another format owns (Uber-Trace-Id for "Uber", X-B3-* for "X-") or that
// frames, routes or authenticates the request (Content-Length, Host,
// Cookie, ...): a caller's baggage member could otherwise overwrite it
// upstream. Errors wrap ErrPrefixBaggageConfig.
//
// Like W3C baggage the codec is a Merger (see Merge and Inject). Fields is
// nil, because the names vary: a prefixed header the request carried passes
// through to the upstream unless Inject rewrites it, which it does for
// every member it keeps.
func NewPrefixBaggageCodec(prefix string) (Codec, error) {
	if !isToken(prefix) {
		return nil, fmt.Errorf("%w %q: not a non-empty HTTP field-name token", ErrPrefixBaggageConfig, prefix)
	}
	prefix = textproto.CanonicalMIMEHeaderKey(prefix)
	reserved := prefixReserved
	for f := FormatW3C; f < numFormats; f++ {
		if codecs[f] != nil {
			reserved = append(reserved[:len(reserved):len(reserved)], codecs[f]().Fields()...)
		}
	}
	for _, name := range reserved {
		if len(name) > len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
			return nil, fmt.Errorf("%w %q: it covers the %s header", ErrPrefixBaggageConfig, prefix, name)
		}
	}
	return prefixBaggageCodec{prefix: prefix}, nil
}

// Format returns FormatPrefixBaggage.
func (prefixBaggageCodec) Format() Format { return FormatPrefixBaggage }

// Fields returns nil: the header names depend on the members.
func (prefixBaggageCodec) Fields() []string { return nil }

// Extract reads the prefixed headers of h into sc.Baggage, replacing what it
// held.
func (c prefixBaggageCodec) Extract(h http.Header, sc *SpanContext) error {
	sc.Baggage = ""
	return c.Merge(h, sc)
}

// Merge reads every header of h whose name starts with the prefix (any
// case) and adds them to sc.Baggage as members: the key is the rest of the
// name, lowercased, and must be a token; the value is the header's first
// value, percent-decoded leniently and re-encoded as a baggage value, so no
// control character is ever kept raw (see prefixedBaggage, '+' literal as
// OpenTracing has it). Keys already in sc.Baggage keep their value and come
// first; the new members follow in the order of their header names while
// they fit 64 members and 8192 bytes, the others dropped whole.
//
// It returns ErrAbsent when no prefixed header is present, without
// allocating, and ErrBaggageLimit when members were dropped because the
// prefixed headers alone exceed the limits. It allocates the list, and
// joins it to sc.Baggage with mergeBaggage when that held members.
func (c prefixBaggageCodec) Merge(h http.Header, sc *SpanContext) error {
	list, dropped := prefixedBaggage(h, c.prefix, false)
	switch {
	case list == "":
	case sc.Baggage == "":
		sc.Baggage = list
	default:
		sc.Baggage = mergeBaggage(sc.Baggage, list)
	}
	switch {
	case dropped:
		return ErrBaggageLimit
	case list == "":
		return ErrAbsent
	}
	return nil
}

// Inject writes one {prefix}{Key} header per valid member of sc.Baggage,
// within the limits: the name in canonical form, the value the member's
// percent-encoded value (properties dropped), so it never holds a control
// character. Keys that differ only in case name one header; the later
// member wins. It allocates the name of each header; the value is a
// substring of sc.Baggage.
func (c prefixBaggageCodec) Inject(sc *SpanContext, w *Writer) {
	injectPrefixedBaggage(sc, w, c.prefix, false)
}
