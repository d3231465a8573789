package sampler

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tracingproxy/tracingproxy/headers"
)

// randomIDs fills n trace ids from a fixed seed, 128-bit wide or with the
// upper half zero (a 64-bit B3 or Jaeger id).
func randomIDs(n int, is64 bool) []headers.TraceID {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]headers.TraceID, n)
	for i := range ids {
		if !is64 {
			binary.BigEndian.PutUint64(ids[i][:8], rng.Uint64())
		}
		binary.BigEndian.PutUint64(ids[i][8:], rng.Uint64())
	}
	return ids
}

// lowID returns a trace id whose low 64 bits are low.
func lowID(low uint64) headers.TraceID {
	var t headers.TraceID
	binary.BigEndian.PutUint64(t[:8], 0x0123456789abcdef)
	binary.BigEndian.PutUint64(t[8:], low)
	return t
}

func TestRatioFraction(t *testing.T) {
	t.Parallel()
	const n = 1_000_000
	for _, width := range []struct {
		name string
		is64 bool
	}{{"128-bit", false}, {"64-bit", true}} {
		ids := randomIDs(n, width.is64)
		for _, fraction := range []float64{0.001, 0.01, 0.1, 0.5} {
			t.Run(fmt.Sprintf("%s/%g", width.name, fraction), func(t *testing.T) {
				a, b := Ratio(fraction), Ratio(fraction)
				sampled := 0
				for i := range ids {
					p := Params{TraceID: ids[i]}
					da, db := a.ShouldSample(&p), b.ShouldSample(&p)
					if da != db {
						t.Fatalf("id %s: two Ratio(%g) instances disagree: %v vs %v", ids[i], fraction, da, db)
					}
					if da.Reason != ReasonRatio {
						t.Fatalf("reason = %q, want %q", da.Reason, ReasonRatio)
					}
					if da.Sample {
						sampled++
					}
				}
				sigma := math.Sqrt(fraction * (1 - fraction) / n)
				got := float64(sampled) / n
				if math.Abs(got-fraction) > 4*sigma {
					t.Errorf("Ratio(%g) sampled %.6f of %d ids, more than 4σ (%.6f) away", fraction, got, n, 4*sigma)
				}
			})
		}
	}
}

func TestRatioBounds(t *testing.T) {
	t.Parallel()
	ids := append(randomIDs(10_000, false),
		lowID(0), lowID(1), lowID(math.MaxUint64), lowID(math.MaxUint64-1), headers.TraceID{})
	tests := []struct {
		name     string
		fraction float64
		want     bool
	}{
		{"zero never", 0, false},
		{"negative clamps to never", -0.5, false},
		{"NaN clamps to never", math.NaN(), false},
		{"one always", 1, true},
		{"above one clamps to always", 1.5, true},
		{"infinity clamps to always", math.Inf(1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Ratio(tt.fraction)
			for _, id := range ids {
				if d := s.ShouldSample(&Params{TraceID: id}); d.Sample != tt.want {
					t.Fatalf("Ratio(%g) on %s = %v, want %v", tt.fraction, id, d.Sample, tt.want)
				}
			}
		})
	}
}

// TestRatioThreshold pins the decision rule shared with OpenTelemetry's
// TraceIDRatioBased: sample when (low 64 bits >> 1) < fraction×2^63. Proxies
// and OpenTelemetry SDKs of one fleet then agree on every id.
func TestRatioThreshold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fraction float64
		low      uint64
		want     bool
	}{
		{"half, just below", 0.5, (1<<62 - 1) << 1, true},
		{"half, lowest bit ignored", 0.5, (1<<62-1)<<1 | 1, true},
		{"half, at threshold", 0.5, 1 << 63, false},
		{"half, zero", 0.5, 0, true},
		{"quarter, just below", 0.25, (1<<61 - 1) << 1, true},
		{"quarter, at threshold", 0.25, 1 << 62, false},
		{"quarter, top of range", 0.25, math.MaxUint64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The high half never matters: 64-bit ids decide alike.
			for _, high := range []uint64{0, 0x0123456789abcdef, math.MaxUint64} {
				id := lowID(tt.low)
				binary.BigEndian.PutUint64(id[:8], high)
				if got := Ratio(tt.fraction).ShouldSample(&Params{TraceID: id}).Sample; got != tt.want {
					t.Errorf("Ratio(%g) on %s = %v, want %v", tt.fraction, id, got, tt.want)
				}
			}
		})
	}
}

