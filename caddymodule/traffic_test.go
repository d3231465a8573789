package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

// Tracing never changes traffic: streamed responses still stream, upgraded
// connections still upgrade, bodies and statuses pass unchanged.

func TestStreamingResponseStillStreams(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release // the second event waits for the client to have the first
		io.WriteString(w, "data: second\n\n")
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	c := zipkintest.NewCollector(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			flush_interval 10ms
		}
	}
	reverse_proxy %s {
		flush_interval -1
	}`, c.URL(), strings.TrimPrefix(up.URL, "http://")))

	res, err := testClient.Get(proxyURL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "data: first\n" {
		t.Fatalf("first event %q, %v: the stream was buffered", first, err)
	}
	// The second event, and so the body's end, comes after this instant:
	// the spans must not end at the response header.
	released := uint64(time.Now().UnixMicro())
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("rest of the stream %q", rest)
	}
	spans := c.WaitSpans(t, 2, 5*time.Second)
	server, client := spansByKind(t, spans, spans[0].TraceID)
	if server.Tags["http.status_code"] != "200" {
		t.Errorf("streamed response recorded as %v", server.Tags)
	}
	for _, s := range []zipkintest.Span{server, client} {
		if end := *s.Timestamp + *s.Duration; end < released {
			t.Errorf("%s span ends at %d µs, before the stream's last event was released at %d", *s.Kind, end, released)
		}
	}
}

func TestUpgradedConnectionStillUpgrades(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	t.Cleanup(up.Close)
	c := zipkintest.NewCollector(t)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter zipkin %s {
			flush_interval 10ms
		}
	}
	reverse_proxy %s`, c.URL(), strings.TrimPrefix(up.URL, "http://")))

	conn, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %v, %v", res, err)
	}
	fmt.Fprintf(conn, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo: hello\n" {
		t.Fatalf("over the upgraded connection: %q, %v", line, err)
	}
	conn.Close()
	spans := c.WaitSpans(t, 2, 5*time.Second)
	server, _ := spansByKind(t, spans, spans[0].TraceID)
	if server.Tags["http.status_code"] != "101" {
		t.Errorf("upgrade recorded as %v, want status 101", server.Tags)
	}
}

func TestLargeBodiesPassUnchanged(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.Copy(w, r.Body) // echo
	}))
	t.Cleanup(up.Close)
	startCaddy(t, fmt.Sprintf(`	tracingproxy {
		exporter log
	}
	reverse_proxy %s`, strings.TrimPrefix(up.URL, "http://")))
	body := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	res, err := testClient.Post(proxyURL+"/upload", "application/octet-stream", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated || string(got) != body {
		t.Errorf("status %d, %d bytes back, want 201 and the 1 MiB body unchanged", res.StatusCode, len(got))
	}
}
