package caddymodule

// Regression tests for issue 13 (defects found trying the product as users
// and attackers would); each failed before its fix.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// shares reports whether s points into the bytes of whole.
func shares(s, whole string) bool {
	if len(s) == 0 || len(whole) == 0 {
		return false
	}
	p, b := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(whole)))
	return p >= b && p < b+uintptr(len(whole))
}

// Item 2: a queued record's memory does not grow with the request line. The
// span name is capped at max_tag_length and every capped value is a copy,
// so a record never keeps a 15 KB path alive.
func TestIssue13LongRequestLineRecordIsCapped(t *testing.T) {
	h, ce, q := regressionHandler(t, `{"record_query":true,"exporters":[{"type":"log"}]}`)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	long := strings.Repeat("a", 15<<10)
	for _, propagation := range []string{"w3c", "sw8"} {
		if propagation == "sw8" {
			h, ce, q = regressionHandler(t, `{"record_query":true,"propagation":{"inject":["sw8"]},"exporters":[{"type":"log"}]}`)
		}
		r := regressionReq("GET", "/"+long+"?"+long, nil)
		path, query := r.URL.Path, r.URL.RawQuery
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
		q.ForceFlush(context.Background())
		ce.mu.Lock()
		rec := ce.recs[len(ce.recs)-1]
		ce.mu.Unlock()
		s := rec.Server
		if len(s.Name) > h.MaxTagLength {
			t.Errorf("%s: SERVER span name of %d bytes, max_tag_length is %d", propagation, len(s.Name), h.MaxTagLength)
		}
		if !strings.HasPrefix(s.Name, "GET /aaa") {
			t.Errorf("%s: SERVER span named %.40q…", propagation, s.Name)
		}
		for _, v := range append([]string{s.Name, s.Error, s.Peer}, tagValues(s.Tags)...) {
			if shares(v, path) || shares(v, query) {
				t.Errorf("%s: a recorded value (%.20q…, %d bytes) is a slice of the request line", propagation, v, len(v))
			}
		}
		if size := rec.Size(); size > 4<<10 {
			t.Errorf("%s: record estimated at %d bytes for a 30 KB request line", propagation, size)
		}
	}
}

func tagValues(tags []exporter.Tag) []string {
	var vs []string
	for _, t := range tags {
		vs = append(vs, t.Value)
	}
	return vs
}

// Item 2: the default queue is bounded in bytes, not only in records.
func TestIssue13DefaultQueueBoundInBytes(t *testing.T) {
	dead := deadPort(t)
	h, err := provision(t, fmt.Sprintf(`{"exporters":[{"type":"zipkin","url":"http://%s/api/v2/spans","flush_timeout":"100ms"}]}`, dead))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Cleanup() })
	if got := h.Exporters[0].queueConfig().Bytes; got != exporter.DefaultQueueBytes {
		t.Fatalf("default queue byte bound %d, want %d", got, exporter.DefaultQueueBytes)
	}
	serveN(t, h, 10, 10, nil)
	if st := h.queues[0].q.Stats(); st.Bytes == 0 && st.Len > 0 {
		t.Errorf("%d records queued and no bytes counted: the queue has no byte bound", st.Len)
	}
	// Two exporters' queues at the bound, each with a batch in flight of
	// the largest records max_tag_length allows, fit in the sidecar's
	// 256 MiB with room for the runtime.
	if total := 2 * exporter.DefaultQueueBytes; total > 96<<20 {
		t.Errorf("two default queues may hold %d MiB", total>>20)
	}
}

// Issue 11 item 4: README states the queue defaults the library applies.
func TestIssue13READMEStatesQueueDefaults(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, row := range []string{
		fmt.Sprintf("| `batch_size <n>` | %d |", exporter.DefaultBatchSize),
		fmt.Sprintf("| `flush_interval <duration>` | %s |", caddyDuration(exporter.DefaultFlushInterval)),
		fmt.Sprintf("| `queue_size <n>` | %d |", exporter.DefaultQueueSize),
		fmt.Sprintf("| `queue_bytes <n>` | %d (%d MiB) |", exporter.DefaultQueueBytes, exporter.DefaultQueueBytes>>20),
		fmt.Sprintf("| `timeout <duration>` | %s |", caddyDuration(exporter.DefaultTimeout)),
		fmt.Sprintf("| `max_retry_time <duration>` | %s |", caddyDuration(exporter.DefaultMaxRetryTime)),
		fmt.Sprintf("| `flush_timeout <duration>` | %s |", caddyDuration(defaultFlushTimeout)),
	} {
		if !strings.Contains(readme, row) {
			t.Errorf("README does not state the default: want a row starting %q", row)
		}
	}
}

// caddyDuration writes d as README does: 1s, 60s, 500ms.
func caddyDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// Item 6: configurations that used to be accepted and then failed at run
// time are refused at load, naming the option.
func TestIssue13RefusedAtLoad(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty service_name", "tracingproxy {\n\tservice_name \"\"\n}", "service_name must not be empty"},
		{"queue_size 0", "tracingproxy {\n\texporter log {\n\t\tqueue_size 0\n\t}\n}", "queue_size must be at least 1, got 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, json, want string }{
		{"batch over queue", `{"exporters":[{"type":"log","queue_size":10,"batch_size":20}]}`, "exporter log: batch_size must not exceed queue_size (10), got 20"},
		{"batch over default queue", `{"exporters":[{"type":"log","batch_size":10000}]}`, "batch_size must not exceed queue_size (8192), got 10000"},
		{"zipkin without path", `{"exporters":[{"type":"zipkin","url":"http://127.0.0.1:9411"}]}`, "exporter zipkin: url must name the spans endpoint, e.g. http://127.0.0.1:9411/api/v2/spans"},
		{"zipkin at root", `{"exporters":[{"type":"zipkin","url":"http://127.0.0.1:9411/"}]}`, "url must name the spans endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.json)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Another path is accepted (a gateway may route it) with a warning.
	ec := &ExporterConfig{Type: exporterZipkin, URL: "http://127.0.0.1:9411/zipkin"}
	if err := ec.validate(); err != nil {
		t.Fatal(err)
	}
	if w := ec.warnings(); len(w) != 1 || !strings.Contains(w[0], "does not end in /api/v2/spans") {
		t.Errorf("warnings %q, want one about the path", w)
	}
	ec.URL = "http://127.0.0.1:9411/api/v2/spans"
	if w := ec.warnings(); len(w) != 0 {
		t.Errorf("warnings %q for the spans endpoint", w)
	}
}

// Issue 11 item 4: a bad second exporter is refused before the first
// exporter's queue and worker start.
func TestIssue13AllExportersValidatedBeforeAnyStarts(t *testing.T) {
	dead := deadPort(t)
	started := 0
	saved := newQueue
	newQueue = func(exp exporter.Exporter, cfg exporter.QueueConfig) *exporter.Queue {
		started++
		return saved(exp, cfg)
	}
	t.Cleanup(func() { newQueue = saved })
	_, err := provision(t, fmt.Sprintf(`{"exporters":[{"type":"zipkin","url":"http://%s/api/v2/spans"},{"type":"log","queue_size":-1}]}`, dead))
	if err == nil || !strings.Contains(err.Error(), "queue_size must not be negative") {
		t.Fatalf("error %v, want the second exporter's queue_size refused", err)
	}
	if started != 0 {
		t.Errorf("%d queues started for a refused configuration: the first exporter's worker ran", started)
	}
}
