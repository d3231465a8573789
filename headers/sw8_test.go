package headers

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Agent-style ids as the SkyWalking Java agent writes them.
const (
	agentTraceID   = "9f2c2d3b4e5a46c7b8d9e0f1a2b3c4d5.62.17300000000000001"
	agentSegmentID = "9f2c2d3b4e5a46c7b8d9e0f1a2b3c4d5.62.17300000000000000"
)

// b64 is the reference encoding of one sw8 string field.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// sw8Value joins raw (already encoded) fields as an sw8 value.
func sw8Value(fields ...string) string { return strings.Join(fields, "-") }

// validSW8Fields are the encoded fields of refSW8 sample, used to build
// malformed variants one field at a time.
func validSW8Fields() []string {
	return []string{"1", b64(agentTraceID), b64(agentSegmentID), "3", b64("orders"),
		b64("i-1@10.0.0.1"), b64("/api/orders"), b64("10.0.0.2:8080")}
}

// with returns validSW8Fields with field i replaced by v.
func with(i int, v string) string {
	f := validSW8Fields()
	f[i] = v
	return sw8Value(f...)
}

// traceIDOf and spanIDOf parse test constants.
func traceIDOf(s string) TraceID {
	id, _, err := ParseTraceID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func spanIDOf(s string) SpanID {
	id, err := ParseSpanID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// sw8OfLen returns a valid sw8 value of exactly n bytes (n >= 45) and the
// fields it carries: a long endpoint fills most of it, leading zeros in the
// span id the rest.
func sw8OfLen(n int) (refSW8, string) {
	r := refSW8{1, "t", "s", 1, "svc", "i", "", "a"}
	base := len(r.Encode()) - 1 // without the span id digit
	k := (n - base - 1) / 4     // base64 quanta for the endpoint
	r.ParentEndpoint = strings.Repeat("e", 3*k)
	pad := n - base - 4*k // span id digits: "0…01"
	f := strings.Split(r.Encode(), "-")
	f[3] = strings.Repeat("0", pad-1) + "1"
	v := strings.Join(f, "-")
	if len(v) != n {
		panic(fmt.Sprintf("sw8OfLen(%d) built %d bytes", n, len(v)))
	}
	return r, v
}

func TestSW8ExtractValid(t *testing.T) {
	t.Parallel()
	long, longValue := sw8OfLen(swMaxLen - 1)
	tests := []struct {
		name     string
		ref      refSW8
		raw      string // used instead of ref.Encode() when set
		sampling Sampling
		traceID  string // expected TraceID in hex; "" means TraceIDFromSW(ref.TraceID)
		id64     bool
	}{
		{
			name:     "agent trace id",
			ref:      refSW8{1, agentTraceID, agentSegmentID, 3, "orders", "i-1@10.0.0.1", "/api/orders", "10.0.0.2:8080"},
			sampling: SamplingAccept,
			traceID:  "65861bbfa515a593d407ad303a1d9438",
		},
		{
			name:     "hex trace id maps to itself",
			ref:      refSW8{1, "4bf92f3577b34da6a3ce929d0e0e4736", "seg-1", 1, "svc", "inst", "/", "host:80"},
			sampling: SamplingAccept,
			traceID:  "4bf92f3577b34da6a3ce929d0e0e4736",
		},
		{
			name:     "64-bit hex trace id is padded and marked",
			ref:      refSW8{1, "a3ce929d0e0e4736", "seg-1", 1, "svc", "inst", "/", "host:80"},
			sampling: SamplingAccept,
			traceID:  "0000000000000000a3ce929d0e0e4736",
			id64:     true,
		},
		{
			name:     "nginx-lua uuid trace id",
			ref:      refSW8{1, "1c6d3b5e-8f2a-4c7d-9e1b-2a3c4d5e6f70", "seg", 0, "nginx", "n1", "/x", "up:1"},
			sampling: SamplingAccept,
			traceID:  "2a36d510b2d60c290c302a39c7af38e8",
		},
		{
			name:     "uppercase hex is hashed",
			ref:      refSW8{1, "6B29FC40CA471067B31D00DD010F7CA0", "seg", 0, "s", "i", "e", "a"},
			sampling: SamplingAccept,
			traceID:  "44176031eb8736b06554d0611e47d83f",
		},
		{
			name:     "not sampled",
			ref:      refSW8{0, agentTraceID, agentSegmentID, 0, "orders", "i", "/", "a:1"},
			sampling: SamplingDeny,
		},
		{
			name:     "max span id",
			ref:      refSW8{1, agentTraceID, agentSegmentID, 2147483647, "s", "i", "e", "a"},
			sampling: SamplingAccept,
		},
		{
			name:     "unicode and separators inside fields",
			ref:      refSW8{1, "t-1", "s-2", 5, "订单-服务", "inst=1", "GET:/a-b?c=d", "[::1]:443"},
			sampling: SamplingAccept,
		},
		{
			name: "leading zeros in span id",
			ref:  refSW8{1, "t", "s", 7, "svc", "i", "e", "a"},
			raw: sw8Value("1", b64("t"), b64("s"), "0007", b64("svc"), b64("i"),
				b64("e"), b64("a")),
			sampling: SamplingAccept,
		},
		{
			name: "non-zero bits after the last base64 symbol, as base64.StdEncoding accepts",
			ref:  refSW8{1, "t", "s", 1, "a", "i", "e", "a"},
			raw: sw8Value("1", "dB==", b64("s"), "1", "YR==", b64("i"),
				b64("e"), b64("a")),
			sampling: SamplingAccept,
		},
		{
			name:     "value of 2047 bytes",
			ref:      long,
			raw:      longValue,
			sampling: SamplingAccept,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.raw
			if v == "" {
				v = tt.ref.Encode()
			}
			var sc SpanContext
			if err := (sw8Codec{}).Extract(http.Header{headerSW8: {v}}, &sc); err != nil {
				t.Fatalf("Extract(%q): %v", v, err)
			}
			want := SkyWalking{
				TraceID: tt.ref.TraceID, SegmentID: tt.ref.ParentSegmentID, SpanID: tt.ref.ParentSpanID,
				Service: tt.ref.ParentService, Instance: tt.ref.ParentServiceInstance,
				Endpoint: tt.ref.ParentEndpoint, Address: tt.ref.AddressUsedAtClient,
			}
			if sc.SW != want {
				t.Errorf("SW = %+v, want %+v", sc.SW, want)
			}
			if sc.Sampling != tt.sampling {
				t.Errorf("Sampling = %v, want %v", sc.Sampling, tt.sampling)
			}
			wantID, _ := TraceIDFromSW(tt.ref.TraceID)
			if tt.traceID != "" {
				wantID = traceIDOf(tt.traceID)
			}
			if sc.TraceID != wantID || sc.TraceID64 != tt.id64 {
				t.Errorf("TraceID = %v (64-bit %v), want %v (64-bit %v)", sc.TraceID, sc.TraceID64, wantID, tt.id64)
			}
			if want := SpanIDFromSW(tt.ref.ParentSegmentID, tt.ref.ParentSpanID); sc.SpanID != want {
				t.Errorf("SpanID = %v, want SpanIDFromSW = %v", sc.SpanID, want)
			}
			if !sc.HasIDs() {
				t.Errorf("HasIDs() = false for a valid sw8")
			}
			var ref refSW8
			if err := ref.Decode(v); err != nil || ref != tt.ref {
				t.Errorf("reference decode = %+v, %v; want %+v", ref, err, tt.ref)
			}
		})
	}
}

func TestSW8ExtractInvalid(t *testing.T) {
	_, tooLong := sw8OfLen(swMaxLen)
	tests := []struct {
		name  string
		value string
		want  error
	}{
		{"empty value", "", ErrSW8Empty},
		{"one field", "1", ErrSW8FieldCount},
		{"seven fields", sw8Value(validSW8Fields()[:7]...), ErrSW8FieldCount},
		{"nine fields", sw8Value(append(validSW8Fields(), b64("x"))...), ErrSW8FieldCount},
		{"trailing dash", sw8Value(validSW8Fields()...) + "-", ErrSW8FieldCount},
		{"negative span id splits into nine fields", with(3, "-1"), ErrSW8FieldCount},
		{"sample flag 2", with(0, "2"), ErrSW8Sample},
		{"empty sample flag", with(0, ""), ErrSW8Sample},
		{"sample flag with space", with(0, " 1"), ErrSW8Sample},
		{"sample flag true", with(0, "true"), ErrSW8Sample},
		{"non-decimal span id", with(3, "abc"), ErrSW8SpanID},
		{"hex span id the reference accepts", with(3, "0x10"), ErrSW8SpanID},
		{"signed span id", with(3, "+1"), ErrSW8SpanID},
		{"empty span id", with(3, ""), ErrSW8SpanID},
		{"span id over int32", with(3, "2147483648"), ErrSW8SpanID},
		{"span id with space", with(3, "1 "), ErrSW8SpanID},
		{"empty trace id", with(1, ""), ErrSW8EmptyField},
		{"empty segment id", with(2, ""), ErrSW8EmptyField},
		{"empty service", with(4, ""), ErrSW8EmptyField},
		{"empty instance", with(5, ""), ErrSW8EmptyField},
		{"empty endpoint", with(6, ""), ErrSW8EmptyField},
		{"empty address", with(7, ""), ErrSW8EmptyField},
		{"trace id not base64", with(1, "not*base64"), ErrSW8Base64},
		{"unpadded base64", with(4, "b3JkZXJz"[:6]), ErrSW8Base64},
		{"padding length wrong", with(5, "YQ="), ErrSW8Base64},
		{"padding in the middle", with(6, "YQ==YQ=="), ErrSW8Base64},
		{"url-safe alphabet", with(2, "a_b_"), ErrSW8Base64},
		{"space inside base64", with(7, "YWJj ZGVm"), ErrSW8Base64},
		{"raw text, not base64", with(7, "10.0.0.2:8080"), ErrSW8Base64},
		{"value of 2048 bytes", tooLong, ErrSW8TooLong},
		{"value far over 2 KiB", with(6, b64(strings.Repeat("e", 4000))), ErrSW8TooLong},
		{"spaces only", "   ", ErrSW8FieldCount},
		{"trace id decoding to a newline", with(1, b64("abc\ndef")), ErrSWControl},
		{"trace id decoding to an escape", with(1, b64("\x1b[31mred")), ErrSWControl},
		{"trace id with a space", with(1, b64("a b")), ErrSWControl},
		{"segment id decoding to NUL", with(2, b64("seg\x00")), ErrSWControl},
		{"service with a carriage return", with(4, b64("svc\r\nX-Injected: 1")), ErrSWControl},
		{"endpoint with DEL", with(6, b64("GET /\x7f")), ErrSWControl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{headerSW8: {tt.value}}
			var sc SpanContext
			err := (sw8Codec{}).Extract(h, &sc)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Extract(%q) = %v, want %v", tt.value, err, tt.want)
			}
			if allocs := testing.AllocsPerRun(100, func() { _ = (sw8Codec{}).Extract(h, &sc) }); allocs != 0 {
				t.Errorf("Extract allocates %v times on invalid input, want 0", allocs)
			}
		})
	}
}

