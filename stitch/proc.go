package stitch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
)

// ErrNoProc is returned by ProcMapper once /proc proved unreadable; the
// process method is then skipped for the rest of the mapper's life.
var ErrNoProc = errors.New("stitch: /proc unavailable")

// ErrNoSocket is returned when no process holds the caller's socket.
var ErrNoSocket = errors.New("stitch: socket not found in /proc")

// Conn names a TCP connection from the service's side: Local is the service
// process's address, Remote the proxy's.
type Conn struct {
	Local, Remote netip.AddrPort
}

// unmapped is c with IPv4-mapped IPv6 addresses written as IPv4, the form
// socket tables are matched in.
func (c Conn) unmapped() Conn {
	return Conn{
		Local:  netip.AddrPortFrom(c.Local.Addr().Unmap(), c.Local.Port()),
		Remote: netip.AddrPortFrom(c.Remote.Addr().Unmap(), c.Remote.Port()),
	}
}

// Socket is one connection handed to a Resolver: Key identifies it while it
// is open (the cache key: the net.Conn itself, since the address pair of a
// closed connection can be reused by a new one in another process), Conn is
// its service side, and PID is what Resolve learnt of a pending one.
type Socket struct {
	Key  any
	Conn Conn
	// PID is the process holding the connection when Resolve knows it,
	// 0 when it does not.
	PID int

	seq uint64 // the Registry's request
}

// Resolver maps the service side of TCP connections to the service's
// processes, for method process. ProcMapper is the one that reads /proc.
type Resolver interface {
	// Resolve returns the process holding caller, the connection an
	// egress call came in on, and sets PID on each of pending (ingress
	// connections whose process is not known yet): at least on those this
	// process holds, 0 on those it does not know. An error skips method
	// process for the call.
	Resolve(caller Socket, pending []Socket) (int, error)
	// Verify sets PID to pid on each of held (connections once found in
	// process pid) that pid still holds, and to 0 on those it closed: a
	// worker that answered a request and closed its connection serves the
	// next one while the proxy is still finishing the first.
	Verify(pid int, held []Socket) error
}

// ProcMapper maps service-side TCP sockets to the process holding them
// through /proc/net/tcp{,6} and /proc/<pid>/fd. One Resolve reads the socket
// tables once for the caller and every pending connection, and then only
// the caller's process's fds: its cost does not grow with the connections
// waiting in the service's accept queue. Answers are cached per connection
// until Forget. The processes that held sockets before are searched first,
// so a prefork service's workers are found without walking every process.
type ProcMapper struct {
	root string
	// OnUnavailable is called once, with the cause, the first time /proc
	// cannot be read; set it before the first Resolve.
	OnUnavailable func(error)

	once   sync.Once
	reads  atomic.Uint64
	broken atomic.Bool

	mu     sync.Mutex
	cache  map[any]procEntry
	max    int
	recent []int // pids that held a socket, newest last
}

// procEntry is what the mapper knows of one connection.
type procEntry struct {
	pid   int
	inode uint64
}

// maxRecent bounds the pids searched before the full walk of /proc.
const maxRecent = 64

// NewProcMapper returns a mapper reading root ("/proc" when empty) and
// caching at most max connections (4096 when max <= 0).
func NewProcMapper(root string, max int) *ProcMapper {
	if root == "" {
		root = "/proc"
	}
	if max <= 0 {
		max = 4096
	}
	return &ProcMapper{root: root, cache: make(map[any]procEntry), max: max}
}

// Cached reports how many connections the mapper holds.
func (m *ProcMapper) Cached() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cache)
}

// Reads reports how many files and directories under /proc the mapper has
// read: socket tables, fd directories, process listings.
func (m *ProcMapper) Reads() uint64 { return m.reads.Load() }

// Forget drops a connection from the cache when it closes.
func (m *ProcMapper) Forget(key any) {
	m.mu.Lock()
	delete(m.cache, key)
	m.mu.Unlock()
}

