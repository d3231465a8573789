package otlp

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/otlptest"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// OTLP/GRPC carries exactly the bytes the encoder wrote (the collector's
// strict decoding equals the encoder's), gzipped when asked, with the
// headers as metadata.
func TestExportGRPC(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run("gzip="+strconv.FormatBool(gz), func(t *testing.T) {
			c := otlptest.NewGRPC(t)
			e := newExporter(t, Config{URL: c.URL(), Gzip: gz, Version: "v9", Headers: map[string]string{"Authorization": "Bearer t", "x-scope-orgid": "tenant"}})
			batch := []*exporter.Record{testRecord(), testRecord()}
			for range 3 {
				if err := export(e, batch...); err != nil {
					t.Fatal(err)
				}
			}
			reqs, rejected := c.Requests()
			if len(reqs) != 3 || len(rejected) != 0 {
				t.Fatalf("%d requests accepted, rejected %v", len(reqs), rejected)
			}
			want := decode(t, (&Encoder{Version: "v9"}).AppendRequest(nil, batch))
			if !proto.Equal(reqs[2], want) {
				t.Fatalf("collector decoded\n%s\nwant\n%s", prototext.Format(reqs[2]), prototext.Format(want))
			}
			md := c.Headers()[0]
			if md["authorization"][0] != "Bearer t" || md["x-scope-orgid"][0] != "tenant" || md["b3"][0] != "0" ||
				!strings.HasPrefix(md["user-agent"][0], "tracingproxy/v9") {
				t.Fatalf("metadata %v", md)
			}
			p := c.Payloads()[0]
			if gz != (p.WireLength < p.Length/2) {
				t.Fatalf("request of %d bytes took %d on the wire with gzip %v", p.Length, p.WireLength, gz)
			}
		})
	}
}

// grpcs:// verifies the collector's certificate with the configured CA.
func TestExportGRPCS(t *testing.T) {
	creds, ca := otlptest.TLS(t)
	c := otlptest.NewGRPC(t, creds)
	url := "grpcs://" + c.Addr()
	if err := export(newExporter(t, Config{URL: url, TLS: &exporter.TLSConfig{CA: ca}}), testRecord()); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Spans()); n != 3 {
		t.Fatalf("%d spans over TLS, want 3", n)
	}
	// Without the CA the certificate is not trusted: no span goes out.
	err := export(newExporter(t, Config{URL: url}), testRecord())
	if err == nil || len(c.Spans()) != 3 {
		t.Fatalf("untrusted collector: %v, %d spans", err, len(c.Spans()))
	}
}

// The OTLP specification's gRPC rules: which codes are retried, and
// RetryInfo's delay (capped) as the wait.
func TestExportGRPCCodes(t *testing.T) {
	for _, tt := range []struct {
		code      codes.Code
		retryInfo bool
		delay     time.Duration
		retry     bool
		after     time.Duration
	}{
		{codes.Unavailable, false, 0, true, 0},
		{codes.Unavailable, true, 1500 * time.Millisecond, true, 1500 * time.Millisecond},
		{codes.ResourceExhausted, false, 0, false, 0},
		{codes.ResourceExhausted, true, 2 * time.Second, true, 2 * time.Second},
		{codes.ResourceExhausted, true, 48 * time.Hour, true, 24 * time.Hour},
		{codes.Canceled, false, 0, true, 0},
		{codes.DeadlineExceeded, false, 0, true, 0},
		{codes.Aborted, false, 0, true, 0},
		{codes.OutOfRange, false, 0, true, 0},
		{codes.DataLoss, false, 0, true, 0},
		{codes.InvalidArgument, false, 0, false, 0},
		{codes.Unauthenticated, false, 0, false, 0},
		{codes.PermissionDenied, false, 0, false, 0},
		{codes.Internal, false, 0, false, 0},
		{codes.Unimplemented, false, 0, false, 0},
	} {
		t.Run(tt.code.String()+"/retryinfo="+strconv.FormatBool(tt.retryInfo), func(t *testing.T) {
			c := otlptest.NewGRPC(t)
			c.Set(t, otlptest.Fault{Mode: otlptest.ModeStatus, Code: tt.code, RetryInfo: tt.retryInfo, RetryDelay: tt.delay})
			err := export(newExporter(t, Config{URL: c.URL()}), testRecord())
			if err == nil {
				t.Fatal("export succeeded")
			}
			if retry, after := exporter.IsRetryable(err); retry != tt.retry || after != tt.after {
				t.Fatalf("IsRetryable = %v, %s; want %v, %s (%v)", retry, after, tt.retry, tt.after, err)
			}
			if !strings.Contains(err.Error(), tt.code.String()) {
				t.Errorf("error %q does not name the code", err)
			}
		})
	}
}

// A collector that is down, then up: the export is retryable, then the
// connection is made again by itself.
func TestExportGRPCRefusedThenBack(t *testing.T) {
	c := otlptest.NewGRPC(t)
	e := newExporter(t, Config{URL: c.URL()})
	if err := export(e, testRecord()); err != nil {
		t.Fatal(err)
	}
	c.Set(t, otlptest.Fault{Mode: otlptest.ModeRefuse})
	if retry, _ := exporter.IsRetryable(export(e, testRecord())); !retry {
		t.Fatal("export to a refusing collector is not retryable")
	}
	c.Set(t, otlptest.Fault{Mode: otlptest.ModeOK})
	deadline := time.Now().Add(15 * time.Second)
	for export(e, testRecord()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no export succeeded after the collector came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A hanging collector costs one export timeout, and the export is
// retryable.
func TestExportGRPCHang(t *testing.T) {
	c := otlptest.NewGRPC(t)
	c.Set(t, otlptest.Fault{Mode: otlptest.ModeHang})
	e := newExporter(t, Config{URL: c.URL()})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.Export(ctx, []*exporter.Record{testRecord()})
	if retry, _ := exporter.IsRetryable(err); !retry {
		t.Fatalf("hang: %v, want retryable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("export returned %s after its 200ms deadline", d)
	}
}

func TestExportGRPCPartialSuccess(t *testing.T) {
	c := otlptest.NewGRPC(t)
	c.Set(t, otlptest.Fault{Mode: otlptest.ModePartial, Reject: 2})
	err := export(newExporter(t, Config{URL: c.URL()}), testRecord(), testRecord())
	if n, ok := exporter.IsPartial(err); !ok || n != 2 {
		t.Fatalf("Export = %v, want a partial success of 2", err)
	}
	if n := len(c.Spans()); n != 4 {
		t.Fatalf("collector kept %d spans, want 6 - 2", n)
	}
}

// Many exports in a row reuse the request buffer only once gRPC has let
// it go: under -race a reuse while gRPC still writes it is a data race,
// and the collector would decode garbage.
func TestExportGRPCReusesBuffersSafely(t *testing.T) {
	c := otlptest.NewGRPC(t)
	e := newExporter(t, Config{URL: c.URL()})
	big := testRecord()
	big.Server.Tags = append(big.Server.Tags, exporter.Tag{Key: "pad", Value: strings.Repeat("p", 64<<10)})
	for i := range 50 {
		batch := []*exporter.Record{testRecord()}
		if i%2 == 0 {
			batch = append(batch, big)
		}
		if err := export(e, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if _, rejected := c.Requests(); len(rejected) > 0 {
		t.Fatalf("collector rejected %v", rejected[0])
	}
	if n := len(c.Spans()); n != 50*3+25*3 {
		t.Fatalf("%d spans, want %d", n, 50*3+25*3)
	}
}
