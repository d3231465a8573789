package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tracingproxy/tracingproxy/exporter"
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
		// The writer is large and its values are only read below n: a
		// reset of n is enough.
		st.in, st.hop, st.params = headers.Result{}, hop{}, sampler.Params{}
		st.wr.Reset()
		statePool.Put(st)
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
	t.init(h, in, r, &st.params)
	if h.observe != nil {
		h.observe(st)
	}
	watch := t.decision.Sample || h.keep.enabled()
	if !watch {
		h.metrics.countDecision(t.decision)
	}
	// The request as the client sent it: handlers after us (uri, rewrite,
	// handle_path) change r in place.
	t.method, t.path, t.query, t.host = r.Method, r.URL.Path, r.URL.RawQuery, r.Host
	if watch && t.name == "" && h.SpanName != "" {
		// Named before next, whose handlers change the request that the
		// placeholders read.
		t.name = h.spanName(r, t.method, t.path)
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
	r = r.WithContext(st.att.begin(r.Context(), &b.ctx))
	sr := &statusRecorder{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, watched: true}
	if told {
		sr.settle, sr.sent = h.ResponseHeaders, &t.resp
	}
	// Taken now: the request's variables change while next runs, and a
	// shutdown may record the request before it returns.
	t.peer = clientAddress(r)
	callStart := now()
	b.flight = flight{b: b, r: r, t: t, sr: sr, start: start, callStart: callStart}
	h.flights.add(&b.flight)
	done := false
	defer func() {
		if done {
			return
		}
		// next panicked: reverse_proxy aborts a response it cannot finish
		// with http.ErrAbortHandler. Record the failure, then let the
		// panic go on unchanged.
		p := recover()
		h.land(b, fmt.Errorf("response aborted: %v", p), now())
		panic(p)
	}()
	err := next.ServeHTTP(sr, r)
	done = true
	h.land(b, err, now())
	return err
}

// land finishes a watched request when next returns, unless a shutdown
// recorded it already (see flights).
func (h *Handler) land(b *recordBuf, err error, end time.Time) {
	f := &b.flight
	if !h.flights.remove(f) {
		return
	}
	h.finish(b, f.r, f.t, f.sr, err, f.start, f.callStart, end)
}

// finish decides whether a watched request is exported (head-sampled, or
// kept after the fact), counts the decision and enqueues the record.
func (h *Handler) finish(b *recordBuf, r *http.Request, t *hop, sr *statusRecorder, err error, start, callStart, end time.Time) {
	t.stop = end
	if ss := sr.session.Load(); ss != nil {
		// An upgraded connection: the hop ended at the 101, and the
		// relay that followed is its session span.
		end = ss.start
	}
	t.attempts = t.att.end(end)
	if !t.decision.Sample {
		// Deferred keep: the head said no, but a failed or slow request
		// is exported anyway, marked with why.
		status, _ := finalStatus(sr, err)
		reason := h.keep.keep(status, end.Sub(start))
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
	h.enqueue(b, h.record(b, r, t, sr, err, start, callStart, end))
}

// requestHeaderTags records the request headers record_request_headers
// lists, as the client sent them.
func (h *Handler) requestHeaderTags(r *http.Request) []exporter.Tag {
	var tags []exporter.Tag
	for _, ht := range h.reqTags {
		if v := r.Header[ht.header]; len(v) > 0 {
			tags = append(tags, exporter.Tag{Key: ht.tag, Value: h.capTag(strings.Join(v, ","))})
		}
	}
	return tags
}

// capTag cuts a value taken from the request or response at max_tag_length.
// A cut value is a copy: a slice would keep the whole request line (or
// header) alive for as long as the record waits in a queue.
func (h *Handler) capTag(v string) string {
	return capCopy(v, h.MaxTagLength)
}

// capCopy returns s when it fits in n bytes, else a copy of its first n
// bytes, cut back to a UTF-8 boundary.
func capCopy(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.Clone(s[:utf8Cut(s, n)])
}

// utf8Cut returns the largest i <= n with s[:i] not splitting a rune; n when
// s[:n] ends in bytes that are not UTF-8.
func utf8Cut(s string, n int) int {
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n
}

// spanName is the operation name: span_name with r's placeholders
// replaced, or "<METHOD> <route>". It is capped at max_tag_length: the path
// is the client's, and the name waits in the queues with the record.
func (h *Handler) spanName(r *http.Request, method, path string) string {
	if h.SpanName != "" {
		name := h.SpanName
		if strings.IndexByte(name, '{') >= 0 {
			if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
				name = repl.ReplaceKnown(name, "")
			}
		}
		return capCopy(name, h.MaxTagLength)
	}
	path = h.route(path)
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
	att                       *attemptLog // where next's upstream attempts report
	attempts                  []attempt   // what they reported, once next returned
	grpc                      grpcResult  // the gRPC status of the response, once next returned
	stop                      time.Time   // when next returned (or the request was cut)
}

