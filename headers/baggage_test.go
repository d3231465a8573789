package headers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
)

// mhdr builds a header from key/value pairs, canonicalizing keys as a server
// does; a key given twice gets two fields.
func mhdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// mcodec returns the registered codec of f, failing the test otherwise.
func mcodec(t testing.TB, f Format) Codec {
	t.Helper()
	c, err := NewCodec(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// minject runs c.Inject and returns the headers written.
func minject(c Codec, sc *SpanContext) http.Header {
	var w Writer
	c.Inject(sc, &w)
	h := http.Header{}
	w.Apply(h)
	return h
}

// baggageMap decodes a W3C baggage-string into key → decoded values, in
// order, failing on a member the codec should never have produced.
func baggageMap(t testing.TB, list string) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	if list == "" {
		return m
	}
	for _, member := range strings.Split(list, ",") {
		k, v, ok := splitBaggageMember(trimOWS(member))
		if !ok {
			t.Fatalf("invalid member %q in %q", member, list)
		}
		d, err := url.PathUnescape(v)
		if err != nil {
			t.Fatalf("member %q: %v", member, err)
		}
		m[k] = append(m[k], d)
	}
	return m
}

// sortedMembers returns the members of a baggage-string, trimmed and
// sorted, so lists can be compared regardless of order.
func sortedMembers(list string) []string {
	if list == "" {
		return nil
	}
	ms := strings.Split(list, ",")
	for i := range ms {
		ms[i] = trimOWS(ms[i])
	}
	slices.Sort(ms)
	return ms
}

// manyMembers returns n members k0=v..., each value padded to width bytes.
func manyMembers(n, width int) string {
	ms := make([]string, n)
	for i := range ms {
		k := fmt.Sprintf("k%d", i)
		ms[i] = k + "=" + strings.Repeat("v", max(1, width-len(k)-1))
	}
	return strings.Join(ms, ",")
}

func TestBaggageExtractValid(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatBaggage)
	tests := []struct {
		name   string
		fields []string
		want   string
	}{
		{"one member", []string{"userId=alice"}, "userId=alice"},
		{"spec example kept verbatim", []string{"key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue"},
			"key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue"},
		{"percent-encoded value", []string{"serverNode=DF%2028,isProduction=false"}, "serverNode=DF%2028,isProduction=false"},
		{"outer OWS and commas trimmed", []string{"  a=1,b=2 , "}, "a=1,b=2"},
		{"empty value", []string{"a="}, "a="},
		{"value with '='", []string{"a=b=c"}, "a=b=c"},
		{"token key characters", []string{"!#$%&'*+-.^_`|~09AZaz=1"}, "!#$%&'*+-.^_`|~09AZaz=1"},
		{"two fields joined", []string{"userId=alice", "serverNode=DF%2028,isProduction=false"},
			"userId=alice,serverNode=DF%2028,isProduction=false"},
		{"empty inner member skipped", []string{"a=1,,b=2"}, "a=1,b=2"},
		{"duplicate keys kept, in order", []string{"a=1,a=2"}, "a=1,a=2"},
		{"only empty members", []string{" , "}, ""},
		{"tab OWS written as a space", []string{"a=\t1, b=2"}, "a= 1,b=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{headerBaggage: tt.fields}
			var sc SpanContext
			if err := c.Extract(h, &sc); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if sc.Baggage != tt.want {
				t.Errorf("Baggage = %q, want %q", sc.Baggage, tt.want)
			}
		})
	}
}

func TestBaggageExtractInvalidMembersDropped(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatBaggage)
	tests := []struct {
		name  string
		field string
		want  string
		err   error
	}{
		{"no '='", "a=1,bogus,c=3", "a=1,c=3", ErrBaggageMember},
		{"key not a token", "a b=1,c=3", "c=3", ErrBaggageMember},
		{"empty key", "=1,c=3", "c=3", ErrBaggageMember},
		{"space inside value", "a=b c,c=3", "c=3", ErrBaggageMember},
		{"DQUOTE in value", `a="x",c=3`, "c=3", ErrBaggageMember},
		{"backslash in value", `a=x\y,c=3`, "c=3", ErrBaggageMember},
		{"control character in value", "a=x\x01,c=3", "c=3", ErrBaggageMember},
		{"non-ASCII in value", "a=\xc3\xa9,c=3", "c=3", ErrBaggageMember},
		{"bad percent escape", "a=%zz,c=3", "c=3", ErrBaggageMember},
		{"truncated percent escape", "c=3,a=%4", "c=3", ErrBaggageMember},
		{"empty property", "a=1;,c=3", "c=3", ErrBaggageMember},
		{"property key not a token", "a=1;p q,c=3", "c=3", ErrBaggageMember},
		{"bad property value", "a=1;p=\"q\",c=3", "c=3", ErrBaggageMember},
		{"every member invalid", "bogus,also bogus", "", ErrBaggageMember},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			err := c.Extract(mhdr("baggage", tt.field), &sc)
			if !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if sc.Baggage != tt.want {
				t.Errorf("Baggage = %q, want %q", sc.Baggage, tt.want)
			}
		})
	}
}