func TestSW8ExtractAbsent(t *testing.T) {
	var sc SpanContext
	h := http.Header{"Sw8-Correlation": {b64("k") + ":" + b64("v")}, "Sw6": {"1"}}
	if err := (sw8Codec{}).Extract(h, &sc); err != ErrAbsent {
		t.Fatalf("Extract without sw8 = %v, want ErrAbsent", err)
	}
}

func TestSW8ExtractFirstFieldWins(t *testing.T) {
	first := (&refSW8{1, "first", "s", 1, "a", "b", "c", "d"}).Encode()
	h := http.Header{headerSW8: {first, "garbage"}}
	var sc SpanContext
	if err := (sw8Codec{}).Extract(h, &sc); err != nil || sc.SW.TraceID != "first" {
		t.Fatalf("Extract = %v, SW.TraceID %q; want the first field", err, sc.SW.TraceID)
	}
}

func TestSW8ExtractAllocs(t *testing.T) {
	h := http.Header{headerSW8: {benchSW8}}
	var sc SpanContext
	if allocs := testing.AllocsPerRun(100, func() { _ = (sw8Codec{}).Extract(h, &sc) }); allocs > 1 {
		t.Errorf("Extract allocates %v times on valid input, want at most 1", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = (sw8Codec{}).Extract(http.Header{}, &sc) }); allocs != 0 {
		t.Errorf("Extract allocates %v times on absent input, want 0", allocs)
	}
}

