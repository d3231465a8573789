package skywalking

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/swtest"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

func TestHTTPExport(t *testing.T) {
	tests := []struct {
		name   string
		prefix string // the base path the collector is mounted under
	}{
		{"root", ""},
		{"base path", "/skywalking"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &swtest.HTTPCollector{}
			var h http.Handler = c
			if tt.prefix != "" {
				h = http.StripPrefix(tt.prefix, c)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			e := newExporter(t, Config{Address: srv.URL + tt.prefix + "/", Token: "s3cret", KeepAlive: 20 * time.Millisecond, Version: "1.2.3"})

			if err := export(e, 5*time.Second, testRecord(), testRecord()); err != nil {
				t.Fatalf("Export: %v", err)
			}
			c.WaitKeepAlives(t, 3, 5*time.Second)
			segs, props, pings, hdrs := c.Segments(), c.Properties(), c.KeepAlives(), c.Headers()
			for _, err := range c.Errors() {
				t.Errorf("collector could not decode a request: %v", err)
			}
			if len(segs) != 2 {
				t.Fatalf("collector received %d segments, want 2", len(segs))
			}
			for i, s := range segs {
				equalProto(t, "segment "+strconv.Itoa(i), s, wantSegment())
			}
			if len(props) != 1 {
				t.Fatalf("instance properties reported %d times, want once", len(props))
			}
			equalProto(t, "instance properties", props[0], wantProperties("1.2.3"))
			for _, p := range pings {
				equalProto(t, "keepAlive", p, &managementv3.InstancePingPkg{Service: "orders-legacy", ServiceInstance: "proxy-1@10.0.0.5"})
			}
			for _, h := range hdrs {
				if got := h.Get("Authentication"); got != "s3cret" {
					t.Errorf("Authentication header = %q, want %q", got, "s3cret")
				}
				if got := h.Get("b3"); got != "0" {
					t.Errorf("b3 header = %q, want %q so proxies do not trace the exporter", got, "0")
				}
				if got := h.Get("User-Agent"); got != "tracingproxy/1.2.3" {
					t.Errorf("User-Agent = %q", got)
				}
			}
		})
	}
}

func TestHTTPNoToken(t *testing.T) {
	c := swtest.NewHTTPCollector(t)
	e := newExporter(t, Config{Address: c.URL(), KeepAlive: -1})
	if err := export(e, 5*time.Second, testRecord()); err != nil {
		t.Fatalf("Export: %v", err)
	}
	hdrs := c.Headers()
	if len(hdrs) != 1 {
		t.Fatalf("collector got %d requests, want 1", len(hdrs))
	}
	if _, ok := hdrs[0]["Authentication"]; ok {
		t.Errorf("Authentication header sent without a token: %q", hdrs[0].Get("Authentication"))
	}
}

func TestHTTPStatusMapping(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string
		token      string
		retryable  bool
		after      time.Duration
		auth       bool
	}{
		{"500", http.StatusInternalServerError, "", "", true, 0, false},
		{"502", http.StatusBadGateway, "", "", true, 0, false},
		{"503 with Retry-After", http.StatusServiceUnavailable, "7", "", true, 7 * time.Second, false},
		{"429 with Retry-After", http.StatusTooManyRequests, "2", "", true, 2 * time.Second, false},
		{"408", http.StatusRequestTimeout, "", "", true, 0, false},
		{"401", http.StatusUnauthorized, "", "wrong", false, 0, true},
		{"403 without token", http.StatusForbidden, "", "", false, 0, true},
		{"400", http.StatusBadRequest, "", "", false, 0, false},
		{"404", http.StatusNotFound, "", "", false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &swtest.HTTPCollector{Status: tt.status, RetryAfter: tt.retryAfter}
			srv := httptest.NewServer(c)
			defer srv.Close()
			e := newExporter(t, Config{Address: srv.URL, Token: tt.token, KeepAlive: -1})
			err := export(e, 5*time.Second, testRecord())
			if err == nil {
				t.Fatalf("Export succeeded against HTTP %d", tt.status)
			}
			retry, after := exporter.IsRetryable(err)
			if retry != tt.retryable || after != tt.after {
				t.Errorf("IsRetryable = %v, %s; want %v, %s: %v", retry, after, tt.retryable, tt.after, err)
			}
			if got := errors.Is(err, ErrAuth); got != tt.auth {
				t.Errorf("errors.Is(err, ErrAuth) = %v, want %v: %v", got, tt.auth, err)
			}
			if tt.auth && !strings.Contains(err.Error(), "token option") {
				t.Errorf("auth error %q does not point at the token option", err)
			}
			if !strings.Contains(err.Error(), "HTTP "+strconv.Itoa(tt.status)) {
				t.Errorf("error %q does not name the status", err)
			}
			if errs := c.Errors(); len(errs) > 0 {
				t.Errorf("collector could not decode the request: %v", errs)
			}
		})
	}
}

