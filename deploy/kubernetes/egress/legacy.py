#!/usr/bin/env python3
"""A legacy HTTP service with no tracing, for tracingproxy's egress tests.

It serves GET /work and, for each request, makes outbound calls to one
upstream: GET <upstream>/pay/<gt>/<i>?gt=<gt>&i=<i>. It forwards no trace
header (no traceparent, b3, sw8, ...), ever. With --forward-request-id it
copies the inbound request id header onto its calls, as many real services
do with X-Request-ID; without it, the calls carry nothing of the inbound
request but the ground truth.

The ground truth is the inbound request's `gt` query parameter: the caller
names each request, and the app copies that name into the path and query of
the calls the request causes. tracingproxy reads neither to attribute a
call, so a test can compare what tracingproxy decided with what happened.

Service models (--model):
  prefork  the parent binds one socket and forks --workers processes that
           accept on it, each serving one connection, and so one request,
           at a time (Apache prefork, gunicorn sync workers, PHP-FPM);
  thread   one process, a thread per connection (ThreadingHTTPServer);
  single   one process, one request at a time (HTTPServer).
prefork and single answer HTTP/1.0 and close each inbound connection, as
prefork servers behind a proxy do: a worker held by an idle kept-alive
connection would serve nobody. thread keeps inbound connections alive.

Outbound connections (--keepalive): off, every call opens a new connection
and sends Connection: close; on, connections are kept and reused: one per
process in prefork and single, a shared pool in thread (so one connection
serves calls of different inbound requests over its life).

Outbound calls go to --upstream directly or, when HTTP_PROXY (or
http_proxy) is set and NO_PROXY (no_proxy) does not name the upstream's
host, through that forward proxy in absolute form, as clients that honour
HTTP_PROXY do.

Standard library only. It prints one JSON line on stdout when it accepts
connections ({"listen": "127.0.0.1:port", "pid": n, "workers": [...]}) and
runs until SIGTERM or SIGINT; with --until-stdin-closes it also exits when
stdin closes, so a test's app never outlives the test.
"""

import argparse
import http.client
import http.server
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
import urllib.parse


def no_proxy(host):
    """Reports whether NO_PROXY exempts host: a listed name, a domain
    suffix (.example.com or example.com), or *."""
    for entry in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "").split(","):
        entry = entry.strip().lower().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


class Outbound:
    """Makes the app's outbound calls, with or without kept connections."""

    def __init__(self, upstream, keepalive, shared, timeout):
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit("--upstream must be http://host[:port], got %r" % upstream)
        self.base = upstream.rstrip("/")
        self.target = (u.hostname, u.port or 80)
        proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
        self.proxied = False
        if proxy and not no_proxy(u.hostname):
            p = urllib.parse.urlsplit(proxy if "//" in proxy else "http://" + proxy)
            self.target = (p.hostname, p.port or 80)
            self.proxied = True
        self.keepalive = keepalive
        self.timeout = timeout
        # A shared pool (thread model) or one connection per process.
        self.pool = queue.LifoQueue() if shared else None
        self.conn = None

    def _take(self):
        if self.pool is not None:
            try:
                return self.pool.get_nowait()
            except queue.Empty:
                return None
        c, self.conn = self.conn, None
        return c

    def _give(self, c):
        if self.pool is not None:
            self.pool.put(c)
        else:
            self.conn = c

    def _new(self):
        return http.client.HTTPConnection(self.target[0], self.target[1], timeout=self.timeout)

    def call(self, path, headers):
        """GET path on the upstream; returns the status."""
        url = self.base + path if self.proxied else path
        hdrs = dict(headers)
        if not self.keepalive:
            hdrs["Connection"] = "close"
            c = self._new()
            try:
                c.request("GET", url, headers=hdrs)
                r = c.getresponse()
                r.read()
                return r.status
            finally:
                c.close()
        c = self._take()
        reused = c is not None
        if c is None:
            c = self._new()
        try:
            c.request("GET", url, headers=hdrs)
            r = c.getresponse()
            r.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            c.close()
            if not reused:
                raise
            # The kept connection was closed while idle: the request never
            # reached the server, so one retry on a new connection is safe.
            c = self._new()
            c.request("GET", url, headers=hdrs)
            r = c.getresponse()
            r.read()
        if r.will_close:
            c.close()
        else:
            self._give(c)
        return r.status


