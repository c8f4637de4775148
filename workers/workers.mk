## ---- Cloudflare Workers (owned by the Worker host) ------------------------------------
# worker-build     Rust core -> wasm32-unknown-unknown -> wasm-bindgen (--target web) -> wasm-opt,
#                  into workers/lib/wasm/ (the npm package's generated part, gitignored)
# worker-pack      npm package (offline): $(BUILD)/worker/mcp-edge-auth-worker-<version>.tgz
# worker-dry-run   wrangler deploy --dry-run of workers/wrangler.toml (offline, no login)
# worker-test      the Worker tests alone (real workerd)
# worker-dev       the proxy Worker under workerd on 127.0.0.1:8787 (workers/local/workerd.capnp),
#                  in front of a local MCP server with a local authorization server

WORKER_CRATE_WASM := $(ROOT)/target/wasm32-unknown-unknown/release/mcp_edge_auth_worker.wasm
WORKER_BINDGEN    := $(BUILD)/worker/bindgen
WORKER_PKG_WASM   := $(ROOT)/workers/lib/wasm
WASM_BINDGEN      := $(TOOLS_DIR)/bin/wasm-bindgen
WASM_OPT          := $(NODE_BIN)/wasm-opt
WRANGLER          := $(NODE_BIN)/wrangler
# What rustc's wasm32-unknown-unknown target emits by default; wasm-opt must accept (and keep
# to) the same set, and V8 in workerd supports all of them.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
                     --enable-mutable-globals --enable-reference-types --enable-multivalue
# CI-friendly wrangler: no telemetry, no update check, no login, no prompts.
WRANGLER_ENV := WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false \
                WRANGLER_LOG=warn CI=true NO_UPDATE_NOTIFIER=1 \
                XDG_CONFIG_HOME=$(BUILD)/worker/xdg

.PHONY: worker-build worker-tools worker-pack worker-dry-run worker-test worker-size worker-dev

# The wasm-bindgen CLI must be exactly the version of the wasm-bindgen crate. Built from
# crates.io once per machine into $(TOOLS_DIR) (outside the clone).
worker-tools:
	@if [ "$$($(WASM_BINDGEN) --version 2>/dev/null)" != "wasm-bindgen $(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) into $(TOOLS_DIR) (takes several minutes)"; \
	  $(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --root $(TOOLS_DIR); \
	fi

# Rebuilt only when a source it is built from changed (`make demo` twice builds once).
WORKER_SOURCES := $(shell find $(ROOT)/crates/core $(ROOT)/crates/worker $(ROOT)/crates/p256-tables \
                    -name '*.rs' -o -name Cargo.toml 2>/dev/null) $(ROOT)/Cargo.toml $(ROOT)/Cargo.lock
worker-build: $(WORKER_PKG_WASM)/mcp_edge_auth_worker_bg.wasm
$(WORKER_PKG_WASM)/mcp_edge_auth_worker_bg.wasm: $(WORKER_SOURCES) | setup-rust setup-node worker-tools
	$(CARGO) build -p mcp-edge-auth-worker --target wasm32-unknown-unknown --release
	@rm -rf $(WORKER_BINDGEN) && mkdir -p $(WORKER_BINDGEN) $(WORKER_PKG_WASM)
	$(WASM_BINDGEN) --target web --out-dir $(WORKER_BINDGEN) $(WORKER_CRATE_WASM)
	$(WASM_OPT) -O3 --strip-debug --strip-producers $(WASM_OPT_FEATURES) \
	  $(WORKER_BINDGEN)/mcp_edge_auth_worker_bg.wasm -o $(WORKER_BINDGEN)/mcp_edge_auth_worker_bg.opt.wasm
	cp $(WORKER_BINDGEN)/mcp_edge_auth_worker.js $(WORKER_BINDGEN)/mcp_edge_auth_worker.d.ts $(WORKER_PKG_WASM)/
	cp $(WORKER_BINDGEN)/mcp_edge_auth_worker_bg.opt.wasm $(WORKER_PKG_WASM)/mcp_edge_auth_worker_bg.wasm
	@$(MAKE) --no-print-directory worker-size

worker-size:
	@w=$(WORKER_PKG_WASM)/mcp_edge_auth_worker_bg.wasm; \
	  echo "worker wasm: $$(wc -c < $$w) bytes, $$(gzip -9c $$w | wc -c) bytes gzipped"

worker-pack: worker-build
	@mkdir -p $(BUILD)/worker
	cd $(ROOT)/workers && npm pack --offline --pack-destination $(BUILD)/worker

worker-dry-run: worker-build
	@rm -rf $(BUILD)/worker/dry-run && mkdir -p $(BUILD)/worker/dry-run $(BUILD)/worker/xdg
	cd $(ROOT)/workers && $(WRANGLER_ENV) $(WRANGLER) deploy --dry-run --outdir $(BUILD)/worker/dry-run
	@ls -l $(BUILD)/worker/dry-run

worker-test: setup-node worker-build
	node --test --test-concurrency=1 tests/workers/

# The sample config embeds its files by paths relative to itself; workerd prints each request.
worker-dev: worker-build
	$(NODE_BIN)/workerd serve $(ROOT)/workers/local/workerd.capnp --verbose
