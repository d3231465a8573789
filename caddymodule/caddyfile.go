package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tracingproxy/tracingproxy/exporter"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("tracingproxy", parseCaddyfile)
	// Wrap everything else in a route, Caddy's own tracing included, so the
	// SERVER span times the whole hop.
	httpcaddyfile.RegisterDirectiveOrder("tracingproxy", httpcaddyfile.Before, "tracing")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var t Handler
	err := t.UnmarshalCaddyfile(h.Dispenser)
	return &t, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	tracingproxy {
//		service_name <name>                  # default: tracingproxy
//		instance     <name>                  # default: <hostname>@<ipv4>
//		propagation {
//			extract <format...>              # order = precedence; default: w3c b3 sw8
//			inject  <format...> | preserve   # written upstream; default: w3c b3
//			default <format...>              # with preserve, when nothing came in; default: w3c
//			clear   <header...>              # removed before the upstream sees the request
//			baggage <header-prefix...>       # in-house baggage headers carried across formats
//			custom  trace_id <hdr> [span_id <hdr>] [parent_id <hdr>] [sampled <hdr>] [uuid]
//			request_id [header <name>] [generate]
//			trust   all | none | private_ranges | <cidr-or-ip...>   # whose trace headers to believe; default all
//			untrusted_baggage drop | keep     # an untrusted client's baggage; default drop
//		}
//		sample_ratio <0..1>                  # for new traces; default 1
//		sampler {
//			ratio               <0..1>       # new traces (same as sample_ratio)
//			parent              respect|ignore   # default respect
//			max_per_second      <n>          # cap on head-sampled new traces
//			rule [method <m...>] [host <h...>] [path <glob...>] [header <name> <value>] always|never|ratio <r> [override_parent]
//			                                 # new traces only, unless override_parent; first match wins
//			keep_errors                      # export 5xx and upstream failures anyway
//			keep_slower_than    <duration>   # export slow requests anyway
//			keep_max_per_second <n>          # cap on kept requests; default 10
//			force_header        <name>       # a trusted client sets it to force sampling
//		}
//		response_headers [server_timing] [traceresponse] [trace_id <header-name>]
//		                 [trace_url <header-name> <template>] [to_untrusted]
//		upstream_address <host:port>         # sw8 target address; default: last dialled upstream (the request's Host before)
//		record_query                         # tag http.query; default off (queries carry secrets)
//		record_request_headers  <header...>  # tags http.request.header.<name>; default none
//		record_response_headers <header...>  # tags http.response.header.<name>; default none
//		max_tag_length <n>                   # cap on tag values from the request or response; default 256
//		span_name <name>                     # span and endpoint name; Caddy placeholders work; default "<METHOD> <route>"
//		route <pattern...>                   # e.g. /orders/{id}/items, /api/*; first match names the route; repeatable
//		                                     # default route: the path with id-like segments as {id}
//		exporter zipkin <url> {
//			batch_size     <n>               # default 512
//			flush_interval <duration>        # default 1s
//			queue_size     <n>               # default 8192
//			queue_bytes    <n>               # default 33554432 (32 MiB)
//			drop           oldest|newest     # default oldest
//			timeout        <duration>        # per export attempt; default 5s
//			max_retry_time <duration>        # default 60s
//			flush_timeout  <duration>        # final flush on stop; default 5s
//			compression    gzip|none         # default none
//			header         <name> <value>    # on every request; {env.*} placeholders work
//			use_env_proxy                    # honour HTTP(S)_PROXY; default: direct
//			tls [ca <file>] [cert <file> key <file>] [server_name <name>] [insecure_skip_verify]
//		}
//		exporter skywalking <grpc[s]://host:11800 | http[s]://host:12800> {
//			instance  <name>                 # default: the handler's instance
//			token     <token>                # placeholders like {env.SW_TOKEN} work
//			keepalive <duration>             # default 60s
//			tls [ca <file>] [cert <file> key <file>] [server_name <name>] [insecure_skip_verify]
//			header <name> <value>            # http(s):// urls only
//			use_env_proxy
//			batch_size / flush_interval / queue_size / queue_bytes / drop / timeout /
//			max_retry_time / flush_timeout   # as for zipkin
//		}
//		exporter otlp <http[s]://host:4318[/v1/traces] | grpc[s]://host:4317> {
//			encoding protobuf|json           # http(s) only; default protobuf
//			compression gzip|none            # default none
//			header <name> <value>            # on every request (gRPC: metadata); {env.*} placeholders work
//			tls [ca <file>] [cert <file> key <file>] [server_name <name>] [insecure_skip_verify]
//			use_env_proxy
//			batch_size / flush_interval / queue_size / queue_bytes / drop / timeout /
//			max_retry_time / flush_timeout   # as for zipkin
//		}
//		exporter kafka <host:port...> {      # seed brokers
//			topic    <name>                  # default by encoding: zipkin, skywalking-segments, otlp_spans
//			encoding zipkin_json|skywalking|otlp_proto   # default zipkin_json
//			management_topic <name>          # skywalking encoding; default skywalking-managements
//			keepalive <duration>             # skywalking encoding; default 60s
//			compression none|gzip|snappy|lz4|zstd   # default snappy
//			sasl plain|scram-sha-256|scram-sha-512 <user> <password>   # {env.*} placeholders work
//			tls [ca <file>] [cert <file> key <file>] [server_name <name>] [insecure_skip_verify]   # turns TLS on
//			timeout <duration>               # a message's delivery, retries included; default 5s, at least 1s
//			batch_size / flush_interval / queue_size / queue_bytes / drop /
//			max_retry_time / flush_timeout   # as for zipkin
//		}
//		exporter log                         # spans as JSON lines on the log
//		exporter memory {                    # the process's trace store, read by tracingproxy_ui
//			max_traces <n>                   # default 10000, oldest evicted first
//			max_bytes  <n>                   # default 64 MiB
//		}
//		# no exporter line: memory and log
//		stitch [<method...>] {               # on the service's ingress handler: its outbound calls join its traces
//			methods <method...>              # tried in order; default: header request_id process sole_inflight
//			request_id_header <name>         # default X-Request-ID (added when absent, with request_id)
//			max_ids      <n>                 # ended requests' ids kept; default 65536
//			id_ttl       <duration>          # how long they are kept; default 5m
//			max_inflight <n>                 # in-flight requests tracked; default 65536
//		}
//		egress {                             # on an egress listener's handler, before reverse_proxy to the real target
//			allow_clients <addr-or-cidr...> | private_ranges | all   # default: loopback only
//			forward_proxy                    # an HTTP_PROXY listener: reverse_proxy {http.vars.tracingproxy_forward_upstream}
//			allow_destinations <host[:port]|*.domain[:port]|ip|cidr...>   # forward_proxy only; default: any
//		}
//	}
//
// An egress handler traces the outbound calls of the service named by its
// service_name, whose ingress handler (with stitch) is in the same
// configuration: one Caddyfile holds the service's ingress site and one
// site per egress listener. A forward_proxy listener's site has no host
// (http://:3128 with bind), since requests name their destinations.
//
// Formats: w3c, b3 (multi-header), b3single, sw8, sw6, jaeger, ot, xray,
// datadog, baggage (W3C baggage, merged across jaeger and ot baggage),
// requestid, custom. Several exporter lines may be given; each has its own
// queue.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "service_name":
			if err := oneArg(d, &h.ServiceName); err != nil {
				return err
			}
			if strings.TrimSpace(h.ServiceName) == "" {
				return d.Errf("service_name must not be empty (omit it for the default %q)", defaultServiceName)
			}
		case "instance":
			if err := oneArg(d, &h.Instance); err != nil {
				return err
			}
		case "upstream_address":
			if err := oneArg(d, &h.UpstreamAddress); err != nil {
				return err
			}
		case "sample_ratio":
			var s string
			if err := oneArg(d, &s); err != nil {
				return err
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return d.Errf("sample_ratio must be a number between 0 and 1, got %q", s)
			}
			h.SampleRatio = &f
		case "propagation":
			if d.NextArg() {
				return d.ArgErr()
			}
			if h.Propagation == nil {
				h.Propagation = new(Propagation)
			}
			for d.NextBlock(1) {
				switch sub := d.Val(); sub {
				case "extract", "inject", "trust", "default", "baggage", "clear":
					if err := listArg(d, sub, h.Propagation); err != nil {
						return err
					}
				case "custom":
					c, err := parseCustom(d)
					if err != nil {
						return err
					}
					h.Propagation.Custom = c
				case "request_id":
					rid := new(RequestID)
					args := d.RemainingArgs()
					for i := 0; i < len(args); i++ {
						switch args[i] {
						case "generate":
							rid.Generate = true
						case "header":
							if i+1 >= len(args) {
								return d.Errf("propagation request_id header needs a name")
							}
							i++
							rid.Header = args[i]
						default:
							return d.Errf("unknown request_id value %q (allowed: header <name>, generate)", args[i])
						}
					}
					h.Propagation.RequestID = rid
				case "untrusted_baggage":
					if !d.NextArg() {
						return d.Errf("propagation untrusted_baggage needs drop or keep")
					}
					v := d.Val()
					if v != untrustedBaggageDrop && v != untrustedBaggageKeep {
						return d.Errf("propagation untrusted_baggage: %q is not drop or keep", v)
					}
					if d.NextArg() {
						return d.ArgErr()
					}
					h.Propagation.UntrustedBaggage = v
				default:
					return d.Errf("unknown propagation option %q (allowed: extract, inject, default, clear, baggage, custom, request_id, trust, untrusted_baggage)", sub)
				}
			}
		case "response_headers":
			if h.ResponseHeaders == nil {
				h.ResponseHeaders = new(ResponseHeaders)
			}
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("response_headers needs server_timing, traceresponse, trace_id <header-name> or trace_url <header-name> <template>")
			}
			for i := 0; i < len(args); i++ {
				switch args[i] {
				case "server_timing":
					h.ResponseHeaders.ServerTiming = true
				case "traceresponse":
					h.ResponseHeaders.TraceResponse = true
				case "to_untrusted":
					h.ResponseHeaders.ToUntrusted = true
				case "upstream_wins":
					h.ResponseHeaders.UpstreamWins = true
				case "trace_id":
					if i+1 >= len(args) {
						return d.Errf("response_headers trace_id needs a header name")
					}
					i++
					h.ResponseHeaders.TraceID = args[i]
				case "trace_url":
					if i+2 >= len(args) {
						return d.Errf("response_headers trace_url needs a header name and a template")
					}
					h.ResponseHeaders.TraceURL = &TraceURL{Header: args[i+1], Template: args[i+2]}
					i += 2
				default:
					return d.Errf("unknown response_headers value %q (allowed: server_timing, traceresponse, trace_id <header-name>, trace_url <header-name> <template>, to_untrusted, upstream_wins)", args[i])
				}
			}
		case "record_query":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.RecordQuery = true
		case "record_request_headers":
			if h.RecordRequestHeaders = d.RemainingArgs(); len(h.RecordRequestHeaders) == 0 {
				return d.Errf("record_request_headers needs at least one header name")
			}
		case "record_response_headers":
			if h.RecordResponseHeaders = d.RemainingArgs(); len(h.RecordResponseHeaders) == 0 {
				return d.Errf("record_response_headers needs at least one header name")
			}
		case "max_tag_length":
			if err := intArg(d, &h.MaxTagLength); err != nil {
				return err
			}
		case "span_name":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.SpanName = d.Val()
			if d.NextArg() {
				return d.Errf("span_name takes one argument (quote a name with spaces), got also %q", d.Val())
			}
		case "route":
			patterns := d.RemainingArgs()
			if len(patterns) == 0 {
				return d.Errf("route needs at least one path pattern, such as /orders/{id}/items")
			}
			h.RoutePatterns = append(h.RoutePatterns, patterns...)
		case "sampler":
			sc, err := parseSampler(d)
			if err != nil {
				return err
			}
			h.Sampler = sc
		case "exporter":
			ec, err := parseExporter(d)
			if err != nil {
				return err
			}
			h.Exporters = append(h.Exporters, ec)
		case "stitch":
			sc, err := parseStitch(d)
			if err != nil {
				return err
			}
			h.Stitch = sc
		case "egress":
			ec, err := parseEgress(d)
			if err != nil {
				return err
			}
			h.Egress = ec
		default:
			return d.Errf("unknown tracingproxy option %q (allowed: service_name, instance, propagation, sample_ratio, sampler, response_headers, upstream_address, record_query, record_request_headers, record_response_headers, max_tag_length, span_name, route, exporter, stitch, egress)", opt)
		}
	}
	return nil
}

