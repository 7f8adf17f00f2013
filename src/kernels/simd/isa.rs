//! The vector interface every SIMD kernel body is written against ([`Isa`]), and the weight
//! types each instruction set loads ([`LoadW`]).

use crate::tensor::Element;

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
    /// The 32 quants of [`crate::q8_0::quantize_block`] for multiplier `id` (`t = x·id`,
    /// |t| < 127.5, rounded half away from zero as trunc(|t| + 0.5) with the sign of t) to
    /// q[..32], and their sum.
    unsafe fn quantize_x32(x: Self::X32, id: f32, q: *mut i8) -> i32;
    /// √x, correctly rounded (as `libm::sqrtf`, the default). The x86 sets override it with
    /// the VEX `vsqrtss`: libm's is inline assembly of the legacy SSE `sqrtss`, and inlined into
    /// AVX code (the upper halves of the registers in use) it pays the SSE/AVX transition
    /// penalty on every call, more than a whole RMSNorm of a short row. `.ci/vex-check.sh`
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
