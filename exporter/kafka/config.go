package kafka

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tracingproxy/tracingproxy/exporter"
)

// Encodings of the messages, each what one consumer reads.
const (
	// EncodingZipkinJSON is a JSON list of Zipkin v2 spans per message,
	// what Zipkin's Kafka collector reads.
	EncodingZipkinJSON = "zipkin_json"
	// EncodingSkyWalking is one SegmentObject (protobuf) per message, what
	// SkyWalking OAP's kafka-fetcher reads; the instance properties and
	// keepAlive go to the management topic.
	EncodingSkyWalking = "skywalking"
	// EncodingOTLPProto is one ExportTraceServiceRequest (protobuf) per
	// message, what the OpenTelemetry Collector's Kafka receiver reads as
	// otlp_proto.
	EncodingOTLPProto = "otlp_proto"
)

// Default topics, the ones each consumer reads by default.
const (
	DefaultZipkinTopic     = "zipkin"
	DefaultSkyWalkingTopic = "skywalking-segments"
	// DefaultManagementTopic is where OAP's kafka-fetcher reads instance
	// properties and keepAlive.
	DefaultManagementTopic = "skywalking-managements"
	DefaultOTLPTopic       = "otlp_spans"
)

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// Compression codecs of produced batches.
const (
	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionSnappy = "snappy"
	CompressionLZ4    = "lz4"
	CompressionZstd   = "zstd"
)

// Defaults of the zero Config values.
const (
	DefaultCompression     = CompressionSnappy
	DefaultDialTimeout     = 5 * time.Second
	DefaultDeliveryTimeout = exporter.DefaultTimeout
	// DefaultKeepAlive is the SkyWalking keepAlive interval, the agents'.
	DefaultKeepAlive = 60 * time.Second
	// DefaultMaxMessageBytes is Kafka's default max.message.bytes.
	DefaultMaxMessageBytes = 1000012
)

// minDeliveryTimeout is the shortest record timeout franz-go accepts.
const minDeliveryTimeout = time.Second

// Config configures an Exporter.
type Config struct {
	// Brokers are the seed brokers, host:port each. Required.
	Brokers []string
	// Topic is where messages go. Default: the Encoding's consumer's own
	// topic (zipkin, skywalking-segments or otlp_spans).
	Topic string
	// Encoding is zipkin_json [default], skywalking or otlp_proto.
	Encoding string
	// ManagementTopic is where the skywalking encoding sends instance
	// properties and keepAlive. Default: skywalking-managements, with the
	// prefix of Topic when Topic ends in skywalking-segments (OAP's
	// namespace, e.g. prod-skywalking-segments → prod-skywalking-managements).
	ManagementTopic string
	// Compression is none, gzip, snappy [default], lz4 or zstd.
	Compression string
	// TLS turns TLS to the brokers on when set; nil is plaintext.
	TLS *TLSConfig
	// SASL authenticates to the brokers when set.
	SASL *SASL
	// DialTimeout bounds connecting to a broker, TLS and SASL included
	// [5s].
	DialTimeout time.Duration
	// DeliveryTimeout bounds a message's life in the client, retries and
	// the broker's acknowledgement included [5s, at least 1s, franz-go's
	// floor]; the Queue's export timeout should be the same.
	DeliveryTimeout time.Duration
	// MaxMessageBytes bounds one message; a record that encodes larger is
	// refused [1000012, Kafka's max.message.bytes].
	MaxMessageBytes int
	// Service, Instance and Version name the proxy in the instance
	// properties and keepAlive of the skywalking encoding; Service and
	// Instance are required with it and must be those the Records carry.
	Service, Instance, Version string
	// KeepAlive is the skywalking encoding's keepAlive interval [60s]; a
	// negative value turns instance properties and keepAlive off.
	KeepAlive time.Duration
	// OnError, if set, is called with every failed instance registration
	// or keepAlive, from a background goroutine; it must not block.
	OnError func(error)
}

// SASL is the authentication to the brokers.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string
	// Username and Password are the credentials.
	Username, Password string
}

// defaultTopic returns the topic of an encoding when none is configured.
func defaultTopic(encoding string) string {
	switch encoding {
	case EncodingSkyWalking:
		return DefaultSkyWalkingTopic
	case EncodingOTLPProto:
		return DefaultOTLPTopic
	}
	return DefaultZipkinTopic
}

