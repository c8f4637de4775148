//! The verified-token cache.
//!
//! MCP clients reuse one access token for many requests, and a signature check costs far more
//! than everything else a request needs, so a verified token is remembered. An entry holds
//! only what was checked once and for all (signature, issuer, audience, `typ`, `nbf`); what
//! depends on the request or the time is checked on every hit: expiry, the required scopes,
//! and that the issuer's keys are still the ones that verified it (a key rotation voids
//! entries).
//!
//! Entries are found by a keyed SipHash-1-3 of the token (of its length and both ends) and
//! confirmed by comparing the whole token, in time independent of where it differs. So no hash collision, crafted or not, can
//! ever make one token pass as another: a collision only costs a verification. (SHA-256 as
//! the key did the same job at several times the cost: it was over half of a cache hit's
//! time in Wasm.) The price is memory: an entry keeps its token, so a full cache holds at
//! most `max_entries` tokens of at most `max_token_bytes` each. Hosts with randomness set a
//! secret hash key ([`TokenCache::with_hash_key`]), so that no client can aim tokens at one
//! map slot; without one, crafted collisions could at worst make tokens evict each other.
//!
//! Bounded: when full, expired entries go first, then the oldest. Hosts own the cache (one
//! per Envoy worker VM, one per Worker isolate) and hand it to [`crate::Gateway::decide`].

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use core::hash::{BuildHasher, Hasher};

use hashbrown::HashMap;

use crate::http::Identity;
use crate::keys::IssuerId;

/// The map key: a keyed SipHash-1-3 of the token (see [`TokenCache::hash`]).
pub type TokenHash = u64;

/// Bytes from the start of a token that its map key covers.
pub const HASH_HEAD: usize = 32;
/// Bytes from the end of a token that its map key covers: for a JWS, the end of its
/// signature, which is unpredictable from token to token (at least 64 base64url characters
/// for every algorithm we accept; 32 of them are 192 bits).
pub const HASH_TAIL: usize = 32;

/// Whether two tokens are equal, taking the same time wherever they differ (the length is
/// not secret: it is visible on the wire).
pub(crate) fn same_token(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Sixteen bytes at a time (one SIMD word in Wasm): a cache hit compares a whole token
    // (~1 KB), and `chunks_exact`'s iterator stayed an out-of-line call per word at the Wasm
    // filter's `opt-level = "s"` (it showed in its profiles).
    let (mut a, mut b) = (a, b);
    let mut diff = 0u128;
    while let (Some((x, ra)), Some((y, rb))) = (a.split_first_chunk::<16>(), b.split_first_chunk())
    {
        diff |= u128::from_ne_bytes(*x) ^ u128::from_ne_bytes(*y);
        (a, b) = (ra, rb);
    }
    for (x, y) in a.iter().zip(b) {
        diff |= u128::from(x ^ y);
    }
    diff == 0
}

/// The keyed hash of [`TokenCache::hash`] (also the exchange cache's, with its own key):
/// SipHash-1-3 of the token's length (8 bytes, little-endian), its first [`HASH_HEAD`] and
/// its last [`HASH_TAIL`] bytes (the whole token, twice over, when it is short).
pub(crate) fn token_hash(key: (u64, u64), token: &str) -> TokenHash {
    let b = token.as_bytes();
    let head = b.get(..HASH_HEAD).unwrap_or(b);
    let tail = b.get(b.len().saturating_sub(HASH_TAIL)..).unwrap_or(b);
    let mut msg = [0u8; 8 + HASH_HEAD + HASH_TAIL];
    let mut n = 0;
    for part in [&(b.len() as u64).to_le_bytes()[..], head, tail] {
        if let Some(dst) = msg.get_mut(n..n + part.len()) {
            dst.copy_from_slice(part);
            n += part.len();
        }
    }
    sip::<1, 3>(key, msg.get(..n).unwrap_or(&msg))
}

