package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/otlp"
	"github.com/tracingproxy/tracingproxy/exporter/skywalking"
	"github.com/tracingproxy/tracingproxy/exporter/zipkin"
	"github.com/tracingproxy/tracingproxy/headers"
)

// maxKeep bounds the message buffer kept between exports.
const maxKeep = 4 << 20

// Exporter produces one message per record to a Kafka topic, keyed by the
// record's 32-hex trace id. It implements exporter.Exporter and is meant to
// be driven by an exporter.Queue: Export returns when every message of the
// batch was acknowledged or failed, or when ctx is done.
//
// Messages a broker acknowledged are remembered until the batch is settled,
// so that the Queue's retry of a batch that was partly delivered sends only
// the rest.
type Exporter struct {
	cl       *kgo.Client
	topic    string
	encoding string
	maxBytes int
	otlp     otlp.Encoder
	marshal  proto.MarshalOptions

	// Reused while every message of the previous export completed; an
	// export abandoned at its deadline leaves them to the client.
	buf  []byte
	recs []kgo.Record
	fl   *flight

	one       [1]*exporter.Record
	send      []int // indexes into the batch of the records sent
	spans     []int // their ends in buf: key, then value
	delivered map[spanKey]struct{}

	mgmt     *management // nil without skywalking management
	shutdown sync.Once
	err      error
}

var _ exporter.Exporter = (*Exporter)(nil)

// spanKey identifies a record: its trace id and SERVER span id.
type spanKey struct {
	trace headers.TraceID
	span  headers.SpanID
}

// New validates cfg and returns an Exporter. It does not wait for a broker:
// one that is down makes Export fail with a retryable error, never New.
func New(cfg Config) (*Exporter, error) { return newWith(cfg) }

// newWith is New with client options applied after the configuration's,
// so that a benchmark can measure what one of them changes.
func newWith(cfg Config, extra ...kgo.Opt) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts, err := cfg.clientOptions()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	e := &Exporter{
		cl:        cl,
		topic:     cfg.Topic,
		encoding:  cfg.Encoding,
		maxBytes:  cfg.MaxMessageBytes,
		otlp:      otlp.Encoder{Version: cfg.Version},
		delivered: make(map[spanKey]struct{}),
	}
	if cfg.Encoding == EncodingSkyWalking && cfg.KeepAlive > 0 {
		e.mgmt = startManagement(cl, &cfg)
	}
	return e, nil
}

// flight is the completion state of one export's messages. franz-go calls
// complete once per message, serially, possibly after Export returned.
type flight struct {
	mu        sync.Mutex
	remaining int
	failed    []failure
	done      chan struct{} // receives once remaining reaches zero
	promise   func(*kgo.Record, error)
}

type failure struct {
	rec *kgo.Record
	err error
}

func newFlight() *flight {
	f := &flight{done: make(chan struct{}, 1)}
	f.promise = f.complete
	return f
}

func (f *flight) complete(r *kgo.Record, err error) {
	f.mu.Lock()
	if err != nil {
		f.failed = append(f.failed, failure{r, err})
	}
	f.remaining--
	last := f.remaining == 0
	f.mu.Unlock()
	if last {
		f.done <- struct{}{}
	}
}

// Export produces one message per record of batch not delivered by an
// earlier attempt of the same batch, and waits for the brokers. A broker
// that is down or slow, a timeout and a retriable Kafka error are
// retryable (exporter.Retryable). A message the brokers refuse for good
// (too large, not authorized, invalid topic) is dropped: the batch fails
// when every message was refused, and is a partial success
// (exporter.PartialError) counting the refused spans otherwise.
func (e *Exporter) Export(ctx context.Context, batch []*exporter.Record) error {
	e.send = e.send[:0]
	for i, r := range batch {
		if r == nil {
			continue
		}
		if _, ok := e.delivered[keyOf(r)]; !ok {
			e.send = append(e.send, i)
		}
	}
	if len(e.send) == 0 {
		clear(e.delivered)
		return nil
	}
	if err := e.encode(batch); err != nil {
		clear(e.delivered)
		return err
	}
	if e.fl == nil {
		e.fl = newFlight()
	}
	fl := e.fl
	n := len(e.send)
	e.recs = slices.Grow(e.recs[:0], n)[:n]
	fl.mu.Lock()
	fl.remaining = n
	fl.failed = fl.failed[:0]
	fl.mu.Unlock()
	start := 0
	for j := range e.send {
		keyEnd, end := e.spans[2*j], e.spans[2*j+1]
		e.recs[j] = kgo.Record{Topic: e.topic, Key: e.buf[start:keyEnd:keyEnd], Value: e.buf[keyEnd:end:end]}
		start = end
	}
	for j := range e.recs {
		e.cl.Produce(ctx, &e.recs[j], fl.promise)
	}
	select {
	case <-fl.done:
	case <-ctx.Done():
		select {
		case <-fl.done:
		default:
			// The client still holds the messages until it fails or
			// delivers them: leave it the buffers.
			e.fl, e.buf, e.recs = nil, nil, nil
			e.remember(batch, nil)
			return exporter.Retryable(fmt.Errorf("kafka: %d messages not acknowledged in time: %w", n, ctx.Err()), 0)
		}
	}
	err := e.outcome(batch, fl)
	if cap(e.buf) > maxKeep {
		e.buf = nil
	}
	return err
}

