# Sluice: `make run` brings up the local stack, `make test` runs the suite.
SHELL := /bin/bash
GO ?= go
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
SIM := bin/vllm-sim
PROMTOOL := bin/promtool
AMTOOL := bin/amtool
RIE := bin/aws-lambda-rie
STRIPEMOCK := bin/stripe-mock
OIDCP := tools/oidcprovider/bin/oidc-provider

.PHONY: stripe-mock run test test-short bench drill sim rie lambda vet fuzz build clean promtool check-rules console-deps screenshots

## run: the whole platform on 127.0.0.1:8080 (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set)
run: sim
	$(GO) run ./cmd/sluice dev

## test: the whole suite against real PostgreSQL, Redis and the simulator, the alert rules
## (and the Lambda adapter under aws-lambda-rie), then the manifests in
## deploy/validate's own module
test: sim rie $(OIDCP) $(STRIPEMOCK) check-rules console-deps
	SLUICE_SIM=$(CURDIR)/$(SIM) SLUICE_RIE=$(CURDIR)/$(RIE) SLUICE_STRIPE_MOCK=$(CURDIR)/$(STRIPEMOCK) SLUICE_OIDC_PROVIDER=$(CURDIR)/$(OIDCP) $(GO) test -count=1 -timeout 15m ./...
	cd deploy/validate && $(GO) test -count=1 ./...

## console-deps: playwright-core for the console's browser tests (npm ci from the lock file,
## only when node_modules is older than it); Chromium itself is Debian's (.ci/run installs it)
console-deps: console/e2e/node_modules/.package-lock.json
console/e2e/node_modules/.package-lock.json: console/e2e/package-lock.json console/e2e/package.json
	cd console/e2e && npm ci --no-audit --no-fund
	@touch $@

## screenshots: PNGs of the console's main pages (desktop and phone) into docs/console
screenshots: sim console-deps
	SLUICE_SIM=$(CURDIR)/$(SIM) SLUICE_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run TestConsoleInBrowser -v ./console/

## check-rules: the Prometheus alert rules and example configurations parse, and the rules' unit tests pass
check-rules: promtool $(AMTOOL)
	$(PROMTOOL) check rules deploy/prometheus/sluice-rules.yml
	$(PROMTOOL) check config deploy/prometheus/prometheus.yml
	$(PROMTOOL) test rules deploy/prometheus/sluice-rules.test.yml
	$(AMTOOL) check-config deploy/prometheus/alertmanager.yml

## bench: added latency and throughput against the simulator called directly; saturation of two engines; fairness under a flood; the usage rollup of 10M rows
bench: sim
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -mode saturation -redis-db 13 -c 64 -n 480 -rounds 2 -max-tokens 48
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench -mode fairness -redis-db 14 -max-tokens 16
	$(GO) run ./cmd/sluice-bench rollup -rows 10000000

## drill: fault drills, 500 jobs each: kill -9 a worker, an engine dies and comes back, Redis (appendonly) restarts, the engine fails 10%; then the money drill (kill -9 a worker, a submit instance and Redis)
drill: sim
	for m in kill:10 endpoint:11 redis:10 failures:12; do \
	  SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-drill -mode $${m%:*} -redis-db $${m#*:} -jobs 500 -max-tokens 10 -kill-after 100 || exit 1; \
	done
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-drill money

## fuzz: one minute per fuzz target
fuzz:
	$(GO) test ./shared/apikey -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./shared/openai -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./shared/openai -run '^$$' -fuzz FuzzDecode -fuzztime 60s
	$(GO) test ./internal/enginetest -run '^$$' -fuzz FuzzDecodePython -fuzztime 60s
	$(GO) test ./shared/rbac -run '^$$' -fuzz FuzzAllowed -fuzztime 60s
	$(GO) test ./shared/httpserve -run '^$$' -fuzz FuzzForwardedClient -fuzztime 60s
	$(GO) test ./shared/authn -run '^$$' -fuzz '^FuzzToken$$' -fuzztime 60s
	$(GO) test ./shared/authn -run '^$$' -fuzz '^FuzzAuthorize$$' -fuzztime 60s
	$(GO) test ./shared/config -run '^$$' -fuzz FuzzParseMicros -fuzztime 60s
	$(GO) test ./internal/artifact -run '^$$' -fuzz FuzzParseManifest -fuzztime 60s
	$(GO) test ./gpuworker/engine -run '^$$' -fuzz FuzzParseMetrics -fuzztime 60s
	$(GO) test ./gpuworker/filter -run '^$$' -fuzz FuzzStream -fuzztime 60s
	$(GO) test ./functions/auth -run '^$$' -fuzz FuzzLimitsPatch -fuzztime 60s
	$(GO) test ./functions/billing-webhook -run '^$$' -fuzz FuzzParseCheckout -fuzztime 60s
	$(GO) test ./functions/billing-webhook -run '^$$' -fuzz FuzzVerifyEvent -fuzztime 60s
	$(GO) test ./functions/usage-rollup -run '^$$' -fuzz FuzzUsageQuery -fuzztime 60s

vet:
	$(GO) vet ./...

build:
	$(GO) build ./...

## sim: build llm-d-inference-sim (the stand-in for vLLM) from its own tools module
sim: $(SIM)
$(SIM): tools/vllmsim/go.mod
	@mkdir -p bin
	cd tools/vllmsim && CGO_ENABLED=0 $(GO) build -o ../../$(SIM) github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim

## stripe-mock: Stripe's stateless API fake (from its OpenAPI spec), for the billing tests
stripe-mock: $(STRIPEMOCK)
$(STRIPEMOCK):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin $(GO) install github.com/stripe/stripe-mock@v0.203.0

## promtool (and amtool): Prometheus's and AlertManager's checkers, from their own tools module
promtool: $(PROMTOOL)
$(PROMTOOL): tools/promtool/go.mod
	@mkdir -p bin
	cd tools/promtool && CGO_ENABLED=0 $(GO) build -o ../../$(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool
$(AMTOOL): tools/promtool/go.mod
	@mkdir -p bin
	cd tools/promtool && CGO_ENABLED=0 $(GO) build -o ../../$(AMTOOL) github.com/prometheus/alertmanager/cmd/amtool

## lambda: the Lambda adapter as deploy/lambda/dist/bootstrap (provided.al2023, arm64)
lambda:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags "-s -w" -o deploy/lambda/dist/bootstrap ./cmd/sluice-lambda

## rie: the AWS Lambda Runtime Interface Emulator, from its own tools module
rie: $(RIE)
$(RIE): tools/lambdarie/go.mod
	@mkdir -p bin
	cd tools/lambdarie && CGO_ENABLED=0 $(GO) build -o ../../$(RIE) github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie

## the zitadel/oidc example OpenID provider, from its own tools module: the external issuer in the OIDC tests
$(OIDCP): tools/oidcprovider/go.mod
	cd tools/oidcprovider && CGO_ENABLED=0 $(GO) build -o bin/oidc-provider github.com/zitadel/oidc/v3/example/server

clean:
	rm -rf bin .sluice