/// SipHash-c-d (Aumasson and Bernstein) of `msg` under `key`: c rounds per 8-byte word, d
/// to finish.
///
/// 1-3 is what Rust's `std` `HashMap` keys its tables with. The map only needs its keys
/// spread and unpredictable to whoever sends tokens (a hit is confirmed on the whole token),
/// and SipHash-2-4 over the old 104 bytes was a third of a cache hit's time in Wasm
/// (`hash/*` in BENCHMARKS.md). The tests check the 2-4 instance against `core`'s SipHasher.
fn sip<const C: usize, const D: usize>(key: (u64, u64), msg: &[u8]) -> u64 {
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        let [v0, v1, v2, v3] = v;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }
    let mut v = [
        key.0 ^ 0x736f_6d65_7073_6575,
        key.1 ^ 0x646f_7261_6e64_6f6d,
        key.0 ^ 0x6c79_6765_6e65_7261,
        key.1 ^ 0x7465_6462_7974_6573,
    ];
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        for _ in 0..C {
            round(v);
        }
        v[0] ^= m;
    };
    let mut rest = msg;
    while let Some((word, r)) = rest.split_first_chunk::<8>() {
        compress(&mut v, u64::from_le_bytes(*word));
        rest = r;
    }
    // The last word: the bytes left over, and the length's low byte on top.
    let mut last = (msg.len() as u64) << 56;
    for (i, byte) in rest.iter().enumerate() {
        last |= u64::from(*byte) << (8 * i);
    }
    compress(&mut v, last);
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
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
    /// The verified identity (shared with every forward a hit makes).
    pub identity: Arc<Identity>,
    /// Headers derived from claims (`claim_to_headers`), shared likewise.
    pub claim_headers: Arc<[(String, String)]>,
    /// The token itself: a hit must be this very token, not only share its hash.
    pub token: Box<str>,
}

/// Hashes a [`TokenHash`] to itself: the table's keys are keyed (secret) hashes already, so
/// hashing them again would only cost time. (The table was a B-tree: a search of several
/// nodes per hit, each a likely cache miss with 1,000 tokens in use.)
#[derive(Debug, Clone, Copy)]
struct KeyIsHash;

impl BuildHasher for KeyIsHash {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// The hasher of [`KeyIsHash`]: a `u64` written is the hash.
#[derive(Debug)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else still gets a (weak) hash.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A bounded, expiry-aware map from token hash to [`VerifiedToken`].
#[derive(Debug, Clone)]
pub struct TokenCache {
    max_entries: usize,
    hash_key: (u64, u64),
    map: HashMap<TokenHash, VerifiedToken, KeyIsHash>,
    order: VecDeque<TokenHash>,
    hits: u64,
    misses: u64,
}

impl TokenCache {
    /// A cache holding at most `max_entries` tokens (0 disables caching), with a fixed hash
    /// key. Hosts that have randomness should prefer [`TokenCache::with_hash_key`].
    pub fn new(max_entries: usize) -> Self {
        Self::with_hash_key(max_entries, (0x6d63_702d_6564_6765, 0x2d61_7574_682d_6b31))
    }

