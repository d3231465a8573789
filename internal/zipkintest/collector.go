// Package zipkintest is a strict Zipkin v2 collector for tests: an HTTP
// server that decodes POST /api/v2/spans the way the strictest real receivers
// do, checks every rule of zipkin2-api.yaml, and cross-checks the result
// against zipkin-go's model decoder. Anything it cannot accept it answers
// with 400 and records as rejected.
package zipkintest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
)

// Endpoint mirrors Endpoint in zipkin2-api.yaml. Pointers tell an absent
// field from an empty one, which the encoder must never write.
type Endpoint struct {
	ServiceName *string `json:"serviceName"`
	IPv4        *string `json:"ipv4"`
	IPv6        *string `json:"ipv6"`
	Port        *uint16 `json:"port"`
}

// Annotation mirrors Annotation in zipkin2-api.yaml.
type Annotation struct {
	Timestamp uint64 `json:"timestamp"`
	Value     string `json:"value"`
}

// Span mirrors Span in zipkin2-api.yaml with its exact types: timestamps
// are JSON numbers (a string fails to decode) and tags are string to string
// (any other tag value fails to decode).
type Span struct {
	TraceID        string            `json:"traceId"`
	Name           *string           `json:"name"`
	ParentID       *string           `json:"parentId"`
	ID             string            `json:"id"`
	Kind           *string           `json:"kind"`
	Timestamp      *uint64           `json:"timestamp"`
	Duration       *uint64           `json:"duration"`
	Debug          *bool             `json:"debug"`
	Shared         *bool             `json:"shared"`
	LocalEndpoint  *Endpoint         `json:"localEndpoint"`
	RemoteEndpoint *Endpoint         `json:"remoteEndpoint"`
	Annotations    []Annotation      `json:"annotations"`
	Tags           map[string]string `json:"tags"`
}

// The exact key spellings of each object; encoding/json alone would match
// them case-insensitively.
var (
	spanKeys       = keySet(Span{})
	endpointKeys   = keySet(Endpoint{})
	annotationKeys = keySet(Annotation{})
)

func keySet(v any) map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		keys[t.Field(i).Tag.Get("json")] = true
	}
	return keys
}

// DecodeSpans strictly decodes a ListOfSpans body: an array of spans, each
// valid per validateSpan, cross-checked against zipkin-go's decoder.
func DecodeSpans(body []byte) ([]Span, error) {
	if err := checkRaw(body, "list"); err != nil {
		return nil, err
	}
	var spans []Span
	if err := decodeStrict(body, &spans); err != nil {
		return nil, err
	}
	if len(spans) == 0 {
		return nil, errors.New("empty list of spans")
	}
	for i := range spans {
		if err := validateSpan(&spans[i]); err != nil {
			return nil, fmt.Errorf("span %d: %w", i, err)
		}
	}
	var oracle []model.SpanModel
	if err := json.Unmarshal(body, &oracle); err != nil {
		return nil, fmt.Errorf("zipkin-go model: %w", err)
	}
	if len(oracle) != len(spans) {
		return nil, fmt.Errorf("zipkin-go model decoded %d spans, want %d", len(oracle), len(spans))
	}
	for i := range spans {
		if err := agree(&spans[i], &oracle[i]); err != nil {
			return nil, fmt.Errorf("span %d: zipkin-go model disagrees: %w", i, err)
		}
	}
	return spans, nil
}

