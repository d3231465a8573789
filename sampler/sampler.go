package sampler

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/http"

	"github.com/tracingproxy/tracingproxy/headers"
)

// Reason says why a decision was made. Reasons are precomputed strings, so
// returning one allocates nothing.
type Reason string

// The reasons the built-in samplers give.
const (
	ReasonParent      Reason = "parent"       // the caller's decision was followed
	ReasonRatio       Reason = "ratio"        // the trace-id ratio decided
	ReasonAlways      Reason = "always"       // the Always sampler
	ReasonNever       Reason = "never"        // the Never sampler
	ReasonRateLimited Reason = "rate_limited" // a rate cap refused the trace
	ReasonDebug       Reason = "debug"        // the caller asked for debug
	ReasonForced      Reason = "forced"       // a trusted force header
	ReasonError       Reason = "error"        // kept after the fact: it failed
	ReasonSlow        Reason = "slow"         // kept after the fact: it was slow
)

// Params is what a sampler may look at. The caller fills it once per request.
type Params struct {
	// TraceID is the trace's id (new or the caller's).
	TraceID headers.TraceID
	// Parent is the caller's propagated decision; SamplingUnset for a new
	// trace or when the caller's context is not trusted.
	Parent headers.Sampling
	// HasParent says the trace continues a caller's trace.
	HasParent bool
	// Request is the inbound request, for rule matching. It may be nil.
	Request *http.Request
}

// Decision is a sampler's verdict.
type Decision struct {
	Sample bool
	Reason Reason
}

// Sampler decides whether a trace is recorded.
type Sampler interface {
	// ShouldSample decides for one request. It must be safe for concurrent
	// use and should not allocate.
	ShouldSample(p *Params) Decision
	// Description names the sampler and its parameters, for logs and
	// explain output.
	Description() string
}

type always struct{}

// Always samples every trace.
func Always() Sampler { return always{} }

func (always) ShouldSample(*Params) Decision { return Decision{true, ReasonAlways} }
func (always) Description() string           { return "always" }

type never struct{}

// Never samples no trace.
func Never() Sampler { return never{} }

func (never) ShouldSample(*Params) Decision { return Decision{false, ReasonNever} }
func (never) Description() string           { return "never" }

type ratio struct {
	fraction  float64
	threshold uint64
}

// Ratio samples the given fraction of traces, deciding from the trace id so
// that every proxy of a fleet reaches the same verdict for one trace. The
// decision compares the lower 63 bits of the trace id's low half with
// fraction×2^63, as OpenTelemetry's TraceIDRatioBased does; those are the
// random bits of a W3C level-2 id and of a 64-bit B3 id alike. fraction is
// clamped to [0, 1].
func Ratio(fraction float64) Sampler {
	switch {
	case fraction >= 1:
		return ratio{fraction: 1, threshold: math.MaxUint64}
	case fraction <= 0 || math.IsNaN(fraction):
		return ratio{fraction: 0}
	}
	return ratio{fraction: fraction, threshold: uint64(fraction * (1 << 63))}
}

func (r ratio) ShouldSample(p *Params) Decision {
	x := binary.BigEndian.Uint64(p.TraceID[8:]) >> 1
	return Decision{Sample: r.threshold == math.MaxUint64 || x < r.threshold, Reason: ReasonRatio}
}

func (r ratio) Description() string { return fmt.Sprintf("ratio(%g)", r.fraction) }

type parentBased struct{ root Sampler }

// ParentBased follows the caller's accept, deny or debug decision and asks
// root for new traces and for callers that left the decision unset.
func ParentBased(root Sampler) Sampler { return parentBased{root: root} }

func (pb parentBased) ShouldSample(p *Params) Decision {
	switch p.Parent {
	case headers.SamplingDebug:
		return Decision{true, ReasonDebug}
	case headers.SamplingAccept:
		return Decision{true, ReasonParent}
	case headers.SamplingDeny:
		return Decision{false, ReasonParent}
	}
	return pb.root.ShouldSample(p)
}

func (pb parentBased) Description() string {
	return "parent_based(" + pb.root.Description() + ")"
}

// Default is the sampler used when none is configured: ParentBased(Ratio(1)).
func Default() Sampler { return ParentBased(Ratio(1)) }