func (t *hop) init(h *Handler, in *headers.Result, r *http.Request, p *sampler.Params) {
	t.in = in
	// A trace id without a span id (an AWS load balancer's X-Ray Root)
	// is continued too; the SERVER span is then the trace's root.
	t.continuing = in.Format != headers.FormatNone && in.TraceID.IsValid()
	o := &t.out
	o.Baggage, o.RequestID = in.Baggage, in.RequestID
	if t.continuing {
		o.TraceID = in.TraceID
		o.TraceID64 = in.TraceID64
		o.Random = in.Random
		o.TraceState = in.TraceState
		o.XRayExtra = in.XRayExtra
		o.DatadogOrigin, o.DatadogTags = in.DatadogOrigin, in.DatadogTags
	} else {
		o.TraceID = headers.NewTraceID()
		o.Random = true
	}
	*p = sampler.Params{TraceID: o.TraceID, HasParent: t.continuing, Request: r, Forced: t.trusted && h.keep.forced(r)}
	if in.Format != headers.FormatNone {
		p.Parent = in.Sampling
	}
	t.decision = h.sampler.ShouldSample(p)
	switch {
	case t.decision.Sample && p.Parent == headers.SamplingDebug:
		o.Sampling = headers.SamplingDebug
	case t.decision.Sample:
		o.Sampling = headers.SamplingAccept
	default:
		o.Sampling = headers.SamplingDeny
	}
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
		t.name = h.spanName(r, r.Method, r.URL.Path)
		seg := newSegmentID()
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

// newSegmentID returns a fresh SkyWalking segment id: 32 random hex digits.
func newSegmentID() string { return headers.NewTraceID().String() }

func (h *Handler) upstreamAddress(r *http.Request) string {
	if h.UpstreamAddress != "" {
		return h.UpstreamAddress
	}
	if p := h.state.lastUpstream.Load(); p != nil {
		return *p
	}
	return r.Host
}

// setResponseHeaders tells the client which trace it belongs to and reports
// whether it set anything. It runs before next so the headers are there
// whatever the upstream does; what it set is kept in t.resp, for
// statusRecorder to settle against the upstream's headers of the same names.
func (h *Handler) setResponseHeaders(w http.ResponseWriter, t *hop) bool {
	rh := h.ResponseHeaders
	if rh == nil || !t.trusted && !rh.ToUntrusted {
		return false
	}
	hdr := w.Header()
	if rh.ServerTiming || rh.TraceResponse {
		// 00-<32 hex>-<16 hex>-<2 hex>, naming our SERVER span.
		const prefix = "trace;desc="
		var b [len(prefix) + 55]byte
		buf := append(b[:0], prefix...)
		buf = append(buf, "00-"...)
		buf = t.out.TraceID.AppendHex(buf)
		buf = append(buf, '-')
		buf = t.serverID.AppendHex(buf)
		flags := byte(0)
		if t.out.Sampling.Sampled() {
			flags |= 0x01
		}
		if t.out.Random && !t.out.TraceID64 {
			flags |= 0x02
		}
		buf = append(buf, '-', '0', "0123456789abcdef"[flags])
		v := string(buf)
		if rh.ServerTiming {
			t.resp.serverTiming = v
			hdr.Add("Server-Timing", v)
		}
		if rh.TraceResponse {
			t.resp.traceResponse = v[len(prefix):]
			hdr.Set("Traceresponse", t.resp.traceResponse)
		}
	}
	if rh.TraceID != "" {
		t.resp.traceID = t.out.TraceID.String()
		hdr.Set(rh.TraceID, t.resp.traceID)
	}
	if u := rh.TraceURL; u != nil {
		link := strings.ReplaceAll(u.Template, "{trace_id}", t.out.TraceID.String())
		link = strings.ReplaceAll(link, "{span_id}", t.serverID.String())
		t.resp.traceURL = link
		hdr.Set(u.Header, link)
	}
	return true
}

// annotate exposes the ids as {http.vars.trace_id}, {http.vars.span_id} and
// in the access log (trace_id, span_id). The ids become strings only when
// something reads them.
func annotate(r *http.Request, ids *traceIDs) {
	ctx := r.Context()
	caddyhttp.SetVar(ctx, "trace_id", (*traceIDVar)(ids))
	caddyhttp.SetVar(ctx, "span_id", (*spanIDVar)(ids))
	// Adding a log field costs an allocation in Caddy on every call; skip it
	// on servers that log no access.
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Logs == nil {
		return
	}
	if extra, ok := ctx.Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.Inline(ids))
	}
}

