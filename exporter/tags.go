package exporter

// Tag keys of a Record, the one place they are spelled (like zipkin-go's
// tags.go). The Caddy module writes them, every exporter reads them; the
// names are Zipkin Brave's, which is what a Record carries. Exporters of
// other backends map them: SkyWalking to OAP's reserved tags (SWTag*), OTLP
// to OpenTelemetry's stable HTTP semantic conventions (OTelKey). The values
// are pinned by TestTagKeys.
const (
	TagHTTPMethod       = "http.method"           // the request method, as the client sent it
	TagHTTPPath         = "http.path"             // the raw request path, never the query string
	TagHTTPRoute        = "http.route"            // the low-cardinality route the span is named after
	TagHTTPHost         = "http.host"             // the Host the client asked for (SERVER span)
	TagHTTPQuery        = "http.query"            // the query string, when record_query is on (SERVER span)
	TagHTTPStatusCode   = "http.status_code"      // the HTTP status, when there was a response
	TagHTTPResponseSize = "http.response.size"    // bytes of response body sent to the client (SERVER span)
	TagError            = "error"                 // the failure, only on a failed span
	TagSamplingReason   = "sampling.reason"       // why the record was kept (SERVER span)
	TagSW8TraceID       = "sw8.trace_id"          // the caller's verbatim SkyWalking trace id (SERVER span)
	TagRequestID        = "request_id"            // the request id the proxy carries (SERVER span)
	TagConflict         = "tracingproxy.conflict" // <format>:<trace id> of an inbound format that disagreed (SERVER span)
	TagUntrustedTraceID = "untrusted.trace_id"    // an untrusted caller's trace id, kept but not continued (SERVER span)
	TagUntrustedSpanID  = "untrusted.span_id"     // an untrusted caller's span id (SERVER span)

	// Tags of one upstream attempt (CLIENT span).
	TagPeerAddress      = "peer.address"              // the upstream host:port the attempt went to
	TagResendCount      = "http.request.resend_count" // the attempt number: 0 for the first, 1 for the first retry
	TagErrorType        = "error.type"                // a failed attempt's low-cardinality reason: connection_refused, timeout, tls, reset, ...
	TagConnectionReused = "network.connection.reused" // "true" when the attempt reused a kept-alive connection
	TagGRPCStatusCode   = "grpc.status_code"          // a gRPC call's grpc-status (Brave's name)

	// Tags of an egress call of a stitched service (CLIENT span).
	TagStitch           = "tracingproxy.stitch"            // the attribution method that matched: header, request_id, process, sole_inflight, none
	TagStitchCandidates = "tracingproxy.stitch.candidates" // with none: the span ids of the inbound requests in flight, comma-separated
	// Tags of a CONNECT tunnel through the forward proxy (CLIENT span).
	TagTunnel              = "tracingproxy.tunnel"   // "true": no header could be written into the call
	TagTunnelBytesSent     = "tunnel.bytes_sent"     // bytes the service sent to the destination
	TagTunnelBytesReceived = "tunnel.bytes_received" // bytes the destination sent to the service

	// Tags of a relayed upgraded connection (the local session span).
	TagSessionBytesFromClient = "session.bytes_from_client" // bytes the client sent over the session
	TagSessionBytesToClient   = "session.bytes_to_client"   // bytes sent to the client over the session
	TagSessionClosedBy        = "session.closed_by"         // which side ended it: client, upstream or proxy

	// Prefixes of the recorded request and response header tags, followed
	// by the lowercased header name.
	TagRequestHeaderPrefix  = "http.request.header."
	TagResponseHeaderPrefix = "http.response.header."
)

// Annotation values of an upstream attempt (CLIENT span). The connection
// phases appear only on an attempt that set up a new connection; ws and wr
// (Zipkin's wire send and wire receive) on every attempt that got that far.
const (
	AnnotationDNSStart     = "dns.start"     // resolving the upstream's name began
	AnnotationDNSDone      = "dns.done"      // the name was resolved (or failed to)
	AnnotationConnectStart = "connect.start" // the TCP connect began
	AnnotationConnectDone  = "connect.done"  // the TCP connect ended
	AnnotationTLSStart     = "tls.start"     // the TLS handshake began
	AnnotationTLSDone      = "tls.done"      // the TLS handshake ended
	AnnotationWireSend     = "ws"            // the request was written
	AnnotationWireReceive  = "wr"            // the first byte of the response arrived
)

// SkyWalking OAP's reserved tag keys, as its HTTP plugins write them: OAP
// indexes http.method and http.status_code, and shows url as the request.
const (
	SWTagHTTPMethod = "http.method"      // from TagHTTPMethod
	SWTagURL        = "url"              // from TagHTTPPath
	SWTagStatusCode = "http.status_code" // from Span.Status
)

// OpenTelemetry stable HTTP semantic-convention attribute names (semconv
// v1.26 and later), for an OTLP exporter.
const (
	OTelHTTPRequestMethod = "http.request.method"
	// OTelHTTPRequestMethodOriginal is the method as sent, when
	// http.request.method is _OTHER (a method the conventions do not know).
	OTelHTTPRequestMethodOriginal = "http.request.method_original"
	OTelURLScheme                 = "url.scheme"
	OTelServerPort                = "server.port"
	OTelUserAgentOriginal         = "user_agent.original"
	OTelURLPath                   = "url.path"
	OTelURLQuery                  = "url.query"
	OTelHTTPRoute                 = "http.route"
	OTelServerAddress             = "server.address"
	OTelHTTPResponseStatusCode    = "http.response.status_code"
	OTelHTTPResponseBodySize      = "http.response.body.size"
	OTelErrorType                 = "error.type"
	OTelHTTPRequestResendCount    = "http.request.resend_count"
	OTelRPCGRPCStatusCode         = "rpc.grpc.status_code"
	OTelNetworkPeerAddress        = "network.peer.address"
	OTelNetworkPeerPort           = "network.peer.port"
	OTelClientAddress             = "client.address"
)

// OTelKey returns the OpenTelemetry stable attribute name of a Record tag
// key, or key itself when the conventions have no name for it (header tags
// keep theirs: OTel's http.request.header.<name> is the same prefix).
func OTelKey(key string) string {
	switch key {
	case TagHTTPMethod:
		return OTelHTTPRequestMethod
	case TagHTTPPath:
		return OTelURLPath
	case TagHTTPQuery:
		return OTelURLQuery
	case TagHTTPHost:
		return OTelServerAddress
	case TagHTTPStatusCode:
		return OTelHTTPResponseStatusCode
	case TagHTTPResponseSize:
		return OTelHTTPResponseBodySize
	case TagGRPCStatusCode:
		return OTelRPCGRPCStatusCode
	}
	return key
}
