package caddymodule

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/stitch"
)

// Egress stitching: the state one service's ingress and egress handlers
// share.
//
// The ingress handler of a service (the one with stitch options) registers
// each inbound request in a stitch.Registry; the egress handlers of the same
// service_name (egress mode, in front of reverse_proxy to a real target) ask
// it which inbound request made each outbound call. Handlers find one
// another through stitchApp, an app of the configuration being loaded, so a
// configuration decides on its own which services stitch and with what
// options; the registries themselves live in stitchPool, keyed by service
// and options, so a reload that keeps them keeps the requests in flight.

func init() {
	caddy.RegisterModule(new(stitchApp))
}

// Stitch turns on egress stitching for the service of an ingress handler:
// its inbound requests are registered so that the service's egress
// listeners can tell which one made each outbound call.
type Stitch struct {
	// Methods lists the attribution methods in the order they are tried:
	// header, request_id, process, sole_inflight. Default: all four, in
	// that order.
	Methods []string `json:"methods,omitempty"`
	// RequestIDHeader names the correlation header of method request_id:
	// the ingress adds it (a UUIDv4) to a request that has none, and the
	// egress reads it from the calls the service makes. Default:
	// X-Request-ID.
	RequestIDHeader string `json:"request_id_header,omitempty"`
	// MaxIDs caps the request ids kept after their request ended (for
	// calls made after the response). Default: 65536.
	MaxIDs int `json:"max_ids,omitempty"`
	// IDTTL is how long a request id is kept after its request ended.
	// Default: 5m.
	IDTTL caddy.Duration `json:"id_ttl,omitempty"`
	// MaxInflight caps the in-flight requests tracked; while more are in
	// flight, methods process and sole_inflight answer nothing. Default:
	// 65536.
	MaxInflight int `json:"max_inflight,omitempty"`
}

// stitchAppID is the module id of the per-configuration directory.
const stitchAppID = "tracingproxy_stitch"

// stitchApp is the directory of the services that stitch in one loaded
// configuration. Handlers look it up with caddy.Context.App, which makes an
// empty one on first use: users never configure it.
type stitchApp struct {
	mu       sync.Mutex
	services map[string]*stitchService
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*stitchApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: stitchAppID, New: func() caddy.Module { return new(stitchApp) }}
}

// Provision prepares the empty directory.
func (a *stitchApp) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.services = make(map[string]*stitchService)
	return nil
}

// Start warns about egress handlers whose service has no stitching
// ingress handler in this configuration: they can only continue trace
// headers the service forwards.
func (a *stitchApp) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, s := range a.services {
		if s.egress > 0 && s.reg == nil {
			a.logger.Warn("egress handler without a stitching ingress handler of its service: only trace headers the service forwards are continued",
				zap.String("service_name", name))
		}
	}
	return nil
}

// Stop does nothing: the registries belong to the handlers that hold them.
func (a *stitchApp) Stop() error { return nil }

// stitchService is one service's entry in a configuration's directory. It
// is filled while the configuration is provisioned and only read once its
// servers serve.
type stitchService struct {
	name   string
	key    string          // the stitch options of the ingress handlers; "" while none
	reg    *pooledRegistry // nil while no ingress handler stitches
	egress int             // egress handlers of the service
}

// stitchAppOf returns the configuration's directory.
func stitchAppOf(ctx caddy.Context) (*stitchApp, error) {
	v, err := ctx.App(stitchAppID)
	if err != nil {
		return nil, err
	}
	return v.(*stitchApp), nil
}

// service returns the named service's entry, creating it.
func (a *stitchApp) service(name string) *stitchService {
	s := a.services[name]
	if s == nil {
		s = &stitchService{name: name}
		a.services[name] = s
	}
	return s
}

// stitchPool holds the registries of every loaded configuration, keyed by
// service and stitch options.
var stitchPool = caddy.NewUsagePool()

// pooledRegistry is one service's attribution state.
type pooledRegistry struct {
	key     string
	reg     *stitch.Registry
	procs   *stitch.ProcMapper // nil without method process
	methods []stitch.Method
	// ingressID reads the request id on ingress, generating one when the
	// request has none (only when request_id is on); egressID reads it on
	// egress.
	ingressID headers.Codec
	egressID  headers.Codec
	idHeader  string // canonical
	requestID bool   // method request_id is on
	process   bool   // method process is on
}

// Destruct has nothing to stop: a registry is memory only.
func (*pooledRegistry) Destruct() error { return nil }

