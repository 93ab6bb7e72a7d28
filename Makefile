# Sluice: `make run` brings up the local stack, `make test` runs the suite.
SHELL := /bin/bash
GO ?= go
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
SIM := bin/vllm-sim
RIE := bin/aws-lambda-rie
OIDCP := tools/oidcprovider/bin/oidc-provider

.PHONY: run test test-short bench drill sim rie lambda vet fuzz build clean

## run: the whole platform on 127.0.0.1:8080 (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set)
run: sim
	$(GO) run ./cmd/sluice dev

## test: the whole suite against real PostgreSQL, Redis and the simulator
## (and the Lambda adapter under aws-lambda-rie), then the manifests in
## deploy/validate's own module
test: sim rie $(OIDCP)
	SLUICE_SIM=$(CURDIR)/$(SIM) SLUICE_RIE=$(CURDIR)/$(RIE) SLUICE_OIDC_PROVIDER=$(CURDIR)/$(OIDCP) $(GO) test -count=1 -timeout 15m ./...
	cd deploy/validate && $(GO) test -count=1 ./...

## bench: added latency and throughput of the platform against the simulator called directly
bench: sim
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-bench

## drill: fault drills (kill -9 a worker mid-run; the money drill: kill -9 a worker, a submit instance and Redis)
drill: sim
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-drill
	SLUICE_SIM=$(CURDIR)/$(SIM) $(GO) run ./cmd/sluice-drill money

## fuzz: one minute per fuzz target
fuzz:
	$(GO) test ./shared/apikey -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./shared/openai -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./shared/rbac -run '^$$' -fuzz FuzzAllowed -fuzztime 60s
	$(GO) test ./shared/authn -run '^$$' -fuzz '^FuzzToken$$' -fuzztime 60s
	$(GO) test ./shared/authn -run '^$$' -fuzz '^FuzzAuthorize$$' -fuzztime 60s
	$(GO) test ./shared/config -run '^$$' -fuzz FuzzParseMicros -fuzztime 60s
	$(GO) test ./internal/artifact -run '^$$' -fuzz FuzzParseManifest -fuzztime 60s

vet:
	$(GO) vet ./...

build:
	$(GO) build ./...

## sim: build llm-d-inference-sim (the stand-in for vLLM) from its own tools module
sim: $(SIM)
$(SIM): tools/vllmsim/go.mod
	@mkdir -p bin
	cd tools/vllmsim && CGO_ENABLED=0 $(GO) build -o ../../$(SIM) github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim

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
