//! JWKS parsing (RFC 7517) and key binding.
//!
//! Every usable key comes out bound to exactly one algorithm (RFC 8725 §3.1): the JWK's own
//! `alg` when present, else the one its type implies (EC curve, Ed25519), else for RSA the
//! issuer's only allowed RSA algorithm, or RS256 (RFC 9068's default) when that is allowed.
//! A key we cannot use is skipped with a reason, never a panic and never a failure of the
//! whole set: one odd key in a provider's JWKS must not take the others down.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::{Map, Value};

use crate::crypto::{AlgSet, Algorithm, Curve, PublicKey};

/// One usable public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, when present.
    pub kid: Option<String>,
    /// The algorithm the key is bound to.
    pub alg: Algorithm,
    /// Key material.
    pub key: PublicKey,
}

/// A key that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Position in the `keys` array.
    pub index: usize,
    /// Its `kid`, if it had a printable one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: &'static str,
}

/// The document as a whole is not a JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksError {
    /// Not JSON, or not an object with a `keys` array.
    NotAJwks,
}

/// Smallest RSA modulus we accept (RFC 7518 §3.3 requires 2048 bits).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus we accept: bounds verification cost.
pub const MAX_RSA_BITS: usize = 8192;
/// Most keys we read from one document.
pub const MAX_KEYS: usize = 64;

/// Parses a JWKS document, keeping the keys usable with `allowed` algorithms.
pub fn parse(json: &[u8], allowed: AlgSet) -> Result<(Vec<Jwk>, Vec<Skipped>), JwksError> {
    let doc: Value = serde_json::from_slice(json).map_err(|_| JwksError::NotAJwks)?;
    let Some(Value::Array(keys)) = doc.get("keys") else {
        return Err(JwksError::NotAJwks);
    };
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (index, k) in keys.iter().enumerate() {
        let kid_for_report = k
            .get("kid")
            .and_then(Value::as_str)
            .filter(|s| s.len() <= 128 && s.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .map(ToString::to_string);
        if index >= MAX_KEYS {
            skipped.push(Skipped {
                index,
                kid: kid_for_report,
                reason: "more keys than the limit of 64",
            });
            continue;
        }
        match key(k, allowed) {
            Ok(jwk) => out.push(jwk),
            Err(reason) => skipped.push(Skipped {
                index,
                kid: kid_for_report,
                reason,
            }),
        }
    }
    Ok((out, skipped))
}

fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, &'static str> {
    match o.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("a member has the wrong JSON type"),
    }
}

fn bytes(o: &Map<String, Value>, name: &str) -> Result<Vec<u8>, &'static str> {
    let s = field(o, name)?.ok_or("a required key parameter is missing")?;
    crate::b64::decode_url(s).ok_or("a key parameter is not unpadded base64url")
}

