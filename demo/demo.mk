## ---- make demo (owned by the end-to-end tier: demo/, tests/e2e/) ----------------------
# demo        build everything, start the authorization server (oidc-provider), the MCP server
#             (MCP TypeScript SDK), Envoy with the Wasm filter and the Worker in workerd, all on
#             loopback; print the URLs and copy-paste commands; Ctrl-C stops everything.
#             Ports: DEMO_AS_PORT=9400 DEMO_MCP_PORT=9401 DEMO_ENVOY_PORT=9410 DEMO_WORKER_PORT=9420,
#             ENVOY_ADMIN_PORT=9411 (Envoy's admin interface: stats, config dump).
#             DEMO_STATEFUL=1: a stateful MCP server (the GET SSE stream); DEMO_EXCHANGE=1: the MCP
#             server requires its own token, which the gateways get by RFC 8693 token exchange.
#             Builds only what changed: run twice, the second run builds and writes nothing.
# demo-check  the same, but runs the printed commands, checks their output and stops
#             (needs curl); tests/e2e/demo.test.mjs runs it in `make test`.

.PHONY: demo demo-check
demo: setup-node setup-python envoy-wasm worker-build
	@node $(ROOT)/demo/run.mjs

demo-check: setup-node setup-python envoy-wasm worker-build
	node $(ROOT)/demo/run.mjs --check