// Resolve implements Resolver. Connections found in the cache cost no read;
// for the others it reads /proc/net/tcp (and tcp6 only for a connection not
// in tcp), once. A pending connection whose row has inode 0 sits in the
// service's accept queue: no process holds it, so it is not held. Only
// the connections found held are cached: one no process holds yet may be
// accepted by any.
func (m *ProcMapper) Resolve(caller Socket, pending []Socket) (int, error) {
	if m.broken.Load() {
		return 0, ErrNoProc
	}
	m.mu.Lock()
	pid := m.cache[caller.Key].pid
	uncached := 0
	for i := range pending {
		s := &pending[i]
		if s.PID = m.cache[s.Key].pid; s.PID == 0 {
			uncached++
		}
	}
	m.mu.Unlock()
	if pid != 0 && uncached == 0 {
		return pid, nil
	}

	want := make(map[Conn]int, uncached+1) // connection -> index in inodes
	inodes := make([]uint64, 0, uncached+1)
	callerAt := -1
	if pid == 0 {
		callerAt = 0
		want[caller.Conn.unmapped()] = 0
		inodes = append(inodes, 0)
	}
	for i := range pending {
		if pending[i].PID == 0 {
			want[pending[i].Conn.unmapped()] = len(inodes)
			inodes = append(inodes, 0)
		}
	}
	if err := m.readTables(want, inodes); err != nil {
		m.fail(err)
		return 0, ErrNoProc
	}

	if callerAt == 0 {
		if inodes[0] == 0 {
			return 0, ErrNoSocket
		}
		p, err := m.holder(inodes[0])
		if err != nil {
			if !errors.Is(err, ErrNoSocket) {
				m.fail(err)
				return 0, ErrNoProc
			}
			return 0, err
		}
		pid = p
		m.store(caller.Key, procEntry{pid, inodes[0]})
	}

	// Which of the uncached pending connections pid holds: one pass over
	// its fds.
	held := make(map[uint64]int, len(inodes))
	for j, i := 0, callerAt+1; j < len(pending); j++ {
		s := &pending[j]
		if s.PID != 0 {
			continue
		}
		if inodes[i] != 0 {
			held[inodes[i]] = j
		}
		i++
	}
	if len(held) > 0 {
		m.eachSocket(pid, func(inode uint64) bool {
			if j, ok := held[inode]; ok {
				pending[j].PID = pid
				m.store(pending[j].Key, procEntry{pid, inode})
			}
			return true
		})
	}
	return pid, nil
}

// store caches the process holding a connection.
func (m *ProcMapper) store(key any, e procEntry) {
	m.mu.Lock()
	if len(m.cache) >= m.max {
		clear(m.cache)
	}
	m.cache[key] = e
	m.mu.Unlock()
}

// Verify implements Resolver with one read of pid's fds. A connection the
// mapper does not know (evicted from the cache) is left as it was.
func (m *ProcMapper) Verify(pid int, held []Socket) error {
	if m.broken.Load() {
		return ErrNoProc
	}
	want := make(map[uint64]int, len(held))
	m.mu.Lock()
	for i := range held {
		if e, ok := m.cache[held[i].Key]; ok && e.pid == pid && e.inode != 0 {
			want[e.inode] = i
			held[i].PID = 0
		}
	}
	m.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	m.eachSocket(pid, func(inode uint64) bool {
		if i, ok := want[inode]; ok {
			held[i].PID = pid
		}
		return true
	})
	return nil
}

func (m *ProcMapper) fail(err error) {
	m.broken.Store(true)
	m.once.Do(func() {
		if m.OnUnavailable != nil {
			m.OnUnavailable(err)
		}
	})
}

// tableBufs holds the buffers the socket tables are read into.
var tableBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readTables fills inodes[want[c]] with the socket inode of each wanted
// connection: /proc/net/tcp first, then tcp6 for any connection tcp had no
// row for (IPv6, or IPv4 on a dual-stack socket). A row with inode 0 (a
// connection in an accept queue, or closing) counts as found.
func (m *ProcMapper) readTables(want map[Conn]int, inodes []uint64) error {
	found := make([]bool, len(inodes))
	missing := len(inodes)
	only6 := true
	for c := range want {
		if c.Local.Addr().Is4() {
			only6 = false
			break
		}
	}
	buf := tableBufs.Get().(*bytes.Buffer)
	defer tableBufs.Put(buf)
	read := 0
	var firstErr error
	for _, name := range [...]string{"net/tcp", "net/tcp6"} {
		if name == "net/tcp" && only6 || missing == 0 {
			continue
		}
		if err := m.readInto(buf, filepath.Join(m.root, name)); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		read++
		missing -= scanTable(buf.Bytes(), want, inodes, found)
	}
	if read == 0 {
		return fmt.Errorf("reading %s/net/tcp: %w", m.root, firstErr)
	}
	return nil
}

// readInto reads a whole file into buf.
func (m *ProcMapper) readInto(buf *bytes.Buffer, path string) error {
	buf.Reset()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m.reads.Add(1)
	_, err = buf.ReadFrom(f)
	if err == io.EOF {
		err = nil
	}
	return err
}

