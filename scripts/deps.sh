#!/usr/bin/env bash
# Installs what MaiRust needs on a Debian machine, pinned, only when missing.
#   scripts/deps.sh run   — what `make run` needs (PostgreSQL binaries, swaks)
#   scripts/deps.sh test  — that plus the test tools (versitygw, stripe-mock, helm, terraform, staticcheck,
#                           Redis, rspamd, Chromium, mbsync) and the services started
#   scripts/deps.sh proto — that of run plus buf and the protoc plugins (make proto)
set -euo pipefail
what=${1:-test}
gobin=$(go env GOPATH)/bin

# need COMMAND PACKAGE adds PACKAGE to the apt-get list when COMMAND is missing.
apt_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || apt_pkgs+=("$2"); }
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_pkgs+=(postgresql)
need swaks swaks
if [ "$what" = test ]; then
  need redis-server redis-server
  need rspamd rspamd
  need chromium chromium
  need mbsync isync
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "deps: installing ${apt_pkgs[*]} with apt-get"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

# go_tool BINARY PACKAGE@VERSION installs a Go tool unless that exact
# package at that version is there (go version -m: its path line, and the
# version on its mod line).
go_tool() {
  local bin=$1 pkg=${2%@*} ver=${2#*@}
  if [ -x "$gobin/$bin" ] && go version -m "$gobin/$bin" 2>/dev/null |
    awk -v p="$pkg" -v v="$ver" '$1=="path"{path=$2} $1=="mod"{mv=$3} END{exit !(path==p && mv==v)}'; then
    return
  fi
  echo "deps: go install $2"
  go install "$2"
}

if [ "$what" = proto ]; then
  go_tool buf github.com/bufbuild/buf/cmd/buf@v1.75.0
  go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
  go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
  go_tool protoc-gen-connect-go connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1
fi

if [ "$what" = test ]; then
  go_tool versitygw github.com/versity/versitygw/cmd/versitygw@v1.8.0
  go_tool stripe-mock github.com/stripe/stripe-mock@v0.203.0
  go_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
  go_tool helm helm.sh/helm/v3/cmd/helm@v3.22.0
  go_tool terraform github.com/hashicorp/terraform@v1.5.7
  # The tests use the machine's PostgreSQL on 127.0.0.1:5432; start it if it is down.
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "deps: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  fi
  # The rate-limit tests use Redis on 127.0.0.1:6379; start it if it is down.
  redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
  if ! redis_up; then
    echo "deps: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  fi
fi
