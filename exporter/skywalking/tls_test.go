package skywalking

import (
	"crypto/tls"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
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
			c := &collector{}
			addr, _ := serveGRPC(t, c, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(serverTLS(server, client, tt.mutual))))
			e := newExporter(t, Config{Address: tt.scheme + "://" + addr, TLS: tt.tls(server, client), KeepAlive: -1})
			checkTLSExport(t, e, tt.ok)
			if segs, _, _, _ := c.received(); tt.ok && len(segs) != 1 {
				t.Errorf("collector received %d segments, want 1", len(segs))
			}
		})
	}
}

func TestGRPCPlaintextToTLSCollector(t *testing.T) {
	server, client := selfSigned(t, "collector.test"), selfSigned(t, "client.test")
	addr, _ := serveGRPC(t, &collector{}, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(serverTLS(server, client, false))))
	e := newExporter(t, Config{Address: "grpc://" + addr, KeepAlive: -1})
	checkTLSExport(t, e, false)
}

func TestHTTPSTLS(t *testing.T) {
	server, client := selfSigned(t, "collector.test"), selfSigned(t, "client.test")
	for _, tt := range tlsCases {
		if tt.scheme == "grpc" {
			continue // TLS options on http:// are a config error, see TestNewInvalid
		}
		t.Run(tt.name, func(t *testing.T) {
			c := &httpCollector{}
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
			segs, _, _, _, errs := c.received()
			if tt.ok && len(segs) != 1 {
				t.Errorf("collector received %d segments, want 1", len(segs))
			}
			if len(errs) > 0 {
				t.Errorf("collector could not decode a request: %v", errs)
			}
		})
	}
}
