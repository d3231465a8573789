package zipkin

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// lines collects what a LogExporter writes, copying each line as the
// contract requires.
type lines [][]byte

func (l *lines) write(line []byte) { *l = append(*l, bytes.Clone(line)) }

func TestLogExporter(t *testing.T) {
	r1 := testRecord(t)
	r2 := testRecord(t)
	r2.Server.Name = "second"
	r2.Clients = append(r2.Clients, r2.Clients[0])
	r2.Clients[1].ID = spanID(t, "1111111111111111")
	r2.Clients[1].Peer = "[2001:db8::2]:8080"

	var got lines
	l := NewLog(got.write)
	if err := l.Export(context.Background(), []*exporter.Record{r1, nil, r2}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	want := []struct{ id, kind, parent string }{
		{testServerHex, "SERVER", testCallerHex},
		{testClientHex, "CLIENT", testServerHex},
		{testServerHex, "SERVER", testCallerHex},
		{testClientHex, "CLIENT", testServerHex},
		{"1111111111111111", "CLIENT", testServerHex},
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want one per span (%d)", len(got), len(want))
	}
	for i, w := range want {
		if bytes.ContainsAny(got[i], "\n\r") {
			t.Errorf("line %d spans several lines: %q", i, got[i])
		}
		s, err := zipkintest.DecodeSpan(got[i])
		if err != nil {
			t.Fatalf("line %d: %v\n%s", i, err, got[i])
		}
		if s.ID != w.id || deref(s.Kind) != w.kind || deref(s.ParentID) != w.parent {
			t.Errorf("line %d: id %s kind %s parent %s, want %+v", i, s.ID, deref(s.Kind), deref(s.ParentID), w)
		}
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Export stops between records once its context is done.
func TestLogExporterHonoursContext(t *testing.T) {
	batch := []*exporter.Record{testRecord(t), testRecord(t), testRecord(t)}
	tests := []struct {
		name      string
		cancelAt  int // cancel after this many lines; -1 before Export
		wantLines int
	}{
		{"done before export", -1, 0},
		{"cancelled during the first record", 1, 2},
		{"cancelled during the second record", 3, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelAt < 0 {
				cancel()
			}
			n := 0
			l := NewLog(func([]byte) {
				n++
				if n == tt.cancelAt {
					cancel()
				}
			})
			err := l.Export(ctx, batch)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Export error %v, want Canceled", err)
			}
			if retry, _ := exporter.IsRetryable(err); retry {
				t.Error("a partly written batch must not be retried")
			}
			if n != tt.wantLines {
				t.Fatalf("%d lines written, want %d", n, tt.wantLines)
			}
		})
	}
}
