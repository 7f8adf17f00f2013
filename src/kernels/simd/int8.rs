//! Products over Q8_0 weight blocks in their row layout: with f32 activations ([`gemv_q8`]) and
//! with activations quantised to Q8_0 ([`quantize`], [`gemv_int8`], [`gemm_int8`]).

use super::gemv::{PREFETCH_AHEAD, PREFETCH_BYTES};
use super::Isa;
use crate::q8_0::{q8_0_nan_block, q8_0_quants, q8_0_scale, q8_0_step, BlockQ8_0, Q8_0_BLOCK};

/// Bytes of one Q8_0 block.
const BLOCK_BYTES: usize = core::mem::size_of::<BlockQ8_0>();

/// The integer dot product of one Q8_0 block of weights with one block of activations
/// quantised to Q8_0, on the instruction set [`Int8Dot::I`] (the `Int8` types of the
/// architecture files).
///
/// # Safety
/// As [`Isa`]; an implementation may need features beyond `I`'s (VNNI), which its callers prove.
pub(crate) unsafe trait Int8Dot: Copy {
    /// The vector set whose lanes hold the sums.
    type I: Isa;
    /// One block's 32 activation quants, loaded (with whatever the dot product precomputes
    /// from them once for all rows).
    type Q: Copy;
    /// Loads the 32 activation quants at `q`, with −128 read as −127 (so that every product
    /// and pair sum fits the 16-bit steps some sets take).
    unsafe fn load(q: *const i8) -> Self::Q;
    /// Lane-wise partial sums of Σᵢ w[i]·x[i] over the 32 weight quants at `w` (any i8) and
    /// the loaded activations: integers, exact in f32 (|sum| <= 32·128·127 < 2²⁴).
    unsafe fn dot(w: *const i8, x: Self::Q) -> <Self::I as Isa>::V;
    /// Positions per tile of [`gemm_int8`] (1, 2 or 4): as many as the registers hold with
    /// four rows' accumulators each and the positions' loaded activations.
    const POSITIONS: usize;
    /// [`Isa::scales4`] as this dot product's loop is fastest with it (the same numbers).
    #[inline(always)]
    unsafe fn scales4(h: [u16; 4], dx: <Self::I as Isa>::V) -> [<Self::I as Isa>::V; 4] {
        Self::I::scales4(h, dx)
    }
}

/// What a Q8_0 matrix-vector product multiplies each block of weights by: f32 activations
/// ([`gemv_q8`]) or activations quantised to Q8_0 blocks ([`gemv_int8`]).
trait BlockActs<I: Isa>: Copy {
    /// Block `b` of the activations, loaded once for the four rows that share it.
    type Block: Copy;
    /// Loads block `b` (its 32 values).
    unsafe fn block(self, b: usize) -> Self::Block;
    /// acc + (lane-wise) d·(w ⊙ x) for the weight block `w`.
    unsafe fn step(w: &BlockQ8_0, x: Self::Block, acc: I::V) -> I::V;
    /// [`Self::step`] for four rows' blocks against the same activations.
    #[inline(always)]
    unsafe fn step4(w: [&BlockQ8_0; 4], x: Self::Block, acc: [I::V; 4]) -> [I::V; 4] {
        [
            Self::step(w[0], x, acc[0]),
            Self::step(w[1], x, acc[1]),
            Self::step(w[2], x, acc[2]),
            Self::step(w[3], x, acc[3]),
        ]
    }
}

/// f32 activations: the block's weights are widened and multiplied in f32.
#[derive(Clone, Copy)]
struct F32Acts(*const f32);

impl<I: Isa> BlockActs<I> for F32Acts {
    type Block = I::X32;
    #[inline(always)]
    unsafe fn block(self, b: usize) -> I::X32 {
        I::load_x32(self.0.add(b * Q8_0_BLOCK))
    }
    #[inline(always)]
    unsafe fn step(w: &BlockQ8_0, x: I::X32, acc: I::V) -> I::V {
        let d = I::splat_f16(q8_0_scale(w).to_bits());
        I::fma(I::q8_dot(q8_0_quants(w).as_ptr(), x), d, acc)
    }
}

/// Activations in Q8_0 blocks: integer products ([`Int8Dot`] `D`), scaled by `d_w·d_x`.
struct Int8Acts<D>(*const BlockQ8_0, core::marker::PhantomData<D>);

