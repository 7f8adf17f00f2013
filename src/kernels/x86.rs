//! x86-64 kernels: AVX-512 where the CPU has it (`x86/avx512.rs`), AVX2 + FMA + F16C otherwise
//! (`x86/avx2.rs`). Both are the generic bodies of `simd.rs`; this file decides which one a
//! [`Token`] stands for and forwards each kernel to it (an AVX-512 token also proves AVX2, which
//! tests and benchmarks use through `force_isa`).
//!
//! A token proves its instruction set is present: without `std` it exists only when the build
//! enables the features (`-C target-cpu=…`, or `-C target-feature=+avx2,+fma,+f16c` and
//! `+avx512f` for AVX-512); with `std` it comes from a runtime check, done once and cached.
#![allow(unsafe_code)]

mod avx2;
mod avx512;

use half::{bf16, f16};

use super::simd::LoadW;
use super::{HeadGroup, Isa};
use crate::tensor::BlockQ8_0;
use avx2::Avx2;
use avx512::Avx512;

/// Proof that AVX2, FMA and F16C are available (only [`Token::get`] makes one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Token(());

/// Proof that AVX-512F, AVX2, FMA and F16C are available (only [`Token::get`] makes one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Token(());

/// Proof that AVX-512 VNNI and VL are available besides what an [`Avx512Token`] proves (made
/// only by [`matvec_int8`] after [`vnni`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct VnniToken(());

/// The instruction set a dispatched call runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token {
    Avx2(Avx2Token),
    Avx512(Avx512Token),
}

impl Token {
    /// The widest instruction set present (`want` = `None`), or exactly `want` if it is present.
    #[inline]
    pub(crate) fn get(want: Option<Isa>) -> Option<Token> {
        let (avx2, avx512) = present();
        match want {
            None if avx512 => Some(Token::Avx512(Avx512Token(()))),
            None | Some(Isa::Avx2) if avx2 => Some(Token::Avx2(Avx2Token(()))),
            Some(Isa::Avx512) if avx512 => Some(Token::Avx512(Avx512Token(()))),
            _ => None,
        }
    }

    /// The instruction set of this token.
    pub(crate) fn isa(self) -> Isa {
        match self {
            Token::Avx2(_) => Isa::Avx2,
            Token::Avx512(_) => Isa::Avx512,
        }
    }
}

/// Whether (AVX2 + FMA + F16C, and AVX-512F with them) are present: fixed by the build's target
/// features, or detected at run time with `std`.
#[inline]
fn present() -> (bool, bool) {
    let avx2 = cfg!(all(
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ));
    let avx512 = avx2 && cfg!(target_feature = "avx512f");
    if avx512 {
        return (true, true);
    }
    #[cfg(feature = "std")]
    {
        detected()
    }
    #[cfg(not(feature = "std"))]
    {
        (avx2, false)
    }
}

/// Whether AVX-512 VNNI and VL are present with AVX-512F (the int8 dot product's `vpdpbusd`):
/// fixed by the build, or detected at run time with `std`.
#[inline]
fn vnni() -> bool {
    let built = cfg!(all(
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c",
        target_feature = "avx512f",
        target_feature = "avx512vl",
        target_feature = "avx512vnni"
    ));
    #[cfg(feature = "std")]
    {
        built || detected_state() & 8 != 0
    }
    #[cfg(not(feature = "std"))]
    {
        built
    }
}

/// Runtime detection, done once: bit 0 = done, bit 1 = AVX2+FMA+F16C, bit 2 = AVX-512F too.
#[cfg(feature = "std")]
fn detected() -> (bool, bool) {
    let s = detected_state();
    (s & 2 != 0, s & 4 != 0)
}

/// The state of [`detected`]; bit 3 = AVX-512 VNNI and VL too.
#[cfg(feature = "std")]
fn detected_state() -> u8 {
    use core::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0);
    let mut s = STATE.load(Ordering::Relaxed);
    if s == 0 {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        let avx512 = avx2 && std::is_x86_feature_detected!("avx512f");
        let vnni = avx512
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni");
        s = 1 | (u8::from(avx2) << 1) | (u8::from(avx512) << 2) | (u8::from(vnni) << 3);
        STATE.store(s, Ordering::Relaxed);
    }
    s
}

/// An element type both x86 paths load.
pub(crate) trait X86W: LoadW<Avx2> + LoadW<Avx512> {}
impl X86W for f32 {}
impl X86W for f16 {}
impl X86W for bf16 {}

