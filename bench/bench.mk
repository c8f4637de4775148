## ---- benchmarks (not part of make test) -------------------------------------------------
# make bench           everything below (~35 min on 2 cores), then BENCHMARKS.md and
#                      bench/envoy-ratios.png
# make bench-envoy     Envoy: no filter vs jwt_authn vs ours, cache off/on, RS256/ES256/EdDSA,
#                      one token and token reuse, --concurrency 1 and 2, then the cache hit
#                      beside the proxy-wasm floor (the floor pass; bench/envoy.mjs)
# make bench-workers   our Worker vs a jose Worker in workerd (bench/workers.mjs)
# make bench-micro     core microbenchmarks: criterion natively, and one timing loop natively
#                      and as wasm32-wasip1 under node --no-liftoff (crates/bench, bench/micro.mjs)
# make bench-size      the shipped .wasm files, raw and gzip (bench/size.mjs)
# make bench-report    BENCHMARKS.md and the plot from the results in .build/bench/
# make bench-profile   (not in make bench; needs perf; ~4 min) where the filter's time goes: adds a
#                      section to BENCHMARKS.md (bench/profile.mjs)
# make bench-profile-workers  (not in make bench; needs perf; ~2 min) where the Worker's time
#                      goes: workerd's CPU per request by group (the core's Wasm, JavaScript, V8,
#                      workerd, crypto, kernel) for the floor, ours and the jose Worker, and the
#                      core's hottest Wasm functions (bench/profile-workers.mjs); prints only
# make bench-ab-workers  (not in make bench; ~3 min after a build) this tree's Worker library
#                      against the one of BENCH_AB_BASE (a commit; default HEAD), side by side
#                      in one workerd, round by round (bench/ab-workers.mjs); prints only
# make bench-filter-host  (not in make bench; ~1 min) the filter's Wasm time of a cache hit
#                      beside the floor filter's, in Node without Envoy (bench/filter-host.mjs):
#                      an A/B of a change in seconds; prints, writes nothing
# Each bench-* target rewrites BENCHMARKS.md from whatever results .build/bench/ holds.
# Knobs (environment or make variables): BENCH_SECONDS (2 per cell), BENCH_ROUNDS (5),
# BENCH_WORKER_SECONDS / BENCH_WORKER_ROUNDS (the Workers run: 1 s, 20 rounds, unless
# BENCH_SECONDS / BENCH_ROUNDS are set), BENCH_CONCURRENCY (1,2), BENCH_ALGS
# (RS256,ES256,EdDSA), BENCH_WORKER_ALGS (RS256),
# BENCH_TOKENS (1000), BENCH_LATENCY_SECONDS (1), BENCH_FLOOR_ROUNDS (32; 0 skips the floor
# pass), BENCH_FLOOR_SECONDS (1), BENCH_MICRO_MS (500),
# BENCH_CRITERION_SECONDS (1); e.g. make bench BENCH_SECONDS=10 BENCH_ROUNDS=9. CPU placement
# (taskset) is described in bench/envoy.mjs and BENCHMARKS.md.
BENCH_OUT          := $(BUILD)/bench
MATPLOTLIB_VERSION := 3.10.8
BENCH_WASM         := $(ROOT)/target/wasm32-wasip1/release/mcp-edge-auth-bench.wasm
# ring's C code for wasm32-wasip1 (the Wasm micro runs): clang and an LLVM archiver.
BENCH_AR            = $(or $(shell command -v llvm-ar 2>/dev/null),$(lastword $(sort $(wildcard /usr/bin/llvm-ar-*))),llvm-ar)

export BENCH_SECONDS BENCH_ROUNDS BENCH_WORKER_SECONDS BENCH_WORKER_ROUNDS BENCH_CONCURRENCY \
       BENCH_ALGS BENCH_WORKER_ALGS BENCH_TOKENS \
       BENCH_PROFILE_SECONDS BENCH_PROFILE_ROUNDS BENCH_PROFILE_TOP BENCH_AB_ROUNDS BENCH_AB_SECONDS \
       BENCH_LATENCY_SECONDS BENCH_FLOOR_ROUNDS BENCH_FLOOR_SECONDS BENCH_MICRO_MS BENCH_CRITERION_SECONDS

.PHONY: bench bench-tools bench-envoy bench-workers bench-micro bench-size bench-report \
        bench-build-micro bench-build-floor bench-filter-host bench-profile-workers bench-ab-workers

# wrk (soak-tools), Envoy (setup-python), workerd and jose (setup-node), clang and llvm-ar
# (Debian), matplotlib (pinned, into the project venv).
bench-tools: soak-tools setup-python setup-node setup-rust envoy-cc $(VENV)/.bench-installed
	@command -v llvm-ar >/dev/null || ls /usr/bin/llvm-ar-* >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq llvm >/dev/null; }
$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check matplotlib==$(MATPLOTLIB_VERSION)
	@touch $@

bench-build-micro: bench-tools
	$(CARGO) build -p mcp-edge-auth-bench --release
	CC_wasm32_wasip1=clang AR_wasm32_wasip1=$(BENCH_AR) \
	  $(CARGO) build -p mcp-edge-auth-bench --bin mcp-edge-auth-bench --target wasm32-wasip1 --release

