package skywalking

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/swtest"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

// newExporter builds an Exporter and shuts it down when the test ends.
func newExporter(t testing.TB, cfg Config) *Exporter {
	t.Helper()
	if cfg.Service == "" {
		cfg.Service, cfg.Instance = "orders-legacy", "proxy-1@10.0.0.5"
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

// export runs one Export with a timeout.
func export(e *Exporter, timeout time.Duration, batch ...*exporter.Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return e.Export(ctx, batch)
}

// errorLog collects the errors an Exporter reports through OnError.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// wantProperties is what New reports for the instance.
func wantProperties(version string) *managementv3.InstanceProperties {
	host, _ := os.Hostname()
	props := []*commonv3.KeyStringValuePair{
		kv("Process No.", strconv.Itoa(os.Getpid())), kv("hostname", host), kv("language", "go"), kv("OS Name", runtime.GOOS),
	}
	for _, ip := range ipv4s() {
		if net.ParseIP(ip).IsLoopback() {
			continue
		}
		props = append(props, kv("ipv4", ip))
	}
	props = append(props, kv("tracingproxy.version", version))
	return &managementv3.InstanceProperties{Service: "orders-legacy", ServiceInstance: "proxy-1@10.0.0.5", Properties: props}
}

func TestGRPCExport(t *testing.T) {
	c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Token: "s3cret"})
	e := newExporter(t, Config{Address: "grpc://" + c.Addr(), Token: "s3cret", KeepAlive: 20 * time.Millisecond, Version: "1.2.3"})

	if err := export(e, 5*time.Second, testRecord(), testRecord()); err != nil {
		t.Fatalf("Export: %v", err)
	}
	segs := c.Segments()
	if len(segs) != 2 {
		t.Fatalf("collector received %d segments, want 2", len(segs))
	}
	for i, s := range segs {
		equalProto(t, "segment "+strconv.Itoa(i), s, wantSegment())
	}

	c.WaitKeepAlives(t, 3, 5*time.Second)
	tokens, props, pings := c.Tokens(), c.Properties(), c.KeepAlives()
	if len(props) != 1 {
		t.Fatalf("instance properties reported %d times, want once", len(props))
	}
	equalProto(t, "instance properties", props[0], wantProperties("1.2.3"))
	for _, p := range pings {
		equalProto(t, "keepAlive", p, &managementv3.InstancePingPkg{Service: "orders-legacy", ServiceInstance: "proxy-1@10.0.0.5"})
	}
	for _, tok := range tokens {
		if tok != "s3cret" {
			t.Fatalf("collector saw tokens %q, want every call to carry %q", tokens, "s3cret")
		}
	}
}

func TestGRPCExportEmptyBatch(t *testing.T) {
	c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{})
	e := newExporter(t, Config{Address: "grpc://" + c.Addr(), KeepAlive: -1})
	if err := export(e, 5*time.Second); err != nil {
		t.Fatalf("Export of nothing: %v", err)
	}
	if tokens := c.Tokens(); len(tokens) != 0 {
		t.Errorf("an empty batch opened %d calls, want none", len(tokens))
	}
}

func TestGRPCStatusMapping(t *testing.T) {
	tests := []struct {
		name      string
		code      codes.Code
		token     string
		retryable bool
		auth      bool
		message   string
	}{
		{"permission denied", codes.PermissionDenied, "wrong", false, true, "refused the authentication token: check the token option"},
		{"unauthenticated without token", codes.Unauthenticated, "", false, true, "the collector requires one, set the token option"},
		{"unavailable", codes.Unavailable, "", true, false, "skywalking collect"},
		{"resource exhausted", codes.ResourceExhausted, "", true, false, "skywalking collect"},
		{"aborted", codes.Aborted, "", true, false, "skywalking collect"},
		{"internal", codes.Internal, "", true, false, "skywalking collect"},
		{"unknown", codes.Unknown, "", true, false, "skywalking collect"},
		{"invalid argument", codes.InvalidArgument, "", false, false, "skywalking collect"},
		{"unimplemented", codes.Unimplemented, "", false, false, "skywalking collect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Fail: status.Error(tt.code, "collector says no")})
			e := newExporter(t, Config{Address: "grpc://" + c.Addr(), Token: tt.token, KeepAlive: -1})
			err := export(e, 5*time.Second, testRecord())
			if err == nil {
				t.Fatal("Export succeeded against a failing collector")
			}
			if retry, _ := exporter.IsRetryable(err); retry != tt.retryable {
				t.Errorf("retryable = %v, want %v: %v", retry, tt.retryable, err)
			}
			if got := errors.Is(err, ErrAuth); got != tt.auth {
				t.Errorf("errors.Is(err, ErrAuth) = %v, want %v: %v", got, tt.auth, err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not contain %q", err, tt.message)
			}
		})
	}
}

