package caddymodule

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tracingproxy/tracingproxy/sampler"
)

// SamplerConfig chooses which traces are recorded.
type SamplerConfig struct {
	// Ratio is the fraction of new traces sampled, in [0,1]. Default: 1,
	// or sample_ratio when that is set.
	Ratio *float64 `json:"ratio,omitempty"`
	// Parent is respect (default: follow the caller's sampled or not-sampled
	// flag) or ignore (decide every trace here). A caller's debug flag is
	// followed either way.
	Parent string `json:"parent,omitempty"`
	// MaxPerSecond caps the new traces head-sampled per second (a token
	// bucket, burst of one second's worth). Default: no cap.
	MaxPerSecond float64 `json:"max_per_second,omitempty"`
	// Rules are tried in order for new traces; the first match decides, and
	// the ratio decides when none matches.
	Rules []*SamplingRule `json:"rules,omitempty"`
	// KeepErrors exports the spans of a request that was not head-sampled
	// when it answered 5xx or its upstream failed.
	KeepErrors bool `json:"keep_errors,omitempty"`
	// KeepSlowerThan exports the spans of a request that was not
	// head-sampled when it took longer than this. Default: off.
	KeepSlowerThan caddy.Duration `json:"keep_slower_than,omitempty"`
	// KeepMaxPerSecond caps the requests kept after the fact per second, to
	// protect the collector during an outage storm. Default: 10.
	KeepMaxPerSecond *float64 `json:"keep_max_per_second,omitempty"`
	// ForceHeader names a request header that, set to a non-empty value
	// other than 0 or false by a trusted client, forces sampling.
	ForceHeader string `json:"force_header,omitempty"`
}

// SamplingRule matches requests and names their sampling.
type SamplingRule struct {
	// Methods, Hosts and Paths (globs; a final /** matches a subtree) must
	// each match when given; Headers maps names to exact values.
	Methods []string          `json:"methods,omitempty"`
	Hosts   []string          `json:"hosts,omitempty"`
	Paths   []string          `json:"paths,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// Sample is always, never or ratio.
	Sample string `json:"sample"`
	// Ratio is the fraction sampled when Sample is ratio.
	Ratio float64 `json:"ratio,omitempty"`
	// OverrideParent applies the rule to requests that continue a caller's
	// trace too: by default rules decide new traces only and a caller's
	// sampled or not-sampled flag is followed. A caller's debug flag and a
	// trusted force header still win.
	OverrideParent bool `json:"override_parent,omitempty"`
}

const defaultKeepMaxPerSecond = 10

// keepPolicy decides, at the end of a request that was not head-sampled,
// whether its spans are exported anyway.
type keepPolicy struct {
	errors  bool
	slower  time.Duration
	limiter sampler.Sampler // admits at most keep_max_per_second
	force   string          // canonical force header name
}

// enabled reports whether unsampled requests must be watched.
func (k *keepPolicy) enabled() bool { return k.errors || k.slower > 0 }

// keep returns the reason to keep a finished unsampled request, or "": a
// 5xx (handler errors without a status count as 500; a 4xx error such as a
// client's abort or a missing file does not), or a request slower than the
// threshold.
func (k *keepPolicy) keep(status int, took time.Duration) sampler.Reason {
	var reason sampler.Reason
	switch {
	case k.errors && status >= 500: // a failed upstream maps to 502

		reason = sampler.ReasonError
	case k.slower > 0 && took > k.slower:
		reason = sampler.ReasonSlow
	default:
		return ""
	}
	if !k.limiter.ShouldSample(&sampler.Params{}).Sample {
		return ""
	}
	return reason
}

// buildSampler turns the configuration into the head sampler and the keep
// policy. Errors name the option.
func (h *Handler) buildSampler() (sampler.Sampler, keepPolicy, error) {
	sc := h.Sampler
	if sc == nil {
		sc = &SamplerConfig{}
	}
	ratio := 1.0
	switch {
	case sc.Ratio != nil && h.SampleRatio != nil:
		return nil, keepPolicy{}, fmt.Errorf("sample_ratio and sampler ratio are both set: keep one")
	case sc.Ratio != nil:
		ratio = *sc.Ratio
	case h.SampleRatio != nil:
		ratio = *h.SampleRatio
	}
	root, err := sampler.NewRatio(ratio)
	if err != nil {
		return nil, keepPolicy{}, fmt.Errorf("sampler ratio: %w", err)
	}
	if len(sc.Rules) > 0 {
		rules := make([]sampler.Rule, len(sc.Rules))
		for i, rc := range sc.Rules {
			r, err := sampler.NewRule(sampler.RuleSpec{
				Methods: rc.Methods, Hosts: rc.Hosts, Paths: rc.Paths, Headers: rc.Headers,
				Sample: rc.Sample, Ratio: rc.Ratio, OverrideParent: rc.OverrideParent,
			})
			if err != nil {
				return nil, keepPolicy{}, fmt.Errorf("sampler rule %d: %w", i, err)
			}
			rules[i] = r
		}
		root = sampler.Rules(root, rules...)
	}
	if sc.MaxPerSecond != 0 {
		if root, err = sampler.NewRateLimited(root, sc.MaxPerSecond); err != nil {
			return nil, keepPolicy{}, fmt.Errorf("sampler %w", err)
		}
	}
	mode := sampler.RespectParent
	if sc.Parent != "" {
		if mode, err = sampler.ParseParentMode(sc.Parent); err != nil {
			return nil, keepPolicy{}, fmt.Errorf("sampler parent must be respect or ignore, got %q", sc.Parent)
		}
	}

	kp := keepPolicy{errors: sc.KeepErrors, slower: time.Duration(sc.KeepSlowerThan)}
	if kp.slower < 0 {
		return nil, keepPolicy{}, fmt.Errorf("sampler keep_slower_than must not be negative, got %s", kp.slower)
	}
	keepMax := float64(defaultKeepMaxPerSecond)
	if sc.KeepMaxPerSecond != nil {
		keepMax = *sc.KeepMaxPerSecond
	}
	if kp.limiter, err = sampler.NewRateLimited(sampler.Always(), keepMax); err != nil {
		return nil, keepPolicy{}, fmt.Errorf("sampler keep_%w", err)
	}
	if sc.ForceHeader != "" {
		if !validHeaderName(sc.ForceHeader) {
			return nil, keepPolicy{}, fmt.Errorf("sampler force_header: %q is not a valid header name", sc.ForceHeader)
		}
		kp.force = http.CanonicalHeaderKey(sc.ForceHeader)
	}
	return sampler.ParentBased(root, sampler.WithParentMode(mode)), kp, nil
}

// forced reports whether the request asks, by the force header, to be
// sampled.
func (k *keepPolicy) forced(r *http.Request) bool {
	if k.force == "" {
		return false
	}
	v := r.Header[k.force]
	if len(v) == 0 {
		return false
	}
	switch v[0] {
	case "", "0", "false", "False", "FALSE":
		return false
	}
	return true
}
