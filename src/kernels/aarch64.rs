//! aarch64 kernels: NEON for everything (`aarch64/neon.rs`), and for the int8 products
//! FEAT_DotProd's `sdot` where the CPU has it (`aarch64/dotprod.rs`), else base NEON's
//! `smull`/`sadalp` form. This file decides which int8 set a [`Token`] stands for and forwards
//! the int8 products to it; the f32 kernels are NEON's whatever the token.
//!
//! NEON is part of every aarch64 target this module is compiled for, so a token always exists.
//! FEAT_DotProd is proved by the build's features (`-C target-feature=+dotprod`, or a
//! `target-cpu` that has it) or, with `std`, by a runtime check, done once and cached.
#![allow(unsafe_code)]

mod dotprod;
mod neon;

use super::Isa;
use crate::tensor::BlockQ8_0;

pub(crate) use neon::{
    add_bias, attention, exp, matmul, matmul_panels, matmul_q8, matvec, matvec_q8, norm, silu,
};

/// Proof that NEON is available (always, on the targets this module is built for; only
/// [`Token::get`] makes one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NeonToken(());

/// Proof that FEAT_DotProd (`sdot`) is available besides NEON (only [`Token::get`] makes one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DotprodToken(());

/// The instruction sets a dispatched call runs on: NEON for the f32 kernels, and the int8
/// products' own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    int8: Int8,
}

/// The int8 products' set.
#[derive(Clone, Copy, Debug)]
enum Int8 {
    Smull(NeonToken),
    Sdot(DotprodToken),
}

impl Token {
    /// The best sets present (`want` = `None`), or exactly `want` if it is present (`Neon` =
    /// NEON without `sdot`; `NeonDot` = NEON with `sdot`'s int8 products).
    #[inline]
    pub(crate) fn get(want: Option<Isa>) -> Option<Token> {
        let int8 = match want {
            None | Some(Isa::NeonDot) if dotprod() => Int8::Sdot(DotprodToken(())),
            None | Some(Isa::Neon) => Int8::Smull(NeonToken(())),
            _ => return None,
        };
        Some(Token { int8 })
    }

    /// The instruction set of this token (NEON with `sdot`'s int8 products is `NeonDot`).
    pub(crate) fn isa(self) -> Isa {
        match self.int8 {
            Int8::Smull(_) => Isa::Neon,
            Int8::Sdot(_) => Isa::NeonDot,
        }
    }
}

/// Whether FEAT_DotProd is present: fixed by the build's target features, or detected at run
/// time with `std` (once, then cached).
#[inline]
fn dotprod() -> bool {
    if cfg!(target_feature = "dotprod") {
        return true;
    }
    #[cfg(feature = "std")]
    {
        static STATE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
        const DOTPROD: u8 = 1 << 1;
        super::isa::detect_once(&STATE, || {
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                DOTPROD
            } else {
                0
            }
        }) != 0
    }
    #[cfg(not(feature = "std"))]
    {
        false
    }
}

// ---- forwarding: each int8 product on the token's int8 set.

/// The Q8_0 × Q8_0 product of several positions on the token's int8 set.
pub(crate) fn matmul_int8(
    t: Token,
    w: &[BlockQ8_0],
    stride: usize,
    x: &[BlockQ8_0],
    y: &mut [f32],
    rows: usize,
    add: bool,
) {
    match t.int8 {
        Int8::Sdot(t) => dotprod::matmul_int8(t, w, stride, x, y, rows, add),
        Int8::Smull(t) => neon::matmul_int8(t, w, stride, x, y, rows, add),
    }
}

/// The int8 path's quantisation of the activations (NEON's, with the token's int8 set's
/// features).
pub(crate) fn quantize(t: Token, x: &[f32], out: &mut [BlockQ8_0], sums: &mut [i32]) {
    match t.int8 {
        Int8::Sdot(t) => dotprod::quantize(t, x, out, sums),
        Int8::Smull(t) => neon::quantize(t, x, out, sums),
    }
}

/// The product over int8 panels on the token's int8 set.
pub(crate) fn matmul_int8_panels(
    t: Token,
    w: super::Int8Panels<'_>,
    b0: usize,
    x: &[BlockQ8_0],
    xsum: &[i32],
    y: &mut [f32],
    add: bool,
) {
    match t.int8 {
        Int8::Sdot(t) => dotprod::matmul_int8_panels(t, w, b0, x, xsum, y, add),
        Int8::Smull(t) => neon::matmul_int8_panels(t, w, b0, x, xsum, y, add),
    }
}
