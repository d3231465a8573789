package headers

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// noCTL fails the test if an injected header name or value holds a control
// character (CR, LF, NUL, ...) or a byte outside ASCII.
func noCTL(t *testing.T, h http.Header) {
	t.Helper()
	for k, vs := range h {
		for _, s := range append(vs, k) {
			for i := 0; i < len(s); i++ {
				if c := s[i]; c < 0x20 || c >= 0x7f {
					t.Fatalf("header %q: value %q has byte %#x", k, s, c)
				}
			}
		}
	}
}

// sameTrace compares the trace fields that every trace codec round-trips.
func sameTrace(t *testing.T, a, b SpanContext) {
	t.Helper()
	if a.TraceID != b.TraceID || a.SpanID != b.SpanID || a.Sampling != b.Sampling || a.TraceID64 != b.TraceID64 {
		t.Fatalf("round trip changed the context:\n%+v\n%+v", a, b)
	}
}

// reextract injects sc with c, checks the headers, and extracts them again.
func reextract(t *testing.T, c Codec, sc *SpanContext) (SpanContext, http.Header) {
	t.Helper()
	out := minject(c, sc)
	noCTL(t, out)
	var again SpanContext
	if err := c.Extract(out, &again); err != nil {
		t.Fatalf("re-extracting %v: %v", out, err)
	}
	return again, out
}

func FuzzJaegerExtract(f *testing.F) {
	f.Add(jgTraceID+":"+jgSpanID+":0:1", "user", "a+b%20c")
	f.Add("1%3A2%3A0%3A3", "x", "")
	f.Add("ABC:def:1:0", "k-y", "\r\n")
	c := mcodec(f, FormatJaeger)
	f.Fuzz(func(t *testing.T, v, key, val string) {
		h := http.Header{"Uber-Trace-Id": {v}}
		h.Set("uberctx-"+key, val)
		var sc SpanContext
		if c.Extract(h, &sc) != nil {
			return
		}
		again, _ := reextract(t, c, &sc)
		sameTrace(t, sc, again)
		if !slices.Equal(sortedMembers(sc.Baggage), sortedMembers(again.Baggage)) {
			t.Fatalf("baggage %q became %q", sc.Baggage, again.Baggage)
		}
	})
}

func FuzzOTExtract(f *testing.F) {
	f.Add(jgTraceID, jgSpanID, "true", "user", "a b")
	f.Add("abc", "1", "FALSE", "k", "%zz")
	c := mcodec(f, FormatOT)
	f.Fuzz(func(t *testing.T, tid, sid, sampled, key, val string) {
		h := mhdr("ot-tracer-traceid", tid, "ot-tracer-spanid", sid, "ot-tracer-sampled", sampled)
		h.Set("ot-baggage-"+key, val)
		var sc SpanContext
		if c.Extract(h, &sc) != nil {
			return
		}
		again, _ := reextract(t, c, &sc)
		sameTrace(t, sc, again)
		if !slices.Equal(sortedMembers(sc.Baggage), sortedMembers(again.Baggage)) {
			t.Fatalf("baggage %q became %q", sc.Baggage, again.Baggage)
		}
	})
}

func FuzzBaggageExtract(f *testing.F) {
	f.Add("key1=value1;property1;property2, key2 = value2", "key3=value3; propertyKey=propertyValue")
	f.Add("a=%zz,b=1", ",,")
	f.Add(manyMembers(70, 130), "z=1")
	c := mcodec(f, FormatBaggage)
	f.Fuzz(func(t *testing.T, a, b string) {
		var sc SpanContext
		_ = c.Extract(http.Header{headerBaggage: {a, b}}, &sc)
		if n := len(sortedMembers(sc.Baggage)); len(sc.Baggage) > baggageMaxBytes || n > baggageMaxMembers {
			t.Fatalf("kept %d bytes, %d members", len(sc.Baggage), n)
		}
		out := minject(c, &sc)
		noCTL(t, out)
		if got := out.Get(headerBaggage); got != sc.Baggage {
			t.Fatalf("extracted %q, injected %q", sc.Baggage, got)
		}
		if sc.Baggage == "" {
			return
		}
		var again SpanContext
		if err := c.Extract(out, &again); err != nil || again.Baggage != sc.Baggage {
			t.Fatalf("re-extracted %q (%v), want %q", again.Baggage, err, sc.Baggage)
		}
	})
}

