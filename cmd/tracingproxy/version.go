package main

import (
	"runtime/debug"

	"github.com/caddyserver/caddy/v2"

	"github.com/tracingproxy/tracingproxy/caddymodule"
)

// Caddy prepends CustomVersion to what `version` prints, so the binary
// names itself first: tracingproxy's version, then Caddy's.
func init() { caddy.CustomVersion = "tracingproxy " + ownVersion() + ", Caddy" }

// ownVersion is this build's version: the module version go install
// stamped, else caddymodule.Version with the VCS revision the build was
// made from, when the build knows it.
func ownVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return caddymodule.Version
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	v := caddymodule.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " (" + rev + modified + ")"
	}
	return v
}
