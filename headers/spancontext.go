package headers

// Sampling is the sampling state a caller propagates.
type Sampling uint8

// Sampling states, as B3 names them. W3C knows only Accept and Deny; B3 and
// Jaeger add Debug; an absent flag is Unset (the receiver decides).
const (
	SamplingUnset Sampling = iota
	SamplingAccept
	SamplingDeny
	SamplingDebug
)

// String returns the state's name: unset, accept, deny or debug.
func (s Sampling) String() string {
	switch s {
	case SamplingAccept:
		return "accept"
	case SamplingDeny:
		return "deny"
	case SamplingDebug:
		return "debug"
	default:
		return "unset"
	}
}

// Sampled reports whether the state asks for the trace to be recorded.
func (s Sampling) Sampled() bool { return s == SamplingAccept || s == SamplingDebug }

// SpanContext is the trace context propagated across one hop.
//
// On extraction it describes the caller: SpanID is the caller's span (our
// parent) and ParentID is the caller's own parent when the format carries it
// (B3). On injection it describes the span the upstream must continue: SpanID
// is our CLIENT span.
type SpanContext struct {
	// TraceID identifies the trace. It may be zero only for a
	// sampling-only context (b3: 0), see HasIDs.
	TraceID TraceID
	// SpanID is the span the next hop will name as its parent.
	SpanID SpanID
	// ParentID is the parent of SpanID, when known (B3 X-B3-ParentSpanId).
	ParentID SpanID
	// Sampling is the propagated sampling decision.
	Sampling Sampling
	// TraceID64 records that the trace id arrived 64 bits wide, so B3 and
	// Jaeger re-emit it 16 hex digits wide.
	TraceID64 bool
	// Random is the W3C level-2 random-trace-id flag (0x02).
	Random bool
	// TraceState is the validated W3C tracestate, members joined by ",".
	TraceState string
	// SW carries the SkyWalking fields (sw8/sw6): on extraction the caller's
	// segment, on injection ours.
	SW SkyWalking
	// Baggage is the propagated baggage as a W3C baggage-string: valid
	// list-members separated by "," (OWS around members and around "=" and
	// ";" may remain), at most 64 members and 8192 bytes, values
	// percent-encoded. The W3C baggage header, Jaeger's uberctx-* and
	// OpenTracing's ot-baggage-* headers all read into it and are written
	// from it.
	Baggage string
	// RequestID is the request id (X-Request-ID or a configured header)
	// passed through or generated. It is never a trace id.
	RequestID string
	// XRayExtra holds the keys of an X-Amzn-Trace-Id header other than
	// Root, Parent and Sampled (Self=..., Lineage=..., custom keys), joined
	// by ";" in their order, re-emitted after them.
	XRayExtra string
	// DatadogOrigin is x-datadog-origin (synthetics, rum, ...), re-emitted
	// unchanged.
	DatadogOrigin string
	// DatadogTags is the validated x-datadog-tags list (comma-separated
	// k=v). It may hold _dd.p.tid; on injection that tag is rewritten from
	// the upper half of TraceID.
	DatadogTags string
}

// SkyWalking holds the fields of a SkyWalking cross-process header. Trace ids
// in SkyWalking are free strings; TraceID keeps the caller's string verbatim so
// it is re-emitted unchanged.
type SkyWalking struct {
	// TraceID is the SkyWalking trace id string, empty when the context did
	// not come from (or is not going to) SkyWalking.
	TraceID string
	// SegmentID is the parent (inbound) or current (outbound) segment id.
	SegmentID string
	// SpanID is the span id within that segment: the caller's Exit span on
	// extraction, our Exit span on injection.
	SpanID int32
	// Service, Instance and Endpoint name the parent (inbound) or this proxy
	// (outbound).
	Service  string
	Instance string
	Endpoint string
	// Address is the network address the caller used to reach its peer.
	Address string
}

// HasIDs reports whether the context carries a trace and span id, and so can
// be continued. A sampling-only context (b3: 0) has none.
func (sc *SpanContext) HasIDs() bool { return sc.TraceID.IsValid() && sc.SpanID.IsValid() }
