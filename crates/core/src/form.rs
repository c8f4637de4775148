//! `application/x-www-form-urlencoded` encoding (for the introspection request and the
//! client_secret_basic credentials, RFC 6749 §2.3.1).

use alloc::format;
use alloc::string::String;

/// The `Authorization` value of client_secret_basic (RFC 6749 §2.3.1): each part
/// form-encoded, then `id:secret` in base64.
pub(crate) fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", encode(client_id), encode(client_secret));
    format!("Basic {}", crate::b64::encode(pair.as_bytes()))
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 15] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    out
}

const HEX: [u8; 16] = *b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    #[test]
    fn encodes() {
        assert_eq!(super::encode("a+b/c=d e~"), "a%2Bb%2Fc%3Dd%20e~");
    }

    #[test]
    fn basic_credentials_encode_each_part_first() {
        // RFC 6749 §2.3.1: "a:b" / "c d" -> "a%3Ab:c%20d" in base64.
        assert_eq!(
            super::basic_authorization("a:b", "c d"),
            "Basic YSUzQWI6YyUyMGQ="
        );
    }
}
