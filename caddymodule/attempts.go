package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http/httptrace"
	"sync"
	"syscall"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// The upstream attempts of one request.
//
// reverse_proxy makes one http.RoundTripper call per attempt (retries,
// load-balancer failover), each on a request derived from ours, so each
// keeps our request's context. net/http calls the httptrace.ClientTrace it
// finds in that context once per RoundTrip (GetConn first, then the
// connection, write and response events), and reverse_proxy's own trace
// (for 1xx responses) composes with ours instead of replacing it. So a
// ClientTrace put in the context before next sees every attempt, whatever
// the upstreams, load-balancing policy or retry options, with no change to
// the user's reverse_proxy. It cannot change an attempt's headers: those
// are copied from ours before the first attempt, so every attempt carries
// the one context we injected, and record gives that id to the attempt
// that reached the upstream which answered.

// maxAttempts bounds the attempts one request records; the last slot is
// reused by any further attempt, so the final one is always kept.
const maxAttempts = 8

// Phases of an attempt, in the order they happen and are annotated.
const (
	phaseDNSStart = iota
	phaseDNSDone
	phaseConnectStart
	phaseConnectDone
	phaseTLSStart
	phaseTLSDone
	phaseWireSend
	phaseWireReceive
	nPhases
)

// phaseNames are the annotation values of the phases.
var phaseNames = [nPhases]string{
	exporter.AnnotationDNSStart, exporter.AnnotationDNSDone,
	exporter.AnnotationConnectStart, exporter.AnnotationConnectDone,
	exporter.AnnotationTLSStart, exporter.AnnotationTLSDone,
	exporter.AnnotationWireSend, exporter.AnnotationWireReceive,
}

// attempt is what the client trace saw of one upstream attempt.
type attempt struct {
	resend     int // 0 for the first attempt
	start, end time.Time
	addr       string // the upstream host:port
	gotConn    bool
	reused     bool
	wrote      bool  // the request headers were written: the upstream saw our context
	answered   bool  // a response byte arrived
	dialErr    error // the connect, DNS or TLS failure that ended the attempt
	// phases are the times of the connection set-up (only on a new
	// connection), the request written and the first response byte; zero
	// when a phase did not happen.
	phases [nPhases]time.Time
}

// attemptLog collects the attempts of the request being served. It lives in
// the pooled reqState with its hooks bound once, so tracing a request costs
// no allocation per hook.
type attemptLog struct {
	mu   sync.Mutex
	live bool // a request is being served; hooks outside one are ignored
	// base is when the request began; the hooks read the time as base
	// plus the monotonic clock's reading since, half the cost of
	// time.Now, which reads the wall clock too.
	base time.Time
	n    int // attempts seen, possibly more than len(list)
	list [maxAttempts]attempt
	// trace holds the hooks reverse_proxy's own trace composes with on
	// every attempt; net holds those of the dial (DNS, connect), which
	// net/http and the dialer look up under a key of their own when they
	// dial. Kept apart, the per-attempt composition copies no dial hooks
	// and so allocates nothing for them.
	trace, net httptrace.ClientTrace
	hooks      context.Context // carries trace
	netHooks   context.Context // carries net
	// stitch, when set, is told the connection of each attempt (egress
	// stitching's method process).
	stitch *stitchHop
}

func (l *attemptLog) init() {
	l.trace = httptrace.ClientTrace{
		GetConn:              l.getConn,
		GotConn:              l.gotConn,
		TLSHandshakeStart:    l.tlsStart,
		TLSHandshakeDone:     l.tlsDone,
		WroteHeaders:         l.wroteHeaders,
		WroteRequest:         l.wroteRequest,
		GotFirstResponseByte: l.gotFirstResponseByte,
	}
	l.net = httptrace.ClientTrace{
		DNSStart:     l.dnsStart,
		DNSDone:      l.dnsDone,
		ConnectStart: l.connectStart,
		ConnectDone:  l.connectDone,
	}
	l.hooks = httptrace.WithClientTrace(context.Background(), &l.trace)
	l.netHooks = httptrace.WithClientTrace(context.Background(), &l.net)
}

// begin starts recording for a request that began at base and returns, in
// c, the context that carries the hooks. c belongs to the request's record,
// not to the pooled state: a dial net/http goes on with after the request
// keeps the context.
func (l *attemptLog) begin(parent context.Context, c *tracedCtx, base time.Time) context.Context {
	l.mu.Lock()
	l.live, l.n, l.base = true, 0, base
	l.mu.Unlock()
	*c = tracedCtx{Context: parent, hooks: l.hooks, netHooks: l.netHooks}
	return c
}

// end stops recording at t and returns the attempts, in time order. Hooks
// that run later (a dial net/http goes on with after the request) change
// nothing, so the result can be read without the lock.
func (l *attemptLog) end(t time.Time) []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.live = false
	n := min(l.n, maxAttempts)
	if n > 0 && l.list[n-1].end.IsZero() {
		l.list[n-1].end = t
	}
	return l.list[:n]
}

