package memory

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	zmodel "github.com/openzipkin/zipkin-go/model"
)

// chain stores n traces of caller → orders → payments, each hop a SERVER
// span and a CLIENT span as tracingproxy records them; every third call to
// payments fails.
func chain(s *Store, n int, start int64) {
	for i := 0; i < n; i++ {
		tr := traceID(1000 + i)
		ts := start + int64(i)*1000
		var payTags map[string]string
		if i%3 == 0 {
			payTags = map[string]string{"error": "503", "http.status_code": "503"}
		}
		s.Add(
			span(tr, spanID(1), "", "frontend", "CLIENT", "get /checkout", ts, 900, nil),
			span(tr, spanID(2), spanID(1), "orders", "SERVER", "get /orders/{id}", ts+10, 800, map[string]string{"http.method": "GET", "http.path": fmt.Sprintf("/orders/%d", i)}),
			span(tr, spanID(3), spanID(2), "orders", "CLIENT", "get /orders/{id}", ts+20, 700, nil),
			span(tr, spanID(4), spanID(3), "payments", "SERVER", "post /pay", ts+30, 600, payTags),
			span(tr, spanID(5), spanID(4), "payments", "CLIENT", "post /pay", ts+40, 500, payTags),
		)
	}
}

func get(t *testing.T, srv *httptest.Server, path string, want int) []byte {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", path, res.StatusCode, body, want)
	}
	return body
}

// decodeTraces decodes a list of traces with zipkin-go's model, as a Zipkin
// client would.
func decodeTraces(t *testing.T, body []byte) [][]zmodel.SpanModel {
	t.Helper()
	var out [][]zmodel.SpanModel
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("zipkin-go cannot decode %s: %v", body, err)
	}
	return out
}

func newAPI(t *testing.T) (*Store, *httptest.Server, int64) {
	s := NewStore(100, 1<<20)
	start := time.Now().Add(-time.Minute).UnixMilli() * 1000 // on a millisecond, as endTs is
	chain(s, 6, start)
	srv := httptest.NewServer(Handler(s, true))
	t.Cleanup(srv.Close)
	return s, srv, start
}

func TestServicesSpanNamesRemoteServices(t *testing.T) {
	s, srv, _ := newAPI(t)
	s.Add(Span{TraceID: traceID(1), ID: spanID(9), Kind: "CLIENT", Name: "get /x", Timestamp: 1, Duration: 1,
		LocalEndpoint: &Endpoint{ServiceName: "orders"}, RemoteEndpoint: &Endpoint{ServiceName: "search"}})
	var names []string
	for path, want := range map[string][]string{
		"/api/v2/services":                           {"frontend", "orders", "payments"},
		"/api/v2/spans?serviceName=orders":           {"get /orders/{id}", "get /x"},
		"/api/v2/spans?serviceName=ORDERS":           {"get /orders/{id}", "get /x"},
		"/api/v2/remoteServices?serviceName=orders":  {"search"},
		"/api/v2/remoteServices?serviceName=nothing": {},
	} {
		if err := json.Unmarshal(get(t, srv, path, 200), &names); err != nil {
			t.Fatal(err)
		}
		if len(names) != len(want) || len(want) > 0 && !reflect.DeepEqual(names, want) {
			t.Errorf("%s = %q, want %q", path, names, want)
		}
	}
	get(t, srv, "/api/v2/spans", 400)
	get(t, srv, "/api/v2/remoteServices", 400)
}

func TestTracesQueryParameters(t *testing.T) {
	_, srv, start := newAPI(t)
	endTs := time.Now().UnixMilli()
	cases := []struct {
		name  string
		query string
		want  int // traces
	}{
		{"all", "", 6},
		{"serviceName", "serviceName=payments", 6},
		{"unknown service", "serviceName=nothing", 0},
		{"spanName", "serviceName=payments&spanName=post%20/pay", 6},
		{"spanName of another service", "serviceName=orders&spanName=post%20/pay", 0},
		{"spanName all", "spanName=all", 6},
		{"annotationQuery key", "annotationQuery=error", 2},
		{"annotationQuery key=value", "annotationQuery=" + url.QueryEscape("http.path=/orders/4"), 1},
		{"annotationQuery and", "annotationQuery=" + url.QueryEscape("http.method=GET and http.path=/orders/4"), 1},
		{"annotationQuery no match", "annotationQuery=" + url.QueryEscape("http.method=PUT"), 0},
		{"minDuration", "minDuration=850", 6},
		{"minDuration above all", "minDuration=901", 0},
		{"min and maxDuration", "minDuration=550&maxDuration=650", 6},
		{"maxDuration on a service", "serviceName=frontend&minDuration=1&maxDuration=100", 0},
		{"limit", "limit=2", 2},
		{"endTs before the traces", fmt.Sprintf("endTs=%d&lookback=1000", start/1000-1), 0},
		{"lookback covering three", fmt.Sprintf("endTs=%d&lookback=3", start/1000+2), 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := c.query
			if !strings.Contains(q, "endTs") {
				q += fmt.Sprintf("&endTs=%d", endTs)
			}
			traces := decodeTraces(t, get(t, srv, "/api/v2/traces?"+q, 200))
			if len(traces) != c.want {
				t.Fatalf("%d traces, want %d", len(traces), c.want)
			}
			for i := 1; i < len(traces); i++ {
				if traces[i][0].Timestamp.After(traces[i-1][0].Timestamp) {
					t.Errorf("trace %d starts after trace %d: want newest first", i, i-1)
				}
			}
			for _, tr := range traces {
				if len(tr) != 5 {
					t.Errorf("a trace with %d spans, want the whole trace of 5", len(tr))
				}
			}
		})
	}
	for _, bad := range []string{"limit=x", "minDuration=-1", "maxDuration=5", "minDuration=10&maxDuration=5", "lookback=abc"} {
		get(t, srv, "/api/v2/traces?"+bad, 400)
	}
}

