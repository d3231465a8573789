package headers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/propagators/aws/xray"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const (
	xrRoot   = "1-5759e988-bd862e3fe1be46a994272793"
	xrTrace  = "5759e988bd862e3fe1be46a994272793"
	xrParent = "53995c3f42cd8ad8"
)

func TestXRayExtractValid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatXRay)
	tests := []struct {
		name     string
		value    string
		span     string
		sampling Sampling
		extra    string
	}{
		{"AWS example", "Root=" + xrRoot + ";Parent=" + xrParent + ";Sampled=1", xrParent, SamplingAccept, ""},
		{"not sampled", "Root=" + xrRoot + ";Parent=" + xrParent + ";Sampled=0", xrParent, SamplingDeny, ""},
		{"decision requested", "Root=" + xrRoot + ";Parent=" + xrParent + ";Sampled=?", xrParent, SamplingUnset, ""},
		{"keys in any order, OWS", " Sampled=1 ; Parent=" + xrParent + " ;Root=" + xrRoot + ";", xrParent, SamplingAccept, ""},
		{"load balancer root only", "Root=" + xrRoot, "0", SamplingUnset, ""},
		{"Self first, kept", "Self=1-67891234-12456789abcdef012345678;Root=" + xrRoot + ";Parent=" + xrParent + ";Sampled=1",
			xrParent, SamplingAccept, "Self=1-67891234-12456789abcdef012345678"},
		{"adjacent extras kept as one run", "Root=" + xrRoot + ";Parent=" + xrParent + ";Sampled=1;Lineage=a87bd80c:1|68fd508a:5;CalledFrom=Foo",
			xrParent, SamplingAccept, "Lineage=a87bd80c:1|68fd508a:5;CalledFrom=Foo"},
		{"scattered extras joined", "Self=1-67891234-12456789abcdef012345678;Root=" + xrRoot + ";Lineage=a87bd80c:1;Parent=" + xrParent + ";k=v",
			xrParent, SamplingUnset, "Self=1-67891234-12456789abcdef012345678;Lineage=a87bd80c:1;k=v"},
		{"tab between extras: joined without it", "Root=" + xrRoot + ";a=1\t;b=2", "0", SamplingUnset, "a=1;b=2"},
		{"empty part between extras joined", "Root=" + xrRoot + ";a=1;;b=2", "0", SamplingUnset, "a=1;b=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(mhdr("X-Amzn-Trace-Id", tt.value), &sc); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			want := SpanContext{TraceID: mTraceID(t, xrTrace), SpanID: mSpanID(t, tt.span), Sampling: tt.sampling, XRayExtra: tt.extra}
			if sc != want {
				t.Errorf("got %+v\nwant %+v", sc, want)
			}
		})
	}
}

func TestXRayExtractInvalid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatXRay)
	p := ";Parent=" + xrParent
	tests := []struct {
		name  string
		value string
		err   error
	}{
		{"empty", "", ErrXRayNoRoot},
		{"no root", "Parent=" + xrParent + ";Sampled=1", ErrXRayNoRoot},
		{"part without '='", "Root=" + xrRoot + ";bogus", ErrXRayPart},
		{"key not a token", "Root=" + xrRoot + ";a b=1", ErrXRayPart},
		{"control character", "Root=" + xrRoot + ";a=\x01", ErrXRayPart},
		{"non-ASCII", "Root=" + xrRoot + ";a=\xc3\xa9", ErrXRayPart},
		{"root twice", "Root=" + xrRoot + ";Root=" + xrRoot, ErrXRayDuplicate},
		{"parent twice", "Root=" + xrRoot + p + p, ErrXRayDuplicate},
		{"sampled twice", "Root=" + xrRoot + ";Sampled=1;Sampled=1", ErrXRayDuplicate},
		{"root version 2", "Root=2" + xrRoot[1:] + p, ErrXRayRoot},
		{"root short", "Root=1-5759e988-bd862e3fe1be46a99427279" + p, ErrXRayRoot},
		{"root uppercase", "Root=1-5759E988-bd862e3fe1be46a994272793" + p, ErrXRayRoot},
		{"root delimiter", "Root=1-5759e988_bd862e3fe1be46a994272793" + p, ErrXRayRoot},
		{"root zero", "Root=1-00000000-000000000000000000000000" + p, ErrXRayZeroRoot},
		{"parent short", "Root=" + xrRoot + ";Parent=53995c3f42cd8ad", ErrXRayParent},
		{"parent zero", "Root=" + xrRoot + ";Parent=0000000000000000", ErrXRayZeroParent},
		{"sampled 2", "Root=" + xrRoot + p + ";Sampled=2", ErrXRaySampled},
		{"too long", "Root=" + xrRoot + p + ";k=" + strings.Repeat("v", xrayMaxLen), ErrXRayTooLong},
		{"key case matters", "root=" + xrRoot + p, ErrXRayNoRoot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(mhdr("X-Amzn-Trace-Id", tt.value), &sc); !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
		})
	}
	var sc SpanContext
	if err := c.Extract(mhdr("Accept", "*/*"), &sc); err != ErrAbsent {
		t.Errorf("absent: err = %v", err)
	}
}

