## ---- Envoy native dynamic module (owned by the module host) ---------------------------
# make envoy-module              target/release-native/libmcp_edge_auth_envoy_module.so
# make test-envoy-module-unit    its unit tests (hooked into test-rust)
# make envoy-module-run          Envoy with envoy/module/envoy.yaml
#
# The module is built with its own profile, `release-native`: the workspace release profile
# has panic = "abort", and the module must unwind so that every hook can catch a panic and
# fail closed instead of taking Envoy down (the profile is in the root Cargo.toml).
ENVOY_MODULE_PROFILE := release-native
ENVOY_MODULE_SO      := $(ROOT)/target/$(ENVOY_MODULE_PROFILE)/libmcp_edge_auth_envoy_module.so

.PHONY: envoy-module test-envoy-module-unit envoy-module-run
envoy-module:
	$(CARGO) build -p mcp-edge-auth-envoy-module --profile $(ENVOY_MODULE_PROFILE)

test-envoy-module-unit:
	$(CARGO) test -p mcp-edge-auth-envoy-module

# Hooked into `make test`: the unit tests with the other Rust tests; the .so before the
# JavaScript tests (tests/envoy-module/ runs it in a real Envoy).
test-rust: test-envoy-module-unit
test-js: envoy-module

envoy-module-run: envoy-module setup-python
	$(ENVOY) -c envoy/module/envoy.yaml --concurrency 2 --use-dynamic-base-id
