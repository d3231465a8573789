package caddymodule

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/sampler"
)

// now is the clock of the request path; tests replace it.
var now = time.Now

// handlerState is what a handler learns while it serves.
type handlerState struct {
	// lastUpstream is the upstream address reverse_proxy last dialled, used
	// as the sw8 target address when upstream_address is not configured.
	lastUpstream atomic.Pointer[string]
}

// Placeholders that reverse_proxy sets while it proxies.
const (
	phUpstreamHostport = "http.reverse_proxy.upstream.hostport"
	phUpstreamDuration = "http.reverse_proxy.upstream.duration"
	phUpstreamStatus   = "http.reverse_proxy.status_code"
)

// reqState is the per-request scratch of serve. It is pooled: the codec and
// sampler calls go through interfaces, which would move each of these to the
// heap on every request.
type reqState struct {
	in     headers.Result
	hop    hop
	wr     headers.Writer
	params sampler.Params
	att    attemptLog
	stitch stitchHop // egress stitching, when the service stitches
	// A watched request's flight, the request next serves (ours, with
	// the attempt hooks in its context) and the recorder it writes to:
	// nothing holds them once serve or serveEgress returns, so they are
	// pooled, not in the record that waits in the queues.
	fl  flight
	req http.Request
	sr  statusRecorder
}

// release resets what a request set in st and puts st back in the pool.
func (st *reqState) release() {
	// The writer is large and its values are only read below n: a reset
	// of n is enough.
	st.in, st.hop, st.params = headers.Result{}, hop{}, sampler.Params{}
	st.wr.Reset()
	if st.sr.ResponseWriter != nil {
		st.fl, st.req, st.sr = flight{}, http.Request{}, statusRecorder{}
	}
	statePool.Put(st)
}

var statePool = sync.Pool{New: func() any {
	st := new(reqState)
	st.att.init()
	return st
}}

// serve is the request flow of DESIGN.md: extract, sample, inject, call next,
// record.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	start := now()
	st := statePool.Get().(*reqState)
	var rid string
	if h.stitchReg != nil {
		rid = h.stitchRequestID(r)
	}
	defer func() {
		st.stitchEnd()
		st.release()
	}()
	st.in = h.prop.prop.Extract(r.Header)
	in := &st.in
	if in.Malformed != 0 {
		h.metrics.countMalformed(in.Malformed)
		if c := h.logger.Check(zapcore.DebugLevel, "ignoring malformed trace header"); c != nil {
			c.Write(zap.Stringer("formats", in.Malformed), zap.Error(in.Err))
		}
	}

	t := &st.hop
	t.trusted = h.trust.trusted(r)
	if !t.trusted && in.Format != headers.FormatNone {
		// Never continue, force or debug an untrusted caller's trace;
		// remember its ids for the SERVER span's tags.
		t.untrustedTrace, t.untrustedSpan = in.TraceID, in.SpanID
		*in = headers.Result{Present: in.Present, Malformed: in.Malformed,
			SpanContext: headers.SpanContext{Baggage: in.Baggage, RequestID: in.RequestID}}
	}
	if !t.trusted && !h.prop.keepUntrustedBaggage {
		in.Baggage = ""
	}
	// The request as the client sent it: handlers after us (uri, rewrite,
	// handle_path) change r in place.
	t.method, t.path, t.query, t.host = r.Method, r.URL.Path, r.URL.RawQuery, r.Host
	t.init(h, in, r, &st.params)
	if h.observe != nil {
		h.observe(st)
	}
	watch := t.decision.Sample || h.keep.enabled()
	if !watch {
		h.metrics.countDecision(t.decision)
	}
	if watch && t.name == "" && h.SpanName != "" {
		// Named before next, whose handlers change the request that the
		// placeholders read.
		t.name = h.spanName(r, t)
	}
	var b *recordBuf
	var ids *traceIDs
	if watch {
		// The record's buffer is allocated now and holds the ids the
		// placeholders and the access log read.
		b = new(recordBuf)
		ids = &b.ids
		b.reqTags = h.requestHeaderTags(r)
	} else {
		ids = new(traceIDs)
	}

	// Replace the caller's trace headers with the context of our CLIENT
	// span; reverse_proxy copies the request headers upstream.
	if bad := h.prop.sanitize(r.Header, t.trusted); bad != 0 {
		h.metrics.countMalformed(bad)
		if c := h.logger.Check(zapcore.DebugLevel, "removing malformed passthrough trace header"); c != nil {
			c.Write(zap.Stringer("formats", bad))
		}
	}
	h.prop.inject(r, in, &t.out, &st.wr)

	told := h.setResponseHeaders(w, t)
	*ids = traceIDs{trace: t.out.TraceID, span: t.serverID}
	annotate(r, ids)
	if h.stitchReg != nil {
		r = h.stitchBegin(r, st, t, b, rid)
	}

	if !watch {
		if !told {
			return next.ServeHTTP(w, r)
		}
		// The recorder only keeps the upstream's headers from doubling
		// ours.
		return next.ServeHTTP(&statusRecorder{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, settle: h.ResponseHeaders, sent: &t.resp}, r)
	}

	// Each upstream attempt reverse_proxy makes reports to st.att.
	t.att = &st.att
	st.req = *r.WithContext(st.att.begin(r.Context(), &b.ctx, start))
	r = &st.req
	sr := &st.sr
	sr.ResponseWriterWrapper, sr.watched = caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, true
	if told {
		sr.settle, sr.sent = h.ResponseHeaders, &t.resp
	}
	// Taken now: the request's variables change while next runs, and a
	// shutdown may record the request before it returns.
	t.peer = clientAddress(r)
	callStart := now()
	f := &st.fl
	*f = flight{b: b, r: r, t: t, sr: sr, start: start, callStart: callStart}
	h.flights.add(f)
	returned := false
	defer func() {
		if !returned {
			// next panicked: reverse_proxy aborts a response it cannot
			// finish with http.ErrAbortHandler. The request is recorded
			// as failed while the panic goes on, untouched.
			h.land(f, errResponseAborted, now())
		}
	}()
	err := next.ServeHTTP(sr, r)
	returned = true
	h.land(f, err, now())
	return err
}

