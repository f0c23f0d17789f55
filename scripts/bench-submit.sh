#!/usr/bin/env bash
# Measures submission throughput with the Outbound Policy Engine on: starts
# `mairust aio` in a temporary directory with a DKIM key for bench.test and
# the bench user in a whitelist profile (so that every message is scored
# without the account being suspended), and `mairust bench sink` as the
# remote destination (a static route); loads the submission port with
# AUTH, then times how long delivery takes to drain the queue.
# Usage: scripts/bench-submit.sh [messages] [conns]
set -euo pipefail
cd "$(dirname "$0")/.."
msgs=${1:-5000} conns=${2:-20}
bin=${BIN:-bin/mairust}
dir=$(mktemp -d /tmp/mairust-bench-submit.XXXXXX)
chmod 711 "$dir"
smtp=127.0.0.1:2666 http=127.0.0.1:8666 api=127.0.0.1:8667 sink=127.0.0.1:2766
submission=127.0.0.1:$((${smtp##*:} + 1002)) # start_aio's submission port
. scripts/aio.sh
"$bin" bench sink --listen $sink >"$dir/sink.out" 2>"$dir/sink.log" &
sink_pid=$!
trap 'kill -TERM $aio_pid $sink_pid 2>/dev/null; wait $aio_pid $sink_pid 2>/dev/null; rm -rf "$dir"' EXIT
cat >"$dir/mairust.yaml" <<YAML
outbound:
  routes: ["sink.test=$sink"]
outbound_whitelist:
  - id: bench
    accounts: [user@bench.test]
    max_rate: "100000000 msgs/hour"
YAML
start_aio "$dir" --config "$dir/mairust.yaml"
"$bin" admin dkim generate --data-dir "$dir" bench.test >/dev/null
sql() { psql -qtA "host=$dir/db/run dbname=mairust user=mairust" -c "$1"; }
echo "bench-submit: $msgs messages over $conns connections (STARTTLS, AUTH, policy, DKIM, queue)" >&2
start=$(date +%s.%N)
"$bin" bench smtp --addr "$submission" --starttls --insecure-skip-verify --auth user@bench.test:bench-password \
  --from user@bench.test --to rcpt@sink.test --conns "$conns" --messages "$msgs" --size 10k | grep -E "rate|latency|failed"
while [ "$(sql "SELECT count(*) FROM outbound_queue_recipients WHERE status <> 'delivered'")" != 0 ]; do sleep 0.2; done
end=$(date +%s.%N)
delivered=$(sql "SELECT count(*) FROM outbound_queue_recipients WHERE status = 'delivered'")
awk -v n="$delivered" -v w="$(echo "$end - $start" | bc)" \
  'BEGIN { printf "  delivered %d to the sink in %.1f s from the first submission: %.0f msg/s end to end\n", n, w, n / w }'
