package headers

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// ddHeaders returns Datadog headers with the given trace and parent id and
// extra key/value pairs.
func ddHeaders(trace, parent string, kv ...string) http.Header {
	return mhdr(append([]string{"x-datadog-trace-id", trace, "x-datadog-parent-id", parent}, kv...)...)
}

func TestDatadogExtractValid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatDatadog)
	tests := []struct {
		name     string
		h        http.Header
		trace    string
		span     string
		sampling Sampling
		is64     bool
		origin   string
		tags     string
	}{
		{"64-bit keep", ddHeaders("1234567890123456789", "987654321", "x-datadog-sampling-priority", "1"),
			"112210f47de98115", "3ade68b1", SamplingAccept, true, "", ""},
		{"user keep", ddHeaders("1", "2", "x-datadog-sampling-priority", "2"), "1", "2", SamplingAccept, true, "", ""},
		{"reject", ddHeaders("1", "2", "x-datadog-sampling-priority", "0"), "1", "2", SamplingDeny, true, "", ""},
		{"user reject", ddHeaders("1", "2", "x-datadog-sampling-priority", "-1"), "1", "2", SamplingDeny, true, "", ""},
		{"priority absent", ddHeaders("1", "2"), "1", "2", SamplingUnset, true, "", ""},
		{"max uint64", ddHeaders("18446744073709551615", "18446744073709551615"), "ffffffffffffffff", "ffffffffffffffff", SamplingUnset, true, "", ""},
		{"128-bit via _dd.p.tid, other tags kept", ddHeaders("1", "2", "x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000"),
			"640cfd8d000000000000000000000001", "2", SamplingUnset, false, "", "_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000"},
		{"origin kept", ddHeaders("1", "2", "x-datadog-origin", "synthetics"), "1", "2", SamplingUnset, true, "synthetics", ""},
		{"bad tid ignored: 64-bit", ddHeaders("1", "2", "x-datadog-tags", "_dd.p.tid=XYZ"), "1", "2", SamplingUnset, true, "", "_dd.p.tid=XYZ"},
		{"zero tid ignored", ddHeaders("1", "2", "x-datadog-tags", "_dd.p.tid=0000000000000000"), "1", "2", SamplingUnset, true, "", "_dd.p.tid=0000000000000000"},
		{"invalid tags dropped, context kept", ddHeaders("1", "2", "x-datadog-tags", "no-equals,_dd.p.tid=640cfd8d00000000"), "1", "2", SamplingUnset, true, "", ""},
		{"oversized tags dropped", ddHeaders("1", "2", "x-datadog-tags", "_dd.p.tid=640cfd8d00000000,k="+strings.Repeat("v", ddMaxTags)),
			"1", "2", SamplingUnset, true, "", ""},
		{"invalid origin dropped", ddHeaders("1", "2", "x-datadog-origin", "a b"), "1", "2", SamplingUnset, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(tt.h, &sc); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			want := SpanContext{TraceID: mTraceID(t, tt.trace), SpanID: mSpanID(t, tt.span), Sampling: tt.sampling,
				TraceID64: tt.is64, DatadogOrigin: tt.origin, DatadogTags: tt.tags}
			if sc != want {
				t.Errorf("got %+v\nwant %+v", sc, want)
			}
		})
	}
}

