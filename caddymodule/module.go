package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tracingproxy/tracingproxy/exporter"

	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/sampler"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Version is tracingproxy's version, reported to backends that ask for it
// (SkyWalking instance properties). Release builds set it with -ldflags.
var Version = "0.1.0-dev"

// Handler traces the requests that pass through it: it reads or starts the
// trace context, records a SERVER span for the hop into the proxy and a CLIENT
// span for the call to the upstream, passes the context on to the upstream and
// back to the client, and exports the spans. Tracing never fails, blocks or
// changes a request: bad trace headers start a new trace, and exporters work
// off the request path on bounded queues.
type Handler struct {
	// ServiceName names the proxied service in the tracing backend.
	// Default: tracingproxy.
	ServiceName string `json:"service_name,omitempty"`

	// Instance names this proxy instance (SkyWalking service instance).
	// Default: <hostname>@<first non-loopback IPv4>.
	Instance string `json:"instance,omitempty"`

	// Propagation chooses the header formats read and written, and whose
	// trace context is trusted.
	Propagation *Propagation `json:"propagation,omitempty"`

	// SampleRatio is the fraction of new traces that are sampled, in [0,1];
	// callers' decisions are followed. Default: 1.
	SampleRatio *float64 `json:"sample_ratio,omitempty"`

	// Sampler chooses which traces are recorded, beyond sample_ratio: rate
	// caps, per-route rules, and keeping failed or slow requests.
	Sampler *SamplerConfig `json:"sampler,omitempty"`

	// ResponseHeaders chooses what the client is told about its trace.
	// Default: nothing.
	ResponseHeaders *ResponseHeaders `json:"response_headers,omitempty"`

	// UpstreamAddress is the upstream address written into the sw8 header
	// (the address SkyWalking links the next service by). Default: the
	// address reverse_proxy last dialled for this handler, or the request's
	// Host before the first dial.
	UpstreamAddress string `json:"upstream_address,omitempty"`

	// RecordQuery records the query string as the tag http.query. Default:
	// off; paths are recorded without their query, which often carries
	// secrets.
	RecordQuery bool `json:"record_query,omitempty"`
	// RecordRequestHeaders lists request headers recorded as the tags
	// http.request.header.<name>. Default: none (Authorization and Cookie
	// are never recorded unless listed).
	RecordRequestHeaders []string `json:"record_request_headers,omitempty"`
	// RecordResponseHeaders lists response headers recorded as the tags
	// http.response.header.<name>. Default: none.
	RecordResponseHeaders []string `json:"record_response_headers,omitempty"`
	// MaxTagLength caps the bytes of every tag value taken from the
	// request or response. Default: 256.
	MaxTagLength int `json:"max_tag_length,omitempty"`
	// SpanName names the spans (and the SkyWalking endpoint) of every
	// request this handler traces, instead of "<METHOD> <route>". Caddy
	// placeholders are replaced when the request arrives, so a handler in
	// a handle block can name its own route, e.g.
	// "{http.request.method} /api/orders/*"; braces that are no
	// placeholder, like {id}, stay as written. Default: "<METHOD> <route>".
	SpanName string `json:"span_name,omitempty"`
	// RoutePatterns are path patterns (Caddyfile: route) that name a request's route (the http.route
	// tag and the default span name) when its path matches: segments are
	// names, {name} (any one segment) or, last, * (the rest of the path).
	// The first match wins, e.g. "/orders/{id}/items". Default: none; a
	// path that matches none is named with its id-like segments as {id}.
	RoutePatterns []string `json:"route_patterns,omitempty"`

	// Exporters send the spans to tracing backends; each has its own queue.
	// Default: one log exporter.
	Exporters []*ExporterConfig `json:"exporters,omitempty"`

	// Stitch, on the handler in front of a service, registers its inbound
	// requests so that the service's outbound calls, through its egress
	// listeners, join their traces. Default: off.
	Stitch *Stitch `json:"stitch,omitempty"`
	// Egress makes this handler an egress listener's: it traces the
	// outbound calls of the service named by service_name (see Stitch).
	// Default: off (the handler traces inbound requests).
	Egress *Egress `json:"egress,omitempty"`

	prop     *propagation
	sampler  sampler.Sampler
	keep     keepPolicy
	trust    trustPolicy
	segments bool // SkyWalking segment ids are needed
	queues   []*pooledQueue
	logger   *zap.Logger
	metrics  *metrics
	state    *handlerState
	flights  *flights        // watched requests in flight
	observe  func(*reqState) // Explain's view of a request; nil when serving
	routes   []routePattern  // compiled RoutePatterns
	reqTags  []headerTag     // recorded request headers
	respTags []headerTag     // recorded response headers
	// stitchReg is the service's attribution state (ingress with Stitch);
	// egressSvc the service an egress handler reads it from.
	stitchReg *pooledRegistry
	egressSvc *stitchService
}

