package headers

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestContinue(t *testing.T) {
	t.Parallel()
	tid := TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	sid := SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	caller := SpanContext{
		TraceID: tid, SpanID: sid, Sampling: SamplingAccept, TraceID64: true, Random: true,
		TraceState: "a=1", XRayExtra: "Self=1", DatadogOrigin: "rum", DatadogTags: "_dd.p.dm=-1",
		Baggage: "k=v", RequestID: "req-1",
	}
	for _, c := range []struct {
		name       string
		in         Result
		continuing bool
	}{
		{"a caller's trace is continued", Result{SpanContext: caller, Format: FormatW3C}, true},
		{"a trace id without a span id (X-Ray Root) is continued", Result{SpanContext: SpanContext{TraceID: tid, Baggage: "k=v", RequestID: "req-1"}, Format: FormatXRay}, true},
		{"no format: a new trace, baggage and request id kept", Result{SpanContext: SpanContext{Baggage: "k=v", RequestID: "req-1"}}, false},
		{"sampling only (b3: 0): a new trace", Result{SpanContext: SpanContext{Sampling: SamplingDeny, RequestID: "req-1", Baggage: "k=v"}, Format: FormatB3Single}, false},
		{"ids without a format are not a context", Result{SpanContext: caller}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, continuing := Continue(&c.in)
			if continuing != c.continuing {
				t.Fatalf("continuing = %v, want %v", continuing, c.continuing)
			}
			if out.Baggage != c.in.Baggage || out.RequestID != c.in.RequestID {
				t.Errorf("baggage %q, request id %q: want %q, %q", out.Baggage, out.RequestID, c.in.Baggage, c.in.RequestID)
			}
			if out.SpanID.IsValid() || out.ParentID.IsValid() || out.Sampling != SamplingUnset {
				t.Errorf("span ids and sampling are the hop's: got %v %v %v", out.SpanID, out.ParentID, out.Sampling)
			}
			if !continuing {
				if !out.TraceID.IsValid() || out.TraceID == c.in.TraceID || !out.Random || out.TraceID64 || out.TraceState != "" || out.XRayExtra != "" || out.DatadogTags != "" {
					t.Errorf("a new trace must have a fresh random 128-bit id and no caller fields: %+v", out)
				}
				return
			}
			want := c.in.SpanContext
			want.SpanID, want.ParentID, want.Sampling, want.SW = SpanID{}, SpanID{}, SamplingUnset, SkyWalking{}
			if out != want {
				t.Errorf("continued context\n got %+v\nwant %+v", out, want)
			}
		})
	}
}

func TestContinueStartsDistinctTraces(t *testing.T) {
	t.Parallel()
	var in Result
	a, _ := Continue(&in)
	b, _ := Continue(&in)
	if a.TraceID == b.TraceID {
		t.Fatalf("two new traces share id %v", a.TraceID)
	}
}

func TestPropagatedSampling(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		sample bool
		parent Sampling
		want   Sampling
	}{
		{true, SamplingUnset, SamplingAccept},
		{true, SamplingAccept, SamplingAccept},
		{true, SamplingDeny, SamplingAccept}, // the hop's sampler overrode the caller
		{true, SamplingDebug, SamplingDebug},
		{false, SamplingUnset, SamplingDeny},
		{false, SamplingAccept, SamplingDeny},
		{false, SamplingDebug, SamplingDeny},
	} {
		if got := PropagatedSampling(c.sample, c.parent); got != c.want {
			t.Errorf("PropagatedSampling(%v, %v) = %v, want %v", c.sample, c.parent, got, c.want)
		}
	}
}

func TestNewSegmentID(t *testing.T) {
	t.Parallel()
	a, b := NewSegmentID(), NewSegmentID()
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Fatalf("segment ids %q, %q: want two distinct 32-hex strings", a, b)
	}
}

func TestPreservedFormats(t *testing.T) {
	t.Parallel()
	set := func(fs ...Format) FormatSet {
		var s FormatSet
		for _, f := range fs {
			s = s.Add(f)
		}
		return s
	}
	fallback := set(FormatW3C)
	for _, c := range []struct {
		name               string
		present, malformed FormatSet
		singleB3           bool
		want               FormatSet
	}{
		{"nothing came in: the fallback", 0, 0, false, fallback},
		{"only baggage and a request id: the fallback beside them", set(FormatBaggage, FormatRequestID), 0, false, set(FormatBaggage, FormatRequestID, FormatW3C)},
		{"w3c and b3 multi back as they came", set(FormatW3C, FormatB3), 0, false, set(FormatW3C, FormatB3)},
		{"b3 single header: single", set(FormatB3Single), 0, true, set(FormatB3Single)},
		{"b3 read as multi but sent as a b3 header: single", set(FormatB3), 0, true, set(FormatB3Single)},
		{"b3 single read but no b3 header left: multi", set(FormatB3Single), 0, false, set(FormatB3)},
		{"sw6 is answered with sw8", set(FormatSW6), 0, false, set(FormatSW8)},
		{"a malformed format is not written back", set(FormatW3C, FormatB3), set(FormatB3), false, set(FormatW3C)},
		{"all malformed: the fallback", set(FormatB3), set(FormatB3), false, fallback},
		{"jaeger and sw8 kept", set(FormatJaeger, FormatSW8), 0, false, set(FormatJaeger, FormatSW8)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			in := Result{Present: c.present, Malformed: c.malformed}
			if got := PreservedFormats(&in, c.singleB3, fallback); got != c.want {
				t.Errorf("PreservedFormats = %v, want %v", got, c.want)
			}
		})
	}
}

func TestValidSW8Correlation(t *testing.T) {
	t.Parallel()
	b := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	many := make([]string, sw8CorrelationMaxMembers+1)
	for i := range many {
		many[i] = b("k") + ":" + b("v")
	}
	for _, c := range []struct {
		name string
		v    string
		want bool
	}{
		{"one member", b("user") + ":" + b("alice"), true},
		{"empty value", b("flag") + ":", true},
		{"two members", b("a") + ":" + b("1") + "," + b("b") + ":" + b("2"), true},
		{"at the member bound", strings.Join(many[:sw8CorrelationMaxMembers], ","), true},
		{"over the member bound", strings.Join(many, ","), false},
		{"empty", "", false},
		{"empty key", ":" + b("v"), false},
		{"no colon", b("k"), false},
		{"not base64", "k!:v!", false},
		{"unpadded base64", "YQ:YQ", false},
		{"control character in a value", b("k") + ":" + b("a\nb"), false},
		{"over the length bound", b("k") + ":" + b(strings.Repeat("x", sw8CorrelationMaxLen)), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := ValidSW8Correlation(c.v); got != c.want {
				t.Errorf("ValidSW8Correlation(%q) = %v, want %v", c.v, got, c.want)
			}
		})
	}
}

func TestValidSW8X(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"0- 1700000000000", false}, // a space
		{"0-1700000000000", true},
		{"1", true},
		{"", false},
		{"0-abc", false},
		{strings.Repeat("1", sw8XMaxLen), true},
		{strings.Repeat("1", sw8XMaxLen+1), false},
	} {
		if got := ValidSW8X(c.v); got != c.want {
			t.Errorf("ValidSW8X(%q) = %v, want %v", c.v, got, c.want)
		}
	}
}
