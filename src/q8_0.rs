//! Q8_0: ggml's int8 block quantisation of weights (blocks of 32 values sharing one f16 scale),
//! the format `picoformer quantize` writes and the int8 kernels read.

use half::f16;

use crate::error::{Buffer, Error};
use crate::tensor::Element;

/// Whether this build has Q8_0 weights (picoformer's Cargo feature `q8_0`, on by default). The
/// loader tests it, and so does the Cortex-M self-test; the kernels' entries test for Q8_0 only
/// in builds without the feature ([`built`]), so there their code is not linked and a Q8_0
/// tensor gets [`Error::NotBuilt`].
pub(crate) const BUILT: bool = cfg!(feature = "q8_0");

/// [`Error::NotBuilt`] for Q8_0 weights, `weight` if one is named.
pub(crate) const fn not_built(weight: Option<crate::error::WeightName>) -> Error {
    Error::NotBuilt {
        feature: "q8_0",
        weight,
    }
}

/// [`not_built`] for a Q8_0 tensor: the first statement of each kernel's entry in a build
/// without the feature, inlined, so that the compiler sees the kernel's Q8_0 branches are dead.
/// (Builds with the feature do not have the statement at all: even as a no-op, it changed what
/// the optimiser proved, and a panic path reappeared in `.ci/no-panic.sh`'s proof.)
#[cfg(not(feature = "q8_0"))]
#[inline(always)]
pub(crate) fn built(t: &crate::tensor::Tensor<'_>) -> Result<(), Error> {
    match t {
        crate::tensor::Tensor::Q8_0(_) => Err(not_built(None)),
        _ => Ok(()),
    }
}

/// Values per [`BlockQ8_0`].
pub const Q8_0_BLOCK: usize = 32;

/// One block of int8-quantised weights in ggml's `block_q8_0` layout: bytes 0..2 hold the scale
/// `d` (an `f16`, little-endian), bytes 2..34 the 32 quants `q` (`i8`); value i is `d · q[i]`.
///
/// It is a plain byte array on purpose: `bytemuck::cast_slice::<u8, BlockQ8_0>` views a model
/// file's bytes as blocks without copying, at any alignment, and without `unsafe` (a struct
/// `{ d: f16, qs: [i8; 32] }` would need an `unsafe impl Pod`). Read it with [`q8_0_scale`] and
/// [`q8_0_quants`], build it with [`q8_0_block`] or [`quantize_q8_0`].
pub type BlockQ8_0 = [u8; Q8_0_BYTES];

/// Bytes of one [`BlockQ8_0`]: an f16 scale and 32 int8 values.
pub const Q8_0_BYTES: usize = 34;

/// The scale `d` of a block.
#[inline(always)]
pub fn q8_0_scale(b: &BlockQ8_0) -> f16 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]]))
}

/// The 32 quants of a block.
#[inline(always)]
pub fn q8_0_quants(b: &BlockQ8_0) -> &[i8; 32] {
    let q: &[u8; 32] = b[2..].try_into().expect("34 = 2 + 32");
    bytemuck::cast_ref(q)
}

/// A block from its scale and quants.
pub fn q8_0_block(d: f16, qs: &[i8; 32]) -> BlockQ8_0 {
    let mut b = [0u8; 34];
    b[..2].copy_from_slice(&d.to_bits().to_le_bytes());
    b[2..].copy_from_slice(bytemuck::cast_slice(qs));
    b
}

/// Quantises `src` into Q8_0 blocks the way ggml does: per block of 32, `d = max|x| / 127`
/// (stored as f16) and `q = round(x / d)`, so the largest magnitude maps to ±127.
/// The error of a value is at most about `d / 2` plus the f16 rounding of `d` (≈ 0.4% of the
/// block's largest magnitude). A block holding a NaN or an infinity gets the scale NaN and
/// quants 0, so that products with it are NaN, as they would be in f32; a block whose largest
/// magnitude is below 127·2⁻¹²⁸ (its f16 scale is 0) gets quants 0.
///
/// # Errors
/// [`Error::BufferLength`] (buffer [`Buffer::Output`]) unless `src.len() == 32 · dst.len()`;
/// nothing is written then.
pub fn quantize_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) -> Result<(), Error> {
    if src.len() != dst.len().saturating_mul(Q8_0_BLOCK) {
        return Err(Error::BufferLength {
            buffer: Buffer::Output,
            expected: src.len().div_ceil(Q8_0_BLOCK),
            found: dst.len(),
        });
    }
    for (x, b) in src.chunks_exact(Q8_0_BLOCK).zip(dst.iter_mut()) {
        quantize_block(x, b);
    }
    Ok(())
}

