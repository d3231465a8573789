package headers

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// sw6Fields builds the raw fields of an sw6 value with the protocol's
// formula: strings base64 (standard, padded), numbers in decimal. Peer and
// endpoints are passed decoded, "#" included when they are names.
func sw6Fields(sample, trace, segment, span, parentInstance, entryInstance, peer string, endpoints ...string) []string {
	f := []string{sample, b64(trace), b64(segment), span, parentInstance, entryInstance, b64(peer)}
	for _, e := range endpoints {
		f = append(f, b64(e))
	}
	return f
}

func validSW6() []string {
	return sw6Fields("1", "1.2.3", "4.5.6", "3", "5", "2", "#127.0.0.1:8080", "#/entry", "#/parent")
}

// with6 returns validSW6 with field i replaced by v.
func with6(i int, v string) string {
	f := validSW6()
	f[i] = v
	return strings.Join(f, "-")
}

func TestSW6ExtractValid(t *testing.T) {
	tests := []struct {
		name     string
		fields   []string
		want     SkyWalking
		sampling Sampling
	}{
		{
			name:     "full form",
			fields:   validSW6(),
			want:     SkyWalking{TraceID: "1.2.3", SegmentID: "4.5.6", SpanID: 3, Instance: "5", Endpoint: "/parent", Address: "127.0.0.1:8080"},
			sampling: SamplingAccept,
		},
		{
			name:     "short form has no endpoint",
			fields:   sw6Fields("0", "1.2.3", "4.5.6", "0", "5", "2", "#db:3306"),
			want:     SkyWalking{TraceID: "1.2.3", SegmentID: "4.5.6", SpanID: 0, Instance: "5", Address: "db:3306"},
			sampling: SamplingDeny,
		},
		{
			name:     "integer ids for peer and endpoints",
			fields:   sw6Fields("1", "t", "s", "1", "7", "7", "123", "42", "43"),
			want:     SkyWalking{TraceID: "t", SegmentID: "s", SpanID: 1, Instance: "7", Endpoint: "43", Address: "123"},
			sampling: SamplingAccept,
		},
		{
			name:     "endpoint id -1 means no parent endpoint",
			fields:   sw6Fields("1", "t", "s", "1", "7", "7", "#p:1", "#/e", "-1"),
			want:     SkyWalking{TraceID: "t", SegmentID: "s", SpanID: 1, Instance: "7", Address: "p:1"},
			sampling: SamplingAccept,
		},
		{
			name:     "empty endpoint name",
			fields:   sw6Fields("1", "t", "s", "1", "7", "7", "#p:1", "#", "#"),
			want:     SkyWalking{TraceID: "t", SegmentID: "s", SpanID: 1, Instance: "7", Address: "p:1"},
			sampling: SamplingAccept,
		},
		{
			name:     "instance id with leading zeros is normalised",
			fields:   sw6Fields("1", "t", "s", "1", "007", "0", "#p:1"),
			want:     SkyWalking{TraceID: "t", SegmentID: "s", SpanID: 1, Instance: "7", Address: "p:1"},
			sampling: SamplingAccept,
		},
		{
			name:     "hex trace id maps to itself",
			fields:   sw6Fields("1", "4bf92f3577b34da6a3ce929d0e0e4736", "s", "1", "1", "1", "#p:1"),
			want:     SkyWalking{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SegmentID: "s", SpanID: 1, Instance: "1", Address: "p:1"},
			sampling: SamplingAccept,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := strings.Join(tt.fields, "-")
			var sc SpanContext
			if err := (sw6Codec{}).Extract(http.Header{headerSW6: {v}}, &sc); err != nil {
				t.Fatalf("Extract(%q): %v", v, err)
			}
			if sc.SW != tt.want {
				t.Errorf("SW = %+v, want %+v", sc.SW, tt.want)
			}
			if sc.Sampling != tt.sampling {
				t.Errorf("Sampling = %v, want %v", sc.Sampling, tt.sampling)
			}
			if want, _ := TraceIDFromSW(tt.want.TraceID); sc.TraceID != want {
				t.Errorf("TraceID = %v, want %v", sc.TraceID, want)
			}
			if want := SpanIDFromSW(tt.want.SegmentID, tt.want.SpanID); sc.SpanID != want {
				t.Errorf("SpanID = %v, want %v", sc.SpanID, want)
			}
			h := http.Header{headerSW6: {v}}
			if allocs := testing.AllocsPerRun(100, func() { _ = (sw6Codec{}).Extract(h, &sc) }); allocs > 1 {
				t.Errorf("Extract allocates %v times on valid input, want at most 1", allocs)
			}
		})
	}
}

