//! RSA signature verification for JWS (`RS256/384/512`, `PS256/384/512`) on 32-bit limbs.
//!
//! Why: ring's RSA runs on 64-bit limbs, and WebAssembly has no 64×64→128 multiply, so
//! under V8 every limb product is an emulated `__multi3` (74% of an RS256 verification in
//! the profile). Wasm multiplies 32×32→64 natively (`i64.mul` of zero-extended operands),
//! so this verifier keeps limbs at 32 bits.
//!
//! Verification uses only the public key: nothing here is secret, so the code is not
//! constant time. Per key, [`PublicKey::new`] precomputes the Montgomery constants (`-n⁻¹
//! mod 2³²`, `R² mod n`), so a verification is the exponentiation `sᵉ mod n` (for
//! `e = 65537`, 16 Montgomery squarings and 2 multiplications) and a byte comparison with the
//! expected encoding (PKCS#1 v1.5, RFC 8017 §8.2.2: the whole `EM` is rebuilt and compared, no
//! parsing) or the EMSA-PSS check (RFC 8017 §9.1.2, MGF1 with the same hash, salt length =
//! hash length, as JWS requires).
//!
//! Accepted keys match ring's `RSA_*_2048_8192_*` verifiers (the differential tests hold us
//! to it): a modulus of 2048 to 8192 bits, odd, without leading zero bytes; an odd public
//! exponent `3 ≤ e < 2³³`. A signature must be exactly as long as the modulus and less than it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

/// A hash function for the verifier: `Hash` of the concatenation of the parts. Hosts that
/// link a SHA-2 already (ring's) pass theirs to the `*_with` methods; the feature `sha2`
/// provides one for the plain methods.
pub type Hasher<'h> = &'h dyn Fn(Hash, &[&[u8]]) -> Vec<u8>;

/// The hash of a JWS algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256 (`RS256`, `PS256`).
    Sha256,
    /// SHA-384 (`RS384`, `PS384`).
    Sha384,
    /// SHA-512 (`RS512`, `PS512`).
    Sha512,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The DER `DigestInfo` prefix of PKCS#1 v1.5 (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    /// SHA-2 of the concatenation of `parts`, by the `sha2` crate.
    #[cfg(feature = "sha2")]
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        use sha2::{Digest, Sha256, Sha384, Sha512};
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }
}

/// Why a key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The modulus is not 2048 to 8192 bits, is even, or has a leading zero byte.
    Modulus,
    /// The exponent is even, below 3, at least 2³³, or has a leading zero byte.
    Exponent,
}

/// An RSA public key with its Montgomery constants.
#[derive(Clone, Debug)]
pub struct PublicKey {
    /// The modulus and its Montgomery constant.
    n: Modulus,
    /// `R² mod n`, `R = 2^(32·limbs)`, little-endian limbs.
    rr: Vec<u32>,
    /// The public exponent.
    e: u64,
    /// Modulus length in bytes (`k` of RFC 8017) and in bits.
    k: usize,
    bits: usize,
}

