package stitch

import (
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkIngress is the added cost per ingress request: Begin and End with
// a request id, against a registry holding 64 other in-flight requests.
func BenchmarkIngress(b *testing.B) {
	r := NewRegistry(Config{})
	for i := 0; i < 64; i++ {
		r.Begin(ctxN(1), "bg-"+strconv.Itoa(i))
	}
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "req-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.End(r.Begin(ctxN(2), ids[i&1023]))
	}
}

// BenchmarkEgressRequestID is one egress attribution resolved by request id.
func BenchmarkEgressRequestID(b *testing.B) {
	r := NewRegistry(Config{})
	for i := 0; i < 64; i++ {
		r.Begin(ctxN(1), "bg-"+strconv.Itoa(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		if r.Attribute(Call{RequestID: "bg-7"}).Method != MethodRequestID {
			b.Fatal("not stitched")
		}
	}
}

// BenchmarkEgressProcessCached is one egress attribution by process with the
// connection already in the /proc cache (the steady state on keep-alive).
func BenchmarkEgressProcessCached(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	m := NewProcMapper("", 0)
	c := Conn{Local: netip.MustParseAddrPort(cl.LocalAddr().String()), Remote: netip.MustParseAddrPort(cl.RemoteAddr().String())}
	pid, err := m.PID(c)
	if err != nil {
		b.Skip(err)
	}
	r := NewRegistry(Config{Methods: []Method{MethodProcess}})
	for i := 0; i < 64; i++ {
		r.SetPID(r.Begin(ctxN(1), ""), 100000+i)
	}
	r.SetPID(r.Begin(ctxN(2), ""), pid)
	lookup := func() (int, error) { return m.PID(c) }
	b.ReportAllocs()
	for b.Loop() {
		if r.Attribute(Call{PID: lookup}).Method != MethodProcess {
			b.Fatal("not stitched")
		}
	}
}

// BenchmarkProcScanUncached is the cost of one /proc lookup for a new
// connection (paid once per connection, then cached).
func BenchmarkProcScanUncached(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	m := NewProcMapper("", 0)
	c := Conn{Local: netip.MustParseAddrPort(cl.LocalAddr().String()), Remote: netip.MustParseAddrPort(cl.RemoteAddr().String())}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.PID(c); err != nil {
			b.Skip(err)
		}
		m.Forget(c)
	}
}

// BenchmarkIDMapAtBound reports the heap held by a full request-id map
// (DefaultMaxIDs entries with 36-byte ids) as bytes/map and bytes/entry.
func BenchmarkIDMapAtBound(b *testing.B) {
	b.ReportAllocs()
	var held uint64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := NewRegistry(Config{})
		for i := 0; i < DefaultMaxIDs+1000; i++ {
			r.End(r.Begin(ctxN(1), "00000000-0000-0000-0000-"+strconv.FormatInt(100000000000+int64(i), 10)))
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
