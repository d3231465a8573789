package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	dir := t.TempDir()
	cf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cf, []byte(`:8080 {
	tracingproxy {
		propagation {
			extract w3c b3 sw8
			inject w3c b3 sw8
			trust 10.0.0.0/8
		}
		sampler {
			ratio 0
			rule path /health never
		}
		response_headers server_timing trace_id X-Trace-Id
	}
	reverse_proxy 127.0.0.1:9000
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	const tp = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name, config, client, path string
		hdrs                       []string
		want, notWant              []string
	}{
		{"W3C caller, defaults", "", "", "/", []string{tp},
			[]string{"extracted:  w3c: trace 4bf92f3577b34da6a3ce929d0e0e4736, caller span 00f067aa0ba902b7, sampling accept",
				"says sampled (reason parent)", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-", "x-b3-traceid: 4bf92f3577b34da6a3ce929d0e0e4736"},
			[]string{"00f067aa0ba902b7-01\n    x-b3"}},
		{"64-bit B3 caller", "", "", "/", []string{"X-B3-TraceId: a3ce929d0e0e4736", "X-B3-SpanId: 00f067aa0ba902b7", "X-B3-Sampled: 0"},
			[]string{"extracted:  b3: trace 0000000000000000a3ce929d0e0e4736", "(64-bit trace id)", "says not sampled (reason parent)",
				"x-b3-traceid: a3ce929d0e0e4736\n", "x-b3-sampled: 0", "traceparent: 00-0000000000000000a3ce929d0e0e4736-"}, nil},
		{"malformed traceparent falls back to b3", "", "", "/", []string{"traceparent: 00-XYZ-00f067aa0ba902b7-01", "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
			[]string{"malformed:  w3c", "extracted:  b3: trace 80f198ee56343ba864fe8b2a57d3eff7"}, []string{"00-XYZ"}},
		{"untrusted client", cf, "203.0.113.7:4000", "/", []string{tp},
			[]string{"the client is NOT trusted", "extracted:  nothing: a new trace starts", "client receives (added by tracingproxy):\n    (none)"},
			[]string{"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736"}},
		{"trusted client, config rules", cf, "10.0.0.9:4000", "/health", []string{tp},
			[]string{"sampling accept", "says sampled (reason parent)", "sw8: 1-", "server-timing: trace;desc=00-4bf92f3577b34da6a3ce929d0e0e4736-", "x-trace-id: 4bf92f3577b34da6a3ce929d0e0e4736"}, nil},
		{"new root hits a never rule", cf, "10.0.0.9:4000", "/health", nil,
			[]string{"extracted:  nothing", "says not sampled (reason rule:0)", "traceparent: 00-"}, nil},
		{"sampling-only b3", "", "", "/", []string{"b3: 0"},
			[]string{"a sampling decision only (deny)", "says not sampled (reason parent)"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client
			if client == "" {
				client = "127.0.0.1:5000"
			}
			var out bytes.Buffer
			if err := explain(&out, tc.config, "", tc.hdrs, client, "GET", tc.path); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			_, sent, _ := strings.Cut(out.String(), "upstream receives:")
			for _, w := range tc.notWant {
				if strings.Contains(sent, w) {
					t.Errorf("what the upstream receives has %q:\n%s", w, out.String())
				}
			}
		})
	}
	var out bytes.Buffer
	if err := explain(&out, "", "", []string{"no colon"}, "127.0.0.1:1", "GET", "/"); err == nil {
		t.Error("a header without a colon was accepted")
	}
	if err := explain(&out, filepath.Join(dir, "missing"), "", nil, "127.0.0.1:1", "GET", "/"); err == nil {
		t.Error("a missing config file was accepted")
	}
}
