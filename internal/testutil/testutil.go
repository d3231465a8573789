// Package testutil holds what the project's tests share: one way to wait for
// a condition, one way to check that a test left no goroutine running, and
// one way for a test server to answer late only to a client still waiting.
package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// pollEvery is how often Eventually and Settle look again.
const pollEvery = 2 * time.Millisecond

// Eventually polls cond until it holds, failing t (naming what it waited
// for) when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
			return // t is not always a *testing.T that stops here
		}
		time.Sleep(pollEvery)
	}
}

// Baseline is the number of goroutines counted when it was taken, and how
// they are counted.
type Baseline struct {
	n     int
	count func() int
	what  string
}

// Goroutines takes a Baseline of every goroutine now, before the code under
// test starts any.
func Goroutines() Baseline {
	return Baseline{n: runtime.NumGoroutine(), count: runtime.NumGoroutine, what: "goroutines"}
}

// OurGoroutines takes a Baseline of the goroutines running this project's
// code (outside test files): for a test beside a server, such as Caddy,
// whose own goroutines (idle connections, timers) come and go on their own.
func OurGoroutines() Baseline {
	return Baseline{n: ours(), count: ours, what: "tracingproxy goroutines"}
}

// ours counts the goroutines running this project's code and no test
// file's: the tests' own goroutines are theirs to end.
func ours() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		g, _, _ = strings.Cut(g, "\ncreated by ") // who started it does not say what it runs
		if strings.Contains(g, "github.com/tracingproxy/tracingproxy/") && !strings.Contains(g, "_test.go") {
			n++
		}
	}
	return n
}

// Settle waits until no more goroutines run than at b, failing t with every
// goroutine's stack when timeout passes first: a goroutine the code under
// test started and never ended.
func (b Baseline) Settle(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := b.count()
		if n <= b.n {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d %s still running, %d before:\n%s", n, b.what, b.n, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(pollEvery)
	}
}

// LateAnswer is an HTTP/1 exchange a test server took over to answer after
// a delay, once it knows the client still waits: see TakeOverIfWaiting.
type LateAnswer struct {
	conn net.Conn
	buf  *bufio.ReadWriter
}

// TakeOverIfWaiting hijacks the connection of a request whose answer comes
// late and reports whether its client still waits for it. The request's
// context cannot say: the server cancels it only once its reading goroutine
// has run, which on a loaded machine can come after the delay, and a server
// that then kept the request would hold what the client sends again. A
// client that gave up has closed its end, so a read sees the end of the
// stream at once; one that waits sends nothing. The answer is then
// Write's; a client gone leaves nothing to do. ok is false for a
// connection that cannot be hijacked (HTTP/2): the context is all there is.
func TakeOverIfWaiting(w http.ResponseWriter) (la *LateAnswer, waiting, ok bool) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, false, false
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err = buf.ReadByte()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		conn.Close() // gone, or (never an HTTP client waiting) sending more
		return nil, false, true
	}
	conn.SetDeadline(time.Time{})
	return &LateAnswer{conn: conn, buf: buf}, true, true
}

// Write answers status with body and closes the connection.
func (a *LateAnswer) Write(status int, contentType string, body []byte) error {
	defer a.conn.Close()
	fmt.Fprintf(a.buf, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		status, http.StatusText(status), contentType, len(body))
	a.buf.Write(body)
	return a.buf.Flush()
}
