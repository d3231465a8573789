package headers

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"go.opentelemetry.io/contrib/propagators/jaeger"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const (
	jgTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	jgSpanID  = "00f067aa0ba902b7"
)

// mTraceID and mSpanID parse lowercase hex ids of any length up to their
// width, failing the test otherwise.
func mTraceID(t testing.TB, s string) TraceID {
	t.Helper()
	var id TraceID
	if !decodeVarHex(id[:], s) {
		t.Fatalf("bad trace id %q", s)
	}
	return id
}

func mSpanID(t testing.TB, s string) SpanID {
	t.Helper()
	var id SpanID
	if !decodeVarHex(id[:], s) {
		t.Fatalf("bad span id %q", s)
	}
	return id
}

func TestJaegerExtractValid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatJaeger)
	tests := []struct {
		name     string
		value    string
		trace    string
		span     string
		parent   string
		sampling Sampling
		is64     bool
	}{
		{"128-bit sampled", jgTraceID + ":" + jgSpanID + ":0:1", jgTraceID, jgSpanID, "0", SamplingAccept, false},
		{"64-bit not sampled", "a3ce929d0e0e4736:" + jgSpanID + ":0:0", "a3ce929d0e0e4736", jgSpanID, "0", SamplingDeny, true},
		{"short ids are left-padded", "1:2:0:1", "1", "2", "0", SamplingAccept, true},
		{"17 digits is a 128-bit id", "1a3ce929d0e0e4736:2:0:1", "1a3ce929d0e0e4736", "2", "0", SamplingAccept, false},
		{"debug and sampled", "1:2:0:3", "1", "2", "0", SamplingDebug, true},
		{"debug alone", "1:2:0:2", "1", "2", "0", SamplingDebug, true},
		{"firehose bit ignored", "1:2:0:9", "1", "2", "0", SamplingAccept, true},
		{"two-digit flags", "1:2:0:01", "1", "2", "0", SamplingAccept, true},
		{"parent kept", "1:2:3:1", "1", "2", "3", SamplingAccept, true},
		{"uppercase hex", "ABC:DEF:0:1", "abc", "def", "0", SamplingAccept, true},
		{"URL-encoded separators", jgTraceID + "%3A" + jgSpanID + "%3a0%3A1", jgTraceID, jgSpanID, "0", SamplingAccept, false},
		{"mixed separators", "1%3A2:0%3A1", "1", "2", "0", SamplingAccept, true},
		{"surrounding OWS", " 1:2:0:1\t", "1", "2", "0", SamplingAccept, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(mhdr("uber-trace-id", tt.value), &sc); err != nil {
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

// jaegerInvalidCases are uber-trace-id values the codec must refuse.
var jaegerInvalidCases = []struct {
	name  string
	value string
	err   error
}{
	{"empty", "", ErrJaegerFields},
	{"three fields", "1:2:1", ErrJaegerFields},
	{"five fields", "1:2:0:1:0", ErrJaegerFields},
	{"other escape is not a separator", "1%3B2:0:1", ErrJaegerFields},
	{"empty trace id", ":2:0:1", ErrJaegerTraceID},
	{"trace id of 33 digits", "1" + jgTraceID + ":2:0:1", ErrJaegerTraceID},
	{"trace id not hex", "xyz:2:0:1", ErrJaegerTraceID},
	{"zero trace id", "0000:2:0:1", ErrJaegerZeroTraceID},
	{"empty span id", "1::0:1", ErrJaegerSpanID},
	{"span id of 17 digits", "1:1" + jgSpanID + ":0:1", ErrJaegerSpanID},
	{"zero span id", "1:0:0:1", ErrJaegerZeroSpanID},
	{"parent not hex", "1:2:x:1", ErrJaegerParentID},
	{"empty parent", "1:2::1", ErrJaegerParentID},
	{"empty flags", "1:2:0:", ErrJaegerFlags},
	{"flags of 3 digits", "1:2:0:001", ErrJaegerFlags},
	{"flags not hex", "1:2:0:z", ErrJaegerFlags},
	{"id with a sign", "-1:2:0:1", ErrJaegerTraceID},
}

func TestJaegerExtractInvalid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatJaeger)
	for _, tt := range jaegerInvalidCases {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			err := c.Extract(mhdr("uber-trace-id", tt.value), &sc)
			if !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
		})
	}
	t.Run("absent", func(t *testing.T) {
		var sc SpanContext
		if err := c.Extract(mhdr("uberctx-a", "1"), &sc); err != ErrAbsent {
			t.Errorf("err = %v, want ErrAbsent", err)
		}
	})
	t.Run("ids errors match the shared sentinels", func(t *testing.T) {
		if !errors.Is(ErrJaegerSpanID, ErrMalformedID) || !errors.Is(ErrJaegerZeroTraceID, ErrZeroID) {
			t.Error("sentinels do not wrap")
		}
	})
}

