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

// The reasons the built-in samplers give. A matching rule of Rules gives
// "rule:<n>" instead, n being the rule's 0-based index (see Rules).
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
	// trace or when the caller's context is not trusted. SamplingDebug makes
	// ParentBased sample with ReasonDebug, so an untrusted caller's debug
	// flag must not reach it.
	Parent headers.Sampling
	// HasParent says the trace continues a caller's trace.
	HasParent bool
	// Forced says a trusted client set the force-sampling header. ParentBased
	// checks it before anything else and samples with ReasonForced. The caller
	// sets it only for trusted clients.
	Forced bool
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

// ParentOverrider is implemented by root samplers that may overrule the
// caller's accept or deny flag for some requests: Rules with a rule marked
// OverrideParent, and RateLimited around such a sampler. ParentBased, in
// RespectParent mode, asks it before following the caller; ok false means
// the caller's flag stands.
type ParentOverrider interface {
	OverrideParent(p *Params) (d Decision, ok bool)
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
// decision compares the trace id's low 64 bits, shifted right by one, with
// fraction×2^63, exactly as OpenTelemetry's TraceIDRatioBased does; those
// bits are random in a W3C level-2 id and in a 64-bit B3 id alike, so a
// 64-bit id samples at the same rate. fraction is clamped to [0, 1]; NaN
// counts as 0. NewRatio validates instead.
func Ratio(fraction float64) Sampler {
	switch {
	case fraction >= 1:
		return ratio{fraction: 1, threshold: math.MaxUint64}
	case fraction <= 0 || math.IsNaN(fraction):
		return ratio{fraction: 0}
	}
	return ratio{fraction: fraction, threshold: uint64(fraction * (1 << 63))}
}

// NewRatio is Ratio for configuration: it reports a fraction outside
// [0, 1] (or NaN) as an error instead of clamping it.
func NewRatio(fraction float64) (Sampler, error) {
	if !(fraction >= 0 && fraction <= 1) {
		return nil, fmt.Errorf("ratio must be between 0 and 1, got %g", fraction)
	}
	return Ratio(fraction), nil
}

func (r ratio) ShouldSample(p *Params) Decision {
	x := binary.BigEndian.Uint64(p.TraceID[8:]) >> 1
	return Decision{Sample: r.threshold == math.MaxUint64 || x < r.threshold, Reason: ReasonRatio}
}

func (r ratio) Description() string { return fmt.Sprintf("ratio(%g)", r.fraction) }

// ParentMode says whether ParentBased follows the caller's accept or deny
// flag.
type ParentMode uint8

// The parent modes.
const (
	// RespectParent follows the caller's accept or deny flag and asks the
	// root sampler only when the caller left the decision unset. It is the
	// default.
	RespectParent ParentMode = iota
	// IgnoreParent asks the root sampler for every trace, whatever the
	// caller's accept or deny flag says. Forced and debug still sample.
	IgnoreParent
)

// ParseParentMode parses the configuration words "respect" and "ignore".
func ParseParentMode(s string) (ParentMode, error) {
	switch s {
	case "respect":
		return RespectParent, nil
	case "ignore":
		return IgnoreParent, nil
	}
	return RespectParent, fmt.Errorf(`parent must be "respect" or "ignore", got %q`, s)
}

// String returns "respect" or "ignore".
func (m ParentMode) String() string {
	if m == IgnoreParent {
		return "ignore"
	}
	return "respect"
}

// ParentOption configures ParentBased.
type ParentOption func(*parentBased)

// WithParentMode sets whether ParentBased respects (the default) or ignores
// the caller's accept or deny flag.
func WithParentMode(m ParentMode) ParentOption {
	return func(pb *parentBased) { pb.mode = m }
}

type parentBased struct {
	root     Sampler
	override ParentOverrider // root, when it can overrule the caller
	mode     ParentMode
}

// ParentBased decides from the caller's context and asks root for the rest.
// In order, the first that applies wins:
//
//  1. Params.Forced (a trusted force header): sample, ReasonForced.
//  2. The caller's debug flag: sample, ReasonDebug. Untrusted callers never
//     get here, because the caller of ShouldSample leaves Parent unset for
//     them.
//  3. In RespectParent mode (the default), the caller's accept or deny flag,
//     ReasonParent — unless root is a ParentOverrider that overrules it for
//     this request (a Rules rule marked OverrideParent), whose decision then
//     stands.
//  4. root, for new traces, callers that left the decision unset, and every
//     trace in IgnoreParent mode.
func ParentBased(root Sampler, opts ...ParentOption) Sampler {
	pb := &parentBased{root: root}
	pb.override, _ = root.(ParentOverrider)
	for _, o := range opts {
		o(pb)
	}
	return pb
}

func (pb *parentBased) ShouldSample(p *Params) Decision {
	if p.Forced {
		return Decision{true, ReasonForced}
	}
	switch p.Parent {
	case headers.SamplingDebug:
		return Decision{true, ReasonDebug}
	case headers.SamplingAccept, headers.SamplingDeny:
		if pb.mode == IgnoreParent {
			break
		}
		if pb.override != nil {
			if d, ok := pb.override.OverrideParent(p); ok {
				return d
			}
		}
		return Decision{p.Parent == headers.SamplingAccept, ReasonParent}
	}
	return pb.root.ShouldSample(p)
}

func (pb *parentBased) Description() string {
	if pb.mode == IgnoreParent {
		return "parent_based(" + pb.root.Description() + ", parent=ignore)"
	}
	return "parent_based(" + pb.root.Description() + ")"
}

// Default is the sampler used when none is configured: ParentBased(Ratio(1)).
func Default() Sampler { return ParentBased(Ratio(1)) }
