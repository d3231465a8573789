// Command loadtest serves the two local backends of the load test in
// scripts/loadtest.sh: an upstream that answers every request with a small
// body, and a Zipkin-compatible collector that decodes every batch and counts
// its spans. GET /count on the collector reports the spans and batches it
// received.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync/atomic"
)

func main() {
	upstream := flag.String("upstream", "127.0.0.1:19000", "upstream listen address")
	collector := flag.String("collector", "127.0.0.1:19411", "collector listen address")
	flag.Parse()

	var spans, batches, bad atomic.Int64
	go func() {
		log.Fatal(http.ListenAndServe(*upstream, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok\n")
		})))
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/spans", func(w http.ResponseWriter, r *http.Request) {
		var batch []struct {
			TraceID string `json:"traceId"`
			ID      string `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		spans.Add(int64(len(batch)))
		batches.Add(1)
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "spans %d batches %d rejected %d\n", spans.Load(), batches.Load(), bad.Load())
	})
	log.Fatal(http.ListenAndServe(*collector, mux))
}
