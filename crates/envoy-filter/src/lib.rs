//! # mcp-edge-auth-envoy
//!
//! The mcp-edge-auth core as an Envoy (and Istio) HTTP filter, on the proxy-wasm ABI.
//!
//! The filter is glue; the policy lives in `mcp-edge-auth-core`. Per request it reads the
//! headers, asks [`Gateway::decide`](mcp_edge_auth_core::Gateway::decide) and carries the
//! verdict out: a local reply (metadata, preflight, challenges), or the request goes
//! upstream with the core's header changes (client `Authorization` and spoofed identity
//! headers removed, verified identity headers added, `access_token` query stripped), or it
//! pauses while keys are fetched or an opaque token is introspected.
//!
//! A POST to a resource with MCP rules is decided on its JSON-RPC body: the filter holds
//! the headers back while Envoy buffers the body, which needs
//! `allow_on_headers_stop_iteration: true` in the Wasm plugin config (Envoy 1.35+; without
//! it Envoy delivers no body to a paused filter, and such requests are answered 500).
//!
//! Signatures are checked with the core's `ring` provider: under V8 it verifies RS256
//! several times faster than the `jwt-simple` one, and makes a smaller module.
//!
//! Configuration is the project's one JSON format, passed as the plugin configuration
//! (`google.protobuf.StringValue`, which is what Istio makes of `WasmPlugin.pluginConfig`).
//! An invalid configuration makes `on_configure` fail, and Envoy then refuses the plugin.
//!
//! Build for `wasm32-wasip1`: Envoy's V8 runtime provides the WASI imports the standard
//! library needs (a `wasm32-unknown-unknown` build of crypto crates tends to import
//! wasm-bindgen placeholders that Envoy cannot satisfy).
//!
//! Modules: [`contexts`] (the proxy-wasm contexts), [`filter`] (per-VM state, JWKS fetching
//! and paused requests), [`shared`] (the JWKS lease and document in shared data),
//! [`metrics`], [`host`] (panic-free host calls).

mod contexts;
mod filter;
mod host;
mod metrics;
mod shared;

/// The module's entry point: registers the root context factory.
#[allow(unsafe_code)] // the SDK macro calls the WASI constructors
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(crate::contexts::Root::new(id))
        });
    }}
}