func TestNewRatioValid(t *testing.T) {
	t.Parallel()
	for _, fraction := range []float64{0, 0.001, 0.5, 1} {
		s, err := NewRatio(fraction)
		if err != nil {
			t.Errorf("NewRatio(%g): %v", fraction, err)
			continue
		}
		if want := Ratio(fraction).Description(); s.Description() != want {
			t.Errorf("NewRatio(%g) = %s, want %s", fraction, s.Description(), want)
		}
	}
}

func TestNewRatioInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fraction float64
		want     string
	}{
		{"above one", 1.5, "ratio must be between 0 and 1, got 1.5"},
		{"negative", -0.1, "ratio must be between 0 and 1, got -0.1"},
		{"NaN", math.NaN(), "ratio must be between 0 and 1, got NaN"},
		{"infinity", math.Inf(1), "ratio must be between 0 and 1, got +Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRatio(tt.fraction)
			if err == nil || err.Error() != tt.want {
				t.Errorf("NewRatio(%g) error = %v, want %q", tt.fraction, err, tt.want)
			}
		})
	}
}

func TestParentBased(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mode   ParentMode
		root   Sampler
		parent headers.Sampling
		forced bool
		want   Decision
	}{
		{"respect: new trace asks root", RespectParent, Always(), headers.SamplingUnset, false, Decision{true, ReasonAlways}},
		{"respect: new trace, root refuses", RespectParent, Never(), headers.SamplingUnset, false, Decision{false, ReasonNever}},
		{"respect: accept followed", RespectParent, Never(), headers.SamplingAccept, false, Decision{true, ReasonParent}},
		{"respect: deny followed", RespectParent, Always(), headers.SamplingDeny, false, Decision{false, ReasonParent}},
		{"respect: debug samples", RespectParent, Never(), headers.SamplingDebug, false, Decision{true, ReasonDebug}},
		{"respect: forced beats deny", RespectParent, Never(), headers.SamplingDeny, true, Decision{true, ReasonForced}},
		{"respect: forced beats debug", RespectParent, Never(), headers.SamplingDebug, true, Decision{true, ReasonForced}},
		{"respect: forced new trace", RespectParent, Never(), headers.SamplingUnset, true, Decision{true, ReasonForced}},
		{"ignore: accept asks root", IgnoreParent, Never(), headers.SamplingAccept, false, Decision{false, ReasonNever}},
		{"ignore: deny asks root", IgnoreParent, Always(), headers.SamplingDeny, false, Decision{true, ReasonAlways}},
		{"ignore: new trace asks root", IgnoreParent, Always(), headers.SamplingUnset, false, Decision{true, ReasonAlways}},
		{"ignore: debug still samples", IgnoreParent, Never(), headers.SamplingDebug, false, Decision{true, ReasonDebug}},
		{"ignore: forced still samples", IgnoreParent, Never(), headers.SamplingDeny, true, Decision{true, ReasonForced}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ParentBased(tt.root, WithParentMode(tt.mode))
			p := Params{TraceID: headers.NewTraceID(), Parent: tt.parent, HasParent: tt.parent != headers.SamplingUnset, Forced: tt.forced}
			if got := s.ShouldSample(&p); got != tt.want {
				t.Errorf("ShouldSample = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestParentBasedOverride shows where rules sit: below ParentBased, deciding
// new traces, and overruling the caller only when marked OverrideParent.
func TestParentBasedOverride(t *testing.T) {
	t.Parallel()
	health := mustRule(t, RuleSpec{Path: "/health", Sample: "never", OverrideParent: true})
	checkout := mustRule(t, RuleSpec{Path: "/checkout", Sample: "always", OverrideParent: true})
	static := mustRule(t, RuleSpec{Path: "/static/**", Sample: "never"})
	root := Rules(Ratio(1), health, checkout, static)
	tests := []struct {
		name   string
		mode   ParentMode
		path   string
		parent headers.Sampling
		forced bool
		want   Decision
	}{
		{"override never beats accept", RespectParent, "/health", headers.SamplingAccept, false, Decision{false, "rule:0"}},
		{"override always beats deny", RespectParent, "/checkout", headers.SamplingDeny, false, Decision{true, "rule:1"}},
		{"plain rule leaves accept alone", RespectParent, "/static/app.js", headers.SamplingAccept, false, Decision{true, ReasonParent}},
		{"plain rule decides new trace", RespectParent, "/static/app.js", headers.SamplingUnset, false, Decision{false, "rule:2"}},
		{"no rule: parent followed", RespectParent, "/orders", headers.SamplingDeny, false, Decision{false, ReasonParent}},
		{"no rule: fallback for new trace", RespectParent, "/orders", headers.SamplingUnset, false, Decision{true, ReasonRatio}},
		{"debug beats override", RespectParent, "/health", headers.SamplingDebug, false, Decision{true, ReasonDebug}},
		{"forced beats override", RespectParent, "/health", headers.SamplingAccept, true, Decision{true, ReasonForced}},
		{"ignore mode: plain rule beats accept", IgnoreParent, "/static/app.js", headers.SamplingAccept, false, Decision{false, "rule:2"}},
		{"ignore mode: fallback beats deny", IgnoreParent, "/orders", headers.SamplingDeny, false, Decision{true, ReasonRatio}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ParentBased(root, WithParentMode(tt.mode))
			p := Params{
				TraceID: headers.NewTraceID(), Parent: tt.parent, Forced: tt.forced,
				Request: httptest.NewRequest(http.MethodGet, "http://orders.example.com"+tt.path, nil),
			}
			if got := s.ShouldSample(&p); got != tt.want {
				t.Errorf("ShouldSample = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseParentModeValid(t *testing.T) {
	t.Parallel()
	for _, want := range []ParentMode{RespectParent, IgnoreParent} {
		got, err := ParseParentMode(want.String())
		if err != nil || got != want {
			t.Errorf("ParseParentMode(%q) = %v, %v; want %v", want.String(), got, err, want)
		}
	}
}

func TestParseParentModeInvalid(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "Respect", "follow", "ignore "} {
		_, err := ParseParentMode(s)
		if want := `parent must be "respect" or "ignore", got "` + s + `"`; err == nil || err.Error() != want {
			t.Errorf("ParseParentMode(%q) error = %v, want %q", s, err, want)
		}
	}
}

func TestDefault(t *testing.T) {
	s := Default()
	if got := s.ShouldSample(&Params{TraceID: lowID(math.MaxUint64)}); got != (Decision{true, ReasonRatio}) {
		t.Errorf("Default on a new trace = %+v, want sampled by ratio", got)
	}
	if got := s.ShouldSample(&Params{TraceID: lowID(1), Parent: headers.SamplingDeny}); got != (Decision{false, ReasonParent}) {
		t.Errorf("Default on a denied trace = %+v, want the parent's refusal", got)
	}
}

func TestDescription(t *testing.T) {
	t.Parallel()
	rule := mustRule(t, RuleSpec{
		Methods: []string{"get", "HEAD"}, Hosts: []string{"*.example.com"}, Path: "/health/**",
		Headers: map[string]string{"x-probe": "1"}, Sample: "never", OverrideParent: true,
	})
	tests := []struct {
		name string
		s    Sampler
		want string
	}{
		{"always", Always(), "always"},
		{"never", Never(), "never"},
		{"ratio", Ratio(0.25), "ratio(0.25)"},
		{"parent based", ParentBased(Ratio(0.1)), "parent_based(ratio(0.1))"},
		{"parent ignored", ParentBased(Always(), WithParentMode(IgnoreParent)), "parent_based(always, parent=ignore)"},
		{"rate limited", RateLimited(Always(), 2.5, WithBurst(4)), "rate_limited(always, 2.5/s, burst 4)"},
		{"rules", Rules(Ratio(0.1), rule, mustRule(t, RuleSpec{Sample: "ratio", Ratio: 0.5})),
			`rules(0: method GET,HEAD host *.example.com path /health/** header X-Probe="1" -> never (override parent); 1: any -> ratio(0.5); else ratio(0.1))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Description(); got != tt.want {
				t.Errorf("Description = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestZeroAllocs checks every sampler, on every path through it, decides
// without allocating.
func TestZeroAllocs(t *testing.T) {
	var frozen int64
	clock := func() int64 { return frozen }
	rs := benchRules(t)
	get := httptest.NewRequest(http.MethodGet, "http://shop.example.com/api/v2/orders/7", nil)
	get.Header.Set("X-Tenant", "acme")
	health := httptest.NewRequest(http.MethodGet, "http://shop.example.com/health/live", nil)
	tests := []struct {
		name string
		s    Sampler
		p    Params
	}{
		{"always", Always(), Params{}},
		{"never", Never(), Params{}},
		{"ratio", Ratio(0.5), Params{TraceID: lowID(42)}},
		{"parent based, root", ParentBased(Ratio(0.5)), Params{TraceID: lowID(42)}},
		{"parent based, parent", ParentBased(Ratio(0.5)), Params{Parent: headers.SamplingAccept}},
		{"parent based, debug", ParentBased(Ratio(0.5)), Params{Parent: headers.SamplingDebug}},
		{"parent based, forced", ParentBased(Ratio(0.5)), Params{Forced: true}},
		{"parent based, override", ParentBased(rs), Params{Parent: headers.SamplingAccept, Request: health}},
		{"rate limited, admitted", RateLimited(Always(), 1e6, WithBurst(1_000_000), WithClock(clock)), Params{}},
		{"rate limited, refused", RateLimited(Always(), 1, WithClock(clock)), Params{}},
		{"rate limited, default clock", RateLimited(Always(), 1), Params{}},
		{"rules, first", rs, Params{Request: health}},
		{"rules, last", rs, Params{Request: get}},
		{"rules, none", rs, Params{Request: httptest.NewRequest(http.MethodPost, "http://other.test/x", nil)}},
		{"rules, nil request", rs, Params{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, func() { tt.s.ShouldSample(&tt.p) }); n != 0 {
				t.Errorf("ShouldSample allocates %v times per call", n)
			}
		})
	}
}

func mustRule(tb testing.TB, spec RuleSpec) Rule {
	tb.Helper()
	r, err := NewRule(spec)
	if err != nil {
		tb.Fatalf("NewRule(%+v): %v", spec, err)
	}
	return r
}

// benchRules is five rules whose last matches GET shop.example.com
// /api/v2/orders/7 with X-Tenant: acme; the first matches health checks.
func benchRules(tb testing.TB) Sampler {
	return Rules(Ratio(0.1),
		mustRule(tb, RuleSpec{Path: "/health/**", Sample: "never", OverrideParent: true}),
		mustRule(tb, RuleSpec{Methods: []string{"OPTIONS"}, Sample: "never"}),
		mustRule(tb, RuleSpec{Hosts: []string{"admin.example.com"}, Sample: "always"}),
		mustRule(tb, RuleSpec{Headers: map[string]string{"X-Debug-Trace": "1"}, Sample: "always"}),
		mustRule(tb, RuleSpec{
			Methods: []string{"GET", "POST"}, Hosts: []string{"*.example.com"}, Path: "/api/v[0-9]/**",
			Headers: map[string]string{"X-Tenant": "acme"}, Sample: "ratio", Ratio: 0.5,
		}),
	)
}
