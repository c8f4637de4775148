//! The Envoy dynamic-module C ABI (Envoy 1.40, ABI `v0.2.0`), declared by hand, and the
//! small safe layer the rest of the crate uses.
//!
//! Only the callbacks this module calls are declared: since 1.40 Envoy loads modules with
//! `RTLD_NOW`, so every undefined `envoy_dynamic_module_callback_*` symbol must be one the
//! binary exports, and a declaration we do not need is a load failure waiting to happen.
//! The signatures are the released ones, which Envoy's frozen-ABI policy keeps stable
//! (a change would be a new `_v2` function).
//!
//! Layouts (x86-64 / aarch64 SysV): buffers are `{const char*, size_t}` passed by value;
//! headers are `{key ptr, key len, value ptr, value len}`; C enums are 4-byte integers and
//! are taken as `u32` when they come from Envoy, so that an unknown value is no UB.
//!
//! Every `unsafe` block of the crate is here or in [`crate::exports`], each with the
//! reason it is sound.

use std::borrow::Cow;
use std::ffi::{c_char, c_void};
use std::marker::PhantomData;

use mcp_edge_auth_core::Request;

/// `envoy_dynamic_module_type_envoy_buffer` / `..._module_buffer`: bytes owned by one side,
/// passed by value. `{NULL, 0}` is "none".
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl Buffer {
    pub const NULL: Buffer = Buffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// Borrows `s` for a call (Envoy copies what it keeps).
    pub fn of(s: &[u8]) -> Buffer {
        Buffer {
            ptr: s.as_ptr().cast(),
            length: s.len(),
        }
    }

    /// The bytes, for a buffer Envoy handed in (empty for `NULL`).
    ///
    /// # Safety
    /// `ptr` must point to `length` readable bytes that stay valid and unchanged for `'a`.
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees ptr/length describe live bytes for 'a.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.length) }
    }
}

/// `envoy_dynamic_module_type_{module,envoy}_http_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl Header {
    fn of(key: &str, value: &str) -> Header {
        Header {
            key_ptr: key.as_ptr().cast(),
            key_length: key.len(),
            value_ptr: value.as_ptr().cast(),
            value_length: value.len(),
        }
    }
}

/// `envoy_dynamic_module_type_http_header_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HeaderMap {
    Request = 0,
    Response = 2,
}

/// `envoy_dynamic_module_type_log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and the body,
/// trailers and response variants, which share the first values).
pub mod status {
    pub const CONTINUE: u32 = 0;
    /// Headers: stop (after a local reply). Body: stop and buffer.
    pub const STOP_ITERATION: u32 = 1;
    /// Headers: hold the headers and everything after them until `continue_decoding`.
    pub const STOP_ALL_AND_WATERMARK: u32 = 4;
}

/// `envoy_dynamic_module_type_http_body_type`: the chunk being delivered to the running
/// body hook, and what earlier `StopIterationAndBuffer` answers buffered.
const RECEIVED_REQUEST_BODY: u32 = 0;
const BUFFERED_REQUEST_BODY: u32 = 1;
const RECEIVED_RESPONSE_BODY: u32 = 2;
const BUFFERED_RESPONSE_BODY: u32 = 3;