// errResponseAborted is the error of a request whose handler chain
// panicked, as reverse_proxy does to abort a response it cannot finish.
var errResponseAborted = errors.New("response aborted")

// land finishes a watched request when next returns, unless a shutdown
// recorded it already (see flights).
func (h *Handler) land(f *flight, err error, end time.Time) {
	if !h.flights.remove(f) {
		return
	}
	f.err, f.end = err, end
	h.finish(f)
}

// finish decides whether a watched request is exported (head-sampled, or
// kept after the fact), counts the decision and enqueues the record.
func (h *Handler) finish(f *flight) {
	b, t := f.b, f.t
	t.stop = f.end
	if ss := f.sr.session.Load(); ss != nil {
		// An upgraded connection: the hop ended at the 101, and the
		// relay that followed is its session span.
		f.end = ss.start
	}
	t.attempts = t.att.end(f.end)
	if !t.decision.Sample {
		// Deferred keep: the head said no, but a failed or slow request
		// is exported anyway, marked with why.
		status, _ := finalStatus(f.sr, f.err)
		reason := h.keep.keep(status, f.end.Sub(f.start))
		if reason == "" {
			h.metrics.countDecision(t.decision)
			if b.egress != nil {
				b.egress.settle(nil, nil)
			}
			return
		}
		t.decision = sampler.Decision{Sample: true, Reason: reason}
	}
	h.metrics.countDecision(t.decision)
	h.enqueue(b, h.record(f))
}

// spanName is the operation name: span_name with r's placeholders
// replaced, or "<METHOD> <route>". It is capped at max_tag_length: the path
// is the client's, and the name waits in the queues with the record.
func (h *Handler) spanName(r *http.Request, t *hop) string {
	if h.SpanName != "" {
		name := h.SpanName
		if strings.IndexByte(name, '{') >= 0 {
			if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
				name = repl.ReplaceKnown(name, "")
			}
		}
		return capCopy(name, h.MaxTagLength)
	}
	if !t.routed {
		if route, ok := h.patternRoute(t.path); ok {
			t.route, t.routed = route, true
		} else {
			// The name and the route it ends with are one string, made
			// once, unless the name must be cut (below).
			var buf [320]byte
			b := append(append(buf[:0], t.method...), ' ')
			b, collapsed := appendRoute(b, t.path)
			if len(b) <= h.MaxTagLength {
				name := string(b)
				t.route, t.routed = t.path, true
				if collapsed {
					t.route = name[len(t.method)+1:]
				}
				return name
			}
		}
	}
	method, path := t.method, h.routeOf(t)
	if room := h.MaxTagLength - len(method) - 1; room < len(path) {
		if room <= 0 {
			return capCopy(method, h.MaxTagLength)
		}
		path = path[:utf8Cut(path, room)]
	}
	return method + " " + path
}

