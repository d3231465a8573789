package main

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tracingproxy/tracingproxy/caddymodule"
)

// Issue 13 item 7: `tracingproxy version` names tracingproxy and its
// version first, then the Caddy it is built on.
func TestVersionNamesTracingproxyFirst(t *testing.T) {
	_, full := caddy.Version()
	want := "tracingproxy " + caddymodule.Version
	if !strings.HasPrefix(full, want) {
		t.Errorf("version prints %q, want it to start with %q", full, want)
	}
	if !strings.Contains(full, "Caddy v2.") {
		t.Errorf("version prints %q, want the Caddy version too", full)
	}
}
