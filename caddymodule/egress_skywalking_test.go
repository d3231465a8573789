package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"

	"github.com/tracingproxy/tracingproxy/internal/swtest"
)

// In SkyWalking, a call the service makes while its inbound request is in
// flight is an Exit span of that request's segment, under the id its sw8
// named; a call made after the response (fire-and-forget work) is a
// segment of its own whose one Exit span refers to the request's Entry span
// (CrossThread: the same service). Both carry the service's name, and the
// hop from the proxy into the service is a Local span, so OAP draws
// orders-legacy -> payments and nothing to the service's own address.
func TestEgressSkyWalkingSegments(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	payments := newUpstream(t)
	egressPort := freePort()
	egressURL := fmt.Sprintf("http://127.0.0.1:%d", egressPort)
	late := make(chan struct{})
	lateDone := make(chan struct{})
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(id, path string) {
		req, _ := http.NewRequest(http.MethodGet, egressURL+path, nil)
		req.Header.Set("X-Request-Id", id)
		if res, err := client.Do(req); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		call(id, "/charge")
		go func() {
			defer close(lateDone)
			<-late
			call(id, "/receipt")
		}()
		io.WriteString(w, "order placed")
	}))
	t.Cleanup(app.Close)
	t.Cleanup(client.CloseIdleConnections)

	startCaddySites(t, fmt.Sprintf("http://127.0.0.1:%d {\n%s\n}\nhttp://127.0.0.1:%d {\n%s\n}\n",
		httpPort, swSite("grpc://"+col.Addr(), app.URL, "", "stitch request_id"),
		egressPort, swSite("grpc://"+col.Addr(), payments.hostport(), "", "egress")))

	if res, body := get(t, "/orders/1", nil); res.StatusCode != 200 || body != "order placed" {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	in := col.WaitSegments(t, 1, 5*time.Second)[0]
	charge := upstreamSW8(t, payments)
	if charge.segment != in.TraceSegmentId || charge.service != swService {
		t.Fatalf("payments' sw8 names segment %s of %s, want the inbound request's %s of %s", charge.segment, charge.service, in.TraceSegmentId, swService)
	}
	if in.Service != swService || len(in.Spans) != 3 {
		t.Fatalf("inbound segment of %s with %d spans, want %s with Entry, the hop into the service and the call's Exit", in.Service, len(in.Spans), swService)
	}
	var exit *agentv3.SpanObject
	for _, s := range in.Spans[1:] {
		if s.Peer == payments.hostport() {
			exit = s
		} else if s.SpanType != agentv3.SpanType_Local {
			// An Exit span to the service's own address would draw it
			// as a peer of itself.
			t.Errorf("the hop into the service is a %v span, want Local", s.SpanType)
		}
	}
	if exit == nil || exit.SpanType != agentv3.SpanType_Exit || exit.ParentSpanId != 0 || exit.SpanId != int32(charge.span) || exit.ComponentId != 5005 {
		t.Fatalf("call's span %+v, want Exit span %d of the segment, child of the Entry span, peer %s", exit, charge.span, payments.hostport())
	}
	ids := map[int32]bool{}
	for _, s := range in.Spans {
		if ids[s.SpanId] {
			t.Fatalf("two spans with id %d in one segment", s.SpanId)
		}
		ids[s.SpanId] = true
	}

	close(late)
	<-lateDone
	segs := col.WaitSegments(t, 2, 5*time.Second)
	receipt := upstreamSW8(t, payments)
	own := segmentByID(t, col, receipt.segment)
	if own == segs[0] || own.TraceId != in.TraceId || own.Service != swService || len(own.Spans) != 1 {
		t.Fatalf("late call's segment %+v, want its own segment of %s in trace %s with one span", own, swService, in.TraceId)
	}
	s := own.Spans[0]
	if s.SpanType != agentv3.SpanType_Exit || s.SpanId != 0 || s.ParentSpanId != -1 || s.Peer != payments.hostport() || receipt.span != 0 {
		t.Fatalf("late call's span %+v (sw8 span %d), want Exit span 0 to %s", s, receipt.span, payments.hostport())
	}
	if len(s.Refs) != 1 || s.Refs[0].RefType != agentv3.RefType_CrossThread || s.Refs[0].ParentTraceSegmentId != in.TraceSegmentId || s.Refs[0].ParentSpanId != 0 {
		t.Fatalf("late call's refs %+v, want CrossThread to span 0 of %s", s.Refs, in.TraceSegmentId)
	}
}
