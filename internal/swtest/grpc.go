package swtest

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

// tokenKey is the metadata key (lowercase, as gRPC delivers it) the OAP reads
// the authentication token from.
const tokenKey = "authentication"

// GRPCOptions configures a GRPCCollector. The zero value is a healthy
// collector that requires no token.
type GRPCOptions struct {
	// Addr is the address to listen on. Default: 127.0.0.1:0, any free port.
	Addr string
	// Token, when set, is the token the collector requires: a call whose
	// Authentication metadata differs is refused with PermissionDenied, as
	// the OAP's authentication interceptor refuses it.
	Token string
	// Stall makes Collect stop reading: it blocks until the client gives up
	// or the collector stops, as an overloaded OAP does. The management
	// service keeps answering.
	Stall bool
	// Fail, when set, is the error every call (Collect and the management
	// calls) ends with; a status.Error chooses the gRPC code.
	Fail error
	// UnavailableProperties is how many reportInstanceProperties calls fail
	// with Unavailable before the collector accepts one, as an OAP that is
	// starting up.
	UnavailableProperties int
	// ServerOptions are passed to grpc.NewServer, e.g. grpc.Creds for TLS.
	ServerOptions []grpc.ServerOption
}

// GRPCCollector is a SkyWalking OAP gRPC receiver: it records the segments,
// tokens, instance properties and keepAlives it receives. What it recorded
// survives Stop and Restart. Its methods are safe for concurrent use.
type GRPCCollector struct {
	agentv3.UnimplementedTraceSegmentReportServiceServer
	managementv3.UnimplementedManagementServiceServer

	opts GRPCOptions
	addr string

	mu          sync.Mutex
	srv         *grpc.Server
	done        chan struct{} // closed when srv.Serve returns
	unavailable int           // reportInstanceProperties calls still to refuse
	segments    []*agentv3.SegmentObject
	tokens      []string
	props       []*managementv3.InstanceProperties
	pings       []*managementv3.InstancePingPkg
}

// NewGRPCCollector starts a collector with the given options. It is stopped
// when the test ends.
func NewGRPCCollector(t testing.TB, opts GRPCOptions) *GRPCCollector {
	t.Helper()
	c := &GRPCCollector{opts: opts, addr: opts.Addr, unavailable: opts.UnavailableProperties}
	if c.addr == "" {
		c.addr = "127.0.0.1:0"
	}
	c.start(t)
	t.Cleanup(c.Stop)
	return c
}

// start listens on c.addr and serves; c.addr becomes the bound address.
func (c *GRPCCollector) start(t testing.TB) {
	t.Helper()
	lis, err := net.Listen("tcp", c.addr)
	if err != nil {
		t.Fatalf("swtest: listen on %s: %v", c.addr, err)
	}
	opts := append(slices.Clone(c.opts.ServerOptions),
		grpc.ChainUnaryInterceptor(c.unaryAuth), grpc.ChainStreamInterceptor(c.streamAuth))
	srv := grpc.NewServer(opts...)
	agentv3.RegisterTraceSegmentReportServiceServer(srv, c)
	managementv3.RegisterManagementServiceServer(srv, c)
	done := make(chan struct{})
	c.mu.Lock()
	c.addr = lis.Addr().String()
	c.srv, c.done = srv, done
	c.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
}

// Addr returns the host:port the collector listens on, for a
// grpc://host:port exporter address.
func (c *GRPCCollector) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Stop stops the server at once, closing every connection and ending stalled
// streams. Calling it on a stopped collector does nothing.
func (c *GRPCCollector) Stop() {
	c.mu.Lock()
	srv, done := c.srv, c.done
	c.srv, c.done = nil, nil
	c.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Stop()
	<-done
}

// Restart serves again on the same address after Stop, as an OAP that comes
// back. It fails the test if the collector is running or the port was taken
// meanwhile.
func (c *GRPCCollector) Restart(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	running := c.srv != nil
	c.mu.Unlock()
	if running {
		t.Fatal("swtest: Restart of a running collector")
	}
	c.start(t)
}

// Segments returns the segments received so far, in arrival order.
func (c *GRPCCollector) Segments() []*agentv3.SegmentObject {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.segments)
}

// Tokens returns the Authentication metadata of every call received so far
// ("" for a call without one), refused calls included.
func (c *GRPCCollector) Tokens() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.tokens)
}

// Properties returns the instance properties accepted so far.
func (c *GRPCCollector) Properties() []*managementv3.InstanceProperties {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.props)
}

// KeepAlives returns the keepAlive pings accepted so far.
func (c *GRPCCollector) KeepAlives() []*managementv3.InstancePingPkg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pings)
}

// WaitSegments waits until the collector holds at least n segments and
// returns them, failing the test at the deadline.
func (c *GRPCCollector) WaitSegments(t testing.TB, n int, timeout time.Duration) []*agentv3.SegmentObject {
	t.Helper()
	var segs []*agentv3.SegmentObject
	wait(t, timeout, func() bool {
		segs = c.Segments()
		return len(segs) >= n
	}, func() string { return strconv.Itoa(len(segs)) + " segments, want " + strconv.Itoa(n) })
	return segs
}

// WaitKeepAlives waits until the collector holds at least n keepAlives and
// returns them, failing the test at the deadline.
func (c *GRPCCollector) WaitKeepAlives(t testing.TB, n int, timeout time.Duration) []*managementv3.InstancePingPkg {
	t.Helper()
	var pings []*managementv3.InstancePingPkg
	wait(t, timeout, func() bool {
		pings = c.KeepAlives()
		return len(pings) >= n
	}, func() string { return strconv.Itoa(len(pings)) + " keepAlives, want " + strconv.Itoa(n) })
	return pings
}

// admit records the call's token and refuses the call when the token is
// wrong or the collector is set to fail.
func (c *GRPCCollector) admit(ctx context.Context) error {
	var tok string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(tokenKey); len(v) > 0 {
			tok = v[0]
		}
	}
	c.mu.Lock()
	c.tokens = append(c.tokens, tok)
	c.mu.Unlock()
	if c.opts.Token != "" && tok != c.opts.Token {
		return status.Error(codes.PermissionDenied, "token is not valid")
	}
	return c.opts.Fail
}

func (c *GRPCCollector) unaryAuth(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if err := c.admit(ctx); err != nil {
		return nil, err
	}
	return next(ctx, req)
}

func (c *GRPCCollector) streamAuth(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	if err := c.admit(ss.Context()); err != nil {
		return err
	}
	return next(srv, ss)
}

// Collect implements TraceSegmentReportServiceServer: it records each
// segment of the stream and answers with empty Commands at its end.
func (c *GRPCCollector) Collect(stream agentv3.TraceSegmentReportService_CollectServer) error {
	if c.opts.Stall {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	for {
		seg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&commonv3.Commands{})
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.segments = append(c.segments, seg)
		c.mu.Unlock()
	}
}

// ReportInstanceProperties implements ManagementServiceServer.
func (c *GRPCCollector) ReportInstanceProperties(_ context.Context, p *managementv3.InstanceProperties) (*commonv3.Commands, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unavailable > 0 {
		c.unavailable--
		return nil, status.Error(codes.Unavailable, "starting up")
	}
	c.props = append(c.props, p)
	return &commonv3.Commands{}, nil
}

// KeepAlive implements ManagementServiceServer.
func (c *GRPCCollector) KeepAlive(_ context.Context, p *managementv3.InstancePingPkg) (*commonv3.Commands, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pings = append(c.pings, p)
	return &commonv3.Commands{}, nil
}
