package zipkin

import (
	"bytes"
	"compress/gzip"
	"context"
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

// Limits on what the exporter reads and keeps.
const (
	// maxDrain bounds the response body read to let the connection be
	// reused; a longer body closes the connection instead.
	maxDrain = 64 << 10
	// maxSnippet bounds the response text quoted in an error.
	maxSnippet = 256
	// maxKeep bounds the buffers kept between exports, so one huge batch
	// does not pin its memory for the life of the exporter.
	maxKeep = 4 << 20
)

// Config configures an Exporter.
type Config struct {
	// URL is the collector's span endpoint, an absolute http or https URL
	// such as http://127.0.0.1:9411/api/v2/spans. Required.
	URL string
	// Gzip compresses request bodies (Content-Encoding: gzip). Default off.
	Gzip bool
	// Headers are added to every request, e.g. for authorization. They
	// cannot override Content-Type, Content-Encoding or b3, which the
	// exporter sets. A "Host" entry sets the request's host.
	Headers map[string]string
	// Client sends the requests. Default: a client of the exporter's own,
	// with its own connection pool and timeouts, that follows no redirects.
	Client *http.Client
	// UseEnvProxy makes the default client honour HTTP_PROXY, HTTPS_PROXY
	// and NO_PROXY. Default off: spans go straight to the collector. It
	// has no effect when Client is set.
	UseEnvProxy bool
	// TLS configures TLS to an https collector: custom roots, a client
	// certificate, the server name. It has no effect when Client is set.
	TLS *exporter.TLSConfig
}

// Exporter posts batches of records to a Zipkin collector as one JSON array
// of v2 spans per request. Per the exporter.Exporter contract it is used
// from one goroutine, which lets it reuse its encode and gzip buffers.
type Exporter struct {
	url    string
	host   string
	header http.Header
	client *http.Client
	own    *http.Transport // the default client's transport; nil with Config.Client

	buf   []byte
	gz    *gzip.Writer // nil without Config.Gzip
	gzbuf bytes.Buffer
}

var _ exporter.Exporter = (*Exporter)(nil)

// New validates cfg and returns an Exporter.
func New(cfg Config) (*Exporter, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("zipkin url must be an absolute http(s) URL, got %q", cfg.URL)
	}
	e := &Exporter{url: u.String(), header: make(http.Header, len(cfg.Headers))}
	for k, v := range cfg.Headers {
		if !validHeaderName(k) {
			return nil, fmt.Errorf("zipkin header name %q is not a valid HTTP header name", k)
		}
		if !validHeaderValue(v) {
			return nil, fmt.Errorf("zipkin header %q has a value with control characters", k)
		}
		if http.CanonicalHeaderKey(k) == "Host" {
			e.host = v
			continue
		}
		e.header.Set(k, v)
	}
	// The exporter's own headers win over configured ones.
	e.header.Set("Content-Type", "application/json")
	e.header.Set("B3", "0") // do not let proxies trace the tracer
	if cfg.Gzip {
		e.header.Set("Content-Encoding", "gzip")
		// BestSpeed keeps most of the ratio on JSON for a fraction of the
		// CPU the proxied service would otherwise lose.
		e.gz, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	} else {
		e.header.Del("Content-Encoding")
	}
	e.client = cfg.Client
	if e.client == nil {
		tc, err := cfg.TLS.Build()
		if err != nil {
			return nil, fmt.Errorf("zipkin %w", err)
		}
		e.own = newTransport(cfg.UseEnvProxy)
		e.own.TLSClientConfig = tc
		e.client = &http.Client{
			Transport: e.own,
			// A redirected POST would become a GET and lose the batch.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return e, nil
}

// newTransport returns the default client's transport: a small pool of kept
// connections to the one collector and bounded connect and header waits.
func newTransport(useEnvProxy bool) *http.Transport {
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
	}
	if useEnvProxy {
		t.Proxy = http.ProxyFromEnvironment
	}
	return t
}

// Export encodes batch and POSTs it. A 2xx answer is success. A refused or
// broken connection, a timeout, 408, 429 and 5xx are retryable, after the
// collector's Retry-After when it sent one; any other answer drops the
// batch. Export returns once ctx is done, whatever the collector does.
func (e *Exporter) Export(ctx context.Context, batch []*exporter.Record) error {
	e.buf = AppendJSON(e.buf[:0], batch)
	if len(e.buf) == len("[]") {
		return nil // no spans: nothing to send
	}
	body := e.buf
	if e.gz != nil {
		e.gzbuf.Reset()
		e.gz.Reset(&e.gzbuf)
		if _, err := e.gz.Write(body); err != nil {
			return fmt.Errorf("zipkin gzip: %w", err)
		}
		if err := e.gz.Close(); err != nil {
			return fmt.Errorf("zipkin gzip: %w", err)
		}
		body = e.gzbuf.Bytes()
	}
	defer e.trim()
	guard := &bodyGuard{b: body}
	defer guard.detach()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, guard.reader())
	if err != nil {
		return fmt.Errorf("zipkin request: %w", err)
	}
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return guard.reader(), nil }
	req.Header = e.header.Clone()
	if e.host != "" {
		req.Host = e.host
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return exporter.Retryable(fmt.Errorf("zipkin export: %w", err), 0)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("zipkin collector answered %s%s", resp.Status, snippet(resp.Body))
	if c := resp.StatusCode; c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500 {
		return exporter.Retryable(err, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	}
	return err
}

// trim drops buffers that grew past maxKeep.
func (e *Exporter) trim() {
	if cap(e.buf) > maxKeep {
		e.buf = nil
	}
	if e.gzbuf.Cap() > maxKeep {
		e.gzbuf = bytes.Buffer{}
	}
}

// Shutdown closes the default client's idle connections. A Config.Client
// is left alone: it belongs to the caller.
func (e *Exporter) Shutdown(context.Context) error {
	if e.own != nil {
		e.own.CloseIdleConnections()
	}
	return nil
}

// retryAfter parses a Retry-After value, delay-seconds or an HTTP-date, as
// a wait from now; zero when absent, malformed or past.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// snippet returns the start of an error response's body, quoted, for the
// error message; empty when there is none.
func snippet(body io.Reader) string {
	var b [maxSnippet]byte
	n, _ := io.ReadFull(body, b[:])
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(": %q", bytes.TrimSpace(b[:n]))
}

// drainClose reads what is left of a response body, up to maxDrain, so the
// connection can carry the next request, and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrain)
	_ = body.Close()
}

// errDetached is what a request body reads after Export returned.
var errDetached = errors.New("zipkin request body read after export returned")

// bodyGuard hands out readers of the reused encode buffer and cuts them off
// when Export returns: a Transport may still read a request body after
// RoundTrip returned (see http.RoundTripper), while the next Export
// rewrites the buffer.
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
		return 0, errDetached
	}
	if r.off >= len(r.g.b) {
		return 0, io.EOF
	}
	n := copy(p, r.g.b[r.off:])
	r.off += n
	return n, nil
}

func (r *guardedReader) Close() error { return nil }

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
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

// validHeaderValue reports whether s holds no control character but tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
