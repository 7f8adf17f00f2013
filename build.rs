//! The `cfg`s of the Cortex-M kernels (`src/kernels/cortexm.rs`, `helium.rs`):
//! - `picoformer_cortexm`: bare-metal Arm with hard float, little-endian (Cortex-M4F, M7, M33,
//!   M55): one name for four target conditions.
//! - `picoformer_arm_dsp`: the DSP extension's `SMLAD` and `SXTB16` exist, for the int8 path.
//!   Every `thumbv7em` target has them (Armv7E-M is Armv7-M with the DSP extension: Cortex-M4,
//!   M7); on `thumbv8m.main` the extension is optional (a Cortex-M33 or M35P may lack it, an
//!   M55 or M85 has it), so there only with the feature `arm-dsp`.
//! - `picoformer_arm_mve`: Helium (MVE with floating point, Armv8.1-M) on
//!   `thumbv8m.main-none-eabihf` with the feature `arm-mve` (which implies `arm-dsp`).
//!
//! (`cfg(target_feature = "dsp")` and `"mve.fp"` are not visible on stable Rust.)

fn main() {
    println!("cargo::rustc-check-cfg=cfg(picoformer_cortexm)");
    println!("cargo::rustc-check-cfg=cfg(picoformer_arm_dsp)");
    println!("cargo::rustc-check-cfg=cfg(picoformer_arm_mve)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    // `picoformer_cortexm`: bare-metal Arm with hard float, little-endian (Cortex-M4F, M7, M33,
    // M55): the targets of `src/kernels/cortexm.rs`, one name for the four conditions.
    let cfg = |key: &str| std::env::var(format!("CARGO_CFG_TARGET_{key}")).unwrap_or_default();
    if cfg("ARCH") == "arm"
        && cfg("ABI") == "eabihf"
        && cfg("OS") == "none"
        && cfg("ENDIAN") == "little"
    {
        println!("cargo::rustc-cfg=picoformer_cortexm");
    }
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
