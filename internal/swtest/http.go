package swtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

// The OAP's HTTP receiver paths.
const (
	pathSegments   = "/v3/segments"
	pathProperties = "/v3/management/reportProperties"
	pathKeepAlive  = "/v3/management/keepAlive"
)

// strict rejects unknown fields, wrong types and unknown enum names.
var strict = protojson.UnmarshalOptions{DiscardUnknown: false}

// HTTPCollector is a SkyWalking OAP HTTP receiver that decodes bodies
// strictly: POST /v3/segments takes a JSON array of protobuf-JSON
// SegmentObjects, /v3/management/reportProperties one InstanceProperties and
// /v3/management/keepAlive one InstancePingPkg, each with Content-Type
// application/json. A request it cannot decode is answered 400 and recorded
// in Errors. It is an http.Handler: NewHTTPCollector serves it on a local
// server, and a test that needs a base path or TLS mounts it on its own.
// Its methods are safe for concurrent use.
type HTTPCollector struct {
	// Status, when non-zero, is the status /v3/segments answers after
	// decoding the body (the segments are then not recorded), with
	// RetryAfter, when set, as its Retry-After header. Set them before the
	// collector serves.
	Status     int
	RetryAfter string

	url string

	mu       sync.Mutex
	segments []*agentv3.SegmentObject
	props    []*managementv3.InstanceProperties
	pings    []*managementv3.InstancePingPkg
	headers  []http.Header
	errs     []error
}

// NewHTTPCollector starts a collector on a local HTTP server, closed when the
// test ends.
func NewHTTPCollector(t testing.TB) *HTTPCollector {
	c := &HTTPCollector{}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// URL returns the base URL (http://host:port) of a collector started by
// NewHTTPCollector, for an http:// exporter address.
func (c *HTTPCollector) URL() string { return c.url }

// ServeHTTP decodes and records one request.
func (c *HTTPCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.headers = append(c.headers, r.Header.Clone())
	fail := func(err error) {
		c.errs = append(c.errs, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err))
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
	switch {
	case err != nil:
		fail(err)
		return
	case r.Method != http.MethodPost:
		fail(errors.New("method is not POST"))
		return
	case r.Header.Get("Content-Type") != "application/json":
		fail(fmt.Errorf("content-type %q", r.Header.Get("Content-Type")))
		return
	}
	switch r.URL.Path {
	case pathSegments:
		segs, err := DecodeSegments(body)
		if err != nil {
			fail(err)
			return
		}
		if c.Status != 0 {
			if c.RetryAfter != "" {
				w.Header().Set("Retry-After", c.RetryAfter)
			}
			http.Error(w, "collector says no", c.Status)
			return
		}
		c.segments = append(c.segments, segs...)
	case pathProperties:
		p := &managementv3.InstanceProperties{}
		if err := strict.Unmarshal(body, p); err != nil {
			fail(err)
			return
		}
		c.props = append(c.props, p)
	case pathKeepAlive:
		p := &managementv3.InstancePingPkg{}
		if err := strict.Unmarshal(body, p); err != nil {
			fail(err)
			return
		}
		c.pings = append(c.pings, p)
	default:
		http.NotFound(w, r)
		return
	}
	_, _ = io.WriteString(w, "{}")
}

// DecodeSegments strictly decodes a /v3/segments body: a JSON array whose
// elements are protobuf-JSON SegmentObjects.
func DecodeSegments(body []byte) ([]*agentv3.SegmentObject, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON array: %w", err)
	}
	if raw == nil {
		return nil, errors.New("null instead of an array")
	}
	segs := make([]*agentv3.SegmentObject, 0, len(raw))
	for i, m := range raw {
		seg, err := DecodeSegment(m)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", i, err)
		}
		segs = append(segs, seg)
	}
	return segs, nil
}

// DecodeSegment strictly decodes one protobuf-JSON SegmentObject: unknown
// fields, wrong types and unknown enum names are errors.
func DecodeSegment(b []byte) (*agentv3.SegmentObject, error) {
	seg := &agentv3.SegmentObject{}
	if err := strict.Unmarshal(b, seg); err != nil {
		return nil, err
	}
	return seg, nil
}

// Segments returns the segments accepted so far, in arrival order.
func (c *HTTPCollector) Segments() []*agentv3.SegmentObject {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.segments)
}

// Properties returns the instance properties accepted so far.
func (c *HTTPCollector) Properties() []*managementv3.InstanceProperties {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.props)
}

// KeepAlives returns the keepAlive pings accepted so far.
func (c *HTTPCollector) KeepAlives() []*managementv3.InstancePingPkg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pings)
}

// Headers returns the headers of every request received so far.
func (c *HTTPCollector) Headers() []http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.headers)
}

// Errors returns why each request the collector could not decode was
// refused.
func (c *HTTPCollector) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// WaitSegments waits until the collector holds at least n segments and
// returns them, failing the test at the deadline or as soon as a request
// could not be decoded.
func (c *HTTPCollector) WaitSegments(t testing.TB, n int, timeout time.Duration) []*agentv3.SegmentObject {
	t.Helper()
	var segs []*agentv3.SegmentObject
	wait(t, timeout, func() bool {
		if errs := c.Errors(); len(errs) > 0 {
			t.Fatalf("swtest: the collector could not decode a request: %v", errs[0])
		}
		segs = c.Segments()
		return len(segs) >= n
	}, func() string { return strconv.Itoa(len(segs)) + " segments, want " + strconv.Itoa(n) })
	return segs
}

// WaitKeepAlives waits until the collector holds at least n keepAlives and
// returns them, failing the test at the deadline.
func (c *HTTPCollector) WaitKeepAlives(t testing.TB, n int, timeout time.Duration) []*managementv3.InstancePingPkg {
	t.Helper()
	var pings []*managementv3.InstancePingPkg
	wait(t, timeout, func() bool {
		pings = c.KeepAlives()
		return len(pings) >= n
	}, func() string { return strconv.Itoa(len(pings)) + " keepAlives, want " + strconv.Itoa(n) })
	return pings
}