// withDefaults fills in the zero values.
func (c Config) withDefaults() Config {
	if c.Encoding == "" {
		c.Encoding = EncodingZipkinJSON
	}
	if c.Topic == "" {
		c.Topic = defaultTopic(c.Encoding)
	}
	if c.ManagementTopic == "" {
		c.ManagementTopic = DefaultManagementTopic
		if prefix, ok := strings.CutSuffix(c.Topic, DefaultSkyWalkingTopic); ok {
			c.ManagementTopic = prefix + DefaultManagementTopic
		}
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	return c
}

// Validate checks the configuration without connecting, naming the option
// at fault and the values it allows. Its errors never quote a password.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka brokers: at least one host:port is required")
	}
	for _, b := range c.Brokers {
		if err := checkBroker(b); err != nil {
			return err
		}
	}
	switch c.Encoding {
	case "", EncodingZipkinJSON, EncodingSkyWalking, EncodingOTLPProto:
	default:
		return fmt.Errorf("kafka encoding must be one of %s, %s, %s; got %q", EncodingZipkinJSON, EncodingSkyWalking, EncodingOTLPProto, c.Encoding)
	}
	if c.Topic != "" {
		if err := checkTopic("topic", c.Topic); err != nil {
			return err
		}
	}
	if c.ManagementTopic != "" {
		if c.Encoding != EncodingSkyWalking {
			return fmt.Errorf("kafka management_topic is an option of the %s encoding", EncodingSkyWalking)
		}
		if err := checkTopic("management_topic", c.ManagementTopic); err != nil {
			return err
		}
	}
	switch c.Compression {
	case "", CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd:
	default:
		return fmt.Errorf("kafka compression must be one of none, gzip, snappy, lz4, zstd; got %q", c.Compression)
	}
	if s := c.SASL; s != nil {
		switch s.Mechanism {
		case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		default:
			return fmt.Errorf("kafka sasl mechanism must be one of %s, %s, %s; got %q", SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512, s.Mechanism)
		}
		if s.Username == "" {
			return errors.New("kafka sasl: the username must not be empty")
		}
	}
	switch {
	case c.DialTimeout < 0:
		return fmt.Errorf("kafka dial_timeout must not be negative, got %s", c.DialTimeout)
	case c.DeliveryTimeout < 0:
		return fmt.Errorf("kafka timeout must not be negative, got %s", c.DeliveryTimeout)
	case c.MaxMessageBytes < 0:
		return fmt.Errorf("kafka max_message_bytes must not be negative, got %d", c.MaxMessageBytes)
	}
	if c.Encoding == EncodingSkyWalking && c.KeepAlive >= 0 && (c.Service == "" || c.Instance == "") {
		return errors.New("kafka skywalking encoding: service and instance names must be set")
	}
	if c.TLS != nil && (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("kafka tls cert and key must be set together")
	}
	return nil
}

// Check validates cfg as New would, reading its TLS files, without
// creating a client: a bad option or an unreadable file is an error here,
// before anything starts.
func Check(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.TLS != nil {
		if _, err := cfg.TLS.Build(); err != nil {
			return fmt.Errorf("kafka %w", err)
		}
	}
	return nil
}

// checkBroker checks one seed broker: host:port, no scheme.
func checkBroker(b string) error {
	bad := fmt.Errorf("kafka broker must be host:port, e.g. 127.0.0.1:9092, got %q", b)
	host, port, err := net.SplitHostPort(b)
	if err != nil || host == "" || strings.ContainsAny(b, "/@ \t") {
		return bad
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad
	}
	return nil
}

// checkTopic checks a Kafka topic name: 1 to 249 of [a-zA-Z0-9._-], not
// "." or "..".
func checkTopic(opt, t string) error {
	ok := len(t) > 0 && len(t) <= 249 && t != "." && t != ".."
	for i := 0; ok && i < len(t); i++ {
		c := t[i]
		ok = c == '.' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	if !ok {
		return fmt.Errorf("kafka %s must be 1 to 249 of the characters a-z A-Z 0-9 . _ -, got %q", opt, t)
	}
	return nil
}

// clientOptions are the franz-go options of a validated, defaulted Config.
func (c *Config) clientOptions() ([]kgo.Opt, error) {
	delivery := max(c.DeliveryTimeout, minDeliveryTimeout)
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID("tracingproxy"),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.DialTimeout(c.DialTimeout),
		// A message lives at most DeliveryTimeout in the client, so an
		// export the Queue gave up on frees its memory at the same time.
		kgo.RecordDeliveryTimeout(delivery),
		kgo.ProduceRequestTimeout(delivery),
		kgo.RequestTimeoutOverhead(delivery),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Without idempotence a message the Queue gave up on can always be
		// failed at once, and no InitProducerID (and its ACL) is needed.
		// Consumers of spans need no ordering or exactly-once.
		kgo.DisableIdempotentWrite(),
		// The Queue has batched already and Export waits for the whole
		// batch: lingering (franz-go's default is 10ms) would only add
		// its wait to every export.
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(int32(min(c.MaxMessageBytes, 1<<30))),
		kgo.AllowAutoTopicCreation(),
	}
	switch c.Compression {
	case CompressionNone:
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	case CompressionGzip:
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression(), kgo.NoCompression()))
	case CompressionLZ4:
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.NoCompression()))
	case CompressionZstd:
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.NoCompression()))
	default:
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression(), kgo.NoCompression()))
	}
	if c.TLS != nil {
		tc, err := c.TLS.Build()
		if err != nil {
			return nil, fmt.Errorf("kafka %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if s := c.SASL; s != nil {
		opts = append(opts, kgo.SASL(mechanism(s)))
	}
	return opts, nil
}

// mechanism is the franz-go SASL mechanism of s.
func mechanism(s *SASL) sasl.Mechanism {
	switch s.Mechanism {
	case SASLPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()
	case SASLSCRAMSHA512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()
	default:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()
	}
}

// TLSConfig configures TLS to the brokers; see exporter.TLSConfig.
type TLSConfig = exporter.TLSConfig
