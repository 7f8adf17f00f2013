//! aarch64 NEON (Advanced SIMD): the vector set of every aarch64 kernel, f16 widened with
//! `fcvtl` (ARMv8.0, no FEAT_FP16 needed), and the int8 products of base NEON ([`Smull`]).
//!
//! The bodies are the generic ones of `simd/`, instantiated here inside
//! `#[target_feature(enable = "neon")]` functions. NEON is part of every aarch64 target this
//! module is compiled for (`cfg(target_feature = "neon")`), so a [`Token`] always exists.
//! (`vcvt_f32_f16` needs Rust's unstable `f16` type; the same instruction, `fcvtl`,
//! is reached through `asm!`.)
#![allow(unsafe_code)]

use core::arch::aarch64::*;
use core::arch::asm;

use half::{bf16, f16};

use super::super::simd::{self, Isa, LoadW};
use super::NeonToken;

#[derive(Clone, Copy)]
pub(crate) struct Neon;

// SAFETY: the methods are only reached from functions compiled with neon, which every target
// compiling this module has; pointer contracts are the callers'.
unsafe impl Isa for Neon {
    type V = float32x4_t;
    type X32 = [float32x4_t; 8];
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> float32x4_t {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> float32x4_t {
        vdupq_n_f32(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: float32x4_t) {
        vst1q_f32(p, v)
    }
    #[inline(always)]
    unsafe fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vaddq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vsubq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vmulq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vdivq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        vfmaq_f32(c, a, b)
    }
    #[inline(always)]
    unsafe fn max(c: float32x4_t, x: float32x4_t) -> float32x4_t {
        // fmax returns NaN when either operand is NaN.
        vmaxq_f32(c, x)
    }
    #[inline(always)]
    unsafe fn min(c: float32x4_t, x: float32x4_t) -> float32x4_t {
        vminq_f32(c, x)
    }
    #[inline(always)]
    unsafe fn round(x: float32x4_t) -> float32x4_t {
        vrndnq_f32(x)
    }
    #[inline(always)]
    unsafe fn pow2i(n: float32x4_t) -> float32x4_t {
        let e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
        vreinterpretq_f32_s32(vshlq_n_s32::<23>(e))
    }
    #[inline(always)]
    unsafe fn hsum(v: float32x4_t) -> f32 {
        vaddvq_f32(v)
    }
    #[inline(always)]
    unsafe fn hmax(v: float32x4_t) -> f32 {
        vmaxvq_f32(v)
    }
    #[inline(always)]
    unsafe fn hsum4(a: float32x4_t, b: float32x4_t, c: float32x4_t, d: float32x4_t) -> [f32; 4] {
        let s = vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d));
        let mut out = [0.0f32; 4];
        vst1q_f32(out.as_mut_ptr(), s);
        out
    }
    #[inline(always)]
    unsafe fn load_x32(p: *const f32) -> [float32x4_t; 8] {
        core::array::from_fn(|k| vld1q_f32(p.add(4 * k)))
    }
    #[inline(always)]
    unsafe fn splat_f16(h: u16) -> float32x4_t {
        f16_to_f32x4(vdup_n_u16(h))
    }
    #[inline(always)]
    unsafe fn load_q8(q: *const i8) -> [float32x4_t; 8] {
        let lo = vld1q_s8(q);
        let hi = vld1q_s8(q.add(16));
        let h = [
            vmovl_s8(vget_low_s8(lo)),
            vmovl_s8(vget_high_s8(lo)),
            vmovl_s8(vget_low_s8(hi)),
            vmovl_s8(vget_high_s8(hi)),
        ];
        core::array::from_fn(|k| {
            let w = if k % 2 == 0 {
                vmovl_s16(vget_low_s16(h[k / 2]))
            } else {
                vmovl_s16(vget_high_s16(h[k / 2]))
            };
            vcvtq_f32_s32(w)
        })
    }
    #[inline(always)]
    unsafe fn store_x32_scaled(p: *mut f32, x: [float32x4_t; 8], d: float32x4_t) {
        for (k, v) in x.iter().enumerate() {
            vst1q_f32(p.add(4 * k), vmulq_f32(*v, d));
        }
    }
    #[inline(always)]
    unsafe fn q8_dot(q: *const i8, x: [float32x4_t; 8]) -> float32x4_t {
        let v = Self::load_q8(q);
        let f = |k: usize| v[k];
        let mut s = vmulq_f32(f(0), x[0]);
        let mut t = vmulq_f32(f(1), x[1]);
        s = vfmaq_f32(s, f(2), x[2]);
        t = vfmaq_f32(t, f(3), x[3]);
        s = vfmaq_f32(s, f(4), x[4]);
        t = vfmaq_f32(t, f(5), x[5]);
        s = vfmaq_f32(s, f(6), x[6]);
        t = vfmaq_f32(t, f(7), x[7]);
        vaddq_f32(s, t)
    }
    #[inline(always)]
    unsafe fn amax_bits(x: [float32x4_t; 8]) -> u32 {
        let m = vdupq_n_u32(0x7fff_ffff);
        let mut a = vdupq_n_u32(0);
        for v in x {
            a = vmaxq_u32(a, vandq_u32(vreinterpretq_u32_f32(v), m));
        }
        vmaxvq_u32(a)
    }
    #[inline(always)]
    unsafe fn quantize_x32(x: [float32x4_t; 8], id: f32, q: *mut i8) -> i32 {
        let (half, mut sum) = (vdupq_n_f32(0.5), vdupq_n_s32(0));
        let mut qv = [vdupq_n_s32(0); 8];
        for (o, v) in qv.iter_mut().zip(x) {
            let t = vmulq_n_f32(v, id);
            // |t| + 0.5 is in 0.5..128: the truncating conversion is exact (`fcvtas` would
            // round ties away too, but not the values just below a tie the way the definition
            // does, through |t| + 0.5).
            let mag = vcvtq_s32_f32(vaddq_f32(vabsq_f32(t), half));
            *o = vbslq_s32(vcltzq_f32(t), vnegq_s32(mag), mag);
            sum = vaddq_s32(sum, *o);
        }
        for h in 0..2 {
            let a = vcombine_s16(vmovn_s32(qv[4 * h]), vmovn_s32(qv[4 * h + 1]));
            let b = vcombine_s16(vmovn_s32(qv[4 * h + 2]), vmovn_s32(qv[4 * h + 3]));
            vst1q_s8(q.add(16 * h), vcombine_s8(vmovn_s16(a), vmovn_s16(b)));
        }
        vaddvq_s32(sum)
    }
    #[inline(always)]
    unsafe fn f16_bits(x: f32) -> u16 {
        let h: u32;
        // SAFETY: fcvt (single to half, ARMv8.0, rounding by FPCR: to nearest by default) and
        // fmov read and write registers only.
        asm!(
            "fcvt {t:h}, {x:s}",
            "fmov {h:w}, {t:s}",
            x = in(vreg) x,
            t = out(vreg) _,
            h = out(reg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
        h as u16
    }
}

// SAFETY (all three): as for `Isa`; 4 elements are read from `p`.
unsafe impl LoadW<Neon> for f32 {
    #[inline(always)]
    unsafe fn loadw(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
}
unsafe impl LoadW<Neon> for f16 {
    #[inline(always)]
    unsafe fn loadw(p: *const f16) -> float32x4_t {
        f16_to_f32x4(vld1_u16(p as *const u16))
    }
}

/// Widens four halves (as bits) to f32 with `fcvtl`.
#[inline(always)]
unsafe fn f16_to_f32x4(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: fcvtl (half to single, ARMv8.0 AdvSIMD) reads and writes registers only.
    asm!("fcvtl {0:v}.4s, {1:v}.4h", out(vreg) out, in(vreg) h, options(pure, nomem, nostack, preserves_flags));
    out
}
unsafe impl LoadW<Neon> for bf16 {
    #[inline(always)]
    unsafe fn loadw(p: *const bf16) -> float32x4_t {
        vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16)))
    }
}

