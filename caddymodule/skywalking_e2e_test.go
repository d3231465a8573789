package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/swtest"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// The proxy's SkyWalking identity and the collector's token in these tests.
const (
	swService  = "legacy-orders"
	swInstance = "proxy-7@10.0.0.7"
	swToken    = "secret"
)

// zipkinTagSW8 is the Zipkin SERVER tag that keeps a SkyWalking trace id the
// 128-bit Zipkin id cannot spell.
const zipkinTagSW8 = "sw8.trace_id"

// swSite is a site that reads sw8, sw6, W3C and B3, writes W3C, B3 and sw8,
// exports to the SkyWalking collector at url and proxies to upstreamAddr; opts go into the exporter
// block, extra into the tracingproxy block. A short flush_timeout keeps the
// next test's reload from waiting on a collector this test stopped.
func swSite(url, upstreamAddr, opts, extra string) string {
	return fmt.Sprintf(`	tracingproxy {
		service_name %s
		instance %s
		propagation {
			extract sw8 sw6 w3c b3
			inject w3c b3 sw8
		}
		%s
		exporter skywalking %s {
			token %s
			keepalive 100ms
			flush_interval 20ms
			flush_timeout 200ms
			%s
		}
	}
	reverse_proxy %s`, swService, swInstance, extra, url, swToken, opts, upstreamAddr)
}

// swContext is the content of an sw8 header: the sender's segment, span and
// identity.
type swContext struct {
	sample   string
	traceID  string
	segment  string
	span     int
	service  string
	instance string
	endpoint string
	address  string // the address the sender used to reach its peer
}

// agent is a caller instrumented by a SkyWalking agent, which writes trace and
// segment ids as "<32hex>.<thread>.<seq>", not hex.
var agent = swContext{
	sample:   "1",
	traceID:  "a1b2c3d4e5f60718293a4b5c6d7e8f90.51.16800000000001",
	segment:  "a1b2c3d4e5f60718293a4b5c6d7e8f90.51.16800000000002",
	span:     3,
	service:  "frontend",
	instance: "frontend-1@10.0.0.3",
	endpoint: "/checkout",
	address:  "proxy:8080",
}

// sw8 encodes c as skywalking-go's propagating.go does.
func (c swContext) sw8() string {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return strings.Join([]string{c.sample, b64(c.traceID), b64(c.segment), strconv.Itoa(c.span),
		b64(c.service), b64(c.instance), b64(c.endpoint), b64(c.address)}, "-")
}

// parseSW8 decodes an sw8 value with the standard library, independently of
// the codec under test.
func parseSW8(t *testing.T, v string) swContext {
	t.Helper()
	f := strings.Split(v, "-")
	if len(f) != 8 {
		t.Fatalf("sw8 %q has %d fields, want 8", v, len(f))
	}
	dec := func(i int) string {
		b, err := base64.StdEncoding.DecodeString(f[i])
		if err != nil || len(b) == 0 {
			t.Fatalf("sw8 %q field %d: %q is not non-empty padded base64: %v", v, i, f[i], err)
		}
		return string(b)
	}
	span, err := strconv.Atoi(f[3])
	if err != nil {
		t.Fatalf("sw8 %q: span id %q: %v", v, f[3], err)
	}
	return swContext{sample: f[0], traceID: dec(1), segment: dec(2), span: span,
		service: dec(4), instance: dec(5), endpoint: dec(6), address: dec(7)}
}

// upstreamSW8 returns the one sw8 field the upstream's last request carried.
func upstreamSW8(t *testing.T, up *upstream) swContext {
	t.Helper()
	vs := up.last(t).Values("Sw8")
	if len(vs) != 1 {
		t.Fatalf("upstream got %d sw8 fields %q, want 1", len(vs), vs)
	}
	return parseSW8(t, vs[0])
}

// fleetTraceID is the 32-hex trace id every tracingproxy derives from a
// SkyWalking trace id (headers.TraceIDFromSW), worked out here from the
// documented rule: 32 or 16 lowercase hex digits (not all zero) spell the id,
// anything else is the first 16 bytes of SHA-256 of the string.
func fleetTraceID(sw string) string {
	lowerHex := strings.Trim(sw, "0123456789abcdef") == "" && strings.Trim(sw, "0") != ""
	switch {
	case lowerHex && len(sw) == 32:
		return sw
	case lowerHex && len(sw) == 16:
		return strings.Repeat("0", 16) + sw
	}
	sum := sha256.Sum256([]byte(sw))
	return hex.EncodeToString(sum[:16])
}

