// Package sampler makes the one sampling decision of a trace at the proxy:
// always, never, a trace-id ratio that every proxy of a fleet computes
// identically, parent-based (follow the caller's accept, deny or debug flag,
// or a trusted force header, and ask another sampler for new traces), a
// rate cap (a lock-free GCRA token bucket), and ordered rules matching
// method, host, path glob and header values.
//
// A typical configuration composes them as
//
//	ParentBased(RateLimited(Rules(Ratio(0.1), rules...), 100))
//
// Samplers are safe for concurrent use and decide without allocating. Every
// Decision carries the Reason it was made, recorded on spans as
// sampling.reason. Constructors named New* validate configuration and return
// errors that name the option. The shape follows OpenTelemetry's
// sdk/trace/sampling.go.
package sampler
