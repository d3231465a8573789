package caddymodule

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestInjectPreserveAnswersInTheCallersFormats(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		propagation {
			extract w3c b3 jaeger
			inject preserve
			default b3single
			clear X-Internal-Secret
		}
		exporter log
	}
	reverse_proxy %s`, up.hostport()))

	tests := []struct {
		name     string
		hdr      map[string][]string
		want     []string // headers the upstream must get
		mustNot  []string // headers it must not get
		traceHex string
	}{
		{"w3c only", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
			[]string{"Traceparent"}, []string{"X-B3-Traceid", "B3", "Uber-Trace-Id"}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"jaeger only", map[string][]string{"Uber-Trace-Id": {"4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"}},
			[]string{"Uber-Trace-Id"}, []string{"Traceparent", "X-B3-Traceid", "B3"}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"w3c and b3", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			"X-B3-Traceid": {"4bf92f3577b34da6a3ce929d0e0e4736"}, "X-B3-Spanid": {"00f067aa0ba902b7"}},
			[]string{"Traceparent", "X-B3-Traceid"}, []string{"B3", "Uber-Trace-Id"}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"nothing: the default", nil, []string{"B3"}, []string{"Traceparent", "X-B3-Traceid", "Uber-Trace-Id"}, ""},
		{"malformed w3c: the default", map[string][]string{"Traceparent": {"garbage"}},
			[]string{"B3"}, []string{"Traceparent", "X-B3-Traceid", "Uber-Trace-Id"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string][]string{"X-Internal-Secret": {"s3cret"}}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			get(t, "/", hdr)
			h := up.last(t)
			for _, k := range tc.want {
				if h.Get(k) == "" {
					t.Errorf("upstream lacks %s: %v", k, h)
				} else if tc.traceHex != "" && !strings.Contains(h.Get(k), tc.traceHex) {
					t.Errorf("%s %q does not carry trace %s", k, h.Get(k), tc.traceHex)
				}
			}
			for _, k := range tc.mustNot {
				if v := h.Get(k); v != "" {
					t.Errorf("upstream got %s: %q", k, v)
				}
			}
			if v := h.Get("X-Internal-Secret"); v != "" {
				t.Errorf("cleared header reached the upstream: %q", v)
			}
		})
	}
}

func TestRequestIDAndCustomAndBaggage(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		propagation {
			extract custom w3c jaeger baggage
			inject w3c jaeger custom baggage
			custom trace_id X-Trace-ID span_id X-Span-ID sampled X-Sampled
			request_id generate
		}
		exporter log
	}
	reverse_proxy %s`, up.hostport()))

	// An in-house caller: UUID trace id, short span id.
	get(t, "/", map[string][]string{
		"X-Trace-Id":   {"4bf92f35-77b3-4da6-a3ce-929d0e0e4736"},
		"X-Span-Id":    {"00f067aa0ba902b7"},
		"X-Sampled":    {"1"},
		"X-Request-Id": {"req-123"},
	})
	h := up.last(t)
	if id, _, _ := parseTraceparent(t, h.Get("Traceparent")); id != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("custom UUID trace id not continued into W3C: %s", id)
	}
	if got := h.Get("X-Trace-Id"); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("custom trace header out %q", got)
	}
	if got := h.Get("X-Request-Id"); got != "req-123" {
		t.Errorf("X-Request-ID %q, want it passed through unchanged", got)
	}

	// A Jaeger caller with baggage in both carriers: one baggage, written
	// in every baggage carrier.
	get(t, "/", map[string][]string{
		"Uber-Trace-Id":  {"4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"},
		"Uberctx-Tenant": {"gold"},
		"Baggage":        {"user=alice"},
	})
	h = up.last(t)
	b := h.Get("Baggage")
	if !strings.Contains(b, "user=alice") || !strings.Contains(b, "tenant=gold") {
		t.Errorf("baggage %q, want W3C and Jaeger members merged", b)
	}
	if got := h.Get("Uberctx-User"); got != "alice" {
		t.Errorf("uberctx-user %q, want the W3C member written as Jaeger baggage", got)
	}

	// No request id: one is generated.
	get(t, "/", nil)
	if got := up.last(t).Get("X-Request-Id"); len(got) != 36 {
		t.Errorf("generated X-Request-ID %q, want a UUID", got)
	}
}

func TestBadPropagationConfig(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"custom without headers", `{"propagation":{"extract":["custom"]}}`, "propagation extract: format custom needs its headers"},
		{"preserve with others", `{"propagation":{"inject":["preserve","w3c"]}}`, "preserve must be the only inject value"},
		{"default without preserve", `{"propagation":{"inject":["w3c"],"default":["b3"]}}`, "propagation default only applies with inject preserve"},
		{"bad default", `{"propagation":{"inject":["preserve"],"default":["b5"]}}`, `propagation default: unknown propagation format "b5"`},
		{"bad clear", `{"propagation":{"clear":["X Bad"]}}`, `propagation clear: "X Bad" is not a valid header name`},
		{"bad request id header", `{"propagation":{"request_id":{"header":"X Req"}}}`, "not a valid HTTP field name"},
		{"bad trust", `{"propagation":{"trust":["intranet"]}}`, "propagation trust:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.json)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in, want string }{
		{"custom without trace_id", "tracingproxy {\n\tpropagation {\n\t\tcustom span_id X-S\n\t}\n}", "propagation custom needs trace_id <header>"},
		{"custom unknown key", "tracingproxy {\n\tpropagation {\n\t\tcustom trace X-T\n\t}\n}", `unknown propagation custom value "trace"`},
		{"request_id unknown", "tracingproxy {\n\tpropagation {\n\t\trequest_id make\n\t}\n}", `unknown request_id value "make"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestBaggagePrefixesCrossFormats(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		propagation {
			extract w3c baggage
			inject w3c baggage
			baggage X-Ctx-
		}
		exporter log
	}
	reverse_proxy %s`, up.hostport()))
	get(t, "/", map[string][]string{
		"Traceparent":  {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"X-Ctx-Tenant": {"gold"},
		"Baggage":      {"user=alice"},
	})
	h := up.last(t)
	if b := h.Get("Baggage"); !strings.Contains(b, "user=alice") || !strings.Contains(b, "tenant=gold") {
		t.Errorf("baggage %q, want the W3C member and the X-Ctx- header merged", b)
	}
	if got := h.Get("X-Ctx-User"); got != "alice" {
		t.Errorf("X-Ctx-User %q, want the W3C member written with the prefix", got)
	}
	if _, err := provision(t, `{"propagation":{"baggage":["X-"]}}`); err == nil || !strings.Contains(err.Error(), "propagation baggage:") {
		t.Errorf("a prefix covering X-B3-* gave %v, want it refused", err)
	}
}