/// `envoy_dynamic_module_type_http_callout_init_result::Success`, and the same value of
/// `envoy_dynamic_module_type_http_callout_result`.
pub const CALLOUT_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_metrics_result::Success`.
const METRICS_SUCCESS: u32 = 0;

#[cfg_attr(not(test), allow(clippy::missing_safety_doc))]
extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: Buffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    fn envoy_dynamic_module_callback_is_validation_mode() -> bool;
    fn envoy_dynamic_module_callback_get_concurrency() -> u32;

    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, map: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        map: u32,
        out: *mut Header,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        map: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: *mut c_void,
        map: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status: u32,
        headers: *const Header,
        headers_len: usize,
        body: Buffer,
        details: Buffer,
    );
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
    fn envoy_dynamic_module_callback_http_get_body_size(filter: *mut c_void, body: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: *mut c_void,
        body: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: *mut c_void,
        body: u32,
        out: *mut Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: *mut c_void,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        filter: *mut c_void,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(
        filter: *mut c_void,
        body: u32,
        number_of_bytes: usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_append_body(
        filter: *mut c_void,
        body: u32,
        data: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: *mut c_void,
        callout_id: *mut u64,
        cluster: Buffer,
        headers: *const Header,
        headers_len: usize,
        body: Buffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_get_worker_index(filter: *mut c_void) -> u32;

    fn envoy_dynamic_module_callback_http_filter_scheduler_new(filter: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: *mut c_void,
        event: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: *mut c_void,
    ) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: Buffer,
        label_names: *const Buffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        label_values: *const Buffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *const Buffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: *mut c_void,
        callout_id: *mut u64,
        cluster: Buffer,
        headers: *const Header,
        headers_len: usize,
        body: Buffer,
        timeout_ms: u64,
    ) -> u32;
}

// ---- process-wide calls ------------------------------------------------------------------

/// Envoy's level for a core log level (key schedule and token exchange reports).
pub fn level_of(level: mcp_edge_auth_core::keys::schedule::LogLevel) -> Level {
    use mcp_edge_auth_core::keys::schedule::LogLevel;
    match level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
    }
}

/// Logs `msg()` when Envoy's `dynamic_modules` component logs at `level`; the message is
/// only built then. Never pass request data that could hold a token.
pub fn log(level: Level, msg: impl FnOnce() -> String) {
    // SAFETY: plain call with an enum value; Envoy reads nothing of ours.
    if unsafe { envoy_dynamic_module_callback_log_enabled(level as u32) } {
        let m = msg();
        // SAFETY: the buffer points into `m`, alive for the call; Envoy copies it.
        unsafe { envoy_dynamic_module_callback_log(level as u32, Buffer::of(m.as_bytes())) }
    }
}

/// `envoy --mode validate`: configs are built, but nothing runs.
pub fn is_validation_mode() -> bool {
    // SAFETY: no arguments.
    unsafe { envoy_dynamic_module_callback_is_validation_mode() }
}

/// Envoy's worker count (`--concurrency`).
pub fn concurrency() -> u32 {
    // SAFETY: no arguments.
    unsafe { envoy_dynamic_module_callback_get_concurrency() }
}

// ---- one stream ----------------------------------------------------------------------------

/// An Envoy HTTP filter (one stream), valid for one hook invocation (`'h`).
///
/// Reads that borrow Envoy's header memory take `&mut self` and hand the borrow to a
/// closure, so no setter (which may invalidate those buffers) can run while it lives.
#[derive(Debug)]
pub struct Filter<'h> {
    ptr: *mut c_void,
    _hook: PhantomData<&'h mut ()>,
}