fn key(v: &Value, allowed: AlgSet) -> Result<Jwk, &'static str> {
    let Value::Object(o) = v else {
        return Err("not a JSON object");
    };
    let kty = field(o, "kty")?.ok_or("no kty")?;
    let kid = field(o, "kid")?.map(ToString::to_string);
    if let Some(u) = field(o, "use")? {
        if u != "sig" {
            return Err("use is not \"sig\"");
        }
    }
    if let Some(ops) = o.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("verify")));
        if !verify {
            return Err("key_ops does not include \"verify\"");
        }
    }
    if o.contains_key("d") || o.contains_key("p") || o.contains_key("k") {
        return Err("contains private or symmetric key material");
    }
    let key = match kty {
        "RSA" => {
            let n = strip_leading_zeros(bytes(o, "n")?);
            let e = strip_leading_zeros(bytes(o, "e")?);
            let bits = n.len() * 8;
            if bits < MIN_RSA_BITS {
                return Err("RSA modulus shorter than 2048 bits");
            }
            if bits > MAX_RSA_BITS {
                return Err("RSA modulus longer than 8192 bits");
            }
            if e.is_empty() || e.len() > 8 {
                return Err("RSA exponent out of range");
            }
            PublicKey::Rsa { n, e }
        }
        "EC" => {
            let (curve, len) = match field(o, "crv")? {
                Some("P-256") => (Curve::P256, 32),
                Some("P-384") => (Curve::P384, 48),
                _ => return Err("unsupported EC curve"),
            };
            let x = bytes(o, "x")?;
            let y = bytes(o, "y")?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinate has the wrong length");
            }
            PublicKey::Ec { curve, x, y }
        }
        "OKP" => {
            if field(o, "crv")? != Some("Ed25519") {
                return Err("unsupported OKP curve");
            }
            let x = bytes(o, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key has the wrong length");
            }
            PublicKey::Ed25519 { x }
        }
        "oct" => return Err("symmetric keys are never used"),
        _ => return Err("unsupported kty"),
    };
    let alg = match field(o, "alg")? {
        Some(name) => {
            let alg = Algorithm::from_name(name).ok_or("unsupported alg")?;
            if !alg.fits(&key) {
                return Err("alg does not match the key type");
            }
            alg
        }
        None => match &key {
            PublicKey::Ec {
                curve: Curve::P256, ..
            } => Algorithm::ES256,
            PublicKey::Ec {
                curve: Curve::P384, ..
            } => Algorithm::ES384,
            PublicKey::Ed25519 { .. } => Algorithm::EdDSA,
            PublicKey::Rsa { .. } => {
                let mut rsa = allowed.iter().filter(|a| a.fits(&key));
                match (rsa.next(), rsa.next()) {
                    (Some(only), None) => only,
                    _ if allowed.contains(Algorithm::RS256) => Algorithm::RS256,
                    _ => return Err("RSA key without alg, and the issuer allows several RSA algorithms but not RS256"),
                }
            }
        },
    };
    if !allowed.contains(alg) {
        return Err("alg is not on the issuer's allow-list");
    }
    Ok(Jwk { kid, alg, key })
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize, fill: u8) -> String {
        crate::b64::encode_url(&alloc::vec![fill; n])
    }

    #[test]
    fn binds_each_key_to_one_algorithm() {
        let doc = alloc::format!(
            r#"{{"keys":[
              {{"kty":"RSA","kid":"r","n":"{n}","e":"AQAB"}},
              {{"kty":"RSA","kid":"p","alg":"PS256","n":"{n}","e":"AQAB"}},
              {{"kty":"EC","kid":"e","crv":"P-256","x":"{x}","y":"{x}"}},
              {{"kty":"OKP","kid":"o","crv":"Ed25519","x":"{x}"}},
              {{"kty":"RSA","kid":"short","n":"{s}","e":"AQAB"}},
              {{"kty":"oct","kid":"h","k":"c2VjcmV0"}},
              {{"kty":"EC","kid":"enc","use":"enc","crv":"P-256","x":"{x}","y":"{x}"}},
              {{"kty":"EC","kid":"bad","crv":"P-256","x":"{x}","y":"!!"}},
              {{"kty":"EC","kid":"wrong","alg":"RS256","crv":"P-256","x":"{x}","y":"{x}"}},
              7
            ]}}"#,
            n = b(256, 0xab),
            s = b(128, 0xab),
            x = b(32, 7)
        );
        let (keys, skipped) = parse(doc.as_bytes(), AlgSet::all()).unwrap();
        let got: Vec<_> = keys
            .iter()
            .map(|k| (k.kid.clone().unwrap(), k.alg))
            .collect();
        assert_eq!(
            got,
            alloc::vec![
                ("r".into(), Algorithm::RS256),
                ("p".into(), Algorithm::PS256),
                ("e".into(), Algorithm::ES256),
                ("o".into(), Algorithm::EdDSA),
            ]
        );
        assert_eq!(skipped.len(), 6);
        assert!(skipped.iter().any(|s| s.reason.contains("2048")));
    }

    #[test]
    fn not_a_jwks() {
        assert_eq!(parse(b"[]", AlgSet::all()), Err(JwksError::NotAJwks));
        assert_eq!(parse(b"garbage", AlgSet::all()), Err(JwksError::NotAJwks));
        assert_eq!(
            parse(br#"{"keys":{}}"#, AlgSet::all()),
            Err(JwksError::NotAJwks)
        );
    }

    #[test]
    fn rsa_without_alg_respects_allow_list() {
        let doc = alloc::format!(
            r#"{{"keys":[{{"kty":"RSA","n":"{}","e":"AQAB"}}]}}"#,
            b(256, 1)
        );
        let mut only_ps = AlgSet::empty();
        only_ps.insert(Algorithm::PS384);
        let (keys, _) = parse(doc.as_bytes(), only_ps).unwrap();
        assert_eq!(keys[0].alg, Algorithm::PS384);
        let mut two = AlgSet::empty();
        two.insert(Algorithm::PS384);
        two.insert(Algorithm::PS256);
        let (keys, skipped) = parse(doc.as_bytes(), two).unwrap();
        assert!(keys.is_empty());
        assert_eq!(skipped.len(), 1);
    }
}
