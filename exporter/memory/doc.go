// Package memory keeps recent traces in a bounded in-process store and
// answers Zipkin's v2 query API over it, so the spans a proxy records can be
// looked at with no tracing backend: the embedded waterfall UI, Grafana's
// Zipkin data source or the Zipkin UI read it as they would read Zipkin.
//
// The store holds Zipkin v2 spans grouped by trace, bounded by a number of
// traces and an estimate of their bytes; the oldest trace is evicted first,
// and evictions are counted. Exporter writes exporter.Records into it from
// a queue's worker, off the request path; the query API and
// POST /api/v2/spans are served by Handler.
//
// Query API: https://github.com/openzipkin/zipkin-api/blob/master/zipkin2-api.yaml
package memory
