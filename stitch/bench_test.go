package stitch

import (
	"net"
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkIngress is the added cost per ingress request: Begin and End with
// a request id seen before (the map entry is reused), against a registry
// holding 64 other in-flight requests.
func BenchmarkIngress(b *testing.B) {
	r := NewRegistry(Config{})
	for i := 0; i < 64; i++ {
		begin(r, 1, "bg-"+strconv.Itoa(i))
	}
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "req-" + strconv.Itoa(i)
		r.End(begin(r, 2, ids[i]))
	}
	in := &Ingress{Ctx: ctxN(2)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		in.RequestID = ids[i&1023]
		r.Begin(in)
		r.End(in)
	}
}

// BenchmarkIngressUniqueID is Begin and End with a new id every request
// (generated X-Request-IDs), the map at its bound evicting one entry each.
func BenchmarkIngressUniqueID(b *testing.B) {
	r := NewRegistry(Config{MaxIDs: 4096})
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "00000000-0000-4000-8000-" + strconv.FormatInt(100000000000+int64(i), 10)
	}
	in := &Ingress{Ctx: ctxN(2)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		in.RequestID = ids[i&(1<<16-1)]
		r.Begin(in)
		r.End(in)
	}
}

// BenchmarkIngressNoID is Begin and End of a request without a request id.
func BenchmarkIngressNoID(b *testing.B) {
	r := NewRegistry(Config{})
	in := &Ingress{Ctx: ctxN(2)}
	b.ReportAllocs()
	for b.Loop() {
		r.Begin(in)
		r.End(in)
	}
}

// BenchmarkEgressRequestID is one egress attribution resolved by request id.
func BenchmarkEgressRequestID(b *testing.B) {
	r := NewRegistry(Config{})
	for i := 0; i < 64; i++ {
		begin(r, 1, "bg-"+strconv.Itoa(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		if r.Attribute(Call{RequestID: "bg-7"}).Method != MethodRequestID {
			b.Fatal("not stitched")
		}
	}
}

// processRegistry is a registry with method process on a real ProcMapper
// and 64 in-flight requests: one served by this process (the caller's),
// and others whose connections wait in a listener's accept queue (queued,
// as in a prefork service with all its workers busy) or are cached as held
// by other processes.
func processRegistry(b *testing.B, queued int) (*Registry, *ProcMapper, net.Conn, Conn) {
	acc, accKey, q, qKeys := listenerWithBacklog(b, queued)
	cl, c := ownCaller(b)
	m := NewProcMapper("", 0)
	if _, err := m.Resolve(Socket{Key: cl, Conn: c}, nil); err != nil {
		b.Skip(err)
	}
	r := NewRegistry(Config{Methods: []Method{MethodProcess}, Procs: m})
	in := begin(r, 2, "")
	r.SetConn(in, accKey, acc)
	for i := range q {
		r.SetConn(begin(r, 1, ""), qKeys[i], q[i])
	}
	for i := 0; i < 63-queued; i++ {
		key := new(int)
		m.store(key, procEntry{pid: 1<<22 + i})
		r.SetConn(begin(r, 1, ""), key, Conn{})
	}
	return r, m, cl, c
}

// benchProcess runs egress calls from this process against a registry
// with queued connections waiting; forget drops the caller's connection
// from the cache before each call (a connection per call, no keep-alive).
func benchProcess(b *testing.B, queued int, forget bool) {
	r, m, cl, c := processRegistry(b, queued)
	call := Call{ConnKey: cl, Conn: c}
	before := m.Reads()
	b.ReportAllocs()
	for b.Loop() {
		if forget {
			m.Forget(cl)
		}
		if res := r.Attribute(call); res.Method != MethodProcess || res.Parent.SpanID[0] != 2 {
			b.Fatalf("not stitched: %+v", res)
		}
	}
	b.ReportMetric(float64(m.Reads()-before)/float64(b.N), "procreads/op")
}

// BenchmarkEgressProcessCached is one egress attribution by process with
// every connection already in the /proc cache (the steady state on
// keep-alive): no read of /proc.
func BenchmarkEgressProcessCached(b *testing.B) { benchProcess(b, 0, false) }

// BenchmarkEgressProcessQueued is one egress attribution by process while
// 63 of the 64 in-flight requests wait in the service's accept queue (a
// prefork service of few workers under many clients): one read of
// /proc/net/tcp per call, however many wait.
func BenchmarkEgressProcessQueued(b *testing.B) { benchProcess(b, 63, false) }

// BenchmarkEgressProcessQueuedNewConn is the same with a new egress
// connection per call (no keep-alive): the caller's socket is looked up
// too, in the same read of the table, then among the recent holders' fds.
func BenchmarkEgressProcessQueuedNewConn(b *testing.B) { benchProcess(b, 63, true) }

// BenchmarkProcScanUncached is the cost of one /proc lookup for a new
// connection (paid once per connection, then cached).
func BenchmarkProcScanUncached(b *testing.B) {
	cl, c := ownCaller(b)
	m := NewProcMapper("", 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Resolve(Socket{Key: cl, Conn: c}, nil); err != nil {
			b.Skip(err)
		}
		m.Forget(cl)
	}
}

// BenchmarkIDMapAtBound reports the heap held by a full request-id map
// (DefaultMaxIDs entries with 36-byte ids) as bytes/map and bytes/entry.
// One iteration fills the map: run it with -benchtime 1x.
func BenchmarkIDMapAtBound(b *testing.B) {
	b.ReportAllocs()
	var held uint64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := NewRegistry(Config{})
		in := &Ingress{Ctx: ctxN(1)}
		for i := 0; i < DefaultMaxIDs+1000; i++ {
			in.RequestID = "00000000-0000-0000-0000-" + strconv.FormatInt(100000000000+int64(i), 10)
			r.Begin(in)
			r.End(in)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = after.HeapAlloc - before.HeapAlloc
		if r.IDs() != DefaultMaxIDs {
			b.Fatalf("ids = %d", r.IDs())
		}
		runtime.KeepAlive(r)
	}
	b.ReportMetric(float64(held), "bytes/map")
	b.ReportMetric(float64(held)/DefaultMaxIDs, "bytes/entry")
}