/// The int8 dot product of base NEON: `smull`/`smull2` multiply bytes into 16 bits (|w·x| <=
/// 128·127, so two products still fit), `saddlp`/`sadalp` sum pairs into 32 bits. (`sdot`,
/// FEAT_DotProd, which the aarch64 targets do not guarantee, is `dotprod.rs`.)
#[derive(Clone, Copy)]
pub(crate) struct Smull;

// SAFETY: as for `Isa`; 32 bytes are read from each pointer.
unsafe impl simd::Int8Dot for Smull {
    type I = Neon;
    type Q = [int8x16_t; 2];
    /// 16 accumulators and 4 × 2 activation vectors, of 32 registers.
    const POSITIONS: usize = 4;
    #[inline(always)]
    unsafe fn load(q: *const i8) -> [int8x16_t; 2] {
        let floor = vdupq_n_s8(-127);
        [
            vmaxq_s8(vld1q_s8(q), floor),
            vmaxq_s8(vld1q_s8(q.add(16)), floor),
        ]
    }
    #[inline(always)]
    unsafe fn dot(w: *const i8, x: [int8x16_t; 2]) -> float32x4_t {
        let (w0, w1) = (vld1q_s8(w), vld1q_s8(w.add(16)));
        let lo = vaddq_s16(
            vmull_s8(vget_low_s8(w0), vget_low_s8(x[0])),
            vmull_high_s8(w0, x[0]),
        );
        let hi = vaddq_s16(
            vmull_s8(vget_low_s8(w1), vget_low_s8(x[1])),
            vmull_high_s8(w1, x[1]),
        );
        vcvtq_f32_s32(vpadalq_s16(vpaddlq_s16(lo), hi))
    }
}

