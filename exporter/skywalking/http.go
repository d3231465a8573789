package skywalking

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

// Paths of the OAP's HTTP receiver, relative to the configured base URL.
const (
	pathSegments   = "/v3/segments"
	pathProperties = "/v3/management/reportProperties"
	pathKeepAlive  = "/v3/management/keepAlive"
)

// httpTransport speaks to the OAP's HTTP receiver: protobuf-JSON bodies,
// lowerCamelCase field names, enum names.
type httpTransport struct {
	client *http.Client
	own    *http.Transport
	base   string
	host   string // a configured Host header, the requests' host
	token  string
	header http.Header // configured headers and the exporter's own
	buf    []byte      // the segments body, reused between collects
}

func newHTTP(base string, tc *TLSConfig, token, version string, headers map[string]string, useEnvProxy bool) (*httpTransport, error) {
	var cfg *tls.Config
	if tc != nil {
		var err error
		if cfg, err = tlsConfig(tc); err != nil {
			return nil, err
		}
	}
	hdr, host, err := httpexport.Headers("skywalking", headers)
	if err != nil {
		return nil, err
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("User-Agent", httpexport.UserAgent(version))
	// Do not trace the tracer: proxies on the way must not sample this.
	hdr.Set("b3", "0")
	if token != "" {
		hdr.Set(authKey, token)
	}
	rt := httpexport.NewTransport(cfg, useEnvProxy)
	return &httpTransport{
		client: httpexport.NewClient(rt),
		own:    rt,
		base:   base,
		host:   host,
		token:  token,
		header: hdr,
	}, nil
}

// collect POSTs the segments as one JSON array.
func (h *httpTransport) collect(ctx context.Context, segs []*agentv3.SegmentObject) error {
	body, err := appendSegmentsJSON(h.buf[:0], segs)
	h.buf = body[:0]
	if err != nil {
		return fmt.Errorf("skywalking collect: encode segments: %w", err)
	}
	return h.post(ctx, "collect", pathSegments, body)
}

// jsonOptions write lowerCamelCase names and enum names, as the OAP's JSON
// parser reads them, and zero values too: an Entry span says
// "spanType":"Entry" and span 0 says "spanId":0 rather than leaving the
// reader to know the defaults.
var jsonOptions = protojson.MarshalOptions{EmitDefaultValues: true}

// appendSegmentsJSON appends the segments to dst as a JSON array of their
// protobuf-JSON forms, the body /v3/segments expects.
func appendSegmentsJSON(dst []byte, segs []*agentv3.SegmentObject) ([]byte, error) {
	dst = append(dst, '[')
	for i, s := range segs {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		dst, err = jsonOptions.MarshalAppend(dst, s)
		if err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

func (h *httpTransport) reportProperties(ctx context.Context, p *managementv3.InstanceProperties) error {
	return h.postMessage(ctx, "reportInstanceProperties", pathProperties, p)
}

func (h *httpTransport) keepAlive(ctx context.Context, p *managementv3.InstancePingPkg) error {
	return h.postMessage(ctx, "keepAlive", pathKeepAlive, p)
}

func (h *httpTransport) close() error {
	h.own.CloseIdleConnections()
	return nil
}

func (h *httpTransport) postMessage(ctx context.Context, op, path string, m proto.Message) error {
	body, err := jsonOptions.Marshal(m)
	if err != nil {
		return fmt.Errorf("skywalking %s: encode: %w", op, err)
	}
	return h.post(ctx, op, path, body)
}

// post sends one request and maps its outcome to the exporter's error
// classes: 2xx succeeds; 401 and 403 are a refused token; 408, 429 and 5xx
// are retryable, after Retry-After when the collector sent one; other
// statuses, redirects included, are rejections; network errors are
// retryable. body may be the reused segments buffer: the transport cannot
// read it once post returned.
func (h *httpTransport) post(ctx context.Context, op, path string, body []byte) error {
	resp, detach, err := httpexport.Post(ctx, h.client, httpexport.Request{URL: h.base + path, Header: h.header, Host: h.host, Body: body})
	defer detach()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxError(op, ctxErr)
		}
		return exporter.Retryable(fmt.Errorf("skywalking %s: %w", op, err), 0)
	}
	defer httpexport.DrainClose(resp.Body)
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err = fmt.Errorf("skywalking %s: %s returned HTTP %d%s", op, path, code, httpexport.Snippet(resp.Body))
	if code == http.StatusUnauthorized || code == http.StatusForbidden {
		return authError(h.token, err)
	}
	return httpexport.Classify(resp, httpexport.RetryTransient, err)
}
