# Sluice: `make run` brings up the local stack, `make test` runs the suite.
SHELL := /bin/bash
GO ?= go
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
SIM := bin/vllm-sim
# The pinned promtool (tools/go.mod) checks prometheus.yml: Debian's build
# lacks Kubernetes service discovery. Debian's promtool and amtool do the rest.
PROMTOOL := bin/promtool
DEB_PROMTOOL ?= /usr/bin/promtool
AMTOOL ?= /usr/bin/amtool
TESTENV := scripts/testenv.sh
# The tests build as the binaries the tests build do (the gateway's functions
# and the Lambda bootstrap: CGO_ENABLED=0 -trimpath), so each package compiles
# once per cache.
TEST_CGO ?= 0
# bin/sluice (`make run`) builds the same way, so the simulator's build after
# it reuses what they share (the standard library's net and everything above
# it, go-redis, gRPC, OpenTelemetry) instead of compiling it again with cgo.
# Where an NVIDIA driver is loaded it keeps cgo, for the worker's NVML GPU
# telemetry (gpuworker/telemetry/nvml.go, which `make vet` always compiles).
SLUICE_CGO ?= $(if $(wildcard /proc/driver/nvidia/version),1,0)
# -s -w: test binaries without DWARF (a smaller, faster link for each of
# the ~50 test binaries; stack traces keep their file:line). openai-go, the
# tests' client SDK, compiles without optimisation (half the time of its
# one-minute main package), as the tools module builds it for the simulator,
# so a fresh machine compiles it once.
# -dwarf=false: every package compiles without DWARF, which -w would drop
# from the binaries anyway (generating it was a fifth of the compiler's
# work on the suite's packages from an empty cache: 363 against 452
# CPU-seconds; nothing on packages built with -N -l). Every build make
# test starts uses the same NODWARF (the standard library's first build,
# the tools', deploy/validate's, and the ones the tests make:
# shrinkwrap.BuildFlags), so each package still compiles once.
# -vet=off: the suite's go test does not vet (go vet computes its facts for
# every dependency: 67 of a fresh run's CPU-seconds); `make vet` runs the
# whole go vet, of both modules, and .ci/run runs it after make test.
NODWARF := -gcflags=all=-dwarf=false
TEST_BUILD_FLAGS := -trimpath $(NODWARF) -gcflags=github.com/openai/openai-go/v3/...=-N\ -l
TEST_FLAGS ?= -count=1 -p 4 -parallel 4 -timeout 15m -vet=off -ldflags=-s\ -w
# The go commands that compile run with GOMAXPROCS=1 and an explicit -p:
# as many packages compile at once as before (one per CPU), each compiler
# single-threaded. Two compilers each running two threads (the backend's
# and the GC's) on 2 CPUs used 5-15% more CPU for the same packages
# (bin/sluice from an empty cache: 278 against 259 CPU-s; std: 87 against
# 82), most of it system time: two threads grow a compiler's heap further,
# and every new page is a fault. GOGC=200: a compiler with one thread
# (-c=1) skips its large starting heap and collects from 4 MB on; half as
# many collections cost less than the memory (the standard library from
# an empty cache, median of three alternating: 73 against 82 CPU-s; a
# test binary's link with its go test -c: 4.9 against 6.1). The test
# binaries get the caller's GOMAXPROCS and GOGC back (scripts/testexec.sh:
# SLUICE_TEST_GOMAXPROCS, SLUICE_TEST_GOGC).
NPROC := $(shell nproc 2>/dev/null || echo 2)
BUILD_ENV := GOMAXPROCS=1 GOGC=200
# The Redis-touching packages (scripts/testenv.sh redis-packages) run twice
# at once, the second time on this checkout's local 3-master Redis Cluster
# (scripts/testenv.sh cluster-start): scripts/testexec.sh, go test's -exec,
# runs their test binaries so, and one go test builds and links each package
# once for both runs.
RIE := bin/aws-lambda-rie
STRIPEMOCK := bin/stripe-mock
OIDCP := bin/oidc-provider
# The Go tools the tests run, OUT=PACKAGE, all from the one tools module
# (tools/go.mod): one go build compiles what they share once (the simulator
# and promtool both pull in Kubernetes' client-go). Built once per version,
# cached in ~/.cache/sluice/tools (scripts/testenv.sh tools).
TOOLS := $(SIM)=github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim \
	$(PROMTOOL)=github.com/prometheus/prometheus/cmd/promtool \
	$(RIE)=github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie \
	$(STRIPEMOCK)=github.com/stripe/stripe-mock \
	$(OIDCP)=github.com/zitadel/oidc/v3/example/server
