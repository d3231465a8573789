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

// begin registers a request with context n and request id id.
func begin(r *Registry, n byte, id string) *Ingress {
	in := &Ingress{Ctx: ctxN(n), RequestID: id, Data: n}
	r.Begin(in)
	return in
}

// pidOf is a Resolve that answers the pid named by the connection's local
// port, or ErrNoSocket for port 0 (a connection not accepted yet).
func pidOf(_ any, c Conn) (int, error) {
	if c.Local.Port() == 0 {
		return 0, ErrNoSocket
	}
	return int(c.Local.Port()), nil
}

// onPID records that in is served by process pid.
func onPID(r *Registry, in *Ingress, pid int) {
	r.SetConn(in, in, Conn{Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(pid))})
}

func pidCall(pid int) Call { return Call{PID: func() (int, error) { return pid, nil }} }

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
		{"header wins", DefaultMethods, func(r *Registry) { begin(r, 1, "a") }, Call{Forwarded: &fwd, RequestID: "a"}, MethodHeader, 9, 0},
		{"request id", DefaultMethods, func(r *Registry) { begin(r, 1, "a"); begin(r, 2, "b") }, Call{RequestID: "b"}, MethodRequestID, 2, 0},
		{"unknown id falls to none", DefaultMethods, func(r *Registry) { begin(r, 1, "a"); begin(r, 2, "b") }, Call{RequestID: "zz"}, MethodNone, 0, 2},
		{"reused live id is ambiguous", DefaultMethods, func(r *Registry) { begin(r, 1, "a"); begin(r, 2, "a") }, Call{RequestID: "a"}, MethodNone, 0, 2},
		{"process one request", DefaultMethods, func(r *Registry) {
			onPID(r, begin(r, 1, ""), 100)
			onPID(r, begin(r, 2, ""), 200)
		}, pidCall(200), MethodProcess, 2, 0},
		{"process two requests same pid", DefaultMethods, func(r *Registry) {
			onPID(r, begin(r, 1, ""), 100)
			onPID(r, begin(r, 2, ""), 100)
		}, pidCall(100), MethodNone, 0, 2},
		{"process: connection not accepted yet is not a candidate", DefaultMethods, func(r *Registry) {
			onPID(r, begin(r, 1, ""), 100)
			onPID(r, begin(r, 2, ""), 0)
		}, pidCall(100), MethodProcess, 1, 0},
		{"process: no request on that pid", DefaultMethods, func(r *Registry) {
			onPID(r, begin(r, 1, ""), 100)
			onPID(r, begin(r, 2, ""), 200)
		}, pidCall(300), MethodNone, 0, 2},
		{"process error skipped", DefaultMethods, func(r *Registry) { begin(r, 1, "") }, Call{PID: func() (int, error) { return 0, ErrNoProc }}, MethodSoleInflight, 1, 0},
		{"sole inflight", DefaultMethods, func(r *Registry) { begin(r, 3, "") }, Call{}, MethodSoleInflight, 3, 0},
		{"two inflight no guess", DefaultMethods, func(r *Registry) { begin(r, 1, ""); begin(r, 2, "") }, Call{}, MethodNone, 0, 2},
		{"method off", []Method{MethodHeader}, func(r *Registry) { begin(r, 3, "x") }, Call{RequestID: "x"}, MethodNone, 0, 1},
		{"ended request kept for ttl", DefaultMethods, func(r *Registry) { r.End(begin(r, 4, "late")) }, Call{RequestID: "late"}, MethodRequestID, 4, 0},
		{"order respected", []Method{MethodSoleInflight, MethodRequestID}, func(r *Registry) { begin(r, 5, "q") }, Call{RequestID: "q"}, MethodSoleInflight, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry(Config{Methods: tc.methods, Resolve: pidOf})
			tc.setup(r)
			res := r.Attribute(tc.call)
			if res.Method != tc.want {
				t.Fatalf("method = %v, want %v", res.Method, tc.want)
			}
			if tc.want != MethodNone && res.Parent.SpanID[0] != tc.parent {
				t.Fatalf("parent = %v, want %d", res.Parent.SpanID, tc.parent)
			}
			if d, _ := res.Data.(byte); tc.want != MethodNone && tc.want != MethodHeader && tc.name != "ended request kept for ttl" && d != tc.parent {
				t.Fatalf("data = %v, want %d", res.Data, tc.parent)
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
	a := begin(r, 1, "a")
	b := begin(r, 2, "a")
	r.End(a)
	if res := r.Attribute(Call{RequestID: "a"}); res.Method != MethodNone {
		t.Fatalf("still ambiguous while b lives, got %v", res.Method)
	}
	r.End(b)
	if r.Inflight() != 0 {
		t.Fatalf("inflight = %d", r.Inflight())
	}
	c := begin(r, 3, "a") // id reused after both ended: fresh, unambiguous
	if res := r.Attribute(Call{RequestID: "a"}); res.Method != MethodRequestID || res.Parent.SpanID[0] != 3 {
		t.Fatalf("reuse after end: %+v", res)
	}
	r.End(c)
	if res := r.Attribute(Call{RequestID: "a"}); res.Method != MethodRequestID || res.Data != nil {
		t.Fatalf("ended id: %+v, want request_id without the request's data", res)
	}
	now = now.Add(2 * time.Minute)
	if res := r.Attribute(Call{RequestID: "a"}); res.Method != MethodNone {
		t.Fatalf("expired id still matched: %v", res.Method)
	}
	begin(r, 4, "b")
	if r.IDs() != 1 {
		t.Fatalf("expired entry not dropped, ids = %d", r.IDs())
	}
}

func TestIDFloodBounded(t *testing.T) {
	r := NewRegistry(Config{MaxIDs: 100})
	for i := 0; i < 10000; i++ {
		r.End(begin(r, 1, fmt.Sprint("id-", i)))
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

// A flood of unique ids never evicts the id of a request still in flight:
// a later request reusing that id would otherwise look unambiguous.
func TestIDFloodKeepsLiveIDs(t *testing.T) {
	r := NewRegistry(Config{MaxIDs: 10})
	victim := begin(r, 1, "victim")
	for i := 0; i < 1000; i++ {
		r.End(begin(r, 2, fmt.Sprint("flood-", i)))
	}
	if r.IDs() != 11 {
		t.Fatalf("ids = %d, want 10 ended + 1 live", r.IDs())
	}
	attacker := begin(r, 3, "victim")
	if res := r.Attribute(Call{RequestID: "victim"}); res.Method != MethodNone {
		t.Fatalf("reused live id after a flood: %v, want none", res.Method)
	}
	r.End(attacker)
	r.End(victim)
}

func TestInflightBounded(t *testing.T) {
	r := NewRegistry(Config{MaxInflight: 2, Resolve: pidOf})
	a, b := &Ingress{Ctx: ctxN(1)}, &Ingress{Ctx: ctxN(2)}
	c := &Ingress{Ctx: ctxN(3)}
	if !r.Begin(a) || !r.Begin(b) || r.Begin(c) {
		t.Fatal("bound not applied")
	}
	if r.Inflight() != 3 {
		t.Fatalf("inflight = %d, want 3 (2 tracked, 1 counted)", r.Inflight())
	}
	r.End(b)
	// a is the only tracked request, but c is in flight too: no guess.
	if res := r.Attribute(Call{}); res.Method != MethodNone {
		t.Fatalf("sole_inflight with an untracked request in flight: %v", res.Method)
	}
	onPID(r, a, 7)
	if res := r.Attribute(pidCall(7)); res.Method != MethodNone {
		t.Fatalf("process with an untracked request in flight: %v", res.Method)
	}
	r.End(c)
	r.End(c)
	if res := r.Attribute(Call{}); res.Method != MethodProcess && res.Method != MethodSoleInflight {
		t.Fatalf("after the untracked request ended: %v", res.Method)
	}
	r.End(a)
	r.End(a)
	if r.Inflight() != 0 {
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
	pid, err := m.PID(cl, c)
	if errors.Is(err, ErrNoProc) {
		t.Skipf("/proc unreadable here: %v", err)
	}
	if err != nil || pid != os.Getpid() {
		t.Fatalf("PID = %d, %v; want %d", pid, err, os.Getpid())
	}
	if m.Cached() != 1 {
		t.Fatalf("cached = %d", m.Cached())
	}
	m.Forget(cl)
	if m.Cached() != 0 {
		t.Fatalf("forget left %d", m.Cached())
	}
	other := Conn{Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2")}
	if _, err := m.PID(other, other); !errors.Is(err, ErrNoSocket) {
		t.Fatalf("unknown socket: %v", err)
	}
}

func TestProcMapperUnavailableOnce(t *testing.T) {
	m := NewProcMapper(t.TempDir(), 0)
	calls := 0
	m.OnUnavailable = func(error) { calls++ }
	c := Conn{Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2")}
	for i := 0; i < 3; i++ {
		if _, err := m.PID(c, c); !errors.Is(err, ErrNoProc) {
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
