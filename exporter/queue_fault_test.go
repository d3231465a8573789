package exporter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// stuckExporter simulates a collector that accepts the connection and never
// answers: Export returns only when its context ends.
type stuckExporter struct {
	entered   chan struct{} // one value per Export call
	inside    atomic.Int32  // Export calls not yet returned
	returned  atomic.Int32  // Export calls that returned
	shutdowns atomic.Int32
}

func newStuckExporter() *stuckExporter { return &stuckExporter{entered: make(chan struct{}, 1024)} }

func (e *stuckExporter) Export(ctx context.Context, _ []*Record) error {
	e.inside.Add(1)
	defer e.inside.Add(-1)
	defer e.returned.Add(1)
	e.entered <- struct{}{}
	<-ctx.Done()
	return Retryable(ctx.Err(), 0)
}

func (e *stuckExporter) Shutdown(context.Context) error {
	e.shutdowns.Add(1)
	return nil
}

// failingExporter simulates a collector that answers every export with err.
type failingExporter struct {
	err       error
	calls     atomic.Int32
	shutdowns atomic.Int32
}

func (e *failingExporter) Export(context.Context, []*Record) error {
	e.calls.Add(1)
	return e.err
}

func (e *failingExporter) Shutdown(context.Context) error {
	e.shutdowns.Add(1)
	return nil
}

// flappingExporter simulates a collector that is down for its first down
// export attempts (a retryable 503) and up afterwards.
type flappingExporter struct {
	recordingExporter
	down  int32
	calls atomic.Int32
}

var errUnavailable = errors.New("503 service unavailable")

func (e *flappingExporter) Export(ctx context.Context, batch []*Record) error {
	if e.calls.Add(1) <= e.down {
		return Retryable(errUnavailable, 0)
	}
	return e.recordingExporter.Export(ctx, batch)
}