# promtool with only the service discovery prometheus.yml uses (Kubernetes).
export TOOL_TAGS := remove_all_sd,enable_kubernetes_sd

.PHONY: testenv test-deps tools doctor sluice-bin stripe-mock run test test-short bench bench-deps drill sim rie lambda vet fuzz build clean promtool check-rules console-deps sdk-deps screenshots

## run: the whole platform on 127.0.0.1:8080 (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set)
## (Ctrl-C stops it and exits 0; `sluice doctor` says what is missing when it fails)
## (on a fresh clone building the CLI and then the simulator is most of the wait; the
## simulator's modules download beside the CLI's build)
## (a development build, as `cargo run` makes: bin/sluice and the simulator compile
## without optimisation, 40% less compiling on a fresh clone; RUN_OPT=1 builds them
## optimised, as make test, make bench and the images do)
RUN_GCFLAGS := $(if $(RUN_OPT),all=-dwarf=false,all=-N -l)
run:
	@export SLUICE_TOOLS_GCFLAGS='$(RUN_GCFLAGS)'; \
	$(TESTENV) prefetch $(filter $(SIM)=%,$(TOOLS)) >/dev/null 2>&1 & \
	$(MAKE) --no-print-directory sluice-bin sim SLUICE_GCFLAGS='$(RUN_GCFLAGS)'
	@trap 'exit 0' INT TERM; bin/sluice dev

# sluice-bin: the CLI as bin/sluice (go build is incremental: seconds when nothing changed);
# SLUICE_GCFLAGS are its -gcflags (make run's development build: all=-N -l).
# One build after the other: side by side, each compiled what they share
# (the standard library, go-redis, gRPC, OpenTelemetry) for itself.
sluice-bin:
	@mkdir -p bin && echo "building bin/sluice$(if $(SLUICE_GCFLAGS), (-gcflags '$(SLUICE_GCFLAGS)'))" && \
	CGO_ENABLED=$(SLUICE_CGO) $(BUILD_ENV) $(GO) build -p $(NPROC) -trimpath -gcflags='$(SLUICE_GCFLAGS)' -o bin/sluice ./cmd/sluice

## doctor: what the local stack and the tests need, and the command that fixes what is missing
doctor:
	$(GO) run ./cmd/sluice doctor

## testenv: install missing Debian packages and start PostgreSQL and Redis (scripts/testenv.sh;
## not root: it prints the one command to run)
testenv:
	@$(TESTENV)

## test-deps: the tools the tests run, built once per version (cached in ~/.cache/sluice/tools), and the npm packages
test-deps: tools console-deps sdk-deps

## tools: every Go tool of tools/go.mod the tests run, in one go build
tools:
	@$(TESTENV) tools $(TOOLS)

