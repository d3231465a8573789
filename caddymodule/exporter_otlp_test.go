package caddymodule

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// Every otlp option is checked at load, naming the option and what it
// allows.
func TestOTLPBadConfigIsRefusedNamingTheOption(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"no scheme", `{"exporters":[{"type":"otlp","url":"127.0.0.1:4318"}]}`, `exporter otlp url must be http(s)://host[:port][/path] or grpc(s)://host:port, got "127.0.0.1:4318"`},
		{"ftp", `{"exporters":[{"type":"otlp","url":"ftp://h/v1/traces"}]}`, `exporter otlp url must be http(s)://host[:port][/path] or grpc(s)://host:port`},
		{"grpc with a path", `{"exporters":[{"type":"otlp","url":"grpc://h:4317/v1/traces"}]}`, `exporter otlp url: a grpc(s) url is host:port only`},
		{"credentials in the url, redacted", `{"exporters":[{"type":"otlp","url":"http://me:secret@h:4318"}]}`, `got "http://redacted@h:4318"`},
		{"bad encoding", `{"exporters":[{"type":"otlp","url":"http://h:4318","encoding":"thrift"}]}`, `exporter otlp encoding must be protobuf or json, got "thrift"`},
		{"json over grpc", `{"exporters":[{"type":"otlp","url":"grpc://h:4317","encoding":"json"}]}`, `exporter otlp encoding json is for http(s) urls`},
		{"encoding on zipkin", `{"exporters":[{"type":"zipkin","url":"http://h/api/v2/spans","encoding":"json"}]}`, `exporter zipkin: encoding is an option of the otlp and kafka exporters`},
		{"bad compression", `{"exporters":[{"type":"otlp","url":"http://h:4318","compression":"br"}]}`, `exporter otlp: compression must be gzip or none, got "br"`},
		{"bad header name", `{"exporters":[{"type":"otlp","url":"http://h:4318","headers":{"Bad Name":"x"}}]}`, `exporter otlp header name "Bad Name" is not a valid HTTP header name`},
		{"reserved metadata", `{"exporters":[{"type":"otlp","url":"grpc://h:4317","headers":{"grpc-timeout":"1S"}}]}`, `exporter otlp header name "grpc-timeout" is not valid gRPC metadata`},
		{"metadata value", `{"exporters":[{"type":"otlp","url":"grpc://h:4317","headers":{"authorization":"Bearer \u00e9"}}]}`, `exporter otlp header "authorization" has a value that is not printable ASCII`},
		{"tls without https", `{"exporters":[{"type":"otlp","url":"http://h:4318","tls":{"insecure_skip_verify":true}}]}`, `exporter otlp tls needs an https:// or grpcs:// url`},
		{"missing ca file", `{"exporters":[{"type":"otlp","url":"grpcs://h:4317","tls":{"ca":"/nonexistent/ca.pem"}}]}`, `exporter otlp tls ca:`},
		{"token on otlp", `{"exporters":[{"type":"otlp","url":"http://h:4318","token":"x"}]}`, "instance, token and keepalive are SkyWalking options"},
		{"max_traces on otlp", `{"exporters":[{"type":"otlp","url":"http://h:4318","max_traces":5}]}`, "max_traces and max_bytes are options of the memory exporter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.json)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(tc.json, "secret") && strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the URL's password", err)
			}
		})
	}
}

func TestOTLPCaddyfile(t *testing.T) {
	var h Handler
	in := `tracingproxy {
	exporter otlp https://tempo.example:4318/v1/traces {
		encoding json
		compression gzip
		header Authorization "Bearer {env.OTLP_TOKEN}"
		tls ca /etc/ca.pem server_name tempo
		timeout 2s
		queue_size 100
	}
	exporter otlp grpc://collector:4317
}`
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	if len(h.Exporters) != 2 {
		t.Fatalf("%d exporters", len(h.Exporters))
	}
	a, b := h.Exporters[0], h.Exporters[1]
	if a.Type != "otlp" || a.URL != "https://tempo.example:4318/v1/traces" || a.Encoding != "json" || a.Compression != "gzip" ||
		a.Headers["Authorization"] != "Bearer {env.OTLP_TOKEN}" || a.TLS == nil || a.TLS.CA != "/etc/ca.pem" || a.TLS.ServerName != "tempo" || a.QueueSize != 100 {
		t.Errorf("first exporter %+v", a)
	}
	if b.Type != "otlp" || b.URL != "grpc://collector:4317" || b.Encoding != "" {
		t.Errorf("second exporter %+v", b)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"no url", "tracingproxy {\n\texporter otlp\n}", "exporter otlp needs a url"},
		{"encoding without a value", "tracingproxy {\n\texporter otlp http://h:4318 {\n\t\tencoding\n\t}\n}", "wrong argument count"},
		{"unknown option", "tracingproxy {\n\texporter otlp http://h:4318 {\n\t\tformat json\n\t}\n}", `unknown exporter option "format" (allowed: batch_size, flush_interval, queue_size, queue_bytes, drop, timeout, max_retry_time, flush_timeout, compression, encoding,`},
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// A bad otlp exporter second in line is refused before the first
// exporter's queue and worker start, like every exporter (issue 11 item 4).
func TestOTLPValidatedBeforeAnyExporterStarts(t *testing.T) {
	started := 0
	saved := newQueue
	newQueue = func(exp exporter.Exporter, cfg exporter.QueueConfig) *exporter.Queue {
		started++
		return saved(exp, cfg)
	}
	t.Cleanup(func() { newQueue = saved })
	_, err := provision(t, fmt.Sprintf(`{"exporters":[{"type":"zipkin","url":"http://%s/api/v2/spans"},{"type":"otlp","url":"grpcs://h:4317","tls":{"ca":"/nonexistent/ca.pem"}}]}`, deadPort(t)))
	if err == nil || !strings.Contains(err.Error(), "exporter otlp tls ca") {
		t.Fatalf("error %v, want the otlp exporter's tls ca refused", err)
	}
	if started != 0 {
		t.Errorf("%d queues started for a refused configuration", started)
	}
}

func TestOTLPWarnsOfAnOddPath(t *testing.T) {
	for url, want := range map[string]bool{
		"http://h:4318":               false,
		"http://h:4318/":              false,
		"http://h:4318/v1/traces":     false,
		"http://h/otlp/v1/traces":     false,
		"http://h:4318/api/v2/spans":  true,
		"grpc://h:4317":               false,
		"https://h/ingest/v1/metrics": true,
	} {
		ec := &ExporterConfig{Type: exporterOTLP, URL: url}
		if err := ec.validate(); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if w := ec.warnings(); (len(w) == 1) != want || (want && !strings.Contains(w[0], "does not end in /v1/traces")) {
			t.Errorf("%s: warnings %q", url, w)
		}
	}
}
