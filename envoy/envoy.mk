## ---- Envoy / Istio (owned by the Envoy host) -----------------------------------------
ENVOY_WASM := $(ROOT)/target/wasm32-wasip1/release/mcp_edge_auth_envoy.wasm

.PHONY: envoy-wasm
envoy-wasm: setup-rust
	$(CARGO) build -p mcp-edge-auth-envoy --target wasm32-wasip1 --release
