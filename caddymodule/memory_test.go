package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// heapInuse returns the heap in use after a full collection.
func heapInuse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// serveN runs n sampled requests through h in process, as Caddy would hand
// them over, each answered by upstreamLike; every `every` requests it calls
// probe.
func serveN(t *testing.T, h *Handler, n, every int, probe func(i int)) {
	t.Helper()
	base := newBenchRequest("")
	w := &nopWriter{h: make(http.Header, 8)}
	for i := 1; i <= n; i++ {
		// Vars, replacer and extra log fields are per request, as in
		// Caddy: the handler adds to the log fields, and sharing them
		// would grow one slice by a field per request.
		ctx := context.WithValue(base.Context(), caddyhttp.VarsCtxKey, make(map[string]any, 4))
		ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
		r := base.Clone(ctx)
		clear(w.h)
		if err := h.ServeHTTP(w, r, upstreamLike); err != nil {
			t.Fatal(err)
		}
		if probe != nil && i%every == 0 {
			probe(i)
		}
	}
}

// recordBytes measures the heap a queued record of the handler's holds: n
// requests' records are kept in a queue that exports nothing until it is
// shut down.
func recordBytes(t *testing.T, n int) int64 {
	t.Helper()
	h, err := provision(t, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	q := exporter.NewQueue(discardExporter{}, exporter.QueueConfig{Size: n + 1, BatchSize: n + 1, FlushInterval: time.Hour})
	defer q.Shutdown(context.Background())
	// The handler's own pooled queue goes back before its Cleanup
	// releases it.
	pooled := h.queues
	defer func() { h.queues = pooled }()
	h.queues = []*pooledQueue{{name: "hold", q: q}}
	before := heapInuse()
	serveN(t, h, n, n, nil)
	after := heapInuse()
	if q.Len() != n {
		t.Fatalf("holding queue has %d records, want %d", q.Len(), n)
	}
	return (after - before) / int64(n)
}

// TestMemoryBoundedWhileCollectorDown sends 200,000 sampled requests through
// the provisioned handler while the Zipkin collector refuses connections,
// and checks that the heap never grows beyond the queue's bound: queue_size
// records waiting plus one batch in flight, at the measured bytes per
// record, plus a fixed margin for the exporter's buffers and the runtime.
func TestMemoryBoundedWhileCollectorDown(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 requests; skipped with -short")
	}
	const (
		queueSize = 8192
		batchSize = 512 // the default
		requests  = 200_000
		margin    = 16 << 20
	)
	start := time.Now()
	per := recordBytes(t, queueSize)
	if per <= 0 {
		t.Fatalf("measured %d bytes per record", per)
	}

	dead := deadPort(t)
	h, err := provision(t, fmt.Sprintf(`{"exporters":[{"type":"zipkin","url":"http://%s/api/v2/spans","queue_size":%d,"flush_timeout":"100ms"}]}`, dead, queueSize))
	if err != nil {
		t.Fatal(err)
	}
	q := h.queues[0].q
	bound := (queueSize+batchSize)*per + margin
	before := heapInuse()
	var peak int64
	serveN(t, h, requests, requests/20, func(int) {
		peak = max(peak, heapInuse()-before)
		if l := q.Len(); l > queueSize {
			t.Fatalf("queue holds %d records, bound is %d", l, queueSize)
		}
	})
	growth := heapInuse() - before
	peak = max(peak, growth)
	st := q.Stats()
	t.Logf("%d requests in %s: %d B per queued record, heap in use before %.1f MiB, growth at end %.1f MiB, peak growth %.1f MiB, bound (%d+%d)×%d B + %d MiB = %.1f MiB",
		requests, time.Since(start).Round(time.Millisecond), per, float64(before)/(1<<20), float64(growth)/(1<<20), float64(peak)/(1<<20),
		queueSize, batchSize, per, margin>>20, float64(bound)/(1<<20))
	t.Logf("stats: enqueued %d, exported %d, dropped %v, queued %d, failures %d", st.Enqueued, st.ExportedRecords, st.Dropped, st.Len, st.Failures)
	if peak > bound {
		t.Errorf("heap grew by %d B, over the bound of %d B", peak, bound)
	}
	if st.Enqueued != requests {
		t.Errorf("enqueued %d, want every one of the %d sampled requests", st.Enqueued, requests)
	}
	if st.ExportedRecords != 0 || st.Failures == 0 {
		t.Errorf("exported %d records to a dead collector with %d failed attempts, want none exported and failures", st.ExportedRecords, st.Failures)
	}
	// A record leaves the queue only by being dropped: queue_full while the
	// bound holds, retry_exhausted or rejected when a batch gives up (how
	// often depends on how fast a loaded machine retries). Every reason
	// counts; together they account for all but what is still queued or in
	// the batch being retried.
	var dropped uint64
	for _, n := range st.Dropped {
		dropped += n
	}
	if least := uint64(requests - queueSize - batchSize); dropped < least {
		t.Errorf("dropped %d records (%v), want at least %d", dropped, st.Dropped, least)
	}
	if dropped+uint64(st.Len) > uint64(requests) {
		t.Errorf("dropped %d and queued %d of %d records: more than were enqueued", dropped, st.Len, requests)
	}
}
