//! wasm32 kernels: simd128, with relaxed-simd's fused multiply-add when the build enables
//! `+relaxed-simd` (an opt-in: Node 20 needs `--experimental-wasm-relaxed-simd`).
//!
//! The bodies are the generic ones of `simd/`. WebAssembly has no runtime feature detection:
//! this module is compiled only with `cfg(target_feature = "simd128")`, and then the whole
//! module is simd128, so the [`Token`] always exists. f16 is widened with integer operations
//! (simd128 has no half-precision conversion).
#![allow(unsafe_code)]

use core::arch::wasm32::*;

use half::{bf16, f16};

use super::simd::{self, Isa, LoadW};

/// Proof that simd128 is available (always, on builds that compile this module).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token(());

impl Token {
    /// The token (this module is only compiled with `target_feature = "simd128"`), unless
    /// `want` names another instruction set.
    #[inline]
    pub(crate) fn get(want: Option<super::Isa>) -> Option<Token> {
        matches!(want, None | Some(super::Isa::Simd128)).then_some(Token(()))
    }

    /// The instruction set of this token.
    pub(crate) fn isa(self) -> super::Isa {
        super::Isa::Simd128
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Simd128;

// SAFETY: simd128 is enabled for the whole build that compiles this module; pointer
// contracts are the callers'.
unsafe impl Isa for Simd128 {
    type V = v128;
    type X32 = [v128; 8];
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> v128 {
        f32x4_splat(0.0)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> v128 {
        f32x4_splat(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> v128 {
        v128_load(p as *const v128)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: v128) {
        v128_store(p as *mut v128, v)
    }
    #[inline(always)]
    unsafe fn add(a: v128, b: v128) -> v128 {
        f32x4_add(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: v128, b: v128) -> v128 {
        f32x4_sub(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: v128, b: v128) -> v128 {
        f32x4_mul(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: v128, b: v128) -> v128 {
        f32x4_div(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: v128, b: v128, c: v128) -> v128 {
        #[cfg(target_feature = "relaxed-simd")]
        {
            f32x4_relaxed_madd(a, b, c)
        }
        #[cfg(not(target_feature = "relaxed-simd"))]
        {
            f32x4_add(f32x4_mul(a, b), c)
        }
    }
    #[inline(always)]
    unsafe fn max(c: v128, x: v128) -> v128 {
        // f32x4.max returns NaN when either operand is NaN.
        f32x4_max(c, x)
    }
    #[inline(always)]
    unsafe fn min(c: v128, x: v128) -> v128 {
        f32x4_min(c, x)
    }
    #[inline(always)]
    unsafe fn round(x: v128) -> v128 {
        f32x4_nearest(x)
    }
    #[inline(always)]
    unsafe fn pow2i(n: v128) -> v128 {
        let e = i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127));
        i32x4_shl(e, 23)
    }
    #[inline(always)]
    unsafe fn hsum(v: v128) -> f32 {
        let s = f32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
        let s = f32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
        f32x4_extract_lane::<0>(s)
    }
    #[inline(always)]
    unsafe fn hmax(v: v128) -> f32 {
        let s = f32x4_max(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
        let s = f32x4_max(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
        f32x4_extract_lane::<0>(s)
    }
    #[inline(always)]
    unsafe fn hsum4(a: v128, b: v128, c: v128, d: v128) -> [f32; 4] {
        // Pairwise: [a0+a1, a2+a3, b0+b1, b2+b3], then the same across the two halves.
        let ab = f32x4_add(
            i32x4_shuffle::<0, 2, 4, 6>(a, b),
            i32x4_shuffle::<1, 3, 5, 7>(a, b),
        );
        let cd = f32x4_add(
            i32x4_shuffle::<0, 2, 4, 6>(c, d),
            i32x4_shuffle::<1, 3, 5, 7>(c, d),
        );
        let s = f32x4_add(
            i32x4_shuffle::<0, 2, 4, 6>(ab, cd),
            i32x4_shuffle::<1, 3, 5, 7>(ab, cd),
        );
        let mut out = [0.0f32; 4];
        v128_store(out.as_mut_ptr() as *mut v128, s);
        out
    }
    #[inline(always)]
    unsafe fn load_x32(p: *const f32) -> [v128; 8] {
        core::array::from_fn(|k| v128_load(p.add(4 * k) as *const v128))
    }
    #[inline(always)]
    unsafe fn splat_f16(h: u16) -> v128 {
        let b = [h; 4];
        <f16 as LoadW<Simd128>>::loadw(b.as_ptr() as *const f16)
    }
    #[inline(always)]
    unsafe fn load_q8(q: *const i8) -> [v128; 8] {
        let lo = v128_load(q as *const v128);
        let hi = v128_load(q.add(16) as *const v128);
        let h = [
            i16x8_extend_low_i8x16(lo),
            i16x8_extend_high_i8x16(lo),
            i16x8_extend_low_i8x16(hi),
            i16x8_extend_high_i8x16(hi),
        ];
        core::array::from_fn(|k| {
            let w = if k % 2 == 0 {
                i32x4_extend_low_i16x8(h[k / 2])
            } else {
                i32x4_extend_high_i16x8(h[k / 2])
            };
            f32x4_convert_i32x4(w)
        })
    }
    #[inline(always)]
    unsafe fn store_x32_scaled(p: *mut f32, x: [v128; 8], d: v128) {
        for (k, v) in x.iter().enumerate() {
            v128_store(p.add(4 * k) as *mut v128, f32x4_mul(*v, d));
        }
    }
    #[inline(always)]
    unsafe fn q8_dot(q: *const i8, x: [v128; 8]) -> v128 {
        let v = Self::load_q8(q);
        let f = |k: usize| v[k];
        let mut s = f32x4_mul(f(0), x[0]);
        let mut t = f32x4_mul(f(1), x[1]);
        s = Self::fma(f(2), x[2], s);
        t = Self::fma(f(3), x[3], t);
        s = Self::fma(f(4), x[4], s);
        t = Self::fma(f(5), x[5], t);
        s = Self::fma(f(6), x[6], s);
        t = Self::fma(f(7), x[7], t);
        f32x4_add(s, t)
    }
    #[inline(always)]
    unsafe fn amax_bits(x: [v128; 8]) -> u32 {
        let m = u32x4_splat(0x7fff_ffff);
        let mut a = u32x4_splat(0);
        for v in x {
            a = u32x4_max(a, v128_and(v, m));
        }
        let a = u32x4_max(a, i32x4_shuffle::<2, 3, 0, 1>(a, a));
        let a = u32x4_max(a, i32x4_shuffle::<1, 0, 3, 2>(a, a));
        u32x4_extract_lane::<0>(a)
    }
    #[inline(always)]
    unsafe fn quantize_x32(x: [v128; 8], id: f32, q: *mut i8) -> i32 {
        let (id, half, zero) = (f32x4_splat(id), f32x4_splat(0.5), f32x4_splat(0.0));
        let mut sum = i32x4_splat(0);
        let mut qv = [sum; 8];
        for (o, v) in qv.iter_mut().zip(x) {
            let t = f32x4_mul(v, id);
            // |t| + 0.5 is in 0.5..128: the truncating conversion is exact.
            let mag = i32x4_trunc_sat_f32x4(f32x4_add(f32x4_abs(t), half));
            *o = v128_bitselect(i32x4_neg(mag), mag, f32x4_lt(t, zero));
            sum = i32x4_add(sum, *o);
        }
        for h in 0..2 {
            let a = i16x8_narrow_i32x4(qv[4 * h], qv[4 * h + 1]);
            let b = i16x8_narrow_i32x4(qv[4 * h + 2], qv[4 * h + 3]);
            v128_store(q.add(16 * h) as *mut v128, i8x16_narrow_i16x8(a, b));
        }
        let sum = i32x4_add(sum, i32x4_shuffle::<2, 3, 0, 1>(sum, sum));
        let sum = i32x4_add(sum, i32x4_shuffle::<1, 0, 3, 2>(sum, sum));
        i32x4_extract_lane::<0>(sum)
    }
}

// SAFETY (all three): as for `Isa`; 4 elements are read from `p`.
unsafe impl LoadW<Simd128> for f32 {
    #[inline(always)]
    unsafe fn loadw(p: *const f32) -> v128 {
        v128_load(p as *const v128)
    }
}
unsafe impl LoadW<Simd128> for f16 {
    /// Exact widening: the magnitude bits shifted into place and scaled by 2¹¹² (right for
    /// normal and subnormal halves), exponent forced to all-ones for ±∞ and NaN, sign or-ed back.
    #[inline(always)]
    unsafe fn loadw(p: *const f16) -> v128 {
        let h = u32x4_extend_low_u16x8(v128_load64_zero(p as *const u64));
        let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
        let em = i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13);
        let scaled = f32x4_mul(em, f32x4_splat(f32::from_bits(0x7780_0000))); // 2^112
        let special = u32x4_ge(em, u32x4_splat(0x7c00 << 13));
        let infnan = v128_or(em, u32x4_splat(0x7f80_0000));
        v128_or(v128_bitselect(infnan, scaled, special), sign)
    }
}
unsafe impl LoadW<Simd128> for bf16 {
    #[inline(always)]
    unsafe fn loadw(p: *const bf16) -> v128 {
        i32x4_shl(
            u32x4_extend_low_u16x8(v128_load64_zero(p as *const u64)),
            16,
        )
    }
}

/// The int8 dot product of simd128: `i16x8.extmul` multiplies bytes into 16 bits (|w·x| <=
/// 128·127, so two products still fit), `i32x4.extadd_pairwise` sums pairs into 32 bits.
#[derive(Clone, Copy)]
pub(crate) struct Extmul;

// SAFETY: as for `Isa`; 32 bytes are read from each pointer.
unsafe impl simd::Int8Dot for Extmul {
    type I = Simd128;
    type Q = [v128; 2];
    /// 8 accumulators and 2 × 2 activation vectors: x86 hosts run simd128 in 16 registers.
    const POSITIONS: usize = 2;
    #[inline(always)]
    unsafe fn load(q: *const i8) -> [v128; 2] {
        let floor = i8x16_splat(-127);
        [
            i8x16_max(v128_load(q as *const v128), floor),
            i8x16_max(v128_load(q.add(16) as *const v128), floor),
        ]
    }
    #[inline(always)]
    unsafe fn dot(w: *const i8, x: [v128; 2]) -> v128 {
        let (w0, w1) = (
            v128_load(w as *const v128),
            v128_load(w.add(16) as *const v128),
        );
        let lo = i16x8_add(
            i16x8_extmul_low_i8x16(w0, x[0]),
            i16x8_extmul_high_i8x16(w0, x[0]),
        );
        let hi = i16x8_add(
            i16x8_extmul_low_i8x16(w1, x[1]),
            i16x8_extmul_high_i8x16(w1, x[1]),
        );
        f32x4_convert_i32x4(i32x4_add(
            i32x4_extadd_pairwise_i16x8(lo),
            i32x4_extadd_pairwise_i16x8(hi),
        ))
    }
}

// SAFETY: as for `Isa`; 16 bytes are read from each weight pointer and 4 from each
// activation pointer.
unsafe impl simd::Int8Lanes for Extmul {
    type I = Simd128;
    type W = v128;
    type X = v128;
    type A = v128;
    /// 8 integer and 8 f32 accumulators (16 rows × 2 positions).
    const POSITIONS: usize = 2;
    #[inline(always)]
    unsafe fn load_w(p: *const i8) -> v128 {
        // Stored + 128: the top bit flipped back.
        v128_xor(v128_load(p as *const v128), i8x16_splat(-128))
    }
    #[inline(always)]
    unsafe fn splat_x(p: *const i8) -> v128 {
        i32x4_splat(core::ptr::read_unaligned(p as *const i32))
    }
    #[inline(always)]
    unsafe fn start(_: i32) -> v128 {
        i32x4_splat(0)
    }
    #[inline(always)]
    unsafe fn dot(a: v128, w: v128, x: v128) -> v128 {
        // Products of bytes 0..8 and 8..16, adjacent pairs summed into 32 bits, then adjacent
        // pairs of those. (Summing the pairs in 16 bits through even/odd shuffles is the
        // pattern LLVM turns into relaxed-simd's `i16x8.relaxed_dot_i8x16_i7x16_s` even where
        // relaxed-simd is off, which Node 20 then refuses to compile.)
        let lo = i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(w, x));
        let hi = i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(w, x));
        let quads = i32x4_add(
            i32x4_shuffle::<0, 2, 4, 6>(lo, hi),
            i32x4_shuffle::<1, 3, 5, 7>(lo, hi),
        );
        i32x4_add(a, quads)
    }
    #[inline(always)]
    unsafe fn to_f32(a: v128) -> v128 {
        f32x4_convert_i32x4(a)
    }
}

/// The entry points of the glue in `simd/mod.rs`, which the kernel table's functions call.
mod simd128 {
    use super::super::simd;
    use super::{Extmul, Simd128, Token};

    simd::target_kernels! {
        isa: Simd128,
        token: Token,
        #[target_feature(enable = "simd128")]
    }

    simd::int8_kernels! {
        isa: Simd128,
        int8: Extmul,
        token: Token,
        #[target_feature(enable = "simd128")]
    }
}

/// An element type simd128 loads (f32, f16, bf16).
pub(crate) trait Weight: LoadW<Simd128> {}
impl Weight for f32 {}
impl Weight for f16 {}
impl Weight for bf16 {}

/// Every kernel on simd128.
macro_rules! route {
    ($family:ident, $t:ident, $k:ident($($a:ident),*)) => {
        simd128::$k($t, $($a),*)
    };
}

super::kernel_table!(route);