// hop is the trace state of one request.
type hop struct {
	in      *headers.Result
	trusted bool // the client may set our trace context
	// untrustedTrace and untrustedSpan are what an untrusted client sent.
	untrustedTrace headers.TraceID
	untrustedSpan  headers.SpanID
	continuing     bool // the caller's trace is continued
	decision       sampler.Decision
	serverID       headers.SpanID
	out            headers.SpanContext // what the upstream continues: our CLIENT span
	swTraceID      string              // the caller's SkyWalking trace id string, if any
	name           string              // the operation name, "<METHOD> <path>", once needed
	peer           string              // the client's address, taken before next
	resp           sentHeaders         // the trace headers set on the response
	// method, path, query and host are the request as the client sent it.
	method, path, query, host string
	route                     string // the route of path, once routed (Handler.routeOf)
	routed                    bool
	att                       *attemptLog // where next's upstream attempts report
	attempts                  []attempt   // what they reported, once next returned
	grpc                      grpcResult  // the gRPC status of the response, once next returned
	stop                      time.Time   // when next returned (or the request was cut)
}

func (t *hop) init(h *Handler, in *headers.Result, r *http.Request, p *sampler.Params) {
	t.in = in
	t.out, t.continuing = headers.Continue(in)
	o := &t.out
	*p = sampler.Params{TraceID: o.TraceID, HasParent: t.continuing, Request: r, Forced: t.trusted && h.keep.forced(r)}
	if in.Format != headers.FormatNone {
		p.Parent = in.Sampling
	}
	t.decision = h.sampler.ShouldSample(p)
	o.Sampling = headers.PropagatedSampling(t.decision.Sample, p.Parent)
	t.serverID = headers.NewSpanID()
	o.ParentID = t.serverID
	if !h.segments {
		o.SpanID = headers.NewSpanID()
	} else {
		// A SkyWalking caller's trace id string travels on verbatim; for
		// any other trace, sw8 and the segment write the 32-hex id.
		if t.continuing {
			t.swTraceID = in.SW.TraceID
		}
		t.name = h.spanName(r, t)
		seg := headers.NewSegmentID()
		// The CLIENT span is our Exit span 1; deriving its id from the
		// segment lets the next proxy, reading only our sw8, name the same
		// parent span that Zipkin receives from us.
		o.SpanID = headers.SpanIDFromSW(seg, 1)
		o.SW = headers.SkyWalking{
			TraceID:   t.swTraceID,
			SegmentID: seg,
			SpanID:    1,
			Service:   h.ServiceName,
			Instance:  h.Instance,
			Endpoint:  noControl(capCopy(t.name, swFieldMax)),
			Address:   noControl(capCopy(h.upstreamAddress(r), swFieldMax)),
		}
	}
}

// swFieldMax bounds the sw8 fields that come from the request (endpoint,
// address), so the header stays under SkyWalking's 2 KiB whatever the path.
const swFieldMax = 256

// noControl replaces ASCII control characters (a path's decoded %0A) with
// '?': the next hop refuses an sw8 whose fields hold them.
func noControl(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < ' ' || b[j] == 0x7f {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return s
}

// noteUpstream remembers addr, the upstream reverse_proxy last called, as
// the sw8 target address of later requests when upstream_address is not
// configured.
func (h *Handler) noteUpstream(addr string) {
	if addr == "" || h.UpstreamAddress != "" {
		return
	}
	if p := h.state.lastUpstream.Load(); p == nil || *p != addr {
		changed := addr // only a change allocates: &addr would move addr to the heap on every call
		h.state.lastUpstream.Store(&changed)
	}
}

// upstreamAddress is the sw8 target address: upstream_address, else the
// upstream last called, else the request's Host.
func (h *Handler) upstreamAddress(r *http.Request) string {
	if h.UpstreamAddress != "" {
		return h.UpstreamAddress
	}
	if p := h.state.lastUpstream.Load(); p != nil {
		return *p
	}
	return r.Host
}

// clientAddress is the client's address as Caddy sees it (honouring
// trusted_proxies) with the connection's port.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" && ip != host {
		// The client is behind a trusted proxy: its port is unknown.
		return net.JoinHostPort(ip, "0")
	}
	return r.RemoteAddr
}

// firstIPv4 returns the first non-loopback IPv4 address of the host.
func firstIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
			if v4 := n.IP.To4(); v4 != nil {
				return v4.String()
			}
		}
	}
	return ""
}
