# keygate — run `make help` for the targets.

GO          ?= go
TOOLS       := $(CURDIR)/.tools
STATICCHECK := $(TOOLS)/staticcheck
STATICCHECK_VERSION := v0.8.2
GRPCURL     := $(TOOLS)/grpcurl
GRPCURL_VERSION := v1.9.4
FUZZTIME    ?= 100000x
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# vtprotobuf compiles go-control-plane's generated marshallers in.
TAGS        := vtprotobuf
LDFLAGS     := -s -w -X github.com/keygate/keygate/internal/cli.version=$(VERSION)
IMAGE       ?= ghcr.io/keygate/keygate:$(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/keygate.
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -ldflags '$(LDFLAGS)' -o bin/keygate ./cmd/keygate

.PHONY: run
run: build ## Run keygate serve with the embedded NATS server (data in ./keygate-data).
	./bin/keygate serve --config docs/try-it.yaml

.PHONY: test
test: lint test-short ## Everything CI runs: lint, test-short, fuzz targets, the chart, end-to-end through nginx (about 10 minutes on a fresh machine).
	$(MAKE) fuzz FUZZTIME=20000x
	$(MAKE) k8s-test
	$(MAKE) e2e

.PHONY: e2e
e2e: ## Real nginx with proxy/nginx and the official OpenAI SDKs (Go, Node) against keygate; installs nginx, njs and the npm packages if missing.
	./test/e2e/deps.sh
	cd test/e2e && $(GO) test -race -count=1 ./...

.PHONY: test-short
test-short: tools ## Unit and integration tests under -race (no lint, fuzz, chart or nginx).
	$(GO) test -race -count=1 -tags $(TAGS) ./...
	$(GO) test -race -count=1 -run 'Decision|Allow|Changes' ./authz ./internal/serve # without the tag too

.PHONY: tools
tools: $(STATICCHECK) $(GRPCURL) ## Install the pinned test tools into .tools, and curl (apt-get) if missing.
	@command -v curl >/dev/null 2>&1 || { s=; [ "$$(id -u)" -eq 0 ] || s=sudo; $$s apt-get update && $$s env DEBIAN_FRONTEND=noninteractive apt-get install -y curl; }

.PHONY: fuzz
fuzz: ## Run each fuzz target on FUZZTIME inputs (default 100000x; a count, since a duration can end in a spurious "context deadline exceeded" with Go 1.26).
	$(GO) test -run='^$$' -fuzz='^FuzzCheck$$' -fuzztime=$(FUZZTIME) ./internal/apikey
	$(GO) test -run='^$$' -fuzz='^FuzzCheck$$' -fuzztime=$(FUZZTIME) ./internal/exactjson
	$(GO) test -run='^$$' -fuzz='^FuzzAgainstReference$$' -fuzztime=$(FUZZTIME) ./internal/exactjson
	$(GO) test -run='^$$' -fuzz='^FuzzExtract$$' -fuzztime=$(FUZZTIME) ./authz
	$(GO) test -run='^$$' -fuzz='^FuzzReadings$$' -fuzztime=$(FUZZTIME) ./internal/reqpath
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./authz
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./internal/keyfilter
	$(GO) test -run='^$$' -fuzz='^FuzzAddNanos$$' -fuzztime=$(FUZZTIME) ./internal/money
	$(GO) test -run='^$$' -fuzz='^FuzzParseNanos$$' -fuzztime=$(FUZZTIME) ./internal/money
	$(GO) test -run='^$$' -fuzz='^FuzzMatch$$' -fuzztime=$(FUZZTIME) ./internal/glob
	$(GO) test -run='^$$' -fuzz='^FuzzParseRequest$$' -fuzztime=$(FUZZTIME) ./internal/openai
	$(GO) test -run='^$$' -fuzz='^FuzzStream$$' -fuzztime=$(FUZZTIME) ./internal/openai
	$(GO) test -run='^$$' -fuzz='^FuzzReport$$' -fuzztime=$(FUZZTIME) ./internal/leaks

.PHONY: bench
bench: build ## Run every benchmark and print the tables (about 10 minutes).
	$(GO) build -o bin/noop-authz ./bench/noop
	$(GO) build -o bin/floor-authz ./bench/floor
	cd bench/opa && $(GO) build -o ../../bin/opa-authz .
	@echo "== in-process decisions (targets: cache-hit allow <= 1500 ns/op and <= 4 allocs/op; an allow reading a 4 KB chat body <= 5 us and <= 6 allocs)"
	$(GO) test -tags $(TAGS) -run='^$$' -bench='Check|Decode|Get|Apply|Hash' -benchmem -count=1 ./authz ./cache ./internal/apikey
	@echo "== memory with 1,000,000 keys cached (target: <= 400 B/key)"
	$(GO) test -tags $(TAGS) -run='^$$' -bench='Memory1M' -benchtime=1x -count=1 ./authz
	@echo "== revocation propagation, KV write to enforcement on 2 sidecars, 1,000 revocations (target: p99 < 20 ms)"
	$(GO) test -tags $(TAGS) -run='^$$' -bench=Propagation -benchtime=1x -count=1 ./internal/serve
	@echo "== fleet-wide limits, the full matrix at twice the demand (fails if a window is over its bound, or, without a fault, under it by more than max(2%,2))"
	$(GO) test -tags $(TAGS) -run='^$$' -bench=FleetLimits -benchtime=1x -count=1 ./internal/ratelimit
	@echo "== a lease as the budget entry's compare-and-set, and as a NATS counter stream's fetch-and-add, alone and with 3 writers on one budget"
	$(GO) test -tags $(TAGS) -run='^$$' -bench=LeaseStore -benchtime=3000x -count=1 ./internal/ratelimit
	@echo "== sparse keys: 50,000 keys each checked once a minute (targets: <= 1 limits write and no limits read per check, p99 <= 2 ms)"
	$(GO) test -tags $(TAGS) -run='^$$' -bench=SparseKeys -benchtime=1x -count=1 -timeout=20m ./internal/serve
	@echo "== NATS traffic per keygate, 2 keygates, 10,000 keys in use, 20,000 checks/s (bounded by keys in use, not by checks)"
	$(GO) test -tags $(TAGS) -run='^$$' -bench=FleetTraffic -benchtime=1x -count=1 ./internal/serve
	@echo "== key filter, 1,000,000 keys: flood lookups (<= 1%), valid p99 ratio (<= 1.5), bytes/key (<= 2), start-up (<= 1 s), create-to-allow p99 (<= 200 ms, the barrier's timeout)"
	$(GO) test -tags $(TAGS) -run='^$$' -bench=KeyFilter -benchtime=1x -count=1 -timeout=20m ./internal/serve
	@echo "== Check over gRPC on loopback: keygate (embedded NATS) and a sidecar keygate (on its NATS) beside a do-nothing ext_authz server"
	$(GO) run ./bench/loadgen -keygate bin/keygate -noop bin/noop-authz -opa bin/opa-authz
	@echo "== metering: 4 KB chat bodies over gRPC against the same checks without bodies (target: >= 0.8 for keys with a model list), and in-process: a response chunk, a settlement"
	$(GO) run ./bench/loadgen -keygate bin/keygate -bodies -floor bin/floor-authz
	$(GO) test -tags $(TAGS) -run='^$$' -bench='Chunk|Settlement' -benchmem -count=1 ./internal/observe
	@echo "== admin API: list 100,000 keys page by page (target: under 10 s a listing)"
	$(GO) test -tags $(TAGS) -run='^$$' -bench=ListKeys100k -benchtime=1x -count=1 ./internal/adminapi
	@echo "== the check path against the floor (an ext_authz server that never decodes and answers a pre-encoded OK): embedded keygate, 1,000 keys, c=64, 4 connections (targets: throughput >= 0.92x, p99 <= 1.2x)"
	$(GO) run ./bench/loadgen -keygate bin/keygate -floor bin/floor-authz

.PHONY: k8s-test
k8s-test: ## helm lint, helm template vs golden files, kubeconform -strict (offline; pinned tools in .tools).
	./k8s/test.sh

.PHONY: k8s-golden
k8s-golden: ## Regenerate k8s/testdata/*.golden.yaml after a chart change.
	UPDATE=1 ./k8s/test.sh

.PHONY: image
image: build ## Build the image without Docker into bin/keygate-image.tar (docker load reads it); PUSH=1 pushes IMAGE.
	$(GO) run ./k8s/internal/imagebuild -binary bin/keygate -version $(VERSION) -image $(IMAGE) -out bin/keygate-image.tar $(if $(PUSH),-push)

.PHONY: docker-image
docker-image: ## Build the same image with Docker from the Dockerfile.
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

.PHONY: lint
lint: $(STATICCHECK) ## go vet, gofmt and staticcheck (the module and test/e2e's).
	$(GO) vet -tags $(TAGS) ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(STATICCHECK) -tags $(TAGS) ./...
	cd test/e2e && $(GO) vet ./... && $(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(GRPCURL):
	GOBIN=$(TOOLS) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

.PHONY: tidy
tidy: ## go mod tidy (the module, bench/opa's and test/e2e's).
	$(GO) mod tidy
	cd bench/opa && $(GO) mod tidy
	cd test/e2e && $(GO) mod tidy

.PHONY: clean
clean: ## Remove build output and the local data directory.
	rm -rf bin keygate-data
