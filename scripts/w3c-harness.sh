#!/usr/bin/env bash
# Runs the W3C Trace Context conformance harness through two tracingproxy
# hops: harness -> tracingproxy A -> scripts/w3cservice, which forwards the
# context A gave it on each callback -> tracingproxy B -> harness. A is
# judged on what it passes in (continued or restarted trace, tracestate),
# B on what it passes on (a new span per call, the same trace).
#
#   scripts/w3c-harness.sh <checkout of github.com/w3c/trace-context>
#
# The harness needs Python 3 with aiohttp (Debian: python3-aiohttp) and
# listens on 127.0.0.1:7777, its own fixed port. Nothing is fetched here:
# the checkout is yours (say which commit you ran).
set -euo pipefail
harness=${1:?usage: $0 <w3c/trace-context checkout>}
python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on $1" >&2
	return 1
}

(cd "$root" && go build -o "$work/tracingproxy" ./cmd/tracingproxy && go build -o "$work/w3cservice" ./scripts/w3cservice)
svc=$(free_port) b=$(free_port) a=$(free_port)
"$work/tracingproxy" proxy --from "127.0.0.1:$b" --to "127.0.0.1:${HARNESS_PORT:-7777}" --service b --extract w3c --inject w3c --ui off 2>"$work/b.log" & pids+=($!)
"$work/w3cservice" --listen "127.0.0.1:$svc" --via "127.0.0.1:$b" & pids+=($!)
"$work/tracingproxy" proxy --from "127.0.0.1:$a" --to "127.0.0.1:$svc" --service a --extract w3c --inject w3c --ui off 2>"$work/a.log" & pids+=($!)
wait_port "$svc"; wait_port "$b"; wait_port "$a"

echo "harness at $(git -C "$harness" rev-parse HEAD 2>/dev/null || echo "(not a git checkout)")"
cd "$harness/test"
"$python" test.py "http://127.0.0.1:$a/test"
