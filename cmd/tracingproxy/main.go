// Command tracingproxy is Caddy with its standard modules and the
// tracingproxy handler, plus a quick-start subcommand:
//
//	tracingproxy proxy --from :8080 --to 127.0.0.1:9000 --service orders-legacy \
//	    --zipkin http://127.0.0.1:9411/api/v2/spans
//
// Every Caddy subcommand works as usual: run, adapt, validate, list-modules,
// version, ...
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/tracingproxy/tracingproxy/caddymodule"
)

func main() {
	caddycmd.Main()
}