func TestBaggageLimits(t *testing.T) {
	c := mcodec(t, FormatBaggage)
	t.Run("64 members kept, the 65th dropped", func(t *testing.T) {
		list := manyMembers(65, 4)
		var sc SpanContext
		if err := c.Extract(mhdr("baggage", list), &sc); !errors.Is(err, ErrBaggageLimit) {
			t.Fatalf("err = %v, want ErrBaggageLimit", err)
		}
		if got := len(strings.Split(sc.Baggage, ",")); got != baggageMaxMembers {
			t.Errorf("%d members kept, want 64", got)
		}
		if strings.Contains(sc.Baggage, "k64=") {
			t.Error("the 65th member was kept")
		}
	})
	t.Run("exactly 64 members and 8192 bytes kept verbatim", func(t *testing.T) {
		list := manyMembers(64, 8192/64-1)
		list += strings.Repeat("v", baggageMaxBytes-len(list))
		if len(list) != baggageMaxBytes {
			t.Fatalf("setup: %d bytes", len(list))
		}
		var sc SpanContext
		if err := c.Extract(mhdr("baggage", list), &sc); err != nil {
			t.Fatal(err)
		}
		if sc.Baggage != list {
			t.Error("a list at the limits was altered")
		}
	})
	t.Run("members beyond 8192 bytes dropped whole, later small ones kept", func(t *testing.T) {
		big := "big=" + strings.Repeat("x", 5000)
		list := "a=1," + big + "," + big + ",z=2"
		var sc SpanContext
		if err := c.Extract(mhdr("baggage", list), &sc); !errors.Is(err, ErrBaggageLimit) {
			t.Fatalf("err = %v, want ErrBaggageLimit", err)
		}
		if want := "a=1," + big + ",z=2"; sc.Baggage != want {
			t.Errorf("Baggage has %d bytes, want %d", len(sc.Baggage), len(want))
		}
	})
	t.Run("inject never writes beyond the limits", func(t *testing.T) {
		sc := SpanContext{Baggage: manyMembers(100, 200)}
		got := minject(c, &sc).Get("baggage")
		if n := len(strings.Split(got, ",")); len(got) > baggageMaxBytes || n > baggageMaxMembers {
			t.Errorf("wrote %d bytes, %d members", len(got), n)
		}
	})
}

