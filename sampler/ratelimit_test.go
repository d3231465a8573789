package sampler

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/tracingproxy/tracingproxy/headers"
)

// manualClock is a Clock the test moves by hand; it starts at zero.
type manualClock struct{ ns atomic.Int64 }

func (c *manualClock) now() int64              { return c.ns.Load() }
func (c *manualClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *manualClock) set(d time.Duration)     { c.ns.Store(int64(d)) }
func (c *manualClock) elapsed() time.Duration  { return time.Duration(c.ns.Load()) }
func (c *manualClock) option() RateOption      { return WithClock(c.now) }

// admitted asks s once and returns 1 if it sampled, with its decision.
func admitted(s Sampler, p *Params) (n int, d Decision) {
	d = s.ShouldSample(p)
	if d.Sample {
		n = 1
	}
	return n, d
}

func TestRateLimitedSteadyRate(t *testing.T) {
	tests := []struct {
		name      string
		perSecond float64
		burst     int // 0: default
		step      time.Duration
		seconds   int
	}{
		{"10/s, default burst, calls every 1ms", 10, 0, time.Millisecond, 100},
		{"10/s, burst 1", 10, 1, time.Millisecond, 100},
		{"250/s, burst 50, calls every 100µs", 250, 50, 100 * time.Microsecond, 20},
		{"0.5/s, calls every 10ms", 0.5, 0, 10 * time.Millisecond, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var clock manualClock
			opts := []RateOption{clock.option()}
			if tt.burst > 0 {
				opts = append(opts, WithBurst(tt.burst))
			}
			s := RateLimited(Always(), tt.perSecond, opts...)
			burst := s.(*rateLimited).burst
			perSecond := make([]int, tt.seconds)
			total := 0
			for clock.elapsed() < time.Duration(tt.seconds)*time.Second {
				n, d := admitted(s, &Params{})
				if n == 0 && d.Reason != ReasonRateLimited {
					t.Fatalf("refusal reason = %q, want %q", d.Reason, ReasonRateLimited)
				}
				if n == 1 && d.Reason != ReasonAlways {
					t.Fatalf("admission reason = %q, want the inner %q", d.Reason, ReasonAlways)
				}
				perSecond[clock.elapsed()/time.Second] += n
				total += n
				clock.advance(tt.step)
			}
			want := tt.perSecond * float64(tt.seconds)
			if math.Abs(float64(total)-want) > float64(burst) {
				t.Errorf("admitted %d in %d simulated seconds, want %g ± burst %d", total, tt.seconds, want, burst)
			}
			// After the first second (which also spends the burst), each
			// simulated second admits exactly the rate.
			if tt.perSecond >= 1 {
				for sec := 1; sec < tt.seconds; sec++ {
					if perSecond[sec] != int(tt.perSecond) {
						t.Fatalf("second %d admitted %d, want exactly %g", sec, perSecond[sec], tt.perSecond)
					}
				}
			}
		})
	}
}

func TestRateLimitedBurst(t *testing.T) {
	tests := []struct {
		name      string
		perSecond float64
		opts      []RateOption
		want      int
	}{
		{"default burst is the rate", 10, nil, 10},
		{"default burst rounds the rate down", 2.9, nil, 2},
		{"default burst is at least one", 0.01, nil, 1},
		{"configured burst", 10, []RateOption{WithBurst(3)}, 3},
		{"burst above the rate", 1, []RateOption{WithBurst(25)}, 25},
		{"burst below one clamps to one", 10, []RateOption{WithBurst(0)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var clock manualClock
			clock.set(time.Hour)
			s := RateLimited(Always(), tt.perSecond, append(tt.opts, clock.option())...)
			count := func() int {
				total := 0
				for range 10 * tt.want {
					n, _ := admitted(s, &Params{})
					total += n
				}
				return total
			}
			if got := count(); got != tt.want {
				t.Fatalf("frozen clock admitted %d, want burst %d", got, tt.want)
			}
			// A long idle period refills to the burst, never beyond.
			clock.advance(24 * time.Hour)
			if got := count(); got != tt.want {
				t.Fatalf("after a day idle admitted %d, want burst %d", got, tt.want)
			}
			// One interval later there is room for exactly one more.
			clock.advance(time.Duration(float64(time.Second) / tt.perSecond))
			if got := count(); got != 1 {
				t.Fatalf("one interval later admitted %d, want 1", got)
			}
		})
	}
}

