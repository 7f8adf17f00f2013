//! The SIMD kernel bodies, written once over a small vector interface ([`Isa`]) that each
//! architecture file implements (AVX2+FMA+F16C and AVX-512 in `x86/`, NEON in `aarch64/`,
//! simd128 in `wasm32.rs`). Each architecture instantiates these bodies inside its own
//! `#[target_feature]` wrappers, so every intrinsic is inlined with the features enabled.
//!
//! Everything here is `unsafe fn` over raw pointers: the callers (the architecture files'
//! safe functions) check every slice length once at entry and guarantee that the instruction
//! set is available. Within a body, every pointer access stays inside the ranges those checks
//! established; the comments name the range.
#![allow(unsafe_code)]
// The bodies are `unsafe fn`s whose whole contract is the one stated above.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use super::{HeadGroup, Positions};
use crate::tensor::{
    q8_0_nan_block, q8_0_quants, q8_0_scale, q8_0_step, BlockQ8_0, Element, Q8_0_BLOCK,
};

mod broadcast;
pub(crate) mod int8_panels;
pub(crate) mod panels;
pub(crate) mod rows;

pub(crate) use int8_panels::Int8Lanes;

/// A vector instruction set: `LANES` f32 lanes and the operations the kernels need.
///
/// # Safety
/// Implementations may only be used where the instruction set is available; every method is
/// `unsafe` for that reason and for its raw pointers.
pub(crate) unsafe trait Isa: Copy {
    /// A vector of `LANES` f32.
    type V: Copy;
    /// 32 f32 held in registers (one Q8_0 block's worth of activations).
    type X32: Copy;
    /// Lanes per vector.
    const LANES: usize;
    /// Positions per matrix-matrix tile ([`strip_tiles`]): 3 (12 accumulators, 16 registers
    /// in all) unless the instruction set has 32 vector registers to fill with 6. The
    /// broadcast-form product (`simd/broadcast.rs`) reads 6 as "32 registers" too.
    const TILE_POSITIONS: usize = 3;
    /// All lanes 0.
    unsafe fn zero() -> Self::V;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self::V;
    /// Loads `LANES` f32 from `p` (any alignment).
    unsafe fn load(p: *const f32) -> Self::V;
    /// Stores `LANES` f32 to `p` (any alignment).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// a + b.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// a − b.
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    /// a · b.
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// a / b (correctly rounded).
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// a · b + c (fused where the instruction set has it).
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// max(c, x) lane-wise; a NaN in `x` is returned as NaN.
    unsafe fn max(c: Self::V, x: Self::V) -> Self::V;
    /// min(c, x) lane-wise; a NaN in `x` is returned as NaN.
    unsafe fn min(c: Self::V, x: Self::V) -> Self::V;
    /// Round to the nearest integer (ties to even).
    unsafe fn round(x: Self::V) -> Self::V;
    /// 2ⁿ for integer-valued lanes n in −126..=127.
    unsafe fn pow2i(n: Self::V) -> Self::V;
    /// Sum of the lanes.
    unsafe fn hsum(v: Self::V) -> f32;
    /// Maximum of the lanes.
    unsafe fn hmax(v: Self::V) -> f32;
    /// The lane sums of four vectors.
    unsafe fn hsum4(a: Self::V, b: Self::V, c: Self::V, d: Self::V) -> [f32; 4];
    /// Loads 32 f32 from `p`.
    unsafe fn load_x32(p: *const f32) -> Self::X32;
    /// All lanes the f16 with bits `h` (a hardware conversion where there is one: `half`'s
    /// portable one is slow unless the whole build enables F16C).
    unsafe fn splat_f16(h: u16) -> Self::V;
    /// `d[r]·dx` in every lane, for the four f16 with bits `h[r]` (one conversion where the
    /// instruction set has it, for the int8 product's four rows).
    #[inline(always)]
    unsafe fn scales4(h: [u16; 4], dx: Self::V) -> [Self::V; 4] {
        h.map(|h| Self::mul(Self::splat_f16(h), dx))
    }
    /// One block's 32 int8 quants at `q`, as f32.
    unsafe fn load_q8(q: *const i8) -> Self::X32;
    /// Stores the 32 values `x · d` to `p`.
    unsafe fn store_x32_scaled(p: *mut f32, x: Self::X32, d: Self::V);
    /// Lane-wise partial sums of Σᵢ q[i]·x[i] over one block's 32 int8 quants at `q`.
    unsafe fn q8_dot(q: *const i8, x: Self::X32) -> Self::V;
    /// The largest of the 32 values' |x| as bits (`to_bits() & 0x7fff_ffff`, whose order is
    /// the values' order; an infinity or a NaN is 0x7f80_0000 or above).
    unsafe fn amax_bits(x: Self::X32) -> u32;
    /// The 32 quants of [`crate::tensor::quantize_block`] for multiplier `id` (`t = x·id`,
    /// |t| < 127.5, rounded half away from zero as trunc(|t| + 0.5) with the sign of t) to
    /// q[..32], and their sum.
    unsafe fn quantize_x32(x: Self::X32, id: f32, q: *mut i8) -> i32;
    /// √x, correctly rounded (as `libm::sqrtf`, the default). The x86 sets override it with
    /// the VEX `vsqrtss`: libm's is inline assembly of the legacy SSE `sqrtss`, and inlined into
    /// AVX code (the upper halves of the registers in use) it cost about 140 ns per call on
    /// this machine: RMSNorm of 128 values took 298 ns, 19 ns without it. `.ci/vex-check.sh`
    /// fails on any legacy SSE instruction in the AVX kernels.
    #[inline(always)]
    unsafe fn sqrt(x: f32) -> f32 {
        libm::sqrtf(x)
    }
    /// The bits of `x` rounded to f16 (to nearest, ties to even), as `half::f16::from_f32`
    /// (whose conversion is a slow portable one unless the whole build enables F16C).
    #[inline(always)]
    unsafe fn f16_bits(x: f32) -> u16 {
        half::f16::from_f32(x).to_bits()
    }
    /// A hint to fetch the cache line holding `p` into L1. `p` may point anywhere (it is never
    /// dereferenced); the default does nothing.
    #[inline(always)]
    unsafe fn prefetch(_p: *const u8) {}
    /// Whether [`Self::load_partial`] and [`Self::store_partial`] are masked instructions
    /// (AVX-512; AVX's `vmaskmovps` on AVX2): the kernels then finish a row that ends inside a
    /// vector with one more vector step rather than a scalar loop.
    const MASKED: bool = false;
    /// The `n` (< `LANES`) f32 at `p` in the first lanes, 0 in the others; reads only p[..n].
    /// The default goes through the stack.
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V {
        let mut buf = [0.0f32; 16];
        core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        Self::load(buf.as_ptr())
    }
    /// Stores the first `n` (< `LANES`) lanes of `v` to p[..n]; writes nothing else. The
    /// default goes through the stack.
    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, v: Self::V, n: usize) {
        let mut buf = [0.0f32; 16];
        Self::store(buf.as_mut_ptr(), v);
        core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
    }
}

