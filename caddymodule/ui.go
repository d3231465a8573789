package caddymodule

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tracingproxy/tracingproxy/exporter/memory"
)

func init() {
	caddy.RegisterModule(UI{})
	httpcaddyfile.RegisterHandlerDirective("tracingproxy_ui", parseUICaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("tracingproxy_ui", httpcaddyfile.Before, "reverse_proxy")
}

// traceStore is the process's store of recent traces: every `exporter
// memory` of every handler writes into it and every tracingproxy_ui reads
// it. It is bounded, so it lives as long as the process.
var traceStore = memory.NewStore(0, 0)

// UI serves the traces of `exporter memory`: Zipkin's v2 query API under
// api/v2/ and a waterfall UI at its root. Mount it on a path of its own and
// strip the prefix, e.g. `handle_path /_tracingproxy/* { tracingproxy_ui }`;
// it answers every request it gets and calls no next handler.
type UI struct {
	// Allow lists the clients (CIDRs or addresses, or all) that may read
	// the traces. Default: loopback only.
	Allow []string `json:"allow,omitempty"`
	// BasicAuth, when set, requires these credentials; placeholders such
	// as {env.UI_PASSWORD} are replaced at load time.
	BasicAuth *UIBasicAuth `json:"basic_auth,omitempty"`
	// AcceptSpans also takes Zipkin v2 JSON spans on POST api/v2/spans, so
	// other proxies and instrumented services can send to this store.
	// Default: off.
	AcceptSpans bool `json:"accept_spans,omitempty"`

	allow      trustPolicy
	user, pass []byte
	api        http.Handler
}

// UIBasicAuth is a user name and password.
type UIBasicAuth struct {
	// User is the user name.
	User string `json:"user"`
	// Password is the password, in clear (use a placeholder).
	Password string `json:"password"`
}

var loopbackOnly = trustPolicy{prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}

// CaddyModule returns the Caddy module information.
func (UI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.tracingproxy_ui", New: func() caddy.Module { return new(UI) }}
}

// Provision builds the API over the process's trace store.
func (u *UI) Provision(caddy.Context) error {
	u.allow = loopbackOnly
	if len(u.Allow) > 0 {
		tp, err := parseTrust(u.Allow)
		if err != nil || tp.none {
			return fmt.Errorf("tracingproxy_ui allow must be all, private_ranges, CIDRs or addresses, got %q", u.Allow)
		}
		u.allow = tp
	}
	if b := u.BasicAuth; b != nil {
		repl := caddy.NewReplacer()
		u.user, u.pass = []byte(repl.ReplaceAll(b.User, "")), []byte(repl.ReplaceAll(b.Password, ""))
	}
	u.api = memory.Handler(traceStore, u.AcceptSpans)
	return nil
}

// Validate checks the credentials.
func (u *UI) Validate() error {
	if u.BasicAuth != nil && (len(u.user) == 0 || len(u.pass) == 0) {
		return fmt.Errorf("tracingproxy_ui basic_auth needs a user and a non-empty password")
	}
	return nil
}

// ServeHTTP answers from the trace store, refusing clients outside allow
// (403) and requests without the basic_auth credentials (401).
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if !u.allow.trusted(r) {
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("tracingproxy_ui: client %s is not in allow", r.RemoteAddr))
	}
	if u.BasicAuth != nil {
		user, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), u.user)&subtle.ConstantTimeCompare([]byte(pass), u.pass) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="tracingproxy"`)
			return caddyhttp.Error(http.StatusUnauthorized, fmt.Errorf("tracingproxy_ui: credentials required"))
		}
	}
	u.api.ServeHTTP(w, r)
	return nil
}

func parseUICaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var u UI
	err := u.UnmarshalCaddyfile(h.Dispenser)
	return &u, err
}

// UnmarshalCaddyfile sets up the UI from Caddyfile tokens. Syntax:
//
//	tracingproxy_ui {
//		allow <cidr|address|private_ranges|all...>  # default: loopback only
//		basic_auth <user> <password>                # placeholders like {env.UI_PASSWORD} work
//		accept_spans                                # also take POST api/v2/spans
//	}
func (u *UI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "allow":
			u.Allow = d.RemainingArgs()
			if len(u.Allow) == 0 {
				return d.ArgErr()
			}
		case "basic_auth":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("tracingproxy_ui basic_auth needs a user and a password")
			}
			u.BasicAuth = &UIBasicAuth{User: args[0], Password: args[1]}
		case "accept_spans":
			if d.NextArg() {
				return d.ArgErr()
			}
			u.AcceptSpans = true
		default:
			return d.Errf("unknown tracingproxy_ui option %q (allowed: allow, basic_auth, accept_spans)", opt)
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*UI)(nil)
	_ caddy.Validator             = (*UI)(nil)
	_ caddyhttp.MiddlewareHandler = (*UI)(nil)
	_ caddyfile.Unmarshaler       = (*UI)(nil)
)
