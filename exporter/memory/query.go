package memory

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Query selects traces as Zipkin's GET /api/v2/traces does.
type Query struct {
	// ServiceName, RemoteServiceName and SpanName must match one span of
	// the trace (lowercase); empty matches any.
	ServiceName, RemoteServiceName, SpanName string
	// AnnotationQuery is Zipkin's: terms joined by " and "; a term "key"
	// matches an annotation value or a tag key, "key=value" a tag.
	AnnotationQuery string
	// MinDuration and MaxDuration bound the matching span's duration in
	// microseconds; zero means no bound.
	MinDuration, MaxDuration int64
	// EndTs (epoch milliseconds, default now) and Lookback (milliseconds,
	// default a day) bound the trace's start.
	EndTs, Lookback int64
	// Limit is the most traces returned, newest first; default 10.
	Limit int
}

// window returns the query's time window in epoch microseconds.
func window(endTs, lookback int64) (from, to int64) {
	if endTs <= 0 {
		endTs = time.Now().UnixMilli()
	}
	if lookback <= 0 {
		lookback = 24 * time.Hour.Milliseconds()
	}
	return (endTs - lookback) * 1000, endTs * 1000
}

// term is one parsed annotationQuery term.
type term struct {
	key, value string
	hasValue   bool
}

func parseAnnotationQuery(q string) []term {
	var terms []term
	for _, part := range strings.Split(q, " and ") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		terms = append(terms, term{key: k, value: v, hasValue: ok})
	}
	return terms
}

func (t term) matches(s *Span) bool {
	if t.hasValue {
		v, ok := s.Tags[t.key]
		return ok && v == t.value
	}
	if _, ok := s.Tags[t.key]; ok {
		return true
	}
	for _, a := range s.Annotations {
		if a.Value == t.key {
			return true
		}
	}
	return false
}

// traceStart is the earliest timestamp of a trace's spans, in microseconds.
func traceStart(spans []Span) int64 {
	var start int64
	for i := range spans {
		if ts := spans[i].Timestamp; ts > 0 && (start == 0 || ts < start) {
			start = ts
		}
	}
	return start
}

// spanMatches reports whether one span meets every condition of q.
func (q *Query) spanMatches(s *Span, terms []term) bool {
	if q.ServiceName != "" && s.localService() != q.ServiceName {
		return false
	}
	if q.RemoteServiceName != "" && s.remoteService() != q.RemoteServiceName {
		return false
	}
	if q.SpanName != "" && s.Name != q.SpanName {
		return false
	}
	if q.MinDuration > 0 && s.Duration < q.MinDuration {
		return false
	}
	if q.MaxDuration > 0 && s.Duration > q.MaxDuration {
		return false
	}
	for _, t := range terms {
		if !t.matches(s) {
			return false
		}
	}
	return true
}

// Validate checks the query as Zipkin does.
func (q *Query) Validate() error {
	switch {
	case q.MaxDuration > 0 && q.MinDuration == 0:
		return fmt.Errorf("minDuration is required when maxDuration is given")
	case q.MaxDuration > 0 && q.MaxDuration < q.MinDuration:
		return fmt.Errorf("maxDuration must be at least minDuration")
	case q.Limit < 0:
		return fmt.Errorf("limit must be positive, got %d", q.Limit)
	case q.Lookback < 0:
		return fmt.Errorf("lookback must be positive, got %d", q.Lookback)
	}
	return nil
}

