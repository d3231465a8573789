#!/usr/bin/env bash
# Load test: wrk against tracingproxy at 100% sampling with a healthy local
# collector, all on 127.0.0.1: Zipkin v2 JSON (default), OTLP/HTTP protobuf
# (otlp) or OTLP/gRPC (otlp-grpc). Prints wrk's figures, the
# spans the collector received against the spans the proxy should have sent
# (two per answered request), and the proxy's own export metrics.
#
#   scripts/loadtest.sh [duration=20s] [connections=32] [zipkin|otlp|otlp-grpc]
#
# Needs wrk (apt-get install wrk). It first runs the same load against Caddy's
# plain reverse_proxy (the same binary, no tracing) for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20s}
CONNS=${2:-32}
case ${3:-zipkin} in
zipkin) EXPORT=(--zipkin http://127.0.0.1:19411/api/v2/spans) ;;
otlp) EXPORT=(--otlp http://127.0.0.1:19411) ;;
otlp-grpc) EXPORT=(--otlp grpc://127.0.0.1:14317) ;;
*) echo "exporter must be zipkin, otlp or otlp-grpc, got $3" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

go build -o "$tmp/tracingproxy" ./cmd/tracingproxy
go build -o "$tmp/backends" ./internal/loadtest
"$tmp/backends" -upstream 127.0.0.1:19000 -collector 127.0.0.1:19411 -otlp-grpc 127.0.0.1:14317 &
"$tmp/tracingproxy" proxy --from 127.0.0.1:18080 --to 127.0.0.1:19000 --service loadtest \
	"${EXPORT[@]}" --admin 127.0.0.1:12019 2>"$tmp/proxy.log" &
"$tmp/tracingproxy" reverse-proxy --from http://127.0.0.1:18081 --to 127.0.0.1:19000 2>"$tmp/plain.log" &
for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:18080/ && curl -fs -o /dev/null http://127.0.0.1:18081/ && break; sleep 0.1; done
sleep 1.5 # the warm-up's spans are exported before counting starts

echo "== the same Caddy reverse_proxy without tracingproxy, for comparison"
wrk -t2 -c"$CONNS" -d"$DURATION" http://127.0.0.1:18081/orders/42 | grep -E 'Requests/sec|Latency  '
echo "== tracingproxy, 100% sampling, exporting (${3:-zipkin}) to the local collector"
metric() { curl -fs http://127.0.0.1:12019/metrics | awk -v m="$1" 'index($0, m) == 1 {print $NF}'; }
spans_at_collector() { curl -fs http://127.0.0.1:19411/count | awk '{print $2}'; }
rec_before=$(metric tracingproxy_exporter_records_enqueued_total)
spans_before=$(spans_at_collector)

wrk -t2 -c"$CONNS" -d"$DURATION" --latency http://127.0.0.1:18080/orders/42 | tee "$tmp/wrk.txt"

sleep 3 # more than one flush interval: the queue drains
recorded=$(( $(metric tracingproxy_exporter_records_enqueued_total) - rec_before ))
received=$(( $(spans_at_collector) - spans_before ))
wrk_requests=$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")
echo
echo "wrk requests answered:         $wrk_requests"
echo "requests the proxy recorded:   $recorded"
echo "spans sent (2 per request):    $(( 2 * recorded ))"
echo "spans the collector received:  $received"
curl -fs http://127.0.0.1:12019/metrics | grep -E '^tracingproxy_exporter_records_dropped_total' | awk '{s += $NF} END {print "records dropped (all reasons): " s}'
awk -v g="$received" -v s="$(( 2 * recorded ))" 'BEGIN {printf "spans received / spans sent = %.4f\n", g / s}'