## test: the whole suite against real PostgreSQL, Redis and the simulator, the alert rules
## (and the Lambda adapter under aws-lambda-rie), then the manifests in
## deploy/validate's own module; the Redis-touching packages again on a local
## 3-master Redis Cluster (this checkout's own ports; `scripts/testenv.sh cluster-stop` stops it)
## (scripts/testenv.sh first: installs and starts what is missing, as .ci/run does; the Go tools build meanwhile)
## (and go list -export compiles the standard library while the tools' modules download (it needs
## none), the tools' build waiting for it, then, niced, the suite's packages: on a fresh machine
## it fills the CPU the downloads and the Debian packages leave idle, and go test then finds them
## compiled; the waiting and nice keep the two builds from compiling the packages they share at
## the same moment, twice)
test:
	@mkdir -p bin; exec 9>bin/.std.lock; flock 9; \
	(export CGO_ENABLED=$(TEST_CGO) $(BUILD_ENV); exec $(GO) list -export -p $(NPROC) -trimpath $(NODWARF) std >/dev/null 2>&1) & exec 9>&-; \
	(flock -s bin/.std.lock true; export CGO_ENABLED=$(TEST_CGO) $(BUILD_ENV); \
	  exec nice -n 19 $(GO) list -e -test -export -deps -p $(NPROC) $(TEST_BUILD_FLAGS) ./... >/dev/null 2>&1) & pre=$$!; \
	SLUICE_TOOLS_AFTER=bin/.std.lock $(TESTENV) tools $(TOOLS) & tools=$$!; \
	fail() { kill $$pre 2>/dev/null; wait; exit 1; }; \
	$(TESTENV) || fail; wait $$tools || fail; \
	$(MAKE) --no-print-directory -j2 console-deps sdk-deps && $(MAKE) --no-print-directory check-rules || fail; \
	line=$$($(TESTENV) cluster-start) || fail; export "$$line"; wait $$pre; \
	export SLUICE_SIM=$(CURDIR)/$(SIM) SLUICE_RIE=$(CURDIR)/$(RIE) SLUICE_STRIPE_MOCK=$(CURDIR)/$(STRIPEMOCK) SLUICE_OIDC_PROVIDER=$(CURDIR)/$(OIDCP) CGO_ENABLED=$(TEST_CGO); \
	export SLUICE_ROOT=$(CURDIR) SLUICE_CLUSTER_SEED=$${TEST_REDIS_CLUSTER_URL%%\?*} SLUICE_CLUSTER_LOG=$(CURDIR)/bin/cluster.log \
	  SLUICE_CLUSTER_PACKAGES="$$($(TESTENV) redis-packages | tr '\n' ' ')"; : >bin/cluster.log; \
	$(TESTENV) pg-vacuum >/dev/null 2>&1 & vacuum=$$!; \
	(cd deploy/validate && $(BUILD_ENV) $(GO) test -p $(NPROC) -trimpath -count=1 -vet=off $(NODWARF) -gcflags='k8s.io/...=-N -l' ./... >$(CURDIR)/bin/validate.log 2>&1; echo $$? >$(CURDIR)/bin/validate.rc) & \
	SLUICE_TEST_GOMAXPROCS=$${GOMAXPROCS-} SLUICE_TEST_GOGC=$${GOGC-} $(BUILD_ENV) $(GO) test $(TEST_BUILD_FLAGS) $(TEST_FLAGS) -exec $(CURDIR)/scripts/testexec.sh ./...; rc=$$?; kill $$vacuum; wait; \
	echo "deploy/validate:"; cat bin/validate.log; \
	echo "the Redis-touching packages again, beside their first run, on the Redis Cluster (TEST_REDIS_URL=$$SLUICE_CLUSTER_SEED):"; \
	sort -k2 bin/cluster.log; \
	n=$$(echo $$SLUICE_CLUSTER_PACKAGES | wc -w); ran=$$(grep -c . bin/cluster.log); \
	[ "$$ran" = "$$n" ] || { echo "only $$ran of the $$n Redis-touching packages ran on the Redis Cluster"; rc=1; }; \
	[ $$rc = 0 ] && [ "$$(cat bin/validate.rc)" = 0 ]

## console-deps: playwright-core for the console's browser tests (npm ci from the lock file,
## only when node_modules is older than it); Chromium itself is Debian's (scripts/testenv.sh installs it)
console-deps: console/e2e/node_modules/.package-lock.json
console/e2e/node_modules/.package-lock.json: console/e2e/package-lock.json console/e2e/package.json
	cd console/e2e && npm ci --no-audit --no-fund
	@touch $@

## sdk-deps: the npm openai package for internal/sdktest's Node SDK tests (npm ci from the lock file)
sdk-deps: internal/sdktest/node/node_modules/.package-lock.json
internal/sdktest/node/node_modules/.package-lock.json: internal/sdktest/node/package-lock.json internal/sdktest/node/package.json
	cd internal/sdktest/node && npm ci --no-audit --no-fund
	@touch $@

## screenshots: PNGs of the console's main pages (desktop and phone) into docs/console
screenshots: sim console-deps
	SLUICE_SIM=$(CURDIR)/$(SIM) SLUICE_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run TestConsoleInBrowser -v ./console/

## check-rules: the Prometheus alert rules and example configurations parse, and the rules' unit tests pass
check-rules: promtool
	$(DEB_PROMTOOL) check rules deploy/prometheus/sluice-rules.yml
	$(PROMTOOL) check config deploy/prometheus/prometheus.yml
	$(DEB_PROMTOOL) test rules deploy/prometheus/sluice-rules.test.yml
	$(AMTOOL) check-config deploy/prometheus/alertmanager.yml

## bench-deps: the pinned Portkey gateway, the overhead bench's peer (npm ci from the lock file)
bench-deps: cmd/sluice-bench/portkey/node_modules/.package-lock.json
cmd/sluice-bench/portkey/node_modules/.package-lock.json: cmd/sluice-bench/portkey/package-lock.json cmd/sluice-bench/portkey/package.json
	cd cmd/sluice-bench/portkey && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

## bench: added latency and throughput against the simulator called directly and beside the Portkey gateway, at 1, 8 and 32 clients; Redis, PostgreSQL and CPU per request; saturation of two engines; fairness under a flood; prefix-cache placement over two workers; the usage rollup of 10M rows
bench: sim bench-deps
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -clients 1,8,32
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -mode cost -c 32
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -mode saturation -redis-db 13 -c 64 -n 480 -rounds 2 -max-tokens 48
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -mode fairness -redis-db 14 -max-tokens 16
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -mode batch -redis-db 12 -lines 10000 -n 300 -c 4 -max-tokens 8 -max-num-seqs 16
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -mode tiers -redis-db 11 -c 24 -n 1200 -max-tokens 16
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -mode prefix -redis-db 10 -c 16 -max-tokens 4 -duration 15s
	$(GO) run ./cmd/sluice-bench rollup -rows 10000000

