package skywalking

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
)

// DefaultKeepAlive is the keepAlive interval when Config.KeepAlive is zero,
// the one SkyWalking's agents use.
const DefaultKeepAlive = 60 * time.Second

// defaultGRPCPort is the OAP's gRPC receiver port, used when a grpc:// or
// grpcs:// address has none.
const defaultGRPCPort = "11800"

// Config configures an Exporter.
type Config struct {
	// Address is the collector. grpc://host:port is the OAP's (or
	// Satellite's) gRPC receiver, port 11800 when omitted; grpcs://host:port
	// is the same over TLS. http://host:port and https://host:port (with an
	// optional base path) name the OAP's HTTP receiver, usually port 12800:
	// segments go to {base}/v3/segments, instance registration to
	// {base}/v3/management/reportProperties and keepAlive.
	Address string
	// Service and Instance name the proxy in SkyWalking for instance
	// registration and keepAlive. Both are required and must be the Service
	// and Instance the exported Records carry.
	Service  string
	Instance string
	// Token is sent as the "Authentication" gRPC metadata or HTTP header on
	// every call when the collector requires one. Default: none.
	Token string
	// KeepAlive is the interval between keepAlive calls [60s]. A negative
	// value turns instance registration and keepAlive off.
	KeepAlive time.Duration
	// TLS configures TLS to the collector. With a grpc:// address, setting it
	// turns TLS on (as grpcs:// does); it requires https:// for HTTP.
	TLS *TLSConfig
	// Version is the tracingproxy version, reported as the instance
	// property "tracingproxy.version".
	Version string
	// Headers are added to every request of the HTTP transport (an
	// http:// or https:// address). They cannot override Content-Type,
	// Authentication or b3, which the exporter sets.
	Headers map[string]string
	// UseEnvProxy sends through the proxy of HTTP_PROXY, HTTPS_PROXY and
	// NO_PROXY (both transports). Default: straight to the collector.
	UseEnvProxy bool
	// OnError, if set, is called with every failed instance registration or
	// keepAlive. Export errors are returned, not reported here. It is called
	// from a background goroutine and must not block.
	OnError func(error)
}

// TLSConfig configures TLS to the collector; see exporter.TLSConfig.
type TLSConfig = exporter.TLSConfig

// protocol is the transport an address selects.
type protocol uint8

const (
	protoGRPC protocol = iota
	protoHTTP
)

// endpoint is a parsed Config.Address.
type endpoint struct {
	proto protocol
	tls   bool
	// target is host:port for gRPC, the base URL without a trailing slash
	// for HTTP.
	target string
}

// String returns the address in its canonical form.
func (e endpoint) String() string {
	if e.proto == protoHTTP {
		return e.target
	}
	if e.tls {
		return "grpcs://" + e.target
	}
	return "grpc://" + e.target
}

// parseAddress parses Config.Address.
func parseAddress(s string) (endpoint, error) {
	bad := fmt.Errorf("skywalking url must be grpc://host:port or http(s)://host:port, got %q", httpexport.Redact(s))
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.ForceQuery {
		return endpoint{}, bad
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || strings.ContainsAny(host, "[]") || strings.Contains(host, ":") && net.ParseIP(host) == nil {
		return endpoint{}, bad
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return endpoint{}, bad
		}
	}
	switch u.Scheme {
	case "grpc", "grpcs":
		if u.Path != "" && u.Path != "/" {
			return endpoint{}, bad
		}
		if port == "" {
			port = defaultGRPCPort
		}
		return endpoint{proto: protoGRPC, tls: u.Scheme == "grpcs", target: net.JoinHostPort(host, port)}, nil
	case "http", "https":
		base := u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/")
		return endpoint{proto: protoHTTP, tls: u.Scheme == "https", target: base}, nil
	default:
		return endpoint{}, bad
	}
}

// validate checks the configuration and returns the parsed address, naming
// the offending option.
func (c *Config) validate() (endpoint, error) {
	ep, err := parseAddress(c.Address)
	if err != nil {
		return endpoint{}, err
	}
	if len(c.Headers) > 0 && ep.proto != protoHTTP {
		return endpoint{}, fmt.Errorf("skywalking headers need an http(s):// url, got %q", httpexport.Redact(c.Address))
	}
	if _, _, err := httpexport.Headers("skywalking", c.Headers); err != nil {
		return endpoint{}, err
	}
	switch {
	case c.Service == "":
		return endpoint{}, errors.New("skywalking service name must be set")
	case c.Instance == "":
		return endpoint{}, errors.New("skywalking instance name must be set")
	case c.TLS != nil && ep.proto == protoHTTP && !ep.tls:
		return endpoint{}, fmt.Errorf("skywalking tls options need an https:// url, got %q", httpexport.Redact(c.Address))
	}
	return ep, nil
}

// Check validates cfg as New would, reading its TLS files, without
// connecting or starting anything, so that a caller can check every
// exporter before it starts any.
func Check(cfg Config) error {
	if _, err := cfg.validate(); err != nil {
		return err
	}
	_, err := tlsConfig(cfg.TLS)
	return err
}

// tlsConfig builds the client TLS configuration from the options.
func tlsConfig(c *TLSConfig) (*tls.Config, error) {
	tc, err := c.Build()
	if err != nil {
		return nil, fmt.Errorf("skywalking %w", err)
	}
	return tc, nil
}