/// One block of [`quantize_q8_0`] (`x`: 32 values) into `out`, returning the sum of its quants:
/// the definition of the int8 path's activation quantisation, which the portable path runs and
/// the SIMD sets reproduce bit for bit with their own instructions (`kernels::simd::quantize`).
/// Written in place (a block returned by value was copied once more per block on a
/// microcontroller).
#[inline(always)]
pub(crate) fn quantize_block(x: &[f32], out: &mut BlockQ8_0) -> i32 {
    // The largest |x| as bits: for finite values their order is the values' order, and any
    // infinity or NaN is at least 0x7f80_0000.
    let amax_bits = x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
    let Some((d, id)) = q8_0_step(amax_bits) else {
        *out = q8_0_nan_block();
        return 0;
    };
    let (scale, quants) = out.split_at_mut(2);
    scale.copy_from_slice(&f16_of_finite(d).to_bits().to_le_bytes());
    let mut sum = 0;
    for (q, v) in quants.iter_mut().zip(x) {
        // Round half away from zero (C's roundf): trunc(|t| + 0.5) with the sign of t. The
        // SIMD sets round the same way (`Isa::quantize_x32`), so both give the same quants.
        let t = v * id;
        let mag = round_magnitude(t);
        let q8 = (if t < 0.0 { -mag } else { mag }) as i8;
        sum += i32::from(q8);
        *q = q8 as u8;
    }
    sum
}

/// trunc(|t| + 0.5) for a finite |t| ≤ 127 (the magnitude of C's `roundf(t)`). The truncation
/// reads the bits of y = |t| + 0.5, in 0.5..128: its mantissa with the implicit bit, shifted
/// right by 150 − the biased exponent (17..=24), as integers (a float-to-int cast would not
/// vectorise: it must saturate). On a Cortex-M FPU, where nothing vectorises, the cast: one
/// `VCVT.S32.F32`, which truncates (the same value, fewer instructions).
#[inline(always)]
fn round_magnitude(t: f32) -> i32 {
    #[cfg(picoformer_cortexm)]
    return (t.abs() + 0.5) as i32;
    #[allow(unreachable_code)]
    {
        let y = (t.abs() + 0.5).to_bits();
        ((y & 0x7f_ffff) | 0x80_0000).wrapping_shr(150 - (y >> 23)) as i32
    }
}

/// `f16::from_f32` of a finite value: by the FPU's `VCVTB.F16.F32` on a Cortex-M with one
/// (the same rounding, to nearest even, with overflow to ∞ and exact subnormals).
#[inline(always)]
fn f16_of_finite(v: f32) -> f16 {
    #[cfg(picoformer_cortexm)]
    return crate::kernels::cortexm::f32_to_f16(v);
    #[allow(unreachable_code)]
    f16::from_f32(v)
}

/// The step `d = max|x| / 127` of a Q8_0 block whose largest magnitude has the bits
/// `amax_bits`, and the multiplier `1/d` of its values: 0 where it overflows (d = 0, or
/// max|x| below 127·2⁻¹²⁸, whose f16 scale is 0 so that the block is 0 whatever the quants:
/// x·(1/d) would be ±∞ or NaN). `None` for a block with an infinity or a NaN
/// ([`q8_0_nan_block`]).
#[inline(always)]
pub(crate) fn q8_0_step(amax_bits: u32) -> Option<(f32, f32)> {
    if amax_bits >= 0x7f80_0000 {
        return None;
    }
    let d = f32::from_bits(amax_bits) / 127.0;
    let id = match 1.0 / d {
        inv if inv.is_finite() => inv,
        _ => 0.0,
    };
    Some((d, id))
}

/// The Q8_0 block of values with an infinity or a NaN: scale NaN, quants 0 (so that products
/// with it are NaN, as they would be in f32).
#[inline(always)]
pub(crate) fn q8_0_nan_block() -> BlockQ8_0 {
    q8_0_block(f16::from_f32(f32::NAN), &[0; 32])
}

/// [`quantize_block`] over whole blocks: `x` (32·`out.len()` values) into `out`, the sums of
/// each block's quants into `sums` (extra entries of either are left alone).
pub(crate) fn quantize_blocks(x: &[f32], out: &mut [BlockQ8_0], sums: &mut [i32]) {
    let blocks = x.chunks_exact(Q8_0_BLOCK).zip(out.iter_mut());
    for ((xb, o), s) in blocks.zip(sums.iter_mut()) {
        *s = quantize_block(xb, o);
    }
}

/// Expands Q8_0 blocks into `dst` (`32 · src.len()` values), each `d · q` in f32.
///
/// # Errors
/// [`Error::BufferLength`] (of the output) if `dst.len() != 32 · src.len()`.
pub fn dequantize_q8_0(src: &[BlockQ8_0], dst: &mut [f32]) -> Result<(), Error> {
    if dst.len() / Q8_0_BLOCK != src.len() || !dst.len().is_multiple_of(Q8_0_BLOCK) {
        return Err(Error::BufferLength {
            buffer: Buffer::Output,
            expected: src.len().saturating_mul(Q8_0_BLOCK),
            found: dst.len(),
        });
    }
    for (b, out) in src.iter().zip(dst.chunks_exact_mut(Q8_0_BLOCK)) {
        out.copy_from_slice(&dequantize_block(b));
    }
    Ok(())
}

/// The 32 values `d · q` of one Q8_0 block.
pub(crate) fn dequantize_block(b: &BlockQ8_0) -> [f32; Q8_0_BLOCK] {
    let d = Element::to_f32(q8_0_scale(b));
    let q = q8_0_quants(b);
    core::array::from_fn(|i| d * q[i] as f32)
}