// DecodeSpan strictly decodes one span object, as LogExporter writes it.
func DecodeSpan(line []byte) (Span, error) {
	var s Span
	if err := checkRaw(line, "span"); err != nil {
		return s, err
	}
	if err := decodeStrict(line, &s); err != nil {
		return s, err
	}
	if err := validateSpan(&s); err != nil {
		return s, err
	}
	var oracle model.SpanModel
	if err := json.Unmarshal(line, &oracle); err != nil {
		return s, fmt.Errorf("zipkin-go model: %w", err)
	}
	return s, agree(&s, &oracle)
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// checkRaw walks the JSON tokens: the top value has the given shape, keys
// are spelled exactly and appear once, and no value is null.
func checkRaw(body []byte, shape string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return walk(dec, shape, "$")
}

func walk(dec *json.Decoder, shape, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if tok == nil {
		return fmt.Errorf("%s: null instead of an absent field", path)
	}
	delim, isDelim := tok.(json.Delim)
	switch shape {
	case "list", "annotations":
		if delim != '[' {
			return fmt.Errorf("%s: %v, want an array", path, tok)
		}
	case "span", "endpoint", "tags", "annotation":
		if delim != '{' {
			return fmt.Errorf("%s: %v, want an object", path, tok)
		}
	default:
		if isDelim {
			return fmt.Errorf("%s: %v, want a scalar", path, tok)
		}
		return nil
	}
	if delim == '[' {
		elem := map[string]string{"list": "span", "annotations": "annotation"}[shape]
		for i := 0; dec.More(); i++ {
			if err := walk(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		if seen[key] {
			return fmt.Errorf("%s: duplicate key %q", path, key)
		}
		seen[key] = true
		sub := "scalar"
		switch shape {
		case "span":
			if !spanKeys[key] {
				return fmt.Errorf("%s: unknown key %q", path, key)
			}
			sub = map[string]string{"localEndpoint": "endpoint", "remoteEndpoint": "endpoint",
				"tags": "tags", "annotations": "annotations"}[key]
		case "endpoint":
			if !endpointKeys[key] {
				return fmt.Errorf("%s: unknown key %q", path, key)
			}
		case "annotation":
			if !annotationKeys[key] {
				return fmt.Errorf("%s: unknown key %q", path, key)
			}
		}
		if sub == "" {
			sub = "scalar"
		}
		if err := walk(dec, sub, path+"."+key); err != nil {
			return err
		}
	}
	_, err = dec.Token()
	return err
}

// validateSpan checks the rules of zipkin2-api.yaml the types cannot, and
// that nothing empty was written instead of being left out.
func validateSpan(s *Span) error {
	if len(s.TraceID) != 16 && len(s.TraceID) != 32 || !isLowerHex(s.TraceID) || isZeros(s.TraceID) {
		return fmt.Errorf("traceId %q is not 16 or 32 lowercase hex digits, not all zero", s.TraceID)
	}
	if len(s.ID) != 16 || !isLowerHex(s.ID) || isZeros(s.ID) {
		return fmt.Errorf("id %q is not 16 lowercase hex digits, not all zero", s.ID)
	}
	if p := s.ParentID; p != nil && (len(*p) != 16 || !isLowerHex(*p) || isZeros(*p)) {
		return fmt.Errorf("parentId %q is not 16 lowercase hex digits, not all zero", *p)
	}
	if s.Kind != nil {
		switch *s.Kind {
		case "CLIENT", "SERVER", "PRODUCER", "CONSUMER":
		default:
			return fmt.Errorf("kind %q is not CLIENT, SERVER, PRODUCER or CONSUMER", *s.Kind)
		}
	}
	if s.Name != nil && (*s.Name == "" || *s.Name != strings.ToLower(*s.Name)) {
		return fmt.Errorf("name %q is empty or not lowercase", *s.Name)
	}
	if s.Timestamp != nil && *s.Timestamp == 0 {
		return errors.New("timestamp 0 written instead of left out")
	}
	if s.Duration != nil && *s.Duration < 1 {
		return errors.New("duration is less than 1")
	}
	if s.Debug != nil && !*s.Debug {
		return errors.New("debug false written instead of left out")
	}
	if s.Shared != nil {
		return errors.New("shared written: the proxy's spans are its own")
	}
	for name, ep := range map[string]*Endpoint{"localEndpoint": s.LocalEndpoint, "remoteEndpoint": s.RemoteEndpoint} {
		if err := validateEndpoint(ep); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if s.Annotations != nil && len(s.Annotations) == 0 {
		return errors.New("empty annotations written instead of left out")
	}
	if s.Tags != nil && len(s.Tags) == 0 {
		return errors.New("empty tags written instead of left out")
	}
	return nil
}

func validateEndpoint(ep *Endpoint) error {
	if ep == nil {
		return nil
	}
	if ep.ServiceName == nil && ep.IPv4 == nil && ep.IPv6 == nil && ep.Port == nil {
		return errors.New("empty endpoint written instead of left out")
	}
	if n := ep.ServiceName; n != nil && (*n == "" || *n != strings.ToLower(*n)) {
		return fmt.Errorf("serviceName %q is empty or not lowercase", *n)
	}
	if v := ep.IPv4; v != nil {
		if ip, err := netip.ParseAddr(*v); err != nil || !ip.Is4() || ip.String() != *v {
			return fmt.Errorf("ipv4 %q is not an IPv4 address in canonical form", *v)
		}
	}
	if v := ep.IPv6; v != nil {
		if ip, err := netip.ParseAddr(*v); err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" || ip.String() != *v {
			return fmt.Errorf("ipv6 %q is not an unmapped IPv6 address in canonical form", *v)
		}
	}
	if ep.Port != nil && *ep.Port == 0 {
		return errors.New("port 0 written instead of left out")
	}
	return nil
}

// agree checks that zipkin-go's model decoded the span as we did.
func agree(s *Span, m *model.SpanModel) error {
	var got [][2]any
	add := func(field string, ours, theirs any) {
		if !reflect.DeepEqual(ours, theirs) {
			got = append(got, [2]any{field, fmt.Sprintf("ours %v, zipkin-go %v", ours, theirs)})
		}
	}
	tid, err := model.TraceIDFromHex(s.TraceID)
	if err != nil {
		return err
	}
	add("traceId", tid, m.TraceID)
	add("id", s.ID, fmt.Sprintf("%016x", uint64(m.ID)))
	parent := ""
	if s.ParentID != nil {
		parent = *s.ParentID
	}
	theirParent := ""
	if m.ParentID != nil {
		theirParent = fmt.Sprintf("%016x", uint64(*m.ParentID))
	}
	add("parentId", parent, theirParent)
	add("kind", deref(s.Kind), string(m.Kind))
	add("name", deref(s.Name), m.Name)
	ts := int64(0)
	if s.Timestamp != nil {
		ts = int64(*s.Timestamp)
	}
	theirTS := int64(0)
	if !m.Timestamp.IsZero() {
		theirTS = m.Timestamp.UnixMicro()
	}
	add("timestamp", ts, theirTS)
	dur := int64(0)
	if s.Duration != nil {
		dur = int64(*s.Duration)
	}
	add("duration", dur, m.Duration.Microseconds())
	add("debug", s.Debug != nil && *s.Debug, m.Debug)
	add("localEndpoint", s.LocalEndpoint.String(), modelEndpointString(m.LocalEndpoint))
	add("remoteEndpoint", s.RemoteEndpoint.String(), modelEndpointString(m.RemoteEndpoint))
	tags := s.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	theirTags := m.Tags
	if theirTags == nil {
		theirTags = map[string]string{}
	}
	add("tags", tags, theirTags)
	if len(got) > 0 {
		return fmt.Errorf("%v", got)
	}
	return nil
}

// String writes the endpoint as serviceName|ipv4|ipv6|port, "" for nil.
func (ep *Endpoint) String() string {
	if ep == nil {
		return ""
	}
	port := uint16(0)
	if ep.Port != nil {
		port = *ep.Port
	}
	return fmt.Sprintf("%s|%s|%s|%d", deref(ep.ServiceName), deref(ep.IPv4), deref(ep.IPv6), port)
}

func modelEndpointString(ep *model.Endpoint) string {
	if ep == nil {
		return ""
	}
	ip := func(v []byte) string {
		if len(v) == 0 {
			return ""
		}
		a, ok := netip.AddrFromSlice(v)
		if !ok {
			return fmt.Sprintf("bad ip %x", v)
		}
		return a.Unmap().String()
	}
	return fmt.Sprintf("%s|%s|%s|%d", ep.ServiceName, ip(ep.IPv4), ip(ep.IPv6), ep.Port)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isZeros(s string) bool { return strings.Trim(s, "0") == "" }

// Received is one request the collector accepted.
type Received struct {
	Header http.Header
	Body   []byte // decompressed
	Spans  []Span
}

// Collector is a strict Zipkin collector: it answers 202 to a valid
// ListOfSpans and 400, with the reason, to anything else.
type Collector struct {
	*httptest.Server
	mu       sync.Mutex
	accepted []Received
	rejected []error
}

// NewCollector starts a strict collector, closed when the test ends.
func NewCollector(t testing.TB) *Collector {
	c := &Collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

// URL returns the collector's span endpoint.
func (c *Collector) URL() string { return c.Server.URL + "/api/v2/spans" }

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	rec, err := c.decode(r)
	c.mu.Lock()
	if err != nil {
		c.rejected = append(c.rejected, err)
	} else {
		c.accepted = append(c.accepted, rec)
	}
	c.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (c *Collector) decode(r *http.Request) (Received, error) {
	rec := Received{Header: r.Header.Clone()}
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/spans" {
		return rec, fmt.Errorf("%s %s, want POST /api/v2/spans", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return rec, fmt.Errorf("content-type %q, want application/json", ct)
	}
	var body io.Reader = r.Body
	switch ce := r.Header.Get("Content-Encoding"); ce {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return rec, fmt.Errorf("gzip: %w", err)
		}
		body = zr
	default:
		return rec, fmt.Errorf("content-encoding %q", ce)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return rec, fmt.Errorf("read body: %w", err)
	}
	rec.Body = b
	rec.Spans, err = DecodeSpans(b)
	return rec, err
}

// Requests returns what the collector accepted and rejected so far.
func (c *Collector) Requests() ([]Received, []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.accepted...), append([]error(nil), c.rejected...)
}

// Only returns the one request the collector accepted, failing the test
// unless there was exactly one and nothing was rejected.
func (c *Collector) Only(t testing.TB) Received {
	t.Helper()
	acc, rej := c.Requests()
	if len(rej) > 0 || len(acc) != 1 {
		t.Fatalf("collector accepted %d requests and rejected %v, want exactly 1 accepted", len(acc), rej)
	}
	return acc[0]
}

// Spans returns every span the collector accepted so far, in arrival order.
func (c *Collector) Spans() []Span {
	acc, _ := c.Requests()
	var out []Span
	for _, r := range acc {
		out = append(out, r.Spans...)
	}
	return out
}

// WaitSpans waits until the collector has accepted at least n spans and
// returns them, failing the test at the deadline or if anything was
// rejected.
func (c *Collector) WaitSpans(t testing.TB, n int, timeout time.Duration) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, rej := c.Requests()
		if len(rej) > 0 {
			t.Fatalf("collector rejected a request: %v", rej[0])
		}
		if spans := c.Spans(); len(spans) >= n {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector received %d spans within %s, want %d", len(c.Spans()), timeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
