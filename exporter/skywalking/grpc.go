package skywalking

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

// authKey is the metadata key the OAP reads the token from.
const authKey = "Authentication"

// connectBackoff paces reconnection to a collector that is down: grpc
// reconnects by itself, and a short maximum means the connection is back
// soon after the collector is.
var connectBackoff = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  250 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   5 * time.Second,
	},
	MinConnectTimeout: 5 * time.Second,
}

// grpcTransport speaks to the OAP's gRPC receiver over one ClientConn, which
// connects lazily and reconnects by itself.
type grpcTransport struct {
	conn  *grpc.ClientConn
	trace agentv3.TraceSegmentReportServiceClient
	mgmt  managementv3.ManagementServiceClient
	token string
}

func newGRPC(target string, useTLS bool, tc *TLSConfig, token, version string, useEnvProxy bool) (*grpcTransport, error) {
	creds := insecure.NewCredentials()
	if useTLS {
		cfg, err := tlsConfig(tc)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	ua := "tracingproxy"
	if version != "" {
		ua += "/" + version
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(connectBackoff),
		grpc.WithUserAgent(ua),
	}
	if !useEnvProxy {
		opts = append(opts, grpc.WithNoProxy())
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("skywalking url: %w", err)
	}
	return &grpcTransport{
		conn:  conn,
		trace: agentv3.NewTraceSegmentReportServiceClient(conn),
		mgmt:  managementv3.NewManagementServiceClient(conn),
		token: token,
	}, nil
}

// outgoing adds the token to the call's metadata.
func (g *grpcTransport) outgoing(ctx context.Context) context.Context {
	if g.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, authKey, g.token)
}

// collect sends the segments on one collect stream and waits for the
// collector's answer. The stream is bound to ctx, so a collector that stops
// reading cannot hold it past ctx's deadline.
func (g *grpcTransport) collect(ctx context.Context, segs []*agentv3.SegmentObject) error {
	stream, err := g.trace.Collect(g.outgoing(ctx))
	if err != nil {
		return g.error(ctx, "collect", err)
	}
	for _, s := range segs {
		if err := stream.Send(s); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream; its status comes from
				// receiving.
				_, err = stream.CloseAndRecv()
			}
			return g.error(ctx, "collect", err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return g.error(ctx, "collect", err)
	}
	return nil
}

func (g *grpcTransport) reportProperties(ctx context.Context, p *managementv3.InstanceProperties) error {
	if _, err := g.mgmt.ReportInstanceProperties(g.outgoing(ctx), p); err != nil {
		return g.error(ctx, "reportInstanceProperties", err)
	}
	return nil
}

func (g *grpcTransport) keepAlive(ctx context.Context, p *managementv3.InstancePingPkg) error {
	if _, err := g.mgmt.KeepAlive(g.outgoing(ctx), p); err != nil {
		return g.error(ctx, "keepAlive", err)
	}
	return nil
}

func (g *grpcTransport) close() error { return g.conn.Close() }

// error maps a failed call to the exporter's error classes.
func (g *grpcTransport) error(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxError(op, ctxErr)
	}
	// gRPC's own deadline timer can fire a moment before the context's.
	if d, ok := ctx.Deadline(); ok && status.Code(err) == codes.DeadlineExceeded && !time.Now().Before(d) {
		return ctxError(op, context.DeadlineExceeded)
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return authError(g.token, err)
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
		codes.Internal, codes.Unknown, codes.Canceled:
		return exporter.Retryable(fmt.Errorf("skywalking %s: %w", op, err), 0)
	default:
		return fmt.Errorf("skywalking %s: %w", op, err)
	}
}
