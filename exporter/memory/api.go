package memory

import (
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxPostBytes bounds one POST /api/v2/spans body.
const maxPostBytes = 8 << 20

//go:embed ui
var ui embed.FS

// Handler serves Zipkin's v2 query API over store under /api/v2/, and the
// waterfall UI at /. With accept set, it also takes POST /api/v2/spans, so
// other proxies and instrumented services can send to this store. Paths are
// relative to where it is mounted: strip the mount prefix before it.
func Handler(store *Store, accept bool) http.Handler {
	mux := http.NewServeMux()
	a := &api{store: store}
	mux.HandleFunc("GET /api/v2/services", a.services)
	mux.HandleFunc("GET /api/v2/spans", byService(store.SpanNames))
	mux.HandleFunc("GET /api/v2/remoteServices", byService(store.RemoteServices))
	mux.HandleFunc("GET /api/v2/traces", a.traces)
	mux.HandleFunc("GET /api/v2/trace/{id}", a.trace)
	mux.HandleFunc("GET /api/v2/traceMany", a.traceMany)
	mux.HandleFunc("GET /api/v2/dependencies", a.dependencies)
	if accept {
		mux.HandleFunc("POST /api/v2/spans", a.post)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'")
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, ui, "ui/index.html")
	})
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, ui, "ui/app.js")
	})
	return mux
}

type api struct{ store *Store }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	http.Error(w, fmt.Sprintf(format, args...), http.StatusBadRequest)
}

// intParam reads an integer query parameter, 0 when absent.
func intParam(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s must be a non-negative integer, got %q", name, v)
	}
	return n, nil
}

func (a *api) services(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.store.Services())
}

// byService answers a list of names of the service named by the required
// serviceName parameter: span names, remote service names.
func byService(list func(service string) []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		svc := strings.ToLower(r.URL.Query().Get("serviceName"))
		if svc == "" {
			badRequest(w, "serviceName is required")
			return
		}
		writeJSON(w, list(svc))
	}
}

func (a *api) traces(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query()
	q := Query{
		ServiceName:       strings.ToLower(p.Get("serviceName")),
		RemoteServiceName: strings.ToLower(p.Get("remoteServiceName")),
		SpanName:          strings.ToLower(p.Get("spanName")),
		AnnotationQuery:   p.Get("annotationQuery"),
	}
	if q.SpanName == "all" {
		q.SpanName = "" // the Zipkin UI's "any"
	}
	var limit int64
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"minDuration", &q.MinDuration}, {"maxDuration", &q.MaxDuration}, {"endTs", &q.EndTs}, {"lookback", &q.Lookback}, {"limit", &limit}} {
		n, err := intParam(r, f.name)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		*f.dst = n
	}
	q.Limit = int(limit)
	if err := q.Validate(); err != nil {
		badRequest(w, "%v", err)
		return
	}
	out := a.store.Traces(q)
	if out == nil {
		out = [][]Span{}
	}
	writeJSON(w, out)
}

// validTraceID reports whether id is 16 or 32 hex digits.
func validTraceID(id string) bool {
	if len(id) != 16 && len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (a *api) trace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validTraceID(id) {
		badRequest(w, "trace id must be 16 or 32 hex digits, got %q", id)
		return
	}
	spans := a.store.Trace(id)
	if spans == nil {
		http.Error(w, "trace "+id+" not found", http.StatusNotFound)
		return
	}
	writeJSON(w, spans)
}

func (a *api) traceMany(w http.ResponseWriter, r *http.Request) {
	ids := r.URL.Query().Get("traceIds")
	if ids == "" {
		badRequest(w, "traceIds is required")
		return
	}
	out := [][]Span{}
	for _, id := range strings.Split(ids, ",") {
		id = strings.TrimSpace(id)
		if !validTraceID(id) {
			badRequest(w, "trace id must be 16 or 32 hex digits, got %q", id)
			return
		}
		if spans := a.store.Trace(id); spans != nil {
			out = append(out, spans)
		}
	}
	writeJSON(w, out)
}

func (a *api) dependencies(w http.ResponseWriter, r *http.Request) {
	endTs, err := intParam(r, "endTs")
	if err == nil && endTs == 0 {
		err = fmt.Errorf("endTs is required")
	}
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	lookback, err := intParam(r, "lookback")
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	writeJSON(w, a.store.Dependencies(endTs, lookback))
}

func (a *api) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "only application/json (a list of Zipkin v2 spans) is accepted", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPostBytes))
	if err != nil {
		badRequest(w, "reading the body: %v", err)
		return
	}
	var spans []Span
	if err := json.Unmarshal(body, &spans); err != nil {
		badRequest(w, "the body must be a JSON list of Zipkin v2 spans: %v", err)
		return
	}
	for i := range spans {
		if !validTraceID(spans[i].TraceID) || len(spans[i].ID) != 16 {
			badRequest(w, "span %d: traceId must be 16 or 32 hex digits and id 16", i)
			return
		}
		spans[i].TraceID = strings.ToLower(spans[i].TraceID)
		if e := spans[i].LocalEndpoint; e != nil {
			e.ServiceName = strings.ToLower(e.ServiceName)
		}
		if e := spans[i].RemoteEndpoint; e != nil {
			e.ServiceName = strings.ToLower(e.ServiceName)
		}
	}
	a.store.Add(spans...)
	w.WriteHeader(http.StatusAccepted)
}
