//! The matrix-vector product over f32, f16 and bf16 weights.

use super::{Isa, LoadW};

/// Rows shorter than this are prefetched by [`gemv`] and [`gemv_q8`]: decode reads each small
/// matrix once from L3 or DRAM in groups of four short rows, which the hardware prefetchers
/// follow too late. Long rows are streams they follow well, and there a prefetch only takes a
/// load slot from a loop that is bound by its loads when the weights are cached.
pub(super) const PREFETCH_BYTES: usize = 4096;

/// How far ahead [`gemv`] and [`gemv_q8`] prefetch, in bytes. A group of four rows is one
/// contiguous run of memory, and each iteration consumes the same share of each row, so the
/// prefetches walk the weights as one linear stream, one per cache line: the iteration that has
/// consumed `b` bytes of its group's `4·row` prefetches `group start + 4 KiB + b` onwards.
pub(super) const PREFETCH_AHEAD: usize = 4096;

/// y[r] = Σ_c w[r·cols + c]·x[c] for r < rows: four rows at a time sharing each load of x,
/// two accumulators per row; the columns after the last whole vector in one masked step, or in
/// scalar code on sets without masked loads. The weights ahead
/// are prefetched alongside when rows are short ([`PREFETCH_BYTES`], [`PREFETCH_AHEAD`];
/// addresses only, never read). With `align`, a row's first columns may be taken in one masked
/// step so that its further weight loads are aligned ([`aligning_peel`]); the sums are then
/// grouped by the weights' address, so the last bits of y depend on where W is (fixed for a
/// loaded model). Attention's scores pass `false`: the KV cache is the caller's buffer, and two
/// caches for the same tokens give the same bits.
/// Ranges: w[..rows·cols], x[..cols], y[..rows].
#[inline(always)]
pub(crate) unsafe fn gemv<I: Isa, E: LoadW<I>>(
    w: *const E,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    rows: usize,
    align: bool,
) {
    let peel = if align {
        aligning_peel::<I, E>(w, cols)
    } else {
        0
    };
    // Two instantiations rather than a test inside the loop: with the test there, the 16-bit
    // loop compiles to slower code, even when it prefetches.
    if cols * core::mem::size_of::<E>() < PREFETCH_BYTES {
        gemv_body::<I, E, true>(w, cols, x, y, rows, peel)
    } else {
        gemv_body::<I, E, false>(w, cols, x, y, rows, peel)
    }
}

/// [`gemv`], prefetching if `PREFETCH`, the first `peel` columns of each row in one masked step.
#[inline(always)]
unsafe fn gemv_body<I: Isa, E: LoadW<I>, const PREFETCH: bool>(
    w: *const E,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    rows: usize,
    peel: usize,
) {
    let l = I::LANES;
    let main = peel + (cols - peel) / l * l;
    let mut r = 0;
    while r + 4 <= rows {
        let w0 = w.add(r * cols);
        let w1 = w0.add(cols);
        let w2 = w1.add(cols);
        let w3 = w2.add(cols);
        let (mut a0, mut a1, mut a2, mut a3) = (I::zero(), I::zero(), I::zero(), I::zero());
        let (mut b0, mut b1, mut b2, mut b3) = (I::zero(), I::zero(), I::zero(), I::zero());
        // Wrapping: near the end these addresses pass the weights (prefetches never fault).
        let ahead = (w0 as *const u8).wrapping_add(PREFETCH_AHEAD);
        // Bytes of the four rows consumed per iteration, as whole cache lines.
        let lines = (8 * l * core::mem::size_of::<E>()).div_ceil(64);
        if peel > 0 {
            let xp = I::load_partial(x, peel);
            a0 = I::fma(E::loadw_partial(w0, peel), xp, a0);
            a1 = I::fma(E::loadw_partial(w1, peel), xp, a1);
            a2 = I::fma(E::loadw_partial(w2, peel), xp, a2);
            a3 = I::fma(E::loadw_partial(w3, peel), xp, a3);
        }
        let mut c = peel;
        while c + 2 * l <= main {
            if PREFETCH {
                let pf = ahead.wrapping_add(4 * c * core::mem::size_of::<E>());
                for j in 0..lines {
                    I::prefetch(pf.wrapping_add(64 * j));
                }
            }
            let x0 = I::load(x.add(c));
            let x1 = I::load(x.add(c + l));
            a0 = I::fma(E::loadw(w0.add(c)), x0, a0);
            a1 = I::fma(E::loadw(w1.add(c)), x0, a1);
            a2 = I::fma(E::loadw(w2.add(c)), x0, a2);
            a3 = I::fma(E::loadw(w3.add(c)), x0, a3);
            b0 = I::fma(E::loadw(w0.add(c + l)), x1, b0);
            b1 = I::fma(E::loadw(w1.add(c + l)), x1, b1);
            b2 = I::fma(E::loadw(w2.add(c + l)), x1, b2);
            b3 = I::fma(E::loadw(w3.add(c + l)), x1, b3);
            c += 2 * l;
        }
        if c < main {
            let x0 = I::load(x.add(c));
            b0 = I::fma(E::loadw(w0.add(c)), x0, b0);
            b1 = I::fma(E::loadw(w1.add(c)), x0, b1);
            b2 = I::fma(E::loadw(w2.add(c)), x0, b2);
            b3 = I::fma(E::loadw(w3.add(c)), x0, b3);
        }
        let t = cols - main;
        if I::MASKED && t > 0 {
            let xt = I::load_partial(x.add(main), t);
            a0 = I::fma(E::loadw_partial(w0.add(main), t), xt, a0);
            a1 = I::fma(E::loadw_partial(w1.add(main), t), xt, a1);
            a2 = I::fma(E::loadw_partial(w2.add(main), t), xt, a2);
            a3 = I::fma(E::loadw_partial(w3.add(main), t), xt, a3);
        }
        let mut s = I::hsum4(
            I::add(a0, b0),
            I::add(a1, b1),
            I::add(a2, b2),
            I::add(a3, b3),
        );
        if !I::MASKED {
            for c in main..cols {
                let xv = *x.add(c);
                s[0] += (*w0.add(c)).to_f32() * xv;
                s[1] += (*w1.add(c)).to_f32() * xv;
                s[2] += (*w2.add(c)).to_f32() * xv;
                s[3] += (*w3.add(c)).to_f32() * xv;
            }
        }
        for (j, v) in s.iter().enumerate() {
            *y.add(r + j) = *v;
        }
        r += 4;
    }
    while r < rows {
        *y.add(r) = dot::<I, E>(w.add(r * cols), x, cols);
        r += 1;
    }
}

