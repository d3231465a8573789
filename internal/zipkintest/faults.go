package zipkintest

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// Mode is how a FaultyCollector answers.
type Mode int

// Modes of a FaultyCollector.
const (
	// ModeOK answers like the strict Collector.
	ModeOK Mode = iota
	// ModeRefuse closes the listener and every connection: connections are
	// refused until another mode reopens the same port.
	ModeRefuse
	// ModeStatus reads the request and answers Fault.Status, with
	// Fault.RetryAfter as Retry-After when set.
	ModeStatus
	// ModeHang reads the request and never answers; the client has to give
	// up.
	ModeHang
	// ModeDelay reads the request and answers like ModeOK after
	// Fault.Delay. The spans count as received only if the client still
	// waits for the answer then: a client that gave up will send them
	// again, and a collector that kept them would hold duplicates.
	ModeDelay
)

var modeNames = [...]string{"ok", "refuse", "status", "hang", "delay"}

// String returns the mode's name.
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return "mode(" + strconv.Itoa(int(m)) + ")"
	}
	return modeNames[m]
}

// Fault is a misbehaviour of a FaultyCollector.
type Fault struct {
	Mode       Mode
	Status     int           // ModeStatus: the status answered
	RetryAfter string        // ModeStatus: the Retry-After sent, if any
	Delay      time.Duration // ModeDelay: how long before answering
}

// Attempt is one request a FaultyCollector received.
type Attempt struct {
	Start, End time.Time // when the request arrived and was done with
	Mode       Mode      // the mode it met
	Status     int       // the status answered; 0 when none was
	Spans      int       // spans in the body, when it decoded
	Accepted   bool      // its spans count as received
}

// FaultyCollector is a strict Zipkin collector on a fixed local port that
// misbehaves on demand: it refuses connections, answers an error status,
// hangs, answers late, or flaps between up and down. What it accepts is
// checked and kept as the Collector does.
type FaultyCollector struct {
	strict *Collector // decodes and keeps the accepted spans
	addr   string

	mu       sync.Mutex
	fault    Fault
	srv      *http.Server  // nil while refusing
	served   chan struct{} // closed when srv.Serve returns
	attempts []Attempt
	release  chan struct{} // closed by Close to free hung handlers
	flap     chan struct{} // closed to stop flapping; nil when not flapping
	flapDone chan struct{}
	handlers sync.WaitGroup
	inFlight int // requests being handled
	closed   bool
}

// NewFaultyCollector starts a FaultyCollector in ModeOK on a free local
// port. It is closed when the test ends.
func NewFaultyCollector(t testing.TB) *FaultyCollector {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &FaultyCollector{strict: &Collector{}, addr: l.Addr().String(), release: make(chan struct{})}
	f.serveLocked(l)
	t.Cleanup(f.Close)
	return f
}

// URL returns the collector's span endpoint.
func (f *FaultyCollector) URL() string { return "http://" + f.addr + "/api/v2/spans" }

// Set switches to fault, ending any flapping. Leaving ModeRefuse listens
// again on the same port.
func (f *FaultyCollector) Set(t testing.TB, fault Fault) {
	t.Helper()
	f.stopFlap()
	if err := f.apply(fault); err != nil {
		t.Fatal(err)
	}
}

// Flap alternates between ModeOK and down, each for period, until the next
// Set or Close. It starts with down.
func (f *FaultyCollector) Flap(t testing.TB, period time.Duration, down Fault) {
	t.Helper()
	f.stopFlap()
	if err := f.apply(down); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.flap, f.flapDone = stop, done
	f.mu.Unlock()
	go func() {
		defer close(done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for up := true; ; up = !up {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			next := down
			if up {
				next = Fault{Mode: ModeOK}
			}
			if err := f.apply(next); err != nil {
				// The port was taken while down: stay down, which the
				// test sees as a collector that never recovers.
				return
			}
		}
	}()
}

func (f *FaultyCollector) stopFlap() {
	f.mu.Lock()
	stop, done := f.flap, f.flapDone
	f.flap, f.flapDone = nil, nil
	f.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// apply switches the mode, closing or reopening the listener as needed.
func (f *FaultyCollector) apply(fault Fault) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.fault = fault
	switch {
	case fault.Mode == ModeRefuse && f.srv != nil:
		f.closeServerLocked()
	case fault.Mode != ModeRefuse && f.srv == nil:
		l, err := net.Listen("tcp", f.addr)
		if err != nil {
			return err
		}
		f.serveLocked(l)
	}
	return nil
}

func (f *FaultyCollector) serveLocked(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(f.serve)}
	served := make(chan struct{})
	f.srv, f.served = srv, served
	go func() {
		defer close(served)
		srv.Serve(l)
	}()
}

