package stitch

import (
	"net"
	"net/netip"
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
	pid, err := m.PID(cl, c)
	if err != nil {
		b.Skip(err)
	}
	r := NewRegistry(Config{Methods: []Method{MethodProcess}, Resolve: pidOf})
	for i := 0; i < 64; i++ {
		onPID(r, begin(r, 1, ""), 10000+i)
	}
	onPID(r, begin(r, 2, ""), pid)
	lookup := func() (int, error) { return m.PID(cl, c) }
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
		if _, err := m.PID(cl, c); err != nil {
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
