// Package otlptest is a strict OpenTelemetry collector for tests, built on
// the official go.opentelemetry.io/proto/otlp stubs: an OTLP/HTTP receiver
// (POST /v1/traces, protobuf or JSON, gzip) and an OTLP/gRPC receiver
// (TraceService/Export, gzip) that decode every request with no unknown
// field allowed, check every span against the OTLP rules, and keep what they
// accept. On demand they misbehave as collectors do: refuse connections,
// answer an error status (or a gRPC code with RetryInfo), hang, answer
// late, flap, or accept part of a batch (partial success).
package otlptest
