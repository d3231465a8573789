package headers

import (
	"errors"
	"testing"
)

func TestParseTraceIDValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		in    string
		is64  bool
		lower uint64
	}{
		{name: "128-bit", in: "4bf92f3577b34da6a3ce929d0e0e4736", lower: 0xa3ce929d0e0e4736},
		{name: "64-bit padded", in: "a3ce929d0e0e4736", is64: true, lower: 0xa3ce929d0e0e4736},
		{name: "128-bit with zero upper half", in: "0000000000000000a3ce929d0e0e4736", lower: 0xa3ce929d0e0e4736},
		{name: "smallest", in: "0000000000000001", is64: true, lower: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, is64, err := ParseTraceID(tt.in)
			if err != nil {
				t.Fatalf("ParseTraceID(%q): %v", tt.in, err)
			}
			if is64 != tt.is64 {
				t.Errorf("is64 = %v, want %v", is64, tt.is64)
			}
			if got := SpanID(id[8:]).Uint64(); got != tt.lower {
				t.Errorf("lower half = %x, want %x", got, tt.lower)
			}
			want := tt.in
			if is64 {
				want = "0000000000000000" + tt.in
				if !id.Is64() {
					t.Error("a 64-bit id must report Is64")
				}
				if got := string(id.AppendHex64(nil)); got != tt.in {
					t.Errorf("AppendHex64 = %q, want %q", got, tt.in)
				}
			}
			if got := id.String(); got != want {
				t.Errorf("String = %q, want %q", got, want)
			}
			if got := string(id.AppendHex(nil)); got != want {
				t.Errorf("AppendHex = %q, want %q", got, want)
			}
		})
	}
}

func TestParseTraceIDInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want error
	}{
		{name: "empty", in: "", want: ErrMalformedID},
		{name: "uppercase", in: "4BF92F3577B34DA6A3CE929D0E0E4736", want: ErrMalformedID},
		{name: "one uppercase digit", in: "4bf92f3577b34da6a3ce929d0e0e473A", want: ErrMalformedID},
		{name: "31 digits", in: "4bf92f3577b34da6a3ce929d0e0e473", want: ErrMalformedID},
		{name: "33 digits", in: "4bf92f3577b34da6a3ce929d0e0e47361", want: ErrMalformedID},
		{name: "20 digits", in: "4bf92f3577b34da6a3ce", want: ErrMalformedID},
		{name: "non-hex", in: "4bf92f3577b34da6a3ce929d0e0e473g", want: ErrMalformedID},
		{name: "all zero 128", in: "00000000000000000000000000000000", want: ErrZeroID},
		{name: "all zero 64", in: "0000000000000000", want: ErrZeroID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, _, err := ParseTraceID(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseTraceID(%q) error = %v, want %v", tt.in, err, tt.want)
			}
			if id.IsValid() {
				t.Errorf("ParseTraceID(%q) returned a valid id %v with an error", tt.in, id)
			}
		})
	}
}

func TestParseSpanID(t *testing.T) {
	t.Parallel()
	valid := []string{"00f067aa0ba902b7", "0000000000000001", "ffffffffffffffff"}
	for _, in := range valid {
		t.Run("valid "+in, func(t *testing.T) {
			id, err := ParseSpanID(in)
			if err != nil {
				t.Fatalf("ParseSpanID(%q): %v", in, err)
			}
			if got := id.String(); got != in {
				t.Errorf("String = %q, want %q", got, in)
			}
			if got := string(id.AppendHex([]byte("x"))); got != "x"+in {
				t.Errorf("AppendHex = %q, want %q", got, "x"+in)
			}
		})
	}
	invalid := []struct {
		name string
		in   string
		want error
	}{
		{name: "uppercase", in: "00F067AA0BA902B7", want: ErrMalformedID},
		{name: "short", in: "00f067aa0ba902b", want: ErrMalformedID},
		{name: "long", in: "00f067aa0ba902b71", want: ErrMalformedID},
		{name: "dash", in: "-", want: ErrMalformedID},
		{name: "zero", in: "0000000000000000", want: ErrZeroID},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseSpanID(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("ParseSpanID(%q) error = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestNewIDsAreValidAndDistinct(t *testing.T) {
	seenT := map[TraceID]bool{}
	seenS := map[SpanID]bool{}
	for range 1000 {
		tid, sid := NewTraceID(), NewSpanID()
		if !tid.IsValid() || !sid.IsValid() {
			t.Fatal("NewTraceID/NewSpanID returned a zero id")
		}
		if seenT[tid] || seenS[sid] {
			t.Fatal("random ids repeated within 1000 draws")
		}
		seenT[tid], seenS[sid] = true, true
		if back, _, err := ParseTraceID(tid.String()); err != nil || back != tid {
			t.Fatalf("trace id round trip: %v, %v", back, err)
		}
		if back, err := ParseSpanID(sid.String()); err != nil || back != sid {
			t.Fatalf("span id round trip: %v, %v", back, err)
		}
	}
}

func FuzzParseTraceID(f *testing.F) {
	for _, s := range []string{"4bf92f3577b34da6a3ce929d0e0e4736", "a3ce929d0e0e4736", "", "0000000000000000", "ABCDEF"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, is64, err := ParseTraceID(s)
		if err != nil {
			return
		}
		enc := id.String()
		if is64 {
			enc = string(id.AppendHex64(nil))
		}
		if enc != s {
			t.Fatalf("ParseTraceID(%q) re-encodes as %q", s, enc)
		}
	})
}
