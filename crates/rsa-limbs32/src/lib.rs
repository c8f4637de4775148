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
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest, Sha256, Sha384, Sha512};

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

    /// The hash of the concatenation of `parts`.
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
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
    /// `R² mod n`, `R = 2^(28·limbs)`, little-endian limbs.
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
        if e_val < 3 || e_val >= (1 << 33) || e_val & 1 == 0 {
            return Err(KeyError::Exponent);
        }
        let n_limbs = from_be(n, limb_count(bits));
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
        // A signature of k bytes may still exceed the 28-bit limbs' width only if it is
        // above n, which is refused here.
        if sig.len() * 8 > limbs * W as usize && !fits(sig, limbs) {
            return None;
        }
        if !less_than(&s, &self.n.n) {
            return None;
        }
        let mut m = vec![0u32; limbs];
        let mut rev = vec![0u32; limbs];
        // Into the Montgomery domain: s·R mod n = mont(s, R² mod n).
        let mut s_mont = vec![0u32; limbs];
        self.n.mul(&s, &self.rr, &mut s_mont, &mut m, &mut rev);
        // Left-to-right square-and-multiply over the bits of e (top bit first).
        let top = 63 - self.e.leading_zeros();
        let mut acc = s_mont.clone();
        let mut tmp = vec![0u32; limbs];
        for i in (0..top).rev() {
            self.n.mul(&acc, &acc, &mut tmp, &mut m, &mut rev);
            core::mem::swap(&mut acc, &mut tmp);
            if (self.e >> i) & 1 == 1 {
                self.n.mul(&acc, &s_mont, &mut tmp, &mut m, &mut rev);
                core::mem::swap(&mut acc, &mut tmp);
            }
        }
        // Out of the Montgomery domain: mont(acc, 1).
        let mut one = vec![0u32; limbs];
        if let Some(l) = one.first_mut() {
            *l = 1;
        }
        self.n.mul(&acc, &one, &mut tmp, &mut m, &mut rev);
        Some(to_be(&tmp, self.k))
    }

    /// RSASSA-PKCS1-v1_5 verification of `sig` over `msg` (RFC 8017 §8.2.2).
    pub fn verify_pkcs1(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
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
        let digest = hash.digest(&[msg]);
        let mut expected = Vec::with_capacity(self.k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&digest);
        expected == em
    }

    /// RSASSA-PSS verification of `sig` over `msg` (RFC 8017 §8.1.2, §9.1.2) with MGF1 of
    /// the same hash and a salt as long as the hash (RFC 7518 §3.5).
    pub fn verify_pss(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
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
        let mut db = mgf1(hash, h, db_len);
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
        let m_hash = hash.digest(&[msg]);
        let h2 = hash.digest(&[&[0u8; 8], &m_hash, salt]);
        h2 == h
    }
}

/// MGF1 (RFC 8017 §B.2.1) of `seed`, `len` bytes.
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend_from_slice(&hash.digest(&[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// Bits per limb. Limbs live in `u64` lanes, so a limb product is one native 64-bit
/// multiply of values below 2²⁸ (in Wasm, `i64.mul`), and up to 2⁸ of them add up in a `u64`
/// without a carry: columns are summed with no carry chain at all, carries move once per
/// column.
const W: u32 = 28;
const MASK: u64 = (1 << W) - 1;
/// Products summed before a column's partial sum is folded (each below 2⁵⁶: 2⁸ of them fit).
const CHUNK: usize = 120;

/// Limbs for a modulus of `bits` bits: enough that `R = 2^(28·limbs) > n`.
fn limb_count(bits: usize) -> usize {
    bits.div_ceil(W as usize)
}

/// Big-endian bytes into `limbs` little-endian 28-bit limbs (zero-padded).
fn from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    let mut acc = 0u64;
    let mut have = 0u32;
    let mut i = 0;
    for &b in bytes.iter().rev() {
        acc |= u64::from(b) << have;
        have += 8;
        while have >= W {
            if let Some(l) = out.get_mut(i) {
                *l = (acc & MASK) as u32;
            }
            i += 1;
            acc >>= W;
            have -= W;
        }
    }
    if have > 0 {
        if let Some(l) = out.get_mut(i) {
            *l = (acc & MASK) as u32;
        }
    }
    out
}

/// Little-endian 28-bit limbs into `k` big-endian bytes (the value is below 2^(8k)).
fn to_be(limbs: &[u32], k: usize) -> Vec<u8> {
    let mut out = vec![0u8; k];
    let mut acc = 0u64;
    let mut have = 0u32;
    let mut bytes = out.iter_mut().rev();
    for &l in limbs {
        acc |= u64::from(l) << have;
        have += W;
        while have >= 8 {
            if let Some(b) = bytes.next() {
                *b = acc as u8;
            }
            acc >>= 8;
            have -= 8;
        }
    }
    if let Some(b) = bytes.next() {
        *b = acc as u8;
    }
    out
}

/// `a < b` for equal-length normalised numbers.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `-x⁻¹ mod 2²⁸` for odd `x` (Newton's iteration: each step doubles the correct bits).
fn neg_inverse(x: u64) -> u64 {
    let mut inv: u64 = 1;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(x.wrapping_mul(inv))) & MASK;
    }
    inv.wrapping_neg() & MASK
}

