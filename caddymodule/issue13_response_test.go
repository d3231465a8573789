package caddymodule

// Regression tests for issue 13 items 5 and 9: what the client sees and
// what the span says must agree, whatever the upstream does and however the
// request ends.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// Item 5: an upstream that sets the trace headers we set never makes the
// client see two values: ours replace its (default) or its win
// (upstream_wins), sampled or not. Server-Timing keeps the upstream's other
// metrics.
func TestIssue13ResponseHeadersNotDoubled(t *testing.T) {
	const theirTrace = "11111111111111111111111111111111"
	const theirTR = "00-11111111111111111111111111111111-2222222222222222-01"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Trace-Id", theirTrace)
		w.Header().Set("Traceresponse", theirTR)
		w.Header().Set("X-Trace-Url", "http://their-ui/"+theirTrace)
		w.Header().Add("Server-Timing", "trace;desc="+theirTR+", db;dur=53")
		w.Header().Add("Server-Timing", `cache;desc="hit, warm"`)
		io.WriteString(w, "body")
	}))
	t.Cleanup(up.Close)
	for _, tc := range []struct {
		name, extra  string
		upstreamWins bool
	}{
		{"ours replace", "", false},
		{"upstream wins", "upstream_wins", true},
		{"ours replace, unsampled", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sampler := ""
			if strings.Contains(tc.name, "unsampled") {
				sampler = "sample_ratio 0"
			}
			startCaddy(t, fmt.Sprintf(`	tracingproxy {
		%s
		response_headers server_timing traceresponse trace_id X-Trace-Id trace_url X-Trace-Url http://ui/{trace_id} %s
		exporter log
	}
	reverse_proxy %s`, sampler, tc.extra, strings.TrimPrefix(up.URL, "http://")))
			res, body := get(t, "/", nil)
			if res.StatusCode != 200 || body != "body" {
				t.Fatalf("status %d body %q", res.StatusCode, body)
			}
			for _, name := range []string{"X-Trace-Id", "Traceresponse", "X-Trace-Url"} {
				if vs := res.Header.Values(name); len(vs) != 1 {
					t.Errorf("%s sent %d times: %q", name, len(vs), vs)
				}
			}
			id := res.Header.Get("X-Trace-Id")
			var traceMetrics []string
			var others int
			for _, v := range res.Header.Values("Server-Timing") {
				for _, m := range serverTimingMetrics(v) {
					if strings.EqualFold(metricName(m), "trace") {
						traceMetrics = append(traceMetrics, strings.TrimSpace(m))
					} else {
						others++
					}
				}
			}
			if len(traceMetrics) != 1 {
				t.Errorf("Server-Timing has %d trace metrics: %q", len(traceMetrics), res.Header.Values("Server-Timing"))
			}
			if others != 2 {
				t.Errorf("Server-Timing kept %d of the upstream's 2 other metrics: %q", others, res.Header.Values("Server-Timing"))
			}
			if tc.upstreamWins {
				if id != theirTrace || res.Header.Get("Traceresponse") != theirTR || res.Header.Get("X-Trace-Url") != "http://their-ui/"+theirTrace {
					t.Errorf("upstream_wins: got X-Trace-Id %q, Traceresponse %q, X-Trace-Url %q; want the upstream's", id, res.Header.Get("Traceresponse"), res.Header.Get("X-Trace-Url"))
				}
				if len(traceMetrics) == 1 && traceMetrics[0] != "trace;desc="+theirTR {
					t.Errorf("upstream_wins: Server-Timing trace metric %q, want the upstream's", traceMetrics[0])
				}
				return
			}
			if id == theirTrace || len(id) != 32 {
				t.Fatalf("X-Trace-Id %q, want ours", id)
			}
			if tr := res.Header.Get("Traceresponse"); !strings.Contains(tr, id) {
				t.Errorf("Traceresponse %q does not name our trace %s", tr, id)
			}
			if u := res.Header.Get("X-Trace-Url"); u != "http://ui/"+id {
				t.Errorf("X-Trace-Url %q, want ours", u)
			}
			if len(traceMetrics) == 1 && !strings.Contains(traceMetrics[0], id) {
				t.Errorf("Server-Timing trace metric %q, want ours", traceMetrics[0])
			}
		})
	}
}

