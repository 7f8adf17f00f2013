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
