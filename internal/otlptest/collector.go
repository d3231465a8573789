package otlptest

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/testutil"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // the gzip decompressor
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Mode is how a Collector answers.
type Mode int

// Modes of a Collector.
const (
	// ModeOK decodes strictly, keeps the spans and answers success (a 400
	// or INVALID_ARGUMENT for a request it cannot accept).
	ModeOK Mode = iota
	// ModeRefuse closes the listener and every connection: connections
	// are refused until another mode reopens the same port.
	ModeRefuse
	// ModeStatus reads the request and answers Fault.Status with
	// Fault.RetryAfter over HTTP, Fault.Code with RetryInfo of
	// Fault.RetryDelay (when RetryInfo is set) over gRPC.
	ModeStatus
	// ModeHang reads the request and never answers.
	ModeHang
	// ModeDelay answers like ModeOK after Fault.Delay; the spans count as
	// received only if the client still waits then.
	ModeDelay
	// ModePartial keeps all but the last Fault.Reject spans of each
	// request and answers a partial success naming them.
	ModePartial
)

var modeNames = [...]string{"ok", "refuse", "status", "hang", "delay", "partial"}

// String returns the mode's name.
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return "mode(" + strconv.Itoa(int(m)) + ")"
	}
	return modeNames[m]
}

// Fault is a misbehaviour of a Collector.
type Fault struct {
	Mode       Mode
	Status     int           // ModeStatus over HTTP
	RetryAfter string        // ModeStatus over HTTP: the Retry-After sent, if any
	Code       codes.Code    // ModeStatus over gRPC
	RetryInfo  bool          // ModeStatus over gRPC: send RetryInfo with RetryDelay
	RetryDelay time.Duration // ModeStatus over gRPC
	Delay      time.Duration // ModeDelay
	Reject     int           // ModePartial: spans rejected per request
}

// Attempt is one request a Collector received.
type Attempt struct {
	Start, End time.Time // when it arrived and was done with
	Mode       Mode      // the mode it met
	Status     int       // HTTP status answered, 0 when none was
	Code       codes.Code
	Spans      int  // spans in the request, when it decoded
	Accepted   bool // its spans count as received
}

// Span is an accepted span with its resource and scope.
type Span struct {
	Resource *resourcepb.Resource
	Scope    *commonpb.InstrumentationScope
	*tracepb.Span
}

// Collector is a strict OTLP receiver over HTTP or gRPC on a local port.
// Its methods are safe for concurrent use.
type Collector struct {
	grpc bool
	opts []grpc.ServerOption
	addr string

	mu       sync.Mutex
	fault    Fault
	up       bool
	stop     func()        // closes the server and its connections
	served   chan struct{} // closed when the server's Serve returns
	accepted []*coltracepb.ExportTraceServiceRequest
	rejected []error
	headers  []http.Header
	attempts []Attempt
	payloads []Payload
	release  chan struct{} // closed by Close to free hung handlers
	flap     chan struct{}
	flapDone chan struct{}
	handlers sync.WaitGroup
	closed   bool
}

// NewHTTP starts an OTLP/HTTP collector in ModeOK on a free local port; it
// is closed when the test ends.
func NewHTTP(t testing.TB) *Collector { return start(t, false, nil) }

// NewGRPC starts an OTLP/gRPC collector in ModeOK on a free local port,
// with the server options given (grpc.Creds for TLS); it is closed when
// the test ends.
func NewGRPC(t testing.TB, opts ...grpc.ServerOption) *Collector { return start(t, true, opts) }

func start(t testing.TB, overGRPC bool, opts []grpc.ServerOption) *Collector {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &Collector{grpc: overGRPC, opts: opts, addr: l.Addr().String(), release: make(chan struct{})}
	c.mu.Lock()
	c.serveLocked(l)
	c.mu.Unlock()
	t.Cleanup(c.Close)
	return c
}

// Addr returns the host:port the collector listens on.
func (c *Collector) Addr() string { return c.addr }

// URL returns the exporter URL: http://host:port/v1/traces, or
// grpc://host:port.
func (c *Collector) URL() string {
	if c.grpc {
		return "grpc://" + c.addr
	}
	return "http://" + c.addr + "/v1/traces"
}

func (c *Collector) serveLocked(l net.Listener) {
	served := make(chan struct{})
	c.served, c.up = served, true
	if c.grpc {
		srv := grpc.NewServer(append([]grpc.ServerOption{grpc.StatsHandler(payloadStats{c})}, c.opts...)...)
		coltracepb.RegisterTraceServiceServer(srv, grpcService{c: c})
		c.stop = srv.Stop
		go func() {
			defer close(served)
			_ = srv.Serve(l)
		}()
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(c.serveHTTP)}
	c.stop = func() { _ = srv.Close() }
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
}

// closeServerLocked stops the server and waits for Serve to return, so
// the listening socket is closed and a new connection refused.
func (c *Collector) closeServerLocked() {
	c.stop()
	<-c.served
	c.up = false
}