func TestBaggageInjectSanitizes(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatBaggage)
	tests := []struct {
		name    string
		baggage string
		want    string
	}{
		{"valid list unchanged", "a=1;p,b=%20", "a=1;p,b=%20"},
		{"CR LF member dropped", "a=1,b=x\r\nX-Evil: 1,c=3", "a=1,c=3"},
		{"NUL member dropped", "a=\x00,c=3", "c=3"},
		{"nothing valid left", "a b", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := minject(c, &SpanContext{Baggage: tt.baggage})[headerBaggage]
			if tt.want == "" {
				if ok {
					t.Errorf("wrote %q", got)
				}
				return
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("wrote %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBaggageAbsent(t *testing.T) {
	c := mcodec(t, FormatBaggage)
	var sc SpanContext
	if err := c.Extract(mhdr("Accept", "*/*"), &sc); err != ErrAbsent {
		t.Errorf("err = %v, want ErrAbsent", err)
	}
	if got := c.Fields(); !slices.Equal(got, []string{"Baggage"}) {
		t.Errorf("Fields = %q", got)
	}
}

func TestBaggageExtractAllocs(t *testing.T) {
	c := mcodec(t, FormatBaggage)
	tests := []struct {
		name   string
		h      http.Header
		allocs float64
	}{
		{"valid single field", mhdr("baggage", "userId=alice,serverNode=DF%2028;p=1,isProduction=false"), 0},
		{"all invalid", mhdr("baggage", "bogus, a b=c"), 0},
		{"absent", mhdr("Accept", "*/*"), 0},
		// Dropping a member or joining two fields makes a new list: the
		// one documented allocation.
		{"one member dropped", mhdr("baggage", "a=1,bogus,c=3"), 1},
		{"two fields", mhdr("baggage", "a=1", "baggage", "c=3"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			if got := testing.AllocsPerRun(100, func() { _ = c.Extract(tt.h, &sc) }); got != tt.allocs {
				t.Errorf("%v allocations, want %v", got, tt.allocs)
			}
		})
	}
}

// TestBaggageMergesIntoWinner checks that baggage does not compete for
// precedence: the trace context comes from the winning format and the
// baggage is added to it, whatever the order of the extract list.
func TestBaggageMergesIntoWinner(t *testing.T) {
	t.Parallel()
	h := mhdr("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage", "userId=alice")
	for _, order := range [][]string{{"baggage", "w3c"}, {"w3c", "baggage"}} {
		t.Run(strings.Join(order, ","), func(t *testing.T) {
			res := propagatorOf(t, order, nil).Extract(h)
			if res.Format != FormatW3C || !res.HasIDs() {
				t.Errorf("Format = %v HasIDs %v, want w3c with ids", res.Format, res.HasIDs())
			}
			if res.Baggage != "userId=alice" {
				t.Errorf("Baggage = %q", res.Baggage)
			}
			if !res.Present.Has(FormatBaggage) || res.Malformed != 0 {
				t.Errorf("Present %v Malformed %v", res.Present, res.Malformed)
			}
		})
	}
	t.Run("baggage without a trace context", func(t *testing.T) {
		res := propagatorOf(t, []string{"w3c", "baggage"}, nil).Extract(mhdr("baggage", "a=1"))
		if res.Format != FormatNone || res.Baggage != "a=1" {
			t.Errorf("Format %v Baggage %q", res.Format, res.Baggage)
		}
	})
	t.Run("partly invalid baggage is reported and its valid members kept", func(t *testing.T) {
		res := propagatorOf(t, []string{"w3c", "baggage"}, nil).Extract(mhdr("baggage", "a=1,bogus"))
		if res.Baggage != "a=1" || !res.Malformed.Has(FormatBaggage) || !errors.Is(res.Err, ErrBaggageMember) {
			t.Errorf("Baggage %q Malformed %v Err %v", res.Baggage, res.Malformed, res.Err)
		}
	})
	t.Run("w3c baggage first, then the winner's other keys", func(t *testing.T) {
		h := mhdr("uber-trace-id", "4bf92f3577b34da6:00f067aa0ba902b7:0:1",
			"uberctx-user", "bob", "uberctx-tenant", "t1", "baggage", "user=alice")
		res := propagatorOf(t, []string{"jaeger", "baggage"}, nil).Extract(h)
		if res.Format != FormatJaeger || res.Baggage != "user=alice,tenant=t1" {
			t.Errorf("Format %v Baggage %q", res.Format, res.Baggage)
		}
	})
}

func TestBaggageMergeAllocsThroughPropagator(t *testing.T) {
	p := propagatorOf(t, []string{"w3c", "baggage"}, nil)
	h := mhdr("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage", "userId=alice,b=2")
	var res Result
	if got := testing.AllocsPerRun(100, func() { res = p.Extract(h) }); got != 0 {
		t.Errorf("%v allocations, want 0", got)
	}
	if res.Baggage == "" {
		t.Error("no baggage")
	}
}

// TestBaggageCrossFormat checks that the three baggage encodings map to one
// representation: what one reads, the others write.
func TestBaggageCrossFormat(t *testing.T) {
	t.Parallel()
	ids := SpanContext{TraceID: TraceID{15: 1}, SpanID: SpanID{7: 2}, Sampling: SamplingAccept}
	w3c, jaeger, ot := mcodec(t, FormatBaggage), mcodec(t, FormatJaeger), mcodec(t, FormatOT)
	t.Run("w3c to uberctx and ot-baggage", func(t *testing.T) {
		sc := ids
		if err := w3c.Extract(mhdr("baggage", "userId=alice;prop=1,node=DF%2028,sum=a+b"), &sc); err != nil {
			t.Fatal(err)
		}
		jh := minject(jaeger, &sc)
		if got := jh.Get("uberctx-userid"); got != "alice" {
			t.Errorf("uberctx-userid = %q", got)
		}
		if got := jh.Get("uberctx-node"); got != "DF%2028" {
			t.Errorf("uberctx-node = %q", got)
		}
		// Jaeger clients URL-decode '+' as a space: a literal '+' is escaped.
		if got := jh.Get("uberctx-sum"); got != "a%2Bb" {
			t.Errorf("uberctx-sum = %q", got)
		}
		if _, ok := jh["Uberctx-Userid"]; !ok {
			t.Errorf("header names not canonical: %v", jh)
		}
		oh := minject(ot, &sc)
		if got := oh.Get("ot-baggage-node"); got != "DF%2028" {
			t.Errorf("ot-baggage-node = %q", got)
		}
		if got := oh.Get("ot-baggage-sum"); got != "a+b" {
			t.Errorf("ot-baggage-sum = %q", got)
		}
	})
	t.Run("uberctx to w3c", func(t *testing.T) {
		var sc SpanContext
		h := mhdr("uber-trace-id", "1:2:0:1", "uberctx-User", "a+b%20c", "uberctx-odd", `x"y,z`, "uberctx-a@b", "1")
		if err := jaeger.Extract(h, &sc); err != nil {
			t.Fatal(err)
		}
		m := baggageMap(t, sc.Baggage)
		if got := m["user"]; !slices.Equal(got, []string{"a b c"}) {
			t.Errorf("user = %q (baggage %q)", got, sc.Baggage)
		}
		if got := m["odd"]; !slices.Equal(got, []string{`x"y,z`}) {
			t.Errorf("odd = %q", got)
		}
		if len(m) != 2 {
			t.Errorf("baggage %q: a header name that is not a token must be skipped", sc.Baggage)
		}
		got := minject(w3c, &sc).Get("baggage")
		if got != sc.Baggage {
			t.Errorf("baggage header %q, want %q", got, sc.Baggage)
		}
	})
	t.Run("ot-baggage to w3c", func(t *testing.T) {
		var sc SpanContext
		h := mhdr("ot-tracer-traceid", "1", "ot-tracer-spanid", "2", "ot-baggage-k", "a+b c%zz")
		if err := ot.Extract(h, &sc); err != nil {
			t.Fatal(err)
		}
		if got := baggageMap(t, sc.Baggage)["k"]; !slices.Equal(got, []string{"a+b c%zz"}) {
			t.Errorf("k = %q (baggage %q)", got, sc.Baggage)
		}
	})
	t.Run("more than 64 uberctx headers: the first 64 by name", func(t *testing.T) {
		h := mhdr("uber-trace-id", "1:2:0:1")
		for i := range 70 {
			h.Set(fmt.Sprintf("uberctx-k%02d", i), "v")
		}
		var sc SpanContext
		if err := jaeger.Extract(h, &sc); err != nil {
			t.Fatal(err)
		}
		ms := strings.Split(sc.Baggage, ",")
		if len(ms) != 64 || ms[0] != "k00=v" || ms[63] != "k63=v" {
			t.Errorf("%d members, first %q last %q", len(ms), ms[0], ms[len(ms)-1])
		}
	})
	t.Run("no CR, LF or NUL is ever written", func(t *testing.T) {
		sc := ids
		sc.Baggage = "a=1,b=\r\n,c=\x00,d=4"
		for _, c := range []Codec{w3c, jaeger, ot} {
			for k, vs := range minject(c, &sc) {
				for _, v := range append(vs, k) {
					if strings.ContainsAny(v, "\r\n\x00") {
						t.Errorf("%v wrote %q: %q", c.Format(), k, v)
					}
				}
			}
		}
	})
}

// TestBaggageMatchesOpenTelemetry compares the members kept with
// go.opentelemetry.io/otel/propagation.Baggage. Where they disagree the
// specification wins; each case says why.
func TestBaggageMatchesOpenTelemetry(t *testing.T) {
	t.Parallel()
	c := mcodec(t, FormatBaggage)
	tests := []struct {
		name     string
		fields   []string
		disagree string // why the reference differs, "" when it must not
	}{
		{"spec example", []string{"key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue"}, ""},
		{"percent-encoded", []string{"userId=alice,serverNode=DF%2028,isProduction=false"}, ""},
		{"two fields", []string{"userId=alice", "serverNode=DF%2028"}, ""},
		{"invalid member skipped", []string{"a=1,bogus,c=3"}, ""},
		{"bad escape skipped", []string{"a=%zz,c=3"}, ""},
		{"65 members", []string{manyMembers(65, 8)}, ""},
		{"duplicate keys", []string{"a=1,a=2"},
			"OpenTelemetry keeps the last; the W3C spec allows duplicates and asks that their order be preserved"},
		{"one field over 8192 bytes", []string{manyMembers(60, 200)},
			"OpenTelemetry drops a header over 8192 bytes whole; the spec lets us drop members beyond the limit, and propagating the rest is what it asks (SHOULD propagate as much as is reasonable)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sc SpanContext
			_ = c.Extract(http.Header{headerBaggage: tt.fields}, &sc)
			ours := baggageMap(t, sc.Baggage)
			ctx := propagation.Baggage{}.Extract(context.Background(), propagation.HeaderCarrier(http.Header{headerBaggage: tt.fields}))
			ref := map[string][]string{}
			for _, m := range baggage.FromContext(ctx).Members() {
				ref[m.Key()] = append(ref[m.Key()], m.Value())
			}
			same := fmt.Sprint(ours) == fmt.Sprint(ref)
			switch {
			case tt.disagree == "" && !same:
				t.Errorf("ours %v, OpenTelemetry %v", ours, ref)
			case tt.disagree != "" && same:
				t.Errorf("expected a disagreement (%s), both gave %v", tt.disagree, ours)
			}
		})
	}
}
