package caddymodule

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	agentv3 "skywalking.apache.org/repo/goapi/collect/language/agent/v3"
	managementv3 "skywalking.apache.org/repo/goapi/collect/management/v3"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/otlptest"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

func TestKafkaCaddyfile(t *testing.T) {
	var h Handler
	in := `tracingproxy {
	exporter kafka kafka-0:9092 kafka-1:9092 {
		topic prod-skywalking-segments
		encoding skywalking
		management_topic prod-skywalking-managements
		keepalive 30s
		compression zstd
		sasl scram-sha-512 proxy {env.KAFKA_PASSWORD}
		tls ca /etc/kafka-ca.pem server_name kafka
		timeout 2s
		queue_size 100
	}
	exporter kafka 127.0.0.1:9092
}`
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	if len(h.Exporters) != 2 {
		t.Fatalf("%d exporters", len(h.Exporters))
	}
	a, b := h.Exporters[0], h.Exporters[1]
	if a.Type != "kafka" || strings.Join(a.Brokers, ",") != "kafka-0:9092,kafka-1:9092" || a.URL != "" ||
		a.Topic != "prod-skywalking-segments" || a.Encoding != "skywalking" || a.ManagementTopic != "prod-skywalking-managements" ||
		a.KeepAlive != caddy.Duration(30*time.Second) || a.Compression != "zstd" ||
		a.SASL == nil || *a.SASL != (SASLConfig{Mechanism: "scram-sha-512", Username: "proxy", Password: "{env.KAFKA_PASSWORD}"}) ||
		a.TLS == nil || a.TLS.CA != "/etc/kafka-ca.pem" || a.TLS.ServerName != "kafka" || a.QueueSize != 100 || a.Timeout != caddy.Duration(2*time.Second) {
		t.Errorf("first exporter %+v", a)
	}
	if b.Type != "kafka" || len(b.Brokers) != 1 || b.Brokers[0] != "127.0.0.1:9092" || b.Topic != "" || b.Encoding != "" || b.SASL != nil {
		t.Errorf("second exporter %+v", b)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"no broker", "tracingproxy {\n\texporter kafka\n}", "exporter kafka needs at least one broker, host:port"},
		{"no broker before the block", "tracingproxy {\n\texporter kafka {\n\t\ttopic spans\n\t}\n}", "exporter kafka needs at least one broker"},
		{"sasl without password", "tracingproxy {\n\texporter kafka k:9092 {\n\t\tsasl plain proxy\n\t}\n}", "exporter sasl needs a mechanism (plain, scram-sha-256 or scram-sha-512), a username and a password"},
		{"topic without a value", "tracingproxy {\n\texporter kafka k:9092 {\n\t\ttopic\n\t}\n}", "wrong argument count"},
		{"unknown option", "tracingproxy {\n\texporter kafka k:9092 {\n\t\tpartitions 4\n\t}\n}", `unknown exporter option "partitions" (allowed: `},
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// Every kafka option is checked at load, naming the option and what it
// allows, and no error quotes the password.
func TestKafkaBadConfigIsRefusedNamingTheOption(t *testing.T) {
	t.Setenv("TP_TEST_EMPTY", "")
	for _, tc := range []struct{ name, json, want string }{
		{"no brokers", `{"exporters":[{"type":"kafka"}]}`, "exporter kafka brokers: at least one host:port is required"},
		{"a url", `{"exporters":[{"type":"kafka","url":"kafka://u:hunter2@k:9092"}]}`, `exporter kafka takes brokers (host:port...), not a url; got url "kafka://redacted@k:9092"`},
		{"broker with a scheme", `{"exporters":[{"type":"kafka","brokers":["kafka://k:9092"]}]}`, `exporter kafka broker must be host:port, e.g. 127.0.0.1:9092, got "kafka://k:9092"`},
		{"broker without a port", `{"exporters":[{"type":"kafka","brokers":["k"]}]}`, `exporter kafka broker must be host:port`},
		{"encoding", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"encoding":"json"}]}`, `exporter kafka encoding must be one of zipkin_json, skywalking, otlp_proto; got "json"`},
		{"topic", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"topic":"a/b"}]}`, `exporter kafka topic must be 1 to 249 of the characters a-z A-Z 0-9 . _ -, got "a/b"`},
		{"management topic without skywalking", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"management_topic":"m"}]}`, "exporter kafka management_topic is an option of the skywalking encoding"},
		{"keepalive without skywalking", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"keepalive":1000000000}]}`, "exporter kafka: keepalive is an option of the skywalking encoding"},
		{"compression", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"compression":"brotli"}]}`, `exporter kafka compression must be one of none, gzip, snappy, lz4, zstd; got "brotli"`},
		{"sasl mechanism", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"sasl":{"mechanism":"gssapi","username":"u","password":"hunter2"}}]}`, `exporter kafka: sasl mechanism must be plain, scram-sha-256 or scram-sha-512, got "gssapi"`},
		{"sasl username", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"sasl":{"mechanism":"plain","password":"hunter2"}}]}`, "exporter kafka sasl: the username must not be empty"},
		{"sasl password unset", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"sasl":{"mechanism":"plain","username":"u","password":"{env.TP_TEST_EMPTY}"}}]}`, `exporter kafka: sasl password is empty ("{env.TP_TEST_EMPTY}" after placeholders)`},
		{"tls ca missing", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"tls":{"ca":"/nonexistent/ca.pem"}}]}`, "exporter kafka tls ca: open /nonexistent/ca.pem"},
		{"tls cert without key", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"tls":{"cert":"/c.pem"}}]}`, "tls cert and key must be"},
		{"header", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"headers":{"Authorization":"x"}}]}`, "exporter kafka: header and use_env_proxy are options of the HTTP exporters"},
		{"token", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"token":"hunter2"}]}`, "exporter kafka: instance, token and keepalive are SkyWalking options"},
		{"queue", `{"exporters":[{"type":"kafka","brokers":["k:9092"],"queue_size":10,"batch_size":20}]}`, "exporter kafka: batch_size must not exceed queue_size (10), got 20"},
		{"topic on zipkin", `{"exporters":[{"type":"zipkin","url":"http://h/api/v2/spans","topic":"spans"}]}`, "exporter zipkin: brokers, topic, management_topic and sasl are options of the kafka exporter"},
		{"kafka encoding on zipkin", `{"exporters":[{"type":"zipkin","url":"http://h/api/v2/spans","encoding":"zipkin_json"}]}`, "exporter zipkin: encoding is an option of the otlp and kafka exporters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.json)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// kafkaCluster starts an in-process Kafka cluster (franz-go's kfake) with
// the topics, 4 partitions each.
func kafkaCluster(t *testing.T, topics []string, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(4, topics...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// consumeKafka reads topic from its start until it holds at least n
// messages, then polls once more so that extra messages are seen too.
func consumeKafka(t *testing.T, brokers []string, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		done := len(out) >= n
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
		if done {
			return out
		}
	}
	t.Fatalf("topic %s: %d messages after 20s, want %d", topic, len(out), n)
	return nil
}

// kafkaTLS returns a server TLS configuration with a self-signed
// certificate for 127.0.0.1, and the path of that certificate in PEM, for
// the exporter's tls ca.
func kafkaTLS(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "kafka"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "kafka-ca.pem")
	if err := os.WriteFile(ca, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, ca
}

// A caller through a real Caddy to a Kafka cluster in each encoding, over
// plaintext, SCRAM and TLS: one message per request on the encoding's
// topic, keyed by the request's trace id, that the consumers' own decoders
// take strictly (the strict Zipkin decoder cross-checked with zipkin-go, the
// SkyWalking and OTLP stubs with no unknown field).
func TestKafkaEndToEnd(t *testing.T) {
	serverTLS, ca := kafkaTLS(t)
	t.Setenv("TP_TEST_KAFKA_PASSWORD", "s3cret-kafka")
	scramAuth := kgo.SASL(scram.Auth{User: "proxy", Pass: "s3cret-kafka"}.AsSha512Mechanism())
	for _, tc := range []struct {
		name    string
		cluster []kfake.Opt
		consume []kgo.Opt
		opts    string
		topic   string
		check   func(t *testing.T, traceID string, value []byte)
	}{
		{name: "zipkin_json", topic: "zipkin", check: func(t *testing.T, traceID string, value []byte) {
			spans, err := zipkintest.DecodeSpans(value)
			if err != nil {
				t.Fatalf("strict Zipkin decoder refuses the message: %v\n%s", err, value)
			}
			server, client := spansByKind(t, spans, traceID)
			if *client.ParentID != server.ID || server.LocalEndpoint == nil || server.LocalEndpoint.ServiceName == nil || *server.LocalEndpoint.ServiceName != "orders-legacy" {
				t.Errorf("SERVER %+v CLIENT %+v", server, client)
			}
		}},
		{
			name:    "skywalking over scram-sha-512",
			cluster: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "proxy", "s3cret-kafka")},
			consume: []kgo.Opt{scramAuth},
			opts:    "encoding skywalking\n\t\t\tsasl scram-sha-512 proxy {env.TP_TEST_KAFKA_PASSWORD}",
			topic:   "skywalking-segments",
			check: func(t *testing.T, _ string, value []byte) {
				var seg agentv3.SegmentObject
				if err := (proto.UnmarshalOptions{}).Unmarshal(value, &seg); err != nil {
					t.Fatalf("SegmentObject stubs refuse the message: %v", err)
				}
				if len(seg.ProtoReflect().GetUnknown()) > 0 {
					t.Errorf("unknown fields in the segment")
				}
				if seg.Service != "orders-legacy" || seg.ServiceInstance != "proxy-1" || seg.TraceSegmentId == "" || len(seg.Spans) != 2 {
					t.Fatalf("segment %v", &seg)
				}
				if e, x := seg.Spans[0], seg.Spans[1]; e.SpanType != agentv3.SpanType_Entry || x.SpanType != agentv3.SpanType_Exit || x.Peer == "" {
					t.Errorf("spans %v, %v: want an Entry and an Exit with a peer", e, x)
				}
			},
		},
		{
			name:    "otlp_proto over tls",
			cluster: []kfake.Opt{kfake.TLS(serverTLS)},
			consume: []kgo.Opt{kgo.DialTLSConfig(&tls.Config{InsecureSkipVerify: true})},
			opts:    "encoding otlp_proto\n\t\t\ttopic traces.proxy\n\t\t\tcompression lz4\n\t\t\ttls ca " + ca,
			topic:   "traces.proxy",
			check: func(t *testing.T, traceID string, value []byte) {
				req, err := otlptest.DecodeProto(value)
				if err != nil {
					t.Fatalf("strict OTLP decoder refuses the message: %v", err)
				}
				var spans []otlptest.Span
				for _, rs := range req.ResourceSpans {
					for _, ss := range rs.ScopeSpans {
						for _, s := range ss.Spans {
							spans = append(spans, otlptest.Span{Span: s, Resource: rs.Resource, Scope: ss.Scope})
						}
					}
				}
				server, client := otlpSpans(t, spans, traceID)
				if server.Kind != tracepb.Span_SPAN_KIND_SERVER || string(client.ParentSpanId) != string(server.SpanId) {
					t.Errorf("SERVER %v CLIENT %v", server.Span, client.Span)
				}
				checkAttrs(t, "resource", server.Resource.Attributes, map[string]any{"service.name": "orders-legacy", "service.instance.id": "proxy-1"})
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkaCluster(t, []string{tc.topic, "skywalking-managements"}, tc.cluster...)
			brokers := c.ListenAddrs()
			up := newUpstream(t)
			startCaddy(t, fmt.Sprintf(`	tracingproxy {
		service_name orders-legacy
		instance proxy-1
		propagation {
			inject w3c
		}
		exporter kafka %s {
			flush_interval 20ms
			flush_timeout 2s
			%s
		}
	}
	reverse_proxy %s`, strings.Join(brokers, " "), tc.opts, up.hostport()))

			const n = 3
			want := map[string]bool{}
			for i := range n {
				if res, _ := get(t, fmt.Sprintf("/orders/%d", i), nil); res.StatusCode != http.StatusOK {
					t.Fatalf("status %d", res.StatusCode)
				}
				traceID, _, _ := parseTraceparent(t, up.last(t).Get("Traceparent"))
				want[traceID] = true
			}
			msgs := consumeKafka(t, brokers, tc.topic, n, tc.consume...)
			if len(msgs) != n {
				t.Fatalf("%d messages, want one per request (%d)", len(msgs), n)
			}
			for _, m := range msgs {
				key := string(m.Key)
				if !want[key] {
					t.Fatalf("message key %q is no request's trace id (want one of %v)", key, want)
				}
				delete(want, key)
				tc.check(t, key, m.Value)
			}
			if tc.topic == "skywalking-segments" {
				mgmt := consumeKafka(t, brokers, "skywalking-managements", 1, tc.consume...)
				var props managementv3.InstanceProperties
				if string(mgmt[0].Key) != "register-proxy-1" || proto.Unmarshal(mgmt[0].Value, &props) != nil ||
					props.Service != "orders-legacy" || props.ServiceInstance != "proxy-1" {
					t.Errorf("management message %q: %v, want the instance properties of proxy-1", mgmt[0].Key, &props)
				}
			}
		})
	}
}