// TestQueueEnqueueNeverBlocks fills a queue whose exporter is provably stuck
// from 8 goroutines: every Enqueue returns, the bound holds throughout, and
// the drops are counted exactly.
func TestQueueEnqueueNeverBlocks(t *testing.T) {
	const size, batch, goroutines, each = 1024, 64, 8, 12500
	exp := newStuckExporter()
	q := NewQueue(exp, QueueConfig{Size: size, BatchSize: batch, Timeout: time.Hour, FlushInterval: time.Hour})
	for i := range batch {
		q.Enqueue(testRecord(i))
	}
	receive(t, exp.entered, "the first export") // the worker holds the first batch and is stuck

	var wg sync.WaitGroup
	done := make(chan struct{})
	var monitor sync.WaitGroup
	monitor.Go(func() {
		for {
			if n := q.Len(); n > size {
				t.Errorf("Len = %d, exceeds Size %d", n, size)
			}
			select {
			case <-done:
				return
			default:
			}
		}
	})
	start := time.Now()
	for g := range goroutines {
		r := testRecord(batch + g)
		wg.Go(func() {
			for range each {
				if !q.Enqueue(r) {
					t.Error("Enqueue refused a record under drop oldest")
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	monitor.Wait()

	if exp.returned.Load() != 0 || exp.inside.Load() != 1 {
		t.Fatalf("the exporter returned (%d) during the test; it proves nothing", exp.returned.Load())
	}
	t.Logf("%d Enqueue calls from %d goroutines while the exporter was stuck: %v (%v per call)",
		goroutines*each, goroutines, elapsed, elapsed/(goroutines*each))
	if elapsed > 10*time.Second {
		t.Fatalf("Enqueue calls took %v in all", elapsed)
	}
	s := q.Stats()
	if s.Enqueued != batch+goroutines*each || s.Len != size {
		t.Fatalf("Enqueued = %d, Len = %d, want %d and %d", s.Enqueued, s.Len, batch+goroutines*each, size)
	}
	wantDrops(t, s, map[string]uint64{ReasonQueueFull: goroutines*each - size}, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline error", err)
	}
	wantDrops(t, q.Stats(), map[string]uint64{ReasonQueueFull: goroutines*each - size, ReasonShutdown: size + batch}, 2)
	testutil.Eventually(t, 5*time.Second, "the stuck export to be cancelled", func() bool { return exp.inside.Load() == 0 })
}

func TestQueueRetryThenSuccess(t *testing.T) {
	clk := newFakeClock()
	exp := &flappingExporter{down: 1}
	q := newQueue(exp, QueueConfig{BatchSize: 3, FlushInterval: time.Hour, RetryInitial: time.Second}, clk.clock())
	defer shutdown(t, q)
	for i := range 3 {
		q.Enqueue(testRecord(i))
	}
	flush(t, q)
	if got, want := exp.batchSizes(), []int{3}; !slices.Equal(got, want) {
		t.Fatalf("delivered batches %v, want one batch of 3", got)
	}
	s := q.Stats()
	if s.Retries != 1 || s.Failures != 1 || s.ExportedRecords != 3 {
		t.Fatalf("Stats = %+v, want 1 retry, 1 failure, 3 exported", s)
	}
	wantDrops(t, s, nil, 2)
	waits := clk.requestedWaits()
	if len(waits) != 1 || waits[0] < 500*time.Millisecond || waits[0] >= 1500*time.Millisecond {
		t.Fatalf("retry waits = %v, want one in [500ms, 1.5s)", waits)
	}
}

func TestQueueRetryAfter(t *testing.T) {
	tests := []struct {
		name      string
		after     time.Duration
		waits     []time.Duration
		exported  uint64
		exhausted uint64
	}{
		{"429 retry after 7s", 7 * time.Second, []time.Duration{7 * time.Second}, 1, 0},
		{"503 retry after beyond retry_max", 45 * time.Second, []time.Duration{45 * time.Second}, 1, 0},
		{"retry after beyond max_retry_time", 90 * time.Second, nil, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			exp := &scriptedExporter{clk: clk, script: []error{Retryable(errors.New("429 too many requests"), tc.after)}}
			q := newQueue(exp, QueueConfig{BatchSize: 1, FlushInterval: time.Hour}, clk.clock())
			defer shutdown(t, q)
			q.Enqueue(testRecord(0))
			flush(t, q)
			if got := clk.requestedWaits(); !slices.Equal(got, tc.waits) {
				t.Fatalf("retry waits = %v, want %v", got, tc.waits)
			}
			s := q.Stats()
			if s.ExportedRecords != tc.exported {
				t.Fatalf("exported %d records, want %d", s.ExportedRecords, tc.exported)
			}
			wantDrops(t, s, map[string]uint64{ReasonRetryExhausted: tc.exhausted}, 2)
		})
	}
}

func TestQueueBackoffGrowsWithJitterUpToRetryMax(t *testing.T) {
	const initial, maxWait, budget = 100 * time.Millisecond, 800 * time.Millisecond, 5 * time.Second
	clk := newFakeClock()
	exp := &failingExporter{err: Retryable(errUnavailable, 0)}
	q := newQueue(exp, QueueConfig{BatchSize: 2, FlushInterval: time.Hour,
		RetryInitial: initial, RetryMax: maxWait, MaxRetryTime: budget}, clk.clock())
	defer shutdown(t, q)
	q.Enqueue(testRecord(0))
	q.Enqueue(testRecord(1))
	flush(t, q)

	waits := clk.requestedWaits()
	if len(waits) < 5 {
		t.Fatalf("only %d retries before giving up: %v", len(waits), waits)
	}
	var sum time.Duration
	base := initial
	for i, w := range waits {
		if w < base/2 || w >= base/2+base {
			t.Errorf("wait %d = %v, want in [%v, %v)", i, w, base/2, base/2+base)
		}
		sum += w
		base = min(2*base, maxWait)
	}
	if sum > budget {
		t.Errorf("waited %v in all, beyond max_retry_time %v", sum, budget)
	}
	if sum <= budget-maxWait-maxWait/2 {
		t.Errorf("gave up after %v with a max_retry_time of %v: another wait would have fit", sum, budget)
	}
	s := q.Stats()
	if s.Retries != uint64(len(waits)) || s.Failures != uint64(len(waits))+1 || int(exp.calls.Load()) != len(waits)+1 {
		t.Errorf("Retries = %d, Failures = %d, calls = %d for %d waits", s.Retries, s.Failures, exp.calls.Load(), len(waits))
	}
	wantDrops(t, s, map[string]uint64{ReasonRetryExhausted: 2}, 2)
}

func TestQueueFailuresThatAreNotRetried(t *testing.T) {
	errBad := errors.New("400 bad request")
	tests := []struct {
		name         string
		err          error
		maxRetryTime time.Duration
		reason       string
	}{
		{"non-retryable is rejected", errBad, 0, ReasonRejected},
		{"encode error", fmt.Errorf("zipkin: %w: invalid span", ErrEncode), 0, ReasonEncodeError},
		{"encode error wrapped retryable", Retryable(fmt.Errorf("%w: bad", ErrEncode), 0), 0, ReasonEncodeError},
		{"retries disabled", Retryable(errUnavailable, 0), -1, ReasonRetryExhausted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			exp := &failingExporter{err: tc.err}
			q := newQueue(exp, QueueConfig{BatchSize: 4, FlushInterval: time.Hour, MaxRetryTime: tc.maxRetryTime}, clk.clock())
			defer shutdown(t, q)
			for i := range 4 {
				q.Enqueue(testRecord(i))
			}
			flush(t, q)
			if n := exp.calls.Load(); n != 1 {
				t.Fatalf("Export called %d times, want once", n)
			}
			if w := clk.requestedWaits(); len(w) != 0 {
				t.Fatalf("waited %v before giving up", w)
			}
			s := q.Stats()
			if s.Retries != 0 || s.Failures != 1 {
				t.Fatalf("Retries = %d, Failures = %d, want 0 and 1", s.Retries, s.Failures)
			}
			wantDrops(t, s, map[string]uint64{tc.reason: 4}, 2)
		})
	}
}

// TestQueueFlappingCollector takes the collector down for three attempts:
// records enqueued meanwhile stay within the bound, and once it is back it
// receives the batch that was retried and everything still queued, in order.
func TestQueueFlappingCollector(t *testing.T) {
	clk := newManualClock()
	exp := &flappingExporter{down: 3}
	q := newQueue(exp, QueueConfig{Size: 8, BatchSize: 4, FlushInterval: time.Hour,
		RetryInitial: 100 * time.Millisecond, RetryMax: time.Second}, clk.clock())
	defer shutdown(t, q)
	for i := range 4 {
		q.Enqueue(testRecord(i))
	}
	w := clk.nextWait(t) // the first attempt failed
	for i := 4; i < 24; i++ {
		q.Enqueue(testRecord(i))
		if n := q.Len(); n > 8 {
			t.Fatalf("Len = %d during the outage, exceeds Size 8", n)
		}
	}
	for range 2 {
		clk.fire(w)
		w = clk.nextWait(t)
	}
	clk.fire(w) // the fourth attempt succeeds
	testutil.Eventually(t, 5*time.Second, "the queued records after recovery", func() bool { return len(exp.exported()) == 12 })
	flush(t, q)
	if got, want := exp.exported(), append(seq(0, 4), seq(16, 24)...); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	s := q.Stats()
	if s.Retries != 3 || s.Failures != 3 || s.ExportedRecords != 12 || s.Enqueued != 24 {
		t.Fatalf("Stats = %+v, want 3 retries, 3 failures, 12 exported, 24 enqueued", s)
	}
	wantDrops(t, s, map[string]uint64{ReasonQueueFull: 12}, 2)
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if got := clk.requestedWaits()[i]; got < want/2 || got >= want/2+want {
			t.Errorf("wait %d = %v, want in [%v, %v)", i, got, want/2, want/2+want)
		}
	}
}

func TestQueueForceFlushHonoursContext(t *testing.T) {
	exp := newStuckExporter()
	q := NewQueue(exp, QueueConfig{BatchSize: 1, Timeout: time.Hour, FlushInterval: time.Hour})
	q.Enqueue(testRecord(0))
	receive(t, exp.entered, "the first export")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.ForceFlush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ForceFlush with a stuck exporter = %v, want the deadline error", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline error", err)
	}
}

