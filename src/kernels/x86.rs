//! x86-64 kernels: AVX-512 where the CPU has it (`x86/avx512.rs`), AVX2 + FMA + F16C otherwise
//! (`x86/avx2.rs`). Both are the generic bodies of `simd/`; this file decides which one a
//! [`Token`] stands for and forwards each kernel to it (an AVX-512 token also proves AVX2, which
//! tests and benchmarks use through `force_isa`). The int8 products have a choice of their
//! own: AVX-512 VNNI, else AVX-VNNI (`x86/avx_vnni.rs`), else AVX2's `vpmaddubsw` form.
//!
//! A token proves its instruction set is present: without `std` it exists only when the build
//! enables the features (`-C target-cpu=…`, or `-C target-feature=+avx2,+fma,+f16c`, with
//! `+avx512f,+avx512bw,+avx512vl` for AVX-512, `+avx512vnni` or `+avxvnni` for the VNNI
//! products); with `std` it comes from a runtime check, done once and cached.
#![allow(unsafe_code)]

mod avx2;
mod avx512;
mod avx_vnni;

use half::{bf16, f16};

use super::simd::LoadW;
use super::Isa;
use avx2::Avx2;
use avx512::Avx512;

/// Proof that AVX2, FMA and F16C are available (only [`Token::get`] makes one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Token(());

/// Proof that AVX-512F, BW and VL, AVX2, FMA and F16C are available (only [`Token::get`] makes
/// one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Token(());

/// Proof that AVX-512 VNNI is available besides what an [`Avx512Token`] proves (only
/// [`Token::get`] makes one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct VnniToken(());

/// Proof that AVX-VNNI (the VEX-encoded 256-bit `vpdpbusd`) is available besides what an
/// [`Avx2Token`] proves (only [`Token::get`] makes one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AvxVnniToken(());

/// The instruction set a dispatched call runs on: one for the f32 kernels, one for the int8
/// products (their byte dot product is a feature of its own), both chosen by [`Token::get`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    vectors: Vectors,
    int8: Int8,
}

/// The f32 kernels' set.
#[derive(Clone, Copy, Debug)]
enum Vectors {
    Avx2(Avx2Token),
    Avx512(Avx512Token),
}

/// The int8 products' set: AVX-512 VNNI on 512-bit vectors, AVX-VNNI on 256-bit ones, or
/// AVX2's `vpmaddubsw` form.
#[derive(Clone, Copy, Debug)]
enum Int8 {
    Maddubs(Avx2Token),
    AvxVnni(AvxVnniToken),
    Vnni(VnniToken),
}

impl Token {
    /// The widest instruction set present (`want` = `None`), or exactly `want` if it is present
    /// (`Avx2` = AVX2 without any VNNI; `AvxVnni` = AVX2 with AVX-VNNI's int8 products;
    /// `Avx512` = AVX-512 with the best int8 product present).
    #[inline]
    pub(crate) fn get(want: Option<Isa>) -> Option<Token> {
        let f = features();
        let (avx2, avx512) = (f & AVX2 != 0, f & AVX512 != 0);
        let best_int8 = if f & VNNI != 0 {
            Int8::Vnni(VnniToken(()))
        } else if f & AVX_VNNI != 0 {
            Int8::AvxVnni(AvxVnniToken(()))
        } else {
            Int8::Maddubs(Avx2Token(()))
        };
        let (vectors, int8) = match want {
            None | Some(Isa::Avx512) if avx512 => (Vectors::Avx512(Avx512Token(())), best_int8),
            None if avx2 => (Vectors::Avx2(Avx2Token(())), best_int8),
            Some(Isa::AvxVnni) if avx2 && f & AVX_VNNI != 0 => (
                Vectors::Avx2(Avx2Token(())),
                Int8::AvxVnni(AvxVnniToken(())),
            ),
            Some(Isa::Avx2) if avx2 => (Vectors::Avx2(Avx2Token(())), Int8::Maddubs(Avx2Token(()))),
            _ => return None,
        };
        Some(Token { vectors, int8 })
    }

    /// The instruction set of this token (AVX2 with AVX-VNNI's int8 products is `AvxVnni`).
    pub(crate) fn isa(self) -> Isa {
        match (self.vectors, self.int8) {
            (Vectors::Avx512(_), _) => Isa::Avx512,
            (Vectors::Avx2(_), Int8::AvxVnni(_)) => Isa::AvxVnni,
            (Vectors::Avx2(_), _) => Isa::Avx2,
        }
    }
}

/// [`features`] bits: AVX2 + FMA + F16C; AVX-512F, BW and VL with them; AVX-512 VNNI with those;
/// AVX-VNNI with AVX2.
const AVX2: u8 = 1 << 1;
const AVX512: u8 = 1 << 2;
const VNNI: u8 = 1 << 3;
const AVX_VNNI: u8 = 1 << 4;

/// The features present, as [`AVX2`] | [`AVX512`] | [`VNNI`] | [`AVX_VNNI`] bits: fixed by
/// the build's target features, or detected at run time with `std` (once, then cached).
#[inline]
fn features() -> u8 {
    let avx2 = cfg!(all(
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ));
    let avx512 = avx2
        && cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl"
        ));
    let vnni = avx512 && cfg!(target_feature = "avx512vnni");
    let avx_vnni = avx2 && cfg!(target_feature = "avxvnni");
    let built = bits(avx2, avx512, vnni, avx_vnni);
    #[cfg(feature = "std")]
    {
        built | detected()
    }
    #[cfg(not(feature = "std"))]
    {
        built
    }
}

/// The [`features`] bits of the four answers.
fn bits(avx2: bool, avx512: bool, vnni: bool, avx_vnni: bool) -> u8 {
    let bit = |on: bool, b: u8| if on { b } else { 0 };
    bit(avx2, AVX2) | bit(avx512, AVX512) | bit(vnni, VNNI) | bit(avx_vnni, AVX_VNNI)
}

/// Runtime detection, done once: the [`features`] bits.
#[cfg(feature = "std")]
fn detected() -> u8 {
    static STATE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
    super::isa::detect_once(&STATE, || {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        let avx512 = avx2
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl");
        let vnni = avx512 && std::is_x86_feature_detected!("avx512vnni");
        let avx_vnni = avx2 && std::is_x86_feature_detected!("avxvnni");
        bits(avx2, avx512, vnni, avx_vnni)
    })
}

/// An element type both x86 vector sets load (f32, f16, bf16).
pub(crate) trait Weight: LoadW<Avx2> + LoadW<Avx512> {}
impl Weight for f32 {}
impl Weight for f16 {}
impl Weight for bf16 {}

/// Each kernel on the token's instruction set: the f32 kernels on AVX-512 or AVX2, the int8
/// products on AVX-512 VNNI, AVX-VNNI or AVX2's `vpmaddubsw` form.
macro_rules! route {
    (vectors, $t:ident, $k:ident($($a:ident),*)) => {
        match $t.vectors {
            Vectors::Avx512(t) => avx512::$k(t, $($a),*),
            Vectors::Avx2(t) => avx2::$k(t, $($a),*),
        }
    };
    (int8, $t:ident, $k:ident($($a:ident),*)) => {
        match $t.int8 {
            Int8::Vnni(t) => avx512::$k(t, $($a),*),
            Int8::AvxVnni(t) => avx_vnni::$k(t, $($a),*),
            Int8::Maddubs(t) => avx2::$k(t, $($a),*),
        }
    };
}

super::kernel_table!(route);
