package exporter

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSConfig configures TLS from an exporter to its collector. Zero values use
// the system's roots and verify the collector's name.
type TLSConfig struct {
	// CA is a PEM file of the CA certificates that verify the collector,
	// instead of the system's roots.
	CA string
	// Cert and Key are PEM files of a client certificate and its key, for
	// collectors that require mutual TLS. Set both or neither.
	Cert string
	Key  string
	// InsecureSkipVerify accepts any collector certificate. For tests only.
	InsecureSkipVerify bool
	// ServerName overrides the name verified in the collector's certificate.
	ServerName string
}

// Build returns the client TLS configuration, reading the files now. A nil
// TLSConfig builds the defaults.
func (c *TLSConfig) Build() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c == nil {
		return tc, nil
	}
	tc.InsecureSkipVerify = c.InsecureSkipVerify
	tc.ServerName = c.ServerName
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca: no PEM certificate in %s", c.CA)
		}
		tc.RootCAs = pool
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, errors.New("tls cert and key must be set together")
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("tls cert and key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
