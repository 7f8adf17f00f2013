//! The broadcast-form matrix-matrix product Y = X·Wᵀ: vectors run along the positions, so no
//! output ever needs a horizontal sum.
//!
//! For each block of columns, a block of up to `2·LANES` positions is packed transposed,
//! `Xᵀ[k][p]`, into a 32 KiB buffer on the stack (256 columns with 16 lanes, 512 with 8 or 4).
//! A tile of `R` weight rows × that block keeps `2R` vector accumulators (`R` = 12 with 32
//! vector registers, 6 with 16; with one vector of positions, `2R` rows × 1); each step over k
//! loads the vectors of positions, broadcasts one weight of each row from where W is and issues
//! `2R` FMAs. Every accumulator sums over the whole column block and leaves through a stack
//! buffer to Y's rows once per block. The dot-product tiles of [`super::gemm`] instead end each
//! output with a horizontal sum every `cols / LANES` FMA steps, which takes as long as the
//! FMAs when rows are short.
//!
//! 16-bit and Q8_0 weights are widened (dequantised) per tile into a second stack buffer of the
//! tile's rows (24 KiB), as the broadcasts need f32.
//!
//! When it pays ([`pays`]): with 32 vector registers (AVX-512) from one vector of positions; with
//! 16 (AVX2) only on short rows, where the dot-product tiles' horizontal sums dominate.

use core::mem::MaybeUninit;

use super::gemm::{dequantise, widen, Strips};
use super::{Isa, LoadW};
use crate::q8_0::Q8_0_BLOCK;

/// f32 values of the transposed-activations buffer: `2·LANES` positions × `KB` columns.
const XT_LEN: usize = 8192;

/// Most columns per block.
const KB_MAX: usize = 512;

/// f32 values of the staged-weights buffer: a tile's rows × its column block (12 × 256 with
/// 16 lanes, 6 × 512 with 8 or 4).
const STAGED_LEN: usize = 6144;

/// Rows (columns of X) shorter than this take the broadcast form even with 16 vector registers.
const SHORT_ROWS: usize = 256;

/// Whether [`gemm`] is the faster product for `n` positions over rows of `cols` values: from
/// one vector of positions, with 32 vector registers or on short rows.
#[inline(always)]
pub(super) fn pays<I: Isa>(n: usize, cols: usize) -> bool {
    n >= I::LANES && (I::TILE_POSITIONS >= 6 || cols < SHORT_ROWS)
}

/// Y = X·Wᵀ (shapes as [`super::gemm`]) for every row of W, `n >= 1`. Ranges: w[..rows·cols]
/// (or its Q8_0 blocks), x[..n·cols], y[..n·rows].
#[inline(always)]
pub(super) unsafe fn gemm<I: Isa, E: LoadW<I>>(
    strips: Strips<E>,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    n: usize,
    rows: usize,
) where
    f32: LoadW<I>,
{
    if I::TILE_POSITIONS >= 6 {
        blocks::<I, E, 12, 24>(strips, cols, x, y, n, rows)
    } else {
        blocks::<I, E, 6, 12>(strips, cols, x, y, n, rows)
    }
}

/// [`gemm`] with tiles of `R` rows: for each block of `KB` columns and each block of
/// `2·LANES` positions (packed into Xᵀ), the rows in tiles of `R`, then of 4, then of 1; the
/// first column block writes Y and later ones add to it.
#[inline(always)]
unsafe fn blocks<I: Isa, E: LoadW<I>, const R: usize, const R2: usize>(
    strips: Strips<E>,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    n: usize,
    rows: usize,
) where
    f32: LoadW<I>,
{
    let l = I::LANES;
    let pm = 2 * l;
    // A multiple of 32 (LANES is 4, 8 or 16), so column blocks hold whole Q8_0 blocks.
    let kb = KB_MAX.min(XT_LEN / pm);
    debug_assert!(R2 * kb <= STAGED_LEN);
    // Uninitialised: `pack` writes all of xt[..kc·pm] and widen/dequantise all of
    // staged[..h·kc] before a tile reads them.
    let mut xt = [const { MaybeUninit::<f32>::uninit() }; XT_LEN];
    let mut staged = [const { MaybeUninit::<f32>::uninit() }; STAGED_LEN];
    let (xt, staged) = (
        xt.as_mut_ptr().cast::<f32>(),
        staged.as_mut_ptr().cast::<f32>(),
    );
    let mut k0 = 0;
    while k0 < cols {
        let kc = kb.min(cols - k0);
        let add = k0 > 0;
        let mut i0 = 0;
        while i0 < n {
            let np = pm.min(n - i0);
            pack::<I>(x.add(i0 * cols + k0), cols, np, kc, pm, xt);
            let yb = y.add(i0 * rows);
            let mut r = 0;
            while r < rows {
                let left = rows - r;
                // With one vector of positions, tiles of twice the rows fill the same registers.
                let h = if np <= l && left >= R2 {
                    R2
                } else if left >= R {
                    R
                } else if left >= 4 {
                    4
                } else {
                    1
                };
                let (wt, ws) = match strips {
                    // f32 (the only 4-byte element) is read where it is.
                    Strips::InPlace(w) if size_of::<E>() == 4 => {
                        (w.add(r * cols + k0).cast::<f32>(), cols)
                    }
                    Strips::InPlace(w) | Strips::Widened(w) => {
                        widen::<I, E>(w.add(r * cols + k0), cols, staged, kc, h);
                        (staged.cast_const(), kc)
                    }
                    Strips::Q8(w) => {
                        let nb = cols / Q8_0_BLOCK;
                        let src = w.add(r * nb + k0 / Q8_0_BLOCK);
                        dequantise::<I>(src, nb, staged, kc, h);
                        (staged.cast_const(), kc)
                    }
                };
                let t = Tile {
                    xt: xt.cast_const(),
                    pm,
                    w: wt,
                    ws,
                    kc,
                    y: yb,
                    rows,
                    np,
                    r,
                    add,
                };
                match (np > l, h) {
                    (true, 4) => tile::<I, 2, 4>(t),
                    (true, 1) => tile::<I, 2, 1>(t),
                    (true, _) => tile::<I, 2, R>(t),
                    (false, 4) => tile::<I, 1, 4>(t),
                    (false, 1) => tile::<I, 1, 1>(t),
                    (false, h) if h == R => tile::<I, 1, R>(t),
                    (false, _) => tile::<I, 1, R2>(t),
                }
                r += h;
            }
            i0 += np;
        }
        k0 += kc;
    }
}

