package caddymodule

import (
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/tracingproxy/tracingproxy/internal/zipkintest"
)

func TestWebSocketSession(t *testing.T) {
	c := zipkintest.NewCollector(t)
	up := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) {
		io.Copy(ws, ws) // echo until the client closes
	}))
	t.Cleanup(up.Close)
	startCaddy(t, fmt.Sprintf("\t%s\n\treverse_proxy %s", zipkinTracing(c), up.Listener.Addr()))

	// The client's end is its connection closing, with no close frame
	// first: a close frame would reach the echoing upstream, which closes
	// in turn, and which end the proxy saw first would be a race.
	cfg, err := websocket.NewConfig(fmt.Sprintf("ws://127.0.0.1:%d/chat/42", httpPort), "http://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		conn.Close()
		t.Fatalf("dialing the WebSocket through the proxy: %v", err)
	}
	const msg = "hello through the proxy"
	if _, err := ws.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(ws, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q, %v; want %q", buf, err, msg)
	}
	conn.Close()

	spans0 := c.WaitSpans(t, 3, 15*time.Second)
	server, spans := clientSpans(t, spans0, spans0[0].TraceID)
	if len(spans) != 2 {
		t.Fatalf("%d spans besides SERVER, want the attempt and the session: %+v", len(spans), spans)
	}
	var attempt, sess zipkintest.Span
	for _, s := range spans {
		if s.Kind != nil && *s.Kind == "CLIENT" {
			attempt = s
		} else {
			sess = s
		}
	}
	if sess.Kind != nil || attempt.Kind == nil {
		t.Fatalf("spans %+v, want a CLIENT attempt and a local session span", spans)
	}
	// The hop ends at the 101, without an error.
	for _, s := range []zipkintest.Span{server, attempt} {
		if s.Tags["http.status_code"] != "101" {
			t.Errorf("%s status %q, want 101", *s.Kind, s.Tags["http.status_code"])
		}
		if _, bad := s.Tags["error"]; bad {
			t.Errorf("%s has an error tag: %v", *s.Kind, s.Tags)
		}
		if end := *s.Timestamp + *s.Duration; end > *sess.Timestamp+1 {
			t.Errorf("%s ends at %d, after the session began at %d: the hop should end at the 101", *s.Kind, end, *sess.Timestamp)
		}
	}
	// The session is a child of the SERVER span and covers the relay.
	if sess.ParentID == nil || *sess.ParentID != server.ID {
		t.Errorf("session parent %v, want the SERVER span %s", sess.ParentID, server.ID)
	}
	if *sess.Name != "websocket /chat/{id}" {
		t.Errorf("session name %q, want websocket /chat/{id}", *sess.Name)
	}
	// A WebSocket frame from a client carries 6 bytes of header and mask
	// for a short payload, one from the server 2.
	if n, _ := strconv.Atoi(sess.Tags["session.bytes_from_client"]); n < len(msg)+6 {
		t.Errorf("session.bytes_from_client %q, want at least the frame sent (%d)", sess.Tags["session.bytes_from_client"], len(msg)+6)
	}
	if n, _ := strconv.Atoi(sess.Tags["session.bytes_to_client"]); n < len(msg)+2 {
		t.Errorf("session.bytes_to_client %q, want at least the echoed frame (%d)", sess.Tags["session.bytes_to_client"], len(msg)+2)
	}
	if got := sess.Tags["session.closed_by"]; got != "client" {
		t.Errorf("session.closed_by %q, want client", got)
	}
	if _, bad := sess.Tags["error"]; bad {
		t.Errorf("a clean close has an error tag: %v", sess.Tags)
	}
}
