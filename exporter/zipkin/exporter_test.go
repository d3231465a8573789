package zipkin

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

func newExporter(t testing.TB, cfg Config) *Exporter {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

func export(t testing.TB, e *Exporter, batch ...*exporter.Record) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.Export(ctx, batch)
}

func TestNewValid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"http", Config{URL: "http://127.0.0.1:9411/api/v2/spans"}},
		{"https with user info and query", Config{URL: "https://u:p@zipkin.example.com/api/v2/spans?x=1"}},
		{"uppercase scheme", Config{URL: "HTTP://zipkin:9411/api/v2/spans"}},
		{"headers and gzip", Config{URL: "http://zipkin/api/v2/spans", Gzip: true,
			Headers: map[string]string{"Authorization": "Bearer t\tok", "Host": "zipkin.internal"}}},
		{"own client", Config{URL: "http://zipkin/api/v2/spans", Client: &http.Client{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err != nil {
				t.Fatalf("New: %v", err)
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"empty url", Config{}, `zipkin url must be an absolute http(s) URL, got ""`},
		{"no scheme", Config{URL: "127.0.0.1:9411/api/v2/spans"}, `got "127.0.0.1:9411/api/v2/spans"`},
		{"relative", Config{URL: "/api/v2/spans"}, `zipkin url must be an absolute http(s) URL`},
		{"ftp", Config{URL: "ftp://zipkin/api/v2/spans"}, `got "ftp://zipkin/api/v2/spans"`},
		{"grpc", Config{URL: "grpc://zipkin:9411"}, `zipkin url must be`},
		{"no host", Config{URL: "http:///api/v2/spans"}, `zipkin url must be`},
		{"opaque", Config{URL: "http:zipkin"}, `zipkin url must be`},
		{"unparsable", Config{URL: "http://zip kin/"}, `zipkin url must be`},
		{"bad header name", Config{URL: "http://zipkin/", Headers: map[string]string{"X Token": "1"}},
			`zipkin header name "X Token"`},
		{"empty header name", Config{URL: "http://zipkin/", Headers: map[string]string{"": "1"}}, `zipkin header name ""`},
		{"header value with newline", Config{URL: "http://zipkin/", Headers: map[string]string{"X-Token": "a\r\nX-Evil: 1"}},
			`zipkin header "X-Token"`},
		{"missing ca", Config{URL: "https://zipkin/", TLS: &exporter.TLSConfig{CA: "/nonexistent/ca.pem"}}, "zipkin tls ca: open /nonexistent/ca.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error %v, want one containing %q", err, tt.wantErr)
			}
			if cerr := Check(tt.cfg); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Check error = %v, want New's %q", cerr, err)
			}
		})
	}
}

