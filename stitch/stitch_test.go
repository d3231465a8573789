package stitch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/headers"
)

func ctxN(n byte) headers.SpanContext {
	return headers.SpanContext{TraceID: headers.TraceID{n}, SpanID: headers.SpanID{n}}
}

func TestParseMethods(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []Method
		err  bool
	}{
		{nil, DefaultMethods, false},
		{[]string{"process sole_inflight"}, []Method{MethodProcess, MethodSoleInflight}, false},
		{[]string{"request_id,header"}, []Method{MethodRequestID, MethodHeader}, false},
		{[]string{"header", "process"}, []Method{MethodHeader, MethodProcess}, false},
		{[]string{"guess"}, nil, true},
		{[]string{"none"}, nil, true},
		{[]string{"header header"}, nil, true},
	} {
		got, err := ParseMethods(tc.in...)
		if (err != nil) != tc.err || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseMethods(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestAttributeTable(t *testing.T) {
	fwd := ctxN(9)
	for _, tc := range []struct {
		name    string
		methods []Method
		setup   func(r *Registry)
		call    Call
		want    Method
		parent  byte
		cands   int
	}{
		{"header wins", DefaultMethods, func(r *Registry) { r.Begin(ctxN(1), "a") }, Call{Forwarded: &fwd, RequestID: "a"}, MethodHeader, 9, 0},
		{"request id", DefaultMethods, func(r *Registry) { r.Begin(ctxN(1), "a"); r.Begin(ctxN(2), "b") }, Call{RequestID: "b"}, MethodRequestID, 2, 0},
		{"unknown id falls to none", DefaultMethods, func(r *Registry) { r.Begin(ctxN(1), "a"); r.Begin(ctxN(2), "b") }, Call{RequestID: "zz"}, MethodNone, 0, 2},
		{"reused live id is ambiguous", DefaultMethods, func(r *Registry) { r.Begin(ctxN(1), "a"); r.Begin(ctxN(2), "a") }, Call{RequestID: "a"}, MethodNone, 0, 2},
		{"process one request", DefaultMethods, func(r *Registry) {
			r.SetPID(r.Begin(ctxN(1), ""), 100)
			r.SetPID(r.Begin(ctxN(2), ""), 200)
		}, Call{PID: func() (int, error) { return 200, nil }}, MethodProcess, 2, 0},
		{"process two requests same pid", DefaultMethods, func(r *Registry) {
			r.SetPID(r.Begin(ctxN(1), ""), 100)
			r.SetPID(r.Begin(ctxN(2), ""), 100)
		}, Call{PID: func() (int, error) { return 100, nil }}, MethodNone, 0, 2},
		{"process error skipped", DefaultMethods, func(r *Registry) { r.Begin(ctxN(1), "") }, Call{PID: func() (int, error) { return 0, ErrNoProc }}, MethodSoleInflight, 1, 0},
		{"sole inflight", DefaultMethods, func(r *Registry) { r.Begin(ctxN(3), "") }, Call{}, MethodSoleInflight, 3, 0},
		{"two inflight no guess", DefaultMethods, func(r *Registry) { r.Begin(ctxN(1), ""); r.Begin(ctxN(2), "") }, Call{}, MethodNone, 0, 2},
		{"method off", []Method{MethodHeader}, func(r *Registry) { r.Begin(ctxN(3), "x") }, Call{RequestID: "x"}, MethodNone, 0, 1},
		{"ended request kept for ttl", DefaultMethods, func(r *Registry) { r.End(r.Begin(ctxN(4), "late")) }, Call{RequestID: "late"}, MethodRequestID, 4, 0},
		{"order respected", []Method{MethodSoleInflight, MethodRequestID}, func(r *Registry) { r.Begin(ctxN(5), "q") }, Call{RequestID: "q"}, MethodSoleInflight, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry(Config{Methods: tc.methods})
			tc.setup(r)
			res := r.Attribute(tc.call)
			if res.Method != tc.want {
				t.Fatalf("method = %v, want %v", res.Method, tc.want)
			}
			if tc.want != MethodNone && res.Parent.SpanID[0] != tc.parent {
				t.Fatalf("parent = %v, want %d", res.Parent.SpanID, tc.parent)
			}
			if len(res.Candidates) != tc.cands {
				t.Fatalf("candidates = %v, want %d", res.Candidates, tc.cands)
			}
		})
	}
}

func TestEndClearsAndTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(Config{Methods: []Method{MethodRequestID}, IDTTL: time.Minute, Now: func() time.Time { return now }})
	a := r.Begin(ctxN(1), "a")
	b := r.Begin(ctxN(2), "a")
	r.End(a)
	if res := r.Attribute(Call{RequestID: "a"}); res.Method != MethodNone {
		t.Fatalf("still ambiguous while b lives, got %v", res.Method)
	}
	r.End(b)
	if r.Inflight() != 0 {
		t.Fatalf("inflight = %d", r.Inflight())
	}
	c := r.Begin(ctxN(3), "a") // id reused after both ended: fresh, unambiguous
	if res := r.Attribute(Call{RequestID: "a"}); res.Method != MethodRequestID || res.Parent.SpanID[0] != 3 {
		t.Fatalf("reuse after end: %+v", res)
	}
	r.End(c)
	now = now.Add(2 * time.Minute)
	if res := r.Attribute(Call{RequestID: "a"}); res.Method != MethodNone {
		t.Fatalf("expired id still matched: %v", res.Method)
	}
	r.Begin(ctxN(4), "b")
	if r.IDs() != 1 {
		t.Fatalf("expired entry not dropped, ids = %d", r.IDs())
	}
}