// encode appends every record to send to buf as its key and its message,
// noting their ends in spans.
func (e *Exporter) encode(batch []*exporter.Record) error {
	buf := e.buf[:0]
	e.spans = e.spans[:0]
	for _, i := range e.send {
		r := batch[i]
		buf = r.TraceID.AppendHex(buf)
		e.spans = append(e.spans, len(buf))
		var err error
		switch e.encoding {
		case EncodingSkyWalking:
			buf, err = e.marshal.MarshalAppend(buf, skywalking.Segment(r))
		case EncodingOTLPProto:
			e.one[0] = r
			buf = e.otlp.AppendRequest(buf, e.one[:])
		default:
			e.one[0] = r
			buf = zipkin.AppendJSON(buf, e.one[:])
		}
		e.one[0] = nil
		if err != nil {
			e.buf = buf[:0]
			return fmt.Errorf("kafka: %w: %v", exporter.ErrEncode, err)
		}
		e.spans = append(e.spans, len(buf))
	}
	e.buf = buf
	return nil
}

// outcome classifies a completed flight's failures.
func (e *Exporter) outcome(batch []*exporter.Record, fl *flight) error {
	fl.mu.Lock()
	failed := fl.failed
	fl.mu.Unlock()
	if len(failed) == 0 {
		clear(e.delivered)
		return nil
	}
	var first, firstPerm error
	retry, rejectedSpans := 0, 0
	failedIdx := make([]int, 0, len(failed))
	for _, f := range failed {
		j := -1
		for k := range e.recs {
			if &e.recs[k] == f.rec {
				j = k
				break
			}
		}
		if j < 0 {
			continue
		}
		i := e.send[j]
		failedIdx = append(failedIdx, i)
		if permanent(f.err) {
			rejectedSpans += batch[i].SpanCount()
			firstPerm = firstErr(firstPerm, f.err)
		} else {
			retry++
			first = firstErr(first, f.err)
		}
	}
	if retry > 0 {
		e.remember(batch, failedIdx)
		return exporter.Retryable(fmt.Errorf("kafka: %d of %d messages not delivered: %w", len(failed), len(e.send), first), 0)
	}
	delivered := len(e.delivered) > 0 || len(failed) < len(e.send)
	clear(e.delivered)
	if !delivered {
		return fmt.Errorf("kafka: brokers refused the batch: %w", firstPerm)
	}
	return &exporter.PartialError{Rejected: rejectedSpans, Message: "kafka: " + firstPerm.Error()}
}

// remember notes the records of batch delivered so far, every one but
// those of failed (nil for all that were sent now), for the Queue's retry.
func (e *Exporter) remember(batch []*exporter.Record, failed []int) {
	undelivered := make(map[int]bool, len(e.send))
	for _, i := range e.send {
		undelivered[i] = failed == nil
	}
	for _, i := range failed {
		undelivered[i] = true
	}
	clear(e.delivered)
	for i, r := range batch {
		if r != nil && !undelivered[i] {
			e.delivered[keyOf(r)] = struct{}{}
		}
	}
}

// firstErr returns first, or err when there is none yet.
func firstErr(first, err error) error {
	if first == nil {
		return err
	}
	return first
}

// permanent reports whether a message's failure is the broker refusing it
// for good: a Kafka error that is not retriable.
func permanent(err error) bool {
	var ke *kerr.Error
	return errors.As(err, &ke) && !ke.Retriable
}

func keyOf(r *exporter.Record) spanKey { return spanKey{r.TraceID, r.Server.ID} }

// Shutdown stops the SkyWalking keepAlive and closes the client, waiting
// for it until ctx is done. Later calls return the first call's result.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.shutdown.Do(func() {
		if e.mgmt != nil {
			e.mgmt.stop(ctx)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.cl.Close()
		}()
		select {
		case <-done:
		case <-ctx.Done():
			e.err = fmt.Errorf("kafka shutdown: %w", ctx.Err())
		}
	})
	return e.err
}
