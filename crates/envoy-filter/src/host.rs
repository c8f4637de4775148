//! The few host calls the filter makes, wrapped so that none can panic on request data.
//!
//! The SDK's string getters (`get_http_request_headers`, …) `unwrap` a UTF-8 conversion, so
//! a client sending one `obs-text` byte in a header value would kill the VM and fail every
//! request on that worker. Everything here reads bytes and converts lossily: a mangled
//! `Authorization` or `Origin` value is refused by the core like any other bad value.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

/// Milliseconds since the Unix epoch, by the host's clock (0 if the host has none).
///
/// Read with the raw host call, not the SDK's `get_current_time`: that one panics on a
/// status other than `Ok` (which would kill the VM), and goes through `SystemTime`
/// (`duration_since`, a 128-bit `as_millis`) for a number we only divide.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // one host call writing one u64 we own
pub(crate) fn now_ms() -> u64 {
    let mut nanos: u64 = 0;
    // SAFETY: the host writes one u64 through the pointer, which is valid for the call.
    match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
        proxy_wasm::types::Status::Ok => nanos / 1_000_000,
        _ => 0,
    }
}

/// Native builds (unit tests) have no host: the system clock.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
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

/// A header map as the host serialised it (proxy-wasm ABI 0.2): a `u32` pair count, a `u32`
/// name length and value length per pair, then each name and each value followed by a NUL;
/// little-endian.
///
/// Read in one host call into one buffer and looked at in place. The SDK's
/// `get_map_bytes` copies every name and value into a `String` and a `Vec` of its own: on a
/// cache hit those ~20 allocations and copies were most of the filter's own Wasm time. (It
/// also panics on a map it cannot parse or a name that is not UTF-8; this never does.)
pub(crate) struct HeaderMap(Vec<u8>);

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
extern "C" {
    // Declared exactly as the SDK declares it (proxy-wasm 0.2, `hostcalls.rs`).
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> proxy_wasm::types::Status;
    // Likewise (`hostcalls.rs`: `get_current_time`).
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> proxy_wasm::types::Status;
}

impl HeaderMap {
    /// Reads a whole map (empty if the host has none for this context).
    #[cfg(target_arch = "wasm32")]
    #[allow(unsafe_code)] // one host call; the buffer is the SDK's own allocation
    pub(crate) fn read(map: MapType) -> HeaderMap {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer to `size` bytes it obtained from this module's
        // `proxy_on_memory_allocate` (the SDK's allocator: a boxed slice of exactly `size`
        // bytes), which is ours to free; that is what the SDK's own `get_map_bytes` does.
        unsafe {
            match proxy_get_header_map_pairs(map, &mut data, &mut size) {
                proxy_wasm::types::Status::Ok if !data.is_null() => {
                    HeaderMap(Vec::from_raw_parts(data, size, size))
                }
                _ => HeaderMap(Vec::new()),
            }
        }
    }