// headerTag is a header recorded as a span tag.
type headerTag struct{ header, tag string }

// ResponseHeaders selects the trace headers set on the response.
type ResponseHeaders struct {
	// ServerTiming writes Server-Timing: trace;desc=00-<trace-id>-<span-id>-<flags>
	// (W3C Trace Context level 3 draft), naming the SERVER span.
	ServerTiming bool `json:"server_timing,omitempty"`
	// TraceResponse writes traceresponse: 00-<trace-id>-<span-id>-<flags>,
	// the abandoned W3C draft's header, for clients that still read it.
	TraceResponse bool `json:"traceresponse,omitempty"`
	// TraceID names a header that receives the 32-hex trace id, e.g.
	// X-Trace-Id.
	TraceID string `json:"trace_id,omitempty"`
	// TraceURL writes a link to the trace in the user's tracing UI.
	TraceURL *TraceURL `json:"trace_url,omitempty"`
	// ToUntrusted also sends these headers to clients outside
	// propagation trust. Default: only trusted clients get them.
	ToUntrusted bool `json:"to_untrusted,omitempty"`
	// UpstreamWins keeps the upstream's value where the upstream's response
	// sets a header of the same name (or a Server-Timing "trace" metric).
	// Default: ours replace the upstream's. The client never gets both.
	UpstreamWins bool `json:"upstream_wins,omitempty"`
}