// traceIDs are the ids a request exposes to placeholders and logs.
type traceIDs struct {
	trace headers.TraceID
	span  headers.SpanID
}

// MarshalLogObject writes trace_id and span_id.
func (ids *traceIDs) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("trace_id", ids.trace.String())
	enc.AddString("span_id", ids.span.String())
	return nil
}

// traceIDVar is the value of {http.vars.trace_id}.
type traceIDVar traceIDs

// String returns the 32-hex trace id.
func (v *traceIDVar) String() string { return v.trace.String() }

// spanIDVar is the value of {http.vars.span_id}.
type spanIDVar traceIDs

// String returns the 16-hex SERVER span id.
func (v *spanIDVar) String() string { return v.span.String() }

// recordBuf holds a record with room for its spans and tags, so a sampled
// request allocates them at once.
type recordBuf struct {
	ids     traceIDs
	ctx     tracedCtx      // the request's context with the attempt hooks
	reqTags []exporter.Tag // recorded request headers, taken before next
	flight  flight         // the request in flight, while next runs
	egress  *egressSink    // the service's calls made for this request, when it stitches
	rec     exporter.Record
	clients [1]exporter.Span
	tags    [9]exporter.Tag
	ctags   [1][7]exporter.Tag // the tags of the first CLIENT span
	// anns and annsUsed hold the CLIENT spans' annotations: room for a
	// fresh connection's connect, ws and wr. More (a retry, DNS, TLS)
	// allocate, once the connection set-up costs far more anyway.
	anns     [4]exporter.Annotation
	annsUsed int
}

