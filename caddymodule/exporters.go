package caddymodule

import (
	"cmp"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
	"github.com/tracingproxy/tracingproxy/exporter/kafka"
	"github.com/tracingproxy/tracingproxy/exporter/memory"
	"github.com/tracingproxy/tracingproxy/exporter/otlp"
	"github.com/tracingproxy/tracingproxy/exporter/skywalking"
	"github.com/tracingproxy/tracingproxy/exporter/zipkin"
)

// Exporter types.
const (
	exporterZipkin     = "zipkin"
	exporterSkyWalking = "skywalking"
	exporterLog        = "log"
	exporterMemory     = "memory"
)

// ExporterConfig configures one exporter and its queue.
type ExporterConfig struct {
	// Type is zipkin, skywalking, otlp, kafka, log or memory (the
	// process's trace store, read by tracingproxy_ui).
	Type string `json:"type"`
	// URL is the backend: for zipkin the spans endpoint, e.g.
	// http://127.0.0.1:9411/api/v2/spans; for skywalking
	// grpc://host:11800 or http://host:12800; for otlp an OTLP/HTTP URL,
	// http(s)://host:4318 (the path defaults to /v1/traces), or OTLP/gRPC,
	// grpc://host:4317 or grpcs://host:4317.
	URL string `json:"url,omitempty"`
	// Encoding is the wire format: for otlp over http(s), protobuf
	// (default) or json; for kafka, zipkin_json (default: a JSON list of
	// Zipkin v2 spans per message), skywalking (a SegmentObject per
	// message) or otlp_proto (an ExportTraceServiceRequest per message).
	Encoding string `json:"encoding,omitempty"`

	// Brokers are the kafka exporter's seed brokers, host:port each.
	Brokers []string `json:"brokers,omitempty"`
	// Topic is the kafka topic. Default: the encoding's consumer's own,
	// zipkin, skywalking-segments or otlp_spans.
	Topic string `json:"topic,omitempty"`
	// ManagementTopic is where the kafka exporter's skywalking encoding
	// sends instance properties and keepAlive. Default:
	// skywalking-managements (with the prefix of a topic ending in
	// skywalking-segments).
	ManagementTopic string `json:"management_topic,omitempty"`
	// SASL authenticates the kafka exporter. Default: none.
	SASL *SASLConfig `json:"sasl,omitempty"`

	// BatchSize is the most records sent in one export. Default: 512.
	BatchSize int `json:"batch_size,omitempty"`
	// FlushInterval is the longest a record waits for a batch. Default: 1s.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`
	// QueueSize bounds the records waiting to be exported; beyond it
	// records are dropped and counted. Default: 8192.
	QueueSize int `json:"queue_size,omitempty"`
	// QueueBytes bounds the estimated bytes waiting (each record's
	// estimate counts its names, tags and ids). Default: 32 MiB
	// (exporter.DefaultQueueBytes), so long request lines cannot grow a
	// queue past the memory a sidecar is given.
	QueueBytes int `json:"queue_bytes,omitempty"`
	// Drop chooses what a full queue drops: oldest (default) or newest.
	Drop string `json:"drop,omitempty"`
	// Timeout bounds one export attempt. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// MaxRetryTime bounds the time spent retrying one batch. Default: 60s.
	MaxRetryTime caddy.Duration `json:"max_retry_time,omitempty"`
	// FlushTimeout bounds the final flush when the exporter is stopped.
	// Default: 5s.
	FlushTimeout caddy.Duration `json:"flush_timeout,omitempty"`
	// Compression is gzip or none (default) for HTTP exporters; none,
	// gzip, snappy (default), lz4 or zstd for kafka.
	Compression string `json:"compression,omitempty"`
	// Headers are added to every request an HTTP exporter sends (zipkin, and
	// skywalking with an http(s):// url), e.g. an authorization header. Placeholders such as {env.ZIPKIN_TOKEN} are
	// replaced at load time.
	Headers map[string]string `json:"headers,omitempty"`
	// UseEnvProxy sends through the proxy of HTTP_PROXY/HTTPS_PROXY/NO_PROXY
	// (zipkin and skywalking).
	// Default: straight to the collector, whatever the environment says.
	UseEnvProxy bool `json:"use_env_proxy,omitempty"`

	// Instance names this proxy instance in SkyWalking; default: the
	// handler's instance.
	Instance string `json:"instance,omitempty"`
	// Token is sent to SkyWalking as the Authentication metadata.
	// Placeholders such as {env.SW_TOKEN} are replaced at load time.
	Token string `json:"token,omitempty"`
	// KeepAlive is the SkyWalking instance heartbeat interval (skywalking,
	// and kafka with the skywalking encoding). Default: 60s.
	KeepAlive caddy.Duration `json:"keepalive,omitempty"`
	// TLS configures TLS to the backend; for kafka, setting it turns TLS
	// on.
	TLS *TLSConfig `json:"tls,omitempty"`

	// MaxTraces bounds the traces the memory exporter's store keeps; the
	// oldest go first. Default: 10000.
	MaxTraces int `json:"max_traces,omitempty"`
	// MaxBytes bounds the estimated bytes the memory store keeps. Default:
	// 64 MiB.
	MaxBytes int `json:"max_bytes,omitempty"`
}

