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
	// ReasonPartialRejected counts the spans a backend took the batch
	// without (OTLP partial success, rejected_spans); the batch's records
	// count as exported.
	ReasonPartialRejected = "partial_rejected"
)

// Indexes of the drop reasons in the Queue's counters.
const (
	dropQueueFull = iota
	dropRetryExhausted
	dropRejected
	dropEncodeError
	dropShutdown
	dropPartialRejected
	numDropReasons
)

var dropReasons = [numDropReasons]string{ReasonQueueFull, ReasonRetryExhausted, ReasonRejected, ReasonEncodeError, ReasonShutdown, ReasonPartialRejected}

// ErrQueueClosed is returned by ForceFlush after Shutdown.
var ErrQueueClosed = errors.New("exporter queue is shut down")

// ErrEncode marks an export failure caused by the batch itself, which no
// retry can fix: an Exporter wraps it (fmt.Errorf("...: %w", ErrEncode)) and
// the Queue drops the batch with reason encode_error.
var ErrEncode = errors.New("cannot encode batch")

// Queue defaults: a QueueConfig's zero values take these.
const (
	DefaultQueueSize     = 8192                   // records waiting in a queue
	DefaultBatchSize     = 512                    // records handed to one Export
	DefaultFlushInterval = time.Second            // longest wait for a batch to fill
	DefaultTimeout       = 5 * time.Second        // one Export attempt
	DefaultMaxRetryTime  = 60 * time.Second       // retrying one batch
	DefaultRetryInitial  = 500 * time.Millisecond // first backoff
	DefaultRetryMax      = 30 * time.Second       // longest backoff
)

// DefaultQueueBytes is the byte bound (QueueConfig.Bytes) the Caddy module
// gives a queue when queue_bytes is not set: 32 MiB of estimated record size
// (Record.Size), so that two exporters' queues, each plus a batch in flight,
// stay well inside a 256 MiB container whatever the requests carry. The
// library's own zero Bytes means no byte bound.
const DefaultQueueBytes = 32 << 20

// QueueConfig sizes a Queue. Zero values take the defaults in brackets.
type QueueConfig struct {
	// Size bounds the records waiting in the queue [8192].
	Size int
	// Bytes bounds the estimated bytes waiting in the queue (Record.Size);
	// zero means no byte bound. A record whose own size exceeds Bytes is
	// dropped with reason queue_full whatever the drop policy, since it
	// could never fit.
	Bytes int
	// Drop is DropOldest [default] or DropNewest.
	Drop string
	// BatchSize is the most records handed to one Export [512, at most
	// Size].
	BatchSize int
	// FlushInterval is the longest a record waits for a batch to fill [1s].
	FlushInterval time.Duration
	// Timeout bounds one Export attempt [5s].
	Timeout time.Duration
	// MaxRetryTime bounds the time spent retrying one batch [60s]; a
	// negative value disables retries.
	MaxRetryTime time.Duration
	// RetryInitial and RetryMax bound the backoff between retries [500ms,
	// 30s]: the first wait is RetryInitial, each next one doubles up to
	// RetryMax, and each is jittered to within [d/2, 3d/2). A Retry-After
	// the backend sent (RetryableError.After) replaces the backoff.
	RetryInitial, RetryMax time.Duration
	// OnError, if set, is called from the worker with every failed export
	// attempt and with the exporter's Shutdown error.
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
	case c.RetryInitial < 0:
		return fmt.Errorf("retry_initial must not be negative, got %s", c.RetryInitial)
	case c.RetryMax < 0:
		return fmt.Errorf("retry_max must not be negative, got %s", c.RetryMax)
	case c.Drop != "" && c.Drop != DropOldest && c.Drop != DropNewest:
		return fmt.Errorf("drop must be %q or %q, got %q", DropOldest, DropNewest, c.Drop)
	}
	return nil
}