// record builds the exporter record of a finished request.
func (h *Handler) record(b *recordBuf, r *http.Request, t *hop, sr *statusRecorder, err error, start, callStart, end time.Time) *exporter.Record {
	rec := &b.rec
	rec.Service = h.ServiceName
	rec.Instance = h.Instance
	rec.TraceID = t.out.TraceID
	rec.TraceID64 = t.out.TraceID64
	rec.Debug = t.out.Sampling == headers.SamplingDebug
	rec.Flags = 0
	if t.out.Sampling.Sampled() {
		rec.Flags |= exporter.FlagSampled
	}
	if t.out.Random && !t.out.TraceID64 {
		rec.Flags |= exporter.FlagRandom
	}
	rec.TraceState = t.out.TraceState
	rec.Scheme = "http"
	if r.TLS != nil {
		rec.Scheme = "https"
	}
	rec.SamplingReason = string(t.decision.Reason)
	rec.SegmentID = t.out.SW.SegmentID
	rec.SWTraceID = t.swTraceID
	if t.continuing && t.in.SW.SegmentID != "" {
		rec.Parent = t.in.SW
	}

	status, errText := finalStatus(sr, err)

	if t.name == "" {
		t.name = h.spanName(r, t.method, t.path)
	}
	name := t.name
	capTag := h.capTag
	b.tags[0] = exporter.Tag{Key: exporter.TagHTTPMethod, Value: capTag(t.method)}
	b.tags[1] = exporter.Tag{Key: exporter.TagHTTPPath, Value: capTag(t.path)}
	b.tags[2] = exporter.Tag{Key: exporter.TagHTTPHost, Value: capTag(t.host)}
	rec.Server = exporter.Span{
		Kind:     exporter.KindServer,
		ID:       t.serverID,
		Name:     name,
		Start:    start,
		Duration: end.Sub(start),
		Status:   status,
		Error:    capTag(errText),
		Peer:     t.peer,
		Tags:     b.tags[0:3:3],
	}
	if t.continuing {
		rec.Server.ParentID = t.in.SpanID // zero for a root-only context
	}
	n := 3
	if t.in.Conflict != headers.FormatNone {
		b.tags[n] = exporter.Tag{Key: exporter.TagConflict, Value: t.in.Conflict.String() + ":" + t.in.ConflictTraceID.String()}
		n++
	}
	b.tags[n] = exporter.Tag{Key: exporter.TagHTTPRoute, Value: capTag(h.route(t.path))}
	n++
	if size := sr.bytes.Load(); size > 0 {
		b.tags[n] = exporter.Tag{Key: exporter.TagHTTPResponseSize, Value: strconv.FormatInt(size, 10)}
		n++
	}
	if t.out.RequestID != "" {
		b.tags[n] = exporter.Tag{Key: exporter.TagRequestID, Value: capTag(t.out.RequestID)}
		n++
	}
	if t.untrustedTrace.IsValid() {
		b.tags[n] = exporter.Tag{Key: exporter.TagUntrustedTraceID, Value: t.untrustedTrace.String()}
		b.tags[n+1] = exporter.Tag{Key: exporter.TagUntrustedSpanID, Value: t.untrustedSpan.String()}
		n += 2
	}
	rec.Server.Tags = b.tags[0:n:n]
	if h.RecordQuery && t.query != "" {
		rec.Server.Tags = append(rec.Server.Tags, exporter.Tag{Key: exporter.TagHTTPQuery, Value: capTag(t.query)})
	}
	rec.Server.Tags = append(rec.Server.Tags, b.reqTags...)
	if b.flight.cut {
		// next is still running: the response headers and the upstream's
		// placeholders are not ours to read.
		return rec
	}
	for _, ht := range h.respTags {
		if v := sr.Header()[ht.header]; len(v) > 0 {
			rec.Server.Tags = append(rec.Server.Tags, exporter.Tag{Key: ht.tag, Value: capTag(strings.Join(v, ","))})
		}
	}
	// A gRPC call's outcome is its grpc-status, whatever the HTTP status.
	if t.grpc = grpcStatus(sr.Header()); t.grpc.code != "" {
		rec.Server.Tags = append(rec.Server.Tags, exporter.Tag{Key: exporter.TagGRPCStatusCode, Value: t.grpc.code})
		if t.grpc.failed() && errText == "" {
			errText = t.grpc.errorText()
			rec.Server.Error = capTag(errText)
		}
	}

	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return rec
	}
	upstream, _ := repl.GetString(phUpstreamHostport)
	if upstream == "" && len(t.attempts) == 0 {
		return rec // no upstream was called
	}
	if upstream != "" && h.UpstreamAddress == "" {
		if p := h.state.lastUpstream.Load(); p == nil || *p != upstream {
			h.state.lastUpstream.Store(&upstream)
		}
	}
	code := 0 // the status of the last upstream response
	if v, ok := repl.Get(phUpstreamStatus); ok {
		code, _ = v.(int)
	}
	if len(t.attempts) > 0 {
		rec.Clients = h.withSession(r, t, sr, h.attemptSpans(b, t, name, err, errText, code))
		return rec
	}
	// next answered without a traced RoundTrip (a transport net/http does
	// not run, such as FastCGI): one CLIENT span from the placeholders.
	cs := exporter.Span{
		Kind:     exporter.KindClient,
		ID:       t.out.SpanID,
		ParentID: t.serverID,
		Name:     name,
		Start:    callStart,
		Duration: end.Sub(callStart),
		Status:   status,
		Error:    capTag(errText),
		Peer:     upstream,
		Tags:     b.tags[0:2:2],
	}
	if v, ok := repl.Get(phUpstreamDuration); ok {
		if d, ok := v.(time.Duration); ok && d > 0 && d <= end.Sub(callStart) {
			cs.Start = end.Add(-d)
			cs.Duration = d
		}
	}
	if code != 0 {
		cs.Status = code
		if code < 500 && err == nil {
			cs.Error = ""
		}
	}
	b.clients[0] = cs
	rec.Clients = h.withSession(r, t, sr, b.clients[:1])
	return rec
}