impl<D> Clone for Int8Acts<D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D> Copy for Int8Acts<D> {}

impl<D: Int8Dot> BlockActs<D::I> for Int8Acts<D> {
    /// The loaded quants and `d_x` in every lane.
    type Block = (D::Q, <D::I as Isa>::V);
    #[inline(always)]
    unsafe fn block(self, b: usize) -> Self::Block {
        let x = &*self.0.add(b);
        (
            D::load(q8_0_quants(x).as_ptr()),
            D::I::splat_f16(q8_0_scale(x).to_bits()),
        )
    }
    #[inline(always)]
    unsafe fn step(w: &BlockQ8_0, (x, dx): Self::Block, acc: <D::I as Isa>::V) -> <D::I as Isa>::V {
        let d = D::I::mul(D::I::splat_f16(q8_0_scale(w).to_bits()), dx);
        D::I::fma(D::dot(q8_0_quants(w).as_ptr(), x), d, acc)
    }
    #[inline(always)]
    unsafe fn step4(
        w: [&BlockQ8_0; 4],
        (x, dx): Self::Block,
        acc: [<D::I as Isa>::V; 4],
    ) -> [<D::I as Isa>::V; 4] {
        // The four scales converted together.
        let d = D::scales4(w.map(|b| q8_0_scale(b).to_bits()), dx);
        // Spelled out: a closure is not always inlined into the target-feature function, and
        // then runs without its features (NEON's `sdot` would not even assemble).
        let q = [0, 1, 2, 3].map(|r| q8_0_quants(w[r]).as_ptr());
        [
            D::I::fma(D::dot(q[0], x), d[0], acc[0]),
            D::I::fma(D::dot(q[1], x), d[1], acc[1]),
            D::I::fma(D::dot(q[2], x), d[2], acc[2]),
            D::I::fma(D::dot(q[3], x), d[3], acc[3]),
        ]
    }
}

/// [`crate::q8_0::quantize_blocks`] on the vector set `I`, the same blocks bit for bit: `nb`
/// blocks of 32 values at `x` into Q8_0 blocks at `out`, the sums of their quants into `sums`.
/// Ranges: x[..32·nb], out[..nb], sums[..nb].
#[inline(always)]
pub(crate) unsafe fn quantize<I: Isa>(
    x: *const f32,
    out: *mut BlockQ8_0,
    sums: *mut i32,
    nb: usize,
) {
    // Each group's largest magnitudes first, then its blocks' scales and quants: block by block,
    // the horizontal maximum, two divisions, the rounding and the quants' sum make one long
    // dependency chain that the next block's work cannot overlap (the scheduler fills with the
    // waiting instructions).
    const GROUP: usize = 16;
    let mut amax = [0u32; GROUP];
    for g in (0..nb).step_by(GROUP) {
        let m = GROUP.min(nb - g);
        for (b, a) in amax.iter_mut().enumerate().take(m) {
            *a = I::amax_bits(I::load_x32(x.add((g + b) * Q8_0_BLOCK)));
        }
        for (b, &a) in amax.iter().enumerate().take(m) {
            quantize_one::<I>(x, out, sums, g + b, a);
        }
    }
}

/// Block `b` of [`quantize`], whose largest magnitude has the bits `amax`.
#[inline(always)]
unsafe fn quantize_one<I: Isa>(
    x: *const f32,
    out: *mut BlockQ8_0,
    sums: *mut i32,
    b: usize,
    amax: u32,
) {
    let v = I::load_x32(x.add(b * Q8_0_BLOCK));
    let o = &mut *out.add(b);
    *sums.add(b) = match q8_0_step(amax) {
        None => {
            *o = q8_0_nan_block();
            0
        }
        Some((d, id)) => {
            o[..2].copy_from_slice(&I::f16_bits(d).to_le_bytes());
            I::quantize_x32(v, id, o.as_mut_ptr().add(2).cast())
        }
    };
}

/// Q8_0 matrix-vector product: y[r] = Σ_b d[r,b] · Σ_i q[r,b,i]·x[32b + i], four rows at a
/// time sharing each block of x. Ranges: w[..rows·cols/32] blocks, x[..cols], y[..rows];
/// `cols` is a multiple of 32.
#[inline(always)]
pub(crate) unsafe fn gemv_q8<I: Isa>(
    w: *const BlockQ8_0,
    cols: usize,
    x: *const f32,
    y: *mut f32,
    rows: usize,
) {
    let nb = cols / Q8_0_BLOCK;
    gemv_blocks::<I, F32Acts>(w, nb, nb, F32Acts(x), y, rows, false)
}

