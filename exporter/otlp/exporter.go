package otlp

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
)

// maxKeep bounds the buffers kept between exports, so one huge batch does
// not pin its memory for the life of the exporter.
const maxKeep = 4 << 20

// maxResponse bounds the success response read for a partial success.
const maxResponse = 64 << 10

// Config configures an Exporter.
type Config struct {
	// URL is the collector's OTLP/HTTP traces endpoint, an absolute http or
	// https URL such as http://127.0.0.1:4318/v1/traces. Required.
	URL string
	// Gzip compresses request bodies (Content-Encoding: gzip). Default off.
	Gzip bool
	// Headers are added to every request, e.g. for authorization. They
	// cannot override Content-Type, Content-Encoding or b3, which the
	// exporter sets. A "Host" entry sets the request's host.
	Headers map[string]string
	// UseEnvProxy honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY. Default off.
	UseEnvProxy bool
	// TLS configures TLS to an https collector.
	TLS *exporter.TLSConfig
	// Version is the tracingproxy version: telemetry.sdk.version, the
	// scope version and the User-Agent.
	Version string
}

// Exporter posts batches of records to an OTLP/HTTP collector as one
// protobuf ExportTraceServiceRequest per request. Per the exporter.Exporter
// contract it is used from one goroutine, which lets it reuse its buffers.
type Exporter struct {
	url    string
	host   string
	header http.Header
	client *http.Client
	own    *http.Transport
	enc    Encoder

	buf  []byte
	gz   *httpexport.Gzipper // nil without Config.Gzip
	resp []byte
}

var _ exporter.Exporter = (*Exporter)(nil)

// New validates cfg and returns an Exporter.
func New(cfg Config) (*Exporter, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("otlp url must be an absolute http(s) URL, got %q", httpexport.Redact(cfg.URL))
	}
	hdr, host, err := httpexport.Headers("otlp", cfg.Headers)
	if err != nil {
		return nil, err
	}
	tc, err := cfg.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("otlp %w", err)
	}
	e := &Exporter{url: u.String(), host: host, header: hdr, enc: Encoder{Version: cfg.Version}}
	e.gz = httpexport.Prepare(e.header, "application/x-protobuf", cfg.Version, cfg.Gzip)
	e.own = httpexport.NewTransport(tc, cfg.UseEnvProxy)
	e.client = httpexport.NewClient(e.own)
	return e, nil
}

// Export encodes batch and POSTs it. A 2xx answer is success, or a partial
// success (exporter.PartialError) when the collector names rejected spans.
// A refused or broken connection, a timeout, 429, 502, 503 and 504 are
// retryable, after the collector's Retry-After when it sent one; any other
// answer drops the batch, as the OTLP specification says.
func (e *Exporter) Export(ctx context.Context, batch []*exporter.Record) error {
	e.buf = e.enc.AppendRequest(e.buf[:0], batch)
	if len(e.buf) == 0 {
		return nil
	}
	defer e.trim()
	r := httpexport.Request{URL: e.url, Header: e.header, Host: e.host, Body: e.buf}
	return httpexport.Send(ctx, e.client, e.gz, r, "otlp", httpexport.RetryOTLP, e.partial)
}

// partial reads an ExportTraceServiceResponse and returns a PartialError
// when its partial_success rejected spans; an empty or unreadable body is
// a full success.
func (e *Exporter) partial(body io.Reader) error {
	b, err := readUpTo(e.resp[:0], body, maxResponse)
	e.resp = b[:0]
	if err != nil || len(b) == 0 {
		return nil
	}
	ps, ok := field(b, 1)
	if !ok {
		return nil
	}
	var rejected uint64
	if v, ok := field(ps, 1); ok {
		rejected, _ = binary.Uvarint(v)
	}
	msg, _ := field(ps, 2)
	if rejected == 0 {
		return nil
	}
	return &exporter.PartialError{Rejected: int(min(rejected, 1<<31)), Message: string(msg)}
}

// readUpTo appends up to limit bytes of r to dst.
func readUpTo(dst []byte, r io.Reader, limit int) ([]byte, error) {
	for len(dst) < limit {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):min(cap(dst), limit)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// field returns the last occurrence of field f in the message b: the bytes
// of a length-delimited field, the varint's bytes of a varint field. It
// reports false for a malformed message or an absent field.
func field(b []byte, f uint64) ([]byte, bool) {
	var out []byte
	found := false
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, false
		}
		b = b[n:]
		var v []byte
		switch tag & 7 {
		case wireVarint:
			_, m := binary.Uvarint(b)
			if m <= 0 {
				return nil, false
			}
			v, b = b[:m], b[m:]
		case wireFixed64:
			if len(b) < 8 {
				return nil, false
			}
			v, b = b[:8], b[8:]
		case wireFixed32:
			if len(b) < 4 {
				return nil, false
			}
			v, b = b[:4], b[4:]
		case wireBytes:
			l, m := binary.Uvarint(b)
			if m <= 0 || uint64(len(b)-m) < l {
				return nil, false
			}
			v, b = b[m:m+int(l)], b[m+int(l):]
		default:
			return nil, false
		}
		if tag>>3 == f {
			out, found = v, true
		}
	}
	return out, found
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

// Shutdown closes idle connections.
func (e *Exporter) Shutdown(context.Context) error {
	e.own.CloseIdleConnections()
	return nil
}
