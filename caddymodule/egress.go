package caddymodule

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/sampler"
	"github.com/tracingproxy/tracingproxy/stitch"
)

// The egress flow: a handler in egress mode sits in front of reverse_proxy
// on a listener the service calls instead of its real upstream. Each call
// is attributed to the inbound request of the service that made it (the
// service's stitch registry), recorded as a CLIENT span of the service,
// child of that request's SERVER span, and carries our trace headers, which
// name that CLIENT span, to the real upstream.

// Egress makes the handler trace the outbound calls of its service_name:
// put it in front of reverse_proxy on a listener the service calls instead
// of the real upstream.
type Egress struct {
	// AllowClients lists the clients the listener serves: addresses,
	// CIDRs, private_ranges, or all. Others get 403. Default: loopback
	// only, so the listener is never an open relay.
	AllowClients []string `json:"allow_clients,omitempty"`
	// ForwardProxy makes the listener an HTTP forward proxy, for services
	// that honour HTTP_PROXY and HTTPS_PROXY: absolute-form requests
	// (GET http://host/path) are traced and handed to the reverse_proxy
	// that follows, whose upstream must be
	// {http.vars.tracingproxy_forward_upstream}; CONNECT tunnels are
	// relayed by the handler and recorded as CLIENT spans tagged
	// tracingproxy.tunnel, with the bytes each way. Default: off (the
	// listener stands for one upstream).
	ForwardProxy bool `json:"forward_proxy,omitempty"`
	// AllowDestinations lists what the forward proxy may reach:
	// host[:port], *.domain[:port] (any subdomain), an IP address or a
	// CIDR, with an optional :port (IP rules match destinations written
	// as IP addresses; names are not resolved to match them). Others get
	// 403. Default: any destination.
	AllowDestinations []string `json:"allow_destinations,omitempty"`

	allow   allowList
	dests   []destRule
	tunnels tunnels
}

// allowList is a set of client address ranges.
type allowList struct {
	all      bool
	prefixes []netip.Prefix
}

