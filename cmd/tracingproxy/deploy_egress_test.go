package main

// Egress in the deployments (issue 9 item 5): the compose demo's legacy
// chain, whose sidecar runs `tracingproxy proxy ... --egress`, and
// deploy/kubernetes/egress, the sidecar in both directions. As in
// deploy_test.go, nothing runs in a container: the tests check that every
// part says what the others expect, and that tracingproxy loads each
// configuration.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/tracingproxy/tracingproxy/internal/legacyapp"
)

// proxyCommand is a `tracingproxy proxy ...` command line a deployment runs,
// as the proxy command's own flag set reads it.
type proxyCommand struct {
	args             []string
	from, to, zipkin string
	service          string
	egress           [][2]string // listener, target URL, in order
}

// parseProxyCommand reads args (starting with "proxy") with the flag set the
// proxy command registers, so a flag the command does not have, or a value
// of the wrong type, fails here as it would in the container.
func parseProxyCommand(t *testing.T, args []string) proxyCommand {
	t.Helper()
	if len(args) == 0 || args[0] != "proxy" {
		t.Fatalf("command %q: want the proxy subcommand", args)
	}
	reg, ok := caddycmd.Commands()["proxy"]
	if !ok {
		t.Fatal("no proxy command registered")
	}
	cmd := &cobra.Command{Use: reg.Name}
	reg.CobraFunc(cmd)
	fs := cmd.Flags()
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if fs.NArg() > 0 {
		t.Fatalf("%q: stray arguments %q", args, fs.Args())
	}
	str := func(name string) string {
		v, err := fs.GetString(name)
		if err != nil {
			t.Fatalf("flag --%s: %v", name, err)
		}
		return v
	}
	pc := proxyCommand{args: args, from: str("from"), to: str("to"), zipkin: str("zipkin"), service: str("service")}
	egress, err := fs.GetStringArray("egress")
	if err != nil {
		t.Fatalf("flag --egress: %v", err)
	}
	for _, e := range egress {
		listen, target, ok := strings.Cut(e, "=")
		if !ok {
			t.Fatalf("--egress %q: want LISTEN=URL", e)
		}
		pc.egress = append(pc.egress, [2]string{listen, target})
	}
	return pc
}

// runCLI runs the tracingproxy command line, this test binary re-executed
// (TestMain), and returns what it printed on stdout.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), execEnv+"=1", "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		<-ctx.Done()
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	}()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tracingproxy %q: %v\n%s", args, err, stderr.Bytes())
	}
	return string(out)
}

// validateProxyCommand has the command print its Caddyfile and `tracingproxy
// validate` load it, provisioning every module as a start would (without
// binding a port), and returns the Caddyfile.
func validateProxyCommand(t *testing.T, pc proxyCommand) string {
	t.Helper()
	cf := runCLI(t, append(slices.Clone(pc.args), "--print-config")...)
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	runCLI(t, "validate", "--config", file, "--adapter", "caddyfile")
	return cf
}

