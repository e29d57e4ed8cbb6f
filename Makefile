# coredns-mcs: multi-cluster service discovery for Karmada (KEP-1645 DNS + MCS controller).
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED ?= 0

OUT ?= $(CURDIR)/_output
BIN ?= $(OUT)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO_LDFLAGS = -s -w -X github.com/coredns/coredns/coremain.GitCommit=$(VERSION) \
  -X github.com/coredns-mcs/coredns-mcs/internal/version.Version=$(VERSION)
# Integration tests share one local clusterset; they run one package at a time.
TEST_TIMEOUT ?= 40m

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Main

.PHONY: demo
demo: deps build ## From nothing: the local clusterset, the controller, coredns-mcs, the seed applied, DNS answering (the main job).
	hack/demo.sh

.PHONY: test
test: deps build ## Every test: unit, then e2e on a fresh local clusterset (what CI runs).
	hack/test.sh

##@ Development

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: test-controlplane
test-controlplane: deps ## The controller against real kube-apiservers (envtest; no Karmada process), ~2 min.
	hack/test-controlplane.sh

.PHONY: test-fleet
test-fleet: deps build ## Opt-in: five Push members on a clusterset of their own (port base 29000), brought down after (~5 min).
	go test -tags fleet -count=1 -timeout 20m -v ./test/fleet/

.PHONY: test-chaos
test-chaos: deps build ## Opt-in: the long failure runs on the local clusterset (keep policy on a Push member whose apiserver stops, ~4 min).
	go test -tags 'e2e chaos' -count=1 -timeout 20m -v -run 'TestMemberFailureKeep' ./test/e2e/

.PHONY: test-unit
test-unit: ## Run unit tests only (no clusterset needed).
	CGO_ENABLED=1 go test -race -count=1 $$(go list ./... | grep -v /test/)

.PHONY: bench
bench: deps build ## Benchmarks against stock CoreDNS and Karmada's built-in MCS (~30 min): _output/bench/results.md.
	hack/bench.sh full

.PHONY: bench-smoke
bench-smoke: deps build ## The benchmarks at tiny sizes (~6 min; CI runs it so the instrument does not rot).
	hack/bench.sh smoke

.PHONY: bench-plugin
bench-plugin: ## Run the DNS plugin hot-path benchmarks (go test -bench, -benchmem).
	go test -run '^$$' -bench . -benchmem ./plugin/multicluster/...

##@ Build

.PHONY: build
build: ## Build coredns-mcs and mcs-controller into _output/bin.
	@mkdir -p $(BIN)
	go build -trimpath -ldflags '$(GO_LDFLAGS)' -o $(BIN)/ ./cmd/...

IMAGE_REPO ?= coredns-mcs
IMAGE_TAG ?= $(VERSION)
# The image base: distroless (published) or scratch (offline; what make test builds and runs).
BASE ?= gcr.io/distroless/static-debian12:nonroot
IMAGE_ENGINE ?= $(shell for e in podman buildah docker; do command -v $$e >/dev/null && { echo $$e; break; }; done)

.PHONY: image
image: ## Build the coredns-mcs and mcs-controller images (Containerfile; podman, buildah or docker; BASE=scratch builds offline).
	@[ -n "$(IMAGE_ENGINE)" ] || { echo "make image: no podman, buildah or docker here (hack/install-packages.sh image installs podman)"; exit 1; }
	@mkdir -p $(OUT)/image
	CGO_ENABLED=0 go build -trimpath -ldflags '$(GO_LDFLAGS)' -o $(OUT)/image/ ./cmd/coredns-mcs ./cmd/mcs-controller ./cmd/mcs-agent
	setcap cap_net_bind_service=+ep $(OUT)/image/coredns-mcs
	for t in coredns-mcs mcs-controller; do \
	  if [ "$(IMAGE_ENGINE)" = buildah ]; then b="buildah bud"; else b="$(IMAGE_ENGINE) build"; fi; \
	  $$b -f Containerfile --target $$t --build-arg BASE=$(BASE) --build-arg VERSION=$(VERSION) -t $(IMAGE_REPO)/$$t:$(IMAGE_TAG) . || exit 1; \
	done
	@echo "images: $(IMAGE_REPO)/coredns-mcs:$(IMAGE_TAG) $(IMAGE_REPO)/mcs-controller:$(IMAGE_TAG) (base $(BASE))"

.PHONY: deps
deps: ## Build, once, the pinned real components (etcd, Kubernetes, Karmada, kwok) into ~/.cache/coredns-mcs.
	hack/build-deps.sh

##@ Local clusterset

.PHONY: up
up: deps ## Start the local clusterset (etcd, 3 kube-apiservers, Karmada, 2 members), idempotent.
	hack/clusterset.sh up

.PHONY: down
down: ## Stop every process the local clusterset started and remove its state.
	hack/clusterset.sh down

.PHONY: status
status: ## Show the clusterset's processes and Karmada clusters.
	hack/clusterset.sh status

.PHONY: clean
clean: down ## Stop the clusterset and remove _output.
	rm -rf $(OUT)
