package main

// The egress chain (issue 9 item 4): caller → tracingproxy(orders) → orders
// legacy app → tracingproxy egress → tracingproxy(payments) → payments
// app is one trace, in the strict Zipkin collector and in the SkyWalking
// collector built on the official stubs, and both backends draw the edges
// caller → orders-legacy → payments-legacy and no edge to orders' own app:
// the hop into it is a local span.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"

	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/legacyapp"
	"github.com/tracingproxy/tracingproxy/internal/swtest"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// chainSite is a site of the chain: a tracingproxy handler of service in
// front of reverse_proxy to upstream, with both exporters. sw8 is extracted
// first, so that a hop from another tracingproxy keeps its SkyWalking
// reference (its W3C parent names the same span).
func chainSite(listen, service, mode, upstream, zipkinURL, swAddr string) string {
	return fmt.Sprintf(`http://%s {
	tracingproxy {
		service_name %s
		propagation {
			extract sw8 w3c
			inject w3c sw8
		}
		%s
		exporter zipkin %s {
			flush_interval 50ms
		}
		exporter skywalking grpc://%s {
			flush_interval 50ms
		}
	}
	reverse_proxy %s
}
`, listen, service, mode, zipkinURL, swAddr, upstream)
}

// chain is one run of the chain with its collectors and addresses.
type chain struct {
	zipkin      *zipkintest.Collector
	sw          *swtest.GRPCCollector
	ordersIn    string // orders' ingress, where the caller sends
	ordersApp   string
	paymentsIn  string // payments' ingress, the egress listener's target
	paymentsApp string
	received    func() []http.Header // what the payments app received
}

// startChain starts the orders app (prefork, two calls per request through
// its egress listener, forwarding no trace header), the payments app, and
// Caddy with the three sites.
func startChain(t *testing.T) *chain {
	c := &chain{zipkin: zipkintest.NewCollector(t), sw: swtest.NewGRPCCollector(t, swtest.GRPCOptions{})}
	var (
		mu  sync.Mutex
		got []http.Header
	)
	pay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		w.Write([]byte("paid"))
	}))
	t.Cleanup(pay.Close)
	c.received = func() []http.Header {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	c.paymentsApp = pay.Listener.Addr().String()
	c.ordersIn, c.paymentsIn = freeAddr(t), freeAddr(t)
	egress := freeAddr(t)
	app := legacyapp.Start(t, legacyapp.Config{Model: legacyapp.Prefork, Workers: 2, Upstream: "http://" + egress, Calls: 2})
	c.ordersApp = app.Addr
	loadCaddyfile(t, caddyGlobals+
		chainSite(c.ordersIn, "orders-legacy", "stitch", c.ordersApp, c.zipkin.URL(), c.sw.Addr())+"\n"+
		// upstream_address as `proxy --egress` writes it: the address sw8
		// names, which SkyWalking maps the Exit span's peer by, from the
		// first call on (its default is the Host the service sent until
		// the handler has dialled once).
		chainSite(egress, "orders-legacy", "upstream_address "+c.paymentsIn+"\n\t\tegress", c.paymentsIn, c.zipkin.URL(), c.sw.Addr())+"\n"+
		chainSite(c.paymentsIn, "payments-legacy", "", c.paymentsApp, c.zipkin.URL(), c.sw.Addr()))
	return c
}

// zipkinLinks derives the dependency links Zipkin draws from one trace's
// spans, by the rules of Zipkin's DependencyLinker (zipkin2.internal): a
// SERVER span links its nearest ancestor with a kind (the CLIENT span that
// called it) to itself; a CLIENT span with no child links its service to
// its remote service name, when it has one.
func zipkinLinks(spans []zipkintest.Span) map[[2]string]int {
	byID := map[string]*zipkintest.Span{}
	children := map[string]int{}
	for i := range spans {
		byID[spans[i].ID] = &spans[i]
		if p := spans[i].ParentID; p != nil {
			children[*p]++
		}
	}
	service := func(ep *zipkintest.Endpoint) string {
		if ep == nil || ep.ServiceName == nil {
			return ""
		}
		return *ep.ServiceName
	}
	links := map[[2]string]int{}
	for _, s := range spans {
		if s.Kind == nil || (*s.Kind == "CLIENT" && children[s.ID] > 0) {
			continue
		}
		local, remote := service(s.LocalEndpoint), service(s.RemoteEndpoint)
		var parent, child string
		switch *s.Kind {
		case "SERVER":
			parent, child = remote, local
		case "CLIENT":
			parent, child = local, remote
		default:
			continue
		}
		var ancestor *zipkintest.Span
		for p := s.ParentID; p != nil && byID[*p] != nil; p = byID[*p].ParentID {
			if byID[*p].Kind != nil {
				ancestor = byID[*p]
				break
			}
		}
		if ancestor == nil && *s.Kind == "SERVER" && parent == "" {
			continue // the root's client is unknown
		}
		if ancestor != nil {
			if a := service(ancestor.LocalEndpoint); a != "" {
				if *s.Kind == "CLIENT" && local != "" && a != local {
					links[[2]string{a, local}]++
				}
				if *s.Kind == "SERVER" || parent == "" {
					parent = a
				}
			}
		}
		if parent != "" && child != "" {
			links[[2]string{parent, child}]++
		}
	}
	return links
}