// fleetSpanID is the 16-hex span id that stands for span of a SkyWalking
// segment (headers.SpanIDFromSW): the first 8 bytes of
// SHA-256(segment + "#" + span).
func fleetSpanID(segment string, span int) string {
	sum := sha256.Sum256([]byte(segment + "#" + strconv.Itoa(span)))
	return hex.EncodeToString(sum[:8])
}

// exchange is one request through the proxy as the client saw it.
type exchange struct {
	status int
	body   string
	client string // the client's address, as the proxy sees it
	// before and after bracket the request.
	before, after time.Time
}

// send is get that also records the client's address and the time window.
func send(t *testing.T, path string, hdr map[string][]string) exchange {
	t.Helper()
	var ex exchange
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { ex.client = info.Conn.LocalAddr().String() },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, proxyURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	ex.before = time.Now()
	res, err := testClient.Do(req) // no keep-alive: a connection kept from an earlier test's Caddy would answer EOF
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	var body bytes.Buffer
	_, err = body.ReadFrom(res.Body)
	res.Body.Close()
	ex.after = time.Now()
	if err != nil {
		t.Fatal(err)
	}
	ex.status, ex.body = res.StatusCode, body.String()
	if ex.status != http.StatusOK || ex.body != "hello from upstream" {
		t.Fatalf("GET %s: %d %q, want the upstream's 200", path, ex.status, ex.body)
	}
	return ex
}

// segmentSource is either collector.
type segmentSource interface {
	Segments() []*agentv3.SegmentObject
}

