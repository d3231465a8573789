package caddymodule

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

func TestPrivacyDefaults(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		max_tag_length 64
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s`, c.URL(), up.hostport()))

	long := "/" + strings.Repeat("a", 200)
	get(t, long+"?token=s3cret", map[string][]string{"Authorization": {"Bearer s3cret"}, "Cookie": {"session=s3cret"}})
	for _, s := range c.WaitSpans(t, 2, 5*time.Second) {
		for k, v := range s.Tags {
			if strings.Contains(v, "s3cret") || strings.Contains(k, "authorization") || strings.Contains(k, "cookie") {
				t.Errorf("%s span tag %s=%q leaks a secret", *s.Kind, k, v)
			}
			if len(v) > 64 {
				t.Errorf("%s span tag %s is %d bytes, max_tag_length is 64", *s.Kind, k, len(v))
			}
		}
		if p := s.Tags["http.path"]; p != long[:64] {
			t.Errorf("http.path %q, want the path cut at 64 bytes", p)
		}
	}
}

func TestPrivacyOptIn(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		record_query
		record_request_headers Authorization X-Tenant
		record_response_headers X-Upstream
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s`, c.URL(), up.hostport()))

	get(t, "/q?debug=1", map[string][]string{"Authorization": {"Bearer abc"}, "X-Tenant": {"gold"}})
	spans := c.WaitSpans(t, 2, 5*time.Second)
	server, _ := spansByKind(t, spans, spans[0].TraceID)
	want := map[string]string{
		"http.query":                        "debug=1",
		"http.request.header.authorization": "Bearer abc",
		"http.request.header.x-tenant":      "gold",
		"http.response.header.x-upstream":   "yes",
	}
	for k, v := range want {
		if server.Tags[k] != v {
			t.Errorf("SERVER tag %s=%q, want %q (tags %v)", k, server.Tags[k], v, server.Tags)
		}
	}
}

func TestBadPrivacyAndExporterOptions(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"bad header name", `{"record_request_headers":["X Bad"]}`, `record_request_headers: "X Bad" is not a valid header name`},
		{"negative tag length", `{"max_tag_length":-1}`, "max_tag_length must not be negative"},
		{"headers on log", `{"exporters":[{"type":"log","headers":{"A":"b"}}]}`, "header, use_env_proxy and compression are options of network exporters"},
		{"bad zipkin header", `{"exporters":[{"type":"zipkin","url":"http://h/api/v2/spans","headers":{"X Bad":"v"}}]}`, `zipkin header name "X Bad"`},
		{"headers on skywalking grpc", `{"exporters":[{"type":"skywalking","url":"grpc://127.0.0.1:1","headers":{"A":"b"}}]}`, "skywalking headers need an http(s):// url"},
		{"gzip on skywalking", `{"exporters":[{"type":"skywalking","url":"http://127.0.0.1:1","compression":"gzip"}]}`, "compression is an option of the zipkin and otlp exporters"},
		{"tls on log", `{"exporters":[{"type":"log","tls":{"ca":"x"}}]}`, "tls is an option of network exporters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.json)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestZipkinExporterHeadersWithPlaceholders(t *testing.T) {
	t.Setenv("TP_TEST_ZIPKIN_TOKEN", "t0k3n")
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			flush_interval 20ms
			header Authorization "Bearer {env.TP_TEST_ZIPKIN_TOKEN}"
			compression gzip
		}
	}
	reverse_proxy %s`, c.URL(), up.hostport()))
	get(t, "/", nil)
	c.WaitSpans(t, 2, 5*time.Second)
	acc, _ := c.Requests()
	h := acc[0].Header
	if got := h.Get("Authorization"); got != "Bearer t0k3n" {
		t.Errorf("collector got Authorization %q, want the placeholder replaced", got)
	}
	if h.Get("Content-Encoding") != "gzip" || h.Get("B3") != "0" || h.Get("Traceparent") != "" {
		t.Errorf("exporter request headers %v: want gzip, b3: 0 and no trace context", h)
	}
}
