package exporter

import "testing"

// TestTagKeys pins the tag keys every backend sees: changing one breaks
// dashboards and searches built on it, so it must be a deliberate change
// here too.
func TestTagKeys(t *testing.T) {
	t.Parallel()
	pinned := [][2]string{
		{TagHTTPMethod, "http.method"},
		{TagHTTPPath, "http.path"},
		{TagHTTPRoute, "http.route"},
		{TagHTTPHost, "http.host"},
		{TagHTTPQuery, "http.query"},
		{TagHTTPStatusCode, "http.status_code"},
		{TagHTTPResponseSize, "http.response.size"},
		{TagError, "error"},
		{TagSamplingReason, "sampling.reason"},
		{TagSW8TraceID, "sw8.trace_id"},
		{TagRequestID, "request_id"},
		{TagConflict, "tracingproxy.conflict"},
		{TagUntrustedTraceID, "untrusted.trace_id"},
		{TagUntrustedSpanID, "untrusted.span_id"},
		{TagPeerAddress, "peer.address"},
		{TagResendCount, "http.request.resend_count"},
		{TagErrorType, "error.type"},
		{TagConnectionReused, "network.connection.reused"},
		{TagGRPCStatusCode, "grpc.status_code"},
		{TagStitch, "tracingproxy.stitch"},
		{TagStitchCandidates, "tracingproxy.stitch.candidates"},
		{TagTunnel, "tracingproxy.tunnel"},
		{TagTunnelBytesSent, "tunnel.bytes_sent"},
		{TagTunnelBytesReceived, "tunnel.bytes_received"},
		{TagSessionBytesFromClient, "session.bytes_from_client"},
		{TagSessionBytesToClient, "session.bytes_to_client"},
		{TagSessionClosedBy, "session.closed_by"},
		{TagRequestHeaderPrefix, "http.request.header."},
		{TagResponseHeaderPrefix, "http.response.header."},
		{AnnotationDNSStart, "dns.start"},
		{AnnotationDNSDone, "dns.done"},
		{AnnotationConnectStart, "connect.start"},
		{AnnotationConnectDone, "connect.done"},
		{AnnotationTLSStart, "tls.start"},
		{AnnotationTLSDone, "tls.done"},
		{AnnotationWireSend, "ws"},
		{AnnotationWireReceive, "wr"},
		{SWTagHTTPMethod, "http.method"},
		{SWTagURL, "url"},
		{SWTagStatusCode, "http.status_code"},
	}
	for _, p := range pinned {
		if p[0] != p[1] {
			t.Errorf("tag key %q, want %q", p[0], p[1])
		}
	}
}

// TestOTelKey pins the mapping to OpenTelemetry's stable HTTP semantic
// conventions that an OTLP exporter writes.
func TestOTelKey(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		TagHTTPMethod:           "http.request.method",
		TagHTTPPath:             "url.path",
		TagHTTPQuery:            "url.query",
		TagHTTPHost:             "server.address",
		TagHTTPStatusCode:       "http.response.status_code",
		TagHTTPResponseSize:     "http.response.body.size",
		TagHTTPRoute:            "http.route",
		TagGRPCStatusCode:       "rpc.grpc.status_code",
		TagError:                "error",
		"http.request.header.x": "http.request.header.x",
		"custom":                "custom",
	}
	for in, want := range tests {
		if got := OTelKey(in); got != want {
			t.Errorf("OTelKey(%q) = %q, want %q", in, got, want)
		}
	}
	otel := map[string]string{
		OTelHTTPRequestMethod:      "http.request.method",
		OTelURLPath:                "url.path",
		OTelURLQuery:               "url.query",
		OTelHTTPRoute:              "http.route",
		OTelServerAddress:          "server.address",
		OTelHTTPResponseStatusCode: "http.response.status_code",
		OTelHTTPResponseBodySize:   "http.response.body.size",
		OTelErrorType:              "error.type",
		OTelHTTPRequestResendCount: "http.request.resend_count",
		OTelNetworkPeerAddress:     "network.peer.address",
		OTelNetworkPeerPort:        "network.peer.port",
		OTelClientAddress:          "client.address",
	}
	for got, want := range otel {
		if got != want {
			t.Errorf("OTel key %q, want %q", got, want)
		}
	}
}
