package headers

import (
	"net/http"
	"testing"
)

// b3RoundTrip injects sc with c and extracts it back with c, failing the test
// unless the context comes back unchanged. The single header cannot carry a
// parent without a sampling state, so across forms that parent is dropped.
func b3RoundTrip(t *testing.T, c Codec, sc SpanContext) {
	t.Helper()
	var w Writer
	c.Inject(&sc, &w)
	h := http.Header{}
	w.Apply(h)
	var got SpanContext
	if err := c.Extract(h, &got); err != nil {
		t.Fatalf("%v: re-extract of %v from %+v: %v", c.Format(), h, sc, err)
	}
	want := sc
	if c.Format() == FormatB3Single && want.Sampling == SamplingUnset {
		want.ParentID = SpanID{}
	}
	if got != want {
		t.Fatalf("%v round trip via %v: %+v, want %+v", c.Format(), h, got, want)
	}
}

// checkB3Context checks the invariants of an accepted B3 context.
func checkB3Context(t *testing.T, sc SpanContext) {
	t.Helper()
	if sc.TraceID.IsValid() != sc.SpanID.IsValid() {
		t.Fatalf("half a context: %+v", sc)
	}
	if !sc.HasIDs() && (sc.Sampling == SamplingUnset || sc.ParentID.IsValid() || sc.TraceID64) {
		t.Fatalf("context with no ids carries %+v", sc)
	}
	if sc.TraceID64 && !sc.TraceID.Is64() {
		t.Fatalf("64-bit mark on a 128-bit id: %+v", sc)
	}
}

// FuzzB3Single feeds arbitrary b3 single-header values to both codecs: no
// panic, and a context accepted survives encode → decode in both forms.
func FuzzB3Single(f *testing.F) {
	for _, s := range []string{
		b3TestTraceID + "-" + b3TestSpanID + "-1-" + b3TestParentID,
		b3TestTraceID64 + "-" + b3TestSpanID + "-d",
		b3TestTraceID + "-" + b3TestSpanID,
		"0", "1", "d", "", "-", "--", b3TestTraceID + "-" + b3TestSpanID + "-1-",
	} {
		f.Add(s)
	}
	codecs := []Codec{b3MultiCodec{}, b3SingleCodec{}}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{headerB3: {v}}
		var sc SpanContext
		if extractB3(h, &sc) != nil {
			return
		}
		checkB3Context(t, sc)
		for _, c := range codecs {
			b3RoundTrip(t, c, sc)
		}
		// A valid single header re-encodes to exactly what was read.
		var w Writer
		(b3SingleCodec{}).Inject(&sc, &w)
		if got, _ := w.Get(headerB3); got != v {
			t.Fatalf("b3 %q re-encoded as %q", v, got)
		}
	})
}

// FuzzB3Multi feeds arbitrary X-B3-* values to both codecs; present is a
// bit set saying which of the five headers to send. No panic, and a context
// accepted survives encode → decode in both forms.
func FuzzB3Multi(f *testing.F) {
	f.Add(uint8(0x1f), b3TestTraceID, b3TestSpanID, b3TestParentID, "1", "0")
	f.Add(uint8(0x0b), b3TestTraceID64, b3TestSpanID, "", "true", "")
	f.Add(uint8(0x13), b3TestTraceID, b3TestSpanID, "", "", "1")
	f.Add(uint8(0x08), "", "", "", "0", "")
	f.Add(uint8(0x10), "", "", "", "", "1")
	f.Add(uint8(0x07), b3TestTraceID, b3TestSpanID, "-", "", "")
	codecs := []Codec{b3MultiCodec{}, b3SingleCodec{}}
	keys := [...]string{headerB3TraceID, headerB3SpanID, headerB3ParentSpanID, headerB3Sampled, headerB3Flags}
	f.Fuzz(func(t *testing.T, present uint8, trace, span, parent, sampled, flags string) {
		vals := [...]string{trace, span, parent, sampled, flags}
		h := http.Header{}
		for i, k := range keys {
			if present&(1<<i) != 0 {
				h[k] = []string{vals[i]}
			}
		}
		var sc SpanContext
		if extractB3(h, &sc) != nil {
			return
		}
		checkB3Context(t, sc)
		for _, c := range codecs {
			b3RoundTrip(t, c, sc)
		}
	})
}
