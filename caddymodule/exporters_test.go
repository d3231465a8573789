package caddymodule

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// Whatever an exporter is built from (TLS files, headers, SASL), a bad one
// second in line is refused before the first exporter's queue and worker
// start, with the option named (issue 11 item 4).
func TestEveryExporterCheckedBeforeAnyStarts(t *testing.T) {
	started := 0
	saved := newQueue
	newQueue = func(exp exporter.Exporter, cfg exporter.QueueConfig) *exporter.Queue {
		started++
		return saved(exp, cfg)
	}
	t.Cleanup(func() { newQueue = saved })
	for _, tc := range []struct{ name, second, want string }{
		{"zipkin tls ca", `{"type":"zipkin","url":"https://h/api/v2/spans","tls":{"ca":"/nonexistent/ca.pem"}}`, "exporter zipkin tls ca: open /nonexistent/ca.pem"},
		{"zipkin header", `{"type":"zipkin","url":"https://h/api/v2/spans","headers":{"Bad Name":"x"}}`, `exporter zipkin header name "Bad Name" is not a valid HTTP header name`},
		{"skywalking grpcs tls ca", `{"type":"skywalking","url":"grpcs://h:11800","tls":{"ca":"/nonexistent/ca.pem"}}`, "exporter skywalking tls ca: open /nonexistent/ca.pem"},
		{"skywalking https tls key pair", `{"type":"skywalking","url":"https://h:12800","tls":{"cert":"/nonexistent/c.pem","key":"/nonexistent/k.pem"}}`, "exporter skywalking tls cert and key: open /nonexistent/c.pem"},
		{"skywalking headers over grpc", `{"type":"skywalking","url":"grpc://h:11800","headers":{"X-Tenant":"a"}}`, `exporter skywalking headers need an http(s):// url, got "grpc://h:11800"`},
		{"otlp tls ca", `{"type":"otlp","url":"grpcs://h:4317","tls":{"ca":"/nonexistent/ca.pem"}}`, "exporter otlp tls ca: open /nonexistent/ca.pem"},
		{"kafka tls ca", `{"type":"kafka","brokers":["h:9092"],"tls":{"ca":"/nonexistent/ca.pem"}}`, "exporter kafka tls ca: open /nonexistent/ca.pem"},
		{"kafka sasl", `{"type":"kafka","brokers":["h:9092"],"sasl":{"mechanism":"oauthbearer","username":"u","password":"p"}}`, `exporter kafka: sasl mechanism must be plain, scram-sha-256 or scram-sha-512, got "oauthbearer"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started = 0
			_, err := provision(t, fmt.Sprintf(`{"exporters":[{"type":"zipkin","url":"http://%s/api/v2/spans"},%s]}`, deadPort(t), tc.second))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if started != 0 {
				t.Errorf("%d queues started for a refused configuration", started)
			}
		})
	}
}