// withSession appends the session span of an upgraded connection to the
// CLIENT spans.
func (h *Handler) withSession(r *http.Request, t *hop, sr *statusRecorder, spans []exporter.Span) []exporter.Span {
	ss := sr.session.Load()
	if ss == nil {
		return spans
	}
	s := h.sessionSpan(t, ss, r.Header.Get("Upgrade"), h.route(t.path), t.stop)
	if h.segments {
		s.ID = headers.SpanIDFromSW(t.out.SW.SegmentID, int32(len(spans)+1))
	} else {
		s.ID = headers.NewSpanID()
	}
	return append(spans, s)
}

// resendCounts are the http.request.resend_count values of the attempts a
// record holds without formatting a number.
var resendCounts = [maxAttempts]string{"0", "1", "2", "3", "4", "5", "6", "7"}

// attemptSpans turns the attempts of next into CLIENT spans, children of
// the SERVER span. The upstream continues the context we injected before
// the first attempt, so its span id goes to the attempt that reached the
// upstream which answered: the last one that wrote its request (else the
// last one). The others get ids of their own. With SkyWalking segments
// that attempt is Exit span 1, the span our sw8 named, and the others
// follow in time order; otherwise all are in time order.
func (h *Handler) attemptSpans(b *recordBuf, t *hop, name string, err error, errText string, code int) []exporter.Span {
	as := t.attempts
	last := len(as) - 1
	carrier := last
	for i := last; i >= 0; i-- {
		if as[i].wrote {
			carrier = i
			break
		}
	}
	spans := b.clients[:0]
	if h.segments {
		spans = append(spans, h.attemptSpan(b, t, &as[carrier], 0, carrier == last, name, err, errText, code))
		spans[0].ID = t.out.SpanID
	}
	for i := range as {
		if h.segments && i == carrier {
			continue
		}
		s := h.attemptSpan(b, t, &as[i], len(spans), i == last, name, err, errText, code)
		switch {
		case i == carrier:
			s.ID = t.out.SpanID
		case h.segments:
			s.ID = headers.SpanIDFromSW(t.out.SW.SegmentID, int32(len(spans)+1))
		default:
			s.ID = headers.NewSpanID()
		}
		spans = append(spans, s)
	}
	return spans
}

// attemptSpan is the CLIENT span of one attempt, the k-th of the record;
// final says it is the attempt whose outcome next returned.
func (h *Handler) attemptSpan(b *recordBuf, t *hop, a *attempt, k int, final bool, name string, err error, errText string, code int) exporter.Span {
	s := exporter.Span{
		Kind:     exporter.KindClient,
		ParentID: t.serverID,
		Name:     name,
		Start:    a.start,
		Duration: a.end.Sub(a.start),
		Peer:     a.addr,
	}
	var tags []exporter.Tag
	if k < len(b.ctags) {
		tags = b.ctags[k][:0]
	} else {
		tags = make([]exporter.Tag, 0, len(b.ctags[0]))
	}
	tags = append(tags, b.tags[0], b.tags[1],
		exporter.Tag{Key: exporter.TagPeerAddress, Value: a.addr},
		exporter.Tag{Key: exporter.TagResendCount, Value: resendCount(a.resend)})
	if a.gotConn {
		reused := "false"
		if a.reused {
			reused = "true"
		}
		tags = append(tags, exporter.Tag{Key: exporter.TagConnectionReused, Value: reused})
	}
	var errType string
	switch {
	case final && a.answered && code != 0:
		s.Status = code
		if t.grpc.code != "" {
			tags = append(tags, exporter.Tag{Key: exporter.TagGRPCStatusCode, Value: t.grpc.code})
		}
		switch {
		case err != nil || code >= 500:
			s.Error = h.capTag(errText)
			errType = strconv.Itoa(code)
		case t.grpc.failed():
			s.Error = h.capTag(errText)
			errType = t.grpc.name
		}
	case final:
		if errText == "" {
			break // answered, and what the placeholders say is unknown
		}
		s.Error = h.capTag(errText)
		switch {
		case a.dialErr != nil:
			errType = errorType(a.dialErr)
		case err != nil:
			errType = errorType(err)
		default:
			errType = errTypeOther
		}
	case a.dialErr != nil:
		s.Error = h.capTag(a.dialErr.Error())
		errType = errorType(a.dialErr)
	case a.answered:
		s.Error = "reverse_proxy retried after this response"
		errType = errTypeRetried
	default:
		s.Error = "no response; reverse_proxy retried"
		errType = errTypeNoResponse
	}
	if errType != "" {
		tags = append(tags, exporter.Tag{Key: exporter.TagErrorType, Value: errType})
	}
	s.Tags = tags
	s.Annotations = b.annotations(a)
	return s
}

