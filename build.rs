//! One `cfg` the compiler does not give on stable: `picoformer_arm_dsp`, set where the Arm DSP
//! extension's instructions (`SMLAD`, `SXTB16`) exist, for the int8 products of
//! `src/kernels/cortexm.rs`. Every `thumbv7em` target has them (Armv7E-M is Armv7-M with the
//! DSP extension: Cortex-M4, M7); on `thumbv8m.main` the extension is optional (a Cortex-M33
//! or M35P may lack it, an M55 or M85 has it), so there only with the feature `arm-dsp`.
//! (`cfg(target_feature = "dsp")` is not visible on stable Rust.)

fn main() {
    println!("cargo::rustc-check-cfg=cfg(picoformer_arm_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let feature = std::env::var_os("CARGO_FEATURE_ARM_DSP").is_some();
    if target.starts_with("thumbv7em") || (target.starts_with("thumbv8m.main") && feature) {
        println!("cargo::rustc-cfg=picoformer_arm_dsp");
    }
}
