package caddymodule

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracingproxy/tracingproxy/internal/otlptest"
)

// otlpSpans indexes the accepted spans of one trace by kind, failing unless
// there is exactly one SERVER and one CLIENT span.
func otlpSpans(t *testing.T, spans []otlptest.Span, traceID string) (server, client otlptest.Span) {
	t.Helper()
	ns, nc := 0, 0
	for _, s := range spans {
		if hex.EncodeToString(s.TraceId) != traceID {
			continue
		}
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_SERVER:
			server, ns = s, ns+1
		case tracepb.Span_SPAN_KIND_CLIENT:
			client, nc = s, nc+1
		}
	}
	if ns != 1 || nc != 1 {
		t.Fatalf("trace %s: %d SERVER and %d CLIENT spans, want 1 and 1", traceID, ns, nc)
	}
	return server, client
}

// attrMap returns the attributes by key.
func attrMap(kvs []*commonpb.KeyValue) map[string]*commonpb.AnyValue {
	m := make(map[string]*commonpb.AnyValue, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// checkAttrs checks string (string values) and int (int64 values)
// attributes, and that none of absent is there.
func checkAttrs(t *testing.T, what string, kvs []*commonpb.KeyValue, want map[string]any, absent ...string) {
	t.Helper()
	got := attrMap(kvs)
	for k, w := range want {
		v, ok := got[k]
		switch w := w.(type) {
		case string:
			if !ok || v.GetValue() == nil || v.GetStringValue() != w {
				t.Errorf("%s %s = %v, want the string %q", what, k, v, w)
			}
		case int:
			if iv, isInt := v.GetValue().(*commonpb.AnyValue_IntValue); !ok || !isInt || iv.IntValue != int64(w) {
				t.Errorf("%s %s = %v, want the int %d", what, k, v, w)
			}
		}
	}
	for _, k := range absent {
		if v, ok := got[k]; ok {
			t.Errorf("%s has %s = %v", what, k, v)
		}
	}
}

// A W3C caller through a real Caddy to a real OpenTelemetry collector, on
// every transport: the collector decodes the spans strictly, and they carry
// the caller's trace, tracestate and parent, the upstream's context, the
// stable HTTP conventions, events for the connection phases, and the
// resource naming the proxy.
func TestOTLPEndToEnd(t *testing.T) {
	creds, ca := otlptest.TLS(t)
	for _, tc := range []struct {
		name string
		new  func(t testing.TB) *otlptest.Collector
		url  func(c *otlptest.Collector) string
		opts string
	}{
		{"http protobuf", otlptest.NewHTTP, (*otlptest.Collector).URL, ""},
		{"http json gzip", otlptest.NewHTTP, func(c *otlptest.Collector) string { return "http://" + c.Addr() }, "encoding json\n\t\t\tcompression gzip"},
		{"grpc", func(t testing.TB) *otlptest.Collector { return otlptest.NewGRPC(t) }, (*otlptest.Collector).URL, "header X-Scope-OrgID tenant-1"},
		{"grpc gzip", func(t testing.TB) *otlptest.Collector { return otlptest.NewGRPC(t) }, (*otlptest.Collector).URL, "compression gzip"},
		{"grpcs", func(t testing.TB) *otlptest.Collector { return otlptest.NewGRPC(t, creds) },
			func(c *otlptest.Collector) string { return "grpcs://" + c.Addr() }, "tls ca " + ca},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.new(t)
			up := newUpstream(t)
			startCaddy(t, fmt.Sprintf(`	tracingproxy {
		service_name orders-legacy
		instance proxy-1
		record_request_headers User-Agent X-Tenant
		exporter otlp %s {
			flush_interval 20ms
			flush_timeout 500ms
			%s
		}
	}
	reverse_proxy %s`, tc.url(c), tc.opts, up.hostport()))

			const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			before := time.Now()
			res, _ := get(t, "/orders/42?secret=1", map[string][]string{
				"Traceparent": {caller},
				"Tracestate":  {"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
				"User-Agent":  {"legacy-client/1.0"},
				"X-Tenant":    {"acme"},
			})
			after := time.Now()
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			traceID, upstreamParent, _ := parseTraceparent(t, up.last(t).Get("Traceparent"))
			server, client := otlpSpans(t, c.WaitSpans(t, 2, 10*time.Second), traceID)

			checkAttrs(t, "resource", server.Resource.Attributes, map[string]any{
				"service.name": "orders-legacy", "service.instance.id": "proxy-1",
				"telemetry.sdk.name": "tracingproxy", "telemetry.sdk.language": "go", "telemetry.sdk.version": Version,
			})
			if server.Scope.GetName() != "tracingproxy" || server.Scope.GetVersion() != Version {
				t.Errorf("scope %v", server.Scope)
			}
			if hex.EncodeToString(server.ParentSpanId) != "00f067aa0ba902b7" {
				t.Errorf("SERVER parent %x, want the caller's span", server.ParentSpanId)
			}
			if string(client.ParentSpanId) != string(server.SpanId) {
				t.Errorf("CLIENT parent %x, want the SERVER span %x", client.ParentSpanId, server.SpanId)
			}
			if hex.EncodeToString(client.SpanId) != upstreamParent {
				t.Errorf("CLIENT span %x, want the parent the upstream received, %s", client.SpanId, upstreamParent)
			}
			for _, s := range []otlptest.Span{server, client} {
				if s.TraceState != "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" {
					t.Errorf("%v tracestate %q, want the caller's", s.Kind, s.TraceState)
				}
				start, end := time.Unix(0, int64(s.StartTimeUnixNano)), time.Unix(0, int64(s.EndTimeUnixNano))
				if start.Before(before) || end.After(after) || end.Before(start) {
					t.Errorf("%v [%v, %v] outside the request [%v, %v]", s.Kind, start, end, before, after)
				}
				if s.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
					t.Errorf("%v status %v on a 200", s.Kind, s.Status)
				}
			}
			// Sampled (the caller's flag), and whether the parent is remote.
			if server.Flags != 0x301 || client.Flags != 0x101 {
				t.Errorf("flags SERVER %#x CLIENT %#x, want 0x301 and 0x101", server.Flags, client.Flags)
			}
			upHost, upPort, _ := net.SplitHostPort(up.hostport())
			port, _ := strconv.Atoi(upPort)
			checkAttrs(t, "SERVER", server.Attributes, map[string]any{
				"http.request.method": "GET", "url.path": "/orders/42", "url.scheme": "http",
				"server.address": "127.0.0.1", "server.port": httpPort, "http.response.status_code": 200,
				"http.route": "/orders/{id}", "client.address": "127.0.0.1", "network.peer.address": "127.0.0.1",
				"user_agent.original": "legacy-client/1.0", "http.response.body.size": 19,
			}, "url.query", "http.method", "http.path", "http.host", "http.request.header.user-agent")
			if v := attrMap(server.Attributes)["http.request.header.x-tenant"].GetArrayValue().GetValues(); len(v) != 1 || v[0].GetStringValue() != "acme" {
				t.Errorf("SERVER http.request.header.x-tenant %v, want [acme]", v)
			}
			checkAttrs(t, "CLIENT", client.Attributes, map[string]any{
				"http.request.method": "GET", "server.address": upHost, "server.port": port,
				"http.response.status_code": 200, "http.request.resend_count": 0,
			}, "peer.address", "error.type")
			events := map[string]bool{}
			for _, e := range client.Events {
				events[e.Name] = true
				if e.TimeUnixNano < client.StartTimeUnixNano || e.TimeUnixNano > client.EndTimeUnixNano {
					t.Errorf("event %s at %d outside the CLIENT span", e.Name, e.TimeUnixNano)
				}
			}
			if !events["ws"] || !events["wr"] {
				t.Errorf("CLIENT events %v, want ws and wr", events)
			}
			if tc.name == "grpc" {
				if md := c.Headers()[0]; len(md["x-scope-orgid"]) != 1 || md["x-scope-orgid"][0] != "tenant-1" {
					t.Errorf("metadata %v, want x-scope-orgid tenant-1", md)
				}
			}
		})
	}
}

