package headers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// propagatorOf builds a propagator from format names, failing the test on
// an unknown name.
func propagatorOf(t testing.TB, extract, inject []string) *Propagator {
	t.Helper()
	ex, err := Codecs(extract)
	if err != nil {
		t.Fatal(err)
	}
	in, err := Codecs(inject)
	if err != nil {
		t.Fatal(err)
	}
	return NewPropagator(ex, in)
}

func TestPropagatorExtractPrecedence(t *testing.T) {
	t.Parallel()
	w3cTID := wbTraceID(t, w3cTestTraceID)
	b3TID := wbTraceID(t, b3TestTraceID)
	b3Multi := func(tid string) []string {
		return []string{"X-B3-TraceId", tid, "X-B3-SpanId", b3TestSpanID, "X-B3-Sampled", "0"}
	}
	tests := []struct {
		name          string
		extract       []string
		h             http.Header
		format        Format
		traceID       TraceID
		present       []Format
		malformed     []Format
		err           error
		conflict      Format
		conflictTrace TraceID
	}{
		{
			name:    "w3c first, both agree",
			extract: []string{"w3c", "b3"},
			h:       hdrWB(append([]string{"traceparent", w3cTestParent}, b3Multi(w3cTestTraceID)...)...),
			format:  FormatW3C, traceID: w3cTID, present: []Format{FormatW3C, FormatB3},
		},
		{
			name:    "b3 first, both agree",
			extract: []string{"b3", "w3c"},
			h:       hdrWB(append([]string{"traceparent", w3cTestParent}, b3Multi(w3cTestTraceID)...)...),
			format:  FormatB3, traceID: w3cTID, present: []Format{FormatW3C, FormatB3},
		},
		{
			name:    "lower precedence names another trace",
			extract: []string{"w3c", "b3"},
			h:       hdrWB(append([]string{"traceparent", w3cTestParent}, b3Multi(b3TestTraceID)...)...),
			format:  FormatW3C, traceID: w3cTID, present: []Format{FormatW3C, FormatB3},
			conflict: FormatB3, conflictTrace: b3TID,
		},
		{
			name:    "first conflict is kept",
			extract: []string{"w3c", "b3single", "b3"},
			h: hdrWB(append([]string{"traceparent", w3cTestParent, "b3", b3TestTraceID + "-" + b3TestSpanID},
				b3Multi("0af7651916cd43dd8448eb211c80319c")...)...),
			format: FormatW3C, traceID: w3cTID, present: []Format{FormatW3C, FormatB3, FormatB3Single},
			conflict: FormatB3Single, conflictTrace: b3TID,
		},
		{
			name:    "malformed first format is skipped",
			extract: []string{"w3c", "b3"},
			h:       hdrWB(append([]string{"traceparent", "ff-" + w3cTestParent[3:]}, b3Multi(b3TestTraceID)...)...),
			format:  FormatB3, traceID: b3TID, present: []Format{FormatW3C, FormatB3},
			malformed: []Format{FormatW3C}, err: ErrW3CVersion,
		},
		{
			name:    "all malformed: first error reported",
			extract: []string{"b3", "w3c"},
			h:       hdrWB("traceparent", "bogus", "X-B3-Sampled", "maybe"),
			format:  FormatNone, present: []Format{FormatW3C, FormatB3},
			malformed: []Format{FormatW3C, FormatB3}, err: ErrB3Sampled,
		},
		{
			name:    "sampling-only lower precedence is no conflict",
			extract: []string{"w3c", "b3single"},
			h:       hdrWB("traceparent", w3cTestParent, "b3", "0"),
			format:  FormatW3C, traceID: w3cTID, present: []Format{FormatW3C, FormatB3Single},
		},
		{
			name:    "unconfigured format is ignored",
			extract: []string{"b3"},
			h:       hdrWB("traceparent", w3cTestParent),
			format:  FormatNone,
		},
		{
			name:    "nothing present",
			extract: []string{"w3c", "b3"},
			h:       hdrWB("Accept", "*/*"),
			format:  FormatNone,
		},
	}
	set := func(fs []Format) (s FormatSet) {
		for _, f := range fs {
			s = s.Add(f)
		}
		return s
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := propagatorOf(t, tt.extract, nil).Extract(tt.h)
			if res.Format != tt.format || res.TraceID != tt.traceID {
				t.Errorf("format %v trace %v, want %v %v", res.Format, res.TraceID, tt.format, tt.traceID)
			}
			if res.Present != set(tt.present) || res.Malformed != set(tt.malformed) {
				t.Errorf("present %v malformed %v, want %v %v", res.Present, res.Malformed, set(tt.present), set(tt.malformed))
			}
			if tt.err == nil && res.Err != nil || tt.err != nil && !errors.Is(res.Err, tt.err) {
				t.Errorf("Err = %v, want %v", res.Err, tt.err)
			}
			if res.Conflict != tt.conflict || res.ConflictTraceID != tt.conflictTrace {
				t.Errorf("conflict %v %v, want %v %v", res.Conflict, res.ConflictTraceID, tt.conflict, tt.conflictTrace)
			}
		})
	}
}

