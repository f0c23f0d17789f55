#!/usr/bin/env bash
# Checks the .proto contracts, as .ci/run does: buf lint clean, the
# committed Go code equal to what buf generates, and no breaking change
# (buf's FILE rules) against proto/baseline.binpb — the contracts as last
# released — nor against the main branch when another one is checked out.
# After a deliberate breaking change (a new major version), refresh the
# baseline with `make proto-baseline`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh proto
PATH=$(go env GOPATH)/bin:$PATH

echo "proto: buf lint"
buf lint

echo "proto: generated code up to date"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
buf generate -o "$tmp"
buf generate --template buf.gen.plugin.yaml -o "$tmp"
generated() { (cd "$1" && find . -name '*.pb.go' -o -name '*.connect.go' | sort); }
if ! diff <(generated "$tmp/proto") <(generated proto) >/dev/null ||
  ! (cd "$tmp/proto" && generated . | xargs -I{} cmp -s {} "$OLDPWD/proto/{}"); then
  diff -r "$tmp/proto" proto --exclude='*.proto' --exclude='*.md' --exclude='*.binpb' || true
  echo "proto: the generated code differs from what the .proto files give: run make proto and commit the result" >&2
  exit 1
fi

echo "proto: no breaking change against proto/baseline.binpb"
buf breaking --against proto/baseline.binpb
if git rev-parse -q --verify refs/heads/main >/dev/null && [ "$(git rev-parse HEAD)" != "$(git rev-parse main)" ]; then
  echo "proto: no breaking change against main"
  buf breaking --against '.git#branch=main'
fi
