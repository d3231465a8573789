package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// kafkaFlags are the proxy subcommand's --kafka flags.
type kafkaFlags struct {
	// brokers are the seed brokers, comma-separated; empty for no kafka
	// exporter.
	brokers, topic, encoding string
}

// list returns the brokers, one host:port each.
func (k *kafkaFlags) list() []string {
	var out []string
	for _, b := range strings.Split(k.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// skyWalking reports whether the messages are SkyWalking segments.
func (k *kafkaFlags) skyWalking() bool { return k.brokers != "" && k.encoding == "skywalking" }

// check refuses what the kafka exporter would refuse at load, naming the
// flag.
func (k *kafkaFlags) check() error {
	if k.brokers == "" {
		if k.topic != "" || k.encoding != "" {
			return fmt.Errorf("--kafka-topic and --kafka-encoding need --kafka <host:port,...>")
		}
		return nil
	}
	brokers := k.list()
	if len(brokers) == 0 {
		return fmt.Errorf("--kafka must be host:port[,host:port...], got %q", k.brokers)
	}
	for _, b := range brokers {
		host, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 || strings.ContainsAny(b, "/@ \t") {
			return fmt.Errorf("--kafka must be host:port[,host:port...], e.g. kafka-0:9092,kafka-1:9092; got %q", b)
		}
	}
	switch k.encoding {
	case "", "zipkin_json", "skywalking", "otlp_proto":
	default:
		return fmt.Errorf("--kafka-encoding must be zipkin_json, skywalking or otlp_proto, got %q", k.encoding)
	}
	return nil
}

// write appends the kafka exporter to a tracingproxy block, if any.
func (k *kafkaFlags) write(b *strings.Builder) {
	if k.brokers == "" {
		return
	}
	b.WriteString("\t\texporter kafka")
	for _, br := range k.list() {
		fmt.Fprintf(b, " %s", quote(br))
	}
	if k.topic == "" && k.encoding == "" {
		b.WriteString("\n")
		return
	}
	b.WriteString(" {\n")
	if k.topic != "" {
		fmt.Fprintf(b, "\t\t\ttopic %s\n", quote(k.topic))
	}
	if k.encoding != "" {
		fmt.Fprintf(b, "\t\t\tencoding %s\n", k.encoding)
	}
	b.WriteString("\t\t}\n")
}