/// The Q8_0 × Q8_0 matrix-vector product over `nb` blocks of each row: y[r] (+)= Σ_b
/// d_w[r,b]·d_x[b] · Σ_i q_w[r,b,i]·q_x[b,i], the inner sums in integers ([`Int8Dot`] `D`,
/// activation quants −128 read as −127), four rows at a time sharing each block of x; rows
/// start `stride` blocks apart, and `add` adds to y instead of writing it.
/// Ranges: w[..(rows − 1)·stride + nb], x[..nb] blocks, y[..rows].
#[inline(always)]
pub(crate) unsafe fn gemv_int8<D: Int8Dot>(
    w: *const BlockQ8_0,
    stride: usize,
    x: *const BlockQ8_0,
    nb: usize,
    y: *mut f32,
    rows: usize,
    add: bool,
) {
    let acts = Int8Acts::<D>(x, core::marker::PhantomData);
    gemv_blocks::<D::I, Int8Acts<D>>(w, stride, nb, acts, y, rows, add)
}

/// [`gemv_int8`] for `n` positions at once: Y[p, r] (+)= Σ_b d_w[r,b]·d_x[p,b] · Σ_i
/// q_w[r,b,i]·q_x[p,b,i] over the rows as stored (no packing). Each strip of four rows (then
/// each row left over) meets every position while it is in L1, in tiles of up to
/// [`Int8Dot::POSITIONS`] positions that share each weight block loaded, so the weights are
/// read from memory once for all `n` positions, not once per position. Each (position, row)
/// is summed with the same operations in the same order as [`gemv_int8`]'s: the numbers are
/// its numbers, bit for bit. Position p's activations are `x[p·nb..][..nb]`, its outputs
/// `y[p·rows..][..rows]`; rows start `stride` blocks apart.
/// Ranges: w[..(rows − 1)·stride + nb], x[..n·nb] blocks, y[..n·rows].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_int8<D: Int8Dot>(
    w: *const BlockQ8_0,
    stride: usize,
    x: *const BlockQ8_0,
    nb: usize,
    n: usize,
    y: *mut f32,
    rows: usize,
    add: bool,
) {
    if n == 1 {
        // Decoding: the matrix-vector product, which prefetches the rows.
        return gemv_int8::<D>(w, stride, x, nb, y, rows, add);
    }
    let mut r = 0;
    while r < rows {
        let four = rows - r >= 4;
        let wr = w.add(r * stride);
        let mut i = 0;
        while i < n {
            let t = Int8Tile {
                w: wr,
                stride,
                x: x.add(i * nb),
                nb,
                y: y.add(i * rows + r),
                ystride: rows,
                add,
            };
            let m = match n - i {
                left if left >= 4 && D::POSITIONS >= 4 => 4,
                left if left >= 2 && D::POSITIONS >= 2 => 2,
                _ => 1,
            };
            match (four, m) {
                (true, 4) => t.rows4::<D, 4>(),
                (true, 2) => t.rows4::<D, 2>(),
                (true, _) => t.rows4::<D, 1>(),
                (false, 4) => t.row::<D, 4>(),
                (false, 2) => t.row::<D, 2>(),
                (false, _) => t.row::<D, 1>(),
            }
            i += m;
        }
        r += if four { 4 } else { 1 };
    }
}

/// One tile of [`gemm_int8`]: rows from `w` (`stride` blocks apart) × positions from `x` (`nb`
/// blocks apart), outputs from `y` (positions `ystride` apart).
#[derive(Clone, Copy)]
struct Int8Tile {
    w: *const BlockQ8_0,
    stride: usize,
    x: *const BlockQ8_0,
    nb: usize,
    y: *mut f32,
    ystride: usize,
    add: bool,
}

impl Int8Tile {
    /// Position p's output for row j of the tile.
    #[inline(always)]
    unsafe fn out(self, p: usize, j: usize, v: f32) {
        let o = self.y.add(p * self.ystride + j);
        *o = if self.add { *o + v } else { v };
    }

    /// Position p's activations.
    #[inline(always)]
    unsafe fn acts<D: Int8Dot>(self, p: usize) -> Int8Acts<D> {
        Int8Acts(self.x.add(p * self.nb), core::marker::PhantomData)
    }

