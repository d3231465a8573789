package caddymodule

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// chromium finds a headless browser: $CHROMIUM, else Debian's chromium.
// Without one the test is skipped on a developer's machine and fails in CI,
// whose .ci/run installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium: .ci/run installs Debian's chromium package for this test")
	}
	t.Skip("no chromium (apt-get install chromium): the UI is not tested in a browser")
	return ""
}

// render loads url in headless Chromium, lets its scripts run and fetch,
// and returns the DOM; with shot set it also saves a screenshot there.
func render(t *testing.T, browser, url, shot string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,720", "--virtual-time-budget=5000"}
	if shot != "" {
		args = append(args, "--screenshot="+shot)
	} else {
		args = append(args, "--dump-dom")
	}
	out, err := exec.CommandContext(ctx, browser, append(args, url)...).Output()
	if err != nil {
		t.Fatalf("chromium %s: %v", url, err)
	}
	return string(out)
}

var (
	rowRe   = regexp.MustCompile(`<div class="row" data-span-id="([0-9a-f]{16})" data-service="([^"]*)" data-name="([^"]*)" data-duration="(\d+)"`)
	traceRe = regexp.MustCompile(`data-trace-id="([0-9a-f]{32})"`)
)

func TestUIInABrowser(t *testing.T) {
	browser := chromium(t)
	up := newUpstream(t)
	startCaddy(t, uiSite(strings.TrimPrefix(up.URL, "http://"), ""))
	// A fresh trace id: the store is the process's, and outlives a run of
	// the test (go test -count=5).
	id := headers.NewTraceID().String()
	if res, _ := get(t, "/orders/7?sleep=20ms", map[string][]string{"Traceparent": {"00-" + id + "-00f067aa0ba902b7-01"}}); res.StatusCode != 200 {
		t.Fatalf("proxied request: %d", res.StatusCode)
	}
	testutil.Eventually(t, 5*time.Second, "the trace in the store", func() bool { return traceStore.Trace(id) != nil && len(traceStore.Trace(id)) == 2 })

	// The list shows the trace.
	list := render(t, browser, proxyURL+"/_tracingproxy/", "")
	found := false
	for _, m := range traceRe.FindAllStringSubmatch(list, -1) {
		found = found || m[1] == id
	}
	if !found {
		t.Fatalf("the trace list does not show trace %s:\n%.2000s", id, list)
	}

	// Opened, the trace is a waterfall: the SERVER span, then its CLIENT
	// span inside it, both of ui-orders, named by the request.
	page := render(t, browser, proxyURL+"/_tracingproxy/#trace="+id, "")
	rows := rowRe.FindAllStringSubmatch(page, -1)
	if len(rows) != 2 {
		t.Fatalf("%d waterfall rows, want 2:\n%.3000s", len(rows), page)
	}
	spans := traceStore.Trace(id)
	kindOf := map[string]string{}
	for _, s := range spans {
		kindOf[s.ID] = s.Kind
	}
	if kindOf[rows[0][1]] != "SERVER" || kindOf[rows[1][1]] != "CLIENT" {
		t.Errorf("rows in order %s, %s; want the SERVER span first", kindOf[rows[0][1]], kindOf[rows[1][1]])
	}
	for _, r := range rows {
		if r[2] != "ui-orders" || !strings.HasPrefix(r[3], "get /orders") {
			t.Errorf("row service %q name %q, want ui-orders and get /orders…", r[2], r[3])
		}
	}
	d0, _ := strconv.Atoi(rows[0][4])
	d1, _ := strconv.Atoi(rows[1][4])
	if d0 < 20000 || d1 < 20000 || d1 > d0 {
		t.Errorf("durations %dµs then %dµs: want the upstream's 20 ms in both, the CLIENT inside the SERVER", d0, d1)
	}
	if !strings.Contains(page, id) {
		t.Errorf("the trace's title lacks its id")
	}

	// A screenshot of the waterfall, for README and for a person to look at.
	dir := os.Getenv("TRACINGPROXY_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "waterfall.png")
	render(t, browser, proxyURL+"/_tracingproxy/#trace="+id, shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 5000 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
}