impl Filter<'_> {
    /// # Safety
    /// `ptr` is the `filter_envoy_ptr` Envoy passed to the running hook.
    pub unsafe fn new(ptr: *mut c_void) -> Self {
        Filter {
            ptr,
            _hook: PhantomData,
        }
    }

    /// Runs `f` on the core's view of the request, read without copying: the pseudo
    /// headers and, of `names`, at most two values each (the core only ever asks whether a
    /// header is there, or whether it is repeated). Non-UTF-8 values are read lossily, so
    /// the core refuses them like any other bad value.
    ///
    /// All headers come in one call (`get_headers`) and are matched here: one lookup per
    /// name would cost Envoy a key allocation and a map search each, several times what
    /// scanning a request's dozen headers costs.
    pub fn with_request<R>(
        &mut self,
        names: &[&'static str],
        f: impl FnOnce(&Request<'_>) -> R,
    ) -> R {
        const INLINE: usize = 32;
        const MAX: usize = 16;
        const EMPTY: Header = Header {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        };
        // SAFETY: live filter.
        let n = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.ptr, HeaderMap::Request as u32)
        };
        let mut inline = [EMPTY; INLINE];
        let mut heap = Vec::new();
        let all: &mut [Header] = if n <= INLINE {
            inline.get_mut(..n).unwrap_or(&mut [])
        } else {
            heap.resize(n, EMPTY);
            &mut heap
        };
        // SAFETY: live filter; `all` has room for the `n` headers Envoy reported, and no
        // header changes between the two calls (same hook, no setter in between).
        let ok = n > 0
            && unsafe {
                envoy_dynamic_module_callback_http_get_headers(
                    self.ptr,
                    HeaderMap::Request as u32,
                    all.as_mut_ptr(),
                )
            };
        let all: &[Header] = if ok { all } else { &[] };
        let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
        let mut values: [(&str, Cow<'_, str>); MAX] =
            std::array::from_fn(|_| ("", Cow::Borrowed("")));
        let mut seen = [0u8; MAX];
        let mut count = 0;
        for h in all {
            let key = Buffer {
                ptr: h.key_ptr,
                length: h.key_length,
            };
            let value = Buffer {
                ptr: h.value_ptr,
                length: h.value_length,
            };
            // SAFETY: Envoy's header buffers stay valid until the hook returns or a setter
            // runs; they are used only in this call, which holds `&mut self`, so no setter
            // can run meanwhile.
            let (key, value) = unsafe { (key.bytes(), value.bytes()) };
            match key {
                b":method" => method = Some(value),
                b":scheme" => scheme = Some(value),
                b":authority" => authority = Some(value),
                b":path" => path = Some(value),
                _ => {
                    let Some(i) = names
                        .iter()
                        .position(|n| n.as_bytes().eq_ignore_ascii_case(key))
                    else {
                        continue;
                    };
                    let (Some(name), Some(times)) = (names.get(i), seen.get_mut(i)) else {
                        continue;
                    };
                    if *times >= 2 {
                        continue;
                    }
                    if let Some(slot) = values.get_mut(count) {
                        *slot = (name, text(Some(value)));
                        *times += 1;
                        count += 1;
                    }
                }
            }
        }
        let (method, scheme, authority, path) =
            (text(method), text(scheme), text(authority), text(path));
        let mut pairs: [(&str, &str); MAX] = [("", ""); MAX];
        for (p, (k, v)) in pairs.iter_mut().zip(values.iter()).take(count) {
            *p = (k, v.as_ref());
        }
        let headers = pairs.get(..count).unwrap_or(&[]);
        let req = Request::new(&method, &scheme, &authority, &path, headers);
        f(&req)
    }
}

/// A header value as text: lossy for non-UTF-8 bytes, empty when absent.
/// (`from_utf8` first: its fast path is several times quicker than the lossy scan.)
fn text(b: Option<&[u8]>) -> Cow<'_, str> {
    match b {
        None => Cow::Borrowed(""),
        Some(b) => {
            std::str::from_utf8(b).map_or_else(|_| String::from_utf8_lossy(b), Cow::Borrowed)
        }
    }
}

