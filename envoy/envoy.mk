## ---- Envoy / Istio (owned by the Envoy host) -----------------------------------------
# make envoy-wasm   the filter, .build/envoy/mcp_edge_auth_envoy.wasm (Cargo profile `filter`,
#                   then wasm-opt -Oz without the name section and the SDK's exports the
#                   filter does not implement: the 512 KiB budget)
# make oci          the filter as a Wasm OCI image ("compat" layout) in .build/oci; prints
#                   its digest. OCI_TAG=… names the tag; OCI_PUSH=registry/repo:tag also pushes
#                   it with skopeo (OCI_PUSH_FLAGS=--dest-tls-verify=false for a plain-http
#                   registry).
# make test-oci     push the image to a local registry, pull it back, compare the bytes
# make envoy-run    Envoy with envoy/envoy.yaml (see envoy/README.md)
ENVOY_CRATE_WASM := $(ROOT)/target/wasm32-wasip1/filter/mcp_edge_auth_envoy.wasm
ENVOY_WASM := $(BUILD)/envoy/mcp_edge_auth_envoy.wasm
# What rustc's wasm32 targets emit by default, and SIMD (.cargo/config.toml turns it on for
# wasm32-wasip1); wasm-opt must accept (and keep to) the same set.
ENVOY_WASM_OPT_FEATURES := --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
                           --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd
# The proxy-wasm SDK exports every callback of the ABI; the host calls one only when the
# module exports it (proxy-wasm-cpp-host checks each), so each callback the filter does not
# implement is dead code, and `proxy_on_log` was a call into V8 on every request for nothing.
# A callback the filter implements must not be listed (tests/envoy/artefacts.test.mjs checks
# the shipped module against crates/envoy-filter/src/contexts.rs). The floor filter of the
# benchmarks drops the same (bench/bench.mk), so that it stays what any such filter pays.
ENVOY_WASM_UNUSED_EXPORTS := proxy_on_log,proxy_on_response_trailers,proxy_on_grpc_*,proxy_on_foreign_function,\
                             proxy_on_queue_ready,proxy_on_new_connection,proxy_on_downstream_*,proxy_on_upstream_*,\
                             ring_core_*
# (the line breaks' spaces taken out: the pass takes one comma-separated list)
ENVOY_WASM_DROP_EXPORTS := --remove-exports '--pass-arg=remove-exports@$(subst $(eval) ,,$(ENVOY_WASM_UNUSED_EXPORTS))'
OCI_DIR    := $(BUILD)/oci
OCI_TAG    ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' $(ROOT)/Cargo.toml | head -1)

.PHONY: envoy-wasm envoy-cc oci oci-tools test-oci envoy-run
# Rebuilt only when a source it is built from changed, so `make demo` on an up-to-date tree
# builds and writes nothing.
ENVOY_WASM_SOURCES := $(shell find $(ROOT)/crates/core $(ROOT)/crates/envoy-filter $(ROOT)/crates/p256-tables $(ROOT)/crates/rsa-limbs32 \
                        -name '*.rs' -o -name Cargo.toml 2>/dev/null) $(ROOT)/Cargo.toml $(ROOT)/Cargo.lock $(ROOT)/.cargo/config.toml $(ROOT)/envoy/envoy.mk
envoy-wasm: $(ENVOY_WASM)
$(ENVOY_WASM): $(ENVOY_WASM_SOURCES) | setup-rust setup-node envoy-cc
	$(CARGO) build -p mcp-edge-auth-envoy --target wasm32-wasip1 --profile filter
	@mkdir -p $(BUILD)/envoy
	$(NODE_BIN)/wasm-opt $(ENVOY_WASM_DROP_EXPORTS) -Oz --strip-debug --strip-producers $(ENVOY_WASM_OPT_FEATURES) \
	  $(ENVOY_CRATE_WASM) -o $(ENVOY_WASM)
	@echo "envoy filter: $$(wc -c < $(ENVOY_WASM)) bytes, $$(gzip -9c $(ENVOY_WASM) | wc -c) bytes gzipped"

# The filter uses the core's `ring` provider, whose C parts need clang for wasm32-wasip1
# (the `cc` crate picks clang for Wasm targets). A Debian package, installed when missing;
# clippy for wasm32-wasip1 compiles them too.
envoy-cc:
	@command -v clang >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null; }
clippy: envoy-cc

oci: envoy-wasm
	@mkdir -p $(BUILD)
	@node envoy/oci/build-oci.mjs $(ENVOY_WASM) $(OCI_DIR) $(OCI_TAG) > $(BUILD)/oci.digest
	@sed -e 's|^  url: .*|  url: oci://$(or $(OCI_PUSH),registry.example.com/mcp/mcp-edge-auth:$(OCI_TAG))|' \
	     -e "s|^  sha256: .*|  sha256: \"$$(cut -d: -f2 $(BUILD)/oci.digest)\"|" \
	     envoy/istio/wasmplugin.yaml > $(OCI_DIR)/wasmplugin.yaml
	@sed -e 's|^\(  *\)url: registry.example.com/mcp/mcp-edge-auth:.*|\1url: $(or $(OCI_PUSH),registry.example.com/mcp/mcp-edge-auth:$(OCI_TAG))|' \
	     -e "s|^\(  *\)sha256: \"0\{64\}\"|\1sha256: \"$$(cut -d: -f2 $(BUILD)/oci.digest)\"|" \
	     envoy/gateway/mcp-edge-auth.yaml > $(OCI_DIR)/envoy-gateway.yaml
	@echo "wasm: $$(stat -c %s $(ENVOY_WASM)) bytes, $$(gzip -9c $(ENVOY_WASM) | wc -c) gzipped; image: $(OCI_DIR) (tag $(OCI_TAG)); Istio: $(OCI_DIR)/wasmplugin.yaml; Envoy Gateway: $(OCI_DIR)/envoy-gateway.yaml"
	@cat $(BUILD)/oci.digest
ifdef OCI_PUSH
	@$(MAKE) --no-print-directory oci-tools
	skopeo copy $(OCI_PUSH_FLAGS) oci:$(OCI_DIR):$(OCI_TAG) docker://$(OCI_PUSH)
endif

# skopeo and a registry for the OCI test: Debian packages, installed when missing.
oci-tools:
	@command -v skopeo >/dev/null && command -v docker-registry >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo docker-registry >/dev/null; }

test-oci: envoy-wasm oci-tools
	envoy/oci/test-oci.sh $(ENVOY_WASM)

# The filter's own unit tests (shared-data records, metric names, Envoy-only config checks).
.PHONY: test-envoy-unit
test-envoy-unit:
	$(CARGO) test -p mcp-edge-auth-envoy

# Hooked into `make test`: the unit tests with the other Rust tests, and the tools for
# tests/envoy/oci.test.mjs (the OCI round trip) before the JavaScript tests.
test-rust: test-envoy-unit
test-js: oci-tools

# ENVOY_ADMIN_PORT overrides envoy.yaml's admin port (9901): --config-yaml merges over -c.
ENVOY_ADMIN_PORT ?= 9901
envoy-run: envoy-wasm setup-python
	$(ENVOY) -c envoy/envoy.yaml --concurrency 2 --use-dynamic-base-id \
	  --config-yaml '{"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": $(ENVOY_ADMIN_PORT)}}}}'
