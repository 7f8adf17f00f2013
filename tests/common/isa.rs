//! `PICOFORMER_REQUIRE_ISA`: the instruction set a test run must use (`avx2`, `avx512`,
//! `avxvnni`, `neon`, `neondot`, `simd128`, `portable`). Tests that call [`use_required_isa`] first make
//! kernel dispatch use it (so `avx2` tests AVX2 on a CPU that also has AVX-512, and `portable` the portable kernels
//! anywhere), and [`check_required_isa`] at the end fails unless its kernels really ran, so a CI
//! job cannot pass on another path.
#![allow(dead_code)]

use picoformer::kernels::{self, Isa};

/// The instruction set `PICOFORMER_REQUIRE_ISA` names, if it is set.
pub fn required_isa() -> Option<Isa> {
    let name = std::env::var("PICOFORMER_REQUIRE_ISA").ok()?;
    let isa = Isa::from_name(&name)
        .unwrap_or_else(|| panic!("PICOFORMER_REQUIRE_ISA={name}: unknown instruction set"));
    Some(isa)
}

/// Makes dispatch use the required instruction set, if one is set. Every test of a process
/// sets the same value, so tests running in parallel agree.
pub fn use_required_isa() {
    if let Some(isa) = required_isa() {
        kernels::force_isa(Some(isa));
    }
}

/// Fails if `PICOFORMER_REQUIRE_ISA` names an instruction set whose kernels did not run.
/// AVX-VNNI and NEON's `sdot` change only the int8 products (the f32 kernels under them are
/// AVX2's and NEON's): a test of other kernels passes on those while the int8 set is the
/// active one; int8 tests check with [`check_required_int8_isa`].
pub fn check_required_isa() {
    if let Some(isa) = required_isa() {
        let vectors = match isa {
            Isa::AvxVnni => Some(Isa::Avx2),
            Isa::NeonDot => Some(Isa::Neon),
            _ => None,
        };
        let f32_kernels = vectors.is_some_and(|v| kernels::active_isa() == isa && kernels::ran(v));
        assert!(
            kernels::ran(isa) || f32_kernels,
            "PICOFORMER_REQUIRE_ISA={isa:?} but that path did not run (active: {:?})",
            kernels::active_isa()
        );
    }
}

/// As [`check_required_isa`], for tests of the int8 products: the required set's own int8
/// kernels must have run (AVX-VNNI's included).
pub fn check_required_int8_isa() {
    if let Some(isa) = required_isa() {
        assert!(
            kernels::ran(isa),
            "PICOFORMER_REQUIRE_ISA={isa:?} but its int8 products did not run (active: {:?})",
            kernels::active_isa()
        );
    }
}
