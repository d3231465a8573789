package main

// The deployment files in deploy/ cannot be run here (no container engine),
// so these tests check everything about them that can be checked without
// one: every Caddyfile adapts and its tracingproxy handler provisions with the
// environment each deployment gives it; the ports, paths, users and names the
// Dockerfile, the compose file and the Kubernetes manifests share agree with
// one another and with the Caddyfile; and the Dockerfile's own build command,
// run on the build context its .dockerignore leaves, yields a static binary
// that validates the shipped configuration.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.yaml.in/yaml/v3"

	"github.com/tracingproxy/tracingproxy/caddymodule"
)

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envReference matches the environment variables a Caddyfile reads: {$NAME}
// and {$NAME:default} at parse time, {env.NAME} at load time.
var envReference = regexp.MustCompile(`\{(?:\$([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?|env\.([A-Za-z_][A-Za-z0-9_]*))\}`)

// caddyfileEnv lists the environment variables the Caddyfile reads, outside
// comment lines.
func caddyfileEnv(cf []byte) []string {
	var names []string
	for _, line := range strings.Split(string(cf), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range envReference.FindAllStringSubmatch(line, -1) {
			if name := m[1] + m[2]; !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	return names
}

// setSidecarEnv gives the test exactly env among the variables the Caddyfile
// reads: the others are unset, so their defaults apply. The previous
// environment comes back when the test ends.
func setSidecarEnv(t *testing.T, cf []byte, env map[string]string) {
	t.Helper()
	for _, name := range caddyfileEnv(cf) {
		t.Setenv(name, "") // registers the restore
		os.Unsetenv(name)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// sidecarConfig is what matters in an adapted sidecar configuration.
type sidecarConfig struct {
	proxyListen   string         // the traced service's listener
	metricsListen string         // the operations listener
	upstreams     []string       // reverse_proxy dial addresses
	handler       map[string]any // the tracingproxy handler's JSON
	gracePeriod   time.Duration
	opsPaths      map[string][]string // operations listener: path → handlers on it
}

// adaptedConfig is the part of Caddy's JSON configuration the sidecar sets.
type adaptedConfig struct {
	Admin struct {
		Listen string `json:"listen"`
		Config struct {
			Persist *bool `json:"persist"`
		} `json:"config"`
	} `json:"admin"`
	Apps struct {
		HTTP struct {
			GracePeriod caddy.Duration `json:"grace_period"`
			Metrics     *struct{}      `json:"metrics"`
			Servers     map[string]struct {
				Listen         []string `json:"listen"`
				AutomaticHTTPS struct {
					Disable bool `json:"disable"`
				} `json:"automatic_https"`
				Routes []struct {
					Match []struct {
						Path []string `json:"path"`
					} `json:"match"`
					Handle []map[string]any `json:"handle"`
				} `json:"routes"`
			} `json:"servers"`
		} `json:"http"`
	} `json:"apps"`
}

// handlerNames lists the handler names in v, depth first.
func handlerNames(v any) []string {
	var names []string
	switch v := v.(type) {
	case map[string]any:
		if h, ok := v["handler"].(string); ok {
			names = append(names, h)
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			names = append(names, handlerNames(v[k])...)
		}
	case []any:
		for _, e := range v {
			names = append(names, handlerNames(e)...)
		}
	}
	return names
}

// adaptSidecar adapts the Caddyfile at file, under the current environment,
// as `tracingproxy run --config file --adapter caddyfile` does.
func adaptSidecar(file string) (sidecarConfig, error) {
	var sc sidecarConfig
	body, err := os.ReadFile(file)
	if err != nil {
		return sc, err
	}
	js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": file})
	if err != nil {
		return sc, err
	}
	if len(warnings) > 0 {
		// Among them: "Caddyfile input is not formatted".
		return sc, fmt.Errorf("warnings: %v", warnings)
	}
	var cfg adaptedConfig
	if err := json.Unmarshal(js, &cfg); err != nil {
		return sc, err
	}
	if cfg.Admin.Listen != "localhost:2019" {
		return sc, fmt.Errorf("admin listens on %q, want localhost:2019 (inside the container only)", cfg.Admin.Listen)
	}
	if p := cfg.Admin.Config.Persist; p == nil || *p {
		return sc, errors.New("persist_config is not off: Caddy would write the configuration back")
	}
	if cfg.Apps.HTTP.Metrics == nil {
		return sc, errors.New("the metrics global option is not set: no HTTP request metrics")
	}
	sc.gracePeriod = time.Duration(cfg.Apps.HTTP.GracePeriod)
	if len(cfg.Apps.HTTP.Servers) != 2 {
		return sc, fmt.Errorf("%d servers, want 2 (the service and operations)", len(cfg.Apps.HTTP.Servers))
	}
	for name, srv := range cfg.Apps.HTTP.Servers {
		if !srv.AutomaticHTTPS.Disable {
			return sc, fmt.Errorf("server %s: automatic HTTPS is on", name)
		}
		if len(srv.Listen) != 1 {
			return sc, fmt.Errorf("server %s listens on %v, want one address", name, srv.Listen)
		}
		var traced bool
		for _, r := range srv.Routes {
			for i, h := range r.Handle {
				if h["handler"] != "tracingproxy" {
					continue
				}
				if sc.handler != nil {
					return sc, errors.New("more than one tracingproxy handler")
				}
				if i+1 >= len(r.Handle) || r.Handle[i+1]["handler"] != "reverse_proxy" {
					return sc, errors.New("tracingproxy is not followed by reverse_proxy")
				}
				sc.handler = h
				sc.proxyListen = srv.Listen[0]
				var rp struct {
					Upstreams []struct {
						Dial string `json:"dial"`
					} `json:"upstreams"`
				}
				b, err := json.Marshal(r.Handle[i+1])
				if err == nil {
					err = json.Unmarshal(b, &rp)
				}
				if err != nil {
					return sc, fmt.Errorf("reverse_proxy: %w", err)
				}
				for _, u := range rp.Upstreams {
					sc.upstreams = append(sc.upstreams, u.Dial)
				}
				traced = true
			}
		}
		if traced {
			continue
		}
		sc.metricsListen = srv.Listen[0]
		sc.opsPaths = map[string][]string{}
		for _, r := range srv.Routes {
			var handle []any
			for _, h := range r.Handle {
				handle = append(handle, h)
			}
			names := handlerNames(handle)
			if len(r.Match) == 0 {
				sc.opsPaths["*"] = names
			}
			for _, m := range r.Match {
				for _, p := range m.Path {
					sc.opsPaths[p] = names
				}
			}
		}
	}
	if sc.handler == nil {
		return sc, errors.New("no tracingproxy handler")
	}
	return sc, nil
}

// provisionHandler runs the Caddy lifecycle on the adapted handler JSON, as a
// config load does: decode (refusing unknown fields), Provision, Validate,
// and Cleanup, which stops the exporters again.
func provisionHandler(raw map[string]any) (*caddymodule.Handler, error) {
	fields := make(map[string]any, len(raw))
	for k, v := range raw {
		if k != "handler" {
			fields[k] = v
		}
	}
	js, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	h := new(caddymodule.Handler)
	if err := dec.Decode(h); err != nil {
		return nil, fmt.Errorf("decoding handler: %w", err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err = h.Provision(ctx)
	if err == nil {
		err = h.Validate()
	}
	return h, errors.Join(err, h.Cleanup())
}

// loadSidecar adapts file under env and provisions its handler.
func loadSidecar(t *testing.T, file string, env map[string]string) (sidecarConfig, *caddymodule.Handler, error) {
	t.Helper()
	setSidecarEnv(t, readFile(t, file), env)
	sc, err := adaptSidecar(file)
	if err != nil {
		return sc, nil, fmt.Errorf("adapting: %w", err)
	}
	h, err := provisionHandler(sc.handler)
	if err != nil {
		return sc, h, fmt.Errorf("provisioning: %w", err)
	}
	return sc, h, nil
}

// exporterList is "type url" per exporter.
func exporterList(h *caddymodule.Handler) []string {
	var out []string
	for _, e := range h.Exporters {
		out = append(out, strings.TrimSpace(e.Type+" "+e.URL))
	}
	return out
}

// portOf is the port of a listener or dial address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func TestDeployCaddyfile(t *testing.T) {
	file := filepath.Join(repoRoot(t), "deploy", "Caddyfile")
	type want struct {
		proxyListen, metricsListen, service   string
		upstreams, extract, inject, exporters []string
		ratio                                 float64
	}
	defaults := want{
		proxyListen: ":8080", metricsListen: ":9180", service: "legacy-service",
		upstreams: []string{"127.0.0.1:9000"}, extract: []string{"w3c", "b3", "sw8"}, inject: []string{"w3c", "b3"},
		exporters: []string{"log"}, ratio: 1,
	}
	with := func(f func(*want)) want {
		w := defaults
		f(&w)
		return w
	}
	valid := []struct {
		name string
		env  map[string]string
		want want
	}{
		{"defaults", nil, defaults},
		{"log", map[string]string{"EXPORTER": "log"}, defaults},
		{"zipkin with every variable set", map[string]string{
			"PORT": "18080", "METRICS_PORT": "19180", "UPSTREAM": "app:9000",
			"SERVICE_NAME": "orders-legacy", "SAMPLE_RATIO": "0.25", "EXTRACT": "b3 w3c", "INJECT": "w3c b3 sw8",
			"EXPORTER": "zipkin", "ZIPKIN_URL": "http://zipkin.observability:9411/api/v2/spans",
		}, want{
			proxyListen: ":18080", metricsListen: ":19180", service: "orders-legacy",
			upstreams: []string{"app:9000"}, extract: []string{"b3", "w3c"}, inject: []string{"w3c", "b3", "sw8"},
			exporters: []string{"zipkin http://zipkin.observability:9411/api/v2/spans"}, ratio: 0.25,
		}},
		{"zipkin default url", map[string]string{"EXPORTER": "zipkin"}, with(func(w *want) {
			w.exporters = []string{"zipkin http://zipkin:9411/api/v2/spans"}
		})},
		{"skywalking grpc with token", map[string]string{
			"EXPORTER": "skywalking", "SKYWALKING_URL": "grpc://127.0.0.1:11800", "SW_TOKEN": "secret",
			"EXTRACT": "sw8 w3c b3", "INJECT": "sw8 w3c b3",
		}, with(func(w *want) {
			w.exporters = []string{"skywalking grpc://127.0.0.1:11800"}
			w.extract, w.inject = []string{"sw8", "w3c", "b3"}, []string{"sw8", "w3c", "b3"}
		})},
		{"skywalking http", map[string]string{"EXPORTER": "skywalking", "SKYWALKING_URL": "http://127.0.0.1:12800"},
			with(func(w *want) { w.exporters = []string{"skywalking http://127.0.0.1:12800"} })},
		{"zipkin and skywalking", map[string]string{
			"EXPORTER": "zipkin+skywalking", "ZIPKIN_URL": "http://127.0.0.1:9411/api/v2/spans", "SKYWALKING_URL": "grpc://127.0.0.1:11800",
		}, with(func(w *want) {
			w.exporters = []string{"zipkin http://127.0.0.1:9411/api/v2/spans", "skywalking grpc://127.0.0.1:11800"}
		})},
		{"several upstreams", map[string]string{"UPSTREAM": "10.0.0.1:9000 10.0.0.2:9000"},
			with(func(w *want) { w.upstreams = []string{"10.0.0.1:9000", "10.0.0.2:9000"} })},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			sc, h, err := loadSidecar(t, file, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			got := want{
				proxyListen: sc.proxyListen, metricsListen: sc.metricsListen, service: h.ServiceName,
				upstreams: sc.upstreams, extract: h.Propagation.Extract, inject: h.Propagation.Inject,
				exporters: exporterList(h), ratio: *h.SampleRatio,
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if rh := h.ResponseHeaders; rh == nil || !rh.ServerTiming || rh.TraceID != "X-Trace-Id" {
				t.Errorf("response headers %+v, want Server-Timing and X-Trace-Id", rh)
			}
			for _, e := range h.Exporters {
				if e.Type == "skywalking" && e.Token != "{env.SW_TOKEN}" {
					t.Errorf("skywalking token %q, want {env.SW_TOKEN} (read at load, not written into the config)", e.Token)
				}
			}
			wantOps := map[string][]string{
				"/metrics": {"subroute", "metrics"},
				"/healthz": {"subroute", "static_response"},
				"*":        {"subroute", "static_response"},
			}
			if !reflect.DeepEqual(sc.opsPaths, wantOps) {
				t.Errorf("operations routes %v, want %v", sc.opsPaths, wantOps)
			}
		})
	}

	invalid := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"port not a number", map[string]string{"PORT": "http"}, "invalid port 'http'"},
		{"proxy on the metrics port", map[string]string{"PORT": "9180"}, "ambiguous site definition: :9180"},
		{"unknown exporter", map[string]string{"EXPORTER": "jaeger"}, "File to import not found: exporter-jaeger"},
		{"two exporters as two words", map[string]string{"EXPORTER": "zipkin skywalking"}, `unknown tracingproxy option "skywalking"`},
		{"extra word after the pair", map[string]string{"EXPORTER": "zipkin+skywalking log"}, `unknown tracingproxy option "log"`},
		{"empty extract", map[string]string{"EXTRACT": ""}, "propagation extract needs at least one format"},
		{"empty upstream", map[string]string{"UPSTREAM": ""}, "wrong argument count or unexpected line ending after 'to'"},
		{"unknown format", map[string]string{"INJECT": "w3c zipkin"}, `propagation inject: unknown propagation format "zipkin"`},
		{"ratio above 1", map[string]string{"SAMPLE_RATIO": "1.5"}, "sample_ratio must be between 0 and 1, got 1.5"},
		{"ratio not a number", map[string]string{"SAMPLE_RATIO": "ten%"}, `sample_ratio must be a number between 0 and 1, got "ten%"`},
		{"zipkin url without scheme", map[string]string{"EXPORTER": "zipkin", "ZIPKIN_URL": "zipkin:9411"}, "exporter zipkin: url must be an absolute http(s) URL"},
		{"skywalking url without scheme", map[string]string{"EXPORTER": "skywalking", "SKYWALKING_URL": "oap:11800"}, "exporter skywalking: url must be grpc://host:port"},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadSidecar(t, file, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// instruction is one Dockerfile instruction.
type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// stage is one FROM and what follows it.
type stage struct {
	image, name, platform string
	args                  map[string]string // ARGs in scope, with their values
	instrs                []instruction
}

// dockerfile is a parsed Dockerfile.
type dockerfile struct{ stages []*stage }

// parseDockerfile reads a Dockerfile in the subset of the syntax it uses:
// comments, line continuations, ARG with defaults (buildArgs override them),
// and ${VAR} in FROM. Anything else it does not understand fails the test.
func parseDockerfile(t *testing.T, text string, buildArgs map[string]string) *dockerfile {
	t.Helper()
	var instrs []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		if trimmed := strings.TrimSpace(line); trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if l, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(l)
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		instrs = append(instrs, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a line continuation")
	}
	df := new(dockerfile)
	global := map[string]string{}
	arg := func(scope map[string]string, spec string, inherit map[string]string) {
		name, def, hasDef := strings.Cut(spec, "=")
		switch v, ok := buildArgs[name]; {
		case ok:
			scope[name] = v
		case hasDef:
			scope[name] = def
		default:
			scope[name] = inherit[name]
		}
	}
	for _, in := range instrs {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			s := &stage{args: map[string]string{}}
			if p, ok := strings.CutPrefix(f[0], "--platform="); ok {
				s.platform, f = p, f[1:]
			}
			s.image = expand(t, f[0], global)
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			} else if len(f) != 1 {
				t.Fatalf("line %d: cannot read FROM %s", in.line, in.args)
			}
			df.stages = append(df.stages, s)
		case len(df.stages) == 0 && in.cmd == "ARG":
			arg(global, in.args, nil)
		case len(df.stages) == 0:
			t.Fatalf("line %d: %s before FROM", in.line, in.cmd)
		case in.cmd == "ARG":
			s := df.stages[len(df.stages)-1]
			arg(s.args, in.args, global)
			s.instrs = append(s.instrs, in)
		default:
			s := df.stages[len(df.stages)-1]
			s.instrs = append(s.instrs, in)
		}
	}
	return df
}

// expand replaces $VAR and ${VAR} from vars; an unknown variable fails the
// test rather than silently becoming empty.
func expand(t *testing.T, s string, vars map[string]string) string {
	t.Helper()
	return os.Expand(s, func(name string) string {
		v, ok := vars[name]
		if !ok {
			t.Fatalf("%q uses $%s, which is not declared", s, name)
		}
		return v
	})
}

// all returns the stage's instructions of one kind.
func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the stage's last instruction of one kind: the one in effect.
func (s *stage) last(t *testing.T, cmd string) instruction {
	t.Helper()
	all := s.all(cmd)
	if len(all) == 0 {
		t.Fatalf("stage %s has no %s", s.image, cmd)
	}
	return all[len(all)-1]
}

// execForm decodes the JSON (exec) form of ENTRYPOINT or CMD. The shell form
// needs /bin/sh, which a distroless image does not have.
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("line %d: %s %s is not in exec form (JSON array): the image has no shell", in.line, in.cmd, in.args)
	}
	return argv
}

// copyOp is one COPY: from a stage (or the context when from is ""), sources
// to a destination.
type copyOp struct {
	from    string
	sources []string
	dest    string
}

func parseCopy(t *testing.T, in instruction) copyOp {
	t.Helper()
	var op copyOp
	f := strings.Fields(in.args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--") {
		if v, ok := strings.CutPrefix(f[0], "--from="); ok {
			op.from = v
		}
		f = f[1:]
	}
	if len(f) < 2 {
		t.Fatalf("line %d: COPY %s needs a source and a destination", in.line, in.args)
	}
	op.sources, op.dest = f[:len(f)-1], f[len(f)-1]
	return op
}

// shellWords splits a RUN command the way sh would, for the plain commands
// this Dockerfile uses: words, "double" and 'single' quotes, and $VAR
// expansion outside single quotes. Control operators fail the test: the
// test would no longer know what the RUN does.
func shellWords(t *testing.T, s string, vars map[string]string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			i++
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				t.Fatalf("unterminated %c in %q", c, s)
			}
			quoted := s[i+1 : i+1+j]
			if c == '"' {
				quoted = expand(t, quoted, vars)
			}
			w.WriteString(quoted)
			i += j + 2
			inWord = true
		case strings.IndexByte(";&|<>`\\()", c) >= 0:
			t.Fatalf("RUN %q uses %q: too much shell for this test to follow", s, c)
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\n'\";&|<>`\\()", s[j]) < 0 {
				j++
			}
			w.WriteString(expand(t, s[i:j], vars))
			i = j
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// goBuild is the Dockerfile's go build: its environment, arguments, the
// output path inside the build stage, and the package built.
type goBuild struct {
	env    []string
	args   []string // after "go"
	output string
	pkg    string
}

// buildStep finds the RUN that builds the binary in stage s and reads it,
// with the stage's ARGs and the target platform vars set to this machine's.
func buildStep(t *testing.T, s *stage) goBuild {
	t.Helper()
	vars := map[string]string{"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH}
	for k, v := range s.args {
		if _, auto := vars[k]; !auto {
			vars[k] = v
		}
	}
	var gb goBuild
	for _, in := range s.all("RUN") {
		cmd := in.args
		for strings.HasPrefix(cmd, "--") { // RUN flags: --mount=...
			_, cmd, _ = strings.Cut(cmd, " ")
			cmd = strings.TrimSpace(cmd)
		}
		words := shellWords(t, cmd, vars)
		i := 0
		for i < len(words) && strings.Contains(words[i], "=") {
			i++
		}
		if len(words) < i+2 || words[i] != "go" || words[i+1] != "build" {
			continue
		}
		if gb.args != nil {
			t.Fatal("two go build steps")
		}
		gb.env, gb.args = words[:i], words[i+1:]
		for j := 0; j < len(gb.args); j++ {
			if gb.args[j] == "-o" && j+1 < len(gb.args) {
				gb.output = gb.args[j+1]
			}
		}
		gb.pkg = gb.args[len(gb.args)-1]
	}
	if gb.args == nil {
		t.Fatal("the build stage has no go build")
	}
	return gb
}

// imageSpec is what the tests read off deploy/Dockerfile.
type imageSpec struct {
	df             *dockerfile
	build, final   *stage
	goBuild        goBuild
	entrypoint     []string
	cmd            []string
	configPath     string            // --config of CMD, inside the image
	copies         map[string]string // image path → context path, from the context
	env            map[string]string
	uid            int
	exposed        []int
	versionSymbol  string
	dockerignore   dockerignore
	contextRoot    string
	dockerfilePath string
}

// testVersion is the VERSION build argument the tests pass.
const testVersion = "0.0.0-deploytest"

// readImageSpec parses deploy/Dockerfile and checks what each part of it
// says about the others.
func readImageSpec(t *testing.T) imageSpec {
	t.Helper()
	root := repoRoot(t)
	is := imageSpec{contextRoot: root, dockerfilePath: filepath.Join(root, "deploy", "Dockerfile")}
	is.df = parseDockerfile(t, string(readFile(t, is.dockerfilePath)), map[string]string{"VERSION": testVersion})
	is.dockerignore = readDockerignore(t, filepath.Join(root, ".dockerignore"))
	if len(is.df.stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, runtime)", len(is.df.stages))
	}
	is.build, is.final = is.df.stages[0], is.df.stages[1]
	is.goBuild = buildStep(t, is.build)

	// The final stage copies from the build stage by name, and nothing runs
	// in it: it has no shell.
	if len(is.final.all("RUN")) > 0 {
		t.Error("the runtime stage has a RUN; distroless has no shell")
	}
	if hc := is.final.all("HEALTHCHECK"); len(hc) > 0 {
		t.Error("HEALTHCHECK in an image without a shell or curl; probe /healthz from outside")
	}
	is.copies = map[string]string{}
	var binary string
	for _, in := range is.final.all("COPY") {
		op := parseCopy(t, in)
		switch op.from {
		case "":
			if len(op.sources) != 1 {
				t.Fatalf("line %d: COPY of several sources; copy one file per line", in.line)
			}
			is.copies[op.dest] = op.sources[0]
		case is.build.name:
			if !slices.Equal(op.sources, []string{is.goBuild.output}) {
				t.Errorf("line %d: copies %v from the build stage, which builds %s", in.line, op.sources, is.goBuild.output)
			}
			binary = op.dest
		default:
			t.Errorf("line %d: COPY --from=%s: no such stage", in.line, op.from)
		}
	}
	is.entrypoint = execForm(t, is.final.last(t, "ENTRYPOINT"))
	if !slices.Equal(is.entrypoint, []string{binary}) {
		t.Errorf("ENTRYPOINT %v, want [%s], the binary copied from the build stage", is.entrypoint, binary)
	}
	is.cmd = execForm(t, is.final.last(t, "CMD"))
	for i, a := range is.cmd {
		if a == "--config" && i+1 < len(is.cmd) {
			is.configPath = is.cmd[i+1]
		}
	}
	if is.cmd[0] != "run" || !slices.Contains(is.cmd, "--adapter") || is.configPath == "" {
		t.Fatalf("CMD %v, want run --config <file> --adapter caddyfile", is.cmd)
	}
	if _, ok := is.copies[is.configPath]; !ok {
		t.Fatalf("CMD runs %s, which no COPY puts in the image", is.configPath)
	}

	is.env = map[string]string{}
	for _, in := range is.final.all("ENV") {
		for _, kv := range strings.Fields(in.args) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("line %d: ENV %s: use the KEY=value form", in.line, in.args)
			}
			is.env[k] = v
		}
	}
	user := is.final.last(t, "USER").args
	uid, gid, _ := strings.Cut(user, ":")
	var err error
	if is.uid, err = strconv.Atoi(uid); err != nil || is.uid == 0 {
		t.Errorf("USER %s: want a numeric non-root uid, so Kubernetes can check runAsNonRoot", user)
	}
	if gid != "" {
		if g, err := strconv.Atoi(gid); err != nil || g == 0 {
			t.Errorf("USER %s: want a numeric non-root gid", user)
		}
	}
	for _, in := range is.final.all("EXPOSE") {
		for _, p := range strings.Fields(in.args) {
			n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
			if err != nil {
				t.Fatalf("EXPOSE %s: %v", p, err)
			}
			is.exposed = append(is.exposed, n)
		}
	}
	is.versionSymbol = reflect.TypeFor[caddymodule.Handler]().PkgPath() + ".Version"
	_ = caddymodule.Version // the symbol the -X flag sets must exist
	return is
}

