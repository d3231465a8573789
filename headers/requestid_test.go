package headers

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// uuidV4 matches a lowercase UUID of version 4, variant 10.
var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// mRequestID builds a request id codec, failing the test on error.
func mRequestID(t testing.TB, header string, generate bool, maxLen int) Codec {
	t.Helper()
	c, err := NewRequestIDCodec(header, generate, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRequestIDPassThrough(t *testing.T) {
	t.Parallel()
	c := mRequestID(t, "", false, 0)
	if f := c.Fields(); len(f) != 1 || f[0] != "X-Request-Id" || c.Format() != FormatRequestID {
		t.Fatalf("Fields %q Format %v", f, c.Format())
	}
	tests := []struct {
		name string
		v    string
		want string
	}{
		{"uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950e"},
		{"free text", "req 42/abc=1", "req 42/abc=1"},
		{"OWS trimmed", "  abc\t", "abc"},
		{"exactly the cap", strings.Repeat("a", 200), strings.Repeat("a", 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(mhdr("X-Request-ID", tt.v), &sc); err != nil || sc.RequestID != tt.want {
				t.Fatalf("RequestID %q err %v, want %q", sc.RequestID, err, tt.want)
			}
			if got := minject(c, &sc); len(got) != 1 || got.Get("X-Request-Id") != tt.want {
				t.Errorf("wrote %v", got)
			}
			if sc.TraceID.IsValid() || sc.SpanID.IsValid() {
				t.Error("a request id must never become a trace id")
			}
		})
	}
}

func TestRequestIDInvalid(t *testing.T) {
	t.Parallel()
	for _, generate := range []bool{false, true} {
		c := mRequestID(t, "X-Correlation-ID", generate, 16)
		tests := []struct {
			name string
			v    string
		}{
			{"over the cap", strings.Repeat("a", 17)},
			{"empty", ""},
			{"only OWS", "  "},
			{"CR LF", "a\r\nX-Evil: 1"},
			{"NUL", "a\x00"},
			{"DEL", "a\x7f"},
			{"non-ASCII", "caf\xc3\xa9"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var sc SpanContext
				err := c.Extract(mhdr("X-Correlation-ID", tt.v), &sc)
				if !errors.Is(err, ErrRequestIDInvalid) {
					t.Errorf("err = %v, want ErrRequestIDInvalid", err)
				}
				if generate != uuidV4.MatchString(sc.RequestID) || !generate && sc.RequestID != "" {
					t.Errorf("generate %v: RequestID %q", generate, sc.RequestID)
				}
				if h := minject(c, &SpanContext{RequestID: tt.v}); len(h) != 0 {
					t.Errorf("forwarded %v", h)
				}
			})
		}
	}
}

func TestRequestIDGenerate(t *testing.T) {
	c := mRequestID(t, "", true, 0)
	seen := map[string]bool{}
	for range 100 {
		var sc SpanContext
		if err := c.Extract(mhdr("Accept", "*/*"), &sc); err != ErrAbsent {
			t.Fatalf("err = %v, want ErrAbsent", err)
		}
		if !uuidV4.MatchString(sc.RequestID) || seen[sc.RequestID] {
			t.Fatalf("generated %q", sc.RequestID)
		}
		seen[sc.RequestID] = true
	}
	var sc SpanContext
	if err := mRequestID(t, "", false, 0).Extract(mhdr("Accept", "*/*"), &sc); err != ErrAbsent || sc.RequestID != "" {
		t.Errorf("without generation: %q %v", sc.RequestID, err)
	}
}

func TestNewRequestIDCodecRejectsBadHeader(t *testing.T) {
	if _, err := NewRequestIDCodec("X Request", false, 0); err == nil {
		t.Error("a header name with a space was accepted")
	}
	c := mRequestID(t, "x-correlation-id", false, 0)
	if f := c.Fields(); f[0] != "X-Correlation-Id" {
		t.Errorf("not canonical: %q", f)
	}
}

// TestRequestIDMergesIntoWinner checks that the request id is recorded
// whichever trace format wins, and never competes with one.
func TestRequestIDMergesIntoWinner(t *testing.T) {
	rid := mRequestID(t, "", true, 0)
	w3c := mcodec(t, FormatW3C)
	p := NewPropagator([]Codec{rid, w3c}, []Codec{rid, w3c})
	h := mhdr("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Request-ID", "abc")
	res := p.Extract(h)
	if res.Format != FormatW3C || res.RequestID != "abc" || !res.Present.Has(FormatRequestID) {
		t.Errorf("Format %v RequestID %q Present %v", res.Format, res.RequestID, res.Present)
	}
	res = p.Extract(mhdr("X-Request-ID", "a\x01"))
	if res.Format != FormatNone || !uuidV4.MatchString(res.RequestID) || !res.Malformed.Has(FormatRequestID) ||
		!errors.Is(res.Err, ErrRequestIDInvalid) {
		t.Errorf("invalid id: %+v", res)
	}
	var w Writer
	p.Inject(&res.SpanContext, &w)
	if got, _ := w.Get("X-Request-Id"); got != res.RequestID {
		t.Errorf("injected %q, want %q", got, res.RequestID)
	}
}

func TestRequestIDExtractAllocs(t *testing.T) {
	c := mRequestID(t, "", false, 0)
	for name, h := range map[string]http.Header{
		"valid":   mhdr("X-Request-ID", "0f8fad5b-d9cb-469f-a165-70867728950e"),
		"invalid": mhdr("X-Request-ID", "a\x00"),
		"absent":  mhdr("Accept", "*/*"),
	} {
		t.Run(name, func(t *testing.T) {
			var sc SpanContext
			if got := testing.AllocsPerRun(100, func() { _ = c.Extract(h, &sc) }); got != 0 {
				t.Errorf("%v allocations, want 0", got)
			}
		})
	}
	t.Run("generated: one string", func(t *testing.T) {
		g := mRequestID(t, "", true, 0)
		var sc SpanContext
		h := mhdr("Accept", "*/*")
		if got := testing.AllocsPerRun(100, func() { _ = g.Extract(h, &sc) }); got != 1 {
			t.Errorf("%v allocations, want 1", got)
		}
	})
}
