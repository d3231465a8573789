// Package stitch attributes a legacy service's outbound calls to the inbound
// request that caused them, for services that forward no trace header.
//
// A Registry holds the service's in-flight ingress requests and a bounded
// request-id map; Attribute tries the configured methods in order (header,
// request_id, process, sole_inflight) and, when none matches, answers
// MethodNone with the candidate ingress span ids instead of a guess. The
// package imports no Caddy code so it can be tested and benchmarked alone.
package stitch