// loopback is the default allow list of egress and forward-proxy
// listeners.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// parseAllow reads an allow list; opt names the option in errors.
func parseAllow(opt string, list []string) (allowList, error) {
	if len(list) == 0 {
		return allowList{prefixes: loopback}, nil
	}
	var al allowList
	for _, s := range list {
		switch s {
		case "all":
			if len(list) > 1 {
				return allowList{}, fmt.Errorf("%s: all cannot be combined with addresses", opt)
			}
			return allowList{all: true}, nil
		case "private_ranges":
			al.prefixes = append(al.prefixes, privateRanges...)
			continue
		case "loopback":
			al.prefixes = append(al.prefixes, loopback...)
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return allowList{}, fmt.Errorf("%s: %q is not all, loopback, private_ranges, a CIDR or an IP address", opt, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		al.prefixes = append(al.prefixes, p.Masked())
	}
	return al, nil
}

// allows reports whether the client at remoteAddr (host:port, as
// http.Request.RemoteAddr has it) may use the listener.
func (al *allowList) allows(remoteAddr string) bool {
	if al.all {
		return true
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range al.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// build checks the egress options.
func (e *Egress) build(h *Handler) error {
	var err error
	if e.allow, err = parseAllow("egress allow_clients", e.AllowClients); err != nil {
		return err
	}
	if len(e.AllowDestinations) > 0 && !e.ForwardProxy {
		return fmt.Errorf("egress allow_destinations needs forward_proxy: a listener for one upstream reaches only that upstream")
	}
	e.dests, err = parseDestinations(e.AllowDestinations)
	return err
}

// egressConnKey is the request-context key of the connection a call came
// in on: the process method's cache key.
type egressConnKey struct{}

// hookConns makes the listener's server put each connection in its
// requests' contexts, and forget its process when it closes.
func (e *Egress) hookConns(srv *caddyhttp.Server, svc *stitchService) {
	srv.RegisterConnContext(func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, egressConnKey{}, c)
	})
	srv.RegisterConnState(func(c net.Conn, s http.ConnState) {
		if s != http.StateClosed && s != http.StateHijacked {
			return
		}
		if p := svc.reg; p != nil && p.procs != nil {
			p.procs.Forget(c)
		}
	})
}

// egressRefused counts the calls egress listeners refused, by reason
// (refusedClient, refusedDestination), process-wide.
var egressRefused [2]atomic.Uint64

// Reasons of tracingproxy_egress_refused_total.
const (
	refusedClient      = iota // outside allow_clients
	refusedDestination        // outside allow_destinations
)

var refusedReasons = [...]string{"client", "destination"}

// Tag keys of egress CLIENT spans.
const (
	tagStitch           = exporter.TagStitch
	tagStitchCandidates = exporter.TagStitchCandidates
)

// serveEgress is the egress flow: attribute, record, inject, call next.
func (h *Handler) serveEgress(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.Egress.allow.allows(r.RemoteAddr) {
		egressRefused[refusedClient].Add(1)
		if c := h.logger.Check(zapcore.DebugLevel, "egress: refusing a client outside allow_clients"); c != nil {
			c.Write(zap.String("remote_addr", r.RemoteAddr))
		}
		http.Error(w, "tracingproxy egress: client not allowed", http.StatusForbidden)
		return nil
	}
	if h.Egress.ForwardProxy {
		if r.Method == http.MethodConnect {
			return h.serveTunnel(w, r)
		}
		if !h.forwardTarget(w, r) {
			return nil
		}
	}
	start := now()
	st := statePool.Get().(*reqState)
	defer st.release()
	st.in = h.prop.prop.Extract(r.Header)
	in := &st.in
	var e egressCall
	res := h.attribute(r, in, &e)
	countStitch(res.Method)

	e.req = hop{method: r.Method, path: r.URL.Path, host: r.Host}
	e.name = h.spanName(r, &e.req)
	h.egressContext(r, in, &res, &e, &st.params)
	if bad := h.prop.sanitize(r.Header, true); bad != 0 {
		h.metrics.countMalformed(bad)
	}
	h.prop.inject(r, in, &e.out, &st.wr)

	record := e.sink != nil || e.out.Sampling.Sampled()
	if !record {
		return next.ServeHTTP(w, r)
	}
	finished := false
	defer func() {
		if !finished && e.sink != nil {
			e.sink.done(nil) // next panicked: release the ingress record
		}
	}()
	// The context is the call's own (a dial net/http goes on with keeps
	// it); the request copy and the recorder are the pooled state's.
	st.req = *r.WithContext(st.att.begin(r.Context(), new(tracedCtx), start))
	r = &st.req
	sr := &st.sr
	sr.ResponseWriterWrapper = caddyhttp.ResponseWriterWrapper{ResponseWriter: w}
	err := next.ServeHTTP(sr, r)
	end := now()
	attempts := st.att.end(end)
	span := h.egressSpan(r, &e, &res, sr, err, attempts, start, end)
	finished = true
	if e.sink != nil {
		e.sink.done(&span)
		return err
	}
	rec := h.egressRecord(&e, &res, span)
	for _, q := range h.queues {
		q.q.Enqueue(rec)
	}
	return err
}

// egressCall is the trace state of one egress call.
type egressCall struct {
	out      headers.SpanContext // our CLIENT span, as injected
	parentID headers.SpanID      // the attributed SERVER span (or forwarded span)
	sink     *egressSink         // the in-flight ingress record the span joins
	exit     int32               // its SkyWalking Exit span id there
	reqID    string              // the request id the call carries
	tunnel   bool                // a CONNECT tunnel: never joins the inbound record
	decision sampler.Decision
	// req holds the call as the service sent it (method, path, host) and
	// name its operation name.
	req  hop
	name string
}

// attribute asks the service's registry which inbound request made the
// call. Without a stitching ingress handler, only forwarded trace headers
// are continued.
func (h *Handler) attribute(r *http.Request, in *headers.Result, e *egressCall) stitch.Result {
	var call stitch.Call
	if in.Format != headers.FormatNone && in.HasIDs() {
		call.Forwarded = &in.SpanContext
	}
	p := h.egressSvc.reg
	if p == nil {
		if call.Forwarded != nil {
			return stitch.Result{Method: stitch.MethodHeader, Parent: *call.Forwarded}
		}
		return stitch.Result{Method: stitch.MethodNone}
	}
	if p.requestID {
		var sc headers.SpanContext
		p.egressID.Extract(r.Header, &sc)
		call.RequestID, e.reqID = sc.RequestID, sc.RequestID
	}
	if p.process {
		call.ConnKey, call.Conn = callerConn(r)
	}
	return p.reg.Attribute(call)
}

// callerConn is the connection the call came in on, from the service's
// side, for method process; a nil key when it is unknown.
func callerConn(r *http.Request) (any, stitch.Conn) {
	ctx := r.Context()
	conn, _ := ctx.Value(egressConnKey{}).(net.Conn)
	la, _ := ctx.Value(http.LocalAddrContextKey).(net.Addr)
	if conn == nil || la == nil {
		return nil, stitch.Conn{}
	}
	local, ok := tcpAddrPort(la)
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if !ok || err != nil {
		return nil, stitch.Conn{}
	}
	return conn, stitch.Conn{Local: netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), Remote: local}
}

// egressContext decides the CLIENT span's context: a child of the
// attributed span, or a new trace when none matched.
func (h *Handler) egressContext(r *http.Request, in *headers.Result, res *stitch.Result, e *egressCall, p *sampler.Params) {
	o := &e.out
	parent := &res.Parent
	if res.Method != stitch.MethodNone {
		*o = *parent
		e.parentID = parent.SpanID
		*p = sampler.Params{TraceID: o.TraceID, HasParent: true, Parent: parent.Sampling, Request: r}
		if s, ok := res.Data.(*egressSink); ok && s != nil && !e.tunnel {
			if id, ok := s.attach(); ok {
				e.sink, e.exit = s, id
			}
		}
	} else {
		*o = headers.SpanContext{TraceID: headers.NewTraceID(), Random: true}
		*p = sampler.Params{TraceID: o.TraceID, Request: r}
	}
	o.ParentID = e.parentID
	// What the service sent passes on: its request id, and its baggage
	// when it forwarded any (else the inbound request's).
	o.RequestID = in.RequestID
	if in.Baggage != "" {
		o.Baggage = in.Baggage
	}
	e.decision = h.sampler.ShouldSample(p)
	switch {
	case e.decision.Sample && p.Parent == headers.SamplingDebug:
		o.Sampling = headers.SamplingDebug
	case e.decision.Sample:
		o.Sampling = headers.SamplingAccept
	default:
		o.Sampling = headers.SamplingDeny
	}
	if !h.segments {
		o.SpanID = headers.NewSpanID()
		o.SW = headers.SkyWalking{}
		return
	}
	sw := headers.SkyWalking{Service: h.ServiceName, Instance: h.Instance,
		Address: noControl(capCopy(h.upstreamAddress(r), swFieldMax))}
	if res.Method != stitch.MethodNone {
		sw.TraceID = parent.SW.TraceID
	}
	if e.sink != nil && parent.SW.SegmentID != "" {
		// An Exit span of the inbound request's segment.
		sw.SegmentID, sw.SpanID, sw.Endpoint = parent.SW.SegmentID, e.exit, parent.SW.Endpoint
	} else {
		// A segment of its own, the call its span 0.
		sw.SegmentID = headers.NewSegmentID()
		sw.Endpoint = noControl(capCopy(e.name, swFieldMax))
	}
	o.SW = sw
	o.SpanID = headers.SpanIDFromSW(sw.SegmentID, sw.SpanID)
}

// egressSpan is the CLIENT span of a finished call.
func (h *Handler) egressSpan(r *http.Request, e *egressCall, res *stitch.Result, sr *statusRecorder, err error, attempts []attempt, start, end time.Time) exporter.Span {
	status, errText := finalStatus(sr, err)
	s := exporter.Span{
		Kind:     exporter.KindClient,
		ID:       e.out.SpanID,
		ParentID: e.parentID,
		Name:     e.name,
		Start:    start,
		Duration: end.Sub(start),
		Status:   status,
		Error:    h.capTag(errText),
	}
	if e.sink != nil {
		// Its Exit span id in the inbound request's segment, as its sw8
		// named it.
		s.SegmentSpanID = e.out.SW.SpanID
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		s.Peer, _ = repl.GetString(phUpstreamHostport)
	}
	if s.Peer == "" && len(attempts) > 0 {
		s.Peer = attempts[len(attempts)-1].addr
	}
	h.noteUpstream(s.Peer) // the next call's sw8 names the real target, as on ingress
	tags := make([]exporter.Tag, 0, 7)
	tags = append(tags,
		exporter.Tag{Key: exporter.TagHTTPMethod, Value: h.capTag(e.req.method)},
		exporter.Tag{Key: exporter.TagHTTPPath, Value: h.capTag(e.req.path)},
		exporter.Tag{Key: tagStitch, Value: res.Method.String()})
	if s.Peer != "" {
		tags = append(tags, exporter.Tag{Key: exporter.TagPeerAddress, Value: s.Peer})
	}
	if len(res.Candidates) > 0 {
		tags = append(tags, candidatesTag(res.Candidates))
	}
	if id := cmp.Or(e.reqID, e.out.RequestID); id != "" {
		tags = append(tags, exporter.Tag{Key: exporter.TagRequestID, Value: h.capTag(id)})
	}
	s.Tags = tags
	if len(attempts) > 0 {
		s.Annotations = phaseAnnotations(&attempts[len(attempts)-1])
	}
	return s
}

// candidatesTag lists the in-flight inbound requests' span ids of a call
// left unstitched.
func candidatesTag(cands []headers.SpanID) exporter.Tag {
	ids := make([]string, len(cands))
	for i, c := range cands {
		ids[i] = c.String()
	}
	return exporter.Tag{Key: tagStitchCandidates, Value: strings.Join(ids, ",")}
}

// egressRecord is the record of a call that joined no in-flight inbound
// request: its one span is the CLIENT span (Record.Server, KindClient).
func (h *Handler) egressRecord(e *egressCall, res *stitch.Result, span exporter.Span) *exporter.Record {
	o := &e.out
	rec := &exporter.Record{
		Service:        h.ServiceName,
		Instance:       h.Instance,
		TraceID:        o.TraceID,
		TraceID64:      o.TraceID64,
		Debug:          o.Sampling == headers.SamplingDebug,
		TraceState:     o.TraceState,
		Scheme:         "http",
		Server:         span,
		SegmentID:      o.SW.SegmentID,
		SWTraceID:      o.SW.TraceID,
		SamplingReason: string(e.decision.Reason),
	}
	if o.Sampling.Sampled() {
		rec.Flags |= exporter.FlagSampled
	}
	if o.Random && !o.TraceID64 {
		rec.Flags |= exporter.FlagRandom
	}
	if h.segments && res.Method != stitch.MethodNone && res.Parent.SW.SegmentID != "" {
		// The segment refers to the attributed span: the inbound
		// request's Entry span, or the span a forwarded sw8 named.
		rec.Parent = res.Parent.SW
	}
	return rec
}

// phaseAnnotations returns the phases of the attempt that answered as
// annotations: the connection set-up, the request written, the first
// response byte.
func phaseAnnotations(a *attempt) []exporter.Annotation {
	var as []exporter.Annotation
	for p, t := range a.phases {
		if !t.IsZero() {
			as = append(as, exporter.Annotation{Time: t, Value: phaseNames[p]})
		}
	}
	return as
}
