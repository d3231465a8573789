package httpexport

import (
	"net/http"
	"strings"
	"testing"
)

func TestRedactAndHost(t *testing.T) {
	for _, tc := range []struct{ in, redacted, host string }{
		{"http://user:pass@host:9411/api/v2/spans?token=x#f", "http://redacted@host:9411/api/v2/spans?redacted", "host:9411"},
		{"https://host/api/v2/spans", "https://host/api/v2/spans", "host"},
		{"grpc://oap:11800", "grpc://oap:11800", "oap:11800"},
		{"http://[::1%zz", "http://[::1%zz", ""},
		{"127.0.0.1:9411/api/v2/spans", "127.0.0.1:9411/api/v2/spans", ""},
		{"http://al:pw@[::1%zz/x?token=t", "http://redacted@[::1%zz/x?redacted", ""},
	} {
		if got := Redact(tc.in); got != tc.redacted {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.redacted)
		}
		if got := Host(tc.in); got != tc.host {
			t.Errorf("Host(%q) = %q, want %q", tc.in, got, tc.host)
		}
	}
}

// A failed post's error names the URL without its credentials.
func TestPostErrorIsRedacted(t *testing.T) {
	_, detach, err := Post(t.Context(), &http.Client{}, Request{URL: "http://alice:s3cret@127.0.0.1:1/api/v2/spans?token=t0ken", Body: []byte("[]")})
	detach()
	if err == nil {
		t.Fatal("post to a closed port succeeded")
	}
	for _, secret := range []string{"alice", "s3cret", "t0ken"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains %q", err, secret)
		}
	}
}