// swContext is an outbound context as the module builds it: our segment,
// Exit span 1, the caller's trace.
func swContext() SpanContext {
	return SpanContext{
		TraceID:  traceIDOf("4bf92f3577b34da6a3ce929d0e0e4736"),
		SpanID:   SpanIDFromSW("seg-ours", 1),
		Sampling: SamplingAccept,
		SW: SkyWalking{
			SegmentID: "seg-ours", SpanID: 1, Service: "orders-legacy", Instance: "proxy-1@10.0.0.9",
			Endpoint: "GET:/api/orders", Address: "127.0.0.1:9000",
		},
	}
}

func TestSW8InjectVectors(t *testing.T) {
	agent := swContext()
	agent.SW.TraceID = agentTraceID
	agent.Sampling = SamplingDebug
	denied := swContext()
	denied.Sampling = SamplingDeny
	unset := swContext()
	unset.Sampling = SamplingUnset
	tests := []struct {
		name string
		sc   SpanContext
		want refSW8
	}{
		{"hex trace id from W3C or B3", swContext(),
			refSW8{1, "4bf92f3577b34da6a3ce929d0e0e4736", "seg-ours", 1, "orders-legacy", "proxy-1@10.0.0.9", "GET:/api/orders", "127.0.0.1:9000"}},
		{"agent trace id kept verbatim, debug is sampled", agent,
			refSW8{1, agentTraceID, "seg-ours", 1, "orders-legacy", "proxy-1@10.0.0.9", "GET:/api/orders", "127.0.0.1:9000"}},
		{"deny", denied,
			refSW8{0, "4bf92f3577b34da6a3ce929d0e0e4736", "seg-ours", 1, "orders-legacy", "proxy-1@10.0.0.9", "GET:/api/orders", "127.0.0.1:9000"}},
		{"unset is not sampled", unset,
			refSW8{0, "4bf92f3577b34da6a3ce929d0e0e4736", "seg-ours", 1, "orders-legacy", "proxy-1@10.0.0.9", "GET:/api/orders", "127.0.0.1:9000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Writer
			(sw8Codec{}).Inject(&tt.sc, &w)
			got, ok := w.Get(headerSW8)
			if !ok {
				t.Fatal("Inject wrote no sw8")
			}
			if want := tt.want.Encode(); got != want {
				t.Fatalf("sw8 = %q\nwant %q (reference formula)", got, want)
			}
			var back SpanContext
			if err := parseSW8(got, &back); err != nil {
				t.Fatalf("extract of injected %q: %v", got, err)
			}
			if back.TraceID != tt.sc.TraceID && tt.sc.SW.TraceID == "" {
				t.Errorf("round trip TraceID = %v, want %v", back.TraceID, tt.sc.TraceID)
			}
			if back.SpanID != tt.sc.SpanID {
				t.Errorf("round trip SpanID = %v, want the client span %v", back.SpanID, tt.sc.SpanID)
			}
			if back.Sampling.Sampled() != tt.sc.Sampling.Sampled() {
				t.Errorf("round trip sampled = %v, want %v", back.Sampling.Sampled(), tt.sc.Sampling.Sampled())
			}
			if allocs := testing.AllocsPerRun(100, func() { w.Reset(); (sw8Codec{}).Inject(&tt.sc, &w) }); allocs != 1 {
				t.Errorf("Inject allocates %v times, want 1", allocs)
			}
		})
	}
}

