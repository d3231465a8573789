package skywalking

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/swtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// tlsCase is one client TLS setup against a collector whose certificate is
// valid for "collector.test" only (not for 127.0.0.1, the address dialled).
type tlsCase struct {
	name string
	// scheme is the gRPC scheme (grpc or grpcs); HTTP uses https.
	scheme string
	// mutual makes the collector require a client certificate.
	mutual bool
	tls    func(server, client certFiles) *TLSConfig
	ok     bool
}

var tlsCases = []tlsCase{
	{"ca and server name", "grpcs", false, func(s, _ certFiles) *TLSConfig {
		return &TLSConfig{CA: s.cert, ServerName: "collector.test"}
	}, true},
	{"tls options on grpc://", "grpc", false, func(s, _ certFiles) *TLSConfig {
		return &TLSConfig{CA: s.cert, ServerName: "collector.test"}
	}, true},
	{"mutual tls", "grpcs", true, func(s, c certFiles) *TLSConfig {
		return &TLSConfig{CA: s.cert, ServerName: "collector.test", Cert: c.cert, Key: c.key}
	}, true},
	{"insecure skip verify", "grpcs", false, func(certFiles, certFiles) *TLSConfig {
		return &TLSConfig{InsecureSkipVerify: true}
	}, true},
	{"name mismatch", "grpcs", false, func(s, _ certFiles) *TLSConfig {
		return &TLSConfig{CA: s.cert}
	}, false},
	{"unknown authority", "grpcs", false, func(certFiles, certFiles) *TLSConfig {
		return &TLSConfig{ServerName: "collector.test"}
	}, false},
	{"client certificate missing", "grpcs", true, func(s, _ certFiles) *TLSConfig {
		return &TLSConfig{CA: s.cert, ServerName: "collector.test"}
	}, false},
}

// serverTLS is the collector's TLS configuration.
func serverTLS(server, client certFiles, mutual bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{server.pair}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = client.pool
	}
	return cfg
}

// checkTLSExport exports one record and checks the outcome: success, or a
// retryable failure (a handshake may fail because of the collector's side).
func checkTLSExport(t *testing.T, e *Exporter, ok bool) {
	t.Helper()
	err := export(e, 5*time.Second, testRecord())
	if ok && err != nil {
		t.Fatalf("Export: %v", err)
	}
	if !ok {
		if err == nil {
			t.Fatal("Export succeeded, want a TLS failure")
		}
		if retry, _ := exporter.IsRetryable(err); !retry {
			t.Errorf("Export error = %v, want retryable", err)
		}
	}
}

func TestGRPCTLS(t *testing.T) {
	server, client := selfSigned(t, "collector.test"), selfSigned(t, "client.test")
	for _, tt := range tlsCases {
		t.Run(tt.name, func(t *testing.T) {
			c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{
				ServerOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS(server, client, tt.mutual)))},
			})
			e := newExporter(t, Config{Address: tt.scheme + "://" + c.Addr(), TLS: tt.tls(server, client), KeepAlive: -1})
			checkTLSExport(t, e, tt.ok)
			if segs := c.Segments(); tt.ok && len(segs) != 1 {
				t.Errorf("collector received %d segments, want 1", len(segs))
			}
		})
	}
}

func TestGRPCPlaintextToTLSCollector(t *testing.T) {
	server, client := selfSigned(t, "collector.test"), selfSigned(t, "client.test")
	c := swtest.NewGRPCCollector(t, swtest.GRPCOptions{
		ServerOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS(server, client, false)))},
	})
	e := newExporter(t, Config{Address: "grpc://" + c.Addr(), KeepAlive: -1})
	checkTLSExport(t, e, false)
}

func TestHTTPSTLS(t *testing.T) {
	server, client := selfSigned(t, "collector.test"), selfSigned(t, "client.test")
	for _, tt := range tlsCases {
		if tt.scheme == "grpc" {
			continue // TLS options on http:// are a config error, see TestNewInvalid
		}
		t.Run(tt.name, func(t *testing.T) {
			c := &swtest.HTTPCollector{}
			srv := httptest.NewUnstartedServer(c)
			srv.TLS = serverTLS(server, client, tt.mutual)
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
			srv.StartTLS()
			defer srv.Close()
			if !strings.HasPrefix(srv.URL, "https://") {
				t.Fatalf("test server URL %q is not https", srv.URL)
			}
			e := newExporter(t, Config{Address: srv.URL, TLS: tt.tls(server, client), KeepAlive: -1})
			checkTLSExport(t, e, tt.ok)
			segs, errs := c.Segments(), c.Errors()
			if tt.ok && len(segs) != 1 {
				t.Errorf("collector received %d segments, want 1", len(segs))
			}
			if len(errs) > 0 {
				t.Errorf("collector could not decode a request: %v", errs)
			}
		})
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
