package main

import (
	"strings"
	"testing"
)

// --kafka exports to Kafka; --print-config shows it as the exporter lines a
// Caddyfile takes, and the handler gets exactly the brokers, topic and
// encoding given.
func TestProxyCommandKafka(t *testing.T) {
	for _, tc := range []struct {
		name    string
		k       kafkaFlags
		line    string
		brokers []string
		topic   string
		enc     string
	}{
		{"one broker", kafkaFlags{brokers: "127.0.0.1:9092"}, "exporter kafka 127.0.0.1:9092\n", []string{"127.0.0.1:9092"}, "", ""},
		{"fleet, topic, encoding", kafkaFlags{brokers: "kafka-0:9092, kafka-1:9092,", topic: "traces.proxy", encoding: "otlp_proto"},
			"exporter kafka kafka-0:9092 kafka-1:9092 {\n\t\t\ttopic traces.proxy\n\t\t\tencoding otlp_proto\n\t\t}\n",
			[]string{"kafka-0:9092", "kafka-1:9092"}, "traces.proxy", "otlp_proto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf, h := adapt(t, proxyOptions{from: ":8080", to: "127.0.0.1:9000", kafka: tc.k})
			if !strings.Contains(cf, tc.line) {
				t.Errorf("Caddyfile lacks %q:\n%s", tc.line, cf)
			}
			if strings.Contains(cf, "tracingproxy_ui") || strings.Contains(cf, "propagation") {
				t.Errorf("a UI or propagation beside --kafka without --ui or --inject:\n%s", cf)
			}
			exps, _ := h["exporters"].([]any)
			if len(exps) != 1 {
				t.Fatalf("exporters %v", h["exporters"])
			}
			e := exps[0].(map[string]any)
			var brokers []string
			for _, b := range e["brokers"].([]any) {
				brokers = append(brokers, b.(string))
			}
			if e["type"] != "kafka" || strings.Join(brokers, ",") != strings.Join(tc.brokers, ",") ||
				(e["topic"] != nil || tc.topic != "") && e["topic"] != tc.topic || (e["encoding"] != nil || tc.enc != "") && e["encoding"] != tc.enc {
				t.Errorf("exporter %v, want brokers %v topic %q encoding %q", e, tc.brokers, tc.topic, tc.enc)
			}
		})
	}
	// SkyWalking segments through Kafka: a SkyWalking agent behind the
	// proxy joins the trace only through sw8, as with --skywalking.
	cf, _ := adapt(t, proxyOptions{from: ":8080", to: "127.0.0.1:9000", kafka: kafkaFlags{brokers: "k:9092", encoding: "skywalking"}})
	for _, want := range []string{"extract w3c b3 sw8", "inject w3c b3 sw8", "encoding skywalking"} {
		if !strings.Contains(cf, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, cf)
		}
	}
}

func TestProxyCommandRefusesBadKafkaFlags(t *testing.T) {
	for _, tc := range []struct {
		k    kafkaFlags
		want string
	}{
		{kafkaFlags{brokers: "kafka://k:9092"}, `--kafka must be host:port[,host:port...], e.g. kafka-0:9092,kafka-1:9092; got "kafka://k:9092"`},
		{kafkaFlags{brokers: "k:9092,k2"}, `got "k2"`},
		{kafkaFlags{brokers: "k:0"}, "--kafka must be host:port"},
		{kafkaFlags{brokers: " , "}, `--kafka must be host:port[,host:port...], got " , "`},
		{kafkaFlags{brokers: "k:9092", encoding: "json"}, `--kafka-encoding must be zipkin_json, skywalking or otlp_proto, got "json"`},
		{kafkaFlags{topic: "spans"}, "--kafka-topic and --kafka-encoding need --kafka <host:port,...>"},
		{kafkaFlags{encoding: "otlp_proto"}, "--kafka-topic and --kafka-encoding need --kafka"},
	} {
		o := proxyOptions{from: ":8080", to: "127.0.0.1:9000", kafka: tc.k}
		if _, err := o.caddyfile(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.k, err, tc.want)
		}
	}
}