// SAFETY: as for `Isa`; 16 bytes are read from each weight pointer and 4 from each
// activation pointer.
unsafe impl simd::Int8Lanes for Smull {
    type I = Neon;
    type W = int8x16_t;
    type X = int8x16_t;
    type A = int32x4_t;
    /// 8 integer and 8 f32 accumulators (16 rows × 2 positions), of 32 registers.
    const POSITIONS: usize = 2;
    #[inline(always)]
    unsafe fn load_w(p: *const i8) -> int8x16_t {
        // Stored + 128: the top bit flipped back.
        veorq_s8(vld1q_s8(p), vdupq_n_s8(-128))
    }
    #[inline(always)]
    unsafe fn splat_x(p: *const i8) -> int8x16_t {
        vreinterpretq_s8_s32(vdupq_n_s32(core::ptr::read_unaligned(p as *const i32)))
    }
    #[inline(always)]
    unsafe fn start(_: i32) -> int32x4_t {
        vdupq_n_s32(0)
    }
    #[inline(always)]
    unsafe fn dot(a: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        // Products of bytes 0..8 and 8..16; `addp` sums adjacent pairs of both (in 16 bits:
        // at most 2·128·127), `sadalp` adjacent pairs of those into the lanes.
        let lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
        let hi = vmull_high_s8(w, x);
        vpadalq_s16(a, vpaddq_s16(lo, hi))
    }
    #[inline(always)]
    unsafe fn to_f32(a: int32x4_t) -> float32x4_t {
        vcvtq_f32_s32(a)
    }
}

simd::target_kernels! {
    isa: Neon,
    token: NeonToken,
    #[target_feature(enable = "neon")]
}

simd::int8_kernels! {
    isa: Neon,
    int8: Smull,
    token: NeonToken,
    #[target_feature(enable = "neon")]
}
