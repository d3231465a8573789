// Package zipkin exports exporter.Records to a Zipkin collector as Zipkin v2
// JSON: each Record becomes its SERVER span and one CLIENT span per upstream
// call, all in one JSON array POSTed to /api/v2/spans. The encoder is written
// by hand into one reused buffer, so a batch costs no allocation per span;
// LogExporter writes the same spans as one JSON object per line instead.
//
// Span model: https://github.com/openzipkin/zipkin-api/blob/master/zipkin2-api.yaml
package zipkin
