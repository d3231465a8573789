package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tracingproxy/tracingproxy/headers"
)

// Explanation is what the handler does with one request: what it extracted,
// whom it trusted, what the sampler decided and why, and the exact headers
// the upstream and the client receive.
type Explanation struct {
	// Request is the request headers given.
	Request http.Header
	// Format is the format the context came from; FormatNone for a new
	// trace.
	Format headers.Format
	// Caller is the context extracted from the request.
	Caller headers.SpanContext
	// Malformed lists the formats whose headers were invalid, and Err the
	// first one's error.
	Malformed headers.FormatSet
	Err       error
	// Conflict is a lower-precedence format that named another trace.
	Conflict headers.Format
	// Trusted says whether the client may set the trace context.
	Trusted bool
	// Sampler describes the sampler; Sampled and Reason are its verdict.
	Sampler string
	Sampled bool
	Reason  string
	// TraceID is the trace of the hop; ServerID and ClientID its spans.
	TraceID  headers.TraceID
	ServerID headers.SpanID
	ClientID headers.SpanID
	// Upstream is the request headers the upstream receives.
	Upstream http.Header
	// Response is the response headers tracingproxy adds.
	Response http.Header
}

// Explain runs the handler's request path on a request with the given
// method, path, client address and headers, with a stand-in upstream and no
// exporting, and reports what happened. It is for a provisioned handler that
// is not serving traffic (the explain command builds its own).
func (h *Handler) Explain(method, path, remoteAddr string, hdr http.Header) (*Explanation, error) {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = remoteAddr
	r.Header = hdr.Clone()
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	r = r.WithContext(ctx)

	ex := &Explanation{Request: hdr, Sampler: h.sampler.Description()}
	queues := h.queues
	h.queues = nil
	defer func() { h.queues = queues }()
	h.observe = func(st *reqState) {
		t := &st.hop
		ex.Format, ex.Caller = st.in.Format, st.in.SpanContext
		ex.Malformed, ex.Err, ex.Conflict = st.in.Malformed, st.in.Err, st.in.Conflict
		ex.Trusted = t.trusted
		ex.Sampled, ex.Reason = t.decision.Sample, string(t.decision.Reason)
		ex.TraceID, ex.ServerID, ex.ClientID = t.out.TraceID, t.serverID, t.out.SpanID
	}
	defer func() { h.observe = nil }()

	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ex.Upstream = r.Header.Clone()
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err := h.serve(w, r, next); err != nil {
		return nil, err
	}
	ex.Response = w.Result().Header
	return ex, nil
}

// Print writes the explanation for an operator.
func (ex *Explanation) Print(out io.Writer) {
	fmt.Fprintln(out, "request headers:")
	printHeaders(out, ex.Request)
	if !ex.Trusted {
		fmt.Fprintln(out, "trust:      the client is NOT trusted: its trace headers are ignored")
	}
	if ex.Malformed != 0 {
		fmt.Fprintf(out, "malformed:  %s (%v): ignored\n", ex.Malformed, ex.Err)
	}
	if ex.Format == headers.FormatNone {
		fmt.Fprintln(out, "extracted:  nothing: a new trace starts")
	} else {
		c := ex.Caller
		if c.HasIDs() {
			fmt.Fprintf(out, "extracted:  %s: trace %s, caller span %s, sampling %s", ex.Format, c.TraceID, c.SpanID, c.Sampling)
			if c.TraceID64 {
				fmt.Fprint(out, " (64-bit trace id)")
			}
			if c.SW.TraceID != "" {
				fmt.Fprintf(out, ", SkyWalking trace %q segment %q span %d", c.SW.TraceID, c.SW.SegmentID, c.SW.SpanID)
			}
			fmt.Fprintln(out)
		} else {
			fmt.Fprintf(out, "extracted:  %s: a sampling decision only (%s), no ids: a new trace starts\n", ex.Format, c.Sampling)
		}
	}
	if ex.Conflict != headers.FormatNone {
		fmt.Fprintf(out, "conflict:   %s names another trace; %s wins by extract order\n", ex.Conflict, ex.Format)
	}
	verdict := "not sampled"
	if ex.Sampled {
		verdict = "sampled"
	}
	fmt.Fprintf(out, "sampler:    %s says %s (reason %s)\n", ex.Sampler, verdict, ex.Reason)
	fmt.Fprintf(out, "spans:      trace %s: SERVER %s, CLIENT %s (the upstream's parent)\n", ex.TraceID, ex.ServerID, ex.ClientID)
	fmt.Fprintln(out, "upstream receives:")
	printHeaders(out, ex.Upstream)
	fmt.Fprintln(out, "client receives (added by tracingproxy):")
	printHeaders(out, ex.Response)
}

func printHeaders(out io.Writer, h http.Header) {
	if len(h) == 0 {
		fmt.Fprintln(out, "    (none)")
		return
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(out, "    %s: %s\n", strings.ToLower(k), v)
		}
	}
}
