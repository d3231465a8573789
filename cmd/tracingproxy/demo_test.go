package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

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
}