/// `a -= b` when `a ≥ b` or `overflow` (a carry limb above `a` is set); normalised limbs.
fn sub_if_ge(a: &mut [u32], b: &[u32], overflow: bool) {
    if !overflow && less_than(a, b) {
        return;
    }
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = (d & MASK) as u32;
        borrow = d >> 63;
    }
}

/// `R² mod n` by doubling 1, `2·28·limbs` times (once per key; not time-critical).
fn r_squared(n: &[u32]) -> Vec<u32> {
    let limbs = n.len();
    let mut x = vec![0u32; limbs];
    if let Some(l) = x.first_mut() {
        *l = 1;
    }
    for _ in 0..(2 * W as usize * limbs) {
        let mut carry = 0u32;
        for l in x.iter_mut() {
            let v = (*l << 1) | carry;
            *l = v & MASK as u32;
            carry = v >> W;
        }
        sub_if_ge(&mut x, n, carry == 1);
    }
    x
}

/// `Σ x[i]·y[i]` as (low part, high part in units of 2²⁸): folded every [`CHUNK`] products
/// so that no partial sum overflows.
fn dot(x: &[u32], y: &[u32], lo: &mut u64, hi: &mut u64) {
    let n = x.len().min(y.len());
    let (x, y) = (x.get(..n).unwrap_or_default(), y.get(..n).unwrap_or_default());
    for (xc, yc) in x.chunks(CHUNK).zip(y.chunks(CHUNK)) {
        let s = dot_chunk(xc, yc);
        *lo += s & MASK;
        *hi += s >> W;
    }
}

/// One chunk of [`dot`]: at most [`CHUNK`] products, so the sum fits in a `u64`.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot_chunk(x: &[u32], y: &[u32]) -> u64 {
    let mut s = 0u64;
    for (&a, &b) in x.iter().zip(y) {
        s += u64::from(a) * u64::from(b);
    }
    s
}

/// One chunk of [`dot`] with Wasm SIMD: four limb products per pair of
/// `i64x2.extmul_{low,high}_i32x4_u` (32×32→64 in each lane), two lanes of sums.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot_chunk(x: &[u32], y: &[u32]) -> u64 {
    use core::arch::wasm32::{
        u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4, u64x2_extract_lane, u64x2_splat,
    };
    let mut acc = u64x2_splat(0);
    let xs = x.chunks_exact(4);
    let ys = y.chunks_exact(4);
    let (xr, yr) = (xs.remainder(), ys.remainder());
    for (xc, yc) in xs.zip(ys) {
        let (xv, yv) = (load4(xc), load4(yc));
        acc = u64x2_add(acc, u64x2_extmul_low_u32x4(xv, yv));
        acc = u64x2_add(acc, u64x2_extmul_high_u32x4(xv, yv));
    }
    let mut s = u64x2_extract_lane::<0>(acc) + u64x2_extract_lane::<1>(acc);
    for (&a, &b) in xr.iter().zip(yr) {
        s += u64::from(a) * u64::from(b);
    }
    s
}

/// Four limbs as one `v128` (an unaligned `v128.load`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn load4(c: &[u32]) -> core::arch::wasm32::v128 {
    let Ok(four) = <&[u32; 4]>::try_from(c) else {
        return core::arch::wasm32::u64x2_splat(0);
    };
    // SAFETY: `four` is a valid, initialised 16-byte region; `read_unaligned` has no
    // alignment requirement, and `v128` has no invalid bit patterns.
    #[allow(unsafe_code)]
    unsafe {
        core::ptr::read_unaligned(four.as_ptr().cast::<core::arch::wasm32::v128>())
    }
}

