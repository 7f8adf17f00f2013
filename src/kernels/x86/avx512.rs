//! x86-64 AVX-512 (AVX-512F, BW and VL, as every AVX-512 core but Xeon Phi has them, with AVX2,
//! FMA and F16C for the 128/256-bit steps): the generic bodies of `simd/` over 16-lane `zmm`
//! vectors, instantiated inside `#[target_feature(enable =
//! "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]` functions, reached with an [`Avx512Token`] (see
//! `x86.rs` for when one exists). Where the core has two 512-bit FMA pipes (Intel server cores)
//! this doubles the FLOPs of AVX2; f16 widens with `vcvtph2ps zmm` and bf16 with a 16-bit
//! shift, as on AVX2. Rows that end inside a vector end with masked loads and stores
//! ([`Isa::MASKED`]) instead of scalar code.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use half::{bf16, f16};

use super::super::simd::{self, Isa, LoadW};
use super::Avx512Token;

#[derive(Clone, Copy)]
pub(crate) struct Avx512;

/// The sum of the two 256-bit halves of `v`.
#[inline(always)]
unsafe fn fold(v: __m512) -> __m256 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    _mm256_add_ps(_mm512_castps512_ps256(v), hi)
}

// SAFETY: the methods are only reached from functions compiled with avx512f/bw/vl, avx2, fma
// and f16c, which run only when an `Avx512Token` proved those features present; pointer
// contracts are the callers' (the partial loads and stores touch only their first n lanes).
unsafe impl Isa for Avx512 {
    type V = __m512;
    type X32 = [__m512; 2];
    const LANES: usize = 16;
    const TILE_POSITIONS: usize = 6;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        _mm512_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn max(c: __m512, x: __m512) -> __m512 {
        // vmaxps returns its second operand when either is NaN.
        _mm512_max_ps(c, x)
    }
    #[inline(always)]
    unsafe fn min(c: __m512, x: __m512) -> __m512 {
        _mm512_min_ps(c, x)
    }
    #[inline(always)]
    unsafe fn round(x: __m512) -> __m512 {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x)
    }
    #[inline(always)]
    unsafe fn pow2i(n: __m512) -> __m512 {
        let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
    }
    #[inline(always)]
    unsafe fn hsum(v: __m512) -> f32 {
        let s = fold(v);
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn sqrt(x: f32) -> f32 {
        super::avx2::sqrt_ss(x)
    }
    #[inline(always)]
    unsafe fn hmax(v: __m512) -> f32 {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let s = _mm256_max_ps(_mm512_castps512_ps256(v), hi);
        let s = _mm_max_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn hsum4(a: __m512, b: __m512, c: __m512, d: __m512) -> [f32; 4] {
        let ab = _mm256_hadd_ps(fold(a), fold(b));
        let cd = _mm256_hadd_ps(fold(c), fold(d));
        let abcd = _mm256_hadd_ps(ab, cd);
        let s = _mm_add_ps(
            _mm256_castps256_ps128(abcd),
            _mm256_extractf128_ps::<1>(abcd),
        );
        let mut out = [0.0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), s);
        out
    }
    #[inline(always)]
    unsafe fn load_x32(p: *const f32) -> [__m512; 2] {
        [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))]
    }
    #[inline(always)]
    unsafe fn splat_f16(h: u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_set1_epi16(h as i16))
    }
    #[inline(always)]
    unsafe fn load_q8(q: *const i8) -> [__m512; 2] {
        core::array::from_fn(|k| {
            let b = _mm_loadu_si128(q.add(16 * k) as *const __m128i);
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b))
        })
    }
    #[inline(always)]
    unsafe fn store_x32_scaled(p: *mut f32, x: [__m512; 2], d: __m512) {
        _mm512_storeu_ps(p, _mm512_mul_ps(x[0], d));
        _mm512_storeu_ps(p.add(16), _mm512_mul_ps(x[1], d));
    }
    #[inline(always)]
    unsafe fn q8_dot(q: *const i8, x: [__m512; 2]) -> __m512 {
        let v = Self::load_q8(q);
        _mm512_fmadd_ps(v[1], x[1], _mm512_mul_ps(v[0], x[0]))
    }
    #[inline(always)]
    unsafe fn amax_bits(x: [__m512; 2]) -> u32 {
        let m = _mm512_set1_epi32(0x7fff_ffff);
        let a = _mm512_and_si512(_mm512_castps_si512(x[0]), m);
        let b = _mm512_and_si512(_mm512_castps_si512(x[1]), m);
        _mm512_reduce_max_epu32(_mm512_max_epu32(a, b))
    }
    #[inline(always)]
    unsafe fn quantize_x32(x: [__m512; 2], id: f32, q: *mut i8) -> i32 {
        let (id, sign, half) = (
            _mm512_set1_ps(id),
            _mm512_set1_epi32(i32::MIN),
            _mm512_castps_si512(_mm512_set1_ps(0.5)),
        );
        let mut qv = [_mm512_setzero_si512(); 2];
        for (o, v) in qv.iter_mut().zip(x) {
            let t = _mm512_castps_si512(_mm512_mul_ps(v, id));
            // t + 0.5 with the sign of t (one `vpternlogd`: (t & sign) | 0.5), truncated: the
            // definition's sign(t)·trunc(|t| + 0.5), as rounding is symmetric in the sign;
            // exact, as |t| + 0.5 is in 0.5..128.
            let h = _mm512_ternarylogic_epi32::<0xea>(t, sign, half);
            *o = _mm512_cvttps_epi32(_mm512_add_ps(
                _mm512_castsi512_ps(t),
                _mm512_castsi512_ps(h),
            ));
        }
        // Words per 128-bit lane: q0[4l..4l + 4], q1[4l..4l + 4]; bytes likewise, twice; the
        // permutation takes each lane's first four dwords in order.
        let w = _mm512_packs_epi32(qv[0], qv[1]);
        let b = _mm512_packs_epi16(w, w);
        let b = _mm512_permutexvar_epi32(
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0),
            b,
        );
        _mm256_storeu_si256(q as *mut __m256i, _mm512_castsi512_si256(b));
        _mm512_reduce_add_epi32(_mm512_add_epi32(qv[0], qv[1]))
    }
    #[inline(always)]
    unsafe fn f16_bits(x: f32) -> u16 {
        super::avx2::f16_bits(x)
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    }
    const MASKED: bool = true;
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(lanes(n), p)
    }
    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, v: __m512, n: usize) {
        _mm512_mask_storeu_ps(p, lanes(n), v)
    }
}

