package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
		if *s.Kind == "SERVER" {
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
