//! The instruction sets the kernels run on: which one a call uses (the best present, or the one
//! a test forced), and which ones have run.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::arch;

/// The instruction sets a kernel can run on.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The portable kernels.
    Portable,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512F (with AVX2, FMA and F16C).
    Avx512,
    /// x86-64 AVX2 + FMA + F16C with AVX-VNNI for the int8 products.
    AvxVnni,
    /// aarch64 NEON.
    Neon,
    /// aarch64 NEON with FEAT_DotProd's `sdot` for the int8 products.
    NeonDot,
    /// wasm32 simd128.
    Simd128,
}

impl Isa {
    /// Every instruction set, in the order of [`Isa::index`].
    const ALL: [Isa; 7] = [
        Isa::Portable,
        Isa::Avx2,
        Isa::Avx512,
        Isa::AvxVnni,
        Isa::Neon,
        Isa::NeonDot,
        Isa::Simd128,
    ];

    /// The instruction set named as in `PICOFORMER_REQUIRE_ISA` (`avx2`, `avx512`, `avxvnni`,
    /// `neon`, `neondot`, `simd128`, `portable`).
    pub fn from_name(name: &str) -> Option<Isa> {
        match name {
            "portable" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            "avxvnni" => Some(Isa::AvxVnni),
            "neon" => Some(Isa::Neon),
            "neondot" => Some(Isa::NeonDot),
            "simd128" => Some(Isa::Simd128),
            _ => None,
        }
    }

    /// Position in [`Isa::ALL`].
    const fn index(self) -> usize {
        self as usize
    }
}

/// Which instruction sets have run a kernel in this process, by [`Isa::index`].
static RAN: [AtomicBool; Isa::ALL.len()] = [const { AtomicBool::new(false) }; Isa::ALL.len()];

/// The instruction set [`force_isa`] asked for: 0 = the best present, else 1 + its index.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// The SIMD token for this call: the best instruction set present, or the forced one.
#[inline]
pub(super) fn token() -> Option<arch::Token> {
    match FORCED.load(Ordering::Relaxed) {
        0 => arch::Token::get(None),
        f => arch::Token::get(Some(Isa::ALL[usize::from(f - 1)])),
    }
}

/// The instruction set the dispatched kernels run on now.
#[doc(hidden)]
pub fn active_isa() -> Isa {
    token().map_or(Isa::Portable, arch::Token::isa)
}

/// Whether a kernel call has run on `isa` in this process (tests use it to prove that the
/// path they mean to test really ran: see `PICOFORMER_REQUIRE_ISA` in `tests/kernels.rs`).
#[doc(hidden)]
pub fn ran(isa: Isa) -> bool {
    RAN[isa.index()].load(Ordering::Relaxed)
}

/// Records that a kernel ran on `isa`.
#[inline]
pub(crate) fn mark_ran(isa: Isa) {
    RAN[isa.index()].store(true, Ordering::Relaxed);
}

/// Makes dispatch use exactly `isa` (`Some`), or the best instruction set present again
/// (`None`). Forcing one this CPU or build lacks runs the portable kernels. For tests and
/// benchmarks that compare paths on one machine (AVX2 on an AVX-512 CPU, portable anywhere).
#[doc(hidden)]
pub fn force_isa(isa: Option<Isa>) {
    FORCED.store(isa.map_or(0, |i| 1 + i.index() as u8), Ordering::Relaxed);
}

/// The feature bits `detect` answers (bit 0 clear), from the first call for `state` on: a
/// runtime CPU check done once per process and cached in `state` (bit 0 marks it done).
#[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) fn detect_once(state: &AtomicU8, detect: impl FnOnce() -> u8) -> u8 {
    let mut s = state.load(Ordering::Relaxed);
    if s == 0 {
        s = 1 | detect();
        state.store(s, Ordering::Relaxed);
    }
    s & !1
}

#[inline]
pub(super) fn portable_ran() {
    mark_ran(Isa::Portable);
}