func TestDockerfile(t *testing.T) {
	is := readImageSpec(t)

	// The builder is the Go release go.mod asks for; the runtime is
	// distroless's static image, as the non-root variant.
	gomod := string(readFile(t, filepath.Join(is.contextRoot, "go.mod")))
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	builder := regexp.MustCompile(`^golang:` + regexp.QuoteMeta(m[1]) + `(\.\d+)?(-[a-z0-9]+)?$`)
	if !builder.MatchString(is.build.image) {
		t.Errorf("builder image %s, want golang:%s (go.mod's release)", is.build.image, m[1])
	}
	if is.build.platform != "$BUILDPLATFORM" {
		t.Errorf("builder platform %q, want $BUILDPLATFORM (cross-compile, no emulation)", is.build.platform)
	}
	if is.final.image != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime image %s", is.final.image)
	}

	// The build: static, reproducible paths, stripped, version stamped.
	gb := is.goBuild
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=" + runtime.GOOS, "GOARCH=" + runtime.GOARCH} {
		if !slices.Contains(gb.env, want) {
			t.Errorf("go build environment %v lacks %s", gb.env, want)
		}
	}
	if !slices.Contains(gb.args, "-trimpath") {
		t.Errorf("go build %v lacks -trimpath", gb.args)
	}
	ldflags := ""
	for i, a := range gb.args {
		if a == "-ldflags" && i+1 < len(gb.args) {
			ldflags = gb.args[i+1]
		}
	}
	if want := "-s -w -X " + is.versionSymbol + "=" + testVersion; ldflags != want {
		t.Errorf("-ldflags %q, want %q", ldflags, want)
	}
	if gb.pkg != "./cmd/tracingproxy" {
		t.Errorf("go build builds %s, want ./cmd/tracingproxy", gb.pkg)
	}
	workdir := is.build.last(t, "WORKDIR").args
	var copiesAll bool
	for _, in := range is.build.all("COPY") {
		op := parseCopy(t, in)
		for _, src := range op.sources {
			if _, err := os.Stat(filepath.Join(is.contextRoot, src)); err != nil {
				t.Errorf("line %d: COPY %s: %v", in.line, src, err)
			}
			if is.dockerignore.excluded(src) {
				t.Errorf("line %d: COPY %s, which .dockerignore leaves out", in.line, src)
			}
			if src == "." && (op.dest == "." || op.dest == "./" || op.dest == workdir) {
				copiesAll = true
			}
		}
	}
	if !copiesAll {
		t.Errorf("the build stage does not copy the context into its WORKDIR %s", workdir)
	}
	if _, err := os.Stat(filepath.Join(is.contextRoot, filepath.FromSlash(gb.pkg), "main.go")); err != nil {
		t.Errorf("go build %s: %v", gb.pkg, err)
	}
	for dest, src := range is.copies {
		if _, err := os.Stat(filepath.Join(is.contextRoot, src)); err != nil {
			t.Errorf("COPY %s %s: %v", src, dest, err)
		}
		if is.dockerignore.excluded(src) {
			t.Errorf("COPY %s, which .dockerignore leaves out", src)
		}
	}

	// Caddy writes its state under the XDG directories: they must be on
	// the writable /tmp.
	for _, k := range []string{"XDG_CONFIG_HOME", "XDG_DATA_HOME"} {
		if !strings.HasPrefix(is.env[k], "/tmp/") {
			t.Errorf("ENV %s=%q, want a directory under /tmp", k, is.env[k])
		}
	}

	// EXPOSE names the ports the shipped Caddyfile listens on by default.
	sc, _, err := loadSidecar(t, filepath.Join(is.contextRoot, filepath.FromSlash(is.copies[is.configPath])), nil)
	if err != nil {
		t.Fatal(err)
	}
	wantPorts := []int{portOf(t, sc.proxyListen), portOf(t, sc.metricsListen)}
	if !slices.Equal(is.exposed, wantPorts) {
		t.Errorf("EXPOSE %v, want %v (proxy, metrics)", is.exposed, wantPorts)
	}
}

