// Command w3cservice is the test service the W3C Trace Context harness
// (github.com/w3c/trace-context, test/test.py) drives, put between two
// tracingproxy hops by scripts/w3c-harness.sh: for every instruction the
// harness POSTs it calls the harness back through --via, forwarding the
// traceparent and tracestate it received as they came. It traces nothing
// itself, so what the harness judges is what the proxies propagated: the
// one in front of it (its inbound context) and the one its calls go through
// (a new span per call).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"net/url"
	"time"
)

// instruction is one element of the harness's POST body.
type instruction struct {
	URL       string          `json:"url"`
	Arguments json.RawMessage `json:"arguments"`
}

func main() {
	listen := flag.String("listen", "", "address to serve the harness's POSTs on (required)")
	via := flag.String("via", "", "host:port every callback is sent to instead of the harness (a proxy in front of it)")
	flag.Parse()
	if *listen == "" {
		log.Fatal("w3cservice: --listen is required, e.g. --listen 127.0.0.1:5000")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	http.HandleFunc("/test", func(w http.ResponseWriter, r *http.Request) {
		var todo []instruction
		if err := json.NewDecoder(r.Body).Decode(&todo); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, in := range todo {
			u, err := url.Parse(in.URL)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			host := u.Host
			if *via != "" {
				u.Host = *via
			}
			req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u.String(), bytes.NewReader(in.Arguments))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			req.Host = host
			req.Header.Set("Content-Type", "application/json")
			for _, name := range []string{"traceparent", "tracestate"} {
				for _, v := range r.Header.Values(name) {
					req.Header.Add(name, v)
				}
			}
			res, err := client.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
