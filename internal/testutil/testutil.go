// Package testutil holds what the project's tests share: one way to wait for
// a condition and one way to check that a test left no goroutine running.
package testutil

import (
	"runtime"
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

// Baseline is the number of goroutines running when it was taken.
type Baseline int

// Goroutines takes a Baseline now, before the code under test starts any.
func Goroutines() Baseline { return Baseline(runtime.NumGoroutine()) }

// Settle waits until no more goroutines run than at b, failing t with every
// goroutine's stack when timeout passes first: a goroutine the code under
// test started and never ended.
func (b Baseline) Settle(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for runtime.NumGoroutine() > int(b) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines still running, %d before:\n%s", runtime.NumGoroutine(), b, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(pollEvery)
	}
}
