package caddymodule

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// TestReloadsKeepQueuesAndLoseNothing reloads the configuration 50 times
// under traffic: the exporter that stays configured keeps its queue, every
// answered request's spans reach the collector, and no goroutine leaks.
func TestReloadsKeepQueuesAndLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("reload soak")
	}
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	site := func(i int) string {
		// The handler changes on every reload (the response header name);
		// the exporter does not.
		return fmt.Sprintf(`	tracingproxy {
		response_headers trace_id X-Trace-%d
		exporter zipkin %s {
			flush_interval 50ms
		}
	}
	reverse_proxy %s`, i, c.URL(), up.hostport())
	}
	tester := startCaddy(t, site(0))
	_ = tester
	get(t, "/warm", nil)
	flushQueues(t)
	baseline := testutil.OurGoroutines()

	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// A failed reload ends the test at once: the traffic must end with it,
	// not go on into the next test's Caddy.
	var once sync.Once
	stopTraffic := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopTraffic()
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := client.Get(proxyURL + "/traffic")
				if err != nil {
					continue // a connection cut by a reload's server restart
				}
				res.Body.Close()
				if res.StatusCode == 200 && res.Header.Get("X-Upstream") == "yes" {
					answered.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 50; i++ {
		startCaddy(t, site(i))
	}
	stopTraffic()

	n := int(answered.Load())
	if n < 50 {
		t.Fatalf("only %d requests answered during the reloads", n)
	}
	want := 2 * (n + 1) // SERVER + CLIENT per request, the warm-up included
	flushQueues(t)
	t.Logf("queue after reloads: %+v", queueStats(t, c.URL()))
	spans := c.WaitSpans(t, want, 10*time.Second)
	if got := len(c.Spans()); got != want {
		t.Errorf("collector has %d spans for %d answered requests, want %d: spans were lost or duplicated", got, n+1, want)
	}
	_ = spans

	// Caddy's reverse_proxy keeps idle upstream connections of old
	// configurations until they time out; ours must not grow at all.
	baseline.Settle(t, 5*time.Second)
	queues := 0
	queuePool.Range(func(_, v any) bool { queues++; return true })
	if queues != 1 {
		t.Errorf("%d queues in the pool after the reloads, want the one that stayed configured", queues)
	}
}

// TestStopFlushesQueuedSpans unloads a configuration whose queue holds spans
// that would otherwise wait an hour: they reach the collector when the
// exporter stops, within flush_timeout.
func TestStopFlushesQueuedSpans(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			flush_interval 1h
			batch_size 1000
			flush_timeout 3s
		}
	}
	reverse_proxy %s`, c.URL(), up.hostport()))
	for i := 0; i < 20; i++ {
		get(t, "/", nil)
	}
	if n := len(c.Spans()); n != 0 {
		t.Fatalf("%d spans arrived before the stop; the test needs them queued", n)
	}
	start := time.Now()
	startCaddy(t, `	respond "bye"`) // the old configuration, and its exporter, stop
	if n := len(c.Spans()); n != 40 {
		t.Errorf("collector has %d spans after the stop, want all 40 queued ones", n)
	}
	if d := time.Since(start); d > 3*time.Second+2*time.Second {
		t.Errorf("stop took %s, flush_timeout is 3s", d)
	}
}
