package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"syscall"
	"testing"
	"time"

	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"

	"github.com/tracingproxy/tracingproxy/internal/swtest"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// retrySite proxies to a refusing upstream first and a working one second.
// The first request makes two attempts: the refused one marks its upstream
// down for a minute (fail_duration), so the retry picks the second; later
// requests go straight to the second.
func retrySite(tracing, refused, working string) string {
	return fmt.Sprintf(`	tracingproxy {
		%s
	}
	reverse_proxy %s %s {
		lb_policy first
		lb_retries 2
		fail_duration 1m
	}`, tracing, refused, working)
}

// clientSpans returns the CLIENT spans of a trace in time order, and its
// SERVER span.
func clientSpans(t *testing.T, spans []zipkintest.Span, traceID string) (server zipkintest.Span, clients []zipkintest.Span) {
	t.Helper()
	ns := 0
	for _, s := range spans {
		if s.TraceID != traceID {
			continue
		}
		if s.Kind != nil && *s.Kind == "SERVER" {
			server = s
			ns++
		} else {
			clients = append(clients, s)
		}
	}
	if ns != 1 {
		t.Fatalf("trace %s has %d SERVER spans, want 1: %+v", traceID, ns, spans)
	}
	sort.Slice(clients, func(i, j int) bool { return *clients[i].Timestamp < *clients[j].Timestamp })
	return server, clients
}

func TestAttemptSpansZipkin(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	refused := deadPort(t)
	startCaddy(t, retrySite(fmt.Sprintf(`service_name orders-legacy
		exporter zipkin %s {
			flush_interval 20ms
		}`, c.URL()), refused, up.hostport()))

	const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	res, body := get(t, "/orders/42", map[string][]string{"Traceparent": {caller}})
	if res.StatusCode != 200 || body != "hello from upstream" {
		t.Fatalf("got %d %q, want the working upstream's 200", res.StatusCode, body)
	}
	if n := up.count(); n != 1 {
		t.Fatalf("working upstream got %d requests, want 1", n)
	}
	h := up.last(t)
	traceID, parentID, _ := parseTraceparent(t, h.Get("Traceparent"))
	if got := h.Get("X-B3-Spanid"); got != parentID {
		t.Errorf("X-B3-SpanId %q, traceparent parent %s: the formats name different spans", got, parentID)
	}

	server, clients := clientSpans(t, c.WaitSpans(t, 3, 5*time.Second), traceID)
	if len(clients) != 2 {
		t.Fatalf("%d CLIENT spans, want one per attempt (2): %+v", len(clients), clients)
	}
	failed, ok := clients[0], clients[1]
	if failed.ID == ok.ID {
		t.Errorf("both attempts have span id %s", ok.ID)
	}
	if ok.ID != parentID {
		t.Errorf("second attempt's id %s, want the parent id the working upstream received %s", ok.ID, parentID)
	}
	for i, s := range clients {
		if s.ParentID == nil || *s.ParentID != server.ID {
			t.Errorf("attempt %d parentId %v, want the SERVER span %s", i, s.ParentID, server.ID)
		}
		if want := fmt.Sprint(i); s.Tags["http.request.resend_count"] != want {
			t.Errorf("attempt %d resend_count %q, want %s", i, s.Tags["http.request.resend_count"], want)
		}
		if *s.Timestamp < *server.Timestamp || *s.Timestamp+*s.Duration > *server.Timestamp+*server.Duration {
			t.Errorf("attempt %d [%d +%d] outside the SERVER span [%d +%d]", i, *s.Timestamp, *s.Duration, *server.Timestamp, *server.Duration)
		}
	}
	if *failed.Timestamp+*failed.Duration > *ok.Timestamp+1 {
		t.Errorf("the failed attempt [%d +%d] does not end before the second starts at %d", *failed.Timestamp, *failed.Duration, *ok.Timestamp)
	}
	if got := failed.Tags["peer.address"]; got != refused {
		t.Errorf("failed attempt peer.address %q, want the refusing upstream %s", got, refused)
	}
	if got := failed.Tags["error.type"]; got != "connection_refused" {
		t.Errorf("failed attempt error.type %q, want connection_refused (tags %v)", got, failed.Tags)
	}
	if failed.Tags["error"] == "" {
		t.Errorf("failed attempt has no error tag: %v", failed.Tags)
	}
	if _, ok := failed.Tags["http.status_code"]; ok {
		t.Errorf("failed attempt has a status code, but no response came: %v", failed.Tags)
	}
	if got := ok.Tags["peer.address"]; got != up.hostport() {
		t.Errorf("second attempt peer.address %q, want the working upstream %s", got, up.hostport())
	}
	if _, bad := ok.Tags["error"]; bad || ok.Tags["error.type"] != "" || ok.Tags["http.status_code"] != "200" {
		t.Errorf("second attempt tags %v, want status 200 and no error", ok.Tags)
	}
	if _, bad := server.Tags["error"]; bad || server.Tags["http.status_code"] != "200" {
		t.Errorf("SERVER tags %v, want the client's 200 without error", server.Tags)
	}
	checkAnnotations(t, "failed attempt", failed, "connect.start", "connect.done")
	checkAnnotations(t, "second attempt", ok, "connect.start", "connect.done", "ws", "wr")
	if got := ok.Tags["network.connection.reused"]; got != "false" {
		t.Errorf("second attempt network.connection.reused %q, want false on a fresh connection", got)
	}

	// The next request goes straight to the working upstream, on the
	// connection the last one left open.
	get(t, "/orders/43", nil)
	traceID, parentID, _ = parseTraceparent(t, up.last(t).Get("Traceparent"))
	_, clients = clientSpans(t, c.WaitSpans(t, 5, 5*time.Second), traceID)
	if len(clients) != 1 || clients[0].ID != parentID {
		t.Fatalf("CLIENT spans %+v, want one, named by the upstream's parent id %s", clients, parentID)
	}
	reused := clients[0]
	if got := reused.Tags["network.connection.reused"]; got != "true" {
		t.Errorf("network.connection.reused %q, want true on the kept-alive connection", got)
	}
	if got := reused.Tags["http.request.resend_count"]; got != "0" {
		t.Errorf("resend_count %q, want 0", got)
	}
	checkAnnotations(t, "attempt on a reused connection", reused, "ws", "wr")
}

