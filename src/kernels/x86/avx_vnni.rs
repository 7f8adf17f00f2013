//! x86-64 AVX-VNNI: the int8 products with the VEX-encoded 256-bit `vpdpbusd` that Intel's
//! client cores since Alder Lake (which have no AVX-512) and AMD's Zen 5 execute, instantiated
//! inside `#[target_feature(enable = "avx2,fma,f16c,avxvnni")]` functions, reached with an
//! [`AvxVnniToken`] (see `x86.rs`). The f32 kernels stay AVX2's.
//!
//! The row-layout dot product ([`simd::Int8Dot`]) is written once here for both 256-bit
//! encodings of `vpdpbusd` ([`Dpbusd256`]): AVX-VNNI's and AVX-512 VNNI's (`avx512.rs`).
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::super::simd;
use super::avx2::{self, load_int8, Avx2};
use super::AvxVnniToken;

/// `vpdpbusd` on 256-bit vectors: a + Σ_{i<4} u[4l + i]·s[4l + i] in each 32-bit lane l, for
/// unsigned bytes `u` and signed bytes `s`.
///
/// # Safety
/// Only where the implementation's encoding is available (its callers prove it).
pub(crate) unsafe trait Dpbusd256: Copy {
    /// [`simd::Int8Dot::POSITIONS`] with this encoding's registers.
    const POSITIONS: usize;
    /// Whether the scales are broadcast from memory ([`avx2::scales4_stored`]: where the
    /// FMAs take `{1to8}` operands) rather than by shuffles.
    const SCALES_FROM_MEMORY: bool;
    unsafe fn dpbusd(a: __m256i, u: __m256i, s: __m256i) -> __m256i;
}

/// AVX-VNNI (VEX encoding).
#[derive(Clone, Copy)]
pub(crate) struct AvxVnni;

// SAFETY: reached only from functions compiled with avxvnni (and the `Avx2` features), which
// run only when an `AvxVnniToken` proved them.
unsafe impl Dpbusd256 for AvxVnni {
    /// 8 accumulators and 2 × 2 activation vectors, of 16 registers.
    const POSITIONS: usize = 2;
    const SCALES_FROM_MEMORY: bool = false;
    #[inline(always)]
    unsafe fn dpbusd(a: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(a, u, s)
    }
}

/// The int8 dot product with `vpdpbusd`: each group of four unsigned × signed byte products
/// summed into 32 bits in one instruction. The weights are made unsigned by flipping their top
/// bit (w + 128), and the accumulator starts at −128·Σx for each group of four activations
/// (computed once per block for all rows), so each lane ends exactly at Σ w·x: two
/// instructions per block and row instead of AVX2's four.
// SAFETY: as for `Dpbusd256`, with the `Avx2` features; 32 bytes are read from each pointer.
unsafe impl<D: Dpbusd256> simd::Int8Dot for D {
    type I = Avx2;
    /// The activations and the accumulator's start, −128·Σ of each group of four.
    type Q = (__m256i, __m256i);
    const POSITIONS: usize = D::POSITIONS;
    #[inline(always)]
    unsafe fn load(q: *const i8) -> (__m256i, __m256i) {
        let x = load_int8(q);
        let neg = _mm256_sub_epi8(_mm256_setzero_si256(), x);
        let bias = D::dpbusd(_mm256_setzero_si256(), _mm256_set1_epi8(-128), neg);
        (x, bias)
    }
    #[inline(always)]
    unsafe fn dot(w: *const i8, (x, bias): (__m256i, __m256i)) -> __m256 {
        let w = _mm256_loadu_si256(w as *const __m256i);
        let biased = _mm256_xor_si256(w, _mm256_set1_epi8(-128));
        _mm256_cvtepi32_ps(D::dpbusd(bias, biased, x))
    }
    #[inline(always)]
    unsafe fn scales4(h: [u16; 4], dx: __m256) -> [__m256; 4] {
        avx2::scales4_stored(h, dx, D::SCALES_FROM_MEMORY)
    }
}

// SAFETY: as for `Dpbusd256`; 32 bytes are read from each weight pointer and 4 from each
// activation pointer.
unsafe impl simd::Int8Lanes for AvxVnni {
    type I = Avx2;
    /// The quants + 128 as stored (unsigned, as `vpdpbusd` multiplies them).
    type W = __m256i;
    type X = __m256i;
    type A = __m256i;
    /// 4 integer and 4 f32 accumulators, a weight vector and 2 activation vectors, of 16
    /// registers (4 positions would need 16 accumulators alone).
    const POSITIONS: usize = 2;
    #[inline(always)]
    unsafe fn load_w(p: *const i8) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }
    #[inline(always)]
    unsafe fn splat_x(p: *const i8) -> __m256i {
        _mm256_set1_epi32(core::ptr::read_unaligned(p as *const i32))
    }
    #[inline(always)]
    unsafe fn start(sum: i32) -> __m256i {
        // Σ (w + 128)·x = Σ w·x + 128·Σ x.
        _mm256_set1_epi32(-128 * sum)
    }
    #[inline(always)]
    unsafe fn dot(a: __m256i, w: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(a, w, x)
    }
    #[inline(always)]
    unsafe fn to_f32(a: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(a)
    }
}

simd::int8_kernels! {
    isa: AvxVnni,
    int8: AvxVnni,
    token: AvxVnniToken,
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
}
