package skywalking

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tracingproxy/tracingproxy/exporter"
	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
)

// Component ids from SkyWalking's component-libraries.yml.
const (
	ComponentGoHTTPServer int32 = 5004 // the Entry span: the hop into the proxy
	ComponentGoHTTPClient int32 = 5005 // an Exit span: one upstream call
)

// UnknownPeer is the peer written on an Exit span whose upstream address is
// unknown (the proxy failed before it picked an upstream). SkyWalking
// requires a peer on Exit spans and builds its topology from it; this value
// makes such failures show as calls to one conjectured "unknown:0" service
// instead of being silently left out of the topology.
const UnknownPeer = "unknown:0"

// Log keys of the error event, as SkyWalking's agents write them. The Java
// agent adds "error.kind" with an exception class; a Record has only the
// message, so it is left out.
const (
	logEvent   = "event"
	logError   = "error"
	logMessage = "message"
)

// statusText holds the decimal strings of HTTP status codes, so the hot path
// does not format them.
var statusText = func() (t [600]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

// Segment maps one Record to a SkyWalking segment: span 0 is the Entry span
// (the SERVER span, parent -1, with a CrossProcess reference to the caller's
// segment when the caller sent sw8 or sw6), spans 1.. are Exit spans (one
// per CLIENT span, parent 0), or Local spans for a record's local spans. Times are epoch milliseconds. Strings that are
// not valid UTF-8 are repaired, since protobuf refuses to encode them.
//
// A record whose first span is a CLIENT span (a legacy service's egress call
// that no in-flight inbound request holds) is a segment of that one Exit
// span, its reference naming the span it continues: CrossThread when that
// is a span of the same service (its inbound request's Entry span, for
// work done after the response), CrossProcess otherwise.
//
// The trace id is r.SWTraceID, or the 32 hex digits of r.TraceID when that
// is empty. r.SegmentID must be set.
func Segment(r *exporter.Record) *agentv3.SegmentObject {
	traceID := r.SWTraceID
	if traceID == "" {
		traceID = r.TraceID.String()
	}
	traceID = validUTF8(traceID)

	// Messages are allocated in blocks of one type each, not one by one.
	blk := &segmentBlock{}
	n := 1 + len(r.Clients)
	spans := make([]agentv3.SpanObject, n)
	ptrs := make([]*agentv3.SpanObject, n)
	var b builder
	b.size(r)

	seg := &blk.seg
	seg.TraceId = traceID
	seg.TraceSegmentId = validUTF8(r.SegmentID)
	seg.Spans = ptrs
	seg.Service = validUTF8(r.Service)
	seg.ServiceInstance = validUTF8(r.Instance)

	entry := &spans[0]
	b.fill(entry, &r.Server)
	entry.SpanId = 0
	entry.ParentSpanId = -1
	entry.SpanType = agentv3.SpanType_Entry
	entry.ComponentId = ComponentGoHTTPServer
	refType := agentv3.RefType_CrossProcess
	if r.Server.Kind == exporter.KindClient {
		entry.SpanType = agentv3.SpanType_Exit
		entry.ComponentId = ComponentGoHTTPClient
		if entry.Peer == "" {
			entry.Peer = UnknownPeer
		}
		if r.Parent.Service == r.Service {
			refType = agentv3.RefType_CrossThread
		}
	}
	if p := &r.Parent; p.SegmentID != "" {
		ref := &blk.ref
		ref.RefType = refType
		ref.TraceId = traceID
		ref.ParentTraceSegmentId = validUTF8(p.SegmentID)
		ref.ParentSpanId = p.SpanID
		ref.ParentService = validUTF8(p.Service)
		ref.ParentServiceInstance = validUTF8(p.Instance)
		ref.ParentEndpoint = validUTF8(p.Endpoint)
		ref.NetworkAddressUsedAtPeer = validUTF8(p.Address)
		blk.refs[0] = ref
		entry.Refs = blk.refs[:]
	}
	ptrs[0] = entry

	for i := range r.Clients {
		exit := &spans[i+1]
		b.fill(exit, &r.Clients[i])
		exit.SpanId = int32(i + 1)
		if id := r.Clients[i].SegmentSpanID; id != 0 {
			exit.SpanId = id
		}
		exit.ParentSpanId = 0
		if r.Clients[i].Kind == exporter.KindLocal {
			// The proxy's own work (a relayed WebSocket session): a
			// Local span, which has no peer.
			exit.SpanType = agentv3.SpanType_Local
			exit.SpanLayer = agentv3.SpanLayer_Unknown
			ptrs[i+1] = exit
			continue
		}
		exit.SpanType = agentv3.SpanType_Exit
		exit.ComponentId = ComponentGoHTTPClient
		if exit.Peer == "" {
			exit.Peer = UnknownPeer
		}
		ptrs[i+1] = exit
	}
	return seg
}

// segmentBlock holds the messages a segment has exactly one of.
type segmentBlock struct {
	seg  agentv3.SegmentObject
	ref  agentv3.SegmentReference
	refs [1]*agentv3.SegmentReference
}

// builder hands out the key/value pairs and logs of one segment from
// pre-sized blocks.
type builder struct {
	kvs     []commonv3.KeyStringValuePair
	kvPtrs  []*commonv3.KeyStringValuePair
	logs    []agentv3.Log
	logPtrs []*agentv3.Log
}

// size allocates the blocks for r: per span, one pair per tag, one for
// http.status_code, a log of one pair per annotation, and two pairs and a
// log for an error.
func (b *builder) size(r *exporter.Record) {
	pairs, logs := spanNeeds(&r.Server)
	for i := range r.Clients {
		p, e := spanNeeds(&r.Clients[i])
		pairs, logs = pairs+p, logs+e
	}
	b.kvs = make([]commonv3.KeyStringValuePair, pairs)
	b.kvPtrs = make([]*commonv3.KeyStringValuePair, pairs)
	if logs > 0 {
		b.logs = make([]agentv3.Log, logs)
		b.logPtrs = make([]*agentv3.Log, logs)
	}
}

// spanNeeds counts the pairs and logs of a span: a log of one pair per
// annotation, and a log of two pairs for an error.
func spanNeeds(s *exporter.Span) (pairs, logs int) {
	pairs = len(s.Tags) + 1 + len(s.Annotations)
	logs = len(s.Annotations)
	if s.Error != "" {
		return pairs + 2, logs + 1
	}
	return pairs, logs
}

// pair returns the next key/value pair, set to k and v.
func (b *builder) pair(k, v string) *commonv3.KeyStringValuePair {
	kv := &b.kvs[0]
	b.kvs = b.kvs[1:]
	kv.Key, kv.Value = k, v
	return kv
}

// fill sets the fields Entry and Exit spans share.
func (b *builder) fill(o *agentv3.SpanObject, s *exporter.Span) {
	start := s.Start.UnixMilli()
	end := s.Start.Add(s.Duration).UnixMilli()
	o.StartTime = start
	o.EndTime = end
	o.OperationName = validUTF8(s.Name)
	o.Peer = validUTF8(s.Peer)
	o.SpanLayer = agentv3.SpanLayer_Http
	o.IsError = s.Error != "" || s.Status >= 500

	// Tags: OAP's reserved http.method, url and http.status_code first, as
	// SkyWalking's HTTP plugins write them (a Record's http.path becomes url,
	// Status the status code; a Record tag http.status_code is dropped), then
	// the remaining tags in order.
	tags := b.kvPtrs[: 0 : len(s.Tags)+1]
	for _, t := range s.Tags {
		if t.Key == exporter.TagHTTPMethod {
			tags = append(tags, b.pair(exporter.SWTagHTTPMethod, validUTF8(t.Value)))
		}
	}
	for _, t := range s.Tags {
		if t.Key == exporter.TagHTTPPath {
			tags = append(tags, b.pair(exporter.SWTagURL, validUTF8(t.Value)))
		}
	}
	if s.Status > 0 {
		tags = append(tags, b.pair(exporter.SWTagStatusCode, statusCode(s.Status)))
	}
	for _, t := range s.Tags {
		switch t.Key {
		case exporter.TagHTTPMethod, exporter.TagHTTPPath, exporter.TagHTTPStatusCode:
		default:
			tags = append(tags, b.pair(validUTF8(t.Key), validUTF8(t.Value)))
		}
	}
	b.kvPtrs = b.kvPtrs[len(tags):]
	if len(tags) > 0 {
		o.Tags = tags
	}

	// Logs: the annotations, as SkyWalking agents write events (one
	// "event" pair), then the error event at the span's end.
	nlogs := len(s.Annotations)
	if s.Error != "" {
		nlogs++
	}
	if nlogs == 0 {
		return
	}
	logs := b.logPtrs[:0:nlogs]
	b.logPtrs = b.logPtrs[nlogs:]
	for _, a := range s.Annotations {
		data := b.kvPtrs[:1:1]
		b.kvPtrs = b.kvPtrs[1:]
		data[0] = b.pair(logEvent, validUTF8(a.Value))
		l := &b.logs[0]
		b.logs = b.logs[1:]
		l.Time, l.Data = a.Time.UnixMilli(), data
		logs = append(logs, l)
	}
	if s.Error != "" {
		data := b.kvPtrs[:2:2]
		b.kvPtrs = b.kvPtrs[2:]
		data[0] = b.pair(logEvent, logError)
		data[1] = b.pair(logMessage, validUTF8(s.Error))
		l := &b.logs[0]
		b.logs = b.logs[1:]
		l.Time, l.Data = end, data
		logs = append(logs, l)
	}
	o.Logs = logs
}

// statusCode returns the decimal text of an HTTP status code.
func statusCode(code int) string {
	if code >= 0 && code < len(statusText) {
		return statusText[code]
	}
	return strconv.Itoa(code)
}

// validUTF8 returns s, with invalid UTF-8 sequences replaced by U+FFFD.
// Protobuf refuses to encode a string field that is not valid UTF-8, which
// would make the whole batch fail for good.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
