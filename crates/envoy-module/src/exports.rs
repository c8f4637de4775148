//! The event hooks Envoy resolves in the module (`envoy_dynamic_module_on_*`).
//!
//! Every hook body runs inside [`guard`]: a panic never crosses into Envoy (that would be
//! undefined behaviour, or an abort of the whole proxy). A panic in a request hook answers
//! that request 500 (fail closed); elsewhere the hook's neutral answer is returned. The
//! panic is logged by the hook installed in `on_program_init` with its location only: the
//! payload of a panic could hold request data, so it is never printed.
//!
//! The 21 hooks Envoy 1.40 requires are all here (a missing one fails the filter config
//! with "Failed to resolve symbol"), plus the optional config-level scheduler and callout
//! hooks the JWKS fetcher uses.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::abi::{self, status, Buffer, ConfigRef, Filter, Header, Level};
use crate::fetch::Fetched;
use crate::filter::{FilterConfig, Stream};
use crate::metrics::Metrics;

/// The ABI version this module was written against (Envoy 1.40). Envoy compares it as a
/// string and only warns on a mismatch; what really gates loading is symbol resolution.
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// The most of an introspection answer that is read (as the Wasm filter).
const MAX_INTROSPECTION_BODY: usize = 64 * 1024;

/// Runs a hook body; on a panic, logs the hook (never the payload) and runs `on_panic`,
/// itself guarded, falling back to `last_resort`.
fn guard<R>(
    hook: &'static str,
    body: impl FnOnce() -> R,
    on_panic: impl FnOnce() -> R,
    last_resort: R,
) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            abi::log(Level::Error, || {
                format!("mcp-edge-auth: panic in {hook}; failing closed")
            });
            catch_unwind(AssertUnwindSafe(on_panic)).unwrap_or(last_resort)
        }
    }
}

/// What Envoy holds for one stream: the stream and its (longer-lived) filter config.
struct StreamBox {
    config: *const FilterConfig,
    stream: Stream,
}

/// Borrows the config and stream behind a filter module pointer.
///
/// # Safety
/// `module` is a pointer returned by `on_http_filter_new` and not yet destroyed.
unsafe fn stream<'a>(module: *const c_void) -> Option<(&'a FilterConfig, &'a Stream)> {
    // SAFETY: per the contract, `module` is a live StreamBox; Envoy keeps the filter config
    // (which owns the FilterConfig) alive as long as any of its filters exist.
    let b = unsafe { module.cast::<StreamBox>().as_ref()? };
    // SAFETY: see above.
    let cfg = unsafe { b.config.as_ref()? };
    Some((cfg, &b.stream))
}

/// Answers a request 500 after a panic (unless it was answered or forwarded already).
///
/// # Safety
/// As [`stream`]; `envoy` is the running hook's filter pointer.
unsafe fn fail_closed(envoy: *mut c_void, module: *const c_void) -> u32 {
    // SAFETY: forwarded contract.
    let Some((_, s)) = (unsafe { stream(module) }) else {
        return status::STOP_ITERATION;
    };
    // SAFETY: `envoy` is the running hook's filter pointer.
    let e = unsafe { Filter::new(envoy) };
    s.fail_closed(&e)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard(
        "on_program_init",
        || {
            std::panic::set_hook(Box::new(|info| {
                let at = info
                    .location()
                    .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
                abi::log(Level::Critical, || format!("mcp-edge-auth: panic{at}"));
            }));
            ABI_VERSION.as_ptr().cast()
        },
        || ABI_VERSION.as_ptr().cast(),
        std::ptr::null(),
    )
}

/// Builds a filter config from the JSON `config`; null (Envoy refuses the config, so no
/// request passes unchecked) with a critical log line naming the field when it is invalid.
///
/// # Safety
/// Called by Envoy with buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    _name: Buffer,
    config: Buffer,
) -> *const c_void {
    guard(
        "on_http_filter_config_new",
        || {
            // SAFETY: Envoy's buffer is valid for this call; it is only read here.
            let json = unsafe { config.bytes() };
            let workers = usize::try_from(abi::concurrency()).unwrap_or(1);
            let mut cfg = match FilterConfig::build(json, workers) {
                Ok(c) => c,
                Err(message) => {
                    abi::log(Level::Critical, || {
                        format!("mcp-edge-auth: refusing to start: {message}")
                    });
                    return std::ptr::null();
                }
            };
            // SAFETY: the config pointer of this hook.
            let envoy = unsafe { ConfigRef::new(config_envoy) };
            cfg.metrics = Metrics::define(envoy);
            if !abi::is_validation_mode() {
                if let Err(e) = cfg.fetcher.start(envoy) {
                    abi::log(Level::Critical, || {
                        format!("mcp-edge-auth: refusing to start: {e}")
                    });
                    return std::ptr::null();
                }
            }
            abi::log(Level::Info, || format!("mcp-edge-auth: {}", cfg.summary()));
            Box::into_raw(Box::new(cfg)).cast_const().cast()
        },
        std::ptr::null,
        std::ptr::null(),
    )
}

