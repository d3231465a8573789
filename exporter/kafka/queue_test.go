package kafka

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// fastRetry is a queue that retries quickly and for long.
func fastRetry(size, batch int) exporter.QueueConfig {
	return exporter.QueueConfig{
		Size: size, BatchSize: batch, FlushInterval: 20 * time.Millisecond,
		Timeout: time.Second, MaxRetryTime: time.Hour,
		RetryInitial: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}
}

func shutdown(t testing.TB, q *exporter.Queue) exporter.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Errorf("queue shutdown: %v", err)
	}
	return q.Stats()
}

// TestDeadBrokerComesBack: with the only broker down, every record the
// queue can hold (its size plus the batch being retried) waits and the rest
// are dropped as queue_full; once the broker is back, 100% of the held
// records are delivered, each once, and the counters add up exactly.
func TestDeadBrokerComesBack(t *testing.T) {
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	e, err := New(Config{Brokers: []string{addr}, Topic: "spans", DeliveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const size, batch = 8, 4
	qc := fastRetry(size, batch)
	qc.FlushInterval = time.Hour // batches leave full, so the first one in flight is exactly the first 4
	q := exporter.NewQueue(e, qc)
	var first []*exporter.Record
	for range batch {
		r := record(1)
		first = append(first, r)
		q.Enqueue(r)
	}
	// The first batch is in flight and failing: the broker is down.
	testutil.Eventually(t, 30*time.Second, "a failed export to the dead broker", func() bool { return q.Stats().Failures >= 1 })
	start := time.Now()
	const more = 16
	for range more {
		if !q.Enqueue(record(2)) {
			t.Fatal("Enqueue refused a record under drop oldest")
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("16 Enqueues took %s with the broker down", took)
	}
	s := q.Stats()
	if s.Dropped[exporter.ReasonQueueFull] != more-size || s.ExportedRecords != 0 {
		t.Fatalf("with the broker down: dropped %v, exported %d; want %d queue_full, 0 exported", s.Dropped, s.ExportedRecords, more-size)
	}

	c := cluster(t, []string{"spans"}, kfake.Ports(port))
	want := batch + size
	testutil.Eventually(t, 60*time.Second, "the held records to be delivered", func() bool { return q.Stats().ExportedRecords == uint64(want) })
	s = shutdown(t, q)
	if s.Enqueued != batch+more || s.ExportedRecords != uint64(want) || s.Dropped[exporter.ReasonQueueFull] != more-size {
		t.Errorf("stats %+v: want %d enqueued = %d exported + %d queue_full", s, batch+more, want, more-size)
	}
	for reason, n := range s.Dropped {
		if reason != exporter.ReasonQueueFull && n != 0 {
			t.Errorf("%d records dropped as %s", n, reason)
		}
	}
	if s.ExportedSpans != uint64(batch*2+size*3) {
		t.Errorf("%d spans exported, want %d", s.ExportedSpans, batch*2+size*3)
	}
	msgs := consume(t, c.ListenAddrs(), "spans", want)
	keys := map[string]int{}
	for _, m := range msgs {
		keys[string(m.Key)]++
	}
	if len(keys) != want {
		t.Errorf("%d distinct traces delivered, want %d", len(keys), want)
	}
	for _, r := range first {
		if keys[traceHex(r)] == 0 {
			t.Errorf("the batch held during the outage (trace %s) was not delivered", traceHex(r))
		}
	}
}

// TestDeadBrokerRetryExhausted: a broker that never comes back costs every
// record, each counted once as retry_exhausted.
func TestDeadBrokerRetryExhausted(t *testing.T) {
	e, err := New(Config{Brokers: []string{"127.0.0.1:" + strconv.Itoa(freePort(t))}, Topic: "spans", DeliveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	qc := fastRetry(16, 4)
	qc.Timeout = 200 * time.Millisecond
	qc.MaxRetryTime = 500 * time.Millisecond
	q := exporter.NewQueue(e, qc)
	for range 10 {
		q.Enqueue(record(1))
	}
	testutil.Eventually(t, 60*time.Second, "every record to be dropped", func() bool {
		return q.Stats().Dropped[exporter.ReasonRetryExhausted] == 10
	})
	s := shutdown(t, q)
	if s.Enqueued != 10 || s.ExportedRecords != 0 || s.DroppedSpans[exporter.ReasonRetryExhausted] != 20 || s.Failures == 0 {
		t.Errorf("stats %+v: want 10 records, 20 spans retry_exhausted, none exported", s)
	}
}

// TestPartialSuccessAccounting: the queue counts a record too large for
// the broker as its spans dropped (partial_rejected), the rest exported.
func TestPartialSuccessAccounting(t *testing.T) {
	c := cluster(t, []string{"spans"})
	e, err := New(Config{Brokers: c.ListenAddrs(), Topic: "spans", MaxMessageBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	q := exporter.NewQueue(e, fastRetry(16, 3))
	big := record(2)
	big.Server.Tags = append(big.Server.Tags, exporter.Tag{Key: "big", Value: string(make([]byte, 8192))})
	q.Enqueue(record(1))
	q.Enqueue(big)
	q.Enqueue(record(1))
	testutil.Eventually(t, 30*time.Second, "the batch to settle", func() bool { return q.Stats().ExportedRecords == 3 })
	s := shutdown(t, q)
	if s.ExportedSpans != 4 || s.DroppedSpans[exporter.ReasonPartialRejected] != 3 || s.Retries != 0 {
		t.Errorf("stats %+v: want 4 spans exported, 3 partial_rejected, no retry", s)
	}
}

// TestStalledBrokerNeverBlocksEnqueue: while a broker holds the produce
// request of the batch in flight (and would hold it past the test's
// deadline), Enqueue still returns for every record of a burst, the queue
// keeping its size and dropping the rest as queue_full; once the broker
// answers, the held records are delivered and the counters add up exactly.
func TestStalledBrokerNeverBlocksEnqueue(t *testing.T) {
	c := cluster(t, []string{"spans"})
	release := make(chan struct{})
	var held atomic.Int32
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case <-release:
		default:
			held.Add(1)
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	e, err := New(Config{Brokers: c.ListenAddrs(), Topic: "spans", DeliveryTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	const size, batch, burst = 8, 4, 100
	qc := fastRetry(size, batch)
	qc.Timeout = time.Minute     // the export stays in flight for the whole burst
	qc.FlushInterval = time.Hour // batches leave full, so the one in flight is exactly the first 4
	q := exporter.NewQueue(e, qc)
	for range batch {
		q.Enqueue(record(1))
	}
	testutil.Eventually(t, 30*time.Second, "the broker to hold a produce request", func() bool { return held.Load() > 0 })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range burst {
			q.Enqueue(record(1))
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Enqueue blocked behind a stalled broker")
	}
	s := q.Stats()
	if s.Dropped[exporter.ReasonQueueFull] != burst-size || s.ExportedRecords != 0 || s.Failures != 0 {
		t.Fatalf("with the broker stalled: %+v; want %d queue_full, nothing exported or failed yet", s, burst-size)
	}
	close(release)
	testutil.Eventually(t, 30*time.Second, "the held records to be delivered", func() bool { return q.Stats().ExportedRecords == batch+size })
	s = shutdown(t, q)
	if s.Enqueued != batch+burst || s.ExportedRecords != batch+size || s.Dropped[exporter.ReasonQueueFull] != burst-size {
		t.Errorf("stats %+v: want %d enqueued = %d exported + %d queue_full", s, batch+burst, batch+size, burst-size)
	}
}

// TestRefusingBrokerDropsAsRejected: a broker that refuses every produce
// for good (not authorized for the topic) costs each record once, counted
// as rejected, with no retry.
func TestRefusingBrokerDropsAsRejected(t *testing.T) {
	c := cluster(t, []string{"spans"})
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.TopicAuthorizationFailed, Count: -1})
	e, err := New(Config{Brokers: c.ListenAddrs(), Topic: "spans"})
	if err != nil {
		t.Fatal(err)
	}
	q := exporter.NewQueue(e, fastRetry(16, 4))
	for range 10 {
		q.Enqueue(record(1))
	}
	testutil.Eventually(t, 30*time.Second, "every record to be dropped", func() bool {
		return q.Stats().Dropped[exporter.ReasonRejected] == 10
	})
	s := shutdown(t, q)
	if s.Enqueued != 10 || s.ExportedRecords != 0 || s.DroppedSpans[exporter.ReasonRejected] != 20 || s.Retries != 0 {
		t.Errorf("stats %+v: want 10 records, 20 spans rejected, no retry", s)
	}
}
