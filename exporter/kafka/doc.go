// Package kafka exports records to Kafka topics, where Zipkin's Kafka
// collector, SkyWalking OAP's kafka-fetcher and the OpenTelemetry
// Collector's Kafka receiver read them: a Zipkin v2 JSON list of spans, a
// SkyWalking SegmentObject or an OTLP ExportTraceServiceRequest per message,
// one message per record, keyed by the trace id so that a trace stays in one
// partition. It runs behind an exporter.Queue like every exporter: a broker
// that is down, slow or refusing costs queued records, never traffic.
//
// The client is franz-go (github.com/twmb/franz-go/pkg/kgo), a pure-Go
// Kafka client. See https://kafka.apache.org/protocol for the protocol.
package kafka
