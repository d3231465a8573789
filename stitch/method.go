package stitch

import (
	"fmt"
	"strings"
)

// Method names one attribution method, or the outcome that none matched.
type Method uint8

// Attribution methods, and MethodNone for an egress call left unstitched.
const (
	MethodNone Method = iota
	MethodHeader
	MethodRequestID
	MethodProcess
	MethodSoleInflight
)

var methodNames = [...]string{"none", "header", "request_id", "process", "sole_inflight"}

// String is the method's name as it appears in the tracingproxy.stitch tag
// and in the tracingproxy_stitch_total{method} label.
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "none"
}

// DefaultMethods is the order tried when the configuration names none.
var DefaultMethods = []Method{MethodHeader, MethodRequestID, MethodProcess, MethodSoleInflight}

// AllowedMethods lists the names ParseMethods accepts, for error messages.
const AllowedMethods = "header, request_id, process, sole_inflight"

// ParseMethods reads an ordered method list (names separated by spaces or
// commas, or given as several arguments). An empty list means DefaultMethods;
// an unknown or repeated name is an error naming the allowed values.
func ParseMethods(args ...string) ([]Method, error) {
	var out []Method
	for _, a := range args {
		for _, name := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			m, ok := lookupMethod(name)
			if !ok {
				return nil, fmt.Errorf("stitch: unknown method %q (allowed: %s)", name, AllowedMethods)
			}
			for _, seen := range out {
				if seen == m {
					return nil, fmt.Errorf("stitch: method %q given twice", name)
				}
			}
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return append([]Method(nil), DefaultMethods...), nil
	}
	return out, nil
}

func lookupMethod(name string) (Method, bool) {
	for i := MethodHeader; int(i) < len(methodNames); i++ {
		if methodNames[i] == name {
			return i, true
		}
	}
	return MethodNone, false
}