func TestPropagatorExtractAllocs(t *testing.T) {
	p := propagatorOf(t, []string{"w3c", "b3", "b3single"}, nil)
	tests := map[string]http.Header{
		"valid w3c and b3": hdrWB("traceparent", w3cTestParent, "tracestate", "congo=t61rcWkgMzE", "b3", b3TestTraceID+"-"+b3TestSpanID+"-1"),
		"malformed":        hdrWB("traceparent", "bogus", "b3", "bogus"),
		"missing":          hdrWB("Accept", "*/*"),
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, func() { _ = p.Extract(h) }); n != 0 {
				t.Errorf("Extract allocated %v times, want 0", n)
			}
		})
	}
}

func TestPropagatorFieldsAndClear(t *testing.T) {
	p := propagatorOf(t, []string{"w3c", "b3"}, []string{"b3single", "w3c"})
	want := "Traceparent,Tracestate,B3,X-B3-Traceid,X-B3-Spanid,X-B3-Parentspanid,X-B3-Sampled,X-B3-Flags"
	if got := strings.Join(p.Fields(), ","); got != want {
		t.Errorf("Fields = %s, want %s", got, want)
	}
	h := hdrWB("traceparent", w3cTestParent, "tracestate", "a=1", "b3", "0", "X-B3-TraceId", b3TestTraceID,
		"X-B3-SpanId", b3TestSpanID, "X-B3-ParentSpanId", b3TestParentID, "X-B3-Sampled", "1", "X-B3-Flags", "1",
		"X-Request-Id", "abc", "Accept", "*/*")
	p.Clear(h)
	if len(h) != 2 || h.Get("X-Request-Id") != "abc" || h.Get("Accept") != "*/*" {
		t.Errorf("after Clear: %v", h)
	}
}

