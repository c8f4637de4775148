//! Cost of the pieces of a verification (p256 0.14 primitives), natively or under V8 like
//! `speed.rs`: where a verification's time goes.
use p256::elliptic_curve::Group;
use p256::{AffinePoint, ProjectivePoint, Scalar};
use std::hint::black_box;
use std::time::Instant;
fn t<T>(name: &str, n: u32, mut f: impl FnMut() -> T) {
    let s = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    println!(
        "{name:30} {:8.3} µs",
        s.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}
fn main() {
    let k = Scalar::from(0x1234_5678_9abc_def1u64)
        * Scalar::from(0xfedc_ba98_7654_3211u64)
        * Scalar::from(0xfedc_ba98_7654_3211u64)
        * Scalar::from(0xfedc_ba98_7654_3211u64);
    let p = ProjectivePoint::GENERATOR * k;
    let a: AffinePoint = (ProjectivePoint::GENERATOR * k * k).to_affine();
    let n = 2000;
    t("scalar invert_vartime", n, || black_box(k).invert_vartime());
    t("scalar invert (ct)", n, || black_box(k).invert());
    t("scalar mul", n * 100, || black_box(k) * k);
    t("to_affine (field inv)", n, || black_box(p).to_affine());
    let mut acc = p;
    t("mixed add", n * 100, || {
        acc += black_box(&a);
        acc
    });
    let b = ProjectivePoint::from(a);
    t("full add", n * 100, || {
        acc += black_box(&b);
        acc
    });
    t("double", n * 100, || {
        acc = black_box(acc).double();
        acc
    });
    t("neg affine", n * 100, || -black_box(a));
}
