package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// servers adapts the Caddyfile the proxy command would load and returns
// each server's listen addresses and its first route's handlers.
func servers(t *testing.T, o proxyOptions) (string, map[string][]map[string]any, map[string][]string) {
	t.Helper()
	cf, err := o.caddyfile()
	if err != nil {
		t.Fatalf("caddyfile: %v", err)
	}
	js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatalf("adapting\n%s\n: %v", cf, err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
					Routes []struct {
						Handle []map[string]any `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	handlers := map[string][]map[string]any{}
	listens := map[string][]string{}
	for name, srv := range cfg.Apps.HTTP.Servers {
		listens[name] = srv.Listen
		if len(srv.Routes) > 0 {
			handlers[name] = srv.Routes[0].Handle
		}
	}
	return cf, handlers, listens
}

// The CLI l9's tests and the deploy manifests use: --egress (repeatable,
// http and https targets), --stitch in either spelling, and
// --request-id-header become one Caddyfile with the ingress site and one
// site per egress listener.
func TestProxyCommandEgress(t *testing.T) {
	o := proxyOptions{from: ":8080", to: "127.0.0.1:3000", service: "orders-legacy", zipkin: "http://127.0.0.1:9411/api/v2/spans",
		egress:       []string{"127.0.0.1:9001=http://payments.internal:8080", "127.0.0.1:9002=https://search.example.com"},
		forwardProxy: "127.0.0.1:3128",
		stitch:       "request_id,sole_inflight", requestIDHeader: "X-Correlation-ID"}
	cf, handlers, listens := servers(t, o)
	for _, want := range []string{
		"stitch request_id sole_inflight {", "request_id_header X-Correlation-ID",
		"http://:9001 {", "http://:9002 {", "reverse_proxy http://payments.internal:8080 {", "header_up Host payments.internal:8080",
		"reverse_proxy https://search.example.com {", "header_up Host search.example.com",
		"upstream_address payments.internal:8080", "upstream_address search.example.com:443",
		"http://:3128 {", "forward_proxy", "reverse_proxy {http.vars.tracingproxy_forward_upstream}",
	} {
		if !strings.Contains(cf, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, cf)
		}
	}
	if len(handlers) != 4 {
		t.Fatalf("servers %v, want the ingress, two egress listeners and the forward proxy", listens)
	}
	var ingress, egress, forward int
	for name, hs := range handlers {
		if len(hs) != 2 || hs[0]["handler"] != "tracingproxy" || hs[1]["handler"] != "reverse_proxy" {
			t.Errorf("server %s handlers %v, want tracingproxy then reverse_proxy", name, hs)
			continue
		}
		tp := hs[0]
		if tp["service_name"] != "orders-legacy" {
			t.Errorf("server %s service_name %v", name, tp["service_name"])
		}
		switch {
		case tp["stitch"] != nil:
			ingress++
			st := tp["stitch"].(map[string]any)
			if m, _ := json.Marshal(st["methods"]); string(m) != `["request_id","sole_inflight"]` || st["request_id_header"] != "X-Correlation-ID" {
				t.Errorf("stitch %v", st)
			}
			if l := listens[name]; len(l) != 1 || l[0] != ":8080" {
				t.Errorf("ingress listens on %v", l)
			}
		case tp["egress"] != nil && tp["egress"].(map[string]any)["forward_proxy"] == true:
			forward++
			if l := listens[name]; len(l) != 1 || l[0] != "127.0.0.1:3128" {
				t.Errorf("forward proxy listens on %v", l)
			}
			if ups, _ := json.Marshal(hs[1]["upstreams"]); !strings.Contains(string(ups), "{http.vars.tracingproxy_forward_upstream}") {
				t.Errorf("forward proxy upstreams %s", ups)
			}
		case tp["egress"] != nil:
			egress++
			if l := listens[name]; len(l) != 1 || (l[0] != "127.0.0.1:9001" && l[0] != "127.0.0.1:9002") {
				t.Errorf("egress listens on %v, want the loopback address given", l)
			}
			rp := hs[1]
			ups, _ := json.Marshal(rp["upstreams"])
			tr, _ := json.Marshal(rp["transport"])
			if l := listens[name]; l[0] == "127.0.0.1:9002" && (!strings.Contains(string(ups), "search.example.com:443") || !strings.Contains(string(tr), `"tls"`)) {
				t.Errorf("https egress: upstreams %s transport %s, want TLS to search.example.com:443", ups, tr)
			}
		}
	}
	if ingress != 1 || egress != 2 || forward != 1 {
		t.Errorf("%d ingress, %d egress and %d forward proxy handlers, want 1, 2 and 1:\n%s", ingress, egress, forward, cf)
	}

	// The default order, written out.
	cf, _, _ = servers(t, proxyOptions{from: ":8080", to: "127.0.0.1:3000", egress: []string{"127.0.0.1:9001=http://p:1"}})
	if !strings.Contains(cf, "\t\tstitch header request_id process sole_inflight\n") {
		t.Errorf("default stitch methods not written:\n%s", cf)
	}
	// Without egress there is nothing to stitch.
	cf, _, _ = servers(t, proxyOptions{from: ":8080", to: "127.0.0.1:3000"})
	if strings.Contains(cf, "stitch") || strings.Contains(cf, "egress") {
		t.Errorf("stitch or egress without --egress:\n%s", cf)
	}
}

func TestProxyCommandRefusesBadEgressFlags(t *testing.T) {
	for _, tc := range []struct {
		o    proxyOptions
		want string
	}{
		{proxyOptions{egress: []string{"127.0.0.1:9001"}}, "--egress must be LISTEN=URL"},
		{proxyOptions{egress: []string{"9001=http://p:1"}}, "--egress listen address must be host:port"},
		{proxyOptions{egress: []string{"127.0.0.1:x=http://p:1"}}, "--egress listen port must be a number"},
		{proxyOptions{egress: []string{"127.0.0.1:8080=http://p:1"}}, "port 8080 is already used by --from"},
		{proxyOptions{egress: []string{"127.0.0.1:9001=http://p:1", "127.0.0.1:9001=http://q:1"}}, "port 9001 is already used by --egress"},
		{proxyOptions{egress: []string{"127.0.0.1:9001=p:1"}}, "the target must be an http:// or https:// URL"},
		{proxyOptions{egress: []string{"127.0.0.1:9001=http://p:1/api"}}, "with no path"},
		{proxyOptions{egress: []string{"127.0.0.1:9001=http://p:1"}, stitch: "guess"}, `--stitch: stitch: unknown method "guess"`},
		{proxyOptions{egress: []string{"127.0.0.1:9001=http://p:1"}, requestIDHeader: "X Request"}, "--request-id-header must be a header name"},
		{proxyOptions{stitch: "header"}, "--stitch and --request-id-header need an --egress or --forward-proxy listener"},
		{proxyOptions{forwardProxy: "3128"}, "--forward-proxy must be host:port"},
		{proxyOptions{forwardProxy: "127.0.0.1:0"}, "--forward-proxy port must be a number from 1 to 65535"},
		{proxyOptions{egress: []string{"127.0.0.1:9001=http://p:1"}, forwardProxy: "127.0.0.1:9001"}, "port 9001 is already used by --egress"},
	} {
		tc.o.from, tc.o.to = ":8080", "127.0.0.1:3000"
		if _, err := tc.o.caddyfile(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.o, err, tc.want)
		}
	}
}
