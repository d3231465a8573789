package caddymodule

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/sampler"
)

// metrics counts what the request path sees. The counters are process-wide
// (they survive reloads, as Prometheus counters must); each configuration's
// registry gets a collector that reads them and the pooled queues.
type metrics struct{}

var (
	malformedCount [32]atomic.Uint64 // by headers.Format

	// decisionCounts is copied on write: the request path reads it without
	// a lock; a new reason (a rule seen for the first time) takes decisionMu.
	decisionMu     sync.Mutex
	decisionCounts atomic.Pointer[map[decisionKey]*atomic.Uint64]
)

type decisionKey struct {
	reason  sampler.Reason
	sampled bool
}

func (*metrics) countMalformed(s headers.FormatSet) {
	for f := headers.Format(1); f < 32; f++ {
		if s.Has(f) {
			malformedCount[f].Add(1)
		}
	}
}

func (*metrics) countDecision(d sampler.Decision) {
	k := decisionKey{d.Reason, d.Sample}
	if m := decisionCounts.Load(); m != nil {
		if c := (*m)[k]; c != nil {
			c.Add(1)
			return
		}
	}
	decisionMu.Lock()
	defer decisionMu.Unlock()
	old := decisionCounts.Load()
	m := make(map[decisionKey]*atomic.Uint64)
	if old != nil {
		for ok, oc := range *old {
			m[ok] = oc
		}
	}
	c := m[k]
	if c == nil {
		c = new(atomic.Uint64)
		m[k] = c
	}
	decisionCounts.Store(&m)
	c.Add(1)
}

// registerMetrics adds the tracingproxy collector to the configuration's
// metrics registry, once per registry.
func registerMetrics(ctx caddy.Context) *metrics {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return &metrics{}
	}
	// The collector is unchecked (it describes nothing), so the registry
	// would accept it twice and then fail every scrape on duplicate series:
	// register it once per registry, whatever the number of handlers.
	if _, loaded := registered.LoadOrStore(reg, true); !loaded {
		if err := reg.Register(collector{}); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				caddy.Log().Named("http.handlers.tracingproxy").Warn("registering metrics", zap.Error(err))
			}
		}
		ctx.OnCancel(func() { registered.Delete(reg) })
	}
	return &metrics{}
}

// registered holds the registries the collector is registered with.
var registered sync.Map

var (
	descMalformed = prometheus.NewDesc("tracingproxy_malformed_headers_total",
		"Inbound trace headers that were malformed and ignored, by format.", []string{"format"}, nil)
	descDecisions = prometheus.NewDesc("tracingproxy_sampling_decisions_total",
		"Sampling decisions, by reason and outcome.", []string{"reason", "sampled"}, nil)
	descEnqueued = prometheus.NewDesc("tracingproxy_exporter_records_enqueued_total",
		"Records accepted by the exporter's queue.", []string{"exporter"}, nil)
	descExportedRecords = prometheus.NewDesc("tracingproxy_exporter_records_exported_total",
		"Records the backend accepted.", []string{"exporter"}, nil)
	descExportedSpans = prometheus.NewDesc("tracingproxy_exporter_spans_exported_total",
		"Spans the backend accepted.", []string{"exporter"}, nil)
	descDropped = prometheus.NewDesc("tracingproxy_exporter_records_dropped_total",
		"Records dropped, by reason.", []string{"exporter", "reason"}, nil)
	descDroppedSpans = prometheus.NewDesc("tracingproxy_exporter_spans_dropped_total",
		"Spans dropped, by reason.", []string{"exporter", "reason"}, nil)
	descRetries = prometheus.NewDesc("tracingproxy_exporter_retries_total",
		"Export attempts after the first for a batch.", []string{"exporter"}, nil)
	descFailures = prometheus.NewDesc("tracingproxy_exporter_failures_total",
		"Failed export attempts.", []string{"exporter"}, nil)
	descQueueLen = prometheus.NewDesc("tracingproxy_exporter_queue_length",
		"Records waiting in the queue.", []string{"exporter"}, nil)
	descQueueBytes = prometheus.NewDesc("tracingproxy_exporter_queue_bytes",
		"Estimated bytes waiting in the queue.", []string{"exporter"}, nil)
	descLastSuccess = prometheus.NewDesc("tracingproxy_exporter_last_success_timestamp_seconds",
		"Unix time of the last successful export.", []string{"exporter"}, nil)
)