// The OpenTelemetry HTTP status rules end to end: a 404 leaves the SERVER
// span unset and makes the CLIENT span an error; a 503 is an error on
// both.
func TestOTLPStatusRulesEndToEnd(t *testing.T) {
	c := otlptest.NewGRPC(t)
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter otlp %s {
			flush_interval 20ms
			flush_timeout 500ms
		}
	}
	reverse_proxy %s`, c.URL(), up.hostport()))
	want := map[int][2]tracepb.Status_StatusCode{
		404: {tracepb.Status_STATUS_CODE_UNSET, tracepb.Status_STATUS_CODE_ERROR},
		503: {tracepb.Status_STATUS_CODE_ERROR, tracepb.Status_STATUS_CODE_ERROR},
	}
	for status := range want {
		get(t, fmt.Sprintf("/x?status=%d", status), nil)
	}
	spans := c.WaitSpans(t, 4, 10*time.Second)
	for _, s := range spans {
		st := int(attrMap(s.Attributes)["http.response.status_code"].GetIntValue())
		w, ok := want[st]
		if !ok {
			t.Fatalf("span with status %d", st)
		}
		i := 0
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			i = 1
		}
		if s.Status.GetCode() != w[i] {
			t.Errorf("%v %d: status %v, want %v", s.Kind, st, s.Status.GetCode(), w[i])
		}
		if et := attrMap(s.Attributes)["error.type"].GetStringValue(); (w[i] == tracepb.Status_STATUS_CODE_ERROR) != (et == strconv.Itoa(st)) {
			t.Errorf("%v %d: error.type %q", s.Kind, st, et)
		}
	}
}
