//go:build linux || darwin

package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// freePort returns a TCP port on 127.0.0.1 held for this process until it
// exits. Caddy binds its listeners with SO_REUSEPORT, so a port picked by
// listening and closing could be picked again by another test binary (CI
// runs packages side by side) and both Caddy instances would bind it
// without an error, each answering the other's requests. The port is held
// by a socket bound with SO_REUSEPORT that never listens: no other bind
// can take it, Caddy's can share it, and only listening sockets are handed
// connections.
func freePort() int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		err = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	if err == nil {
		err = syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	}
	var sa syscall.Sockaddr
	if err == nil {
		sa, err = syscall.Getsockname(fd)
	}
	if err != nil {
		panic(fmt.Sprintf("no free port: %v", err))
	}
	return sa.(*syscall.SockaddrInet4).Port // fd stays open: it holds the port
}

// TestFreePortIsHeld checks the harness's port: no other bind takes it,
// and a listener bound the way Caddy binds (SO_REUSEPORT) shares it and is
// handed the connections.
func TestFreePortIsHeld(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a plain listener bound the held port %s", addr)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return errors.Join(err, serr)
	}}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("a listener with SO_REUSEPORT could not share the held port: %v", err)
	}
	defer l.Close()
	for range 20 { // every connection reaches the one listening socket
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.TCPListener).SetDeadline(time.Now().Add(time.Second))
		s, err := l.Accept()
		if err != nil {
			t.Fatalf("the listener was not handed a connection: %v", err)
		}
		s.Close()
		c.Close()
	}
}
