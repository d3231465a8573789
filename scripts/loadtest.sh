#!/usr/bin/env bash
# Load test: wrk against tracingproxy at 100% sampling with a healthy local
# collector, all on 127.0.0.1 and on ports the system chose: Zipkin v2 JSON
# (default), OTLP/HTTP protobuf (otlp), OTLP/gRPC (otlp-grpc), or Kafka
# (kafka: Zipkin JSON messages; kafka-otlp: otlp_proto; kafka-skywalking:
# SkyWalking segments) to an in-process Kafka cluster whose topics are
# consumed and every message decoded. Prints wrk's figures, the spans the
# collector received against the spans the proxy should have sent (two per
# answered request), and the proxy's own export metrics.
#
#   scripts/loadtest.sh [duration=20s] [connections=32] [zipkin|otlp|otlp-grpc|kafka|kafka-otlp|kafka-skywalking]
#
# Needs wrk (apt-get install wrk). It first runs the same load against Caddy's
# plain reverse_proxy (the same binary, no tracing) for comparison. Every wait
# is bounded: after the build, a run takes at most twice the duration plus a
# minute (10 s for each start, 30 s for the queue to drain).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20s}
CONNS=${2:-32}
EXPORTER=${3:-zipkin}
case $EXPORTER in
zipkin | otlp | otlp-grpc | kafka | kafka-otlp | kafka-skywalking) ;;
*) echo "exporter must be zipkin, otlp, otlp-grpc, kafka, kafka-otlp or kafka-skywalking, got $EXPORTER" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

go build -o "$tmp/tracingproxy" ./cmd/tracingproxy
go build -o "$tmp/backends" ./internal/loadtest
"$tmp/backends" -spare 3 >"$tmp/addrs" 2>"$tmp/backends.log" &
for _ in $(seq 100); do grep -qx ready "$tmp/addrs" && break; sleep 0.1; done
grep -qx ready "$tmp/addrs" || { echo "backends did not start:" >&2; cat "$tmp/backends.log" >&2; exit 1; }
addr() { awk -F= -v k="$1" '$1 == k {print $2}' "$tmp/addrs"; }
UPSTREAM=$(addr upstream) COLLECTOR=$(addr collector) KAFKA=$(addr kafka)
PROXY=$(addr spare1) PLAIN=$(addr spare2) ADMIN=$(addr spare3)
case $EXPORTER in
zipkin) EXPORT=(--zipkin "http://$COLLECTOR/api/v2/spans") ;;
otlp) EXPORT=(--otlp "http://$COLLECTOR") ;;
otlp-grpc) EXPORT=(--otlp "grpc://$(addr otlp_grpc)") ;;
kafka) EXPORT=(--kafka "$KAFKA") ;;
kafka-otlp) EXPORT=(--kafka "$KAFKA" --kafka-encoding otlp_proto) ;;
kafka-skywalking) EXPORT=(--kafka "$KAFKA" --kafka-encoding skywalking) ;;
esac

"$tmp/tracingproxy" proxy --from "$PROXY" --to "$UPSTREAM" --service loadtest \
	"${EXPORT[@]}" --admin "$ADMIN" 2>"$tmp/proxy.log" &
"$tmp/tracingproxy" reverse-proxy --from "http://$PLAIN" --to "$UPSTREAM" 2>"$tmp/plain.log" &
get() { curl -fs --max-time 5 "$@"; }
for _ in $(seq 100); do get -o /dev/null "http://$PROXY/" && get -o /dev/null "http://$PLAIN/" && break; sleep 0.1; done
get -o /dev/null "http://$PROXY/" || { echo "the proxy did not start:" >&2; cat "$tmp/proxy.log" >&2; exit 1; }

metric() { get "http://$ADMIN/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
spans_at_collector() { get "http://$COLLECTOR/count" | awk '{print $2}'; }
# until_delivered waits (at most $1 tenths of a second) until the collector
# has every span of the records enqueued since $2 records and $3 spans; it
# fails if they are not all there by then.
until_delivered() {
	for _ in $(seq "$1"); do
		(( $(spans_at_collector) - $3 >= 2 * ($(metric tracingproxy_exporter_records_enqueued_total) - $2) )) && return 0
		sleep 0.1
	done
	return 1
}
until_delivered 100 0 0 || { echo "the warm-up's spans did not arrive in 10 s:" >&2; cat "$tmp/proxy.log" "$tmp/backends.log" >&2; exit 1; }

echo "== the same Caddy reverse_proxy without tracingproxy, for comparison"
wrk -t2 -c"$CONNS" -d"$DURATION" --timeout 2s "http://$PLAIN/orders/42" | grep -E 'Requests/sec|Latency  '
echo "== tracingproxy, 100% sampling, exporting ($EXPORTER) to the local collector"
rec_before=$(metric tracingproxy_exporter_records_enqueued_total)
spans_before=$(spans_at_collector)

wrk -t2 -c"$CONNS" -d"$DURATION" --timeout 2s --latency "http://$PROXY/orders/42" | tee "$tmp/wrk.txt"

start=$(date +%s.%N)
drained="not all there 30 s after the load stopped"
if until_delivered 300 "$rec_before" "$spans_before"; then # the queue drains
	drained=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "all there %.1f s after the load stopped", e - s}')
fi
recorded=$(( $(metric tracingproxy_exporter_records_enqueued_total) - rec_before ))
received=$(( $(spans_at_collector) - spans_before ))
wrk_requests=$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")
echo
echo "wrk requests answered:         $wrk_requests"
echo "requests the proxy recorded:   $recorded"
echo "spans sent (2 per request):    $(( 2 * recorded ))"
echo "spans the collector received:  $received ($drained)"
echo "records dropped (all reasons): $(metric tracingproxy_exporter_records_dropped_total)"
echo "collector: $(get "http://$COLLECTOR/count")"
awk -v g="$received" -v s="$(( 2 * recorded ))" 'BEGIN {printf "spans received / spans sent = %.4f\n", g / s}'
