package caddymodule

// Regression tests for issue 13 item 3: an untrusted client's baggage, and
// passthrough headers past their bounds, never reach the upstream.

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// untrustedBaggage is what a stranger sends in every baggage carrier.
var untrustedBaggage = map[string][]string{
	"Baggage":             {"user=mallory,role=admin"},
	"Uberctx-Role":        {"admin"},
	"Ot-Baggage-Role":     {"admin"},
	"X-Baggage-Role":      {"admin"},
	"Correlation-Context": {"role=admin"},
	"Sw8-Correlation":     {b64std("role") + ":" + b64std("admin")},
	"Sw8-X":               {"1-1700000000000"},
}

func b64std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestIssue13UntrustedBaggageNeverReachesTheUpstream(t *testing.T) {
	for _, tc := range []struct {
		name, option string
		keep         bool
	}{
		{"default drops it", "", false},
		{"untrusted_baggage keep carries it", "untrusted_baggage keep", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t)
			startCaddy(t, fmt.Sprintf(`	tracingproxy {
		propagation {
			extract w3c b3 jaeger ot baggage
			inject w3c b3 jaeger ot baggage
			baggage X-Baggage-
			trust 10.0.0.0/8
			%s
		}
		exporter log
	}
	reverse_proxy %s`, tc.option, up.hostport()))
			res, _ := get(t, "/", untrustedBaggage)
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			got := up.last(t)
			var carried []string
			for name := range got {
				l := strings.ToLower(name)
				if l == "baggage" || l == "correlation-context" || strings.HasPrefix(l, "uberctx-") ||
					strings.HasPrefix(l, "ot-baggage-") || strings.HasPrefix(l, "x-baggage-") || strings.HasPrefix(l, "sw8-") {
					carried = append(carried, name+": "+got.Get(name))
				}
			}
			if got.Get("Sw8-X") != "" {
				t.Errorf("an untrusted client's sw8-x reached the upstream: %q", got.Get("Sw8-X"))
			}
			if !tc.keep {
				if len(carried) > 0 {
					t.Errorf("an untrusted client's baggage reached the upstream: %q", carried)
				}
				return
			}
			if b := got.Get("Baggage"); !strings.Contains(b, "user=mallory") || !strings.Contains(b, "role=admin") {
				t.Errorf("untrusted_baggage keep: upstream baggage %q, want the client's members", b)
			}
			if got.Get("Sw8-Correlation") == "" {
				t.Errorf("untrusted_baggage keep: sw8-correlation dropped")
			}
		})
	}
}

// A trusted caller's passthrough headers are checked and capped.
func TestIssue13PassthroughHeadersCheckedAndCapped(t *testing.T) {
	h, _, _ := regressionHandler(t, `{"propagation":{"baggage":["X-Baggage-"]},"exporters":[{"type":"log"}]}`)
	var up http.Header
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		up = r.Header.Clone()
		return nil
	})
	serve := func(hdr http.Header) http.Header {
		t.Helper()
		if err := h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/", hdr), next); err != nil {
			t.Fatal(err)
		}
		return up
	}

	// 200 prefixed headers of 100 bytes each: only what fits the baggage
	// limits is written back.
	hdr := http.Header{}
	for i := 0; i < 200; i++ {
		hdr.Set(fmt.Sprintf("X-Baggage-K%03d", i), strings.Repeat("v", 100))
	}
	hdr.Set("X-Baggage-Bad Key", "x")
	got := serve(hdr)
	n, size := 0, 0
	for name, vs := range got {
		if strings.HasPrefix(name, "X-Baggage-") {
			n++
			size += len(name) + len(vs[0])
		}
	}
	if n == 0 || n > 64 {
		t.Errorf("upstream got %d prefixed baggage headers, want 1..64", n)
	}
	if size > 8192+64*len("X-Baggage-") {
		t.Errorf("upstream got %d bytes of prefixed baggage", size)
	}

	for _, tc := range []struct {
		name, header, value string
		kept                bool
	}{
		{"valid correlation", "Sw8-Correlation", b64std("k") + ":" + b64std("v") + "," + b64std("k2") + ":", true},
		{"correlation not base64", "Sw8-Correlation", "k:v", false},
		{"correlation decoding to a newline", "Sw8-Correlation", b64std("k") + ":" + b64std("a\r\nX-Evil: 1"), false},
		{"correlation over its bound", "Sw8-Correlation", strings.Repeat(b64std("k")+":"+b64std("v")+",", 100) + b64std("k") + ":", false},
		{"correlation with too many members", "Sw8-Correlation", strings.TrimSuffix(strings.Repeat(b64std("k")+":"+b64std("v")+",", 9), ","), false},
		{"valid extension", "Sw8-X", "0-1700000000000", true},
		{"extension with text", "Sw8-X", "1-<script>", false},
		{"extension too long", "Sw8-X", strings.Repeat("1", 65), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(http.Header{tc.header: {tc.value}})
			if kept := got.Get(tc.header) == tc.value; kept != tc.kept {
				t.Errorf("%s: %q forwarded as %q; want kept=%v", tc.header, tc.value, got.Get(tc.header), tc.kept)
			}
		})
	}
}

// An sw8 whose trace id decodes to control characters starts a new trace
// instead of being continued.
func TestIssue13SW8ControlCharactersStartANewTrace(t *testing.T) {
	h, _, _ := regressionHandler(t, `{"propagation":{"extract":["sw8"],"inject":["w3c","sw8"]},"exporters":[{"type":"log"}]}`)
	var up http.Header
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		up = r.Header.Clone()
		return nil
	})
	evil := "1-" + b64std("abc\n\x1b[2Jdef") + "-" + b64std("seg") + "-0-" + b64std("svc") + "-" + b64std("inst") + "-" + b64std("/ep") + "-" + b64std("addr:80")
	if err := h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/", http.Header{"Sw8": {evil}}), next); err != nil {
		t.Fatal(err)
	}
	sw8 := up.Get("Sw8")
	if sw8 == "" {
		t.Fatal("no sw8 injected")
	}
	traceB64 := strings.Split(sw8, "-")[1]
	tid, _ := base64.StdEncoding.DecodeString(traceB64)
	if strings.ContainsAny(string(tid), "\n\x1b") || strings.Contains(string(tid), "abc") {
		t.Errorf("upstream sw8 carries the caller's control-character trace id %q", tid)
	}
	// The decoded path of a request is cleaned before it becomes the sw8
	// endpoint, so the next hop can read our sw8.
	if err := h.ServeHTTP(httptest.NewRecorder(), regressionReq("GET", "/a%0Ab", nil), next); err != nil {
		t.Fatal(err)
	}
	f := strings.Split(up.Get("Sw8"), "-")
	ep, _ := base64.StdEncoding.DecodeString(f[6])
	if strings.ContainsAny(string(ep), "\n") || !strings.HasPrefix(string(ep), "GET /a?b") {
		t.Errorf("sw8 endpoint %q, want the path with its control character replaced", ep)
	}
}
