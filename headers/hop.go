package headers

// The rules of one hop: what a proxy that reads a caller's context sends on
// to its upstream. A hop continues the caller's trace or starts one, decides
// the sampling it propagates, and, under the preserve option, writes back
// the formats the caller used.

// Continue returns the context a hop sends on after reading in: the caller's
// trace (its id and width, the W3C random flag and tracestate, the X-Ray and
// Datadog fields) when in names one, else a new trace with a random id.
// Baggage and the request id travel on either way. It reports whether the
// caller's trace is continued; a trace id without a span id (an AWS load
// balancer's X-Ray Root) is continued too, the hop's span then being the
// trace's root. Span ids and sampling are the hop's to set.
func Continue(in *Result) (out SpanContext, continuing bool) {
	out.Baggage, out.RequestID = in.Baggage, in.RequestID
	if in.Format == FormatNone || !in.TraceID.IsValid() {
		out.TraceID, out.Random = NewTraceID(), true
		return out, false
	}
	out.TraceID = in.TraceID
	out.TraceID64 = in.TraceID64
	out.Random = in.Random
	out.TraceState = in.TraceState
	out.XRayExtra = in.XRayExtra
	out.DatadogOrigin, out.DatadogTags = in.DatadogOrigin, in.DatadogTags
	return out, true
}

// PropagatedSampling is the sampling state a hop sends on for its own
// decision: debug stays debug when the hop samples a debug parent, else
// accept or deny.
func PropagatedSampling(sample bool, parent Sampling) Sampling {
	switch {
	case sample && parent == SamplingDebug:
		return SamplingDebug
	case sample:
		return SamplingAccept
	default:
		return SamplingDeny
	}
}

// NewSegmentID returns a fresh SkyWalking segment id: 32 random hex digits.
func NewSegmentID() string { return NewTraceID().String() }

// contextFormats are the formats that carry a trace context, as opposed to
// baggage and the request id, which only travel beside one.
var contextFormats = ^FormatSet(0).Add(FormatBaggage).Add(FormatRequestID)

// PreservedFormats is the set of formats a hop writes under the preserve
// option: those the request carried validly, B3 in the encoding it came in
// (single when the request had a b3 header, else multi), a sw6 caller
// answered with sw8 (current agents and OAP speak only v3; sw6 is written
// only when asked for), and fallback when no format carried a context.
func PreservedFormats(in *Result, singleB3 bool, fallback FormatSet) FormatSet {
	set := in.Present &^ in.Malformed
	if set.Has(FormatB3) || set.Has(FormatB3Single) {
		set &^= FormatSet(0).Add(FormatB3).Add(FormatB3Single)
		if singleB3 {
			set = set.Add(FormatB3Single)
		} else {
			set = set.Add(FormatB3)
		}
	}
	if set.Has(FormatSW6) {
		set = set.Add(FormatSW8) &^ FormatSet(0).Add(FormatSW6)
	}
	if set&contextFormats == 0 {
		set |= fallback
	}
	return set
}
