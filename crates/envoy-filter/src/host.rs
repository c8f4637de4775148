//! The few host calls the filter makes, wrapped so that none can panic on request data.
//!
//! The SDK's string getters (`get_http_request_headers`, …) `unwrap` a UTF-8 conversion, so
//! a client sending one `obs-text` byte in a header value would kill the VM and fail every
//! request on that worker. Everything here reads bytes and converts lossily: a mangled
//! `Authorization` or `Origin` value is refused by the core like any other bad value.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

/// Milliseconds since the Unix epoch, by the host's clock (0 if the host has none).
pub(crate) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A secret key for the verified-token cache's hash, from the host's randomness (WASI
/// `random_get`, which std's `RandomState` draws on; Envoy implements it).
pub(crate) fn random_key() -> (u64, u64) {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    (s.hash_one(0x6b30_u64), s.hash_one(0x6b31_u64))
}

/// Envoy's current level for the `wasm` log component, refreshed on every tick so that a
/// level changed through the admin API takes effect without a restart.
static LEVEL: AtomicU32 = AtomicU32::new(LogLevel::Info as u32);

pub(crate) fn refresh_log_level() {
    if let Ok(l) = hostcalls::get_log_level() {
        LEVEL.store(l as u32, Ordering::Relaxed);
    }
}

fn enabled(level: LogLevel) -> bool {
    level as u32 >= LEVEL.load(Ordering::Relaxed)
}

/// Logs `msg()` at `level`; the message is only built when the level is enabled. (Envoy
/// prefixes each line with the plugin name.)
pub(crate) fn log(level: LogLevel, msg: impl FnOnce() -> String) {
    if enabled(level) {
        let _ = hostcalls::log(level, &msg());
    }
}

pub(crate) fn debug(msg: impl FnOnce() -> String) {
    log(LogLevel::Debug, msg);
}

pub(crate) fn info(msg: impl FnOnce() -> String) {
    log(LogLevel::Info, msg);
}

pub(crate) fn warn(msg: impl FnOnce() -> String) {
    log(LogLevel::Warn, msg);
}

pub(crate) fn error(msg: impl FnOnce() -> String) {
    log(LogLevel::Error, msg);
}

fn lossy(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Every header of a map, repeats kept, values converted lossily.
pub(crate) fn headers(map: MapType) -> Vec<(String, String)> {
    hostcalls::get_map_bytes(map)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, lossy(v)))
        .collect()
}

/// The plugin configuration bytes (`google.protobuf.StringValue` contents).
pub(crate) fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

/// The body of the HTTP call response being delivered.
pub(crate) fn call_response_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The request body Envoy has buffered for this filter: `size` bytes (what the last body
/// callback reported). `None` if the host would not hand it over.
pub(crate) fn request_body(size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
}

/// The response body Envoy holds for this filter: `size` bytes (what the body callback
/// reported: the current chunk, plus whatever earlier callbacks buffered). Empty if the
/// host would not hand it over.
pub(crate) fn response_body(size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Replaces the `size` bytes of response body [`response_body`] read with `bytes`.
pub(crate) fn set_response_body(size: usize, bytes: &[u8]) {
    let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, bytes);
}

pub(crate) fn remove_header(map: MapType, name: &str) {
    let _ = hostcalls::remove_map_value(map, name);
}

pub(crate) fn add_header(map: MapType, name: &str, value: &str) {
    let _ = hostcalls::add_map_value(map, name, value);
}

pub(crate) fn set_header(map: MapType, name: &str, value: &str) {
    let _ = hostcalls::set_map_value(map, name, Some(value));
}

/// Sends a local reply on the current stream.
pub(crate) fn send_response(status: u16, headers: &[(&'static str, String)], body: &str) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let body = (!body.is_empty()).then_some(body.as_bytes());
    let _ = hostcalls::send_http_response(u32::from(status), headers, body);
}

/// Lets the current (paused) request go on.
pub(crate) fn resume_request() {
    let _ = hostcalls::resume_http_request();
}

/// Makes `context_id` the context later host calls act on; false if it no longer exists.
pub(crate) fn switch_to(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

pub(crate) fn set_tick(period: Duration) {
    let _ = hostcalls::set_tick_period(period);
}
