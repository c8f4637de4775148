//! Base64 (RFC 4648 §4) and base64url (§5), strict: the only spelling of each byte string is
//! accepted, as a verifier must (a token whose segments decode the same from two spellings
//! would let one signature cover two texts).
//!
//! * [`decode_url`]: base64url without padding (JWS segments, JWK members, RFC 7515 §2):
//!   no `=`, no line breaks, and the unused low bits of the last character zero;
//! * [`decode`]: standard base64 with canonical padding (the MCP `=?base64?…?=` header
//!   sentinel): `=` only to fill the last quad, the unused bits zero;
//! * [`encode_url`] and [`encode`]: the inverse spellings.
//!
//! Ours rather than a crate's: every uncached token decodes three segments here, and the
//! Envoy filter has to stay within its size budget. Tested against the `base64` crate
//! (property tests and the `b64` fuzz target).

use alloc::string::String;
use alloc::vec::Vec;

/// The table value of a byte outside the alphabet.
const INVALID: u8 = 0xff;

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The value of each byte in `alphabet`, [`INVALID`] for every other byte. Evaluated at
/// compile time (an index out of range would stop the build, never a request).
#[allow(clippy::indexing_slicing)]
const fn table(alphabet: &[u8; 64]) -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
}

static STANDARD_VALUES: [u8; 256] = table(STANDARD);
static URL_VALUES: [u8; 256] = table(URL);

/// Decodes unpadded base64url; `None` unless `text` is the canonical spelling of its bytes.
pub fn decode_url(text: &str) -> Option<Vec<u8>> {
    decode_with(text.as_bytes(), &URL_VALUES)
}

/// Decodes standard base64 with padding; `None` unless `text` is the canonical spelling of
/// its bytes (padding present exactly when the last quad needs it).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    if b.len() % 4 != 0 {
        return None;
    }
    let unpadded = match b {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => b,
    };
    decode_with(unpadded, &STANDARD_VALUES)
}

/// Encodes as unpadded base64url.
pub fn encode_url(bytes: &[u8]) -> String {
    encode_with(bytes, URL, false)
}

/// Encodes as standard base64 with padding.
pub fn encode(bytes: &[u8]) -> String {
    encode_with(bytes, STANDARD, true)
}

/// The value of one character (its high bits set when it is not in the alphabet).
fn value(values: &[u8; 256], c: u8) -> u8 {
    values.get(usize::from(c)).copied().unwrap_or(INVALID)
}

/// Decodes characters of one alphabet without padding.
fn decode_with(b: &[u8], values: &[u8; 256]) -> Option<Vec<u8>> {
    // A lone last character carries 6 bits: less than a byte.
    if b.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3 + 2);
    let mut quads = b.chunks_exact(4);
    for quad in &mut quads {
        let [w, x, y, z] = <[u8; 4]>::try_from(quad).ok()?;
        let (w, x, y, z) = (
            value(values, w),
            value(values, x),
            value(values, y),
            value(values, z),
        );
        // Every value of the alphabet is below 64; INVALID is not.
        if (w | x | y | z) & 0xc0 != 0 {
            return None;
        }
        let n = u32::from(w) << 18 | u32::from(x) << 12 | u32::from(y) << 6 | u32::from(z);
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    match *quads.remainder() {
        [] => {}
        [w, x] => {
            let (w, x) = (value(values, w), value(values, x));
            // The low 4 bits of the second character are not part of the byte: zero.
            if (w | x) & 0xc0 != 0 || x & 0x0f != 0 {
                return None;
            }
            out.push(w << 2 | x >> 4);
        }
        [w, x, y] => {
            let (w, x, y) = (value(values, w), value(values, x), value(values, y));
            // The low 2 bits of the third character are not part of the bytes: zero.
            if (w | x | y) & 0xc0 != 0 || y & 0x03 != 0 {
                return None;
            }
            let n = u32::from(w) << 10 | u32::from(x) << 4 | u32::from(y) >> 2;
            out.extend_from_slice(&n.to_be_bytes()[2..]);
        }
        _ => return None,
    }
    Some(out)
}

fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let char_of = |sextet: u32| -> char {
        // `sextet & 63` is below 64, the alphabet's length.
        char::from(
            alphabet
                .get((sextet & 63) as usize)
                .copied()
                .unwrap_or(b'A'),
        )
    };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let mut triples = bytes.chunks_exact(3);
    for t in &mut triples {
        let n = t.iter().fold(0u32, |n, b| n << 8 | u32::from(*b));
        for shift in [18, 12, 6, 0] {
            out.push(char_of(n >> shift));
        }
    }
    match *triples.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(char_of(n >> 18));
            out.push(char_of(n >> 12));
            if pad {
                out.push_str("==");
            }
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.push(char_of(n >> 18));
            out.push(char_of(n >> 12));
            out.push(char_of(n >> 6));
            if pad {
                out.push('=');
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use ::base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
    use ::base64::Engine as _;
    use proptest::prelude::*;

    #[test]
    fn known_answers() {
        // RFC 4648 §10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
            let url = coded.trim_end_matches('=');
            assert_eq!(encode_url(plain.as_bytes()), url);
            assert_eq!(decode_url(url).unwrap(), plain.as_bytes());
        }
        assert_eq!(decode_url("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode("+/8=").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn refuses_every_other_spelling() {
        // "A4", "AAB": one unused bit set (the highest of four; the lowest of two).
        for bad in [
            "Zg=", "Zg==", "Zh", "A4", "AAB", "Z", "Zm9vY", "Zm9v+", "Zm9v/", "Zm 9v", "Zm9v\n",
            "é",
        ] {
            assert_eq!(decode_url(bad), None, "{bad:?}");
        }
        for bad in [
            "Zg", "Zh==", "A4==", "AAB=", "Zm9=", "Zg=a", "Z===", "====", "Zm9v-_8=", "Zm9v=Zm9",
            "Zg==Zg==",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn encodes_as_the_base64_crate_does(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(encode(&bytes), B64.encode(&bytes));
            prop_assert_eq!(encode_url(&bytes), B64URL.encode(&bytes));
            prop_assert_eq!(decode(&encode(&bytes)), Some(bytes.clone()));
            prop_assert_eq!(decode_url(&encode_url(&bytes)), Some(bytes));
        }

        #[test]
        fn decodes_as_the_base64_crate_does(text in "[A-Za-z0-9+/=_\\-]{0,24}") {
            prop_assert_eq!(decode(&text), B64.decode(&text).ok());
            prop_assert_eq!(decode_url(&text), B64URL.decode(&text).ok());
        }
    }
}