// listArg reads the arguments of a propagation option that takes a list,
// refusing an empty one with what the option wants.
func listArg(d *caddyfile.Dispenser, opt string, p *Propagation) error {
	lists := map[string]struct {
		dst  *[]string
		want string
	}{
		"extract": {&p.Extract, "at least one format"},
		"inject":  {&p.Inject, "at least one format"},
		"default": {&p.Default, "at least one format"},
		"trust":   {&p.Trust, "all, none, private_ranges, or CIDRs"},
		"baggage": {&p.Baggage, "at least one header prefix"},
		"clear":   {&p.Clear, "at least one header name"},
	}
	l := lists[opt]
	if *l.dst = d.RemainingArgs(); len(*l.dst) == 0 {
		return d.Errf("propagation %s needs %s", opt, l.want)
	}
	return nil
}

// parseCustom reads: custom trace_id <hdr> [span_id <hdr>] [parent_id <hdr>]
// [sampled <hdr>] [uuid]
func parseCustom(d *caddyfile.Dispenser) (*CustomHeaders, error) {
	c := new(CustomHeaders)
	args := d.RemainingArgs()
	for i := 0; i < len(args); i++ {
		key := args[i]
		if key == "uuid" {
			c.UUID = true
			continue
		}
		var dst *string
		switch key {
		case "trace_id":
			dst = &c.TraceID
		case "span_id":
			dst = &c.SpanID
		case "parent_id":
			dst = &c.ParentID
		case "sampled":
			dst = &c.Sampled
		default:
			return nil, d.Errf("unknown propagation custom value %q (allowed: trace_id, span_id, parent_id, sampled <header>, uuid)", key)
		}
		if i+1 >= len(args) {
			return nil, d.Errf("propagation custom %s needs a header name", key)
		}
		i++
		*dst = args[i]
	}
	if c.TraceID == "" {
		return nil, d.Errf("propagation custom needs trace_id <header>")
	}
	return c, nil
}