func TestJaegerFirstFieldWins(t *testing.T) {
	var sc SpanContext
	if err := mcodec(t, FormatJaeger).Extract(mhdr("uber-trace-id", "1:2:0:1", "uber-trace-id", "bogus"), &sc); err != nil {
		t.Fatal(err)
	}
	if sc.SpanID != mSpanID(t, "2") {
		t.Errorf("SpanID = %v", sc.SpanID)
	}
}

func TestJaegerInject(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatJaeger)
	tid, sid := mTraceID(t, jgTraceID), mSpanID(t, jgSpanID)
	tests := []struct {
		name string
		sc   SpanContext
		want string
	}{
		{"sampled", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingAccept}, jgTraceID + ":" + jgSpanID + ":0:1"},
		{"denied", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingDeny}, jgTraceID + ":" + jgSpanID + ":0:0"},
		{"unset as not sampled", SpanContext{TraceID: tid, SpanID: sid}, jgTraceID + ":" + jgSpanID + ":0:0"},
		{"debug", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingDebug}, jgTraceID + ":" + jgSpanID + ":0:3"},
		{"64-bit stays 16 wide", SpanContext{TraceID: mTraceID(t, "a3ce929d0e0e4736"), SpanID: sid, TraceID64: true, Sampling: SamplingAccept},
			"a3ce929d0e0e4736:" + jgSpanID + ":0:1"},
		{"parent is never sent", SpanContext{TraceID: tid, SpanID: sid, ParentID: sid, Sampling: SamplingAccept}, jgTraceID + ":" + jgSpanID + ":0:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := minject(c, &tt.sc)
			if got := h.Get("uber-trace-id"); got != tt.want || len(h) != 1 {
				t.Errorf("wrote %v, want uber-trace-id %q", h, tt.want)
			}
		})
	}
	t.Run("no ids, nothing written", func(t *testing.T) {
		if h := minject(c, &SpanContext{Sampling: SamplingDeny, Baggage: "a=1"}); len(h) != 0 {
			t.Errorf("wrote %v", h)
		}
	})
}

func TestJaegerRoundTrip(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatJaeger)
	for _, v := range []string{jgTraceID + ":" + jgSpanID + ":0:1", "a3ce929d0e0e4736:" + jgSpanID + ":0:0", jgTraceID + ":" + jgSpanID + ":0:3"} {
		h := mhdr("uber-trace-id", v, "uberctx-user", "a b", "uberctx-tenant", "t+1")
		var sc SpanContext
		if err := c.Extract(h, &sc); err != nil {
			t.Fatal(err)
		}
		out := minject(c, &sc)
		if out.Get("uber-trace-id") != v {
			t.Errorf("%q re-emitted as %q", v, out.Get("uber-trace-id"))
		}
		var again SpanContext
		if err := c.Extract(out, &again); err != nil || again != sc {
			t.Errorf("round trip: %v\n%+v\n%+v", err, again, sc)
		}
	}
}

