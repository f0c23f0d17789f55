#!/usr/bin/env bash
# Measures SMTP ingest with spam scanning in the path. Runs `mairust aio`
# twice in a temporary directory, first with the built-in rules alone, then
# with rspamd as well (the system's rspamd with the test overrides of
# internal/rspamdtest/conf, one scanning process per core), and loads each
# with the `mairust bench smtp` run of scripts/bench.sh. For each it prints
# the bench result and the agent's scan latency p50/p99, interpolated from
# the mairust_spam_scan_seconds histogram.
# Usage: scripts/bench-spam.sh [messages] [conns] [size]
set -euo pipefail
cd "$(dirname "$0")/.."
msgs=${1:-20000} conns=${2:-50} size=${3:-10k}
bin=bin/mairust
command -v rspamd >/dev/null || { echo "bench-spam: rspamd is not installed (apt-get install -y rspamd)" >&2; exit 1; }
dir=$(mktemp -d /tmp/mairust-bench-spam.XXXXXX)
chmod 755 "$dir"
smtp=127.0.0.1:2636 http=127.0.0.1:8636 api=127.0.0.1:8637
normal=127.0.0.1:11433 controller=127.0.0.1:11434
rspamd_pid=
cleanup() {
  [ -n "$rspamd_pid" ] && kill -KILL -- "-$rspamd_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

. scripts/aio.sh

# quantiles prints p50 and p99 of the scan histogram on stdin, in ms
# (within the first bucket only its bound is known: "<bound").
quantiles() {
  awk -F'[{}" ]+' 'BEGIN { n = 0 }
    /^mairust_spam_scan_seconds_bucket/ { le[n] = ($3 == "+Inf") ? 1e9 : $3; cum[n++] = $NF }
    /^mairust_spam_scan_seconds_count/ { total = $NF }
    function q(p,   r, i, lo, prev) {
      r = p * total; lo = 0; prev = 0
      for (i = 0; i < n; i++) {
        if (cum[i] >= r && i == 0) return sprintf("<%.3fms", le[0] * 1000)
        if (cum[i] >= r) return sprintf("%.3fms", (lo + (le[i] - lo) * (r - prev) / (cum[i] - prev)) * 1000)
        lo = le[i]; prev = cum[i]
      }
    }
    END { printf "  scan     p50 %s  p99 %s  (%d scans)\n", q(0.5), q(0.99), total }'
}

# run NAME: aio with $dir/NAME.yaml, warmed up, then the measured run.
run() {
  local data=$dir/$1
  mkdir -m 755 "$data"
  start_aio "$data" --config "$dir/$1.yaml"
  local pid=$aio_pid
  "$bin" bench smtp --addr $smtp --conns "$conns" --messages 2000 --size "$size" --to user@bench.test >/dev/null 2>&1
  local before
  before=$(curl -fsS "http://$http/metrics" | grep '^mairust_spam_scan_seconds')
  echo "== $1"
  "$bin" bench smtp --addr $smtp --conns "$conns" --messages "$msgs" --size "$size" --to user@bench.test 2>/dev/null
  # The measured run's scans: the histogram now minus before the run.
  curl -fsS "http://$http/metrics" | grep '^mairust_spam_scan_seconds' |
    paste -d' ' - <(echo "$before") | awk '{ $2 = $2 - $4; NF = 2; print }' | quantiles
  kill -TERM $pid
  wait $pid || true
}

printf 'spam:\n  rspamd_url: ""\n' >"$dir/rules.yaml"
printf 'spam:\n  rspamd_url: http://%s\n' $normal >"$dir/rspamd.yaml"

cp -r internal/rspamdtest/conf "$dir/rspamd-conf"
sed -i "s/^count = 1;/count = $(nproc);/" "$dir/rspamd-conf/override.d/worker-normal.inc"
mkdir -p "$dir/rspamd-db" "${XDG_CACHE_HOME:-$HOME/.cache}/mairust/rspamd-hs"
setsid rspamd -f -i -c /etc/rspamd/rspamd.conf --var LOCAL_CONFDIR="$dir/rspamd-conf" --var DBDIR="$dir/rspamd-db" \
  --var RUNDIR="$dir/rspamd-db" --var LOGDIR="$dir/rspamd-db" --var MAIRUST_NORMAL_SOCKET=$normal \
  --var MAIRUST_CONTROLLER_SOCKET=$controller --var MAIRUST_PASSWORD=bench \
  --var MAIRUST_HS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mairust/rspamd-hs" >"$dir/rspamd.log" 2>&1 &
rspamd_pid=$!
disown
wait_for "http://$normal/ping" $rspamd_pid "$dir/rspamd.log"

echo "bench-spam: $msgs messages of $size over $conns connections; rspamd $(rspamd --version | awk '{print $NF}') with $(nproc) scanning processes" >&2
run rules
run rspamd
