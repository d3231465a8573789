package skywalking

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
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

// Response-body limits: how much of an error body goes into the error, and
// how much is read so the connection can be reused.
const (
	errorBodyLimit = 512
	drainLimit     = 64 << 10
)

// httpTransport speaks to the OAP's HTTP receiver: protobuf-JSON bodies,
// lowerCamelCase field names, enum names.
type httpTransport struct {
	client    *http.Client
	base      string
	token     string
	userAgent string
	header    http.Header // configured headers
	buf       []byte      // the segments body, reused between collects
}

func newHTTP(base string, tc *TLSConfig, token, version string, headers map[string]string, useEnvProxy bool) (*httpTransport, error) {
	rt := http.DefaultTransport.(*http.Transport).Clone()
	if !useEnvProxy {
		rt.Proxy = nil
	}
	if tc != nil {
		cfg, err := tlsConfig(tc)
		if err != nil {
			return nil, err
		}
		rt.TLSClientConfig = cfg
	}
	ua := "tracingproxy"
	if version != "" {
		ua += "/" + version
	}
	hdr := make(http.Header, len(headers))
	for k, v := range headers {
		hdr.Set(k, v)
	}
	return &httpTransport{
		client:    &http.Client{Transport: rt},
		base:      base,
		token:     token,
		userAgent: ua,
		header:    hdr,
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
	h.client.CloseIdleConnections()
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
// statuses are rejections; network errors are retryable.
func (h *httpTransport) post(ctx context.Context, op, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("skywalking %s: %w", op, err)
	}
	for k, v := range h.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", h.userAgent)
	// Do not trace the tracer: proxies on the way must not sample this.
	req.Header.Set("b3", "0")
	if h.token != "" {
		req.Header.Set(authKey, h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxError(op, ctxErr)
		}
		return exporter.Retryable(fmt.Errorf("skywalking %s: %w", op, err), 0)
	}
	defer resp.Body.Close()
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		return nil
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	err = fmt.Errorf("skywalking %s: %s returned HTTP %d: %s", op, path, code, strings.TrimSpace(string(snippet)))
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return authError(h.token, err)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return exporter.Retryable(err, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	default:
		return err
	}
}

// maxRetryAfter caps a Retry-After in seconds, so a huge value cannot
// overflow a Duration.
const maxRetryAfter = 24 * 60 * 60

// retryAfter parses a Retry-After value, delay-seconds or an HTTP date, into
// a wait from now; zero when absent, malformed or past.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, maxRetryAfter)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
