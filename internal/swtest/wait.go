package swtest

import (
	"testing"
	"time"
)

// pollEvery is how often the Wait methods look again.
const pollEvery = 5 * time.Millisecond

// wait polls cond until it holds, failing the test with what() at the
// deadline.
func wait(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("swtest: after %s the collector holds %s", timeout, what())
		}
		time.Sleep(pollEvery)
	}
}
