package skywalking

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAddressValid(t *testing.T) {
	tests := []struct {
		name, in string
		want     endpoint
	}{
		{"grpc", "grpc://oap:11800", endpoint{protoGRPC, false, "oap:11800"}},
		{"grpc default port", "grpc://oap", endpoint{protoGRPC, false, "oap:11800"}},
		{"grpc trailing slash", "grpc://10.0.0.1:1234/", endpoint{protoGRPC, false, "10.0.0.1:1234"}},
		{"grpcs", "grpcs://oap.example:443", endpoint{protoGRPC, true, "oap.example:443"}},
		{"grpc ipv6", "grpc://[::1]:11800", endpoint{protoGRPC, false, "[::1]:11800"}},
		{"http", "http://oap:12800", endpoint{protoHTTP, false, "http://oap:12800"}},
		{"http trailing slash", "http://oap:12800/", endpoint{protoHTTP, false, "http://oap:12800"}},
		{"https base path", "https://gw.example/skywalking/", endpoint{protoHTTP, true, "https://gw.example/skywalking"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAddress(tt.in)
			if err != nil {
				t.Fatalf("parseAddress(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("parseAddress(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Config{Address: "grpc://127.0.0.1:11800", Service: "s", Instance: "i"}
	tests := []struct {
		name string
		cfg  func(c *Config)
		want string
	}{
		{"empty url", func(c *Config) { c.Address = "" }, `skywalking url must be grpc://host:port or http(s)://host:port, got ""`},
		{"bare host:port", func(c *Config) { c.Address = "127.0.0.1:11800" }, "skywalking url must be"},
		{"unknown scheme", func(c *Config) { c.Address = "tcp://oap:11800" }, `got "tcp://oap:11800"`},
		{"grpc with path", func(c *Config) { c.Address = "grpc://oap:11800/v3" }, "skywalking url must be"},
		{"query", func(c *Config) { c.Address = "http://oap:12800/?x=1" }, "skywalking url must be"},
		{"user info", func(c *Config) { c.Address = "http://u:p@oap:12800" }, "skywalking url must be"},
		{"bad port", func(c *Config) { c.Address = "grpc://oap:0" }, "skywalking url must be"},
		{"port too big", func(c *Config) { c.Address = "grpc://oap:65536" }, "skywalking url must be"},
		{"no host", func(c *Config) { c.Address = "grpc://:11800" }, "skywalking url must be"},
		{"ipv6 without brackets", func(c *Config) { c.Address = "grpc://::" }, "skywalking url must be"},
		{"no service", func(c *Config) { c.Service = "" }, "skywalking service name must be set"},
		{"no instance", func(c *Config) { c.Instance = "" }, "skywalking instance name must be set"},
		{"tls on http", func(c *Config) { c.Address = "http://oap:12800"; c.TLS = &TLSConfig{} }, "skywalking tls options need an https:// url"},
		{"missing ca", func(c *Config) { c.TLS = &TLSConfig{CA: filepath.Join(dir, "nope.pem")} }, "skywalking tls ca:"},
		{"ca not pem", func(c *Config) { c.TLS = &TLSConfig{CA: notPEM} }, "skywalking tls ca: no PEM certificate"},
		{"cert without key", func(c *Config) { c.TLS = &TLSConfig{Cert: notPEM} }, "skywalking tls cert and key must be set together"},
		{"bad key pair", func(c *Config) { c.TLS = &TLSConfig{Cert: notPEM, Key: notPEM} }, "skywalking tls cert and key:"},
		{"https bad ca", func(c *Config) { c.Address = "https://oap"; c.TLS = &TLSConfig{CA: notPEM} }, "skywalking tls ca: no PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.cfg(&cfg)
			e, err := New(cfg)
			if err == nil {
				_ = e.Shutdown(context.Background())
				t.Fatalf("New(%+v) succeeded, want error containing %q", cfg, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %q, want it to contain %q", err, tt.want)
			}
			if cerr := Check(cfg); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Check error = %v, want New's %q", cerr, err)
			}
		})
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"grpc://oap:11800", "grpcs://[::1]", "http://oap:12800/base/", "https://x/%2F", "grpc://:1", "http://a b", "grpc://h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := parseAddress(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "skywalking url must be") {
				t.Fatalf("error %q does not name the option", err)
			}
			return
		}
		again, err := parseAddress(ep.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", ep.String(), s, err)
		}
		if again != ep {
			t.Fatalf("round trip of %q: %+v, then %+v", s, ep, again)
		}
	})
}
