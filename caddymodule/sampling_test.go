package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

func TestKeepErrorsAndSlowWhenNotHeadSampled(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	dead := deadPort(t)
	startCaddy(t, fmt.Sprintf(`	route /dead* {
		tracingproxy {
			sampler {
				ratio 0
				keep_errors
			}
			exporter zipkin %[1]s {
				flush_interval 20ms
			}
		}
		reverse_proxy %[3]s
	}
	route {
		tracingproxy {
			sampler {
				ratio 0
				keep_errors
				keep_slower_than 150ms
			}
			exporter zipkin %[1]s {
				flush_interval 20ms
			}
		}
		reverse_proxy %[2]s
	}`, c.URL(), up.hostport(), dead))

	// A fast 200 is not kept, and still propagates "not sampled".
	res, _ := get(t, "/fast", nil)
	if res.StatusCode != 200 {
		t.Fatalf("fast: %d", res.StatusCode)
	}
	_, _, flags := parseTraceparent(t, up.last(t).Get("Traceparent"))
	if flags != "2" {
		t.Errorf("fast request propagated flags 0%s, want 02 (not sampled)", flags)
	}
	// A 5xx from the upstream, a slow request, and a dead upstream are.
	if res, _ := get(t, "/boom?status=503", nil); res.StatusCode != 503 {
		t.Fatalf("boom: %d, want the upstream's 503", res.StatusCode)
	}
	if res, _ := get(t, "/slow?sleep=200ms", nil); res.StatusCode != 200 {
		t.Fatalf("slow: %d", res.StatusCode)
	}
	if res, _ := get(t, "/dead", nil); res.StatusCode != http.StatusBadGateway {
		t.Fatalf("dead: %d, want 502", res.StatusCode)
	}

	spans := c.WaitSpans(t, 6, 5*time.Second)
	reasons := map[string]string{}
	for _, s := range spans {
		if *s.Kind == "SERVER" {
			reasons[s.Tags["http.path"]] = s.Tags["sampling.reason"]
		}
	}
	want := map[string]string{"/boom": "error", "/slow": "slow", "/dead": "error"}
	for path, reason := range want {
		if reasons[path] != reason {
			t.Errorf("%s: sampling.reason %q, want %q (all: %v)", path, reasons[path], reason, reasons)
		}
	}
	if _, ok := reasons["/fast"]; ok {
		t.Errorf("the fast 200 was exported: %v", reasons)
	}
	flushQueues(t) // whatever else was enqueued has now arrived
	if n := len(c.Spans()); n != 6 {
		t.Errorf("collector has %d spans, want the 6 of the three kept requests", n)
	}
}

func TestSamplingRulesAndForceHeader(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		sampler {
			ratio 1
			rule path /health /ready never
			rule method POST path /orders/** ratio 0
			force_header X-Force-Trace
		}
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s`, c.URL(), up.hostport()))

	get(t, "/health", nil)
	get(t, "/ready", nil)
	get(t, "/health", map[string][]string{"X-Force-Trace": {"1"}})
	get(t, "/orders", nil)
	spans := c.WaitSpans(t, 4, 5*time.Second)
	got := map[string]string{}
	for _, s := range spans {
		if *s.Kind == "SERVER" {
			got[s.Tags["http.path"]] += s.Tags["sampling.reason"] + ";"
		}
	}
	if got["/health"] != "forced;" || got["/orders"] != "ratio;" || got["/ready"] != "" {
		t.Errorf("sampled paths and reasons %v, want /health forced once, /orders ratio, /ready none", got)
	}
}

func TestSamplingDecisionsOnMetricsEndpoint(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		sample_ratio 0
		exporter log
	}
	reverse_proxy %s`, up.hostport()))
	get(t, "/", nil)
	get(t, "/", map[string][]string{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	res, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, want := range []string{
		`tracingproxy_sampling_decisions_total{reason="ratio",sampled="false"}`,
		`tracingproxy_sampling_decisions_total{reason="parent",sampled="true"}`,
		`tracingproxy_exporter_records_enqueued_total{exporter="log"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestBadSamplerConfigIsRefused(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"rule without verdict", "tracingproxy {\n\tsampler {\n\t\trule path /x\n\t}\n}", "end the rule with always, never or ratio"},
		{"rule verdict not last", "tracingproxy {\n\tsampler {\n\t\trule never path /x\n\t}\n}", "never must come last"},
		{"rule header incomplete", "tracingproxy {\n\tsampler {\n\t\trule header X-A\n\t}\n}", "header needs a name and a value"},
		{"unknown sampler option", "tracingproxy {\n\tsampler {\n\t\trate 3\n\t}\n}", `unknown sampler option "rate"`},
		{"ratio not a number", "tracingproxy {\n\tsampler {\n\t\tratio half\n\t}\n}", `ratio must be a number, got "half"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, json, want string }{
		{"ratio out of range", `{"sampler":{"ratio":2}}`, "sampler ratio: ratio must be between 0 and 1, got 2"},
		{"both ratios", `{"sample_ratio":0.5,"sampler":{"ratio":0.1}}`, "sample_ratio and sampler ratio are both set"},
		{"bad parent", `{"sampler":{"parent":"obey"}}`, `sampler parent must be respect or ignore, got "obey"`},
		{"negative cap", `{"sampler":{"max_per_second":-1}}`, "sampler max_per_second must be positive, got -1"},
		{"negative keep cap", `{"sampler":{"keep_max_per_second":-2}}`, "sampler keep_max_per_second must be positive, got -2"},
		{"bad rule ratio", `{"sampler":{"rules":[{"sample":"ratio","ratio":1.5}]}}`, "sampler rule 0: rule: ratio must be between 0 and 1, got 1.5"},
		{"bad rule glob", `{"sampler":{"rules":[{"paths":["health"],"sample":"never"}]}}`, `sampler rule 0: rule: path must start with "/"`},
		{"bad force header", `{"sampler":{"force_header":"X Force"}}`, `sampler force_header: "X Force" is not a valid header name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.json)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// A rule decides new traces only, unless it says override_parent.
func TestRuleOverrideParent(t *testing.T) {
	const sampledCaller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tc := range []struct {
		rule    string
		sampled bool
	}{
		{"rule path /health never", true},
		{"rule path /health never override_parent", false},
	} {
		h, err := provision(t, fmt.Sprintf(`{"sampler":{"rules":[%s]},"exporters":[{"type":"log"}]}`, ruleJSON(t, tc.rule)))
		if err != nil {
			t.Fatal(err)
		}
		ex, err := h.Explain("GET", "/health", "127.0.0.1:1", http.Header{"Traceparent": {sampledCaller}})
		if err != nil {
			t.Fatal(err)
		}
		if ex.Sampled != tc.sampled {
			t.Errorf("%s with a sampled caller: sampled %v, want %v (reason %s)", tc.rule, ex.Sampled, tc.sampled, ex.Reason)
		}
	}
}

// ruleJSON adapts one Caddyfile rule line to its JSON.
func ruleJSON(t *testing.T, line string) string {
	t.Helper()
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("tracingproxy {\n\tsampler {\n\t\t" + line + "\n\t}\n}")); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(h.Sampler.Rules[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
