package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/tracingproxy/tracingproxy/headers"
)

// Propagation selects the trace header formats.
type Propagation struct {
	// Extract lists the formats read from the request, in order of
	// precedence: the first valid one wins. Default: w3c b3 sw8.
	Extract []string `json:"extract,omitempty"`
	// Inject lists the formats written to the upstream, or is ["preserve"]:
	// the formats the request came in with, plus Default when it came with
	// none. Default: w3c b3.
	Inject []string `json:"inject,omitempty"`
	// Default lists the formats injected under preserve when the request
	// carried no trace context. Default: w3c.
	Default []string `json:"default,omitempty"`
	// Clear lists request headers removed before the upstream sees the
	// request.
	Clear []string `json:"clear,omitempty"`
	// Baggage lists header prefixes (e.g. X-Baggage-) whose headers carry
	// baggage: each <prefix><key>: <value> header is read into the one
	// baggage set that W3C baggage, Jaeger uberctx-* and OpenTracing
	// ot-baggage-* share, and every member is written back as
	// <prefix><key>, so in-house context headers cross formats too.
	Baggage []string `json:"baggage,omitempty"`
	// Custom configures the custom format: operator-named headers carrying
	// a hex or UUID trace id, span id, parent id and sampled flag.
	Custom *CustomHeaders `json:"custom,omitempty"`
	// RequestID configures the requestid format (X-Request-ID): passed
	// through, recorded as the span tag request_id, optionally generated.
	// Setting it adds requestid to extract and inject.
	RequestID *RequestID `json:"request_id,omitempty"`
	// Trust says whose inbound trace context is believed: all (default),
	// none, or a list of CIDRs and addresses (private_ranges for the
	// private and loopback ranges). The client is Caddy's client_ip, which
	// honours the server's trusted_proxies. An untrusted client's trace
	// headers never continue a trace, force sampling or ask for debug: a
	// new trace starts, and its ids are recorded as the tags
	// untrusted.trace_id and untrusted.span_id.
	Trust []string `json:"trust,omitempty"`
	// UntrustedBaggage says what becomes of an untrusted client's baggage
	// (W3C baggage, uberctx-*, ot-baggage-*, the Baggage prefixes,
	// sw8-correlation): drop (default) removes it before the upstream sees
	// the request; keep carries it on, validated and capped as a trusted
	// caller's is.
	UntrustedBaggage string `json:"untrusted_baggage,omitempty"`
}

// CustomHeaders names the headers of the custom format.
type CustomHeaders struct {
	// TraceID names the header with the trace id (hex or UUID). Required.
	TraceID string `json:"trace_id"`
	// SpanID names the header with the caller's span id (hex).
	SpanID string `json:"span_id,omitempty"`
	// ParentID names the header with the caller's parent span id (hex).
	ParentID string `json:"parent_id,omitempty"`
	// Sampled names the header with the sampling decision (1/0,
	// true/false).
	Sampled string `json:"sampled,omitempty"`
	// UUID writes the trace id as a UUID (8-4-4-4-12) instead of 32 hex.
	UUID bool `json:"uuid,omitempty"`
}

// RequestID configures the request-id header.
type RequestID struct {
	// Header is the header's name. Default: X-Request-ID.
	Header string `json:"header,omitempty"`
	// Generate sets a UUIDv4 when the request has none.
	Generate bool `json:"generate,omitempty"`
}

var (
	defaultExtract      = []string{"w3c", "b3", "sw8"}
	defaultInject       = []string{"w3c", "b3"}
	defaultPreserveInto = []string{"w3c"}
	injectPreserve      = "preserve"
	requestIDFormatName = headers.FormatRequestID.String()
	customFormatName    = headers.FormatCustom.String()
)

// propagation is the compiled Propagation.
type propagation struct {
	prop       *headers.Propagator
	preserve   bool
	defaultSet headers.FormatSet // injected under preserve when nothing came in
	clear      []string          // canonical header names
	// baggagePrefixes are the canonical prefixes of the per-member
	// baggage headers the configured formats own.
	baggagePrefixes      []string
	keepUntrustedBaggage bool
}