// b64 is sw8's field encoding.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestEgressChain(t *testing.T) {
	legacyapp.Python(t)
	for _, caller := range []string{"w3c", "sw8"} {
		t.Run(caller+" caller", func(t *testing.T) {
			c := startChain(t)
			traceID, callerSpan, callerSegment := randomHex(16), randomHex(8), randomHex(16)
			req, _ := http.NewRequest(http.MethodGet, "http://"+c.ordersIn+"/work?gt=chain", nil)
			// The caller is instrumented with the tracer of its format:
			// Zipkin's reports its CLIENT span to Zipkin; SkyWalking's
			// names its segment and service in sw8.
			var callerParent string // the parent id orders' SERVER span must have
			switch caller {
			case "w3c":
				req.Header.Set("Traceparent", "00-"+traceID+"-"+callerSpan+"-01")
				callerParent = callerSpan
				body := fmt.Sprintf(`[{"traceId":%q,"id":%q,"kind":"CLIENT","name":"get /work","timestamp":%d,"duration":1000,"localEndpoint":{"serviceName":"caller"}}]`,
					traceID, callerSpan, time.Now().UnixMicro())
				res, err := http.Post(c.zipkin.URL(), "application/json", bytes.NewBufferString(body))
				if err != nil || res.StatusCode != http.StatusAccepted {
					t.Fatalf("posting the caller's span: %v %v", res, err)
				}
				res.Body.Close()
			case "sw8":
				req.Header.Set("Sw8", strings.Join([]string{"1", b64(traceID), b64(callerSegment), "1",
					b64("caller"), b64("caller-1"), b64("GET /checkout"), b64(c.ordersIn)}, "-"))
				callerParent = headers.SpanIDFromSW(callerSegment, 1).String()
			}
			res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}

			// Zipkin: the caller's span (w3c), orders' SERVER span, its
			// hop to the app and its two calls, and for each call
			// payments' SERVER span and its hop.
			want := 8
			if caller == "w3c" {
				want++
			}
			spans := c.zipkin.WaitSpans(t, want, 10*time.Second)
			checkChainZipkin(t, c, spans, traceID, callerParent, caller == "w3c")

			// SkyWalking: orders' segment, then one of payments per call.
			segs := c.sw.WaitSegments(t, 3, 10*time.Second)
			checkChainSkyWalking(t, c, segs, traceID, callerSegment, caller == "sw8")

			// payments' app received the trace from payments' proxy.
			got := c.received()
			if len(got) != 2 {
				t.Errorf("payments' app received %d calls, want 2", len(got))
			}
			for _, h := range got {
				if tp := h.Get("Traceparent"); !strings.HasPrefix(tp, "00-"+traceID+"-") {
					t.Errorf("payments' app received traceparent %q, want trace %s", tp, traceID)
				}
			}
		})
	}
}

