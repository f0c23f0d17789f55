# MaiRust — the two commands that matter: `make run` and `make test`.
GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)
BIN     := bin/mairust
# As root the embedded PostgreSQL runs as the user mairust, which must reach
# the data dir: use the standard place then, ./data otherwise.
DATA    ?= $(if $(filter 0,$(shell id -u)),/var/lib/mairust,./data)

.PHONY: run test build examples deps lint docs proto proto-baseline bench image clean

## run: install what is missing, build, and start `mairust aio` (data in /var/lib/mairust as root, else ./data),
## with the example plugins built and published in its marketplace
run: build examples
	./scripts/deps.sh run
	./$(BIN) aio --data-dir $(DATA) --log-format text --publish-plugins agent/plugins/examples

## examples: build the example plugins' binaries (the others are scripts or HTTP services)
examples:
	$(GO) build -o agent/plugins/examples/archive/archive ./agent/plugins/examples/archive
	$(GO) build -o agent/plugins/examples/classifier/classifier ./agent/plugins/examples/classifier

## test: install the test tools, check the .proto contracts, then vet, staticcheck and every test against real components
test:
	./scripts/deps.sh test
	./scripts/proto-check.sh
	$(GO) vet ./...
	staticcheck ./...
	$(GO) test -count=1 -timeout 25m ./...

build:
	$(GO) build -o $(BIN) ./cmd/mairust

## docs: regenerate docs/configuration.md from the config structs
docs:
	$(GO) run ./cmd/mairust config reference > docs/configuration.md

## proto: regenerate proto/'s Go code (committed) with pinned buf and protoc plugins
proto:
	./scripts/deps.sh proto
	buf lint
	buf generate
	buf generate --template buf.gen.plugin.yaml

## proto-baseline: record the contracts as released, for buf breaking (after a deliberate break only)
proto-baseline:
	buf build --exclude-source-info -o proto/baseline.binpb

## bench: start aio in a temporary dir and load it with `mairust bench smtp` (see README)
bench: build
	./scripts/bench.sh

## image: build the container image (deploy/docker/Dockerfile) for linux/amd64 and linux/arm64 with docker buildx
image:
	docker buildx build --platform linux/amd64,linux/arm64 -f deploy/docker/Dockerfile -t mairust/mairust:dev .

clean:
	rm -rf bin
