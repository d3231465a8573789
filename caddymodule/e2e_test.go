package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// zipkinSite is a site that traces into the collector and proxies to up.
func zipkinSite(c *zipkintest.Collector, up *upstream, extra string) string {
	return fmt.Sprintf(`	tracingproxy {
		service_name orders-legacy
		%s
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s`, extra, c.URL(), up.hostport())
}

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-0([0-3])$`)

func parseTraceparent(t *testing.T, v string) (traceID, spanID, flags string) {
	t.Helper()
	m := traceparentRE.FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("upstream traceparent %q is not a valid version-00 header", v)
	}
	return m[1], m[2], m[3]
}

// spansByKind indexes the spans of one trace by kind, failing unless there
// is exactly one SERVER and one CLIENT span.
func spansByKind(t *testing.T, spans []zipkintest.Span, traceID string) (server, client zipkintest.Span) {
	t.Helper()
	var ns, nc int
	for _, s := range spans {
		if s.TraceID != traceID || s.Kind == nil {
			continue // another trace, or a local span
		}
		switch *s.Kind {
		case "SERVER":
			server = s
			ns++
		case "CLIENT":
			client = s
			nc++
		}
	}
	if ns != 1 || nc != 1 {
		t.Fatalf("trace %s: %d SERVER and %d CLIENT spans, want 1 and 1 (all: %+v)", traceID, ns, nc, spans)
	}
	return server, client
}

func TestW3CCallerToZipkin(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, zipkinSite(c, up, ""))

	const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	before := time.Now()
	res, body := get(t, "/orders/42?secret=1", map[string][]string{
		"Traceparent": {caller},
		"Tracestate":  {"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
	})
	after := time.Now()
	if res.StatusCode != 200 || body != "hello from upstream" {
		t.Fatalf("got %d %q, want the upstream's 200 and body", res.StatusCode, body)
	}

	h := up.last(t)
	traceID, parentID, flags := parseTraceparent(t, h.Get("Traceparent"))
	if traceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("upstream trace id %s, want the caller's", traceID)
	}
	if parentID == "00f067aa0ba902b7" {
		t.Errorf("upstream parent id is the caller's span; want our CLIENT span")
	}
	if flags != "1" {
		t.Errorf("upstream flags %s, want 01 (sampled)", flags)
	}
	if got := h.Get("Tracestate"); got != "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" {
		t.Errorf("upstream tracestate %q, want the caller's", got)
	}
	if got := h.Get("X-B3-Traceid"); got != traceID {
		t.Errorf("upstream X-B3-TraceId %q, want %s", got, traceID)
	}
	if got := h.Get("X-B3-Spanid"); got != parentID {
		t.Errorf("upstream X-B3-SpanId %q, want the CLIENT span %s", got, parentID)
	}

	server, client := spansByKind(t, c.WaitSpans(t, 2, 5*time.Second), traceID)
	if server.ParentID == nil || *server.ParentID != "00f067aa0ba902b7" {
		t.Errorf("SERVER parentId %v, want the caller's span 00f067aa0ba902b7", server.ParentID)
	}
	if client.ParentID == nil || *client.ParentID != server.ID {
		t.Errorf("CLIENT parentId %v, want the SERVER span %s", client.ParentID, server.ID)
	}
	if client.ID != parentID {
		t.Errorf("CLIENT id %s, want the parent id the upstream received %s", client.ID, parentID)
	}
	if *server.LocalEndpoint.ServiceName != "orders-legacy" {
		t.Errorf("SERVER localEndpoint %+v, want orders-legacy", server.LocalEndpoint)
	}
	host, port, _ := net.SplitHostPort(up.hostport())
	if ep := client.RemoteEndpoint; ep == nil || ep.IPv4 == nil || *ep.IPv4 != host || ep.Port == nil || strconv.Itoa(int(*ep.Port)) != port {
		t.Errorf("CLIENT remoteEndpoint %+v, want the upstream %s", client.RemoteEndpoint, up.hostport())
	}
	for _, s := range []zipkintest.Span{server, client} {
		ts := time.UnixMicro(int64(*s.Timestamp))
		if ts.Before(before.Truncate(time.Microsecond)) || ts.After(after) {
			t.Errorf("%s timestamp %v outside the request [%v, %v]: not microseconds?", *s.Kind, ts, before, after)
		}
		if *s.Duration < 1 || time.Duration(*s.Duration)*time.Microsecond > after.Sub(before) {
			t.Errorf("%s duration %dµs outside (0, %v]", *s.Kind, *s.Duration, after.Sub(before))
		}
		if s.Tags["http.status_code"] != "200" || s.Tags["http.method"] != "GET" || s.Tags["http.path"] != "/orders/42" {
			t.Errorf("%s tags %v: want status 200, method GET, path without query", *s.Kind, s.Tags)
		}
		if _, ok := s.Tags["error"]; ok {
			t.Errorf("%s has an error tag on a 200", *s.Kind)
		}
		if *s.Kind == "SERVER" && s.Tags["http.response.size"] != "19" {
			t.Errorf("SERVER http.response.size %q, want the 19 bytes of the upstream's body", s.Tags["http.response.size"])
		}
	}
	if *client.Timestamp < *server.Timestamp || *client.Timestamp+*client.Duration > *server.Timestamp+*server.Duration {
		t.Errorf("CLIENT span [%d +%d] not inside SERVER span [%d +%d]", *client.Timestamp, *client.Duration, *server.Timestamp, *server.Duration)
	}
}

func TestB3CallerKeepsTraceAcrossFormats(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, zipkinSite(c, up, "propagation {\n\t\t\textract b3 w3c\n\t\t\tinject w3c b3 b3single\n\t\t}"))

	tests := []struct {
		name     string
		hdr      map[string][]string
		traceID  string // as B3 must re-emit it
		parent   string
		sampled  string // W3C flags digit
		b3Sample string // X-B3-Sampled or "" when X-B3-Flags is sent
	}{
		{"multi 128-bit", map[string][]string{"X-B3-TraceId": {"463ac35c9f6413ad48485a3953bb6124"}, "X-B3-SpanId": {"0020000000000001"}, "X-B3-Sampled": {"1"}},
			"463ac35c9f6413ad48485a3953bb6124", "0020000000000001", "1", "1"},
		{"multi 64-bit", map[string][]string{"X-B3-TraceId": {"a3ce929d0e0e4736"}, "X-B3-SpanId": {"00f067aa0ba902b7"}, "X-B3-Sampled": {"1"}},
			"a3ce929d0e0e4736", "00f067aa0ba902b7", "1", "1"},
		{"single 128-bit", map[string][]string{"B3": {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"}},
			"80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "1", "1"},
		{"single 64-bit", map[string][]string{"B3": {"64fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}},
			"64fe8b2a57d3eff7", "e457b5a2e4d86bd1", "1", "1"},
		{"single deny", map[string][]string{"B3": {"64fe8b2a57d3eff7-e457b5a2e4d86bd1-0"}},
			"64fe8b2a57d3eff7", "e457b5a2e4d86bd1", "0", "0"},
		{"single debug", map[string][]string{"B3": {"74fe8b2a57d3eff7-e457b5a2e4d86bd1-d"}},
			"74fe8b2a57d3eff7", "e457b5a2e4d86bd1", "1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := get(t, "/", tc.hdr)
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			h := up.last(t)
			w3cTrace, w3cParent, flags := parseTraceparent(t, h.Get("Traceparent"))
			if want := fmt.Sprintf("%032s", tc.traceID); w3cTrace != want {
				t.Errorf("W3C trace id %s, want %s (64-bit ids left-padded)", w3cTrace, want)
			}
			if flags != tc.sampled {
				t.Errorf("W3C flags 0%s, want 0%s", flags, tc.sampled)
			}
			if got := h.Get("X-B3-Traceid"); got != tc.traceID {
				t.Errorf("X-B3-TraceId %q, want %q (width kept)", got, tc.traceID)
			}
			if got := h.Get("X-B3-Spanid"); got != w3cParent {
				t.Errorf("X-B3-SpanId %q, want the CLIENT span %s as in traceparent", got, w3cParent)
			}
			if got := h.Get("X-B3-Parentspanid"); got == "" || got == tc.parent {
				t.Errorf("X-B3-ParentSpanId %q, want our SERVER span", got)
			}
			if got := h.Get("X-B3-Sampled"); got != tc.b3Sample {
				t.Errorf("X-B3-Sampled %q, want %q", got, tc.b3Sample)
			}
			if tc.b3Sample == "" && h.Get("X-B3-Flags") != "1" {
				t.Errorf("X-B3-Flags %q, want 1 for debug", h.Get("X-B3-Flags"))
			}
			single := h.Get("B3")
			if !strings.HasPrefix(single, tc.traceID+"-"+w3cParent+"-") {
				t.Errorf("b3 single %q, want %s-%s-...", single, tc.traceID, w3cParent)
			}
		})
	}
	// The sampled traces reached Zipkin under the B3 width of their id.
	spans := c.WaitSpans(t, 10, 5*time.Second) // 5 sampled requests
	seen := map[string]bool{}
	for _, s := range spans {
		seen[s.TraceID] = true
		if *s.Kind == "SERVER" && s.TraceID == "74fe8b2a57d3eff7" && (s.Debug == nil || !*s.Debug) {
			t.Errorf("debug trace's SERVER span lacks debug: true")
		}
	}
	for _, id := range []string{"463ac35c9f6413ad48485a3953bb6124", "a3ce929d0e0e4736", "80f198ee56343ba864fe8b2a57d3eff7", "64fe8b2a57d3eff7", "74fe8b2a57d3eff7"} {
		if !seen[id] {
			t.Errorf("no span of trace %s in Zipkin (got %v)", id, seen)
		}
	}
}

// queueStats returns the stats of the pooled queue exporting to target.
func queueStats(t *testing.T, target string) exporter.Stats {
	t.Helper()
	var st *exporter.Stats
	// Queues are named by their target's host[:port] only.
	host := httpexport.Host(target)
	if host == "" {
		host = target
	}
	queuePool.Range(func(_, v any) bool {
		pq := v.(*pooledQueue)
		if strings.HasSuffix(pq.name, " "+host) {
			s := pq.q.Stats()
			st = &s
			return false
		}
		return true
	})
	if st == nil {
		t.Fatalf("no queue exports to %s", target)
	}
	return *st
}

func TestUpstreamFailureIsAnErrorSpan(t *testing.T) {
	c := zipkintest.NewCollector(t)
	dead := deadPort(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s`, c.URL(), dead))

	res, _ := get(t, "/x", nil)
	if res.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502 from reverse_proxy", res.StatusCode)
	}
	spans := c.WaitSpans(t, 2, 5*time.Second)
	server, client := spansByKind(t, spans, spans[0].TraceID)
	// The client gets the proxy's 502; the attempt got no response at all,
	// and says why it failed.
	if server.Tags["http.status_code"] != "502" || server.Tags["error"] == "" {
		t.Errorf("SERVER tags %v, want status 502 and an error", server.Tags)
	}
	if _, ok := client.Tags["http.status_code"]; ok || client.Tags["error"] == "" || client.Tags["error.type"] != "connection_refused" {
		t.Errorf("CLIENT tags %v, want no status, an error and error.type connection_refused", client.Tags)
	}
	if ep := client.RemoteEndpoint; ep == nil || ep.Port == nil || net.JoinHostPort(*ep.IPv4, strconv.Itoa(int(*ep.Port))) != dead {
		t.Errorf("CLIENT remoteEndpoint %+v, want the dead upstream %s", client.RemoteEndpoint, dead)
	}
}