    /// Four rows × `P` positions: [`gemv_blocks_body`]'s four-row step per position.
    #[inline(always)]
    unsafe fn rows4<D: Int8Dot, const P: usize>(self) {
        let w0 = self.w;
        let s = self.stride;
        let mut acc = [[D::I::zero(); 4]; P];
        for b in 0..self.nb {
            let ws = [
                &*w0.add(b),
                &*w0.add(s + b),
                &*w0.add(2 * s + b),
                &*w0.add(3 * s + b),
            ];
            for (p, a) in acc.iter_mut().enumerate() {
                *a = Int8Acts::<D>::step4(ws, self.acts::<D>(p).block(b), *a);
            }
        }
        for (p, a) in acc.iter().enumerate() {
            let sums = D::I::hsum4(a[0], a[1], a[2], a[3]);
            for (j, v) in sums.into_iter().enumerate() {
                self.out(p, j, v);
            }
        }
    }

    /// One row × `P` positions: [`gemv_blocks_body`]'s one-row step per position.
    #[inline(always)]
    unsafe fn row<D: Int8Dot, const P: usize>(self) {
        let mut acc = [D::I::zero(); P];
        for b in 0..self.nb {
            let wb = &*self.w.add(b);
            for (p, a) in acc.iter_mut().enumerate() {
                *a = Int8Acts::<D>::step(wb, self.acts::<D>(p).block(b), *a);
            }
        }
        for (p, a) in acc.iter().enumerate() {
            self.out(p, 0, D::I::hsum(*a));
        }
    }
}

/// The body of [`gemv_q8`] and [`gemv_int8`] over `nb` blocks of each row, rows `stride`
/// blocks apart, writing y (or adding to it if `add`).
#[inline(always)]
unsafe fn gemv_blocks<I: Isa, A: BlockActs<I>>(
    w: *const BlockQ8_0,
    stride: usize,
    nb: usize,
    x: A,
    y: *mut f32,
    rows: usize,
    add: bool,
) {
    // As in `gemv`: two instantiations, no test inside the loop. The prefetches walk groups of
    // four whole rows, so only where the rows are whole (`stride == nb`).
    if stride * BLOCK_BYTES < PREFETCH_BYTES && stride == nb {
        gemv_blocks_body::<I, A, true>(w, stride, nb, x, y, rows, add)
    } else {
        gemv_blocks_body::<I, A, false>(w, stride, nb, x, y, rows, add)
    }
}

/// [`gemv_blocks`], prefetching if `PREFETCH`.
#[inline(always)]
unsafe fn gemv_blocks_body<I: Isa, A: BlockActs<I>, const PREFETCH: bool>(
    w: *const BlockQ8_0,
    stride: usize,
    nb: usize,
    x: A,
    y: *mut f32,
    rows: usize,
    add: bool,
) {
    let out = |r: usize, v: f32| {
        let o = y.add(r);
        *o = if add { *o + v } else { v };
    };
    let mut r = 0;
    while r + 4 <= rows {
        let w0 = w.add(r * stride);
        let (w1, w2, w3) = (w0.add(stride), w0.add(2 * stride), w0.add(3 * stride));
        let mut acc = [I::zero(); 4];
        // As in `gemv`: addresses only, wrapping past the end.
        let ahead = (w0 as *const u8).wrapping_add(PREFETCH_AHEAD);
        for b in 0..nb {
            if PREFETCH {
                let pf = ahead.wrapping_add(4 * b * BLOCK_BYTES);
                for j in 0..(4 * BLOCK_BYTES).div_ceil(64) {
                    I::prefetch(pf.wrapping_add(64 * j));
                }
            }
            let ws = [&*w0.add(b), &*w1.add(b), &*w2.add(b), &*w3.add(b)];
            acc = A::step4(ws, x.block(b), acc);
        }
        let s = I::hsum4(acc[0], acc[1], acc[2], acc[3]);
        for (j, v) in s.iter().enumerate() {
            out(r + j, *v);
        }
        r += 4;
    }
    while r < rows {
        let wr = w.add(r * stride);
        let mut a = I::zero();
        for b in 0..nb {
            a = A::step(&*wr.add(b), x.block(b), a);
        }
        out(r, I::hsum(a));
        r += 1;
    }
}