    /// Native builds (unit tests) have no host.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn read(_map: MapType) -> HeaderMap {
        HeaderMap(Vec::new())
    }

    /// The table of lengths and the bytes after it (every name and value, each followed by
    /// a NUL); `None` if the buffer cannot hold the count it starts with (so that nothing is
    /// ever allocated on a lie). An empty buffer is an empty map.
    fn layout(&self) -> Option<(&[u8], &[u8])> {
        let b = self.0.as_slice();
        if b.is_empty() {
            return Some((&[], &[]));
        }
        let start = word(b, 0)?.checked_mul(8)?.checked_add(4)?;
        Some((b.get(4..start)?, b.get(start..)?))
    }

    /// Calls `each` with every pair's name and value, in order, as ranges of the bytes after
    /// the table of lengths (unchecked: the caller's `get` checks them). `None` if a length
    /// overflows or `each` refused a pair.
    fn walk(
        lengths: &[u8],
        mut each: impl FnMut(Range<usize>, Range<usize>) -> Option<()>,
    ) -> Option<()> {
        let mut at = 0usize;
        for lens in lengths.chunks_exact(8) {
            let name = at..at.checked_add(word(lens, 0)?)?;
            let value_at = name.end.checked_add(1)?;
            let value = value_at..value_at.checked_add(word(lens, 4)?)?;
            at = value.end.checked_add(1)?;
            each(name, value)?;
        }
        Some(())
    }

    /// Every pair, in order, repeats kept; `None` if the buffer is not a well-formed map.
    pub(crate) fn pairs(&self) -> Option<Vec<(&[u8], &[u8])>> {
        let (lengths, bytes) = self.layout()?;
        let mut out = Vec::with_capacity(lengths.len() / 8);
        Self::walk(lengths, |name, value| {
            out.push((bytes.get(name)?, bytes.get(value)?));
            Some(())
        })?;
        Some(out)
    }

    /// The request head as text, when the map is well formed and all its names and values
    /// are UTF-8 (from Envoy, always): the pseudo-headers the core reads (`:method`,
    /// `:scheme`, `:authority`, `:path`, in that order; `""` when absent) and every other
    /// header, in order, repeats kept. `None` otherwise, and then [`HeaderMap::pairs`] says
    /// whether the map is malformed or only not UTF-8.
    ///
    /// The text is checked in one pass over every name and value at once (they lie back to
    /// back, each followed by a NUL), and each is then a slice of it: on a cache hit, one
    /// UTF-8 check per name and value was the largest single cost of the filter's own Wasm.
    pub(crate) fn text_head(&self) -> Option<TextHead<'_>> {
        let (lengths, bytes) = self.layout()?;
        let text = text(bytes)?;
        let mut pseudo = [""; 4];
        let mut headers = Vec::with_capacity(lengths.len() / 8);
        Self::walk(lengths, |name, value| {
            let (name, value) = (text.get(name)?, text.get(value)?);
            match place(name.as_bytes()) {
                Place::Header => headers.push((name, value)),
                Place::Pseudo(i) => *pseudo.get_mut(i)? = value,
                Place::Dropped => {}
            }
            Some(())
        })?;
        Some((pseudo, headers))
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> HeaderMap {
        HeaderMap(bytes)
    }

    /// The map the host would hand over for `pairs` (tests).
    #[cfg(test)]
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn from_pairs(pairs: &[(&[u8], &[u8])]) -> HeaderMap {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend((n.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend(*n);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        HeaderMap(out)
    }
}

/// `bytes` as text, if they are UTF-8.
///
/// A header block from Envoy is ASCII, and most of it is the token, so ASCII is checked
/// first, sixteen bytes at a time (one SIMD word in Wasm): `from_utf8`'s own ASCII scan
/// goes a `usize` at a time, four bytes in Wasm, and in a cache hit's profile it cost as
/// much as the cache's map lookup. (Node, 1,000 tokens: this and the cache's single
/// lookup took 40-60 ns off the ~1.2 µs of a hit's Wasm.)
fn text(bytes: &[u8]) -> Option<&str> {
    let mut rest = bytes;
    let mut all = 0u128;
    while let Some((word, r)) = rest.split_first_chunk::<16>() {
        all |= u128::from_ne_bytes(*word);
        rest = r;
    }
    for b in rest {
        all |= u128::from(*b);
    }
    if all & u128::from_ne_bytes([0x80; 16]) == 0 {
        // SAFETY: no byte has its high bit set, so every byte is ASCII, and ASCII is UTF-8.
        #[allow(unsafe_code)]
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// A request head as [`HeaderMap::text_head`] reads it: `:method`, `:scheme`, `:authority`
/// and `:path` (`""` when absent), and every other header in order.
pub(crate) type TextHead<'a> = ([&'a str; 4], Vec<(&'a str, &'a str)>);

/// Where a request header goes in the core's view of the request.
pub(crate) enum Place {
    /// One of the four pseudo-headers the core reads: its place (`:method`, `:scheme`,
    /// `:authority`, `:path`).
    Pseudo(usize),
    /// Another pseudo-header (`:protocol`): the core does not read it.
    Dropped,
    /// A header.
    Header,
}

/// Where the header called `name` goes.
pub(crate) fn place(name: &[u8]) -> Place {
    match name {
        b":method" => Place::Pseudo(0),
        b":scheme" => Place::Pseudo(1),
        b":authority" => Place::Pseudo(2),
        b":path" => Place::Pseudo(3),
        [b':', ..] => Place::Dropped,
        _ => Place::Header,
    }
}

/// The little-endian `u32` at `at` in `b`, if there is one.
fn word(b: &[u8], at: usize) -> Option<usize> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    usize::try_from(u32::from_le_bytes(bytes.try_into().ok()?)).ok()
}