// TraceURL is a response header holding a link built from a template.
type TraceURL struct {
	// Header is the header's name, e.g. X-Trace-Url.
	Header string `json:"header"`
	// Template is the link, with {trace_id} (32 hex) and {span_id} (the
	// SERVER span) replaced, e.g. http://zipkin:9411/zipkin/traces/{trace_id}.
	Template string `json:"template"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tracingproxy",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Default option values.
const (
	defaultServiceName  = "tracingproxy"
	defaultMaxTagLength = 256
)

// Provision sets defaults and builds the propagator, sampler and exporter
// queues.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.ServiceName == "" {
		h.ServiceName = defaultServiceName
	}
	// A SkyWalking exporter may name the instance; segments carry the
	// handler's, so the two must agree.
	for _, ec := range h.Exporters {
		if ec.Type != exporterSkyWalking || ec.Instance == "" {
			continue
		}
		if h.Instance == "" {
			h.Instance = ec.Instance
		} else if h.Instance != ec.Instance {
			return fmt.Errorf("instance %q and exporter skywalking instance %q differ: set one", h.Instance, ec.Instance)
		}
	}
	if h.Instance == "" {
		h.Instance = defaultInstance()
	}
	var err error
	if h.prop, err = h.Propagation.build(); err != nil {
		return err
	}
	if h.Propagation != nil {
		if h.trust, err = parseTrust(h.Propagation.Trust); err != nil {
			return err
		}
	} else {
		h.trust = trustPolicy{all: true}
	}
	for _, f := range h.prop.prop.InjectFormats() {
		if f == headers.FormatSW8 || f == headers.FormatSW6 {
			h.segments = true
		}
	}

	if h.MaxTagLength < 0 {
		return fmt.Errorf("max_tag_length must not be negative, got %d", h.MaxTagLength)
	}
	if h.MaxTagLength == 0 {
		h.MaxTagLength = defaultMaxTagLength
	}
	for _, p := range h.RoutePatterns {
		rp, err := compileRoute(p)
		if err != nil {
			return err
		}
		h.routes = append(h.routes, rp)
	}
	if strings.ContainsAny(h.SpanName, "\r\n\x00") {
		return fmt.Errorf("span_name must not contain control characters, got %q", h.SpanName)
	}
	for _, list := range []struct {
		opt, prefix string
		names       []string
		dst         *[]headerTag
	}{
		{"record_request_headers", exporter.TagRequestHeaderPrefix, h.RecordRequestHeaders, &h.reqTags},
		{"record_response_headers", exporter.TagResponseHeaderPrefix, h.RecordResponseHeaders, &h.respTags},
	} {
		for _, n := range list.names {
			if !validHeaderName(n) {
				return fmt.Errorf("%s: %q is not a valid header name", list.opt, n)
			}
			*list.dst = append(*list.dst, headerTag{http.CanonicalHeaderKey(n), list.prefix + strings.ToLower(n)})
		}
	}
	if h.SampleRatio != nil && !(*h.SampleRatio >= 0 && *h.SampleRatio <= 1) {
		return fmt.Errorf("sample_ratio must be between 0 and 1, got %g", *h.SampleRatio)
	}
	if h.sampler, h.keep, err = h.buildSampler(); err != nil {
		return err
	}

	if len(h.Exporters) == 0 {
		// The default shows what a first run traced two ways: in
		// tracingproxy_ui (where one is mounted) and on the log.
		h.Exporters = []*ExporterConfig{{Type: exporterMemory}, {Type: exporterLog}}
	}
	h.metrics = registerMetrics(ctx)
	h.state = new(handlerState)
	h.flights = new(flights)
	// Every exporter is checked before the first queue or worker starts.
	for _, ec := range h.Exporters {
		if err := ec.validate(); err != nil {
			return err
		}
	}
	for _, ec := range h.Exporters {
		for _, w := range ec.warnings() {
			h.logger.Warn(w)
		}
	}
	for _, ec := range h.Exporters {
		if ec.Type == exporterSkyWalking || ec.kafkaSkyWalking() {
			h.segments = true
		}
		pq, err := acquireQueue(ec, h)
		if err != nil {
			return err
		}
		h.queues = append(h.queues, pq)
	}
	return h.provisionStitch(ctx)
}

// Validate checks the configuration; errors name the option at fault.
func (h *Handler) Validate() error {
	if rh := h.ResponseHeaders; rh != nil {
		if rh.TraceID != "" && !validHeaderName(rh.TraceID) {
			return fmt.Errorf("response_headers trace_id: %q is not a valid header name", rh.TraceID)
		}
		if u := rh.TraceURL; u != nil {
			if !validHeaderName(u.Header) {
				return fmt.Errorf("response_headers trace_url: %q is not a valid header name", u.Header)
			}
			if !strings.Contains(u.Template, "{trace_id}") || strings.ContainsAny(u.Template, "\r\n\x00") {
				return fmt.Errorf("response_headers trace_url: template must contain {trace_id} and no control characters, got %q", u.Template)
			}
		}
	}
	return nil
}

// Cleanup releases this handler's hold on its exporter queues; the last
// holder flushes and stops them. It copes with a half-provisioned handler.
// The queues stay referenced: requests still in flight on the old
// configuration enqueue their records after Cleanup, and a queue the next
// configuration kept takes them; one that was stopped counts them as
// dropped (reason shutdown).
func (h *Handler) Cleanup() error {
	if h.flights != nil && processExiting() {
		// The process exits once its modules are cleaned up: requests
		// that outlived the grace period will never return.
		if n := h.flights.cutAll(h); n > 0 {
			h.logger.Warn("requests cut at shutdown recorded", zap.Int("requests", n))
		}
	}
	var errs []error
	if err := h.cleanupStitch(); err != nil {
		errs = append(errs, err)
	}
	for _, pq := range h.queues {
		if err := pq.release(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.Egress != nil {
		return h.serveEgress(w, r, next)
	}
	return h.serve(w, r, next)
}

// defaultInstance is <hostname>@<first non-loopback IPv4>, as SkyWalking
// agents name instances.
func defaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	if ip := firstIPv4(); ip != "" {
		return host + "@" + ip
	}
	return host
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
