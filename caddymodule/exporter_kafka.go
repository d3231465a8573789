package caddymodule

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tracingproxy/tracingproxy/exporter/httpexport"
	"github.com/tracingproxy/tracingproxy/exporter/kafka"
)

// exporterKafka produces one message per request to a Kafka topic, where
// Zipkin's Kafka collector, SkyWalking OAP's kafka-fetcher or the
// OpenTelemetry Collector's Kafka receiver read it.
const exporterKafka = "kafka"

// SASLConfig authenticates the kafka exporter to its brokers.
type SASLConfig struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512.
	Mechanism string `json:"mechanism"`
	// Username and Password are the credentials. Placeholders such as
	// {env.KAFKA_PASSWORD} are replaced at load time; write the password
	// as one, so that the configuration never holds it.
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
}

// saslMechanisms maps the configuration's names to the library's.
var saslMechanisms = map[string]string{
	"plain":         kafka.SASLPlain,
	"scram-sha-256": kafka.SASLSCRAMSHA256,
	"scram-sha-512": kafka.SASLSCRAMSHA512,
}

// kafkaSkyWalking reports whether ec produces SkyWalking segments to Kafka,
// which need segment ids and register the handler's instance.
func (ec *ExporterConfig) kafkaSkyWalking() bool {
	return ec.Type == exporterKafka && ec.Encoding == kafka.EncodingSkyWalking
}

// resolvedSASL is ec's SASL with its placeholders replaced, nil without
// SASL.
func (ec *ExporterConfig) resolvedSASL() *SASLConfig {
	if ec.SASL == nil {
		return nil
	}
	repl := caddy.NewReplacer()
	return &SASLConfig{
		Mechanism: ec.SASL.Mechanism,
		Username:  repl.ReplaceAll(ec.SASL.Username, ""),
		Password:  repl.ReplaceAll(ec.SASL.Password, ""),
	}
}

// kafkaConfig is the kafka library's configuration of ec for the service
// and instance the records carry; placeholders in the SASL credentials are
// replaced now, at load time.
func (ec *ExporterConfig) kafkaConfig(service, instance string) kafka.Config {
	cfg := kafka.Config{
		Brokers:         ec.Brokers,
		Topic:           ec.Topic,
		Encoding:        ec.Encoding,
		ManagementTopic: ec.ManagementTopic,
		Compression:     ec.Compression,
		DeliveryTimeout: time.Duration(ec.Timeout),
		Service:         service,
		Instance:        instance,
		Version:         Version,
		KeepAlive:       time.Duration(ec.KeepAlive),
		OnError: func(err error) {
			backgroundLogger().Warn("kafka", zap.String("exporter", ec.displayName()), zap.Error(err))
		},
	}
	if s := ec.resolvedSASL(); s != nil {
		mech, ok := saslMechanisms[strings.ToLower(s.Mechanism)]
		if !ok {
			mech = s.Mechanism
		}
		cfg.SASL = &kafka.SASL{Mechanism: mech, Username: s.Username, Password: s.Password}
	}
	if t := ec.TLS; t != nil {
		cfg.TLS = t.library()
	}
	return cfg
}

// validateKafka checks everything the kafka exporter will be built from
// (brokers, topics, encoding, compression, SASL and TLS files), so that a
// bad option is refused before any exporter starts. Its errors never quote
// the password.
func (ec *ExporterConfig) validateKafka(service, instance string) error {
	if ec.URL != "" {
		return fmt.Errorf("exporter kafka takes brokers (host:port...), not a url; got url %q", httpexport.Redact(ec.URL))
	}
	if s := ec.SASL; s != nil {
		if _, ok := saslMechanisms[strings.ToLower(s.Mechanism)]; !ok {
			return fmt.Errorf("exporter kafka: sasl mechanism must be plain, scram-sha-256 or scram-sha-512, got %q", s.Mechanism)
		}
		if r := ec.resolvedSASL(); r.Password == "" {
			return fmt.Errorf("exporter kafka: sasl password is empty (%q after placeholders); set it, e.g. {env.KAFKA_PASSWORD}", s.Password)
		}
	}
	if ec.KeepAlive != 0 && !ec.kafkaSkyWalking() {
		return fmt.Errorf("exporter kafka: keepalive is an option of the %s encoding", kafka.EncodingSkyWalking)
	}
	if err := kafka.Check(ec.kafkaConfig(service, instance)); err != nil {
		return fmt.Errorf("exporter %w", err)
	}
	return nil
}