/// # Safety
/// `config` was returned by `on_http_filter_config_new`; Envoy destroys it once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard(
        "on_http_filter_config_destroy",
        || {
            if !config.is_null() {
                // SAFETY: made by Box::into_raw in config_new, destroyed once, after every
                // filter of it (Envoy's filters hold the config alive).
                drop(unsafe { Box::from_raw(config.cast::<FilterConfig>().cast_mut()) });
            }
        },
        || (),
        (),
    );
}

/// Main thread: a timer tick or a worker's kick (fetch keys, wake waiters).
///
/// # Safety
/// Envoy passes the config pointers of a live config.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: *mut c_void,
    config: *const c_void,
    _event: u64,
) {
    guard(
        "on_http_filter_config_scheduled",
        || {
            // SAFETY: a live FilterConfig made by config_new.
            let Some(cfg) = (unsafe { config.cast::<FilterConfig>().as_ref() }) else {
                return;
            };
            // SAFETY: the config pointer of this hook.
            cfg.on_tick(unsafe { ConfigRef::new(config_envoy) });
        },
        || (),
        (),
    );
}

/// Main thread: a JWKS callout finished.
///
/// # Safety
/// Envoy passes a live config and arrays valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: *mut c_void,
    config: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const Header,
    headers_len: usize,
    chunks: *const Buffer,
    chunks_len: usize,
) {
    guard(
        "on_http_filter_config_http_callout_done",
        || {
            // SAFETY: a live FilterConfig made by config_new.
            let Some(cfg) = (unsafe { config.cast::<FilterConfig>().as_ref() }) else {
                return;
            };
            // SAFETY: the arrays Envoy passed to this hook.
            let (status, cache_control, body) = unsafe {
                abi::callout_response(
                    headers,
                    headers_len,
                    chunks,
                    chunks_len,
                    cfg.fetcher
                        .max_body_bytes()
                        .max(mcp_edge_auth_core::exchange::MAX_ANSWER_BYTES),
                )
            };
            let fetched = Fetched {
                status,
                cache_control: cache_control.as_deref(),
                body: body.as_deref().map_err(|_| ()),
            };
            // SAFETY: the config pointer of this hook.
            let envoy = unsafe { ConfigRef::new(config_envoy) };
            if cfg.exchanger.owns(callout_id) || cfg.exchanger.starting() {
                cfg.on_exchanged(envoy, callout_id, result, &fetched);
            } else {
                cfg.on_fetched(envoy, callout_id, result, &fetched);
            }
        },
        || (),
        (),
    );
}

/// # Safety
/// `config` is a live FilterConfig.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _envoy: *mut c_void,
) -> *const c_void {
    guard(
        "on_http_filter_new",
        || {
            if config.is_null() {
                return std::ptr::null();
            }
            let b = Box::new(StreamBox {
                config: config.cast(),
                stream: Stream::default(),
            });
            Box::into_raw(b).cast_const().cast()
        },
        std::ptr::null,
        std::ptr::null(),
    )
}

/// Deferred in 1.40 (runs after the stream is gone): only our own cleanup happens here.
///
/// # Safety
/// `module` was returned by `on_http_filter_new`; Envoy destroys it once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: *const c_void) {
    guard(
        "on_http_filter_destroy",
        || {
            if module.is_null() {
                return;
            }
            // SAFETY: made by Box::into_raw in filter_new, destroyed once.
            let b = unsafe { Box::from_raw(module.cast::<StreamBox>().cast_mut()) };
            b.stream.destroy();
        },
        || (),
        (),
    );
}

/// # Safety
/// Envoy passes the running stream's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    guard(
        "on_http_filter_request_headers",
        || {
            // SAFETY: live stream of this hook.
            let Some((cfg, s)) = (unsafe { stream(module) }) else {
                return status::STOP_ITERATION;
            };
            // SAFETY: the filter pointer of this hook.
            let mut e = unsafe { Filter::new(envoy) };
            s.request_headers(cfg, &mut e, end_of_stream)
        },
        // SAFETY: as above.
        || unsafe { fail_closed(envoy, module) },
        status::STOP_ITERATION,
    )
}

/// # Safety
/// Envoy passes the running stream's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    guard(
        "on_http_filter_request_body",
        || {
            // SAFETY: live stream of this hook.
            let Some((cfg, s)) = (unsafe { stream(module) }) else {
                return status::STOP_ITERATION;
            };
            // SAFETY: the filter pointer of this hook.
            let e = unsafe { Filter::new(envoy) };
            s.request_body(cfg, &e, end_of_stream)
        },
        // SAFETY: as above.
        || unsafe { fail_closed(envoy, module) },
        status::STOP_ITERATION,
    )
}

/// # Safety
/// Envoy passes the running stream's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: *mut c_void,
    module: *const c_void,
) -> u32 {
    guard(
        "on_http_filter_request_trailers",
        || {
            // SAFETY: live stream of this hook.
            let Some((cfg, s)) = (unsafe { stream(module) }) else {
                return status::STOP_ITERATION;
            };
            // SAFETY: the filter pointer of this hook.
            let e = unsafe { Filter::new(envoy) };
            s.request_trailers(cfg, &e)
        },
        // SAFETY: as above.
        || unsafe { fail_closed(envoy, module) },
        status::STOP_ITERATION,
    )
}