func TestPropagatorInject(t *testing.T) {
	p := propagatorOf(t, nil, []string{"w3c", "b3", "b3single"})
	if got := fmt.Sprint(p.InjectFormats()); got != "[w3c b3 b3single]" {
		t.Errorf("InjectFormats = %s", got)
	}
	sc := SpanContext{
		TraceID: wbTraceID(t, b3TestTraceID64), TraceID64: true, SpanID: wbSpanID(t, b3TestSpanID),
		ParentID: wbSpanID(t, b3TestParentID), Sampling: SamplingAccept, Random: true, TraceState: "congo=t61rcWkgMzE",
	}
	h := hdrWB("traceparent", "stale", "X-B3-Flags", "1", "Other", "x")
	p.Clear(h)
	var w Writer
	p.Inject(&sc, &w)
	w.Apply(h)
	want := map[string]string{
		"Traceparent":       "00-0000000000000000" + b3TestTraceID64 + "-" + b3TestSpanID + "-01",
		"Tracestate":        "congo=t61rcWkgMzE",
		"X-B3-Traceid":      b3TestTraceID64,
		"X-B3-Spanid":       b3TestSpanID,
		"X-B3-Parentspanid": b3TestParentID,
		"X-B3-Sampled":      "1",
		"B3":                b3TestTraceID64 + "-" + b3TestSpanID + "-1-" + b3TestParentID,
		"Other":             "x",
	}
	if len(h) != len(want) {
		t.Errorf("headers %v, want %v", h, want)
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// Apply allocates one backing array for all the value slices and one
	// string for all the values the codecs built; injecting allocates
	// nothing once the writer's buffer has grown.
	n := testing.AllocsPerRun(100, func() { w.Apply(h) })
	if n != 2 {
		t.Errorf("Apply allocated %v times, want 2", n)
	}
	n = testing.AllocsPerRun(100, func() {
		w.Reset()
		p.Inject(&sc, &w)
	})
	if n != 0 {
		t.Errorf("Inject allocated %v times, want 0", n)
	}
	// Each value slice has capacity one, so appending to one header cannot
	// overwrite the next.
	h["Traceparent"] = append(h["Traceparent"], "extra")
	if h.Get("Tracestate") != "congo=t61rcWkgMzE" {
		t.Error("appending to one header changed another")
	}
}

func TestWriter(t *testing.T) {
	var w Writer
	w.Apply(http.Header{})
	w.Set("A", "1")
	w.Set("B", "2")
	w.Set("A", "3")
	if v, ok := w.Get("A"); !ok || v != "3" || w.Len() != 2 {
		t.Errorf("Set did not replace: %q %v len %d", v, ok, w.Len())
	}
	if _, ok := w.Get("C"); ok {
		t.Error("Get found an unset key")
	}
	for i := range maxWrites + 5 {
		w.Set(fmt.Sprint("K", i), "v")
	}
	if w.Len() != maxWrites {
		t.Errorf("Len = %d, want the capacity %d", w.Len(), maxWrites)
	}
	w.Reset()
	if w.Len() != 0 {
		t.Error("Reset kept entries")
	}
	h := http.Header{"Keep": {"1"}}
	if n := testing.AllocsPerRun(10, func() { w.Apply(h) }); n != 0 {
		t.Errorf("an empty writer allocated %v times", n)
	}
}

func TestCodecsAndFormats(t *testing.T) {
	t.Parallel()
	cs, err := Codecs([]string{"b3single", "w3c", "b3"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(NewPropagator(cs, nil).ExtractFormats()); got != "[b3single w3c b3]" {
		t.Errorf("ExtractFormats = %s", got)
	}
	names := strings.Join(FormatNames(), ",")
	for _, n := range []string{"w3c", "b3", "b3single"} {
		if !strings.Contains(","+names+",", ","+n+",") {
			t.Errorf("FormatNames %s lacks %s", names, n)
		}
	}
	for _, bad := range [][]string{{"w3c", "w3c"}, {"zipkin"}, {"none"}, {""}} {
		if _, err := Codecs(bad); err == nil {
			t.Errorf("Codecs(%q) accepted", bad)
		}
	}
	if _, err := Codecs([]string{"nope"}); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("unknown name: %v, want ErrUnknownFormat", err)
	}
	if _, err := NewCodec(numFormats); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("NewCodec(out of range): %v", err)
	}
	var s FormatSet
	s = s.Add(FormatB3).Add(FormatW3C)
	if !s.Has(FormatW3C) || s.Has(FormatSW8) || s.String() != "w3c,b3" {
		t.Errorf("FormatSet %v", s)
	}
	if Format(200).String() != "format(200)" {
		t.Errorf("unknown Format String = %q", Format(200).String())
	}
}

func TestInjectSetWritesOnlyTheChosenFormats(t *testing.T) {
	codecs, err := Codecs([]string{"w3c", "b3", "b3single"})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPropagator(codecs, codecs)
	sc := SpanContext{TraceID: TraceID{1}, SpanID: SpanID{2}, Sampling: SamplingAccept}
	var w Writer
	p.InjectSet(&sc, &w, FormatSet(0).Add(FormatB3Single))
	h := http.Header{}
	w.Apply(h)
	if len(h) != 1 || h.Get("B3") == "" {
		t.Errorf("headers %v, want only b3", h)
	}
}
