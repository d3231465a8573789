package main

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/tracingproxy/tracingproxy/stitch"
)

// egressListener is one --egress LISTEN=URL, or the --forward-proxy.
type egressListener struct {
	host, port string // where the service calls
	target     string // the real upstream, http(s)://host[:port]; "" for the forward proxy
}

// egressListeners checks the --egress values: LISTEN is host:port, URL is
// http(s)://host[:port], and no two listeners (nor --from, nor the UI)
// share a port.
func (o *proxyOptions) egressListeners(fromPort, uiPort string) ([]egressListener, error) {
	ports := map[string]string{fromPort: "--from"}
	if uiPort != "" {
		ports[uiPort] = "--ui"
	}
	var out []egressListener
	for _, v := range o.egress {
		listen, target, ok := strings.Cut(v, "=")
		if !ok {
			return nil, fmt.Errorf("--egress must be LISTEN=URL, e.g. 127.0.0.1:9001=http://payments.internal:8080, got %q", v)
		}
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("--egress listen address must be host:port, got %q", listen)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("--egress listen port must be a number from 1 to 65535, got %q", port)
		}
		if other, dup := ports[port]; dup {
			return nil, fmt.Errorf("--egress %s: port %s is already used by %s", v, port, other)
		}
		ports[port] = "--egress " + v
		if !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://") {
			return nil, fmt.Errorf("--egress %s: the target must be an http:// or https:// URL, got %q", listen, target)
		}
		if err := checkUpstream(target); err != nil {
			return nil, fmt.Errorf("--egress %s: the target must be http(s)://host[:port] with no path, got %q", listen, target)
		}
		out = append(out, egressListener{host: host, port: port, target: strings.TrimSuffix(target, "/")})
	}
	if v := o.forwardProxy; v != "" {
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			return nil, fmt.Errorf("--forward-proxy must be host:port, e.g. 127.0.0.1:3128, got %q", v)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("--forward-proxy port must be a number from 1 to 65535, got %q", port)
		}
		if other, dup := ports[port]; dup {
			return nil, fmt.Errorf("--forward-proxy %s: port %s is already used by %s", v, port, other)
		}
		out = append(out, egressListener{host: host, port: port})
	}
	return out, nil
}

// stitchOption renders the ingress handler's stitch option: only when the
// service has egress listeners, which are what it serves.
func (o *proxyOptions) stitchOption(egress bool) (string, error) {
	if !egress {
		if o.stitch != "" || o.requestIDHeader != "" {
			return "", fmt.Errorf("--stitch and --request-id-header need an --egress or --forward-proxy listener: they say how its calls are attributed")
		}
		return "", nil
	}
	methods, err := stitch.ParseMethods(o.stitch)
	if err != nil {
		return "", fmt.Errorf("--stitch: %w", err)
	}
	names := make([]string, len(methods))
	for i, m := range methods {
		names[i] = m.String()
	}
	line := "\t\tstitch " + strings.Join(names, " ")
	if o.requestIDHeader == "" {
		return line + "\n", nil
	}
	if !validToken(o.requestIDHeader) {
		return "", fmt.Errorf("--request-id-header must be a header name, got %q", o.requestIDHeader)
	}
	return line + " {\n\t\t\trequest_id_header " + o.requestIDHeader + "\n\t\t}\n", nil
}

// egressSite renders the site of one egress listener: the service's
// handler in egress mode in front of reverse_proxy to the real target,
// with the target's Host (and, for https, TLS originated here); for the
// forward proxy, to the destination each request names.
func (o *proxyOptions) egressSite(e egressListener, ui bool) string {
	var b strings.Builder
	addr := net.JoinHostPort(hostOr(e.host, "127.0.0.1"), e.port)
	if e.target == "" {
		fmt.Fprintf(&b, "\n# Forward proxy: the service's HTTP_PROXY and HTTPS_PROXY are http://%s.\nhttp://:%s {\n", addr, e.port)
	} else {
		fmt.Fprintf(&b, "\n# Egress: the service calls http://%s instead of %s.\nhttp://:%s {\n", addr, e.target, e.port)
	}
	if e.host != "" {
		fmt.Fprintf(&b, "\tbind %s\n", quote(e.host))
	}
	b.WriteString("\ttracingproxy {\n")
	b.WriteString(o.handlerOptions(e.target, ui))
	if e.target == "" {
		b.WriteString("\t\tegress {\n\t\t\tforward_proxy\n\t\t}\n\t}\n")
		b.WriteString("\treverse_proxy {http.vars.tracingproxy_forward_upstream}\n}\n")
		return b.String()
	}
	b.WriteString("\t\tegress\n\t}\n")
	// The Host the target expects: the URL's, as written (without a
	// default port).
	u, _ := url.Parse(e.target)
	fmt.Fprintf(&b, "\treverse_proxy %s {\n\t\theader_up Host %s\n\t}\n}\n", quote(u.Scheme+"://"+u.Host), quote(u.Host))
	return b.String()
}

func hostOr(h, def string) string {
	if h == "" {
		return def
	}
	return h
}

// validToken reports whether s is an HTTP field name.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