// segmentByID waits for the segment with the given id.
func segmentByID(t *testing.T, c segmentSource, id string) *agentv3.SegmentObject {
	t.Helper()
	var found *agentv3.SegmentObject
	testutil.Eventually(t, 5*time.Second, "segment "+id, func() bool {
		for _, s := range c.Segments() {
			if s.GetTraceSegmentId() == id {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

// equalProto fails the test with both messages in JSON when they differ.
func equalProto(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		m := protojson.MarshalOptions{Multiline: true}
		t.Errorf("%s differs\n got: %s\nwant: %s", what, m.Format(got), m.Format(want))
	}
}

// checkSpanWindow checks that the span's millisecond times lie within the
// request.
func checkSpanWindow(t *testing.T, s *agentv3.SpanObject, ex exchange) {
	t.Helper()
	lo, hi := ex.before.UnixMilli(), ex.after.UnixMilli()
	if s.StartTime < lo || s.StartTime > s.EndTime || s.EndTime > hi {
		t.Errorf("span %d [%d, %d] outside the request [%d, %d] ms: not epoch milliseconds?", s.SpanId, s.StartTime, s.EndTime, lo, hi)
	}
}

// checkTags checks that the span carries each wanted tag once, with the
// wanted value.
func checkTags(t *testing.T, s *agentv3.SpanObject, want map[string]string) {
	t.Helper()
	seen := map[string]int{}
	for _, kv := range s.Tags {
		seen[kv.Key]++
		if w, ok := want[kv.Key]; ok && kv.Value != w {
			t.Errorf("span %d tag %s = %q, want %q", s.SpanId, kv.Key, kv.Value, w)
		}
	}
	for k := range want {
		if seen[k] != 1 {
			t.Errorf("span %d has tag %s %d times, want once (tags %v)", s.SpanId, k, seen[k], s.Tags)
		}
	}
}

// checkAgentHop checks the segment and the upstream's headers that one
// request of the agent caller to path must produce, and returns the segment.
func checkAgentHop(t *testing.T, c segmentSource, up *upstream, path string, ex exchange) *agentv3.SegmentObject {
	t.Helper()
	sw := upstreamSW8(t, up)
	want := swContext{sample: "1", traceID: agent.traceID, segment: sw.segment, span: 1, service: swService,
		instance: swInstance, endpoint: "GET " + routeOf(path), address: sw.address}
	if sw != want {
		t.Errorf("upstream sw8 %+v, want %+v", sw, want)
	}
	seg := segmentByID(t, c, sw.segment)

	if len(seg.Spans) != 2 {
		t.Fatalf("segment has %d spans, want Entry and Exit: %v", len(seg.Spans), seg)
	}
	entry, exit := seg.Spans[0], seg.Spans[1]
	for _, s := range seg.Spans {
		checkSpanWindow(t, s, ex)
	}
	if exit.StartTime < entry.StartTime || exit.EndTime > entry.EndTime {
		t.Errorf("Exit span [%d, %d] not inside the Entry span [%d, %d]", exit.StartTime, exit.EndTime, entry.StartTime, entry.EndTime)
	}
	checkTags(t, entry, map[string]string{"http.method": "GET", "url": path, "http.status_code": "200"})
	checkTags(t, exit, map[string]string{"http.method": "GET", "url": path, "http.status_code": "200"})

	// The first request to the upstream opens its connection.
	checkLogs(t, exit, "connect.start", "connect.done", "ws", "wr")

	// Everything else, field by field: times, tags and logs were checked
	// above.
	got := proto.Clone(seg).(*agentv3.SegmentObject)
	for _, s := range got.Spans {
		s.StartTime, s.EndTime, s.Tags, s.Logs = 0, 0, nil, nil
	}
	wantSeg := &agentv3.SegmentObject{
		TraceId:         agent.traceID,
		TraceSegmentId:  sw.segment,
		Service:         swService,
		ServiceInstance: swInstance,
		Spans: []*agentv3.SpanObject{{
			SpanId:        0,
			ParentSpanId:  -1,
			OperationName: "GET " + routeOf(path),
			Peer:          ex.client,
			SpanType:      agentv3.SpanType_Entry,
			SpanLayer:     agentv3.SpanLayer_Http,
			ComponentId:   5004,
			Refs: []*agentv3.SegmentReference{{
				RefType:                  agentv3.RefType_CrossProcess,
				TraceId:                  agent.traceID,
				ParentTraceSegmentId:     agent.segment,
				ParentSpanId:             int32(agent.span),
				ParentService:            agent.service,
				ParentServiceInstance:    agent.instance,
				ParentEndpoint:           agent.endpoint,
				NetworkAddressUsedAtPeer: agent.address,
			}},
		}, {
			SpanId:        1,
			ParentSpanId:  0,
			OperationName: "GET " + routeOf(path),
			Peer:          up.hostport(),
			SpanType:      agentv3.SpanType_Exit,
			SpanLayer:     agentv3.SpanLayer_Http,
			ComponentId:   5005,
		}},
	}
	equalProto(t, "segment", got, wantSeg)

	// W3C and B3 carry the fleet's 128-bit form of the SkyWalking trace id
	// and the id that stands for our Exit span.
	h := up.last(t)
	traceID, parentID, flags := parseTraceparent(t, h.Get("Traceparent"))
	wantTrace, wantSpan := fleetTraceID(agent.traceID), fleetSpanID(sw.segment, 1)
	if traceID != wantTrace || parentID != wantSpan || flags != "1" {
		t.Errorf("traceparent %s, want 00-%s-%s-01", h.Get("Traceparent"), wantTrace, wantSpan)
	}
	if got := h.Get("X-B3-Traceid"); got != wantTrace {
		t.Errorf("X-B3-TraceId %q, want %s", got, wantTrace)
	}
	if got := h.Get("X-B3-Spanid"); got != wantSpan {
		t.Errorf("X-B3-SpanId %q, want %s", got, wantSpan)
	}
	if got := h.Get("X-B3-Sampled"); got != "1" {
		t.Errorf("X-B3-Sampled %q, want 1", got)
	}
	return seg
}

// checkRegistration checks that the instance reported its properties once
// and keeps itself alive.
func checkRegistration(t *testing.T, props []*managementv3.InstanceProperties, pings []*managementv3.InstancePingPkg) {
	t.Helper()
	if len(props) != 1 {
		t.Fatalf("instance properties reported %d times, want once", len(props))
	}
	p := props[0]
	if p.Service != swService || p.ServiceInstance != swInstance {
		t.Errorf("properties name %s/%s, want %s/%s", p.Service, p.ServiceInstance, swService, swInstance)
	}
	kv := map[string]string{}
	for _, e := range p.Properties {
		kv[e.Key] = e.Value
	}
	if kv["language"] != "go" || kv["tracingproxy.version"] != Version || kv["Process No."] != strconv.Itoa(os.Getpid()) {
		t.Errorf("properties %v: want language go, tracingproxy.version %s and this process, %d", kv, Version, os.Getpid())
	}
	for _, ping := range pings {
		if ping.Service != swService || ping.ServiceInstance != swInstance {
			t.Errorf("keepAlive names %s/%s, want %s/%s", ping.Service, ping.ServiceInstance, swService, swInstance)
		}
	}
}

func TestSkyWalkingCallerGRPC(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	up := newUpstream(t)
	startCaddy(t, swSite("grpc://"+col.Addr(), up.hostport(), "", ""))

	ex := send(t, "/checkout/42?coupon=x", map[string][]string{"Sw8": {agent.sw8()}})
	seg := checkAgentHop(t, col, up, "/checkout/42", ex)
	if n := len(col.Segments()); n != 1 {
		t.Errorf("collector holds %d segments for one request, want 1", n)
	}
	// Before any upstream was dialled, the sw8 target address is the
	// request's Host; afterwards, the upstream reverse_proxy dialled.
	if got := upstreamSW8(t, up).address; got != strings.TrimPrefix(proxyURL, "http://") {
		t.Errorf("first sw8 address %q, want the request's Host", got)
	}
	send(t, "/checkout/43", map[string][]string{"Sw8": {agent.sw8()}})
	sw := upstreamSW8(t, up)
	if sw.address != up.hostport() {
		t.Errorf("second sw8 address %q, want the dialled upstream %s", sw.address, up.hostport())
	}
	if sw.segment == seg.TraceSegmentId {
		t.Errorf("two requests share segment %s", sw.segment)
	}
	segmentByID(t, col, sw.segment)

	pings := col.WaitKeepAlives(t, 1, 5*time.Second)
	checkRegistration(t, col.Properties(), pings)
	tokens := col.Tokens()
	if len(tokens) < 3 {
		t.Errorf("collector saw %d calls, want collect, properties and keepAlive", len(tokens))
	}
	for _, tok := range tokens {
		if tok != swToken {
			t.Fatalf("collector saw Authentication %q, want every call to carry %q", tokens, swToken)
		}
	}
}

func TestSkyWalkingCallerHTTP(t *testing.T) {
	col := swtest.NewHTTPCollector(t)
	up := newUpstream(t)
	startCaddy(t, swSite(col.URL(), up.hostport(), "", ""))

	ex := send(t, "/checkout/42", map[string][]string{"Sw8": {agent.sw8()}})
	checkAgentHop(t, col, up, "/checkout/42", ex)
	pings := col.WaitKeepAlives(t, 1, 5*time.Second)
	checkRegistration(t, col.Properties(), pings)
	if errs := col.Errors(); len(errs) > 0 {
		t.Fatalf("the strict collector refused requests: %v", errs)
	}
	for _, h := range col.Headers() {
		if got := h.Get("Authentication"); got != swToken {
			t.Errorf("Authentication header %q, want %q", got, swToken)
		}
		if got := h.Get("B3"); got != "0" {
			t.Errorf("b3 header %q, want 0 so proxies do not trace the exporter", got)
		}
	}
}

func TestSkyWalkingMixedFleet(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	up := newUpstream(t)
	startCaddy(t, swSite("grpc://"+col.Addr(), up.hostport(), "", ""))

	// Another tracingproxy writes the 32-hex id of a W3C or B3 trace into sw8.
	proxy := swContext{sample: "1", traceID: "4bf92f3577b34da6a3ce929d0e0e4736", segment: "0af7651916cd43dd8448eb211c80319c",
		span: 1, service: "edge", instance: "edge-1@10.0.0.2", endpoint: "GET /", address: "orders:80"}
	// A SkyWalking 7 agent speaks sw6: 9 fields, instance ids as integers,
	// peer and endpoints prefixed with "#".
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	const sw6Trace, sw6Segment = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b.60.16800000000007", "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b.60.16800000000008"
	sw6 := strings.Join([]string{"1", b64(sw6Trace), b64(sw6Segment), "2", "17", "17", b64("#orders:80"), b64("#/entry"), b64("#/parent")}, "-")

	tests := []struct {
		name string
		hdr  map[string][]string
		// swTrace is the SkyWalking trace id the upstream and the segment
		// must carry ("" for a new trace: the 32-hex W3C id); w3cTrace and
		// b3Trace the ids of the other formats.
		swTrace, w3cTrace, b3Trace string
		// refSegment and refSpan name the caller's span the segment must
		// refer to ("" for no reference).
		refSegment string
		refSpan    int32
	}{
		{"agent sw8", map[string][]string{"Sw8": {agent.sw8()}},
			agent.traceID, fleetTraceID(agent.traceID), fleetTraceID(agent.traceID), agent.segment, 3},
		{"tracingproxy sw8", map[string][]string{"Sw8": {proxy.sw8()}},
			proxy.traceID, proxy.traceID, proxy.traceID, proxy.segment, 1},
		{"sw6", map[string][]string{"Sw6": {sw6}},
			sw6Trace, fleetTraceID(sw6Trace), fleetTraceID(sw6Trace), sw6Segment, 2},
		{"w3c", map[string][]string{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
			"0af7651916cd43dd8448eb211c80319c", "0af7651916cd43dd8448eb211c80319c", "0af7651916cd43dd8448eb211c80319c", "", 0},
		{"b3 64-bit", map[string][]string{"X-B3-Traceid": {"a3ce929d0e0e4736"}, "X-B3-Spanid": {"00f067aa0ba902b7"}, "X-B3-Sampled": {"1"}},
			"0000000000000000a3ce929d0e0e4736", "0000000000000000a3ce929d0e0e4736", "a3ce929d0e0e4736", "", 0},
		{"sw8 wins over w3c", map[string][]string{"Sw8": {agent.sw8()}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
			agent.traceID, fleetTraceID(agent.traceID), fleetTraceID(agent.traceID), agent.segment, 3},
		{"no context", nil, "", "", "", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			send(t, "/orders", tc.hdr)
			h := up.last(t)
			sw := upstreamSW8(t, up)
			traceID, parentID, flags := parseTraceparent(t, h.Get("Traceparent"))
			swTrace, w3cTrace, b3Trace := tc.swTrace, tc.w3cTrace, tc.b3Trace
			if swTrace == "" {
				swTrace, w3cTrace, b3Trace = traceID, traceID, traceID
			}
			if sw.traceID != swTrace {
				t.Errorf("sw8 trace id %q, want %q", sw.traceID, swTrace)
			}
			if traceID != w3cTrace || fleetTraceID(sw.traceID) != traceID {
				t.Errorf("W3C trace id %s, want %s, the fleet's id of sw8 trace %q", traceID, w3cTrace, sw.traceID)
			}
			if got := h.Get("X-B3-Traceid"); got != b3Trace {
				t.Errorf("X-B3-TraceId %q, want %q", got, b3Trace)
			}
			if flags != "1" && flags != "3" || sw.sample != "1" {
				t.Errorf("W3C flags 0%s, sw8 sample %s: want sampled", flags, sw.sample)
			}
			if sw.span != 1 || parentID != fleetSpanID(sw.segment, 1) || h.Get("X-B3-Spanid") != parentID {
				t.Errorf("sw8 names span %d of %s, W3C parent %s, B3 span %s: want Exit span 1 and %s everywhere",
					sw.span, sw.segment, parentID, h.Get("X-B3-Spanid"), fleetSpanID(sw.segment, 1))
			}
			if vs := h.Values("Sw6"); len(vs) != 0 {
				t.Errorf("sw6 %q forwarded; inject does not list it", vs)
			}

			seg := segmentByID(t, col, sw.segment)
			if seg.TraceId != swTrace {
				t.Errorf("segment traceId %q, want %q", seg.TraceId, swTrace)
			}
			refs := seg.Spans[0].Refs
			switch {
			case tc.refSegment == "" && len(refs) != 0:
				t.Errorf("segment refers to %v, want no reference", refs)
			case tc.refSegment != "" && (len(refs) != 1 || refs[0].ParentTraceSegmentId != tc.refSegment ||
				refs[0].ParentSpanId != tc.refSpan || refs[0].TraceId != swTrace):
				t.Errorf("segment refs %v, want span %d of %s in trace %s", refs, tc.refSpan, tc.refSegment, swTrace)
			}
		})
	}
}

func TestSkyWalkingAndZipkinAtOnce(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	zc := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, swSite("grpc://"+col.Addr(), up.hostport(), "", fmt.Sprintf(`exporter zipkin %s {
			flush_interval 20ms
		}`, zc.URL())))

	tests := []struct {
		name      string
		hdr       map[string][]string
		zipkinID  string // Zipkin traceId
		swTrace   string // SkyWalking traceId
		sw8Tag    string // the SERVER span's sw8.trace_id tag, "" for none
		parentID  string // the SERVER span's parentId
		wantSpans int    // spans in Zipkin after this case
	}{
		{"agent sw8", map[string][]string{"Sw8": {agent.sw8()}}, fleetTraceID(agent.traceID), agent.traceID,
			agent.traceID, fleetSpanID(agent.segment, agent.span), 2},
		{"w3c", map[string][]string{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
			"0af7651916cd43dd8448eb211c80319c", "0af7651916cd43dd8448eb211c80319c", "", "b7ad6b7169203331", 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			send(t, "/pay", tc.hdr)
			sw := upstreamSW8(t, up)
			_, parentID, _ := parseTraceparent(t, up.last(t).Get("Traceparent"))
			seg := segmentByID(t, col, sw.segment)
			if seg.TraceId != tc.swTrace {
				t.Errorf("SkyWalking traceId %q, want %q", seg.TraceId, tc.swTrace)
			}
			server, client := spansByKind(t, zc.WaitSpans(t, tc.wantSpans, 5*time.Second), tc.zipkinID)
			if got := server.Tags[zipkinTagSW8]; got != tc.sw8Tag {
				t.Errorf("SERVER tag %s = %q, want %q", zipkinTagSW8, got, tc.sw8Tag)
			}
			if server.ParentID == nil || *server.ParentID != tc.parentID {
				t.Errorf("SERVER parentId %v, want the caller's span %s", server.ParentID, tc.parentID)
			}
			if want := fleetSpanID(seg.TraceSegmentId, 1); client.ID != want || parentID != want {
				t.Errorf("CLIENT span id %s, W3C parent %s: want %s, the id of Exit span 1 of segment %s", client.ID, parentID, want, seg.TraceSegmentId)
			}
			if client.ParentID == nil || *client.ParentID != server.ID {
				t.Errorf("CLIENT parentId %v, want the SERVER span %s", client.ParentID, server.ID)
			}
			if *server.Name != "get /pay" || seg.Spans[0].OperationName != "GET /pay" {
				t.Errorf("names %q (Zipkin) and %q (SkyWalking), want the same operation", *server.Name, seg.Spans[0].OperationName)
			}
		})
	}
}

func TestSkyWalkingMalformedHeadersStartANewTrace(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	up := newUpstream(t)
	startCaddy(t, swSite("grpc://"+col.Addr(), up.hostport(), "", ""))

	// Every value carries this hex trace id, so reusing it would show in
	// W3C and B3.
	const bad = "4bf92f3577b34da6a3ce929d0e0e4736"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	sw8 := func(fields ...string) string { return strings.Join(fields, "-") }
	ok := []string{"1", b64(bad), b64("seg-1"), "3", b64("frontend"), b64("frontend-1"), b64("/checkout"), b64("proxy:8080")}
	with := func(i int, v string) string {
		f := append([]string(nil), ok...)
		f[i] = v
		return sw8(f...)
	}
	sw6ok := []string{"1", b64(bad), b64("seg-1"), "3", "17", "17", b64("#orders:80"), b64("#/entry"), b64("#/parent")}
	sw6With := func(i int, v string) string {
		f := append([]string(nil), sw6ok...)
		f[i] = v
		return sw8(f...)
	}
	tests := []struct {
		name string
		hdr  map[string][]string
	}{
		{"sw8 seven fields", map[string][]string{"Sw8": {sw8(ok[:7]...)}}},
		{"sw8 nine fields", map[string][]string{"Sw8": {sw8(append(ok[:8:8], b64("x"))...)}}},
		{"sw8 three fields", map[string][]string{"Sw8": {sw8(ok[:3]...)}}},
		{"sw8 bad base64 trace id", map[string][]string{"Sw8": {with(1, "NGJm!!!!")}}},
		{"sw8 unpadded base64", map[string][]string{"Sw8": {with(4, strings.TrimRight(b64("frontend"), "="))}}},
		{"sw8 url-safe base64", map[string][]string{"Sw8": {with(2, "_-8_")}}},
		{"sw8 non-decimal span id", map[string][]string{"Sw8": {with(3, "3a")}}},
		{"sw8 span id overflow", map[string][]string{"Sw8": {with(3, "2147483648")}}},
		{"sw8 sample flag 2", map[string][]string{"Sw8": {with(0, "2")}}},
		{"sw8 empty trace id", map[string][]string{"Sw8": {with(1, "")}}},
		{"sw8 empty service", map[string][]string{"Sw8": {with(4, "")}}},
		{"sw8 empty address", map[string][]string{"Sw8": {with(7, "")}}},
		{"sw8 2 KiB", map[string][]string{"Sw8": {with(6, b64(strings.Repeat("/checkout", 170)))}}},
		{"sw8 empty value", map[string][]string{"Sw8": {""}}},
		{"sw8 garbage", map[string][]string{"Sw8": {"hello world"}}},
		{"sw6 six fields", map[string][]string{"Sw6": {sw8(sw6ok[:6]...)}}},
		{"sw6 eight fields", map[string][]string{"Sw6": {sw8(sw6ok[:8]...)}}},
		{"sw6 bad base64", map[string][]string{"Sw6": {sw6With(2, "seg-1")}}},
		{"sw6 bad instance id", map[string][]string{"Sw6": {sw6With(4, "x17")}}},
		{"sw6 peer without #", map[string][]string{"Sw6": {sw6With(6, b64("orders:80"))}}},
		{"sw6 2 KiB", map[string][]string{"Sw6": {sw6With(7, b64("#"+strings.Repeat("/entry", 260)))}}},
		{"sw6 empty value", map[string][]string{"Sw6": {""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := totalMalformed()
			send(t, "/", tc.hdr)
			h := up.last(t)
			sw := upstreamSW8(t, up)
			traceID, _, _ := parseTraceparent(t, h.Get("Traceparent"))
			if traceID == bad || sw.traceID == bad || h.Get("X-B3-Traceid") == bad {
				t.Errorf("the malformed header's trace id %s was continued", bad)
			}
			if sw.traceID != traceID {
				t.Errorf("new trace: sw8 trace id %q, want the new 32-hex id %s", sw.traceID, traceID)
			}
			for name, vals := range tc.hdr {
				for _, v := range vals {
					for _, g := range h.Values(name) {
						if v != "" && g == v {
							t.Errorf("malformed %s %q forwarded upstream", name, v)
						}
					}
				}
			}
			if vs := h.Values("Sw6"); len(vs) != 0 {
				t.Errorf("sw6 %q reached the upstream", vs)
			}
			if after := totalMalformed(); after <= before {
				t.Errorf("malformed-header counter did not move (%d → %d)", before, after)
			}
			seg := segmentByID(t, col, sw.segment)
			if seg.TraceId != traceID || len(seg.Spans[0].Refs) != 0 {
				t.Errorf("segment in trace %q with refs %v, want a new trace %s without a reference", seg.TraceId, seg.Spans[0].Refs, traceID)
			}
		})
	}
}

// failingOpts makes a SkyWalking exporter give up quickly: a small queue and
// short timeouts.
const failingOpts = `queue_size 8
			batch_size 4
			timeout 200ms
			max_retry_time 300ms`

// dropped sums a queue's dropped records over every reason.
func dropped(st exporter.Stats) uint64 {
	var n uint64
	for _, v := range st.Dropped {
		n += v
	}
	return n
}

func TestSkyWalkingCollectorDown(t *testing.T) {
	up := newUpstream(t)
	url := "grpc://" + deadPort(t)
	startCaddy(t, swSite(url, up.hostport(), failingOpts, ""))

	const n = 50
	start := time.Now()
	for range n {
		send(t, "/", map[string][]string{"Sw8": {agent.sw8()}})
		if l := queueStats(t, url).Len; l > 8 {
			t.Fatalf("queue holds %d records, bound is 8", l)
		}
	}
	if elapsed := time.Since(start); elapsed > n*200*time.Millisecond/4 {
		t.Errorf("%d requests took %s: the request path waited on the collector", n, elapsed)
	}
	if up.count() != n {
		t.Errorf("upstream saw %d requests, want %d", up.count(), n)
	}
	// Every record is dropped and counted, none exported.
	testutil.Eventually(t, 5*time.Second, "every record dropped", func() bool { return dropped(queueStats(t, url)) == n })
	st := queueStats(t, url)
	if st.Enqueued != n || st.ExportedRecords != 0 || st.Failures == 0 {
		t.Errorf("stats %+v: want %d enqueued, none exported, failures counted", st, n)
	}
	if st.Dropped[exporter.ReasonRejected] != 0 {
		t.Errorf("a refused connection dropped records as rejected, want retried: %+v", st.Dropped)
	}
}

func TestSkyWalkingStalledStream(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken, Stall: true})
	up := newUpstream(t)
	url := "grpc://" + col.Addr()
	startCaddy(t, swSite(url, up.hostport(), failingOpts, ""))

	const n = 20
	start := time.Now()
	for range n {
		send(t, "/", map[string][]string{"Sw8": {agent.sw8()}})
	}
	if elapsed := time.Since(start); elapsed > n*200*time.Millisecond/4 {
		t.Errorf("%d requests took %s: the request path waited on the stalled collector", n, elapsed)
	}
	// The stall was met: an export ran into its timeout.
	testutil.Eventually(t, 5*time.Second, "a failed export", func() bool { return queueStats(t, url).Failures > 0 })
	if segs := col.Segments(); len(segs) != 0 {
		t.Errorf("a stalled collector recorded %d segments", len(segs))
	}
	if st := queueStats(t, url); st.ExportedRecords != 0 || st.Len > 8 {
		t.Errorf("stats %+v: want nothing exported and the queue within its bound", st)
	}
}

func TestSkyWalkingReconnect(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	up := newUpstream(t)
	url := "grpc://" + col.Addr()
	startCaddy(t, swSite(url, up.hostport(), "", ""))

	send(t, "/", nil)
	segmentByID(t, col, upstreamSW8(t, up).segment)

	col.Stop()
	send(t, "/down", nil)
	down := upstreamSW8(t, up).segment
	testutil.Eventually(t, 5*time.Second, "an export to fail against the stopped collector", func() bool {
		return queueStats(t, url).Failures > 0
	})

	col.Restart(t)
	send(t, "/up", nil)
	later := upstreamSW8(t, up).segment
	// The record of the outage is retried, and the one after it follows.
	segmentByID(t, col, down)
	segmentByID(t, col, later)
	if st := queueStats(t, url); dropped(st) != 0 || st.Retries == 0 {
		t.Errorf("stats %+v: want the outage bridged by retries, nothing dropped", st)
	}
}

func TestSkyWalkingTokenRefused(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	up := newUpstream(t)
	url := "grpc://" + col.Addr()
	site := strings.Replace(swSite(url, up.hostport(), "", ""), "token "+swToken, "token wrong-"+swToken, 1)
	logFile := startCaddyLogging(t, site)

	const n = 3
	for range n {
		send(t, "/", map[string][]string{"Sw8": {agent.sw8()}})
	}
	testutil.Eventually(t, 5*time.Second, "every record rejected", func() bool {
		return queueStats(t, url).Dropped[exporter.ReasonRejected] == n
	})
	st := queueStats(t, url)
	if st.Retries != 0 || st.ExportedRecords != 0 || dropped(st) != n {
		t.Errorf("stats %+v: a refused token is not worth retrying; want %d rejected, no retries", st, n)
	}
	if segs := col.Segments(); len(segs) != 0 {
		t.Errorf("collector accepted %d segments with a wrong token", len(segs))
	}
	for _, tok := range col.Tokens() {
		if tok != "wrong-"+swToken {
			t.Errorf("collector saw token %q, want the configured one", tok)
		}
	}
	// The operator is told what to fix.
	testutil.Eventually(t, 5*time.Second, "a warning naming the token option", func() bool {
		return logHas(t, logFile, func(e map[string]any) bool {
			if e["level"] != "warn" || e["logger"] != "http.handlers.tracingproxy" {
				return false
			}
			for _, v := range e {
				if s, ok := v.(string); ok && strings.Contains(s, "check the token option") && strings.Contains(s, "PermissionDenied") {
					return true
				}
			}
			return false
		})
	})
}

func TestSkyWalkingUnsampledCaller(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	up := newUpstream(t)
	startCaddy(t, swSite("grpc://"+col.Addr(), up.hostport(), "", ""))

	denied := agent
	denied.sample = "0"
	send(t, "/", map[string][]string{"Sw8": {denied.sw8()}})
	sw := upstreamSW8(t, up)
	_, _, flags := parseTraceparent(t, up.last(t).Get("Traceparent"))
	if sw.sample != "0" || sw.traceID != agent.traceID || flags != "0" {
		t.Errorf("sw8 sample %s of trace %q, W3C flags 0%s: want the caller's trace, not sampled", sw.sample, sw.traceID, flags)
	}
	// Records leave the queue in order: once a later sampled request's
	// segment arrived, the unsampled one would have come before it.
	send(t, "/", map[string][]string{"Sw8": {agent.sw8()}})
	segmentByID(t, col, upstreamSW8(t, up).segment)
	if segs := col.Segments(); len(segs) != 1 {
		t.Errorf("collector holds %d segments, want only the sampled request's", len(segs))
	}
}

func TestSkyWalkingUpstreamFailure(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	dead := deadPort(t)
	startCaddy(t, swSite("grpc://"+col.Addr(), dead, "", ""))

	res, _ := get(t, "/checkout", map[string][]string{"Sw8": {agent.sw8()}})
	if res.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502 from reverse_proxy", res.StatusCode)
	}
	segs := col.WaitSegments(t, 1, 5*time.Second)
	seg := segs[0]
	if len(seg.Spans) != 2 || seg.TraceId != agent.traceID {
		t.Fatalf("segment %v: want Entry and Exit in the caller's trace", seg)
	}
	entry, exit := seg.Spans[0], seg.Spans[1]
	if exit.Peer != dead {
		t.Errorf("Exit peer %q, want the dead upstream %s", exit.Peer, dead)
	}
	for _, s := range seg.Spans {
		if !s.IsError {
			t.Errorf("span %d of a 502 is not marked isError", s.SpanId)
		}
		if s == exit {
			// No response came: the Exit span says why instead.
			checkTags(t, s, map[string]string{"error.type": "connection_refused"})
		} else {
			checkTags(t, s, map[string]string{"http.status_code": "502"})
		}
		if s == exit {
			checkLogs(t, s, "connect.start", "connect.done", "error")
		} else if len(s.Logs) != 1 {
			t.Errorf("span %d has %d logs, want the error event", s.SpanId, len(s.Logs))
		}
	}
	if len(entry.Refs) != 1 || entry.Refs[0].ParentTraceSegmentId != agent.segment {
		t.Errorf("Entry refs %v, want the caller's segment", entry.Refs)
	}
}

// startCaddyLogging is startCaddy with Caddy's default log written as JSON
// lines to a file, whose path it returns.
func startCaddyLogging(t *testing.T, site string) string {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	startCaddyWith(t, fmt.Sprintf(`	log {
		output file %s
		format json
		level INFO
	}`, logFile), site)
	return logFile
}

// logHas reports whether a JSON line of the log file satisfies match.
func logHas(t *testing.T, path string, match func(map[string]any) bool) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil && match(e) {
			return true
		}
	}
	return false
}
