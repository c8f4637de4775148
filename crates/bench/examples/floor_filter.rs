//! A proxy-wasm filter that does (almost) nothing, for `make bench-profile`: the floor any
//! Wasm HTTP filter pays in Envoy, to set the mcp-edge-auth filter's cost against.
//!
//! Its plugin configuration picks the mode:
//!
//! * `noop`: returns `Continue` from the request headers and makes no host call: the cost
//!   of a Wasm filter being there at all (V8 calls for the stream's context creation, its
//!   callbacks and its deletion).
//! * `headers`: also makes the host calls the mcp-edge-auth filter makes for an allowed
//!   request answered from its token cache, without the core's work: read every request
//!   header and the clock, remove `authorization` (and `x-mcp-subject` if the request has
//!   one: the filter removes only what a request carries), add `x-mcp-subject`.
//!
//! Build: `make bench-build-floor` (bench/bench.mk): cargo's release build, then wasm-opt
//! drops the SDK exports that the shipped filter drops (envoy/envoy.mk), so that Envoy makes
//! the same calls into both modules.

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

#[allow(unsafe_code)] // the SDK macro exports the entry point
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(crate::Root { headers: std::rc::Rc::new(std::cell::Cell::new(false)) })
        });
    }}
}

struct Root {
    headers: Rc<Cell<bool>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.headers.set(config.trim_ascii() == b"headers");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            headers: self.headers.get(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    headers: bool,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.headers {
            let all = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
            let _now = hostcalls::get_current_time();
            if all.iter().any(|(n, _)| n == "x-mcp-subject") {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "x-mcp-subject");
            }
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "authorization");
            let sub = if all.is_empty() { "nobody" } else { "client-0" };
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, "x-mcp-subject", sub);
        }
        Action::Continue
    }
}