// checkChainZipkin checks the chain's spans: one trace, each span of the
// right kind and service and under the right parent, and the links
// caller → orders-legacy (when the caller reported its span) and
// orders-legacy → payments-legacy, with no other.
func checkChainZipkin(t *testing.T, c *chain, spans []zipkintest.Span, traceID, callerParent string, callerReported bool) {
	t.Helper()
	svc := func(s zipkintest.Span) string {
		if s.LocalEndpoint == nil || s.LocalEndpoint.ServiceName == nil {
			return ""
		}
		return *s.LocalEndpoint.ServiceName
	}
	kind := func(s zipkintest.Span) string {
		if s.Kind == nil {
			return ""
		}
		return *s.Kind
	}
	parent := func(s zipkintest.Span) string {
		if s.ParentID == nil {
			return ""
		}
		return *s.ParentID
	}
	var ordersServer *zipkintest.Span
	for i, s := range spans {
		if s.TraceID != traceID {
			t.Errorf("span %s %s %s is in trace %s, not the caller's %s", svc(s), kind(s), s.ID, s.TraceID, traceID)
		}
		if svc(s) == "orders-legacy" && kind(s) == "SERVER" {
			if ordersServer != nil {
				t.Fatal("two SERVER spans of orders-legacy")
			}
			ordersServer = &spans[i]
		}
	}
	if ordersServer == nil {
		t.Fatalf("no SERVER span of orders-legacy in %d spans", len(spans))
	}
	if parent(*ordersServer) != callerParent {
		t.Errorf("orders-legacy's SERVER span has parent %q, want the caller's span %s", parent(*ordersServer), callerParent)
	}
	// Its children: the hop into the app, a local span (no kind: work
	// inside the orders-legacy node, not a call to another service), and
	// the two calls, CLIENT spans tagged with the method that stitched
	// them.
	var hops, calls []zipkintest.Span
	for _, s := range spans {
		if parent(s) != ordersServer.ID {
			continue
		}
		_, stitched := s.Tags[stitchTag]
		switch {
		case svc(s) == "orders-legacy" && kind(s) == "" && !stitched:
			hops = append(hops, s)
		case svc(s) == "orders-legacy" && kind(s) == "CLIENT" && stitched:
			calls = append(calls, s)
		default:
			t.Errorf("orders-legacy's SERVER span has child %s %q of %s", s.ID, kind(s), svc(s))
		}
	}
	if len(hops) != 1 || len(calls) != 2 {
		t.Fatalf("orders-legacy's SERVER span has %d local hop and %d egress CLIENT children, want 1 and 2", len(hops), len(calls))
	}
	for _, call := range calls {
		if m := call.Tags[stitchTag]; m != "process" {
			t.Errorf("egress span %s stitched by %q, want process (a prefork app forwarding nothing)", call.ID, m)
		}
		var servers []zipkintest.Span
		for _, s := range spans {
			if parent(s) == call.ID {
				servers = append(servers, s)
			}
		}
		if len(servers) != 1 || svc(servers[0]) != "payments-legacy" || kind(servers[0]) != "SERVER" {
			t.Errorf("egress span %s has children %v, want one SERVER span of payments-legacy", call.ID, servers)
			continue
		}
		var hops int
		for _, s := range spans {
			if parent(s) == servers[0].ID && svc(s) == "payments-legacy" && kind(s) == "CLIENT" {
				hops++
			}
		}
		if hops != 1 {
			t.Errorf("payments-legacy's SERVER span %s has %d CLIENT children, want its hop to the app", servers[0].ID, hops)
		}
	}

	links := zipkinLinks(spans)
	want := map[[2]string]int{{"orders-legacy", "payments-legacy"}: 2}
	if callerReported {
		want[[2]string{"caller", "orders-legacy"}] = 1
	}
	if !maps.Equal(links, want) {
		t.Errorf("Zipkin's dependency links %v, want %v", links, want)
	}
}

