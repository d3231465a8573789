package sampler

import (
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
)

// newRequest builds a server-side request as net/http hands it to Caddy.
func newRequest(method, target string, header ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestPathGlob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		path    string
		want    bool
	}{
		{"/health", "/health", true},
		{"/health", "/health/", false},
		{"/health", "/healthz", false},
		{"/health*", "/health", true},
		{"/health*", "/healthz", true},
		{"/health*", "/health-check", true},
		{"/health*", "/health/live", false},
		{"/api/*", "/api/users", true},
		{"/api/*", "/api/", true},
		{"/api/*", "/api", false},
		{"/api/*", "/api/users/7", false},
		{"/api/*/orders", "/api/v2/orders", true},
		{"/api/*/orders", "/api/v2/x/orders", false},
		{"/api/**", "/api", true},
		{"/api/**", "/api/", true},
		{"/api/**", "/api/users", true},
		{"/api/**", "/api/users/7/items", true},
		{"/api/**", "/apis", false},
		{"/api/**", "/ap", false},
		{"/api/**", "/v1/api/users", false},
		{"/**", "/", true},
		{"/**", "/anything/at/all", true},
		{"/v[0-9]/**", "/v2", true},
		{"/v[0-9]/**", "/v2/users/7", true},
		{"/v[0-9]/**", "/vx/users", false},
		{"/v[0-9]/**", "/v22/users", false},
		{"/*/admin/**", "/shop/admin/users", true},
		{"/*/admin/**", "/shop/admin", true},
		{"/*/admin/**", "/shop/public/admin", false},
		{"/v?", "/v1", true},
		{"/v?", "/v10", false},
		{"/files/*.txt", "/files/a.txt", true},
		{"/files/*.txt", "/files/a.txt.gz", false},
		{`/lit\*`, "/lit*", true},
		{`/lit\*`, "/litx", false},
		{`/lit\*/**`, "/lit*/x", true},
		{"/", "/", true},
		{"/", "/x", false},
		{"/a/b/**", "/a/b/c", true},
		{"/a/b/**", "/a/bc", false},
		{"/api/*/**", "/api/x", true},
		{"/api/*/**", "/api/x/y/z", true},
		{"/api/*/**", "/api/", true},
		{"/api/*/**", "/api", false},
		{"/*/**", "/", true},
		{"/*/**", "/anything/below", true},
		{"/a[^x]b/**", "/a/b/c", true}, // a class may match "/"
		{"/a[^x]b/**", "/axb/c", false},
		{"/a[/]b", "/a/b", true},
		{"/a?/b/**", "/ax/b", true},
		{"/a?/b/**", "/ax/bc", false},
		{"/a?/b/**", "/ax", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.path, func(t *testing.T) {
			pp, err := compilePath(tt.pattern)
			if err != nil {
				t.Fatalf("compilePath(%q): %v", tt.pattern, err)
			}
			if got := pp.match(tt.path); got != tt.want {
				t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.path, got, tt.want)
			}
			// The same through a whole rule and request.
			r := mustRule(t, RuleSpec{Path: tt.pattern, Sample: "always"})
			if got := r.matches(&request{r: newRequest("GET", "http://x.test"+tt.path)}); got != tt.want {
				t.Errorf("rule with path %q on request %q = %v, want %v", tt.pattern, tt.path, got, tt.want)
			}
		})
	}
}

func TestPathGlobInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		want    string
	}{
		{"health", `rule: path must start with "/", got "health"`},
		{"*.php", `rule: path must start with "/", got "*.php"`},
		{"/a/**/b", `rule: path may use "**" only as a final "/**", got "/a/**/b"`},
		{"/a**", `rule: path may use "**" only as a final "/**", got "/a**"`},
		{"/a/***", `rule: path may use "**" only as a final "/**", got "/a/***"`},
		{"/[", `rule: path "/[": syntax error in pattern`},
		{"/[]/**", `rule: path "/[]/**": syntax error in pattern`},
		{`/a\`, `rule: path "/a\\": syntax error in pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			_, err := NewRule(RuleSpec{Path: tt.pattern, Sample: "never"})
			if err == nil || err.Error() != tt.want {
				t.Errorf("NewRule(path %q) error = %v, want %q", tt.pattern, err, tt.want)
			}
		})
	}
}

func TestHostMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		host    string // the request's Host
		want    bool
	}{
		{"exact", "api.example.com", "api.example.com", true},
		{"case-insensitive request", "api.example.com", "API.Example.COM", true},
		{"case-insensitive config", "API.example.com", "api.example.com", true},
		{"port ignored", "api.example.com", "api.example.com:8443", true},
		{"empty port ignored", "api.example.com", "api.example.com:", true},
		{"digits in the name kept", "api1.example.com", "api1.example.com", true},
		{"trailing dot ignored", "api.example.com", "api.example.com.", true},
		{"trailing dot in config", "api.example.com.", "api.example.com", true},
		{"other host", "api.example.com", "www.example.com", false},
		{"suffix is not a match", "example.com", "api.example.com", false},
		{"wildcard one label", "*.example.com", "api.example.com", true},
		{"wildcard with port", "*.example.com", "API.example.com:80", true},
		{"wildcard not two labels", "*.example.com", "a.b.example.com", false},
		{"wildcard not the apex", "*.example.com", "example.com", false},
		{"wildcard not a lookalike", "*.example.com", "evilexample.com", false},
		{"wildcard needs a label", "*.example.com", ".example.com", false},
		{"IPv4", "10.0.0.1", "10.0.0.1:8080", true},
		{"IPv6", "[::1]", "[::1]:8080", true},
		{"IPv6 without brackets in config", "::1", "[::1]", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRule(t, RuleSpec{Hosts: []string{tt.pattern}, Sample: "always"})
			req := newRequest("GET", "/")
			req.Host = tt.host
			if got := r.matches(&request{r: req}); got != tt.want {
				t.Errorf("host %q on %q = %v, want %v", tt.pattern, tt.host, got, tt.want)
			}
		})
	}
	t.Run("URL host when Host is empty", func(t *testing.T) {
		r := mustRule(t, RuleSpec{Hosts: []string{"api.example.com"}, Sample: "always"})
		req := newRequest("GET", "http://api.example.com:9000/x")
		req.Host = ""
		if !r.matches(&request{r: req}) {
			t.Error("rule did not match the URL's host")
		}
	})
}

func TestNewRuleInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec RuleSpec
		want string
	}{
		{"no sample", RuleSpec{Path: "/x"}, `rule: sample must be "always", "never" or "ratio", got ""`},
		{"unknown sample", RuleSpec{Sample: "sometimes"}, `rule: sample must be "always", "never" or "ratio", got "sometimes"`},
		{"ratio above one", RuleSpec{Sample: "ratio", Ratio: 1.5}, "rule: ratio must be between 0 and 1, got 1.5"},
		{"ratio negative", RuleSpec{Sample: "ratio", Ratio: -0.5}, "rule: ratio must be between 0 and 1, got -0.5"},
		{"ratio with always", RuleSpec{Sample: "always", Ratio: 0.5}, "rule: ratio is only allowed with sample ratio, got sample always"},
		{"ratio with never", RuleSpec{Sample: "never", Ratio: 0.5}, "rule: ratio is only allowed with sample ratio, got sample never"},
		{"empty method", RuleSpec{Methods: []string{"GET", ""}, Sample: "never"}, `rule: method must be an HTTP method name, got ""`},
		{"method with space", RuleSpec{Methods: []string{"GET POST"}, Sample: "never"}, `rule: method must be an HTTP method name, got "GET POST"`},
		{"empty host", RuleSpec{Hosts: []string{""}, Sample: "never"}, `rule: host must be a name, got ""`},
		{"bare wildcard host", RuleSpec{Hosts: []string{"*."}, Sample: "never"}, `rule: host may use "*" only as a whole first label, like "*.example.com", got "*."`},
		{"wildcard of nothing", RuleSpec{Hosts: []string{"*.."}, Sample: "never"}, `rule: host must be a name, got "*.."`},
		{"empty label", RuleSpec{Hosts: []string{"a..example.com"}, Sample: "never"}, `rule: host must be a name, got "a..example.com"`},
		{"leading dot", RuleSpec{Hosts: []string{".example.com"}, Sample: "never"}, `rule: host must be a name, got ".example.com"`},
		{"star host", RuleSpec{Hosts: []string{"*"}, Sample: "never"}, `rule: host may use "*" only as a whole first label, like "*.example.com", got "*"`},
		{"inner wildcard host", RuleSpec{Hosts: []string{"api.*.com"}, Sample: "never"}, `rule: host may use "*" only as a whole first label, like "*.example.com", got "api.*.com"`},
		{"partial wildcard host", RuleSpec{Hosts: []string{"api*.example.com"}, Sample: "never"}, `rule: host may use "*" only as a whole first label, like "*.example.com", got "api*.example.com"`},
		{"host with port", RuleSpec{Hosts: []string{"example.com:8080"}, Sample: "never"}, `rule: host must not have a port, got "example.com:8080"`},
		{"empty header name", RuleSpec{Headers: map[string]string{"": "1"}, Sample: "never"}, `rule: header name must be a token, got ""`},
		{"header name with colon", RuleSpec{Headers: map[string]string{"X-A:": "1"}, Sample: "never"}, `rule: header name must be a token, got "X-A:"`},
		{"bad path", RuleSpec{Path: "api", Sample: "never"}, `rule: path must start with "/", got "api"`},
		{"header twice", RuleSpec{Headers: map[string]string{"x-a": "1", "X-A": "2"}, Sample: "never"}, "rule: header X-A is given twice"},
		{"first bad header name in order", RuleSpec{Headers: map[string]string{"b c": "1", "a b": "2"}, Sample: "never"}, `rule: header name must be a token, got "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRule(tt.spec)
			if err == nil || err.Error() != tt.want {
				t.Errorf("NewRule error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNewRuleValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec RuleSpec
		want string // the rule's description
	}{
		{"match all", RuleSpec{Sample: "always"}, "any -> always"},
		{"ratio zero", RuleSpec{Sample: "ratio", Ratio: 0}, "any -> ratio(0)"},
		{"ratio one", RuleSpec{Sample: "ratio", Ratio: 1}, "any -> ratio(1)"},
		{"methods upper-cased", RuleSpec{Methods: []string{"get", "Post", "PROPFIND"}, Sample: "never"}, "method GET,POST,PROPFIND -> never"},
		{"headers canonical and sorted", RuleSpec{Headers: map[string]string{"x-b": "2", "X-A": ""}, Sample: "never"}, `header X-A="" header X-B="2" -> never`},
		{"every condition", RuleSpec{Methods: []string{"GET"}, Hosts: []string{"a.test", "*.b.test"}, Path: "/x/**", Sample: "never"}, "method GET host a.test,*.b.test path /x/** -> never"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRule(tt.spec)
			if err != nil {
				t.Fatalf("NewRule: %v", err)
			}
			if r.desc != tt.want {
				t.Errorf("rule = %s, want %s", r.desc, tt.want)
			}
		})
	}
}

func TestRuleConditions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec RuleSpec
		req  *http.Request
		want bool
	}{
		{"method in set", RuleSpec{Methods: []string{"GET", "HEAD"}}, newRequest("HEAD", "/"), true},
		{"method not in set", RuleSpec{Methods: []string{"GET", "HEAD"}}, newRequest("POST", "/"), false},
		{"method compared upper-case", RuleSpec{Methods: []string{"get"}}, newRequest("GET", "/"), true},
		{"header exact", RuleSpec{Headers: map[string]string{"X-Debug-Trace": "1"}}, newRequest("GET", "/", "X-Debug-Trace", "1"), true},
		{"header name case-insensitive", RuleSpec{Headers: map[string]string{"x-debug-trace": "1"}}, newRequest("GET", "/", "X-DEBUG-TRACE", "1"), true},
		{"header value exact", RuleSpec{Headers: map[string]string{"X-Debug-Trace": "1"}}, newRequest("GET", "/", "X-Debug-Trace", "10"), false},
		{"header value case-sensitive", RuleSpec{Headers: map[string]string{"X-Env": "prod"}}, newRequest("GET", "/", "X-Env", "PROD"), false},
		{"header absent", RuleSpec{Headers: map[string]string{"X-Debug-Trace": "1"}}, newRequest("GET", "/"), false},
		{"header empty value present", RuleSpec{Headers: map[string]string{"X-Flag": ""}}, newRequest("GET", "/", "X-Flag", ""), true},
		{"header empty value absent", RuleSpec{Headers: map[string]string{"X-Flag": ""}}, newRequest("GET", "/"), false},
		{"header repeated, second matches", RuleSpec{Headers: map[string]string{"X-Tenant": "acme"}}, newRequest("GET", "/", "X-Tenant", "other", "X-Tenant", "acme"), true},
		{"all headers required", RuleSpec{Headers: map[string]string{"X-A": "1", "X-B": "2"}}, newRequest("GET", "/", "X-A", "1"), false},
		{"all conditions hold", RuleSpec{Methods: []string{"GET"}, Hosts: []string{"*.example.com"}, Path: "/api/**", Headers: map[string]string{"X-A": "1"}},
			newRequest("GET", "http://shop.example.com/api/x", "X-A", "1"), true},
		{"one condition fails", RuleSpec{Methods: []string{"GET"}, Hosts: []string{"*.example.com"}, Path: "/api/**", Headers: map[string]string{"X-A": "1"}},
			newRequest("GET", "http://shop.example.org/api/x", "X-A", "1"), false},
		{"no condition matches all", RuleSpec{}, newRequest("DELETE", "http://any.test/any"), true},
		{"nil request, no condition", RuleSpec{}, nil, true},
		{"nil request, path condition", RuleSpec{Path: "/**"}, nil, false},
		{"nil request, method condition", RuleSpec{Methods: []string{"GET"}}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Sample = "always"
			r := mustRule(t, tt.spec)
			if got := r.matches(&request{r: tt.req}); got != tt.want {
				t.Errorf("matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRulesPrecedence(t *testing.T) {
	t.Parallel()
	s := Rules(Ratio(1),
		mustRule(t, RuleSpec{Path: "/health", Sample: "never"}),                                   // health checks: never
		mustRule(t, RuleSpec{Methods: []string{"OPTIONS"}, Sample: "never"}),                      // preflights
		mustRule(t, RuleSpec{Headers: map[string]string{"X-Debug-Trace": "1"}, Sample: "always"}), // debug header
		mustRule(t, RuleSpec{Hosts: []string{"*.internal.test"}, Sample: "ratio", Ratio: 0}),      // internal hosts
		mustRule(t, RuleSpec{Path: "/**", Sample: "always"}),                                      // everything else
	)
	tests := []struct {
		name string
		req  *http.Request
		want Decision
	}{
		{"health check never, even with the debug header", newRequest("GET", "/health", "X-Debug-Trace", "1"), Decision{false, "rule:0"}},
		{"health check never", newRequest("GET", "/health"), Decision{false, "rule:0"}},
		{"health subpath is not the health path", newRequest("GET", "http://a.internal.test/health/live"), Decision{false, "rule:3"}},
		{"preflight", newRequest("OPTIONS", "/api"), Decision{false, "rule:1"}},
		{"debug header beats internal host", newRequest("GET", "http://a.internal.test/x", "X-Debug-Trace", "1"), Decision{true, "rule:2"}},
		{"internal host ratio 0", newRequest("GET", "http://a.internal.test/x"), Decision{false, "rule:3"}},
		{"catch-all", newRequest("POST", "http://shop.test/orders"), Decision{true, "rule:4"}},
		{"no request: fallback", nil, Decision{true, ReasonRatio}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.ShouldSample(&Params{TraceID: lowID(7), Request: tt.req}); got != tt.want {
				t.Errorf("ShouldSample = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestRulesHostWorkedOutOnce checks that later rules see the same host as
// the first rule that looked at it.
func TestRulesHostWorkedOutOnce(t *testing.T) {
	s := Rules(Never(),
		mustRule(t, RuleSpec{Hosts: []string{"admin.example.com"}, Sample: "never"}),
		mustRule(t, RuleSpec{Hosts: []string{"*.example.com"}, Path: "/x", Sample: "never"}),
		mustRule(t, RuleSpec{Hosts: []string{"shop.example.com"}, Sample: "always"}),
	)
	req := newRequest("GET", "http://shop.example.com:8080/y")
	if got := s.ShouldSample(&Params{Request: req}); got != (Decision{true, "rule:2"}) {
		t.Errorf("ShouldSample = %+v, want sampled by rule:2", got)
	}
}

func TestRulesFallback(t *testing.T) {
	s := Rules(Never(), mustRule(t, RuleSpec{Hosts: []string{"a.test"}, Sample: "always"}))
	if got := s.ShouldSample(&Params{Request: newRequest("GET", "http://b.test/")}); got != (Decision{false, ReasonNever}) {
		t.Errorf("no match = %+v, want the fallback's own decision", got)
	}
	if got := Rules(Always()).ShouldSample(&Params{Request: newRequest("GET", "/")}); got != (Decision{true, ReasonAlways}) {
		t.Errorf("no rules = %+v, want the fallback's own decision", got)
	}
}

func TestRulesRatioRule(t *testing.T) {
	s := Rules(Never(), mustRule(t, RuleSpec{Sample: "ratio", Ratio: 0.5}))
	req := newRequest("GET", "/")
	if got := s.ShouldSample(&Params{TraceID: lowID(0), Request: req}); got != (Decision{true, "rule:0"}) {
		t.Errorf("low id = %+v, want sampled by rule:0", got)
	}
	if got := s.ShouldSample(&Params{TraceID: lowID(1 << 63), Request: req}); got != (Decision{false, "rule:0"}) {
		t.Errorf("high id = %+v, want refused by rule:0", got)
	}
}

func TestRulesPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    func()
	}{
		{"nil fallback", func() { Rules(nil) }},
		{"zero Rule", func() { Rules(Always(), Rule{}) }},
		{"nil inner of RateLimited", func() { RateLimited(nil, 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.f()
		})
	}
}

// FuzzPathGlob checks that compiling and matching any pattern and path never
// panics, and that matching agrees with its definition in terms of
// path.Match.
func FuzzPathGlob(f *testing.F) {
	for _, seed := range [][2]string{
		{"/api/**", "/api/users/7"}, {"/health*", "/healthz"}, {"/v[0-9]/**", "/v1/x"},
		{`/a\*/**`, "/a*/b"}, {"/**", "/"}, {"/a/*/c", "/a/b/c"}, {"/[", "/"},
		{"/a[^x]b/**", "/a/b/c"}, {"/*/x/**", "/a/x/y"}, {"/a?/b/**", "/ax/b"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, p string) {
		pp, err := compilePath(pattern)
		if err != nil {
			return
		}
		got := pp.match(p)
		want, _ := path.Match(pattern, p)
		if g, ok := strings.CutSuffix(pattern, "/**"); ok {
			want, _ = path.Match(g, p)
			for i := range len(p) {
				if p[i] == '/' {
					if ok, _ := path.Match(g, p[:i]); ok {
						want = true
					}
				}
			}
		}
		if got != want {
			t.Errorf("%q matches %q = %v, want %v", pattern, p, got, want)
		}
	})
}

// FuzzHost checks that any configured host compiles or fails without
// panicking, and that a valid exact host matches a request for itself.
func FuzzHost(f *testing.F) {
	for _, seed := range []string{"api.example.com", "*.example.com", "[::1]", "10.0.0.1", "A.B.", "*"} {
		f.Add(seed, "api.example.com:80")
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		hp, err := compileHost(pattern)
		if err != nil {
			return
		}
		hp.match((&request{r: &http.Request{Host: host}}).hostname())
		if hp.wildcard {
			return
		}
		self := hp.name + ":80"
		if strings.Contains(hp.name, ":") {
			self = "[" + hp.name + "]:80"
		}
		if !hp.match((&request{r: &http.Request{Host: self}}).hostname()) {
			t.Errorf("host %q does not match request host %q", pattern, self)
		}
	})
}

func TestRulePathsMatchAny(t *testing.T) {
	t.Parallel()
	r, err := NewRule(RuleSpec{Path: "/health", Paths: []string{"/ready", "/live/**"}, Sample: "never"})
	if err != nil {
		t.Fatal(err)
	}
	s := Rules(Always(), r)
	for path, want := range map[string]bool{"/health": false, "/ready": false, "/live": false, "/live/x": false, "/orders": true} {
		req := httptest.NewRequest("GET", path, nil)
		if got := s.ShouldSample(&Params{Request: req}).Sample; got != want {
			t.Errorf("%s: sampled %v, want %v", path, got, want)
		}
	}
	if _, err := NewRule(RuleSpec{Paths: []string{"/ok", "bad"}, Sample: "never"}); err == nil {
		t.Error("a bad glob among Paths was accepted")
	}
}