// checkAnnotations checks that s has exactly the annotations want, in that
// order, in time order and within the span.
func checkAnnotations(t *testing.T, what string, s zipkintest.Span, want ...string) {
	t.Helper()
	var got []string
	last := *s.Timestamp
	for _, a := range s.Annotations {
		got = append(got, a.Value)
		if a.Timestamp < last || a.Timestamp > *s.Timestamp+*s.Duration {
			t.Errorf("%s: annotation %s at %d out of order or outside the span [%d +%d]", what, a.Value, a.Timestamp, *s.Timestamp, *s.Duration)
		}
		last = a.Timestamp
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: annotations %v, want %v", what, got, want)
	}
}

// checkLogs checks that the SkyWalking span's logs are the events want, in
// that order and within the span.
func checkLogs(t *testing.T, s *agentv3.SpanObject, want ...string) {
	t.Helper()
	var got []string
	for _, l := range s.Logs {
		if len(l.Data) == 0 || l.Data[0].Key != "event" {
			t.Errorf("span %d: log %v without an event", s.SpanId, l)
			continue
		}
		got = append(got, l.Data[0].Value)
		if l.Time < s.StartTime || l.Time > s.EndTime {
			t.Errorf("span %d: log %s at %d outside [%d, %d]", s.SpanId, l.Data[0].Value, l.Time, s.StartTime, s.EndTime)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("span %d logs %v, want %v", s.SpanId, got, want)
	}
}

func TestAttemptSpansSkyWalking(t *testing.T) {
	col := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: swToken})
	up := newUpstream(t)
	refused := deadPort(t)
	startCaddy(t, retrySite(fmt.Sprintf(`service_name %s
		instance %s
		propagation {
			extract sw8 w3c
			inject w3c b3 sw8
		}
		exporter skywalking grpc://%s {
			token %s
			flush_interval 20ms
			flush_timeout 200ms
		}`, swService, swInstance, col.Addr(), swToken), refused, up.hostport()))

	ex := send(t, "/checkout/42", map[string][]string{"Sw8": {agent.sw8()}})
	sw := upstreamSW8(t, up)
	seg := segmentByID(t, col, sw.segment)
	if len(seg.Spans) != 3 {
		t.Fatalf("segment has %d spans, want the Entry and one Exit per attempt: %v", len(seg.Spans), seg)
	}
	entry := seg.Spans[0]
	exits := map[int32]*agentv3.SpanObject{}
	for _, s := range seg.Spans[1:] {
		checkSpanWindow(t, s, ex)
		if s.SpanType != agentv3.SpanType_Exit || s.ParentSpanId != 0 || s.ComponentId != 5005 {
			t.Errorf("span %d: type %v parent %d component %d, want an Exit child of the Entry, 5005", s.SpanId, s.SpanType, s.ParentSpanId, s.ComponentId)
		}
		exits[s.SpanId] = s
	}
	if entry.SpanType != agentv3.SpanType_Entry || entry.IsError {
		t.Errorf("span 0: %v isError %v, want a successful Entry", entry.SpanType, entry.IsError)
	}
	ok, failed := exits[int32(sw.span)], exits[2]
	if sw.span != 1 || ok == nil || failed == nil {
		t.Fatalf("upstream's sw8 names span %d; exits %v: want the answering attempt as Exit 1 and the failed one as 2", sw.span, exits)
	}
	if ok.Peer != up.hostport() || ok.IsError {
		t.Errorf("Exit 1 peer %q isError %v, want the working upstream %s without error", ok.Peer, ok.IsError, up.hostport())
	}
	checkTags(t, ok, map[string]string{"http.status_code": "200", "http.request.resend_count": "1"})
	if failed.Peer != refused || !failed.IsError {
		t.Errorf("Exit 2 peer %q isError %v, want the refusing upstream %s, failed", failed.Peer, failed.IsError, refused)
	}
	checkTags(t, failed, map[string]string{"error.type": "connection_refused", "http.request.resend_count": "0"})
	checkLogs(t, ok, "connect.start", "connect.done", "ws", "wr")
	checkLogs(t, failed, "connect.start", "connect.done", "error")
	if failed.StartTime > ok.StartTime {
		t.Errorf("failed attempt starts at %d, after the second at %d", failed.StartTime, ok.StartTime)
	}
	// W3C and B3 name the same span as sw8.
	_, parentID, _ := parseTraceparent(t, up.last(t).Get("Traceparent"))
	if want := fleetSpanID(sw.segment, 1); parentID != want {
		t.Errorf("traceparent parent %s, want Exit 1's id %s", parentID, want)
	}
}