// dockerignore holds the patterns of a .dockerignore file.
type dockerignore []string

// readDockerignore reads the patterns. Exceptions (!pattern) are refused:
// excluded would not implement them.
func readDockerignore(t *testing.T, name string) dockerignore {
	t.Helper()
	var d dockerignore
	for _, line := range strings.Split(string(readFile(t, name)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: %q: exceptions are not supported by this test", line)
		}
		d = append(d, path.Clean(strings.TrimPrefix(line, "/")))
	}
	return d
}

// excluded reports whether Docker leaves the context path rel (slash
// separated) out of the build context: a pattern matches it or one of its
// parent directories. "**" matches any number of directories.
func (d dockerignore) excluded(rel string) bool {
	rel = path.Clean(rel)
	if rel == "." {
		return false
	}
	parts := strings.Split(rel, "/")
	for _, p := range d {
		pat := strings.Split(p, "/")
		for n := 1; n <= len(parts); n++ {
			if globMatch(pat, parts[:n]) {
				return true
			}
		}
	}
	return false
}

func globMatch(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if globMatch(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], name[0])
	return ok && err == nil && globMatch(pat[1:], name[1:])
}

func TestDockerignore(t *testing.T) {
	d := dockerignore{".git", "tracingproxy", "**/*.test", "cmd/tracingproxy/tracingproxy"}
	excluded := []string{".git", ".git/HEAD", "tracingproxy", "caddymodule.test", "caddymodule/x.test", "cmd/tracingproxy/tracingproxy"}
	kept := []string{"go.mod", "cmd/tracingproxy", "cmd/tracingproxy/main.go", "deploy/Caddyfile", "a/tracingproxy", "x.testdata"}
	for _, p := range excluded {
		if !d.excluded(p) {
			t.Errorf("%s kept, want excluded", p)
		}
	}
	for _, p := range kept {
		if d.excluded(p) {
			t.Errorf("%s excluded, want kept", p)
		}
	}

	// The real file keeps every Go source and module file: the build
	// needs them.
	root := repoRoot(t)
	real := readDockerignore(t, filepath.Join(root, ".dockerignore"))
	if !real.excluded(".git") {
		t.Error(".git is in the build context: go build would try to stamp VCS state")
	}
	for _, keep := range []string{"go.mod", "go.sum", "cmd/tracingproxy/main.go", "caddymodule/module.go", "deploy/Caddyfile"} {
		if real.excluded(keep) {
			t.Errorf(".dockerignore leaves out %s", keep)
		}
	}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if e.IsDir() && rel == ".git" {
			return filepath.SkipDir
		}
		if strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") && real.excluded(rel) {
			t.Errorf(".dockerignore leaves out %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// copyContext copies the files of root that .dockerignore keeps to dst: the
// build context Docker would send.
func copyContext(t *testing.T, root, dst string, d dockerignore) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if d.excluded(filepath.ToSlash(rel)) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(target, 0o755)
		case e.Type().IsRegular():
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			out, err := os.Create(target)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, src); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestImageBuild runs the Dockerfile's go build on the context .dockerignore
// leaves, checks the binary is static, stripped and stamped with the
// version, and runs the image's CMD as `validate` on the shipped Caddyfile.
// imageBuildBudget is how long TestImageBuild's nested build may take: at
// most 5 minutes, and a minute less than the test binary has left.
func imageBuildBudget(t *testing.T) time.Duration {
	budget := 5 * time.Minute
	if d, ok := t.Deadline(); ok {
		if left := time.Until(d) - time.Minute; left < budget {
			budget = max(left, 10*time.Second)
		}
	}
	return budget
}

func TestImageBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary (about a minute)")
	}
	is := readImageSpec(t)
	ctxDir := filepath.Join(t.TempDir(), "context")
	copyContext(t, is.contextRoot, ctxDir, is.dockerignore)

	out := filepath.Join(t.TempDir(), "tracingproxy")
	args := slices.Clone(is.goBuild.args)
	for i := range args {
		if args[i] == "-o" {
			args[i+1] = out
		}
	}
	// The image's flags (CGO_ENABLED=0, -trimpath) share no build cache
	// with the test binary: on a cold, busy machine this is a full build of
	// Caddy. It gets its own deadline, well inside the test binary's, so a
	// slow machine skips this one check instead of timing out the package.
	budget := imageBuildBudget(t)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	build := exec.CommandContext(ctx, "go", args...)
	build.Dir = ctxDir
	build.Env = append(os.Environ(), is.goBuild.env...)
	if b, err := build.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			t.Skipf("go %s did not finish within its %s budget on this machine; the static-binary check did not run", strings.Join(args, " "), budget)
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a PT_INTERP header: it needs a dynamic loader, which distroless/static lacks")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary imports shared libraries %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary keeps its symbol table: -s did not apply")
	}
	bin := readFile(t, out)
	if !bytes.Contains(bin, []byte(testVersion)) {
		t.Errorf("the binary does not hold the version %q set with -X %s", testVersion, is.versionSymbol)
	}

	// The image's CMD, with validate for run: provisions every module of
	// the shipped configuration without opening a port.
	src, ok := is.copies[is.configPath]
	if !ok {
		t.Fatalf("no COPY to %s", is.configPath)
	}
	argv := slices.Clone(is.cmd)
	argv[0] = "validate"
	for i := range argv {
		if argv[i] == is.configPath {
			argv[i] = filepath.Join(ctxDir, filepath.FromSlash(src))
		}
	}
	cf := readFile(t, filepath.Join(ctxDir, filepath.FromSlash(src)))
	for _, tc := range []struct {
		env   map[string]string
		valid bool
	}{
		{nil, true},
		{map[string]string{"EXPORTER": "zipkin+skywalking", "ZIPKIN_URL": "http://127.0.0.1:9411/api/v2/spans", "SKYWALKING_URL": "grpc://127.0.0.1:11800"}, true},
		{map[string]string{"EXPORTER": "zipkin", "ZIPKIN_URL": "127.0.0.1:9411"}, false},
	} {
		run := exec.Command(out, argv...)
		tmp := t.TempDir()
		run.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp}
		for k, v := range is.env {
			run.Env = append(run.Env, k+"="+filepath.Join(tmp, strings.TrimPrefix(v, "/tmp/")))
		}
		for _, name := range caddyfileEnv(cf) {
			if v, ok := tc.env[name]; ok {
				run.Env = append(run.Env, name+"="+v)
			}
		}
		b, err := run.CombinedOutput()
		if valid := err == nil && bytes.Contains(b, []byte("Valid configuration")); valid != tc.valid {
			t.Errorf("%s %v with %v: valid %t, want %t: %v\n%s", out, argv, tc.env, valid, tc.valid, err, b)
		}
	}
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, name string) []*yaml.Node {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, name)))
	var docs []*yaml.Node
	for {
		n := new(yaml.Node)
		err := dec.Decode(n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		docs = append(docs, n)
	}
}

