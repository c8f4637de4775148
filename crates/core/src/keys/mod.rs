//! Key material per issuer: the keys in use, their freshness (`Cache-Control` bounds) and
//! how long they keep serving during an outage (maximum staleness).
//!
//! The store holds keys; [`schedule::KeySchedule`] says when to fetch them and which paused
//! requests wait for which attempt. Neither does IO: hosts carry the fetches. Verifiers are
//! built here, once per key, when a JWKS is installed, never per request.

pub mod schedule;

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

use crate::config::{Config, ConfigError, KeySource};
use crate::crypto::{AlgSet, CryptoProvider, SignatureVerifier};
use crate::jwks::{self, Jwk, Skipped};

/// Identifies one configured issuer (an index into [`Config::issuers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerId(pub usize);

pub(crate) struct StoredKey {
    pub jwk: Jwk,
    pub verifier: Box<dyn SignatureVerifier>,
}

#[derive(Debug, Clone, Copy)]
struct RemotePolicy {
    cache_duration: u64,
    min_cache: u64,
    max_cache: u64,
    max_staleness: u64,
}

struct IssuerKeys {
    algorithms: AlgSet,
    remote: Option<RemotePolicy>,
    keys: Vec<StoredKey>,
    loaded_at: Option<u64>,
    refresh_at: u64,
    generation: u64,
}

/// What a successful install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// Keys now in use.
    pub keys: usize,
    /// Keys that were skipped, with reasons (log these; they are not secret).
    pub skipped: Vec<Skipped>,
    /// Whether the key set differs from the previous one (verified-token caches entries made
    /// with the old set are then void).
    pub changed: bool,
    /// When the keys are due for refresh (host time, seconds).
    pub refresh_at: u64,
}

/// Why an install was refused. The previous keys stay in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallError {
    /// No such issuer.
    UnknownIssuer,
    /// The body is not a JWKS document.
    NotAJwks,
    /// The document holds no key usable for this issuer.
    NoUsableKeys(Vec<Skipped>),
}

impl core::fmt::Display for InstallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InstallError::UnknownIssuer => f.write_str("no such issuer"),
            InstallError::NotAJwks => {
                f.write_str("the document is not a JWKS (an object with a \"keys\" array)")
            }
            InstallError::NoUsableKeys(s) => {
                write!(f, "the JWKS has no usable key ({} skipped", s.len())?;
                if let Some(first) = s.first() {
                    write!(f, "; first: {}", first.reason)?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Where an issuer's keys stand for one request.
pub(crate) enum KeyState<'a> {
    /// Keys are usable.
    Usable(&'a [StoredKey]),
    /// No usable keys: none fetched yet, or the last good fetch is older than the maximum
    /// staleness. The request waits for a fetch, or gets a 503 ([`schedule::KeySchedule`]).
    Missing,
}

/// Keys of every configured issuer.
pub struct KeyStore {
    issuers: Vec<IssuerKeys>,
    provider: Box<dyn CryptoProvider>,
}

impl core::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyStore")
            .field("issuers", &self.issuers.len())
            .finish_non_exhaustive()
    }
}

/// Reads `max-age` from a `Cache-Control` value; `no-store`/`no-cache` count as 0.
pub fn cache_control_max_age(value: &str) -> Option<u64> {
    let mut max_age = None;
    for d in value.split(',') {
        let d = d.trim();
        let (name, arg) = match d.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (d, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(0);
        }
        if name.eq_ignore_ascii_case("max-age") {
            max_age = arg.and_then(|a| a.parse::<u64>().ok());
        }
    }
    max_age
}

impl KeyStore {
    /// Creates the store for a config, installing every inline JWKS. An inline JWKS that is
    /// not a JWKS or has no usable key is a configuration error.
    pub fn new(config: &Config, provider: Box<dyn CryptoProvider>) -> Result<Self, ConfigError> {
        let mut store = KeyStore {
            issuers: Vec::new(),
            provider,
        };
        for (id, iss) in config.issuers() {
            let remote = match &iss.source {
                KeySource::Remote(r) => Some(RemotePolicy {
                    cache_duration: u64::from(r.cache_duration),
                    min_cache: u64::from(r.min_cache_duration),
                    max_cache: u64::from(r.max_cache_duration),
                    max_staleness: u64::from(r.max_staleness),
                }),
                KeySource::Local(_) | KeySource::None => None,
            };
            store.issuers.push(IssuerKeys {
                algorithms: iss.algorithms,
                remote,
                keys: Vec::new(),
                loaded_at: None,
                refresh_at: 0,
                generation: 0,
            });
            if let KeySource::Local(json) = &iss.source {
                let path = config.issuer_path(id);
                store
                    .install_jwks(id, json.as_bytes(), None, 0)
                    .map_err(|e| ConfigError::new(format!("{path}.local_jwks"), format!("{e}")))?;
            }
        }
        Ok(store)
    }

