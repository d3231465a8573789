package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tracingproxy/tracingproxy/headers"
)

// annotate exposes the ids as {http.vars.trace_id}, {http.vars.span_id} and
// in the access log (trace_id, span_id). The ids become strings only when
// something reads them.
func annotate(r *http.Request, ids *traceIDs) {
	ctx := r.Context()
	caddyhttp.SetVar(ctx, "trace_id", (*traceIDVar)(ids))
	caddyhttp.SetVar(ctx, "span_id", (*spanIDVar)(ids))
	// Adding a log field costs an allocation in Caddy on every call; skip it
	// on servers that log no access.
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Logs == nil {
		return
	}
	if extra, ok := ctx.Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.Inline(ids))
	}
}

// traceIDs are the ids a request exposes to placeholders and logs.
type traceIDs struct {
	trace headers.TraceID
	span  headers.SpanID
}

// MarshalLogObject writes trace_id and span_id.
func (ids *traceIDs) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("trace_id", ids.trace.String())
	enc.AddString("span_id", ids.span.String())
	return nil
}

// traceIDVar is the value of {http.vars.trace_id}.
type traceIDVar traceIDs

// String returns the 32-hex trace id.
func (v *traceIDVar) String() string { return v.trace.String() }

// spanIDVar is the value of {http.vars.span_id}.
type spanIDVar traceIDs

// String returns the 16-hex SERVER span id.
func (v *spanIDVar) String() string { return v.span.String() }