func TestSW8InjectSkips(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*SpanContext)
	}{
		{"no segment", func(sc *SpanContext) { sc.SW.SegmentID = "" }},
		{"no service", func(sc *SpanContext) { sc.SW.Service = "" }},
		{"no instance", func(sc *SpanContext) { sc.SW.Instance = "" }},
		{"no endpoint", func(sc *SpanContext) { sc.SW.Endpoint = "" }},
		{"no address", func(sc *SpanContext) { sc.SW.Address = "" }},
		{"negative span id", func(sc *SpanContext) { sc.SW.SpanID = -1 }},
		{"no trace id", func(sc *SpanContext) { sc.TraceID = TraceID{} }},
		{"value would reach 2 KiB", func(sc *SpanContext) { sc.SW.Endpoint = strings.Repeat("e", 1500) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := swContext()
			tt.modify(&sc)
			var w Writer
			(sw8Codec{}).Inject(&sc, &w)
			if v, ok := w.Get(headerSW8); ok {
				t.Fatalf("Inject wrote sw8 %q, want nothing", v)
			}
		})
	}
}

// TestSWInjectLengthLimit grows the endpoint one byte at a time: every value
// written must stay below 2 KiB, and the longest must come close to it.
func TestSWInjectLengthLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []Codec{sw8Codec{}, sw6Codec{}} {
		t.Run(c.Format().String(), func(t *testing.T) {
			header := c.Fields()[0]
			sc := swContext()
			longest := 0
			for n := 1; n <= swMaxLen; n++ {
				sc.SW.Endpoint = strings.Repeat("e", n)
				var w Writer
				c.Inject(&sc, &w)
				v, ok := w.Get(header)
				if !ok {
					continue
				}
				if len(v) >= swMaxLen {
					t.Fatalf("endpoint of %d bytes: wrote a %d-byte value", n, len(v))
				}
				longest = len(v)
			}
			if longest < swMaxLen-8 {
				t.Fatalf("longest value written is %d bytes, want at least %d", longest, swMaxLen-8)
			}
		})
	}
}