func TestHTTPCollectorDown(t *testing.T) {
	e := newExporter(t, Config{Address: "http://" + refusedAddr(t), KeepAlive: -1})
	start := time.Now()
	err := export(e, 5*time.Second, testRecord())
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Export took %s against a refused port", took)
	}
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Fatalf("Export error = %v, want retryable", err)
	}
}

func TestHTTPStalledCollector(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	e := newExporter(t, Config{Address: srv.URL, KeepAlive: -1})
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

func TestHTTPManagementFailureReported(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var log errorLog
	e := newExporter(t, Config{Address: srv.URL, KeepAlive: 10 * time.Millisecond, OnError: log.add})
	testutil.Eventually(t, 5*time.Second, "two failed registrations", func() bool { return len(log.all()) >= 2 })
	for _, err := range log.all() {
		if !strings.Contains(err.Error(), "skywalking report instance properties") || !strings.Contains(err.Error(), "HTTP 503") {
			t.Errorf("OnError got %v, want a failed registration with its status", err)
		}
	}
	// Registration retrying in the background does not hold up Export.
	err := export(e, 5*time.Second, testRecord())
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Errorf("Export error = %v, want retryable 503", err)
	}
}

func TestHTTPShutdownLeaksNoGoroutine(t *testing.T) {
	c := swtest.NewHTTPCollector(t)
	base := testutil.Goroutines()
	for range 3 {
		e, err := New(Config{Address: c.URL(), Service: "s", Instance: "i", KeepAlive: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := export(e, 5*time.Second, testRecord()); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	base.Settle(t, 5*time.Second)
}

// TestHTTPHeaders sends configured headers with every request, never in place
// of the exporter's own, and refuses them on a gRPC address.
func TestHTTPHeaders(t *testing.T) {
	c := swtest.NewHTTPCollector(t)
	e := newExporter(t, Config{Address: c.URL(), KeepAlive: -1, Token: "tok",
		Headers: map[string]string{"X-Tenant": "gold", "B3": "1", "Authentication": "not-the-token"}})
	if err := export(e, 5*time.Second, testRecord()); err != nil {
		t.Fatal(err)
	}
	hs := c.Headers()
	if len(hs) == 0 {
		t.Fatal("the collector saw no request")
	}
	h := hs[len(hs)-1]
	if h.Get("X-Tenant") != "gold" || h.Get("B3") != "0" || h.Get("Authentication") != "tok" {
		t.Errorf("headers %v: want X-Tenant gold, b3 0 and the token", h)
	}
	if _, err := New(Config{Address: "grpc://127.0.0.1:11800", Service: "s", Instance: "i", Headers: map[string]string{"A": "b"}}); err == nil {
		t.Error("headers were accepted on a gRPC address")
	}
}

// A redirect is the collector's answer, not a place to resend to: a
// followed 307 would post the segments to an address nobody configured.
func TestHTTPFollowsNoRedirect(t *testing.T) {
	elsewhere := make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			elsewhere <- r.Method
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	e := newExporter(t, Config{Address: srv.URL, KeepAlive: -1})
	err := export(e, 5*time.Second, testRecord())
	if err == nil || !strings.Contains(err.Error(), "HTTP 307") {
		t.Fatalf("Export against a redirect = %v, want the 307 as a rejection", err)
	}
	if retry, _ := exporter.IsRetryable(err); retry {
		t.Fatalf("a redirect is retryable: %v", err)
	}
	select {
	case m := <-elsewhere:
		t.Fatalf("redirect followed with %s", m)
	default:
	}
}
