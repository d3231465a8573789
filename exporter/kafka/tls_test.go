package kafka

import (
	"crypto/tls"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// brokerTLS is a server certificate for 127.0.0.1 (net/http/httptest's)
// and the path of a PEM file holding it, to trust as a CA.
func brokerTLS(t *testing.T) (*tls.Config, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: srv.TLS.Certificates, MinVersion: tls.VersionTLS12}, ca
}

// TestTLS produces over TLS to a broker whose certificate the configured CA
// signed; without that CA the broker is not trusted and nothing is
// delivered.
func TestTLS(t *testing.T) {
	serverTLS, ca := brokerTLS(t)
	c := cluster(t, []string{"spans"}, kfake.TLS(serverTLS))
	trusted := newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans", TLS: &TLSConfig{CA: ca}})
	r := record(1)
	if err := export(trusted, 10*time.Second, r); err != nil {
		t.Fatalf("with the broker's CA: %v", err)
	}
	untrusted := newExporter(t, Config{Brokers: c.ListenAddrs(), Topic: "spans", TLS: &TLSConfig{}})
	if err := export(untrusted, 3*time.Second, record(1)); err == nil {
		t.Fatal("delivered to a broker whose certificate no trusted CA signed")
	}
	msgs := consume(t, c.ListenAddrs(), "spans", 1, kgo.DialTLSConfig(&tls.Config{InsecureSkipVerify: true}))
	if len(msgs) != 1 || string(msgs[0].Key) != traceHex(r) {
		t.Errorf("delivered %d messages, want only the trusted exporter's", len(msgs))
	}
}