// build checks the stitch options and returns their pool key.
func (s *Stitch) build() (key string, methods []stitch.Method, err error) {
	methods, err = stitch.ParseMethods(s.Methods...)
	if err != nil {
		return "", nil, fmt.Errorf("stitch methods: %w", err)
	}
	if s.RequestIDHeader != "" && !validHeaderName(s.RequestIDHeader) {
		return "", nil, fmt.Errorf("stitch request_id_header: %q is not a valid header name", s.RequestIDHeader)
	}
	if s.MaxIDs < 0 {
		return "", nil, fmt.Errorf("stitch max_ids must not be negative, got %d", s.MaxIDs)
	}
	if s.MaxInflight < 0 {
		return "", nil, fmt.Errorf("stitch max_inflight must not be negative, got %d", s.MaxInflight)
	}
	if s.IDTTL < 0 {
		return "", nil, fmt.Errorf("stitch id_ttl must not be negative, got %s", time.Duration(s.IDTTL))
	}
	var b strings.Builder
	for _, m := range methods {
		b.WriteString(m.String())
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "|%s|%d|%d|%d", http.CanonicalHeaderKey(s.RequestIDHeader), s.MaxIDs, s.MaxInflight, s.IDTTL)
	return b.String(), methods, nil
}

// acquireRegistry returns the pooled registry of service name with options
// s, creating it on first use.
func acquireRegistry(name string, s *Stitch, key string, methods []stitch.Method) (*pooledRegistry, error) {
	pk := name + "\x00" + key
	v, _, err := stitchPool.LoadOrNew(pk, func() (caddy.Destructor, error) {
		p := &pooledRegistry{key: pk, methods: methods}
		var err error
		if p.ingressID, err = headers.NewRequestIDCodec(s.RequestIDHeader, true, 0); err != nil {
			return nil, fmt.Errorf("stitch request_id_header: %w", err)
		}
		if p.egressID, err = headers.NewRequestIDCodec(s.RequestIDHeader, false, 0); err != nil {
			return nil, fmt.Errorf("stitch request_id_header: %w", err)
		}
		p.idHeader = p.ingressID.Fields()[0]
		cfg := stitch.Config{Methods: methods, MaxInflight: s.MaxInflight, MaxIDs: s.MaxIDs, IDTTL: time.Duration(s.IDTTL)}
		for _, m := range methods {
			switch m {
			case stitch.MethodRequestID:
				p.requestID = true
			case stitch.MethodProcess:
				p.process = true
			}
		}
		if p.process {
			p.procs = stitch.NewProcMapper("", 0)
			logger := backgroundLogger().With(zap.String("service_name", name))
			p.procs.OnUnavailable = func(err error) {
				logger.Warn("stitch method process skipped: /proc cannot be read", zap.Error(err))
			}
			cfg.Procs = p.procs
		}
		p.reg = stitch.NewRegistry(cfg)
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*pooledRegistry), nil
}

// release drops one holder's reference.
func (p *pooledRegistry) release() error {
	_, err := stitchPool.Delete(p.key)
	return err
}

// provisionStitch joins the handler to its service's directory entry: an
// ingress handler with stitch options acquires the registry, an egress
// handler takes the entry it will read the registry from.
func (h *Handler) provisionStitch(ctx caddy.Context) error {
	if h.Stitch == nil && h.Egress == nil {
		return nil
	}
	if h.Stitch != nil && h.Egress != nil {
		return fmt.Errorf("stitch and egress cannot be set on one handler: stitch belongs to the service's ingress handler, egress to each of its egress listeners")
	}
	var key string
	var methods []stitch.Method
	if h.Stitch != nil {
		var err error
		if key, methods, err = h.Stitch.build(); err != nil {
			return err
		}
	}
	if h.Egress != nil {
		if err := h.Egress.build(h); err != nil {
			return err
		}
	}
	app, err := stitchAppOf(ctx)
	if err != nil {
		return err
	}
	registerStitchMetrics(ctx)
	app.mu.Lock()
	defer app.mu.Unlock()
	svc := app.service(h.ServiceName)
	if h.Egress != nil {
		svc.egress++
		h.egressSvc = svc
		if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
			h.Egress.hookConns(srv, svc)
		}
		return nil
	}
	if svc.key != "" && svc.key != key {
		return fmt.Errorf("stitch: the tracingproxy handlers of service_name %q have different stitch options; give them the same", h.ServiceName)
	}
	reg, err := acquireRegistry(h.ServiceName, h.Stitch, key, methods)
	if err != nil {
		return err
	}
	h.stitchReg = reg
	svc.key, svc.reg = key, reg
	return nil
}

// cleanupStitch ends an egress handler's tunnels and releases the
// registry an ingress handler holds.
func (h *Handler) cleanupStitch() error {
	if h.Egress != nil {
		h.Egress.tunnels.closeAll()
	}
	if h.stitchReg == nil {
		return nil
	}
	err := h.stitchReg.release()
	h.stitchReg = nil
	return err
}