/// The mask of the first `n` (< 16) lanes: masked-off lanes are neither read nor written (nor
/// can they fault).
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

// SAFETY: as for `Isa`; 16 elements are read from `p`.
unsafe impl LoadW<Avx512> for f32 {
    #[inline(always)]
    unsafe fn loadw(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn loadw_partial(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(lanes(n), p)
    }
}
// SAFETY: as for `Isa`; 16 elements are read from `p`.
unsafe impl LoadW<Avx512> for f16 {
    #[inline(always)]
    unsafe fn loadw(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    #[inline(always)]
    unsafe fn loadw_partial(p: *const f16, n: usize) -> __m512 {
        // 16-bit lanes masked: AVX-512BW + VL.
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes(n), p as *const i16))
    }
}
// SAFETY: as for `Isa`; 16 elements are read from `p`.
unsafe impl LoadW<Avx512> for bf16 {
    #[inline(always)]
    unsafe fn loadw(p: *const bf16) -> __m512 {
        widen_bf16(_mm256_loadu_si256(p as *const __m256i))
    }
    #[inline(always)]
    unsafe fn loadw_partial(p: *const bf16, n: usize) -> __m512 {
        widen_bf16(_mm256_maskz_loadu_epi16(lanes(n), p as *const i16))
    }
}

/// 16 bf16 as f32: each moved to the top half of a 32-bit lane.
#[inline(always)]
unsafe fn widen_bf16(h: __m256i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

/// AVX-512 VNNI (`vpdpbusd`, EVEX-encoded): on 256-bit vectors (the `Avx2` vector set,
/// inside functions that also enable `avx512vnni` and `avx512vl`) for the row-layout dot
/// product, written once for both encodings in `avx_vnni.rs`; on 512-bit ones for the panels.
#[derive(Clone, Copy)]
pub(crate) struct Vnni;

// SAFETY: reached only from functions compiled with avx512vnni and avx512vl besides the
// `Avx2` features, which run only when a `VnniToken` proved them.
unsafe impl super::avx_vnni::Dpbusd256 for Vnni {
    /// 16 accumulators and 4 × 2 activation vectors, of AVX-512VL's 32 registers.
    const POSITIONS: usize = 4;
    const SCALES_FROM_MEMORY: bool = true;
    #[inline(always)]
    unsafe fn dpbusd(a: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(a, u, s)
    }
}

// SAFETY: as for `Dpbusd256`; 64 bytes are read from each weight pointer and 4 from each
// activation pointer.
unsafe impl simd::Int8Lanes for Vnni {
    type I = Avx512;
    /// The quants + 128 as stored (unsigned, as `vpdpbusd` multiplies them).
    type W = __m512i;
    type X = __m512i;
    type A = __m512i;
    /// 8 integer and 8 f32 accumulators, of 32 registers.
    const POSITIONS: usize = 8;
    #[inline(always)]
    unsafe fn load_w(p: *const i8) -> __m512i {
        _mm512_loadu_si512(p as *const __m512i)
    }
    #[inline(always)]
    unsafe fn splat_x(p: *const i8) -> __m512i {
        _mm512_set1_epi32(core::ptr::read_unaligned(p as *const i32))
    }
    #[inline(always)]
    unsafe fn start(sum: i32) -> __m512i {
        // Σ (w + 128)·x = Σ w·x + 128·Σ x.
        _mm512_set1_epi32(-128 * sum)
    }
    #[inline(always)]
    unsafe fn dot(a: __m512i, w: __m512i, x: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(a, w, x)
    }
    #[inline(always)]
    unsafe fn to_f32(a: __m512i) -> __m512 {
        _mm512_cvtepi32_ps(a)
    }
}

simd::target_kernels! {
    isa: Avx512,
    token: Avx512Token,
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
}

simd::int8_kernels! {
    isa: Avx512,
    int8: Vnni,
    token: super::VnniToken,
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
}