// Traces returns copies of the traces q selects, newest first.
func (s *Store) Traces(q Query) [][]Span {
	limit := q.Limit
	if limit <= 0 {
		limit = 10
	}
	from, to := window(q.EndTs, q.Lookback)
	terms := parseAnnotationQuery(q.AnnotationQuery)
	var out [][]Span
	s.each(func(spans []Span) bool {
		if start := traceStart(spans); start < from || start > to {
			return true
		}
		for i := range spans {
			if q.spanMatches(&spans[i], terms) {
				out = append(out, append([]Span(nil), spans...))
				break
			}
		}
		return len(out) < limit
	})
	// Newest first by start, as Zipkin answers.
	slices.SortStableFunc(out, func(a, b []Span) int { return compareInt(traceStart(b), traceStart(a)) })
	return out
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Services returns the sorted local service names of every stored span.
func (s *Store) Services() []string {
	return s.names(func(sp *Span) string { return sp.localService() })
}

// SpanNames returns the sorted span names of one service.
func (s *Store) SpanNames(service string) []string {
	return s.names(func(sp *Span) string {
		if sp.localService() != service {
			return ""
		}
		return sp.Name
	})
}

// RemoteServices returns the sorted remote service names one service calls.
func (s *Store) RemoteServices(service string) []string {
	return s.names(func(sp *Span) string {
		if sp.localService() != service {
			return ""
		}
		return sp.remoteService()
	})
}

// names collects the distinct non-empty values of f over every span.
func (s *Store) names(f func(*Span) string) []string {
	seen := map[string]bool{}
	s.each(func(spans []Span) bool {
		for i := range spans {
			if n := f(&spans[i]); n != "" {
				seen[n] = true
			}
		}
		return true
	})
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// DependencyLink is one edge of Zipkin's dependency graph.
type DependencyLink struct {
	Parent     string `json:"parent"`
	Child      string `json:"child"`
	CallCount  int64  `json:"callCount"`
	ErrorCount int64  `json:"errorCount,omitempty"`
}

// Dependencies returns the service graph of the traces that started in the
// window ending at endTs (epoch ms) and lookback ms long. A span whose
// parent span, in the same trace, belongs to another service is one call
// from the parent's service to the span's; a CLIENT span with no child
// stored and a remote service name is one call to that service. A call is
// an error when the called span has the error tag.
func (s *Store) Dependencies(endTs, lookback int64) []DependencyLink {
	from, to := window(endTs, lookback)
	type edge struct{ parent, child string }
	counts := map[edge]*DependencyLink{}
	add := func(parent, child string, failed bool) {
		e := edge{parent, child}
		l := counts[e]
		if l == nil {
			l = &DependencyLink{Parent: parent, Child: child}
			counts[e] = l
		}
		l.CallCount++
		if failed {
			l.ErrorCount++
		}
	}
	s.each(func(spans []Span) bool {
		if start := traceStart(spans); start < from || start > to {
			return true
		}
		byID := make(map[string]*Span, len(spans))
		hasChild := make(map[string]bool, len(spans))
		for i := range spans {
			sp := &spans[i]
			if prev, ok := byID[sp.ID]; !ok || sp.Kind == "CLIENT" && prev.Kind != "CLIENT" {
				// A shared id (CLIENT and SERVER halves) is keyed by its
				// CLIENT half, the caller's.
				byID[sp.ID] = sp
			}
		}
		for i := range spans {
			sp := &spans[i]
			var parent *Span
			if sp.Shared || (sp.Kind == "SERVER" && byID[sp.ID] != sp) {
				parent = byID[sp.ID] // the CLIENT half of a shared span
			} else if sp.ParentID != "" {
				parent = byID[sp.ParentID]
			}
			if parent == nil || parent == sp {
				continue
			}
			hasChild[parent.ID] = true
			if ps, cs := parent.localService(), sp.localService(); ps != "" && cs != "" && ps != cs {
				_, failed := sp.Tags["error"]
				add(ps, cs, failed)
			}
		}
		for i := range spans {
			sp := &spans[i]
			if sp.Kind == "CLIENT" && !hasChild[sp.ID] {
				if ps, rs := sp.localService(), sp.remoteService(); ps != "" && rs != "" && ps != rs {
					_, failed := sp.Tags["error"]
					add(ps, rs, failed)
				}
			}
		}
		return true
	})
	out := make([]DependencyLink, 0, len(counts))
	for _, l := range counts {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b DependencyLink) int {
		if c := strings.Compare(a.Parent, b.Parent); c != 0 {
			return c
		}
		return strings.Compare(a.Child, b.Child)
	})
	return out
}
