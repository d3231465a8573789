package sampler

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Clock returns a monotonic time in nanoseconds. Only differences between
// its readings matter; it must never go backwards.
type Clock func() int64

// monoStart anchors the default clock: time.Since reads the monotonic clock.
var monoStart = time.Now()

func monotonic() int64 { return int64(time.Since(monoStart)) }

// RateOption configures RateLimited and NewRateLimited.
type RateOption func(*rateConfig)

type rateConfig struct {
	burst    int
	burstSet bool
	clock    Clock
}

// WithBurst sets how many traces may be sampled back to back after a quiet
// period. Default: max(1, ⌊perSecond⌋).
func WithBurst(n int) RateOption {
	return func(c *rateConfig) { c.burst, c.burstSet = n, true }
}

// WithClock replaces the monotonic clock, for tests. Default (and for nil):
// the monotonic reading of time.Now.
func WithClock(c Clock) RateOption {
	return func(rc *rateConfig) { rc.clock = c }
}

// Bounds that keep the GCRA arithmetic clear of int64 overflow for any
// clock reading below 2^62 ns (about 146 years).
const (
	maxInterval  = int64(1) << 60 // about 36 years between traces
	maxTolerance = int64(1) << 61
	maxBurst     = 1 << 30
)

type rateLimited struct {
	inner     Sampler
	override  ParentOverrider // inner, when it can overrule the caller
	perSecond float64
	burst     int
	interval  int64 // ns between admissions at the steady rate; 0: unlimited
	tolerance int64 // how far the theoretical arrival time may run ahead of now
	deny      bool  // perSecond was not positive: admit nothing
	clock     Clock

	_   [64]byte     // keep tat on a cache line of its own
	tat atomic.Int64 // GCRA theoretical arrival time of the next admission
	_   [56]byte
}

// RateLimited caps how many traces inner samples per second. When inner
// says yes and the cap is reached, the decision is Decision{false,
// ReasonRateLimited}; otherwise inner's decision (and its reason) stands.
// Refusals by inner cost nothing. Placed as ParentBased's root, it caps new
// sampled roots, while callers' accepted traces pass uncounted.
//
// The limiter is a GCRA (generic cell rate algorithm), the exact form of a
// token bucket: one atomic int64 holds the theoretical arrival time (TAT) of
// the next admission; admitting advances it by 1/perSecond, and a trace is
// admitted while TAT - now stays within (burst-1)/perSecond. So at most burst
// traces pass back to back, and perSecond per second in the long run.
// Concurrent callers update it with compare-and-swap, without locks. The
// interval is rounded to the nanosecond: rates above 1e9 per second are
// unlimited.
//
// RateLimited clamps its arguments: perSecond ≤ 0 or NaN admits nothing and a
// burst below 1 counts as 1. NewRateLimited validates them instead. inner
// must not be nil.
func RateLimited(inner Sampler, perSecond float64, opts ...RateOption) Sampler {
	if inner == nil {
		panic("sampler: RateLimited needs an inner sampler")
	}
	var c rateConfig
	for _, o := range opts {
		o(&c)
	}
	if c.clock == nil {
		c.clock = monotonic
	}
	if !c.burstSet {
		c.burst = 1
		if perSecond > 1 {
			c.burst = int(min(math.Floor(perSecond), maxBurst))
		}
	}
	c.burst = max(1, min(c.burst, maxBurst))
	l := &rateLimited{inner: inner, perSecond: perSecond, burst: c.burst, clock: c.clock}
	l.override, _ = inner.(ParentOverrider)
	l.tat.Store(math.MinInt64)
	switch {
	case !(perSecond > 0):
		l.deny = true
	default:
		l.interval = int64(min(math.Round(1e9/perSecond), float64(maxInterval)))
		if l.interval > 0 && int64(l.burst-1) > maxTolerance/l.interval {
			l.tolerance = maxTolerance
		} else {
			l.tolerance = int64(l.burst-1) * l.interval
		}
	}
	return l
}

// NewRateLimited is RateLimited for configuration: it reports a missing
// inner sampler, a rate that is not positive and finite, or a burst below 1
// as an error naming the option (max_per_second, burst).
func NewRateLimited(inner Sampler, perSecond float64, opts ...RateOption) (Sampler, error) {
	if inner == nil {
		return nil, errors.New("max_per_second: no sampler to limit")
	}
	if !(perSecond > 0) {
		return nil, fmt.Errorf("max_per_second must be positive, got %g", perSecond)
	}
	if math.IsInf(perSecond, 1) {
		return nil, fmt.Errorf("max_per_second must be finite, got %g", perSecond)
	}
	var c rateConfig
	for _, o := range opts {
		o(&c)
	}
	if c.burstSet && c.burst < 1 {
		return nil, fmt.Errorf("burst must be at least 1, got %d", c.burst)
	}
	return RateLimited(inner, perSecond, opts...), nil
}

func (l *rateLimited) ShouldSample(p *Params) Decision {
	d := l.inner.ShouldSample(p)
	if !d.Sample {
		return d
	}
	return l.admit(d)
}

// OverrideParent passes an overruling decision of inner through the same
// limit, so a rule marked OverrideParent cannot exceed the cap.
func (l *rateLimited) OverrideParent(p *Params) (Decision, bool) {
	if l.override == nil {
		return Decision{}, false
	}
	d, ok := l.override.OverrideParent(p)
	if !ok || !d.Sample {
		return d, ok
	}
	return l.admit(d), true
}

// admit returns d if the limit has room for one more trace, and a
// rate-limited refusal otherwise.
func (l *rateLimited) admit(d Decision) Decision {
	if l.allow() {
		return d
	}
	return Decision{false, ReasonRateLimited}
}

// allow is the GCRA step: admit when the theoretical arrival time is at most
// tolerance ahead of now, and push it one interval further.
func (l *rateLimited) allow() bool {
	switch {
	case l.deny:
		return false
	case l.interval == 0:
		return true
	}
	now := l.clock()
	for {
		old := l.tat.Load()
		tat := max(old, now)
		if tat-now > l.tolerance {
			return false
		}
		if l.tat.CompareAndSwap(old, tat+l.interval) {
			return true
		}
	}
}

func (l *rateLimited) Description() string {
	return fmt.Sprintf("rate_limited(%s, %g/s, burst %d)", l.inner.Description(), l.perSecond, l.burst)
}
