// Package tracingproxy plugs the tracingproxy handler into a Caddy build:
//
//	xcaddy build --with github.com/tracingproxy/tracingproxy
//
// Importing it registers the http.handlers.tracingproxy module and the
// tracingproxy Caddyfile directive, which live in package caddymodule.
package tracingproxy

import (
	// The Caddy module and its Caddyfile directive.
	_ "github.com/tracingproxy/tracingproxy/caddymodule"
)
