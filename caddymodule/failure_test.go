package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// malformed are trace headers that must each be ignored: the request is
// served, a new trace starts, and the bad value never reaches the upstream.
var malformed = []struct {
	name string
	hdr  map[string][]string
}{
	{"traceparent uppercase hex", map[string][]string{"Traceparent": {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"}}},
	{"traceparent short trace id", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"}}},
	{"traceparent long span id", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7a-01"}}},
	{"traceparent zero trace id", map[string][]string{"Traceparent": {"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}}},
	{"traceparent zero span id", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}}},
	{"traceparent version ff", map[string][]string{"Traceparent": {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}},
	{"traceparent v00 trailing data", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"}}},
	{"traceparent two fields", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"}}},
	{"traceparent bad separators", map[string][]string{"Traceparent": {"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"}}},
	{"traceparent non-hex flags", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"}}},
	{"traceparent non-hex version", map[string][]string{"Traceparent": {"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}},
	{"traceparent empty", map[string][]string{"Traceparent": {""}}},
	{"traceparent garbage", map[string][]string{"Traceparent": {"hello world"}}},
	{"traceparent trailing tab", map[string][]string{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\tx"}}},
	{"b3 single short trace id", map[string][]string{"B3": {"80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1-1"}}},
	{"b3 single uppercase", map[string][]string{"B3": {"80F198EE56343BA864FE8B2A57D3EFF7-E457B5A2E4D86BD1-1"}}},
	{"b3 single bad sampled", map[string][]string{"B3": {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-x"}}},
	{"b3 single bad parent", map[string][]string{"B3": {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-zz"}}},
	{"b3 single trace only", map[string][]string{"B3": {"80f198ee56343ba864fe8b2a57d3eff7"}}},
	{"b3 single zero span", map[string][]string{"B3": {"80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1"}}},
	{"b3 multi trace without span", map[string][]string{"X-B3-Traceid": {"463ac35c9f6413ad48485a3953bb6124"}}},
	{"b3 multi span without trace", map[string][]string{"X-B3-Spanid": {"a2fb4a1d1a96d312"}}},
	{"b3 multi 20-hex trace", map[string][]string{"X-B3-Traceid": {"463ac35c9f6413ad4848"}, "X-B3-Spanid": {"a2fb4a1d1a96d312"}}},
	{"b3 multi empty sampled", map[string][]string{"X-B3-Traceid": {"463ac35c9f6413ad48485a3953bb6124"}, "X-B3-Spanid": {"a2fb4a1d1a96d312"}, "X-B3-Sampled": {""}}},
	{"b3 multi parent dash", map[string][]string{"X-B3-Traceid": {"463ac35c9f6413ad48485a3953bb6124"}, "X-B3-Spanid": {"a2fb4a1d1a96d312"}, "X-B3-Parentspanid": {"-"}}},
	{"b3 multi zero trace", map[string][]string{"X-B3-Traceid": {"00000000000000000000000000000000"}, "X-B3-Spanid": {"a2fb4a1d1a96d312"}}},
	{"b3 multi bad sampled", map[string][]string{"X-B3-Traceid": {"463ac35c9f6413ad48485a3953bb6124"}, "X-B3-Spanid": {"a2fb4a1d1a96d312"}, "X-B3-Sampled": {"yes"}}},
}

func TestMalformedHeadersStartANewTrace(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		propagation {
			extract w3c b3
			inject w3c b3
		}
		exporter log
	}
	reverse_proxy %s`, up.hostport()))

	if len(malformed) < 25 {
		t.Fatalf("only %d malformed cases; the issue asks for at least 25", len(malformed))
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			before := totalMalformed()
			res, body := get(t, "/", tc.hdr)
			if res.StatusCode != 200 || body != "hello from upstream" {
				t.Fatalf("got %d %q, want the upstream's answer", res.StatusCode, body)
			}
			h := up.last(t)
			traceID, _, _ := parseTraceparent(t, h.Get("Traceparent"))
			for name, vals := range tc.hdr {
				for _, v := range vals {
					if len(v) >= 16 && (strings.Contains(v, traceID) || strings.Contains(v, traceID[16:])) {
						t.Errorf("new trace %s reuses the malformed %s %q", traceID, name, v)
					}
					for _, g := range h.Values(name) {
						if v != "" && g == v {
							t.Errorf("malformed %s %q forwarded upstream", name, v)
						}
					}
				}
			}
			if got := h.Values("Traceparent"); len(got) != 1 {
				t.Errorf("upstream got %d traceparent fields, want 1", len(got))
			}
			if after := totalMalformed(); after <= before {
				t.Errorf("malformed-header counter did not move (%d → %d)", before, after)
			}
		})
	}
}

func totalMalformed() uint64 {
	var n uint64
	for f := headers.Format(1); f < 32; f++ {
		n += malformedCount[f].Load()
	}
	return n
}

// hangingCollector accepts connections and never answers until the test
// ends.
func hangingCollector(t *testing.T) string {
	release := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		once.Do(func() { close(release) })
		srv.Close()
	})
	return srv.URL + "/api/v2/spans"
}

func TestCollectorDownOrHangingNeverHurtsTraffic(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"refusing", func(t *testing.T) string { return "http://" + deadPort(t) + "/api/v2/spans" }},
		{"hanging", hangingCollector},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t)
			target := tc.url(t)
			const queueSize, batch = 16, 4
			startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			queue_size %d
			batch_size %d
			flush_interval 10ms
			timeout 200ms
			max_retry_time 1s
		}
	}
	reverse_proxy %s`, target, queueSize, batch, up.hostport()))

			const n = 200
			start := time.Now()
			for i := 0; i < n; i++ {
				res, body := get(t, "/", nil)
				if res.StatusCode != 200 || body != "hello from upstream" {
					t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
				}
				if l := queueStats(t, target).Len; l > queueSize {
					t.Fatalf("queue holds %d records, bound is %d", l, queueSize)
				}
			}
			elapsed := time.Since(start)
			if up.count() != n {
				t.Errorf("upstream saw %d requests, want %d", up.count(), n)
			}
			st := queueStats(t, target)
			if st.Dropped[exporter.ReasonQueueFull] == 0 {
				t.Errorf("no queue_full drops counted with a dead collector: %+v", st)
			}
			if st.ExportedRecords != 0 {
				t.Errorf("%d records exported to a dead collector", st.ExportedRecords)
			}
			if st.Enqueued != n {
				t.Errorf("enqueued %d, want every one of the %d sampled requests", st.Enqueued, n)
			}
			// Nothing waited on the exporter: 200 loopback requests take
			// far less than one export timeout each.
			if elapsed > n*200*time.Millisecond/4 {
				t.Errorf("%d requests took %s: the request path waited on the collector", n, elapsed)
			}
		})
	}
}

// TestSlowBackendNeverDelaysAnother exports to a hanging collector and a
// healthy one at once: each exporter has its own queue and worker, so the
// healthy collector receives every span on time.
func TestSlowBackendNeverDelaysAnother(t *testing.T) {
	healthy := zipkintest.NewCollector(t)
	hanging := hangingCollector(t)
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			flush_interval 10ms
			timeout 30s
		}
		exporter zipkin %s {
			flush_interval 10ms
		}
	}
	reverse_proxy %s`, hanging, healthy.URL(), up.hostport()))

	start := time.Now()
	for i := 0; i < 20; i++ {
		if res, _ := get(t, "/", nil); res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
	healthy.WaitSpans(t, 40, 2*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the healthy collector waited %s behind the hanging one", d)
	}
	if st := queueStats(t, hanging); st.ExportedRecords != 0 {
		t.Errorf("the hanging collector accepted %d records", st.ExportedRecords)
	}
}
