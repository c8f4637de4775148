//! Compact JWS parsing: three base64url segments, a JOSE header we understand, a JSON claims
//! set. Nothing here trusts the token: `jku`, `x5u`, `x5c` and an embedded `jwk` are never
//! read, `kid` is only a label to match against configured keys, and the algorithm must be
//! one we support (then also on the issuer's allow-list, checked by the gateway).

use alloc::string::String;
use alloc::vec::Vec;

use serde_json::Value;

use crate::crypto::Algorithm;
use crate::json::StrictObject;

/// A parsed, not yet verified, compact JWS.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The compact token.
    pub token: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The algorithm named by the header.
    pub alg: Algorithm,
    /// `kid`, when present.
    pub kid: Option<String>,
    /// `typ`, when present.
    pub typ: Option<String>,
    /// The claims set.
    pub(crate) claims: StrictObject,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Why a token is not a JWS we accept. Each maps to one fixed `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsError {
    /// Not three dot-separated segments.
    NotCompactJws,
    /// Five segments: an encrypted token.
    Encrypted,
    /// A segment is not unpadded base64url.
    Base64,
    /// The header is not a JSON object with unique names, or `alg`/`kid`/`typ` have the
    /// wrong type.
    Header,
    /// The payload is not a JSON object with unique names.
    Payload,
    /// `alg: none` in any spelling, or an empty signature.
    Unsigned,
    /// An HMAC algorithm: a resource server only holds public keys.
    Symmetric,
    /// An algorithm we do not support.
    UnsupportedAlgorithm,
    /// A `crit` header: we understand no extensions, so any critical one is refused.
    Critical,
}

impl JwsError {
    /// The fixed description sent to the client.
    pub fn description(self) -> &'static str {
        match self {
            JwsError::NotCompactJws => "The access token is not a signed JWT",
            JwsError::Encrypted => "Encrypted access tokens are not accepted",
            JwsError::Base64 => "The access token is not valid base64url",
            JwsError::Header => "The access token header is malformed",
            JwsError::Payload => "The access token claims are malformed",
            JwsError::Unsigned => "Unsigned access tokens are not accepted",
            JwsError::Symmetric => "Symmetric signature algorithms are not accepted",
            JwsError::UnsupportedAlgorithm => {
                "The access token signature algorithm is not supported"
            }
            JwsError::Critical => "The access token uses an unsupported critical header",
        }
    }
}

fn b64(segment: &str) -> Result<Vec<u8>, JwsError> {
    crate::b64::decode_url(segment).ok_or(JwsError::Base64)
}

/// Longest `kid` we consider a plausible key id. Longer ones are refused without lookup.
pub const MAX_KID_LEN: usize = 256;

/// Parses a compact JWS. The caller has already bounded the token's length.
pub fn parse(token: &str) -> Result<Jws<'_>, JwsError> {
    let mut parts = token.splitn(6, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::NotCompactJws);
    };
    match parts.count() {
        0 => {}
        2 => return Err(JwsError::Encrypted),
        _ => return Err(JwsError::NotCompactJws),
    }
    if h.is_empty() || p.is_empty() {
        return Err(JwsError::NotCompactJws);
    }
    let header_bytes = b64(h)?;
    let header = StrictObject::from_slice(&header_bytes).ok_or(JwsError::Header)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(JwsError::Header),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(JwsError::Unsigned);
    }
    if alg.len() >= 2 && alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("hs")) {
        return Err(JwsError::Symmetric);
    }
    let alg = Algorithm::from_name(alg).ok_or(JwsError::UnsupportedAlgorithm)?;
    if header.get("crit").is_some() {
        return Err(JwsError::Critical);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwsError::Header),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(JwsError::Header),
    };
    if s.is_empty() {
        return Err(JwsError::Unsigned);
    }
    let signature = b64(s)?;
    let payload = b64(p)?;
    let claims = StrictObject::from_slice(&payload).ok_or(JwsError::Payload)?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(JwsError::NotCompactJws)?;
    Ok(Jws {
        token,
        signing_input,
        alg,
        kid,
        typ,
        claims,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn enc(s: &str) -> String {
        crate::b64::encode_url(s.as_bytes())
    }

    fn tok(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", enc(header), enc(payload), enc("sig"))
    }

    #[test]
    fn accepts_well_formed() {
        let t = tok(
            r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"iss":"a"}"#,
        );
        let j = parse(&t).unwrap();
        assert_eq!(j.alg, Algorithm::RS256);
        assert_eq!(j.kid.as_deref(), Some("k1"));
        assert_eq!(j.typ.as_deref(), Some("at+jwt"));
        assert_eq!(j.signature, b"sig");
        assert!(t.starts_with(j.signing_input));
    }

    #[test]
    fn refuses_what_it_must() {
        let cases = [
            (tok(r#"{"alg":"none"}"#, "{}"), JwsError::Unsigned),
            (tok(r#"{"alg":"NoNe"}"#, "{}"), JwsError::Unsigned),
            (tok(r#"{"alg":"HS256"}"#, "{}"), JwsError::Symmetric),
            (
                tok(r#"{"alg":"rs256"}"#, "{}"),
                JwsError::UnsupportedAlgorithm,
            ),
            (
                tok(r#"{"alg":"RS256","alg":"none"}"#, "{}"),
                JwsError::Header,
            ),
            (
                tok(r#"{"alg":"RS256","crit":["exp"]}"#, "{}"),
                JwsError::Critical,
            ),
            (tok(r#"{"alg":"RS256","kid":7}"#, "{}"), JwsError::Header),
            (
                tok(r#"{"alg":"RS256"}"#, r#"{"a":1,"a":2}"#),
                JwsError::Payload,
            ),
            (tok(r#"{"alg":"RS256"}"#, r#"[1]"#), JwsError::Payload),
            (tok(r#"["RS256"]"#, "{}"), JwsError::Header),
            (
                format!("{}.{}.", enc(r#"{"alg":"RS256"}"#), enc("{}")),
                JwsError::Unsigned,
            ),
            ("a.b.c.d.e".into(), JwsError::Encrypted),
            ("a.b".into(), JwsError::NotCompactJws),
            ("a.b.c.d".into(), JwsError::NotCompactJws),
            ("a.b.c.d.e.f.g".into(), JwsError::NotCompactJws),
            (
                format!("{}=.{}.{}", enc(r#"{"alg":"RS256"}"#), enc("{}"), enc("s")),
                JwsError::Base64,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(parse(&t).err(), Some(want), "{t}");
        }
    }
}
