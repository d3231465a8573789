package stitch

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// ErrNoProc is returned by ProcMapper once /proc proved unreadable; the
// process method is then skipped for the rest of the mapper's life.
var ErrNoProc = errors.New("stitch: /proc unavailable")

// ErrNoSocket is returned when no process holds the connection's socket.
var ErrNoSocket = errors.New("stitch: socket not found in /proc")

// Conn names a TCP connection from the service's side: Local is the service
// process's address, Remote the proxy's.
type Conn struct {
	Local, Remote netip.AddrPort
}

// ProcMapper maps service-side TCP sockets to the process holding them
// through /proc/net/tcp{,6} and /proc/<pid>/fd. Results are cached per
// connection until Forget, so /proc is read once per connection. The
// processes that held sockets before are searched first, so a prefork
// service's workers are found without walking every process.
type ProcMapper struct {
	root string
	// OnUnavailable is called once, with the cause, the first time /proc
	// cannot be read; set it before the first PID call.
	OnUnavailable func(error)

	once   sync.Once
	broken bool

	mu     sync.Mutex
	cache  map[any]int
	max    int
	recent []int // pids that held a socket, newest last
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
	return &ProcMapper{root: root, cache: make(map[any]int), max: max}
}

// PID returns the process holding the service side of c. key identifies
// the connection in the cache: a value unique to it while it is open (the
// net.Conn itself), since the address pair of a closed connection can be
// reused by a new one in another process. Failures are not cached.
func (m *ProcMapper) PID(key any, c Conn) (int, error) {
	m.mu.Lock()
	if m.broken {
		m.mu.Unlock()
		return 0, ErrNoProc
	}
	if pid, ok := m.cache[key]; ok {
		m.mu.Unlock()
		return pid, nil
	}
	m.mu.Unlock()
	pid, err := m.lookup(c)
	if err != nil {
		if !errors.Is(err, ErrNoSocket) {
			m.fail(err)
			return 0, ErrNoProc
		}
		return 0, err
	}
	m.mu.Lock()
	if len(m.cache) >= m.max {
		clear(m.cache)
	}
	m.cache[key] = pid
	m.mu.Unlock()
	return pid, nil
}

// Cached reports how many connections the mapper holds.
func (m *ProcMapper) Cached() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cache)
}

// Forget drops a connection from the cache when it closes.
func (m *ProcMapper) Forget(key any) {
	m.mu.Lock()
	delete(m.cache, key)
	m.mu.Unlock()
}

func (m *ProcMapper) fail(err error) {
	m.mu.Lock()
	m.broken = true
	m.mu.Unlock()
	m.once.Do(func() {
		if m.OnUnavailable != nil {
			m.OnUnavailable(err)
		}
	})
}

func (m *ProcMapper) lookup(c Conn) (int, error) {
	inode, err := m.inode(c)
	if err != nil {
		return 0, err
	}
	return m.holder(inode)
}

// inode finds the socket inode of c in /proc/net/tcp or tcp6.
func (m *ProcMapper) inode(c Conn) (uint64, error) {
	files := []string{"net/tcp", "net/tcp6"}
	if c.Local.Addr().Is6() && !c.Local.Addr().Is4In6() {
		files = files[1:]
	}
	read := 0
	var firstErr error
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(m.root, f))
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		read++
		if ino, ok := findInode(data, c); ok {
			return ino, nil
		}
	}
	if read == 0 {
		return 0, fmt.Errorf("reading %s/net/tcp: %w", m.root, firstErr)
	}
	return 0, ErrNoSocket
}

// findInode scans a /proc/net/tcp{,6} table for the row of c.
func findInode(data []byte, c Conn) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 512), 4096)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		f := bytes.Fields(sc.Bytes())
		if len(f) < 10 {
			continue
		}
		l, ok1 := parseProcAddr(f[1])
		r, ok2 := parseProcAddr(f[2])
		if !ok1 || !ok2 || !sameAddr(l, c.Local) || !sameAddr(r, c.Remote) {
			continue
		}
		ino, err := strconv.ParseUint(string(f[9]), 10, 64)
		if err != nil || ino == 0 {
			continue
		}
		return ino, true
	}
	return 0, false
}

func sameAddr(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// parseProcAddr reads "0100007F:1F90" (IPv4) or a 32-hex-digit IPv6 form;
// each 32-bit word is in host (little-endian on Linux amd64/arm64) order.
func parseProcAddr(b []byte) (netip.AddrPort, bool) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw := make([]byte, hex.DecodedLen(i))
	if _, err := hex.Decode(raw, b[:i]); err != nil {
		return netip.AddrPort{}, false
	}
	for w := 0; w+4 <= len(raw); w += 4 {
		v := binary.BigEndian.Uint32(raw[w:])
		binary.LittleEndian.PutUint32(raw[w:], v)
	}
	var a netip.Addr
	switch len(raw) {
	case 4:
		a = netip.AddrFrom4([4]byte(raw))
	case 16:
		a = netip.AddrFrom16([16]byte(raw))
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(port)), true
}

// holder finds the process with an fd on socket:[inode]: first among the
// recent holders, then in every process.
func (m *ProcMapper) holder(inode uint64) (int, error) {
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	m.mu.Lock()
	recent := append([]int(nil), m.recent...)
	m.mu.Unlock()
	for i := len(recent) - 1; i >= 0; i-- {
		if m.holds(recent[i], want) {
			return recent[i], nil
		}
	}
	d, err := os.Open(m.root)
	if err != nil {
		return 0, err
	}
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
		if m.holds(pid, want) {
			m.remember(pid)
			return pid, nil
		}
	}
	return 0, ErrNoSocket
}

// holds reports whether process pid has an fd whose link is want.
func (m *ProcMapper) holds(pid int, want string) bool {
	fdDir := filepath.Join(m.root, strconv.Itoa(pid), "fd")
	d, err := os.Open(fdDir)
	if err != nil {
		return false // another user's process, or gone
	}
	fds, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if link, err := os.Readlink(fdDir + "/" + fd); err == nil && link == want {
			return true
		}
	}
	return false
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
