#!/usr/bin/env bash
# Measures what a post_receive plugin costs SMTP ingest, and how many hook
# jobs the runner works per second: starts `mairust aio` in a temporary
# directory, loads it with `mairust bench smtp` without plugins, installs
# an example plugin (classifier: the go-plugin process plugin, built here;
# subject-tagger: the stdin shell script) and loads it again, then times
# how long the queued post_receive jobs (up to 32 messages each) take to drain.
# Usage: scripts/bench-hooks.sh [messages] [conns] [classifier|subject-tagger]
set -euo pipefail
cd "$(dirname "$0")/.."
msgs=${1:-10000} conns=${2:-50} plugin=${3:-classifier}
bin=${BIN:-bin/mairust}
dir=$(mktemp -d /tmp/mairust-bench-hooks.XXXXXX)
chmod 711 "$dir"
smtp=127.0.0.1:2636 http=127.0.0.1:8636 api=127.0.0.1:8637
. scripts/aio.sh
trap 'kill -TERM $aio_pid 2>/dev/null; wait $aio_pid 2>/dev/null; rm -rf "$dir"' EXIT
start_aio "$dir"
sql() { psql -qtA "host=$dir/db/run dbname=mairust user=mairust" -c "$1"; }
load() { "$bin" bench smtp --addr $smtp --conns "$conns" --messages "$msgs" --size 10k --to user@bench.test | grep -E "rate|latency"; }
"$bin" bench smtp --addr $smtp --conns "$conns" --messages 2000 --size 10k --to user@bench.test >/dev/null
echo "bench-hooks: no plugin" >&2
load
src=agent/plugins/examples/$plugin
if [ "$plugin" = classifier ]; then
  src=$dir/classifier-src; mkdir "$src"; cp agent/plugins/examples/classifier/plugin.toml "$src"/
  go build -o "$src/classifier" ./agent/plugins/examples/classifier
fi
"$bin" plugin install --data-dir "$dir" "$src" >/dev/null
"$bin" reload --addr $http >/dev/null
echo "bench-hooks: one post_receive plugin ($plugin)" >&2
load
start=$(date +%s.%N)
while [ "$(sql "SELECT count(*) FROM river_job WHERE kind = 'post_receive' AND state NOT IN ('completed', 'cancelled', 'discarded')")" != 0 ]; do sleep 0.2; done
end=$(date +%s.%N)
done_jobs=$(sql "SELECT count(*) FROM river_job WHERE kind = 'post_receive' AND state = 'completed'")
first=$(sql "SELECT extract(epoch FROM min(created_at)) FROM river_job WHERE kind = 'post_receive'")
last=$(sql "SELECT extract(epoch FROM max(finalized_at)) FROM river_job WHERE kind = 'post_receive'")
failed=$(sql "SELECT count(*) FROM river_job WHERE kind = 'post_receive' AND state <> 'completed'")
hooked=$(sql "SELECT coalesce(sum(jsonb_array_length(args->'message_ids')), 0) FROM river_job WHERE kind = 'post_receive' AND state = 'completed'")
awk -v n="$done_jobs" -v m="$hooked" -v a="$first" -v b="$last" -v f="$failed" -v w="$(echo "$end - $start" | bc)" \
  'BEGIN { printf "  hook jobs %d completed (%d not), %d messages, in %.1f s from the first enqueue: %.0f jobs/s, %.0f messages/s; queue drained %.1f s after the load ended\n", n, f, m, b - a, n / (b - a), m / (b - a), w }'