impl Filter<'_> {
    /// Replaces a header (`None` removes it).
    pub fn set_header(&self, map: HeaderMap, key: &str, value: Option<&str>) {
        let value = value.map_or(Buffer::NULL, |v| Buffer::of(v.as_bytes()));
        // SAFETY: live filter; key/value borrowed for the call and copied by Envoy.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                map as u32,
                Buffer::of(key.as_bytes()),
                value,
            );
        }
    }

    /// Appends a header value.
    pub fn add_header(&self, map: HeaderMap, key: &str, value: &str) {
        // SAFETY: live filter; key/value borrowed for the call and copied by Envoy.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.ptr,
                map as u32,
                Buffer::of(key.as_bytes()),
                Buffer::of(value.as_bytes()),
            );
        }
    }

    /// Answers locally. `details` becomes the response-code details (no spaces).
    pub fn send_response(
        &self,
        status: u16,
        headers: &[(&'static str, String)],
        body: &str,
        details: &str,
    ) {
        let hs: Vec<Header> = headers.iter().map(|(k, v)| Header::of(k, v)).collect();
        // SAFETY: live filter; `hs` points into `headers`, all borrowed for the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                u32::from(status),
                hs.as_ptr(),
                hs.len(),
                Buffer::of(body.as_bytes()),
                Buffer::of(details.as_bytes()),
            );
        }
    }

    /// Resumes a request paused with [`status::STOP_ALL_AND_WATERMARK`].
    pub fn continue_decoding(&self) {
        // SAFETY: live filter.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr) }
    }

    /// The request body so far: what earlier body hooks buffered (`StopIterationAndBuffer`)
    /// plus, inside a body hook, the chunk being delivered. (A chunk that *is* the buffered
    /// body, re-delivered after an earlier filter buffered it, counts once.)
    fn body_parts(&self, request: bool) -> [Option<u32>; 2] {
        // SAFETY: live filter.
        let (received_is_buffered, buffered, received) = unsafe {
            if request {
                (
                    envoy_dynamic_module_callback_http_received_buffered_request_body(self.ptr),
                    BUFFERED_REQUEST_BODY,
                    RECEIVED_REQUEST_BODY,
                )
            } else {
                (
                    envoy_dynamic_module_callback_http_received_buffered_response_body(self.ptr),
                    BUFFERED_RESPONSE_BODY,
                    RECEIVED_RESPONSE_BODY,
                )
            }
        };
        [Some(buffered), (!received_is_buffered).then_some(received)]
    }

    /// The size of the request body so far (see [`Filter::request_body`]).
    pub fn request_body_size(&self) -> usize {
        self.body_size(true)
    }

    fn body_size(&self, request: bool) -> usize {
        self.body_parts(request)
            .into_iter()
            .flatten()
            // SAFETY: live filter; a body Envoy does not have counts 0.
            .map(|t| unsafe { envoy_dynamic_module_callback_http_get_body_size(self.ptr, t) })
            .fold(0usize, usize::saturating_add)
    }

    /// The request body so far, copied: the buffered part, then the chunk of the running
    /// body hook. `None` when it is over `max` bytes.
    pub fn request_body(&self, max: usize) -> Option<Vec<u8>> {
        self.body(true, max)
    }

    /// The response body so far (inside a response body hook), copied like
    /// [`Filter::request_body`]; `None` when it is over `max` bytes.
    pub fn response_body(&self, max: usize) -> Option<Vec<u8>> {
        self.body(false, max)
    }

    /// The size of the response body so far (see [`Filter::response_body`]).
    pub fn response_body_size(&self) -> usize {
        self.body_size(false)
    }

    fn body(&self, request: bool, max: usize) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        for t in self.body_parts(request).into_iter().flatten() {
            // SAFETY: live filter.
            let n = unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(self.ptr, t) };
            if n == 0 {
                continue;
            }
            let mut chunks = vec![Buffer::NULL; n];
            // SAFETY: live filter; `chunks` has room for the `n` chunks Envoy reported, and
            // the body does not change between the two calls (same hook, nothing between).
            let ok = unsafe {
                envoy_dynamic_module_callback_http_get_body_chunks(self.ptr, t, chunks.as_mut_ptr())
            };
            if !ok {
                continue;
            }
            for c in &chunks {
                // SAFETY: Envoy's body slices stay valid until the hook returns or the body
                // changes; they are copied here, within the hook, before any other call.
                let bytes = unsafe { c.bytes() };
                if body.len().saturating_add(bytes.len()) > max {
                    return None;
                }
                body.extend_from_slice(bytes);
            }
        }
        Some(body)
    }

    /// Replaces the response body so far (buffered part and the chunk being delivered) with
    /// `bytes`, which go on as the chunk being delivered.
    pub fn replace_response_body(&self, bytes: &[u8]) {
        // SAFETY: live filter, inside a response body hook; draining more than a body holds
        // drains it all; `bytes` is borrowed for the call and copied by Envoy.
        unsafe {
            envoy_dynamic_module_callback_http_drain_body(
                self.ptr,
                BUFFERED_RESPONSE_BODY,
                usize::MAX,
            );
            envoy_dynamic_module_callback_http_drain_body(
                self.ptr,
                RECEIVED_RESPONSE_BODY,
                usize::MAX,
            );
            if !bytes.is_empty() {
                envoy_dynamic_module_callback_http_append_body(
                    self.ptr,
                    RECEIVED_RESPONSE_BODY,
                    Buffer::of(bytes),
                );
            }
        }
    }

    /// Every response header (`:status` included), copied: for the few answers whose
    /// body is filtered.
    pub fn response_headers(&mut self) -> Vec<(String, String)> {
        const EMPTY: Header = Header {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        };
        // SAFETY: live filter.
        let n = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(
                self.ptr,
                HeaderMap::Response as u32,
            )
        };
        let mut all = vec![EMPTY; n];
        // SAFETY: live filter; `all` has room for the `n` headers Envoy reported, and no
        // header changes between the two calls.
        let ok = n > 0
            && unsafe {
                envoy_dynamic_module_callback_http_get_headers(
                    self.ptr,
                    HeaderMap::Response as u32,
                    all.as_mut_ptr(),
                )
            };
        if !ok {
            return Vec::new();
        }
        all.iter()
            .map(|h| {
                let key = Buffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                };
                let value = Buffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                };
                // SAFETY: Envoy's header buffers stay valid until the hook returns or a
                // setter runs; they are copied here, under `&mut self`.
                let (k, v) = unsafe { (key.bytes(), value.bytes()) };
                (text(Some(k)).into_owned(), text(Some(v)).into_owned())
            })
            .collect()
    }

    /// Starts an HTTP call to `cluster` from this stream; the answer comes to
    /// `on_http_filter_http_callout_done` with the returned id (never, if the stream goes
    /// away first: Envoy cancels it). `headers` must hold `:method`, `:path` and `host`.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let hs: Vec<Header> = headers.iter().map(|(k, v)| Header::of(k, v)).collect();
        let mut id = 0u64;
        // SAFETY: live filter; every buffer borrowed for the call (Envoy copies them); `id`
        // is ours.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.ptr,
                &mut id,
                Buffer::of(cluster.as_bytes()),
                hs.as_ptr(),
                hs.len(),
                Buffer::of(body),
                timeout_ms,
            )
        };
        if r == CALLOUT_SUCCESS {
            Ok(id)
        } else {
            Err(r)
        }
    }

    /// Adds one to a counter defined with [`ConfigRef::define_counter`] (no labels).
    pub fn increment_counter(&self, id: usize) {
        // SAFETY: live filter; no label array.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.ptr,
                id,
                std::ptr::null(),
                0,
                1,
            );
        }
    }

    /// Index of the worker thread running this stream.
    pub fn worker_index(&self) -> usize {
        // SAFETY: live filter.
        let i = unsafe { envoy_dynamic_module_callback_http_filter_get_worker_index(self.ptr) };
        usize::try_from(i).unwrap_or(0)
    }

    /// A scheduler that runs `on_http_filter_scheduled` on this stream's worker.
    pub fn scheduler(&self) -> Option<StreamScheduler> {
        // SAFETY: live filter.
        let p = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr) };
        (!p.is_null()).then_some(StreamScheduler(p))
    }
}