/// An element type that the instruction set `I` loads (and widens to f32) `LANES` at a time.
///
/// # Safety
/// As [`Isa`].
pub(crate) unsafe trait LoadW<I: Isa>: Element {
    /// Loads `LANES` elements from `p` as f32 (any alignment).
    unsafe fn loadw(p: *const Self) -> I::V;
    /// The `n` (< `LANES`) elements at `p` as f32 in the first lanes, 0 in the others; reads
    /// only p[..n] ([`Isa::MASKED`] sets mask the load; the default goes through the stack).
    #[inline(always)]
    unsafe fn loadw_partial(p: *const Self, n: usize) -> I::V {
        let mut buf = [0.0f32; 16];
        for (i, b) in buf.iter_mut().enumerate().take(n) {
            *b = (*p.add(i)).to_f32();
        }
        I::load(buf.as_ptr())
    }
}

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

/// Rows shorter than this are prefetched by [`gemv`] and [`gemv_q8`]: decode reads each small
/// matrix once from L3 or DRAM in groups of four short rows, which the hardware prefetchers
/// follow too late. Long rows are streams they follow well, and there a prefetch only takes a
/// load slot from a loop that is bound by its loads when the weights are cached.
const PREFETCH_BYTES: usize = 4096;

/// How far ahead [`gemv`] and [`gemv_q8`] prefetch, in bytes. A group of four rows is one
/// contiguous run of memory, and each iteration consumes the same share of each row, so the
/// prefetches walk the weights as one linear stream, one per cache line: the iteration that has
/// consumed `b` bytes of its group's `4·row` prefetches `group start + 4 KiB + b` onwards.
const PREFETCH_AHEAD: usize = 4096;

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
    // loop compiles to code that runs at two thirds of the speed even when it prefetches.
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
/// load or every 64-byte load of f32 weights spans two cache lines, which cost 1.36–1.42× at
/// 128×128 and 512×512 with AVX-512 here (`examples/align_probe.rs`). Only where the sets mask
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