// stitchHop is the stitching state of one ingress request, in the pooled
// request state.
type stitchHop struct {
	in  stitch.Ingress
	reg *pooledRegistry // set while the request is registered
	// trace reports the upstream connection of a request whose attempts
	// are not recorded (unsampled); hooks carries it.
	trace httptrace.ClientTrace
	hooks context.Context
}

// stitchRequestID gives a request without a valid request id one, when
// method request_id is on, before the trace headers are read (so a
// configured requestid format passes the same id on). It returns the id the
// request is registered under, "" for none.
func (h *Handler) stitchRequestID(r *http.Request) string {
	p := h.stitchReg
	if !p.requestID {
		return ""
	}
	var sc headers.SpanContext
	if err := p.ingressID.Extract(r.Header, &sc); err != nil && sc.RequestID != "" {
		r.Header.Set(p.idHeader, sc.RequestID)
	}
	return sc.RequestID
}

// stitchBegin registers an ingress request under the context of its SERVER
// span. b is the request's record when it is watched: the egress calls it
// makes while in flight are then added to its record. It returns the
// request, with a hook that reports the upstream connection when method
// process needs one and the attempt log does not run.
func (h *Handler) stitchBegin(r *http.Request, st *reqState, t *hop, b *recordBuf, rid string) *http.Request {
	p := h.stitchReg
	s := &st.stitch
	s.reg = p
	in := &s.in
	in.Ctx = t.out
	in.Ctx.SpanID = t.serverID
	in.Ctx.ParentID = headers.SpanID{}
	in.Ctx.SW.SpanID = 0 // the Entry span
	in.Ctx.SW.TraceID = t.swTraceID
	in.RequestID = rid
	if t.out.RequestID == "" {
		t.out.RequestID = rid // the SERVER span's request_id tag
	}
	in.Data = nil
	if b != nil {
		b.egress = &egressSink{}
		in.Data = b.egress
	}
	p.reg.Begin(in)
	if !p.process {
		return r
	}
	if b != nil {
		st.att.stitch = s // the attempt log reports the connection
		return r
	}
	if s.hooks == nil {
		s.trace.GotConn = s.gotConn
		s.hooks = httptrace.WithClientTrace(context.Background(), &s.trace)
	}
	return r.WithContext(&tracedCtx{Context: r.Context(), hooks: s.hooks, netHooks: emptyHooks})
}

// emptyHooks answers no key: the dial hooks of an unrecorded request.
var emptyHooks = context.Background()

// stitchEnd unregisters the request.
func (st *reqState) stitchEnd() {
	s := &st.stitch
	if s.reg == nil {
		return
	}
	s.reg.reg.End(&s.in)
	s.reg = nil
	s.in.Data = nil
	st.att.stitch = nil
}

// gotConn records the upstream connection that serves the request, for
// method process: its service side is the connection's remote address.
func (s *stitchHop) gotConn(info httptrace.GotConnInfo) {
	p := s.reg
	if p == nil || info.Conn == nil {
		return
	}
	local, ok1 := tcpAddrPort(info.Conn.LocalAddr())
	remote, ok2 := tcpAddrPort(info.Conn.RemoteAddr())
	if !ok1 || !ok2 {
		return
	}
	p.reg.SetConn(&s.in, info.Conn, stitch.Conn{Local: remote, Remote: local})
}

// tcpAddrPort is a TCP address as a netip.AddrPort.
func tcpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if a == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// egressSink collects the egress calls attributed to one in-flight ingress
// request, so they are exported with its record: in SkyWalking, Exit spans
// of the Entry span's segment. A call that started while the request was in
// flight holds the record back until it ends, as SkyWalking's agents hold a
// segment with an async span open; a call that starts after the record was
// settled gets a record of its own.
type egressSink struct {
	mu      sync.Mutex
	settled bool // the ingress request finished
	pending int  // attached calls still running
	exits   int32
	spans   []exporter.Span
	rec     *exporter.Record // the settled record, waiting for pending calls
	queues  []*pooledQueue
}

// egressExitBase is the first SkyWalking span id of egress Exit spans in an
// ingress segment: the upstream attempts take 1..maxAttempts and a session
// span the next, so an id handed out before they are numbered never
// collides with theirs.
const egressExitBase = maxAttempts + 2

// maxJoinedCalls bounds the calls one inbound record holds, so a service
// that loops on calls cannot grow one record without end; later calls get
// records of their own, referring to the inbound request all the same.
const maxJoinedCalls = 128

// attach registers a call about to start and returns its Exit span id, or
// false when the ingress record was settled or holds maxJoinedCalls.
func (s *egressSink) attach() (int32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settled || s.exits >= maxJoinedCalls {
		return 0, false
	}
	s.pending++
	id := egressExitBase + s.exits
	s.exits++
	return id, true
}

