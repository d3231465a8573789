package headers

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"go.opentelemetry.io/contrib/propagators/ot"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestOTExtractValid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatOT)
	tests := []struct {
		name     string
		h        http.Header
		trace    string
		span     string
		sampling Sampling
		is64     bool
	}{
		{"64-bit sampled", mhdr("ot-tracer-traceid", "a3ce929d0e0e4736", "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "true"),
			"a3ce929d0e0e4736", jgSpanID, SamplingAccept, true},
		{"128-bit not sampled", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "false"),
			jgTraceID, jgSpanID, SamplingDeny, false},
		{"sampled absent", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID), jgTraceID, jgSpanID, SamplingUnset, false},
		{"sampled 1 and any case", mhdr("ot-tracer-traceid", "1", "ot-tracer-spanid", "2", "ot-tracer-sampled", "TRUE"), "1", "2", SamplingAccept, true},
		{"sampled 0", mhdr("ot-tracer-traceid", "1", "ot-tracer-spanid", "2", "ot-tracer-sampled", "0"), "1", "2", SamplingDeny, true},
		{"unpadded ids as basictracer writes them", mhdr("ot-tracer-traceid", "abc", "ot-tracer-spanid", "de"), "abc", "de", SamplingUnset, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(tt.h, &sc); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			want := SpanContext{TraceID: mTraceID(t, tt.trace), SpanID: mSpanID(t, tt.span), Sampling: tt.sampling, TraceID64: tt.is64}
			if sc != want {
				t.Errorf("got %+v\nwant %+v", sc, want)
			}
		})
	}
}

func TestOTExtractInvalid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatOT)
	tests := []struct {
		name string
		h    http.Header
		err  error
	}{
		{"absent", mhdr("ot-baggage-a", "1"), ErrAbsent},
		{"trace without span", mhdr("ot-tracer-traceid", "1"), ErrOTScope},
		{"span without trace", mhdr("ot-tracer-spanid", "1"), ErrOTScope},
		{"sampled alone", mhdr("ot-tracer-sampled", "true"), ErrOTScope},
		{"trace id not hex", mhdr("ot-tracer-traceid", "x", "ot-tracer-spanid", "2"), ErrOTTraceID},
		{"trace id too long", mhdr("ot-tracer-traceid", "1"+jgTraceID, "ot-tracer-spanid", "2"), ErrOTTraceID},
		{"empty trace id", mhdr("ot-tracer-traceid", "", "ot-tracer-spanid", "2"), ErrOTTraceID},
		{"zero trace id", mhdr("ot-tracer-traceid", "0", "ot-tracer-spanid", "2"), ErrOTZeroTraceID},
		{"span id too long", mhdr("ot-tracer-traceid", "1", "ot-tracer-spanid", "1"+jgSpanID), ErrOTSpanID},
		{"zero span id", mhdr("ot-tracer-traceid", "1", "ot-tracer-spanid", "0000"), ErrOTZeroSpanID},
		{"sampled yes", mhdr("ot-tracer-traceid", "1", "ot-tracer-spanid", "2", "ot-tracer-sampled", "yes"), ErrOTSampled},
		{"sampled empty", mhdr("ot-tracer-traceid", "1", "ot-tracer-spanid", "2", "ot-tracer-sampled", ""), ErrOTSampled},
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

func TestOTInject(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatOT)
	tid, sid := mTraceID(t, jgTraceID), mSpanID(t, jgSpanID)
	tests := []struct {
		name    string
		sc      SpanContext
		trace   string
		sampled string
	}{
		{"sampled", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingAccept}, jgTraceID, "true"},
		{"debug as sampled", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingDebug}, jgTraceID, "true"},
		{"denied", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingDeny}, jgTraceID, "false"},
		{"unset", SpanContext{TraceID: tid, SpanID: sid}, jgTraceID, ""},
		{"64-bit", SpanContext{TraceID: mTraceID(t, "1"), SpanID: sid, TraceID64: true, Sampling: SamplingAccept}, "0000000000000001", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := minject(c, &tt.sc)
			if h.Get("ot-tracer-traceid") != tt.trace || h.Get("ot-tracer-spanid") != jgSpanID || h.Get("ot-tracer-sampled") != tt.sampled {
				t.Errorf("wrote %v", h)
			}
		})
	}
	if h := minject(c, &SpanContext{Sampling: SamplingAccept}); len(h) != 0 {
		t.Errorf("no ids: wrote %v", h)
	}
}

