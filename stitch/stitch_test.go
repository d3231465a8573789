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

// portProcs is a Resolver that takes a connection's local port for the
// pid of the process holding it; port 0 is a connection no process holds
// (not accepted yet). It counts its calls.
type portProcs struct {
	calls  int
	closed map[any]bool // connections the service closed
}

// Verify keeps the connections not closed.
func (p *portProcs) Verify(pid int, held []Socket) error {
	for i := range held {
		if p.closed[held[i].Key] {
			held[i].PID = 0
		}
	}
	return nil
}

func (p *portProcs) Resolve(caller Socket, pending []Socket) (int, error) {
	p.calls++
	pid := int(caller.Conn.Local.Port())
	for i := range pending {
		pending[i].PID = int(pending[i].Conn.Local.Port())
	}
	if pid == 0 {
		return 0, ErrNoSocket
	}
	return pid, nil
}

func portConn(port int) Conn {
	return Conn{Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}
}

// onPID records that in is served by process pid.
func onPID(r *Registry, in *Ingress, pid int) {
	r.SetConn(in, in, portConn(pid))
}

// pidCall is a call made by process pid (0: one /proc cannot place).
func pidCall(pid int) Call { return Call{ConnKey: "caller", Conn: portConn(pid)} }

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
		{"process: caller not found skipped", DefaultMethods, func(r *Registry) { onPID(r, begin(r, 1, ""), 100) }, pidCall(0), MethodSoleInflight, 1, 0},
		{"process: no connection skipped", DefaultMethods, func(r *Registry) { onPID(r, begin(r, 1, ""), 100) }, Call{}, MethodSoleInflight, 1, 0},
		{"sole inflight", DefaultMethods, func(r *Registry) { begin(r, 3, "") }, Call{}, MethodSoleInflight, 3, 0},
		{"two inflight no guess", DefaultMethods, func(r *Registry) { begin(r, 1, ""); begin(r, 2, "") }, Call{}, MethodNone, 0, 2},
		{"method off", []Method{MethodHeader}, func(r *Registry) { begin(r, 3, "x") }, Call{RequestID: "x"}, MethodNone, 0, 1},
		{"ended request kept for ttl", DefaultMethods, func(r *Registry) { r.End(begin(r, 4, "late")) }, Call{RequestID: "late"}, MethodRequestID, 4, 0},
		{"order respected", []Method{MethodSoleInflight, MethodRequestID}, func(r *Registry) { begin(r, 5, "q") }, Call{RequestID: "q"}, MethodSoleInflight, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry(Config{Methods: tc.methods, Procs: new(portProcs)})
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
	r := NewRegistry(Config{MaxInflight: 2, Procs: new(portProcs)})
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

// resolverFunc is a Resolver from a function; Verify keeps every
// connection.
type resolverFunc func(caller Socket, pending []Socket) (int, error)

func (f resolverFunc) Resolve(caller Socket, pending []Socket) (int, error) {
	return f(caller, pending)
}

func (f resolverFunc) Verify(int, []Socket) error { return nil }

// A request's process, once found, is kept: later calls from it cost the
// Resolver nothing for that request.
func TestProcessResolvedOnce(t *testing.T) {
	procs := new(portProcs)
	r := NewRegistry(Config{Methods: []Method{MethodProcess}, Procs: procs})
	onPID(r, begin(r, 1, ""), 100)
	for i := 0; i < 3; i++ {
		if res := r.Attribute(pidCall(100)); res.Method != MethodProcess {
			t.Fatalf("call %d: %v", i, res.Method)
		}
	}
	if procs.calls != 3 {
		t.Fatalf("resolver called %d times for 3 calls, want 3 (one per call)", procs.calls)
	}
	// A request of another process, once placed, is not asked about again.
	other := begin(r, 2, "")
	onPID(r, other, 200)
	r.Attribute(pidCall(100))
	got := 0
	r.procs = resolverFunc(func(_ Socket, pending []Socket) (int, error) {
		got += len(pending)
		return 100, nil
	})
	if res := r.Attribute(pidCall(100)); res.Method != MethodProcess || res.Parent.SpanID[0] != 1 {
		t.Fatalf("after placing the other request: %+v", res)
	}
	if got != 0 {
		t.Fatalf("%d pending connections asked about again", got)
	}
}

// A prefork worker that answered a request and closed its connection takes
// the next while the proxy still finishes the first: the first is no
// candidate any more, so the worker's call is the second's, and a process
// still holding both connections is never a guess.
func TestProcessAnsweredRequestIsNoCandidate(t *testing.T) {
	procs := &portProcs{closed: map[any]bool{}}
	r := NewRegistry(Config{Methods: []Method{MethodProcess}, Procs: procs})
	a, b := begin(r, 1, ""), begin(r, 2, "")
	onPID(r, a, 100)
	onPID(r, b, 100)
	if res := r.Attribute(pidCall(100)); res.Method != MethodNone {
		t.Fatalf("both connections held: %v, want none", res.Method)
	}
	procs.closed[a] = true
	res := r.Attribute(pidCall(100))
	if res.Method != MethodProcess || res.Parent.SpanID[0] != 2 {
		t.Fatalf("after the first connection closed: %+v, want process -> request 2", res)
	}
	// Once found answered, it stays out without asking again.
	procs.closed[a] = false
	if res := r.Attribute(pidCall(100)); res.Method != MethodProcess || res.Parent.SpanID[0] != 2 {
		t.Fatalf("answered request came back: %+v", res)
	}
	r.End(a)
	r.End(b)
}

// listenerWithBacklog returns a listener, one connection it accepted (the
// service side held by this process) and n connections left in its accept
// queue (no process holds their service side yet), with the Conn of each
// as the service sees it.
func listenerWithBacklog(t testing.TB, n int) (accepted Conn, key net.Conn, queued []Conn, queuedKeys []net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	accepted = Conn{Local: addrOf(sc.LocalAddr()), Remote: addrOf(sc.RemoteAddr())}
	for i := 0; i < n; i++ {
		c := dial()
		queued = append(queued, Conn{Local: addrOf(c.RemoteAddr()), Remote: addrOf(c.LocalAddr())})
		queuedKeys = append(queuedKeys, c)
	}
	return accepted, sc, queued, queuedKeys
}

func addrOf(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// ownCaller is a connection this process opened, as the service side of an
// egress call.
func ownCaller(t testing.TB) (net.Conn, Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, Conn{Local: addrOf(cl.LocalAddr()), Remote: addrOf(cl.RemoteAddr())}
}

// The real /proc: the caller and the accepted connection are this
// process's, the queued ones nobody's; one Resolve reads the socket table
// once and this process's fds, however many connections are queued.
func TestProcMapperResolve(t *testing.T) {
	acc, accKey, queued, queuedKeys := listenerWithBacklog(t, 40)
	cl, c := ownCaller(t)
	m := NewProcMapper("", 0)
	pending := []Socket{{Key: accKey, Conn: acc}}
	for i := range queued {
		pending = append(pending, Socket{Key: queuedKeys[i], Conn: queued[i]})
	}
	before := m.Reads()
	pid, err := m.Resolve(Socket{Key: cl, Conn: c}, pending)
	if errors.Is(err, ErrNoProc) {
		t.Skipf("/proc unreadable here: %v", err)
	}
	if err != nil || pid != os.Getpid() {
		t.Fatalf("Resolve = %d, %v; want %d", pid, err, os.Getpid())
	}
	if pending[0].PID != pid {
		t.Fatalf("the accepted connection: pid %d, want this process", pending[0].PID)
	}
	for _, s := range pending[1:] {
		if s.PID != 0 {
			t.Fatalf("a queued connection %v is held by %d", s.Conn, s.PID)
		}
	}
	// net/tcp, then this process's fds for the caller (the full /proc walk
	// finds it: no recent holder yet) and again for the pending ones.
	if reads := m.Reads() - before; reads > 2+maxWalk() {
		t.Fatalf("one Resolve read %d files", reads)
	}
	if m.Cached() != 2 {
		t.Fatalf("cached = %d, want the caller and the accepted connection", m.Cached())
	}

	// Now the caller is cached and its process is a recent holder: a
	// second call reads the table once and the process's fds once.
	before = m.Reads()
	for i := range pending[1:] {
		pending[i+1].PID = 1
	}
	pid, err = m.Resolve(Socket{Key: cl, Conn: c}, pending[1:])
	if err != nil || pid != os.Getpid() {
		t.Fatalf("second Resolve = %d, %v", pid, err)
	}
	for _, s := range pending[1:] {
		if s.PID != 0 {
			t.Fatal("PID not reset for a queued connection")
		}
	}
	if reads := m.Reads() - before; reads != 1 {
		t.Fatalf("second Resolve read %d files, want 1 (net/tcp: every queued row has inode 0, so no fd is read and tcp6 is not)", reads)
	}
	// Everything cached: no read at all.
	before = m.Reads()
	if pid, err := m.Resolve(Socket{Key: cl, Conn: c}, pending[:1]); err != nil || pid != os.Getpid() || pending[0].PID != pid {
		t.Fatalf("cached Resolve = %d, %v, pid %d", pid, err, pending[0].PID)
	}
	if reads := m.Reads() - before; reads != 0 {
		t.Fatalf("cached Resolve read %d files", reads)
	}
	m.Forget(cl)
	m.Forget(accKey)
	if m.Cached() != 0 {
		t.Fatalf("forget left %d", m.Cached())
	}
	other := Conn{Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2")}
	if _, err := m.Resolve(Socket{Key: other, Conn: other}, nil); !errors.Is(err, ErrNoSocket) {
		t.Fatalf("unknown socket: %v", err)
	}
}

// maxWalk bounds the reads of a full walk of /proc: its listing and each
// process's fd directory.
func maxWalk() uint64 {
	names, _ := os.ReadDir("/proc")
	return uint64(len(names)) + 1
}

// procTree writes a fake /proc: net/tcp and net/tcp6 tables and, per pid,
// fd links to socket inodes.
func procTree(t *testing.T, tcp, tcp6 []string, fds map[int][]uint64) string {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/net", 0o755); err != nil {
		t.Fatal(err)
	}
	const head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	table := func(rows []string) string {
		s := head
		for i, r := range rows {
			s += fmt.Sprintf("%4d: %s\n", i, r)
		}
		return s
	}
	for name, rows := range map[string][]string{"tcp": tcp, "tcp6": tcp6} {
		if err := os.WriteFile(root+"/net/"+name, []byte(table(rows)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for pid, inodes := range fds {
		dir := fmt.Sprintf("%s/%d/fd", root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, ino := range inodes {
			if err := os.Symlink(fmt.Sprintf("socket:[%d]", ino), fmt.Sprintf("%s/%d", dir, i+3)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("/dev/null", dir+"/0"); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// row is a /proc/net/tcp row from the service's side.
func row(local, remote string, inode uint64) string {
	return fmt.Sprintf("%s %s 01 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0000000000000000 20 4 30 10 -1", local, remote, inode)
}

func TestProcMapperTables(t *testing.T) {
	const (
		app   = "0100007F:1F90" // 127.0.0.1:8080, the service's listener
		app6  = "0000000000000000FFFF00000100007F:1F90"
		proxy = "0100007F:9C40" // 127.0.0.1:40000
		prx6a = "0000000000000000FFFF00000100007F:9C41"
		dest  = "0100007F:2329" // 127.0.0.1:9001, the egress listener
	)
	conn := func(local, remote string) Conn {
		l, _ := parseProcAddr([]byte(local))
		r, _ := parseProcAddr([]byte(remote))
		return Conn{Local: l, Remote: r}
	}
	callerConn := conn("0100007F:C350", dest) // the service's port 50000
	served := conn(app, proxy)
	queued := conn(app, "0100007F:9C42")
	dual := conn(app, "0100007F:9C41") // on the service's [::] socket: only in tcp6
	root := procTree(t,
		[]string{
			row("0100007F:C350", dest, 500),
			row(app, proxy, 0), // an old TIME_WAIT row of the same pair
			row(app, proxy, 600),
			row(app, "0100007F:9C42", 0),
		},
		[]string{
			row(app6, prx6a, 700),
			row("0000000000000000FFFF00000100007F:C351", "0000000000000000FFFF00000100007F:2329", 701),
		},
		map[int][]uint64{100: {500, 600}, 200: {700, 701}},
	)
	m := NewProcMapper(root, 0)
	pending := []Socket{{Key: "served", Conn: served}, {Key: "queued", Conn: queued}}
	pid, err := m.Resolve(Socket{Key: "caller", Conn: callerConn}, pending)
	if err != nil || pid != 100 {
		t.Fatalf("Resolve = %d, %v; want 100", pid, err)
	}
	if pending[0].PID != 100 || pending[1].PID != 0 {
		t.Fatalf("pids = %d %d, want 100 0", pending[0].PID, pending[1].PID)
	}
	// net/tcp (tcp6 is not read: every connection had a row in tcp), the
	// /proc listing, 100's fds for the caller (after 200's when the listing
	// names 200 first), 100's fds for the pending.
	if got := m.Reads(); got != 4 && got != 5 {
		t.Fatalf("reads = %d, want 4 or 5", got)
	}

	// A connection only tcp6 has (an IPv4 client of a dual-stack socket),
	// held by another process: tcp and tcp6 are read once each.
	before := m.Reads()
	pending = []Socket{{Key: "dual", Conn: dual}, {Key: "queued", Conn: queued}}
	if pid, err := m.Resolve(Socket{Key: "caller", Conn: callerConn}, pending); err != nil || pid != 100 || pending[0].PID != 0 || pending[1].PID != 0 {
		t.Fatalf("Resolve = %d, %v, pids %d %d", pid, err, pending[0].PID, pending[1].PID)
	}
	if got := m.Reads() - before; got != 3 {
		t.Fatalf("reads = %d, want 3 (tcp, tcp6, 100's fds)", got)
	}
	// From process 200, whose own call is on a dual-stack socket too, the
	// same connection is held.
	pending = pending[:1]
	caller200 := conn("0000000000000000FFFF00000100007F:C351", "0000000000000000FFFF00000100007F:2329")
	if pid, err := m.Resolve(Socket{Key: "c200", Conn: caller200}, pending); err != nil || pid != 200 || pending[0].PID != 200 {
		t.Fatalf("caller on tcp6: %d, %v, pid %d", pid, err, pending[0].PID)
	}
}

func TestProcMapperUnavailableOnce(t *testing.T) {
	m := NewProcMapper(t.TempDir(), 0)
	calls := 0
	m.OnUnavailable = func(error) { calls++ }
	c := Conn{Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2")}
	for i := 0; i < 3; i++ {
		if _, err := m.Resolve(Socket{Key: c, Conn: c}, nil); !errors.Is(err, ErrNoProc) {
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

// Verify on the real /proc: a connection this process closed is no longer
// held, one it keeps is.
func TestProcMapperVerify(t *testing.T) {
	acc1, key1, _, _ := listenerWithBacklog(t, 0)
	acc2, key2, _, _ := listenerWithBacklog(t, 0)
	cl, c := ownCaller(t)
	m := NewProcMapper("", 0)
	pending := []Socket{{Key: key1, Conn: acc1}, {Key: key2, Conn: acc2}}
	pid, err := m.Resolve(Socket{Key: cl, Conn: c}, pending)
	if errors.Is(err, ErrNoProc) {
		t.Skipf("/proc unreadable here: %v", err)
	}
	if err != nil || pending[0].PID != pid || pending[1].PID != pid {
		t.Fatalf("Resolve = %d, %v, %+v", pid, err, pending)
	}
	key1.Close()
	before := m.Reads()
	held := []Socket{{Key: key1, PID: pid}, {Key: key2, PID: pid}}
	if err := m.Verify(pid, held); err != nil {
		t.Fatal(err)
	}
	if held[0].PID != 0 || held[1].PID != pid {
		t.Fatalf("after closing the first: pids %d %d, want 0 %d", held[0].PID, held[1].PID, pid)
	}
	if reads := m.Reads() - before; reads != 1 {
		t.Fatalf("Verify read %d directories, want the process's fds once", reads)
	}
}

// When every request in flight is placed and each process holds more than
// MaxCandidates of them, no call can be answered by process, so /proc is
// not read for it: a thread-per-request service under load costs the
// Resolver nothing per call. One process with few enough requests is
// asked again.
func TestProcessUnanswerableSkipsResolver(t *testing.T) {
	for _, tc := range []struct {
		name    string
		perPID  map[int]int
		resolve bool
	}{
		{"no request placed", map[int]int{}, false},
		{"one process, MaxCandidates+1 requests", map[int]int{100: MaxCandidates + 1}, false},
		{"two processes over MaxCandidates", map[int]int{100: MaxCandidates + 1, 200: MaxCandidates + 3}, false},
		{"one process, MaxCandidates requests", map[int]int{100: MaxCandidates}, true},
		{"one process over, one under", map[int]int{100: MaxCandidates + 1, 200: 1}, true},
		{"more processes than counted", map[int]int{1: 9, 2: 9, 3: 9, 4: 9, 5: 9}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			procs := new(portProcs)
			r := NewRegistry(Config{Methods: []Method{MethodProcess}, Procs: procs})
			n := byte(0)
			for pid, k := range tc.perPID {
				for range k {
					n++
					onPID(r, begin(r, n, ""), pid)
				}
			}
			// Place every request first: the first call resolves them all.
			r.Attribute(pidCall(100))
			procs.calls = 0
			res := r.Attribute(pidCall(100))
			if got := procs.calls == 1; got != tc.resolve {
				t.Fatalf("resolver called %d times, want resolve=%v", procs.calls, tc.resolve)
			}
			if !tc.resolve && res.Method != MethodNone {
				t.Fatalf("unanswerable call answered: %+v", res)
			}
		})
	}
}
