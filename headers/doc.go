// Package headers holds the trace identity that tracingproxy propagates
// (TraceID, SpanID, SpanContext), one codec per wire format, and the
// Propagator that extracts a context in a configured order of precedence and
// injects it in a configured set of formats.
//
// The package uses only the standard library. Extraction allocates nothing on
// the common path; a malformed header is never an error for the client: the
// format is treated as absent and the Propagator reports it so the caller can
// count and log it.
//
// Wire formats and the rules each codec follows:
//   - W3C Trace Context: https://www.w3.org/TR/trace-context/
//   - B3: https://github.com/openzipkin/b3-propagation
//   - SkyWalking sw8: https://skywalking.apache.org/docs/main/latest/en/api/x-process-propagation-headers-v3/
package headers