func TestXRayInject(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatXRay)
	tid, sid := mTraceID(t, xrTrace), mSpanID(t, xrParent)
	base := "Root=" + xrRoot + ";Parent=" + xrParent
	tests := []struct {
		name string
		sc   SpanContext
		want string
	}{
		{"sampled", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingAccept}, base + ";Sampled=1"},
		{"debug", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingDebug}, base + ";Sampled=1"},
		{"denied", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingDeny}, base + ";Sampled=0"},
		{"unset", SpanContext{TraceID: tid, SpanID: sid}, base + ";Sampled=?"},
		{"extras re-emitted", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingAccept, XRayExtra: "Self=x;Lineage=a:1"},
			base + ";Sampled=1;Self=x;Lineage=a:1"},
		{"extras with CR LF dropped", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingAccept, XRayExtra: "a=1\r\nX-Evil: 1"},
			base + ";Sampled=1"},
		{"extras naming Root dropped", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingAccept, XRayExtra: "Root=1-0-0"},
			base + ";Sampled=1"},
		{"oversized extras dropped", SpanContext{TraceID: tid, SpanID: sid, Sampling: SamplingAccept, XRayExtra: "k=" + strings.Repeat("v", xrayMaxLen)},
			base + ";Sampled=1"},
		{"64-bit id: epoch part zero", SpanContext{TraceID: mTraceID(t, "a3ce929d0e0e4736"), SpanID: sid, TraceID64: true, Sampling: SamplingAccept},
			"Root=1-00000000-00000000a3ce929d0e0e4736;Parent=" + xrParent + ";Sampled=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := minject(c, &tt.sc).Get("X-Amzn-Trace-Id"); got != tt.want {
				t.Errorf("wrote %q\nwant  %q", got, tt.want)
			}
		})
	}
	if h := minject(c, &SpanContext{TraceID: tid}); len(h) != 0 {
		t.Errorf("root only: wrote %v", h)
	}
}

func TestXRayRoundTrip(t *testing.T) {
	c := mcodec(t, FormatXRay)
	v := "Self=1-67891234-12456789abcdef012345678;Root=" + xrRoot + ";Parent=" + xrParent + ";Sampled=1;Lineage=a87bd80c:1"
	var sc SpanContext
	if err := c.Extract(mhdr("X-Amzn-Trace-Id", v), &sc); err != nil {
		t.Fatal(err)
	}
	var again SpanContext
	if err := c.Extract(minject(c, &sc), &again); err != nil || again != sc {
		t.Errorf("round trip: %v\n%+v\n%+v", err, again, sc)
	}
}

func TestXRayExtractAllocs(t *testing.T) {
	c := mcodec(t, FormatXRay)
	for name, h := range map[string]http.Header{
		"valid":          mhdr("X-Amzn-Trace-Id", "Root="+xrRoot+";Parent="+xrParent+";Sampled=1"),
		"valid with run": mhdr("X-Amzn-Trace-Id", "Self=1-67891234-12456789abcdef012345678;Root="+xrRoot+";Parent="+xrParent),
		"invalid":        mhdr("X-Amzn-Trace-Id", "Root="+xrRoot+";Parent=zz"),
		"absent":         mhdr("Accept", "*/*"),
	} {
		t.Run(name, func(t *testing.T) {
			var sc SpanContext
			if got := testing.AllocsPerRun(100, func() { _ = c.Extract(h, &sc) }); got != 0 {
				t.Errorf("%v allocations, want 0", got)
			}
		})
	}
}

// TestXRayMatchesOpenTelemetry compares extraction with
// go.opentelemetry.io/contrib/propagators/aws/xray; each disagreement says
// why.
func TestXRayMatchesOpenTelemetry(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatXRay)
	p := ";Parent=" + xrParent
	tests := []struct {
		value    string
		disagree string
	}{
		{"Root=" + xrRoot + p + ";Sampled=1", ""},
		{"Root=" + xrRoot + p + ";Sampled=0", ""},
		{"Sampled=1" + p + ";Root=" + xrRoot, ""},
		{"Root=" + xrRoot + p + ";Sampled=1;Lineage=a87bd80c:1", ""},
		{"Root=2" + xrRoot[1:] + p, ""},
		{"Root=" + xrRoot + ";Parent=zz", ""},
		{"Root=" + xrRoot + p + ";bogus", ""},
		{"Root=" + xrRoot + p + ";Sampled=2", "OpenTelemetry reads any Sampled other than 1 as 0; X-Ray defines only 0, 1 and ?"},
		{"Root=" + xrRoot + p + ";Rootless=1", "OpenTelemetry matches keys by prefix, so Rootless= is read as Root; keys are exact"},
		{"Root=" + xrRoot + p + ";Root=" + xrRoot, "OpenTelemetry lets a repeated key overwrite; we refuse an ambiguous header"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			var sc SpanContext
			err := c.Extract(mhdr("X-Amzn-Trace-Id", tt.value), &sc)
			ref := trace.SpanContextFromContext(xray.Propagator{}.Extract(context.Background(),
				propagation.HeaderCarrier(mhdr("X-Amzn-Trace-Id", tt.value))))
			same := (err == nil) == ref.IsValid()
			if err == nil && ref.IsValid() {
				same = trace.TraceID(sc.TraceID) == ref.TraceID() && trace.SpanID(sc.SpanID) == ref.SpanID() &&
					sc.Sampling.Sampled() == ref.IsSampled()
			}
			switch {
			case tt.disagree == "" && !same:
				t.Errorf("ours %+v (err %v), OpenTelemetry %v", sc, err, ref)
			case tt.disagree != "" && same:
				t.Errorf("expected a disagreement (%s)", tt.disagree)
			}
		})
	}
	sc := SpanContext{TraceID: mTraceID(t, xrTrace), SpanID: mSpanID(t, xrParent), Sampling: SamplingAccept}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID(sc.TraceID), SpanID: trace.SpanID(sc.SpanID), TraceFlags: trace.FlagsSampled,
	}))
	ref := http.Header{}
	xray.Propagator{}.Inject(ctx, propagation.HeaderCarrier(ref))
	if got, want := minject(c, &sc).Get("X-Amzn-Trace-Id"), ref.Get("X-Amzn-Trace-Id"); got != want {
		t.Errorf("inject: ours %q, OpenTelemetry %q", got, want)
	}
}
