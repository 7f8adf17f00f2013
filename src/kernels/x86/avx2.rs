//! x86-64 AVX2 + FMA, with F16C for f16 weights and caches: the generic bodies of `simd/`
//! instantiated inside `#[target_feature(enable = "avx2,fma,f16c")]` functions, reached with an
//! [`Avx2Token`] (see `x86.rs` for when one exists). Rows that end inside a vector end with
//! AVX's `vmaskmovps` (f32) or a masked 32-bit load of 16-bit pairs ([`Isa::MASKED`]).
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use half::{bf16, f16};

use super::super::simd::{self, Isa, LoadW};
use super::Avx2Token;

#[derive(Clone, Copy)]
pub(crate) struct Avx2;

// SAFETY: the methods are only reached from functions compiled with avx2, fma and f16c, which
// run only when an `Avx2Token` proved those features present; pointer contracts are the callers'.
unsafe impl Isa for Avx2 {
    type V = __m256;
    type X32 = [__m256; 4];
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        _mm256_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn max(c: __m256, x: __m256) -> __m256 {
        // maxps returns its second operand when either is NaN.
        _mm256_max_ps(c, x)
    }
    #[inline(always)]
    unsafe fn min(c: __m256, x: __m256) -> __m256 {
        _mm256_min_ps(c, x)
    }
    #[inline(always)]
    unsafe fn round(x: __m256) -> __m256 {
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x)
    }
    #[inline(always)]
    unsafe fn pow2i(n: __m256) -> __m256 {
        let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
    }
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn sqrt(x: f32) -> f32 {
        sqrt_ss(x)
    }
    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn hsum4(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
        let ab = _mm256_hadd_ps(a, b);
        let cd = _mm256_hadd_ps(c, d);
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
    unsafe fn load_x32(p: *const f32) -> [__m256; 4] {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }
    #[inline(always)]
    unsafe fn splat_f16(h: u16) -> __m256 {
        _mm256_cvtph_ps(_mm_set1_epi16(h as i16))
    }
    #[inline(always)]
    unsafe fn scales4(h: [u16; 4], dx: __m256) -> [__m256; 4] {
        scales4_stored(h, dx, false)
    }
    #[inline(always)]
    unsafe fn load_q8(q: *const i8) -> [__m256; 4] {
        core::array::from_fn(|k| {
            let b = _mm_loadl_epi64(q.add(8 * k) as *const __m128i);
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))
        })
    }
    #[inline(always)]
    unsafe fn store_x32_scaled(p: *mut f32, x: [__m256; 4], d: __m256) {
        for (k, v) in x.iter().enumerate() {
            _mm256_storeu_ps(p.add(8 * k), _mm256_mul_ps(*v, d));
        }
    }
    #[inline(always)]
    unsafe fn q8_dot(q: *const i8, x: [__m256; 4]) -> __m256 {
        let v = Self::load_q8(q);
        let s = _mm256_mul_ps(v[0], x[0]);
        let t = _mm256_mul_ps(v[1], x[1]);
        let s = _mm256_fmadd_ps(v[2], x[2], s);
        let t = _mm256_fmadd_ps(v[3], x[3], t);
        _mm256_add_ps(s, t)
    }
    #[inline(always)]
    unsafe fn amax_bits(x: [__m256; 4]) -> u32 {
        // (Plain loops: `array::map`'s closure is not always inlined into the target-feature
        // function, and then each intrinsic becomes a call.)
        let m = _mm256_set1_epi32(0x7fff_ffff);
        let mut a = _mm256_setzero_si256();
        for v in x {
            a = _mm256_max_epu32(a, _mm256_and_si256(_mm256_castps_si256(v), m));
        }
        let s = _mm_max_epu32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
        let s = _mm_max_epu32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_max_epu32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s) as u32
    }
    #[inline(always)]
    unsafe fn quantize_x32(x: [__m256; 4], id: f32, q: *mut i8) -> i32 {
        let (id, half) = (_mm256_set1_ps(id), _mm256_set1_ps(0.5));
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut qv = [_mm256_setzero_si256(); 4];
        for (o, v) in qv.iter_mut().zip(x) {
            let t = _mm256_mul_ps(v, id);
            // |t| + 0.5 is in 0.5..128: the truncating conversion is exact. `vpsignd` by the
            // bits of t negates where t < 0 (−0 and +0 give 0, as the magnitude is then 0).
            let mag = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_and_ps(t, abs), half));
            *o = _mm256_sign_epi32(mag, _mm256_castps_si256(t));
        }
        // Packing interleaves the 128-bit halves: dwords (4 quants) come out as
        // v0[0..4] v1[0..4] v2[0..4] v3[0..4] | v0[4..8] v1[4..8] v2[4..8] v3[4..8].
        let b = _mm256_packs_epi16(
            _mm256_packs_epi32(qv[0], qv[1]),
            _mm256_packs_epi32(qv[2], qv[3]),
        );
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q as *mut __m256i, b);
        let s = _mm256_add_epi32(
            _mm256_add_epi32(qv[0], qv[1]),
            _mm256_add_epi32(qv[2], qv[3]),
        );
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }
    #[inline(always)]
    unsafe fn f16_bits(x: f32) -> u16 {
        f16_bits(x)
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    }
    /// f32 through AVX's `vmaskmovps`; 16-bit weights by a masked 32-bit load of their pairs
    /// (there is no 16-bit masked load before AVX-512, [`load_partial_u16`]).
    const MASKED: bool = true;
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, lanes(n))
    }
    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, v: __m256, n: usize) {
        _mm256_maskstore_ps(p, lanes(n), v)
    }
}

