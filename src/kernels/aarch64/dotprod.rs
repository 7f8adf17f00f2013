//! aarch64 FEAT_DotProd: the int8 products with `sdot`, which sums four signed byte products
//! into each 32-bit lane in one instruction (ARMv8.2 and later: Cortex-A55, A76 and newer,
//! Neoverse, Apple M), instantiated inside `#[target_feature(enable = "neon,dotprod")]`
//! functions, reached with a [`DotprodToken`] (see `aarch64.rs`). The f32 kernels stay NEON's.
//!
//! `vdotq_s32` is still unstable in Rust, so `sdot` itself is reached through `asm!`.
#![allow(unsafe_code)]

use core::arch::aarch64::*;
use core::arch::asm;

use super::super::simd::{self, Int8Dot, Int8Lanes};
use super::neon::{Neon, Smull};
use super::DotprodToken;

/// The int8 products with `sdot`: both operands signed, so the weights need no bias, and
/// 32-bit sums need no 16-bit steps (−128 in the weights is exact).
#[derive(Clone, Copy)]
pub(crate) struct Sdot;

/// a + Σ_{i<4} w[4l + i]·x[4l + i] in each 32-bit lane l.
///
/// # Safety
/// Only inside functions compiled with `dotprod`.
#[inline(always)]
unsafe fn sdot(a: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut a = a;
    // SAFETY: sdot (FEAT_DotProd, which the caller's features prove) reads and writes
    // registers only.
    asm!(
        "sdot {a:v}.4s, {w:v}.16b, {x:v}.16b",
        a = inout(vreg) a,
        w = in(vreg) w,
        x = in(vreg) x,
        options(pure, nomem, nostack, preserves_flags)
    );
    a
}

// SAFETY: reached only from functions compiled with neon and dotprod, which run only when a
// `DotprodToken` proved them; 32 bytes are read from each pointer.
unsafe impl Int8Dot for Sdot {
    type I = Neon;
    type Q = [int8x16_t; 2];
    /// 16 accumulators and 4 × 2 activation vectors, of 32 registers.
    const POSITIONS: usize = 4;
    #[inline(always)]
    unsafe fn load(q: *const i8) -> [int8x16_t; 2] {
        // As base NEON's: −128 reads as −127, as the definition (`portable::matvec_int8`)
        // says for every set.
        <Smull as Int8Dot>::load(q)
    }
    #[inline(always)]
    unsafe fn dot(w: *const i8, x: [int8x16_t; 2]) -> float32x4_t {
        let s = sdot(vdupq_n_s32(0), vld1q_s8(w), x[0]);
        vcvtq_f32_s32(sdot(s, vld1q_s8(w.add(16)), x[1]))
    }
}

// SAFETY: as above; 16 bytes are read from each weight pointer and 4 from each activation
// pointer.
unsafe impl Int8Lanes for Sdot {
    type I = Neon;
    type W = int8x16_t;
    type X = int8x16_t;
    type A = int32x4_t;
    /// 8 integer and 8 f32 accumulators (16 rows × 2 positions), of 32 registers (tiles have
    /// 1, 2, 4 or 8 positions, and 4 would need all 32 for accumulators).
    const POSITIONS: usize = 2;
    // Loads and start as base NEON's (the weights' top bit flipped back); only the step
    // differs.
    #[inline(always)]
    unsafe fn load_w(p: *const i8) -> int8x16_t {
        <Smull as Int8Lanes>::load_w(p)
    }
    #[inline(always)]
    unsafe fn splat_x(p: *const i8) -> int8x16_t {
        <Smull as Int8Lanes>::splat_x(p)
    }
    #[inline(always)]
    unsafe fn start(sum: i32) -> int32x4_t {
        <Smull as Int8Lanes>::start(sum)
    }
    #[inline(always)]
    unsafe fn dot(a: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        sdot(a, w, x)
    }
    #[inline(always)]
    unsafe fn to_f32(a: int32x4_t) -> float32x4_t {
        vcvtq_f32_s32(a)
    }
}

simd::int8_kernels! {
    isa: NeonDot,
    int8: Sdot,
    token: DotprodToken,
    #[target_feature(enable = "neon,dotprod")]
}