# The proxy-wasm floor filter (crates/bench/examples/floor_filter.rs) for the Envoy runs,
# without the SDK exports the shipped filter drops (envoy/envoy.mk): the same callbacks
# reach both. Nothing else is optimised away: cargo's release build at opt-level 3.
BENCH_FLOOR_WASM := $(BENCH_OUT)/floor_filter.wasm
bench-build-floor: bench-tools
	CC_wasm32_wasip1=clang AR_wasm32_wasip1=$(BENCH_AR) \
	  $(CARGO) build -p mcp-edge-auth-bench --example floor_filter --target wasm32-wasip1 --release
	@mkdir -p $(BENCH_OUT)
	$(NODE_BIN)/wasm-opt $(ENVOY_WASM_DROP_EXPORTS) --remove-unused-module-elements $(ENVOY_WASM_OPT_FEATURES) \
	  $(ROOT)/target/wasm32-wasip1/release/examples/floor_filter.wasm -o $(BENCH_FLOOR_WASM)

# The filter's own Wasm time of a cache hit beside the floor filter's, in Node without Envoy
# (bench/filter-host.mjs): seconds per A/B of a change. Prints, writes nothing.
bench-filter-host: bench-tools envoy-wasm bench-build-floor
	node --no-liftoff --no-warnings bench/filter-host.mjs $(BENCH_FLOOR_WASM) headers
	node --no-liftoff --no-warnings bench/filter-host.mjs $(ENVOY_WASM)

define BENCH_REPORT
	node bench/report.mjs
	@if [ -f $(BENCH_OUT)/ratios.json ] && grep -q '"alg"' $(BENCH_OUT)/ratios.json; then \
	  $(VENV)/bin/python bench/plot.py $(BENCH_OUT)/ratios.json bench/envoy-ratios.png; fi
	@echo "BENCHMARKS.md written"
endef

bench-report: bench-tools
	$(BENCH_REPORT)

bench-size: bench-tools envoy-wasm worker-build
	node bench/size.mjs
	$(BENCH_REPORT)

bench-micro: bench-build-micro
	node bench/micro.mjs
	$(BENCH_REPORT)

bench-workers: bench-tools worker-build
	node bench/workers.mjs
	$(BENCH_REPORT)

bench-envoy: bench-tools envoy-wasm envoy-module bench-build-floor
	node bench/envoy.mjs
	$(BENCH_REPORT)

# Everything, from fresh results: builds first, then the measurements (shortest first).
bench: bench-tools envoy-wasm envoy-module worker-build bench-build-micro bench-build-floor
	@rm -f $(BENCH_OUT)/*.json
	node bench/size.mjs
	node bench/micro.mjs
	node bench/workers.mjs
	node bench/envoy.mjs
	$(BENCH_REPORT)

# Where the time goes (not part of make bench; needs perf): Envoy's CPU split between its own
# code, the filter's Wasm and the kernel, next to a do-nothing Wasm filter; and the core's
# hottest functions in Wasm. Adds a section to BENCHMARKS.md. BENCH_PROFILE_SECONDS (3),
# BENCH_PROFILE_ROUNDS (3).
.PHONY: bench-profile
bench-profile: bench-build-micro bench-build-floor envoy-wasm envoy-module
	@command -v perf >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }
	node bench/profile.mjs
	$(BENCH_REPORT)

# The Worker's split (bench/profile-workers.mjs). The core's module is the shipped one's
# wasm-bindgen output optimised the same way but keeping its name section (-g), so that perf
# names the core's functions; the shipped module strips it. BENCH_PROFILE_SECONDS (3),
# BENCH_PROFILE_ROUNDS (3), BENCH_PROFILE_TOP (8 functions named).
BENCH_NAMED_WORKER_WASM := $(BENCH_OUT)/mcp_edge_auth_worker_named.wasm
bench-profile-workers: bench-tools worker-build
	@command -v perf >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }
	@mkdir -p $(BENCH_OUT)
	$(WASM_OPT) -O3 -g --strip-producers $(WASM_OPT_FEATURES) \
	  $(WORKER_BINDGEN)/mcp_edge_auth_worker_bg.wasm -o $(BENCH_NAMED_WORKER_WASM)
	BENCH_PROFILE_WASM=$(BENCH_NAMED_WORKER_WASM) node bench/profile-workers.mjs

# The Worker library of this tree against another commit's (bench/ab-workers.mjs), built the
# way worker-build builds this one. BENCH_AB_BASE (HEAD), BENCH_AB_ROUNDS (20),
# BENCH_AB_SECONDS (1).
BENCH_AB_BASE ?= HEAD
bench-ab-workers: bench-tools worker-build
	WASM_BINDGEN=$(WASM_BINDGEN) WASM_OPT=$(WASM_OPT) WASM_OPT_FEATURES="$(WASM_OPT_FEATURES)" \
	  BENCH_AB_BASE=$(BENCH_AB_BASE) node bench/ab-workers.mjs