// TLSConfig configures TLS from an exporter to its backend.
type TLSConfig struct {
	// CA is a PEM file of roots to trust instead of the system's.
	CA string `json:"ca,omitempty"`
	// Cert and Key are PEM files of a client certificate.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// ServerName overrides the name verified in the server's certificate.
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify disables verification of the server's certificate.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

const defaultFlushTimeout = 5 * time.Second

// zipkinSpansPath is the Zipkin collector's v2 spans endpoint.
const zipkinSpansPath = "/api/v2/spans"

// warnings returns what is accepted but likely wrong in the exporter's
// configuration, for the log at load time.
func (ec *ExporterConfig) warnings() []string {
	var w []string
	if ec.Type == exporterZipkin {
		if u, err := url.Parse(ec.URL); err == nil && !strings.HasSuffix(u.Path, zipkinSpansPath) {
			w = append(w, fmt.Sprintf("exporter zipkin: url path %q does not end in %s, where Zipkin collectors take spans", u.Path, zipkinSpansPath))
		}
	}
	if ec.Type == exporterOTLP {
		w = append(w, ec.otlpWarnings()...)
	}
	return w
}

// The handler has named its service and instance before its exporters are
// checked; the checks, which only ask that both are set, see these
// stand-ins, so that validate needs no handler.
const checkService, checkInstance = "service", "instance"

// validate checks the exporter's configuration, naming the option at
// fault. It checks everything the exporter is built from, TLS files and
// credentials included, so that every exporter of a configuration can be
// checked before the first one starts.
func (ec *ExporterConfig) validate() error {
	switch ec.Type {
	case exporterZipkin:
		if err := checkHTTPURL(ec.URL); err != nil {
			return fmt.Errorf("exporter zipkin: %w", err)
		}
		if u, _ := url.Parse(ec.URL); u.Path == "" || u.Path == "/" {
			return fmt.Errorf("exporter zipkin: url must name the spans endpoint, e.g. %s://%s%s, got %q", u.Scheme, u.Host, zipkinSpansPath, ec.URL)
		}
		if err := zipkin.Check(ec.zipkinConfig()); err != nil {
			return fmt.Errorf("exporter %w", err)
		}
	case exporterSkyWalking:
		u, err := url.Parse(ec.URL)
		if err != nil || u.Host == "" || (u.Scheme != "grpc" && u.Scheme != "grpcs" && u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("exporter skywalking: url must be grpc://host:port or http(s)://host:port, got %q", httpexport.Redact(ec.URL))
		}
		if err := skywalking.Check(ec.skywalkingConfig(checkService, checkInstance)); err != nil {
			return fmt.Errorf("exporter %w", err)
		}
	case exporterOTLP:
		if err := ec.validateOTLP(); err != nil {
			return err
		}
	case exporterKafka:
		if err := ec.validateKafka(checkService, checkInstance); err != nil {
			return err
		}
	case exporterLog, exporterMemory:
		if ec.URL != "" {
			return fmt.Errorf("exporter %s takes no url, got %q", ec.Type, httpexport.Redact(ec.URL))
		}
	default:
		return fmt.Errorf("exporter type must be one of zipkin, skywalking, otlp, kafka, log, memory; got %q", ec.Type)
	}
	if ec.Type != exporterKafka && (len(ec.Brokers) > 0 || ec.Topic != "" || ec.ManagementTopic != "" || ec.SASL != nil) {
		return fmt.Errorf("exporter %s: brokers, topic, management_topic and sasl are options of the kafka exporter", ec.Type)
	}
	if ec.Type != exporterMemory && (ec.MaxTraces != 0 || ec.MaxBytes != 0) {
		return fmt.Errorf("exporter %s: max_traces and max_bytes are options of the memory exporter", ec.Type)
	}
	if ec.MaxTraces < 0 || ec.MaxBytes < 0 {
		return fmt.Errorf("exporter memory: max_traces and max_bytes must not be negative, got %d and %d", ec.MaxTraces, ec.MaxBytes)
	}
	qc := ec.queueConfig()
	if err := qc.Validate(); err != nil {
		return fmt.Errorf("exporter %s: %w", ec.Type, err)
	}
	if size := cmp.Or(ec.QueueSize, exporter.DefaultQueueSize); ec.BatchSize > size {
		return fmt.Errorf("exporter %s: batch_size must not exceed queue_size (%d), got %d", ec.Type, size, ec.BatchSize)
	}
	switch {
	case ec.MaxRetryTime < 0:
		return fmt.Errorf("exporter %s: max_retry_time must not be negative, got %s", ec.Type, time.Duration(ec.MaxRetryTime))
	case ec.FlushTimeout < 0:
		return fmt.Errorf("exporter %s: flush_timeout must not be negative, got %s", ec.Type, time.Duration(ec.FlushTimeout))
	case ec.KeepAlive < 0:
		return fmt.Errorf("exporter %s: keepalive must not be negative, got %s", ec.Type, time.Duration(ec.KeepAlive))
	case ec.Type != exporterKafka && ec.Compression != "" && ec.Compression != "gzip" && ec.Compression != "none":
		return fmt.Errorf("exporter %s: compression must be gzip or none, got %q", ec.Type, ec.Compression)
	}
	if ec.Type != exporterSkyWalking && (ec.Token != "" || ec.Instance != "" || ec.KeepAlive != 0 && ec.Type != exporterKafka) {
		return fmt.Errorf("exporter %s: instance, token and keepalive are SkyWalking options", ec.Type)
	}
	if ec.Type == exporterKafka && (len(ec.Headers) > 0 || ec.UseEnvProxy) {
		return fmt.Errorf("exporter kafka: header and use_env_proxy are options of the HTTP exporters")
	}
	if local := ec.Type == exporterLog || ec.Type == exporterMemory; local && (len(ec.Headers) > 0 || ec.UseEnvProxy || ec.Compression == "gzip") {
		return fmt.Errorf("exporter %s: header, use_env_proxy and compression are options of network exporters", ec.Type)
	}
	if ec.Type == exporterSkyWalking && ec.Compression == "gzip" {
		return fmt.Errorf("exporter skywalking: compression is an option of the zipkin and otlp exporters")
	}
	if ec.Encoding != "" && ec.Type != exporterOTLP && ec.Type != exporterKafka {
		return fmt.Errorf("exporter %s: encoding is an option of the otlp and kafka exporters", ec.Type)
	}
	if (ec.Type == exporterLog || ec.Type == exporterMemory) && ec.TLS != nil {
		return fmt.Errorf("exporter %s: tls is an option of network exporters", ec.Type)
	}
	if t := ec.TLS; t != nil && (t.Cert == "") != (t.Key == "") {
		return fmt.Errorf("exporter %s: tls cert and key must be given together", ec.Type)
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url must be an absolute http(s) URL, got %q", httpexport.Redact(s))
	}
	return nil
}

// memoryFlushInterval is the memory exporter's default flush interval:
// short, so a trace shows in the UI as soon as its request ends.
const memoryFlushInterval = 100 * time.Millisecond

func (ec *ExporterConfig) queueConfig() exporter.QueueConfig {
	flush := time.Duration(ec.FlushInterval)
	if flush == 0 && ec.Type == exporterMemory {
		flush = memoryFlushInterval
	}
	bytes := ec.QueueBytes
	if bytes == 0 {
		bytes = exporter.DefaultQueueBytes
	}
	return exporter.QueueConfig{
		Size:          ec.QueueSize,
		Bytes:         bytes,
		Drop:          ec.Drop,
		BatchSize:     ec.BatchSize,
		FlushInterval: flush,
		Timeout:       time.Duration(ec.Timeout),
		MaxRetryTime:  time.Duration(ec.MaxRetryTime),
	}
}

func (ec *ExporterConfig) flushTimeout() time.Duration {
	if ec.FlushTimeout > 0 {
		return time.Duration(ec.FlushTimeout)
	}
	return defaultFlushTimeout
}

// displayName names the exporter in logs and metrics: its type and the
// target's host[:port], never the user info, path or query of its URL,
// where credentials travel.
func (ec *ExporterConfig) displayName() string {
	if ec.Type == exporterKafka && len(ec.Brokers) > 0 {
		return ec.Type + " " + ec.Brokers[0]
	}
	host := httpexport.Host(ec.URL)
	if host == "" {
		return ec.Type
	}
	return ec.Type + " " + host
}

// zipkinConfig is the zipkin library's configuration of ec; placeholders
// in the headers are replaced now, at load time.
func (ec *ExporterConfig) zipkinConfig() zipkin.Config {
	cfg := zipkin.Config{URL: ec.URL, Gzip: ec.Compression == "gzip", Headers: ec.resolvedHeaders(), UseEnvProxy: ec.UseEnvProxy}
	if t := ec.TLS; t != nil {
		cfg.TLS = t.library()
	}
	return cfg
}

// skywalkingConfig is the skywalking library's configuration of ec for the
// service and instance the records carry; placeholders in the token and
// headers are replaced now, at load time.
func (ec *ExporterConfig) skywalkingConfig(service, instance string) skywalking.Config {
	cfg := skywalking.Config{
		Address:     ec.URL,
		Service:     service,
		Instance:    instance,
		Token:       caddy.NewReplacer().ReplaceAll(ec.Token, ""),
		KeepAlive:   time.Duration(ec.KeepAlive),
		Version:     Version,
		UseEnvProxy: ec.UseEnvProxy,
		Headers:     ec.resolvedHeaders(),
		OnError: func(err error) {
			backgroundLogger().Warn("skywalking", zap.String("exporter", ec.displayName()), zap.Error(err))
		},
	}
	if t := ec.TLS; t != nil {
		cfg.TLS = t.library()
	}
	return cfg
}

// resolvedHeaders are ec's headers with their placeholders replaced, nil
// without headers.
func (ec *ExporterConfig) resolvedHeaders() map[string]string {
	if len(ec.Headers) == 0 {
		return nil
	}
	repl := caddy.NewReplacer()
	hdr := make(map[string]string, len(ec.Headers))
	for k, v := range ec.Headers {
		hdr[k] = repl.ReplaceAll(v, "")
	}
	return hdr
}

// library is the exporter libraries' form of t.
func (t *TLSConfig) library() *exporter.TLSConfig {
	return &exporter.TLSConfig{CA: t.CA, Cert: t.Cert, Key: t.Key, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
}

// newExporter builds the exporter; placeholders in tokens, headers and
// credentials are replaced now, at load time.
func (ec *ExporterConfig) newExporter(h *Handler) (exporter.Exporter, error) {
	switch ec.Type {
	case exporterZipkin:
		return zipkin.New(ec.zipkinConfig())
	case exporterSkyWalking:
		return skywalking.New(ec.skywalkingConfig(h.ServiceName, h.Instance))
	case exporterOTLP:
		return otlp.New(ec.otlpConfig())
	case exporterKafka:
		return kafka.New(ec.kafkaConfig(h.ServiceName, h.Instance))
	case exporterMemory:
		traceStore.SetLimits(ec.MaxTraces, ec.MaxBytes)
		return memory.NewExporter(traceStore), nil
	default:
		logger := backgroundLogger().Named("spans")
		return zipkin.NewLog(func(line []byte) {
			logger.Info("span", zap.Any("span", rawJSON(line)))
		}), nil
	}
}

// rawJSON is a JSON document logged as itself, not as a string.
type rawJSON []byte

// MarshalJSON returns the document.
func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }
