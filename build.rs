//! Two `cfg`s the compiler does not give on stable. `picoformer_arm_dsp`, set where the Arm DSP
//! extension's instructions (`SMLAD`, `SXTB16`) exist, for the int8 products of
//! `src/kernels/cortexm.rs`. Every `thumbv7em` target has them (Armv7E-M is Armv7-M with the
//! DSP extension: Cortex-M4, M7); on `thumbv8m.main` the extension is optional (a Cortex-M33
//! or M35P may lack it, an M55 or M85 has it), so there only with the feature `arm-dsp`.
//! `picoformer_arm_mve`: Helium (MVE with floating point) on `thumbv8m.main-none-eabihf` with
//! the feature `arm-mve` (which implies `arm-dsp`), for the routines of `src/kernels/helium.rs`.
//! (`cfg(target_feature = "dsp")` and `"mve.fp"` are not visible on stable Rust.)

fn main() {
    println!("cargo::rustc-check-cfg=cfg(picoformer_arm_dsp)");
    println!("cargo::rustc-check-cfg=cfg(picoformer_arm_mve)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let feature = std::env::var_os("CARGO_FEATURE_ARM_DSP").is_some();
    if target.starts_with("thumbv7em") || (target.starts_with("thumbv8m.main") && feature) {
        println!("cargo::rustc-cfg=picoformer_arm_dsp");
    }
    // Helium (MVE with floating point, Armv8.1-M: Cortex-M55, M85), only asked for: the
    // `thumbv8m.main` targets also build for cores without it.
    let mve = std::env::var_os("CARGO_FEATURE_ARM_MVE").is_some();
    if target.starts_with("thumbv8m.main") && target.ends_with("eabihf") && mve {
        println!("cargo::rustc-cfg=picoformer_arm_mve");
    }
}
