package sampler

import (
	"fmt"
	"maps"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
)

// RuleSpec configures one sampling rule. A request matches when every
// condition that is set holds; a rule with no condition matches every
// request.
type RuleSpec struct {
	// Methods, when set, is the set of request methods the rule matches.
	// They are upper-cased and compared exactly with the request's method.
	Methods []string
	// Hosts, when set, is the set of hosts the rule matches,
	// case-insensitively, ignoring the request's port and a trailing dot.
	// A host is an exact name ("api.example.com", an IP address) or a
	// wildcard "*.example.com", which matches exactly one more label
	// ("a.example.com", not "example.com" nor "a.b.example.com").
	Hosts []string
	// Path, when set, is a glob the request's URL path must match. It starts
	// with "/" and uses path.Match syntax: "*" matches any run of characters
	// other than "/", "?" one such character, "[a-z]" a class, "\" escapes.
	// One extension: a final "/**" matches the path before it and everything
	// below it. So "/api/*" matches "/api/users" but not "/api/users/7";
	// "/api/**" matches "/api", "/api/users" and "/api/users/7";
	// "/health*" matches "/health" and "/healthz" but not "/health/live".
	// "**" anywhere else is an error.
	Path string
	// Paths, when set, are further globs like Path; the rule matches when
	// the path matches any of Path and Paths.
	Paths []string
	// Headers, when set, maps header names to the exact value each must
	// have (any one of a repeated header's values may match).
	Headers map[string]string
	// Sample names what happens to matching requests: "always", "never", or
	// "ratio" (the trace-id ratio of Ratio, with the fraction in Ratio).
	Sample string
	// Ratio is the fraction sampled when Sample is "ratio", between 0 and 1.
	// It must be left 0 for "always" and "never".
	Ratio float64
	// OverrideParent lets the rule overrule the caller's accept or deny flag
	// when Rules is the root of ParentBased in RespectParent mode: a
	// matching request gets this rule's decision whatever the caller said.
	// Forced and debug requests still sample.
	OverrideParent bool
}

// Rule is one validated sampling rule, built by NewRule.
type Rule struct {
	methods  []string
	hosts    []hostPattern
	paths    []pathPattern
	headers  []headerMatch
	sampler  Sampler
	override bool
	desc     string
}

type hostPattern struct {
	name     string // lower case; for a wildcard, the suffix from the first "."
	wildcard bool
}

type headerMatch struct {
	name  string // canonical form, as net/http stores it
	value string
}

// pathPattern is a compiled RuleSpec.Path.
type pathPattern struct {
	glob    string // the pattern, without a final "/**"; "" with subtree matches all
	subtree bool   // the pattern ended in "/**"
	literal bool   // glob has no metacharacters: compare strings
	lit     string // glob's literal prefix, up to its first metacharacter
	rest    string // glob after lit
	slashes int    // "/"s in rest, or -1 when a class in rest might match one
}

// NewRule validates spec and compiles it. Errors start with "rule: " and
// name the field: "rule: ratio must be between 0 and 1, got 1.5".
func NewRule(spec RuleSpec) (Rule, error) {
	var r Rule
	var desc []string
	for _, m := range spec.Methods {
		if !isToken(m) {
			return Rule{}, fmt.Errorf("rule: method must be an HTTP method name, got %q", m)
		}
		r.methods = append(r.methods, strings.ToUpper(m))
	}
	if len(r.methods) > 0 {
		desc = append(desc, "method "+strings.Join(r.methods, ","))
	}
	for _, h := range spec.Hosts {
		hp, err := compileHost(h)
		if err != nil {
			return Rule{}, err
		}
		r.hosts = append(r.hosts, hp)
	}
	if len(spec.Hosts) > 0 {
		desc = append(desc, "host "+strings.Join(spec.Hosts, ","))
	}
	globs := spec.Paths
	if spec.Path != "" {
		globs = append([]string{spec.Path}, spec.Paths...)
	}
	for _, g := range globs {
		pp, err := compilePath(g)
		if err != nil {
			return Rule{}, err
		}
		r.paths = append(r.paths, pp)
	}
	if len(globs) > 0 {
		desc = append(desc, "path "+strings.Join(globs, ","))
	}
	for _, name := range slices.Sorted(maps.Keys(spec.Headers)) {
		if !isToken(name) {
			return Rule{}, fmt.Errorf("rule: header name must be a token, got %q", name)
		}
		r.headers = append(r.headers, headerMatch{http.CanonicalHeaderKey(name), spec.Headers[name]})
	}
	slices.SortFunc(r.headers, func(a, b headerMatch) int { return strings.Compare(a.name, b.name) })
	for i, h := range r.headers {
		if i > 0 && r.headers[i-1].name == h.name {
			return Rule{}, fmt.Errorf("rule: header %s is given twice", h.name)
		}
		desc = append(desc, "header "+h.name+"="+strconv.Quote(h.value))
	}
	switch spec.Sample {
	case "always", "never":
		if spec.Ratio != 0 {
			return Rule{}, fmt.Errorf("rule: ratio is only allowed with sample ratio, got sample %s", spec.Sample)
		}
		r.sampler = Always()
		if spec.Sample == "never" {
			r.sampler = Never()
		}
	case "ratio":
		s, err := NewRatio(spec.Ratio)
		if err != nil {
			return Rule{}, fmt.Errorf("rule: %w", err)
		}
		r.sampler = s
	default:
		return Rule{}, fmt.Errorf(`rule: sample must be "always", "never" or "ratio", got %q`, spec.Sample)
	}
	if len(desc) == 0 {
		desc = append(desc, "any")
	}
	r.desc = strings.Join(desc, " ") + " -> " + r.sampler.Description()
	if spec.OverrideParent {
		r.override = true
		r.desc += " (override parent)"
	}
	return r, nil
}

