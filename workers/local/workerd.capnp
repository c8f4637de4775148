# The mcp-edge-auth proxy Worker under workerd, on your machine, in front of a local MCP
# server, with a local authorization server. Run it from the repository root:
#
#   make worker-dev          (builds lib/wasm/ if needed, then the command below)
#   node_modules/.bin/workerd serve workers/local/workerd.capnp --verbose
#
# Copy this directory to adapt it: config.json is the gateway config (the one JSON format),
# MCP_ORIGIN the MCP server, the socket the address clients use. Another port without
# editing: `workerd serve ... --socket-addr http=127.0.0.1:9999`.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .proxy),
    # Outbound connections (JWKS fetches, the MCP server). workerd's default network allows
    # only public addresses: a JWKS fetch to a local authorization server would be refused
    # and every valid token answered 503 (the Worker's log then says "workerd refused to
    # connect ... allow = [..., "local"]"). This service lets the Worker reach loopback and
    # private addresses too; on a shared machine narrow it to what you need.
    (name = "net", network = (allow = ["public", "private", "local"], tlsOptions = (trustBrowserCas = true))),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8787", http = (), service = "main"),
  ],
);

const proxy :Workerd.Worker = (
  # Paths are relative to this file: the proxy Worker, the library, and its wasm, as
  # `make worker-build` leaves them.
  modules = [
    (name = "src/proxy.js", esModule = embed "../src/proxy.js"),
    (name = "lib/index.js", esModule = embed "../lib/index.js"),
    (name = "lib/wasm/mcp_edge_auth_worker.js", esModule = embed "../lib/wasm/mcp_edge_auth_worker.js"),
    (name = "lib/wasm/mcp_edge_auth_worker_bg.wasm", wasm = embed "../lib/wasm/mcp_edge_auth_worker_bg.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  bindings = [
    (name = "MCP_EDGE_AUTH_CONFIG", text = embed "config.json"),
    # The MCP server the Worker forwards allowed requests to (the demo's: node demo/mcp-server.mjs --port 9401).
    (name = "MCP_ORIGIN", text = "http://127.0.0.1:9401"),
    (name = "MCP_EDGE_AUTH_LOG", text = "requests"),
  ],
  globalOutbound = "net",
);