/// The mask of the first `n` (< 8) lanes (all bits set): masked-off lanes are neither read
/// nor written (nor can they fault).
#[inline(always)]
unsafe fn lanes(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The `n` (< 8) 16-bit values at `p`, then zeros: the pairs by a masked 32-bit load, an odd
/// last one inserted (a copy through the stack would stall store forwarding).
#[inline(always)]
unsafe fn load_partial_u16(p: *const u16, n: usize) -> __m128i {
    let pairs = _mm_cmpgt_epi32(_mm_set1_epi32((n / 2) as i32), _mm_setr_epi32(0, 1, 2, 3));
    let v = _mm_maskload_epi32(p as *const i32, pairs);
    let last = || i32::from(*p.add(n - 1));
    match n {
        1 => _mm_insert_epi16::<0>(v, last()),
        3 => _mm_insert_epi16::<2>(v, last()),
        5 => _mm_insert_epi16::<4>(v, last()),
        7 => _mm_insert_epi16::<6>(v, last()),
        _ => v,
    }
}

/// `x` rounded to f16 (to nearest, ties to even) by F16C, as bits.
#[inline(always)]
pub(super) unsafe fn f16_bits(x: f32) -> u16 {
    _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x))) as u16
}

// SAFETY: as for `Isa`; 8 elements are read from `p`.
unsafe impl LoadW<Avx2> for f32 {
    #[inline(always)]
    unsafe fn loadw(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn loadw_partial(p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, lanes(n))
    }
}
// SAFETY: as for `Isa`; 8 elements are read from `p`.
unsafe impl LoadW<Avx2> for f16 {
    #[inline(always)]
    unsafe fn loadw(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn loadw_partial(p: *const f16, n: usize) -> __m256 {
        _mm256_cvtph_ps(load_partial_u16(p as *const u16, n))
    }
}
// SAFETY: as for `Isa`; 8 elements are read from `p`.
unsafe impl LoadW<Avx2> for bf16 {
    #[inline(always)]
    unsafe fn loadw(p: *const bf16) -> __m256 {
        widen_bf16(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn loadw_partial(p: *const bf16, n: usize) -> __m256 {
        widen_bf16(load_partial_u16(p as *const u16, n))
    }
}

/// 8 bf16 as f32: each moved to the top half of a 32-bit lane.
#[inline(always)]
unsafe fn widen_bf16(h: __m128i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

/// The int8 dot product of AVX2: `vpmaddubsw` multiplies unsigned by signed bytes, so the
/// weights' signs move onto the activations (`|w| · sign(w)·x`; −128 as unsigned is 128 and
/// |x| <= 127, so each pair sum fits 16 bits), then `vpmaddwd` sums pairs into 32 bits.
#[derive(Clone, Copy)]
pub(crate) struct Maddubs;

// SAFETY: as for `Isa` (AVX2 only); 32 bytes are read from each pointer.
unsafe impl simd::Int8Dot for Maddubs {
    type I = Avx2;
    type Q = __m256i;
    /// 8 accumulators, 2 activation vectors and the dot product's temporaries, of 16 registers.
    const POSITIONS: usize = 2;
    #[inline(always)]
    unsafe fn load(q: *const i8) -> __m256i {
        load_int8(q)
    }
    #[inline(always)]
    unsafe fn dot(w: *const i8, x: __m256i) -> __m256 {
        let w = _mm256_loadu_si256(w as *const __m256i);
        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

// SAFETY: as for `Isa` (AVX2 only); 32 bytes are read from each weight pointer and 4 from
// each activation pointer.
unsafe impl simd::Int8Lanes for Maddubs {
    type I = Avx2;
    /// |w| and w (whose sign goes onto x: |w|·sign(w)·x cannot saturate, −128 included).
    type W = (__m256i, __m256i);
    type X = __m256i;
    type A = __m256i;
    /// 4 integer and 4 f32 accumulators, 4 weight vectors and x, of 16 registers.
    const POSITIONS: usize = 2;
    #[inline(always)]
    unsafe fn load_w(p: *const i8) -> (__m256i, __m256i) {
        // Stored + 128: the top bit flipped back.
        let w = _mm256_xor_si256(
            _mm256_loadu_si256(p as *const __m256i),
            _mm256_set1_epi8(-128),
        );
        (_mm256_abs_epi8(w), w)
    }
    #[inline(always)]
    unsafe fn splat_x(p: *const i8) -> __m256i {
        _mm256_set1_epi32(core::ptr::read_unaligned(p as *const i32))
    }
    #[inline(always)]
    unsafe fn start(_: i32) -> __m256i {
        _mm256_setzero_si256()
    }
    #[inline(always)]
    unsafe fn dot(a: __m256i, (abs, w): (__m256i, __m256i), x: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(abs, _mm256_sign_epi8(x, w));
        _mm256_add_epi32(a, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn to_f32(a: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(a)
    }
}

/// [`Isa::sqrt`] with the VEX `vsqrtss` of the enclosing AVX function (not libm's legacy
/// `sqrtss`).
#[inline(always)]
pub(super) unsafe fn sqrt_ss(x: f32) -> f32 {
    _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x)))
}

/// [`Isa::scales4`]: the four products h[r]·dx (f16 `h` converted), stored and broadcast back.
/// The halves go in as one 64-bit integer (scalar ALU work, off the vector shuffle port) and
/// one conversion. Left to itself (`opaque` false), LLVM turns the store and the broadcast
/// loads into four register shuffles; those and the f32 tail per block bound the int8 loop.
/// With `opaque`, `black_box` makes the stored values opaque, so the loads stay loads: they
/// take a load port only and, in EVEX-encoded code, fold into the FMA that uses them as
/// `{1to8}` operands. With AVX-512 VNNI's 4-position tiles that frees the shuffle port; with
/// VEX encoding (AVX-VNNI, AVX2) the separate loads and their addresses cost as much as they
/// save, or more, so those leave it to LLVM.
#[inline(always)]
pub(super) unsafe fn scales4_stored(h: [u16; 4], dx: __m256, opaque: bool) -> [__m256; 4] {
    let bits =
        u64::from(h[0]) | u64::from(h[1]) << 16 | u64::from(h[2]) << 32 | u64::from(h[3]) << 48;
    let d = _mm_mul_ps(
        _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64)),
        _mm256_castps256_ps128(dx),
    );
    let mut m = [0.0f32; 4];
    _mm_storeu_ps(m.as_mut_ptr(), d);
    let m = if opaque {
        core::hint::black_box(&mut m)
    } else {
        &mut m
    };
    core::array::from_fn(|r| _mm256_broadcast_ss(&m[r]))
}

/// 32 activation quants with −128 read as −127 (both x86 int8 dot products).
#[inline(always)]
pub(super) unsafe fn load_int8(q: *const i8) -> __m256i {
    _mm256_max_epi8(
        _mm256_loadu_si256(q as *const __m256i),
        _mm256_set1_epi8(-127),
    )
}

simd::target_kernels! {
    isa: Avx2,
    token: Avx2Token,
    #[target_feature(enable = "avx2,fma,f16c")]
}

simd::int8_kernels! {
    isa: Avx2,
    int8: Maddubs,
    token: Avx2Token,
    #[target_feature(enable = "avx2,fma,f16c")]
}
