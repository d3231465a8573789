package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/tracingproxy/tracingproxy/caddymodule"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "explain",
		Usage: "[-H 'name: value']... [--config <Caddyfile>] [--adapter <name>] [--client <ip:port>] [--method <m>] [--path <p>]",
		Short: "Show what tracingproxy does with a request's trace headers",
		Long: `
Runs tracingproxy's request path on one request, without a network, and prints
what is extracted (format, ids, flags), whether the client is trusted, what the
sampler decides and why, and the exact trace headers the upstream and the
client receive. The first thing to run when a trace breaks.

With --config, the first tracingproxy handler of that configuration is used;
without, the defaults.

  tracingproxy explain -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringArrayP("header", "H", nil, "A request header, 'Name: value' (repeatable)")
			cmd.Flags().StringP("config", "c", "", "Configuration file whose tracingproxy handler to use")
			cmd.Flags().StringP("adapter", "a", "", "Adapter of the configuration (default: caddyfile unless the file ends in .json)")
			cmd.Flags().String("client", "127.0.0.1:50000", "The client's address, for trust")
			cmd.Flags().String("method", http.MethodGet, "Request method")
			cmd.Flags().String("path", "/", "Request path")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdExplain)
		},
	})
}

func cmdExplain(fs caddycmd.Flags) (int, error) {
	hdrs, err := fs.GetStringArray("header")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	err = explain(os.Stdout, fs.String("config"), fs.String("adapter"), hdrs, fs.String("client"), fs.String("method"), fs.String("path"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}

// explain prints the explanation of one request through the handler of the
// configuration file (or the default handler).
func explain(out io.Writer, configFile, adapter string, hdrs []string, client, method, path string) error {
	header := http.Header{}
	for _, h := range hdrs {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return fmt.Errorf("header %q: want 'Name: value'", h)
		}
		header.Add(name, strings.TrimSpace(value))
	}
	raw := []byte(`{}`)
	if configFile != "" {
		var err error
		if raw, err = handlerJSON(configFile, adapter); err != nil {
			return err
		}
	}
	var h caddymodule.Handler
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("decoding the tracingproxy handler: %w", err)
	}
	// Explaining exports nothing.
	h.Exporters = nil
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		return err
	}
	defer h.Cleanup()
	if err := h.Validate(); err != nil {
		return err
	}
	ex, err := h.Explain(method, path, client, header)
	if err != nil {
		return err
	}
	ex.Print(out)
	return nil
}

// handlerJSON adapts the configuration file and returns the JSON of its
// first tracingproxy handler.
func handlerJSON(file, adapter string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if adapter == "" && !strings.HasSuffix(file, ".json") {
		adapter = "caddyfile"
	}
	if adapter != "" {
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return nil, fmt.Errorf("unknown config adapter %q", adapter)
		}
		if data, _, err = a.Adapt(data, map[string]any{"filename": file}); err != nil {
			return nil, fmt.Errorf("adapting %s: %w", file, err)
		}
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if h := findHandler(v); h != nil {
		return json.Marshal(h)
	}
	return nil, fmt.Errorf("%s has no tracingproxy handler", file)
}

// findHandler walks a JSON configuration depth-first for the first object
// with "handler": "tracingproxy".
func findHandler(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		if x["handler"] == "tracingproxy" {
			return x
		}
		for _, k := range sortedKeys(x) {
			if h := findHandler(x[k]); h != nil {
				return h
			}
		}
	case []any:
		for _, e := range x {
			if h := findHandler(e); h != nil {
				return h
			}
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