func decodeNode(t *testing.T, n *yaml.Node, v any) {
	t.Helper()
	if err := n.Decode(v); err != nil {
		t.Fatalf("line %d: %v", n.Line, err)
	}
}

// Kubernetes objects, in the fields the tests read.
type (
	k8sMeta struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	k8sProbe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	k8sContainer struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Env     []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom any    `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
		LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext struct {
			RunAsUser                *int  `yaml:"runAsUser"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	k8sDeployment struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata k8sMeta `yaml:"metadata"`
				Spec     struct {
					ShareProcessNamespace *bool `yaml:"shareProcessNamespace"`
					SecurityContext       struct {
						RunAsNonRoot *bool `yaml:"runAsNonRoot"`
						RunAsUser    *int  `yaml:"runAsUser"`
						RunAsGroup   *int  `yaml:"runAsGroup"`
					} `yaml:"securityContext"`
					TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
					Containers                    []k8sContainer `yaml:"containers"`
					Volumes                       []struct {
						Name      string `yaml:"name"`
						ConfigMap *struct {
							Name string `yaml:"name"`
						} `yaml:"configMap"`
						EmptyDir *struct {
							SizeLimit string `yaml:"sizeLimit"`
						} `yaml:"emptyDir"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	k8sService struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	k8sConfigMap struct {
		Metadata k8sMeta           `yaml:"metadata"`
		Data     map[string]string `yaml:"data"`
	}
	kustomization struct {
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
		Images []struct {
			Name   string `yaml:"name"`
			NewTag string `yaml:"newTag"`
		} `yaml:"images"`
	}
)

// imageName is an image reference without its tag or digest.
func imageName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[:i]
	}
	return ref
}

// subset reports whether every label of want is in have.
func subset(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return len(want) > 0
}

// checkKnownEnv fails for environment variables the Caddyfile does not read:
// a misspelt name would leave a default in force without a word.
func checkKnownEnv(t *testing.T, cf []byte, env map[string]string) {
	t.Helper()
	known := caddyfileEnv(cf)
	for name := range env {
		if !slices.Contains(known, name) {
			t.Errorf("environment variable %s is not read by the Caddyfile (it reads %v)", name, known)
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "deploy", "kubernetes")
	is := readImageSpec(t)
	shipped := readFile(t, filepath.Join(root, "deploy", "Caddyfile"))

	var kz kustomization
	decodeNode(t, yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0], &kz)
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var resources []string
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			resources = append(resources, filepath.Base(f))
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(kz.Resources)), resources) {
		t.Errorf("kustomization resources %v, want every manifest %v", kz.Resources, resources)
	}

	var (
		deployments []k8sDeployment
		services    []k8sService
		configMaps  = map[string]k8sConfigMap{}
	)
	for _, f := range resources {
		for _, doc := range yamlDocs(t, filepath.Join(dir, f)) {
			var head struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
			}
			decodeNode(t, doc, &head)
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 Deployment":
				var d k8sDeployment
				decodeNode(t, doc, &d)
				deployments = append(deployments, d)
			case "v1 Service":
				var s k8sService
				decodeNode(t, doc, &s)
				services = append(services, s)
			case "v1 ConfigMap":
				var c k8sConfigMap
				decodeNode(t, doc, &c)
				configMaps[c.Metadata.Name] = c
			default:
				t.Errorf("%s: unexpected %s %s", f, head.APIVersion, head.Kind)
			}
		}
	}
	if len(deployments) != 1 || len(services) != 1 || len(configMaps) != 1 {
		t.Fatalf("%d deployments, %d services, %d config maps; want one each", len(deployments), len(services), len(configMaps))
	}
	d, svc := deployments[0], services[0]
	pod := d.Spec.Template.Spec
	if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
		t.Errorf("selector %v does not select the pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}
	if !subset(svc.Spec.Selector, d.Spec.Template.Metadata.Labels) {
		t.Errorf("service selector %v does not select the pod labels %v", svc.Spec.Selector, d.Spec.Template.Metadata.Labels)
	}

	sidecar, app := sidecarAndApp(t, pod.Containers)
	if len(kz.Images) != 1 || kz.Images[0].Name != imageName(sidecar.Image) {
		t.Errorf("kustomization images %v do not name the sidecar image %s", kz.Images, sidecar.Image)
	}

	// No privileges anywhere.
	if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != is.uid {
		t.Errorf("pod securityContext: want runAsNonRoot and runAsUser %d (the image's USER)", is.uid)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("container %s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities drop ALL", c.Name)
		}
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
			t.Errorf("container %s: want cpu and memory requests and a memory limit, got %+v", c.Name, c.Resources)
		}
	}

	// The sidecar runs the image's CMD, so the config map must be mounted
	// where CMD reads it, under the key of that file name; /tmp, where the
	// image keeps Caddy's state, must be a writable volume.
	if sidecar.Command != nil || sidecar.Args != nil {
		t.Errorf("the sidecar overrides the image's command: %v %v", sidecar.Command, sidecar.Args)
	}
	volumes := map[string]string{} // mount path → config map name, or "" for an emptyDir
	for _, m := range sidecar.VolumeMounts {
		for _, v := range pod.Volumes {
			switch {
			case v.Name != m.Name:
			case v.ConfigMap != nil:
				volumes[m.MountPath] = v.ConfigMap.Name
				if !m.ReadOnly {
					t.Errorf("config volume %s is mounted read-write", m.Name)
				}
			case v.EmptyDir != nil:
				volumes[m.MountPath] = ""
				if v.EmptyDir.SizeLimit == "" {
					t.Errorf("emptyDir %s has no sizeLimit", m.Name)
				}
			}
		}
	}
	cmName, ok := volumes[path.Dir(is.configPath)]
	cm, found := configMaps[cmName]
	if !ok || !found {
		t.Fatalf("no config map mounted at %s, where the image reads %s", path.Dir(is.configPath), is.configPath)
	}
	cf, ok := cm.Data[path.Base(is.configPath)]
	if !ok {
		t.Fatalf("config map %s has no key %s", cmName, path.Base(is.configPath))
	}
	if cf != string(shipped) {
		t.Error("the config map's Caddyfile differs from deploy/Caddyfile: copy it over")
	}
	for _, k := range []string{"XDG_CONFIG_HOME", "XDG_DATA_HOME"} {
		writable := false
		for mount, cm := range volumes {
			writable = writable || (cm == "" && strings.HasPrefix(is.env[k], mount+"/"))
		}
		if !writable {
			t.Errorf("the image's %s=%s is on no emptyDir: Caddy cannot write its state on the read-only root", k, is.env[k])
		}
	}

	// The config map's Caddyfile, with the sidecar's environment, loads.
	env := map[string]string{}
	for _, e := range sidecar.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil { // a Secret, say: any value will do here
			env[e.Name] = "from-" + e.Name
		}
	}
	checkKnownEnv(t, shipped, env)
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, h, err := loadSidecar(t, file, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := exporterList(h); len(got) != 1 || !strings.HasPrefix(got[0], "zipkin ") {
		t.Errorf("exporters %v, want zipkin", got)
	}

	// Ports: the Service reaches the sidecar's proxy port, probes and
	// Prometheus its operations port, and the sidecar the app over loopback.
	ports := map[string]int{}
	for _, p := range sidecar.Ports {
		ports[p.Name] = p.ContainerPort
		ports[strconv.Itoa(p.ContainerPort)] = p.ContainerPort
	}
	proxyPort, opsPort := portOf(t, sc.proxyListen), portOf(t, sc.metricsListen)
	if len(svc.Spec.Ports) != 1 || ports[svc.Spec.Ports[0].TargetPort] != proxyPort {
		t.Errorf("service ports %+v: want one, targeting the sidecar's port %d", svc.Spec.Ports, proxyPort)
	}
	for name, p := range map[string]*k8sProbe{"readiness": sidecar.ReadinessProbe, "liveness": sidecar.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || ports[p.HTTPGet.Port] != opsPort {
			got := "none"
			if p != nil && p.HTTPGet != nil {
				got = fmt.Sprintf("GET %s on port %s", p.HTTPGet.Path, p.HTTPGet.Port)
			}
			t.Errorf("%s probe: %s, want GET /healthz on port %d", name, got, opsPort)
		}
	}
	ann := d.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(opsPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus annotations %v: want scrape true, port %d, path /metrics", ann, opsPort)
	}
	if len(sc.upstreams) != 1 {
		t.Fatalf("upstreams %v, want the app", sc.upstreams)
	}
	host, _, _ := net.SplitHostPort(sc.upstreams[0])
	appPort := portOf(t, sc.upstreams[0])
	if host != "127.0.0.1" || !slices.Contains(app.Args, "--port="+strconv.Itoa(appPort)) {
		t.Errorf("the sidecar proxies to %s; the app runs %v", sc.upstreams[0], app.Args)
	}

	// A rollout waits for in-flight requests and the final flush.
	g := 30 // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		g = *pod.TerminationGracePeriodSeconds
	}
	if time.Duration(g)*time.Second <= sc.gracePeriod+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d: want more than grace_period %s plus the 5s final flush", g, sc.gracePeriod)
	}
}

// Compose services, in the fields the tests read.
type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Profiles    []string          `yaml:"profiles"`
	DependsOn   yaml.Node         `yaml:"depends_on"`
	ReadOnly    bool              `yaml:"read_only"`
	Tmpfs       []string          `yaml:"tmpfs"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	// For a service in a sidecar's namespaces.
	NetworkMode   string   `yaml:"network_mode"`
	Pid           string   `yaml:"pid"`
	User          string   `yaml:"user"`
	Volumes       []string `yaml:"volumes"`
	ContainerName string   `yaml:"container_name"`
}

// dependsOn lists the services s depends on, in either compose syntax.
func (s composeService) dependsOn(t *testing.T) []string {
	t.Helper()
	switch s.DependsOn.Kind {
	case 0:
		return nil
	case yaml.SequenceNode:
		var names []string
		decodeNode(t, &s.DependsOn, &names)
		return names
	default:
		var m map[string]any
		decodeNode(t, &s.DependsOn, &m)
		return slices.Sorted(maps.Keys(m))
	}
}

// publishedPorts maps container ports to host ports ("8081:8080").
func publishedPorts(t *testing.T, ports []string) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, p := range ports {
		hostPort, containerPort, ok := strings.Cut(strings.TrimSuffix(p, "/tcp"), ":")
		if !ok {
			t.Fatalf("port %q: publish as host:container", p)
		}
		h, err1 := strconv.Atoi(hostPort)
		c, err2 := strconv.Atoi(containerPort)
		if err1 != nil || err2 != nil {
			t.Fatalf("port %q: not numbers", p)
		}
		out[c] = h
	}
	return out
}

func TestComposeDemo(t *testing.T) {
	root := repoRoot(t)
	deploy := filepath.Join(root, "deploy")
	is := readImageSpec(t)
	shipped := filepath.Join(root, filepath.FromSlash(is.copies[is.configPath]))
	cf := readFile(t, shipped)

	var compose struct {
		Services map[string]composeService `yaml:"services"`
	}
	decodeNode(t, yamlDocs(t, filepath.Join(deploy, "compose.yaml"))[0], &compose)
	svcs := compose.Services

	var proxies []string
	for _, name := range slices.Sorted(maps.Keys(svcs)) {
		s := svcs[name]
		if s.Image == "" || strings.HasSuffix(s.Image, ":latest") || !strings.Contains(s.Image[strings.LastIndexByte(s.Image, '/')+1:], ":") {
			t.Errorf("service %s: image %q, want a pinned tag", name, s.Image)
		}
		for _, dep := range s.dependsOn(t) {
			ds, ok := svcs[dep]
			if !ok {
				t.Errorf("service %s depends on %s, which does not exist", name, dep)
			} else if len(ds.Profiles) > 0 && !slices.Equal(ds.Profiles, s.Profiles) {
				t.Errorf("service %s (profiles %v) depends on %s, started only with profiles %v", name, s.Profiles, dep, ds.Profiles)
			}
		}
		if s.Build == nil {
			continue
		}
		proxies = append(proxies, name)
		ctxDir := filepath.Join(deploy, filepath.FromSlash(s.Build.Context))
		if ctxDir != root {
			t.Errorf("service %s builds in %s, want the repository root", name, ctxDir)
		}
		if df := filepath.Join(ctxDir, filepath.FromSlash(s.Build.Dockerfile)); df != is.dockerfilePath {
			t.Errorf("service %s builds %s, want %s", name, df, is.dockerfilePath)
		}
	}
	if len(proxies) == 0 {
		t.Fatal("no service builds tracingproxy")
	}

	// upstream "app:9000" must be a service of the same profiles listening
	// there; the collectors likewise.
	serviceAt := func(proxy, hostport string, wantPort func(composeService, int) bool) {
		t.Helper()
		host, _, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Errorf("%s: %q: %v", proxy, hostport, err)
			return
		}
		s, ok := svcs[host]
		switch {
		case !ok:
			t.Errorf("%s sends to %s: no such service", proxy, hostport)
		case len(s.Profiles) > 0 && !slices.Equal(s.Profiles, svcs[proxy].Profiles):
			t.Errorf("%s sends to %s, started only with profiles %v", proxy, host, s.Profiles)
		case !wantPort(s, portOf(t, hostport)):
			t.Errorf("%s sends to %s, which does not listen on that port", proxy, hostport)
		case !slices.Contains(svcs[proxy].dependsOn(t), host):
			t.Errorf("%s does not depend on %s", proxy, host)
		}
	}
	for _, name := range proxies {
		t.Run(name, func(t *testing.T) {
			s := svcs[name]
			if !s.ReadOnly || !slices.Contains(s.Tmpfs, "/tmp") || !slices.Equal(s.CapDrop, []string{"ALL"}) ||
				!slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("want read_only, tmpfs /tmp, cap_drop ALL, no-new-privileges; got %+v", s)
			}
			if len(s.Command) > 0 {
				checkComposeProxyCommand(t, deploy, svcs, name, is.uid)
				return
			}
			checkKnownEnv(t, cf, s.Environment)
			sc, h, err := loadSidecar(t, shipped, s.Environment)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := publishedPorts(t, s.Ports)[portOf(t, sc.proxyListen)]; !ok {
				t.Errorf("ports %v do not publish the proxy's %s", s.Ports, sc.proxyListen)
			}
			for _, u := range sc.upstreams {
				serviceAt(name, u, func(app composeService, port int) bool {
					return slices.Contains(app.Command, "--port="+strconv.Itoa(port))
				})
			}
			for _, e := range h.Exporters {
				u, err := url.Parse(e.URL)
				if err != nil {
					t.Fatal(err)
				}
				switch e.Type {
				case "zipkin":
					serviceAt(name, u.Host, func(z composeService, port int) bool {
						return imageName(z.Image) == "openzipkin/zipkin" && port == 9411
					})
				case "skywalking":
					serviceAt(name, u.Host, func(oap composeService, port int) bool {
						return imageName(oap.Image) == "apache/skywalking-oap-server" && port == 11800
					})
				}
			}
		})
	}
	if z := svcs["zipkin"]; publishedPorts(t, z.Ports)[9411] != 9411 {
		t.Errorf("zipkin ports %v: want the UI on 9411", z.Ports)
	}
}

// sidecarAndApp returns the tracingproxy sidecar and the app of a pod's
// containers, failing t unless there are exactly those two.
func sidecarAndApp(t *testing.T, containers []k8sContainer) (sidecar, app *k8sContainer) {
	t.Helper()
	for i, c := range containers {
		if imageName(c.Image) == "tracingproxy" {
			sidecar = &containers[i]
		} else {
			app = &containers[i]
		}
	}
	if sidecar == nil || app == nil || len(containers) != 2 {
		t.Fatalf("containers %v: want the app and one tracingproxy sidecar", containers)
	}
	return sidecar, app
}