// Set switches to fault, ending any flapping. Leaving ModeRefuse listens
// again on the same port.
func (c *Collector) Set(t testing.TB, fault Fault) {
	t.Helper()
	c.stopFlap()
	if err := c.apply(fault); err != nil {
		t.Fatal(err)
	}
}

// Flap alternates between down and ModeOK, each for period, until the
// next Set or Close. It starts with down.
func (c *Collector) Flap(t testing.TB, period time.Duration, down Fault) {
	t.Helper()
	c.stopFlap()
	if err := c.apply(down); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	c.mu.Lock()
	c.flap, c.flapDone = stop, done
	c.mu.Unlock()
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
			if c.apply(next) != nil {
				return // the port was taken while down: stay down
			}
		}
	}()
}

func (c *Collector) stopFlap() {
	c.mu.Lock()
	stop, done := c.flap, c.flapDone
	c.flap, c.flapDone = nil, nil
	c.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

func (c *Collector) apply(fault Fault) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.fault = fault
	switch {
	case fault.Mode == ModeRefuse && c.up:
		c.closeServerLocked()
	case fault.Mode != ModeRefuse && !c.up:
		l, err := net.Listen("tcp", c.addr)
		if err != nil {
			return err
		}
		c.serveLocked(l)
	}
	return nil
}

// begin registers a request being handled and returns the fault it meets;
// ok is false once the collector is closed.
func (c *Collector) begin() (Fault, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Fault{}, false
	}
	c.handlers.Add(1)
	return c.fault, true
}

// outcome is what one request comes to.
type outcome struct {
	keep     bool  // keep the request's spans
	reject   int   // ModePartial: the spans rejected
	wait     error // the client went away (context error) while waiting
	answered bool
}

// decide applies the fault to a decoded request once read: it waits for
// ModeHang and ModeDelay, and says what to answer.
func (c *Collector) decide(ctx context.Context, fault Fault) outcome {
	switch fault.Mode {
	case ModeStatus:
		return outcome{answered: true}
	case ModeHang:
		select {
		case <-ctx.Done():
		case <-c.release:
		}
		return outcome{wait: context.Canceled}
	case ModeDelay:
		timer := time.NewTimer(fault.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return outcome{wait: ctx.Err()}
		case <-c.release:
			return outcome{wait: context.Canceled}
		}
	case ModePartial:
		return outcome{keep: true, reject: fault.Reject, answered: true}
	}
	return outcome{keep: true, answered: true}
}

// commit keeps req, or the rejection err, and the attempt; it reports
// whether the spans count as received.
func (c *Collector) commit(ctx context.Context, a *Attempt, req *coltracepb.ExportTraceServiceRequest, err error, hdr http.Header, o outcome) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.headers = append(c.headers, hdr)
	if err != nil {
		c.rejected = append(c.rejected, err)
		return false
	}
	if !o.keep || ctx.Err() != nil || pastDeadline(ctx) {
		return false
	}
	if o.reject > 0 {
		dropLast(req, o.reject)
	}
	c.accepted = append(c.accepted, req)
	a.Accepted = true
	return true
}

// pastDeadline reports whether the client's deadline (gRPC sends it as
// grpc-timeout) has passed: then it has given up, even if the context's own
// timer has not run yet on a loaded machine.
func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// dropLast removes the last n spans of the request.
func dropLast(req *coltracepb.ExportTraceServiceRequest, n int) {
	for i := len(req.ResourceSpans) - 1; i >= 0 && n > 0; i-- {
		rs := req.ResourceSpans[i]
		for j := len(rs.ScopeSpans) - 1; j >= 0 && n > 0; j-- {
			ss := rs.ScopeSpans[j]
			k := max(len(ss.Spans)-n, 0)
			n -= len(ss.Spans) - k
			ss.Spans = ss.Spans[:k]
		}
	}
}

func (c *Collector) end(a Attempt) {
	a.End = time.Now()
	c.mu.Lock()
	c.attempts = append(c.attempts, a)
	c.mu.Unlock()
	c.handlers.Done()
}

func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n
}

