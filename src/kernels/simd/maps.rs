//! Lane-wise maps: the vector eˣ and the functions built on it, applied over a slice.

use super::Isa;

/// ln 2 split for Cody–Waite range reduction: `LN2_HI` has few enough bits that n·LN2_HI is
/// exact for |n| <= 150.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// eˣ lane-wise, within 2 ulp over the whole f32 range (tested against f64 in
/// `tests/kernels.rs`): 0 below about −103.97 (and for −∞), ∞ above about 88.72, NaN for NaN.
///
/// x = n·ln 2 + r with |r| <= ln2/2, eʳ by its degree-7 Taylor polynomial (truncation error
/// below 5e-9 relative), and 2ⁿ applied in two halves so that subnormal results are right.
#[inline(always)]
pub(crate) unsafe fn exp<I: Isa>(x: I::V) -> I::V {
    let x = I::min(I::splat(89.0), I::max(I::splat(-104.0), x));
    let n = I::round(I::mul(x, I::splat(core::f32::consts::LOG2_E)));
    let r = I::fma(n, I::splat(-LN2_HI), x);
    let r = I::fma(n, I::splat(-LN2_LO), r);
    let mut p = I::splat(1.0 / 5040.0);
    p = I::fma(p, r, I::splat(1.0 / 720.0));
    p = I::fma(p, r, I::splat(1.0 / 120.0));
    p = I::fma(p, r, I::splat(1.0 / 24.0));
    p = I::fma(p, r, I::splat(1.0 / 6.0));
    p = I::fma(p, r, I::splat(0.5));
    p = I::fma(p, r, I::splat(1.0));
    p = I::fma(p, r, I::splat(1.0));
    // n in −150..=128: 2ⁿ = 2^n1 · 2^n2 with both halves in the normal range.
    let n1 = I::round(I::mul(n, I::splat(0.5)));
    let n2 = I::sub(n, n1);
    I::mul(I::mul(p, I::pow2i(n1)), I::pow2i(n2))
}

/// A function applied lane by lane ([`map_slice`]). (A type, not a closure: a closure does not
/// inherit the caller's target features, so its intrinsics would not inline.)
pub(crate) trait Lanewise {
    /// The function on one vector.
    unsafe fn apply<I: Isa>(v: I::V) -> I::V;
}

/// eˣ ([`exp`]).
pub(crate) struct Exp;

impl Lanewise for Exp {
    #[inline(always)]
    unsafe fn apply<I: Isa>(v: I::V) -> I::V {
        exp::<I>(v)
    }
}

/// SiLU, v / (1 + e⁻ᵛ), with the vector [`exp`] (within about 3 ulp).
pub(crate) struct Silu;

impl Lanewise for Silu {
    #[inline(always)]
    unsafe fn apply<I: Isa>(v: I::V) -> I::V {
        I::div(v, I::add(I::splat(1.0), exp::<I>(I::sub(I::zero(), v))))
    }
}

/// The coefficients of the vector GELU's erf, numerator P and denominator Q in ascending
/// powers of x²: a weighted least-squares rational fit of erf(x)/x on 0 ≤ x ≤ 4, reweighted
/// towards the minimax (in f64 within 1.7e-9 of erf; in f32 arithmetic within 4e-7). P starts
/// at 2/√π, erf's slope at 0.
const ERF_P: [f32; 7] = [
    core::f32::consts::FRAC_2_SQRT_PI,
    0.184_885_26,
    0.054_330_71,
    0.003_843_676_3,
    0.000_381_773_3,
    4.750_825e-6,
    -1.352_269_85e-8,
];
const ERF_Q: [f32; 6] = [
    1.0,
    0.497_183_77,
    0.113_876_49,
    0.015_458_121,
    0.001_309_235_1,
    6.373_243e-5,
];

/// GELU, ½·v·(1 + erf(v/√2)), with erf(x) = x·P(x²)/Q(x²) for x clamped to ±4 (where erf is ±1
/// in f32), the result clamped to ±1: no branch and no exp, so it vectorises (the portable
/// [`gelu`](crate::kernels::gelu) calls `libm::erff`, which branches by range and calls exp).
/// Within 2.5e-7·|v| of the exact GELU (`tests/kernels.rs` against f64).
pub(crate) struct Gelu;

impl Lanewise for Gelu {
    #[inline(always)]
    unsafe fn apply<I: Isa>(v: I::V) -> I::V {
        let x = I::mul(v, I::splat(core::f32::consts::FRAC_1_SQRT_2));
        let x = I::min(I::splat(4.0), I::max(I::splat(-4.0), x));
        let t = I::mul(x, x);
        let mut p = I::splat(ERF_P[6]);
        for c in ERF_P[..6].iter().rev() {
            p = I::fma(p, t, I::splat(*c));
        }
        let mut q = I::splat(ERF_Q[5]);
        for c in ERF_Q[..5].iter().rev() {
            q = I::fma(q, t, I::splat(*c));
        }
        let e = I::mul(x, I::div(p, q));
        let e = I::min(I::splat(1.0), I::max(I::splat(-1.0), e));
        I::mul(I::mul(I::splat(0.5), v), I::add(I::splat(1.0), e))
    }
}

/// `out[i] = F(x[i])` for `n` values; `x` and `out` may be the same pointer (each vector is
/// loaded before it is stored). Ranges: x[..n], out[..n].
#[inline(always)]
pub(crate) unsafe fn map_slice<I: Isa, F: Lanewise>(x: *const f32, out: *mut f32, n: usize) {
    let l = I::LANES;
    let mut i = 0;
    while i + l <= n {
        // In bounds: i + l <= n.
        I::store(out.add(i), F::apply::<I>(I::load(x.add(i))));
        i += l;
    }
    if i < n {
        let v = F::apply::<I>(I::load_partial(x.add(i), n - i));
        I::store_partial(out.add(i), v, n - i);
    }
}
