// Package exporter defines the protocol-neutral Record of one proxied request,
// the Exporter interface that backends (Zipkin, SkyWalking, log) implement,
// and the Queue that batches records off the request path.
//
// The Queue is bounded and Enqueue never blocks: when it is full a record is
// dropped and counted. One worker per queue batches by size or interval and
// exports with a timeout, so a slow, hanging or dead collector never slows a
// request. The design follows OpenTelemetry's BatchSpanProcessor.
package exporter
