package otlp

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP/HTTP collector on the official stubs: it decodes
// every request strictly and answers as told.
type receiver struct {
	t          *testing.T
	mu         sync.Mutex
	reqs       []*coltracepb.ExportTraceServiceRequest
	hdrs       []http.Header
	status     int
	retryAfter string
	reply      *coltracepb.ExportTraceServiceResponse
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			rc.t.Errorf("bad gzip: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		rc.t.Errorf("read: %v", err)
		return
	}
	ct := r.Header.Get("Content-Type")
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || (ct != "application/x-protobuf" && ct != "application/json") {
		rc.t.Errorf("request %s %s %q", r.Method, r.URL.Path, ct)
	}
	var req *coltracepb.ExportTraceServiceRequest
	if ct == "application/json" {
		req = decodeJSON(rc.t, b)
	} else {
		req = decode(rc.t, b)
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, req)
	rc.hdrs = append(rc.hdrs, r.Header.Clone())
	status, ra, reply := rc.status, rc.retryAfter, rc.reply
	rc.mu.Unlock()
	if ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", ct)
	if reply != nil {
		out, _ := proto.Marshal(reply)
		if ct == "application/json" {
			out, _ = protojson.Marshal(reply)
		}
		_, _ = w.Write(out)
	}
}

func (rc *receiver) spans() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, r := range rc.reqs {
		for _, rs := range r.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				n += len(ss.Spans)
			}
		}
	}
	return n
}

func newReceiver(t *testing.T) (*receiver, string) {
	rc := &receiver{t: t}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv.URL + "/v1/traces"
}

func newExporter(t *testing.T, cfg Config) *Exporter {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

func export(e *Exporter, batch ...*exporter.Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.Export(ctx, batch)
}

func TestExportHTTP(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run("gzip="+strconv.FormatBool(gz), func(t *testing.T) {
			rc, url := newReceiver(t)
			e := newExporter(t, Config{URL: url, Gzip: gz, Version: "v9", Headers: map[string]string{"X-Api-Key": "k", "B3": "1"}})
			for range 3 {
				if err := export(e, testRecord(), testRecord()); err != nil {
					t.Fatal(err)
				}
			}
			if n := rc.spans(); n != 18 {
				t.Fatalf("receiver decoded %d spans, want 18", n)
			}
			h := rc.hdrs[0]
			if h.Get("X-Api-Key") != "k" || h.Get("B3") != "0" || h.Get("User-Agent") != "tracingproxy/v9" {
				t.Fatalf("headers %v", h)
			}
		})
	}
}

// OTLP/HTTP with encoding json: the receiver decodes the same spans, and
// a JSON partial success (rejectedSpans as the string protojson writes)
// is read.
func TestExportHTTPJSON(t *testing.T) {
	rc, url := newReceiver(t)
	e := newExporter(t, Config{URL: strings.TrimSuffix(url, "/v1/traces"), Encoding: EncodingJSON, Gzip: true})
	if err := export(e, testRecord(), testRecord()); err != nil {
		t.Fatal(err)
	}
	if n := rc.spans(); n != 6 {
		t.Fatalf("receiver decoded %d spans, want 6", n)
	}
	if ct := rc.hdrs[0].Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	rc.reply = &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 3, ErrorMessage: "too old"}}
	if n, ok := exporter.IsPartial(export(e, testRecord())); !ok || n != 3 {
		t.Fatalf("JSON partial success: %d %v, want 3 rejected", n, ok)
	}
}

func TestExportStatusMapping(t *testing.T) {
	for _, tt := range []struct {
		status     int
		retryAfter string
		retry      bool
		after      time.Duration
	}{
		{400, "", false, 0},
		{404, "", false, 0},
		{500, "", false, 0},
		{501, "", false, 0},
		{429, "3", true, 3 * time.Second},
		{502, "", true, 0},
		{503, "9999999", true, 24 * time.Hour},
		{504, "", true, 0},
		{307, "", false, 0},
	} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			rc, url := newReceiver(t)
			rc.status, rc.retryAfter = tt.status, tt.retryAfter
			err := export(newExporter(t, Config{URL: url}), testRecord())
			if err == nil {
				t.Fatal("export succeeded")
			}
			if retry, after := exporter.IsRetryable(err); retry != tt.retry || after != tt.after {
				t.Fatalf("IsRetryable = %v, %s; want %v, %s (%v)", retry, after, tt.retry, tt.after, err)
			}
		})
	}
}

func TestExportRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/v1/traces"
	srv.Close()
	err := export(newExporter(t, Config{URL: url}), testRecord())
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Fatalf("refused connection: %v, want retryable", err)
	}
}

// Partial success counts the rejected spans as dropped with their own
// reason and the batch's records as exported; nothing is retried.
func TestPartialSuccessAccounting(t *testing.T) {
	rc, url := newReceiver(t)
	rc.reply = &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 2, ErrorMessage: "too old"}}
	e := newExporter(t, Config{URL: url})
	err := export(e, testRecord())
	if n, ok := exporter.IsPartial(err); !ok || n != 2 {
		t.Fatalf("Export = %v, want a partial success of 2", err)
	}
	q := exporter.NewQueue(e, exporter.QueueConfig{BatchSize: 4, FlushInterval: time.Hour})
	for range 4 {
		q.Enqueue(testRecord())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s := q.Stats()
	if s.ExportedRecords != 4 || s.ExportedSpans != 10 || s.DroppedSpans[exporter.ReasonPartialRejected] != 2 ||
		s.Dropped[exporter.ReasonPartialRejected] != 0 || s.Retries != 0 {
		t.Fatalf("stats %+v: want 4 records and 10 spans exported, 2 spans dropped as %s, no retry", s, exporter.ReasonPartialRejected)
	}
	rc.reply = &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{ErrorMessage: "warning only"}}
	if err := export(e, testRecord()); err != nil {
		t.Fatalf("partial success without rejected spans = %v, want success", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "127.0.0.1:4318"},
		{URL: "ftp://x/v1/traces"},
		{URL: "http://x/v1/traces", Headers: map[string]string{"Bad Name": "v"}},
		{URL: "https://x/v1/traces", TLS: &exporter.TLSConfig{CA: "/nonexistent.pem"}},
		{URL: "http://x/v1/traces", TLS: &exporter.TLSConfig{}},
		{URL: "http://x", Encoding: "xml"},
		{URL: "grpc://x:4317", Encoding: EncodingJSON},
		{URL: "grpc://x:4317/path"},
		{URL: "grpc://x:4317", Headers: map[string]string{"grpc-status": "0"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
