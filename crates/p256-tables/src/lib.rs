//! ES256 verification (ECDSA over NIST P-256 with SHA-256, JWS signatures `r || s`) with
//! per-key precomputed tables, for verifiers that see one key many times: a resource server
//! installs a JWKS once and verifies every token against it.
//!
//! # Method
//!
//! ECDSA verification computes `R = u1·G + u2·Q` with `u1 = e/s`, `u2 = r/s` (mod n) and
//! accepts when `R.x mod n == r`. A general-purpose double-scalar multiplication (Shamir's
//! trick with wNAF, as in `ring` and `p256`'s `lincomb`) spends ~256 point doublings plus ~80
//! additions on it. Both bases here are known in advance, `G` forever and `Q` from key
//! installation on, so both get a *fixed-base windowed table*: for a window width `w`, the
//! scalar is recoded into `⌈257/w⌉` signed digits `d_i ∈ [-2^(w-1), 2^(w-1)]`, and the table
//! holds the affine points `j·2^(w·i)·P` for `j = 1..=2^(w-1)` and every window `i`. Then
//!
//! ```text
//! k·P = Σ_i d_i·2^(w·i)·P = Σ_i ±table[i][|d_i| - 1]
//! ```
//!
//! is one mixed (projective + affine) addition per non-zero digit and **no doublings**;
//! negating an affine point is free, which is why the digits are signed (it halves the table).
//! With `w = 7` for `Q` and `w = 8` for `G` a verification costs at most 37 + 33 mixed
//! additions, one scalar inversion and one field inversion (for `R.x`), against ~256
//! doublings and ~80 additions for the generic method.
//!
//! The additions are `primeorder`'s complete formulas (Renes–Costello–Batina 2015), which are
//! correct for every input, including the identity and equal or opposite points, so the sum
//! needs no special cases; the field, scalar and point arithmetic are all `p256`'s. Only the
//! table layout and digit recoding live here.
//!
//! # Costs
//!
//! Measured with `examples/speed.rs` (wasm32-wasip1 under Node 20's V8 with `--no-liftoff`,
//! as Envoy runs a filter; best of five batches on a shared 2-core machine):
//!
//! * Verify: ~150 µs in Wasm against ~650 µs for `ring` 0.17 (4.2-4.4×); natively (x86-64)
//!   ~64 µs against ring's assembly at ~54 µs, so natively ring stays the faster choice.
//! * Per key: [`Q_WINDOW`] = 7 gives 37 windows × 64 points × 72 bytes = 166 KiB, built in
//!   ~6.5 ms in Wasm (~2.7 ms natively) when the key is installed
//!   ([`VerifyingKey::from_coordinates`]).
//! * Once per process: the generator table ([`G_WINDOW`] = 8, 33 × 128 points = 297 KiB,
//!   ~14 ms in Wasm), built on first use behind a race-to-initialise static
//!   (`once_cell::race::OnceBox`: atomics only, so it works in `no_std` and single-threaded
//!   Wasm). Creating the first [`VerifyingKey`] builds it, so a verification never does.
//!
//! # Checks
//!
//! Keys: both coordinates must be canonical field elements (`< p`) and the point must satisfy
//! the curve equation; P-256 has cofactor 1, so that also puts it in the prime-order group, and
//! affine coordinates cannot encode the identity. Signatures: exactly 64 bytes, `r` and `s`
//! each in `[1, n-1]` (big-endian, no reduction); the result must not be the identity; `R.x`
//! is reduced mod n before the comparison with `r`. High `s` is accepted, as JWS (RFC 7518
//! §3.4) does not forbid it. The hash is truncated/reduced as ECDSA prescribes (for SHA-256
//! on P-256: the 256-bit digest, reduced mod n).
//!
//! Everything here handles public data (keys, signatures, tokens), so variable time is fine;
//! every function is panic-free on any input.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use once_cell::race::OnceBox;
use p256::elliptic_curve::ff::{Field, PrimeField};
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::BatchNormalize;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

/// Window width of the per-key table for the public key `Q` (see the crate docs for the
/// trade-off; 7 is the widest that keeps a key's table under ~200 KB).
pub const Q_WINDOW: usize = 7;

/// Window width of the process-wide table for the generator `G`.
pub const G_WINDOW: usize = 8;

