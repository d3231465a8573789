package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// Exporter settings of the fault tests: short enough that a test sees
// retries run out within seconds.
const (
	faultTimeout      = 200 * time.Millisecond
	faultMaxRetryTime = 2 * time.Second
	faultQueueSize    = 16
	faultBatchSize    = 4
	faultRequests     = 60
)

// TestCollectorFaultsNeverHurtTrafficNorHideALoss runs traffic through the
// proxy while the collector misbehaves, then lets it recover, and checks
// that every request got the upstream's answer without waiting on the
// exporter, and that every record is accounted for exactly once, alike in
// the queue's Stats, on the collector, on /metrics and in the warning log.
func TestCollectorFaultsNeverHurtTrafficNorHideALoss(t *testing.T) {
	tests := []struct {
		name string
		// fault makes the collector misbehave.
		fault func(t *testing.T, f *zipkintest.FaultyCollector)
		// stuck: the collector accepts nothing while faulty, so the
		// queue overflows and a batch runs out of retries.
		stuck bool
	}{
		{"refusing", func(t *testing.T, f *zipkintest.FaultyCollector) {
			f.Set(t, zipkintest.Fault{Mode: zipkintest.ModeRefuse})
		}, true},
		{"status 500", func(t *testing.T, f *zipkintest.FaultyCollector) {
			f.Set(t, zipkintest.Fault{Mode: zipkintest.ModeStatus, Status: http.StatusInternalServerError})
		}, true},
		{"status 429 retry-after 1", func(t *testing.T, f *zipkintest.FaultyCollector) {
			f.Set(t, zipkintest.Fault{Mode: zipkintest.ModeStatus, Status: http.StatusTooManyRequests, RetryAfter: "1"})
		}, true},
		{"accepting and never answering", func(t *testing.T, f *zipkintest.FaultyCollector) {
			f.Set(t, zipkintest.Fault{Mode: zipkintest.ModeHang})
		}, true},
		// The collector answers after 10 s, twice the default
		// 5 s export timeout; scaled to this test's 200 ms timeout it
		// answers after 400 ms.
		{"answering after twice the timeout", func(t *testing.T, f *zipkintest.FaultyCollector) {
			f.Set(t, zipkintest.Fault{Mode: zipkintest.ModeDelay, Delay: 2 * faultTimeout})
		}, true},
		{"flapping", func(t *testing.T, f *zipkintest.FaultyCollector) {
			f.Flap(t, 100*time.Millisecond, zipkintest.Fault{Mode: zipkintest.ModeRefuse})
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testStart := time.Now()
			up := newUpstream(t)
			f := zipkintest.NewFaultyCollector(t)
			target := f.URL()
			name := "zipkin " + httpexport.Host(target)
			logFile := startCaddyLogging(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			queue_size %d
			batch_size %d
			flush_interval 20ms
			timeout %s
			max_retry_time %s
		}
	}
	reverse_proxy %s`, target, faultQueueSize, faultBatchSize, faultTimeout, faultMaxRetryTime, up.hostport()))
			tc.fault(t, f)

			// Traffic: every request gets the upstream's status and body,
			// and none waits on the exporter.
			faultTraffic(t)
			if up.count() != faultRequests {
				t.Errorf("upstream saw %d requests, want %d", up.count(), faultRequests)
			}

			// The fault lasts until the queue has lost records both ways:
			// overflowing and running out of retries.
			if tc.stuck {
				testutil.Eventually(t, 10*time.Second, "a batch to run out of retries", func() bool {
					return queueStats(t, target).Dropped[exporter.ReasonRetryExhausted] > 0
				})
				if st := queueStats(t, target); st.Dropped[exporter.ReasonQueueFull] == 0 || st.ExportedRecords != 0 {
					t.Errorf("while the collector was down: %+v, want queue_full drops and nothing exported", st)
				}
			} else {
				testutil.Eventually(t, 10*time.Second, "the flapping collector to both fail and accept an export", func() bool {
					st := queueStats(t, target)
					return st.Failures > 0 && st.ExportedRecords > 0
				})
			}

			// Recovery: what the queue still holds reaches the collector.
			f.Set(t, zipkintest.Fault{Mode: zipkintest.ModeOK})
			testutil.Eventually(t, 5*time.Second, "every request to be enqueued", func() bool {
				return queueStats(t, target).Enqueued == faultRequests
			})
			flushQueues(t)
			st := queueStats(t, target)
			t.Logf("stats: enqueued %d exported %d records %d spans, dropped %v (spans %v), retries %d, failures %d",
				st.Enqueued, st.ExportedRecords, st.ExportedSpans, st.Dropped, st.DroppedSpans, st.Retries, st.Failures)
			checkAccounting(t, f, st)
			if st.Retries == 0 {
				t.Error("no export was retried")
			}
			if tc.name == "status 429 retry-after 1" {
				checkRetryAfter(t, f, st)
			}
			checkMetrics(t, name, st)

			// Unloading the exporter flushes its drop log: the warning
			// lines add up to exactly what was dropped.
			startCaddyWith(t, fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t}", logFile),
				fmt.Sprintf("\treverse_proxy %s", up.hostport()))
			want := map[string]uint64{}
			for r, n := range st.Dropped {
				if n > 0 {
					want[r] = n
				}
			}
			var logged map[string]uint64
			deadline := time.Now().Add(5 * time.Second)
			for {
				logged = loggedDrops(t, logFile, name)
				if fmt.Sprint(logged) == fmt.Sprint(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if fmt.Sprint(logged) != fmt.Sprint(want) {
				t.Errorf("warning log reports drops %v, want exactly the dropped %v", logged, want)
			}
			t.Logf("case took %s", time.Since(testStart).Round(time.Millisecond))
		})
	}
}

// faultTraffic sends faultRequests requests through the proxy, answered
// 200, 404 and 503 in turn by the upstream, and fails t unless each gets
// the upstream's status and body and, all together, they took no more than
// a tenth of an export timeout each: none waited on the exporter.
func faultTraffic(t *testing.T) {
	t.Helper()
	var total, slowest time.Duration
	for i := range faultRequests {
		status := []int{200, 404, 503}[i%3]
		start := time.Now()
		res, body := get(t, fmt.Sprintf("/orders/%d?status=%d", i, status), nil)
		d := time.Since(start)
		total += d
		slowest = max(slowest, d)
		if res.StatusCode != status || body != "hello from upstream" || res.Header.Get("X-Upstream") != "yes" {
			t.Fatalf("request %d: %d %q, want the upstream's %d %q", i, res.StatusCode, body, status, "hello from upstream")
		}
	}
	if total > faultRequests*faultTimeout/10 {
		t.Errorf("%d requests took %s in all (slowest %s): the request path waited on the exporter", faultRequests, total, slowest)
	}
	t.Logf("traffic: %d requests in %s (slowest %s)", faultRequests, total, slowest)
}

// checkAccounting checks that the queue is empty, that every enqueued
// record was exported or dropped for a reason, and that the collector holds
// exactly the exported spans, one trace per exported record, no duplicate.
func checkAccounting(t *testing.T, f *zipkintest.FaultyCollector, st exporter.Stats) {
	t.Helper()
	var dropped uint64
	for _, n := range st.Dropped {
		dropped += n
	}
	if st.Len != 0 {
		t.Errorf("%d records still queued after the flush", st.Len)
	}
	if st.Enqueued != faultRequests || st.ExportedRecords+dropped != st.Enqueued {
		t.Errorf("enqueued %d, exported %d + dropped %d (%v): want %d = exported + dropped", st.Enqueued, st.ExportedRecords, dropped, st.Dropped, faultRequests)
	}
	if st.ExportedRecords == 0 {
		t.Error("the collector received nothing after recovering")
	}
	_, rejected := f.Requests()
	if len(rejected) > 0 {
		t.Errorf("collector rejected %d requests, the first: %v", len(rejected), rejected[0])
	}
	spans := f.Spans()
	if uint64(len(spans)) != st.ExportedSpans {
		t.Errorf("collector holds %d spans, the queue counts %d exported", len(spans), st.ExportedSpans)
	}
	traces, ids := map[string]bool{}, map[string]bool{}
	for _, s := range spans {
		traces[s.TraceID] = true
		if ids[s.ID] {
			t.Errorf("span %s received twice", s.ID)
		}
		ids[s.ID] = true
	}
	if uint64(len(traces)) != st.ExportedRecords {
		t.Errorf("collector holds %d traces, the queue counts %d records exported", len(traces), st.ExportedRecords)
	}
}

// checkRetryAfter checks from the collector's side that every retry after
// a 429 waited for its Retry-After of 1 s; the other gaps after a 429 are a
// new batch following one that ran out of retries, sent at once.
func checkRetryAfter(t *testing.T, f *zipkintest.FaultyCollector, st exporter.Stats) {
	t.Helper()
	attempts := f.Attempts()
	waited := 0
	var shortest time.Duration = -1
	for i := 0; i+1 < len(attempts); i++ {
		if attempts[i].Status != http.StatusTooManyRequests {
			continue
		}
		gap := attempts[i+1].Start.Sub(attempts[i].End)
		switch {
		case gap >= 950*time.Millisecond:
			waited++
			if shortest < 0 || gap < shortest {
				shortest = gap
			}
		case gap > 500*time.Millisecond:
			t.Errorf("attempt %d came %s after a 429 with Retry-After: 1", i+1, gap)
		}
	}
	t.Logf("429: %d attempts, %d waited ≥950ms after a 429 (shortest %s), %d retries counted", len(attempts), waited, shortest, st.Retries)
	if uint64(waited) != st.Retries {
		t.Errorf("%d attempts came ≥950ms after a 429, the queue counts %d retries: a retry did not honour Retry-After", waited, st.Retries)
	}
}

// checkMetrics checks that Caddy's /metrics reports the queue's Stats.
func checkMetrics(t *testing.T, name string, st exporter.Stats) {
	t.Helper()
	m := scrapeMetrics(t)
	ex := fmt.Sprintf("{exporter=%q}", name)
	want := map[string]uint64{
		"tracingproxy_exporter_records_enqueued_total" + ex: st.Enqueued,
		"tracingproxy_exporter_records_exported_total" + ex: st.ExportedRecords,
		"tracingproxy_exporter_spans_exported_total" + ex:   st.ExportedSpans,
		"tracingproxy_exporter_retries_total" + ex:          st.Retries,
		"tracingproxy_exporter_failures_total" + ex:         st.Failures,
		"tracingproxy_exporter_queue_length" + ex:           0,
	}
	for _, r := range []string{exporter.ReasonQueueFull, exporter.ReasonRetryExhausted, exporter.ReasonRejected, exporter.ReasonEncodeError, exporter.ReasonShutdown} {
		want[fmt.Sprintf("tracingproxy_exporter_records_dropped_total{exporter=%q,reason=%q}", name, r)] = st.Dropped[r]
		want[fmt.Sprintf("tracingproxy_exporter_spans_dropped_total{exporter=%q,reason=%q}", name, r)] = st.DroppedSpans[r]
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		got, ok := m[k]
		if !ok {
			t.Errorf("/metrics lacks %s", k)
		} else if got != float64(want[k]) {
			t.Errorf("/metrics %s = %g, want %d", k, got, want[k])
		}
	}
}

// scrapeMetrics reads Caddy's admin /metrics into a map from series (name
// and labels, as written) to value.
func scrapeMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("/metrics line %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

// loggedDrops adds up the dropped_<reason> counts of the "dropped trace
// records" warnings logged for the exporter.
func loggedDrops(t *testing.T, logFile, name string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	sum := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) != nil || e["msg"] != "dropped trace records" || e["exporter"] != name {
			continue
		}
		if e["level"] != "warn" {
			t.Errorf("drop logged at level %v, want warn", e["level"])
		}
		for k, v := range e {
			if r, ok := strings.CutPrefix(k, "dropped_"); ok {
				sum[r] += uint64(v.(float64))
			}
		}
	}
	return sum
}

// TestDropLogReportsEveryDropWithinItsInterval checks that the at most one
// warning per interval still reports every drop: counts noted after a
// warning are logged when the interval has passed, without waiting for
// another drop that may never come.
func TestDropLogReportsEveryDropWithinItsInterval(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	const every = 50 * time.Millisecond
	dl := &dropLogger{logger: zap.New(core), every: every}
	start := time.Now()
	dl.note(exporter.ReasonQueueFull, 1, 2)
	dl.note(exporter.ReasonQueueFull, 5, 10)
	dl.note(exporter.ReasonRetryExhausted, 4, 8)
	want := map[string]int64{"dropped_" + exporter.ReasonQueueFull: 6, "dropped_" + exporter.ReasonRetryExhausted: 4}
	sum := func() map[string]int64 {
		s := map[string]int64{}
		for _, e := range logs.All() {
			for k, v := range e.ContextMap() {
				if strings.HasPrefix(k, "dropped_") {
					s[k] += v.(int64)
				}
			}
		}
		return s
	}
	testutil.Eventually(t, 20*every, "the pending drops to be logged", func() bool { return fmt.Sprint(sum()) == fmt.Sprint(want) })
	if n := logs.Len(); n != 2 {
		t.Errorf("%d warnings, want 2: one at once, one for the rest after the interval", n)
	}
	if d := logs.All()[len(logs.All())-1].Time.Sub(start); d < every*9/10 {
		t.Errorf("second warning after %s, want no sooner than the %s interval", d, every)
	}
}