func parseSampler(d *caddyfile.Dispenser) (*SamplerConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	sc := new(SamplerConfig)
	for d.NextBlock(1) {
		opt := d.Val()
		var err error
		switch opt {
		case "ratio":
			var f float64
			err = floatArg(d, &f)
			sc.Ratio = &f
		case "parent":
			err = oneArg(d, &sc.Parent)
		case "max_per_second":
			err = floatArg(d, &sc.MaxPerSecond)
		case "keep_max_per_second":
			var f float64
			err = floatArg(d, &f)
			sc.KeepMaxPerSecond = &f
		case "keep_errors":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			sc.KeepErrors = true
		case "keep_slower_than":
			err = durationArg(d, &sc.KeepSlowerThan)
		case "force_header":
			err = oneArg(d, &sc.ForceHeader)
		case "rule":
			var r *SamplingRule
			r, err = parseRule(d)
			sc.Rules = append(sc.Rules, r)
		default:
			err = d.Errf("unknown sampler option %q (allowed: ratio, parent, max_per_second, rule, keep_errors, keep_slower_than, keep_max_per_second, force_header)", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// parseRule reads: rule [method <m...>] [host <h...>] [path <glob...>]
// [header <name> <value>] always|never|ratio <r> [override_parent]
func parseRule(d *caddyfile.Dispenser) (*SamplingRule, error) {
	r := new(SamplingRule)
	args := d.RemainingArgs()
	var list *[]string
	if n := len(args); n > 0 && args[n-1] == "override_parent" {
		r.OverrideParent = true
		args = args[:n-1]
	}
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "method":
			list = &r.Methods
		case "host":
			list = &r.Hosts
		case "path":
			list = &r.Paths
		case "header":
			if i+2 >= len(args) {
				return nil, d.Errf("sampler rule: header needs a name and a value")
			}
			if r.Headers == nil {
				r.Headers = map[string]string{}
			}
			r.Headers[args[i+1]] = args[i+2]
			i += 2
			list = nil
		case "always", "never", "ratio":
			r.Sample = a
			if a == "ratio" {
				if i+1 >= len(args) {
					return nil, d.Errf("sampler rule: ratio needs a number between 0 and 1")
				}
				f, err := strconv.ParseFloat(args[i+1], 64)
				if err != nil {
					return nil, d.Errf("sampler rule: ratio must be a number between 0 and 1, got %q", args[i+1])
				}
				r.Ratio = f
				i++
			}
			if i != len(args)-1 {
				return nil, d.Errf("sampler rule: %s must come last, after the conditions", a)
			}
		default:
			if list == nil {
				return nil, d.Errf("sampler rule: unexpected %q (want method, host, path, header, then always, never or ratio <r>)", a)
			}
			*list = append(*list, a)
		}
	}
	if r.Sample == "" {
		return nil, d.Errf("sampler rule: end the rule with always, never or ratio <r>")
	}
	return r, nil
}

func floatArg(d *caddyfile.Dispenser, dst *float64) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return d.Errf("%s must be a number, got %q", opt, s)
	}
	*dst = f
	return nil
}

