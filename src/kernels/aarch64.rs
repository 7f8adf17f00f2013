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

use half::{bf16, f16};

use super::simd::LoadW;
use super::Isa;
use neon::Neon;

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

/// An element type NEON loads (f32, f16, bf16).
pub(crate) trait Weight: LoadW<Neon> {}
impl Weight for f32 {}
impl Weight for f16 {}
impl Weight for bf16 {}

/// Each kernel on the token's instruction set: the f32 kernels on NEON, the int8 products
/// with `sdot` or base NEON's `smull`/`sadalp`.
macro_rules! route {
    (vectors, $t:ident, $k:ident($($a:ident),*)) => {{
        let _ = $t;
        neon::$k(NeonToken(()), $($a),*)
    }};
    (int8, $t:ident, $k:ident($($a:ident),*)) => {
        match $t.int8 {
            Int8::Sdot(t) => dotprod::$k(t, $($a),*),
            Int8::Smull(t) => neon::$k(t, $($a),*),
        }
    };
}

super::kernel_table!(route);
