package httpexport

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"2", 2 * time.Second},
		{"120", 2 * time.Minute},
		{"-1", 0},
		{"1.5", 0},
		{"soon", 0},
		{"86400", MaxRetryAfter},
		{"99999999999", MaxRetryAfter},
		{"99999999999999999999999", MaxRetryAfter},
		{"Fri, 14 Mar 2025 15:09:36 GMT", 10 * time.Second},
		{"Friday, 14-Mar-25 15:10:26 GMT", time.Minute},
		{"Fri, 14 Mar 2025 15:00:00 GMT", 0},
		{"Fri, 14 Mar 2031 15:00:00 GMT", MaxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			if got := RetryAfter(tt.value, now); got != tt.want {
				t.Fatalf("RetryAfter(%q) = %s, want %s", tt.value, got, tt.want)
			}
		})
	}
}

func TestPolicies(t *testing.T) {
	for code := 100; code < 600; code++ {
		otlp := code == 429 || code == 502 || code == 503 || code == 504
		if got := RetryOTLP(code); got != otlp {
			t.Errorf("RetryOTLP(%d) = %v, want %v", code, got, otlp)
		}
		transient := code == 408 || code == 429 || code >= 500
		if got := RetryTransient(code); got != transient {
			t.Errorf("RetryTransient(%d) = %v, want %v", code, got, transient)
		}
	}
}

func TestClassify(t *testing.T) {
	base := errors.New("collector answered")
	resp := &http.Response{StatusCode: 503, Header: http.Header{"Retry-After": {"7"}}}
	retry, after := exporter.IsRetryable(Classify(resp, RetryOTLP, base))
	if !retry || after != 7*time.Second {
		t.Fatalf("503 with Retry-After 7: retryable %v after %s", retry, after)
	}
	resp = &http.Response{StatusCode: 500, Header: http.Header{}}
	if err := Classify(resp, RetryOTLP, base); err != base {
		t.Fatalf("500 under the OTLP rule = %v, want the permanent error itself", err)
	}
	if retry, _ := exporter.IsRetryable(Classify(resp, RetryTransient, base)); !retry {
		t.Fatal("500 under the transient rule is not retryable")
	}
}

func TestHeaders(t *testing.T) {
	h, host, err := Headers("zipkin", map[string]string{"x-api-key": "k", "host": "collector.example", "Authorization": "Bearer t"})
	if err != nil {
		t.Fatal(err)
	}
	if host != "collector.example" || h.Get("X-Api-Key") != "k" || h.Get("Authorization") != "Bearer t" || h.Get("Host") != "" {
		t.Fatalf("headers %v host %q", h, host)
	}
	for _, tt := range []struct {
		h    map[string]string
		want string
	}{
		{map[string]string{"bad name": "v"}, `otlp header name "bad name" is not a valid HTTP header name`},
		{map[string]string{"": "v"}, `otlp header name "" is not a valid HTTP header name`},
		{map[string]string{"X-A": "line\nbreak"}, `otlp header "X-A" has a value with control characters`},
		{map[string]string{"X-A": "del\x7f"}, `otlp header "X-A" has a value with control characters`},
	} {
		if _, _, err := Headers("otlp", tt.h); err == nil || err.Error() != tt.want {
			t.Errorf("Headers(%v) error %v, want %q", tt.h, err, tt.want)
		}
	}
	if _, _, err := Headers("otlp", map[string]string{"X-A": "tab\tok"}); err != nil {
		t.Errorf("tab in a value refused: %v", err)
	}
}

func TestUserAgent(t *testing.T) {
	if got := UserAgent(""); got != "tracingproxy" {
		t.Errorf("UserAgent(\"\") = %q", got)
	}
	if got := UserAgent("v1.2.3"); got != "tracingproxy/v1.2.3" {
		t.Errorf("UserAgent(v1.2.3) = %q", got)
	}
}

func TestGzipper(t *testing.T) {
	var g Gzipper
	for _, in := range []string{strings.Repeat("span ", 1000), "second body"} {
		out, err := g.Compress([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		gr, err := gzip.NewReader(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(gr)
		if err != nil || string(b) != in {
			t.Fatalf("round trip %q, %v; want %q", b, err, in)
		}
	}
	g.Trim(0)
	if g.buf.Cap() != 0 {
		t.Fatalf("Trim(0) kept %d bytes", g.buf.Cap())
	}
}

// The transport may read a request body after the export returned; the
// readers then fail instead of reading a buffer the next export rewrites.
func TestBodyGuard(t *testing.T) {
	g := &bodyGuard{b: []byte("0123456789")}
	r1, r2 := g.reader(), g.reader()
	p := make([]byte, 4)
	if n, err := r1.Read(p); n != 4 || err != nil || string(p) != "0123" {
		t.Fatalf("first read %d %v %q", n, err, p[:n])
	}
	if b, err := io.ReadAll(r2); err != nil || string(b) != "0123456789" {
		t.Fatalf("a second reader (GetBody) read %q, %v; want the whole body", b, err)
	}
	if b, err := io.ReadAll(r1); err != nil || string(b) != "456789" {
		t.Fatalf("rest of the first reader %q, %v", b, err)
	}
	g.detach()
	if n, err := g.reader().Read(p); n != 0 || !errors.Is(err, ErrDetached) {
		t.Fatalf("read after detach: %d, %v; want ErrDetached", n, err)
	}
}

// lateReader is a RoundTripper that answers at once and keeps the request
// body, as a Transport may, to read it after the caller moved on.
type lateReader struct{ body io.ReadCloser }

func (l *lateReader) RoundTrip(r *http.Request) (*http.Response, error) {
	l.body = r.Body
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
}

func TestPostGuardsReusedBody(t *testing.T) {
	rt := &lateReader{}
	buf := []byte("first batch")
	resp, detach, err := Post(context.Background(), NewClient(rt), Request{URL: "http://127.0.0.1:1/x", Header: http.Header{}, Body: buf})
	if err != nil {
		t.Fatal(err)
	}
	DrainClose(resp.Body)
	detach()
	copy(buf, "next batch!")
	if b, err := io.ReadAll(rt.body); !errors.Is(err, ErrDetached) || len(b) != 0 {
		t.Fatalf("late read of the reused buffer: %q, %v; want nothing and ErrDetached", b, err)
	}
}

func TestClientFollowsNoRedirect(t *testing.T) {
	hits := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.Method + " " + r.URL.Path
		if r.URL.Path == "/spans" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	c := NewClient(NewTransport(nil, false))
	resp, detach, err := Post(context.Background(), c, Request{URL: srv.URL + "/spans", Header: http.Header{}, Body: []byte("x")})
	defer detach()
	if err != nil {
		t.Fatal(err)
	}
	DrainClose(resp.Body)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want the 302 itself", resp.StatusCode)
	}
	if got := <-hits; got != "POST /spans" {
		t.Fatalf("first request %q", got)
	}
	select {
	case got := <-hits:
		t.Fatalf("redirect followed: %q", got)
	default:
	}
}

func TestTransportProxy(t *testing.T) {
	if NewTransport(nil, false).Proxy != nil {
		t.Fatal("transport uses a proxy without use_env_proxy")
	}
	if NewTransport(nil, true).Proxy == nil {
		t.Fatal("transport ignores the environment proxy with use_env_proxy")
	}
}