/// Xᵀ of `np` positions × `kc` columns: xt[c·pm + p] = x[p·stride + c], and 0 for positions
/// np..pm (whose sums are never stored: written so that every lane a tile reads is
/// initialised). Ranges: x[..(np−1)·stride + kc], xt[..kc·pm].
#[inline(always)]
unsafe fn pack<I: Isa>(
    x: *const f32,
    stride: usize,
    np: usize,
    kc: usize,
    pm: usize,
    xt: *mut f32,
) {
    for p in 0..np {
        let src = x.add(p * stride);
        for c in 0..kc {
            *xt.add(c * pm + p) = *src.add(c);
        }
    }
    if np < pm {
        for c in 0..kc {
            for p in np..pm {
                *xt.add(c * pm + p) = 0.0;
            }
        }
    }
}

/// f32 of a tile's accumulators: H·PV·LANES is at most 24 · 16 (12 · 2 · 16 with two vectors).
const OUTS_LEN: usize = 384;

/// One tile's operands.
#[derive(Clone, Copy)]
struct Tile {
    /// Packed Xᵀ: `kc` rows of `pm` positions.
    xt: *const f32,
    /// Positions per row of `xt`.
    pm: usize,
    /// The tile's first weight row (f32), at the block's first column.
    w: *const f32,
    /// Row stride of `w`.
    ws: usize,
    /// Columns in the block.
    kc: usize,
    /// Y at the block's first position.
    y: *mut f32,
    /// Row stride of Y (the rows of W).
    rows: usize,
    /// Positions in the block that exist (the others are zero in `xt` and not stored).
    np: usize,
    /// The tile's first weight row, as a column of Y.
    r: usize,
    /// Add to Y instead of writing it.
    add: bool,
}

/// Y[p, r+q] (+)= Σ_c xt[c·pm + p]·w[q·ws + c] for positions p < min(np, PV·LANES) and
/// q < H. Ranges: xt[..kc·pm] with PV·LANES <= pm, w[..(H−1)·ws + kc], y[..(np−1)·rows + r + H].
#[inline(always)]
unsafe fn tile<I: Isa, const PV: usize, const H: usize>(t: Tile) {
    let l = I::LANES;
    let mut acc = [[I::zero(); PV]; H];
    let wq: [*const f32; H] = core::array::from_fn(|q| t.w.add(q * t.ws));
    for c in 0..t.kc {
        let xr = t.xt.add(c * t.pm);
        let xv: [I::V; PV] = core::array::from_fn(|v| I::load(xr.add(v * l)));
        for q in 0..H {
            let b = I::splat(*wq[q].add(c));
            for v in 0..PV {
                acc[q][v] = I::fma(b, xv[v], acc[q][v]);
            }
        }
    }
    // The accumulators through a stack buffer, outs[q·PV·LANES + p], to Y's rows.
    let mut outs = [0.0f32; OUTS_LEN];
    let pw = PV * l;
    for (q, aq) in acc.iter().enumerate() {
        for (v, a) in aq.iter().enumerate() {
            I::store(outs.as_mut_ptr().add(q * pw + v * l), *a);
        }
    }
    for p in 0..t.np.min(pw) {
        let yr = t.y.add(p * t.rows + t.r);
        for q in 0..H {
            let s = outs[q * pw + p];
            if t.add {
                *yr.add(q) += s;
            } else {
                *yr.add(q) = s;
            }
        }
    }
}
