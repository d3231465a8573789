package httpexport

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// Limits on what a sender reads from a response.
const (
	// MaxDrain bounds the response body read to let the connection be
	// reused; a longer body closes the connection instead.
	MaxDrain = 64 << 10
	// MaxSnippet bounds the response text quoted in an error.
	MaxSnippet = 256
	// MaxRetryAfter caps the wait a Retry-After can ask for.
	MaxRetryAfter = 24 * time.Hour
)

// NewTransport returns a transport for one collector: a small pool of kept
// connections, bounded connect, TLS handshake and response-header waits,
// the given TLS configuration (nil for the defaults), and no proxy unless
// useEnvProxy asks for HTTP_PROXY, HTTPS_PROXY and NO_PROXY.
func NewTransport(tc *tls.Config, useEnvProxy bool) *http.Transport {
	t := &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       tc,
	}
	if useEnvProxy {
		t.Proxy = http.ProxyFromEnvironment
	}
	return t
}

// NewClient returns a client over t that follows no redirect: a redirected
// POST would become a GET and lose the batch, so a 3xx is returned as the
// answer.
func NewClient(t http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// UserAgent is the User-Agent exporters send: "tracingproxy", with
// "/version" when version is set.
func UserAgent(version string) string {
	if version == "" {
		return "tracingproxy"
	}
	return "tracingproxy/" + version
}

// Policy decides which HTTP statuses are worth retrying.
type Policy func(status int) bool

// RetryOTLP is the OTLP/HTTP rule: 429, 502, 503 and 504 only.
func RetryOTLP(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// RetryTransient is the rule of the Zipkin and SkyWalking collectors, which
// answer an overloaded or restarting receiver with any 5xx: 408, 429 and
// every 5xx.
func RetryTransient(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// Classify maps a non-2xx answer to the exporter's error classes: err
// wrapped as retryable, after resp's Retry-After, when retry says so;
// err as it is, a permanent failure, otherwise.
func Classify(resp *http.Response, retry Policy, err error) error {
	if retry(resp.StatusCode) {
		return exporter.Retryable(err, RetryAfter(resp.Header.Get("Retry-After"), time.Now()))
	}
	return err
}

// RetryAfter parses a Retry-After value, delay-seconds or an HTTP-date, as a
// wait from now, capped at MaxRetryAfter; zero when absent, malformed or
// past.
func RetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return MaxRetryAfter
			}
			return 0
		}
		if secs >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}

// Snippet returns the start of an error response's body, up to MaxSnippet
// bytes, quoted, for an error message; empty when there is none.
func Snippet(body io.Reader) string {
	var b [MaxSnippet]byte
	n, _ := io.ReadFull(body, b[:])
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(": %q", bytes.TrimSpace(b[:n]))
}

// DrainClose reads what is left of a response body, up to MaxDrain, so the
// connection can carry the next request, and closes it.
func DrainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, MaxDrain)
	_ = body.Close()
}

// ValidHeaderName reports whether s is an RFC 9110 token.
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ValidHeaderValue reports whether s holds no control character but tab.
func ValidHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// Headers validates configured headers and returns them canonicalised,
// with a "Host" entry taken out as the request host. Errors start with
// name, the exporter's name.
func Headers(name string, h map[string]string) (http.Header, string, error) {
	out := make(http.Header, len(h))
	host := ""
	for k, v := range h {
		if !ValidHeaderName(k) {
			return nil, "", fmt.Errorf("%s header name %q is not a valid HTTP header name", name, k)
		}
		if !ValidHeaderValue(v) {
			return nil, "", fmt.Errorf("%s header %q has a value with control characters", name, k)
		}
		if http.CanonicalHeaderKey(k) == "Host" {
			host = v
			continue
		}
		out.Set(k, v)
	}
	return out, host, nil
}

// Gzipper compresses request bodies into a buffer it reuses.
type Gzipper struct {
	w   *gzip.Writer
	buf bytes.Buffer
}

// Compress returns b gzipped at BestSpeed, which keeps most of the ratio on
// span payloads for a fraction of the CPU. The result is valid until the
// next call.
func (g *Gzipper) Compress(b []byte) ([]byte, error) {
	g.buf.Reset()
	if g.w == nil {
		g.w, _ = gzip.NewWriterLevel(&g.buf, gzip.BestSpeed)
	} else {
		g.w.Reset(&g.buf)
	}
	if _, err := g.w.Write(b); err != nil {
		return nil, err
	}
	if err := g.w.Close(); err != nil {
		return nil, err
	}
	return g.buf.Bytes(), nil
}

// Trim drops the buffer once it grew past limit, so one huge batch does not
// pin its memory for the life of the exporter.
func (g *Gzipper) Trim(limit int) {
	if g.buf.Cap() > limit {
		g.buf = bytes.Buffer{}
	}
}

