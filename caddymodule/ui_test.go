package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	zmodel "github.com/openzipkin/zipkin-go/model"

	"github.com/tracingproxy/tracingproxy/headers"
	"github.com/tracingproxy/tracingproxy/internal/testutil"
)

// uiSite mounts the UI beside a traced site with the default exporters.
func uiSite(up string, uiOptions string) string {
	return fmt.Sprintf(`
	handle_path /_tracingproxy/* {
		tracingproxy_ui {
%s
		}
	}
	handle {
		tracingproxy {
			service_name ui-orders
		}
		reverse_proxy %s
	}`, uiOptions, up)
}

// queryTraces asks the UI's API for the traces of a service, decoded with
// zipkin-go's model as a Zipkin client would.
func queryTraces(t *testing.T, query string) [][]zmodel.SpanModel {
	t.Helper()
	res, body := get(t, "/_tracingproxy/api/v2/traces?"+query, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("traces: %d %s", res.StatusCode, body)
	}
	var out [][]zmodel.SpanModel
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("zipkin-go cannot decode %s: %v", body, err)
	}
	return out
}

func TestDefaultExporterFeedsTheUI(t *testing.T) {
	up := newUpstream(t)
	startCaddy(t, uiSite(strings.TrimPrefix(up.URL, "http://"), ""))
	// A fresh trace id: the store is the process's, and outlives a run of
	// the test (go test -count=5).
	id := headers.NewTraceID().String()
	res, _ := get(t, "/orders/42", map[string][]string{"Traceparent": {"00-" + id + "-00f067aa0ba902b7-01"}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("proxied request: %d", res.StatusCode)
	}
	var tr []zmodel.SpanModel
	testutil.Eventually(t, 5*time.Second, "the trace in the store", func() bool {
		traces := queryTraces(t, "serviceName=ui-orders&limit=50")
		for _, x := range traces {
			if x[0].TraceID.String() == id && len(x) == 2 {
				tr = x
				return true
			}
		}
		return false
	})
	kinds := map[zmodel.Kind]zmodel.SpanModel{}
	for _, s := range tr {
		kinds[s.Kind] = s
	}
	srv, cli := kinds[zmodel.Server], kinds[zmodel.Client]
	if srv.ParentID == nil || srv.ParentID.String() != "00f067aa0ba902b7" || cli.ParentID == nil || *cli.ParentID != srv.ID {
		t.Errorf("spans not linked caller → server → client: %+v", tr)
	}
	if srv.LocalEndpoint == nil || srv.LocalEndpoint.ServiceName != "ui-orders" || srv.Tags["http.path"] != "/orders/42" {
		t.Errorf("server span = %+v", srv)
	}
	// The UI page itself, from the same mount.
	res, page := get(t, "/_tracingproxy/", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "tracingproxy") {
		t.Errorf("UI page: %d", res.StatusCode)
	}
	// The UI's own requests are not traced: they never reach the traced
	// handle block.
	for _, x := range queryTraces(t, "serviceName=ui-orders&limit=1000") {
		for _, s := range x {
			if strings.Contains(s.Tags["http.path"], "_tracingproxy") {
				t.Fatalf("the UI's request was traced: %+v", s)
			}
		}
	}
}

func TestUIAccess(t *testing.T) {
	up := newUpstream(t)
	addr := strings.TrimPrefix(up.URL, "http://")
	// Only a range the test client is not in: refused.
	startCaddy(t, uiSite(addr, "allow 192.0.2.0/24"))
	if res, _ := get(t, "/_tracingproxy/api/v2/services", nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("client outside allow: %d, want 403", res.StatusCode)
	}
	// The proxied site is not affected.
	if res, _ := get(t, "/", nil); res.StatusCode != http.StatusOK {
		t.Errorf("proxied request: %d", res.StatusCode)
	}
	startCaddy(t, uiSite(addr, "basic_auth ops s3cret"))
	if res, _ := get(t, "/_tracingproxy/api/v2/services", nil); res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no credentials: %d, want 401 with a challenge", res.StatusCode)
	}
	bad := "Basic " + basic("ops", "wrong")
	if res, _ := get(t, "/_tracingproxy/api/v2/services", map[string][]string{"Authorization": {bad}}); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", res.StatusCode)
	}
	good := "Basic " + basic("ops", "s3cret")
	if res, body := get(t, "/_tracingproxy/api/v2/services", map[string][]string{"Authorization": {good}}); res.StatusCode != http.StatusOK || !strings.HasPrefix(body, "[") {
		t.Errorf("right credentials: %d %s", res.StatusCode, body)
	}
}

func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestUIConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, json, want string }{
		{"allow none", `{"allow":["none"]}`, "tracingproxy_ui allow must be"},
		{"allow junk", `{"allow":["nope"]}`, "tracingproxy_ui allow must be"},
		{"empty password", `{"basic_auth":{"user":"a","password":""}}`, "basic_auth needs a user and a non-empty password"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var u UI
			if err := json.Unmarshal([]byte(c.json), &u); err != nil {
				t.Fatal(err)
			}
			err := u.Provision(caddy.Context{})
			if err == nil {
				err = u.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
	for _, c := range []struct{ name, json, want string }{
		{"memory with url", `{"exporters":[{"type":"memory","url":"http://x"}]}`, "exporter memory takes no url"},
		{"max_traces on zipkin", `{"exporters":[{"type":"zipkin","url":"http://127.0.0.1:9411/api/v2/spans","max_traces":5}]}`, "max_traces and max_bytes are options of the memory exporter"},
		{"negative max_bytes", `{"exporters":[{"type":"memory","max_bytes":-1}]}`, "must not be negative"},
		{"tls on memory", `{"exporters":[{"type":"memory","tls":{"ca":"x"}}]}`, "tls is an option of network exporters"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := provision(t, c.json); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