impl PublicKey {
    /// A key from its big-endian modulus and exponent (the JWK `n` and `e`, decoded).
    pub fn new(n: &[u8], e: &[u8]) -> Result<PublicKey, KeyError> {
        if n.first().is_none_or(|&b| b == 0) {
            return Err(KeyError::Modulus);
        }
        let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
        if !(2048..=8192).contains(&bits) || n.last().is_none_or(|b| b & 1 == 0) {
            return Err(KeyError::Modulus);
        }
        if e.is_empty() || e.len() > 5 || e.first() == Some(&0) {
            return Err(KeyError::Exponent);
        }
        let e_val = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if !(3..(1 << 33)).contains(&e_val) || e_val & 1 == 0 {
            return Err(KeyError::Exponent);
        }
        let n_limbs = from_be(n, n.len().div_ceil(4));
        let rr = r_squared(&n_limbs);
        Ok(PublicKey {
            n: Modulus::new(n_limbs),
            rr,
            e: e_val,
            k: n.len(),
            bits,
        })
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// `sig^e mod n` as `k` big-endian bytes, or `None` when `sig` is not a valid
    /// representative (wrong length, or not less than `n`).
    fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.k {
            return None;
        }
        let limbs = self.n.n.len();
        let s = from_be(sig, limbs);
        if !less_than(&s, &self.n.n) {
            return None;
        }
        let mut w = vec![0u32; 2 * limbs + 1];
        // Into the Montgomery domain: s·R mod n.
        let mut s_mont = vec![0u32; limbs];
        mul_wide(&s, &self.rr, &mut w);
        self.n.reduce(&mut w, &mut s_mont);
        // Left-to-right square-and-multiply over the bits of e (top bit first).
        let top = 63 - self.e.leading_zeros();
        let mut acc = s_mont.clone();
        for i in (0..top).rev() {
            sqr_wide(&acc, &mut w);
            self.n.reduce(&mut w, &mut acc);
            if (self.e >> i) & 1 == 1 {
                mul_wide(&acc, &s_mont, &mut w);
                self.n.reduce(&mut w, &mut acc);
            }
        }
        // Out of the Montgomery domain: reduce acc itself (acc·R⁻¹).
        w.fill(0);
        if let Some(low) = w.get_mut(..limbs) {
            low.copy_from_slice(&acc);
        }
        let mut m = vec![0u32; limbs];
        self.n.reduce(&mut w, &mut m);
        Some(to_be(&m, self.k))
    }

    /// RSASSA-PKCS1-v1_5 verification of `sig` over `msg` (RFC 8017 §8.2.2).
    #[cfg(feature = "sha2")]
    pub fn verify_pkcs1(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_pkcs1_with(hash, msg, sig, &|h, parts| h.digest(parts))
    }

    /// RSASSA-PSS verification (see [`PublicKey::verify_pss_with`]) hashing with `sha2`.
    #[cfg(feature = "sha2")]
    pub fn verify_pss(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_pss_with(hash, msg, sig, &|h, parts| h.digest(parts))
    }

    /// [`PublicKey::verify_pkcs1`] with the host's hash function.
    pub fn verify_pkcs1_with(
        &self,
        hash: Hash,
        msg: &[u8],
        sig: &[u8],
        digest: Hasher<'_>,
    ) -> bool {
        let Some(em) = self.public_op(sig) else {
            return false;
        };
        let prefix = hash.digest_info_prefix();
        let t_len = prefix.len() + hash.len();
        if self.k < t_len + 11 {
            return false;
        }
        // EM = 0x00 || 0x01 || PS (0xff…, at least 8) || 0x00 || DigestInfo.
        let ps = self.k - t_len - 3;
        let digest = digest(hash, &[msg]);
        let mut expected = Vec::with_capacity(self.k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&digest);
        expected == em
    }

    /// RSASSA-PSS verification of `sig` over `msg` (RFC 8017 §8.1.2, §9.1.2) with MGF1 of
    /// the same hash and a salt as long as the hash (RFC 7518 §3.5), hashing with `digest`.
    pub fn verify_pss_with(&self, hash: Hash, msg: &[u8], sig: &[u8], digest: Hasher<'_>) -> bool {
        let Some(full) = self.public_op(sig) else {
            return false;
        };
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        // I2OSP(m, emLen): the k-byte value has k - emLen leading zero bytes.
        let (zeros, em) = full.split_at(self.k - em_len);
        if zeros.iter().any(|&b| b != 0) {
            return false;
        }
        let h_len = hash.len();
        let s_len = h_len;
        if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
            return false;
        }
        let db_len = em_len - h_len - 1;
        let (masked_db, rest) = em.split_at(db_len);
        let Some(h) = rest.get(..h_len) else {
            return false;
        };
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8 >> unused_bits;
        if masked_db.first().is_some_and(|&b| b & !top_mask != 0) {
            return false;
        }
        let mut db = mgf1(hash, h, db_len, digest);
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        if let Some(b) = db.first_mut() {
            *b &= top_mask;
        }
        let pad = db_len - s_len - 1;
        let (zeros, tail) = db.split_at(pad);
        if zeros.iter().any(|&b| b != 0) || tail.first() != Some(&0x01) {
            return false;
        }
        let salt = tail.get(1..).unwrap_or_default();
        let m_hash = digest(hash, &[msg]);
        let h2 = digest(hash, &[&[0u8; 8], &m_hash, salt]);
        h2 == h
    }
}

