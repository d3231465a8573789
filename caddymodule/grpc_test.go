package caddymodule

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

func TestGRPCStatusFromTheUpstream(t *testing.T) {
	c := zipkintest.NewCollector(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	startCaddyWith(t, `	servers {
		protocols h1 h2 h2c
	}`, fmt.Sprintf(`	%s
	reverse_proxy h2c://%s {
		# Unary calls' bodies fit: buffered, Caddy replays them from a
		# bytes.Reader. Unbuffered, Caddy v2.11.9's bodyNopCloserIfNotRead
		# is read by x/net/http2's body writer while the stream's abort
		# closes it on another goroutine, a data race inside Caddy that
		# go test -race reports now and then.
		request_buffers 1MiB
	}`, zipkinTracing(c), l.Addr()))

	conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///127.0.0.1:%d", httpPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A call that succeeds: grpc-status 0 comes in the trailers.
	if res, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "orders"}); err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check(orders) = %v, %v; want SERVING through the proxy", res, err)
	}
	server, clients := oneTrace(t, c, 2)
	if len(clients) != 1 {
		t.Fatalf("%d CLIENT spans, want 1", len(clients))
	}
	for _, s := range []zipkintest.Span{server, clients[0]} {
		if s.Tags["grpc.status_code"] != "0" || s.Tags["http.status_code"] != "200" {
			t.Errorf("%s tags %v, want grpc.status_code 0 and HTTP 200", *s.Kind, s.Tags)
		}
		if _, bad := s.Tags["error"]; bad {
			t.Errorf("%s has an error tag for an OK call: %v", *s.Kind, s.Tags)
		}
	}

	// A call that fails: HTTP 200 still, grpc-status 5 in a trailers-only
	// response.
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "payments"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Check(payments) error %v, want NotFound", err)
	}
	spans := c.WaitSpans(t, 4, 5*time.Second)
	server, clients = clientSpans(t, spans, spans[len(spans)-1].TraceID)
	if len(clients) != 1 {
		t.Fatalf("%d CLIENT spans, want 1: %+v", len(clients), clients)
	}
	for _, s := range []zipkintest.Span{server, clients[0]} {
		if s.Tags["grpc.status_code"] != "5" || s.Tags["http.status_code"] != "200" {
			t.Errorf("%s tags %v, want grpc.status_code 5 and HTTP 200", *s.Kind, s.Tags)
		}
		if s.Tags["error"] == "" {
			t.Errorf("%s has no error tag for a NOT_FOUND call: %v", *s.Kind, s.Tags)
		}
	}
	if got := clients[0].Tags["error.type"]; got != "NOT_FOUND" {
		t.Errorf("attempt error.type %q, want NOT_FOUND", got)
	}
}

func TestGRPCStatusHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		hdr    http.Header
		want   grpcResult
		failed bool
	}{
		{"none", http.Header{}, grpcResult{}, false},
		{"ok in trailers", http.Header{"Grpc-Status": {"0"}}, grpcResult{code: "0", name: "OK"}, false},
		{"trailers-only error", http.Header{"Grpc-Status": {"5"}, "Grpc-Message": {"unknown%20service"}},
			grpcResult{code: "5", name: "NOT_FOUND", msg: "unknown service"}, true},
		{"unannounced trailer", http.Header{http.TrailerPrefix + "Grpc-Status": {"14"}}, grpcResult{code: "14", name: "UNAVAILABLE"}, true},
		{"unknown code", http.Header{"Grpc-Status": {"42"}}, grpcResult{code: "42", name: "42"}, true},
		{"not a number", http.Header{"Grpc-Status": {"x"}}, grpcResult{}, false},
		{"too long", http.Header{"Grpc-Status": {"00000"}}, grpcResult{}, false},
	}
	for _, tt := range tests {
		got := grpcStatus(tt.hdr)
		if got != tt.want || got.failed() != tt.failed {
			t.Errorf("%s: grpcStatus = %+v (failed %v), want %+v (failed %v)", tt.name, got, got.failed(), tt.want, tt.failed)
		}
	}
}