def make_handler(opts, outbound):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if opts.model == "thread" else "HTTP/1.0"
        server_version = "legacy/1"

        def log_message(self, fmt, *args):
            if opts.verbose:
                sys.stderr.write("legacy %d: %s\n" % (os.getpid(), fmt % args))

        def reply(self, status, body):
            b = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            if u.path == "/healthz":
                self.reply(200, {"pid": os.getpid()})
                return
            if u.path != "/work":
                self.reply(404, {"error": "not found"})
                return
            q = urllib.parse.parse_qs(u.query)
            gt = q.get("gt", [""])[0]
            calls = int(q.get("calls", [opts.calls])[0])
            headers = {}
            rid = self.headers.get(opts.request_id_header)
            if opts.forward_request_id and rid:
                headers[opts.request_id_header] = rid
            start = time.monotonic()
            statuses, errors = [], []
            for i in range(calls):
                if i > 0 and opts.pause_ms > 0:
                    time.sleep(opts.pause_ms / 1000.0)
                path = "/pay/%s/%d?%s" % (
                    urllib.parse.quote(gt, safe=""), i, urllib.parse.urlencode({"gt": gt, "i": i}))
                try:
                    statuses.append(outbound.call(path, headers))
                except OSError as e:
                    errors.append("%s: %s" % (type(e).__name__, e))
            ok = not errors and all(s == 200 for s in statuses)
            self.reply(200 if ok else 502, {
                "gt": gt, "pid": os.getpid(), "statuses": statuses, "errors": errors,
                "request_id": rid or "", "start": start, "end": time.monotonic()})

    return Handler


def parent_watch(parent):
    """Ends a worker whose parent is gone."""
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.2)


def prefork_worker(sock, opts, parent):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    threading.Thread(target=parent_watch, args=(parent,), daemon=True).start()
    # Kept connections are per process: created after the fork.
    outbound = Outbound(opts.upstream, opts.keepalive, shared=False, timeout=opts.call_timeout)
    handler = make_handler(opts, outbound)

    class Server:
        server_name, server_port = sock.getsockname()[:2]

    server = Server()
    while True:
        conn, addr = sock.accept()  # the kernel wakes one blocked worker
        try:
            handler(conn, addr, server)
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()


def announce(addr, workers):
    print(json.dumps({"listen": "%s:%d" % addr[:2], "pid": os.getpid(), "workers": workers}), flush=True)


# The signals that stop the app. main blocks them before anything else, so
# every thread started after inherits the block and wait takes them with
# sigwait: one sent before wait runs stays pending instead of being lost (a
# Python handler around pause() or read() misses a signal that arrives just
# before the call, and the app then never stops).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def wait(opts):
    """Returns on SIGTERM or SIGINT or, with --until-stdin-closes, when
    stdin reaches end of file (the starter is gone)."""
    if opts.until_stdin_closes:
        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except (OSError, ValueError):
                pass
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch_stdin, daemon=True).start()
    signal.sigwait(STOP_SIGNALS)


def main():
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["prefork", "thread", "single"], required=True)
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port to serve on")
    ap.add_argument("--workers", type=int, default=4, help="processes in the prefork model")
    ap.add_argument("--upstream", required=True, help="http://host:port the outbound calls go to")
    ap.add_argument("--calls", type=int, default=2, help="outbound calls per request (?calls= overrides)")
    ap.add_argument("--pause-ms", type=float, default=0, help="pause between a request's calls")
    ap.add_argument("--keepalive", action="store_true", help="keep and reuse outbound connections")
    ap.add_argument("--call-timeout", type=float, default=15, help="seconds an outbound call may take")
    ap.add_argument("--forward-request-id", action="store_true", help="copy the inbound request id onto calls")
    ap.add_argument("--request-id-header", default="X-Request-ID")
    ap.add_argument("--until-stdin-closes", action="store_true", help="also exit when stdin closes")
    ap.add_argument("--verbose", action="store_true", help="log requests on stderr")
    opts = ap.parse_args()

    host, _, port = opts.listen.rpartition(":")
    addr = (host or "0.0.0.0", int(port))

    if opts.model == "prefork":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(256)
        parent = os.getpid()
        workers = []
        for _ in range(max(1, opts.workers)):
            pid = os.fork()
            if pid == 0:
                try:
                    prefork_worker(sock, opts, parent)
                finally:
                    os._exit(0)
            workers.append(pid)
        # The parent serves nothing: it only holds the workers.
        bound = sock.getsockname()
        sock.close()
        announce(bound, workers)
        try:
            wait(opts)
        finally:
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            for pid in workers:
                try:
                    os.waitpid(pid, 0)
                except OSError:
                    pass
        return

    cls = http.server.ThreadingHTTPServer if opts.model == "thread" else http.server.HTTPServer
    cls.request_queue_size = 256
    cls.daemon_threads = True
    outbound = Outbound(opts.upstream, opts.keepalive, shared=opts.model == "thread", timeout=opts.call_timeout)
    server = cls(addr, make_handler(opts, outbound))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    announce(server.server_address, [])
    wait(opts)


if __name__ == "__main__":
    main()