func TestErrorType(t *testing.T) {
	t.Parallel()
	timeout := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ETIMEDOUT)}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection_refused"},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), "reset"},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), "reset"},
		{"dial timeout", timeout, "timeout"},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout"},
		{"dns", &net.DNSError{Err: "no such host", Name: "nope.invalid", IsNotFound: true}, "dns"},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "slow.invalid", IsTimeout: true}, "timeout"},
		{"tls", &tlsError{errors.New("remote error: tls: handshake failure")}, "tls"},
		{"eof", fmt.Errorf("reading: %w", io.EOF), "eof"},
		{"unexpected eof", io.ErrUnexpectedEOF, "eof"},
		{"canceled", context.Canceled, "canceled"},
		{"other", errors.New("something"), "other"},
	}
	for _, tt := range tests {
		if got := errorType(tt.err); got != tt.want {
			t.Errorf("%s: errorType(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestAttemptPhasesResolveTheUpstreamName(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	_, port, _ := net.SplitHostPort(up.hostport())
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy localhost:%s`, c.URL(), port))

	if res, _ := get(t, "/", nil); res.StatusCode != 200 {
		t.Fatalf("status %d, want the upstream's 200", res.StatusCode)
	}
	traceID, parentID, _ := parseTraceparent(t, up.last(t).Get("Traceparent"))
	_, clients := clientSpans(t, c.WaitSpans(t, 2, 5*time.Second), traceID)
	if len(clients) != 1 || clients[0].ID != parentID {
		t.Fatalf("CLIENT spans %+v, want one, named by the upstream's parent id %s", clients, parentID)
	}
	s := clients[0]
	checkAnnotations(t, "attempt to a name", s, "dns.start", "dns.done", "connect.start", "connect.done", "ws", "wr")
	if _, bad := s.Tags["error"]; bad || s.Tags["peer.address"] != "localhost:"+port {
		t.Errorf("tags %v, want peer.address localhost:%s and no error (an address that refused before the one that answered is no failure)", s.Tags, port)
	}
}

func TestAttemptPhasesOverTLS(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello over tls")
	}))
	t.Cleanup(up.Close)
	site := func(transport string) string {
		return fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s {
		transport http {
			%s
		}
	}`, c.URL(), up.URL, transport)
	}

	startCaddy(t, site("tls_insecure_skip_verify"))
	if res, body := get(t, "/", nil); res.StatusCode != 200 || body != "hello over tls" {
		t.Fatalf("got %d %q, want the TLS upstream's 200", res.StatusCode, body)
	}
	spans := c.WaitSpans(t, 2, 5*time.Second)
	_, clients := clientSpans(t, spans, spans[0].TraceID)
	if len(clients) != 1 {
		t.Fatalf("%d CLIENT spans, want 1", len(clients))
	}
	checkAnnotations(t, "attempt over TLS", clients[0], "connect.start", "connect.done", "tls.start", "tls.done", "ws", "wr")

	// The upstream's certificate is not trusted without the option: the
	// handshake fails, the client gets 502 and the attempt says why.
	startCaddy(t, site("tls"))
	if res, _ := get(t, "/", nil); res.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502 for an untrusted upstream certificate", res.StatusCode)
	}
	spans = c.WaitSpans(t, 4, 5*time.Second)
	server, clients := clientSpans(t, spans, spans[len(spans)-1].TraceID)
	if len(clients) != 1 {
		t.Fatalf("%d CLIENT spans, want 1", len(clients))
	}
	failed := clients[0]
	if failed.Tags["error.type"] != "tls" || failed.Tags["error"] == "" {
		t.Errorf("failed attempt tags %v, want error.type tls and an error", failed.Tags)
	}
	if server.Tags["http.status_code"] != "502" {
		t.Errorf("SERVER status %q, want 502", server.Tags["http.status_code"])
	}
	checkAnnotations(t, "failed handshake", failed, "connect.start", "connect.done", "tls.start", "tls.done")
}

