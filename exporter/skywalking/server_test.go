package skywalking

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	commonv3 "skywalking.apache.org/repo/goapi/collect/common/v3"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"
)

// collector is a SkyWalking OAP gRPC receiver built on the official stubs:
// it records the segments, tokens, instance properties and keepAlives it
// receives.
type collector struct {
	agentv3.UnimplementedTraceSegmentReportServiceServer
	managementv3.UnimplementedManagementServiceServer

	// fail, when set, is the error Collect and the management calls end
	// with.
	fail error
	// stall makes Collect stop reading and block until the client gives up.
	stall bool

	mu       sync.Mutex
	segments []*agentv3.SegmentObject
	tokens   []string
	props    []*managementv3.InstanceProperties
	pings    []*managementv3.InstancePingPkg
}

func token(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authentication"); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Collect implements TraceSegmentReportServiceServer.
func (c *collector) Collect(stream agentv3.TraceSegmentReportService_CollectServer) error {
	c.mu.Lock()
	c.tokens = append(c.tokens, token(stream.Context()))
	c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	if c.stall {
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
func (c *collector) ReportInstanceProperties(ctx context.Context, p *managementv3.InstanceProperties) (*commonv3.Commands, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens = append(c.tokens, token(ctx))
	if c.fail != nil {
		return nil, c.fail
	}
	c.props = append(c.props, p)
	return &commonv3.Commands{}, nil
}

// KeepAlive implements ManagementServiceServer.
func (c *collector) KeepAlive(ctx context.Context, p *managementv3.InstancePingPkg) (*commonv3.Commands, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens = append(c.tokens, token(ctx))
	if c.fail != nil {
		return nil, c.fail
	}
	c.pings = append(c.pings, p)
	return &commonv3.Commands{}, nil
}

// received returns copies of what the collector recorded.
func (c *collector) received() (segs []*agentv3.SegmentObject, tokens []string, props []*managementv3.InstanceProperties, pings []*managementv3.InstancePingPkg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(segs, c.segments...), append(tokens, c.tokens...), append(props, c.props...), append(pings, c.pings...)
}

// serveGRPC starts c on addr ("127.0.0.1:0" for any port) and returns the
// address and a function that stops the server.
func serveGRPC(t testing.TB, c *collector, addr string, opts ...grpc.ServerOption) (string, func()) {
	t.Helper()
	return serveGRPCWith(t, c, c, addr, opts...)
}

// serveGRPCWith is serveGRPC with separate trace and management services.
func serveGRPCWith(t testing.TB, trace agentv3.TraceSegmentReportServiceServer, mgmt managementv3.ManagementServiceServer,
	addr string, opts ...grpc.ServerOption) (string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer(opts...)
	agentv3.RegisterTraceSegmentReportServiceServer(srv, trace)
	managementv3.RegisterManagementServiceServer(srv, mgmt)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// httpCollector is a SkyWalking OAP HTTP receiver that decodes bodies
// strictly: a JSON array of protobuf-JSON segments for /v3/segments, one
// protobuf-JSON message for the management endpoints; unknown fields,
// wrong types and a non-array body are errors.
type httpCollector struct {
	// status, when non-zero, is the status /v3/segments answers, with
	// retryAfter as its Retry-After header.
	status     int
	retryAfter string

	mu       sync.Mutex
	segments []*agentv3.SegmentObject
	props    []*managementv3.InstanceProperties
	pings    []*managementv3.InstancePingPkg
	headers  []http.Header
	errs     []error
}

var strict = protojson.UnmarshalOptions{DiscardUnknown: false}

func (c *httpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.headers = append(c.headers, r.Header.Clone())
	fail := func(err error) {
		c.errs = append(c.errs, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err))
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
	switch {
	case err != nil:
		fail(err)
		return
	case r.Method != http.MethodPost:
		fail(errors.New("method is not POST"))
		return
	case r.Header.Get("Content-Type") != "application/json":
		fail(fmt.Errorf("content-type %q", r.Header.Get("Content-Type")))
		return
	}
	switch r.URL.Path {
	case pathSegments:
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			fail(fmt.Errorf("not a JSON array: %w", err))
			return
		}
		segs := make([]*agentv3.SegmentObject, 0, len(raw))
		for _, m := range raw {
			seg := &agentv3.SegmentObject{}
			if err := strict.Unmarshal(m, seg); err != nil {
				fail(err)
				return
			}
			segs = append(segs, seg)
		}
		if c.status != 0 {
			if c.retryAfter != "" {
				w.Header().Set("Retry-After", c.retryAfter)
			}
			http.Error(w, "collector says no", c.status)
			return
		}
		c.segments = append(c.segments, segs...)
	case pathProperties:
		p := &managementv3.InstanceProperties{}
		if err := strict.Unmarshal(body, p); err != nil {
			fail(err)
			return
		}
		c.props = append(c.props, p)
	case pathKeepAlive:
		p := &managementv3.InstancePingPkg{}
		if err := strict.Unmarshal(body, p); err != nil {
			fail(err)
			return
		}
		c.pings = append(c.pings, p)
	default:
		http.NotFound(w, r)
		return
	}
	_, _ = io.WriteString(w, "{}")
}

// received returns copies of what the collector recorded.
func (c *httpCollector) received() (segs []*agentv3.SegmentObject, props []*managementv3.InstanceProperties, pings []*managementv3.InstancePingPkg, hdrs []http.Header, errs []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(segs, c.segments...), append(props, c.props...), append(pings, c.pings...),
		append(hdrs, c.headers...), append(errs, c.errs...)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// equalProto fails the test with both messages in JSON when they differ.
func equalProto(t testing.TB, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		m := protojson.MarshalOptions{Multiline: true}
		t.Errorf("%s differs\n got: %s\nwant: %s", what, m.Format(got), m.Format(want))
	}
}

// certFiles is a self-signed certificate written as PEM files.
type certFiles struct {
	cert, key string
	pair      tls.Certificate
	pool      *x509.CertPool
}

// selfSigned generates a self-signed certificate for the DNS name and
// writes it and its key into a temporary directory.
func selfSigned(t testing.TB, dnsName string) certFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: dnsName},
		DNSNames:              []string{dnsName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := certFiles{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(f.cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if f.pair, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	f.pool = x509.NewCertPool()
	f.pool.AppendCertsFromPEM(certPEM)
	return f
}