/// The answer of a stream's introspection call, on its worker (`result` other than
/// success, or no `:status`: the call failed). Bodies over 64 KiB are not read (the core
/// then refuses the token). Envoy cancels the call if the stream goes away first.
///
/// # Safety
/// Envoy passes the running stream's pointers and arrays valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: *mut c_void,
    module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const Header,
    headers_len: usize,
    chunks: *const Buffer,
    chunks_len: usize,
) {
    guard(
        "on_http_filter_http_callout_done",
        || {
            // SAFETY: live stream of this hook.
            let Some((cfg, s)) = (unsafe { stream(module) }) else {
                return;
            };
            // SAFETY: the arrays Envoy passed to this hook.
            let (status, _, body) = unsafe {
                abi::callout_response(
                    headers,
                    headers_len,
                    chunks,
                    chunks_len,
                    MAX_INTROSPECTION_BODY,
                )
            };
            let answer = match status {
                Some(code) if result == abi::CALLOUT_SUCCESS => {
                    Some((code, body.unwrap_or_default()))
                }
                _ => None,
            };
            // SAFETY: the filter pointer of this hook.
            let e = unsafe { Filter::new(envoy) };
            s.introspected(cfg, &e, callout_id, answer);
        },
        || {
            // SAFETY: as above.
            unsafe { fail_closed(envoy, module) };
        },
        (),
    );
}

/// # Safety
/// Envoy passes the running stream's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    guard(
        "on_http_filter_response_headers",
        || {
            // SAFETY: live stream of this hook.
            let Some((_, s)) = (unsafe { stream(module) }) else {
                return status::CONTINUE;
            };
            // SAFETY: the filter pointer of this hook.
            let mut e = unsafe { Filter::new(envoy) };
            s.response_headers(&mut e, end_of_stream)
        },
        || status::CONTINUE,
        status::CONTINUE,
    )
}

/// A filtered answer's body (see [`crate::filter::Stream::response_body`]).
///
/// # Safety
/// Envoy passes the running stream's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    guard(
        "on_http_filter_response_body",
        || {
            // SAFETY: live stream of this hook.
            let Some((cfg, s)) = (unsafe { stream(module) }) else {
                return status::CONTINUE;
            };
            // SAFETY: the filter pointer of this hook.
            let e = unsafe { Filter::new(envoy) };
            s.response_body(cfg, &e, end_of_stream)
        },
        // A panic while filtering: nothing of this body goes on unfiltered.
        || {
            // SAFETY: the filter pointer of this hook.
            let e = unsafe { Filter::new(envoy) };
            e.replace_response_body(&[]);
            status::CONTINUE
        },
        status::CONTINUE,
    )
}

/// A paused request's wake-up, on its worker.
///
/// # Safety
/// Envoy passes the running stream's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    envoy: *mut c_void,
    module: *const c_void,
    _event: u64,
) {
    guard(
        "on_http_filter_scheduled",
        || {
            // SAFETY: live stream of this hook.
            let Some((cfg, s)) = (unsafe { stream(module) }) else {
                return;
            };
            // SAFETY: the filter pointer of this hook.
            let mut e = unsafe { Filter::new(envoy) };
            s.wake(cfg, &mut e);
        },
        || {
            // SAFETY: as above.
            unsafe { fail_closed(envoy, module) };
        },
        (),
    );
}

/// Hooks Envoy requires that this filter has no use for.
macro_rules! unused_hooks {
    ($($name:ident($($arg:ty),*) -> $ret:ty = $value:expr;)*) => {$(
        /// Required by Envoy; unused.
        #[no_mangle]
        pub extern "C" fn $name($(_: $arg),*) -> $ret {
            $value
        }
    )*};
}

unused_hooks! {
    envoy_dynamic_module_on_http_filter_response_trailers(*mut c_void, *const c_void) -> u32 = status::CONTINUE;
    envoy_dynamic_module_on_http_filter_stream_complete(*mut c_void, *const c_void) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_headers(*mut c_void, *const c_void, u64, *const Header, usize, bool) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_data(*mut c_void, *const c_void, u64, *const Buffer, usize, bool) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_trailers(*mut c_void, *const c_void, u64, *const Header, usize) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_complete(*mut c_void, *const c_void, u64) -> () = ();
    envoy_dynamic_module_on_http_filter_http_stream_reset(*mut c_void, *const c_void, u64, u32) -> () = ();
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(*mut c_void, *const c_void) -> () = ();
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(*mut c_void, *const c_void) -> () = ();
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_never_escapes_a_hook() {
        assert_eq!(guard("t", || 1, || 2, 3), 1);
        assert_eq!(guard("t", || panic!("boom"), || 2, 3), 2);
        assert_eq!(guard("t", || panic!("boom"), || panic!("again"), 3), 3);
    }

    #[test]
    fn the_abi_version_is_a_c_string() {
        assert_eq!(ABI_VERSION.last(), Some(&0));
        assert_eq!(&ABI_VERSION[..6], b"v0.2.0");
    }
}
