package swtest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

const segmentJSON = `{"traceId":"t","traceSegmentId":"s","spans":[{"spanId":0,"parentSpanId":-1,` +
	`"startTime":"1","endTime":"2","spanType":"Entry","spanLayer":"Http","componentId":5004}],` +
	`"service":"svc","serviceInstance":"inst"}`

func TestDecodeSegmentsValid(t *testing.T) {
	tests := []struct {
		name string
		body string
		n    int
	}{
		{"one", "[" + segmentJSON + "]", 1},
		{"two", "[" + segmentJSON + "," + segmentJSON + "]", 2},
		{"empty array", "[]", 0},
		{"int64 as number", `[{"traceId":"t","spans":[{"startTime":1}]}]`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			segs, err := DecodeSegments([]byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeSegments: %v", err)
			}
			if len(segs) != tt.n {
				t.Fatalf("decoded %d segments, want %d", len(segs), tt.n)
			}
		})
	}
}

func TestDecodeSegmentsInvalid(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"object instead of array", segmentJSON},
		{"null", "null"},
		{"unknown field", `[{"traceId":"t","bogus":1}]`},
		{"snake_case field", `[{"trace_id":"t"}]`},
		{"wrong type", `[{"traceId":7}]`},
		{"unknown enum name", `[{"spans":[{"spanType":"Inbound"}]}]`},
		{"string span id", `[{"spans":[{"spanId":"zero"}]}]`},
		{"trailing data", "[" + segmentJSON + "]x"},
		{"not JSON", "segments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if segs, err := DecodeSegments([]byte(tt.body)); err == nil {
				t.Fatalf("DecodeSegments accepted %s as %v", tt.body, segs)
			}
		})
	}
}

func post(t *testing.T, url, contentType, body string) int {
	t.Helper()
	res, err := http.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestHTTPCollector(t *testing.T) {
	c := NewHTTPCollector(t)
	if got := post(t, c.URL()+pathSegments, "application/json", "["+segmentJSON+"]"); got != http.StatusOK {
		t.Fatalf("valid segments answered %d", got)
	}
	if got := post(t, c.URL()+pathKeepAlive, "application/json", `{"service":"svc","serviceInstance":"inst"}`); got != http.StatusOK {
		t.Fatalf("valid keepAlive answered %d", got)
	}
	if got := post(t, c.URL()+pathProperties, "application/json", `{"service":"svc","properties":[{"key":"k","value":"v"}]}`); got != http.StatusOK {
		t.Fatalf("valid properties answered %d", got)
	}
	if segs := c.WaitSegments(t, 1, time.Second); segs[0].GetSpans()[0].GetSpanType() != agentv3.SpanType_Entry {
		t.Errorf("decoded span type %v, want Entry", segs[0].GetSpans()[0].GetSpanType())
	}
	if n := len(c.WaitKeepAlives(t, 1, time.Second)); n != 1 {
		t.Errorf("%d keepAlives", n)
	}
	if p := c.Properties(); len(p) != 1 || p[0].GetProperties()[0].GetValue() != "v" {
		t.Errorf("properties %v", p)
	}

	bad := []struct {
		name, path, contentType, body string
		status                        int
	}{
		{"form content type", pathSegments, "application/x-www-form-urlencoded", "[]", http.StatusBadRequest},
		{"object body", pathSegments, "application/json", segmentJSON, http.StatusBadRequest},
		{"unknown keepAlive field", pathKeepAlive, "application/json", `{"service":"s","pid":1}`, http.StatusBadRequest},
		{"unknown path", "/v3/logs", "application/json", "[]", http.StatusNotFound},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(t, c.URL()+tt.path, tt.contentType, tt.body); got != tt.status {
				t.Errorf("answered %d, want %d", got, tt.status)
			}
		})
	}
	if errs := c.Errors(); len(errs) != 3 {
		t.Errorf("recorded %d decode errors, want 3: %v", len(errs), errs)
	}
	if n := len(c.Segments()); n != 1 {
		t.Errorf("holds %d segments after bad requests, want 1", n)
	}
}