/// A per-stream scheduler: `commit` from any thread runs `on_http_filter_scheduled` on the
/// stream's worker (a no-op once the stream is gone). Deleted on drop.
#[derive(Debug)]
pub struct StreamScheduler(*mut c_void);

// SAFETY: Envoy's scheduler `commit` is documented thread-safe (it posts to the worker's
// dispatcher); the pointer is only deleted once, by Drop, by whoever owns the value.
unsafe impl Send for StreamScheduler {}

impl StreamScheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: live until Drop.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, event) }
    }
}

impl Drop for StreamScheduler {
    fn drop(&mut self) {
        // SAFETY: created by scheduler_new, deleted exactly once here.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}

// ---- one filter config (main thread) --------------------------------------------------------

/// An Envoy filter config, for the main-thread hooks that receive it.
#[derive(Debug, Clone, Copy)]
pub struct ConfigRef {
    ptr: *mut c_void,
}

impl ConfigRef {
    /// # Safety
    /// `ptr` is a `filter_config_envoy_ptr` Envoy passed to a running hook.
    pub unsafe fn new(ptr: *mut c_void) -> Self {
        ConfigRef { ptr }
    }

    /// A config-level scheduler: `commit` runs `on_http_filter_config_scheduled` on the main
    /// thread.
    pub fn scheduler(self) -> Option<ConfigScheduler> {
        // SAFETY: live config.
        let p = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr) };
        (!p.is_null()).then_some(ConfigScheduler(p))
    }