// closeServerLocked closes the server and its connections and waits for
// Serve to return: only then is the listening socket closed, and a new
// connection refused rather than queued and reset.
func (f *FaultyCollector) closeServerLocked() {
	f.srv.Close()
	<-f.served
	f.srv, f.served = nil, nil
}

func (f *FaultyCollector) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	f.handlers.Add(1)
	f.inFlight++
	fault := f.fault
	f.mu.Unlock()
	defer f.handlers.Done()

	a := Attempt{Start: time.Now(), Mode: fault.Mode}
	// Read the whole body first in every mode: the client is done sending
	// and waits for the answer, as it would with a real collector.
	rec, err := f.strict.decode(r)
	a.Spans = len(rec.Spans)
	switch fault.Mode {
	case ModeStatus:
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		a.Status = fault.Status
		http.Error(w, "fault injected", fault.Status)
	case ModeHang:
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
	case ModeDelay:
		timer := time.NewTimer(fault.Delay)
		select {
		case <-timer.C:
			a.Status, a.Accepted = f.commitLate(w, r, rec, err)
		case <-r.Context().Done():
			timer.Stop()
		case <-f.release:
			timer.Stop()
		}
	default:
		a.Status, a.Accepted = f.commit(w, r, rec, err)
	}
	a.End = time.Now()
	f.mu.Lock()
	f.attempts = append(f.attempts, a)
	f.inFlight--
	f.mu.Unlock()
}

// commit keeps a decoded request as the strict Collector does and answers
// it, unless the client has gone.
func (f *FaultyCollector) commit(w http.ResponseWriter, r *http.Request, rec Received, err error) (int, bool) {
	if r.Context().Err() != nil {
		return 0, false
	}
	f.keep(rec, err)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return http.StatusBadRequest, false
	}
	w.WriteHeader(http.StatusAccepted)
	return http.StatusAccepted, true
}

// keep keeps a decoded request, or its error, as the strict Collector does.
func (f *FaultyCollector) keep(rec Received, err error) {
	c := f.strict
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.rejected = append(c.rejected, err)
	} else {
		c.accepted = append(c.accepted, rec)
	}
}

// commitLate is commit for an answer after a delay, kept only when the
// client still waits for it (testutil.TakeOverIfWaiting says why the
// request's context cannot tell).
func (f *FaultyCollector) commitLate(w http.ResponseWriter, r *http.Request, rec Received, err error) (int, bool) {
	if r.Context().Err() != nil {
		return 0, false
	}
	la, waiting, ok := testutil.TakeOverIfWaiting(w)
	if !ok {
		return f.commit(w, r, rec, err)
	}
	if !waiting {
		return 0, false
	}
	f.keep(rec, err)
	if err != nil {
		la.Write(http.StatusBadRequest, "text/plain; charset=utf-8", []byte(err.Error()+"\n"))
		return http.StatusBadRequest, false
	}
	la.Write(http.StatusAccepted, "text/plain; charset=utf-8", nil)
	return http.StatusAccepted, true
}

// Attempts returns every request received so far, in the order they were
// done with.
func (f *FaultyCollector) Attempts() []Attempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Attempt(nil), f.attempts...)
}

// InFlight returns how many requests the collector is handling now.
func (f *FaultyCollector) InFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight
}

// Requests returns what the collector accepted and rejected so far.
func (f *FaultyCollector) Requests() ([]Received, []error) { return f.strict.Requests() }

// Spans returns every span the collector accepted so far, in arrival order.
func (f *FaultyCollector) Spans() []Span { return f.strict.Spans() }

// WaitSpans waits until the collector has accepted at least n spans, as
// Collector.WaitSpans does.
func (f *FaultyCollector) WaitSpans(t testing.TB, n int, timeout time.Duration) []Span {
	t.Helper()
	return f.strict.WaitSpans(t, n, timeout)
}

// Close stops flapping, frees hung requests, closes the server and waits
// for its handlers to return.
func (f *FaultyCollector) Close() {
	f.stopFlap()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	close(f.release)
	if f.srv != nil {
		f.closeServerLocked()
	}
	f.mu.Unlock()
	f.handlers.Wait()
}
