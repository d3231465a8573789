package exporter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// testRecord builds a realistic record (a SERVER span, one CLIENT span,
// strings on the heap) whose trace id carries i, so tests can check order.
func testRecord(i int) *Record {
	n := fmt.Sprintf("%08d", i) // fixed width: every record has the same Size
	r := &Record{
		Service:   "orders-legacy",
		Instance:  "orders-1@10.0.0.7",
		SegmentID: "seg-" + n,
		SWTraceID: "trace-" + n,
		Server: Span{
			Kind:   KindServer,
			Name:   "GET /orders/" + n,
			Start:  time.Unix(1700000000, 0),
			Status: 200,
			Peer:   "10.0.0.1:51234",
			Tags:   []Tag{{Key: "http.method", Value: "GET"}},
		},
		Clients: []Span{{
			Kind:   KindClient,
			Name:   "GET /orders/" + n,
			Status: 200,
			Peer:   "127.0.0.1:8080",
		}},
		SamplingReason: "ratio",
	}
	binary.BigEndian.PutUint64(r.TraceID[8:], uint64(i))
	r.Server.ID = headers.SpanID{1}
	r.Clients[0].ID = headers.SpanID{2}
	r.Clients[0].ParentID = r.Server.ID
	return r
}

// recordIndex returns the i that testRecord(i) put into the trace id.
func recordIndex(r *Record) int { return int(binary.BigEndian.Uint64(r.TraceID[8:])) }

func indexes(rs []*Record) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = recordIndex(r)
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// recordingExporter accepts every batch and remembers it.
type recordingExporter struct {
	mu        sync.Mutex
	batches   [][]*Record
	shutdowns atomic.Int32
	shutErr   error
}

func (e *recordingExporter) Export(_ context.Context, batch []*Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.batches = append(e.batches, slices.Clone(batch))
	return nil
}

func (e *recordingExporter) Shutdown(context.Context) error {
	e.shutdowns.Add(1)
	return e.shutErr
}

// batchSizes returns the length of every batch received so far.
func (e *recordingExporter) batchSizes() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]int, len(e.batches))
	for i, b := range e.batches {
		out[i] = len(b)
	}
	return out
}

// exported returns the indexes of every record received, in order.
func (e *recordingExporter) exported() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []int
	for _, b := range e.batches {
		out = append(out, indexes(b)...)
	}
	return out
}

// discardExporter accepts every batch and keeps nothing.
type discardExporter struct{}

func (discardExporter) Export(context.Context, []*Record) error { return nil }
func (discardExporter) Shutdown(context.Context) error          { return nil }

// fakeClock is a Queue clock whose time moves only when the Queue waits.
// With requests nil every wait passes at once; otherwise each wait is handed
// to the test, which fires it.
type fakeClock struct {
	mu       sync.Mutex
	t        time.Time
	waits    []time.Duration
	requests chan waitRequest
}

// waitRequest is one retry wait the Queue asked for.
type waitRequest struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1700000000, 0)} }

// newManualClock returns a fakeClock whose waits the test fires.
func newManualClock() *fakeClock {
	c := newFakeClock()
	c.requests = make(chan waitRequest, 64)
	return c
}

func (c *fakeClock) clock() clock { return clock{now: c.now, after: c.after} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if c.requests != nil {
		c.requests <- waitRequest{d: d, fire: ch}
		return ch
	}
	c.advance(d)
	ch <- c.now()
	return ch
}

func (c *fakeClock) requestedWaits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// nextWait returns the next wait the Queue asks for, failing after a while.
func (c *fakeClock) nextWait(t *testing.T) waitRequest {
	t.Helper()
	return receive(t, c.requests, "a retry wait")
}

// fire lets the wait pass, advancing the clock by its duration.
func (c *fakeClock) fire(w waitRequest) {
	c.advance(w.d)
	w.fire <- c.now()
}