func TestResponseHeadersAndVars(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		response_headers server_timing trace_id X-Trace-Id
		exporter log
	}
	header X-Vars "{http.vars.trace_id}/{http.vars.span_id}"
	reverse_proxy %s`, up.hostport()))

	res, _ := get(t, "/", map[string][]string{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	if got := res.Header.Get("X-Trace-Id"); got != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("X-Trace-Id %q, want the trace id", got)
	}
	st := res.Header.Values("Server-Timing")
	var desc string
	for _, v := range st {
		if d, ok := strings.CutPrefix(v, "trace;desc="); ok {
			desc = d
		}
	}
	traceID, spanID, flags := parseTraceparent(t, desc)
	if traceID != "0af7651916cd43dd8448eb211c80319c" || flags != "1" {
		t.Errorf("Server-Timing %q: want the caller's trace, sampled", st)
	}
	if spanID == "b7ad6b7169203331" {
		t.Errorf("Server-Timing names the caller's span, want our SERVER span")
	}
	if got, want := res.Header.Get("X-Vars"), traceID+"/"+spanID; got != want {
		t.Errorf("{http.vars.trace_id}/{http.vars.span_id} = %q, want %q", got, want)
	}
	if res.Header.Get("X-Upstream") != "yes" {
		t.Errorf("upstream's own response headers lost")
	}
}

func TestUnsampledStillPropagates(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, zipkinSite(c, up, "sample_ratio 0"))

	for i := 0; i < 5; i++ {
		get(t, "/", nil)
	}
	_, _, flags := parseTraceparent(t, up.last(t).Get("Traceparent"))
	if flags != "2" {
		t.Errorf("new unsampled root: flags 0%s, want 02 (random, not sampled)", flags)
	}
	if got := up.last(t).Get("X-B3-Sampled"); got != "0" {
		t.Errorf("X-B3-Sampled %q, want 0", got)
	}
	// A caller's sampled decision is followed whatever the ratio.
	get(t, "/", map[string][]string{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	spans := c.WaitSpans(t, 2, 5*time.Second)
	for _, s := range spans {
		if s.TraceID != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("span of unsampled trace %s exported", s.TraceID)
		}
	}
}

// TestAccessLogCarriesTheIDs checks the access log's trace_id and span_id
// fields, which tracingproxy adds for servers that log access.
func TestAccessLogCarriesTheIDs(t *testing.T) {
	up := newUpstream(t)
	logFile := filepath.Join(t.TempDir(), "access.log")
	startCaddy(t, fmt.Sprintf(`	log {
		output file %s
		format json
	}
	tracingproxy {
		exporter log
	}
	reverse_proxy %s`, logFile, up.hostport()))
	res, _ := get(t, "/logged", map[string][]string{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	var entry struct {
		TraceID string `json:"trace_id"`
		SpanID  string `json:"span_id"`
		Request struct {
			URI string `json:"uri"`
		} `json:"request"`
	}
	testutil.Eventually(t, 5*time.Second, "the access log line", func() bool {
		b, _ := os.ReadFile(logFile)
		for _, line := range strings.Split(string(b), "\n") {
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Request.URI == "/logged" {
				return true
			}
		}
		return false
	})
	if entry.TraceID != "0af7651916cd43dd8448eb211c80319c" || len(entry.SpanID) != 16 || entry.SpanID == "b7ad6b7169203331" {
		t.Errorf("access log trace_id %q span_id %q, want the trace and our SERVER span", entry.TraceID, entry.SpanID)
	}
}