func TestTraceIDFromSW(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // hex; "" means the zero id
		hex      bool
	}{
		{"32 hex maps to itself", "4bf92f3577b34da6a3ce929d0e0e4736", "4bf92f3577b34da6a3ce929d0e0e4736", true},
		{"16 hex is left-padded", "a3ce929d0e0e4736", "0000000000000000a3ce929d0e0e4736", true},
		{"agent id is hashed", agentTraceID, "65861bbfa515a593d407ad303a1d9438", false},
		{"uuid is hashed", "1c6d3b5e-8f2a-4c7d-9e1b-2a3c4d5e6f70", "2a36d510b2d60c290c302a39c7af38e8", false},
		{"uppercase hex is hashed", "6B29FC40CA471067B31D00DD010F7CA0", "44176031eb8736b06554d0611e47d83f", false},
		{"all-zero 32 hex is hashed", strings.Repeat("0", 32), "", false},
		{"all-zero 16 hex is hashed", strings.Repeat("0", 16), "", false},
		{"31 hex is hashed", "4bf92f3577b34da6a3ce929d0e0e473", "", false},
		{"long string is hashed", strings.Repeat("x", 300), "", false},
		{"empty is the zero id", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, hex := TraceIDFromSW(tt.in)
			want := TraceID{}
			switch {
			case tt.want != "":
				want = traceIDOf(tt.want)
			case tt.in != "":
				sum := sha256.Sum256([]byte(tt.in))
				copy(want[:], sum[:16])
			}
			if got != want || hex != tt.hex {
				t.Fatalf("TraceIDFromSW(%q) = %v, %v; want %v, %v", tt.in, got, hex, want, tt.hex)
			}
			if again, _ := TraceIDFromSW(tt.in); again != got {
				t.Fatalf("TraceIDFromSW is not deterministic: %v then %v", got, again)
			}
			if tt.in != "" && !got.IsValid() {
				t.Fatalf("TraceIDFromSW(%q) is the zero id", tt.in)
			}
		})
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = TraceIDFromSW(agentTraceID) }); allocs != 0 {
		t.Errorf("TraceIDFromSW allocates %v times, want 0", allocs)
	}
}