func TestIDFloodBounded(t *testing.T) {
	r := NewRegistry(Config{MaxIDs: 100})
	for i := 0; i < 10000; i++ {
		r.End(r.Begin(ctxN(1), fmt.Sprint("id-", i)))
	}
	if r.IDs() != 100 {
		t.Fatalf("ids = %d, want 100", r.IDs())
	}
	if res := r.Attribute(Call{RequestID: "id-9999"}); res.Method != MethodRequestID {
		t.Fatalf("newest id evicted: %v", res.Method)
	}
	if res := r.Attribute(Call{RequestID: "id-0"}); res.Method != MethodNone {
		t.Fatalf("oldest id kept: %v", res.Method)
	}
}

func TestInflightBounded(t *testing.T) {
	r := NewRegistry(Config{MaxInflight: 2})
	a, b, c := r.Begin(ctxN(1), ""), r.Begin(ctxN(2), ""), r.Begin(ctxN(3), "")
	if a == nil || b == nil || c != nil {
		t.Fatalf("bound not applied: %v %v %v", a, b, c)
	}
	r.End(c)
	r.End(a)
	r.End(a)
	if r.Inflight() != 1 {
		t.Fatalf("inflight = %d", r.Inflight())
	}
}

func TestProcMapperOwnSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	m := NewProcMapper("", 0)
	c := Conn{
		Local:  netip.MustParseAddrPort(cl.LocalAddr().String()),
		Remote: netip.MustParseAddrPort(cl.RemoteAddr().String()),
	}
	pid, err := m.PID(c)
	if errors.Is(err, ErrNoProc) {
		t.Skipf("/proc unreadable here: %v", err)
	}
	if err != nil || pid != os.Getpid() {
		t.Fatalf("PID = %d, %v; want %d", pid, err, os.Getpid())
	}
	if m.Cached() != 1 {
		t.Fatalf("cached = %d", m.Cached())
	}
	m.Forget(c)
	if m.Cached() != 0 {
		t.Fatalf("forget left %d", m.Cached())
	}
	other := Conn{Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2")}
	if _, err := m.PID(other); !errors.Is(err, ErrNoSocket) {
		t.Fatalf("unknown socket: %v", err)
	}
}

func TestProcMapperUnavailableOnce(t *testing.T) {
	m := NewProcMapper(t.TempDir(), 0)
	calls := 0
	m.OnUnavailable = func(error) { calls++ }
	c := Conn{Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2")}
	for i := 0; i < 3; i++ {
		if _, err := m.PID(c); !errors.Is(err, ErrNoProc) {
			t.Fatalf("err = %v", err)
		}
	}
	if calls != 1 {
		t.Fatalf("hook called %d times, want 1", calls)
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:0050": "[::ffff:127.0.0.1]:80",
	} {
		got, ok := parseProcAddr([]byte(in))
		if !ok || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v %v, want %s", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "zz:1", "0100007F", "01:0050", "0100007F:XYZ"} {
		if _, ok := parseProcAddr([]byte(bad)); ok {
			t.Errorf("parseProcAddr(%q) accepted", bad)
		}
	}
}
