//! The matrix-matrix product over weights packed into panels (`kernels/panels.rs`): vectors run
//! along the weight rows (the columns of Y), so outputs leave as whole vectors.
//!
//! A tile of `M` positions × `NV` vectors of rows keeps `M·NV` accumulators (12 × 2 with 16
//! lanes and 32 registers, 6 × 4 with 4 lanes and 32 registers, 6 × 2 with 16 registers); each
//! step over k loads the `NV` vectors of one panel row (contiguous: the panel is one stream),
//! broadcasts one activation per position from where X is, and issues `M·NV` FMAs. Columns are
//! cut into blocks of [`KC`]; within a block, each tile of rows (a panel's `KC × NV·LANES`
//! values, at most 32 KiB) stays in L1 while every group of positions passes over it, so W is
//! read from memory once per call (with the positions outside, a matrix larger than L2 would be
//! read once per group of positions). Later column blocks add to Y.
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
                let m = tile_positions::<M>(n - i);
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

/// The positions of the next tile when `left` are left, for tiles of at most `M`: the
/// positions split evenly over as few tiles as `M` allows, rounded up to a tile size there is
/// (16 as 8 + 8 rather than 12 + 4), else the largest tile that fits.
#[inline(always)]
fn tile_positions<const M: usize>(left: usize) -> usize {
    let up = match left.div_ceil(left.div_ceil(M)) {
        9.. => M,
        7 | 8 => 8,
        5 | 6 => 6,
        even => even,
    };
    if up <= left {
        return up;
    }
    match left {
        left if left >= M => M,
        8.. => 8,
        6 | 7 => 6,
        4 | 5 => 4,
        left => left,
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

#[cfg(test)]
mod tests {
    use super::tile_positions;
    use std::{vec, vec::Vec};

    /// Every count of positions is covered exactly by tiles of sizes `blocks` has a kernel for
    /// (and no larger than `M`), 16 as 8 + 8.
    #[test]
    fn tiles_cover_the_positions() {
        fn tiles<const M: usize>(n: usize) -> Vec<usize> {
            let (mut i, mut t) = (0, vec![]);
            while i < n {
                let m = tile_positions::<M>(n - i);
                assert!([12, 8, 6, 4, 3, 2, 1].contains(&m) && m <= M && m <= n - i);
                t.push(m);
                i += m;
            }
            t
        }
        for n in 1..200 {
            tiles::<12>(n);
            tiles::<6>(n);
        }
        assert_eq!(tiles::<12>(16), [8, 8]);
        assert_eq!(tiles::<12>(64), [12, 12, 12, 12, 8, 8]);
        assert_eq!(tiles::<6>(12), [6, 6]);
    }
}
