package caddymodule

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/testutil"
	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// proxiedApp is a service that honours HTTP_PROXY: for each inbound request
// it calls the URL in its target query parameter through the forward proxy
// and answers with the status it got (0 on a transport error).
func proxiedApp(t *testing.T, proxy string, trust *httptest.Server) *httptest.Server {
	pu, _ := url.Parse(proxy)
	tr := &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}
	if trust != nil {
		tr.TLSClientConfig = trust.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := 0
		if res, err := client.Get(r.URL.Query().Get("target")); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			status = res.StatusCode
		}
		io.WriteString(w, strconv.Itoa(status))
	}))
	t.Cleanup(app.Close)
	return app
}

// forwardSites is orders-legacy's ingress (sole_inflight) and its forward
// proxy on port fwd, with egress options opts.
func forwardSites(c *zipkintest.Collector, app string, fwd int, opts string) string {
	return fmt.Sprintf(`http://127.0.0.1:%d {
	tracingproxy {
		service_name orders-legacy
		stitch sole_inflight
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy %s
}
http://:%d {
	bind 127.0.0.1
	tracingproxy {
		service_name orders-legacy
		egress {
			forward_proxy
			%s
		}
		exporter zipkin %s {
			flush_interval 20ms
		}
	}
	reverse_proxy {http.vars.tracingproxy_forward_upstream}
}
`, httpPort, c.URL(), app, fwd, opts, c.URL())
}

// An absolute-form request through the forward proxy is an egress call:
// traced as a CLIENT span of the service, child of its inbound request,
// and forwarded with headers naming that span.
func TestForwardProxyAbsoluteForm(t *testing.T) {
	c := zipkintest.NewCollector(t)
	payments := newUpstream(t)
	fwd := freePort()
	app := proxiedApp(t, fmt.Sprintf("http://127.0.0.1:%d", fwd), nil)
	startCaddySites(t, forwardSites(c, app.URL, fwd, ""))

	res, body := get(t, "/orders/1?target="+url.QueryEscape(payments.URL+"/charge/1"), nil)
	if res.StatusCode != 200 || body != "200" {
		t.Fatalf("got %d %q, want the service to get 200 from payments", res.StatusCode, body)
	}
	spans := c.WaitSpans(t, 3, 5*time.Second)
	eg := egressSpans(spans)
	if len(eg) != 1 {
		t.Fatalf("egress spans %+v", eg)
	}
	e := eg[0]
	server := spansOfKind(spans, e.TraceID, "SERVER")
	if len(server) != 1 || e.ParentID == nil || *e.ParentID != server[0].ID || e.Tags["tracingproxy.stitch"] != "sole_inflight" {
		t.Fatalf("egress span %+v, want a child of the inbound SERVER span %+v by sole_inflight", e, server)
	}
	if strOf(e.Name) != "get /charge/{id}" || e.Tags["http.path"] != "/charge/1" || strOf(e.LocalEndpoint.ServiceName) != "orders-legacy" {
		t.Errorf("egress span name %q path %q service %v", strOf(e.Name), e.Tags["http.path"], e.LocalEndpoint)
	}
	if e.RemoteEndpoint == nil || e.RemoteEndpoint.Port == nil || strconv.Itoa(int(*e.RemoteEndpoint.Port)) != payments.URL[strings.LastIndexByte(payments.URL, ':')+1:] {
		t.Errorf("egress remoteEndpoint %+v, want payments at %s", e.RemoteEndpoint, payments.hostport())
	}
	ph := payments.last(t)
	if _, pid, _ := parseTraceparent(t, ph.Get("Traceparent")); pid != e.ID {
		t.Errorf("payments got traceparent %q, want it to name the egress span %s", ph.Get("Traceparent"), e.ID)
	}
	if ph.Get("Proxy-Connection") != "" {
		t.Errorf("payments got the proxy's hop header Proxy-Connection")
	}
}

