package memory

import (
	"container/list"
	"strings"
	"sync"
)

// Span is a Zipkin v2 span as the store keeps it and the query API writes it.
type Span struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId,omitempty"`
	Name           string            `json:"name,omitempty"`
	Kind           string            `json:"kind,omitempty"`
	Timestamp      int64             `json:"timestamp,omitempty"`
	Duration       int64             `json:"duration,omitempty"`
	Debug          bool              `json:"debug,omitempty"`
	Shared         bool              `json:"shared,omitempty"`
	LocalEndpoint  *Endpoint         `json:"localEndpoint,omitempty"`
	RemoteEndpoint *Endpoint         `json:"remoteEndpoint,omitempty"`
	Annotations    []Annotation      `json:"annotations,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
}

// Endpoint is a Zipkin v2 endpoint.
type Endpoint struct {
	ServiceName string `json:"serviceName,omitempty"`
	IPv4        string `json:"ipv4,omitempty"`
	IPv6        string `json:"ipv6,omitempty"`
	Port        int    `json:"port,omitempty"`
}

// Annotation is a Zipkin v2 annotation: an event at a time in microseconds.
type Annotation struct {
	Timestamp int64  `json:"timestamp"`
	Value     string `json:"value"`
}

func (s *Span) localService() string {
	if s.LocalEndpoint == nil {
		return ""
	}
	return s.LocalEndpoint.ServiceName
}

func (s *Span) remoteService() string {
	if s.RemoteEndpoint == nil {
		return ""
	}
	return s.RemoteEndpoint.ServiceName
}

// size estimates the bytes a stored span holds.
func (s *Span) size() int {
	n := 160 + len(s.TraceID) + len(s.ID) + len(s.ParentID) + len(s.Name) + len(s.Kind)
	for _, e := range [2]*Endpoint{s.LocalEndpoint, s.RemoteEndpoint} {
		if e != nil {
			n += 64 + len(e.ServiceName) + len(e.IPv4) + len(e.IPv6)
		}
	}
	for _, a := range s.Annotations {
		n += 32 + len(a.Value)
	}
	for k, v := range s.Tags {
		n += 48 + len(k) + len(v)
	}
	return n
}

// Default bounds of a Store.
const (
	DefaultMaxTraces = 10000
	DefaultMaxBytes  = 64 << 20
)

// Store is a bounded store of recent traces, safe for concurrent use.
type Store struct {
	mu        sync.Mutex
	maxTraces int
	maxBytes  int
	bytes     int
	traces    map[string]*trace
	order     *list.List // of *trace, oldest first
	evicted   uint64     // traces evicted, ever
	spans     uint64     // spans stored, ever
}

// trace is one stored trace.
type trace struct {
	key   string
	spans []Span
	bytes int
	elem  *list.Element
}

// NewStore returns a store holding at most maxTraces traces and about
// maxBytes bytes of spans; a bound of zero or less takes its default.
func NewStore(maxTraces, maxBytes int) *Store {
	s := &Store{traces: make(map[string]*trace), order: list.New()}
	s.SetLimits(maxTraces, maxBytes)
	return s
}

// SetLimits changes the bounds, evicting the oldest traces beyond them; a
// bound of zero or less takes its default.
func (s *Store) SetLimits(maxTraces, maxBytes int) {
	if maxTraces <= 0 {
		maxTraces = DefaultMaxTraces
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	s.mu.Lock()
	s.maxTraces, s.maxBytes = maxTraces, maxBytes
	s.evictLocked()
	s.mu.Unlock()
}

// traceKey is the store's key of a trace id: lowercase, 32 hex digits (a
// 64-bit id is left-padded), so 16- and 32-digit spellings of one trace
// meet.
func traceKey(id string) string {
	id = strings.ToLower(id)
	if len(id) < 32 {
		id = strings.Repeat("0", 32-len(id)) + id
	}
	return id
}

// Add stores spans, grouping them by trace, then evicts the oldest traces
// beyond the bounds. A span whose trace is already stored joins it; a span
// with the id, kind and service of one already stored replaces it.
func (s *Store) Add(spans ...Span) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range spans {
		sp := spans[i]
		if sp.TraceID == "" || sp.ID == "" {
			continue
		}
		key := traceKey(sp.TraceID)
		t := s.traces[key]
		if t == nil {
			t = &trace{key: key}
			t.elem = s.order.PushBack(t)
			s.traces[key] = t
		}
		n := sp.size()
		replaced := false
		for j := range t.spans {
			old := &t.spans[j]
			if old.ID == sp.ID && old.Kind == sp.Kind && old.localService() == sp.localService() {
				n -= old.size()
				*old = sp
				replaced = true
				break
			}
		}
		if !replaced {
			t.spans = append(t.spans, sp)
			s.spans++
		}
		t.bytes += n
		s.bytes += n
	}
	s.evictLocked()
}

func (s *Store) evictLocked() {
	for s.order.Len() > 0 && (len(s.traces) > s.maxTraces || s.bytes > s.maxBytes) {
		t := s.order.Remove(s.order.Front()).(*trace)
		delete(s.traces, t.key)
		s.bytes -= t.bytes
		s.evicted++
	}
}

// Stats are a store's counts.
type Stats struct {
	// Traces and Bytes are what the store holds now.
	Traces, Bytes int
	// Spans counts every span ever stored; Evicted every trace evicted to
	// stay within the bounds.
	Spans, Evicted uint64
}

// Stats returns the store's counts.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Traces: len(s.traces), Bytes: s.bytes, Spans: s.spans, Evicted: s.evicted}
}

// Trace returns a copy of the spans of one trace, nil when it is not
// stored.
func (s *Store) Trace(id string) []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.traces[traceKey(id)]
	if t == nil {
		return nil
	}
	return append([]Span(nil), t.spans...)
}

// each calls f with every stored trace, newest first, under the lock; f
// must not keep the slice.
func (s *Store) each(f func(spans []Span) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.order.Back(); e != nil; e = e.Prev() {
		if !f(e.Value.(*trace).spans) {
			return
		}
	}
}