/// A fixed-base table of a point `P` for window width `W`: `j·2^(W·i)·P` for every window
/// `i < WINDOWS` and `j = 1..=2^(W-1)`, in affine coordinates, window-major.
///
/// Public (but hidden) so that benchmarks can compare window widths; the stable API is
/// [`VerifyingKey`].
#[doc(hidden)]
#[derive(Clone)]
pub struct Table<const W: usize> {
    points: Box<[AffinePoint]>,
}

impl<const W: usize> Table<W> {
    /// Points per window: the absolute values `1..=2^(W-1)` of a signed digit.
    const HALF: usize = {
        assert!(W >= 2 && W <= 12, "window width out of range");
        1 << (W - 1)
    };
    /// Signed digits of a scalar below 2^256. `⌈257/W⌉` windows: the top window then holds at
    /// most `W-1` bits of the scalar, so with the incoming carry its digit is at most
    /// `2^(W-1)` and the recoding never carries out of it.
    const WINDOWS: usize = 257_usize.div_ceil(W);

    /// Builds the table of `base`: per window one inversion (the window's base in affine
    /// form), `HALF - 1` mixed additions and one doubling (to the next window's base), then one
    /// batched inversion for all the points. Mixed additions only, so that the crate links no
    /// projective + projective addition (smaller Wasm).
    pub fn new(base: &ProjectivePoint) -> Self {
        let mut projective = Vec::with_capacity(Self::WINDOWS * Self::HALF);
        let mut window_base = *base;
        for _ in 0..Self::WINDOWS {
            let affine_base = window_base.to_affine();
            let mut multiple = window_base;
            projective.push(multiple);
            for _ in 1..Self::HALF {
                multiple += &affine_base;
                projective.push(multiple);
            }
            // multiple = 2^(W-1)·window_base, so its double is the next window's base.
            window_base = multiple.double();
        }
        let affine: Vec<AffinePoint> =
            <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize(&projective);
        Table {
            points: affine.into_boxed_slice(),
        }
    }

    /// Heap bytes held by the table.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.points)
    }

    /// `acc += k·P`, with `k` given as its canonical big-endian encoding. `None` only if the
    /// table is inconsistent with `W`, which cannot happen for a table built by [`Table::new`].
    fn mul_add(&self, k: &FieldBytes, acc: &mut ProjectivePoint) -> Option<()> {
        let limbs = limbs_le(k);
        let mut carry = 0u32;
        let half = u32::try_from(Self::HALF).ok()?;
        for window in 0..Self::WINDOWS {
            let value = window_bits(&limbs, window * W, W) + carry;
            // Signed digit in [-2^(W-1), 2^(W-1)]: above half, borrow 2^W from the next window.
            let (magnitude, negative) = if value > half {
                carry = 1;
                ((1u32 << W) - value, true)
            } else {
                carry = 0;
                (value, false)
            };
            if magnitude == 0 {
                continue;
            }
            let index = window * Self::HALF + usize::try_from(magnitude - 1).ok()?;
            let point = self.points.get(index)?;
            if negative {
                *acc -= point;
            } else {
                *acc += point;
            }
        }
        // The top window cannot carry out (see WINDOWS); checked rather than assumed.
        (carry == 0).then_some(())
    }
}

impl<const W: usize> fmt::Debug for Table<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("window", &W)
            .field("points", &self.points.len())
            .finish()
    }
}

/// The 256-bit big-endian encoding as four little-endian 64-bit limbs.
fn limbs_le(bytes: &FieldBytes) -> [u64; 4] {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().rev().zip(bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(word);
    }
    limbs
}

/// Bits `pos .. pos + width` of the little-endian limbs (zero beyond bit 255); `width <= 32`.
fn window_bits(limbs: &[u64; 4], pos: usize, width: usize) -> u32 {
    let index = pos / 64;
    let offset = pos % 64;
    let low = limbs.get(index).copied().unwrap_or(0) >> offset;
    let high = match offset {
        0 => 0,
        _ => limbs.get(index + 1).copied().unwrap_or(0) << (64 - offset),
    };
    let mask = (1u64 << width) - 1;
    // Masked to `width <= 32` bits, so the truncation is exact.
    #[allow(clippy::cast_possible_truncation)]
    let bits = ((low | high) & mask) as u32;
    bits
}

/// The process-wide table of the generator, built on first use.
static G_TABLE: OnceBox<Table<G_WINDOW>> = OnceBox::new();

fn g_table() -> &'static Table<G_WINDOW> {
    G_TABLE.get_or_init(|| Box::new(Table::new(&ProjectivePoint::GENERATOR)))
}