// done adds an attached call's span (nil: the call is not recorded) and
// exports the record when it was the last one the record waited for.
func (s *egressSink) done(span *exporter.Span) {
	s.mu.Lock()
	if span != nil {
		s.spans = append(s.spans, *span)
	}
	s.pending--
	if !s.settled || s.pending > 0 || s.rec == nil {
		s.mu.Unlock()
		return
	}
	rec, queues := s.rec, s.queues
	s.rec, s.queues = nil, nil
	s.mu.Unlock()
	s.export(rec, queues)
}

// settle is the ingress request finishing: rec is its record (nil when it
// is not exported). It is exported now, or when the last attached call
// ends.
func (s *egressSink) settle(rec *exporter.Record, queues []*pooledQueue) {
	s.mu.Lock()
	s.settled = true
	if rec == nil || s.pending > 0 {
		s.rec, s.queues = rec, queues
		if rec == nil {
			s.spans = nil
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.export(rec, queues)
}

// export appends the collected spans to rec and enqueues it. The caller
// made sure no call adds a span any more.
func (s *egressSink) export(rec *exporter.Record, queues []*pooledQueue) {
	if len(s.spans) > 0 {
		rec.Clients = append(rec.Clients[:len(rec.Clients):len(rec.Clients)], s.spans...)
	}
	for _, q := range queues {
		q.q.Enqueue(rec)
	}
}

// enqueue exports a finished ingress record, through its egress sink when
// the request stitches.
//
// A stitching proxy is the service's own sidecar: with its egress calls
// recorded as the service's CLIENT spans, the hop from the proxy into the
// service is work inside the service node, so its attempts are local
// spans. Backends then draw caller -> service -> dependencies, with no
// edge to the service's own address (SkyWalking: no Exit span to it, so
// no extra peer node; Zipkin and OTLP service graphs: no CLIENT span).
func (h *Handler) enqueue(b *recordBuf, rec *exporter.Record) {
	if b.egress != nil {
		for i := range rec.Clients {
			if rec.Clients[i].Kind == exporter.KindClient {
				rec.Clients[i].Kind = exporter.KindLocal
			}
		}
		b.egress.settle(rec, h.queues)
		return
	}
	for _, q := range h.queues {
		q.q.Enqueue(rec)
	}
}

// stitchCounts counts attribution outcomes by stitch.Method, process-wide.
var stitchCounts [5]atomic.Uint64

// countStitch counts one egress call's attribution.
func countStitch(m stitch.Method) {
	if int(m) < len(stitchCounts) {
		stitchCounts[m].Add(1)
	}
}

var descStitch = prometheus.NewDesc("tracingproxy_stitch_total",
	"Egress calls, by the attribution method that matched (none: left unstitched, never guessed).", []string{"method"}, nil)

var descEgressRefused = prometheus.NewDesc("tracingproxy_egress_refused_total",
	"Calls egress listeners refused with 403: a client outside allow_clients, or a forward-proxy destination outside allow_destinations.", []string{"reason"}, nil)

// stitchCollector reports tracingproxy_stitch_total for every method and
// tracingproxy_egress_refused_total for every reason.
type stitchCollector struct{}

// Describe implements prometheus.Collector.
func (stitchCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStitch
	ch <- descEgressRefused
}

// Collect implements prometheus.Collector.
func (stitchCollector) Collect(ch chan<- prometheus.Metric) {
	for m := range stitchCounts {
		ch <- prometheus.MustNewConstMetric(descStitch, prometheus.CounterValue, float64(stitchCounts[m].Load()), stitch.Method(m).String())
	}
	for r := range egressRefused {
		ch <- prometheus.MustNewConstMetric(descEgressRefused, prometheus.CounterValue, float64(egressRefused[r].Load()), refusedReasons[r])
	}
}

// stitchRegistered holds the metrics registries the stitch collector is in.
var stitchRegistered sync.Map

// registerStitchMetrics adds the stitch collector to the configuration's
// registry, once per registry.
func registerStitchMetrics(ctx caddy.Context) {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	if _, loaded := stitchRegistered.LoadOrStore(reg, true); loaded {
		return
	}
	if err := reg.Register(stitchCollector{}); err != nil {
		if _, ok := err.(prometheus.AlreadyRegisteredError); !ok {
			caddy.Log().Named("http.handlers.tracingproxy").Warn("registering stitch metrics", zap.Error(err))
		}
	}
	ctx.OnCancel(func() { stitchRegistered.Delete(reg) })
}

// Interface guards.
var (
	_ caddy.App         = (*stitchApp)(nil)
	_ caddy.Provisioner = (*stitchApp)(nil)
)
