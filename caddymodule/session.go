package caddymodule

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// A relayed upgraded connection (WebSocket). reverse_proxy answers the
// upgrade with the upstream's 101, hijacks the client's connection and
// copies bytes both ways until one side ends; next returns only then. The
// hop (SERVER span and the attempt) ends at the 101, and a local session
// span, a child of the SERVER span, covers the relay: bytes each way and
// which side ended it.

// Who ended a session, the session.closed_by tag.
const (
	closedByClient   = "client"   // the client closed its side, or its connection failed
	closedByUpstream = "upstream" // the upstream closed its side
	closedByProxy    = "proxy"    // reverse_proxy closed it (stream timeout, shutdown, a copy error)
)

// session is one relayed connection.
type session struct {
	start      time.Time // the hijack, right after the 101
	fromClient atomic.Int64
	toClient   atomic.Int64
	mu         sync.Mutex
	end        time.Time
	closedBy   string
	err        error // how a failed side failed; nil for a clean close
}

// ended records the first end of the session.
func (s *session) ended(by string, err error) {
	t := now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closedBy == "" {
		s.end, s.closedBy, s.err = t, by, err
	}
}

// sessionConn counts what reverse_proxy relays over the client's
// connection and sees which side ends first.
type sessionConn struct {
	net.Conn
	s *session
}

// Read counts the client's bytes; an error ends the session on the client's
// side.
func (c *sessionConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.s.fromClient.Add(int64(n))
	if err != nil && !errors.Is(err, net.ErrClosed) {
		how := err
		if err == io.EOF {
			how = nil // a clean close
		}
		c.s.ended(closedByClient, how)
	}
	return n, err
}

// Write counts the bytes sent to the client.
func (c *sessionConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.s.toClient.Add(int64(n))
	if err != nil && !errors.Is(err, net.ErrClosed) {
		c.s.ended(closedByClient, err)
	}
	return n, err
}

// CloseWrite is reverse_proxy passing on the upstream's end of its side.
func (c *sessionConn) CloseWrite() error {
	c.s.ended(closedByUpstream, nil)
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close ends the session, if nothing ended it before: reverse_proxy closed
// the connection itself.
func (c *sessionConn) Close() error {
	c.s.ended(closedByProxy, nil)
	return c.Conn.Close()
}

// Hijack hands reverse_proxy the client's connection for an upgraded
// protocol; when the request is watched, wrapped to record the session.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriterWrapper.ResponseWriter).Hijack()
	if err != nil || !s.watched {
		return conn, brw, err
	}
	ss := &session{start: now()}
	s.session.Store(ss)
	return &sessionConn{Conn: conn, s: ss}, brw, nil
}

// sessionSpan is the local span of a relayed session, a child of the
// SERVER span, named after the protocol and the route.
func (h *Handler) sessionSpan(t *hop, ss *session, proto, route string, end time.Time) exporter.Span {
	ss.mu.Lock()
	stop, by, serr := ss.end, ss.closedBy, ss.err
	ss.mu.Unlock()
	if by == "" {
		// next returned with the connection open: a shutdown cut it.
		stop, by = end, closedByProxy
	}
	proto = strings.ToLower(proto)
	if proto == "" {
		proto = "upgrade"
	}
	s := exporter.Span{
		Kind:     exporter.KindLocal,
		ParentID: t.serverID,
		Name:     capCopy(proto+" "+route, h.MaxTagLength),
		Start:    ss.start,
		Duration: stop.Sub(ss.start),
		Tags: []exporter.Tag{
			{Key: exporter.TagSessionBytesFromClient, Value: strconv.FormatInt(ss.fromClient.Load(), 10)},
			{Key: exporter.TagSessionBytesToClient, Value: strconv.FormatInt(ss.toClient.Load(), 10)},
			{Key: exporter.TagSessionClosedBy, Value: by},
		},
	}
	if serr != nil {
		s.Error = h.capTag(serr.Error())
	}
	return s
}