    /// A cache holding at most `max_entries` tokens, hashing with a secret `key` (two random
    /// 64-bit words from the host, fixed for the cache's life).
    pub fn with_hash_key(max_entries: usize, key: (u64, u64)) -> Self {
        TokenCache {
            max_entries,
            hash_key: key,
            map: HashMap::with_hasher(KeyIsHash),
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

    /// The map key of `token`: a keyed hash of its length, its first [`HASH_HEAD`] and its
    /// last [`HASH_TAIL`] bytes.
    ///
    /// Not all of it: a hit is confirmed on the whole token anyway, so the hash only has to
    /// spread tokens over the map, and a JWS ends in its signature, which differs from token
    /// to token. Hashing the whole token was 30% of a native cache hit. Tokens that agree on
    /// all three (never two JWTs; possibly opaque tokens built that way) only share a slot.
    pub fn hash(&self, token: &str) -> TokenHash {
        token_hash(self.hash_key, token)
    }

    /// A live entry for `token` (whose [`TokenCache::hash`] is `hash`), verified for
    /// `resource` at or before `now`. Does not check key generations; the gateway does.
    pub(crate) fn get(
        &mut self,
        hash: &TokenHash,
        token: &str,
        resource: usize,
        now: u64,
    ) -> Option<&VerifiedToken> {
        if self.max_entries == 0 {
            return None;
        }
        // One search of the map: a hit's entry is returned from the same lookup that
        // confirmed it (the counters are other fields, so the borrows do not overlap).
        match self.map.get(hash) {
            Some(e)
                if e.resource == resource
                    && now < e.expires_at
                    && same_token(e.token.as_bytes(), token.as_bytes()) =>
            {
                self.hits += 1;
                Some(e)
            }
            _ => {
                self.misses += 1;
                None
            }
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn entry(token: &str) -> VerifiedToken {
        VerifiedToken {
            resource: 0,
            issuer: IssuerId(0),
            generation: Some(1),
            expires_at: 1_000,
            identity: Arc::new(Identity::default()),
            claim_headers: Arc::from([]),
            token: token.into(),
        }
    }

    #[test]
    fn a_hit_must_be_the_same_token_not_only_the_same_hash() {
        let mut c = TokenCache::new(8);
        let h = c.hash("token-a");
        c.insert(h, entry("token-a"), 10);
        assert!(c.get(&h, "token-a", 0, 10).is_some());
        // A token that lands on the same map key (a collision, forced here) is a miss.
        assert!(c.get(&h, "token-b", 0, 10).is_none());
        assert!(c.get(&h, "token-a-", 0, 10).is_none());
        assert!(c.get(&h, "", 0, 10).is_none());
        assert_eq!(c.stats(), (1, 3));
    }

    #[test]
    fn same_token_compares_every_byte_of_every_length() {
        for len in 0..40usize {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_token(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!same_token(&a, &b), "len {len}, difference at {at}");
            }
            let mut longer = a.clone();
            longer.push(b'x');
            assert!(!same_token(&a, &longer));
        }
    }

    #[test]
    fn tokens_sharing_both_ends_share_a_slot_but_never_an_entry() {
        let mut c = TokenCache::new(8);
        let middle = |m: char| format!("{}{}{}", "h".repeat(40), m, "t".repeat(70));
        let (a, b) = (middle('a'), middle('b'));
        assert_eq!(c.hash(&a), c.hash(&b));
        c.insert(c.hash(&a), entry(&a), 10);
        assert!(c.get(&c.hash(&b), &b, 0, 10).is_none());
        assert!(c.get(&c.hash(&a), &a, 0, 10).is_some());
        // Short tokens are hashed whole; lengths differ, hashes differ.
        assert_ne!(c.hash("abc"), c.hash("abcd"));
        assert_ne!(c.hash(&a), c.hash(&format!("{a}x")));
    }

    #[test]
    fn sip_2_4_is_cores_siphasher_and_the_papers_vector() {
        use core::hash::Hasher;
        // The SipHash paper's test vector: key 00..0f, message 00..0e.
        let key = (
            u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]),
            u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]),
        );
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(sip::<2, 4>(key, &msg), 0xa129_ca61_49be_45e5);
        // Every length around the word boundaries, several keys.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..=80usize {
            let msg: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (x >> 56) as u8
                })
                .collect();
            for key in [(0, 0), (1, 2), (x, !x)] {
                #[allow(deprecated)]
                let mut h = core::hash::SipHasher::new_with_keys(key.0, key.1);
                h.write(&msg);
                assert_eq!(sip::<2, 4>(key, &msg), h.finish(), "len {len}, key {key:?}");
            }
        }
    }

    #[test]
    fn the_map_key_covers_the_length_and_both_ends() {
        let c = TokenCache::with_hash_key(1, (5, 6));
        let base = format!(
            "{}{}{}",
            "h".repeat(HASH_HEAD),
            "m".repeat(50),
            "t".repeat(HASH_TAIL)
        );
        let h = c.hash(&base);
        // A change in the first HASH_HEAD or the last HASH_TAIL bytes changes the key...
        for at in (0..HASH_HEAD).chain(base.len() - HASH_TAIL..base.len()) {
            let mut b = base.clone().into_bytes();
            b[at] = b'x';
            let t = String::from_utf8(b).unwrap();
            assert_ne!(c.hash(&t), h, "byte {at}");
        }
        // ...one in between does not (a hit is confirmed on the whole token).
        let mut b = base.clone().into_bytes();
        b[HASH_HEAD + 10] = b'x';
        assert_eq!(c.hash(&String::from_utf8(b).unwrap()), h);
        // The 1-3 instance, not 2-4.
        let msg = [
            &(base.len() as u64).to_le_bytes()[..],
            &base.as_bytes()[..HASH_HEAD],
            &base.as_bytes()[base.len() - HASH_TAIL..],
        ]
        .concat();
        assert_eq!(h, sip::<1, 3>((5, 6), &msg));
        assert_ne!(h, sip::<2, 4>((5, 6), &msg));
    }

    #[test]
    fn the_hash_key_changes_the_hash() {
        let a = TokenCache::with_hash_key(1, (1, 2));
        let b = TokenCache::with_hash_key(1, (3, 4));
        assert_ne!(a.hash("same token"), b.hash("same token"));
        assert_eq!(a.hash("same token"), a.hash("same token"));
    }

    #[test]
    fn expired_and_other_resource_entries_miss_and_full_caches_evict_the_oldest() {
        let mut c = TokenCache::new(2);
        for t in ["t1", "t2", "t3"] {
            let h = c.hash(t);
            c.insert(h, entry(t), 10);
        }
        assert_eq!(c.len(), 2);
        assert!(c.get(&c.hash("t1"), "t1", 0, 10).is_none());
        assert!(c.get(&c.hash("t3"), "t3", 0, 10).is_some());
        assert!(c.get(&c.hash("t3"), "t3", 1, 10).is_none());
        assert!(c.get(&c.hash("t3"), "t3", 0, 1_000).is_none());
    }
}