func TestHTTPCollectorStatus(t *testing.T) {
	c := &HTTPCollector{Status: http.StatusServiceUnavailable, RetryAfter: "3"}
	srv := httptest.NewServer(c)
	defer srv.Close()
	res, err := http.Post(srv.URL+pathSegments, "application/json", bytes.NewReader([]byte("["+segmentJSON+"]")))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "3" {
		t.Errorf("answered %d with Retry-After %q, want 503 and 3", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if n := len(c.Segments()); n != 0 {
		t.Errorf("refused segments were recorded: %d", n)
	}
}

// client dials the collector with the official stubs.
func client(t *testing.T, c *GRPCCollector) (agentv3.TraceSegmentReportServiceClient, managementv3.ManagementServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient(c.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentv3.NewTraceSegmentReportServiceClient(conn), managementv3.NewManagementServiceClient(conn)
}

// collect sends segs on one stream within timeout, with token as the
// Authentication metadata when set.
func collect(tc agentv3.TraceSegmentReportServiceClient, token string, timeout time.Duration, segs ...*agentv3.SegmentObject) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "Authentication", token)
	}
	stream, err := tc.Collect(ctx)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if err := stream.Send(s); err != nil {
			break // the status comes from CloseAndRecv
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func TestGRPCCollectorToken(t *testing.T) {
	c := NewGRPCCollector(t, GRPCOptions{Token: "secret"})
	tc, mc := client(t, c)
	seg := &agentv3.SegmentObject{TraceId: "t"}
	tests := []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"right token", "secret", codes.OK},
		{"wrong token", "guess", codes.PermissionDenied},
		{"no token", "", codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(collect(tc, tt.token, 5*time.Second, seg)); got != tt.code {
				t.Errorf("Collect: %v, want %v", got, tt.code)
			}
			ctx := context.Background()
			if tt.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "Authentication", tt.token)
			}
			_, err := mc.KeepAlive(ctx, &managementv3.InstancePingPkg{Service: "s"})
			if got := status.Code(err); got != tt.code {
				t.Errorf("KeepAlive: %v, want %v", got, tt.code)
			}
		})
	}
	if n := len(c.Segments()); n != 1 {
		t.Errorf("holds %d segments, want only the one with the right token", n)
	}
	if n := len(c.KeepAlives()); n != 1 {
		t.Errorf("holds %d keepAlives, want only the one with the right token", n)
	}
	if got := strings.Join(c.Tokens(), ","); got != "secret,secret,guess,guess,," {
		t.Errorf("tokens %q, want every call's", got)
	}
}

func TestGRPCCollectorStall(t *testing.T) {
	c := NewGRPCCollector(t, GRPCOptions{Stall: true})
	tc, _ := client(t, c)
	start := time.Now()
	err := collect(tc, "", 200*time.Millisecond, &agentv3.SegmentObject{TraceId: "t"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Collect against a stalled collector: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the stall outlived the client's deadline: %s", took)
	}
	if n := len(c.Segments()); n != 0 {
		t.Errorf("a stalled collector recorded %d segments", n)
	}
}

func TestGRPCCollectorFailAndUnavailableProperties(t *testing.T) {
	c := NewGRPCCollector(t, GRPCOptions{UnavailableProperties: 2})
	_, mc := client(t, c)
	for i, want := range []codes.Code{codes.Unavailable, codes.Unavailable, codes.OK} {
		_, err := mc.ReportInstanceProperties(context.Background(), &managementv3.InstanceProperties{Service: "s"})
		if got := status.Code(err); got != want {
			t.Errorf("call %d: %v, want %v", i, got, want)
		}
	}
	if n := len(c.Properties()); n != 1 {
		t.Errorf("holds %d properties, want 1", n)
	}

	f := NewGRPCCollector(t, GRPCOptions{Fail: status.Error(codes.ResourceExhausted, "busy")})
	tc, _ := client(t, f)
	if err := collect(tc, "", 5*time.Second, &agentv3.SegmentObject{}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("Collect: %v, want ResourceExhausted", err)
	}
}

func TestGRPCCollectorRestart(t *testing.T) {
	c := NewGRPCCollector(t, GRPCOptions{})
	addr := c.Addr()
	tc, _ := client(t, c)
	if err := collect(tc, "", 5*time.Second, &agentv3.SegmentObject{TraceId: "before"}); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	c.Stop()
	c.Stop() // stopping twice is harmless
	if err := collect(tc, "", time.Second, &agentv3.SegmentObject{TraceId: "down"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Collect to a stopped collector: %v, want Unavailable", err)
	}
	c.Restart(t)
	if c.Addr() != addr {
		t.Fatalf("restarted on %s, want the same address %s", c.Addr(), addr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := collect(tc, "", time.Second, &agentv3.SegmentObject{TraceId: "after"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Collect never reached the restarted collector: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	segs := c.WaitSegments(t, 2, time.Second)
	if segs[0].GetTraceId() != "before" || segs[len(segs)-1].GetTraceId() != "after" {
		t.Errorf("segments %v, want those from before and after the restart", segs)
	}
}

func FuzzDecodeSegments(f *testing.F) {
	f.Add([]byte("[" + segmentJSON + "]"))
	f.Add([]byte(`[{"spans":[{"refs":[{"refType":"CrossProcess","parentSpanId":3}]}]}]`))
	f.Add([]byte("[]"))
	f.Add([]byte(`{"traceId":"t"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		segs, err := DecodeSegments(body)
		if err != nil {
			return
		}
		for i, s := range segs {
			b, err := protojson.Marshal(s)
			if err != nil {
				t.Fatalf("segment %d decoded but does not encode: %v", i, err)
			}
			back, err := DecodeSegment(b)
			if err != nil {
				t.Fatalf("segment %d: its own encoding %s does not decode: %v", i, b, err)
			}
			if !proto.Equal(s, back) {
				t.Fatalf("segment %d changed in a decode→encode→decode round trip", i)
			}
		}
	})
}