/// A header name or value as text: bytes that are not UTF-8 (`obs-text`) become U+FFFD, and
/// the core refuses a value so mangled like any other bad value.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every header of a map, repeats kept, names and values converted lossily (none if the
/// host's map is malformed).
pub(crate) fn headers(map: MapType) -> Vec<(String, String)> {
    HeaderMap::read(map)
        .pairs()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (lossy(k), lossy(v)))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::{HeaderMap, TextHead};

    fn serialise(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        HeaderMap::from_pairs(pairs).0
    }

    #[test]
    fn reads_every_pair_in_order_with_repeats_and_binary_values() {
        let pairs: &[(&[u8], &[u8])] = &[
            (b":method", b"GET"),
            (b"authorization", b"Bearer a"),
            (b"authorization", b"Bearer b"),
            (b"x-empty", b""),
            (b"x-obs", b"caf\xe9"),
        ];
        let map = HeaderMap::from_bytes(serialise(pairs));
        assert_eq!(map.pairs().unwrap(), pairs.to_vec());
        assert_eq!(HeaderMap::from_bytes(Vec::new()).pairs().unwrap(), vec![]);
        assert_eq!(
            HeaderMap::from_bytes(serialise(&[])).pairs().unwrap(),
            vec![]
        );
    }

    /// Random buffers, and well-formed maps with random bytes flipped: never a panic, and a
    /// map that parses holds exactly the pairs its lengths say, inside the buffer.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let good = serialise(&[(b"authorization", b"Bearer t"), (b"x", b""), (b"", b"v")]);
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 64) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut b = good.clone();
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
                b
            };
            let total = bytes.len();
            let map = HeaderMap::from_bytes(bytes);
            if let Some(pairs) = map.pairs() {
                let used: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
                assert!(used <= total);
            }
            // The text view agrees with the byte view whenever it has one.
            if let Some((pseudo, headers)) = map.text_head() {
                assert_eq!(text_head_of(&map.pairs().unwrap()), (pseudo, headers));
            }
        }
    }

    /// What `text_head` must give for `pairs`, spelled out the slow way.
    fn text_head_of<'a>(pairs: &[(&'a [u8], &'a [u8])]) -> TextHead<'a> {
        let mut pseudo = [""; 4];
        let mut headers = Vec::new();
        for (n, v) in pairs {
            let (n, v) = (
                std::str::from_utf8(n).unwrap(),
                std::str::from_utf8(v).unwrap(),
            );
            match n {
                ":method" => pseudo[0] = v,
                ":scheme" => pseudo[1] = v,
                ":authority" => pseudo[2] = v,
                ":path" => pseudo[3] = v,
                _ if n.starts_with(':') => {}
                _ => headers.push((n, v)),
            }
        }
        (pseudo, headers)
    }

    #[test]
    fn the_text_head_splits_the_pseudo_headers_off_and_keeps_the_rest_in_order() {
        let pairs: &[(&[u8], &[u8])] = &[
            (b":authority", b"mcp.example.com"),
            (b":path", b"/mcp?x=1"),
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":protocol", b"websocket"),
            (b"authorization", b"Bearer a"),
            (b"authorization", b"Bearer b"),
            (b"x-empty", b""),
            (b"x-caf\xc3\xa9", b"caf\xc3\xa9"),
        ];
        let map = HeaderMap::from_bytes(serialise(pairs));
        let (pseudo, headers) = map.text_head().unwrap();
        assert_eq!(pseudo, ["POST", "https", "mcp.example.com", "/mcp?x=1"]);
        assert_eq!(
            headers,
            [
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b"),
                ("x-empty", ""),
                ("x-caf\u{e9}", "caf\u{e9}"),
            ]
        );
        assert_eq!(text_head_of(pairs), (pseudo, headers));
        // Empty maps, with or without a count.
        assert_eq!(
            HeaderMap::from_bytes(Vec::new()).text_head().unwrap().1,
            vec![]
        );
        assert_eq!(
            HeaderMap::from_bytes(serialise(&[])).text_head().unwrap().1,
            vec![]
        );
        // Not UTF-8 anywhere (a name, a value, a lone continuation byte): no text view, and
        // the byte view still reads it.
        for bad in [
            &[(&b"x-obs"[..], &b"caf\xe9"[..])][..],
            &[(b"x\xff", b"v")],
            &[(b"x", b"\x80")],
        ] {
            let map = HeaderMap::from_bytes(serialise(bad));
            assert_eq!(map.text_head(), None);
            assert_eq!(map.pairs().unwrap(), bad.to_vec());
        }
    }

    /// The sixteen-byte ASCII scan agrees with `from_utf8` wherever a non-ASCII byte
    /// lies: in a whole word or in the tail, valid UTF-8 or not.
    #[test]
    fn text_agrees_with_from_utf8_wherever_a_high_byte_lies() {
        for len in 0..50 {
            let ascii: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(super::text(&ascii), std::str::from_utf8(&ascii).ok());
            for at in 0..len {
                for high in [&[0xc3, 0xa9][..], &[0xff], &[0x80], &[0xe2, 0x82]] {
                    let mut b = ascii.clone();
                    b.splice(at..at, high.iter().copied());
                    let want = std::str::from_utf8(&b).ok();
                    assert_eq!(super::text(&b), want, "{len} {at} {high:?}");
                    assert_eq!(want.is_some(), high == [0xc3, 0xa9]);
                }
            }
        }
    }

    #[test]
    fn a_malformed_map_is_refused_without_panicking() {
        let good = serialise(&[(b"a", b"1"), (b"bb", b"22")]);
        // Every truncation, a count the buffer cannot hold, lengths past the end.
        for cut in 1..good.len() - 1 {
            let map = HeaderMap::from_bytes(good[..cut].to_vec());
            assert_eq!(map.pairs(), None, "{cut}");
            assert_eq!(map.text_head(), None, "{cut}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderMap::from_bytes(huge).pairs(), None);
        let mut long = good.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderMap::from_bytes(long).pairs(), None);
    }
}
