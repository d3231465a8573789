package otlp

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
)

// maxKeep bounds the buffers kept between exports, so one huge batch does
// not pin its memory for the life of the exporter.
const maxKeep = 4 << 20

// maxResponse bounds the success response read for a partial success.
const maxResponse = 64 << 10

// Encodings of OTLP/HTTP request bodies.
const (
	EncodingProtobuf = "protobuf" // application/x-protobuf, the default
	EncodingJSON     = "json"     // application/json, OTLP/JSON
)

// TracesPath is the OTLP/HTTP traces endpoint's path, used when the URL
// names none.
const TracesPath = "/v1/traces"

// Config configures an Exporter.
type Config struct {
	// URL is the collector: an http or https URL for OTLP/HTTP, such as
	// http://127.0.0.1:4318 (a URL without a path posts to /v1/traces), or
	// grpc://host:4317 (grpcs:// for TLS) for OTLP/gRPC. Required.
	URL string
	// Encoding is EncodingProtobuf (default) or EncodingJSON, for
	// OTLP/HTTP; OTLP/gRPC is always protobuf.
	Encoding string
	// Gzip compresses request bodies (Content-Encoding: gzip; the gzip
	// compressor over gRPC). Default off.
	Gzip bool
	// Headers are added to every request, e.g. for authorization; over
	// gRPC they are sent as metadata. Over HTTP they cannot override
	// Content-Type, Content-Encoding or b3, which the exporter sets, and a
	// "Host" entry sets the request's host.
	Headers map[string]string
	// UseEnvProxy honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY. Default off.
	UseEnvProxy bool
	// TLS configures TLS to an https or grpcs collector.
	TLS *exporter.TLSConfig
	// Version is the tracingproxy version: telemetry.sdk.version, the
	// scope version and the User-Agent.
	Version string
}

// target is a checked Config's transport and address.
type target struct {
	grpc bool   // OTLP/gRPC rather than OTLP/HTTP
	tls  bool   // https or grpcs
	url  string // OTLP/HTTP: the URL posted to
	addr string // OTLP/gRPC: host:port
}

// Check validates cfg without building anything: the URL, the encoding,
// the headers and the TLS files. Errors start with "otlp" and name the
// option.
func Check(cfg Config) error {
	_, err := check(cfg)
	return err
}

func check(cfg Config) (target, error) {
	var tg target
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || u.Opaque != "" || u.User != nil {
		return tg, fmt.Errorf("otlp url must be http(s)://host[:port][/path] or grpc(s)://host:port, got %q", httpexport.Redact(cfg.URL))
	}
	switch u.Scheme {
	case "http", "https":
		tg.tls = u.Scheme == "https"
		if u.Path == "" || u.Path == "/" {
			u.Path = TracesPath
		}
		tg.url = u.String()
	case "grpc", "grpcs":
		tg.grpc, tg.tls = true, u.Scheme == "grpcs"
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return tg, fmt.Errorf("otlp url: a grpc(s) url is host:port only, got %q", httpexport.Redact(cfg.URL))
		}
		tg.addr = u.Host
		if u.Port() == "" {
			tg.addr = net.JoinHostPort(u.Hostname(), "4317")
		}
	default:
		return tg, fmt.Errorf("otlp url must be http(s)://host[:port][/path] or grpc(s)://host:port, got %q", httpexport.Redact(cfg.URL))
	}
	switch cfg.Encoding {
	case "", EncodingProtobuf:
	case EncodingJSON:
		if tg.grpc {
			return tg, fmt.Errorf("otlp encoding json is for http(s) urls; OTLP/gRPC is protobuf")
		}
	default:
		return tg, fmt.Errorf("otlp encoding must be %s or %s, got %q", EncodingProtobuf, EncodingJSON, cfg.Encoding)
	}
	if tg.grpc {
		if err := checkMetadata(cfg.Headers); err != nil {
			return tg, err
		}
	} else if _, _, err := httpexport.Headers("otlp", cfg.Headers); err != nil {
		return tg, err
	}
	if cfg.TLS != nil && !tg.tls {
		return tg, fmt.Errorf("otlp tls needs an https:// or grpcs:// url, got %q", httpexport.Redact(cfg.URL))
	}
	if _, err := cfg.TLS.Build(); err != nil {
		return tg, fmt.Errorf("otlp %w", err)
	}
	return tg, nil
}

