//! The int8 product over Q8_0 weights packed into int8 panels (`kernels/int8_panels.rs`):
//! 32-bit lanes run along 16 weight rows, so a block leaves as one vector per 16 rows (or per
//! `LANES` rows) of exact integer sums, scaled once by the vector of the rows' scales.
//!
//! A tile of `M` positions keeps `M × 16/LANES` integer accumulators for the current block and
//! as many f32 accumulators across blocks. Each of a block's eight steps loads the 16 rows' four
//! quants once ([`Int8Lanes::load_w`]) for all `M` positions and broadcasts each position's
//! four activation quants to every lane ([`Int8Lanes::splat_x`]); every block of every row is
//! summed in integers, then `acc += f32(sum) · (d_w · d_x)`. Nothing goes through the stack
//! but the last panel's partial vector.

use super::{Isa, LoadW};
use crate::kernels::int8_panels::{quant_at, GROUP_BYTES, INT8_PANEL};
use crate::q8_0::{q8_0_quants, q8_0_scale, BlockQ8_0};
use half::f16;

/// The integer step of the int8 panels on one instruction set: per 32-bit lane, the sum of
/// four byte products.
///
/// # Safety
/// As [`Isa`]; an implementation may need features beyond `I`'s (VNNI), which its callers prove.
pub(crate) unsafe trait Int8Lanes: Copy {
    /// The f32 vectors the sums are converted to (the same number of lanes).
    type I: Isa;
    /// One step of `LANES` rows' four quants, loaded (with whatever the step precomputes).
    type W: Copy;
    /// Four activation quants in every lane.
    type X: Copy;
    /// `LANES` 32-bit integer sums.
    type A: Copy;
    /// Positions per tile: as many as the registers hold with 16 rows' accumulators.
    const POSITIONS: usize;
    /// Loads `4·LANES` quants at `p`, stored + 128 (as u8).
    unsafe fn load_w(p: *const i8) -> Self::W;
    /// The four activation quants at `p` (each in −127..=127) in every lane.
    unsafe fn splat_x(p: *const i8) -> Self::X;
    /// The accumulator at the start of a block whose 32 activation quants sum to `sum` (a set
    /// that biases the weights corrects for it here).
    unsafe fn start(sum: i32) -> Self::A;
    /// a + Σ_{i<4} w[4l + i]·x[i] in each lane l.
    unsafe fn dot(a: Self::A, w: Self::W, x: Self::X) -> Self::A;
    /// The lanes as f32 (exact: |sum| <= 32·128·127 < 2²⁴).
    unsafe fn to_f32(a: Self::A) -> <Self::I as Isa>::V;
}

/// One call's operands. The panels' quants and scales start at `q` and `s`; the pass covers
/// blocks `b0..b0 + nbc` of each row (of `nb`), for `n` positions whose quantised activations
/// are `x[p·nbc..][..nbc]`, with `xsum` the sums of their quants; Y is `[n, rows]` (`add`: add
/// to it). Ranges: q[..panels·nb·512], s[..panels·nb·16], x and xsum [..n·nbc], y[..n·rows].
#[derive(Clone, Copy)]
pub(crate) struct Operands {
    pub q: *const i8,
    pub s: *const f16,
    pub nb: usize,
    pub b0: usize,
    pub nbc: usize,
    pub x: *const BlockQ8_0,
    pub xsum: *const i32,
    pub n: usize,
    pub y: *mut f32,
    pub rows: usize,
    pub add: bool,
}

/// Y (+)= X·Wᵀ over int8 panels: each panel, each tile of positions.
#[inline(always)]
pub(crate) unsafe fn gemm<D: Int8Lanes>(o: Operands)
where
    f16: LoadW<D::I>,
{
    for j in 0..o.rows.div_ceil(INT8_PANEL) {
        let mut i = 0;
        while i < o.n {
            let m = match o.n - i {
                left if left >= 8 && D::POSITIONS >= 8 => 8,
                left if left >= 4 && D::POSITIONS >= 4 => 4,
                left if left >= 2 && D::POSITIONS >= 2 => 2,
                _ => 1,
            };
            match m {
                8 => tile::<D, 8>(o, j, i),
                4 => tile::<D, 4>(o, j, i),
                2 => tile::<D, 2>(o, j, i),
                _ => tile::<D, 1>(o, j, i),
            }
            i += m;
        }
    }
}

/// Positions `i0..i0 + M` × panel `j`.
#[inline(always)]
unsafe fn tile<D: Int8Lanes, const M: usize>(o: Operands, j: usize, i0: usize)
where
    f16: LoadW<D::I>,
{
    let l = D::I::LANES;
    // Vectors per step of 16 rows (1, 2 or 4): a constant once inlined.
    let nv = INT8_PANEL / l;
    let mut acc = [[D::I::zero(); 4]; M];
    for b in 0..o.nbc {
        let g = j * o.nb + o.b0 + b;
        let wq = o.q.add(g * GROUP_BYTES);
        // Plain loops, not `array::from_fn`: its closures are not always inlined into the
        // target-feature function.
        let xp = |p: usize| (i0 + p) * o.nbc + b;
        let mut xb = [&*o.x.add(xp(0)); M];
        let mut ia = [[D::start(*o.xsum.add(xp(0))); 4]; M];
        for p in 1..M {
            xb[p] = &*o.x.add(xp(p));
            ia[p] = [D::start(*o.xsum.add(xp(p))); 4];
        }
        for k in 0..8 {
            let mut xs = [D::splat_x(q8_0_quants(xb[0]).as_ptr().add(4 * k)); M];
            for p in 1..M {
                xs[p] = D::splat_x(q8_0_quants(xb[p]).as_ptr().add(4 * k));
            }
            for v in 0..nv {
                // Rows v·l.. of the panel, their quants 4k..4k + 4.
                let w = D::load_w(wq.add(quant_at(v * l, 4 * k)));
                for (a, x) in ia.iter_mut().zip(&xs) {
                    a[v] = D::dot(a[v], w, *x);
                }
            }
        }
        let sc = o.s.add(g * INT8_PANEL);
        let mut sw = [D::I::zero(); 4];
        for (v, s) in sw.iter_mut().enumerate().take(nv) {
            *s = <f16 as LoadW<D::I>>::loadw(sc.add(v * l));
        }
        for p in 0..M {
            let dx = D::I::splat_f16(q8_0_scale(xb[p]).to_bits());
            for v in 0..nv {
                let d = D::I::mul(sw[v], dx);
                acc[p][v] = D::I::fma(D::to_f32(ia[p][v]), d, acc[p][v]);
            }
        }
    }
    let r0 = j * INT8_PANEL;
    let valid = INT8_PANEL.min(o.rows - r0);
    for (p, ap) in acc.iter().enumerate() {
        let yp = o.y.add((i0 + p) * o.rows + r0);
        super::store_row::<D::I>(yp, &ap[..nv], valid, o.add);
    }
}
