package exporter

import (
	"time"

	"github.com/tracingproxy/tracingproxy/headers"
)

// Kind is the role of a span in the hop.
type Kind uint8

// Span kinds.
const (
	KindServer Kind = iota // the hop into the proxy
	KindClient             // one call from the proxy to its upstream
	KindLocal              // work of the proxy itself, such as relaying an upgraded connection
)

// String returns the Zipkin name of the kind: SERVER, CLIENT, or "" for a
// local span, which Zipkin writes without a kind.
func (k Kind) String() string {
	switch k {
	case KindClient:
		return "CLIENT"
	case KindLocal:
		return ""
	}
	return "SERVER"
}

// Tag is one span tag.
type Tag struct {
	Key, Value string
}

// Span is one timed operation of a Record.
type Span struct {
	// Kind is KindServer for the hop into the proxy, KindClient for an
	// upstream call, KindLocal for the proxy's own work (a relayed
	// WebSocket session).
	Kind Kind
	// ID is the span's id; ParentID is zero for a root span.
	ID, ParentID headers.SpanID
	// Name is the operation name, e.g. "get /orders".
	Name string
	// Start and Duration time the span.
	Start    time.Time
	Duration time.Duration
	// Status is the HTTP status code, 0 when there was no response.
	Status int
	// Error describes a failure; empty when the span succeeded.
	Error string
	// Peer is the remote side as host:port: the client's address for the
	// SERVER span, the upstream's for a CLIENT span. It may be empty.
	Peer string
	// Tags are extra span tags.
	Tags []Tag
	// Annotations are timed events within the span, in time order (the
	// Annotation* values): Zipkin annotations, SkyWalking logs, OTLP
	// events.
	Annotations []Annotation
	// SegmentSpanID is the span's id in the SkyWalking segment when it is
	// not its position there: an egress call of the service, whose Exit
	// span id was written into its sw8 when the call started. 0: by
	// position.
	SegmentSpanID int32
}

// Annotation is an event at a moment of a span, such as a connection
// being set up.
type Annotation struct {
	Time  time.Time
	Value string
}

// W3C trace flags of a Record.
const (
	FlagSampled = 0x01 // the trace was sampled when it was propagated
	FlagRandom  = 0x02 // the trace id is random (W3C level 2)
)

// Record is everything the proxy learned about one sampled request: a SERVER
// span and one CLIENT span per upstream attempt. It is the one type that
// crosses from the Caddy module into the exporters, and it is read-only once
// enqueued.
type Record struct {
	// Service and Instance name the proxy in the tracing backend.
	Service  string
	Instance string
	// TraceID is the trace's 128-bit id; TraceID64 says it is a 64-bit id
	// that Zipkin should write 16 hex digits wide.
	TraceID   headers.TraceID
	TraceID64 bool
	// Debug marks a trace the caller forced (B3 debug).
	Debug bool
	// Flags are the W3C trace flags the proxy propagated: FlagSampled,
	// and FlagRandom for a random trace id.
	Flags byte
	// TraceState is the W3C tracestate the trace carried, as propagated.
	TraceState string
	// Scheme is the scheme of the request into the proxy: http or https.
	Scheme string
	// Server is the SERVER span. In the record of an egress call that
	// joined no in-flight inbound request it is that call's CLIENT span
	// (Kind says which), the record's only span; its ParentID is then
	// the span it continues, zero for a new trace.
	Server Span
	// Clients are the CLIENT spans, one per upstream attempt, then any
	// local span (KindLocal) of the proxy's own, children of the SERVER
	// span too.
	Clients []Span
	// SegmentID is the SkyWalking segment id of this hop.
	SegmentID string
	// SWTraceID is the SkyWalking trace id string of a trace that came from
	// SkyWalking, kept verbatim; empty otherwise, and exporters then use
	// the 32-hex TraceID.
	SWTraceID string
	// Parent is the caller's SkyWalking context when it sent sw8 or sw6;
	// Parent.SegmentID is empty otherwise.
	Parent headers.SkyWalking
	// SamplingReason says why the record was kept.
	SamplingReason string
}

// Size estimates the memory a record holds, in bytes, for byte-bounded
// queues.
func (r *Record) Size() int {
	n := 256 + len(r.Service) + len(r.Instance) + len(r.SegmentID) + len(r.SWTraceID) +
		len(r.Parent.TraceID) + len(r.Parent.SegmentID) + len(r.Parent.Service) +
		len(r.Parent.Instance) + len(r.Parent.Endpoint) + len(r.Parent.Address) +
		len(r.SamplingReason) + len(r.TraceState) + spanSize(&r.Server)
	for i := range r.Clients {
		n += spanSize(&r.Clients[i])
	}
	return n
}

func spanSize(s *Span) int {
	n := 128 + len(s.Name) + len(s.Error) + len(s.Peer)
	for _, t := range s.Tags {
		n += 32 + len(t.Key) + len(t.Value)
	}
	for _, a := range s.Annotations {
		n += 40 + len(a.Value)
	}
	return n
}

// SpanCount is the number of spans in the record.
func (r *Record) SpanCount() int { return 1 + len(r.Clients) }
