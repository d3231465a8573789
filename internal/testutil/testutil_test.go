package testutil

import (
	"strings"
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
	r.failed = format
	_ = args
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
	b := Goroutines()
	stop := make(chan struct{})
	go func() { <-stop }()
	r := &recorder{TB: t}
	b.Settle(r, 30*time.Millisecond)
	if !strings.Contains(r.failed, "still running") {
		t.Fatalf("Settle did not report a goroutine left running (got %q)", r.failed)
	}
	close(stop)
	r.failed = ""
	b.Settle(r, 5*time.Second)
	if r.failed != "" {
		t.Fatalf("Settle failed once the goroutine ended: %s", r.failed)
	}
}
