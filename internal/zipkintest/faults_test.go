package zipkintest

import (
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

const validList = `[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"00f067aa0ba902b7","name":"get","kind":"SERVER","timestamp":1700000000000000,"duration":5}]`

// post sends validList with the given client timeout.
func post(f *FaultyCollector, timeout time.Duration) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, f.URL(), strings.NewReader(validList))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Do(req)
	if err == nil {
		res.Body.Close()
	}
	return res, err
}

// waitAttempts polls until the collector has done with n requests.
func waitAttempts(t *testing.T, f *FaultyCollector, n int) []Attempt {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if a := f.Attempts(); len(a) >= n {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector saw %d requests, want %d", len(f.Attempts()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFaultyCollectorModes(t *testing.T) {
	tests := []struct {
		name       string
		fault      Fault
		timeout    time.Duration // the client's
		wantStatus int           // 0: the client gets no answer
		wantHeader string        // Retry-After
		accepted   bool
	}{
		{"ok", Fault{Mode: ModeOK}, time.Second, http.StatusAccepted, "", true},
		{"status 500", Fault{Mode: ModeStatus, Status: 500}, time.Second, 500, "", false},
		{"status 429 retry-after", Fault{Mode: ModeStatus, Status: 429, RetryAfter: "1"}, time.Second, 429, "1", false},
		{"hang", Fault{Mode: ModeHang}, 100 * time.Millisecond, 0, "", false},
		{"delay within the client's patience", Fault{Mode: ModeDelay, Delay: 20 * time.Millisecond}, time.Second, http.StatusAccepted, "", true},
		{"delay beyond the client's patience", Fault{Mode: ModeDelay, Delay: time.Second}, 100 * time.Millisecond, 0, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFaultyCollector(t)
			f.Set(t, tc.fault)
			res, err := post(f, tc.timeout)
			switch {
			case tc.wantStatus == 0 && err == nil:
				t.Fatalf("got %d, want no answer", res.StatusCode)
			case tc.wantStatus != 0 && err != nil:
				t.Fatal(err)
			case tc.wantStatus != 0 && (res.StatusCode != tc.wantStatus || res.Header.Get("Retry-After") != tc.wantHeader):
				t.Fatalf("got %d Retry-After %q, want %d %q", res.StatusCode, res.Header.Get("Retry-After"), tc.wantStatus, tc.wantHeader)
			}
			a := waitAttempts(t, f, 1)[0]
			if a.Mode != tc.fault.Mode || a.Status != tc.wantStatus || a.Accepted != tc.accepted || a.Spans != 1 {
				t.Errorf("attempt %+v, want mode %s status %d accepted %v with 1 span", a, tc.fault.Mode, tc.wantStatus, tc.accepted)
			}
			if got, want := len(f.Spans()), map[bool]int{true: 1}[tc.accepted]; got != want {
				t.Errorf("collector kept %d spans, want %d", got, want)
			}
		})
	}
}

func TestFaultyCollectorRefusesThenRecoversOnTheSamePort(t *testing.T) {
	f := NewFaultyCollector(t)
	f.Set(t, Fault{Mode: ModeRefuse})
	if _, err := post(f, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("got %v, want connection refused", err)
	}
	f.Set(t, Fault{Mode: ModeOK})
	res, err := post(f, time.Second)
	if err != nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("after recovery: %v %v", res, err)
	}
	f.WaitSpans(t, 1, time.Second)
}

func TestFaultyCollectorFlaps(t *testing.T) {
	f := NewFaultyCollector(t)
	f.Flap(t, 30*time.Millisecond, Fault{Mode: ModeRefuse})
	var refused, ok int
	deadline := time.Now().Add(5 * time.Second)
	for refused == 0 || ok == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("in 5s of flapping: %d refused, %d accepted; want both", refused, ok)
		}
		res, err := post(f, time.Second)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
			// A connection queued as the listener closes is reset.
			refused++
		case err == nil && res.StatusCode == http.StatusAccepted:
			ok++
		default:
			t.Fatalf("flapping collector answered %v %v", res, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.Set(t, Fault{Mode: ModeOK})
	if res, err := post(f, time.Second); err != nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("Set(ok) did not end flapping: %v %v", res, err)
	}
}

func TestFaultyCollectorCloseFreesHungRequests(t *testing.T) {
	f := NewFaultyCollector(t)
	f.Set(t, Fault{Mode: ModeHang})
	errc := make(chan error, 1)
	go func() {
		_, err := post(f, 0)
		errc <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never reached the collector")
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		f.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a hung request")
	}
	if err := <-errc; err == nil {
		t.Error("hung request got an answer, want none")
	}
}
