package caddymodule

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/otlp"
)

// exporterOTLP is the OpenTelemetry exporter: OTLP/HTTP (protobuf or JSON)
// to an http(s) URL, OTLP/gRPC to a grpc(s) one.
const exporterOTLP = "otlp"

// otlpConfig is the otlp library's configuration of ec; placeholders in
// the headers are replaced now, at load time.
func (ec *ExporterConfig) otlpConfig() otlp.Config {
	cfg := otlp.Config{
		URL:         ec.URL,
		Encoding:    ec.Encoding,
		Gzip:        ec.Compression == "gzip",
		UseEnvProxy: ec.UseEnvProxy,
		Version:     Version,
	}
	if len(ec.Headers) > 0 {
		repl := caddy.NewReplacer()
		cfg.Headers = make(map[string]string, len(ec.Headers))
		for k, v := range ec.Headers {
			cfg.Headers[k] = repl.ReplaceAll(v, "")
		}
	}
	if t := ec.TLS; t != nil {
		cfg.TLS = &exporter.TLSConfig{CA: t.CA, Cert: t.Cert, Key: t.Key, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	}
	return cfg
}

// validateOTLP checks everything the otlp exporter will be built from (its
// url, encoding, headers and TLS files), so a bad option is refused before
// any exporter starts.
func (ec *ExporterConfig) validateOTLP() error {
	if err := otlp.Check(ec.otlpConfig()); err != nil {
		return fmt.Errorf("exporter %w", err)
	}
	return nil
}

// otlpWarnings returns what is accepted but likely wrong: an OTLP/HTTP path
// other than /v1/traces, where collectors take traces.
func (ec *ExporterConfig) otlpWarnings() []string {
	u, err := url.Parse(ec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path == "" || u.Path == "/" || strings.HasSuffix(u.Path, otlp.TracesPath) {
		return nil
	}
	return []string{fmt.Sprintf("exporter otlp: url path %q does not end in %s, where OpenTelemetry collectors take traces", u.Path, otlp.TracesPath)}
}
