package caddymodule

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// errCutAtShutdown is the error of a request the process stopped serving:
// it was still running when the grace period ended and the process exited.
var errCutAtShutdown = errors.New("request cut at shutdown: still running when the grace period ended")

// processExiting reports whether the process is exiting; tests replace it.
var processExiting = caddy.Exiting

// flights are a handler's watched requests while next runs. A process that
// exits past its grace period never sees them return: Cleanup records them
// first, so each still gets its span, or its drop count.
type flights struct {
	mu   sync.Mutex
	head *flight
}

// flight is one watched request: in flight while next runs, then what its
// record is built from (finish, record and the span builders take it whole).
// It lives in the request's pooled reqState: once remove returns, nothing
// reads it (a shutdown records under the lock).
type flight struct {
	prev, next *flight
	listed     bool
	cut        bool // recorded at shutdown, not by the request
	b          *recordBuf
	r          *http.Request
	t          *hop
	sr         *statusRecorder
	start      time.Time
	callStart  time.Time
	// How the request ended, set when next returns or a shutdown cuts
	// it; end is when the hop ended (for an upgraded connection, at the
	// 101). What its spans show is filled in by record.
	err error
	end time.Time
	outcome
}

// outcome is how a recorded request ended, as its spans tell it.
type outcome struct {
	status  int    // the status the client got
	errText string // the error of the SERVER span
	code    int    // the status of the last upstream response, 0 for none
}

func (fs *flights) add(f *flight) {
	fs.mu.Lock()
	f.next = fs.head
	if fs.head != nil {
		fs.head.prev = f
	}
	fs.head, f.listed = f, true
	fs.mu.Unlock()
}

// remove takes f off the list and reports whether the request is still its
// own to record: false when a shutdown recorded it. A shutdown records
// under the lock, so when remove returns, the record no longer reads the
// request's state.
func (fs *flights) remove(f *flight) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !f.listed {
		return !f.cut
	}
	fs.unlinkLocked(f)
	return true
}

func (fs *flights) unlinkLocked(f *flight) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		fs.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	}
	f.prev, f.next, f.listed = nil, nil, false
}

// cutAll records every request still in flight as cut at shutdown and
// returns how many there were.
func (fs *flights) cutAll(h *Handler) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	end := now()
	for fs.head != nil {
		f := fs.head
		fs.unlinkLocked(f)
		f.cut = true
		f.err, f.end = errCutAtShutdown, end
		h.finish(f)
		n++
	}
	return n
}