func compileHost(h string) (hostPattern, error) {
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		name = name[1 : len(name)-1]
	}
	wildcard := strings.HasPrefix(name, "*.")
	label := name // the name that follows "*." in a wildcard
	if wildcard {
		name, label = name[1:], name[2:]
	}
	switch {
	case label == "" || strings.HasPrefix(label, ".") || strings.HasSuffix(label, ".") || strings.Contains(label, ".."):
		return hostPattern{}, fmt.Errorf("rule: host must be a name, got %q", h)
	case strings.Contains(name, "*"):
		return hostPattern{}, fmt.Errorf(`rule: host may use "*" only as a whole first label, like "*.example.com", got %q`, h)
	case strings.Count(name, ":") == 1:
		return hostPattern{}, fmt.Errorf("rule: host must not have a port, got %q", h)
	}
	return hostPattern{name: name, wildcard: wildcard}, nil
}

func compilePath(p string) (pathPattern, error) {
	if !strings.HasPrefix(p, "/") {
		return pathPattern{}, fmt.Errorf(`rule: path must start with "/", got %q`, p)
	}
	pp := pathPattern{glob: p}
	if g, ok := strings.CutSuffix(p, "/**"); ok {
		pp.glob, pp.subtree = g, true
	}
	if strings.Contains(pp.glob, "**") {
		return pathPattern{}, fmt.Errorf(`rule: path may use "**" only as a final "/**", got %q`, p)
	}
	if _, err := path.Match(pp.glob, ""); err != nil {
		return pathPattern{}, fmt.Errorf("rule: path %q: %w", p, err)
	}
	i := strings.IndexAny(pp.glob, `*?[\`)
	pp.literal = i < 0
	if i < 0 {
		i = len(pp.glob)
	}
	pp.lit, pp.rest = pp.glob[:i], pp.glob[i:]
	pp.slashes = strings.Count(pp.rest, "/")
	if strings.Contains(pp.rest, "[") {
		pp.slashes = -1
	}
	return pp, nil
}

// isToken reports whether s is a non-empty RFC 9110 token, as method and
// header names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// request is the inbound request as rules see it; the host is worked out
// once, by the first rule that asks.
type request struct {
	r        *http.Request
	host     string
	hostDone bool
}

// hostname returns the request's host without port, IPv6 brackets or
// trailing dot.
func (q *request) hostname() string {
	if q.hostDone {
		return q.host
	}
	h := q.r.Host
	if h == "" && q.r.URL != nil {
		h = q.r.URL.Host
	}
	i := len(h)
	for i > 0 && '0' <= h[i-1] && h[i-1] <= '9' {
		i--
	}
	if i > 0 && h[i-1] == ':' {
		h = h[:i-1]
	}
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	q.host, q.hostDone = strings.TrimSuffix(h, "."), true
	return q.host
}

// matches reports whether the request satisfies every condition of the rule.
// A nil request satisfies only a rule without conditions.
func (r *Rule) matches(q *request) bool {
	req := q.r
	if req == nil {
		return len(r.methods) == 0 && len(r.hosts) == 0 && len(r.paths) == 0 && len(r.headers) == 0
	}
	if len(r.methods) > 0 && !slices.Contains(r.methods, req.Method) {
		return false
	}
	if len(r.hosts) > 0 && !matchHosts(r.hosts, q.hostname()) {
		return false
	}
	for _, h := range r.headers {
		if !slices.Contains(req.Header[h.name], h.value) {
			return false
		}
	}
	if len(r.paths) > 0 {
		p := ""
		if req.URL != nil {
			p = req.URL.Path
		}
		for i := range r.paths {
			if r.paths[i].match(p) {
				return true
			}
		}
		return false
	}
	return true
}

func matchHosts(patterns []hostPattern, h string) bool {
	for _, hp := range patterns {
		if hp.match(h) {
			return true
		}
	}
	return false
}

func (hp hostPattern) match(h string) bool {
	if !hp.wildcard {
		return strings.EqualFold(h, hp.name)
	}
	n := len(h) - len(hp.name)
	return n > 0 && strings.EqualFold(h[n:], hp.name) && strings.IndexByte(h[:n], '.') < 0
}

// match reports whether the URL path p matches; it does not allocate.
func (pp *pathPattern) match(p string) bool {
	if pp.literal {
		if !pp.subtree {
			return p == pp.glob
		}
		return strings.HasPrefix(p, pp.glob) && (len(p) == len(pp.glob) || p[len(pp.glob)] == '/')
	}
	p, ok := strings.CutPrefix(p, pp.lit)
	if !ok {
		return false
	}
	if !pp.subtree {
		ok, _ = path.Match(pp.rest, p)
		return ok
	}
	// rest must match p itself or a prefix of p that ends before a "/".
	// Without classes, "*" and "?" never match "/", so that prefix holds
	// exactly as many "/" as rest: one candidate.
	if pp.slashes >= 0 {
		i, n := 0, 0
		for ; i < len(p); i++ {
			if p[i] == '/' {
				if n == pp.slashes {
					break
				}
				n++
			}
		}
		if n < pp.slashes {
			return false
		}
		ok, _ = path.Match(pp.rest, p[:i])
		return ok
	}
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		if ok, _ = path.Match(pp.rest, p[:i]); ok {
			return true
		}
	}
	return false
}

type rules struct {
	rules       []Rule
	reasons     []Reason // "rule:<n>", precomputed
	fallback    Sampler
	anyOverride bool
}

// Rules decides by the first rule that matches the request, in order, and
// asks fallback when none does (or when Params.Request is nil and every rule
// has a condition). A matching rule's decision carries the reason
// "rule:<n>", n being the rule's 0-based index in list — the same index as
// in a JSON config array. The reasons are built here, so deciding allocates
// nothing; the fallback's decision keeps its own reason.
//
// Rules is a root sampler: under ParentBased it decides new traces and
// traces whose caller left the decision unset (every trace in IgnoreParent
// mode). A rule marked OverrideParent also overrules the caller's accept or
// deny flag in RespectParent mode, so a health check set to never is not
// recorded even when its caller sampled it.
//
// fallback must not be nil and every rule must come from NewRule.
func Rules(fallback Sampler, list ...Rule) Sampler {
	if fallback == nil {
		panic("sampler: Rules needs a fallback sampler")
	}
	rs := &rules{rules: slices.Clone(list), fallback: fallback}
	for i := range rs.rules {
		if rs.rules[i].sampler == nil {
			panic("sampler: Rules given a Rule not built by NewRule")
		}
		rs.reasons = append(rs.reasons, Reason("rule:"+strconv.Itoa(i)))
		rs.anyOverride = rs.anyOverride || rs.rules[i].override
	}
	return rs
}

// find returns the index of the first rule matching req, or -1.
func (rs *rules) find(req *http.Request) int {
	q := request{r: req}
	for i := range rs.rules {
		if rs.rules[i].matches(&q) {
			return i
		}
	}
	return -1
}

func (rs *rules) decide(i int, p *Params) Decision {
	return Decision{rs.rules[i].sampler.ShouldSample(p).Sample, rs.reasons[i]}
}

func (rs *rules) ShouldSample(p *Params) Decision {
	if i := rs.find(p.Request); i >= 0 {
		return rs.decide(i, p)
	}
	return rs.fallback.ShouldSample(p)
}

// OverrideParent returns the decision of the first matching rule when that
// rule is marked OverrideParent.
func (rs *rules) OverrideParent(p *Params) (Decision, bool) {
	if !rs.anyOverride {
		return Decision{}, false
	}
	i := rs.find(p.Request)
	if i < 0 || !rs.rules[i].override {
		return Decision{}, false
	}
	return rs.decide(i, p), true
}

func (rs *rules) Description() string {
	var b strings.Builder
	b.WriteString("rules(")
	for i := range rs.rules {
		fmt.Fprintf(&b, "%d: %s; ", i, rs.rules[i].desc)
	}
	b.WriteString("else " + rs.fallback.Description() + ")")
	return b.String()
}
