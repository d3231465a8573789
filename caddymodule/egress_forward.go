package caddymodule

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/stitch"
)

// The forward proxy: an egress listener for services that honour
// HTTP_PROXY. An absolute-form request (GET http://payments:8080/charge) is
// traced as any egress call and handed to the reverse_proxy after the
// handler, whose upstream is the variable forwardUpstreamVar; a CONNECT
// tunnel is relayed by the handler itself and recorded as a CLIENT span
// with the bytes each way, since no header can be written into it.

// forwardUpstreamVar is the request variable holding the destination of an
// absolute-form request: the forward proxy's reverse_proxy dials
// {http.vars.tracingproxy_forward_upstream}.
const forwardUpstreamVar = "tracingproxy_forward_upstream"

// tunnelDialTimeout bounds the dial of a CONNECT destination.
const tunnelDialTimeout = 10 * time.Second

// destRule is one allow_destinations entry: a host (exact, or a *.suffix),
// or an IP prefix; port 0 allows any port.
type destRule struct {
	host   string // lowercase; "" for a prefix rule
	suffix bool   // host is ".domain": any subdomain
	prefix netip.Prefix
	port   uint16
}

// parseDestinations reads allow_destinations.
func parseDestinations(list []string) ([]destRule, error) {
	var out []destRule
	for _, s := range list {
		host, port := s, ""
		if h, p, err := net.SplitHostPort(s); err == nil {
			host, port = h, p
		}
		var r destRule
		if port != "" {
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("egress allow_destinations: %q has port %q, want 1-65535", s, port)
			}
			r.port = uint16(n)
		}
		switch {
		case strings.Contains(host, "/"):
			p, err := netip.ParsePrefix(host)
			if err != nil {
				return nil, fmt.Errorf("egress allow_destinations: %q is not a CIDR", s)
			}
			r.prefix = p.Masked()
		case host == "":
			return nil, fmt.Errorf("egress allow_destinations: %q names no host", s)
		default:
			if a, err := netip.ParseAddr(host); err == nil {
				r.prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
				break
			}
			r.host = strings.ToLower(strings.TrimSuffix(host, "."))
			if rest, ok := strings.CutPrefix(r.host, "*."); ok {
				r.host, r.suffix = "."+rest, true
			}
			if strings.ContainsAny(r.host, "*:[] ") {
				return nil, fmt.Errorf("egress allow_destinations: %q is not host[:port], *.domain[:port], an IP address or a CIDR", s)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// allowsDest reports whether the forward proxy may reach hostport. No rules
// allow every destination.
func (e *Egress) allowsDest(hostport string) bool {
	if len(e.dests) == 0 {
		return true
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	p, _ := strconv.Atoi(port)
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	a, aerr := netip.ParseAddr(host)
	for _, r := range e.dests {
		if r.port != 0 && int(r.port) != p {
			continue
		}
		switch {
		case r.prefix.IsValid():
			if aerr == nil && r.prefix.Contains(a.Unmap()) {
				return true
			}
		case r.suffix:
			if strings.HasSuffix(host, r.host) {
				return true
			}
		case host == r.host:
			return true
		}
	}
	return false
}

// forwardTarget checks an absolute-form request and names its destination
// for the reverse_proxy; it answers the client itself and reports false
// when the request cannot be forwarded.
func (h *Handler) forwardTarget(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Scheme != "http" || r.URL.Host == "" {
		http.Error(w, "tracingproxy forward proxy: send absolute-form http:// requests, or CONNECT for https", http.StatusBadRequest)
		return false
	}
	dest := r.URL.Host
	if _, _, err := net.SplitHostPort(dest); err != nil {
		dest = net.JoinHostPort(strings.Trim(dest, "[]"), "80")
	}
	if !h.Egress.allowsDest(dest) {
		h.refuseDest(w, dest)
		return false
	}
	caddyhttp.SetVar(r.Context(), forwardUpstreamVar, dest)
	return true
}

// refuseDest answers 403 to a destination outside allow_destinations.
func (h *Handler) refuseDest(w http.ResponseWriter, dest string) {
	egressRefused[refusedDestination].Add(1)
	if c := h.logger.Check(zapcore.DebugLevel, "forward proxy: refusing a destination outside allow_destinations"); c != nil {
		c.Write(zap.String("destination", dest))
	}
	http.Error(w, "tracingproxy forward proxy: destination not allowed", http.StatusForbidden)
}

// tunnels are the CONNECT tunnels a handler relays, closed by Cleanup.
type tunnels struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	live   sync.WaitGroup // tunnels not yet recorded
}

// add registers a tunnel's two connections; false once the handler is
// cleaned up.
func (ts *tunnels) add(a, b net.Conn) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return false
	}
	if ts.conns == nil {
		ts.conns = make(map[net.Conn]struct{})
	}
	ts.conns[a], ts.conns[b] = struct{}{}, struct{}{}
	ts.live.Add(1)
	return true
}

// remove forgets a tunnel that ended and was recorded.
func (ts *tunnels) remove(a, b net.Conn) {
	ts.mu.Lock()
	delete(ts.conns, a)
	delete(ts.conns, b)
	ts.mu.Unlock()
	ts.live.Done()
}

// closeAll ends every tunnel, and any later one before it starts, and
// waits until each is recorded, so its span reaches the queues before
// they are released.
func (ts *tunnels) closeAll() {
	ts.mu.Lock()
	ts.closed = true
	for c := range ts.conns {
		c.Close()
	}
	clear(ts.conns)
	ts.mu.Unlock()
	ts.live.Wait()
}

// serveTunnel relays a CONNECT tunnel and records it as a CLIENT span of
// the service tagged tracingproxy.tunnel, with the bytes each way. The span
// is always a record of its own: a tunnel may outlive its inbound request
// by far, and its record must not hold that request's back.
func (h *Handler) serveTunnel(w http.ResponseWriter, r *http.Request) error {
	dest := r.Host
	if _, _, err := net.SplitHostPort(dest); err != nil {
		http.Error(w, "tracingproxy forward proxy: CONNECT needs host:port", http.StatusBadRequest)
		return nil
	}
	if !h.Egress.allowsDest(dest) {
		h.refuseDest(w, dest)
		return nil
	}
	start := now()
	st := statePool.Get().(*reqState)
	defer st.release()
	st.in = h.prop.prop.Extract(r.Header)
	var e egressCall
	res := h.attribute(r, &st.in, &e)
	countStitch(res.Method)
	e.tunnel = true
	e.req = hop{method: http.MethodConnect, host: dest}
	e.name = capCopy(http.MethodConnect+" "+dest, h.MaxTagLength)
	h.egressContext(r, &st.in, &res, &e, &st.params)

	d := net.Dialer{Timeout: tunnelDialTimeout}
	up, err := d.DialContext(r.Context(), "tcp", dest)
	if err != nil {
		http.Error(w, "tracingproxy forward proxy: cannot reach the destination", http.StatusBadGateway)
		h.recordTunnel(&e, &res, dest, http.StatusBadGateway, err, 0, 0, start, now())
		return nil
	}
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "tracingproxy forward proxy: CONNECT needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
		h.recordTunnel(&e, &res, dest, http.StatusHTTPVersionNotSupported, err, 0, 0, start, now())
		return nil
	}
	defer conn.Close()
	if !h.Egress.tunnels.add(conn, up) {
		return nil
	}
	defer h.Egress.tunnels.remove(conn, up) // after the record below
	conn.SetDeadline(time.Time{})
	if _, err := brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n"); err == nil {
		brw.Flush()
	}
	sent, received := relay(conn, brw.Reader, up)
	h.recordTunnel(&e, &res, dest, http.StatusOK, nil, sent, received, start, now())
	return nil
}