## drill: fault drills, 500 jobs each: kill -9 a worker, an engine dies and comes back, Redis (appendonly) restarts, the engine fails 10%; then the money drill (kill -9 a worker, a submit instance and Redis); then the failover drill (kill -9 a Redis Cluster master, WAIT on); then the batch drill (kill -9 the batch's worker and a submit instance mid-batch)
drill: sim
	for m in kill:10 endpoint:11 redis:10 failures:12; do \
	  SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-drill -mode $${m%:*} -redis-db $${m#*:} -jobs 500 -max-tokens 10 -kill-after 100 || exit 1; \
	done
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-drill money
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-drill failover -wait-replicas 1
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-drill batch -lines 300 -kill-at 50

## fuzz: one minute per fuzz target
fuzz:
	$(GO) test ./shared/apikey -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./shared/openai -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s
	$(GO) test ./shared/prefixcache -run '^$$' -fuzz FuzzRender -fuzztime 60s
	$(GO) test ./shared/openai -run '^$$' -fuzz '^FuzzParseResponses$$' -fuzztime 60s
	$(GO) test ./shared/openai -run '^$$' -fuzz '^FuzzEmbeddings$$' -fuzztime 60s
	$(GO) test ./shared/openai -run '^$$' -fuzz FuzzDecode -fuzztime 60s
	$(GO) test ./internal/enginetest -run '^$$' -fuzz FuzzDecodePython -fuzztime 60s
	$(GO) test ./shared/rbac -run '^$$' -fuzz FuzzAllowed -fuzztime 60s
	$(GO) test ./shared/httpserve -run '^$$' -fuzz FuzzForwardedClient -fuzztime 60s
	$(GO) test ./shared/authn -run '^$$' -fuzz '^FuzzToken$$' -fuzztime 60s
	$(GO) test ./shared/authn -run '^$$' -fuzz '^FuzzAuthorize$$' -fuzztime 60s
	$(GO) test ./shared/config -run '^$$' -fuzz FuzzParseMicros -fuzztime 60s
	$(GO) test ./internal/artifact -run '^$$' -fuzz FuzzParseManifest -fuzztime 60s
	$(GO) test ./gpuworker/engine -run '^$$' -fuzz FuzzParseMetrics -fuzztime 60s
	$(GO) test ./gpuworker/filter -run '^$$' -fuzz '^FuzzStream$$' -fuzztime 60s
	$(GO) test ./gpuworker/filter -run '^$$' -fuzz FuzzResponsesStream -fuzztime 60s
	$(GO) test ./functions/auth -run '^$$' -fuzz FuzzLimitsPatch -fuzztime 60s
	$(GO) test ./functions/billing-webhook -run '^$$' -fuzz FuzzParseCheckout -fuzztime 60s
	$(GO) test ./functions/billing-webhook -run '^$$' -fuzz FuzzVerifyEvent -fuzztime 60s
	$(GO) test ./functions/usage-rollup -run '^$$' -fuzz FuzzUsageQuery -fuzztime 60s

## vet: go vet of the repository and of deploy/validate's module (make test does not vet; .ci/run runs this after it)
vet:
	$(GO) vet ./...
	cd deploy/validate && $(GO) vet ./...

build:
	$(GO) build ./...

## sim: build llm-d-inference-sim (the stand-in for vLLM) from the tools module
sim:
	@$(TESTENV) tools $(filter $(SIM)=%,$(TOOLS))

## stripe-mock: Stripe's stateless API fake (from its OpenAPI spec), for the billing tests
stripe-mock:
	@$(TESTENV) tools $(filter $(STRIPEMOCK)=%,$(TOOLS))

## promtool: Prometheus's checker pinned in the tools module, for prometheus.yml's
## Kubernetes service discovery (built once, cached)
promtool:
	@$(TESTENV) tools $(filter $(PROMTOOL)=%,$(TOOLS))

## lambda: the Lambda adapter as deploy/lambda/dist/bootstrap (provided.al2023, arm64)
lambda:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags "-s -w" -o deploy/lambda/dist/bootstrap ./cmd/sluice-lambda

## rie: the AWS Lambda Runtime Interface Emulator, from the tools module
rie:
	@$(TESTENV) tools $(filter $(RIE)=%,$(TOOLS))

clean:
	rm -rf bin .sluice