// collector reports the process-wide counters and every pooled queue.
type collector struct{}

// Describe implements prometheus.Collector. It describes nothing, which
// makes the collector unchecked: its exporters (and so its label values) come
// and go with configuration.
func (collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (collector) Collect(ch chan<- prometheus.Metric) {
	for f := headers.Format(1); f < 32; f++ {
		if n := malformedCount[f].Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(descMalformed, prometheus.CounterValue, float64(n), f.String())
		}
	}
	if m := decisionCounts.Load(); m != nil {
		for k, c := range *m {
			sampled := "false"
			if k.sampled {
				sampled = "true"
			}
			ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(c.Load()), string(k.reason), sampled)
		}
	}

	// Queues are pooled by full configuration; metrics name an exporter by
	// type and target. Queues that share a name (the same collector with
	// other options, or for several services) are summed.
	byName := map[string]*exporter.Stats{}
	var names []string
	queuePool.Range(func(_, v any) bool {
		pq := v.(*pooledQueue)
		st := pq.q.Stats()
		if sum := byName[pq.name]; sum != nil {
			addStats(sum, &st)
		} else {
			byName[pq.name] = &st
			names = append(names, pq.name)
		}
		return true
	})
	for _, name := range names {
		collectQueue(ch, name, byName[name])
		if hist, ok := latencies.Load(name); ok {
			hist.(prometheus.Histogram).Collect(ch)
		}
	}
}

// addStats adds b's counters into a.
func addStats(a, b *exporter.Stats) {
	a.Enqueued += b.Enqueued
	a.ExportedRecords += b.ExportedRecords
	a.ExportedSpans += b.ExportedSpans
	a.Retries += b.Retries
	a.Failures += b.Failures
	a.Len += b.Len
	a.Bytes += b.Bytes
	for r, n := range b.Dropped {
		a.Dropped[r] += n
	}
	for r, n := range b.DroppedSpans {
		a.DroppedSpans[r] += n
	}
	if b.LastSuccess.After(a.LastSuccess) {
		a.LastSuccess = b.LastSuccess
	}
}

// latencies holds one export-latency histogram per exporter name, shared by
// every queue of that name and across reloads.
var latencies sync.Map

// exportLatency returns the histogram of the named exporter.
func exportLatency(name string) prometheus.Histogram {
	if h, ok := latencies.Load(name); ok {
		return h.(prometheus.Histogram)
	}
	h, _ := latencies.LoadOrStore(name, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "tracingproxy_exporter_export_duration_seconds",
		Help:        "Duration of export attempts.",
		ConstLabels: prometheus.Labels{"exporter": name},
		Buckets:     []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}))
	return h.(prometheus.Histogram)
}

// observeExport records one export attempt's duration.
func observeExport(name string) func(time.Duration, int, int, error) {
	hist := exportLatency(name)
	return func(d time.Duration, _, _ int, _ error) { hist.Observe(d.Seconds()) }
}

func collectQueue(ch chan<- prometheus.Metric, name string, st *exporter.Stats) {
	c := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{name}, labels...)...)
	}
	g := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
	}
	c(descEnqueued, float64(st.Enqueued))
	c(descExportedRecords, float64(st.ExportedRecords))
	c(descExportedSpans, float64(st.ExportedSpans))
	for r, n := range st.Dropped {
		c(descDropped, float64(n), r)
	}
	for r, n := range st.DroppedSpans {
		c(descDroppedSpans, float64(n), r)
	}
	c(descRetries, float64(st.Retries))
	c(descFailures, float64(st.Failures))
	g(descQueueLen, float64(st.Len))
	g(descQueueBytes, float64(st.Bytes))
	if !st.LastSuccess.IsZero() {
		g(descLastSuccess, float64(st.LastSuccess.UnixNano())/1e9)
	}
}