func TestRateLimitedConcurrent(t *testing.T) {
	const (
		goroutines = 8
		calls      = 250_000
		burst      = 1_000_000 // half the calls: admissions race all along
	)
	var clock manualClock
	clock.set(time.Minute)
	s := RateLimited(Always(), 10, WithBurst(burst), clock.option())
	var total atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range goroutines {
		wg.Go(func() {
			<-start
			for range calls {
				if s.ShouldSample(&Params{}).Sample {
					total.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := total.Load(); got != burst {
		t.Errorf("%d goroutines at a frozen clock admitted %d, want exactly burst %d", goroutines, got, burst)
	}
}

// TestRateLimitedMatchesTokenBucket compares decision by decision with
// golang.org/x/time/rate, a token bucket that starts full: GCRA is the same
// algorithm, so with intervals that are whole nanoseconds they must agree.
func TestRateLimitedMatchesTokenBucket(t *testing.T) {
	tests := []struct {
		perSecond float64
		burst     int
		meanGap   time.Duration
	}{
		{10, 10, 50 * time.Millisecond},
		{10, 1, 150 * time.Millisecond},
		{1000, 20, time.Millisecond},
		{0.5, 3, time.Second},
	}
	for _, tt := range tests {
		var clock manualClock
		s := RateLimited(Always(), tt.perSecond, WithBurst(tt.burst), clock.option())
		ref := rate.NewLimiter(rate.Limit(tt.perSecond), tt.burst)
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		rng := rand.New(rand.NewPCG(3, 4))
		agreed := 0
		for i := range 20_000 {
			clock.advance(time.Duration(rng.Int64N(2 * int64(tt.meanGap))))
			got := s.ShouldSample(&Params{}).Sample
			want := ref.AllowN(base.Add(clock.elapsed()), 1)
			if got != want {
				t.Fatalf("rate %g burst %d: call %d at %v: GCRA %v, token bucket %v", tt.perSecond, tt.burst, i, clock.elapsed(), got, want)
			}
			if got {
				agreed++
			}
		}
		if agreed == 0 || agreed == 20_000 {
			t.Fatalf("rate %g: %d of 20000 admitted: the comparison tested nothing", tt.perSecond, agreed)
		}
	}
}

func TestRateLimitedInnerRefusalIsFree(t *testing.T) {
	var clock manualClock
	inner := Ratio(0.5)
	yes := Params{TraceID: lowID(0)}
	no := Params{TraceID: lowID(math.MaxUint64)}
	s := RateLimited(inner, 1, clock.option())
	for range 100 {
		if d := s.ShouldSample(&no); d != (Decision{false, ReasonRatio}) {
			t.Fatalf("inner refusal = %+v, want the inner's own decision", d)
		}
	}
	if d := s.ShouldSample(&yes); d != (Decision{true, ReasonRatio}) {
		t.Fatalf("first accepted trace = %+v, want admitted with the inner reason", d)
	}
	if d := s.ShouldSample(&yes); d != (Decision{false, ReasonRateLimited}) {
		t.Fatalf("second accepted trace = %+v, want rate limited", d)
	}
}

func TestRateLimitedOverride(t *testing.T) {
	var clock manualClock
	rule := mustRule(t, RuleSpec{Path: "/checkout", Sample: "always", OverrideParent: true})
	s := ParentBased(RateLimited(Rules(Never(), rule), 1, clock.option()))
	p := Params{Parent: headers.SamplingDeny, Request: newRequest("GET", "http://shop.test/checkout")}
	if d := s.ShouldSample(&p); d != (Decision{true, "rule:0"}) {
		t.Fatalf("first override = %+v, want sampled by rule:0", d)
	}
	if d := s.ShouldSample(&p); d != (Decision{false, ReasonRateLimited}) {
		t.Fatalf("second override = %+v, want rate limited", d)
	}
	p.Request = newRequest("GET", "http://shop.test/other")
	if d := s.ShouldSample(&p); d != (Decision{false, ReasonParent}) {
		t.Fatalf("request without override rule = %+v, want the parent's refusal", d)
	}
	plain := ParentBased(RateLimited(Always(), 1, clock.option()))
	if d := plain.ShouldSample(&p); d != (Decision{false, ReasonParent}) {
		t.Fatalf("limiter without overriding inner = %+v, want the parent's refusal", d)
	}
}

func TestRateLimitedClamps(t *testing.T) {
	tests := []struct {
		name      string
		perSecond float64
		want      int // admitted of 1000 calls at a frozen clock
	}{
		{"zero admits nothing", 0, 0},
		{"negative admits nothing", -5, 0},
		{"NaN admits nothing", math.NaN(), 0},
		{"negative infinity admits nothing", math.Inf(-1), 0},
		{"infinity is unlimited", math.Inf(1), 1000},
		{"above 1e9/s is unlimited", 1e10, 1000},
		{"tiny rate admits the burst", 1e-30, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var clock manualClock
			clock.set(time.Duration(1) << 61)
			s := RateLimited(Always(), tt.perSecond, clock.option())
			total := 0
			for range 1000 {
				n, _ := admitted(s, &Params{})
				total += n
			}
			if total != tt.want {
				t.Errorf("admitted %d of 1000, want %d", total, tt.want)
			}
		})
	}
}

func TestRateLimitedDefaultClock(t *testing.T) {
	for name, s := range map[string]Sampler{
		"no clock option": RateLimited(Always(), 0.001),
		"nil clock":       RateLimited(Always(), 0.001, WithClock(nil)),
	} {
		t.Run(name, func(t *testing.T) {
			// One trace per 1000 s: the second call comes long before the
			// next slot.
			if !s.ShouldSample(&Params{}).Sample {
				t.Fatal("first trace refused")
			}
			if d := s.ShouldSample(&Params{}); d != (Decision{false, ReasonRateLimited}) {
				t.Fatalf("second trace = %+v, want rate limited", d)
			}
		})
	}
}

func TestNewRateLimitedValid(t *testing.T) {
	tests := []struct {
		name      string
		perSecond float64
		opts      []RateOption
		want      string
	}{
		{"rate only", 100, nil, "rate_limited(always, 100/s, burst 100)"},
		{"fractional rate", 0.2, nil, "rate_limited(always, 0.2/s, burst 1)"},
		{"with burst", 5, []RateOption{WithBurst(1)}, "rate_limited(always, 5/s, burst 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewRateLimited(Always(), tt.perSecond, tt.opts...)
			if err != nil {
				t.Fatalf("NewRateLimited: %v", err)
			}
			if got := s.Description(); got != tt.want {
				t.Errorf("Description = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestNewRateLimitedInvalid(t *testing.T) {
	tests := []struct {
		name      string
		inner     Sampler
		perSecond float64
		opts      []RateOption
		want      string
	}{
		{"negative rate", Always(), -1, nil, "max_per_second must be positive, got -1"},
		{"zero rate", Always(), 0, nil, "max_per_second must be positive, got 0"},
		{"NaN rate", Always(), math.NaN(), nil, "max_per_second must be positive, got NaN"},
		{"infinite rate", Always(), math.Inf(1), nil, "max_per_second must be finite, got +Inf"},
		{"zero burst", Always(), 10, []RateOption{WithBurst(0)}, "burst must be at least 1, got 0"},
		{"negative burst", Always(), 10, []RateOption{WithBurst(-3)}, "burst must be at least 1, got -3"},
		{"no inner sampler", nil, 10, nil, "max_per_second: no sampler to limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRateLimited(tt.inner, tt.perSecond, tt.opts...)
			if err == nil || err.Error() != tt.want {
				t.Errorf("NewRateLimited error = %v, want %q", err, tt.want)
			}
		})
	}
}
