package headers

import (
	"encoding/base64"
	"strings"
)

// The SkyWalking v3 headers beside sw8 that carry no trace context:
// sw8-correlation (its baggage) and sw8-x (its extension: a tracing mode and
// the client's send timestamp). No codec owns them; a hop passes them
// through when they are well formed and within bounds.

// Bounds of sw8-correlation and sw8-x. SkyWalking's agents send at most 3
// correlation members of at most 128 characters (their defaults); the
// bound leaves room for agents configured above that. sw8-x is a tracing
// mode and a timestamp.
const (
	sw8CorrelationMaxLen     = 1024
	sw8CorrelationMaxMembers = 8
	sw8XMaxLen               = 64
)

// ValidSW8Correlation checks sw8-correlation: a comma-separated list of
// base64(key):base64(value), within its bounds, each key and value decoding
// to text without control characters.
func ValidSW8Correlation(v string) bool {
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

// ValidSW8X checks sw8-x: dash-separated decimal fields (tracing mode, the
// client's send timestamp), within its bound.
func ValidSW8X(v string) bool {
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