/// How many first columns [`gemv`] (with `align`) takes in one masked step so that each
/// further vector of weights it loads is aligned to its own size: where W is not (a file's
/// tensors start wherever its header ends, an allocation at 16 bytes), every other 32-byte
/// load or every 64-byte load of f32 weights spans two cache lines, which slows the product
/// (`examples/align_probe.rs` measures it). Only where the sets mask
/// partial loads and the rows are whole vectors (`cols` a multiple of `LANES`: every row then
/// starts at the same offset); 0 otherwise, and when W is aligned already.
#[inline(always)]
fn aligning_peel<I: Isa, E>(w: *const E, cols: usize) -> usize {
    let (l, size) = (I::LANES, core::mem::size_of::<E>());
    let width = l * size;
    if !I::MASKED || cols == 0 || !cols.is_multiple_of(l) || !width.is_power_of_two() {
        return 0;
    }
    let off = (w as usize) % width;
    if !off.is_multiple_of(size) {
        return 0;
    }
    (width - off) % width / size
}

/// Σ_c w[c]·x[c] over `cols` values (ranges w[..cols], x[..cols]).
#[inline(always)]
unsafe fn dot<I: Isa, E: LoadW<I>>(w: *const E, x: *const f32, cols: usize) -> f32 {
    let l = I::LANES;
    let main = cols - cols % l;
    let (mut a, mut b) = (I::zero(), I::zero());
    let mut c = 0;
    while c + 2 * l <= main {
        a = I::fma(E::loadw(w.add(c)), I::load(x.add(c)), a);
        b = I::fma(E::loadw(w.add(c + l)), I::load(x.add(c + l)), b);
        c += 2 * l;
    }
    if c < main {
        a = I::fma(E::loadw(w.add(c)), I::load(x.add(c)), a);
    }
    let t = cols - main;
    if I::MASKED && t > 0 {
        let xt = I::load_partial(x.add(main), t);
        b = I::fma(E::loadw_partial(w.add(main), t), xt, b);
    }
    let mut s = I::hsum(I::add(a, b));
    if !I::MASKED {
        for c in main..cols {
            s += (*w.add(c)).to_f32() * *x.add(c);
        }
    }
    s
}

/// Stores the vectors `acc` (a row of `acc.len()·LANES` values) to `y`, only its first `valid`
/// values, adding to what `y` holds if `add`: whole vectors directly, the partial one through
/// the stack (the product over panels and over int8 panels, whose last panel may end inside a
/// vector). Range: y[..valid].
#[inline(always)]
pub(crate) unsafe fn store_row<I: Isa>(y: *mut f32, acc: &[I::V], valid: usize, add: bool) {
    let l = I::LANES;
    for (v, a) in acc.iter().enumerate() {
        let at = y.add(v * l);
        if (v + 1) * l <= valid {
            I::store(at, if add { I::add(I::load(at), *a) } else { *a });
        } else if v * l < valid {
            let n = valid - v * l;
            let a = if add {
                I::add(I::load_partial(at, n), *a)
            } else {
                *a
            };
            I::store_partial(at, a, n);
        }
    }
}
