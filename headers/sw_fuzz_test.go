package headers

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func FuzzSW8Extract(f *testing.F) {
	f.Add(benchSW8)
	f.Add(benchSW8Bogus)
	f.Add((&refSW8{0, "4bf92f3577b34da6a3ce929d0e0e4736", "s", 0, "a", "b", "c", "d"}).Encode())
	f.Add((&refSW8{1, "a3ce929d0e0e4736", "s", 2147483647, "订单", "b", "c", "d"}).Encode())
	f.Add("1-dB==-cw==-0007-YR==-aQ==-ZQ==-YQ==")
	f.Add("")
	f.Add("1-------")
	f.Fuzz(func(t *testing.T, v string) {
		var sc SpanContext
		if err := parseSW8(v, &sc); err != nil {
			return
		}
		var ref refSW8
		if ref.Decode(v) == nil {
			want := SkyWalking{ref.TraceID, ref.ParentSegmentID, ref.ParentSpanID, ref.ParentService,
				ref.ParentServiceInstance, ref.ParentEndpoint, ref.AddressUsedAtClient}
			if sc.SW != want {
				t.Fatalf("sw8 %q: SW = %+v, reference decodes %+v", v, sc.SW, want)
			}
		}
		var w Writer
		(sw8Codec{}).Inject(&sc, &w)
		out, ok := w.Get(headerSW8)
		if !ok {
			t.Fatalf("valid sw8 %q: Inject wrote nothing", v)
		}
		var back SpanContext
		if err := parseSW8(out, &back); err != nil {
			t.Fatalf("sw8 %q re-injected as %q: %v", v, out, err)
		}
		if back.SW != sc.SW || back.Sampling != sc.Sampling || back.TraceID != sc.TraceID ||
			back.TraceID64 != sc.TraceID64 || back.SpanID != sc.SpanID {
			t.Fatalf("sw8 %q -> %q: round trip %+v, want %+v", v, out, back, sc)
		}
	})
}

func FuzzSW6Extract(f *testing.F) {
	f.Add(strings.Join(validSW6(), "-"))
	f.Add(strings.Join(sw6Fields("0", "1.2.3", "4.5.6", "0", "007", "2", "123"), "-"))
	f.Add(strings.Join(sw6Fields("1", "t", "s", "1", "7", "7", "#p:1", "42", "-1"), "-"))
	f.Add(strings.Join(sw6Fields("1", "t", "s", "1", "7", "7", "#p:1", "#", "#"), "-"))
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		var sc SpanContext
		if err := parseSW6(v, &sc); err != nil {
			return
		}
		var w Writer
		(sw6Codec{}).Inject(&sc, &w)
		out, ok := w.Get(headerSW6)
		if !ok {
			// Ids become "#" names and the entry endpoint becomes the
			// parent one, so a value near 2 KiB may not fit again.
			if len(v)+2*base64Len(1+len(sc.SW.Endpoint))+8 < swMaxLen {
				t.Fatalf("valid sw6 %q: Inject wrote nothing", v)
			}
			return
		}
		var back SpanContext
		if err := parseSW6(out, &back); err != nil {
			t.Fatalf("sw6 %q re-injected as %q: %v", v, out, err)
		}
		if back.SW != sc.SW || back.Sampling != sc.Sampling || back.TraceID != sc.TraceID ||
			back.TraceID64 != sc.TraceID64 || back.SpanID != sc.SpanID {
			t.Fatalf("sw6 %q -> %q: round trip %+v, want %+v", v, out, back, sc)
		}
	})
}

// FuzzSWBase64 checks the codecs' base64 against encoding/base64: the same
// encoding, and the same decoding on every input without line breaks (which
// base64.StdEncoding skips and header values cannot hold).
func FuzzSWBase64(f *testing.F) {
	for _, s := range []string{"", "YQ==", "YR==", "YWI=", "YWJj", "a_b_", "YQ=", "YQ==YQ==", "====", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if enc := string(appendBase64(nil, s)); enc != base64.StdEncoding.EncodeToString([]byte(s)) {
			t.Fatalf("appendBase64(%q) = %q", s, enc)
		}
		if strings.ContainsAny(s, "\r\n") {
			return
		}
		dst := make([]byte, len(s)/4*3)
		n, ok := decodeBase64(dst, s)
		want, err := base64.StdEncoding.DecodeString(s)
		if ok != (err == nil) || ok && !bytes.Equal(dst[:n], want) {
			t.Fatalf("decodeBase64(%q) = %q, %v; encoding/base64: %q, %v", s, dst[:n], ok, want, err)
		}
	})
}

func FuzzTraceIDFromSW(f *testing.F) {
	for _, s := range []string{agentTraceID, "4bf92f3577b34da6a3ce929d0e0e4736", "a3ce929d0e0e4736", "", strings.Repeat("0", 32)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, hex := TraceIDFromSW(s)
		if again, hex2 := TraceIDFromSW(s); again != id || hex2 != hex {
			t.Fatalf("TraceIDFromSW(%q) is not deterministic", s)
		}
		if s != "" && !id.IsValid() {
			t.Fatalf("TraceIDFromSW(%q) is the zero id", s)
		}
		if hex {
			if got := string(id.AppendHex(nil)); got != s && got != strings.Repeat("0", 16)+s {
				t.Fatalf("TraceIDFromSW(%q) = %v, hex", s, id)
			}
		}
	})
}
