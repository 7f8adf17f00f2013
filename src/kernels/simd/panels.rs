//! The matrix-matrix product over weights packed into panels (`kernels/panels.rs`): vectors run
//! along the weight rows (the columns of Y), so outputs leave as whole vectors.
//!
//! A tile of `M` positions × `NV` vectors of rows keeps `M·NV` accumulators (12 × 2 with 16
//! lanes and 32 registers, 6 × 4 with 4 lanes and 32 registers, 6 × 2 with 16 registers); each
//! step over k loads the `NV` vectors of one panel row (contiguous: the panel is one stream),
//! broadcasts one activation per position from where X is, and issues `M·NV` FMAs. Columns are
//! cut into blocks of [`KC`]; within a block, each tile of rows (a panel's `KC × NV·LANES`
//! values, at most 32 KiB) stays in L1 while every group of positions passes over it, so W is
//! read from memory once per call (with the positions outside, a matrix larger than L2 was read
//! once per group: 64,288,1536 ran at 131 instead of 150 GFLOP/s). Later column blocks add to Y.
//! Nothing is packed per call and nothing goes through the stack.

use super::Isa;
use crate::kernels::panels::PANEL;

/// Columns per block: a panel's block (32 rows × 256 values, 32 KiB) and a tile's activations
/// (12 positions × 256 values, 12 KiB) fit in L1 together.
const KC: usize = 256;

/// Y = X·Wᵀ over panels: X[n, cols], Y[n, rows], W as `rows.div_ceil(PANEL)` panels of
/// `cols × PANEL` f32. Ranges: w[..rows.div_ceil(PANEL)·PANEL·cols], x[..n·cols], y[..n·rows].
#[inline(always)]
pub(crate) unsafe fn gemm<I: Isa>(
    w: *const f32,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    n: usize,
    rows: usize,
) {
    if I::TILE_POSITIONS < 6 {
        blocks::<I, 6, 2>(w, cols, x, y, n, rows)
    } else if I::LANES >= 8 {
        blocks::<I, 12, 2>(w, cols, x, y, n, rows)
    } else {
        blocks::<I, 6, 4>(w, cols, x, y, n, rows)
    }
}

/// [`gemm`] with tiles of at most `M` positions × `NV` vectors of rows: for each block of
/// [`KC`] columns and each tile of rows, every group of positions.
#[inline(always)]
unsafe fn blocks<I: Isa, const M: usize, const NV: usize>(
    w: *const f32,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    n: usize,
    rows: usize,
) {
    let nr = NV * I::LANES;
    debug_assert!(PANEL.is_multiple_of(nr));
    let mut k0 = 0;
    while k0 < cols {
        let kc = KC.min(cols - k0);
        let mut r0 = 0;
        while r0 < rows {
            // The panel of row r0, at column k0 and lane r0 % PANEL.
            let wt = w.add((r0 / PANEL) * PANEL * cols + k0 * PANEL + r0 % PANEL);
            let mut i = 0;
            while i < n {
                // The largest tile that fits the positions left.
                let m = match n - i {
                    left if left >= M => M,
                    8.. => 8,
                    6 | 7 => 6,
                    4 | 5 => 4,
                    left => left,
                };
                let t = Tile {
                    w: wt,
                    x: x.add(i * cols + k0),
                    cols,
                    kc,
                    y: y.add(i * rows + r0),
                    rows,
                    valid: nr.min(rows - r0),
                    add: k0 > 0,
                };
                match m {
                    12 => tile::<I, 12, NV>(t),
                    8 => tile::<I, 8, NV>(t),
                    6 => tile::<I, 6, NV>(t),
                    4 => tile::<I, 4, NV>(t),
                    3 => tile::<I, 3, NV>(t),
                    2 => tile::<I, 2, NV>(t),
                    _ => tile::<I, 1, NV>(t),
                }
                i += m;
            }
            r0 += nr;
        }
        k0 += kc;
    }
}

/// One tile's operands.
#[derive(Clone, Copy)]
struct Tile {
    /// The panel at the block's first column and the tile's first row (row stride [`PANEL`]).
    w: *const f32,
    /// X at the tile's first position and the block's first column (row stride `cols`).
    x: *const f32,
    /// Row stride of X.
    cols: usize,
    /// Columns in the block.
    kc: usize,
    /// Y at the tile's first position and row (row stride `rows`).
    y: *mut f32,
    /// Row stride of Y.
    rows: usize,
    /// Rows of the tile that exist (the others are zero in the panel and not stored).
    valid: usize,
    /// Add to Y instead of writing it.
    add: bool,
}

/// Y[p, q] (+)= Σ_k x[p·cols + k]·w[k·PANEL + q] for p < M, q < valid. Ranges: x[..(M−1)·cols
/// + kc], w[..(kc−1)·PANEL + NV·LANES], y[..(M−1)·rows + valid].
#[inline(always)]
unsafe fn tile<I: Isa, const M: usize, const NV: usize>(t: Tile) {
    let l = I::LANES;
    let mut acc = [[I::zero(); NV]; M];
    let xp: [*const f32; M] = core::array::from_fn(|p| t.x.add(p * t.cols));
    for k in 0..t.kc {
        let wk = t.w.add(k * PANEL);
        let wv: [I::V; NV] = core::array::from_fn(|v| I::load(wk.add(v * l)));
        for p in 0..M {
            let b = I::splat(*xp[p].add(k));
            for v in 0..NV {
                acc[p][v] = I::fma(b, wv[v], acc[p][v]);
            }
        }
    }
    for (p, ap) in acc.iter().enumerate() {
        super::store_row::<I>(t.y.add(p * t.rows), ap, t.valid, t.add);
    }
}