// argAfter is the value following flag in args, "" when absent.
func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// isLoopback reports whether host:port is on a loopback address.
func isLoopback(t *testing.T, hostport string) bool {
	t.Helper()
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// checkComposeProxyCommand checks a compose proxy that runs `tracingproxy
// proxy ...` with egress: the command parses and its configuration
// validates; it publishes its port; its upstream is an app in its network
// namespace that listens there, and, to be stitched by process, in its
// process namespace as the proxy's user; the app calls each egress listener,
// and each listener's target is a service of the file on the port it serves.
func checkComposeProxyCommand(t *testing.T, deploy string, svcs map[string]composeService, name string, uid int) {
	t.Helper()
	s := svcs[name]
	pc := parseProxyCommand(t, s.Command)
	validateProxyCommand(t, pc)
	if _, ok := publishedPorts(t, s.Ports)[portOf(t, pc.from)]; !ok {
		t.Errorf("ports %v do not publish --from %s", s.Ports, pc.from)
	}
	if len(pc.egress) == 0 {
		t.Errorf("%q: no --egress", s.Command)
	}

	// The app: in the proxy's network namespace, listening on --to.
	var app string
	for other, o := range svcs {
		if o.NetworkMode == "service:"+name {
			app = other
		}
	}
	if app == "" {
		t.Fatalf("no service runs in %s's network namespace (network_mode: service:%s)", name, name)
	}
	a := svcs[app]
	if !isLoopback(t, pc.to) || argAfter(a.Command, "--listen") != pc.to {
		t.Errorf("%s proxies to %s; %s runs %q", name, pc.to, app, a.Command)
	}
	if s.ContainerName == "" || a.Pid != "container:"+s.ContainerName {
		t.Errorf("%s: pid %q, want container:%s, the sidecar's process namespace (the process method)", app, a.Pid, s.ContainerName)
	}
	if a.User != fmt.Sprintf("%d:%d", uid, uid) {
		t.Errorf("%s runs as %q, want the sidecar's %d:%d: /proc/<pid>/fd is readable by the same user only", app, a.User, uid, uid)
	}
	if !a.ReadOnly || !slices.Equal(a.CapDrop, []string{"ALL"}) || !slices.Contains(a.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("%s: want read_only, cap_drop ALL, no-new-privileges", app)
	}
	if !slices.Contains(a.dependsOn(t), name) {
		t.Errorf("%s does not depend on %s, whose namespaces it joins", app, name)
	}
	// Its program comes from the repository: the legacy service the
	// stitching tests run.
	for _, v := range a.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		dst, _, _ = strings.Cut(dst, ":")
		if !slices.Contains(a.Command, dst) {
			continue
		}
		if _, err := os.Stat(filepath.Join(deploy, filepath.FromSlash(src))); err != nil {
			t.Errorf("%s mounts %s: %v", app, src, err)
		}
		if !bytes.Equal(readFile(t, filepath.Join(deploy, filepath.FromSlash(src))), legacyapp.Script) {
			t.Errorf("%s runs %s, which is not internal/legacyapp's legacy.py", app, src)
		}
	}

	// Egress: the app calls the listener; the listener's target serves.
	for _, e := range pc.egress {
		listen, target := e[0], e[1]
		if !isLoopback(t, listen) {
			t.Errorf("--egress %s: the listener is not on loopback", listen)
		}
		if argAfter(a.Command, "--upstream") != "http://"+listen {
			t.Errorf("%s calls %s, not the egress listener %s", app, argAfter(a.Command, "--upstream"), listen)
		}
		u, err := url.Parse(target)
		if err != nil || u.Port() == "" {
			t.Fatalf("--egress target %q: want a URL with a port", target)
		}
		ts, ok := svcs[u.Hostname()]
		switch {
		case !ok:
			t.Errorf("--egress target %s: no such service", target)
		case !slices.Contains(s.dependsOn(t), u.Hostname()):
			t.Errorf("%s does not depend on its egress target %s", name, u.Hostname())
		case ts.Build == nil:
			t.Errorf("--egress target %s is not a tracingproxy: the trace would end there", u.Hostname())
		default:
			sc, _, err := loadSidecar(t, filepath.Join(deploy, "Caddyfile"), ts.Environment)
			if err != nil {
				t.Fatal(err)
			}
			if portOf(t, sc.proxyListen) != portOf(t, u.Host) {
				t.Errorf("--egress target %s: %s serves on %s", target, u.Hostname(), sc.proxyListen)
			}
		}
	}
	zu, err := url.Parse(pc.zipkin)
	if err != nil || zu.Hostname() != "zipkin" || zu.Port() != "9411" || !slices.Contains(s.dependsOn(t), "zipkin") {
		t.Errorf("--zipkin %q: want the zipkin service on 9411, depended on", pc.zipkin)
	}
}

// caddySite is one tracingproxy handler of an adapted Caddyfile, with the
// server it is on and the reverse_proxy after it.
type caddySite struct {
	listen    []string
	service   string
	stitch    []string // the ingress handler's stitch methods; nil when it has none
	egress    bool     // the handler is in egress mode
	forward   bool     // as a forward proxy (egress forward_proxy)
	upstreams []string // reverse_proxy dial addresses
	swAddress string   // upstream_address, the address sw8 names
}