func TestOTRoundTripWithBaggage(t *testing.T) {
	c := mcodec(t, FormatOT)
	h := mhdr("ot-tracer-traceid", "a3ce929d0e0e4736", "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "true",
		"ot-baggage-user", "alice", "ot-baggage-note", "a b%2C")
	var sc SpanContext
	if err := c.Extract(h, &sc); err != nil {
		t.Fatal(err)
	}
	out := minject(c, &sc)
	var again SpanContext
	if err := c.Extract(out, &again); err != nil || again != sc {
		t.Errorf("round trip: %v\n%+v\n%+v", err, again, sc)
	}
	if got := baggageMap(t, again.Baggage)["note"]; !slices.Equal(got, []string{"a b,"}) {
		t.Errorf("note = %q", got)
	}
}

func TestOTExtractAllocs(t *testing.T) {
	c := mcodec(t, FormatOT)
	for name, h := range map[string]http.Header{
		"valid":   mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "true"),
		"invalid": mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "maybe"),
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

// TestOTMatchesOpenTelemetry compares extraction, baggage included, with
// go.opentelemetry.io/contrib/propagators/ot; each disagreement says why.
func TestOTMatchesOpenTelemetry(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatOT)
	tests := []struct {
		name     string
		h        http.Header
		disagree string
	}{
		{"128-bit", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "true"), ""},
		{"64-bit", mhdr("ot-tracer-traceid", "a3ce929d0e0e4736", "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "false"), ""},
		{"bad sampled", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID, "ot-tracer-sampled", "yes"), ""},
		{"scope", mhdr("ot-tracer-traceid", jgTraceID), ""},
		{"zero span", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", "0000000000000000"), ""},
		{"baggage", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID, "ot-baggage-user", "alice", "ot-baggage-node", "DF%2028"), ""},
		{"unpadded ids", mhdr("ot-tracer-traceid", "abc", "ot-tracer-spanid", "de"),
			"OpenTelemetry wants exactly 16 or 32 hex; the Go basic tracer writes ids with strconv.FormatUint, without leading zeros"},
		{"baggage value with a space", mhdr("ot-tracer-traceid", jgTraceID, "ot-tracer-spanid", jgSpanID, "ot-baggage-note", "a b"),
			"OpenTelemetry drops a value that is not a valid W3C baggage value; OpenTracing has no such rule, so we keep it, percent-encoded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			err := c.Extract(tt.h, &sc)
			ctx := ot.OT{}.Extract(context.Background(), propagation.HeaderCarrier(tt.h))
			ref := trace.SpanContextFromContext(ctx)
			same := (err == nil) == ref.IsValid()
			if err == nil && ref.IsValid() {
				refBag := map[string][]string{}
				for _, m := range baggage.FromContext(ctx).Members() {
					refBag[m.Key()] = append(refBag[m.Key()], m.Value())
				}
				same = trace.TraceID(sc.TraceID) == ref.TraceID() && trace.SpanID(sc.SpanID) == ref.SpanID() &&
					sc.Sampling.Sampled() == ref.IsSampled() && equalBags(baggageMap(t, sc.Baggage), refBag)
			}
			switch {
			case tt.disagree == "" && !same:
				t.Errorf("ours %+v (err %v), OpenTelemetry %v/%v", sc, err, ref.TraceID(), ref.SpanID())
			case tt.disagree != "" && same:
				t.Errorf("expected a disagreement (%s)", tt.disagree)
			}
		})
	}
}

// equalBags compares decoded baggage maps.
func equalBags(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