func TestSettleServerTimingUnit(t *testing.T) {
	ours := "trace;desc=00-a-b-01"
	for _, tc := range []struct {
		in           []string
		upstreamWins bool
		want         []string
	}{
		{[]string{ours}, false, []string{ours}},
		{[]string{ours, "db;dur=1"}, false, []string{ours, "db;dur=1"}},
		{[]string{ours, "db;dur=1"}, true, []string{ours, "db;dur=1"}},
		{[]string{ours, "trace;desc=x, db;dur=1"}, false, []string{ours, "db;dur=1"}},
		{[]string{ours, "Trace;desc=x"}, false, []string{ours}},
		{[]string{ours, "trace;desc=x, db;dur=1"}, true, []string{"trace;desc=x, db;dur=1"}},
		{[]string{ours, `cdn;desc="a, trace", trace`}, false, []string{ours, `cdn;desc="a, trace"`}},
		{[]string{"trace;desc=x", "trace;desc=y"}, false, []string{"trace;desc=x", "trace;desc=y"}}, // ours removed by another handler
	} {
		hdr := http.Header{"Server-Timing": append([]string(nil), tc.in...)}
		settleServerTiming(hdr, ours, tc.upstreamWins)
		if got := hdr["Server-Timing"]; fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q upstream_wins=%v: got %q, want %q", tc.in, tc.upstreamWins, got, tc.want)
		}
	}
}

// Item 9: a body cut mid-stream keeps the status the client got (200), with
// the failure as the span's error, not a 500 the client never saw.
func TestIssue13BodyCutMidStreamKeepsItsStatus(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(up.Close)
	startCaddy(t, zipkinSite(c, &upstream{Server: up}, ""))
	res, err := testClient.Get(proxyURL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	got, readErr := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || readErr == nil {
		t.Fatalf("client saw %d, body %q, read error %v: want 200 and a cut body", res.StatusCode, got, readErr)
	}
	server, _ := spansByKindWait(t, c)
	if code := server.Tags["http.status_code"]; code != "200" {
		t.Errorf("SERVER span http.status_code %q, want 200 as the client saw", code)
	}
	if server.Tags["error"] == "" {
		t.Errorf("SERVER span has no error for a cut body: tags %v", server.Tags)
	}
}

// spansByKindWait waits for one SERVER span and returns it with the CLIENT
// span of its trace, if any.
func spansByKindWait(t *testing.T, c *zipkintest.Collector) (server, client zipkintest.Span) {
	t.Helper()
	for _, s := range c.WaitSpans(t, 1, 10*time.Second) {
		switch {
		case s.Kind != nil && *s.Kind == "SERVER":
			server = s
		case s.Kind != nil && *s.Kind == "CLIENT":
			client = s
		}
	}
	if server.ID == "" {
		t.Fatalf("no SERVER span in %d spans", len(c.Spans()))
	}
	return server, client
}

// Item 9: a request still running when the process exits past its grace
// period gets its span (status unknown, error "cut at shutdown") before the
// exporters flush, and exactly once: when it returns later nothing is
// recorded again.
func TestIssue13RequestCutAtShutdownIsRecorded(t *testing.T) {
	c := zipkintest.NewCollector(t)
	release := make(chan struct{})
	var arrived atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Store(true)
		<-release
		io.WriteString(w, "late")
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	startCaddy(t, zipkinSite(c, &upstream{Server: up}, ""))

	done := make(chan error, 1)
	go func() {
		res, err := testClient.Get(proxyURL + "/slow")
		if err == nil {
			_, err = io.Copy(io.Discard, bufio.NewReader(res.Body))
			res.Body.Close()
		}
		done <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the request to reach the upstream", arrived.Load)

	saved := processExiting
	processExiting = func() bool { return true }
	t.Cleanup(func() { processExiting = saved })
	// The next configuration has no tracingproxy: the old one is cleaned
	// up and its exporter queue flushed and stopped, as at process exit.
	startCaddy(t, "respond ok")
	processExiting = saved

	spans := c.WaitSpans(t, 1, 10*time.Second)
	if len(spans) != 1 || spans[0].Kind == nil || *spans[0].Kind != "SERVER" {
		t.Fatalf("collector got %d spans, want the one SERVER span of the cut request", len(spans))
	}
	s := spans[0]
	if !strings.Contains(s.Tags["error"], "cut at shutdown") {
		t.Errorf("cut request's error tag %q, want it to say cut at shutdown", s.Tags["error"])
	}
	if _, ok := s.Tags["http.status_code"]; ok {
		t.Errorf("cut request has status %q: no status was sent", s.Tags["http.status_code"])
	}
	if s.Name == nil || *s.Name != "get /slow" {
		t.Errorf("cut request's span name %v", s.Name)
	}

	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the cut request never returned")
	}
	if n := len(c.Spans()); n != 1 {
		t.Errorf("collector has %d spans after the request returned, want 1", n)
	}
}

// Item 9: a request recorded at shutdown is not recorded again when it
// returns, and a request that returns first is not recorded at shutdown.
func TestIssue13CutRequestRecordedOnce(t *testing.T) {
	h, ce, q := regressionHandler(t, `{"exporters":[{"type":"log"}]}`)
	entered, release := make(chan struct{}), make(chan struct{})
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	})
	if err := h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/fast", nil), next); err != nil {
		t.Fatal(err)
	}
	returned := make(chan error)
	go func() { returned <- h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/slow", nil), next) }()
	<-entered
	if n := h.flights.cutAll(h); n != 1 {
		t.Fatalf("cutAll recorded %d requests, want the one in flight", n)
	}
	close(release)
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
	q.ForceFlush(context.Background())
	ce.mu.Lock()
	defer ce.mu.Unlock()
	var names []string
	for _, r := range ce.recs {
		names = append(names, fmt.Sprintf("%s %d %q", r.Server.Name, r.Server.Status, r.Server.Error))
	}
	want := []string{`GET /fast 202 ""`, fmt.Sprintf("GET /slow 0 %q", errCutAtShutdown.Error())}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("records %q, want %q", names, want)
	}
}