// adaptSites adapts the Caddyfile at file and returns its tracingproxy
// handlers, every server's listen addresses, and the grace period.
func adaptSites(t *testing.T, file string) (sites []caddySite, listens [][]string, grace time.Duration) {
	t.Helper()
	js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(readFile(t, file), map[string]any{"filename": file})
	if err != nil || len(warnings) > 0 {
		t.Fatalf("adapting %s: %v %v", file, err, warnings)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				GracePeriod caddy.Duration `json:"grace_period"`
				Servers     map[string]struct {
					Listen []string `json:"listen"`
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
	for _, srv := range cfg.Apps.HTTP.Servers {
		listens = append(listens, srv.Listen)
		for _, r := range srv.Routes {
			for i, raw := range r.Handle {
				var h struct {
					Handler         string `json:"handler"`
					ServiceName     string `json:"service_name"`
					UpstreamAddress string `json:"upstream_address"`
					Egress          *struct {
						ForwardProxy bool `json:"forward_proxy"`
					} `json:"egress"`
					Stitch *struct {
						Methods []string `json:"methods"`
					} `json:"stitch"`
				}
				if err := json.Unmarshal(raw, &h); err != nil {
					t.Fatal(err)
				}
				if h.Handler != "tracingproxy" {
					continue
				}
				s := caddySite{listen: srv.Listen, service: h.ServiceName, egress: h.Egress != nil, forward: h.Egress != nil && h.Egress.ForwardProxy, swAddress: h.UpstreamAddress}
				if h.Stitch != nil {
					s.stitch = h.Stitch.Methods
				}
				var rp struct {
					Handler   string `json:"handler"`
					Upstreams []struct {
						Dial string `json:"dial"`
					} `json:"upstreams"`
				}
				if i+1 < len(r.Handle) {
					if err := json.Unmarshal(r.Handle[i+1], &rp); err != nil {
						t.Fatal(err)
					}
				}
				if rp.Handler != "reverse_proxy" {
					t.Fatalf("%s: the tracingproxy handler of %v is not followed by reverse_proxy", file, srv.Listen)
				}
				for _, u := range rp.Upstreams {
					s.upstreams = append(s.upstreams, u.Dial)
				}
				sites = append(sites, s)
			}
		}
	}
	return sites, listens, time.Duration(cfg.Apps.HTTP.GracePeriod)
}

// TestKubernetesEgress checks deploy/kubernetes/egress: orders-legacy with
// tracingproxy as its sidecar in both directions, and payments, which it
// calls through the sidecar's egress listener.
func TestKubernetesEgress(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "deploy", "kubernetes", "egress")
	is := readImageSpec(t)

	// The kustomization names every file beside it: manifests as
	// resources, the rest as generated config maps.
	var kz kustomization
	decodeNode(t, yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0], &kz)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files, named []string
	for _, e := range entries {
		if e.Name() != "kustomization.yaml" {
			files = append(files, e.Name())
		}
	}
	named = append(named, kz.Resources...)
	generated := map[string][]string{} // config map → its files
	for _, g := range kz.ConfigMapGenerator {
		generated[g.Name] = g.Files
		named = append(named, g.Files...)
	}
	if slices.Sort(named); !slices.Equal(named, files) {
		t.Errorf("the kustomization names %v, the directory holds %v", named, files)
	}

	var (
		deployments = map[string]k8sDeployment{}
		services    = map[string]k8sService{}
	)
	for _, f := range kz.Resources {
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
				deployments[d.Metadata.Name] = d
			case "v1 Service":
				var s k8sService
				decodeNode(t, doc, &s)
				services[s.Metadata.Name] = s
			default:
				t.Errorf("%s: unexpected %s %s", f, head.APIVersion, head.Kind)
			}
		}
	}
	d, ok := deployments["orders-legacy"]
	if !ok || len(deployments) != 2 || len(services) != 2 {
		t.Fatalf("deployments %v, services %v: want orders-legacy and payments, a Service each", slices.Sorted(maps.Keys(deployments)), slices.Sorted(maps.Keys(services)))
	}
	for name, svc := range services {
		if dep, ok := deployments[name]; !ok || !subset(svc.Spec.Selector, dep.Spec.Template.Metadata.Labels) ||
			!subset(dep.Spec.Selector.MatchLabels, dep.Spec.Template.Metadata.Labels) {
			t.Errorf("service %s does not select the pods of a deployment of its name", name)
		}
	}
	pod := d.Spec.Template.Spec
	sidecar, app := sidecarAndApp(t, pod.Containers)
	if len(kz.Images) != 1 || kz.Images[0].Name != imageName(sidecar.Image) {
		t.Errorf("kustomization images %v do not name the sidecar image %s", kz.Images, sidecar.Image)
	}

	// Method process: the sidecar sees the app's processes and may read
	// their fds, so one process namespace and one user, and no privilege.
	if p := pod.ShareProcessNamespace; p == nil || !*p {
		t.Error("shareProcessNamespace is not true: the sidecar cannot see the app's processes (method process)")
	}
	if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != is.uid ||
		sc.RunAsGroup == nil || *sc.RunAsGroup != is.uid {
		t.Errorf("pod securityContext: want runAsNonRoot, runAsUser and runAsGroup %d (the image's USER), for both containers", is.uid)
	}
	for _, dep := range deployments {
		for _, c := range dep.Spec.Template.Spec.Containers {
			sc := c.SecurityContext
			if sc.RunAsUser != nil && *sc.RunAsUser != is.uid {
				t.Errorf("container %s runs as %d, not the pod's %d: /proc/<pid>/fd is readable by the same user only", c.Name, *sc.RunAsUser, is.uid)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
				t.Errorf("container %s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities drop ALL", c.Name)
			}
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
				t.Errorf("container %s: want cpu and memory requests and a memory limit, got %+v", c.Name, c.Resources)
			}
		}
	}

	// Each container reads its generated config map where it is mounted:
	// the sidecar the image's CMD config, the app its program.
	mounted := func(c *k8sContainer, file string) (string, bool) {
		for _, m := range c.VolumeMounts {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil && m.MountPath == path.Dir(file) {
					return v.ConfigMap.Name, m.ReadOnly && slices.Contains(generated[v.ConfigMap.Name], path.Base(file))
				}
			}
		}
		return "", false
	}
	if sidecar.Command != nil || sidecar.Args != nil {
		t.Errorf("the sidecar overrides the image's command: %v %v", sidecar.Command, sidecar.Args)
	}
	if cm, ok := mounted(sidecar, is.configPath); !ok {
		t.Errorf("the sidecar reads %s; config map %q mounted there (read-only) does not generate it", is.configPath, cm)
	}
	tmp := false
	for _, m := range sidecar.VolumeMounts {
		for _, v := range pod.Volumes {
			tmp = tmp || (v.Name == m.Name && v.EmptyDir != nil && strings.HasPrefix(is.env["XDG_DATA_HOME"], m.MountPath+"/"))
		}
	}
	if !tmp {
		t.Errorf("the image's XDG_DATA_HOME=%s is on no emptyDir of the sidecar", is.env["XDG_DATA_HOME"])
	}
	cmd := slices.Concat(app.Command, app.Args)
	program := slices.IndexFunc(cmd, func(a string) bool { return strings.HasSuffix(a, ".py") })
	if program < 0 {
		t.Fatalf("the app runs %q: no Python program", cmd)
	}
	if cm, ok := mounted(app, cmd[program]); !ok {
		t.Errorf("the app runs %s; config map %q mounted there (read-only) does not generate it", cmd[program], cm)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, path.Base(cmd[program]))), legacyapp.Script) {
		t.Errorf("%s is not internal/legacyapp/legacy.py: copy it over", path.Base(cmd[program]))
	}
	if argAfter(cmd, "--model") != string(legacyapp.Prefork) {
		t.Errorf("the app runs %q: the example is of a prefork service, the one method process stitches", cmd)
	}

	// The Caddyfile loads, as `tracingproxy validate` provisions it.
	caddyfilePath := filepath.Join(dir, path.Base(is.configPath))
	runCLI(t, "validate", "--config", caddyfilePath, "--adapter", "caddyfile")
	sites, listens, grace := adaptSites(t, caddyfilePath)
	var ingress *caddySite
	var egress []caddySite
	for i, s := range sites {
		switch {
		case s.egress:
			egress = append(egress, s)
		case ingress == nil:
			ingress = &sites[i]
		default:
			t.Errorf("two ingress handlers: %v and %v", ingress.listen, s.listen)
		}
	}
	if ingress == nil || len(egress) == 0 {
		t.Fatalf("handlers %+v: want one ingress handler and egress handlers", sites)
	}
	if !slices.Contains(ingress.stitch, "process") {
		t.Errorf("the ingress handler stitches by %v: want process among them, for this prefork app", ingress.stitch)
	}
	if len(ingress.upstreams) != 1 || !isLoopback(t, ingress.upstreams[0]) || argAfter(cmd, "--listen") != ingress.upstreams[0] {
		t.Errorf("the ingress proxies to %v; the app runs %q", ingress.upstreams, cmd)
	}

	// Ports: the Service reaches the ingress, probes and Prometheus the
	// operations listener.
	ports := map[string]int{}
	for _, p := range sidecar.Ports {
		ports[p.Name] = p.ContainerPort
		ports[strconv.Itoa(p.ContainerPort)] = p.ContainerPort
	}
	svc := services["orders-legacy"]
	if len(ingress.listen) != 1 || len(svc.Spec.Ports) != 1 || ports[svc.Spec.Ports[0].TargetPort] != portOf(t, ingress.listen[0]) {
		t.Errorf("service ports %+v: want one, targeting the ingress listener %v", svc.Spec.Ports, ingress.listen)
	}
	var opsPort int
	for _, l := range listens {
		traced := slices.ContainsFunc(sites, func(s caddySite) bool { return slices.Equal(s.listen, l) })
		if !traced && len(l) == 1 {
			opsPort = portOf(t, l[0])
		}
	}
	for name, p := range map[string]*k8sProbe{"readiness": sidecar.ReadinessProbe, "liveness": sidecar.LivenessProbe} {
		if opsPort == 0 || p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || ports[p.HTTPGet.Port] != opsPort {
			t.Errorf("%s probe: want GET /healthz on the operations listener's port %d", name, opsPort)
		}
	}
	ann := d.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(opsPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus annotations %v: want scrape true, port %d, path /metrics", ann, opsPort)
	}
	// A rollout waits for in-flight requests and the final flush.
	g := 30 // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		g = *pod.TerminationGracePeriodSeconds
	}
	if time.Duration(g)*time.Second <= grace+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d: want more than grace_period %s plus the 5s final flush", g, grace)
	}

	// Egress: the app calls a listener of its own service on loopback,
	// and the listener's target is a Service of the example, on the port
	// its pods serve; its HTTP_PROXY is a forward proxy of the service, and
	// its NO_PROXY keeps the calls to the listeners off it.
	env := map[string]string{}
	for _, e := range app.Env {
		env[e.Name] = e.Value
	}
	noProxy := strings.Split(env["NO_PROXY"], ",")
	called, proxied := false, false
	for _, e := range egress {
		if e.service != ingress.service {
			t.Errorf("egress listener %v is of service %q, the ingress of %q: its calls would join nothing", e.listen, e.service, ingress.service)
		}
		if len(e.listen) != 1 || !isLoopback(t, e.listen[0]) {
			t.Errorf("egress listener %v: want one loopback address (bind 127.0.0.1)", e.listen)
			continue
		}
		if e.forward {
			proxied = proxied || env["HTTP_PROXY"] == "http://"+e.listen[0]
			continue
		}
		if host, _, _ := net.SplitHostPort(e.listen[0]); !slices.Contains(noProxy, host) {
			t.Errorf("NO_PROXY %q does not name %s: the app's calls to the listener %s would go through the forward proxy", env["NO_PROXY"], host, e.listen[0])
		}
		called = called || argAfter(cmd, "--upstream") == "http://"+e.listen[0]
		if len(e.upstreams) != 1 {
			t.Errorf("egress listener %v forwards to %v, want one target", e.listen, e.upstreams)
			continue
		}
		// sw8 names the target as the Exit span's peer does, so that
		// SkyWalking maps that peer onto the next service.
		if e.swAddress != e.upstreams[0] {
			t.Errorf("egress listener %v: upstream_address %q, want its target %s", e.listen, e.swAddress, e.upstreams[0])
		}
		host, port, err := net.SplitHostPort(e.upstreams[0])
		if err != nil {
			t.Fatal(err)
		}
		target, ok := services[host]
		if !ok {
			t.Errorf("egress target %s: no Service %s in the example", e.upstreams[0], host)
			continue
		}
		served := false
		for _, sp := range target.Spec.Ports {
			if strconv.Itoa(sp.Port) != port {
				continue
			}
			for _, c := range deployments[host].Spec.Template.Spec.Containers {
				for _, cp := range c.Ports {
					if (cp.Name == sp.TargetPort || strconv.Itoa(cp.ContainerPort) == sp.TargetPort) &&
						slices.Contains(slices.Concat(c.Command, c.Args), "--port="+strconv.Itoa(cp.ContainerPort)) {
						served = true
					}
				}
			}
		}
		if !served {
			t.Errorf("egress target %s: Service %s has no port %s reaching a container that serves it", e.upstreams[0], host, port)
		}
	}
	if !called {
		t.Errorf("the app calls %s, no egress listener", argAfter(cmd, "--upstream"))
	}
	if !proxied {
		t.Errorf("the app's HTTP_PROXY %q is no forward-proxy listener of the sidecar", env["HTTP_PROXY"])
	}
}
