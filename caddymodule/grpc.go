package caddymodule

import (
	"net/http"
	"net/url"
)

// grpcCodeNames are the canonical names of the gRPC status codes, the
// error.type of a failed call.
var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// grpcResult is the gRPC status a response ended with.
type grpcResult struct {
	code string // the decimal grpc-status; empty when the response had none
	name string // its canonical name, or the code when it is not a known one
	msg  string // grpc-message, decoded
}

// failed reports whether the call ended with a non-zero status.
func (g *grpcResult) failed() bool { return g.code != "" && g.code != "0" }

// grpcStatus reads grpc-status and grpc-message from a response's headers:
// in the headers of a trailers-only response, or where reverse_proxy copies
// the trailers once the body is done (the header map, under the trailer
// prefix when they were not announced). A grpc-status that is not a small
// number is ignored.
func grpcStatus(h http.Header) grpcResult {
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		if v := h[http.TrailerPrefix+k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	code := get("Grpc-Status")
	n := 0
	if code == "" || len(code) > 3 {
		return grpcResult{}
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if c < '0' || c > '9' {
			return grpcResult{}
		}
		n = n*10 + int(c-'0')
	}
	g := grpcResult{code: code, name: code}
	if n < len(grpcCodeNames) {
		g.name = grpcCodeNames[n]
	}
	if g.failed() {
		msg := get("Grpc-Message")
		if m, err := url.PathUnescape(msg); err == nil {
			msg = m
		}
		g.msg = msg
	}
	return g
}

// errorText describes a failed call.
func (g *grpcResult) errorText() string {
	if g.msg == "" {
		return "grpc-status " + g.code + " " + g.name
	}
	return "grpc-status " + g.code + " " + g.name + ": " + g.msg
}
