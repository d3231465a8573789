package caddymodule

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// Responses the proxy makes itself (issue 10 item 4): the SERVER span has
// the status the client got, and each attempt span says why it failed.

// zipkinTracing is the tracingproxy block of these tests.
func zipkinTracing(c *zipkintest.Collector) string {
	return fmt.Sprintf(`tracingproxy {
		exporter zipkin %s {
			flush_interval 20ms
		}
	}`, c.URL())
}

// oneTrace waits for n spans of the request that got status and returns
// them split by kind, its CLIENT spans in time order.
func oneTrace(t *testing.T, c *zipkintest.Collector, n int) (zipkintest.Span, []zipkintest.Span) {
	t.Helper()
	spans := c.WaitSpans(t, n, 5*time.Second)
	return clientSpans(t, spans, spans[0].TraceID)
}

func TestProxyMadeResponses(t *testing.T) {
	up := newUpstream(t)
	tests := []struct {
		name       string
		site       func(tracing string) string
		path       string
		status     int
		attempts   []string // the error.type of each attempt; "" for none
		serverErr  bool
		clientCode string // the http.status_code of the last attempt, if it got a response
	}{
		{"every upstream refuses", func(tr string) string {
			return fmt.Sprintf("\t%s\n\treverse_proxy %s %s {\n\t\tlb_retries 1\n\t}", tr, deadPort(t), deadPort(t))
		}, "/", http.StatusBadGateway, []string{"connection_refused", "connection_refused"}, true, ""},
		{"upstream too slow to answer", func(tr string) string {
			return fmt.Sprintf("\t%s\n\treverse_proxy %s {\n\t\ttransport http {\n\t\t\tresponse_header_timeout 50ms\n\t\t}\n\t}", tr, up.hostport())
		}, "/?sleep=300ms", http.StatusGatewayTimeout, []string{"timeout"}, true, ""},
		{"upstream answers 503", func(tr string) string {
			return fmt.Sprintf("\t%s\n\treverse_proxy %s", tr, up.hostport())
		}, "/?status=503", http.StatusServiceUnavailable, []string{"503"}, true, "503"},
		{"upstream answers 404", func(tr string) string {
			return fmt.Sprintf("\t%s\n\treverse_proxy %s", tr, up.hostport())
		}, "/?status=404", http.StatusNotFound, []string{""}, false, "404"},
		{"a handler refuses", func(tr string) string {
			return fmt.Sprintf("\t%s\n\trespond 403", tr)
		}, "/", http.StatusForbidden, nil, false, ""},
		{"a handler fails", func(tr string) string {
			return fmt.Sprintf("\t%s\n\terror \"broken on purpose\" 500", tr)
		}, "/", http.StatusInternalServerError, nil, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := zipkintest.NewCollector(t)
			startCaddy(t, tt.site(zipkinTracing(c)))
			res, _ := get(t, tt.path, nil)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			server, clients := oneTrace(t, c, 1+len(tt.attempts))
			if got := server.Tags["http.status_code"]; got != fmt.Sprint(tt.status) {
				t.Errorf("SERVER http.status_code %q, want %d", got, tt.status)
			}
			if _, ok := server.Tags["error"]; ok != tt.serverErr {
				t.Errorf("SERVER error tag present %v, want %v (tags %v)", ok, tt.serverErr, server.Tags)
			}
			if len(clients) != len(tt.attempts) {
				t.Fatalf("%d CLIENT spans, want %d: %+v", len(clients), len(tt.attempts), clients)
			}
			for i, s := range clients {
				want := tt.attempts[i]
				if got := s.Tags["error.type"]; got != want {
					t.Errorf("attempt %d error.type %q, want %q (tags %v)", i, got, want, s.Tags)
				}
				if _, ok := s.Tags["error"]; ok != (want != "") {
					t.Errorf("attempt %d error tag present %v, want %v", i, ok, want != "")
				}
				code := ""
				if i == len(clients)-1 {
					code = tt.clientCode
				}
				if got := s.Tags["http.status_code"]; got != code {
					t.Errorf("attempt %d http.status_code %q, want %q", i, got, code)
				}
			}
		})
	}
}
