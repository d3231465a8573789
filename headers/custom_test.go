package headers

import (
	"errors"
	"net/http"
	"testing"
)

// mCustom builds a custom codec with X-Trace-ID, X-Span-ID, X-Parent-ID and
// X-Sampled, failing the test on error.
func mCustom(t testing.TB, uuid bool) Codec {
	t.Helper()
	c, err := NewCustomCodec(CustomConfig{TraceIDHeader: "x-trace-id", SpanIDHeader: "X-Span-ID",
		ParentIDHeader: "X-Parent-ID", SampledHeader: "X-Sampled", UUID: uuid})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCustomConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  CustomConfig
		ok   bool
	}{
		{"trace only", CustomConfig{TraceIDHeader: "X-Trace-ID"}, true},
		{"all", CustomConfig{TraceIDHeader: "X-Trace-ID", SpanIDHeader: "X-Span-ID", ParentIDHeader: "X-Parent-ID", SampledHeader: "X-Sampled"}, true},
		{"no trace header", CustomConfig{SpanIDHeader: "X-Span-ID"}, false},
		{"not a token", CustomConfig{TraceIDHeader: "X Trace"}, false},
		{"same header twice, any case", CustomConfig{TraceIDHeader: "X-Trace-ID", SpanIDHeader: "x-trace-id"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCustomCodec(tt.cfg)
			if (err == nil) != tt.ok || !tt.ok && !errors.Is(err, ErrCustomConfig) {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if tt.ok && c.Format() != FormatCustom {
				t.Errorf("Format %v", c.Format())
			}
		})
	}
	if f := mCustom(t, false).Fields(); len(f) != 4 || f[0] != "X-Trace-Id" || f[3] != "X-Sampled" {
		t.Errorf("Fields %q", f)
	}
}

func TestCustomExtractValid(t *testing.T) {
	t.Parallel()
	c := mCustom(t, false)
	tests := []struct {
		name     string
		h        http.Header
		trace    string
		span     string
		parent   string
		sampling Sampling
		is64     bool
	}{
		{"32 hex", mhdr("X-Trace-ID", jgTraceID, "X-Span-ID", jgSpanID, "X-Sampled", "1"), jgTraceID, jgSpanID, "0", SamplingAccept, false},
		{"uppercase hex", mhdr("X-Trace-ID", "4BF92F3577B34DA6A3CE929D0E0E4736", "X-Span-ID", "ABC", "X-Sampled", "TRUE"), jgTraceID, "abc", "0", SamplingAccept, false},
		{"16 hex is 64-bit", mhdr("X-Trace-ID", "a3ce929d0e0e4736", "X-Span-ID", "1", "X-Sampled", "false"), "a3ce929d0e0e4736", "1", "0", SamplingDeny, true},
		{"uuid", mhdr("X-Trace-ID", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "X-Span-ID", jgSpanID), jgTraceID, jgSpanID, "0", SamplingUnset, false},
		{"short span left-padded, parent", mhdr("X-Trace-ID", jgTraceID, "X-Span-ID", "2a", "X-Parent-ID", "1"), jgTraceID, "2a", "1", SamplingUnset, false},
		{"trace only", mhdr("X-Trace-ID", jgTraceID, "X-Sampled", "0"), jgTraceID, "0", "0", SamplingDeny, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(tt.h, &sc); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			want := SpanContext{TraceID: mTraceID(t, tt.trace), SpanID: mSpanID(t, tt.span), ParentID: mSpanID(t, tt.parent),
				Sampling: tt.sampling, TraceID64: tt.is64}
			if sc != want {
				t.Errorf("got %+v\nwant %+v", sc, want)
			}
		})
	}
}