func (c *Collector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	fault, ok := c.begin()
	if !ok {
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	a := Attempt{Start: time.Now(), Mode: fault.Mode}
	defer func() { c.end(a) }()
	req, ct, err := readHTTP(r)
	a.Spans = countSpans(req)
	if fault.Mode == ModeStatus {
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		a.Status = fault.Status
		http.Error(w, "fault injected", fault.Status)
		return
	}
	o := c.decide(r.Context(), fault)
	if o.wait != nil {
		return
	}
	// A late answer goes only to a client still waiting for it.
	ctx := r.Context()
	var late *testutil.LateAnswer
	if fault.Mode == ModeDelay && ctx.Err() == nil {
		la, waiting, ok := testutil.TakeOverIfWaiting(w)
		if ok && !waiting {
			return
		}
		if la != nil {
			// Taking the connection over ends the request's context;
			// the client is known to wait.
			late, ctx = la, context.WithoutCancel(ctx)
		}
	}
	if !c.commit(ctx, &a, req, err, r.Header.Clone(), o) {
		if err != nil {
			a.Status = http.StatusBadRequest
			if late != nil {
				late.Write(a.Status, "text/plain; charset=utf-8", []byte(err.Error()+"\n"))
			} else {
				http.Error(w, err.Error(), http.StatusBadRequest)
			}
		}
		return
	}
	resp := &coltracepb.ExportTraceServiceResponse{}
	if o.reject > 0 {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(o.reject), ErrorMessage: "rejected by the test"}
	}
	var out []byte
	if ct == "application/json" {
		out, _ = protojson.Marshal(resp)
	} else {
		out, _ = proto.Marshal(resp)
	}
	a.Status = http.StatusOK
	if late != nil {
		late.Write(a.Status, ct, out)
		return
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(out)
}

// readHTTP reads and strictly decodes an OTLP/HTTP request, returning its
// content type.
func readHTTP(r *http.Request) (*coltracepb.ExportTraceServiceRequest, string, error) {
	ct := r.Header.Get("Content-Type")
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, ct, err
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	switch {
	case err != nil:
		return nil, ct, err
	case r.Method != http.MethodPost || r.URL.Path != "/v1/traces":
		return nil, ct, errors.New("not POST /v1/traces: " + r.Method + " " + r.URL.Path)
	case ct == "application/x-protobuf":
		req, err := DecodeProto(b)
		return req, ct, err
	case ct == "application/json":
		req, err := DecodeJSON(b)
		return req, ct, err
	}
	return nil, ct, errors.New("content type " + strconv.Quote(ct) + " is neither application/x-protobuf nor application/json")
}

// grpcService is the collector's TraceService.
type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	c *Collector
}

// Export receives one request.
func (g grpcService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c := g.c
	fault, ok := c.begin()
	if !ok {
		return nil, status.Error(codes.Unavailable, "closed")
	}
	a := Attempt{Start: time.Now(), Mode: fault.Mode, Spans: countSpans(req)}
	defer func() { c.end(a) }()
	if fault.Mode == ModeStatus {
		a.Code = fault.Code
		st := status.New(fault.Code, "fault injected")
		if fault.RetryInfo {
			st, _ = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(fault.RetryDelay)})
		}
		return nil, st.Err()
	}
	err := Check(req)
	o := c.decide(ctx, fault)
	if o.wait != nil {
		a.Code = codes.Canceled
		return nil, status.FromContextError(o.wait).Err()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if !c.commit(ctx, &a, req, err, http.Header(md), o) {
		if err != nil {
			a.Code = codes.InvalidArgument
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	resp := &coltracepb.ExportTraceServiceResponse{}
	if o.reject > 0 {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(o.reject), ErrorMessage: "rejected by the test"}
	}
	return resp, nil
}

// Payload is the size of one gRPC request message as received.
type Payload struct {
	Length     int // the message's size, decompressed
	WireLength int // its size on the wire, compressed when it was
}

// Payloads returns the sizes of the gRPC request messages received so far.
func (c *Collector) Payloads() []Payload {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Payload(nil), c.payloads...)
}

// payloadStats records the size of every gRPC request message.
type payloadStats struct{ c *Collector }

func (payloadStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (payloadStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (payloadStats) HandleConn(context.Context, stats.ConnStats) {}
func (p payloadStats) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		p.c.mu.Lock()
		p.c.payloads = append(p.c.payloads, Payload{Length: in.Length, WireLength: in.CompressedLength})
		p.c.mu.Unlock()
	}
}

// Requests returns the requests accepted and the rejections so far.
func (c *Collector) Requests() ([]*coltracepb.ExportTraceServiceRequest, []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*coltracepb.ExportTraceServiceRequest(nil), c.accepted...), append([]error(nil), c.rejected...)
}

// Headers returns the headers (gRPC: the metadata) of every request that
// was read, in order.
func (c *Collector) Headers() []http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]http.Header(nil), c.headers...)
}

// Spans returns every accepted span, in arrival order.
func (c *Collector) Spans() []Span {
	reqs, _ := c.Requests()
	var out []Span
	for _, req := range reqs {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out = append(out, Span{Resource: rs.Resource, Scope: ss.Scope, Span: s})
				}
			}
		}
	}
	return out
}

// Attempts returns every request received so far, in the order they were
// done with.
func (c *Collector) Attempts() []Attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Attempt(nil), c.attempts...)
}

// WaitSpans polls until at least n spans were accepted, failing the test
// after timeout or on a rejected request.
func (c *Collector) WaitSpans(t testing.TB, n int, timeout time.Duration) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, rejected := c.Requests(); len(rejected) > 0 {
			t.Fatalf("otlptest: the collector rejected a request: %v", rejected[0])
		}
		if spans := c.Spans(); len(spans) >= n {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("otlptest: %d spans after %s, want %d", len(c.Spans()), timeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close stops flapping, frees hung requests, stops the server and waits
// for its handlers.
func (c *Collector) Close() {
	c.stopFlap()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.release)
	if c.up {
		c.closeServerLocked()
	}
	c.mu.Unlock()
	c.handlers.Wait()
}