// refusedAddr returns a local address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func TestGRPCCollectorDown(t *testing.T) {
	e := newExporter(t, Config{Address: "grpc://" + refusedAddr(t), KeepAlive: -1})
	for i := range 2 { // the first call connects, the second meets the backoff
		start := time.Now()
		err := export(e, 5*time.Second, testRecord())
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("attempt %d: Export took %s against a refused port", i, took)
		}
		if retry, _ := exporter.IsRetryable(err); !retry {
			t.Fatalf("attempt %d: Export error = %v, want retryable", i, err)
		}
	}
}

func TestGRPCStalledStream(t *testing.T) {
	c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{Stall: true})
	e := newExporter(t, Config{Address: "grpc://" + c.Addr(), KeepAlive: -1})
	start := time.Now()
	err := export(e, 300*time.Millisecond, testRecord())
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Export took %s against a stalled collector with a 300ms deadline", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Export error = %v, want the context's deadline", err)
	}
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Errorf("Export error = %v, want retryable", err)
	}
}

func TestGRPCReconnect(t *testing.T) {
	c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{})
	e := newExporter(t, Config{Address: "grpc://" + c.Addr(), KeepAlive: -1})
	if err := export(e, 5*time.Second, testRecord()); err != nil {
		t.Fatalf("Export to the collector: %v", err)
	}
	c.Stop()
	err := export(e, 5*time.Second, testRecord())
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Fatalf("Export to a stopped collector: %v, want retryable", err)
	}

	c.Restart(t)
	testutil.Eventually(t, 15*time.Second, "an Export to the restarted collector", func() bool {
		return export(e, time.Second, testRecord()) == nil
	})
	if segs := c.Segments(); len(segs) < 2 {
		t.Fatalf("the collector holds %d segments, want the first and one sent after the restart", len(segs))
	}
}

func TestGRPCPropertiesRetried(t *testing.T) {
	c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{UnavailableProperties: 2})
	var log errorLog
	e := newExporter(t, Config{Address: "grpc://" + c.Addr(), KeepAlive: 20 * time.Millisecond, OnError: log.add})
	c.WaitKeepAlives(t, 1, 5*time.Second)
	if props := c.Properties(); len(props) != 1 {
		t.Fatalf("instance properties accepted %d times before the first keepAlive, want once", len(props))
	}
	errs := log.all()
	if len(errs) < 2 {
		t.Fatalf("OnError got %d errors, want the 2 failed registrations", len(errs))
	}
	for _, err := range errs[:2] {
		if !strings.Contains(err.Error(), "skywalking report instance properties") {
			t.Errorf("OnError got %v, want a failed registration", err)
		}
	}
	if err := export(e, 5*time.Second, testRecord()); err != nil {
		t.Fatalf("Export: %v", err)
	}
}

func TestGRPCShutdownLeaksNoGoroutine(t *testing.T) {
	c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{})
	base := testutil.Goroutines()
	for range 3 {
		e, err := New(Config{Address: "grpc://" + c.Addr(), Service: "s", Instance: "i", KeepAlive: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := export(e, 5*time.Second, testRecord()); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatalf("second Shutdown: %v", err)
		}
	}
	base.Settle(t, 5*time.Second)
}

func TestShutdownHonoursContext(t *testing.T) {
	c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{})
	e, err := New(Config{Address: "grpc://" + c.Addr(), Service: "s", Instance: "i", KeepAlive: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The goroutine may or may not have stopped by the time Shutdown looks;
	// either way Shutdown returns at once and the goroutine ends.
	err = e.Shutdown(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the management goroutine did not stop")
	}
}