func TestSW6ExtractInvalid(t *testing.T) {
	full := validSW6()
	tests := []struct {
		name  string
		value string
		want  error
	}{
		{"empty value", "", ErrSW6Empty},
		{"six fields", strings.Join(full[:6], "-"), ErrSW6FieldCount},
		{"eight fields", strings.Join(full[:8], "-"), ErrSW6FieldCount},
		{"ten fields", strings.Join(append(validSW6(), b64("#x")), "-"), ErrSW6FieldCount},
		{"sample flag 2", with6(0, "2"), ErrSW6Sample},
		{"non-decimal span id", with6(3, "x"), ErrSW6SpanID},
		{"span id over int32", with6(3, "2147483648"), ErrSW6SpanID},
		{"non-decimal parent instance", with6(4, "a"), ErrSW6InstanceID},
		{"empty entry instance", with6(5, ""), ErrSW6InstanceID},
		{"empty trace id", with6(1, ""), ErrSW6EmptyField},
		{"empty segment id", with6(2, ""), ErrSW6EmptyField},
		{"empty peer", with6(6, ""), ErrSW6EmptyField},
		{"empty entry endpoint", with6(7, ""), ErrSW6EmptyField},
		{"bad base64 trace id", with6(1, "a*=="), ErrSW6Base64},
		{"trace id decoding to a newline", with6(1, b64("a\nb")), ErrSWControl},
		{"bad padding", with6(2, "YQ="), ErrSW6Base64},
		{"bad base64 entry endpoint", with6(7, "!!!!"), ErrSW6Base64},
		{"peer '#' with no name", with6(6, b64("#")), ErrSW6Name},
		{"peer neither #name nor id", with6(6, b64("127.0.0.1:8080")), ErrSW6Name},
		{"peer id over int32", with6(6, b64("99999999999")), ErrSW6Name},
		{"parent endpoint neither #name nor id", with6(8, b64("/parent")), ErrSW6Name},
		{"entry endpoint neither #name nor id", with6(7, b64("-")), ErrSW6Name},
		{"value of 2 KiB", with6(8, b64("#"+strings.Repeat("e", 1600))), ErrSW6TooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{headerSW6: {tt.value}}
			var sc SpanContext
			err := (sw6Codec{}).Extract(h, &sc)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Extract(%q) = %v, want %v", tt.value, err, tt.want)
			}
			if allocs := testing.AllocsPerRun(100, func() { _ = (sw6Codec{}).Extract(h, &sc) }); allocs != 0 {
				t.Errorf("Extract allocates %v times on invalid input, want 0", allocs)
			}
		})
	}
	var sc SpanContext
	if err := (sw6Codec{}).Extract(http.Header{headerSW8: {"1"}}, &sc); err != ErrAbsent {
		t.Errorf("Extract without sw6 = %v, want ErrAbsent", err)
	}
}