// withDefaults fills in the defaults. Values Validate refuses are replaced
// by defaults too, so that NewQueue never panics.
func (c QueueConfig) withDefaults() QueueConfig {
	if c.Size <= 0 {
		c.Size = DefaultQueueSize
	}
	if c.Bytes < 0 {
		c.Bytes = 0
	}
	if c.Drop != DropNewest {
		c.Drop = DropOldest
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	c.BatchSize = min(c.BatchSize, c.Size)
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRetryTime == 0 {
		c.MaxRetryTime = DefaultMaxRetryTime
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = DefaultRetryInitial
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	c.RetryMax = max(c.RetryMax, c.RetryInitial)
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
	Bytes           int               // estimated bytes waiting now; 0 without a byte bound
	LastSuccess     time.Time         // end of the last successful export
}

// clock is the time source of a Queue's retries; tests replace it.
type clock struct {
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

var realClock = clock{now: time.Now, after: time.After}

// Queue batches records for one Exporter off the request path.
//
// At most Size records (and Bytes estimated bytes) wait in the queue, plus one
// batch of at most BatchSize records being exported: that is the memory bound
// whatever the backend does. Every record accepted by Enqueue is eventually
// counted once, as exported or as dropped with a reason.
type Queue struct {
	exp Exporter
	cfg QueueConfig
	clk clock

	mu       sync.Mutex
	ring     []*Record // circular buffer of waiting records
	sizes    []int     // Record.Size of each ring slot; nil without a byte bound
	head, n  int
	bytes    int
	closed   bool   // Shutdown was called; Enqueue refuses records
	enqueued uint64 // records accepted
	// flight counts the batch the worker holds until it is accounted for,
	// by the worker or by Shutdown giving up at its deadline.
	flightRecords, flightSpans int

	wake     chan struct{} // a batch is ready
	flushReq chan chan struct{}
	stop     chan struct{} // closed by Shutdown, after shutCtx is set
	done     chan struct{} // closed by the worker, after shutErr is set
	shutOnce sync.Once
	shutCtx  context.Context
	shutErr  error
	// base parents every export attempt and retry wait; Shutdown cancels
	// it when its context ends, so no export outlives the deadline.
	base   context.Context
	cancel context.CancelFunc

	exportedRecords, exportedSpans, retries, failures atomic.Uint64
	dropped, droppedSpans                             [numDropReasons]atomic.Uint64
	lastSuccess                                       atomic.Int64
}

// NewQueue starts a queue and its worker for exp. cfg should have passed
// Validate; values it refuses are replaced by defaults.
func NewQueue(exp Exporter, cfg QueueConfig) *Queue {
	return newQueue(exp, cfg, realClock)
}

func newQueue(exp Exporter, cfg QueueConfig, clk clock) *Queue {
	cfg = cfg.withDefaults()
	q := &Queue{
		exp:      exp,
		cfg:      cfg,
		clk:      clk,
		ring:     make([]*Record, cfg.Size),
		wake:     make(chan struct{}, 1),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if cfg.Bytes > 0 {
		q.sizes = make([]int, cfg.Size)
	}
	q.base, q.cancel = context.WithCancel(context.Background())
	go q.run()
	return q
}

// Enqueue hands a record to the queue and reports whether it was accepted.
// It never blocks and never waits for the worker: when the queue is full it
// drops the oldest records or r itself, per the drop policy, and counts them.
// r must not be modified afterwards. A nil r is ignored.
func (q *Queue) Enqueue(r *Record) bool {
	if r == nil {
		return false
	}
	size := 0
	if q.sizes != nil {
		size = r.Size()
	}
	q.mu.Lock()
	reason := -1
	var evicted, evictedSpans int
	switch {
	case q.closed:
		reason = dropShutdown
	case q.sizes != nil && size > q.cfg.Bytes:
		reason = dropQueueFull
	default:
		for q.n == len(q.ring) || (q.sizes != nil && q.bytes+size > q.cfg.Bytes) {
			if q.cfg.Drop == DropNewest {
				reason = dropQueueFull
				break
			}
			evicted++
			evictedSpans += q.popLocked().SpanCount()
		}
	}
	if reason >= 0 {
		q.mu.Unlock()
		q.drop(reason, 1, r.SpanCount())
		return false
	}
	i := q.head + q.n
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = r
	if q.sizes != nil {
		q.sizes[i] = size
		q.bytes += size
	}
	q.n++
	q.enqueued++
	ready := q.n >= q.cfg.BatchSize
	q.mu.Unlock()
	if evicted > 0 {
		q.drop(dropQueueFull, evicted, evictedSpans)
	}
	if ready {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// popLocked removes the oldest waiting record; q.mu is held and q.n > 0.
func (q *Queue) popLocked() *Record {
	r := q.ring[q.head]
	q.ring[q.head] = nil
	if q.sizes != nil {
		q.bytes -= q.sizes[q.head]
	}
	q.head++
	if q.head == len(q.ring) {
		q.head = 0
	}
	q.n--
	return r
}

// take moves up to BatchSize waiting records into batch, which becomes the
// batch in flight.
func (q *Queue) take(batch []*Record) []*Record {
	spans := 0
	q.mu.Lock()
	for q.n > 0 && len(batch) < q.cfg.BatchSize {
		r := q.popLocked()
		spans += r.SpanCount()
		batch = append(batch, r)
	}
	q.flightRecords, q.flightSpans = len(batch), spans
	q.mu.Unlock()
	return batch
}

// settle accounts for the batch in flight: exported when reason is negative,
// dropped for that reason otherwise. It counts nothing when Shutdown gave up
// on the batch, because Shutdown counted it already.
func (q *Queue) settle(reason int) {
	q.mu.Lock()
	records, spans := q.flightRecords, q.flightSpans
	q.flightRecords, q.flightSpans = 0, 0
	q.mu.Unlock()
	switch {
	case records == 0:
	case reason >= 0:
		q.drop(reason, records, spans)
	default:
		q.exportedRecords.Add(uint64(records))
		q.exportedSpans.Add(uint64(spans))
		q.lastSuccess.Store(q.clk.now().UnixNano())
	}
}

// settlePartial accounts for a batch the backend took without rejected of
// its spans: every record exported, the rejected spans dropped.
func (q *Queue) settlePartial(rejected int) {
	q.mu.Lock()
	records, spans := q.flightRecords, q.flightSpans
	q.flightRecords, q.flightSpans = 0, 0
	q.mu.Unlock()
	if records == 0 {
		return
	}
	rejected = min(rejected, spans)
	q.exportedRecords.Add(uint64(records))
	q.exportedSpans.Add(uint64(spans - rejected))
	q.lastSuccess.Store(q.clk.now().UnixNano())
	q.drop(dropPartialRejected, 0, rejected)
}

func (q *Queue) drop(reason, records, spans int) {
	q.dropped[reason].Add(uint64(records))
	q.droppedSpans[reason].Add(uint64(spans))
	if q.cfg.OnDrop != nil {
		q.cfg.OnDrop(dropReasons[reason], records, spans)
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
			if err := q.exp.Shutdown(q.shutCtx); err != nil {
				q.shutErr = fmt.Errorf("exporter shutdown: %w", err)
				if q.cfg.OnError != nil {
					q.cfg.OnError(q.shutErr)
				}
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
		if len(batch) == 0 {
			return batch
		}
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

// export sends the batch in flight, retrying retryable failures with backoff
// until MaxRetryTime, and accounts for the outcome. Once the shutdown
// deadline has passed it drops the batch with reason shutdown instead.
func (q *Queue) export(batch []*Record) {
	defer clear(batch)
	spans := 0
	for _, r := range batch {
		spans += r.SpanCount()
	}
	start := q.clk.now()
	backoff := q.cfg.RetryInitial
	for attempt := 0; ; attempt++ {
		if q.base.Err() != nil {
			q.settle(dropShutdown)
			return
		}
		if attempt > 0 {
			q.retries.Add(1)
		}
		err := q.attempt(batch, spans)
		if err == nil {
			q.settle(-1)
			return
		}
		if n, ok := IsPartial(err); ok {
			q.settlePartial(min(n, spans))
			if q.cfg.OnError != nil {
				q.cfg.OnError(err)
			}
			return
		}
		q.failures.Add(1)
		if q.cfg.OnError != nil {
			q.cfg.OnError(err)
		}
		retry, wait := IsRetryable(err)
		switch {
		case q.base.Err() != nil:
			q.settle(dropShutdown)
			return
		case errors.Is(err, ErrEncode):
			q.settle(dropEncodeError)
			return
		case !retry:
			q.settle(dropRejected)
			return
		}
		if wait <= 0 {
			wait = Jitter(backoff)
			backoff = min(backoff*2, q.cfg.RetryMax)
		}
		if q.cfg.MaxRetryTime < 0 || q.clk.now().Sub(start)+wait > q.cfg.MaxRetryTime {
			q.settle(dropRetryExhausted)
			return
		}
		select {
		case <-q.clk.after(wait):
		case <-q.base.Done():
		}
	}
}

func (q *Queue) attempt(batch []*Record, spans int) error {
	ctx, cancel := context.WithTimeout(q.base, q.cfg.Timeout)
	defer cancel()
	start := q.clk.now()
	err := q.exp.Export(ctx, batch)
	if q.cfg.OnExport != nil {
		q.cfg.OnExport(q.clk.now().Sub(start), len(batch), spans, err)
	}
	return err
}

// Jitter returns a duration in [d/2, 3d/2), zero for zero: the one spread
// of every retry backoff and periodic call in the exporters, so a fleet of
// proxies restarted together does not call its collector in step.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d/2 + rand.N(d)
}

// ForceFlush exports everything queued now and waits for it, or for ctx.
// Records that cannot be delivered are dropped and counted as usual; it
// returns ErrQueueClosed once Shutdown was called.
func (q *Queue) ForceFlush(ctx context.Context) error {
	select {
	case <-q.stop:
		return ErrQueueClosed
	default:
	}
	ack := make(chan struct{})
	select {
	case q.flushReq <- ack:
	case <-q.stop:
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
// deadline, shuts the exporter down and stops the worker; it returns the
// exporter's Shutdown error. When ctx ends first, Shutdown cancels the export
// in progress, counts every record still queued or in flight as dropped with
// reason shutdown, and returns ctx's error at once: Stats are final when it
// returns. Later calls return nil at once.
func (q *Queue) Shutdown(ctx context.Context) error {
	first := false
	q.shutOnce.Do(func() {
		first = true
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		q.shutCtx = ctx
		close(q.stop)
	})
	if !first {
		return nil
	}
	select {
	case <-q.done:
		q.cancel()
		return q.shutErr
	case <-ctx.Done():
	}
	q.cancel()
	q.mu.Lock()
	records, spans := q.flightRecords, q.flightSpans
	q.flightRecords, q.flightSpans = 0, 0
	for q.n > 0 {
		records++
		spans += q.popLocked().SpanCount()
	}
	q.mu.Unlock()
	if records > 0 {
		q.drop(dropShutdown, records, spans)
	}
	return ctx.Err()
}

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats {
	s := Stats{
		ExportedRecords: q.exportedRecords.Load(),
		ExportedSpans:   q.exportedSpans.Load(),
		Retries:         q.retries.Load(),
		Failures:        q.failures.Load(),
		Dropped:         make(map[string]uint64, numDropReasons),
		DroppedSpans:    make(map[string]uint64, numDropReasons),
	}
	for i, r := range dropReasons {
		s.Dropped[r] = q.dropped[i].Load()
		s.DroppedSpans[r] = q.droppedSpans[i].Load()
	}
	q.mu.Lock()
	s.Enqueued, s.Len, s.Bytes = q.enqueued, q.n, q.bytes
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
