package caddymodule

import (
	"io"
	"net/http"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// statusRecorder remembers the status code a response was sent with and,
// when settle is set, keeps the upstream's trace headers of the names we set
// from doubling ours. Status and bytes are atomic: a shutdown may record
// the request while its response is still being written (see flights).
type statusRecorder struct {
	caddyhttp.ResponseWriterWrapper
	status atomic.Int32
	bytes  atomic.Int64 // response body bytes written
	// settle and sent, when set, are the response header options and what
	// they set on this response.
	settle *ResponseHeaders
	sent   *sentHeaders
	// watched records an upgraded connection in session.
	watched bool
	session atomic.Pointer[session]
}

// WriteHeader settles the trace headers before any status is sent and
// records the first final status; 101 Switching Protocols is final for an
// upgraded connection.
func (s *statusRecorder) WriteHeader(code int) {
	if s.status.Load() == 0 {
		s.settleHeaders()
		if code >= 200 || code == http.StatusSwitchingProtocols {
			s.status.Store(int32(code))
		}
	}
	s.ResponseWriterWrapper.WriteHeader(code)
}

// Write records an implicit 200 and counts the body bytes.
func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status.Load() == 0 {
		s.settleHeaders()
		s.status.Store(http.StatusOK)
	}
	n, err := s.ResponseWriterWrapper.Write(p)
	s.bytes.Add(int64(n))
	return n, err
}

// ReadFrom records an implicit 200 and counts the body bytes.
func (s *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if s.status.Load() == 0 {
		s.settleHeaders()
		s.status.Store(http.StatusOK)
	}
	n, err := s.ResponseWriterWrapper.ReadFrom(src)
	s.bytes.Add(n)
	return n, err
}

func (s *statusRecorder) settleHeaders() {
	if s.settle != nil {
		s.settle.settle(s.Header(), s.sent)
	}
}
