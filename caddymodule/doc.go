// Package caddymodule is the Caddy v2 HTTP handler http.handlers.tracingproxy
// and its Caddyfile directive tracingproxy. It is the only package of
// tracingproxy that imports Caddy: it turns configuration into a Propagator,
// a Sampler and exporter queues, and for each request it extracts or starts
// the trace context, times the hop as a SERVER span and the upstream call as a
// CLIENT span, injects the context upstream and into response headers, and
// enqueues the finished record without ever blocking the request.
//
// Exporter queues live in a reference-counted pool keyed by their
// configuration, so a config reload keeps them (and what they hold) and only
// the last user flushes and stops them.
package caddymodule
