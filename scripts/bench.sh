#!/usr/bin/env bash
# Starts `mairust aio` in a temporary directory and loads it with
# `mairust bench smtp` (10 KB messages, 50 connections, local disk, durability
# on), taking a 20 s CPU profile of the agent under load.
# Usage: scripts/bench.sh [messages] [conns] [size]
set -euo pipefail
cd "$(dirname "$0")/.."
msgs=${1:-20000} conns=${2:-50} size=${3:-10k}
bin=${BIN:-bin/mairust}
dir=$(mktemp -d /tmp/mairust-bench.XXXXXX)
chmod 755 "$dir"
smtp=127.0.0.1:2626 http=127.0.0.1:8626 api=127.0.0.1:8627
. scripts/aio.sh
trap 'kill -TERM $aio_pid 2>/dev/null; wait $aio_pid 2>/dev/null; rm -rf "$dir"' EXIT
start_aio "$dir"
echo "bench: aio up in $dir; warming up" >&2
"$bin" bench smtp --addr $smtp --conns "$conns" --messages 2000 --size "$size" --to user@bench.test >/dev/null
curl -fsS -o bench-cpu.prof "http://$http/debug/pprof/profile?seconds=20" &
prof=$!
"$bin" bench smtp --addr $smtp --conns "$conns" --messages "$msgs" --size "$size" --to user@bench.test
wait $prof || true
echo "bench: CPU profile of the agent in bench-cpu.prof; top entries:" >&2
go tool pprof -top -nodecount=25 "$bin" bench-cpu.prof 2>/dev/null | head -35