func TestQueueShutdownDrains(t *testing.T) {
	exp := &recordingExporter{}
	q := NewQueue(exp, QueueConfig{BatchSize: 20, FlushInterval: time.Hour})
	for i := range 50 {
		q.Enqueue(testRecord(i))
	}
	shutdown(t, q)
	if got, want := exp.exported(), seq(0, 50); !slices.Equal(got, want) {
		t.Fatalf("exported %v, want %v", got, want)
	}
	if n := exp.shutdowns.Load(); n != 1 {
		t.Fatalf("Exporter.Shutdown called %d times, want once", n)
	}
	s := q.Stats()
	if s.ExportedRecords != 50 || s.Len != 0 {
		t.Fatalf("Stats = %+v, want 50 exported, none left", s)
	}
	wantDrops(t, s, nil, 2)
}

// TestQueueShutdownStuckExporter checks that Shutdown returns by its deadline
// when the collector hangs, with every record counted as a shutdown drop.
func TestQueueShutdownStuckExporter(t *testing.T) {
	const deadline = 100 * time.Millisecond
	exp := newStuckExporter()
	q := NewQueue(exp, QueueConfig{BatchSize: 10, Timeout: time.Hour, FlushInterval: time.Hour})
	for i := range 25 {
		q.Enqueue(testRecord(i))
	}
	receive(t, exp.entered, "the first export")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := q.Shutdown(ctx)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline error", err)
	}
	if elapsed < deadline/2 || elapsed > deadline+time.Second {
		t.Fatalf("Shutdown returned after %v, want about %v", elapsed, deadline)
	}
	s := q.Stats()
	if s.Len != 0 || s.ExportedRecords != 0 {
		t.Fatalf("Stats = %+v, want nothing left and nothing exported", s)
	}
	wantDrops(t, s, map[string]uint64{ReasonShutdown: 25}, 2)
	testutil.Eventually(t, 5*time.Second, "Exporter.Shutdown", func() bool { return exp.shutdowns.Load() == 1 })
	if got := q.Stats(); !maps.Equal(got.Dropped, s.Dropped) {
		t.Fatalf("drops changed after Shutdown returned: %v then %v", s.Dropped, got.Dropped)
	}
}

