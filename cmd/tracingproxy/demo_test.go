package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestDemo runs README's first command in process: the proxy in front of a
// service, with spans visible.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if _, err := runDemo(&out); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })
	text := out.String()
	for _, want := range []string{
		"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-", // the W3C caller's trace continues
		"X-B3-Traceid: a3ce929d0e0e4736",                    // the 64-bit B3 id keeps its width
		"Traceparent: 00-0000000000000000a3ce929d0e0e4736-", // and is padded for W3C
		"the span receiver got 6 spans",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	_, spans, _ := strings.Cut(text, "(Zipkin v2 JSON):\n")
	spans, _, _ = strings.Cut(spans, "\n---- the same traces")
	kinds := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(spans), "\n") {
		var s struct{ Kind, TraceID string }
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("span line %q: %v", line, err)
		}
		kinds[s.Kind]++
	}
	if kinds["SERVER"] != 3 || kinds["CLIENT"] != 3 {
		t.Errorf("spans by kind %v, want 3 SERVER and 3 CLIENT", kinds)
	}

	// The UI's address comes first, and its API holds the demo's traces.
	first, _, _ := strings.Cut(text, "\n")
	ui, ok := strings.CutPrefix(first, "traces (waterfall UI and Zipkin's query API): ")
	if !ok || !strings.HasPrefix(ui, "http://127.0.0.1:") {
		t.Fatalf("first line %q does not give the UI's URL", first)
	}
	var traces [][]struct{ Kind string }
	deadline := time.Now().Add(5 * time.Second)
	for len(traces) < 3 && time.Now().Before(deadline) {
		res, err := http.Get(ui + "api/v2/traces?serviceName=demo-service&limit=10")
		if err != nil {
			t.Fatal(err)
		}
		traces = nil
		json.NewDecoder(res.Body).Decode(&traces)
		res.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if len(traces) != 3 {
		t.Fatalf("UI API has %d demo traces, want 3", len(traces))
	}
}
