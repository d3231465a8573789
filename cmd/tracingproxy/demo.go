package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"

	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "demo",
		Usage: "[--keep]",
		Short: "Show what tracingproxy does, with nothing else installed",
		Long: `
Starts a small upstream service, a Zipkin-compatible span receiver and
tracingproxy in front of the service, all on 127.0.0.1. It then sends three
requests (a W3C caller, a B3 caller, a caller with no trace) and prints what
the upstream received and the spans the proxy exported. The same traces are
shown as a waterfall by the UI whose address it prints first. With --keep it stays
up so you can send your own requests with curl.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().Bool("keep", false, "Keep running after the demo requests")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdDemo)
		},
	})
}

// traceHeaders are the request headers the demo shows.
var traceHeaders = []string{"Traceparent", "Tracestate", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags", "B3", "Sw8"}

func cmdDemo(fs caddycmd.Flags) (int, error) {
	from, err := runDemo(os.Stdout)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if fs.Bool("keep") {
		fmt.Printf("\nStill running: curl -i http://%s/ and watch the UI (Ctrl-C to stop)\n", from)
		select {}
	}
	return caddy.ExitCodeSuccess, caddy.Stop()
}

// runDemo starts the demo's services and tracingproxy, sends the demo
// requests and writes what happened to out. It returns the proxy's address;
// the proxy keeps running until caddy.Stop.
func runDemo(out io.Writer) (string, error) {
	up, err := serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream saw:\n")
		for _, h := range traceHeaders {
			if v := r.Header.Get(h); v != "" {
				fmt.Fprintf(w, "    %s: %s\n", h, v)
			}
		}
	}))
	if err != nil {
		return "", err
	}
	var mu sync.Mutex
	var spans []map[string]any
	zipkin, err := serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []map[string]any
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		spans = append(spans, batch...)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	from := l.Addr().String()
	l.Close()
	ul, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	ui := ul.Addr().String()
	ul.Close()

	o := proxyOptions{from: from, to: up, service: "demo-service", zipkin: "http://" + zipkin + "/api/v2/spans",
		inject: "w3c,b3,sw8", responseHeaders: true, ui: ui}
	cf, err := o.caddyfile()
	if err != nil {
		return "", err
	}
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		return "", err
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "traces (waterfall UI and Zipkin's query API): %s\n", o.uiURL())
	fmt.Fprintf(out, "upstream service on %s, span receiver on %s, tracingproxy on %s\n\nCaddyfile:\n%s\n", up, zipkin, from, cf)

	calls := []struct {
		who string
		hdr map[string]string
	}{
		{"a W3C caller", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{"a B3 caller (64-bit trace id)", map[string]string{"X-B3-TraceId": "a3ce929d0e0e4736", "X-B3-SpanId": "00f067aa0ba902b7", "X-B3-Sampled": "1"}},
		{"a caller with no trace", nil},
	}
	for _, c := range calls {
		req, _ := http.NewRequest(http.MethodGet, "http://"+from+"/orders/42", nil)
		fmt.Fprintf(out, "---- %s: GET /orders/42\n", c.who)
		for k, v := range c.hdr {
			req.Header.Set(k, v)
			fmt.Fprintf(out, "    %s: %s\n", k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Fprintf(out, "%s", body)
		fmt.Fprintf(out, "client got: %s, X-Trace-Id: %s, Server-Timing: %s\n\n", res.Status, res.Header.Get("X-Trace-Id"), res.Header.Get("Server-Timing"))
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(spans)
		mu.Unlock()
		if n >= 2*len(calls) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	sort.SliceStable(spans, func(i, j int) bool { return fmt.Sprint(spans[i]["timestamp"]) < fmt.Sprint(spans[j]["timestamp"]) })
	fmt.Fprintf(out, "---- the span receiver got %d spans (Zipkin v2 JSON):\n", len(spans))
	enc := json.NewEncoder(out)
	for _, s := range spans {
		enc.Encode(s)
	}
	mu.Unlock()
	fmt.Fprintf(out, "\n---- the same traces as a waterfall: %s\n", o.uiURL())
	return from, nil
}

// serveLocal serves h on a free loopback port and returns its address.
func serveLocal(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go http.Serve(l, h)
	return l.Addr().String(), nil
}