// Item 6: a dead collector shows at once. The first failed export of a
// failing streak is a warning, its retries are debug, and the first failure
// after a success is a warning again.
func TestIssue13FirstFailedExportIsAWarning(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if failing.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(col.Close)
	up := newUpstream(t)
	target := col.URL + "/api/v2/spans"
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	startCaddyWith(t, fmt.Sprintf(`	log {
		output file %s
		format json
		level DEBUG
	}`, logFile), fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			batch_size 1
			flush_interval 10ms
			timeout 1s
			max_retry_time 1m
		}
	}
	reverse_proxy %s`, target, up.hostport()))
	warnings := func() int {
		b, _ := os.ReadFile(logFile)
		return strings.Count(string(b), `"msg":"export failed; retrying until max_retry_time, then dropping"`)
	}
	if res, _ := get(t, "/one", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	testutil.Eventually(t, 20*time.Second, "three failed attempts", func() bool { return queueStats(t, target).Failures >= 3 })
	testutil.Eventually(t, 10*time.Second, "the failure warning", func() bool { return warnings() >= 1 })
	if n := warnings(); n != 1 {
		t.Errorf("%d warnings for one failing streak, want 1 (the retries at debug)", n)
	}
	if !logHas(t, logFile, func(e map[string]any) bool { return e["msg"] == "export attempt failed" && e["level"] == "debug" }) {
		t.Error("no retry logged at debug")
	}
	failing.Store(false)
	testutil.Eventually(t, 20*time.Second, "the record exported once the collector is back", func() bool { return queueStats(t, target).ExportedRecords >= 1 })
	failing.Store(true)
	before := queueStats(t, target).Failures
	if res, _ := get(t, "/two", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	testutil.Eventually(t, 20*time.Second, "a failure after the success", func() bool { return queueStats(t, target).Failures > before })
	testutil.Eventually(t, 10*time.Second, "a second warning, for the new streak", func() bool { return warnings() == 2 })
	failing.Store(false)
}
