package caddymodule

import (
	"fmt"
	"strings"
)

// routeOf is the low-cardinality route of a request path: each segment that
// looks like an id (a number, a UUID, a long hex string, a base64-ish token)
// becomes {id}, so /orders/1234/items and /orders/1235/items name one
// endpoint. A path with no such segment is returned as is, without
// allocating.
func routeOf(path string) string {
	// Most paths fit the stack buffer: the route then costs one
	// allocation, its string.
	var buf [128]byte
	b, collapsed := appendRoute(buf[:0], path)
	if !collapsed {
		return path
	}
	return string(b)
}

// appendRoute appends routeOf(path) to dst and reports whether a segment
// was collapsed (else it appended path as is).
func appendRoute(dst []byte, path string) ([]byte, bool) {
	collapsed := false
	last := 0 // path[last:] is not yet appended
	for i := 0; i < len(path); {
		if path[i] == '/' {
			i++
			continue
		}
		j := i
		for j < len(path) && path[j] != '/' {
			j++
		}
		if idLike(path[i:j]) {
			dst = append(dst, path[last:i]...)
			dst = append(dst, "{id}"...)
			last, collapsed = j, true
		}
		i = j
	}
	return append(dst, path[last:]...), collapsed
}

// idLike reports whether a path segment is an id rather than a name: all
// digits; a UUID; 16 or more hex digits, at least one a digit; or a token of 16 or more base64url
// characters that mixes digits with letters.
func idLike(s string) bool {
	if s == "" {
		return false
	}
	digits, hex, letters, other := 0, 0, 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
		case c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z':
			letters++
		case c == '-' || c == '_' || c == '=' || c == '+' || c == '~':
			other++
		default:
			return false
		}
	}
	switch {
	case digits == len(s):
		return true
	case isUUID(s):
		return true
	case digits+hex == len(s) && len(s) >= 16 && digits > 0:
		return true
	}
	return len(s) >= 16 && digits > 0 && hex+letters > 0 && !strings.Contains(s, "--")
}

// isUUID reports whether s is 8-4-4-4-12 hex digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// routePattern is a compiled route option: a path whose segments are
// literal names, {name} (any one segment) or, last, * (the rest of the
// path, possibly nothing).
type routePattern struct {
	route string   // the pattern as configured: the route it names
	segs  []string // its segments; anySegment for {name}, "*" for the rest
}

// anySegment stands for a {name} segment; no literal segment has braces.
const anySegment = "{}"

// compileRoute parses one route pattern.
func compileRoute(p string) (routePattern, error) {
	if !strings.HasPrefix(p, "/") {
		return routePattern{}, fmt.Errorf("route: pattern must start with /, got %q", p)
	}
	rp := routePattern{route: p}
	for i, seg := range strings.Split(p[1:], "/") {
		switch {
		case seg == "*":
			if i != strings.Count(p, "/")-1 {
				return routePattern{}, fmt.Errorf("route: * must be the last segment, got %q", p)
			}
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && len(seg) > 2 && !strings.ContainsAny(seg[1:len(seg)-1], "{}*"):
			seg = anySegment
		case strings.ContainsAny(seg, "{}*"):
			return routePattern{}, fmt.Errorf("route: segment %q of %q is neither a name, {name} nor a final *", seg, p)
		}
		rp.segs = append(rp.segs, seg)
	}
	return rp, nil
}

// match reports whether path is on the route, segment by segment, without
// allocating.
func (rp *routePattern) match(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	rest := path[1:]
	for i, seg := range rp.segs {
		if seg == "*" {
			return true
		}
		part, after, more := strings.Cut(rest, "/")
		switch {
		case seg == anySegment && part == "":
			return false // {name} needs a segment
		case seg != anySegment && part != seg:
			return false
		}
		if i == len(rp.segs)-1 {
			return !more
		}
		if !more {
			// The path ends; only a final * may match nothing.
			return i+1 == len(rp.segs)-1 && rp.segs[i+1] == "*"
		}
		rest = after
	}
	return true
}

// routeOf is the route of the request t traces, worked out once.
func (h *Handler) routeOf(t *hop) string {
	if !t.routed {
		t.route, t.routed = h.route(t.path), true
	}
	return t.route
}

// route is the route a request path is named after: the first route
// pattern it matches, else the path with its ids collapsed.
func (h *Handler) route(path string) string {
	if route, ok := h.patternRoute(path); ok {
		return route
	}
	return routeOf(path)
}

// patternRoute is the first route pattern path matches.
func (h *Handler) patternRoute(path string) (string, bool) {
	for i := range h.routes {
		if h.routes[i].match(path) {
			return h.routes[i].route, true
		}
	}
	return "", false
}
