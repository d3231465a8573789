// Package swtest provides SkyWalking OAP receivers for tests: a gRPC
// collector built on the official goapi stubs (TraceSegmentReportService and
// ManagementService on a real grpc.Server over 127.0.0.1) and an HTTP
// collector that decodes POST /v3/segments and the management endpoints
// strictly with protojson into the goapi types. Both record what they receive,
// so a test checks exactly what an exporter sent, and both simulate the
// collector failures an exporter must survive: a stalled stream, a refused
// token, an error status, a collector that stops and comes back on the same
// port.
//
// The protocol is described in apache/skywalking
// docs/en/api/trace-data-protocol-v3.md and the goapi packages
// collect/language/agent/v3 and collect/management/v3.
package swtest