/// Verifies `sig` (`r || s`, 64 bytes) over a SHA-256 `digest` with explicit tables for `G`
/// and `Q`. The generic core of [`VerifyingKey::verify_prehashed`], public (but hidden) so
/// that benchmarks can compare window widths.
#[doc(hidden)]
pub fn verify_with_tables<const WG: usize, const WQ: usize>(
    g: &Table<WG>,
    q: &Table<WQ>,
    digest: &[u8; 32],
    sig: &[u8],
) -> bool {
    verify_inner(g, q, digest, sig).unwrap_or(false)
}

fn verify_inner<const WG: usize, const WQ: usize>(
    g: &Table<WG>,
    q: &Table<WQ>,
    digest: &[u8; 32],
    sig: &[u8],
) -> Option<bool> {
    let sig: &[u8; 64] = sig.try_into().ok()?;
    let (r_bytes, s_bytes) = sig.split_at(32);
    let r = scalar_in_range(r_bytes)?;
    let s = scalar_in_range(s_bytes)?;
    // bits2int for a 256-bit hash on a 256-bit order: the digest itself, then reduced mod n.
    let e = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*digest));
    let s_inv = Option::<Scalar>::from(s.invert_vartime())?;
    let u1 = e * s_inv;
    let u2 = r * s_inv;

    let mut sum = ProjectivePoint::IDENTITY;
    g.mul_add(&u1.to_repr(), &mut sum)?;
    q.mul_add(&u2.to_repr(), &mut sum)?;
    if bool::from(sum.is_identity()) {
        return Some(false);
    }
    // R.x < p < 2n, so `reduce` (one conditional subtraction of n) is exactly `mod n`.
    let x = sum.to_affine().x();
    Some(<Scalar as Reduce<FieldBytes>>::reduce(&x) == r)
}

/// A big-endian 32-byte integer as a scalar, if it lies in `[1, n-1]`.
fn scalar_in_range(bytes: &[u8]) -> Option<Scalar> {
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    let scalar = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(bytes)))?;
    (!bool::from(scalar.is_zero())).then_some(scalar)
}

/// A P-256 public key prepared for fast ES256 verification: the key's fixed-base table
/// ([`Q_WINDOW`]) plus a reference to the process-wide generator table ([`G_WINDOW`]).
///
/// Build it once per key (JWKS installation) and keep it: building costs a few milliseconds,
/// verifying then costs about a quarter of `ring`'s ECDSA verification in Wasm.
#[derive(Clone)]
pub struct VerifyingKey {
    point: AffinePoint,
    q: Table<Q_WINDOW>,
    g: &'static Table<G_WINDOW>,
}

impl VerifyingKey {
    /// The key with affine coordinates `x` and `y` (big-endian, 32 bytes each, as in a JWK's
    /// `x` and `y` after base64url decoding), or `None` unless both are below `p` and the point
    /// is on the curve (hence in the prime-order group: P-256 has cofactor 1).
    ///
    /// Builds the key's table, and the generator's table if no key has done so yet.
    pub fn from_coordinates(x: &[u8; 32], y: &[u8; 32]) -> Option<Self> {
        let point = Option::<AffinePoint>::from(AffinePoint::from_coordinates(
            &FieldBytes::from(*x),
            &FieldBytes::from(*y),
        ))?;
        if bool::from(point.is_identity()) {
            return None;
        }
        Some(VerifyingKey {
            point,
            q: Table::new(&ProjectivePoint::from(point)),
            g: g_table(),
        })
    }

    /// [`VerifyingKey::from_coordinates`] from an uncompressed SEC1 point (`04 || x || y`,
    /// 65 bytes, as in an X.509 `SubjectPublicKeyInfo`); `None` for any other encoding.
    pub fn from_sec1_uncompressed(bytes: &[u8]) -> Option<Self> {
        let (tag, xy) = bytes.split_first()?;
        if *tag != 0x04 || xy.len() != 64 {
            return None;
        }
        let (x, y) = xy.split_at(32);
        Self::from_coordinates(x.try_into().ok()?, y.try_into().ok()?)
    }

    /// The public key's affine coordinates `(x, y)`, big-endian.
    pub fn coordinates(&self) -> ([u8; 32], [u8; 32]) {
        (self.point.x().into(), self.point.y().into())
    }

    /// Verifies a JWS ES256 signature (`r || s`, 64 bytes, big-endian) over the SHA-256
    /// `digest` of the signing input. `false` for any malformed signature.
    pub fn verify_prehashed(&self, digest: &[u8; 32], sig: &[u8]) -> bool {
        verify_with_tables(self.g, &self.q, digest, sig)
    }