// A Kafka exporter whose SASL password the brokers refuse: exports fail and
// records are dropped, and neither /metrics nor any log line (drop
// warnings, failed attempts at debug level) repeats the password; the
// exporter is named by its first broker.
func TestKafkaCredentialsNeverLeak(t *testing.T) {
	c := kafkaCluster(t, []string{"zipkin"}, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "proxy", "right-one"))
	broker := c.ListenAddrs()[0]
	up := newUpstream(t)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	startCaddyWith(t, fmt.Sprintf(`	log {
		output file %s
		format json
		level DEBUG
	}`, logFile), fmt.Sprintf(`	tracingproxy {
		exporter kafka %s {
			sasl scram-sha-256 proxy wr0ngpassw0rd
			queue_size 2
			batch_size 1
			flush_interval 10ms
			timeout 1s
			max_retry_time 1500ms
		}
	}
	reverse_proxy %s`, broker, up.hostport()))
	for i := range 10 {
		if res, _ := get(t, fmt.Sprintf("/leak/%d", i), nil); res.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, res.StatusCode)
		}
	}
	testutil.Eventually(t, 20*time.Second, "records dropped after failed exports", func() bool {
		st := queueStats(t, broker)
		return st.Failures > 0 && st.Dropped[exporter.ReasonRetryExhausted]+st.Dropped[exporter.ReasonQueueFull] > 0
	})
	testutil.Eventually(t, 20*time.Second, "a drop warning naming the exporter by its broker", func() bool {
		return logHas(t, logFile, func(e map[string]any) bool {
			return e["msg"] == "dropped trace records" && e["exporter"] == "kafka "+broker
		})
	})
	res, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`exporter="kafka %s"`, broker); !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics has no series labelled %s", want)
	}
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "export failed") {
		t.Errorf("no failed export logged")
	}
	if strings.Contains(string(metrics), "wr0ngpassw0rd") {
		t.Errorf("/metrics contains the password")
	}
	for line := range strings.Lines(string(logs)) {
		if strings.Contains(line, "wr0ngpassw0rd") {
			t.Errorf("log line contains the password: %s", line)
		}
	}
}

