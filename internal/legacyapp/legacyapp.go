// Package legacyapp starts legacy.py, a real HTTP service with no tracing,
// as a separate process for tracingproxy's egress tests: it serves GET
// /work?gt=<id> and makes outbound calls to one upstream, copying the
// inbound request's ground-truth id gt into their path
// (/pay/<gt>/<i>?gt=<gt>&i=<i>) and forwarding no trace header. The program
// is Python 3 standard library only; its doc string describes the three
// service models and the keep-alive choices.
package legacyapp

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Script is legacy.py.
//
//go:embed legacy.py
var Script []byte

// Model is how the service serves concurrent requests.
type Model string

// The service models legacy.py implements.
const (
	// Prefork is a parent that forks workers accepting on one shared
	// socket, each serving one request at a time.
	Prefork Model = "prefork"
	// Thread is one process with a thread per connection.
	Thread Model = "thread"
	// Single is one process serving one request at a time.
	Single Model = "single"
)

// Models lists every model.
var Models = []Model{Prefork, Thread, Single}

// Config is how one instance runs.
type Config struct {
	// Model is the service model.
	Model Model
	// Workers is the number of prefork processes (default 4).
	Workers int
	// Upstream is the http://host:port the outbound calls go to.
	Upstream string
	// HTTPProxy, when set, is given to the app as HTTP_PROXY: its calls to
	// Upstream then go through that forward proxy.
	HTTPProxy string
	// NoProxy is given as NO_PROXY: hosts called directly despite HTTPProxy.
	NoProxy string
	// Calls is the number of outbound calls per request (default 2); a
	// request's ?calls= overrides it.
	Calls int
	// Pause is the time between a request's calls.
	Pause time.Duration
	// KeepAlive keeps and reuses outbound connections.
	KeepAlive bool
	// CallTimeout bounds each outbound call (default 15s).
	CallTimeout time.Duration
	// ForwardRequestID copies the inbound request id header onto the calls.
	ForwardRequestID bool
	// RequestIDHeader is that header (default X-Request-ID).
	RequestIDHeader string
}

// App is a running instance.
type App struct {
	// Addr is the host:port it serves on.
	Addr string
	// PID is its main process; Workers are the prefork workers' pids.
	PID     int
	Workers []int
}

// Python returns the python3 to run legacy.py with. Without one the test is
// skipped, except in CI (CI set), where it fails: the egress tests must run
// there.
func Python(t testing.TB) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err == nil {
		return py
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("python3 is required for the legacy service tests: %v", err)
	}
	t.Skipf("python3 not found (%v): the legacy service tests need it", err)
	return ""
}

// Start runs legacy.py with cfg on a free loopback port and returns once it
// accepts connections. It stops (with every worker) when the test ends, or
// when the test process dies, since the app exits when its stdin closes.
func Start(t testing.TB, cfg Config) *App {
	t.Helper()
	py := Python(t)
	script := filepath.Join(t.TempDir(), "legacy.py")
	if err := os.WriteFile(script, Script, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{script, "--model", string(cfg.Model), "--listen", "127.0.0.1:0", "--upstream", cfg.Upstream, "--until-stdin-closes"}
	if cfg.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(cfg.Workers))
	}
	if cfg.Calls > 0 {
		args = append(args, "--calls", strconv.Itoa(cfg.Calls))
	}
	if cfg.Pause > 0 {
		args = append(args, "--pause-ms", strconv.FormatFloat(float64(cfg.Pause)/float64(time.Millisecond), 'f', -1, 64))
	}
	if cfg.KeepAlive {
		args = append(args, "--keepalive")
	}
	if cfg.CallTimeout > 0 {
		args = append(args, "--call-timeout", strconv.FormatFloat(cfg.CallTimeout.Seconds(), 'f', -1, 64))
	}
	if cfg.ForwardRequestID {
		args = append(args, "--forward-request-id")
	}
	if cfg.RequestIDHeader != "" {
		args = append(args, "--request-id-header", cfg.RequestIDHeader)
	}
	cmd := exec.Command(py, args...)
	// The test's own proxy settings stay out; exec keeps the last value of
	// a repeated variable.
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "HTTP_PROXY=", "http_proxy=", "NO_PROXY=", "no_proxy=",
		"HTTP_PROXY="+cfg.HTTPProxy, "NO_PROXY="+cfg.NoProxy)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A pipe of our own rather than StdoutPipe, so that Wait never races
	// the reader below.
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		t.Fatalf("starting legacy.py: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("legacy.py did not exit within 5s of its stdin closing")
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})

	type ready struct {
		Listen  string `json:"listen"`
		PID     int    `json:"pid"`
		Workers []int  `json:"workers"`
	}
	line := make(chan ready, 1)
	failed := make(chan error, 1)
	go func() {
		defer stdout.Close()
		r := bufio.NewReader(stdout)
		b, err := r.ReadBytes('\n')
		if err != nil {
			failed <- fmt.Errorf("reading its first line: %w", err)
			return
		}
		var rd ready
		if err := json.Unmarshal(b, &rd); err != nil {
			failed <- fmt.Errorf("first line %q: %w", b, err)
			return
		}
		line <- rd
		io.Copy(io.Discard, r)
	}()
	select {
	case rd := <-line:
		return &App{Addr: rd.Listen, PID: rd.PID, Workers: rd.Workers}
	case err := <-failed:
		t.Fatalf("legacy.py %v: %v", args[1:], err)
	case <-time.After(15 * time.Second):
		t.Fatalf("legacy.py %v: not ready within 15s", args[1:])
	}
	return nil
}

// URL is the app's base URL.
func (a *App) URL() string { return "http://" + a.Addr }

// Reply is the app's answer to GET /work: the request's ground truth, the
// process that served it, the statuses of its calls (or why they failed),
// the request id it received, and when it started and ended in seconds of
// the system's monotonic clock (comparable across the app's processes).
type Reply struct {
	GT        string   `json:"gt"`
	PID       int      `json:"pid"`
	Statuses  []int    `json:"statuses"`
	Errors    []string `json:"errors"`
	RequestID string   `json:"request_id"`
	Start     float64  `json:"start"`
	End       float64  `json:"end"`
}
