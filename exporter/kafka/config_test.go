package kafka

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		in               Config
		topic, mgmtTopic string
	}{
		{Config{}, "zipkin", "skywalking-managements"},
		{Config{Encoding: EncodingZipkinJSON}, "zipkin", "skywalking-managements"},
		{Config{Encoding: EncodingSkyWalking}, "skywalking-segments", "skywalking-managements"},
		{Config{Encoding: EncodingSkyWalking, Topic: "prod-skywalking-segments"}, "prod-skywalking-segments", "prod-skywalking-managements"},
		{Config{Encoding: EncodingSkyWalking, Topic: "segs"}, "segs", "skywalking-managements"},
		{Config{Encoding: EncodingOTLPProto}, "otlp_spans", "skywalking-managements"},
	} {
		got := tc.in.withDefaults()
		if got.Topic != tc.topic || got.ManagementTopic != tc.mgmtTopic {
			t.Errorf("%+v: topics %q, %q; want %q, %q", tc.in, got.Topic, got.ManagementTopic, tc.topic, tc.mgmtTopic)
		}
		if got.Compression != CompressionSnappy || got.DialTimeout != 5*time.Second || got.DeliveryTimeout != 5*time.Second ||
			got.MaxMessageBytes != 1000012 || got.KeepAlive != time.Minute {
			t.Errorf("defaults %+v", got)
		}
	}
}

func TestValidateValid(t *testing.T) {
	for name, c := range map[string]Config{
		"one broker":    {Brokers: []string{"127.0.0.1:9092"}},
		"hostnames":     {Brokers: []string{"kafka-0.kafka:9092", "kafka-1.kafka:9093"}},
		"ipv6":          {Brokers: []string{"[::1]:9092"}},
		"skywalking":    {Brokers: []string{"k:9092"}, Encoding: EncodingSkyWalking, Service: "s", Instance: "i", ManagementTopic: "m"},
		"sw no mgmt":    {Brokers: []string{"k:9092"}, Encoding: EncodingSkyWalking, KeepAlive: -1},
		"otlp zstd":     {Brokers: []string{"k:9092"}, Encoding: EncodingOTLPProto, Compression: CompressionZstd},
		"scram":         {Brokers: []string{"k:9092"}, SASL: &SASL{Mechanism: SASLSCRAMSHA512, Username: "u", Password: "p"}},
		"topic charset": {Brokers: []string{"k:9092"}, Topic: "a.B_c-9"},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		c    Config
		want string
	}{
		"no broker":        {Config{}, "kafka brokers: at least one host:port"},
		"url broker":       {Config{Brokers: []string{"kafka://k:9092"}}, `kafka broker must be host:port, e.g. 127.0.0.1:9092, got "kafka://k:9092"`},
		"no port":          {Config{Brokers: []string{"k"}}, "kafka broker must be host:port"},
		"port 0":           {Config{Brokers: []string{"k:0"}}, "kafka broker must be host:port"},
		"credentials":      {Config{Brokers: []string{"u:p@k:9092"}}, "kafka broker must be host:port"},
		"encoding":         {Config{Brokers: []string{"k:9092"}, Encoding: "json"}, `kafka encoding must be one of zipkin_json, skywalking, otlp_proto; got "json"`},
		"topic chars":      {Config{Brokers: []string{"k:9092"}, Topic: "a/b"}, "kafka topic must be 1 to 249 of the characters a-z A-Z 0-9 . _ -"},
		"topic dot":        {Config{Brokers: []string{"k:9092"}, Topic: ".."}, "kafka topic must be"},
		"topic long":       {Config{Brokers: []string{"k:9092"}, Topic: strings.Repeat("a", 250)}, "kafka topic must be"},
		"mgmt not sw":      {Config{Brokers: []string{"k:9092"}, ManagementTopic: "m"}, "kafka management_topic is an option of the skywalking encoding"},
		"compression":      {Config{Brokers: []string{"k:9092"}, Compression: "brotli"}, `kafka compression must be one of none, gzip, snappy, lz4, zstd; got "brotli"`},
		"mechanism":        {Config{Brokers: []string{"k:9092"}, SASL: &SASL{Mechanism: "GSSAPI", Username: "u", Password: "hunter2"}}, `kafka sasl mechanism must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; got "GSSAPI"`},
		"no username":      {Config{Brokers: []string{"k:9092"}, SASL: &SASL{Mechanism: SASLPlain, Password: "hunter2"}}, "kafka sasl: the username must not be empty"},
		"sw names":         {Config{Brokers: []string{"k:9092"}, Encoding: EncodingSkyWalking}, "kafka skywalking encoding: service and instance names must be set"},
		"negative dial":    {Config{Brokers: []string{"k:9092"}, DialTimeout: -1}, "kafka dial_timeout must not be negative"},
		"negative timeout": {Config{Brokers: []string{"k:9092"}, DeliveryTimeout: -1}, "kafka timeout must not be negative"},
		"cert no key":      {Config{Brokers: []string{"k:9092"}, TLS: &TLSConfig{Cert: "c.pem"}}, "kafka tls cert and key must be set together"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error quotes the password: %v", name, err)
		}
		if _, err := New(tc.c); err == nil {
			t.Errorf("%s: New accepted what Validate refuses", name)
		}
	}
}

// Check refuses what New would refuse, TLS files included, so a caller can
// check every exporter before it starts any.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Config{Brokers: []string{"k:9092"}, TLS: &TLSConfig{ServerName: "kafka"}}
	if err := Check(ok); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
	for name, tc := range map[string]struct {
		c    Config
		want string
	}{
		"invalid":     {Config{}, "kafka brokers: at least one host:port"},
		"missing ca":  {Config{Brokers: []string{"k:9092"}, TLS: &TLSConfig{CA: filepath.Join(dir, "none.pem")}}, "kafka tls ca: open "},
		"ca not pem":  {Config{Brokers: []string{"k:9092"}, TLS: &TLSConfig{CA: notPEM}}, "kafka tls ca: no PEM certificate in " + notPEM},
		"bad keypair": {Config{Brokers: []string{"k:9092"}, TLS: &TLSConfig{Cert: notPEM, Key: notPEM}}, "kafka tls cert and key: "},
	} {
		err := Check(tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if _, err := New(tc.c); err == nil {
			t.Errorf("%s: New accepted what Check refuses", name)
		}
	}
}

// TestClientDoesNotLinger pins ProducerLinger(0): the Queue has batched
// already and Export waits for every message, so franz-go's default linger
// (10ms) would be added to every export (BenchmarkExportLinger measures it).
func TestClientDoesNotLinger(t *testing.T) {
	broker := "127.0.0.1:" + strconv.Itoa(freePort(t)) // never dialled
	e := newExporter(t, Config{Brokers: []string{broker}})
	if got := e.cl.OptValue(kgo.ProducerLinger); got != time.Duration(0) {
		t.Errorf("producer linger %v, want 0", got)
	}
	plain, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if got := plain.OptValue(kgo.ProducerLinger); got != franzGoDefaultLinger {
		t.Errorf("franz-go's default linger is %v now, not %v: BenchmarkExportLinger compares with the wrong one", got, franzGoDefaultLinger)
	}
}
