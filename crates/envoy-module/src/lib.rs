//! # mcp-edge-auth-envoy-module
//!
//! The mcp-edge-auth core as a native Envoy **dynamic module** (Envoy 1.40, dynamic-module
//! ABI `v0.2.0`): a `cdylib` Envoy loads with the `envoy.filters.http.dynamic_modules`
//! filter, running the same decisions as the proxy-wasm filter from the same JSON config.
//!
//! Why a second Envoy host: under V8 an empty proxy-wasm filter already costs more CPU than
//! Envoy's native `jwt_authn` on its whole cached path. Compiled natively, the same core
//! (with `ring` for signatures) answers a cached token in well under that.
//!
//! The module is glue; the policy lives in `mcp-edge-auth-core`. What is native-specific:
//!
//! * all Envoy workers share one process, so state is ordinary Rust: one key store per
//!   filter config (an `RwLock`), one token cache per worker ([`filter`]);
//! * remote JWKS are fetched on the main thread with config-level callouts, paced by a
//!   small timer thread, and paused requests are resumed on their own worker ([`fetch`]);
//! * token exchanges (`upstream_token`) are made on the main thread too, and the requests
//!   that wait for one are woken the same way ([`exchange`]);
//! * the C ABI is declared by hand ([`abi`]): the official Rust SDK is not on crates.io;
//! * no panic crosses into Envoy ([`exports`]): the module is built with `panic = "unwind"`
//!   (its own Cargo profile, `release-native`), and every hook catches and fails closed.
//!
//! Everything the proxy-wasm filter does is supported: MCP rules on the buffered JSON-RPC
//! body, RFC 7662 introspection through per-request callouts, and the same counters
//! ([`metrics`], under Envoy's `dynamicmodulescustom.` prefix).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod abi;
mod exchange;
pub mod exports;
mod fetch;
pub mod filter;
pub(crate) mod metrics;
