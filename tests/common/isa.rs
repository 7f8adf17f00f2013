//! `PICOFORMER_REQUIRE_ISA`: the instruction set a test run must use (`avx2`, `avx512`,
//! `avxvnni`, `neon`, `simd128`, `portable`). Tests that call [`use_required_isa`] first make
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
/// AVX-VNNI changes only the int8 products (the f32 kernels under it are AVX2's): a test of
/// other kernels passes on AVX2 while AVX-VNNI is the active set; int8 tests check with
/// [`check_required_int8_isa`].
pub fn check_required_isa() {
    if let Some(isa) = required_isa() {
        let f32_kernels =
            isa == Isa::AvxVnni && kernels::active_isa() == Isa::AvxVnni && kernels::ran(Isa::Avx2);
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