// annotations returns the phases of a as annotations, in b's room while it
// lasts.
func (b *recordBuf) annotations(a *attempt) []exporter.Annotation {
	n := 0
	for _, t := range a.phases {
		if !t.IsZero() {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	var as []exporter.Annotation
	if free := len(b.anns) - b.annsUsed; n <= free {
		as = b.anns[b.annsUsed : b.annsUsed : b.annsUsed+n]
		b.annsUsed += n
	} else {
		as = make([]exporter.Annotation, 0, n)
	}
	for p, t := range a.phases {
		if !t.IsZero() {
			as = append(as, exporter.Annotation{Time: t, Value: phaseNames[p]})
		}
	}
	return as
}

func resendCount(n int) string {
	if n < len(resendCounts) {
		return resendCounts[n]
	}
	return strconv.Itoa(n)
}

// finalStatus is the status the client gets and, for a failure, its
// description. Once a status is sent it is the client's, whatever fails
// after it (a body cut mid-stream). Before that, a failed next's status is
// the handler error's (Caddy writes the error response after us), and a
// request cut at shutdown has none.
func finalStatus(sr *statusRecorder, err error) (status int, errText string) {
	status = int(sr.status.Load())
	switch {
	case err != nil:
		errText = err.Error()
		var he caddyhttp.HandlerError
		switch {
		case status != 0, errors.Is(err, errCutAtShutdown):
		case errors.As(err, &he) && he.StatusCode != 0:
			status = he.StatusCode
		default:
			status = http.StatusInternalServerError
		}
	case status == 0:
		status = http.StatusOK
	}
	if errText == "" && status >= 500 {
		errText = http.StatusText(status)
	}
	return status, errText
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

// statusRecorder remembers the status code a response was sent with and,
// when settle is set, keeps the upstream's trace headers of the names we set
// from doubling ours. Status and bytes are atomic: a shutdown may record
// the request while its response is still being written (see flights).
type statusRecorder struct {
	caddyhttp.ResponseWriterWrapper
	status atomic.Int32
	bytes  atomic.Int64 // response body bytes written
	// settle and sent, when set, are the response header options and what
	// they set on this response.
	settle *ResponseHeaders
	sent   *sentHeaders
	// watched records an upgraded connection in session.
	watched bool
	session atomic.Pointer[session]
}

// WriteHeader settles the trace headers before any status is sent and
// records the first final status; 101 Switching Protocols is final for an
// upgraded connection.
func (s *statusRecorder) WriteHeader(code int) {
	if s.status.Load() == 0 {
		s.settleHeaders()
		if code >= 200 || code == http.StatusSwitchingProtocols {
			s.status.Store(int32(code))
		}
	}
	s.ResponseWriterWrapper.WriteHeader(code)
}

// Write records an implicit 200 and counts the body bytes.
func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status.Load() == 0 {
		s.settleHeaders()
		s.status.Store(http.StatusOK)
	}
	n, err := s.ResponseWriterWrapper.Write(p)
	s.bytes.Add(int64(n))
	return n, err
}

// ReadFrom records an implicit 200 and counts the body bytes.
func (s *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if s.status.Load() == 0 {
		s.settleHeaders()
		s.status.Store(http.StatusOK)
	}
	n, err := s.ResponseWriterWrapper.ReadFrom(src)
	s.bytes.Add(n)
	return n, err
}

func (s *statusRecorder) settleHeaders() {
	if s.settle != nil {
		s.settle.settle(s.Header(), s.sent)
	}
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
