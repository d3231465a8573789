// Package httpexport is the HTTP delivery core every HTTP-based exporter
// shares: the transport (bounded waits, no redirects, no environment proxy
// unless asked), header validation, the capped Retry-After parser, the
// classification of answers into success, retryable and permanent failures,
// response draining, the user agent, gzip, and a guard that cuts a reused
// request body off once the export returned.
package httpexport