func FuzzXRayExtract(f *testing.F) {
	f.Add("Root=" + xrRoot + ";Parent=" + xrParent + ";Sampled=1")
	f.Add("Self=1-67891234-12456789abcdef012345678;Root=" + xrRoot + ";Lineage=a:1;Parent=" + xrParent + ";;k=v ")
	f.Add("Root=" + xrRoot)
	c := mcodec(f, FormatXRay)
	f.Fuzz(func(t *testing.T, v string) {
		var sc SpanContext
		if c.Extract(http.Header{headerXRay: {v}}, &sc) != nil || !sc.HasIDs() {
			return
		}
		again, _ := reextract(t, c, &sc)
		sameTrace(t, sc, again)
		if len(sc.XRayExtra) <= xrayMaxLen-xrayFixedPrefix-1 && sc.XRayExtra != again.XRayExtra {
			t.Fatalf("extras %q became %q", sc.XRayExtra, again.XRayExtra)
		}
	})
}

func FuzzDatadogExtract(f *testing.F) {
	f.Add("1234567890123456789", "987654321", "2", "synthetics", "_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000")
	f.Add("1", "2", "-1", "a b", "_dd.p.tid=XYZ")
	c := mcodec(f, FormatDatadog)
	f.Fuzz(func(t *testing.T, tid, pid, prio, origin, tags string) {
		h := ddHeaders(tid, pid, "x-datadog-sampling-priority", prio, "x-datadog-origin", origin, "x-datadog-tags", tags)
		var sc SpanContext
		if c.Extract(h, &sc) != nil {
			return
		}
		again, out := reextract(t, c, &sc)
		sameTrace(t, sc, again)
		if again.DatadogOrigin != sc.DatadogOrigin {
			t.Fatalf("origin %q became %q", sc.DatadogOrigin, again.DatadogOrigin)
		}
		if out2 := minject(c, &again); !equalHeaders(out, out2) {
			t.Fatalf("not stable:\n%v\n%v", out, out2)
		}
	})
}

func FuzzRequestIDExtract(f *testing.F) {
	f.Add("0f8fad5b-d9cb-469f-a165-70867728950e")
	f.Add(" a\r\n")
	c := mRequestID(f, "", false, 0)
	f.Fuzz(func(t *testing.T, v string) {
		var sc SpanContext
		if c.Extract(mhdr("X-Request-ID", v), &sc) != nil {
			return
		}
		again, _ := reextract(t, c, &sc)
		if again.RequestID != sc.RequestID || sc.RequestID != strings.Trim(v, " \t") {
			t.Fatalf("%q: extracted %q, then %q", v, sc.RequestID, again.RequestID)
		}
	})
}

func FuzzCustomExtract(f *testing.F) {
	f.Add("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", jgSpanID, "1", "true")
	f.Add("A3CE929D0E0E4736", "2a", "", "0")
	c := mCustom(f, false)
	f.Fuzz(func(t *testing.T, tid, sid, pid, sampled string) {
		h := mhdr("X-Trace-ID", tid, "X-Span-ID", sid, "X-Parent-ID", pid, "X-Sampled", sampled)
		var sc SpanContext
		if c.Extract(h, &sc) != nil {
			return
		}
		again, _ := reextract(t, c, &sc)
		sameTrace(t, sc, again)
		if again.ParentID != sc.ParentID {
			t.Fatalf("parent %v became %v", sc.ParentID, again.ParentID)
		}
	})
}

// equalHeaders compares two headers field by field.
func equalHeaders(a, b http.Header) bool {
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