/// [`crate::tensor::quantize_blocks`] on the vector set `I`, the same blocks bit for bit: `nb`
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
    // the horizontal maximum, two divisions, the rounding and the quants' sum made one chain of
    // ~100 cycles that the next block's work could not overlap (the scheduler fills with the
    // waiting instructions); at 128 values this was 30% of an int8-panel product.
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
enum Strips<E> {
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
unsafe fn widen<I: Isa, E: LoadW<I>>(
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
unsafe fn dequantise<I: Isa>(w: *const BlockQ8_0, nb: usize, out: *mut f32, kc: usize, h: usize) {
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

/// Keys per block of the online softmax.
const BLOCK: usize = 16;

/// Queries (query heads × positions) handled per pass over the cache by [`attention`] (the
/// size of its per-query state).
const QUERIES_PER_PASS: usize = 8;

/// Where [`attention`]'s queries are: the query heads of `group` (which share one cached kv
/// head), at each of `positions`.
#[derive(Clone, Copy)]
pub(crate) struct Queries {
    pub group: HeadGroup,
    pub positions: Positions,
}

impl Queries {
    /// Query `u` (positions outer, heads inner): its offset in q and out, and how many of the
    /// `len` cached rows it sees.
    #[inline(always)]
    fn at(self, u: usize, len: usize) -> (usize, usize) {
        let (g, pos) = (self.group, self.positions);
        let (p, t) = (u / g.heads, u % g.heads);
        (p * pos.stride + t * g.stride, pos.seen(p, len))
    }
}

/// The queries of `qs` over `len` cached rows of `d = qs.group.dim` values (see
/// `portable::attention_positions`): query u reads q[at(u)..][..d] and writes out[at(u)..][..d]. The keys and values are read
/// from memory once per pass of up to [`QUERIES_PER_PASS`] queries (the heads of a kv head
/// group, and the positions of a prefill chunk): each block of [`BLOCK`] keys is scored for every
/// query of the pass that sees it while it is in L1 ([`gemv`] into a stack array), then each
/// query rescales its running output once, takes its probabilities with the vector [`exp`] and
/// accumulates the block's weighted values over the head dimension. Every query's arithmetic
/// is that of its own pass alone (blocks from row 0, the same order), so a position's output
/// does not depend on the other positions of its chunk. Ranges: q and out
/// `qs.positions.span(qs.group)` long (which is some: the group and positions are valid), keys
/// and values [..len·d]; `len >= qs.positions.count` when causal, else `len >= 1`.
#[inline(always)]
pub(crate) unsafe fn attention<I: Isa, K: LoadW<I>>(
    q: *const f32,
    qs: Queries,
    keys: *const K,
    values: *const K,
    len: usize,
    scale: f32,
    out: *mut f32,
) {
    let d = qs.group.dim;
    let total = qs.group.heads * qs.positions.count;
    let mut u0 = 0;
    while u0 < total {
        let n = QUERIES_PER_PASS.min(total - u0);
        let mut max = [f32::NEG_INFINITY; QUERIES_PER_PASS];
        let mut sum = [0.0f32; QUERIES_PER_PASS];
        // Each query's offset in q and out and the rows it sees, once per pass.
        let mut at = [0usize; QUERIES_PER_PASS];
        let mut seen = [0usize; QUERIES_PER_PASS];
        for u in 0..n {
            (at[u], seen[u]) = qs.at(u0 + u, len);
            for c in 0..d {
                *out.add(at[u] + c) = 0.0;
            }
        }
        let seen_max = seen.iter().take(n).copied().max().unwrap_or(0);
        let mut s = [[0.0f32; BLOCK]; QUERIES_PER_PASS];
        let mut j0 = 0;
        while j0 < seen_max {
            let (kb, vb) = (keys.add(j0 * d), values.add(j0 * d));
            // The scores of every query that sees this block, then their softmax steps, then
            // their weighted values: each query's own steps are a chain (a score waits on its
            // dot product, through the stack, the probabilities on the maximum), so the
            // queries' steps are issued side by side.
            let mut nb = [0usize; QUERIES_PER_PASS];
            for u in 0..n {
                if j0 < seen[u] {
                    nb[u] = BLOCK.min(seen[u] - j0);
                    gemv::<I, K>(kb, d, q.add(at[u]), s[u].as_mut_ptr(), nb[u], false);
                }
            }
            let mut corr = [1.0f32; QUERIES_PER_PASS];
            for u in 0..n {
                if nb[u] > 0 {
                    corr[u] = softmax_step::<I>(&mut s[u], nb[u], scale, &mut max[u], &mut sum[u]);
                }
            }
            for u in 0..n {
                if nb[u] > 0 {
                    weigh_block::<I, K>(&s[u], nb[u], vb, d, out.add(at[u]), corr[u]);
                }
            }
            j0 += BLOCK;
        }
        for (u, &total) in sum.iter().enumerate().take(n) {
            let (o, inv) = (out.add(at[u]), 1.0 / total);
            for c in 0..d {
                *o.add(c) *= inv;
            }
        }
        u0 += n;
    }
}

/// One query's step of the online softmax over a block of `nb` scores in `s` (`1 <= nb <=
/// BLOCK`): the scores scaled and turned into probabilities (relative to the running maximum
/// `max`, which grows to the block's), `sum` updated; returns the factor that rescales what was
/// accumulated before the block.
#[inline(always)]
unsafe fn softmax_step<I: Isa>(
    s: &mut [f32; BLOCK],
    nb: usize,
    scale: f32,
    max: &mut f32,
    sum: &mut f32,
) -> f32 {
    let bmax = scale_scores::<I>(s, nb, scale);
    let mut corr = 1.0f32;
    if bmax > *max {
        corr = I::hmax(exp::<I>(I::splat(*max - bmax)));
        *max = bmax;
    }
    let m = I::splat(*max);
    let mut k = 0;
    let mut psum = I::zero();
    while k < BLOCK {
        let p = exp::<I>(I::sub(I::load(s.as_ptr().add(k)), m));
        I::store(s.as_mut_ptr().add(k), p);
        psum = I::add(psum, p);
        k += I::LANES;
    }
    *sum = *sum * corr + I::hsum(psum);
    corr
}

/// `out = out·corr + Σ_j p[j]·values[j]` over a block's `nb` values `vb` (`d` each) and
/// probabilities `p`. Ranges: out [..d], vb [..nb·d].
#[inline(always)]
unsafe fn weigh_block<I: Isa, K: LoadW<I>>(
    p: &[f32; BLOCK],
    nb: usize,
    vb: *const K,
    d: usize,
    ot: *mut f32,
    corr: f32,
) {
    let l = I::LANES;
    let dm = d - d % l;
    let cv = I::splat(corr);
    let mut c = 0;
    while c + OUT_VECS * l <= dm {
        weigh_values::<I, K, OUT_VECS>(p, nb, vb, d, ot, c, cv);
        c += OUT_VECS * l;
    }
    // The last vectors of the head (fewer than OUT_VECS) in chunks of 4, 2, 1.
    for chunk in [4, 2, 1] {
        if c + chunk * l <= dm {
            match chunk {
                4 => weigh_values::<I, K, 4>(p, nb, vb, d, ot, c, cv),
                2 => weigh_values::<I, K, 2>(p, nb, vb, d, ot, c, cv),
                _ => weigh_values::<I, K, 1>(p, nb, vb, d, ot, c, cv),
            }
            c += chunk * l;
        }
    }
    if I::MASKED && dm < d {
        let t = d - dm;
        let mut o = I::mul(I::load_partial(ot.add(dm), t), cv);
        for (j, &pj) in p.iter().enumerate().take(nb) {
            o = I::fma(I::splat(pj), K::loadw_partial(vb.add(j * d + dm), t), o);
        }
        I::store_partial(ot.add(dm), o, t);
    } else {
        for c in dm..d {
            let mut o = *ot.add(c) * corr;
            for (j, &pj) in p.iter().enumerate().take(nb) {
                o += pj * (*vb.add(j * d + c)).to_f32();
            }
            *ot.add(c) = o;
        }
    }
}

/// Scales the block's `nb` scores in `s` and returns their maximum; the lanes from `nb` on
/// become −∞ (they weigh 0). A whole block a vector at a time: a scalar maximum is a chain of
/// dependent comparisons, which took a third of the attention time at head dim 64. (A NaN
/// score may or may not be the maximum; either way the head's outputs are NaN, as its weight
/// enters their sum.)
#[inline(always)]
unsafe fn scale_scores<I: Isa>(s: &mut [f32; BLOCK], nb: usize, scale: f32) -> f32 {
    let l = I::LANES;
    let sv = I::splat(scale);
    let mut m = I::splat(f32::NEG_INFINITY);
    let mut k = 0;
    while k < BLOCK {
        // In bounds: BLOCK is a multiple of every set's LANES.
        let v = I::mul(I::load(s.as_ptr().add(k)), sv);
        I::store(s.as_mut_ptr().add(k), v);
        m = I::max(m, v);
        k += l;
    }
    if nb == BLOCK {
        return I::hmax(m);
    }
    // The last block of the cache: lanes past nb hold stale scores.
    let mut bmax = f32::NEG_INFINITY;
    for v in s.iter().take(nb) {
        bmax = bmax.max(*v);
    }
    for v in s.iter_mut().skip(nb) {
        *v = f32::NEG_INFINITY;
    }
    bmax
}

/// Output vectors of one head accumulated together by [`weigh_values`]: each is its own
/// chain of FMAs, so 8 of them keep both FMA pipes busy where one chain waits out the FMA
/// latency at every key (that wait was two thirds of the attention time at head dim 64).
const OUT_VECS: usize = 8;

/// `out[c..c + N·LANES] = out·corr + Σ_j p[j]·values[j, c..]` over the block's `nb` keys: the
/// `N` output vectors from column `c` stay in registers across the keys. Each output sums the
/// keys in order (for N <= 4 the even and the odd keys apart, then the two sums). Ranges: values
/// [..nb·d], out [..d], `c + N·LANES <= d`.
#[inline(always)]
unsafe fn weigh_values<I: Isa, K: LoadW<I>, const N: usize>(
    p: &[f32; BLOCK],
    nb: usize,
    values: *const K,
    d: usize,
    out: *mut f32,
    c: usize,
    corr: I::V,
) {
    let l = I::LANES;
    let mut o: [I::V; N] = core::array::from_fn(|k| I::mul(I::load(out.add(c + k * l)), corr));
    // With fewer than 8 output vectors, the odd keys go to a second set of accumulators, so
    // that 2N chains of FMAs run side by side (N alone left the FMA latency exposed: 16 keys
    // of a block are 16 dependent FMAs per vector).
    let split = N <= 4;
    let mut e = [I::zero(); N];
    let mut j = 0;
    while j < nb {
        let row = values.add(j * d + c);
        let pv = I::splat(p[j]);
        if split && j + 1 < nb {
            let (row1, pv1) = (row.add(d), I::splat(p[j + 1]));
            for k in 0..N {
                o[k] = I::fma(pv, K::loadw(row.add(k * l)), o[k]);
                e[k] = I::fma(pv1, K::loadw(row1.add(k * l)), e[k]);
            }
            j += 2;
        } else {
            for (k, ok) in o.iter_mut().enumerate() {
                *ok = I::fma(pv, K::loadw(row.add(k * l)), *ok);
            }
            j += 1;
        }
    }
    for k in 0..N {
        let v = if split { I::add(o[k], e[k]) } else { o[k] };
        I::store(out.add(c + k * l), v);
    }
}

/// The per-architecture glue, written once: the `#[target_feature]` wrappers (one per kernel,
/// each instantiating a generic body above) and the safe `pub(crate)` entry points (lengths
/// checked here, once). Invoked by each architecture file with its [`Isa`] type (named like
/// its `kernels::Isa` variant, which each entry point marks as run), its token type and the
/// target-feature attribute(s) of the wrappers. The int8 products have their own macro,
/// [`int8_kernels`].
macro_rules! target_kernels {
    (
        isa: $isa:ident,
        token: $token:ty,
        $(#[$attr:meta])+
    ) => {
        // ---- target-feature wrappers: one per kernel, each instantiating the generic body.

        $(#[$attr])+
        unsafe fn gemv_target<E: $crate::kernels::simd::LoadW<$isa>>(
            w: &[E],
            x: &[f32],
            y: &mut [f32],
        ) {
            $crate::kernels::simd::gemv::<$isa, E>(
                w.as_ptr(),
                x.len(),
                x.as_ptr(),
                y.as_mut_ptr(),
                y.len(),
                true,
            )
        }

        $(#[$attr])+
        unsafe fn gemv_q8_target(w: &[$crate::tensor::BlockQ8_0], x: &[f32], y: &mut [f32]) {
            $crate::kernels::simd::gemv_q8::<$isa>(
                w.as_ptr(),
                x.len(),
                x.as_ptr(),
                y.as_mut_ptr(),
                y.len(),
            )
        }

        $(#[$attr])+
        unsafe fn gemm_target<E: $crate::kernels::simd::LoadW<$isa>>(
            w: &[E],
            cols: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            let (n, rows) = (x.len() / cols, w.len() / cols);
            $crate::kernels::simd::gemm::<$isa, E>(
                w.as_ptr(),
                cols,
                x.as_ptr(),
                y.as_mut_ptr(),
                n,
                rows,
            )
        }

        $(#[$attr])+
        unsafe fn gemm_q8_target(
            w: &[$crate::tensor::BlockQ8_0],
            cols: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            let (n, rows) = (x.len() / cols, y.len() / (x.len() / cols));
            $crate::kernels::simd::gemm_q8::<$isa>(
                w.as_ptr(),
                cols,
                x.as_ptr(),
                y.as_mut_ptr(),
                n,
                rows,
            )
        }

        $(#[$attr])+
        unsafe fn gemm_panels_target(w: &[f32], cols: usize, x: &[f32], y: &mut [f32], rows: usize) {
            $crate::kernels::simd::panels::gemm::<$isa>(
                w.as_ptr(),
                cols,
                x.as_ptr(),
                y.as_mut_ptr(),
                x.len() / cols,
                rows,
            )
        }

        $(#[$attr])+
        unsafe fn attention_target<K: $crate::kernels::simd::LoadW<$isa>>(
            q: &[f32],
            group: $crate::kernels::HeadGroup,
            positions: $crate::kernels::Positions,
            keys: &[K],
            values: &[K],
            scale: f32,
            out: &mut [f32],
        ) {
            let queries = $crate::kernels::simd::Queries { group, positions };
            let len = keys.len() / group.dim;
            $crate::kernels::simd::attention::<$isa, K>(
                q.as_ptr(),
                queries,
                keys.as_ptr(),
                values.as_ptr(),
                len,
                scale,
                out.as_mut_ptr(),
            )
        }

        $(#[$attr])+
        unsafe fn add_bias_target<E: $crate::kernels::simd::LoadW<$isa>>(y: &mut [f32], b: &[E]) {
            $crate::kernels::simd::rows::add_bias::<$isa, E>(
                y.as_mut_ptr(),
                b.as_ptr(),
                b.len(),
                y.len() / b.len(),
            )
        }

        $(#[$attr])+
        unsafe fn norm_target<E: $crate::kernels::simd::LoadW<$isa>>(
            kind: $crate::kernels::Norm,
            x: &[f32],
            g: Option<&[E]>,
            offset: f32,
            out: &mut [f32],
        ) {
            $crate::kernels::simd::rows::norm::<$isa, E>(
                kind,
                x.as_ptr(),
                g.map(<[E]>::as_ptr),
                offset,
                out.as_mut_ptr(),
                x.len(),
            )
        }

        $(#[$attr])+
        unsafe fn silu_target(x: &mut [f32]) {
            let p = x.as_mut_ptr();
            $crate::kernels::simd::map_slice::<$isa, $crate::kernels::simd::Silu>(
                p.cast_const(),
                p,
                x.len(),
            )
        }

        $(#[$attr])+
        unsafe fn exp_target(x: &[f32], out: &mut [f32]) {
            $crate::kernels::simd::map_slice::<$isa, $crate::kernels::simd::Exp>(
                x.as_ptr(),
                out.as_mut_ptr(),
                x.len(),
            )
        }

        // ---- the safe entry points (lengths checked here, once).

        /// `y = x·Wᵀ`, W `[y.len(), x.len()]`.
        pub(crate) fn matvec<E: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            w: &[E],
            x: &[f32],
            y: &mut [f32],
        ) {
            assert_eq!(w.len(), x.len() * y.len());
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the wrappers' target features (on wasm32, simd128 is
            // enabled for the whole build); w, x, y have exactly the lengths gemv reads and
            // writes (w: rows·cols, x: cols, y: rows).
            unsafe { gemv_target(w, x, y) }
        }

        /// `y = x·Wᵀ` for Q8_0 weights, W `[y.len(), x.len()]`, `x.len()` a multiple of 32.
        pub(crate) fn matvec_q8(
            _: $token,
            w: &[$crate::tensor::BlockQ8_0],
            x: &[f32],
            y: &mut [f32],
        ) {
            assert!(x.len() % $crate::tensor::Q8_0_BLOCK == 0);
            assert_eq!(w.len() * $crate::tensor::Q8_0_BLOCK, x.len() * y.len());
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; w holds rows·cols/32 blocks, x cols, y rows.
            unsafe { gemv_q8_target(w, x, y) }
        }

        /// `Y = X·Wᵀ`: X `[n, cols]`, W `[rows, cols]`, Y `[n, rows]`.
        pub(crate) fn matmul<E: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            w: &[E],
            cols: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            assert!(cols > 0 && x.len() % cols == 0 && w.len() % cols == 0);
            assert_eq!(y.len(), (x.len() / cols) * (w.len() / cols));
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the asserts give exactly the shapes gemm
            // reads (w: rows·cols, x: n·cols) and writes (y: n·rows).
            unsafe { gemm_target(w, cols, x, y) }
        }

        /// `Y = X·Wᵀ` for Q8_0 weights: X `[n, cols]`, W `[rows, cols]` in blocks of 32,
        /// Y `[n, rows]`; `cols` a multiple of 32.
        pub(crate) fn matmul_q8(
            _: $token,
            w: &[$crate::tensor::BlockQ8_0],
            cols: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            assert!(cols > 0 && cols % $crate::tensor::Q8_0_BLOCK == 0 && x.len() % cols == 0);
            assert!(x.len() >= cols);
            let rows = w.len() * $crate::tensor::Q8_0_BLOCK / cols;
            assert_eq!(w.len() * $crate::tensor::Q8_0_BLOCK, rows * cols);
            assert_eq!(y.len(), (x.len() / cols) * rows);
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the asserts give exactly the shapes
            // gemm_q8 reads (w: rows·cols/32 blocks, x: n·cols, n >= 1) and writes (y: n·rows).
            unsafe { gemm_q8_target(w, cols, x, y) }
        }

        /// `Y = X·Wᵀ` over packed weights: X `[n, cols]`, Y `[n, rows]`.
        pub(crate) fn matmul_panels(
            _: $token,
            w: $crate::kernels::Panels<'_>,
            x: &[f32],
            y: &mut [f32],
        ) {
            let (rows, cols, panel) = (w.rows(), w.cols(), $crate::kernels::PANEL);
            assert!(cols > 0 && x.len() % cols == 0);
            assert_eq!(y.len(), (x.len() / cols) * rows);
            assert_eq!(w.as_slice().len(), rows.div_ceil(panel) * panel * cols);
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the asserts give exactly the shapes the
            // body reads (w: the panels of rows × cols, x: n·cols) and writes (y: n·rows).
            unsafe { gemm_panels_target(w.as_slice(), cols, x, y, rows) }
        }

        /// The query heads of `group` at each of `positions` over `keys.len() / group.dim`
        /// cached rows.
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn attention<K: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            q: &[f32],
            group: $crate::kernels::HeadGroup,
            positions: $crate::kernels::Positions,
            keys: &[K],
            values: &[K],
            scale: f32,
            out: &mut [f32],
        ) {
            assert_eq!(positions.span(group), Some(q.len()));
            assert!(!keys.is_empty() && keys.len() % group.dim == 0);
            assert!(!positions.causal || keys.len() / group.dim >= positions.count);
            assert_eq!(keys.len(), values.len());
            assert_eq!(out.len(), q.len());
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; `span` checked dim, heads, count >= 1,
            // stride >= dim and q, out hold (count − 1)·pstride + (heads − 1)·stride + dim
            // values; keys and values hold len·dim elements (len >= 1, and >= count when
            // causal), as the body requires.
            unsafe { attention_target(q, group, positions, keys, values, scale, out) }
        }

        /// `y[r, i] += b[i]` for every row of `y` (`y.len()` a multiple of `b.len()` > 0).
        pub(crate) fn add_bias<E: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            y: &mut [f32],
            b: &[E],
        ) {
            assert!(!b.is_empty() && y.len() % b.len() == 0);
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; y holds y.len() / b.len() whole rows of
            // b.len() values, as the body reads and writes, and b is read in full.
            unsafe { add_bias_target(y, b) }
        }

        /// LayerNorm or RMSNorm of `x` into `out` (the same length), with the gain `g + offset`
        /// if `g` (as long as `x`).
        pub(crate) fn norm<E: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            kind: $crate::kernels::Norm,
            x: &[f32],
            g: Option<&[E]>,
            offset: f32,
            out: &mut [f32],
        ) {
            assert_eq!(x.len(), out.len());
            assert!(g.is_none_or(|g| g.len() == x.len()));
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; x, out and g (if any) hold the x.len()
            // values the body reads and writes.
            unsafe { norm_target(kind, x, g, offset, out) }
        }

        /// SiLU in place with the vector exp.
        pub(crate) fn silu(_: $token, x: &mut [f32]) {
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the body reads and writes x[..x.len()].
            unsafe { silu_target(x) }
        }

        /// `out[i] = eˣ⁽ⁱ⁾` with the vector exp.
        pub(crate) fn exp(_: $token, x: &[f32], out: &mut [f32]) {
            assert_eq!(x.len(), out.len());
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; x and out have the same length n.
            unsafe { exp_target(x, out) }
        }
    };
}
pub(crate) use target_kernels;

/// The int8 glue, as [`target_kernels`]: the wrappers and entry points of the Q8_0 × Q8_0
/// products for one [`Int8Dot`] + [`Int8Lanes`] type, with the token and target-feature
/// attribute(s) it needs (VNNI is a feature of its own), marking `isa` as run. Invoked once per
/// int8 dot product (x86 has three: AVX2's `vpmaddubsw`, AVX-VNNI and AVX-512 VNNI).
macro_rules! int8_kernels {
    (
        isa: $isa:ident,
        int8: $dot:ty,
        token: $itoken:ty,
        $(#[$iattr:meta])+
    ) => {
        $(#[$iattr])+
        unsafe fn gemm_int8_target(
            w: &[$crate::tensor::BlockQ8_0],
            stride: usize,
            x: &[$crate::tensor::BlockQ8_0],
            n: usize,
            y: &mut [f32],
            rows: usize,
            add: bool,
        ) {
            $crate::kernels::simd::gemm_int8::<$dot>(
                w.as_ptr(),
                stride,
                x.as_ptr(),
                x.len() / n,
                n,
                y.as_mut_ptr(),
                rows,
                add,
            )
        }

        $(#[$iattr])+
        unsafe fn quantize_target(
            x: &[f32],
            out: &mut [$crate::tensor::BlockQ8_0],
            sums: &mut [i32],
        ) {
            $crate::kernels::simd::quantize::<<$dot as $crate::kernels::simd::Int8Lanes>::I>(
                x.as_ptr(),
                out.as_mut_ptr(),
                sums.as_mut_ptr(),
                x.len() / $crate::tensor::Q8_0_BLOCK,
            )
        }

        $(#[$iattr])+
        unsafe fn gemm_int8_panels_target(o: $crate::kernels::simd::int8_panels::Operands) {
            $crate::kernels::simd::int8_panels::gemm::<$dot>(o)
        }

        /// `Y (+)= X·Wᵀ` for the `n` positions of Q8_0 activations `x` (`x.len() / n` blocks
        /// each) and that many first blocks of each row of W, rows `stride` blocks apart; Y is
        /// `[n, rows]` (`add`: add to it).
        pub(crate) fn matmul_int8_rows(
            _: $itoken,
            w: &[$crate::tensor::BlockQ8_0],
            stride: usize,
            x: &[$crate::tensor::BlockQ8_0],
            y: &mut [f32],
            rows: usize,
            add: bool,
        ) {
            assert!(rows > 0 && !y.is_empty() && y.len() % rows == 0);
            let n = y.len() / rows;
            assert!(x.len() % n == 0 && x.len() / n <= stride);
            assert!(w.len() >= (rows - 1) * stride + x.len() / n);
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the int8 wrapper's features; w holds
            // (rows − 1)·stride + nb blocks, x n·nb, y n·rows, as gemm_int8 reads and writes.
            unsafe { gemm_int8_target(w, stride, x, n, y, rows, add) }
        }

        /// `tensor::quantize_q8_0` of `x` (whole blocks) into `out`, and the sums of each
        /// block's quants, on the int8 wrapper's vector set (extra entries are left alone).
        pub(crate) fn quantize(_: $itoken, x: &[f32], out: &mut [$crate::tensor::BlockQ8_0], sums: &mut [i32]) {
            let nb = x.len() / $crate::tensor::Q8_0_BLOCK;
            assert!(x.len() % $crate::tensor::Q8_0_BLOCK == 0 && out.len() >= nb && sums.len() >= nb);
            // SAFETY: the token proves the int8 wrapper's features; the body reads x[..32·nb]
            // and writes out[..nb] and sums[..nb], inside the slices as asserted.
            unsafe { quantize_target(x, out, sums) }
        }

        /// `Y (+)= X·Wᵀ` over int8 panels for blocks `b0..b0 + nbc` of each row: X is `n`
        /// positions of `nbc` Q8_0 blocks (quants in −127..=127) with `xsum` the sums of
        /// their quants, Y `[n, w.rows()]` (`add`: add to it).
        pub(crate) fn matmul_int8_panels(
            _: $itoken,
            w: $crate::kernels::Int8Panels<'_>,
            b0: usize,
            x: &[$crate::tensor::BlockQ8_0],
            xsum: &[i32],
            y: &mut [f32],
            add: bool,
        ) {
            let rows = w.rows();
            let nb = w.cols() / $crate::tensor::Q8_0_BLOCK;
            assert!(rows > 0 && !y.is_empty() && y.len() % rows == 0);
            let n = y.len() / rows;
            assert!(x.len() % n == 0 && xsum.len() == x.len());
            let nbc = x.len() / n;
            assert!(nbc > 0 && b0 + nbc <= nb);
            let groups = rows.div_ceil($crate::kernels::INT8_PANEL) * nb;
            assert!(w.quants().len() >= groups * $crate::tensor::Q8_0_BLOCK * $crate::kernels::INT8_PANEL);
            assert!(w.scales().len() >= groups * $crate::kernels::INT8_PANEL * 2);
            $crate::kernels::mark_ran($crate::kernels::Isa::$isa);
            let o = $crate::kernels::simd::int8_panels::Operands {
                q: w.quants().as_ptr().cast(),
                s: w.scales().as_ptr().cast(),
                nb,
                b0,
                nbc,
                x: x.as_ptr(),
                xsum: xsum.as_ptr(),
                n,
                y: y.as_mut_ptr(),
                rows,
                add,
            };
            // SAFETY: the token proves the int8 wrapper's features; the asserts give the
            // ranges the body reads (the panels' groups and scales, n·nbc blocks and sums) and
            // writes (y: n·rows).
            unsafe { gemm_int8_panels_target(o) }
        }
    };
}
pub(crate) use int8_kernels;