func TestSpanIDFromSW(t *testing.T) {
	got := SpanIDFromSW(agentSegmentID, 3)
	if want := spanIDOf("2ffe6cd38ef55d66"); got != want {
		t.Fatalf("SpanIDFromSW = %v, want %v", got, want)
	}
	if other := SpanIDFromSW(agentSegmentID, 4); other == got {
		t.Fatal("span 3 and 4 of one segment map to the same SpanID")
	}
	long := strings.Repeat("s", 500)
	sum := sha256.Sum256([]byte(long + "#-7"))
	if got := SpanIDFromSW(long, -7); !bytesEqual(got[:], sum[:8]) {
		t.Fatalf("SpanIDFromSW(long, -7) = %v, want %x", got, sum[:8])
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = SpanIDFromSW(agentSegmentID, 3) }); allocs != 0 {
		t.Errorf("SpanIDFromSW allocates %v times, want 0", allocs)
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func TestSWTraceID(t *testing.T) {
	sc := SpanContext{TraceID: traceIDOf("0000000000000000a3ce929d0e0e4736"), TraceID64: true}
	if got := SWTraceID(&sc); got != "0000000000000000a3ce929d0e0e4736" {
		t.Errorf("SWTraceID of a 64-bit id = %q, want 32 hex", got)
	}
	sc.SW.TraceID = agentTraceID
	if got := SWTraceID(&sc); got != agentTraceID {
		t.Errorf("SWTraceID with an SW trace id = %q, want it verbatim", got)
	}
	if got := SWTraceID(&SpanContext{}); got != "" {
		t.Errorf("SWTraceID of an empty context = %q, want empty", got)
	}
}

// TestSW8OneTraceAcrossProxies follows an agent trace through two proxies:
// each extracts sw8, and the second sees the first's outbound sw8. Both must
// derive the same TraceID, and the second's parent SpanID must be the
// first's CLIENT span when the first names it with SpanIDFromSW.
func TestSW8OneTraceAcrossProxies(t *testing.T) {
	in := (&refSW8{1, agentTraceID, agentSegmentID, 3, "java-svc", "j1", "/checkout", "proxy-a:80"}).Encode()
	var a SpanContext
	if err := parseSW8(in, &a); err != nil {
		t.Fatal(err)
	}
	out := a
	out.SW = SkyWalking{TraceID: a.SW.TraceID, SegmentID: "seg-proxy-a", SpanID: 1, Service: "proxy-a",
		Instance: "a1", Endpoint: "/checkout", Address: "proxy-b:80"}
	out.SpanID = SpanIDFromSW(out.SW.SegmentID, out.SW.SpanID)
	var w Writer
	(sw8Codec{}).Inject(&out, &w)
	v, _ := w.Get(headerSW8)
	var b SpanContext
	if err := parseSW8(v, &b); err != nil {
		t.Fatal(err)
	}
	if b.TraceID != a.TraceID || b.SW.TraceID != agentTraceID {
		t.Errorf("proxy b trace = %v %q, want %v %q", b.TraceID, b.SW.TraceID, a.TraceID, agentTraceID)
	}
	if b.SpanID != out.SpanID {
		t.Errorf("proxy b parent = %v, want proxy a's client span %v", b.SpanID, out.SpanID)
	}
}

func TestSW8PropagatorConflict(t *testing.T) {
	t.Parallel()
	w3c, err := NewCodec(FormatW3C)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPropagator([]Codec{w3c, sw8Codec{}}, []Codec{sw8Codec{}})
	const w3cTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceparent := "00-" + w3cTrace + "-00f067aa0ba902b7-01"
	tests := []struct {
		name          string
		h             http.Header
		format        Format
		conflict      Format
		conflictTrace TraceID
		malformed     FormatSet
	}{
		{
			name: "different traces: w3c wins, sw8 conflicts",
			h: http.Header{"Traceparent": {traceparent},
				headerSW8: {(&refSW8{1, agentTraceID, agentSegmentID, 3, "s", "i", "e", "a"}).Encode()}},
			format: FormatW3C, conflict: FormatSW8, conflictTrace: traceIDOf("65861bbfa515a593d407ad303a1d9438"),
		},
		{
			name: "sw8 carries the w3c trace as hex: no conflict",
			h: http.Header{"Traceparent": {traceparent},
				headerSW8: {(&refSW8{1, w3cTrace, "seg", 3, "s", "i", "e", "a"}).Encode()}},
			format: FormatW3C,
		},
		{
			name: "malformed w3c: sw8 wins",
			h: http.Header{"Traceparent": {"00-xyz"},
				headerSW8: {(&refSW8{1, agentTraceID, agentSegmentID, 3, "s", "i", "e", "a"}).Encode()}},
			format: FormatSW8, malformed: FormatSet(0).Add(FormatW3C),
		},
		{
			name:   "malformed sw8 after w3c",
			h:      http.Header{"Traceparent": {traceparent}, headerSW8: {"1-x"}},
			format: FormatW3C, malformed: FormatSet(0).Add(FormatSW8),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := p.Extract(tt.h)
			if res.Format != tt.format || res.Conflict != tt.conflict || res.Malformed != tt.malformed {
				t.Fatalf("Extract: format %v conflict %v malformed %v; want %v %v %v (err %v)",
					res.Format, res.Conflict, res.Malformed, tt.format, tt.conflict, tt.malformed, res.Err)
			}
			if res.ConflictTraceID != tt.conflictTrace {
				t.Errorf("ConflictTraceID = %v, want %v", res.ConflictTraceID, tt.conflictTrace)
			}
			if res.Present != FormatSet(0).Add(FormatW3C).Add(FormatSW8) {
				t.Errorf("Present = %v, want w3c,sw8", res.Present)
			}
		})
	}
	fields := p.Fields()
	for _, f := range fields {
		if f == "Sw8-Correlation" || f == "Sw8-X" {
			t.Errorf("propagator owns %s; it must pass through", f)
		}
	}
}

func TestSWBase64MatchesStdlib(t *testing.T) {
	t.Parallel()
	inputs := []string{"", "a", "ab", "abc", "abcd", "\x00\xff\xfe", "订单", strings.Repeat("xyz", 100)}
	for _, in := range inputs {
		enc := string(appendBase64(nil, in))
		if want := base64.StdEncoding.EncodeToString([]byte(in)); enc != want {
			t.Errorf("appendBase64(%q) = %q, want %q", in, enc, want)
		}
		if len(enc) != base64Len(len(in)) {
			t.Errorf("base64Len(%d) = %d, encoding is %d", len(in), base64Len(len(in)), len(enc))
		}
		dst := make([]byte, len(enc)/4*3)
		n, ok := decodeBase64(dst, enc)
		if !ok || string(dst[:n]) != in {
			t.Errorf("decodeBase64(%q) = %q, %v; want %q", enc, dst[:n], ok, in)
		}
	}
}