    /// Verifies a JWS ES256 signature (`r || s`, 64 bytes) over `msg` (the JWS signing input
    /// `header.payload`), hashing it with SHA-256.
    #[cfg(feature = "sha2")]
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(msg).into();
        self.verify_prehashed(&digest, sig)
    }

    /// Heap bytes held by this key's table (the generator table is shared and not counted).
    pub fn table_bytes(&self) -> usize {
        self.q.memory_bytes()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (x, y) = self.coordinates();
        f.debug_struct("VerifyingKey")
            .field("x", &Hex(&x))
            .field("y", &Hex(&y))
            .finish_non_exhaustive()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn scalar_from_u64s(words: [u64; 4]) -> Scalar {
        // big-endian bytes of the little-endian words
        let mut bytes = [0u8; 32];
        for (i, w) in words.iter().enumerate() {
            bytes[32 - 8 * (i + 1)..32 - 8 * i].copy_from_slice(&w.to_be_bytes());
        }
        <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(bytes))
    }

    fn check_table<const W: usize>(base: &ProjectivePoint, k: &Scalar) {
        let table = Table::<W>::new(base);
        let mut acc = ProjectivePoint::IDENTITY;
        table.mul_add(&k.to_repr(), &mut acc).unwrap();
        assert_eq!(acc, *base * k, "W = {W}");
    }

    #[test]
    fn tables_multiply_like_p256() {
        let base = ProjectivePoint::GENERATOR * Scalar::from(123_456_789u64);
        let minus_one = -Scalar::ONE;
        let scalars = [
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(2u64),
            minus_one,
            minus_one - Scalar::ONE,
            scalar_from_u64s([u64::MAX; 4]), // 2^256 - 1 reduced
            scalar_from_u64s([0x8080_8080_8080_8080; 4]),
            scalar_from_u64s([0xffff_ffff_0000_0000, 0, 0x7fff_ffff_ffff_ffff, 0]),
            scalar_from_u64s([0x0123_4567_89ab_cdef; 4]),
        ];
        for k in &scalars {
            for base in [base, ProjectivePoint::GENERATOR] {
                check_table::<2>(&base, k);
                check_table::<3>(&base, k);
                check_table::<4>(&base, k);
                check_table::<5>(&base, k);
                check_table::<6>(&base, k);
                check_table::<7>(&base, k);
                check_table::<8>(&base, k);
            }
        }
    }

    #[test]
    fn window_bits_reads_across_limbs() {
        let limbs = [0xf000_0000_0000_0000, 0x0000_0000_0000_000f, 0, 1 << 63];
        assert_eq!(window_bits(&limbs, 60, 8), 0xff);
        assert_eq!(window_bits(&limbs, 255, 8), 1);
        assert_eq!(window_bits(&limbs, 256, 8), 0);
        assert_eq!(window_bits(&limbs, 300, 8), 0);
    }

    #[test]
    fn rejects_bad_keys() {
        let g = AffinePoint::GENERATOR;
        let (x, y): ([u8; 32], [u8; 32]) = (g.x().into(), g.y().into());
        assert!(VerifyingKey::from_coordinates(&x, &y).is_some());
        let mut y2 = y;
        y2[31] ^= 1;
        assert!(VerifyingKey::from_coordinates(&x, &y2).is_none());
        assert!(VerifyingKey::from_coordinates(&[0; 32], &[0; 32]).is_none());
        assert!(VerifyingKey::from_coordinates(&[0xff; 32], &y).is_none());
        assert!(VerifyingKey::from_sec1_uncompressed(&[4; 3]).is_none());
        assert!(VerifyingKey::from_sec1_uncompressed(&[]).is_none());
    }

    #[test]
    fn rejects_malformed_signatures_without_panicking() {
        let g = AffinePoint::GENERATOR;
        let key = VerifyingKey::from_coordinates(&g.x().into(), &g.y().into()).unwrap();
        let d = [7u8; 32];
        for len in [0, 1, 32, 63, 65, 128] {
            assert!(!key.verify_prehashed(&d, &alloc::vec![1u8; len]));
        }
        assert!(!key.verify_prehashed(&d, &[0u8; 64]));
        assert!(!key.verify_prehashed(&d, &[0xffu8; 64]));
        let mut sig = [0u8; 64];
        sig[31] = 1; // r = 1, s = 0
        assert!(!key.verify_prehashed(&d, &sig));
    }
}