    /// Defines a counter without labels (only while the config is being created: Envoy
    /// freezes stat creation after). Envoy prefixes the name with the filter's
    /// `metrics_namespace` (default `dynamicmodulescustom`).
    pub fn define_counter(self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: live config; the name is borrowed for the call (Envoy interns it); no
        // label array; `id` is ours.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.ptr,
                Buffer::of(name.as_bytes()),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        (r == METRICS_SUCCESS).then_some(id)
    }

    /// Adds one to a counter (main thread).
    pub fn increment_counter(self, id: usize) {
        // SAFETY: live config; no label array.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.ptr,
                id,
                std::ptr::null(),
                0,
                1,
            );
        }
    }

    /// Starts a GET to `cluster` (main thread only); the answer comes to
    /// `on_http_filter_config_http_callout_done` with the returned id.
    pub fn get(
        self,
        cluster: &str,
        authority: &str,
        path: &str,
        extra: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        self.call("GET", cluster, authority, path, extra, &[], timeout_ms)
    }

    /// Starts a POST of `body` to `cluster` (main thread only), answered like [`Self::get`].
    pub fn post(
        self,
        cluster: &str,
        authority: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        self.call("POST", cluster, authority, path, extra, body, timeout_ms)
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        self,
        method: &str,
        cluster: &str,
        authority: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut headers = vec![
            Header::of(":method", method),
            Header::of(":path", path),
            Header::of("host", authority),
        ];
        headers.extend(extra.iter().map(|(n, v)| Header::of(n, v)));
        let body = if body.is_empty() {
            Buffer::NULL
        } else {
            Buffer::of(body)
        };
        let mut id = 0u64;
        // SAFETY: live config; every buffer borrowed for the call; `id` is ours.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.ptr,
                &mut id,
                Buffer::of(cluster.as_bytes()),
                headers.as_ptr(),
                headers.len(),
                body,
                timeout_ms,
            )
        };
        if r == CALLOUT_SUCCESS {
            Ok(id)
        } else {
            Err(r)
        }
    }
}

/// A config-level scheduler, shared with the module's timer thread and the workers.
#[derive(Debug)]
pub struct ConfigScheduler(*mut c_void);

// SAFETY: `commit` is thread-safe (it posts to the main dispatcher); the pointer is deleted
// once, by Drop, after every user is gone (the owner joins the timer thread first).
unsafe impl Send for ConfigScheduler {}
// SAFETY: as above: `commit` through `&self` from several threads is what Envoy supports.
unsafe impl Sync for ConfigScheduler {}

