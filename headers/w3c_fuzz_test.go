package headers

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzW3CExtract feeds arbitrary traceparent and tracestate values (two
// tracestate fields, the second possibly absent) to the W3C codec. It must
// not panic, and a context it accepts must survive encode → decode
// unchanged: same ids, sampled and random flags, and the tracestate as
// injected (truncated only when longer than 512 characters).
func FuzzW3CExtract(f *testing.F) {
	long := strings.Join([]string{tsMember("a", 200), tsMember("b", 200), tsMember("c", 200)}, ",")
	seeds := [][3]string{
		{w3cTestParent, "congo=t61rcWkgMzE", ""},
		{"00-" + w3cTestTraceID + "-" + w3cTestSpanID + "-03", "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE ", "a@b=1"},
		{"cc-" + w3cTestTraceID + "-" + w3cTestSpanID + "-ff-future", "", ""},
		{"ff-" + w3cTestTraceID + "-" + w3cTestSpanID + "-01", "a=1", ""},
		{w3cTestParent, long, "x=y"},
		{w3cTestParent, "a=1,a=2", ""},
		{w3cTestParent, strings.Join(tsMembers(33), ","), ""},
		{strings.ToUpper(w3cTestParent), "", ""},
		{"", "", ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	c := w3cCodec{}
	f.Fuzz(func(t *testing.T, traceparent, state1, state2 string) {
		h := http.Header{headerTraceparent: {traceparent}, headerTracestate: {state1}}
		if state2 != "" {
			h[headerTracestate] = append(h[headerTracestate], state2)
		}
		var sc SpanContext
		if c.Extract(h, &sc) != nil {
			return
		}
		if !sc.HasIDs() || sc.Sampling != SamplingAccept && sc.Sampling != SamplingDeny {
			t.Fatalf("accepted %q with %+v", traceparent, sc)
		}
		if len(sc.TraceState) > 0 && strings.TrimSpace(sc.TraceState) != sc.TraceState {
			t.Fatalf("tracestate %q kept with surrounding space", sc.TraceState)
		}
		var w Writer
		c.Inject(&sc, &w)
		out, _ := w.Get(headerTraceparent)
		if tp := trimOWS(traceparent); len(out) != w3cTraceparentLen || out[:2] != "00" || out[2:53] != tp[2:53] {
			t.Fatalf("%q re-encoded as %q", traceparent, out)
		}
		h2 := http.Header{}
		w.Apply(h2)
		var sc2 SpanContext
		if err := c.Extract(h2, &sc2); err != nil {
			t.Fatalf("re-extract of %v: %v", h2, err)
		}
		want := sc
		want.TraceState = truncateTracestate(sc.TraceState)
		if len(want.TraceState) > w3cPropagateLen {
			t.Fatalf("truncated tracestate is %d chars", len(want.TraceState))
		}
		if sc2 != want {
			t.Fatalf("round trip: %+v, want %+v", sc2, want)
		}
	})
}
