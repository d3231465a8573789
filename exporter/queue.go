package exporter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Drop policies for a full queue.
const (
	DropOldest = "oldest" // evict the oldest queued record to make room
	DropNewest = "newest" // refuse the record being enqueued
)

// Drop reasons, as reported in Stats and to OnDrop.
const (
	ReasonQueueFull      = "queue_full"      // the queue was at its bound
	ReasonRetryExhausted = "retry_exhausted" // retried until max_retry_time
	ReasonRejected       = "rejected"        // the backend refused the batch for good
	ReasonEncodeError    = "encode_error"    // the batch could not be encoded
	ReasonShutdown       = "shutdown"        // still queued when the flush deadline passed
)

// QueueConfig sizes a Queue. Zero values take the defaults in brackets.
type QueueConfig struct {
	// Size bounds the records waiting in the queue [8192].
	Size int
	// Bytes bounds the estimated bytes waiting in the queue (Record.Size);
	// zero means no byte bound.
	Bytes int
	// Drop is DropOldest [default] or DropNewest.
	Drop string
	// BatchSize is the most records handed to one Export [512].
	BatchSize int
	// FlushInterval is the longest a record waits for a batch to fill [1s].
	FlushInterval time.Duration
	// Timeout bounds one Export attempt [5s].
	Timeout time.Duration
	// MaxRetryTime bounds the time spent retrying one batch [60s]; a
	// negative value disables retries.
	MaxRetryTime time.Duration
	// RetryInitial and RetryMax bound the backoff between retries [500ms,
	// 30s]; each wait is jittered by up to ±50%.
	RetryInitial, RetryMax time.Duration
	// OnError, if set, is called from the worker with every failed export
	// attempt.
	OnError func(error)
	// OnDrop, if set, is called whenever records are dropped, with the
	// reason, the record and span counts. It may be called from Enqueue and
	// must not block.
	OnDrop func(reason string, records, spans int)
	// OnExport, if set, is called after every export attempt with its
	// duration, the batch's record and span counts, and its error.
	OnExport func(d time.Duration, records, spans int, err error)
}

// Validate checks the configuration, naming the offending option.
func (c *QueueConfig) Validate() error {
	switch {
	case c.Size < 0:
		return fmt.Errorf("queue_size must not be negative, got %d", c.Size)
	case c.Bytes < 0:
		return fmt.Errorf("queue_bytes must not be negative, got %d", c.Bytes)
	case c.BatchSize < 0:
		return fmt.Errorf("batch_size must not be negative, got %d", c.BatchSize)
	case c.FlushInterval < 0:
		return fmt.Errorf("flush_interval must not be negative, got %s", c.FlushInterval)
	case c.Timeout < 0:
		return fmt.Errorf("timeout must not be negative, got %s", c.Timeout)
	case c.Drop != "" && c.Drop != DropOldest && c.Drop != DropNewest:
		return fmt.Errorf("drop must be %q or %q, got %q", DropOldest, DropNewest, c.Drop)
	}
	return nil
}