// receive waits for a value on ch, failing the test after 5s.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// shutdown shuts q down with a generous deadline, failing on error.
func shutdown(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func flush(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.ForceFlush(ctx); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
}

// totalDropped sums a Stats drop map.
func totalDropped(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// wantDrops checks every drop counter: records and spans by reason, zero for
// reasons not listed.
func wantDrops(t *testing.T, s Stats, records map[string]uint64, spansPerRecord uint64) {
	t.Helper()
	for _, reason := range dropReasons {
		if got, want := s.Dropped[reason], records[reason]; got != want {
			t.Errorf("Dropped[%s] = %d, want %d", reason, got, want)
		}
		if got, want := s.DroppedSpans[reason], records[reason]*spansPerRecord; got != want {
			t.Errorf("DroppedSpans[%s] = %d, want %d", reason, got, want)
		}
	}
}

func TestQueueConfigValidate(t *testing.T) {
	valid := []struct {
		name string
		cfg  QueueConfig
	}{
		{"zero", QueueConfig{}},
		{"drop oldest", QueueConfig{Drop: DropOldest}},
		{"drop newest", QueueConfig{Drop: DropNewest}},
		{"everything set", QueueConfig{Size: 10, Bytes: 1 << 20, BatchSize: 5, FlushInterval: time.Second,
			Timeout: time.Second, MaxRetryTime: time.Minute, RetryInitial: time.Second, RetryMax: time.Minute}},
		{"retries disabled", QueueConfig{MaxRetryTime: -1}},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestQueueConfigValidateInvalid(t *testing.T) {
	invalid := []struct {
		name   string
		cfg    QueueConfig
		option string
	}{
		{"negative size", QueueConfig{Size: -1}, "queue_size"},
		{"negative bytes", QueueConfig{Bytes: -1}, "queue_bytes"},
		{"negative batch", QueueConfig{BatchSize: -1}, "batch_size"},
		{"negative interval", QueueConfig{FlushInterval: -time.Second}, "flush_interval"},
		{"negative timeout", QueueConfig{Timeout: -time.Second}, "timeout"},
		{"negative retry initial", QueueConfig{RetryInitial: -time.Second}, "retry_initial"},
		{"negative retry max", QueueConfig{RetryMax: -time.Second}, "retry_max"},
		{"unknown drop", QueueConfig{Drop: "random"}, `drop must be "oldest" or "newest", got "random"`},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.option) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.option)
			}
		})
	}
}

func TestQueueConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		cfg  QueueConfig
		want QueueConfig
	}{
		{"zero", QueueConfig{}, QueueConfig{Size: 8192, Drop: DropOldest, BatchSize: 512, FlushInterval: time.Second,
			Timeout: 5 * time.Second, MaxRetryTime: time.Minute, RetryInitial: 500 * time.Millisecond, RetryMax: 30 * time.Second}},
		{"batch clamped to size", QueueConfig{Size: 100, Drop: DropNewest}, QueueConfig{Size: 100, Drop: DropNewest, BatchSize: 100,
			FlushInterval: time.Second, Timeout: 5 * time.Second, MaxRetryTime: time.Minute, RetryInitial: 500 * time.Millisecond, RetryMax: 30 * time.Second}},
		{"invalid values take defaults", QueueConfig{Size: -1, Bytes: -1, BatchSize: -1, Drop: "x", FlushInterval: -1, Timeout: -1,
			RetryInitial: -1, RetryMax: -1, MaxRetryTime: -1}, QueueConfig{Size: 8192, Drop: DropOldest, BatchSize: 512,
			FlushInterval: time.Second, Timeout: 5 * time.Second, MaxRetryTime: -1, RetryInitial: 500 * time.Millisecond, RetryMax: 30 * time.Second}},
		{"retry max at least initial", QueueConfig{RetryInitial: time.Minute, RetryMax: time.Second}, QueueConfig{Size: 8192, Drop: DropOldest,
			BatchSize: 512, FlushInterval: time.Second, Timeout: 5 * time.Second, MaxRetryTime: time.Minute, RetryInitial: time.Minute, RetryMax: time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.withDefaults(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("withDefaults =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestQueueBatchesBySize(t *testing.T) {
	exp := &recordingExporter{}
	q := NewQueue(exp, QueueConfig{BatchSize: 10, FlushInterval: time.Hour})
	defer shutdown(t, q)
	for i := range 25 {
		if !q.Enqueue(testRecord(i)) {
			t.Fatalf("Enqueue(%d) refused", i)
		}
	}
	testutil.Eventually(t, 5*time.Second, "two full batches", func() bool { return len(exp.batchSizes()) == 2 })
	if got := q.Len(); got != 5 {
		t.Fatalf("Len = %d after two full batches, want the 5 left waiting for the interval", got)
	}
	flush(t, q)
	if got, want := exp.batchSizes(), []int{10, 10, 5}; !slices.Equal(got, want) {
		t.Fatalf("batch sizes = %v, want %v", got, want)
	}
	if got, want := exp.exported(), seq(0, 25); !slices.Equal(got, want) {
		t.Fatalf("exported %v, want %v", got, want)
	}
}

func TestQueueBatchesByInterval(t *testing.T) {
	exp := &recordingExporter{}
	q := NewQueue(exp, QueueConfig{BatchSize: 100, FlushInterval: 10 * time.Millisecond})
	defer shutdown(t, q)
	for i := range 3 {
		q.Enqueue(testRecord(i))
	}
	testutil.Eventually(t, 5*time.Second, "the interval flush", func() bool { return len(exp.exported()) == 3 })
	if got, want := exp.exported(), seq(0, 3); !slices.Equal(got, want) {
		t.Fatalf("exported %v, want %v", got, want)
	}
	q.Enqueue(testRecord(3))
	testutil.Eventually(t, 5*time.Second, "the next interval flush", func() bool { return len(exp.exported()) == 4 })
}

func TestQueueForceFlushExportsEverythingInOrder(t *testing.T) {
	exp := &recordingExporter{}
	q := NewQueue(exp, QueueConfig{Size: 2048, BatchSize: 64, FlushInterval: time.Hour})
	defer shutdown(t, q)
	for i := range 1000 {
		q.Enqueue(testRecord(i))
	}
	flush(t, q)
	if got, want := exp.exported(), seq(0, 1000); !slices.Equal(got, want) {
		t.Fatalf("exported %d records out of order or incomplete", len(got))
	}
	for _, n := range exp.batchSizes() {
		if n > 64 {
			t.Fatalf("a batch of %d records exceeds BatchSize 64", n)
		}
	}
	s := q.Stats()
	if s.Enqueued != 1000 || s.ExportedRecords != 1000 || s.ExportedSpans != 2000 || s.Len != 0 {
		t.Fatalf("Stats = %+v, want 1000 enqueued and exported, 2000 spans, none left", s)
	}
	if s.LastSuccess.IsZero() {
		t.Fatal("LastSuccess not set after a successful export")
	}
	wantDrops(t, s, nil, 2)
}

// gatedExporter holds its first Export until release is closed (or ctx
// ends), so a test can fill the queue while the worker is provably busy.
type gatedExporter struct {
	recordingExporter
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int32
}

func newGatedExporter() *gatedExporter {
	return &gatedExporter{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (e *gatedExporter) Export(ctx context.Context, batch []*Record) error {
	if e.calls.Add(1) == 1 {
		e.entered <- struct{}{}
		select {
		case <-e.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return e.recordingExporter.Export(ctx, batch)
}

func TestQueueDropPolicy(t *testing.T) {
	tests := []struct {
		name string
		drop string
		// kept are the records waiting after 10..24 were enqueued behind the
		// batch in flight (0..9) into a queue of 10.
		kept []int
		// accepted is how many of the 15 Enqueue calls returned true.
		accepted int
	}{
		{"oldest", DropOldest, seq(15, 25), 15},
		{"newest", DropNewest, seq(10, 20), 10},
		{"default is oldest", "", seq(15, 25), 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exp := newGatedExporter()
			var onDrop atomic.Uint64
			q := NewQueue(exp, QueueConfig{Size: 10, BatchSize: 10, FlushInterval: time.Hour, Drop: tc.drop,
				OnDrop: func(reason string, records, spans int) {
					if reason != ReasonQueueFull || spans != 2*records {
						t.Errorf("OnDrop(%q, %d, %d), want queue_full with 2 spans a record", reason, records, spans)
					}
					onDrop.Add(uint64(records))
				}})
			defer shutdown(t, q)
			for i := range 10 {
				q.Enqueue(testRecord(i))
			}
			receive(t, exp.entered, "the first export") // 0..9 are in flight; the queue is empty
			accepted := 0
			for i := 10; i < 25; i++ {
				if q.Enqueue(testRecord(i)) {
					accepted++
				}
				if n := q.Len(); n > 10 {
					t.Fatalf("Len = %d, exceeds Size 10", n)
				}
			}
			if accepted != tc.accepted {
				t.Fatalf("%d records accepted, want %d", accepted, tc.accepted)
			}
			s := q.Stats()
			wantDrops(t, s, map[string]uint64{ReasonQueueFull: 5}, 2)
			if onDrop.Load() != 5 {
				t.Fatalf("OnDrop reported %d records, want 5", onDrop.Load())
			}
			if want := uint64(10 + tc.accepted); s.Enqueued != want {
				t.Fatalf("Enqueued = %d, want %d", s.Enqueued, want)
			}
			close(exp.release)
			flush(t, q)
			if got, want := exp.exported(), append(seq(0, 10), tc.kept...); !slices.Equal(got, want) {
				t.Fatalf("exported %v, want %v", got, want)
			}
		})
	}
}

func TestQueueByteBound(t *testing.T) {
	one := testRecord(0).Size()
	for _, drop := range []string{DropOldest, DropNewest} {
		t.Run(drop, func(t *testing.T) {
			exp := newGatedExporter()
			q := NewQueue(exp, QueueConfig{Size: 100, Bytes: 5 * one, BatchSize: 1, FlushInterval: time.Hour, Drop: drop})
			defer shutdown(t, q)
			q.Enqueue(testRecord(0))
			receive(t, exp.entered, "the first export") // record 0 is in flight
			for i := 1; i <= 20; i++ {
				q.Enqueue(testRecord(i))
				if s := q.Stats(); s.Bytes > 5*one || s.Len > 5 {
					t.Fatalf("after record %d: Bytes = %d, Len = %d; bound is %d bytes (5 records)", i, s.Bytes, s.Len, 5*one)
				}
			}
			s := q.Stats()
			if s.Len != 5 || s.Bytes != 5*one {
				t.Fatalf("Len = %d, Bytes = %d, want 5 records of %d bytes", s.Len, s.Bytes, one)
			}
			wantDrops(t, s, map[string]uint64{ReasonQueueFull: 15}, 2)
			close(exp.release)
			flush(t, q)
			if s := q.Stats(); s.Bytes != 0 || s.Len != 0 {
				t.Fatalf("after flushing: Len = %d, Bytes = %d, want 0", s.Len, s.Bytes)
			}
		})
	}
}

// TestQueueOversizedRecord pins the behaviour for a record bigger than the
// whole byte bound: it is dropped as queue_full under either policy, and
// what is queued stays queued.
func TestQueueOversizedRecord(t *testing.T) {
	one := testRecord(0).Size()
	huge := testRecord(99)
	huge.Server.Error = strings.Repeat("x", 4*one)
	for _, drop := range []string{DropOldest, DropNewest} {
		t.Run(drop, func(t *testing.T) {
			exp := &recordingExporter{}
			q := NewQueue(exp, QueueConfig{Bytes: 3 * one, FlushInterval: time.Hour, Drop: drop})
			defer shutdown(t, q)
			q.Enqueue(testRecord(1))
			q.Enqueue(testRecord(2))
			if q.Enqueue(huge) {
				t.Fatal("a record bigger than queue_bytes was accepted")
			}
			s := q.Stats()
			if s.Len != 2 || s.Bytes != 2*one {
				t.Fatalf("Len = %d, Bytes = %d, want the 2 earlier records kept", s.Len, s.Bytes)
			}
			wantDrops(t, s, map[string]uint64{ReasonQueueFull: 1}, 2)
			flush(t, q)
			if got, want := exp.exported(), []int{1, 2}; !slices.Equal(got, want) {
				t.Fatalf("exported %v, want %v", got, want)
			}
		})
	}
}

// TestQueueKeepsNoRecord checks that the queue lets go of records once they
// are exported or evicted, so that it holds no memory beyond what waits.
func TestQueueKeepsNoRecord(t *testing.T) {
	q := NewQueue(discardExporter{}, QueueConfig{Size: 16, BatchSize: 4, FlushInterval: time.Hour})
	defer shutdown(t, q)
	var refs []weak.Pointer[Record]
	for i := range 40 {
		r := testRecord(i)
		refs = append(refs, weak.Make(r))
		q.Enqueue(r)
	}
	flush(t, q)
	runtime.GC()
	for i, p := range refs {
		if p.Value() != nil {
			t.Fatalf("record %d is still referenced after it was exported or evicted", i)
		}
	}
}

func TestQueueEnqueueNil(t *testing.T) {
	q := NewQueue(&recordingExporter{}, QueueConfig{})
	defer shutdown(t, q)
	if q.Enqueue(nil) {
		t.Fatal("Enqueue(nil) = true")
	}
	if s := q.Stats(); s.Enqueued != 0 || totalDropped(s.Dropped) != 0 {
		t.Fatalf("Enqueue(nil) was counted: %+v", s)
	}
}

// scriptedExporter returns the scripted errors in turn, then nil, advancing
// the fake clock by cost on every call.
type scriptedExporter struct {
	recordingExporter
	clk    *fakeClock
	cost   time.Duration
	script []error
	calls  atomic.Int32
}

func (e *scriptedExporter) Export(ctx context.Context, batch []*Record) error {
	n := int(e.calls.Add(1)) - 1
	e.clk.advance(e.cost)
	if n < len(e.script) && e.script[n] != nil {
		return e.script[n]
	}
	return e.recordingExporter.Export(ctx, batch)
}

func TestQueueHooks(t *testing.T) {
	clk := newFakeClock()
	errDown := errors.New("collector down")
	errBad := errors.New("bad request")
	exp := &scriptedExporter{clk: clk, cost: 3 * time.Millisecond,
		script: []error{Retryable(errDown, time.Second), nil, errBad}}
	type exportCall struct {
		d              time.Duration
		records, spans int
		err            error
	}
	type dropCall struct {
		reason         string
		records, spans int
	}
	var (
		mu      sync.Mutex
		exports []exportCall
		drops   []dropCall
		errs    []error
	)
	q := newQueue(exp, QueueConfig{BatchSize: 2, FlushInterval: time.Hour,
		OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() },
		OnDrop: func(reason string, records, spans int) {
			mu.Lock()
			drops = append(drops, dropCall{reason, records, spans})
			mu.Unlock()
		},
		OnExport: func(d time.Duration, records, spans int, err error) {
			mu.Lock()
			exports = append(exports, exportCall{d, records, spans, err})
			mu.Unlock()
		},
	}, clk.clock())
	q.Enqueue(testRecord(0))
	q.Enqueue(testRecord(1)) // batch 1: fails, retried after 1s, delivered
	flush(t, q)
	q.Enqueue(testRecord(2)) // batch 2: rejected
	flush(t, q)
	shutdown(t, q)
	q.Enqueue(testRecord(3)) // refused: shut down

	mu.Lock()
	defer mu.Unlock()
	wantExports := []exportCall{
		{3 * time.Millisecond, 2, 4, exp.script[0]},
		{3 * time.Millisecond, 2, 4, nil},
		{3 * time.Millisecond, 1, 2, errBad},
	}
	if !slices.Equal(exports, wantExports) {
		t.Errorf("OnExport calls = %v, want %v", exports, wantExports)
	}
	if len(errs) != 2 || !errors.Is(errs[0], errDown) || !errors.Is(errs[1], errBad) {
		t.Errorf("OnError calls = %v, want %v then %v", errs, errDown, errBad)
	}
	wantDropCalls := []dropCall{{ReasonRejected, 1, 2}, {ReasonShutdown, 1, 2}}
	if !slices.Equal(drops, wantDropCalls) {
		t.Errorf("OnDrop calls = %v, want %v", drops, wantDropCalls)
	}
	if got, want := clk.requestedWaits(), []time.Duration{time.Second}; !slices.Equal(got, want) {
		t.Errorf("retry waits = %v, want %v", got, want)
	}
	s := q.Stats()
	if s.Retries != 1 || s.Failures != 2 || s.ExportedRecords != 2 || s.ExportedSpans != 4 || s.Enqueued != 3 {
		t.Errorf("Stats = %+v, want 1 retry, 2 failures, 2 records (4 spans) exported, 3 enqueued", s)
	}
	// The success ended after two 3ms attempts and the 1s wait.
	if want := time.Unix(1700000000, 0).Add(time.Second + 6*time.Millisecond); !s.LastSuccess.Equal(want) {
		t.Errorf("LastSuccess = %v, want %v on the queue's clock", s.LastSuccess, want)
	}
}

// TestQueueAccountsForEveryRecord hammers Enqueue, ForceFlush and Stats
// together and checks that every Enqueue call ends up exported or dropped
// with a reason.
func TestQueueAccountsForEveryRecord(t *testing.T) {
	for _, drop := range []string{DropOldest, DropNewest} {
		t.Run(drop, func(t *testing.T) {
			exp := &recordingExporter{}
			one := testRecord(0).Size()
			q := NewQueue(exp, QueueConfig{Size: 64, Bytes: 48 * one, BatchSize: 16, FlushInterval: time.Millisecond, Drop: drop})
			const goroutines, each = 8, 2000
			var wg sync.WaitGroup
			stop := make(chan struct{})
			var monitor sync.WaitGroup
			monitor.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if s := q.Stats(); s.Len > 64 || s.Bytes > 48*one {
						t.Errorf("Len = %d, Bytes = %d beyond the bounds", s.Len, s.Bytes)
						return
					}
					_ = q.ForceFlush(context.Background())
				}
			})
			for g := range goroutines {
				wg.Go(func() {
					for i := range each {
						q.Enqueue(testRecord(g*each + i))
					}
				})
			}
			wg.Wait()
			close(stop)
			monitor.Wait()
			shutdown(t, q)
			s := q.Stats()
			if got := s.ExportedRecords + totalDropped(s.Dropped); got != goroutines*each {
				t.Fatalf("exported %d + dropped %v = %d, want %d", s.ExportedRecords, s.Dropped, got, goroutines*each)
			}
			if got := len(exp.exported()); uint64(got) != s.ExportedRecords {
				t.Fatalf("exporter received %d records, Stats say %d", got, s.ExportedRecords)
			}
			if s.Len != 0 || s.Bytes != 0 {
				t.Fatalf("after Shutdown: Len = %d, Bytes = %d", s.Len, s.Bytes)
			}
			t.Logf("%s: %d exported, dropped %v", drop, s.ExportedRecords, s.Dropped)
		})
	}
}

func TestJitterRange(t *testing.T) {
	for _, d := range []time.Duration{1, 2, time.Millisecond, 500 * time.Millisecond, 30 * time.Second} {
		t.Run(fmt.Sprint(d), func(t *testing.T) {
			for range 1000 {
				if j := Jitter(d); j < d/2 || j >= d/2+d {
					t.Fatalf("Jitter(%v) = %v, outside [d/2, 3d/2)", d, j)
				}
			}
		})
	}
	if j := Jitter(0); j != 0 {
		t.Fatalf("Jitter(0) = %v", j)
	}
}
