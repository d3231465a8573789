package headers

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// mPrefix returns the prefix-baggage codec of prefix, failing the test
// otherwise.
func mPrefix(t testing.TB, prefix string) Codec {
	t.Helper()
	c, err := NewPrefixBaggageCodec(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewPrefixBaggageCodecValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prefix string
		header string // what Inject writes for the member user=alice
	}{
		{"canonical", "X-Baggage-", "X-Baggage-User"},
		{"lower case is canonicalized", "x-baggage-", "X-Baggage-User"},
		{"short", "Ctx-", "Ctx-User"},
		{"without a trailing dash", "ctx", "Ctxuser"},
		{"same prefix as jaeger", "uberctx-", "Uberctx-User"},
		{"token punctuation", "my_ctx.", "My_ctx.user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mPrefix(t, tt.prefix)
			if c.Format() != FormatPrefixBaggage || c.Format().String() != "prefix_baggage" {
				t.Errorf("Format = %v", c.Format())
			}
			if c.Fields() != nil {
				t.Errorf("Fields = %q, want nil", c.Fields())
			}
			var w Writer
			c.Inject(&SpanContext{Baggage: "user=alice"}, &w)
			if got, ok := w.Get(tt.header); !ok || got != "alice" || w.Len() != 1 {
				t.Errorf("%s = %q (%v), %d headers", tt.header, got, ok, w.Len())
			}
		})
	}
}

func TestNewPrefixBaggageCodecInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prefix string
	}{
		{"empty", ""},
		{"space", "X Baggage-"},
		{"colon", "X-Baggage:"},
		{"newline", "X-Baggage-\n"},
		{"NUL", "Ctx\x00"},
		{"non-ASCII", "Ctx-é"},
		{"covers X-B3-*", "X-"},
		{"covers uber-trace-id", "uber"},
		{"covers traceparent", "Trace"},
		{"covers the baggage header", "Bag"},
		{"covers ot-tracer-*", "ot-tracer-"},
		{"covers sw8", "sw"},
		{"covers Content-Length", "content-"},
		{"covers Host", "H"},
		{"covers X-Forwarded-For", "x-forwarded-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewPrefixBaggageCodec(tt.prefix)
			if err == nil {
				t.Fatalf("accepted %q: %v", tt.prefix, c)
			}
			if !errors.Is(err, ErrPrefixBaggageConfig) || !strings.HasPrefix(err.Error(), "baggage:") {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestPrefixBaggageExtractValid(t *testing.T) {
	t.Parallel()
	c := mPrefix(t, "X-Baggage-")
	tests := []struct {
		name string
		h    http.Header
		want string
	}{
		{"one", mhdr("x-baggage-user", "alice"), "user=alice"},
		{"in the order of the names", mhdr("X-Baggage-B", "2", "X-Baggage-A", "1"), "a=1,b=2"},
		{"other headers ignored", mhdr("X-Baggage-A", "1", "X-Baggagea", "2", "Baggage", "b=3", "Uberctx-C", "4"), "a=1"},
		{"non-canonical name", http.Header{"x-BAGGAGE-Tenant-Id": {"t1"}}, "tenant-id=t1"},
		{"first value", mhdr("X-Baggage-A", "1", "X-Baggage-A", "2"), "a=1"},
		{"escapes kept", mhdr("X-Baggage-Node", "DF%2028"), "node=DF%2028"},
		{"lower-case escape", mhdr("X-Baggage-Node", "DF%2a%2C"), "node=DF*%2C"},
		{"lenient percent", mhdr("X-Baggage-P", "100%", "X-Baggage-Q", "%zz"), "p=100%25,q=%25zz"},
		{"plus literal", mhdr("X-Baggage-Sum", "a+b"), "sum=a+b"},
		{"space and separators encoded", mhdr("X-Baggage-V", `a b,c;d"e\`), "v=a%20b%2Cc%3Bd%22e%5C"},
		{"control characters encoded", mhdr("X-Baggage-V", "a\r\n\x00\tb"), "v=a%0D%0A%00%09b"},
		{"empty value", mhdr("X-Baggage-E", ""), "e="},
		{"UTF-8 encoded", mhdr("X-Baggage-City", "Zürich"), "city=Z%C3%BCrich"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := SpanContext{Baggage: "stale=1"}
			if err := c.Extract(tt.h, &sc); err != nil {
				t.Fatal(err)
			}
			if sc.Baggage != tt.want {
				t.Errorf("Baggage = %q, want %q", sc.Baggage, tt.want)
			}
		})
	}
}

func TestPrefixBaggageExtractInvalid(t *testing.T) {
	t.Parallel()
	c := mPrefix(t, "X-Baggage-")
	tests := []struct {
		name string
		h    http.Header
		err  error
		want string
	}{
		{"no headers", http.Header{}, ErrAbsent, ""},
		{"unrelated headers", mhdr("Baggage", "a=1", "X-Baggage", "b"), ErrAbsent, ""},
		{"prefix alone", http.Header{"X-Baggage-": {"v"}}, ErrAbsent, ""},
		{"key not a token", http.Header{"X-Baggage-a b": {"v"}}, ErrAbsent, ""},
		{"no value", http.Header{"X-Baggage-A": {}}, ErrAbsent, ""},
		{"one value beyond 8192 bytes", mhdr("X-Baggage-A", strings.Repeat("v", baggageMaxBytes)), ErrBaggageLimit, ""},
		{"control characters beyond 8192 bytes once encoded", mhdr("X-Baggage-A", strings.Repeat("\n", 2731), "X-Baggage-B", "1"), ErrBaggageLimit, "b=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if err := c.Extract(tt.h, &sc); err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if sc.Baggage != tt.want {
				t.Errorf("Baggage = %q, want %q", sc.Baggage, tt.want)
			}
		})
	}
}

// TestPrefixBaggageLimits checks that members beyond 64 or 8192 bytes are
// dropped whole, in the order of the header names.
func TestPrefixBaggageLimits(t *testing.T) {
	t.Parallel()
	c := mPrefix(t, "X-Baggage-")
	t.Run("65 members", func(t *testing.T) {
		h := http.Header{}
		for i := range baggageMaxMembers + 1 {
			h.Set(fmt.Sprintf("X-Baggage-K%02d", i), "v")
		}
		var sc SpanContext
		if err := c.Extract(h, &sc); err != ErrBaggageLimit {
			t.Fatalf("err = %v", err)
		}
		m := baggageMap(t, sc.Baggage)
		if len(m) != baggageMaxMembers || m["k63"] == nil || m["k64"] != nil {
			t.Errorf("kept %d members: %q", len(m), sc.Baggage)
		}
	})
	t.Run("beyond 8192 bytes", func(t *testing.T) {
		h := http.Header{}
		for i := range 10 {
			h.Set(fmt.Sprintf("X-Baggage-K%d", i), strings.Repeat(string(rune('a'+i)), 1000))
		}
		var sc SpanContext
		if err := c.Extract(h, &sc); err != ErrBaggageLimit {
			t.Fatalf("err = %v", err)
		}
		if len(sc.Baggage) > baggageMaxBytes {
			t.Fatalf("kept %d bytes", len(sc.Baggage))
		}
		m := baggageMap(t, sc.Baggage)
		for k, vs := range m {
			if len(vs) != 1 || len(vs[0]) != 1000 {
				t.Errorf("member %s cut: %d bytes", k, len(vs[0]))
			}
		}
		if len(m) != 8 || m["k7"] == nil {
			t.Errorf("kept %d members: %q", len(m), sortedMembers(sc.Baggage))
		}
	})
	t.Run("inject writes at most 64 headers", func(t *testing.T) {
		out := minject(c, &SpanContext{Baggage: manyMembers(70, 10)})
		if len(out) != baggageMaxMembers || out.Get("X-Baggage-K63") == "" || out.Get("X-Baggage-K64") != "" {
			t.Errorf("%d headers", len(out))
		}
	})
	t.Run("three per-member formats fit one writer", func(t *testing.T) {
		sc := SpanContext{TraceID: TraceID{15: 1}, SpanID: SpanID{7: 2}, Baggage: manyMembers(64, 10)}
		var w Writer
		for _, cc := range []Codec{mcodec(t, FormatJaeger), mcodec(t, FormatOT), c} {
			cc.Inject(&sc, &w)
		}
		h := http.Header{}
		w.Apply(h)
		for _, name := range []string{"Uberctx-K63", "Ot-Baggage-K63", "X-Baggage-K63"} {
			if h.Get(name) == "" {
				t.Errorf("%s missing of %d headers", name, len(h))
			}
		}
	})
}

// TestPrefixBaggageMergeOrder checks how the prefixed members join the
// baggage of the winning format and of W3C baggage: W3C keys first, then
// the winner's (Jaeger uberctx-*), then the prefixed ones whose key is new,
// whatever the configured order of the mergers.
func TestPrefixBaggageMergeOrder(t *testing.T) {
	t.Parallel()
	jaeger, w3c, prefix := mcodec(t, FormatJaeger), mcodec(t, FormatBaggage), mPrefix(t, "X-Baggage-")
	h := mhdr("uber-trace-id", "4bf92f3577b34da6:00f067aa0ba902b7:0:1",
		"uberctx-user", "bob", "uberctx-tenant", "t1",
		"baggage", "user=alice",
		"x-baggage-user", "carol", "x-baggage-tenant", "t2", "x-baggage-region", "eu")
	for _, order := range [][]Codec{{jaeger, w3c, prefix}, {jaeger, prefix, w3c}, {prefix, w3c, jaeger}} {
		t.Run(fmt.Sprint(formatsOf(order)), func(t *testing.T) {
			res := NewPropagator(order, nil).Extract(h)
			if res.Format != FormatJaeger || res.Baggage != "user=alice,tenant=t1,region=eu" {
				t.Errorf("Format %v Baggage %q", res.Format, res.Baggage)
			}
			if !res.Present.Has(FormatPrefixBaggage) || !res.Present.Has(FormatBaggage) || res.Malformed != 0 {
				t.Errorf("Present %v Malformed %v", res.Present, res.Malformed)
			}
		})
	}
	t.Run("without a trace context", func(t *testing.T) {
		res := NewPropagator([]Codec{mcodec(t, FormatW3C), prefix}, nil).Extract(mhdr("X-Baggage-A", "1"))
		if res.Format != FormatNone || res.Baggage != "a=1" || !res.Present.Has(FormatPrefixBaggage) {
			t.Errorf("Format %v Baggage %q Present %v", res.Format, res.Baggage, res.Present)
		}
	})
	t.Run("limits reported, kept members merged", func(t *testing.T) {
		h := mhdr("baggage", "a=1", "X-Baggage-B", strings.Repeat("v", baggageMaxBytes), "X-Baggage-C", "3")
		res := NewPropagator([]Codec{w3c, prefix}, nil).Extract(h)
		if res.Baggage != "a=1,c=3" || !res.Malformed.Has(FormatPrefixBaggage) || !errors.Is(res.Err, ErrBaggageLimit) {
			t.Errorf("Baggage %q Malformed %v Err %v", res.Baggage, res.Malformed, res.Err)
		}
	})
	t.Run("merged list within the limits", func(t *testing.T) {
		h := http.Header{headerBaggage: {manyMembers(60, 10)}}
		for i := range 10 {
			h.Set(fmt.Sprintf("X-Baggage-P%d", i), "v")
		}
		res := NewPropagator([]Codec{w3c, prefix}, nil).Extract(h)
		if m := baggageMap(t, res.Baggage); len(m) != baggageMaxMembers || m["p3"] == nil || m["p4"] != nil {
			t.Errorf("kept %d members: %q", len(m), res.Baggage)
		}
	})
}

func TestPrefixBaggageAllocs(t *testing.T) {
	c := mPrefix(t, "X-Baggage-")
	m := c.(Merger)
	absent := mhdr("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"User-Agent", "curl/8", "Accept", "*/*", "X-Baggage", "no key")
	present := mhdr("X-Baggage-User", "alice", "X-Baggage-Tenant", "t1")
	tests := []struct {
		name   string
		h      http.Header
		held   string
		allocs float64
	}{
		{"absent", absent, "", 0},
		{"absent, baggage held", absent, "a=1", 0},
		{"present", present, "", 1},
		// The list, and mergeBaggage's joined list and its two one-field
		// slices, as for W3C baggage joining a winner's baggage.
		{"present, baggage held", present, "a=1", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if got := testing.AllocsPerRun(100, func() { sc.Baggage = tt.held; _ = m.Merge(tt.h, &sc) }); got != tt.allocs {
				t.Errorf("%v allocations, want %v", got, tt.allocs)
			}
		})
	}
	t.Run("propagator without prefixed headers", func(t *testing.T) {
		p := NewPropagator([]Codec{mcodec(t, FormatW3C), mcodec(t, FormatBaggage), c}, nil)
		var res Result
		if got := testing.AllocsPerRun(100, func() { res = p.Extract(absent) }); got != 0 {
			t.Errorf("%v allocations, want 0", got)
		}
		if res.Format != FormatW3C || res.Present.Has(FormatPrefixBaggage) {
			t.Errorf("Format %v Present %v", res.Format, res.Present)
		}
	})
}

// TestPrefixBaggageRoundTrip injects baggage read from W3C and Jaeger and
// reads it back.
func TestPrefixBaggageRoundTrip(t *testing.T) {
	c := mPrefix(t, "X-Baggage-")
	sc := SpanContext{Baggage: "userId=alice;prop=1, node=DF%2028,sum=a+b,my-key=%0D%0A,bad=a b,t=x\r\ny"}
	out := minject(c, &sc)
	want := http.Header{
		"X-Baggage-Userid": {"alice"},
		"X-Baggage-Node":   {"DF%2028"},
		"X-Baggage-Sum":    {"a+b"},
		"X-Baggage-My-Key": {"%0D%0A"},
	}
	if !equalHeaders(out, want) {
		t.Fatalf("injected %v, want %v", out, want)
	}
	var again SpanContext
	if err := c.Extract(out, &again); err != nil {
		t.Fatal(err)
	}
	if again.Baggage != "my-key=%0D%0A,node=DF%2028,sum=a+b,userid=alice" {
		t.Errorf("re-extracted %q", again.Baggage)
	}
	t.Run("from uberctx", func(t *testing.T) {
		var sc SpanContext
		h := mhdr("uber-trace-id", "1:2:0:1", "uberctx-user", "a+b%21", "uberctx-city", "Zürich")
		if err := mcodec(t, FormatJaeger).Extract(h, &sc); err != nil {
			t.Fatal(err)
		}
		out := minject(c, &sc)
		if out.Get("X-Baggage-User") != "a%20b!" || out.Get("X-Baggage-City") != "Z%C3%BCrich" || len(out) != 2 {
			t.Errorf("injected %v", out)
		}
	})
	t.Run("CR, LF and NUL never written", func(t *testing.T) {
		var sc SpanContext
		if err := c.Extract(mhdr("X-Baggage-V", "a\r\nX-Evil: 1\x00"), &sc); err != nil {
			t.Fatal(err)
		}
		out := minject(c, &sc)
		noCTL(t, out)
		if out.Get("X-Baggage-V") != "a%0D%0AX-Evil:%201%00" || len(out) != 1 {
			t.Errorf("injected %v", out)
		}
	})
}

func FuzzPrefixBaggageExtract(f *testing.F) {
	f.Add("X-Baggage-", "user", "alice", "tenant", "a+b%20c")
	f.Add("ctx", "k-y", "\r\n\x00", "K-Y", "%zz")
	f.Add("Ctx-", "", "", "a", strings.Repeat("\n", 3000))
	f.Add("X-", "b3-traceid", "1", "x", "y")
	f.Fuzz(func(t *testing.T, prefix, k1, v1, k2, v2 string) {
		c, err := NewPrefixBaggageCodec(prefix)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "baggage:") {
				t.Fatalf("error %q", err)
			}
			c = mPrefix(t, "X-Baggage-")
			prefix = "X-Baggage-"
		}
		h := http.Header{}
		h.Set(prefix+k1, v1)
		h.Set(prefix+k2, v2)
		var sc SpanContext
		if err := c.Extract(h, &sc); err != nil && err != ErrAbsent && err != ErrBaggageLimit {
			t.Fatalf("err = %v", err)
		}
		ms := sortedMembers(sc.Baggage)
		if len(sc.Baggage) > baggageMaxBytes || len(ms) > baggageMaxMembers {
			t.Fatalf("kept %d bytes, %d members", len(sc.Baggage), len(ms))
		}
		for _, m := range ms {
			if _, _, ok := splitBaggageMember(m); !ok {
				t.Fatalf("invalid member %q", m)
			}
		}
		out := minject(c, &sc)
		noCTL(t, out)
		if len(out) != len(ms) {
			t.Fatalf("%d members, %d headers: %v", len(ms), len(out), out)
		}
		var again SpanContext
		if err := c.Extract(out, &again); err != nil && (err != ErrAbsent || sc.Baggage != "") {
			t.Fatalf("re-extracting %v: %v", out, err)
		}
		if !slices.Equal(ms, sortedMembers(again.Baggage)) {
			t.Fatalf("baggage %q became %q", sc.Baggage, again.Baggage)
		}
	})
}

// prefixBenchHeaders is a typical request: a trace context, the usual
// headers and, when withBaggage, three prefixed baggage headers.
func prefixBenchHeaders(withBaggage bool) http.Header {
	h := mhdr("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"User-Agent", "Mozilla/5.0", "Accept", "text/html", "Accept-Encoding", "gzip",
		"Accept-Language", "en", "Cookie", "session=1", "X-Forwarded-For", "10.0.0.1")
	if withBaggage {
		h.Set("X-Baggage-User", "alice")
		h.Set("X-Baggage-Tenant", "t-42")
		h.Set("X-Baggage-Node", "DF 28")
	}
	return h
}

func BenchmarkPrefixBaggageExtract(b *testing.B) {
	c := mPrefix(b, "X-Baggage-")
	for _, bc := range []struct {
		name        string
		withBaggage bool
	}{{"valid", true}, {"missing", false}} {
		b.Run(bc.name, func(b *testing.B) {
			h := prefixBenchHeaders(bc.withBaggage)
			var sc SpanContext
			b.ReportAllocs()
			for b.Loop() {
				_ = c.Extract(h, &sc)
			}
		})
	}
}

// BenchmarkPrefixBaggageExtractUberctx is the same extraction through the
// Jaeger codec's uberctx-* reading, which shares the helper.
func BenchmarkPrefixBaggageExtractUberctx(b *testing.B) {
	c := mcodec(b, FormatJaeger)
	h := prefixBenchHeaders(false)
	h.Set("Uber-Trace-Id", "4bf92f3577b34da6:00f067aa0ba902b7:0:1")
	h.Set("Uberctx-User", "alice")
	h.Set("Uberctx-Tenant", "t-42")
	h.Set("Uberctx-Node", "DF 28")
	var sc SpanContext
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Extract(h, &sc)
	}
}

func BenchmarkPrefixBaggageInject(b *testing.B) {
	c := mPrefix(b, "X-Baggage-")
	sc := SpanContext{Baggage: "user=alice,tenant=t-42,node=DF%2028"}
	var w Writer
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		c.Inject(&sc, &w)
	}
}