// checkChainSkyWalking checks the chain's segments: one trace; orders'
// segment holds its Entry span (with a reference to the caller's segment
// when the caller sent sw8), the Local span of the hop into its app and one
// Exit span per call; each of payments' two segments refers to one of those
// Exit spans. The topology's edges, as OAP draws them, are caller →
// orders-legacy (sw8), orders-legacy → payments-legacy, and payments-legacy
// → its app's address (payments does not stitch: its app is a peer it
// calls), with no other: no node for orders' own app.
func checkChainSkyWalking(t *testing.T, c *chain, segs []*agentv3.SegmentObject, traceID, callerSegment string, callerSW bool) {
	t.Helper()
	var orders *agentv3.SegmentObject
	var payments []*agentv3.SegmentObject
	for _, s := range segs {
		if s.TraceId != traceID {
			t.Errorf("segment of %s is in trace %q, want %s", s.Service, s.TraceId, traceID)
		}
		switch s.Service {
		case "orders-legacy":
			if orders != nil {
				t.Fatal("two segments of orders-legacy: its calls are not in the segment of its inbound request")
			}
			orders = s
		case "payments-legacy":
			payments = append(payments, s)
		default:
			t.Errorf("segment of unexpected service %q", s.Service)
		}
	}
	if orders == nil || len(payments) != 2 {
		t.Fatalf("segments of orders-legacy %v and payments-legacy %d, want 1 and 2", orders != nil, len(payments))
	}

	// OAP's edges: a cross-process reference links its parent service to
	// the segment's; an Exit span no segment refers to links its service
	// to its peer, a conjectured node.
	edges := map[[2]string]int{}
	referred := map[string]bool{} // "segment/span"
	for _, s := range segs {
		for _, sp := range s.Spans {
			for _, ref := range sp.Refs {
				if ref.RefType == agentv3.RefType_CrossProcess {
					edges[[2]string{ref.ParentService, s.Service}]++
					referred[fmt.Sprintf("%s/%d", ref.ParentTraceSegmentId, ref.ParentSpanId)] = true
				}
			}
		}
	}
	for _, s := range segs {
		for _, sp := range s.Spans {
			if sp.SpanType == agentv3.SpanType_Exit && !referred[fmt.Sprintf("%s/%d", s.TraceSegmentId, sp.SpanId)] {
				edges[[2]string{s.Service, sp.Peer}]++
			}
		}
	}
	want := map[[2]string]int{{"orders-legacy", "payments-legacy"}: 2, {"payments-legacy", c.paymentsApp}: 2}
	if callerSW {
		want[[2]string{"caller", "orders-legacy"}] = 1
	}
	if !maps.Equal(edges, want) {
		t.Errorf("SkyWalking's edges (cross-process references) %v, want %v", edges, want)
	}

	entry := orders.Spans[0]
	if entry.SpanId != 0 || entry.SpanType != agentv3.SpanType_Entry {
		t.Fatalf("orders' segment starts with span %d %v, want the Entry span 0", entry.SpanId, entry.SpanType)
	}
	switch {
	case callerSW && (len(entry.Refs) != 1 || entry.Refs[0].ParentTraceSegmentId != callerSegment || entry.Refs[0].ParentSpanId != 1):
		t.Errorf("orders' Entry span refers to %v, want the caller's segment %s span 1", entry.Refs, callerSegment)
	case !callerSW && len(entry.Refs) != 0:
		t.Errorf("orders' Entry span refers to %v, want nothing (the caller sent no sw8)", entry.Refs)
	}
	exits := map[int32]*agentv3.SpanObject{}
	ids := map[int32]bool{0: true}
	var hops int
	for _, sp := range orders.Spans[1:] {
		if ids[sp.SpanId] {
			t.Errorf("orders' segment has two spans %d", sp.SpanId)
		}
		ids[sp.SpanId] = true
		switch {
		case sp.ParentSpanId != 0:
			t.Errorf("orders' span %d has parent %d, want the Entry span", sp.SpanId, sp.ParentSpanId)
		case sp.SpanType == agentv3.SpanType_Local:
			hops++
		case sp.SpanType == agentv3.SpanType_Exit && sp.Peer == c.paymentsIn:
			exits[sp.SpanId] = sp
		default:
			t.Errorf("orders' span %d: %v to %q, want the Local hop or an Exit span to payments %s", sp.SpanId, sp.SpanType, sp.Peer, c.paymentsIn)
		}
	}
	if hops != 1 || len(exits) != 2 {
		t.Errorf("orders' segment has %d Local and %d Exit spans: want the hop into its app and one per call", hops, len(exits))
	}
	named := map[int32]bool{}
	for _, p := range payments {
		e := p.Spans[0]
		if e.SpanType != agentv3.SpanType_Entry || len(e.Refs) != 1 {
			t.Errorf("payments' segment starts with %v with refs %v, want an Entry span with one reference", e.SpanType, e.Refs)
			continue
		}
		ref := e.Refs[0]
		exit := exits[ref.ParentSpanId]
		switch {
		case ref.ParentTraceSegmentId != orders.TraceSegmentId:
			t.Errorf("payments refers to segment %s, not orders' %s", ref.ParentTraceSegmentId, orders.TraceSegmentId)
		case exit == nil || exit.Peer != c.paymentsIn:
			t.Errorf("payments refers to orders' span %d, which is not an Exit span to payments", ref.ParentSpanId)
		case named[ref.ParentSpanId]:
			t.Errorf("both of payments' segments refer to orders' Exit span %d", ref.ParentSpanId)
		case ref.NetworkAddressUsedAtPeer != c.paymentsIn:
			t.Errorf("payments' reference names address %q, want %s", ref.NetworkAddressUsedAtPeer, c.paymentsIn)
		}
		named[ref.ParentSpanId] = true
		if len(p.Spans) != 2 || p.Spans[1].SpanType != agentv3.SpanType_Exit || p.Spans[1].Peer != c.paymentsApp {
			t.Errorf("payments' segment spans %v, want the Entry span and an Exit span to its app %s", p.Spans, c.paymentsApp)
		}
	}
}
