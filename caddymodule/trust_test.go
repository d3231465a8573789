package caddymodule

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

func TestParseTrust(t *testing.T) {
	valid := []struct {
		in      []string
		client  string
		trusted bool
	}{
		{nil, "203.0.113.9", true},
		{[]string{"all"}, "203.0.113.9", true},
		{[]string{"none"}, "127.0.0.1", false},
		{[]string{"10.0.0.0/8"}, "10.9.8.7", true},
		{[]string{"10.0.0.0/8"}, "11.0.0.1", false},
		{[]string{"192.0.2.7"}, "192.0.2.7", true},
		{[]string{"192.0.2.7"}, "192.0.2.8", false},
		{[]string{"private_ranges"}, "172.20.1.1", true},
		{[]string{"private_ranges"}, "::1", true},
		{[]string{"private_ranges"}, "8.8.8.8", false},
		{[]string{"2001:db8::/32"}, "2001:db8::1", true},
		{[]string{"10.0.0.0/8"}, "::ffff:10.1.1.1", true},
	}
	for _, tc := range valid {
		tp, err := parseTrust(tc.in)
		if err != nil {
			t.Fatalf("%v: %v", tc.in, err)
		}
		r := httptest.NewRequest("GET", "/", nil)
		ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: tc.client})
		if got := tp.trusted(r.WithContext(ctx)); got != tc.trusted {
			t.Errorf("trust %v, client %s: trusted %v, want %v", tc.in, tc.client, got, tc.trusted)
		}
	}
	invalid := map[string][]string{
		"not an address":  {"intranet"},
		"all with a CIDR": {"all", "10.0.0.0/8"},
		"bad CIDR":        {"10.0.0.0/33"},
	}
	for name, in := range invalid {
		if _, err := parseTrust(in); err == nil || !strings.Contains(err.Error(), "propagation trust") {
			t.Errorf("%s: error %v, want one naming propagation trust", name, err)
		}
	}
}

func TestUntrustedCallerStartsANewTrace(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		propagation {
			trust 10.0.0.0/8
		}
		sampler {
			ratio 0
			force_header X-Force-Trace
		}
		response_headers server_timing trace_id X-Trace-Id
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s`, c.URL(), up.hostport()))

	// 127.0.0.1 is not in 10.0.0.0/8: its debug flag, its forced sampling
	// and its trace are refused; nothing is sampled at ratio 0.
	res, _ := get(t, "/", map[string][]string{
		"B3":            {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d"},
		"X-Force-Trace": {"1"},
	})
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	h := up.last(t)
	traceID, _, flags := parseTraceparent(t, h.Get("Traceparent"))
	if traceID == "80f198ee56343ba864fe8b2a57d3eff7" {
		t.Errorf("the untrusted caller's trace was continued")
	}
	if flags != "2" {
		t.Errorf("flags 0%s: the untrusted debug flag or force header was honoured", flags)
	}
	if h.Get("X-B3-Flags") != "" || strings.Contains(h.Get("B3"), "80f198ee") {
		t.Errorf("the untrusted headers reached the upstream: %v", h)
	}
	if res.Header.Get("X-Trace-Id") != "" || res.Header.Get("Server-Timing") != "" {
		t.Errorf("response headers sent to an untrusted client: %v", res.Header)
	}

	// A sampled untrusted request records what the client claimed.
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		propagation {
			trust none
		}
		response_headers trace_id X-Trace-Id to_untrusted
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s`, c.URL(), up.hostport()))
	res, _ = get(t, "/", map[string][]string{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	if got := res.Header.Get("X-Trace-Id"); got == "" || got == "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("X-Trace-Id %q, want our new trace (to_untrusted)", got)
	}
	spans := c.WaitSpans(t, 2, 5*time.Second)
	server, _ := spansByKind(t, spans, spans[0].TraceID)
	if server.ParentID != nil {
		t.Errorf("SERVER span has parent %s from an untrusted caller", *server.ParentID)
	}
	if server.Tags["untrusted.trace_id"] != "0af7651916cd43dd8448eb211c80319c" || server.Tags["untrusted.span_id"] != "b7ad6b7169203331" {
		t.Errorf("SERVER tags %v, want the untrusted ids recorded", server.Tags)
	}
}

func TestTrustHonoursTrustedProxies(t *testing.T) {
	up := newUpstream(t)
	startCaddyWith(t, `	servers {
		trusted_proxies static 127.0.0.1/32
	}`, fmt.Sprintf(`	tracingproxy {
		propagation {
			trust 10.0.0.0/8
		}
		exporter log
	}
	reverse_proxy %s`, up.hostport()))

	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	// Behind the trusted proxy 127.0.0.1, the client is 10.1.2.3: trusted.
	get(t, "/", map[string][]string{"Traceparent": {caller}, "X-Forwarded-For": {"10.1.2.3"}})
	if id, _, _ := parseTraceparent(t, up.last(t).Get("Traceparent")); id != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("client 10.1.2.3 behind a trusted proxy was not trusted")
	}
	// The client 203.0.113.5 is not.
	get(t, "/", map[string][]string{"Traceparent": {caller}, "X-Forwarded-For": {"203.0.113.5"}})
	if id, _, _ := parseTraceparent(t, up.last(t).Get("Traceparent")); id == "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("client 203.0.113.5 was trusted")
	}
}
