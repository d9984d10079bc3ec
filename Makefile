# ccproxy — the README's commands, CI's and the long-running checks.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 30s

.PHONY: all build test unit promql lint fuzz fuzz-smoke bench soak image deps demo

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ccproxy ./cmd/ccproxy

deps:
	bash scripts/test-deps.sh

# The README's test command and CI's: lint, then every test with the race
# detector, then a short fuzz pass over every parser of untrusted bytes.
test: deps lint unit fuzz-smoke

# The image test runs the static binary built here instead of compiling its
# own (a CGO_ENABLED=0 -trimpath build shares no cache with the race build).
unit: build
	CCPROXY_IMAGE_TEST_BINARY=$(CURDIR)/bin/ccproxy $(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) promql

# tools/promql, the checker deploy/monitoring_test.go runs on deploy/monitoring
# (Prometheus's PromQL parser, in a module of its own): its own tests.
promql:
	$(GO) -C tools/promql vet ./...
	$(GO) -C tools/promql test -count=1 ./...

lint:
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null 2>&1 || [ -x "$$($(GO) env GOPATH)/bin/staticcheck" ]; then \
		PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck $(PKGS); \
	elif [ -n "$$CI" ]; then echo "staticcheck missing: run scripts/test-deps.sh"; exit 1; \
	else echo "staticcheck not installed (scripts/test-deps.sh installs it); skipped"; fi

# Every fuzz target for FUZZTIME each; results in docs/fuzz-results.md.
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

# A count, not a duration: go1.26's fuzz coordinator can report a bare
# "context deadline exceeded" when a -fuzztime duration ends (go.dev/issue/75804,
# fixed in go1.27); a count has no deadline to race.
fuzz-smoke:
	bash scripts/fuzz.sh 300x smoke

bench:
	bash bench/run.sh

# 10,000 concurrent relayed connections (CCPROXY_SOAK_* tune it) in one
# process, then through the ccproxy binary, then a minute's storm of failing
# handshakes against the binary with a healthy client alongside
# (CCPROXY_STORM_* tune it) → bench/soak/RESULTS.md
soak:
	CCPROXY_SOAK_RESULTS=$(CURDIR)/bench/soak/RESULTS.md $(GO) test -count=1 -timeout 40m -run '^(TestSoak|TestSoakBinary|TestStorm)$$' -tags soak -v ./bench/soak/

image:
	bash scripts/image.sh

demo:
	$(GO) run ./cmd/ccproxy demo
