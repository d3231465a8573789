package caddymodule

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyfileAdapt compares the JSON each testdata Caddyfile adapts to
// with the expected JSON after its "----------" line.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatalf("%s has no ---------- separator", f)
			}
			if !caddytest.CompareAdapt(t, f, in, "caddyfile", strings.TrimSpace(want)) {
				t.Fail()
			}
		})
	}
}

// provision runs the Caddy lifecycle on a handler decoded from JSON: what a
// config load does.
func provision(t testing.TB, js string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	if err := json.Unmarshal([]byte(js), h); err != nil {
		t.Fatalf("bad test JSON: %v", err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	err := h.Provision(ctx)
	if err == nil {
		err = h.Validate()
	}
	if err != nil {
		h.Cleanup()
		return nil, err
	}
	t.Cleanup(func() { h.Cleanup() })
	return h, nil
}

func TestBadConfigIsRefusedNamingTheOption(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"unknown extract format", `{"propagation":{"extract":["w3c","zipkin"]}}`, `propagation extract: unknown propagation format "zipkin"`},
		{"unknown inject format", `{"propagation":{"inject":["b4"]}}`, `propagation inject: unknown propagation format "b4"`},
		{"repeated format", `{"propagation":{"inject":["w3c","w3c"]}}`, `listed twice`},
		{"ratio above 1", `{"sample_ratio":1.5}`, "sample_ratio must be between 0 and 1, got 1.5"},
		{"route without a slash", `{"route_patterns":["orders/{id}"]}`, `route: pattern must start with /, got "orders/{id}"`},
		{"route with a star inside", `{"route_patterns":["/api/*/x"]}`, `route: * must be the last segment`},
		{"span_name with a newline", `{"span_name":"a\nb"}`, `span_name must not contain control characters`},
		{"ratio below 0", `{"sample_ratio":-0.1}`, "sample_ratio must be between 0 and 1, got -0.1"},
		{"bad zipkin url", `{"exporters":[{"type":"zipkin","url":"127.0.0.1:9411"}]}`, `exporter zipkin: url must be an absolute http(s) URL, got "127.0.0.1:9411"`},
		{"zipkin ftp url", `{"exporters":[{"type":"zipkin","url":"ftp://h/x"}]}`, `exporter zipkin: url must be an absolute http(s) URL`},
		{"bad skywalking url", `{"exporters":[{"type":"skywalking","url":"tcp://h:1"}]}`, `exporter skywalking: url must be grpc://host:port or http(s)://host:port`},
		{"unknown exporter", `{"exporters":[{"type":"jaeger","url":"http://h"}]}`, `exporter type must be one of zipkin, skywalking, otlp, kafka, log, memory; got "jaeger"`},
		{"negative queue", `{"exporters":[{"type":"log","queue_size":-1}]}`, "exporter log: queue_size must not be negative, got -1"},
		{"negative batch", `{"exporters":[{"type":"log","batch_size":-5}]}`, "exporter log: batch_size must not be negative, got -5"},
		{"negative timeout", `{"exporters":[{"type":"log","timeout":-1}]}`, "exporter log: timeout must not be negative"},
		{"bad drop", `{"exporters":[{"type":"log","drop":"middle"}]}`, `exporter log: drop must be "oldest" or "newest", got "middle"`},
		{"bad compression", `{"exporters":[{"type":"zipkin","url":"http://h/api/v2/spans","compression":"br"}]}`, "exporter zipkin: compression must be gzip or none"},
		{"token on zipkin", `{"exporters":[{"type":"zipkin","url":"http://h/api/v2/spans","token":"x"}]}`, "instance, token and keepalive are SkyWalking options"},
		{"bad response header", `{"response_headers":{"trace_id":"X Trace"}}`, `response_headers trace_id: "X Trace" is not a valid header name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.json)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestBadCaddyfileIsRefusedNamingTheOption(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown option", "tracingproxy {\n\tsample 0.1\n}", `unknown tracingproxy option "sample"`},
		{"ratio not a number", "tracingproxy {\n\tsample_ratio lots\n}", `sample_ratio must be a number between 0 and 1, got "lots"`},
		{"exporter without url", "tracingproxy {\n\texporter zipkin\n}", "exporter zipkin needs a url"},
		{"unknown exporter type", "tracingproxy {\n\texporter jaeger http://x\n}", `exporter type must be one of zipkin, skywalking, otlp, kafka, log, memory; got "jaeger"`},
		{"negative size", "tracingproxy {\n\texporter log {\n\t\tqueue_size -3\n\t}\n}", "queue_size must not be negative, got -3"},
		{"bad duration", "tracingproxy {\n\texporter log {\n\t\tflush_interval soon\n\t}\n}", `flush_interval must be a duration such as 500ms or 5s, got "soon"`},
		{"unknown exporter option", "tracingproxy {\n\texporter log {\n\t\tretries 3\n\t}\n}", `unknown exporter option "retries"`},
		{"unknown propagation option", "tracingproxy {\n\tpropagation {\n\t\tforward w3c\n\t}\n}", `unknown propagation option "forward"`},
		{"empty extract", "tracingproxy {\n\tpropagation {\n\t\textract\n\t}\n}", "propagation extract needs at least one format"},
		{"bad response_headers", "tracingproxy {\n\tresponse_headers everything\n}", `unknown response_headers value "everything"`},
		{"argument on directive", "tracingproxy now", "wrong argument count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	h, err := provision(t, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if h.ServiceName != "tracingproxy" {
		t.Errorf("service name %q, want tracingproxy", h.ServiceName)
	}
	if got := formatNames(h.prop.prop.ExtractFormats()); got != "w3c,b3,sw8" {
		t.Errorf("extract %s, want w3c,b3,sw8", got)
	}
	if got := formatNames(h.prop.prop.InjectFormats()); got != "w3c,b3" {
		t.Errorf("inject %s, want w3c,b3", got)
	}
	if len(h.queues) != 2 || h.queues[0].name != "memory" || h.queues[1].name != "log" {
		t.Errorf("exporters %v, want the memory and log exporters by default", h.Exporters)
	}
	if got := h.sampler.Description(); !strings.Contains(got, "ratio(1)") {
		t.Errorf("sampler %s, want parent-based ratio 1", got)
	}
}

func TestSkyWalkingInstanceNamesTheHandler(t *testing.T) {
	h, err := provision(t, `{"exporters":[{"type":"skywalking","url":"grpc://127.0.0.1:1","instance":"orders-7"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if h.Instance != "orders-7" {
		t.Errorf("handler instance %q, want the exporter's orders-7 so segments and keepalives agree", h.Instance)
	}
	_, err = provision(t, `{"instance":"a","exporters":[{"type":"skywalking","url":"grpc://127.0.0.1:1","instance":"b"}]}`)
	if err == nil || !strings.Contains(err.Error(), `instance "a" and exporter skywalking instance "b" differ`) {
		t.Errorf("error %v, want the conflict named", err)
	}
}

// TestCaddyfileExampleLoads adapts and provisions the repository's
// Caddyfile.example, as shipped and with its commented exporters (zipkin,
// skywalking, otlp, kafka) uncommented, so the documented example always
// runs.
func TestCaddyfileExampleLoads(t *testing.T) {
	data, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("as shipped", func(t *testing.T) { loadExample(t, data) })
	t.Run("every exporter uncommented", func(t *testing.T) {
		all := regexp.MustCompile(`(?m)^(\t+)# ((exporter |\t|\}).*)$`).ReplaceAll(data, []byte("$1$2"))
		raw := loadExample(t, all)
		for _, name := range []string{"zipkin", "skywalking", "otlp", "kafka", "log", "memory"} {
			if !strings.Contains(raw, `"type":"`+name+`"`) {
				t.Errorf("no exporter %s in the uncommented example", name)
			}
		}
	})
}

// loadExample adapts a Caddyfile holding one tracingproxy handler and
// provisions that handler, returning its JSON.
func loadExample(t *testing.T, data []byte) string {
	t.Helper()
	js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []json.RawMessage `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, raw := range r.Handle {
				if !strings.Contains(string(raw), `"handler":"tracingproxy"`) {
					continue
				}
				found = append(found, string(raw))
				if _, err := provision(t, string(raw)); err != nil {
					t.Errorf("provisioning the example's handler: %v", err)
				}
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("found %d tracingproxy handlers in Caddyfile.example, want 1", len(found))
	}
	return found[0]
}
