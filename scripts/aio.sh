# Sourced by the bench scripts: run `mairust aio` on fixed loopback ports
# with the bench user, and wait for things to answer.
#   needs: bin (the mairust binary), smtp, http, api (host:port each)

# wait_for URL PID LOG: until URL answers, or fail with LOG if PID ended.
wait_for() {
  for _ in $(seq 1 600); do
    curl -fsS "$1" >/dev/null 2>&1 && return
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
    sleep 0.2
  done
  echo "$(basename "$0"): $1 did not answer" >&2; exit 1
}

# start_aio DATA [aio flags...]: aio with its data in DATA, user
# user@bench.test (password bench-password); sets aio_pid and returns once
# it is healthy and has printed its banner. IMAP and submission listen on
# loopback, on the SMTP port + 1000 to + 1003.
start_aio() {
  local data=$1; shift
  local p=$((${smtp##*:} + 1000))
  "$bin" aio "$@" --data-dir "$data" --smtp-listen "$smtp" --http-listen "$http" --api-listen "$api" \
    --imap-listen 127.0.0.1:$p --imaps-listen 127.0.0.1:$((p + 1)) \
    --submission-listen 127.0.0.1:$((p + 2)) --submissions-listen 127.0.0.1:$((p + 3)) \
    --domain bench.test --admin user@bench.test --admin-password bench-password --log-format text \
    >"$data/aio.out" 2>"$data/aio.log" &
  aio_pid=$!
  wait_for "http://$http/health" $aio_pid "$data/aio.log"
  for _ in $(seq 1 100); do grep -q "Stop with" "$data/aio.out" && return; sleep 0.1; done
}
