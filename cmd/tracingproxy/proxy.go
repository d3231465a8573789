package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "proxy",
		Usage: "--from <addr> --to <upstream> [--service <name>] [--zipkin <url>] [--skywalking <url>] [--otlp <url>] [--kafka <host:port,...> [--kafka-topic <topic>] [--kafka-encoding zipkin_json|skywalking|otlp_proto]] [--sample <0..1>] [--extract w3c,b3] [--inject w3c,b3] [--response-headers] [--egress <listen>=<url>]... [--forward-proxy <listen>] [--stitch <methods>] [--request-id-header <name>] [--ui <addr>|off] [--admin <addr>] [--print-config] [--debug]",
		Short: "Trace an HTTP service without touching it",
		Long: `
Serves plain HTTP on --from and proxies every request to --to, tracing each
hop: it continues the caller's trace (W3C, B3, ...) or starts one, records a
SERVER and a CLIENT span, passes the context on to the upstream, and exports
the spans to Zipkin (--zipkin), SkyWalking (--skywalking) or an OpenTelemetry
collector (--otlp: Jaeger, Tempo, an OpenTelemetry Collector), or to a Kafka
topic (--kafka) that Zipkin collectors, SkyWalking OAP or OpenTelemetry
Collectors read. With none,
spans are kept in memory and shown by a waterfall UI (and Zipkin's query
API) on --ui, by default http://127.0.0.1:9412/, and written to the log on
stderr.

Egress: each --egress 127.0.0.1:9001=http://payments.internal:8080 opens a
listener (loopback clients only) the service calls instead of its real
upstream; each call is attributed to the inbound request that made it
(--stitch, default "header request_id process sole_inflight"), recorded as
a CLIENT span of the service in that request's trace, and forwarded to the
URL (https: TLS is originated here) with trace headers naming that span.
--forward-proxy 127.0.0.1:3128 opens the listener the service's HTTP_PROXY
and HTTPS_PROXY name: http:// requests are traced the same way, CONNECT
tunnels are relayed and recorded with their bytes each way.

No automatic HTTPS; no admin endpoint unless --admin is given. --print-config
prints the equivalent Caddyfile and exits: a starting point for a real
deployment.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("from", ":8080", "Address to serve plain HTTP on")
			cmd.Flags().String("to", "", "Upstream address (host:port or http(s)://host:port)")
			cmd.Flags().String("service", "", "Service name in the tracing backend (default tracingproxy)")
			cmd.Flags().String("zipkin", "", "Zipkin spans endpoint, e.g. http://127.0.0.1:9411/api/v2/spans")
			cmd.Flags().String("skywalking", "", "SkyWalking OAP address: grpc://host:11800 or http://host:12800")
			cmd.Flags().String("otlp", "", "OpenTelemetry collector: http://host:4318 (OTLP/HTTP, /v1/traces) or grpc://host:4317 (OTLP/gRPC)")
			cmd.Flags().String("kafka", "", "Kafka seed brokers, host:port comma-separated; spans go to the topic Zipkin's Kafka collector reads unless --kafka-encoding says otherwise")
			cmd.Flags().String("kafka-topic", "", "Kafka topic (default: the encoding's consumer's own: zipkin, skywalking-segments, otlp_spans)")
			cmd.Flags().String("kafka-encoding", "", "Kafka messages: zipkin_json (default), skywalking or otlp_proto")
			cmd.Flags().String("sample", "", "Fraction of new traces to sample, 0..1 (default 1)")
			cmd.Flags().String("extract", "", "Formats read, in precedence order, comma-separated (default w3c,b3,sw8)")
			cmd.Flags().String("inject", "", "Formats written upstream, comma-separated (default w3c,b3; w3c,b3,sw8 with --skywalking)")
			cmd.Flags().Bool("response-headers", false, "Tell clients their trace: Server-Timing and X-Trace-Id")
			cmd.Flags().StringArray("egress", nil, "Egress listener LISTEN=URL (repeatable), e.g. 127.0.0.1:9001=http://payments.internal:8080")
			cmd.Flags().String("forward-proxy", "", "Forward-proxy listener for the service's HTTP_PROXY, e.g. 127.0.0.1:3128")
			cmd.Flags().String("stitch", "", "Attribution methods of egress calls, in order, space- or comma-separated (default \"header request_id process sole_inflight\")")
			cmd.Flags().String("request-id-header", "", "Correlation header of stitch method request_id (default X-Request-ID)")
			cmd.Flags().String("ui", "", "Serve the trace UI and Zipkin's query API here (default "+defaultUI+" when no exporter is given; off to disable)")
			cmd.Flags().String("admin", "", "Serve Caddy's admin API (and /metrics) on this address")
			cmd.Flags().Bool("print-config", false, "Print the equivalent Caddyfile and exit")
			cmd.Flags().Bool("debug", false, "Enable debug logs")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdProxy)
		},
	})
}

// proxyOptions are the flags of the proxy subcommand.
type proxyOptions struct {
	from, to, service, zipkin, skywalking, otlp, sample, extract, inject, admin string
	// ui is where the trace UI listens: empty for the default, "off" for
	// none.
	ui                     string
	responseHeaders, debug bool
	kafka                  kafkaFlags
	// egress are the --egress LISTEN=URL values, forwardProxy the
	// --forward-proxy address; stitch and requestIDHeader the attribution
	// options.
	egress                                []string
	forwardProxy, stitch, requestIDHeader string
}

// defaultUI is where the trace UI listens when no exporter is given.
const defaultUI = "127.0.0.1:9412"

// uiAddr is where the trace UI listens, "" for nowhere: by default only
// when no exporter is given, for then the UI is the only place to see spans.
func (o *proxyOptions) uiAddr() string {
	switch {
	case o.ui == "off":
		return ""
	case o.ui != "":
		return o.ui
	case !o.exporting():
		return defaultUI
	}
	return ""
}

// exporting reports whether an exporter flag was given.
func (o *proxyOptions) exporting() bool {
	return o.zipkin != "" || o.skywalking != "" || o.otlp != "" || o.kafka.brokers != ""
}

// uiURL is the trace UI's address for a browser, "" when there is none.
func (o *proxyOptions) uiURL() string {
	addr := o.uiAddr()
	if addr == "" {
		return ""
	}
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

func cmdProxy(fs caddycmd.Flags) (int, error) {
	o := proxyOptions{
		from: fs.String("from"), to: fs.String("to"), service: fs.String("service"),
		zipkin: fs.String("zipkin"), skywalking: fs.String("skywalking"), otlp: fs.String("otlp"), sample: fs.String("sample"),
		extract: fs.String("extract"), inject: fs.String("inject"), admin: fs.String("admin"),
		responseHeaders: fs.Bool("response-headers"), debug: fs.Bool("debug"), ui: fs.String("ui"),
		kafka:  kafkaFlags{brokers: fs.String("kafka"), topic: fs.String("kafka-topic"), encoding: fs.String("kafka-encoding")},
		stitch: fs.String("stitch"), requestIDHeader: fs.String("request-id-header"), forwardProxy: fs.String("forward-proxy"),
	}
	o.egress, _ = fs.GetStringArray("egress")
	cf, err := o.caddyfile()
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if fs.Bool("print-config") {
		fmt.Print(cf)
		return caddy.ExitCodeSuccess, nil
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfgJSON, warnings, err := adapter.Adapt([]byte(cf), map[string]any{"filename": "tracingproxy-proxy"})
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("building configuration: %w", err)
	}
	for _, w := range warnings {
		caddy.Log().Warn(w.String())
	}
	caddy.TrapSignals()
	if err := caddy.Load(cfgJSON, true); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if u := o.uiURL(); u != "" {
		fmt.Fprintf(os.Stderr, "tracingproxy: traces at %s\n", u)
	}
	caddy.Log().Info("tracingproxy proxying", zap.String("from", o.from), zap.String("to", o.to), zap.String("ui", o.uiURL()))
	select {}
}

// caddyfile renders the options as a Caddyfile, validating them on the way.
func (o *proxyOptions) caddyfile() (string, error) {
	if o.to == "" {
		return "", fmt.Errorf("--to is required: the upstream to proxy to, e.g. 127.0.0.1:9000")
	}
	if err := checkUpstream(o.to); err != nil {
		return "", err
	}
	host, port, err := net.SplitHostPort(o.from)
	if err != nil {
		return "", fmt.Errorf("--from must be host:port or :port, got %q", o.from)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("--from port must be a number from 0 to 65535, got %q", port)
	}
	if o.sample != "" {
		f, err := strconv.ParseFloat(o.sample, 64)
		if err != nil || f < 0 || f > 1 {
			return "", fmt.Errorf("--sample must be a number between 0 and 1, got %q", o.sample)
		}
	}
	var uiHost, uiPort string
	if addr := o.uiAddr(); addr != "" {
		if uiHost, uiPort, err = net.SplitHostPort(addr); err != nil {
			return "", fmt.Errorf("--ui must be host:port, :port or off, got %q", o.ui)
		}
		if p, err := strconv.Atoi(uiPort); err != nil || p <= 0 || p > 65535 || uiPort == port {
			return "", fmt.Errorf("--ui port must be a number from 1 to 65535 other than --from's, got %q", uiPort)
		}
	}
	for _, u := range []struct{ flag, val string }{{"--zipkin", o.zipkin}, {"--skywalking", o.skywalking}, {"--otlp", o.otlp}} {
		if u.val == "" {
			continue
		}
		if pu, err := url.Parse(u.val); err != nil || pu.Host == "" {
			return "", fmt.Errorf("%s must be an absolute URL, got %q", u.flag, u.val)
		}
	}
	if err := o.kafka.check(); err != nil {
		return "", err
	}

	egress, err := o.egressListeners(port, uiPort)
	if err != nil {
		return "", err
	}
	stitchLine, err := o.stitchOption(len(egress) > 0)
	if err != nil {
		return "", err
	}

	var b strings.Builder
	b.WriteString("{\n")
	if o.admin != "" {
		fmt.Fprintf(&b, "\tadmin %s\n", quote(o.admin))
	} else {
		b.WriteString("\tadmin off\n")
	}
	b.WriteString("\tauto_https off\n\tpersist_config off\n")
	if o.debug {
		b.WriteString("\tdebug\n")
	}
	b.WriteString("}\n\n")
	fmt.Fprintf(&b, "http://:%s {\n", port)
	if host != "" {
		fmt.Fprintf(&b, "\tbind %s\n", quote(host))
	}
	b.WriteString("\ttracingproxy {\n")
	b.WriteString(o.handlerOptions(o.to, uiPort != ""))
	b.WriteString(stitchLine)
	b.WriteString("\t}\n")
	fmt.Fprintf(&b, "\treverse_proxy %s\n", quote(o.to))
	b.WriteString("}\n")
	for _, e := range egress {
		b.WriteString(o.egressSite(e, uiPort != ""))
	}
	if uiPort != "" {
		fmt.Fprintf(&b, "\n# The trace UI and Zipkin's query API (loopback clients only).\nhttp://:%s {\n", uiPort)
		if uiHost != "" {
			fmt.Fprintf(&b, "\tbind %s\n", quote(uiHost))
		}
		b.WriteString("\ttracingproxy_ui\n}\n")
	}
	return b.String(), nil
}

// handlerOptions renders the tracingproxy options an ingress and an egress
// handler share, for calls to upstream to; ui says the trace UI is served.
func (o *proxyOptions) handlerOptions(to string, ui bool) string {
	var b strings.Builder
	if o.service != "" {
		fmt.Fprintf(&b, "\t\tservice_name %s\n", quote(o.service))
	}
	extract, inject := o.extract, o.inject
	if o.skywalking != "" || o.kafka.skyWalking() {
		// A SkyWalking agent behind the proxy links its spans to ours only
		// through sw8: read it and write it unless the flags say otherwise.
		if extract == "" {
			extract = "w3c,b3,sw8"
		}
		if inject == "" {
			inject = "w3c,b3,sw8"
		}
	}
	if extract != "" || inject != "" {
		b.WriteString("\t\tpropagation {\n")
		if extract != "" {
			fmt.Fprintf(&b, "\t\t\textract %s\n", formats(extract))
		}
		if inject != "" {
			fmt.Fprintf(&b, "\t\t\tinject %s\n", formats(inject))
		}
		b.WriteString("\t\t}\n")
	}
	if o.sample != "" {
		fmt.Fprintf(&b, "\t\tsample_ratio %s\n", o.sample)
	}
	if addr := upstreamHostport(to); addr != "" {
		// The address SkyWalking links the upstream by: the one we dial.
		fmt.Fprintf(&b, "\t\tupstream_address %s\n", quote(addr))
	}
	if o.responseHeaders {
		b.WriteString("\t\tresponse_headers server_timing trace_id X-Trace-Id\n")
	}
	if o.zipkin != "" {
		fmt.Fprintf(&b, "\t\texporter zipkin %s\n", quote(o.zipkin))
	}
	if o.skywalking != "" {
		fmt.Fprintf(&b, "\t\texporter skywalking %s\n", quote(o.skywalking))
	}
	if o.otlp != "" {
		fmt.Fprintf(&b, "\t\texporter otlp %s\n", quote(o.otlp))
	}
	o.kafka.write(&b)
	if ui && o.exporting() {
		// With no exporter line the handler keeps spans in memory anyway.
		b.WriteString("\t\texporter memory\n")
	}
	return b.String()
}

// upstreamHostport is the host:port dialled for --to, or "" when it is not
// one plain address.
// checkUpstream refuses a --to that reverse_proxy would only refuse at
// run time, or dial as something else: it must be host:port, or http:// or
// https:// with a host and an optional port, and nothing else.
func checkUpstream(to string) error {
	bad := fmt.Errorf("--to must be host:port or http(s)://host[:port], e.g. 127.0.0.1:9000, got %q", to)
	u := to
	if scheme, _, ok := strings.Cut(to, "://"); ok {
		if scheme != "http" && scheme != "https" {
			return bad
		}
	} else {
		u = "http://" + to
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Hostname() == "" || pu.User != nil || (pu.Path != "" && pu.Path != "/") ||
		pu.RawQuery != "" || pu.Fragment != "" || strings.ContainsAny(to, " \t,") {
		return bad
	}
	if p := pu.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad
		}
	} else if strings.HasSuffix(pu.Host, ":") {
		return bad
	}
	return nil
}

func upstreamHostport(to string) string {
	u := to
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" || strings.ContainsAny(to, " ,") {
		return ""
	}
	if pu.Port() != "" {
		return pu.Host
	}
	if pu.Scheme == "https" {
		return net.JoinHostPort(pu.Hostname(), "443")
	}
	return net.JoinHostPort(pu.Hostname(), "80")
}

// formats turns "w3c, b3" into "w3c b3".
func formats(list string) string {
	var out []string
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, quote(f))
		}
	}
	return strings.Join(out, " ")
}

// quote makes s one Caddyfile token.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\"{}#`\\") {
		return s
	}
	return string(caddyfile.Format([]byte(strconv.Quote(s))))
}
