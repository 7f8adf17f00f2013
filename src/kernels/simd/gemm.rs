//! The matrix-matrix product over weights as stored (f32, f16, bf16, Q8_0): cache blocks of
//! columns, strips of four rows, register tiles of positions.

use super::int8::gemv_q8;
use super::{broadcast, Isa, LoadW};
use crate::q8_0::{q8_0_quants, q8_0_scale, BlockQ8_0, Q8_0_BLOCK};

/// Columns per cache block of the matrix-matrix product: 4 weight rows of this many f32
/// (8 KiB) stay in L1 while the positions stream past them.
const KC: usize = 512;

/// Y = X·Wᵀ for `n` positions: X[n, cols], W[rows, cols], Y[n, rows], all row-major.
/// Ranges: w[..rows·cols], x[..n·cols], y[..n·rows].
///
/// Where [`broadcast::pays`] (from one vector of positions, with 32 vector registers or on
/// rows shorter than 256 values), the broadcast-form product of `simd/broadcast.rs` runs
/// instead; what follows is the dot-product form used otherwise.
///
/// Register blocking: a tile of 3 positions × 4 weight rows keeps 12 vector accumulators
/// (plus 3 activation vectors and 1 weight vector: the 16 registers of AVX2), 7 loads per
/// 12 FMAs; with 32 registers (AVX-512) tiles of 6 positions keep 24, 10 loads per 24 FMAs
/// ([`Isa::TILE_POSITIONS`]; with AVX-512 only below 16 positions, where the broadcast form
/// does not take over). Columns are cut into blocks of [`KC`]; the 4 rows of a tile (a strip)
/// stay in L1 across all positions, and later column blocks add to Y ([`blocked`]). 16-bit
/// weights are widened once per strip into an 8 KiB f32 buffer on the stack when at least
/// [`STAGE_MIN`] positions will reuse it, instead of once per tile (the widening otherwise
/// takes a third of the FMA issue slots). The last `rows % 4` rows take 1-position tiles over
/// all columns.
#[inline(always)]
pub(crate) unsafe fn gemm<I: Isa, E: LoadW<I>>(
    w: *const E,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    n: usize,
    rows: usize,
) where
    f32: LoadW<I>,
{
    if broadcast::pays::<I>(n, cols) {
        return broadcast::gemm::<I, E>(Strips::InPlace(w), cols, x, y, n, rows);
    }
    let strips = if core::mem::size_of::<E>() != 4 && n >= STAGE_MIN {
        Strips::Widened(w)
    } else {
        Strips::InPlace(w)
    };
    let full = rows - rows % 4;
    blocked::<I, E>(strips, cols, x, y, n, rows, full);
    for i in 0..n {
        let strip = w.add(full * cols);
        match rows - full {
            3 => tile::<I, E, 1, 3>(strip, cols, x, cols, y, rows, i, full, 0, cols, false),
            2 => tile::<I, E, 1, 2>(strip, cols, x, cols, y, rows, i, full, 0, cols, false),
            1 => tile::<I, E, 1, 1>(strip, cols, x, cols, y, rows, i, full, 0, cols, false),
            _ => {}
        }
    }
}

/// Positions from which [`gemm`] widens 16-bit weight strips once into a buffer.
const STAGE_MIN: usize = 6;

/// The Q8_0 matrix-matrix product Y = X·Wᵀ (shapes as [`gemm`], W in blocks, `cols` a
/// multiple of 32). Where [`broadcast::pays`], the broadcast-form product with each tile's rows
/// dequantised first; otherwise, below [`STAGE_MIN`] positions, one [`gemv_q8`] per position; from there,
/// each strip of 4 rows is dequantised per [`KC`] block into an 8 KiB f32 buffer on the stack
/// and multiplied by the f32 tiles of [`gemm`], and the rows left over take [`gemv_q8`].
/// Ranges: w[..rows·cols/32] blocks, x[..n·cols], y[..n·rows].
#[inline(always)]
pub(crate) unsafe fn gemm_q8<I: Isa>(
    w: *const BlockQ8_0,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    n: usize,
    rows: usize,
) where
    f32: LoadW<I>,
{
    if broadcast::pays::<I>(n, cols) {
        return broadcast::gemm::<I, f32>(Strips::Q8(w), cols, x, y, n, rows);
    }
    let nb = cols / Q8_0_BLOCK;
    let full = if n < STAGE_MIN { 0 } else { rows - rows % 4 };
    blocked::<I, f32>(Strips::Q8(w), cols, x, y, n, rows, full);
    if full < rows {
        for i in 0..n {
            let (xi, yi) = (x.add(i * cols), y.add(i * rows + full));
            gemv_q8::<I>(w.add(full * nb), cols, xi, yi, rows - full);
        }
    }
}