    /// Installs a fetched (or inline) JWKS for an issuer. On error the previous keys stay.
    pub fn install_jwks(
        &mut self,
        id: IssuerId,
        body: &[u8],
        cache_control: Option<&str>,
        now: u64,
    ) -> Result<InstallReport, InstallError> {
        let provider = &self.provider;
        let slot = self
            .issuers
            .get_mut(id.0)
            .ok_or(InstallError::UnknownIssuer)?;
        let (parsed, mut skipped) =
            jwks::parse(body, slot.algorithms).map_err(|_| InstallError::NotAJwks)?;
        let mut keys = Vec::with_capacity(parsed.len());
        for (index, jwk) in parsed.into_iter().enumerate() {
            match provider.verifier(&jwk.key, jwk.alg) {
                Ok(verifier) => {
                    keys.push(StoredKey { jwk, verifier });
                }
                Err(_) => skipped.push(Skipped {
                    index,
                    kid: jwk.kid,
                    reason: "the signature provider refused the key",
                }),
            }
        }
        if keys.is_empty() {
            return Err(InstallError::NoUsableKeys(skipped));
        }
        // The same keys (kid, algorithm, material, in order) keep the generation, and so the
        // cached tokens they verified; any difference starts a new one.
        let same = slot.keys.len() == keys.len()
            && slot.keys.iter().zip(&keys).all(|(a, b)| a.jwk == b.jwk);
        let changed = !same || slot.loaded_at.is_none();
        if changed {
            slot.generation = slot.generation.wrapping_add(1);
        }
        slot.keys = keys;
        slot.loaded_at = Some(now);
        slot.refresh_at = match slot.remote {
            Some(p) => {
                let ttl = cache_control
                    .and_then(cache_control_max_age)
                    .unwrap_or(p.cache_duration)
                    .clamp(p.min_cache, p.max_cache);
                now.saturating_add(ttl)
            }
            None => u64::MAX,
        };
        Ok(InstallReport {
            keys: slot.keys.len(),
            skipped,
            changed,
            refresh_at: slot.refresh_at,
        })
    }

    /// Counter that changes whenever the issuer's key set changes.
    pub fn generation(&self, id: IssuerId) -> u64 {
        self.issuers.get(id.0).map_or(0, |s| s.generation)
    }

    /// When keys were last installed (host time), if ever.
    pub fn loaded_at(&self, id: IssuerId) -> Option<u64> {
        self.issuers.get(id.0).and_then(|s| s.loaded_at)
    }

    /// A key by position, for hosts that verify [`crate::SignatureJob`]s themselves.
    pub fn key(&self, id: IssuerId, index: usize) -> Option<&Jwk> {
        self.issuers
            .get(id.0)
            .and_then(|s| s.keys.get(index))
            .map(|k| &k.jwk)
    }

    /// Number of issuers.
    pub fn len(&self) -> usize {
        self.issuers.len()
    }

    /// Whether there are no issuers (never true for a valid config).
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Whether the issuer's keys can verify tokens at `now` (seconds): inline keys always;
    /// remote keys once fetched, until `max_staleness` after the last good fetch (or their
    /// refresh time, if later).
    pub fn usable(&self, id: IssuerId, now: u64) -> bool {
        matches!(self.state(id, now), KeyState::Usable(_))
    }

    /// When (seconds) the issuer's keys are due for refresh: `None` for inline keys or keys
    /// never fetched.
    pub fn refresh_at(&self, id: IssuerId) -> Option<u64> {
        let s = self.issuers.get(id.0)?;
        (s.remote.is_some() && s.loaded_at.is_some()).then_some(s.refresh_at)
    }

    pub(crate) fn state(&self, id: IssuerId, now: u64) -> KeyState<'_> {
        let Some(s) = self.issuers.get(id.0) else {
            return KeyState::Missing;
        };
        let Some(p) = s.remote else {
            return KeyState::Usable(&s.keys);
        };
        let fresh_enough = s
            .loaded_at
            .is_some_and(|t| now <= t.saturating_add(p.max_staleness).max(s.refresh_at));
        if fresh_enough && !s.keys.is_empty() {
            KeyState::Usable(&s.keys)
        } else {
            KeyState::Missing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        assert_eq!(cache_control_max_age("public, max-age=300"), Some(300));
        assert_eq!(cache_control_max_age("Max-Age=\"60\""), Some(60));
        assert_eq!(cache_control_max_age("no-store"), Some(0));
        assert_eq!(cache_control_max_age("max-age=abc"), None);
        assert_eq!(cache_control_max_age(""), None);
    }
}
