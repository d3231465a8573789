package main

// What the end-to-end egress tests share: free loopback addresses, random
// ids, the stitch tag, and a Caddyfile run in this process's Caddy.

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// stitchTag is the tag naming the method that stitched an egress span.
const stitchTag = "tracingproxy.stitch"

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// caddyGlobals is the global block of the in-process Caddy the egress
// tests run.
const caddyGlobals = "{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n\tgrace_period 1s\n}\n\n"

// loadCaddyfile runs cf in this process's Caddy, replacing what it ran,
// and stops it when the test ends.
func loadCaddyfile(t *testing.T, cf string) {
	t.Helper()
	// Formatted, as a user's would be (the adapter warns otherwise).
	cf = string(caddyfile.Format([]byte(cf)))
	js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting:\n%s\n%v", cf, err)
	}
	if len(warnings) > 0 {
		t.Fatalf("warnings: %v", warnings)
	}
	if err := caddy.Load(js, true); err != nil {
		t.Fatalf("loading:\n%s\n%v", cf, err)
	}
	t.Cleanup(func() { caddy.Stop() })
}