/// Where [`blocked`] takes each strip of 4 weight rows from (W[rows, cols], row-major).
#[derive(Clone, Copy)]
pub(super) enum Strips<E> {
    /// Read by the tiles where it is.
    InPlace(*const E),
    /// Widened to f32 into a buffer first ([`widen`]).
    Widened(*const E),
    /// Q8_0 blocks (`cols / 32` per row), dequantised into a buffer first.
    Q8(*const BlockQ8_0),
}

/// The cache-blocked loop of [`gemm`] and [`gemm_q8`]: for each block of [`KC`] columns, rows
/// `0..full` (a multiple of 4) in strips of 4, each against all positions ([`strip_tiles`]);
/// the first column block writes Y and later ones add to it. Ranges: those of the caller, with
/// `full <= rows`.
#[inline(always)]
unsafe fn blocked<I: Isa, E: LoadW<I>>(
    strips: Strips<E>,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    n: usize,
    rows: usize,
    full: usize,
) where
    f32: LoadW<I>,
{
    let mut buf = [0.0f32; 4 * KC];
    let out = buf.as_mut_ptr();
    let mut k0 = 0;
    while k0 < cols {
        let kc = KC.min(cols - k0);
        let add = k0 > 0;
        let mut r = 0;
        while r < full {
            match strips {
                Strips::InPlace(w) => {
                    let strip = w.add(r * cols + k0);
                    strip_tiles::<I, E>(strip, cols, x, cols, y, rows, n, r, k0, kc, add);
                }
                Strips::Widened(w) => {
                    widen::<I, E>(w.add(r * cols + k0), cols, out, kc, 4);
                    strip_tiles::<I, f32>(out, kc, x, cols, y, rows, n, r, k0, kc, add);
                }
                Strips::Q8(w) => {
                    // KC and cols are multiples of 32, so the block holds whole Q8_0 blocks.
                    let nb = cols / Q8_0_BLOCK;
                    dequantise::<I>(w.add(r * nb + k0 / Q8_0_BLOCK), nb, out, kc, 4);
                    strip_tiles::<I, f32>(out, kc, x, cols, y, rows, n, r, k0, kc, add);
                }
            }
            r += 4;
        }
        k0 += kc;
    }
}

/// f32 copies of `h` rows × `kc` weights: from `w` (row stride `stride`) into `out` (row
/// stride `kc`). Ranges: w[..(h−1)·stride + kc], out[..h·kc].
#[inline(always)]
pub(super) unsafe fn widen<I: Isa, E: LoadW<I>>(
    w: *const E,
    stride: usize,
    out: *mut f32,
    kc: usize,
    h: usize,
) {
    let l = I::LANES;
    let main = kc - kc % l;
    for q in 0..h {
        let (src, dst) = (w.add(q * stride), out.add(q * kc));
        let mut c = 0;
        while c < main {
            I::store(dst.add(c), E::loadw(src.add(c)));
            c += l;
        }
        if I::MASKED && main < kc {
            I::store_partial(
                dst.add(main),
                E::loadw_partial(src.add(main), kc - main),
                kc - main,
            );
        } else {
            for c in main..kc {
                *dst.add(c) = (*src.add(c)).to_f32();
            }
        }
    }
}

/// f32 values of `h` rows × `kc` Q8_0 weights: from `w` (row stride `nb` blocks) into `out`
/// (row stride `kc`). Ranges: w[..(h−1)·nb + kc/32] blocks, out[..h·kc]; `kc` a multiple of 32.
#[inline(always)]
pub(super) unsafe fn dequantise<I: Isa>(
    w: *const BlockQ8_0,
    nb: usize,
    out: *mut f32,
    kc: usize,
    h: usize,
) {
    for q in 0..h {
        let src = w.add(q * nb);
        for b in 0..kc / Q8_0_BLOCK {
            let blk = &*src.add(b);
            let d = I::splat_f16(q8_0_scale(blk).to_bits());
            let v = I::load_q8(q8_0_quants(blk).as_ptr());
            I::store_x32_scaled(out.add(q * kc + b * Q8_0_BLOCK), v, d);
        }
    }
}

