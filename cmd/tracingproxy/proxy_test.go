package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/tracingproxy/tracingproxy/caddymodule"
)

// adapt runs the Caddyfile the proxy command would load through Caddy's
// adapter, as the command does, and returns the tracingproxy handler's JSON.
func adapt(t *testing.T, o proxyOptions) (string, map[string]any) {
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
		Admin map[string]any `json:"admin"`
		Apps  struct {
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
	if cfg.Admin["disabled"] != true && o.admin == "" {
		t.Errorf("admin endpoint not disabled: %v", cfg.Admin)
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			if len(r.Handle) == 2 && r.Handle[0]["handler"] == "tracingproxy" && r.Handle[1]["handler"] == "reverse_proxy" {
				return cf, r.Handle[0]
			}
		}
	}
	t.Fatalf("no route in %s", js)
	return "", nil
}

func TestProxyCommandConfig(t *testing.T) {
	cf, _ := adapt(t, proxyOptions{from: "127.0.0.1:8080", to: "127.0.0.1:9000", service: "orders legacy",
		zipkin: "http://127.0.0.1:9411/api/v2/spans", skywalking: "grpc://127.0.0.1:11800",
		sample: "0.5", extract: "w3c, b3,sw8", inject: "w3c,sw8", responseHeaders: true})
	for _, want := range []string{
		"http://:8080 {", "bind 127.0.0.1", `service_name "orders legacy"`, "extract w3c b3 sw8", "inject w3c sw8",
		"sample_ratio 0.5", "response_headers server_timing trace_id X-Trace-Id",
		"exporter zipkin http://127.0.0.1:9411/api/v2/spans", "exporter skywalking grpc://127.0.0.1:11800",
		"upstream_address 127.0.0.1:9000", "reverse_proxy 127.0.0.1:9000", "admin off", "auto_https off",
	} {
		if !strings.Contains(cf, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, cf)
		}
	}
	if strings.Contains(cf, "tracingproxy_ui") {
		t.Errorf("a UI was served though exporters were given and --ui was not:\n%s", cf)
	}
	// With no exporter flag, spans go to the handler's defaults (memory
	// and log), and the UI is served on loopback.
	o := proxyOptions{from: ":8080", to: "localhost:9000"}
	cf, _ = adapt(t, o)
	if strings.Contains(cf, "exporter") {
		t.Errorf("an exporter was configured without a flag:\n%s", cf)
	}
	for _, want := range []string{"http://:9412 {", "bind 127.0.0.1", "tracingproxy_ui"} {
		if !strings.Contains(cf, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, cf)
		}
	}
	if got := o.uiURL(); got != "http://127.0.0.1:9412/" {
		t.Errorf("UI URL %q", got)
	}
	// --ui next to an exporter keeps spans in memory too.
	cf, _ = adapt(t, proxyOptions{from: ":8080", to: "localhost:9000", zipkin: "http://127.0.0.1:9411/api/v2/spans", ui: ":9999"})
	for _, want := range []string{"exporter zipkin", "exporter memory", "http://:9999 {", "tracingproxy_ui"} {
		if !strings.Contains(cf, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, cf)
		}
	}
	cf, _ = adapt(t, proxyOptions{from: ":8080", to: "localhost:9000", ui: "off"})
	if strings.Contains(cf, "tracingproxy_ui") {
		t.Errorf("--ui off still serves the UI:\n%s", cf)
	}
}

// With a SkyWalking exporter and no --extract/--inject, sw8 is read and
// written, so a SkyWalking agent behind the proxy joins our trace (issue 13,
// item 4).
func TestProxyCommandSkyWalkingInjectsSW8(t *testing.T) {
	cf, _ := adapt(t, proxyOptions{from: ":8080", to: "127.0.0.1:9000", skywalking: "grpc://127.0.0.1:11800"})
	for _, want := range []string{"extract w3c b3 sw8", "inject w3c b3 sw8"} {
		if !strings.Contains(cf, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, cf)
		}
	}
	// An explicit flag still wins.
	cf, _ = adapt(t, proxyOptions{from: ":8080", to: "127.0.0.1:9000", skywalking: "grpc://127.0.0.1:11800", inject: "w3c"})
	if !strings.Contains(cf, "inject w3c\n") {
		t.Errorf("--inject w3c not honoured:\n%s", cf)
	}
	// Without SkyWalking the module defaults apply untouched.
	cf, _ = adapt(t, proxyOptions{from: ":8080", to: "127.0.0.1:9000", zipkin: "http://127.0.0.1:9411/api/v2/spans"})
	if strings.Contains(cf, "propagation") {
		t.Errorf("propagation written without SkyWalking or flags:\n%s", cf)
	}
}

func TestProxyCommandRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		o    proxyOptions
		want string
	}{
		{proxyOptions{from: ":8080"}, "--to is required"},
		{proxyOptions{from: "8080", to: "x:1"}, "--from must be host:port or :port"},
		{proxyOptions{from: ":http", to: "x:1"}, "--from port must be a number"},
		{proxyOptions{from: ":8080", to: "x:1", sample: "2"}, "--sample must be a number between 0 and 1"},
		{proxyOptions{from: ":8080", to: "x:1", zipkin: "localhost"}, "--zipkin must be an absolute URL"},
		{proxyOptions{from: ":8080", to: "x:1", ui: "9412"}, "--ui must be host:port, :port or off"},
		{proxyOptions{from: ":8080", to: "x:1", ui: ":8080"}, "--ui port must be a number from 1 to 65535 other than --from's"},
		// Issue 13 item 6: upstreams reverse_proxy would only refuse, or
		// dial wrongly, at run time.
		{proxyOptions{from: ":8080", to: "not a host"}, "--to must be host:port or http(s)://host[:port]"},
		{proxyOptions{from: ":8080", to: "ftp://backend:21"}, "--to must be host:port"},
		{proxyOptions{from: ":8080", to: "http://backend:8080/api"}, "--to must be host:port"},
		{proxyOptions{from: ":8080", to: "backend:http"}, "--to must be host:port"},
		{proxyOptions{from: ":8080", to: "backend:70000"}, "--to must be host:port"},
		{proxyOptions{from: ":8080", to: "backend:"}, "--to must be host:port"},
		{proxyOptions{from: ":8080", to: ":9000"}, "--to must be host:port"},
		{proxyOptions{from: ":8080", to: "http://user:pw@backend"}, "--to must be host:port"},
	} {
		if _, err := tc.o.caddyfile(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestCheckUpstreamAcceptsUpstreamForms(t *testing.T) {
	for _, to := range []string{"127.0.0.1:9000", "backend", "backend:8080", "http://backend:8080", "https://backend", "https://backend/", "[::1]:9000", "localhost:1"} {
		if err := checkUpstream(to); err != nil {
			t.Errorf("--to %q refused: %v", to, err)
		}
	}
}

func TestUpstreamHostport(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9000":      "127.0.0.1:9000",
		"http://backend:8080": "backend:8080",
		"https://backend":     "backend:443",
		"backend":             "backend:80",
		"[::1]:9000":          "[::1]:9000",
		"a:1 b:2":             "",
	} {
		if got := upstreamHostport(in); got != want {
			t.Errorf("upstreamHostport(%q) = %q, want %q", in, got, want)
		}
	}
}

// --otlp exports to an OpenTelemetry collector; --print-config shows it as
// the exporter line a Caddyfile takes.
func TestProxyCommandOTLP(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:4318", "grpc://127.0.0.1:4317"} {
		cf, h := adapt(t, proxyOptions{from: ":8080", to: "127.0.0.1:9000", otlp: u})
		if !strings.Contains(cf, "exporter otlp "+u+"\n") {
			t.Errorf("Caddyfile lacks the otlp exporter:\n%s", cf)
		}
		if strings.Contains(cf, "tracingproxy_ui") {
			t.Errorf("a UI was served beside --otlp without --ui:\n%s", cf)
		}
		exps, _ := h["exporters"].([]any)
		if len(exps) != 1 || exps[0].(map[string]any)["type"] != "otlp" || exps[0].(map[string]any)["url"] != u {
			t.Errorf("exporters %v", h["exporters"])
		}
	}
	if _, err := (&proxyOptions{from: ":8080", to: "x:1", otlp: "collector"}).caddyfile(); err == nil || !strings.Contains(err.Error(), "--otlp must be an absolute URL") {
		t.Errorf("--otlp collector: error %v", err)
	}
}