func parseExporter(d *caddyfile.Dispenser) (*ExporterConfig, error) {
	ec := new(ExporterConfig)
	if !d.NextArg() {
		return nil, d.Errf("exporter needs a type: zipkin, skywalking, otlp, kafka, log or memory")
	}
	ec.Type = d.Val()
	switch ec.Type {
	case exporterZipkin, exporterSkyWalking, exporterOTLP:
		if !d.NextArg() {
			return nil, d.Errf("exporter %s needs a url", ec.Type)
		}
		ec.URL = d.Val()
	case exporterKafka:
		if ec.Brokers = d.RemainingArgs(); len(ec.Brokers) == 0 {
			return nil, d.Errf("exporter kafka needs at least one broker, host:port (e.g. kafka-0:9092 kafka-1:9092)")
		}
	case exporterLog, exporterMemory:
	default:
		return nil, d.Errf("exporter type must be one of zipkin, skywalking, otlp, kafka, log, memory; got %q", ec.Type)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(1) {
		opt := d.Val()
		var err error
		switch opt {
		case "batch_size":
			err = intArg(d, &ec.BatchSize)
		case "queue_size":
			if err = intArg(d, &ec.QueueSize); err == nil && ec.QueueSize == 0 {
				err = d.Errf("queue_size must be at least 1, got 0 (omit it for the default %d)", exporter.DefaultQueueSize)
			}
		case "queue_bytes":
			err = intArg(d, &ec.QueueBytes)
		case "max_traces":
			err = intArg(d, &ec.MaxTraces)
		case "max_bytes":
			err = intArg(d, &ec.MaxBytes)
		case "flush_interval":
			err = durationArg(d, &ec.FlushInterval)
		case "timeout":
			err = durationArg(d, &ec.Timeout)
		case "max_retry_time":
			err = durationArg(d, &ec.MaxRetryTime)
		case "flush_timeout":
			err = durationArg(d, &ec.FlushTimeout)
		case "keepalive":
			err = durationArg(d, &ec.KeepAlive)
		case "drop":
			err = oneArg(d, &ec.Drop)
		case "compression":
			err = oneArg(d, &ec.Compression)
		case "encoding":
			err = oneArg(d, &ec.Encoding)
		case "instance":
			err = oneArg(d, &ec.Instance)
		case "token":
			err = oneArg(d, &ec.Token)
		case "tls":
			ec.TLS, err = parseTLS(d)
		case "topic":
			err = oneArg(d, &ec.Topic)
		case "management_topic":
			err = oneArg(d, &ec.ManagementTopic)
		case "sasl":
			args := d.RemainingArgs()
			if len(args) != 3 {
				return nil, d.Errf("exporter sasl needs a mechanism (plain, scram-sha-256 or scram-sha-512), a username and a password")
			}
			ec.SASL = &SASLConfig{Mechanism: args[0], Username: args[1], Password: args[2]}
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("exporter header needs a name and a value")
			}
			if ec.Headers == nil {
				ec.Headers = map[string]string{}
			}
			ec.Headers[args[0]] = args[1]
		case "use_env_proxy":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			ec.UseEnvProxy = true
		default:
			err = d.Errf("unknown exporter option %q (allowed: batch_size, flush_interval, queue_size, queue_bytes, drop, timeout, max_retry_time, flush_timeout, compression, encoding, header, use_env_proxy, tls, instance, token, keepalive, topic, management_topic, sasl, max_traces, max_bytes)", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return ec, nil
}

func parseTLS(d *caddyfile.Dispenser) (*TLSConfig, error) {
	t := new(TLSConfig)
	args := d.RemainingArgs()
	for i := 0; i < len(args); i++ {
		key := args[i]
		if key == "insecure_skip_verify" {
			t.InsecureSkipVerify = true
			continue
		}
		if i+1 >= len(args) {
			return nil, d.Errf("tls %s needs a value", key)
		}
		i++
		switch key {
		case "ca":
			t.CA = args[i]
		case "cert":
			t.Cert = args[i]
		case "key":
			t.Key = args[i]
		case "server_name":
			t.ServerName = args[i]
		default:
			return nil, d.Errf("unknown tls option %q (allowed: ca, cert, key, server_name, insecure_skip_verify)", key)
		}
	}
	return t, nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func intArg(d *caddyfile.Dispenser, dst *int) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return d.Errf("%s must be an integer, got %q", opt, s)
	}
	if n < 0 {
		return d.Errf("%s must not be negative, got %d", opt, n)
	}
	*dst = n
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s must be a duration such as 500ms or 5s, got %q", opt, s)
	}
	if v < 0 {
		return d.Errf("%s must not be negative, got %s", opt, s)
	}
	*dst = caddy.Duration(v)
	return nil
}