// TestKafkaBrokerFaultsNeverHurtTraffic runs traffic through a real Caddy
// whose kafka exporter's broker is dead (nothing listens) or stalled
// (accepts connections and never answers): every request gets the
// upstream's status and body without waiting on the exporter, and the
// records that cannot be delivered are counted as dropped.
func TestKafkaBrokerFaultsNeverHurtTraffic(t *testing.T) {
	stalled := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c) // read nothing, answer nothing
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		return l.Addr().String()
	}
	for _, tc := range []struct {
		name   string
		broker func(t *testing.T) string
	}{
		{"dead broker", deadPort},
		{"stalled broker", stalled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := tc.broker(t)
			up := newUpstream(t)
			startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter kafka %s {
			queue_size %d
			batch_size %d
			flush_interval 20ms
			timeout %s
			max_retry_time %s
		}
	}
	reverse_proxy %s`, broker, faultQueueSize, faultBatchSize, faultTimeout, faultMaxRetryTime, up.hostport()))
			faultTraffic(t)
			testutil.Eventually(t, 15*time.Second, "undeliverable records counted as dropped", func() bool {
				st := queueStats(t, broker)
				return st.Enqueued == faultRequests && st.Dropped[exporter.ReasonQueueFull] > 0 && st.Dropped[exporter.ReasonRetryExhausted] > 0
			})
			if st := queueStats(t, broker); st.ExportedRecords != 0 {
				t.Errorf("%d records exported to a broker that cannot take them", st.ExportedRecords)
			}
		})
	}
}