// relay copies between the service's connection (read through br, which
// holds what it sent after the CONNECT) and the destination until both
// directions end; a direction that ends half-closes the other side's
// write. It returns the bytes sent to and received from the destination.
func relay(conn net.Conn, br io.Reader, up net.Conn) (sent, received int64) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		sent, _ = io.Copy(up, br)
		closeWrite(up)
	}()
	var err error
	received, err = io.Copy(conn, up)
	if err != nil {
		// The destination failed: end the other direction too.
		conn.Close()
	}
	closeWrite(conn)
	<-done
	return sent, received
}

// closeWrite half-closes a TCP connection, or closes another kind.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.Close()
}

// recordTunnel exports a tunnel's span when its trace is sampled.
func (h *Handler) recordTunnel(e *egressCall, res *stitch.Result, dest string, status int, err error, sent, received int64, start, end time.Time) {
	if !e.out.Sampling.Sampled() {
		return
	}
	s := exporter.Span{
		Kind:     exporter.KindClient,
		ID:       e.out.SpanID,
		ParentID: e.parentID,
		Name:     e.name,
		Start:    start,
		Duration: end.Sub(start),
		Status:   status,
		Peer:     dest,
	}
	if err != nil {
		s.Error = h.capTag(err.Error())
	}
	s.Tags = append(make([]exporter.Tag, 0, 8),
		exporter.Tag{Key: exporter.TagHTTPMethod, Value: http.MethodConnect},
		exporter.Tag{Key: tagStitch, Value: res.Method.String()},
		exporter.Tag{Key: exporter.TagPeerAddress, Value: dest},
		exporter.Tag{Key: exporter.TagTunnel, Value: "true"},
		exporter.Tag{Key: exporter.TagTunnelBytesSent, Value: strconv.FormatInt(sent, 10)},
		exporter.Tag{Key: exporter.TagTunnelBytesReceived, Value: strconv.FormatInt(received, 10)})
	if len(res.Candidates) > 0 {
		s.Tags = append(s.Tags, candidatesTag(res.Candidates))
	}
	rec := h.egressRecord(e, res, s)
	for _, q := range h.queues {
		q.q.Enqueue(rec)
	}
}
