package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/exporter"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// TestExporterCredentialsNeverLeak configures a Zipkin exporter whose URL
// carries a user, a password and a token in its query, points it at a dead
// collector so that exports fail and records are dropped, and checks that
// neither /metrics nor any log line (drop warnings, failed attempts at
// debug level) repeats a credential: the exporter is named by type and
// host only (issue 13, item 1).
func TestExporterCredentialsNeverLeak(t *testing.T) {
	up := newUpstream(t)
	dead := deadPort(t)
	target := fmt.Sprintf("http://alice:s3cretpw@%s/api/v2/spans?token=t0ken42", dead)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	startCaddyWith(t, fmt.Sprintf(`	log {
		output file %s
		format json
		level DEBUG
	}`, logFile), fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			queue_size 2
			batch_size 1
			flush_interval 10ms
			timeout 100ms
			max_retry_time 200ms
		}
	}
	reverse_proxy %s`, target, up.hostport()))
	for i := range 20 {
		if res, _ := get(t, fmt.Sprintf("/leak/%d", i), nil); res.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, res.StatusCode)
		}
	}
	testutil.Eventually(t, 10*time.Second, "records dropped after failed exports", func() bool {
		st := queueStats(t, target)
		return st.Failures > 0 && st.Dropped[exporter.ReasonRetryExhausted] > 0
	})
	testutil.Eventually(t, 10*time.Second, "a drop warning naming the exporter by host", func() bool {
		return logHas(t, logFile, func(e map[string]any) bool {
			return e["msg"] == "dropped trace records" && e["exporter"] == "zipkin "+dead
		})
	})
	testutil.Eventually(t, 10*time.Second, "a failed attempt logged", func() bool {
		return logHas(t, logFile, func(e map[string]any) bool { return e["msg"] == "export attempt failed" })
	})

	res, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`exporter="zipkin %s"`, dead); !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics has no series labelled %s", want)
	}
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"alice", "s3cretpw", "t0ken42"} {
		if strings.Contains(string(metrics), secret) {
			t.Errorf("/metrics contains %q", secret)
		}
		for line := range strings.Lines(string(logs)) {
			if strings.Contains(line, secret) {
				t.Errorf("log line contains %q: %s", secret, line)
			}
		}
	}
}

// TestExporterURLErrorsAreRedacted checks that a refused exporter URL is not
// echoed with its credentials in the load-time error.
func TestExporterURLErrorsAreRedacted(t *testing.T) {
	for _, ec := range []ExporterConfig{
		{Type: exporterZipkin, URL: "ftp://alice:s3cretpw@host/api/v2/spans?token=t0ken42"},
		{Type: exporterSkyWalking, URL: "ftp://alice:s3cretpw@host:11800?token=t0ken42"},
		{Type: exporterLog, URL: "http://alice:s3cretpw@host?token=t0ken42"},
	} {
		err := ec.validate()
		if err == nil {
			t.Errorf("%s %s accepted", ec.Type, ec.URL)
			continue
		}
		for _, secret := range []string{"alice", "s3cretpw", "t0ken42"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q contains %q", ec.Type, err, secret)
			}
		}
	}
}