func TestDatadogExtractInvalid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatDatadog)
	tests := []struct {
		name string
		h    http.Header
		err  error
	}{
		{"absent", mhdr("Accept", "*/*"), ErrAbsent},
		{"priority alone", mhdr("x-datadog-sampling-priority", "1"), ErrDatadogScope},
		{"trace without parent", mhdr("x-datadog-trace-id", "1"), ErrDatadogScope},
		{"parent without trace", mhdr("x-datadog-parent-id", "1"), ErrDatadogScope},
		{"trace hex", ddHeaders("abc", "2"), ErrDatadogTraceID},
		{"trace negative", ddHeaders("-1", "2"), ErrDatadogTraceID},
		{"trace with sign", ddHeaders("+1", "2"), ErrDatadogTraceID},
		{"trace overflow", ddHeaders("18446744073709551616", "2"), ErrDatadogTraceID},
		{"trace 21 digits", ddHeaders("000000000000000000001", "2"), ErrDatadogTraceID},
		{"trace empty", ddHeaders("", "2"), ErrDatadogTraceID},
		{"trace zero", ddHeaders("0", "2"), ErrDatadogZeroTraceID},
		{"parent not decimal", ddHeaders("1", "2a"), ErrDatadogParentID},
		{"parent zero", ddHeaders("1", "0"), ErrDatadogZeroParentID},
		{"priority not a number", ddHeaders("1", "2", "x-datadog-sampling-priority", "keep"), ErrDatadogPriority},
		{"priority empty", ddHeaders("1", "2", "x-datadog-sampling-priority", ""), ErrDatadogPriority},
		{"priority lone minus", ddHeaders("1", "2", "x-datadog-sampling-priority", "-"), ErrDatadogPriority},
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

func TestDatadogInject(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatDatadog)
	sid := mSpanID(t, "3ade68b1")
	tid64 := mTraceID(t, "112210f47de98115")
	tid128 := mTraceID(t, "640cfd8d000000000000000000000001")
	tests := []struct {
		name string
		sc   SpanContext
		want map[string]string
	}{
		{"64-bit keep", SpanContext{TraceID: tid64, SpanID: sid, Sampling: SamplingAccept, TraceID64: true},
			map[string]string{"X-Datadog-Trace-Id": "1234567890123456789", "X-Datadog-Parent-Id": "987654321", "X-Datadog-Sampling-Priority": "1"}},
		{"debug as user keep", SpanContext{TraceID: tid64, SpanID: sid, Sampling: SamplingDebug},
			map[string]string{"X-Datadog-Trace-Id": "1234567890123456789", "X-Datadog-Parent-Id": "987654321", "X-Datadog-Sampling-Priority": "2"}},
		{"deny, origin", SpanContext{TraceID: tid64, SpanID: sid, Sampling: SamplingDeny, DatadogOrigin: "rum"},
			map[string]string{"X-Datadog-Trace-Id": "1234567890123456789", "X-Datadog-Parent-Id": "987654321", "X-Datadog-Sampling-Priority": "0", "X-Datadog-Origin": "rum"}},
		{"unset: no priority", SpanContext{TraceID: tid64, SpanID: sid},
			map[string]string{"X-Datadog-Trace-Id": "1234567890123456789", "X-Datadog-Parent-Id": "987654321"}},
		{"128-bit writes _dd.p.tid after the other tags", SpanContext{TraceID: tid128, SpanID: sid, DatadogTags: "_dd.p.tid=ffffffffffffffff,_dd.p.dm=-4"},
			map[string]string{"X-Datadog-Trace-Id": "1", "X-Datadog-Parent-Id": "987654321", "X-Datadog-Tags": "_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000"}},
		{"64-bit drops a stale _dd.p.tid", SpanContext{TraceID: tid64, SpanID: sid, DatadogTags: "_dd.p.tid=640cfd8d00000000"},
			map[string]string{"X-Datadog-Trace-Id": "1234567890123456789", "X-Datadog-Parent-Id": "987654321"}},
		{"invalid tags and origin not written", SpanContext{TraceID: tid64, SpanID: sid, DatadogTags: "a=1\r\nX: y", DatadogOrigin: "a\nb"},
			map[string]string{"X-Datadog-Trace-Id": "1234567890123456789", "X-Datadog-Parent-Id": "987654321"}},
		{"tags too long with tid: tid alone", SpanContext{TraceID: tid128, SpanID: sid, DatadogTags: "k=" + strings.Repeat("v", ddMaxTags-10)},
			map[string]string{"X-Datadog-Trace-Id": "1", "X-Datadog-Parent-Id": "987654321", "X-Datadog-Tags": "_dd.p.tid=640cfd8d00000000"}},
		{"low 64 bits zero: nothing", SpanContext{TraceID: TraceID{0: 1}, SpanID: sid}, map[string]string{}},
		{"no ids: nothing", SpanContext{Sampling: SamplingAccept}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := minject(c, &tt.sc)
			if len(h) != len(tt.want) {
				t.Errorf("wrote %v, want %v", h, tt.want)
			}
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestDatadogRoundTrip(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatDatadog)
	for _, h := range []http.Header{
		ddHeaders("1234567890123456789", "987654321", "x-datadog-sampling-priority", "1", "x-datadog-origin", "synthetics"),
		ddHeaders("1", "2", "x-datadog-sampling-priority", "-1", "x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000"),
	} {
		var sc SpanContext
		if err := c.Extract(h, &sc); err != nil {
			t.Fatal(err)
		}
		var again SpanContext
		if err := c.Extract(minject(c, &sc), &again); err != nil || again != sc {
			t.Errorf("round trip: %v\n%+v\n%+v", err, again, sc)
		}
	}
}

func TestDatadogExtractAllocs(t *testing.T) {
	c := mcodec(t, FormatDatadog)
	for name, h := range map[string]http.Header{
		"valid":   ddHeaders("1234567890123456789", "987654321", "x-datadog-sampling-priority", "1", "x-datadog-tags", "_dd.p.tid=640cfd8d00000000"),
		"invalid": ddHeaders("18446744073709551616", "2"),
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
