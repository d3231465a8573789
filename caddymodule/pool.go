package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// queuePool holds the exporter queues of every loaded configuration, keyed
// by exporter configuration, so that a reload that keeps an exporter keeps
// its queue, its worker and what it holds.
var queuePool = caddy.NewUsagePool()

// pooledQueue is one exporter's queue in the pool.
type pooledQueue struct {
	key          string
	name         string // exporter type and target, for logs and metrics
	q            *exporter.Queue
	flushTimeout time.Duration
	drops        *dropLogger // nil in tests that build a pooledQueue by hand
}

// Destruct flushes the queue within flush_timeout and stops its worker. The
// pool calls it when the last configuration using the queue is unloaded.
func (p *pooledQueue) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.flushTimeout)
	defer cancel()
	err := p.q.Shutdown(ctx)
	if p.drops != nil {
		// Shutdown's Stats are final: log every drop not logged yet,
		// including the records it dropped at the deadline.
		p.drops.flush()
	}
	if err != nil {
		return fmt.Errorf("exporter %s: flushing on shutdown: %w", p.name, err)
	}
	return nil
}

// release drops this holder's reference; the last one destructs the queue.
func (p *pooledQueue) release() error {
	_, err := queuePool.Delete(p.key)
	return err
}

// backgroundLogger is the logger of pooled queues. They outlive the
// configuration that created them, so they log through Caddy's default logger
// rather than a configuration's.
func backgroundLogger() *zap.Logger { return caddy.Log().Named("http.handlers.tracingproxy") }

// newQueue starts an exporter's queue and worker; tests count the calls.
var newQueue = exporter.NewQueue

// acquireQueue returns the pooled queue for ec, creating it on first use.
func acquireQueue(ec *ExporterConfig, h *Handler) (*pooledQueue, error) {
	key, err := ec.poolKey(h)
	if err != nil {
		return nil, err
	}
	v, _, err := queuePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		exp, err := ec.newExporter(h)
		if err != nil {
			return nil, err
		}
		name := ec.displayName()
		logger := backgroundLogger().With(zap.String("exporter", name))
		qc := ec.queueConfig()
		dl := &dropLogger{logger: logger, every: time.Minute}
		// The first failure after a success (or after start) is a
		// warning, so a dead collector shows at once; the retries that
		// follow are debug until the next success.
		var failing atomic.Bool
		qc.OnError = func(err error) {
			if !failing.Swap(true) {
				logger.Warn("export failed; retrying until max_retry_time, then dropping", zap.Error(err))
			} else if c := logger.Check(zap.DebugLevel, "export attempt failed"); c != nil {
				c.Write(zap.Error(err))
			}
			dl.noteError(err)
		}
		qc.OnDrop = func(reason string, records, spans int) {
			dl.note(reason, records, spans)
		}
		observe := observeExport(name)
		qc.OnExport = func(d time.Duration, records, spans int, err error) {
			if err == nil {
				failing.Store(false)
			}
			observe(d, records, spans, err)
		}
		q := newQueue(exp, qc)
		return &pooledQueue{key: key, name: name, q: q, flushTimeout: ec.flushTimeout(), drops: dl}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*pooledQueue), nil
}

// poolKey identifies an exporter by everything that configures it, plus the
// identity it reports (SkyWalking registers a service instance).
func (ec *ExporterConfig) poolKey(h *Handler) (string, error) {
	// Placeholders are keyed by their values now, so a reload after the
	// environment changed builds a new exporter with the new token.
	k := *ec
	repl := caddy.NewReplacer()
	k.Token = repl.ReplaceAll(ec.Token, "")
	k.SASL = ec.resolvedSASL()
	if len(ec.Headers) > 0 {
		k.Headers = make(map[string]string, len(ec.Headers))
		for name, v := range ec.Headers {
			k.Headers[name] = repl.ReplaceAll(v, "")
		}
	}
	b, err := json.Marshal(&k)
	if err != nil {
		return "", err
	}
	key := string(b)
	if ec.Type == exporterSkyWalking || ec.kafkaSkyWalking() {
		key += "|" + h.ServiceName + "|" + h.Instance
	}
	return key, nil
}

// dropLogger logs drops at warning level at most once per interval, saying
// how many records were dropped since the last line and why. Drops noted
// within the interval are logged when it ends, or at flush: none goes
// unreported.
type dropLogger struct {
	logger  *zap.Logger
	every   time.Duration
	mu      sync.Mutex
	last    time.Time
	pending map[string]int
	lastErr error
	timer   *time.Timer // logs the pending drops when the interval ends
}

func (d *dropLogger) note(reason string, records, spans int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending == nil {
		d.pending = make(map[string]int)
	}
	d.pending[reason] += records
	if wait := d.every - time.Since(d.last); !d.last.IsZero() && wait > 0 {
		if d.timer == nil {
			d.timer = time.AfterFunc(wait, d.flush)
		}
		return
	}
	d.writeLocked()
}

// flush logs the pending drops now, if any.
func (d *dropLogger) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if len(d.pending) > 0 {
		d.writeLocked()
	}
}

func (d *dropLogger) writeLocked() {
	d.last = time.Now()
	fields := make([]zap.Field, 0, len(d.pending)+1)
	for r, n := range d.pending {
		fields = append(fields, zap.Int("dropped_"+r, n))
	}
	if d.lastErr != nil {
		fields = append(fields, zap.NamedError("last_error", d.lastErr))
	}
	d.pending = nil
	d.logger.Warn("dropped trace records", fields...)
}

func (d *dropLogger) noteError(err error) {
	d.mu.Lock()
	d.lastErr = err
	d.mu.Unlock()
}