// scanTable matches the rows of one /proc/net/tcp{,6} table against want and
// returns how many wanted connections it found for the first time. A row
// with an inode wins over an earlier one without (a connection and an old
// one in TIME_WAIT with the same addresses).
func scanTable(data []byte, want map[Conn]int, inodes []uint64, found []bool) int {
	n := 0
	first := true
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if first { // the column headings
			first = false
			continue
		}
		var f [10][]byte
		if fields(line, f[:]) < len(f) {
			continue
		}
		l, ok1 := parseProcAddr(f[1])
		r, ok2 := parseProcAddr(f[2])
		if !ok1 || !ok2 {
			continue
		}
		i, ok := want[Conn{Local: l, Remote: r}.unmapped()]
		if !ok {
			continue
		}
		if !found[i] {
			found[i] = true
			n++
		}
		if ino, err := strconv.ParseUint(string(f[9]), 10, 64); err == nil && ino != 0 {
			inodes[i] = ino
		}
	}
	return n
}

// fields splits line at spaces into f, returning how many it filled.
func fields(line []byte, f [][]byte) int {
	n := 0
	for n < len(f) {
		for len(line) > 0 && line[0] == ' ' {
			line = line[1:]
		}
		if len(line) == 0 {
			break
		}
		end := bytes.IndexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		f[n], line = line[:end], line[end:]
		n++
	}
	return n
}

// parseProcAddr reads "0100007F:1F90" (IPv4) or a 32-hex-digit IPv6 form;
// each 32-bit word is in host (little-endian on Linux amd64/arm64) order.
func parseProcAddr(b []byte) (netip.AddrPort, bool) {
	i := bytes.IndexByte(b, ':')
	if i != 8 && i != 32 || len(b)-i-1 != 4 {
		return netip.AddrPort{}, false
	}
	port, ok := hexUint(b[i+1:])
	if !ok {
		return netip.AddrPort{}, false
	}
	var raw [16]byte
	for w := 0; w < i/8; w++ {
		v, ok := hexUint(b[w*8 : w*8+8])
		if !ok {
			return netip.AddrPort{}, false
		}
		// The word was printed as a host-order (little-endian) integer.
		raw[w*4], raw[w*4+1], raw[w*4+2], raw[w*4+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	var a netip.Addr
	if i == 8 {
		a = netip.AddrFrom4([4]byte(raw[:4]))
	} else {
		a = netip.AddrFrom16(raw)
	}
	return netip.AddrPortFrom(a, uint16(port)), true
}

// hexUint parses up to 8 hex digits.
func hexUint(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, len(b) > 0
}

// holder finds the process with an fd on socket inode: first among the
// recent holders, then in every process.
func (m *ProcMapper) holder(inode uint64) (int, error) {
	m.mu.Lock()
	recent := append([]int(nil), m.recent...)
	m.mu.Unlock()
	is := func(i uint64) bool { return i != inode }
	for i := len(recent) - 1; i >= 0; i-- {
		if !m.eachSocket(recent[i], is) {
			return recent[i], nil
		}
	}
	d, err := os.Open(m.root)
	if err != nil {
		return 0, err
	}
	m.reads.Add(1)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, err
	}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid <= 0 {
			continue
		}
		if !m.eachSocket(pid, is) {
			m.remember(pid)
			return pid, nil
		}
	}
	return 0, ErrNoSocket
}

// eachSocket calls fn with the inode of each socket process pid has an fd
// on, until fn returns false; it reports whether fn never did. A process
// whose fds cannot be read (another user's, or gone) has none.
func (m *ProcMapper) eachSocket(pid int, fn func(inode uint64) bool) bool {
	fdDir := filepath.Join(m.root, strconv.Itoa(pid), "fd")
	d, err := os.Open(fdDir)
	if err != nil {
		return true
	}
	m.reads.Add(1)
	fds, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return true
	}
	const prefix = "socket:["
	for _, fd := range fds {
		link, err := os.Readlink(fdDir + "/" + fd)
		if err != nil || len(link) < len(prefix)+2 || link[:len(prefix)] != prefix || link[len(link)-1] != ']' {
			continue
		}
		ino, err := strconv.ParseUint(link[len(prefix):len(link)-1], 10, 64)
		if err == nil && !fn(ino) {
			return false
		}
	}
	return true
}

// remember adds pid to the recent holders, dropping the oldest beyond
// maxRecent.
func (m *ProcMapper) remember(pid int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.recent {
		if p == pid {
			return
		}
	}
	if len(m.recent) == maxRecent {
		m.recent = append(m.recent[:0], m.recent[1:]...)
	}
	m.recent = append(m.recent, pid)
}
