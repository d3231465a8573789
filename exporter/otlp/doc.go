// Package otlp exports records as OpenTelemetry spans over OTLP/HTTP
// (protobuf, POST {url}), encoding ExportTraceServiceRequest straight to
// protobuf wire format from the Record, with the stable HTTP semantic
// conventions and the OpenTelemetry status rules.
package otlp