// deafExporter breaks the Exporter contract: it ignores its context and
// returns success only when the test releases it.
type deafExporter struct {
	recordingExporter
	entered chan struct{}
	release chan struct{}
}

func (e *deafExporter) Export(ctx context.Context, batch []*Record) error {
	e.entered <- struct{}{}
	<-e.release
	return e.recordingExporter.Export(ctx, batch)
}

// TestQueueShutdownAbandonsDeafExporter checks that Shutdown keeps its
// deadline even when Export ignores its context, that its Stats are final
// when it returns (a late success does not count twice), and that the worker
// still ends once Export returns.
func TestQueueShutdownAbandonsDeafExporter(t *testing.T) {
	baseline := testutil.Goroutines()
	exp := &deafExporter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	q := NewQueue(exp, QueueConfig{BatchSize: 4, FlushInterval: time.Hour})
	for i := range 10 {
		q.Enqueue(testRecord(i))
	}
	receive(t, exp.entered, "the first export")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline error", err)
	}
	final := q.Stats()
	wantDrops(t, final, map[string]uint64{ReasonShutdown: 10}, 2)
	close(exp.release)
	testutil.Eventually(t, 5*time.Second, "Exporter.Shutdown", func() bool { return exp.shutdowns.Load() == 1 })
	baseline.Settle(t, 5*time.Second) // the worker ends
	if got := q.Stats(); !reflect.DeepEqual(got, final) {
		t.Fatalf("Stats changed after Shutdown returned: %+v, then %+v", final, got)
	}
	if got := exp.exported(); !slices.Equal(got, seq(0, 4)) {
		t.Fatalf("the deaf exporter got %v, want the batch it held", got)
	}
}

