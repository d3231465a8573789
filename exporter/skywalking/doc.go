// Package skywalking exports exporter.Records to Apache SkyWalking in its v3
// protocol: one SegmentObject per proxied request, with an Entry span for the
// hop into the proxy and an Exit span per upstream call, sent over gRPC
// (TraceSegmentReportService/collect, a client stream, on the OAP's port
// 11800) or HTTP (POST /v3/segments, protobuf-JSON, on port 12800). It also
// registers the proxy as a service instance (reportInstanceProperties once,
// then keepAlive periodically), as SkyWalking's language agents do.
//
// Messages are the official stubs of skywalking.apache.org/repo/goapi. The
// protocol is described at
// https://skywalking.apache.org/docs/main/latest/en/api/trace-data-protocol-v3/
// and https://skywalking.apache.org/docs/main/latest/en/api/instance-properties/.
package skywalking
