#!/usr/bin/env bash
# Installs what MaiRust needs on a Debian machine, pinned, only when missing.
#   scripts/deps.sh run   — what `make run` needs (PostgreSQL binaries, swaks)
#   scripts/deps.sh test  — that plus the test tools (versitygw, staticcheck)
set -euo pipefail
what=${1:-test}
gobin=$(go env GOPATH)/bin

apt_pkgs=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_pkgs+=(postgresql)
command -v swaks >/dev/null 2>&1 || apt_pkgs+=(swaks)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "deps: installing ${apt_pkgs[*]} with apt-get"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

# go_tool BINARY MODULE@VERSION installs a Go tool unless that exact version is there.
go_tool() {
  local bin=$1 mod=${2%@*} ver=${2#*@}
  if [ -x "$gobin/$bin" ] && go version -m "$gobin/$bin" 2>/dev/null | grep -q "mod[[:space:]]*${mod%%/cmd/*}[[:space:]]*$ver"; then
    return
  fi
  echo "deps: go install $2"
  go install "$2"
}

if [ "$what" = test ]; then
  go_tool versitygw github.com/versity/versitygw/cmd/versitygw@v1.8.0
  go_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
  # The tests use the machine's PostgreSQL on 127.0.0.1:5432; start it if it is down.
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "deps: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  fi
fi