/// MGF1 (RFC 8017 §B.2.1) of `seed`, `len` bytes.
fn mgf1(hash: Hash, seed: &[u8], len: usize, digest: Hasher<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend_from_slice(&digest(hash, &[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// Big-endian bytes into `limbs` little-endian 32-bit limbs (zero-padded).
fn from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, &b) in bytes.iter().rev().enumerate() {
        if let Some(l) = out.get_mut(i / 4) {
            *l |= u32::from(b) << (8 * (i % 4));
        }
    }
    out
}

/// Little-endian limbs into `k` big-endian bytes (the value is below 2^(8k)).
fn to_be(limbs: &[u32], k: usize) -> Vec<u8> {
    let mut out = vec![0u8; k];
    for (i, b) in out.iter_mut().rev().enumerate() {
        if let Some(l) = limbs.get(i / 4) {
            *b = (l >> (8 * (i % 4))) as u8;
        }
    }
    out
}

/// `a < b` for equal-length little-endian numbers.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `-x⁻¹ mod 2³²` for odd `x` (Newton's iteration: each step doubles the correct bits).
fn neg_inverse(x: u32) -> u32 {
    let mut inv: u32 = 1;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// `a -= b` when `a ≥ b` or `overflow` (a carry limb above `a` is set).
fn sub_if_ge(a: &mut [u32], b: &[u32], overflow: bool) {
    if !overflow && less_than(a, b) {
        return;
    }
    let mut borrow = 0i64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = i64::from(*x) - i64::from(y) + borrow;
        *x = d as u32;
        borrow = d >> 32;
    }
}

/// `R² mod n` by doubling 1, `64·limbs` times (once per key; not time-critical).
fn r_squared(n: &[u32]) -> Vec<u32> {
    let limbs = n.len();
    let mut x = vec![0u32; limbs];
    if let Some(l) = x.first_mut() {
        *l = 1;
    }
    for _ in 0..(64 * limbs) {
        let mut carry = 0u32;
        for l in x.iter_mut() {
            let next = *l >> 31;
            *l = (*l << 1) | carry;
            carry = next;
        }
        sub_if_ge(&mut x, n, carry == 1);
    }
    x
}

/// The modulus and `-n⁻¹ mod 2³²`.
#[derive(Clone, Debug)]
struct Modulus {
    n: Vec<u32>,
    n0inv: u32,
}

impl Modulus {
    fn new(n: Vec<u32>) -> Modulus {
        let n0inv = neg_inverse(n.first().copied().unwrap_or(1));
        Modulus { n, n0inv }
    }

    /// Montgomery reduction: `out = w·R⁻¹ mod n` for `w < n·R` (`2·limbs + 1` limbs, used
    /// as scratch), one limb at a time: add the multiple of `n` that clears limb `i`.
    fn reduce(&self, w: &mut [u32], out: &mut [u32]) {
        let limbs = self.n.len();
        for i in 0..limbs {
            let Some(win) = w.get_mut(i..) else {
                return;
            };
            let m = u64::from(win.first().copied().unwrap_or(0).wrapping_mul(self.n0inv));
            let (row, above) = win.split_at_mut(limbs.min(win.len()));
            let mut carry = 0u64;
            for (wj, &nj) in row.iter_mut().zip(&self.n) {
                let s = u64::from(*wj) + m * u64::from(nj) + carry;
                *wj = s as u32;
                carry = s >> 32;
            }
            for wk in above.iter_mut() {
                if carry == 0 {
                    break;
                }
                let s = u64::from(*wk) + carry;
                *wk = s as u32;
                carry = s >> 32;
            }
        }
        if let Some(high) = w.get(limbs..2 * limbs) {
            out.copy_from_slice(high);
        }
        let over = w.get(2 * limbs).copied().unwrap_or(0) != 0;
        sub_if_ge(out, &self.n, over);
    }
}

/// `w = a·b` (schoolbook, row by row; `w` has `2·limbs + 1` limbs and is overwritten).
fn mul_wide(a: &[u32], b: &[u32], w: &mut [u32]) {
    let limbs = b.len();
    w.fill(0);
    for (i, &ai) in a.iter().enumerate() {
        let ai = u64::from(ai);
        let Some(row) = w.get_mut(i..=i + limbs) else {
            return;
        };
        let (row, top) = row.split_at_mut(limbs);
        let mut carry = 0u64;
        for (wj, &bj) in row.iter_mut().zip(b) {
            let s = u64::from(*wj) + ai * u64::from(bj) + carry;
            *wj = s as u32;
            carry = s >> 32;
        }
        // Row i is the first to write limb i + limbs.
        if let Some(t) = top.first_mut() {
            *t = carry as u32;
        }
    }
}

/// `w = a²`: each cross product once, doubled, plus the squares (about half the
/// multiplications of `mul_wide(a, a)`).
fn sqr_wide(a: &[u32], w: &mut [u32]) {
    let limbs = a.len();
    w.fill(0);
    for (i, &ai) in a.iter().enumerate() {
        let ai = u64::from(ai);
        let (Some(rest), Some(row)) = (a.get(i + 1..), w.get_mut(2 * i + 1..=i + limbs)) else {
            continue;
        };
        let (row, top) = row.split_at_mut(rest.len());
        let mut carry = 0u64;
        for (wj, &aj) in row.iter_mut().zip(rest) {
            let s = u64::from(*wj) + ai * u64::from(aj) + carry;
            *wj = s as u32;
            carry = s >> 32;
        }
        if let Some(t) = top.first_mut() {
            *t = carry as u32;
        }
    }
    // Double (the cross products are below 2^(64·limbs - 1), so no bit leaves w).
    let mut top = 0u32;
    for wk in w.iter_mut() {
        let next = *wk >> 31;
        *wk = (*wk << 1) | top;
        top = next;
    }
    // Add the squares a[i]² at limbs 2i, 2i + 1.
    let mut carry = 0u64;
    for (pair, &ai) in w.chunks_exact_mut(2).zip(a) {
        let sq = u64::from(ai) * u64::from(ai);
        if let [lo, hi] = pair {
            let s = u64::from(*lo) + (sq & 0xffff_ffff) + carry;
            *lo = s as u32;
            let s = u64::from(*hi) + (sq >> 32) + (s >> 32);
            *hi = s as u32;
            carry = s >> 32;
        }
    }
    if let Some(last) = w.get_mut(2 * limbs) {
        *last = last.wrapping_add(carry as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neg_inverse_is_an_inverse() {
        for x in [1u32, 3, 0xffff_ffff, 0x1234_5677, 65537] {
            assert_eq!(x.wrapping_mul(neg_inverse(x)), u32::MAX, "{x}");
        }
    }

    #[test]
    fn bytes_and_limbs_round_trip() {
        let b: Vec<u8> = (1..=13).collect();
        assert_eq!(to_be(&from_be(&b, 4), 13), b);
        let b: Vec<u8> = (200..=255).collect();
        assert_eq!(to_be(&from_be(&b, b.len().div_ceil(4)), b.len()), b);
    }
}