/// All positions against one strip of 4 weight rows (starting at `w`, row stride `ws`): 6×4
/// tiles where [`Isa::TILE_POSITIONS`] is 6, then 3×4 tiles, then 2×4 tiles for the positions
/// left over (and a 1×4 tile for n = 1). Ranges: w[..3·ws + kc], x[..n·cols] read from column
/// k0, y[..n·rows] written at columns r..r+4.
#[inline(always)]
unsafe fn strip_tiles<I: Isa, E: LoadW<I>>(
    w: *const E,
    ws: usize,
    x: *const f32,
    cols: usize,
    y: *mut f32,
    rows: usize,
    n: usize,
    r: usize,
    k0: usize,
    kc: usize,
    add: bool,
) {
    let mut i = 0;
    if I::TILE_POSITIONS == 6 {
        // Never leave exactly one position to the smaller tiles (see below).
        while n - i >= 6 && n - i != 7 {
            tile::<I, E, 6, 4>(w, ws, x, cols, y, rows, i, r, k0, kc, add);
            i += 6;
        }
    }
    // With one position left over, the last four go as two 2×4 tiles: a 1×4 tile has only 4
    // accumulator chains and 5 loads per 4 FMAs, so it would run at a fraction of the speed.
    let left = n - i;
    let threes = i + if left % 3 == 1 && left >= 4 {
        left - 4
    } else {
        left - left % 3
    };
    while i < threes {
        tile::<I, E, 3, 4>(w, ws, x, cols, y, rows, i, r, k0, kc, add);
        i += 3;
    }
    while n - i >= 2 {
        tile::<I, E, 2, 4>(w, ws, x, cols, y, rows, i, r, k0, kc, add);
        i += 2;
    }
    if i < n {
        tile::<I, E, 1, 4>(w, ws, x, cols, y, rows, i, r, k0, kc, add);
    }
}

/// One P×R tile over columns k0..k0+kc: Y[i+p, r+q] (+)= Σ_c X[i+p, k0+c]·w[q·ws + c], where
/// `w` points at the tile's first weight row, column k0 (or at a widened copy of the strip).
/// Needs i + P <= n, r + R <= rows, k0 + kc <= cols and w[..(R−1)·ws + kc] in range (so every
/// access is in the ranges of [`gemm`]).
#[inline(always)]
unsafe fn tile<I: Isa, E: LoadW<I>, const P: usize, const R: usize>(
    w: *const E,
    ws: usize,
    x: *const f32,
    cols: usize,
    y: *mut f32,
    rows: usize,
    i: usize,
    r: usize,
    k0: usize,
    kc: usize,
    add: bool,
) {
    let l = I::LANES;
    let main = kc - kc % l;
    let mut acc = [[I::zero(); R]; P];
    let xp: [*const f32; P] = core::array::from_fn(|p| x.add((i + p) * cols + k0));
    let wq: [*const E; R] = core::array::from_fn(|q| w.add(q * ws));
    let mut c = 0;
    while c < main {
        let xv: [I::V; P] = core::array::from_fn(|p| I::load(xp[p].add(c)));
        for q in 0..R {
            let wv = E::loadw(wq[q].add(c));
            for p in 0..P {
                acc[p][q] = I::fma(xv[p], wv, acc[p][q]);
            }
        }
        c += l;
    }
    if I::MASKED && main < kc {
        let t = kc - main;
        let xv: [I::V; P] = core::array::from_fn(|p| I::load_partial(xp[p].add(main), t));
        for q in 0..R {
            let wv = E::loadw_partial(wq[q].add(main), t);
            for p in 0..P {
                acc[p][q] = I::fma(xv[p], wv, acc[p][q]);
            }
        }
    }
    for p in 0..P {
        let z = I::zero();
        let a = |q: usize| if q < R { acc[p][q] } else { z };
        let mut s = I::hsum4(a(0), a(1), a(2), a(3));
        if !I::MASKED {
            for c in main..kc {
                let xv = *xp[p].add(c);
                for q in 0..R {
                    s[q] += (*wq[q].add(c)).to_f32() * xv;
                }
            }
        }
        let yp = y.add((i + p) * rows + r);
        for (q, v) in s.iter().enumerate().take(R) {
            if add {
                *yp.add(q) += *v;
            } else {
                *yp.add(q) = *v;
            }
        }
    }
}