func TestSpanNamesCollapseIDs(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	startCaddy(t, zipkinSite(c, up, ""))

	const path = "/orders/1234/items/0b7e3f52-9c1d-4a8e-b2f1-3d4c5e6f7a8b"
	get(t, path, nil)
	spans := c.WaitSpans(t, 2, 5*time.Second)
	server, client := spansByKind(t, spans, spans[0].TraceID)
	for _, s := range []zipkintest.Span{server, client} {
		if *s.Name != "get /orders/{id}/items/{id}" || s.Tags["http.path"] != path {
			t.Errorf("%s name %q, http.path %q: want the route as the name and the raw path as the tag", *s.Kind, *s.Name, s.Tags["http.path"])
		}
	}
	if got := server.Tags["http.route"]; got != "/orders/{id}/items/{id}" {
		t.Errorf("SERVER http.route %q, want /orders/{id}/items/{id}", got)
	}
}

func TestSpanNameOptionAndRoutePatterns(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := newUpstream(t)
	exp := fmt.Sprintf(`exporter zipkin %s {
			flush_interval 20ms
		}`, c.URL())
	startCaddy(t, fmt.Sprintf(`	handle /api/orders/* {
		tracingproxy {
			span_name "{http.request.method} /api/orders/*"
			%s
		}
		reverse_proxy %s
	}
	handle {
		tracingproxy {
			route /shop/{item}/reviews
			%s
		}
		reverse_proxy %s
	}`, exp, up.hostport(), exp, up.hostport()))

	tests := []struct{ path, name, route string }{
		{"/api/orders/77", "get /api/orders/*", "/api/orders/{id}"},
		{"/shop/blue-shirt/reviews", "get /shop/{item}/reviews", "/shop/{item}/reviews"},
		{"/shop/42", "get /shop/{id}", "/shop/{id}"},
	}
	for i, tt := range tests {
		get(t, tt.path, nil)
		traceID, _, _ := parseTraceparent(t, up.last(t).Get("Traceparent"))
		server, client := spansByKind(t, c.WaitSpans(t, 2*(i+1), 5*time.Second), traceID)
		for _, s := range []zipkintest.Span{server, client} {
			if *s.Name != tt.name || s.Tags["http.path"] != tt.path {
				t.Errorf("%s: %s name %q, http.path %q, want %q and the raw path", tt.path, *s.Kind, *s.Name, s.Tags["http.path"], tt.name)
			}
		}
		if got := server.Tags["http.route"]; got != tt.route {
			t.Errorf("%s: http.route %q, want %q", tt.path, got, tt.route)
		}
	}
}
