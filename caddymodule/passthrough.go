package caddymodule

import (
	"encoding/base64"
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

// Bounds of the passthrough headers. SkyWalking's agents send at most 3
// correlation members of at most 128 characters (their defaults); the
// bound leaves room for agents configured above that. sw8-x is a tracing
// mode and a timestamp.
const (
	sw8CorrelationMaxLen     = 1024
	sw8CorrelationMaxMembers = 8
	sw8XMaxLen               = 64
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
	if vs, ok := h[headerSW8Correlation]; ok && (len(vs) != 1 || !validSW8Correlation(vs[0])) {
		delete(h, headerSW8Correlation)
		malformed = malformed.Add(headers.FormatSW8)
	}
	if vs, ok := h[headerSW8X]; ok && (len(vs) != 1 || !validSW8X(vs[0])) {
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

// validSW8Correlation checks sw8-correlation: a comma-separated list of
// base64(key):base64(value), within its bounds, each key and value decoding
// to text without control characters.
func validSW8Correlation(v string) bool {
	if v == "" || len(v) > sw8CorrelationMaxLen {
		return false
	}
	members := strings.Split(v, ",")
	if len(members) > sw8CorrelationMaxMembers {
		return false
	}
	for _, m := range members {
		k, val, ok := strings.Cut(m, ":")
		if !ok || !cleanBase64(k, false) || !cleanBase64(val, true) {
			return false
		}
	}
	return true
}

// cleanBase64 reports whether s is standard padded base64 of text without
// ASCII control characters; empty only when allowEmpty.
func cleanBase64(s string, allowEmpty bool) bool {
	if s == "" {
		return allowEmpty
	}
	var buf [sw8CorrelationMaxLen]byte
	n, err := base64.StdEncoding.Decode(buf[:], []byte(s))
	if err != nil {
		return false
	}
	for _, c := range buf[:n] {
		if c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// validSW8X checks sw8-x: dash-separated decimal fields (tracing mode, the
// client's send timestamp), within its bound.
func validSW8X(v string) bool {
	if v == "" || len(v) > sw8XMaxLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
