package otlp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
)

// exportMethod is the OTLP/gRPC trace service's one method.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

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

// grpcSender calls TraceService/Export over one ClientConn, which connects
// lazily and reconnects by itself. The request is the bytes the Encoder
// wrote, handed to gRPC as they are by rawCodec: nothing is marshalled
// twice.
type grpcSender struct {
	conn *grpc.ClientConn
	md   metadata.MD
	opts []grpc.CallOption
	bufs bufPool
}

func newGRPCSender(addr string, tc *tls.Config, cfg Config) (*grpcSender, error) {
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(connectBackoff),
		grpc.WithUserAgent(httpexport.UserAgent(cfg.Version)),
	}
	if !cfg.UseEnvProxy {
		opts = append(opts, grpc.WithNoProxy())
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp url: %w", err)
	}
	// b3: 0, as over HTTP: proxies between here and the collector do
	// not trace the tracer.
	md := metadata.Pairs("b3", "0")
	for k, v := range cfg.Headers {
		md.Set(k, v)
	}
	g := &grpcSender{conn: conn, md: md, opts: []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}}
	if cfg.Gzip {
		g.opts = append(g.opts, grpc.UseCompressor(gzip.Name))
	}
	return g, nil
}

// export encodes the batch into a buffer gRPC owns until it has written
// it, and calls Export.
func (g *grpcSender) export(ctx context.Context, enc *Encoder, batch []*exporter.Record) error {
	buf := g.bufs.get()
	*buf = enc.AppendRequest((*buf)[:0], batch)
	req := &rawMessage{buf: buf, pool: &g.bufs}
	var resp rawReply
	err := g.conn.Invoke(metadata.NewOutgoingContext(ctx, g.md), exportMethod, req, &resp, g.opts...)
	if !req.handedOver {
		// gRPC failed before encoding the request: the buffer is ours.
		g.bufs.Put(buf)
	}
	if err != nil {
		return classify(ctx, err)
	}
	return partialProto(resp.b)
}

func (g *grpcSender) close() error { return g.conn.Close() }

// classify maps a failed call to the exporter's error classes, as the
// OTLP specification says: CANCELLED, DEADLINE_EXCEEDED, ABORTED,
// OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable;
// RESOURCE_EXHAUSTED only when the collector sent RetryInfo (it expects to
// recover); anything else is permanent. RetryInfo's delay, capped at
// httpexport.MaxRetryAfter, is the wait before the retry.
func classify(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return exporter.Retryable(fmt.Errorf("otlp export: %w", ctxErr), 0)
	}
	st := status.Convert(err)
	delay, throttled := retryDelay(st)
	err = fmt.Errorf("otlp collector answered %s: %s", st.Code(), st.Message())
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return exporter.Retryable(err, delay)
	case codes.ResourceExhausted:
		if throttled {
			return exporter.Retryable(err, delay)
		}
	}
	return err
}

// retryDelay returns the delay of the status's RetryInfo, and whether it
// had one.
func retryDelay(st *status.Status) (time.Duration, bool) {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay := ri.GetRetryDelay().AsDuration()
			return min(max(delay, 0), httpexport.MaxRetryAfter), true
		}
	}
	return 0, false
}

// checkMetadata validates headers as gRPC metadata: lowercase-able ASCII
// keys of [0-9a-z-_.], not grpc- (reserved), and printable ASCII values.
func checkMetadata(h map[string]string) error {
	for k, v := range h {
		lk := strings.ToLower(k)
		if lk == "" || strings.HasPrefix(lk, "grpc-") || strings.HasSuffix(lk, "-bin") || strings.ContainsFunc(lk, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) {
			return fmt.Errorf("otlp header name %q is not valid gRPC metadata (letters, digits, - _ . and not grpc-* or *-bin)", k)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return fmt.Errorf("otlp header %q has a value that is not printable ASCII", k)
		}
	}
	return nil
}

// rawMessage is an encoded ExportTraceServiceRequest. rawCodec hands its
// buffer to gRPC, which returns it to pool once written.
type rawMessage struct {
	buf        *[]byte
	pool       *bufPool
	handedOver bool
}

// rawReply holds an ExportTraceServiceResponse's bytes.
type rawReply struct{ b []byte }

// rawCodec passes encoded messages through: the Encoder has already
// written the protobuf wire format.
type rawCodec struct{}

var errRawCodec = errors.New("otlp: raw codec got a message of another type")

// Marshal hands the message's buffer to gRPC.
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, errRawCodec
	}
	m.handedOver = true
	return mem.BufferSlice{mem.NewBuffer(m.buf, m.pool)}, nil
}

// Unmarshal copies the response's bytes.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*rawReply)
	if !ok {
		return errRawCodec
	}
	for _, b := range data {
		r.b = append(r.b, b.ReadOnlyData()...)
	}
	return nil
}

// Name is the content-subtype: application/grpc+proto, which the bytes
// are.
func (rawCodec) Name() string { return "proto" }

// bufPool keeps request buffers gRPC has released for the next export. It
// is a mem.BufferPool; gRPC may release a buffer from its own goroutines.
type bufPool struct {
	mu   sync.Mutex
	free []*[]byte
}

// minBuf is the smallest buffer handed out: gRPC returns only buffers
// above its pooling threshold (1 KiB).
const minBuf = 16 << 10

func (p *bufPool) get() *[]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b
	}
	b := make([]byte, 0, minBuf)
	return &b
}

// Get returns a buffer of length n, for mem.BufferPool.
func (p *bufPool) Get(n int) *[]byte {
	b := p.get()
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return b
}

// Put keeps b for reuse unless it grew past maxKeep or two are kept.
func (p *bufPool) Put(b *[]byte) {
	if cap(*b) > maxKeep {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < 2 {
		p.free = append(p.free, b)
	}
}
