//! Claim checks other than the audience: time (`exp` required, `nbf`), `typ`, and the
//! granted scopes (`scope` as a space-separated string, or `scp` as an array or string).
//!
//! Numeric dates must be non-negative JSON integers: a string or a fraction is refused
//! rather than guessed at, so that every component reading the token agrees on its meaning.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::Value;

use crate::config::TypPolicy;

/// Why the claims are not acceptable. Each maps to a fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// `exp` is absent.
    MissingExp,
    /// `exp` is in the past beyond the leeway.
    Expired,
    /// `nbf` is in the future beyond the leeway.
    NotYetValid,
    /// A numeric date is not a non-negative integer.
    BadNumericDate,
    /// `typ` is not `at+jwt` where that is required.
    Typ,
    /// `iss` is absent or not a string.
    MissingIssuer,
    /// `scope`/`scp` has the wrong type.
    BadScope,
}

impl ClaimError {
    /// The fixed description sent to the client.
    pub fn description(self) -> &'static str {
        match self {
            ClaimError::MissingExp => "The access token has no expiry",
            ClaimError::Expired => "The access token has expired",
            ClaimError::NotYetValid => "The access token is not valid yet",
            ClaimError::BadNumericDate => "The access token has a malformed time claim",
            ClaimError::Typ => "The access token type is not at+jwt",
            ClaimError::MissingIssuer => "The access token has no issuer",
            ClaimError::BadScope => "The access token scope claim is malformed",
        }
    }
}

fn numeric_date(v: Option<&Value>) -> Result<Option<u64>, ClaimError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(ClaimError::BadNumericDate),
        Some(_) => Err(ClaimError::BadNumericDate),
    }
}

/// Checks `exp` (required) and `nbf` against `now` with `skew` seconds of leeway, returning
/// `exp`.
pub fn check_time(
    exp: Option<&Value>,
    nbf: Option<&Value>,
    iat: Option<&Value>,
    now: u64,
    skew: u64,
) -> Result<u64, ClaimError> {
    let exp = numeric_date(exp)?.ok_or(ClaimError::MissingExp)?;
    let nbf = numeric_date(nbf)?;
    numeric_date(iat)?;
    if now >= exp.saturating_add(skew) {
        return Err(ClaimError::Expired);
    }
    if let Some(nbf) = nbf {
        if now.saturating_add(skew) < nbf {
            return Err(ClaimError::NotYetValid);
        }
    }
    Ok(exp)
}

/// Checks the JOSE `typ` against the issuer's policy (RFC 9068 §4, case-insensitive).
pub fn check_typ(typ: Option<&str>, policy: TypPolicy) -> Result<(), ClaimError> {
    match policy {
        TypPolicy::Any => Ok(()),
        TypPolicy::AtJwt => match typ {
            Some(t)
                if t.eq_ignore_ascii_case("at+jwt")
                    || t.eq_ignore_ascii_case("application/at+jwt") =>
            {
                Ok(())
            }
            _ => Err(ClaimError::Typ),
        },
    }
}

/// The granted scopes: `scope` (space-separated string, RFC 9068 §2.2.3) or `scp` (array of
/// strings, or a string, as some providers send).
pub fn scopes(scope: Option<&Value>, scp: Option<&Value>) -> Result<Vec<String>, ClaimError> {
    let mut out = Vec::new();
    match scope {
        None => {}
        Some(Value::String(s)) => out.extend(
            s.split(' ')
                .filter(|x| !x.is_empty())
                .map(ToString::to_string),
        ),
        Some(_) => return Err(ClaimError::BadScope),
    }
    match scp {
        None => {}
        Some(Value::String(s)) => out.extend(
            s.split(' ')
                .filter(|x| !x.is_empty())
                .map(ToString::to_string),
        ),
        Some(Value::Array(a)) => {
            for v in a {
                let s = v.as_str().ok_or(ClaimError::BadScope)?;
                out.push(s.to_string());
            }
        }
        Some(_) => return Err(ClaimError::BadScope),
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn time() {
        let t =
            |exp: Value, nbf: Option<Value>| check_time(Some(&exp), nbf.as_ref(), None, NOW, 60);
        assert_eq!(t(json!(NOW + 10), None), Ok(NOW + 10));
        assert_eq!(t(json!(NOW - 30), None), Ok(NOW - 30));
        assert_eq!(t(json!(NOW - 60), None), Err(ClaimError::Expired));
        assert_eq!(t(json!(NOW + 10), Some(json!(NOW + 30))), Ok(NOW + 10));
        assert_eq!(
            t(json!(NOW + 100), Some(json!(NOW + 61))),
            Err(ClaimError::NotYetValid)
        );
        assert_eq!(
            t(json!("1800000100"), None),
            Err(ClaimError::BadNumericDate)
        );
        assert_eq!(t(json!(1.8e9), None), Err(ClaimError::BadNumericDate));
        assert_eq!(t(json!(-1), None), Err(ClaimError::BadNumericDate));
        assert_eq!(
            check_time(None, None, None, NOW, 60),
            Err(ClaimError::MissingExp)
        );
        assert_eq!(
            check_time(Some(&json!(u64::MAX)), None, None, NOW, 60),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn typ() {
        assert!(check_typ(Some("at+jwt"), TypPolicy::AtJwt).is_ok());
        assert!(check_typ(Some("AT+JWT"), TypPolicy::AtJwt).is_ok());
        assert!(check_typ(Some("application/at+jwt"), TypPolicy::AtJwt).is_ok());
        assert!(check_typ(Some("JWT"), TypPolicy::AtJwt).is_err());
        assert!(check_typ(None, TypPolicy::AtJwt).is_err());
        assert!(check_typ(Some("JWT"), TypPolicy::Any).is_ok());
    }

    #[test]
    fn scope_claims() {
        assert_eq!(scopes(Some(&json!("b a  a")), None).unwrap(), ["a", "b"]);
        assert_eq!(scopes(None, Some(&json!(["x", "y"]))).unwrap(), ["x", "y"]);
        assert_eq!(scopes(None, Some(&json!("x y"))).unwrap(), ["x", "y"]);
        assert_eq!(scopes(None, None).unwrap(), Vec::<String>::new());
        assert_eq!(scopes(Some(&json!(["a"])), None), Err(ClaimError::BadScope));
        assert_eq!(scopes(None, Some(&json!([1]))), Err(ClaimError::BadScope));
    }
}