// cur is the attempt in progress; nil outside a request or before the
// first attempt. The caller holds l.mu.
func (l *attemptLog) cur() *attempt {
	if !l.live || l.n == 0 {
		return nil
	}
	return &l.list[min(l.n, maxAttempts)-1]
}

// now is the time, read under l.mu.
func (l *attemptLog) now() time.Time { return l.base.Add(time.Since(l.base)) }

func (l *attemptLog) getConn(hostPort string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live {
		return
	}
	t := l.now()
	a := l.cur()
	if a != nil && a.addr == hostPort && !a.gotConn && a.dialErr == nil && a.phases == ([nPhases]time.Time{}) {
		// The same round trip asking again: net/http hands a request
		// for an HTTP/2 connection it holds to the HTTP/2 pool, which
		// reports GetConn once more before its GotConn.
		return
	}
	if a != nil && a.end.IsZero() {
		a.end = t
	}
	i := min(l.n, maxAttempts-1)
	l.list[i] = attempt{resend: l.n, start: t, addr: hostPort}
	l.n++
}

func (l *attemptLog) gotConn(info httptrace.GotConnInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.cur(); a != nil {
		a.gotConn, a.reused = true, info.Reused
		// A failed address before one that connected.
		a.dialErr, a.end = nil, time.Time{}
		if l.stitch != nil {
			l.stitch.gotConn(info)
		}
	}
}

// setUp records a connection set-up phase now and, when err is not nil,
// the failure that ended the attempt. A phase after the attempt got its
// connection is a dial net/http went on with for an earlier request: it is
// not this attempt's.
func (l *attemptLog) setUp(phase int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.cur()
	if a == nil || a.gotConn {
		return
	}
	t := l.now()
	// A connect to another address of the same name keeps the first
	// start: the set-up began there.
	if phase != phaseConnectStart || a.phases[phase].IsZero() {
		a.phases[phase] = t
	}
	if err != nil {
		a.dialErr, a.end = err, t
	}
}

func (l *attemptLog) dnsStart(httptrace.DNSStartInfo) { l.setUp(phaseDNSStart, nil) }

func (l *attemptLog) dnsDone(info httptrace.DNSDoneInfo) { l.setUp(phaseDNSDone, info.Err) }

func (l *attemptLog) connectStart(_, _ string) { l.setUp(phaseConnectStart, nil) }

func (l *attemptLog) connectDone(_, _ string, err error) { l.setUp(phaseConnectDone, err) }

func (l *attemptLog) tlsStart() { l.setUp(phaseTLSStart, nil) }

func (l *attemptLog) tlsDone(_ tls.ConnectionState, err error) {
	if err != nil {
		err = &tlsError{err}
	}
	l.setUp(phaseTLSDone, err)
}

func (l *attemptLog) wroteHeaders() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.cur(); a != nil {
		a.wrote = true
	}
}

func (l *attemptLog) wroteRequest(httptrace.WroteRequestInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.cur(); a != nil {
		a.phases[phaseWireSend] = l.now()
	}
}

func (l *attemptLog) gotFirstResponseByte() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.cur(); a != nil {
		a.answered = true
		a.phases[phaseWireReceive] = l.now()
	}
}

// tracedCtx is a request context that also answers the client trace's
// keys. It asks the request's own context first, so values set by Caddy
// or by handlers after us win; a ClientTrace already in the request's
// context is used instead of ours.
type tracedCtx struct {
	context.Context
	hooks, netHooks context.Context
}

// Value returns the request context's value for key, else the hooks'.
func (c *tracedCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	if v := c.hooks.Value(key); v != nil {
		return v
	}
	return c.netHooks.Value(key)
}

// tlsError marks a failed TLS handshake.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "tls handshake: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// Low-cardinality reasons an attempt failed, the error.type tag.
const (
	errTypeRefused    = "connection_refused"
	errTypeTimeout    = "timeout"
	errTypeTLS        = "tls"
	errTypeReset      = "reset"
	errTypeDNS        = "dns"
	errTypeEOF        = "eof"
	errTypeCanceled   = "canceled"
	errTypeNoResponse = "no_response" // connected and sent, then nothing: reverse_proxy retried
	errTypeRetried    = "retried"     // the upstream answered and reverse_proxy retried on its response
	errTypeOther      = "other"
)

// errorType maps a transport error to its error.type.
func errorType(err error) string {
	var (
		dns  *net.DNSError
		tlsE *tlsError
		rec  tls.RecordHeaderError
		alrt tls.AlertError
		cert *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		host x509.HostnameError
		inv  x509.CertificateInvalidError
		ne   net.Error
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errTypeRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errTypeReset
	case errors.As(err, &tlsE), errors.As(err, &rec), errors.As(err, &alrt), errors.As(err, &cert),
		errors.As(err, &ua), errors.As(err, &host), errors.As(err, &inv):
		return errTypeTLS
	case errors.As(err, &dns):
		if dns.IsTimeout {
			return errTypeTimeout
		}
		return errTypeDNS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return errTypeTimeout
	case errors.Is(err, context.Canceled):
		return errTypeCanceled
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errTypeEOF
	}
	return errTypeOther
}