func TestCustomExtractInvalid(t *testing.T) {
	t.Parallel()
	c := mCustom(t, false)
	tests := []struct {
		name string
		h    http.Header
		err  error
	}{
		{"absent", mhdr("Accept", "*/*"), ErrAbsent},
		{"span without trace", mhdr("X-Span-ID", "1"), ErrCustomScope},
		{"sampled without trace", mhdr("X-Sampled", "1"), ErrCustomScope},
		{"trace of 20 hex", mhdr("X-Trace-ID", "4bf92f3577b34da6a3ce"), ErrCustomTraceID},
		{"trace not hex", mhdr("X-Trace-ID", "zbf92f3577b34da6"), ErrCustomTraceID},
		{"uuid misplaced dash", mhdr("X-Trace-ID", "4bf92f3-577b3-4da6-a3ce-929d0e0e4736"), ErrCustomTraceID},
		{"uuid not hex", mhdr("X-Trace-ID", "4bf92f35-77b3-4da6-a3ce-929d0e0e473g"), ErrCustomTraceID},
		{"zero trace", mhdr("X-Trace-ID", "0000000000000000"), ErrCustomZeroTraceID},
		{"zero uuid", mhdr("X-Trace-ID", "00000000-0000-0000-0000-000000000000"), ErrCustomZeroTraceID},
		{"span too long", mhdr("X-Trace-ID", jgTraceID, "X-Span-ID", "1"+jgSpanID), ErrCustomSpanID},
		{"span empty", mhdr("X-Trace-ID", jgTraceID, "X-Span-ID", ""), ErrCustomSpanID},
		{"span zero", mhdr("X-Trace-ID", jgTraceID, "X-Span-ID", "0"), ErrCustomZeroSpanID},
		{"parent not hex", mhdr("X-Trace-ID", jgTraceID, "X-Span-ID", "1", "X-Parent-ID", "x"), ErrCustomParentID},
		{"sampled yes", mhdr("X-Trace-ID", jgTraceID, "X-Sampled", "yes"), ErrCustomSampled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(tt.h, &sc); !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestCustomInject(t *testing.T) {
	t.Parallel()
	sc := SpanContext{TraceID: mTraceID(t, jgTraceID), SpanID: mSpanID(t, jgSpanID), ParentID: mSpanID(t, "1"), Sampling: SamplingDebug}
	h := minject(mCustom(t, false), &sc)
	want := map[string]string{"X-Trace-Id": jgTraceID, "X-Span-Id": jgSpanID, "X-Parent-Id": "0000000000000001", "X-Sampled": "1"}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if len(h) != len(want) {
		t.Errorf("wrote %v", h)
	}
	if got := minject(mCustom(t, true), &sc).Get("X-Trace-Id"); got != "4bf92f35-77b3-4da6-a3ce-929d0e0e4736" {
		t.Errorf("UUID form %q", got)
	}
	sc = SpanContext{TraceID: mTraceID(t, "a3ce929d0e0e4736"), TraceID64: true, SpanID: mSpanID(t, jgSpanID), Sampling: SamplingDeny}
	h = minject(mCustom(t, false), &sc)
	if h.Get("X-Trace-Id") != "a3ce929d0e0e4736" || h.Get("X-Sampled") != "0" || len(h) != 3 {
		t.Errorf("64-bit, no parent: %v", h)
	}
	if h := minject(mCustom(t, false), &SpanContext{Sampling: SamplingAccept}); len(h) != 0 {
		t.Errorf("no trace id: wrote %v", h)
	}
}

func TestCustomRoundTrip(t *testing.T) {
	t.Parallel()
	for _, uuid := range []bool{false, true} {
		c := mCustom(t, uuid)
		var sc SpanContext
		if err := c.Extract(mhdr("X-Trace-ID", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "X-Span-ID", jgSpanID, "X-Parent-ID", "5", "X-Sampled", "1"), &sc); err != nil {
			t.Fatal(err)
		}
		var again SpanContext
		if err := c.Extract(minject(c, &sc), &again); err != nil || again != sc {
			t.Errorf("uuid %v round trip: %v\n%+v\n%+v", uuid, err, again, sc)
		}
	}
}

func TestCustomExtractAllocs(t *testing.T) {
	c := mCustom(t, false)
	for name, h := range map[string]http.Header{
		"valid":   mhdr("X-Trace-ID", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "X-Span-ID", jgSpanID, "X-Sampled", "1"),
		"invalid": mhdr("X-Trace-ID", "bogus"),
		"absent":  mhdr("Accept", "*/*"),
	} {
		t.Run(name, func(t *testing.T) {
			var sc SpanContext
			if got := testing.AllocsPerRun(100, func() { _ = c.Extract(h, &sc) }); got != 0 {
				t.Errorf("%v allocations, want 0", got)
			}
		})
	}
}
