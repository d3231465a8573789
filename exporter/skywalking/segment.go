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

// Tag keys SkyWalking's HTTP plugins use, and the Record tag keys they are
// taken from.
const (
	tagMethod     = "http.method"
	tagURL        = "url"
	tagStatusCode = "status_code"

	recordTagPath   = "http.path"
	recordTagStatus = "http.status_code" // dropped: status_code carries it
)

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
// per CLIENT span, parent 0). Times are epoch milliseconds. Strings that are
// not valid UTF-8 are repaired, since protobuf refuses to encode them.
//
// The trace id is r.SWTraceID, or the 32 hex digits of r.TraceID when that
// is empty. r.SegmentID must be set.
func Segment(r *exporter.Record) *agentv3.SegmentObject {
	traceID := r.SWTraceID
	if traceID == "" {
		traceID = r.TraceID.String()
	}
	traceID = validUTF8(traceID)

	n := 1 + len(r.Clients)
	// One allocation for all spans and one for all key/value pairs.
	spans := make([]agentv3.SpanObject, n)
	ptrs := make([]*agentv3.SpanObject, n)
	kvs := make([]commonv3.KeyStringValuePair, pairCount(r))

	seg := &agentv3.SegmentObject{
		TraceId:         traceID,
		TraceSegmentId:  validUTF8(r.SegmentID),
		Spans:           ptrs,
		Service:         validUTF8(r.Service),
		ServiceInstance: validUTF8(r.Instance),
	}

	entry := &spans[0]
	kvs = fillSpan(entry, &r.Server, kvs)
	entry.SpanId = 0
	entry.ParentSpanId = -1
	entry.SpanType = agentv3.SpanType_Entry
	entry.ComponentId = ComponentGoHTTPServer
	if p := &r.Parent; p.SegmentID != "" {
		entry.Refs = []*agentv3.SegmentReference{{
			RefType:                  agentv3.RefType_CrossProcess,
			TraceId:                  traceID,
			ParentTraceSegmentId:     validUTF8(p.SegmentID),
			ParentSpanId:             p.SpanID,
			ParentService:            validUTF8(p.Service),
			ParentServiceInstance:    validUTF8(p.Instance),
			ParentEndpoint:           validUTF8(p.Endpoint),
			NetworkAddressUsedAtPeer: validUTF8(p.Address),
		}}
	}
	ptrs[0] = entry

	for i := range r.Clients {
		exit := &spans[i+1]
		kvs = fillSpan(exit, &r.Clients[i], kvs)
		exit.SpanId = int32(i + 1)
		exit.ParentSpanId = 0
		exit.SpanType = agentv3.SpanType_Exit
		exit.ComponentId = ComponentGoHTTPClient
		if exit.Peer == "" {
			exit.Peer = UnknownPeer
		}
		ptrs[i+1] = exit
	}
	return seg
}

// pairCount bounds the key/value pairs Segment needs: per span, one per tag,
// one for status_code and two for the error log.
func pairCount(r *exporter.Record) int {
	n := spanPairs(&r.Server)
	for i := range r.Clients {
		n += spanPairs(&r.Clients[i])
	}
	return n
}

func spanPairs(s *exporter.Span) int {
	n := len(s.Tags) + 1 // tags, status_code
	if s.Error != "" {
		n += 2 // event, message
	}
	return n
}

// fillSpan sets the fields Entry and Exit spans share, taking the span's
// key/value pairs from the front of kvs and returning the rest.
func fillSpan(o *agentv3.SpanObject, s *exporter.Span, kvs []commonv3.KeyStringValuePair) []commonv3.KeyStringValuePair {
	start := s.Start.UnixMilli()
	end := s.Start.Add(s.Duration).UnixMilli()
	o.StartTime = start
	o.EndTime = end
	o.OperationName = validUTF8(s.Name)
	o.Peer = validUTF8(s.Peer)
	o.SpanLayer = agentv3.SpanLayer_Http
	o.IsError = s.Error != "" || s.Status >= 500

	// Tags: http.method, url, status_code first, as SkyWalking's HTTP
	// plugins write them, then the remaining tags in order.
	tags := make([]*commonv3.KeyStringValuePair, 0, len(s.Tags)+1)
	next := 0
	add := func(k, v string) {
		kv := &kvs[next]
		next++
		kv.Key, kv.Value = k, validUTF8(v)
		tags = append(tags, kv)
	}
	for _, t := range s.Tags {
		if t.Key == tagMethod {
			add(tagMethod, t.Value)
		}
	}
	for _, t := range s.Tags {
		if t.Key == recordTagPath {
			add(tagURL, t.Value)
		}
	}
	if s.Status > 0 {
		add(tagStatusCode, statusCode(s.Status))
	}
	for _, t := range s.Tags {
		switch t.Key {
		case tagMethod, recordTagPath, recordTagStatus:
		default:
			add(validUTF8(t.Key), t.Value)
		}
	}
	if len(tags) > 0 {
		o.Tags = tags
	}

	if s.Error != "" {
		ev, msg := &kvs[next], &kvs[next+1]
		next += 2
		ev.Key, ev.Value = logEvent, logError
		msg.Key, msg.Value = logMessage, validUTF8(s.Error)
		o.Logs = []*agentv3.Log{{
			Time: end,
			Data: []*commonv3.KeyStringValuePair{ev, msg},
		}}
	}
	return kvs[next:]
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