func TestJaegerExtractAllocs(t *testing.T) {
	c := mcodec(t, FormatJaeger)
	for name, h := range map[string]http.Header{
		"valid":             mhdr("uber-trace-id", jgTraceID+":"+jgSpanID+":0:1", "Accept", "*/*"),
		"valid url-encoded": mhdr("uber-trace-id", jgTraceID+"%3A"+jgSpanID+"%3A0%3A1"),
		"invalid":           mhdr("uber-trace-id", jgTraceID+":"+jgSpanID+":0:zz"),
		"absent":            mhdr("Accept", "*/*"),
	} {
		t.Run(name, func(t *testing.T) {
			var sc SpanContext
			if got := testing.AllocsPerRun(100, func() { _ = c.Extract(h, &sc) }); got != 0 {
				t.Errorf("%v allocations, want 0", got)
			}
		})
	}
	t.Run("baggage: one string", func(t *testing.T) {
		h := mhdr("uber-trace-id", "1:2:0:1", "uberctx-a", "1", "uberctx-b", "2")
		var sc SpanContext
		if got := testing.AllocsPerRun(100, func() { _ = c.Extract(h, &sc) }); got != 1 {
			t.Errorf("%v allocations, want 1", got)
		}
	})
}

// otelJaeger extracts with the OpenTelemetry Jaeger propagator.
func otelJaeger(v string) trace.SpanContext {
	ctx := jaeger.Jaeger{}.Extract(context.Background(), propagation.HeaderCarrier(mhdr("uber-trace-id", v)))
	return trace.SpanContextFromContext(ctx)
}

// TestJaegerMatchesOpenTelemetry compares extraction with
// go.opentelemetry.io/contrib/propagators/jaeger. The spec (Jaeger's client
// documentation) wins where they disagree; each case says why.
func TestJaegerMatchesOpenTelemetry(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatJaeger)
	tests := []struct {
		value    string
		disagree string
	}{
		{jgTraceID + ":" + jgSpanID + ":0:1", ""},
		{"a3ce929d0e0e4736:" + jgSpanID + ":0:0", ""},
		{"1:2:0:1", ""},
		{"1:2:0:3", ""},
		{"0:2:0:1", ""},
		{"1:0:0:1", ""},
		{"1:2:0", ""},
		{"xyz:2:0:1", ""},
		{"1" + jgTraceID + ":2:0:1", ""},
		{"1:2:0:z", ""},
		{"ABC:DEF:0:1", "OpenTelemetry rejects uppercase hex; Jaeger clients parse ids with strconv.ParseUint, which accepts it"},
		{jgTraceID + "%3A" + jgSpanID + "%3A0%3A1", "OpenTelemetry does not URL-decode; Jaeger's HTTP propagation may encode ':' as %3A"},
		{"1:2:x:1", "OpenTelemetry ignores the parent field entirely; we refuse a non-hex one, as Jaeger clients do"},
		{"1:2:0:", "OpenTelemetry accepts empty flags as not sampled; Jaeger clients require a number"},
		{":2:0:1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			var sc SpanContext
			err := c.Extract(mhdr("uber-trace-id", tt.value), &sc)
			ref := otelJaeger(tt.value)
			same := (err == nil) == ref.IsValid()
			if err == nil && ref.IsValid() {
				same = trace.TraceID(sc.TraceID) == ref.TraceID() && trace.SpanID(sc.SpanID) == ref.SpanID() &&
					sc.Sampling.Sampled() == ref.IsSampled()
			}
			switch {
			case tt.disagree == "" && !same:
				t.Errorf("ours %+v (err %v), OpenTelemetry %v/%v sampled %v", sc, err, ref.TraceID(), ref.SpanID(), ref.IsSampled())
			case tt.disagree != "" && same:
				t.Errorf("expected a disagreement (%s)", tt.disagree)
			}
		})
	}
}

func TestJaegerInjectMatchesOpenTelemetry(t *testing.T) {
	c := mcodec(t, FormatJaeger)
	sc := SpanContext{TraceID: mTraceID(t, jgTraceID), SpanID: mSpanID(t, jgSpanID), Sampling: SamplingAccept}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID(sc.TraceID), SpanID: trace.SpanID(sc.SpanID), TraceFlags: trace.FlagsSampled,
	}))
	ref := http.Header{}
	jaeger.Jaeger{}.Inject(ctx, propagation.HeaderCarrier(ref))
	if got, want := minject(c, &sc).Get("uber-trace-id"), ref.Get("uber-trace-id"); got != want {
		t.Errorf("ours %q, OpenTelemetry %q", got, want)
	}
}
