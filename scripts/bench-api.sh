#!/usr/bin/env bash
# Measures the REST API's message list on a large mailbox: starts
# `mairust aio` in a temporary directory, gives its first user a mailbox of
# N messages (rows inserted with SQL, all pointing at one stored blob),
# signs in, and runs wrk against GET /api/v1/messages?limit=50 (first page)
# and a deep page, printing req/s and latency percentiles.
# Usage: scripts/bench-api.sh [messages] [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000} conns=${2:-32} secs=${3:-10}
bin=bin/mairust
command -v wrk >/dev/null || { echo "bench-api: wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
dir=$(mktemp -d /tmp/mairust-bench-api.XXXXXX)
chmod 755 "$dir"
# The API's rate limits would measure themselves; lift them for the bench.
printf 'ratelimit:\n  user_per_minute: 10000000\n' >"$dir/mairust.yaml"
smtp=127.0.0.1:2646 http=127.0.0.1:8646 api=127.0.0.1:8647
. scripts/aio.sh
trap 'kill -TERM $aio_pid 2>/dev/null; wait $aio_pid 2>/dev/null; rm -rf "$dir"' EXIT
start_aio "$dir" --config "$dir/mairust.yaml"
swaks --to user@bench.test --server $smtp --silent 2 >/dev/null
echo "bench-api: filling the mailbox with $n messages" >&2
psql -q "host=$dir/db/run dbname=mairust user=mairust" <<SQL
INSERT INTO messages(tenant_id, user_id, folder_id, blob_key, size, mail_from, rcpt_to, from_addr, subject, received_at)
SELECT m.tenant_id, m.user_id, m.folder_id, m.blob_key, m.size, m.mail_from, m.rcpt_to, 'Sender <s@remote.test>',
       'Message ' || g, now() - (g || ' seconds')::interval
FROM messages m, generate_series(1, $n) g WHERE m.id = (SELECT min(id) FROM messages);
ANALYZE messages;
SQL
token=$(curl -fsS -H 'Content-Type: application/json' -d '{"address":"user@bench.test","password":"bench-password"}' \
  "http://$api/api/v1/auth/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
deep=$(curl -fsS -H "Authorization: Bearer $token" "http://$api/api/v1/messages?limit=200" >/dev/null; \
  cursor=""; for _ in $(seq 1 $((n / 200 / 2))); do
    page=$(curl -fsS -H "Authorization: Bearer $token" "http://$api/api/v1/messages?limit=200${cursor:+&cursor=$cursor}")
    cursor=$(printf '%s' "$page" | sed -nE 's/.*"next_cursor":"([^"]+)".*/\1/p')
  done; printf '%s' "$cursor")
for name in first deep; do
  url="http://$api/api/v1/messages?limit=50"
  [ $name = deep ] && url="$url&cursor=$deep"
  echo "== $name page of 50, mailbox of $n messages, $conns connections, ${secs}s"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" "$url" | grep -E "Latency|50%|90%|99%|Requests/sec|Non-2xx"
done