// A CONNECT tunnel is relayed untouched and recorded as a CLIENT span of
// the service with the destination, the bytes each way and the tunnel tag.
func TestForwardProxyConnectTunnel(t *testing.T) {
	c := zipkintest.NewCollector(t)
	var mu sync.Mutex
	var got []http.Header
	payments := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		io.WriteString(w, "charged")
	}))
	t.Cleanup(payments.Close)
	fwd := freePort()
	app := proxiedApp(t, fmt.Sprintf("http://127.0.0.1:%d", fwd), payments)
	startCaddySites(t, forwardSites(c, app.URL, fwd, ""))

	res, body := get(t, "/orders/1?target="+url.QueryEscape(payments.URL+"/charge/1"), nil)
	if res.StatusCode != 200 || body != "200" {
		t.Fatalf("got %d %q, want the service to get 200 from payments over TLS", res.StatusCode, body)
	}
	spans := c.WaitSpans(t, 3, 5*time.Second)
	eg := egressSpans(spans)
	if len(eg) != 1 {
		t.Fatalf("egress spans %+v", eg)
	}
	e := eg[0]
	dest := strings.TrimPrefix(payments.URL, "https://")
	server := spansOfKind(spans, e.TraceID, "SERVER")
	if len(server) != 1 || e.ParentID == nil || *e.ParentID != server[0].ID {
		t.Fatalf("tunnel span %+v, want a child of the inbound SERVER span", e)
	}
	if e.Kind == nil || *e.Kind != "CLIENT" || strOf(e.Name) != "connect "+dest || e.Tags["tracingproxy.tunnel"] != "true" || e.Tags["peer.address"] != dest {
		t.Errorf("tunnel span kind %v name %q tags %v, want CLIENT connect %s tagged as a tunnel", e.Kind, strOf(e.Name), e.Tags, dest)
	}
	sent, _ := strconv.Atoi(e.Tags["tunnel.bytes_sent"])
	received, _ := strconv.Atoi(e.Tags["tunnel.bytes_received"])
	// A TLS handshake and one request each way: well over 100 bytes.
	if sent < 100 || received < 100 {
		t.Errorf("tunnel bytes sent %d received %d, want the TLS exchange counted", sent, received)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Get("Traceparent") != "" {
		t.Errorf("payments got %v: want one request, with no header from the proxy (the tunnel is opaque)", got)
	}
}

// allow_destinations: the forward proxy reaches nothing else, by either
// form, and is never an open proxy.
func TestForwardProxyAllowDestinations(t *testing.T) {
	c := zipkintest.NewCollector(t)
	payments := newUpstream(t)
	fwd := freePort()
	startCaddySites(t, forwardSites(c, "127.0.0.1:1", fwd, "allow_destinations payments.internal:8080 10.0.0.0/8"))
	proxy := fmt.Sprintf("127.0.0.1:%d", fwd)
	before := egressRefused[refusedDestination].Load()

	pu, _ := url.Parse("http://" + proxy)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	t.Cleanup(client.CloseIdleConnections)
	res, err := client.Get(payments.URL + "/charge")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("absolute-form to %s: %d, want 403", payments.URL, res.StatusCode)
	}

	conn, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", payments.hostport(), payments.hostport())
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := io.ReadAll(io.LimitReader(conn, 12))
	if string(line) != "HTTP/1.1 403" {
		t.Errorf("CONNECT to %s answered %q, want 403", payments.hostport(), line)
	}
	payments.mu.Lock()
	n := len(payments.reqs)
	payments.mu.Unlock()
	if n != 0 {
		t.Errorf("payments got %d requests through a refused proxy", n)
	}
	if got := egressRefused[refusedDestination].Load() - before; got != 2 {
		t.Errorf("tracingproxy_egress_refused_total{reason=destination} grew by %d, want 2", got)
	}

	// An origin-form request is not a proxy request.
	res, body := getURL(t, "http://"+proxy+"/charge")
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("origin-form request: %d %q, want 400", res.StatusCode, body)
	}
}

// getURL GETs a URL directly.
func getURL(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// A config reload ends the tunnels of the handler it replaces: a tunnel
// is not left relaying, and its goroutines end.
func TestForwardProxyTunnelEndsOnReload(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	c := zipkintest.NewCollector(t)
	fwd := freePort()
	startCaddySites(t, forwardSites(c, "127.0.0.1:1", fwd, ""))
	baseline := testutil.Goroutines()

	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", fwd))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", echo.Addr())
	const established = "HTTP/1.1 200 Connection established\r\n\r\n"
	buf := make([]byte, len(established)+4)
	io.WriteString(conn, "ping")
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != established+"ping" {
		t.Fatalf("through the tunnel: %q, %v", buf, err)
	}

	startCaddySites(t, fmt.Sprintf("http://127.0.0.1:%d {\n\trespond ok\n}\n", httpPort))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("tunnel still open after the reload: read %q", buf[:n])
	}
	baseline.Settle(t, 5*time.Second)
	spans := c.WaitSpans(t, 1, 5*time.Second)
	if e := egressSpans(spans); len(e) != 1 || e[0].Tags["tunnel.bytes_sent"] != "4" || e[0].Tags["tunnel.bytes_received"] != "4" {
		t.Errorf("tunnel span %+v, want 4 bytes each way", e)
	}
}
