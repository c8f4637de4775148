//! The verified-token cache.
//!
//! MCP clients reuse one access token for many requests, and a signature check costs far more
//! than everything else a request needs, so a verified token is remembered, keyed by the
//! SHA-256 of the token (the token itself is never stored). An entry holds only what was
//! checked once and for all (signature, issuer, audience, `typ`, `nbf`); what depends on the
//! request or the time is checked on every hit: expiry, the required scopes, and that the
//! issuer's keys are still the ones that verified it (a key rotation voids entries).
//!
//! Bounded: when full, expired entries go first, then the oldest. Hosts own the cache (one
//! per Envoy worker VM, one per Worker isolate) and hand it to [`crate::Gateway::decide`].

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::http::Identity;
use crate::keys::IssuerId;

/// The cache key: SHA-256 of the compact token.
pub type TokenHash = [u8; 32];

/// Hashes a token for the cache.
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// What a verified token established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Resource (index into the config's resources) it was verified for.
    pub resource: usize,
    /// Issuer that signed it.
    pub issuer: IssuerId,
    /// That issuer's key generation when its signature was verified; `None` when it was
    /// introspected (then no key change voids it, only its expiry and the cache bound).
    pub generation: Option<u64>,
    /// `exp` plus the issuer's leeway: the entry is void from this time on.
    pub expires_at: u64,
    /// The verified identity.
    pub identity: Identity,
    /// Headers derived from claims (`claim_to_headers`).
    pub claim_headers: Vec<(String, String)>,
}

/// A bounded, expiry-aware map from token hash to [`VerifiedToken`].
#[derive(Debug, Clone)]
pub struct TokenCache {
    max_entries: usize,
    map: BTreeMap<TokenHash, VerifiedToken>,
    order: VecDeque<TokenHash>,
    hits: u64,
    misses: u64,
}

impl TokenCache {
    /// A cache holding at most `max_entries` tokens (0 disables caching).
    pub fn new(max_entries: usize) -> Self {
        TokenCache {
            max_entries,
            map: BTreeMap::new(),
            order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Drops everything (for hosts that want to clear on any key change).
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    /// A live entry for `hash`, verified for `resource` at or before `now`. Does not check
    /// key generations; the gateway does.
    pub(crate) fn get(
        &mut self,
        hash: &TokenHash,
        resource: usize,
        now: u64,
    ) -> Option<&VerifiedToken> {
        if self.max_entries == 0 {
            return None;
        }
        let live = self
            .map
            .get(hash)
            .is_some_and(|e| e.resource == resource && now < e.expires_at);
        if live {
            self.hits += 1;
            self.map.get(hash)
        } else {
            self.misses += 1;
            None
        }
    }

    /// Forgets one token (its keys changed, or it stopped verifying).
    pub(crate) fn remove(&mut self, hash: &TokenHash) {
        self.map.remove(hash);
    }

    /// Remembers a verified token.
    pub(crate) fn insert(&mut self, hash: TokenHash, entry: VerifiedToken, now: u64) {
        if self.max_entries == 0 || entry.expires_at <= now {
            return;
        }
        if self.map.len() >= self.max_entries && !self.map.contains_key(&hash) {
            self.map.retain(|_, e| e.expires_at > now);
            self.order.retain(|h| self.map.contains_key(h));
            while self.map.len() >= self.max_entries {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
        if self.map.insert(hash, entry).is_none() {
            self.order.push_back(hash);
        }
        // Keep the order queue from growing with hashes whose entries were removed.
        if self.order.len() > self.map.len().saturating_mul(2).max(16) {
            let map = &self.map;
            self.order.retain(|h| map.contains_key(h));
        }
    }
}
