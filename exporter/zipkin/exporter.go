package zipkin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
)

// maxKeep bounds the buffers kept between exports, so one huge batch does
// not pin its memory for the life of the exporter.
const maxKeep = 4 << 20

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

	buf []byte
	gz  *httpexport.Gzipper // nil without Config.Gzip
}

var _ exporter.Exporter = (*Exporter)(nil)

// Check validates cfg as New would, reading its TLS files, without
// building a client, so that a caller can check every exporter before it
// starts any.
func Check(cfg Config) error {
	_, err := check(cfg)
	return err
}

// check validates cfg and returns the parsed URL.
func check(cfg Config) (*url.URL, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("zipkin url must be an absolute http(s) URL, got %q", httpexport.Redact(cfg.URL))
	}
	if _, _, err := httpexport.Headers("zipkin", cfg.Headers); err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		if _, err := cfg.TLS.Build(); err != nil {
			return nil, fmt.Errorf("zipkin %w", err)
		}
	}
	return u, nil
}

// New validates cfg and returns an Exporter.
func New(cfg Config) (*Exporter, error) {
	u, err := check(cfg)
	if err != nil {
		return nil, err
	}
	hdr, host, _ := httpexport.Headers("zipkin", cfg.Headers)
	e := &Exporter{url: u.String(), header: hdr, host: host}
	e.gz = httpexport.Prepare(e.header, "application/json", "", cfg.Gzip)
	e.client = cfg.Client
	if e.client == nil {
		tc, err := cfg.TLS.Build()
		if err != nil {
			return nil, fmt.Errorf("zipkin %w", err)
		}
		e.own = httpexport.NewTransport(tc, cfg.UseEnvProxy)
		e.client = httpexport.NewClient(e.own)
	}
	return e, nil
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
	defer e.trim()
	r := httpexport.Request{URL: e.url, Header: e.header, Host: e.host, Body: e.buf}
	return httpexport.Send(ctx, e.client, e.gz, r, "zipkin", httpexport.RetryTransient, nil)
}

// trim drops buffers that grew past maxKeep.
func (e *Exporter) trim() {
	if cap(e.buf) > maxKeep {
		e.buf = nil
	}
	if e.gz != nil {
		e.gz.Trim(maxKeep)
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
