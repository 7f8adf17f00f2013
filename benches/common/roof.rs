//! This machine's limits, measured in the same run as the kernels they bound (x86-64 with
//! AVX2+FMA+F16C), so that a kernel's share of them does not depend on how busy the shared
//! machine was that day.
#![allow(unsafe_code)] // test and benchmark harness code, not the library

use core::arch::x86_64::*;

/// FMA chains kept in flight: two FMA pipes × 4 cycles of latency need 8; 12 leave slack.
const CHAINS: usize = 12;

/// Runs `flops` FLOP (rounded down to whole iterations) of register-only AVX2 FMAs in
/// [`CHAINS`] independent chains: the f32 FMA peak, no memory traffic.
pub fn fma_peak(flops: usize) -> f32 {
    assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
    // SAFETY: the features the function is compiled for were detected above.
    unsafe { fma_peak_avx2(flops / (CHAINS * 16), 0.999_9) }
}

/// The same with AVX-512 (`zmm`) FMAs.
pub fn fma_peak_avx512(flops: usize) -> f32 {
    assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: the feature the function is compiled for was detected above.
    unsafe { fma_peak_zmm(flops / (CHAINS * 32), 0.999_9) }
}

#[target_feature(enable = "avx512f")]
unsafe fn fma_peak_zmm(iters: usize, m: f32) -> f32 {
    let (m, a) = (_mm512_set1_ps(m), _mm512_set1_ps(1e-4));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, m, a);
        }
    }
    sum_zmm(acc)
}

/// The same work in AVX-512 BF16 dot products (`vdpbf16ps zmm`: 32 bf16 pairs multiplied and
/// summed into 16 f32, i.e. 64 FLOPs an instruction): what a bf16 dot product could reach at
/// best (where it is slower than [`fma_peak_avx512`], there is no BF16 kernel to write).
pub fn bf16_dot_peak(flops: usize) -> f32 {
    assert!(is_x86_feature_detected!("avx512bf16"));
    // SAFETY: the feature the function is compiled for was detected above.
    unsafe { bf16_dot_zmm(flops / (CHAINS * 64)) }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_dot_zmm(iters: usize) -> f32 {
    // 1e-4 · 0.5 in every pair: the sums grow slowly and stay finite.
    let a: __m512bh = core::mem::transmute(_mm512_set1_epi16(0x38d2)); // bf16 ≈ 1e-4
    let b: __m512bh = core::mem::transmute(_mm512_set1_epi16(0x3f00)); // bf16 0.5
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_dpbf16_ps(*v, a, b);
        }
    }
    sum_zmm(acc)
}

/// The sum of every lane of the chains (so that no chain is dead code).
#[target_feature(enable = "avx512f")]
unsafe fn sum_zmm(acc: [__m512; CHAINS]) -> f32 {
    let mut s = _mm512_setzero_ps();
    for v in acc {
        s = _mm512_add_ps(s, v);
    }
    _mm512_reduce_add_ps(s)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn fma_peak_avx2(iters: usize, m: f32) -> f32 {
    let (m, a) = (_mm256_set1_ps(m), _mm256_set1_ps(1e-4));
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, m, a);
        }
    }
    sum(acc)
}

/// Converts `weights` f16 values (rounded down to whole vectors) with F16C and multiplies each
/// into an accumulator, from a 4 KiB buffer that stays in L1: the most an f16 matrix-vector
/// product can reach, its weights as close as they can be (per 8 weights: one conversion,
/// one FMA).
pub fn f16_roof(buf: &[u16; 2048], weights: usize) -> f32 {
    assert!(
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    );
    // SAFETY: the features were detected above; the body reads buf[..2048] only.
    unsafe { f16_roof_avx2(buf, weights / 8) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_roof_avx2(buf: &[u16; 2048], vectors: usize) -> f32 {
    let x = _mm256_set1_ps(0.5);
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    // Groups of CHAINS vectors, one vector per chain, cycling over the buffer.
    let mut left = vectors / CHAINS;
    while left > 0 {
        for chunk in buf.chunks_exact(8 * CHAINS).take(left) {
            for (j, v) in acc.iter_mut().enumerate() {
                // SAFETY: chunk holds 8·CHAINS u16, so the 8 from 8·j are in range.
                let h = _mm_loadu_si128(chunk.as_ptr().add(8 * j) as *const __m128i);
                *v = _mm256_fmadd_ps(_mm256_cvtph_ps(h), x, *v);
            }
        }
        left -= left.min(buf.len() / (8 * CHAINS));
    }
    sum(acc)
}

#[target_feature(enable = "avx2")]
unsafe fn sum(acc: [__m256; CHAINS]) -> f32 {
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}