// ---- forwarding: each kernel on the token's instruction set.

pub(crate) fn matvec<E: X86W>(t: Token, w: &[E], x: &[f32], y: &mut [f32]) {
    match t {
        Token::Avx512(t) => avx512::matvec(t, w, x, y),
        Token::Avx2(t) => avx2::matvec(t, w, x, y),
    }
}

pub(crate) fn matvec_q8(t: Token, w: &[BlockQ8_0], x: &[f32], y: &mut [f32]) {
    match t {
        Token::Avx512(t) => avx512::matvec_q8(t, w, x, y),
        Token::Avx2(t) => avx2::matvec_q8(t, w, x, y),
    }
}

/// The Q8_0 × Q8_0 product: with VNNI on an AVX-512 token, else AVX2's `vpmaddubsw` form (an
/// AVX-512 token also proves AVX2; AVX-512F alone adds nothing to byte products).
pub(crate) fn matvec_int8(
    t: Token,
    w: &[BlockQ8_0],
    stride: usize,
    x: &[BlockQ8_0],
    y: &mut [f32],
    add: bool,
) {
    match t {
        Token::Avx512(_) if vnni() => avx512::matvec_int8(VnniToken(()), w, stride, x, y, add),
        Token::Avx512(_) | Token::Avx2(_) => avx2::matvec_int8(Avx2Token(()), w, stride, x, y, add),
    }
}

/// The int8 path's quantisation of the activations, with the features of [`matvec_int8`]'s
/// choice.
pub(crate) fn quantize(t: Token, x: &[f32], out: &mut [BlockQ8_0], sums: &mut [i32]) {
    match t {
        Token::Avx512(_) if vnni() => avx512::quantize(VnniToken(()), x, out, sums),
        Token::Avx512(_) | Token::Avx2(_) => avx2::quantize(Avx2Token(()), x, out, sums),
    }
}

/// The product over int8 panels, on the same choice of set as [`matvec_int8`].
pub(crate) fn matmul_int8_panels(
    t: Token,
    w: super::Int8Panels<'_>,
    b0: usize,
    x: &[BlockQ8_0],
    xsum: &[i32],
    y: &mut [f32],
    add: bool,
) {
    match t {
        Token::Avx512(_) if vnni() => {
            avx512::matmul_int8_panels(VnniToken(()), w, b0, x, xsum, y, add)
        }
        Token::Avx512(_) | Token::Avx2(_) => {
            avx2::matmul_int8_panels(Avx2Token(()), w, b0, x, xsum, y, add)
        }
    }
}

pub(crate) fn matmul<E: X86W>(t: Token, w: &[E], cols: usize, x: &[f32], y: &mut [f32]) {
    match t {
        Token::Avx512(t) => avx512::matmul(t, w, cols, x, y),
        Token::Avx2(t) => avx2::matmul(t, w, cols, x, y),
    }
}

pub(crate) fn matmul_q8(t: Token, w: &[BlockQ8_0], cols: usize, x: &[f32], y: &mut [f32]) {
    match t {
        Token::Avx512(t) => avx512::matmul_q8(t, w, cols, x, y),
        Token::Avx2(t) => avx2::matmul_q8(t, w, cols, x, y),
    }
}

pub(crate) fn matmul_panels(t: Token, w: super::Panels<'_>, x: &[f32], y: &mut [f32]) {
    match t {
        Token::Avx512(t) => avx512::matmul_panels(t, w, x, y),
        Token::Avx2(t) => avx2::matmul_panels(t, w, x, y),
    }
}

pub(crate) fn attention<K: X86W>(
    t: Token,
    q: &[f32],
    group: HeadGroup,
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
) {
    match t {
        Token::Avx512(t) => avx512::attention(t, q, group, keys, values, scale, out),
        Token::Avx2(t) => avx2::attention(t, q, group, keys, values, scale, out),
    }
}

pub(crate) fn silu(t: Token, x: &mut [f32]) {
    match t {
        Token::Avx512(t) => avx512::silu(t, x),
        Token::Avx2(t) => avx2::silu(t, x),
    }
}

pub(crate) fn exp(t: Token, x: &[f32], out: &mut [f32]) {
    match t {
        Token::Avx512(t) => avx512::exp(t, x, out),
        Token::Avx2(t) => avx2::exp(t, x, out),
    }
}