func TestTraceAndTraceMany(t *testing.T) {
	_, srv, _ := newAPI(t)
	tr := decodeTraces(t, []byte("["+string(get(t, srv, "/api/v2/trace/"+traceID(1000), 200))+"]"))
	if len(tr) != 1 || len(tr[0]) != 5 {
		t.Fatalf("trace = %d spans, want 5", len(tr[0]))
	}
	sp := tr[0][1]
	if sp.TraceID.High != 0 || sp.TraceID.Low != 1001 || sp.ParentID == nil || sp.ParentID.String() != spanID(1) || sp.Kind != zmodel.Server || sp.LocalEndpoint.ServiceName != "orders" || sp.Duration != 800*time.Microsecond {
		t.Errorf("span decoded by zipkin-go = %+v", sp)
	}
	get(t, srv, "/api/v2/trace/"+traceID(5000), 404)
	get(t, srv, "/api/v2/trace/xyz", 400)
	many := decodeTraces(t, get(t, srv, "/api/v2/traceMany?traceIds="+traceID(1000)+","+traceID(1001)+","+traceID(5000), 200))
	if len(many) != 2 {
		t.Errorf("traceMany = %d traces, want the 2 stored", len(many))
	}
	get(t, srv, "/api/v2/traceMany", 400)
	get(t, srv, "/api/v2/traceMany?traceIds=nothex", 400)
}

func TestDependenciesOfAThreeServiceChain(t *testing.T) {
	_, srv, _ := newAPI(t)
	var links []DependencyLink
	body := get(t, srv, fmt.Sprintf("/api/v2/dependencies?endTs=%d&lookback=3600000", time.Now().UnixMilli()), 200)
	if err := json.Unmarshal(body, &links); err != nil {
		t.Fatal(err)
	}
	want := []DependencyLink{
		{Parent: "frontend", Child: "orders", CallCount: 6},
		{Parent: "orders", Child: "payments", CallCount: 6, ErrorCount: 2},
	}
	if !reflect.DeepEqual(links, want) {
		t.Fatalf("dependencies = %+v, want exactly %+v", links, want)
	}
	body = get(t, srv, fmt.Sprintf("/api/v2/dependencies?endTs=%d&lookback=1", time.Now().Add(-2*time.Hour).UnixMilli()), 200)
	if strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("dependencies outside the window = %s, want []", body)
	}
	get(t, srv, "/api/v2/dependencies", 400)
}

func TestPostSpans(t *testing.T) {
	s, srv, _ := newAPI(t)
	body := fmt.Sprintf(`[{"traceId":"%s","id":"%s","kind":"SERVER","name":"get /api","timestamp":%d,"duration":42,"localEndpoint":{"serviceName":"Search"},"tags":{"http.status_code":"200"}}]`,
		strings.ToUpper(traceID(7)), spanID(7), time.Now().UnixMicro())
	res, err := http.Post(srv.URL+"/api/v2/spans", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST = %d, want 202", res.StatusCode)
	}
	got := s.Trace(traceID(7))
	if len(got) != 1 || got[0].localService() != "search" || got[0].Duration != 42 {
		t.Fatalf("stored = %+v", got)
	}
	for _, bad := range []string{`{"traceId":"1"}`, `[{"traceId":"zz","id":"0000000000000001"}]`, `[{"traceId":"` + traceID(1) + `","id":"1"}]`, `not json`} {
		res, err := http.Post(srv.URL+"/api/v2/spans", "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s = %d, want 400", bad, res.StatusCode)
		}
	}
	// Without accept, the store is read-only.
	ro := httptest.NewServer(Handler(s, false))
	defer ro.Close()
	res, err = http.Post(ro.URL+"/api/v2/spans", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to a read-only store = %d, want 405", res.StatusCode)
	}
}

func TestUIIsServed(t *testing.T) {
	_, srv, _ := newAPI(t)
	page := string(get(t, srv, "/", 200))
	js := string(get(t, srv, "/app.js", 200))
	if !strings.Contains(page, `<script src="app.js">`) || !strings.Contains(js, `api/v2/`) {
		t.Fatalf("UI page or script missing its parts")
	}
	// The SVG namespace name is an identifier, not a location.
	all := strings.ReplaceAll(page+js, `"http://www.w3.org/2000/svg"`, "")
	if strings.Contains(all, "http://") || strings.Contains(all, "https://") || strings.Contains(all, "//cdn") {
		t.Errorf("the UI loads something from another origin")
	}
}