func (c QueueConfig) withDefaults() QueueConfig {
	if c.Size == 0 {
		c.Size = 8192
	}
	if c.Drop == "" {
		c.Drop = DropOldest
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxRetryTime == 0 {
		c.MaxRetryTime = 60 * time.Second
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = 500 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	return c
}

// Stats counts what a queue did. Records and spans are counted separately
// because one record holds several spans.
type Stats struct {
	Enqueued        uint64            // records accepted by Enqueue
	ExportedRecords uint64            // records the backend accepted
	ExportedSpans   uint64            // spans the backend accepted
	Dropped         map[string]uint64 // records dropped, by reason
	DroppedSpans    map[string]uint64 // spans dropped, by reason
	Retries         uint64            // export attempts after the first
	Failures        uint64            // failed export attempts
	Len             int               // records waiting now
	Bytes           int               // estimated bytes waiting now
	LastSuccess     time.Time         // end of the last successful export
}

var dropReasons = []string{ReasonQueueFull, ReasonRetryExhausted, ReasonRejected, ReasonEncodeError, ReasonShutdown}

// ErrQueueClosed is returned by ForceFlush after Shutdown.
var ErrQueueClosed = errors.New("exporter queue is shut down")

// Queue batches records for one Exporter off the request path.
//
// At most Size records (and Bytes estimated bytes) wait in the queue, plus one
// batch of at most BatchSize records being exported: that is the memory bound
// whatever the backend does.
type Queue struct {
	exp Exporter
	cfg QueueConfig

	mu      sync.Mutex
	ring    []*Record // circular buffer of waiting records
	head, n int
	bytes   int
	closed  bool

	wake     chan struct{} // a batch is ready
	flushReq chan chan struct{}
	stop     chan struct{}
	done     chan struct{}
	shutOnce sync.Once
	shutCtx  atomic.Pointer[context.Context]

	enqueued, exportedRecords, exportedSpans, retries, failures atomic.Uint64
	dropped, droppedSpans                                       [5]atomic.Uint64
	lastSuccess                                                 atomic.Int64
}

// NewQueue starts a queue and its worker for exp.
func NewQueue(exp Exporter, cfg QueueConfig) *Queue {
	cfg = cfg.withDefaults()
	q := &Queue{
		exp:      exp,
		cfg:      cfg,
		ring:     make([]*Record, cfg.Size),
		wake:     make(chan struct{}, 1),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go q.run()
	return q
}

// Enqueue hands a record to the queue. It never blocks: when the queue is
// full it drops a record (the oldest or this one, per the drop policy),
// counts it, and reports whether r was accepted.
func (q *Queue) Enqueue(r *Record) bool {
	size := 0
	if q.cfg.Bytes > 0 {
		size = r.Size()
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.drop(ReasonShutdown, 1, r.SpanCount())
		return false
	}
	var evicted []*Record
	for q.n > 0 && (q.n == len(q.ring) || (q.cfg.Bytes > 0 && q.bytes+size > q.cfg.Bytes)) {
		if q.cfg.Drop == DropNewest {
			q.mu.Unlock()
			q.drop(ReasonQueueFull, 1, r.SpanCount())
			return false
		}
		evicted = append(evicted, q.popLocked())
	}
	q.ring[(q.head+q.n)%len(q.ring)] = r
	q.n++
	q.bytes += size
	ready := q.n >= q.cfg.BatchSize
	q.mu.Unlock()
	q.enqueued.Add(1)
	for _, e := range evicted {
		q.drop(ReasonQueueFull, 1, e.SpanCount())
	}
	if ready {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

func (q *Queue) popLocked() *Record {
	r := q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	if q.cfg.Bytes > 0 {
		q.bytes -= r.Size()
	}
	return r
}

// take moves up to BatchSize waiting records into batch.
func (q *Queue) take(batch []*Record) []*Record {
	q.mu.Lock()
	for q.n > 0 && len(batch) < q.cfg.BatchSize {
		batch = append(batch, q.popLocked())
	}
	q.mu.Unlock()
	return batch
}

func (q *Queue) drop(reason string, records, spans int) {
	for i, r := range dropReasons {
		if r == reason {
			q.dropped[i].Add(uint64(records))
			q.droppedSpans[i].Add(uint64(spans))
		}
	}
	if q.cfg.OnDrop != nil {
		q.cfg.OnDrop(reason, records, spans)
	}
}

func (q *Queue) run() {
	defer close(q.done)
	timer := time.NewTimer(q.cfg.FlushInterval)
	defer timer.Stop()
	batch := make([]*Record, 0, q.cfg.BatchSize)
	for {
		select {
		case <-q.wake:
			batch = q.exportFull(batch)
		case <-timer.C:
			batch = q.drain(batch)
			timer.Reset(q.cfg.FlushInterval)
		case ack := <-q.flushReq:
			batch = q.drain(batch)
			close(ack)
		case <-q.stop:
			q.drain(batch)
			ctx := *q.shutCtx.Load()
			if err := q.exp.Shutdown(ctx); err != nil && q.cfg.OnError != nil {
				q.cfg.OnError(fmt.Errorf("exporter shutdown: %w", err))
			}
			return
		}
	}
}

// exportFull exports full batches while there are any; a partial batch
// waits for the timer.
func (q *Queue) exportFull(batch []*Record) []*Record {
	for {
		q.mu.Lock()
		full := q.n >= q.cfg.BatchSize
		q.mu.Unlock()
		if !full {
			return batch
		}
		batch = q.take(batch[:0])
		q.export(batch)
	}
}

// drain exports everything waiting.
func (q *Queue) drain(batch []*Record) []*Record {
	for {
		batch = q.take(batch[:0])
		if len(batch) == 0 {
			return batch
		}
		q.export(batch)
	}
}

// export sends one batch, retrying retryable failures with backoff until
// MaxRetryTime, and accounts for the outcome.
func (q *Queue) export(batch []*Record) {
	spans := 0
	for _, r := range batch {
		spans += r.SpanCount()
	}
	defer clear(batch)
	start := time.Now()
	wait := q.cfg.RetryInitial
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			q.retries.Add(1)
		}
		err := q.attempt(batch, spans)
		if err == nil {
			q.exportedRecords.Add(uint64(len(batch)))
			q.exportedSpans.Add(uint64(spans))
			q.lastSuccess.Store(time.Now().UnixNano())
			return
		}
		q.failures.Add(1)
		if q.cfg.OnError != nil {
			q.cfg.OnError(err)
		}
		retry, after := IsRetryable(err)
		if !retry {
			q.drop(ReasonRejected, len(batch), spans)
			return
		}
		if after <= 0 {
			after = jitter(wait)
			wait = min(wait*2, q.cfg.RetryMax)
		}
		if q.cfg.MaxRetryTime < 0 || time.Since(start)+after > q.cfg.MaxRetryTime {
			q.drop(ReasonRetryExhausted, len(batch), spans)
			return
		}
		if !q.sleep(after) {
			q.drop(ReasonShutdown, len(batch), spans)
			return
		}
	}
}

func (q *Queue) attempt(batch []*Record, spans int) error {
	ctx, cancel := context.WithTimeout(q.exportContext(), q.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := q.exp.Export(ctx, batch)
	if q.cfg.OnExport != nil {
		q.cfg.OnExport(time.Since(start), len(batch), spans, err)
	}
	return err
}

// exportContext is Background while running and the shutdown context once
// Shutdown was called, so the final flush honours its deadline.
func (q *Queue) exportContext() context.Context {
	if p := q.shutCtx.Load(); p != nil {
		return *p
	}
	return context.Background()
}

// sleep waits d; it reports whether the full wait passed. Once Shutdown
// was called it waits only while the shutdown deadline allows.
func (q *Queue) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-q.stop:
	}
	select {
	case <-t.C:
		return true
	case <-(*q.shutCtx.Load()).Done():
		return false
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d/2 + rand.N(d)
}

// ForceFlush exports everything queued now and waits for it, or for ctx.
func (q *Queue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flushReq <- ack:
	case <-q.done:
		return ErrQueueClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops accepting records, exports what is queued within ctx's
// deadline, shuts the exporter down and stops the worker. Records still
// queued when ctx ends are dropped with reason shutdown. Later calls return
// at once.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.shutOnce.Do(func() {
		q.shutCtx.Store(&ctx)
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.stop)
	})
	select {
	case <-q.done:
	case <-ctx.Done():
		// The worker is still exporting; it will notice the deadline
		// through the shutdown context and finish by itself.
		return ctx.Err()
	}
	q.mu.Lock()
	var left, spans int
	for q.n > 0 {
		r := q.popLocked()
		left++
		spans += r.SpanCount()
	}
	q.mu.Unlock()
	if left > 0 {
		q.drop(ReasonShutdown, left, spans)
	}
	return nil
}

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats {
	s := Stats{
		Enqueued:        q.enqueued.Load(),
		ExportedRecords: q.exportedRecords.Load(),
		ExportedSpans:   q.exportedSpans.Load(),
		Retries:         q.retries.Load(),
		Failures:        q.failures.Load(),
		Dropped:         make(map[string]uint64, len(dropReasons)),
		DroppedSpans:    make(map[string]uint64, len(dropReasons)),
	}
	for i, r := range dropReasons {
		s.Dropped[r] = q.dropped[i].Load()
		s.DroppedSpans[r] = q.droppedSpans[i].Load()
	}
	q.mu.Lock()
	s.Len, s.Bytes = q.n, q.bytes
	q.mu.Unlock()
	if ns := q.lastSuccess.Load(); ns != 0 {
		s.LastSuccess = time.Unix(0, ns)
	}
	return s
}

// Len returns the number of records waiting.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