impl ConfigScheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: live until Drop.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event) }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: created by config_scheduler_new, deleted exactly once here.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// Reads a callout's response: `:status`, `cache-control` and the body, concatenated up to
/// `max` bytes (`Err(())` when larger).
///
/// # Safety
/// `headers`/`chunks` are the arrays Envoy passed to the running callout-done hook.
pub unsafe fn callout_response(
    headers: *const Header,
    headers_len: usize,
    chunks: *const Buffer,
    chunks_len: usize,
    max: usize,
) -> (Option<u16>, Option<String>, Result<Vec<u8>, ()>) {
    let headers: &[Header] = if headers.is_null() {
        &[]
    } else {
        // SAFETY: Envoy passes `headers_len` headers, valid during the hook.
        unsafe { std::slice::from_raw_parts(headers, headers_len) }
    };
    let chunks: &[Buffer] = if chunks.is_null() {
        &[]
    } else {
        // SAFETY: Envoy passes `chunks_len` buffers, valid during the hook.
        unsafe { std::slice::from_raw_parts(chunks, chunks_len) }
    };
    let (mut status, mut cache_control) = (None, None);
    for h in headers {
        let key = Buffer {
            ptr: h.key_ptr,
            length: h.key_length,
        };
        let value = Buffer {
            ptr: h.value_ptr,
            length: h.value_length,
        };
        // SAFETY: each header's buffers are valid during the hook.
        let (key, value) = unsafe { (key.bytes(), value.bytes()) };
        if key.eq_ignore_ascii_case(b":status") {
            status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
        } else if key.eq_ignore_ascii_case(b"cache-control") {
            cache_control = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    let total: usize = chunks.iter().map(|c| c.length).sum();
    let body = if total > max {
        Err(())
    } else {
        let mut body = Vec::with_capacity(total);
        for c in chunks {
            // SAFETY: each chunk is valid during the hook.
            body.extend_from_slice(unsafe { c.bytes() });
        }
        Ok(body)
    };
    (status, cache_control, body)
}

// ---- unit-test stand-ins for Envoy's exports ------------------------------------------------

/// The callbacks Envoy exports, as no-ops, so that the unit-test binary links (Envoy is not
/// there to provide them).
#[cfg(test)]
#[allow(clippy::missing_safety_doc)]
mod test_stubs {
    use super::{Buffer, Header};
    use std::ffi::c_void;

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_log(_: u32, _: Buffer) {}
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_log_enabled(_: u32) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_is_validation_mode() -> bool {
        true
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_get_concurrency() -> u32 {
        2
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_headers_size(
        _: *mut c_void,
        _: u32,
    ) -> usize {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_headers(
        _: *mut c_void,
        _: u32,
        _: *mut Header,
    ) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_set_header(
        _: *mut c_void,
        _: u32,
        _: Buffer,
        _: Buffer,
    ) -> bool {
        true
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_add_header(
        _: *mut c_void,
        _: u32,
        _: Buffer,
        _: Buffer,
    ) -> bool {
        true
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_send_response(
        _: *mut c_void,
        _: u32,
        _: *const Header,
        _: usize,
        _: Buffer,
        _: Buffer,
    ) {
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_continue_decoding(_: *mut c_void) {}
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_body_size(
        _: *mut c_void,
        _: u32,
    ) -> usize {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        _: *mut c_void,
        _: u32,
    ) -> usize {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks(
        _: *mut c_void,
        _: u32,
        _: *mut Buffer,
    ) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        _: *mut c_void,
    ) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_http_callout(
        _: *mut c_void,
        _: *mut u64,
        _: Buffer,
        _: *const Header,
        _: usize,
        _: Buffer,
        _: u64,
    ) -> u32 {
        2
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        _: *mut c_void,
        _: Buffer,
        _: *const Buffer,
        _: usize,
        _: *mut usize,
    ) -> u32 {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        _: *mut c_void,
        _: usize,
        _: *const Buffer,
        _: usize,
        _: u64,
    ) -> u32 {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_increment_counter(
        _: *mut c_void,
        _: usize,
        _: *const Buffer,
        _: usize,
        _: u64,
    ) -> u32 {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_get_worker_index(
        _: *mut c_void,
    ) -> u32 {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        _: *mut c_void,
    ) -> *mut c_void {
        std::ptr::null_mut()
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        _: *mut c_void,
        _: u64,
    ) {
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_delete(_: *mut c_void) {}
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        _: *mut c_void,
    ) -> *mut c_void {
        std::ptr::null_mut()
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        _: *mut c_void,
        _: u64,
    ) {
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        _: *mut c_void,
    ) {
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        _: *mut c_void,
        _: *mut u64,
        _: Buffer,
        _: *const Header,
        _: usize,
        _: Buffer,
        _: u64,
    ) -> u32 {
        2
    }
}
