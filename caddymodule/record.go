package caddymodule

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/headers"
)

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

// recordBuf holds a record with room for its spans and tags, so a sampled
// request allocates them at once.
type recordBuf struct {
	ids     traceIDs
	ctx     tracedCtx      // the request's context with the attempt hooks
	reqTags []exporter.Tag // recorded request headers, taken before next
	egress  *egressSink    // the service's calls made for this request, when it stitches
	rec     exporter.Record
	clients [1]exporter.Span
	tags    [9]exporter.Tag
	// ctags holds the tags of the first CLIENT span when it succeeds
	// (method, path, peer, resend count, connection reused); an error or
	// gRPC status moves them to an allocation of clientTags.
	ctags [1][5]exporter.Tag
	// anns and annsUsed hold the CLIENT spans' annotations: room for ws
	// and wr on a reused connection. More (a new connection's set-up, a
	// retry) allocate, once the set-up costs far more anyway.
	anns     [2]exporter.Annotation
	annsUsed int
}

// clientTags is the most tags a CLIENT span has.
const clientTags = 7

// record builds the exporter record of a finished request.
func (h *Handler) record(f *flight) *exporter.Record {
	b, r, t, sr, start, callStart, end := f.b, f.r, f.t, f.sr, f.start, f.callStart, f.end
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

	f.status, f.errText = finalStatus(sr, f.err)
	f.code = 0

	if t.name == "" {
		t.name = h.spanName(r, t)
	}
	name := t.name
	capTag := h.capTag
	// The CLIENT spans share the first two tags (method and path).
	tags := append(b.tags[:0],
		exporter.Tag{Key: exporter.TagHTTPMethod, Value: capTag(t.method)},
		exporter.Tag{Key: exporter.TagHTTPPath, Value: capTag(t.path)},
		exporter.Tag{Key: exporter.TagHTTPHost, Value: capTag(t.host)})
	if t.in.Conflict != headers.FormatNone {
		tags = append(tags, exporter.Tag{Key: exporter.TagConflict, Value: t.in.Conflict.String() + ":" + t.in.ConflictTraceID.String()})
	}
	tags = append(tags, exporter.Tag{Key: exporter.TagHTTPRoute, Value: capTag(h.routeOf(t))})
	if size := sr.bytes.Load(); size > 0 {
		tags = append(tags, exporter.Tag{Key: exporter.TagHTTPResponseSize, Value: strconv.FormatInt(size, 10)})
	}
	if t.out.RequestID != "" {
		tags = append(tags, exporter.Tag{Key: exporter.TagRequestID, Value: capTag(t.out.RequestID)})
	}
	if t.untrustedTrace.IsValid() {
		tags = append(tags,
			exporter.Tag{Key: exporter.TagUntrustedTraceID, Value: t.untrustedTrace.String()},
			exporter.Tag{Key: exporter.TagUntrustedSpanID, Value: t.untrustedSpan.String()})
	}
	rec.Server = exporter.Span{
		Kind:     exporter.KindServer,
		ID:       t.serverID,
		Name:     name,
		Start:    start,
		Duration: end.Sub(start),
		Status:   f.status,
		Error:    capTag(f.errText),
		Peer:     t.peer,
		Tags:     tags,
	}
	if t.continuing {
		rec.Server.ParentID = t.in.SpanID // zero for a root-only context
	}
	if h.RecordQuery && t.query != "" {
		rec.Server.Tags = append(rec.Server.Tags, exporter.Tag{Key: exporter.TagHTTPQuery, Value: capTag(t.query)})
	}
	rec.Server.Tags = append(rec.Server.Tags, b.reqTags...)
	if f.cut {
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
		if t.grpc.failed() && f.errText == "" {
			f.errText = t.grpc.errorText()
			rec.Server.Error = capTag(f.errText)
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
	h.noteUpstream(upstream)
	if v, ok := repl.Get(phUpstreamStatus); ok {
		f.code, _ = v.(int)
	}
	if len(t.attempts) > 0 {
		rec.Clients = h.withSession(f, h.attemptSpans(f))
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
		Status:   f.status,
		Error:    capTag(f.errText),
		Peer:     upstream,
		Tags:     b.tags[0:2:2],
	}
	if v, ok := repl.Get(phUpstreamDuration); ok {
		if d, ok := v.(time.Duration); ok && d > 0 && d <= end.Sub(callStart) {
			cs.Start = end.Add(-d)
			cs.Duration = d
		}
	}
	if f.code != 0 {
		cs.Status = f.code
		if f.code < 500 && f.err == nil {
			cs.Error = ""
		}
	}
	b.clients[0] = cs
	rec.Clients = h.withSession(f, b.clients[:1])
	return rec
}

// withSession appends the session span of an upgraded connection to the
// CLIENT spans.
func (h *Handler) withSession(f *flight, spans []exporter.Span) []exporter.Span {
	ss := f.sr.session.Load()
	if ss == nil {
		return spans
	}
	t := f.t
	s := h.sessionSpan(t, ss, f.r.Header.Get("Upgrade"), h.routeOf(t), t.stop)
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
func (h *Handler) attemptSpans(f *flight) []exporter.Span {
	b, t := f.b, f.t
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
		spans = append(spans, h.attemptSpan(f, &as[carrier], 0, carrier == last))
		spans[0].ID = t.out.SpanID
	}
	for i := range as {
		if h.segments && i == carrier {
			continue
		}
		s := h.attemptSpan(f, &as[i], len(spans), i == last)
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
func (h *Handler) attemptSpan(f *flight, a *attempt, k int, final bool) exporter.Span {
	b, t, err, errText, code := f.b, f.t, f.err, f.errText, f.code
	s := exporter.Span{
		Kind:     exporter.KindClient,
		ParentID: t.serverID,
		Name:     t.name,
		Start:    a.start,
		Duration: a.end.Sub(a.start),
		Peer:     a.addr,
	}
	var tags []exporter.Tag
	if k < len(b.ctags) {
		tags = b.ctags[k][:0]
	} else {
		tags = make([]exporter.Tag, 0, clientTags)
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