func TestSW6Inject(t *testing.T) {
	base := swContext()
	named := base
	named.SW.Instance = "12"
	noEndpoint := base
	noEndpoint.SW.Endpoint = ""
	agent := base
	agent.SW.TraceID = "1.2.3"
	agent.Sampling = SamplingDeny
	tests := []struct {
		name string
		sc   SpanContext
		want []string
	}{
		{"instance name is written as id 0", base,
			sw6Fields("1", "4bf92f3577b34da6a3ce929d0e0e4736", "seg-ours", "1", "0", "0", "#127.0.0.1:9000", "#GET:/api/orders", "#GET:/api/orders")},
		{"integer instance is written as the id", named,
			sw6Fields("1", "4bf92f3577b34da6a3ce929d0e0e4736", "seg-ours", "1", "12", "12", "#127.0.0.1:9000", "#GET:/api/orders", "#GET:/api/orders")},
		{"short form without endpoint", noEndpoint,
			sw6Fields("1", "4bf92f3577b34da6a3ce929d0e0e4736", "seg-ours", "1", "0", "0", "#127.0.0.1:9000")},
		{"sw trace id verbatim, deny", agent,
			sw6Fields("0", "1.2.3", "seg-ours", "1", "0", "0", "#127.0.0.1:9000", "#GET:/api/orders", "#GET:/api/orders")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Writer
			(sw6Codec{}).Inject(&tt.sc, &w)
			got, ok := w.Get(headerSW6)
			if want := strings.Join(tt.want, "-"); !ok || got != want {
				t.Fatalf("sw6 = %q, %v\nwant %q", got, ok, want)
			}
			var back SpanContext
			if err := parseSW6(got, &back); err != nil {
				t.Fatalf("extract of injected %q: %v", got, err)
			}
			if back.SW.SegmentID != tt.sc.SW.SegmentID || back.SW.Address != tt.sc.SW.Address ||
				back.SW.Endpoint != tt.sc.SW.Endpoint || back.SpanID != tt.sc.SpanID {
				t.Errorf("round trip SW = %+v, SpanID %v; want %+v, %v", back.SW, back.SpanID, tt.sc.SW, tt.sc.SpanID)
			}
			if tt.sc.SW.TraceID == "" && back.TraceID != tt.sc.TraceID {
				t.Errorf("round trip TraceID = %v, want %v", back.TraceID, tt.sc.TraceID)
			}
			if allocs := testing.AllocsPerRun(100, func() { w.Reset(); (sw6Codec{}).Inject(&tt.sc, &w) }); allocs != 1 {
				t.Errorf("Inject allocates %v times, want 1", allocs)
			}
		})
	}
}

func TestSW6InjectSkips(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*SpanContext)
	}{
		{"no segment", func(sc *SpanContext) { sc.SW.SegmentID = "" }},
		{"no address", func(sc *SpanContext) { sc.SW.Address = "" }},
		{"negative span id", func(sc *SpanContext) { sc.SW.SpanID = -1 }},
		{"no trace id", func(sc *SpanContext) { sc.TraceID = TraceID{} }},
		{"value would reach 2 KiB", func(sc *SpanContext) { sc.SW.Endpoint = strings.Repeat("e", 800) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := swContext()
			tt.modify(&sc)
			var w Writer
			(sw6Codec{}).Inject(&sc, &w)
			if v, ok := w.Get(headerSW6); ok {
				t.Fatalf("Inject wrote sw6 %q, want nothing", v)
			}
		})
	}
}

// TestSW6ContinuesAsSW8 reads an sw6 caller and writes sw8 upstream, as the
// proxy does for SkyWalking 6 and 7 agents.
func TestSW6ContinuesAsSW8(t *testing.T) {
	p := NewPropagator([]Codec{sw8Codec{}, sw6Codec{}}, []Codec{sw8Codec{}})
	res := p.Extract(http.Header{headerSW6: {strings.Join(validSW6(), "-")}})
	if res.Format != FormatSW6 {
		t.Fatalf("Format = %v, want sw6 (err %v)", res.Format, res.Err)
	}
	out := res.SpanContext
	out.SW = SkyWalking{TraceID: res.SW.TraceID, SegmentID: "ours", SpanID: 1, Service: "proxy",
		Instance: "p1", Endpoint: "/x", Address: "up:80"}
	var w Writer
	p.Inject(&out, &w)
	v, ok := w.Get(headerSW8)
	if !ok {
		t.Fatal("no sw8 written")
	}
	var back SpanContext
	if err := parseSW8(v, &back); err != nil || back.TraceID != res.TraceID || back.SW.TraceID != "1.2.3" {
		t.Fatalf("sw8 %q: %v, trace %v %q; want %v %q", v, err, back.TraceID, back.SW.TraceID, res.TraceID, "1.2.3")
	}
}