/// The per-key data of Montgomery multiplication: `n`, `n` with its limbs reversed (so that
/// every column is a dot product of two ascending slices), and `-n⁻¹ mod 2²⁸`.
#[derive(Clone, Debug)]
struct Modulus {
    n: Vec<u32>,
    n_rev: Vec<u32>,
    n0inv: u64,
}

impl Modulus {
    fn new(n: Vec<u32>) -> Modulus {
        let n0inv = neg_inverse(u64::from(n.first().copied().unwrap_or(1)));
        let n_rev = n.iter().rev().copied().collect();
        Modulus { n, n_rev, n0inv }
    }

    /// `out = a·b·R⁻¹ mod n` for `a, b < n`: Montgomery multiplication in product-scanning
    /// form (column by column, the reduction's multiples of `n` folded into the same
    /// columns). `m` and `b_rev` are scratch of `limbs`.
    fn mul(&self, a: &[u32], b: &[u32], out: &mut [u32], m: &mut [u32], b_rev: &mut [u32]) {
        let l = self.n.len();
        for (r, &x) in b_rev.iter_mut().zip(b.iter().rev()) {
            *r = x;
        }
        let (n0, n_rev) = (u64::from(self.n.first().copied().unwrap_or(0)), &self.n_rev);
        let mut carry = 0u64;
        // Columns 0..l: each fixes one limb of m so that the column's low 28 bits vanish.
        for k in 0..l {
            let mut lo = carry;
            let mut hi = 0u64;
            // Σ_{i<k} a[i]·b[k-i] + m[i]·n[k-i]; b[k-i] = b_rev[l-1-k+i].
            let from = l - 1 - k;
            if let (Some(ai), Some(bi), Some(mi), Some(ni)) =
                (a.get(..k), b_rev.get(from..), m.get(..k), n_rev.get(from..))
            {
                dot(ai, bi, &mut lo, &mut hi);
                dot(mi, ni, &mut lo, &mut hi);
            }
            lo += u64::from(a.get(k).copied().unwrap_or(0))
                * u64::from(b.first().copied().unwrap_or(0));
            let mk = lo.wrapping_mul(self.n0inv) & MASK;
            if let Some(slot) = m.get_mut(k) {
                *slot = mk as u32;
            }
            lo += mk * n0;
            carry = (lo >> W) + hi;
        }
        // Columns l..2l-1: the upper half is the result.
        for k in l..2 * l - 1 {
            let mut lo = carry;
            let mut hi = 0u64;
            let start = k - l + 1;
            // Σ_{start≤i<l} a[i]·b[k-i] + m[i]·n[k-i]; b[k-i] = b_rev[l-1-k+i], which
            // for i = start is b_rev[0].
            let len = l - start;
            if let (Some(ai), Some(bi), Some(mi), Some(ni)) = (
                a.get(start..),
                b_rev.get(..len),
                m.get(start..),
                n_rev.get(..len),
            ) {
                dot(ai, bi, &mut lo, &mut hi);
                dot(mi, ni, &mut lo, &mut hi);
            }
            if let Some(o) = out.get_mut(k - l) {
                *o = (lo & MASK) as u32;
            }
            carry = (lo >> W) + hi;
        }
        if let Some(o) = out.get_mut(l - 1) {
            *o = (carry & MASK) as u32;
        }
        sub_if_ge(out, &self.n, carry >> W != 0);
    }
}

/// Whether the big-endian `bytes` fit in `limbs` 28-bit limbs.
fn fits(bytes: &[u8], limbs: usize) -> bool {
    let lead = bytes.iter().take_while(|&&b| b == 0).count();
    let bits = bytes
        .get(lead)
        .map_or(0, |b| (bytes.len() - lead) * 8 - b.leading_zeros() as usize);
    bits <= limbs * W as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neg_inverse_is_an_inverse() {
        for x in [1u64, 3, 0x0fff_ffff, 0x0234_5677, 65537] {
            assert_eq!(x.wrapping_mul(neg_inverse(x)) & MASK, MASK, "{x}");
        }
    }

    #[test]
    fn bytes_and_limbs_round_trip() {
        let b: Vec<u8> = (1..=13).collect();
        assert_eq!(to_be(&from_be(&b, 4), 13), b);
        let b: Vec<u8> = (200..=255).collect();
        assert_eq!(to_be(&from_be(&b, limb_count(b.len() * 8)), b.len()), b);
    }
}
