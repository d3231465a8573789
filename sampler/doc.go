// Package sampler makes the one sampling decision of a trace at the proxy:
// always, never, a trace-id ratio that every proxy of a fleet computes
// identically, or parent-based (follow the caller's accept, deny or debug
// flag and ask another sampler for new traces).
//
// Samplers are safe for concurrent use and decide without allocating. Every
// Decision carries the Reason it was made, recorded on spans as
// sampling.reason. The shape follows OpenTelemetry's sdk/trace/sampling.go.
package sampler