// TestQueueShutdownDuringRetryWait shuts down while a batch waits for its
// next retry: the wait is cut at the deadline and the batch counted.
func TestQueueShutdownDuringRetryWait(t *testing.T) {
	clk := newManualClock()
	exp := &failingExporter{err: Retryable(errUnavailable, 0)}
	q := newQueue(exp, QueueConfig{BatchSize: 3, FlushInterval: time.Hour}, clk.clock())
	for i := range 5 {
		q.Enqueue(testRecord(i))
	}
	clk.nextWait(t) // never fired
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline error", err)
	}
	wantDrops(t, q.Stats(), map[string]uint64{ReasonShutdown: 5}, 2)
	testutil.Eventually(t, 5*time.Second, "Exporter.Shutdown", func() bool { return exp.shutdowns.Load() == 1 })
	if n := exp.calls.Load(); n != 1 {
		t.Fatalf("Export called %d times, want once", n)
	}
}

// TestQueueShutdownWaitsForRecovery shuts down during an outage with time to
// spare: the collector comes back before the deadline and receives the batch
// being retried and the records still queued.
func TestQueueShutdownWaitsForRecovery(t *testing.T) {
	clk := newManualClock()
	exp := &flappingExporter{down: 2}
	q := newQueue(exp, QueueConfig{BatchSize: 3, FlushInterval: time.Hour}, clk.clock())
	for i := range 3 {
		q.Enqueue(testRecord(i))
	}
	w := clk.nextWait(t)
	for i := 3; i < 8; i++ {
		q.Enqueue(testRecord(i))
	}
	result := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		result <- q.Shutdown(ctx)
	}()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	testutil.Eventually(t, 5*time.Second, "Shutdown to start", func() bool { return errors.Is(q.ForceFlush(cancelled), ErrQueueClosed) })
	for range 100 {
		if err := q.ForceFlush(cancelled); !errors.Is(err, ErrQueueClosed) {
			t.Fatalf("ForceFlush during Shutdown = %v, want ErrQueueClosed every time", err)
		}
	}
	clk.fire(w)
	clk.fire(clk.nextWait(t))
	if err := receive(t, result, "Shutdown"); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if got, want := exp.exported(), seq(0, 8); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	wantDrops(t, q.Stats(), nil, 2)
}

func TestQueueAfterShutdown(t *testing.T) {
	exp := &recordingExporter{}
	var drops []string
	var mu sync.Mutex
	q := NewQueue(exp, QueueConfig{OnDrop: func(reason string, records, spans int) {
		mu.Lock()
		drops = append(drops, fmt.Sprintf("%s %d %d", reason, records, spans))
		mu.Unlock()
	}})
	shutdown(t, q)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := q.Shutdown(cancelled); err != nil {
		t.Fatalf("second Shutdown = %v, want nil at once", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("second Shutdown took %v", d)
	}
	if q.Enqueue(testRecord(0)) {
		t.Fatal("Enqueue after Shutdown accepted the record")
	}
	if err := q.ForceFlush(context.Background()); !errors.Is(err, ErrQueueClosed) {
		t.Fatalf("ForceFlush after Shutdown = %v, want ErrQueueClosed", err)
	}
	if n := exp.shutdowns.Load(); n != 1 {
		t.Fatalf("Exporter.Shutdown called %d times, want once", n)
	}
	s := q.Stats()
	if s.Enqueued != 0 {
		t.Fatalf("Enqueued = %d after Shutdown", s.Enqueued)
	}
	wantDrops(t, s, map[string]uint64{ReasonShutdown: 1}, 2)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"shutdown 1 2"}; !slices.Equal(drops, want) {
		t.Fatalf("OnDrop calls = %v, want %v", drops, want)
	}
}