// One record through a strict collector: two spans linked caller → SERVER
// → CLIENT, microsecond times, the upstream as the CLIENT's remote end.
func TestExportServerAndClient(t *testing.T) {
	c := zipkintest.NewCollector(t)
	e := newExporter(t, Config{URL: c.URL()})
	if err := export(t, e, testRecord(t)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	spans := c.Only(t).Spans
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	server, client := spans[0], spans[1]
	checks := []struct{ field, got, want string }{
		{"server kind", deref(server.Kind), "SERVER"},
		{"server id", server.ID, testServerHex},
		{"server parentId", deref(server.ParentID), testCallerHex},
		{"client kind", deref(client.Kind), "CLIENT"},
		{"client id", client.ID, testClientHex},
		{"client parentId", deref(client.ParentID), testServerHex},
		{"server traceId", server.TraceID, testTraceHex},
		{"client traceId", client.TraceID, testTraceHex},
		{"server remoteEndpoint", server.RemoteEndpoint.String(), "|192.0.2.10||53422"},
		{"client remoteEndpoint", client.RemoteEndpoint.String(), "|10.0.0.5||8080"},
		{"localEndpoint", client.LocalEndpoint.String(), "orders-legacy|||0"},
		{"name", deref(server.Name), "get /orders/{id}"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if *server.Timestamp != uint64(testStart.UnixMicro()) || *server.Duration != 12345 { // truncated end minus truncated start
		t.Errorf("server timestamp %d duration %d", *server.Timestamp, *server.Duration)
	}
	if *client.Timestamp != uint64(testStart.UnixMicro())+150 || *client.Duration != 12000 {
		t.Errorf("client timestamp %d duration %d", *client.Timestamp, *client.Duration)
	}
}

func TestExportPeers(t *testing.T) {
	tests := []struct {
		name, peer, want string
	}{
		{"ipv4", "10.0.0.5:8080", "|10.0.0.5||8080"},
		{"ipv6", "[2001:db8::c001]:9000", "||2001:db8::c001|9000"},
		{"hostname", "Orders.Internal:8443", "orders.internal|||8443"},
	}
	c := zipkintest.NewCollector(t)
	e := newExporter(t, Config{URL: c.URL()})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRecord(t)
			r.Clients[0].Peer = tt.peer
			if err := export(t, e, r); err != nil {
				t.Fatalf("Export: %v", err)
			}
			acc, rej := c.Requests()
			if len(rej) > 0 || len(acc) != i+1 {
				t.Fatalf("accepted %d, rejected %v", len(acc), rej)
			}
			if got := acc[i].Spans[1].RemoteEndpoint.String(); got != tt.want {
				t.Fatalf("remoteEndpoint %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExportGzip(t *testing.T) {
	c := zipkintest.NewCollector(t)
	e := newExporter(t, Config{URL: c.URL(), Gzip: true})
	batch := []*exporter.Record{testRecord(t), testRecord(t), testRecord(t)}
	for range 2 { // the second export reuses the gzip writer
		if err := e.Export(context.Background(), batch); err != nil {
			t.Fatalf("Export: %v", err)
		}
	}
	acc, rej := c.Requests()
	if len(rej) > 0 || len(acc) != 2 {
		t.Fatalf("accepted %d, rejected %v", len(acc), rej)
	}
	for _, rec := range acc {
		if rec.Header.Get("Content-Encoding") != "gzip" || len(rec.Spans) != 6 {
			t.Fatalf("Content-Encoding %q, %d spans", rec.Header.Get("Content-Encoding"), len(rec.Spans))
		}
	}
	if string(acc[0].Body) != string(AppendJSON(nil, batch)) {
		t.Fatal("decompressed body differs from the encoding")
	}
}

func TestExportHeaders(t *testing.T) {
	c := zipkintest.NewCollector(t)
	e := newExporter(t, Config{URL: c.URL(), Headers: map[string]string{
		"Authorization":    "Bearer secret",
		"b3":               "1",    // the exporter's b3: 0 wins
		"content-type":     "x/y",  // so does its Content-Type
		"Content-Encoding": "gzip", // and no encoding without Gzip
		"Host":             "zipkin.internal",
	}})
	if err := export(t, e, testRecord(t)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	h := c.Only(t).Header
	want := map[string]string{
		"B3":               "0",
		"Content-Type":     "application/json",
		"Authorization":    "Bearer secret",
		"Content-Encoding": "",
	}
	for k, v := range want {
		if got := h.Values(k); (v == "" && len(got) != 0) || (v != "" && (len(got) != 1 || got[0] != v)) {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Traceparent", "Tracestate", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Sampled", "Sw8", "Uber-Trace-Id"} {
		if v, ok := h[k]; ok {
			t.Errorf("trace header %s: %q sent to the collector", k, v)
		}
	}
}

// statusServer answers every request with code, the given headers and a
// body, after reading the request.
func statusServer(t *testing.T, code int, header map[string]string, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestExportOutcomes(t *testing.T) {
	future := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name      string
		code      int
		header    map[string]string
		wantErr   bool
		retryable bool
		after     time.Duration // exact; or, when afterMin is set, the upper bound
		afterMin  time.Duration
		errText   string
	}{
		{"202", http.StatusAccepted, nil, false, false, 0, 0, ""},
		{"200", http.StatusOK, nil, false, false, 0, 0, ""},
		{"500", http.StatusInternalServerError, nil, true, true, 0, 0, "500 Internal Server Error"},
		{"502", http.StatusBadGateway, nil, true, true, 0, 0, "502"},
		{"503 with http-date", http.StatusServiceUnavailable, map[string]string{"Retry-After": future}, true, true,
			30 * time.Second, 25 * time.Second, "503"},
		{"429 with seconds", http.StatusTooManyRequests, map[string]string{"Retry-After": "2"}, true, true, 2 * time.Second, 0, "429"},
		{"429 with garbage", http.StatusTooManyRequests, map[string]string{"Retry-After": "soon"}, true, true, 0, 0, "429"},
		{"408", http.StatusRequestTimeout, nil, true, true, 0, 0, "408"},
		{"400", http.StatusBadRequest, nil, true, false, 0, 0, `400 Bad Request: "collector says no"`},
		{"404", http.StatusNotFound, nil, true, false, 0, 0, "404"},
		{"413", http.StatusRequestEntityTooLarge, nil, true, false, 0, 0, "413"},
		{"redirect not followed", http.StatusTemporaryRedirect, map[string]string{"Location": "/elsewhere"}, true, false, 0, 0, "307"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := statusServer(t, tt.code, tt.header, "collector says no\n")
			e := newExporter(t, Config{URL: srv.URL + "/api/v2/spans"})
			err := export(t, e, testRecord(t))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Export error %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q does not contain %q", err, tt.errText)
			}
			retry, after := exporter.IsRetryable(err)
			if retry != tt.retryable {
				t.Fatalf("retryable %v, want %v (%v)", retry, tt.retryable, err)
			}
			if tt.afterMin > 0 {
				if after < tt.afterMin || after > tt.after {
					t.Fatalf("after %s, want in [%s, %s]", after, tt.afterMin, tt.after)
				}
			} else if after != tt.after {
				t.Fatalf("after %s, want %s", after, tt.after)
			}
		})
	}
}

func TestExportConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	e := newExporter(t, Config{URL: "http://" + addr + "/api/v2/spans"})
	err = export(t, e, testRecord(t))
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Fatalf("Export error %v, want a retryable error", err)
	}
}

// A collector that accepts the connection and never answers must not hold
// Export past its context; the exporter then works again.
func TestExportHangingCollector(t *testing.T) {
	c := zipkintest.NewCollector(t)
	var once sync.Once
	hung, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		once.Do(func() { first = true })
		if first {
			// Read the body so the server notices when the client hangs up.
			_, _ = io.Copy(io.Discard, r.Body)
			close(hung)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		c.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	e := newExporter(t, Config{URL: srv.URL + "/api/v2/spans", Gzip: true})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.Export(ctx, []*exporter.Record{testRecord(t)})
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Export error %v, want DeadlineExceeded", err)
	}
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Errorf("timeout not retryable: %v", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("Export took %s with a 200ms deadline", elapsed)
	}
	<-hung

	r := testRecord(t)
	r.Server.Name = "second"
	if err := export(t, e, r); err != nil {
		t.Fatalf("Export after a timeout: %v", err)
	}
	if got := deref(c.Only(t).Spans[0].Name); got != "second" {
		t.Fatalf("second export carried %q", got)
	}
}

// The reused buffer must not leak one batch into the next.
func TestExportReusesBuffer(t *testing.T) {
	c := zipkintest.NewCollector(t)
	e := newExporter(t, Config{URL: c.URL()})
	big := make([]*exporter.Record, 50)
	for i := range big {
		big[i] = testRecord(t)
	}
	small := testRecord(t)
	small.Server.Name = "small"
	if err := export(t, e, big...); err != nil {
		t.Fatal(err)
	}
	if err := export(t, e, small); err != nil {
		t.Fatal(err)
	}
	if err := export(t, e); err != nil { // empty batch: no request
		t.Fatal(err)
	}
	if err := export(t, e, nil); err != nil { // no spans: no request
		t.Fatal(err)
	}
	acc, rej := c.Requests()
	if len(rej) > 0 || len(acc) != 2 {
		t.Fatalf("accepted %d, rejected %v", len(acc), rej)
	}
	if len(acc[0].Spans) != 100 || len(acc[1].Spans) != 2 || deref(acc[1].Spans[0].Name) != "small" {
		t.Fatalf("batches of %d and %d spans", len(acc[0].Spans), len(acc[1].Spans))
	}
}

// connTracker counts a server's connections and reports closed ones.
type connTracker struct {
	mu     sync.Mutex
	opened int
	closed chan struct{}
}

func trackConns(srv *httptest.Server) *connTracker {
	ct := &connTracker{closed: make(chan struct{}, 16)}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			ct.mu.Lock()
			ct.opened++
			ct.mu.Unlock()
		case http.StateClosed:
			ct.closed <- struct{}{}
		}
	}
	return ct
}

// Responses are drained, even error responses with a body, so one
// connection carries every export; Shutdown then closes it.
func TestExportReusesConnectionAndShutdownClosesIt(t *testing.T) {
	tests := []struct {
		name string
		code int
		body string
	}{
		{"accepted", http.StatusAccepted, ""},
		{"rejected with a body", http.StatusBadRequest, strings.Repeat("no ", 10000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(tt.code)
				_, _ = w.Write([]byte(tt.body))
			}))
			ct := trackConns(srv)
			srv.Start()
			t.Cleanup(srv.Close)
			e, err := New(Config{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				_ = export(t, e, testRecord(t))
			}
			ct.mu.Lock()
			opened := ct.opened
			ct.mu.Unlock()
			if opened != 1 {
				t.Fatalf("%d connections for 3 exports, want 1", opened)
			}
			if err := e.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ct.closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Shutdown left the idle connection open")
			}
		})
	}
}

// TestExportTLS sends to an https collector trusted through the tls ca
// option, and fails against the same collector without it.
func TestExportTLS(t *testing.T) {
	c := zipkintest.NewCollector(t)
	srv := httptest.NewTLSServer(c.Config.Handler)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newExporter(t, Config{URL: srv.URL + "/api/v2/spans", TLS: &exporter.TLSConfig{CA: ca}})
	if err := export(t, e, testRecord(t)); err != nil {
		t.Fatalf("Export over TLS with the collector's CA: %v", err)
	}
	if n := len(c.Spans()); n != 2 {
		t.Errorf("collector got %d spans, want 2", n)
	}
	untrusting := newExporter(t, Config{URL: srv.URL + "/api/v2/spans"})
	if err := export(t, untrusting, testRecord(t)); err == nil {
		t.Error("Export trusted a self-signed collector without the ca option")
	}
	if _, err := New(Config{URL: srv.URL, TLS: &exporter.TLSConfig{CA: filepath.Join(t.TempDir(), "missing.pem")}}); err == nil || !strings.Contains(err.Error(), "zipkin tls ca") {
		t.Errorf("a missing CA file gave %v, want a zipkin tls ca error", err)
	}
}
