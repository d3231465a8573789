package caddymodule

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/tracingproxy/tracingproxy/headers"
)

// Values of the propagation option untrusted_baggage.
const (
	untrustedBaggageDrop = "drop"
	untrustedBaggageKeep = "keep"
)

// Headers of the SkyWalking v3 protocol that no codec owns: its baggage and
// its extension header. They pass through, checked.
const (
	headerSW8Correlation = "Sw8-Correlation"
	headerSW8X           = "Sw8-X"
)

// baggageCarriers are the headers (and prefixes) that carry baggage in any
// format: what an untrusted client's request loses under untrusted_baggage
// drop, whichever formats are configured.
var (
	baggageCarrierHeaders  = []string{"Baggage", "Correlation-Context", headerSW8Correlation}
	baggageCarrierPrefixes = []string{"Uberctx-", "Ot-Baggage-"}
)

// ownedBaggagePrefixes are the per-member baggage prefixes of the injected
// formats (Jaeger uberctx-, OpenTracing ot-baggage-) and the
// operator's baggage prefixes, canonical. A request's headers under them
// are read into the one baggage set, so they are removed before injection:
// only the members that set kept (valid, within 64 members and 8 KiB) are
// written back, never a raw header past the limits.
func ownedBaggagePrefixes(codecs []headers.Codec, operator []string) []string {
	var out []string
	add := func(p string) {
		p = textproto.CanonicalMIMEHeaderKey(p)
		for _, q := range out {
			if q == p {
				return
			}
		}
		out = append(out, p)
	}
	for _, c := range codecs {
		switch c.Format() {
		case headers.FormatJaeger:
			add("Uberctx-")
		case headers.FormatOT:
			add("Ot-Baggage-")
		}
	}
	for _, p := range operator {
		add(p)
	}
	return out
}

// sanitize applies what the client's trust allows to the request headers no
// codec rewrites, before injection: an untrusted client's baggage goes
// (unless untrusted_baggage keep), and so does its sw8-x; the per-member
// baggage headers of the configured formats go (injection writes back the
// members kept); sw8-correlation and sw8-x that are malformed or over their
// bounds go. It returns the formats whose headers were malformed.
func (p *propagation) sanitize(h http.Header, trusted bool) (malformed headers.FormatSet) {
	dropBaggage := !trusted && !p.keepUntrustedBaggage
	if dropBaggage {
		for _, name := range baggageCarrierHeaders {
			delete(h, name)
		}
	}
	if !trusted {
		delete(h, headerSW8X)
	}
	if len(p.baggagePrefixes) > 0 || dropBaggage {
		for name := range h {
			if hasAnyPrefix(name, p.baggagePrefixes) || dropBaggage && hasAnyPrefix(name, baggageCarrierPrefixes) {
				delete(h, name)
			}
		}
	}
	if vs, ok := h[headerSW8Correlation]; ok && (len(vs) != 1 || !headers.ValidSW8Correlation(vs[0])) {
		delete(h, headerSW8Correlation)
		malformed = malformed.Add(headers.FormatSW8)
	}
	if vs, ok := h[headerSW8X]; ok && (len(vs) != 1 || !headers.ValidSW8X(vs[0])) {
		delete(h, headerSW8X)
		malformed = malformed.Add(headers.FormatSW8)
	}
	return malformed
}

// hasAnyPrefix reports whether the canonical header name starts with one of
// the canonical prefixes, matching case-insensitively as header names do.
func hasAnyPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if len(name) > len(p) && strings.EqualFold(name[:len(p)], p) {
			return true
		}
	}
	return false
}
