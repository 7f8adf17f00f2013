//! The row-wise operations around the matrix products: a bias added to every position's row,
//! and the LayerNorm / RMSNorm of one row, with its gain. Their portable twins are
//! `kernels::add_bias` (the same numbers, bit for bit: one exact widening and one addition per
//! value) and `portable::{layer_norm, rms_norm}` (the same formulas; only the row's sums are
//! added in another order, lanes first).

use super::{Isa, LoadW};
use crate::kernels::Norm;

/// `y[r·n + i] += b[i]` for every row r < `rows` (a bias on every position).
/// Ranges: y[..rows·n], b[..n].
#[inline(always)]
pub(crate) unsafe fn add_bias<I: Isa, E: LoadW<I>>(
    y: *mut f32,
    b: *const E,
    n: usize,
    rows: usize,
) {
    let l = I::LANES;
    for r in 0..rows {
        let yr = y.add(r * n);
        let mut i = 0;
        while i + l <= n {
            // In bounds: i + l <= n.
            let v = I::add(I::load(yr.add(i)), E::loadw(b.add(i)));
            I::store(yr.add(i), v);
            i += l;
        }
        let t = n - i;
        if I::MASKED && t > 0 {
            let v = I::add(I::load_partial(yr.add(i), t), E::loadw_partial(b.add(i), t));
            I::store_partial(yr.add(i), v, t);
        } else {
            for j in i..n {
                *yr.add(j) += (*b.add(j)).to_f32();
            }
        }
    }
}

/// `kind` of the `n` values at `x` into `out`, times the gain `g + offset` if there is a gain:
/// `out[i] = (x[i] − μ)·s·(g[i] + offset)`, with μ the mean and s = 1/√(σ² + 1e-5) for
/// LayerNorm (σ² the biased variance), μ = 0 and s = √n / max(‖x‖₂, 1e-12) for RMSNorm.
/// Ranges: x[..n], out[..n], g[..n].
#[inline(always)]
pub(crate) unsafe fn norm<I: Isa, E: LoadW<I>>(
    kind: Norm,
    x: *const f32,
    g: Option<*const E>,
    offset: f32,
    out: *mut f32,
    n: usize,
) {
    let (mu, s) = match kind {
        Norm::Layer => {
            let mean = sum::<I, false>(x, n, 0.0) / n as f32;
            let var = sum::<I, true>(x, n, mean) / n as f32;
            (mean, 1.0 / I::sqrt(var + 1e-5))
        }
        Norm::Rms => {
            let norm = I::sqrt(sum::<I, true>(x, n, 0.0));
            (0.0, I::sqrt(n as f32) / norm.max(1e-12))
        }
    };
    // x − 0 is x (−0 and NaN included), so RMSNorm's values are the portable ones'.
    let (muv, sv, ov) = (I::splat(mu), I::splat(s), I::splat(offset));
    let l = I::LANES;
    let mut i = 0;
    while i + l <= n {
        // In bounds: i + l <= n.
        let mut o = I::mul(I::sub(I::load(x.add(i)), muv), sv);
        if let Some(g) = g {
            o = I::mul(o, I::add(E::loadw(g.add(i)), ov));
        }
        I::store(out.add(i), o);
        i += l;
    }
    let t = n - i;
    if I::MASKED && t > 0 {
        let mut o = I::mul(I::sub(I::load_partial(x.add(i), t), muv), sv);
        if let Some(g) = g {
            o = I::mul(o, I::add(E::loadw_partial(g.add(i), t), ov));
        }
        I::store_partial(out.add(i), o, t);
    } else {
        for j in i..n {
            let mut o = (*x.add(j) - mu) * s;
            if let Some(g) = g {
                o *= (*g.add(j)).to_f32() + offset;
            }
            *out.add(j) = o;
        }
    }
}

/// Σ x[i] over x[..n], or Σ (x[i] − c)² if `SQUARES`: two vector accumulators, then the lanes,
/// then the last `n % LANES` values in order.
#[inline(always)]
unsafe fn sum<I: Isa, const SQUARES: bool>(x: *const f32, n: usize, c: f32) -> f32 {
    let l = I::LANES;
    let cv = I::splat(c);
    let (mut a0, mut a1) = (I::zero(), I::zero());
    let mut i = 0;
    while i + 2 * l <= n {
        // In bounds: i + 2l <= n.
        a0 = step::<I, SQUARES>(a0, I::load(x.add(i)), cv);
        a1 = step::<I, SQUARES>(a1, I::load(x.add(i + l)), cv);
        i += 2 * l;
    }
    if i + l <= n {
        a0 = step::<I, SQUARES>(a0, I::load(x.add(i)), cv);
        i += l;
    }
    let mut s = I::hsum(I::add(a0, a1));
    for j in i..n {
        let d = *x.add(j) - c;
        s += if SQUARES { d * d } else { *x.add(j) };
    }
    s
}

/// One vector of [`sum`]: acc + v, or acc + (v − c)². (A function, not a closure: a closure is
/// not always inlined into the target-feature function.)
#[inline(always)]
unsafe fn step<I: Isa, const SQUARES: bool>(acc: I::V, v: I::V, c: I::V) -> I::V {
    if SQUARES {
        let d = I::sub(v, c);
        I::fma(d, d, acc)
    } else {
        I::add(acc, v)
    }
}