// Exporter sends batches of records to an OpenTelemetry collector as one
// ExportTraceServiceRequest per export, over OTLP/HTTP or OTLP/gRPC. Per
// the exporter.Exporter contract it is used from one goroutine, which lets
// it reuse its buffers.
type Exporter struct {
	url    string
	host   string
	header http.Header
	client *http.Client
	own    *http.Transport
	enc    Encoder
	json   bool
	grpc   *grpcSender // nil over HTTP

	buf  []byte
	gz   *httpexport.Gzipper // nil without Config.Gzip
	resp []byte
}

var _ exporter.Exporter = (*Exporter)(nil)

// New validates cfg and returns an Exporter. It does not connect: a gRPC
// connection is made on the first export and remade as needed.
func New(cfg Config) (*Exporter, error) {
	tg, err := check(cfg)
	if err != nil {
		return nil, err
	}
	tc, err := cfg.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("otlp %w", err)
	}
	e := &Exporter{enc: Encoder{Version: cfg.Version}}
	if tg.grpc {
		if !tg.tls {
			tc = nil
		}
		e.grpc, err = newGRPCSender(tg.addr, tc, cfg)
		return e, err
	}
	e.url = tg.url
	e.header, e.host, _ = httpexport.Headers("otlp", cfg.Headers)
	e.json = cfg.Encoding == EncodingJSON
	contentType := "application/x-protobuf"
	if e.json {
		contentType = "application/json"
	}
	e.gz = httpexport.Prepare(e.header, contentType, cfg.Version, cfg.Gzip)
	e.own = httpexport.NewTransport(tc, cfg.UseEnvProxy)
	e.client = httpexport.NewClient(e.own)
	return e, nil
}

// Export encodes batch and sends it. Success is a 2xx answer (an OK
// status over gRPC), or a partial success (exporter.PartialError) when
// the collector names rejected spans. Over HTTP a refused or broken
// connection, a timeout, 429, 502, 503 and 504 are retryable, after the
// collector's Retry-After when it sent one; over gRPC the codes the OTLP
// specification names (see retryableCode). Anything else drops the batch.
func (e *Exporter) Export(ctx context.Context, batch []*exporter.Record) error {
	if len(batch) == 0 {
		return nil
	}
	if e.grpc != nil {
		return e.grpc.export(ctx, &e.enc, batch)
	}
	if e.json {
		e.buf = e.enc.AppendJSONRequest(e.buf[:0], batch)
	} else {
		e.buf = e.enc.AppendRequest(e.buf[:0], batch)
	}
	defer e.trim()
	r := httpexport.Request{URL: e.url, Header: e.header, Host: e.host, Body: e.buf}
	return httpexport.Send(ctx, e.client, e.gz, r, "otlp", httpexport.RetryOTLP, e.partial)
}

// partial reads an ExportTraceServiceResponse (OTLP/JSON when the
// request was JSON) and returns a PartialError when its partial_success
// rejected spans; an empty or unreadable body is a full success.
func (e *Exporter) partial(body io.Reader) error {
	b, err := readUpTo(e.resp[:0], body, maxResponse)
	e.resp = b[:0]
	if err != nil || len(b) == 0 {
		return nil
	}
	if e.json {
		return partialJSON(b)
	}
	return partialProto(b)
}

// partialProto reads the partial_success of a protobuf
// ExportTraceServiceResponse.
func partialProto(b []byte) error {
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

// partialJSON reads the partialSuccess of an OTLP/JSON
// ExportTraceServiceResponse, whose rejectedSpans (an int64) may be a
// string or a number.
func partialJSON(b []byte) error {
	var resp struct {
		PartialSuccess struct {
			RejectedSpans json.RawMessage `json:"rejectedSpans"`
			ErrorMessage  string          `json:"errorMessage"`
		} `json:"partialSuccess"`
	}
	if json.Unmarshal(b, &resp) != nil {
		return nil
	}
	n, err := strconv.ParseInt(strings.Trim(string(resp.PartialSuccess.RejectedSpans), `"`), 10, 64)
	if err != nil || n <= 0 {
		return nil
	}
	return &exporter.PartialError{Rejected: int(min(n, 1<<31)), Message: resp.PartialSuccess.ErrorMessage}
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

// Shutdown closes the connections.
func (e *Exporter) Shutdown(context.Context) error {
	if e.grpc != nil {
		return e.grpc.close()
	}
	e.own.CloseIdleConnections()
	return nil
}