// build compiles the propagation options; errors name the option.
func (p *Propagation) build() (*propagation, error) {
	if p == nil {
		p = &Propagation{}
	}
	extract, inject := p.Extract, p.Inject
	if len(extract) == 0 {
		extract = defaultExtract
	}
	if len(inject) == 0 {
		inject = defaultInject
	}
	if p.RequestID != nil {
		extract = appendMissing(extract, requestIDFormatName)
		if len(inject) != 1 || inject[0] != injectPreserve {
			inject = appendMissing(inject, requestIDFormatName)
		}
	}
	out := &propagation{}
	ex, err := p.codecs(extract)
	if err != nil {
		return nil, fmt.Errorf("propagation extract: %w", err)
	}
	var in []headers.Codec
	if len(inject) == 1 && inject[0] == injectPreserve {
		out.preserve = true
		def := p.Default
		if len(def) == 0 {
			def = defaultPreserveInto
		}
		dc, err := p.codecs(def)
		if err != nil {
			return nil, fmt.Errorf("propagation default: %w", err)
		}
		for _, c := range dc {
			out.defaultSet = out.defaultSet.Add(c.Format())
		}
		// Under preserve, any format read may be written back, and the
		// defaults when none was read. B3 is answered in the form it came
		// in, single or multi, whichever name extract uses.
		in = append([]headers.Codec(nil), ex...)
		if hasFormat(ex, headers.FormatB3) || hasFormat(ex, headers.FormatB3Single) {
			for _, f := range []headers.Format{headers.FormatB3, headers.FormatB3Single} {
				if !hasFormat(in, f) {
					c, _ := headers.NewCodec(f)
					in = append(in, c)
				}
			}
		}
		for _, c := range dc {
			if !hasFormat(in, c.Format()) {
				in = append(in, c)
			}
		}
		// A sw6 caller is answered with sw8: current agents and OAP speak
		// only v3 (PROTOCOLS.md: write sw6 only if asked).
		if hasFormat(ex, headers.FormatSW6) && !hasFormat(in, headers.FormatSW8) {
			c, _ := headers.NewCodec(headers.FormatSW8)
			in = append(in, c)
		}
	} else {
		if len(p.Default) > 0 {
			return nil, fmt.Errorf("propagation default only applies with inject preserve")
		}
		if in, err = p.codecs(inject); err != nil {
			return nil, fmt.Errorf("propagation inject: %w", err)
		}
	}
	for _, prefix := range p.Baggage {
		c, err := headers.NewPrefixBaggageCodec(prefix)
		if err != nil {
			return nil, fmt.Errorf("propagation %w", err)
		}
		ex = append(ex, c)
		in = append(in, c)
	}
	out.prop = headers.NewPropagator(ex, in)
	switch p.UntrustedBaggage {
	case "", untrustedBaggageDrop:
	case untrustedBaggageKeep:
		out.keepUntrustedBaggage = true
	default:
		return nil, fmt.Errorf("propagation untrusted_baggage: %q is not drop or keep", p.UntrustedBaggage)
	}
	out.baggagePrefixes = ownedBaggagePrefixes(in, p.Baggage)
	for _, name := range p.Clear {
		if !validHeaderName(name) {
			return nil, fmt.Errorf("propagation clear: %q is not a valid header name", name)
		}
		out.clear = append(out.clear, http.CanonicalHeaderKey(name))
	}
	return out, nil
}

// codecs builds the codecs of the named formats, configuring custom and
// requestid from their options.
func (p *Propagation) codecs(names []string) ([]headers.Codec, error) {
	var out []headers.Codec
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return nil, fmt.Errorf("format %q listed twice", n)
		}
		seen[n] = true
		var c headers.Codec
		var err error
		switch n {
		case injectPreserve:
			return nil, fmt.Errorf("preserve must be the only inject value")
		case customFormatName:
			if p.Custom == nil || p.Custom.TraceID == "" {
				return nil, fmt.Errorf("format custom needs its headers: custom trace_id <header> [span_id <header>] [parent_id <header>] [sampled <header>]")
			}
			cc := p.Custom
			c, err = headers.NewCustomCodec(headers.CustomConfig{TraceIDHeader: cc.TraceID, SpanIDHeader: cc.SpanID,
				ParentIDHeader: cc.ParentID, SampledHeader: cc.Sampled, UUID: cc.UUID})
		case requestIDFormatName:
			rc := p.RequestID
			if rc == nil {
				rc = &RequestID{}
			}
			c, err = headers.NewRequestIDCodec(rc.Header, rc.Generate, 0)
		default:
			var f headers.Format
			if f, err = headers.ParseFormat(n); err == nil {
				c, err = headers.NewCodec(f)
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func appendMissing(list []string, name string) []string {
	for _, n := range list {
		if n == name {
			return list
		}
	}
	return append(append([]string(nil), list...), name)
}

func hasFormat(cs []headers.Codec, f headers.Format) bool {
	for _, c := range cs {
		if c.Format() == f {
			return true
		}
	}
	return false
}

// inject writes the outgoing context into the request headers, replacing
// every header the formats own and removing the cleared ones.
func (p *propagation) inject(r *http.Request, in *headers.Result, sc *headers.SpanContext, w *headers.Writer) {
	singleB3 := p.preserve && len(r.Header["B3"]) > 0
	p.prop.Clear(r.Header)
	for _, name := range p.clear {
		delete(r.Header, name)
	}
	if !p.preserve {
		p.prop.Inject(sc, w)
	} else {
		set := headers.PreservedFormats(in, singleB3, p.defaultSet)
		p.prop.InjectSet(sc, w, set)
	}
	w.Apply(r.Header)
}