// ErrDetached is what a request body reads after its Post returned.
var ErrDetached = errors.New("request body read after the export returned")

// Request is one POST: its URL, headers, optional host, and body. The body
// may be a buffer the caller reuses: Post cuts every reader of it off
// before it returns.
type Request struct {
	URL    string
	Header http.Header
	Host   string
	Body   []byte
}

// Post sends r with client and returns the response, whose body the caller
// must close (DrainClose). A transport error is returned as it is; the
// caller classifies it.
//
// A Transport may still read a request body after RoundTrip returned (see
// http.RoundTripper), while the caller's next export rewrites the buffer,
// so the body Post hands out reads the buffer only until Post's caller
// calls the returned detach, which it must do once it has read the response.
func Post(ctx context.Context, client *http.Client, r Request) (*http.Response, func(), error) {
	g := &bodyGuard{b: r.Body}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, g.reader())
	if err != nil {
		return nil, g.detach, err
	}
	req.ContentLength = int64(len(r.Body))
	req.GetBody = func() (io.ReadCloser, error) { return g.reader(), nil }
	req.Header = r.Header.Clone()
	if r.Host != "" {
		req.Host = r.Host
	}
	resp, err := client.Do(req)
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = Redact(ue.URL)
	}
	return resp, g.detach, err
}

// Redact returns the URL with its credentials hidden: the user info and the
// query (where tokens travel) become "redacted", the fragment is dropped.
// A string that does not parse as a URL is cut the same way by hand.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		s, _, cut := strings.Cut(raw, "?")
		s, _, _ = strings.Cut(s, "#")
		if cut {
			s += "?redacted"
		}
		if at := strings.LastIndexByte(s, '@'); at >= 0 {
			start := 0
			if i := strings.Index(s, "://"); i >= 0 && i < at {
				start = i + 3
			}
			s = s[:start] + "redacted" + s[at:]
		}
		return s
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "redacted", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// Host returns the URL's host[:port], the part of it safe to name in logs
// and metric labels; "" when it does not parse.
func Host(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// Prepare sets on h, over the configured headers, what every export request
// of an exporter carries: its Content-Type, `B3: 0` (so proxies do not trace
// the tracer), a User-Agent naming tracingproxy unless one is configured,
// and Content-Encoding: gzip when gzip is set. It returns the Gzipper to
// pass to Send, nil without gzip.
func Prepare(h http.Header, contentType, version string, gzip bool) *Gzipper {
	h.Set("Content-Type", contentType)
	h.Set("B3", "0")
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", UserAgent(version))
	}
	if !gzip {
		h.Del("Content-Encoding")
		return nil
	}
	h.Set("Content-Encoding", "gzip")
	return &Gzipper{}
}

// Send is one export over HTTP: it compresses r.Body with gz when gz is not
// nil, POSTs it, and maps the outcome to the exporter's error classes. A
// transport error is retryable; a 2xx answer is success, or whatever
// accepted makes of its body when accepted is not nil; any other status is
// classified by retry. name ("zipkin", "otlp") starts every error message.
func Send(ctx context.Context, client *http.Client, gz *Gzipper, r Request, name string, retry Policy, accepted func(body io.Reader) error) error {
	if gz != nil {
		var err error
		if r.Body, err = gz.Compress(r.Body); err != nil {
			return fmt.Errorf("%s gzip: %w", name, err)
		}
	}
	resp, detach, err := Post(ctx, client, r)
	defer detach()
	if err != nil {
		return exporter.Retryable(fmt.Errorf("%s export: %w", name, err), 0)
	}
	defer DrainClose(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if accepted == nil {
			return nil
		}
		return accepted(resp.Body)
	}
	err = fmt.Errorf("%s collector answered %s%s", name, resp.Status, Snippet(resp.Body))
	return Classify(resp, retry, err)
}

// bodyGuard hands out readers of a reused buffer and cuts them off on
// detach.
type bodyGuard struct {
	mu sync.Mutex
	b  []byte
}

func (g *bodyGuard) reader() io.ReadCloser { return &guardedReader{g: g} }

func (g *bodyGuard) detach() {
	g.mu.Lock()
	g.b = nil
	g.mu.Unlock()
}

// guardedReader reads a bodyGuard's buffer from its own offset.
type guardedReader struct {
	g   *bodyGuard
	off int
}

func (r *guardedReader) Read(p []byte) (int, error) {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	if r.g.b == nil {
		return 0, ErrDetached
	}
	if r.off >= len(r.g.b) {
		return 0, io.EOF
	}
	n := copy(p, r.g.b[r.off:])
	r.off += n
	return n, nil
}

func (r *guardedReader) Close() error { return nil }
