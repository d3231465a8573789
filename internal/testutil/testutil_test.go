package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps a Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(20 * time.Millisecond)
		n.Store(1)
	}()
	r := &recorder{TB: t}
	Eventually(r, 5*time.Second, "the flag", func() bool { return n.Load() == 1 })
	if r.failed != "" {
		t.Fatalf("Eventually failed a condition that came true: %s", r.failed)
	}
}

func TestEventuallyFailsAfterTheTimeout(t *testing.T) {
	r := &recorder{TB: t}
	start := time.Now()
	Eventually(r, 30*time.Millisecond, "never", func() bool { return false })
	if !strings.Contains(r.failed, "timed out") {
		t.Fatalf("Eventually did not fail on a condition that never holds (got %q)", r.failed)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("failed after %s, before the 30ms timeout", d)
	}
}

func TestSettleSeesALeakedGoroutine(t *testing.T) {
	// The baseline counts this test's goroutine alone, from before it is
	// started to after it ends: the package's other tests start and end
	// goroutines of their own meanwhile, which moved a count of all of
	// them below its baseline with ours still running.
	var running atomic.Int32
	b := Baseline{n: 0, count: func() int { return int(running.Load()) }, what: "test goroutines"}
	stop := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(stop) }) }
	defer end()
	running.Add(1)
	go func() {
		defer running.Add(-1)
		<-stop
	}()
	r := &recorder{TB: t}
	b.Settle(r, 30*time.Millisecond)
	if !strings.Contains(r.failed, "still running") {
		t.Fatalf("Settle did not report a goroutine left running (got %q)", r.failed)
	}
	end()
	r.failed = ""
	b.Settle(r, 5*time.Second)
	if r.failed != "" {
		t.Fatalf("Settle failed once the goroutine ended: %s", r.failed)
	}
}

// lateServer answers every request through TakeOverIfWaiting once the test
// lets it, reporting what it found.
func lateServer(t *testing.T, answer <-chan struct{}) (addr string, found <-chan bool) {
	t.Helper()
	results := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-answer
		la, waiting, ok := TakeOverIfWaiting(w)
		if !ok {
			t.Error("an HTTP/1 connection could not be taken over")
			return
		}
		results <- waiting
		if waiting {
			la.Write(http.StatusAccepted, "text/plain", []byte("late"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), results
}

func TestTakeOverIfWaitingAnswersAWaitingClient(t *testing.T) {
	answer := make(chan struct{})
	close(answer)
	addr, found := lateServer(t, answer)
	res, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader("spans"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusAccepted || string(body) != "late" {
		t.Fatalf("got %d %q, %v; want the late 202", res.StatusCode, body, err)
	}
	if !<-found {
		t.Error("a waiting client was taken for gone")
	}
}

func TestTakeOverIfWaitingSeesAClientGone(t *testing.T) {
	answer := make(chan struct{})
	addr, found := lateServer(t, answer)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nspans")
	conn.Close() // the client gives up before the answer
	close(answer)
	select {
	case waiting := <-found:
		if waiting {
			t.Error("a client that closed its connection was taken for waiting")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server never looked")
	}
}

func TestOurGoroutinesCountsOnlyThisProjectsCode(t *testing.T) {
	b := OurGoroutines()
	// Someone else's goroutine (the standard library's only) is not ours.
	stop := make(chan struct{})
	defer close(stop)
	go func() { <-stop }()
	time.AfterFunc(time.Hour, func() {}).Stop()
	r := &recorder{TB: t}
	b.Settle(r, 20*time.Millisecond)
	if r.failed != "" {
		t.Fatalf("a goroutine of test code counted as ours: %s", r.failed)
	}
	// One blocked in this package's code is: a late answer written to a
	// client that does not read yet.
	server, client := net.Pipe()
	la := &LateAnswer{conn: server, buf: bufio.NewReadWriter(bufio.NewReader(server), bufio.NewWriter(server))}
	go la.Write(http.StatusOK, "text/plain", []byte("late"))
	r = &recorder{TB: t}
	b.Settle(r, 30*time.Millisecond)
	if !strings.Contains(r.failed, "tracingproxy goroutines") {
		t.Fatalf("a goroutine blocked in LateAnswer.Write was not counted (got %q)", r.failed)
	}
	if _, err := io.Copy(io.Discard, client); err != nil {
		t.Fatal(err)
	}
	r = &recorder{TB: t}
	b.Settle(r, 5*time.Second)
	if r.failed != "" {
		t.Fatalf("Settle failed once it ended: %s", r.failed)
	}
}