func TestQueueShutdownReturnsExporterError(t *testing.T) {
	errClose := errors.New("close failed")
	exp := &recordingExporter{shutErr: errClose}
	var reported error
	q := NewQueue(exp, QueueConfig{OnError: func(err error) { reported = err }})
	err := q.Shutdown(context.Background())
	if !errors.Is(err, errClose) {
		t.Fatalf("Shutdown = %v, want %v", err, errClose)
	}
	if !errors.Is(reported, errClose) {
		t.Fatalf("OnError got %v, want %v", reported, errClose)
	}
}

// TestQueueNoGoroutineLeak runs queues through every way of ending and checks
// that their goroutines are gone.
func TestQueueNoGoroutineLeak(t *testing.T) {
	baseline := testutil.Goroutines()
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 20*time.Millisecond)
	}

	healthy := NewQueue(&recordingExporter{}, QueueConfig{BatchSize: 2, FlushInterval: time.Millisecond})
	for i := range 10 {
		healthy.Enqueue(testRecord(i))
	}
	shutdown(t, healthy)

	stuck := newStuckExporter()
	hanging := NewQueue(stuck, QueueConfig{BatchSize: 1, Timeout: time.Hour})
	hanging.Enqueue(testRecord(0))
	receive(t, stuck.entered, "the first export")
	ctx, cancel := short()
	_ = hanging.Shutdown(ctx)
	cancel()

	down := NewQueue(&failingExporter{err: Retryable(errUnavailable, 0)},
		QueueConfig{BatchSize: 1, RetryInitial: time.Hour, MaxRetryTime: 2 * time.Hour})
	down.Enqueue(testRecord(0))
	ctx, cancel = short()
	_ = down.Shutdown(ctx)
	cancel()

	idle := NewQueue(&recordingExporter{}, QueueConfig{})
	shutdown(t, idle)

	baseline.Settle(t, 5*time.Second)
	if n := stuck.inside.Load(); n != 0 {
		t.Fatalf("%d exports still stuck", n)
	}
}

// TestQueueMemoryBounded enqueues 200,000 records while the collector is
// down and checks that the heap holds no more than the queue's bound.
func TestQueueMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200,000 records")
	}
	const size, batch, total = 8192, 512, 200000
	const margin = 16 << 20

	var m0, m1 runtime.MemStats
	const sample = 20000
	runtime.GC()
	runtime.ReadMemStats(&m0)
	keep := make([]*Record, sample)
	for i := range keep {
		keep[i] = testRecord(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	perRecord := int64(m1.HeapInuse-m0.HeapInuse) / sample
	runtime.KeepAlive(keep)
	keep = nil

	clk := newManualClock() // the retry wait never passes: the worker holds one batch
	exp := &failingExporter{err: Retryable(errUnavailable, 0)}
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	q := newQueue(exp, QueueConfig{Size: size, BatchSize: batch, FlushInterval: time.Hour}, clk.clock())
	for i := range total {
		q.Enqueue(testRecord(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	growth := int64(m1.HeapInuse) - int64(m0.HeapInuse)
	bound := int64(size+batch)*perRecord + margin
	t.Logf("%d records in %v; %d bytes a record (Record.Size says %d); heap grew %.1f MiB, bound %.1f MiB ((%d+%d) records + %d MiB)",
		total, time.Since(start), perRecord, testRecord(0).Size(), float64(growth)/(1<<20), float64(bound)/(1<<20), size, batch, margin>>20)
	if growth > bound {
		t.Errorf("heap grew %d bytes, beyond the bound of %d", growth, bound)
	}
	s := q.Stats()
	if s.Len != size || s.Enqueued != total {
		t.Errorf("Len = %d, Enqueued = %d, want %d and %d", s.Len, s.Enqueued, size, total)
	}
	wantDrops(t, s, map[string]uint64{ReasonQueueFull: total - size - batch}, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_ = q.Shutdown(ctx)
	wantDrops(t, q.Stats(), map[string]uint64{ReasonQueueFull: total - size - batch, ReasonShutdown: size + batch}, 2)
}
