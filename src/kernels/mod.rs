//! Kernel dispatch: the one place that picks an implementation for a call.
//!
//! Every function here is safe, takes slices, and chooses the body for the weight type and the
//! instruction set once per call. The bodies live in [`portable`] (always available, the
//! reference every SIMD kernel is tested against) and in one file per architecture:
//!
//! | target | instruction set | chosen when |
//! |---|---|---|
//! | x86-64 | AVX-512F (with AVX2, FMA, F16C) | the build enables them (`-C target-cpu=x86-64-v4` or `native`), or, with the `std` feature, the CPU has them (checked once, cached) |
//! | x86-64 | AVX2 + FMA + F16C | as above, when AVX-512F is absent (`-C target-cpu=x86-64-v3`) |
//! | aarch64 | NEON (fp16 conversion with `fcvtl`) | always (NEON is part of the aarch64 targets) |
//! | aarch64 | NEON with `sdot` (FEAT_DotProd) for the int8 products | the build enables `+dotprod`, or, with `std`, the CPU has it (checked once, cached) |
//! | wasm32 | simd128 (relaxed-simd FMA with `+relaxed-simd`) | the build enables `+simd128` |
//! | Arm bare metal, hard float (Cortex-M4F, M7, M33, M55) | FPU: f32/f16 matrix-vector products with `VCVTB`/`VCVTT` conversion and register accumulators (`cortexm.rs`, same results as portable) | `eabihf`, `target_os = "none"`, little-endian: always |
//! | the same, with the DSP extension (Cortex-M4, M7; M33, M55 with `arm-dsp`) | the int8 path's products by `SXTB16`/`SMLAD` (`cortexm.rs`, same results) | `thumbv7em`: always; `thumbv8m.main`: feature `arm-dsp` (`build.rs`) |
//! | the same, with Helium (Cortex-M55, M85) | f32, f16 and int8-path matrix-vector products on 128-bit vectors (`helium.rs`, same results) | `thumbv8m.main-none-eabihf` with feature `arm-mve` |
//! | others | portable | always |
//!
//! The SIMD bodies are written once, generically, in `simd/`, and instantiated by each
//! architecture file inside its `#[target_feature]` functions; the dispatchers here reach them
//! through one table of kernels (`kernel_table!`) that every architecture implements. The int8
//! path ([`matvec_int8`], [`matmul_int8`], [`matmul_int8_panels`]) has its own dot product per
//! set (`Int8Dot`, `Int8Lanes`): on x86-64 AVX-512 VNNI's `vpdpbusd`, else AVX-VNNI's (the
//! same on 256 bits), else AVX2's `vpmaddubsw` (with the build's features, or detected with
//! `std`; AVX-512F alone adds nothing to byte products); on aarch64 `sdot`, else base NEON's
//! `smull`/`sadalp`.

mod attention;
mod int8;
mod int8_panels;
mod isa;
mod panels;
pub mod portable;
mod shape;

#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon"),
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod simd;

/// Cortex-M with an FPU (`eabihf`, bare metal): FPU f16 conversion and register-accumulator
/// f32/f16 matrix-vector products (`cortexm.rs`), in the portable kernels' order.
#[cfg(picoformer_cortexm)]
#[doc(hidden)]
pub mod cortexm;

/// Helium (MVE) routines for `cortexm.rs` on Armv8.1-M (Cortex-M55, M85): feature `arm-mve`.
#[cfg(all(picoformer_cortexm, picoformer_arm_mve))]
mod helium;

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
use x86 as arch;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod aarch64;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
use aarch64 as arch;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm32;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use wasm32 as arch;

#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon"),
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
mod none;
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon"),
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
use none as arch;

/// The kernel table: every SIMD kernel the dispatchers call as `arch::name(token, operands…)`,
/// with the instruction-set family of an `arch::Token` it runs on (`vectors`, the f32 set;
/// `int8`, the int8 products' set, which has features of its own). Each architecture module
/// invokes it once with its `route` macro, `route!(family, token, kernel(operands…))`, which
/// picks the instruction-set module from the token; this generates one `pub(crate) fn` per
/// kernel there, so an instruction-set module that lacks a kernel is a compile error naming it,
/// and the architectures without SIMD kernels (`none.rs`) get their stubs from the same list.
/// Weight and cache element types are bounded by the architecture's `Weight` trait (the types
/// every one of its sets loads).
///
/// Adding a kernel: its generic body (`simd/`) and portable twin, its entry in the glue macros
/// of `simd/mod.rs`, and a line here; then the dispatcher that calls it.
macro_rules! kernel_table {
    ($route:ident) => {
        $crate::kernels::forwarders! {
            $route;
            vectors fn matvec<E>(w: &[E], x: &[f32], y: &mut [f32]);
            vectors fn matvec_q8(w: &[$crate::q8_0::BlockQ8_0], x: &[f32], y: &mut [f32]);
            int8 fn matmul_int8(
                w: &[$crate::q8_0::BlockQ8_0],
                stride: usize,
                x: &[$crate::q8_0::BlockQ8_0],
                y: &mut [f32],
                rows: usize,
                add: bool
            );
            int8 fn quantize(x: &[f32], out: &mut [$crate::q8_0::BlockQ8_0], sums: &mut [i32]);
            int8 fn matmul_int8_panels(
                w: $crate::kernels::Int8Panels<'_>,
                b0: usize,
                x: &[$crate::q8_0::BlockQ8_0],
                xsum: &[i32],
                y: &mut [f32],
                add: bool
            );
            vectors fn matmul<E>(w: &[E], cols: usize, x: &[f32], y: &mut [f32]);
            vectors fn matmul_q8(w: &[$crate::q8_0::BlockQ8_0], cols: usize, x: &[f32], y: &mut [f32]);
            vectors fn matmul_panels(w: $crate::kernels::Panels<'_>, x: &[f32], y: &mut [f32]);
            vectors fn attention<K>(
                q: &[f32],
                group: $crate::kernels::HeadGroup,
                positions: $crate::kernels::Positions,
                keys: &[K],
                values: &[K],
                scale: f32,
                out: &mut [f32]
            );
            vectors fn add_bias<E>(y: &mut [f32], b: &[E]);
            vectors fn norm<E>(
                kind: $crate::kernels::Norm,
                x: &[f32],
                g: Option<&[E]>,
                offset: f32,
                out: &mut [f32]
            );
            vectors fn silu(x: &mut [f32]);
            vectors fn gelu(x: &mut [f32]);
            vectors fn exp(x: &[f32], out: &mut [f32]);
        }
    };
}
pub(crate) use kernel_table;

/// The functions of `kernel_table!`: each takes the architecture's `Token` and hands its
/// operands to `$route!(family, token, kernel(operands…))`.
macro_rules! forwarders {
    (
        $route:ident;
        $($family:ident fn $name:ident $(<$e:ident>)? ($($arg:ident: $ty:ty),* $(,)?);)*
    ) => {
        $(
            #[allow(clippy::too_many_arguments)]
            pub(crate) fn $name$(<$e: Weight>)?(t: Token, $($arg: $ty),*) {
                $route!($family, t, $name($($arg),*))
            }
        )*
    };
}
pub(crate) use forwarders;

pub use attention::{attention, attention_group, attention_positions, HeadGroup, Positions};
pub use int8::{matmul_int8, matmul_int8_panels, matvec_int8};
pub use int8_panels::{Int8Panels, INT8_PANEL};
#[doc(hidden)]
pub use isa::{active_isa, force_isa, ran, Isa};
pub use panels::{Panels, PANEL};
pub use portable::{gelu, relu_squared, rotary, silu, softmax};

use isa::{portable_ran, token};

use crate::error::Error;
use crate::q8_0::{dequantize_block, dequantize_q8_0, BlockQ8_0, Q8_0_BLOCK};
use crate::tensor::{Element, Tensor};

/// `out[i] = e^x[i]`: the vector exp of the attention kernels where there is one, `libm::expf`
/// otherwise.
///
/// # Errors
/// [`Error::KernelShape`] if the lengths differ.
#[doc(hidden)]
pub fn exp(x: &[f32], out: &mut [f32]) -> Result<(), Error> {
    shape::same("exp", "out", x.len(), out.len())?;
    if let Some(t) = token() {
        arch::exp(t, x, out);
        return Ok(());
    }
    portable_ran();
    for (o, v) in out.iter_mut().zip(x) {
        *o = libm::expf(*v);
    }
    Ok(())
}

/// The feed-forward activation `a` applied to every value of `x` in place: SiLU with the
/// vector exp where there is one (within about 3 ulp of [`silu`]), GELU with a vector rational
/// erf where there is one (within 2e-7·|z| of [`gelu`], which calls `libm::erff`), ReLU² as
/// [`relu_squared`].
pub fn activate(a: crate::config::Activation, x: &mut [f32]) {
    use crate::config::Activation;
    match a {
        Activation::Silu => {
            if let Some(t) = token() {
                return arch::silu(t, x);
            }
            portable_ran();
            x.iter_mut().for_each(|v| *v = silu(*v));
        }
        Activation::Gelu => {
            if let Some(t) = token() {
                return arch::gelu(t, x);
            }
            portable_ran();
            x.iter_mut().for_each(|v| *v = gelu(*v));
        }
        Activation::ReluSquared => x.iter_mut().for_each(|v| *v = relu_squared(*v)),
    }
}

/// The Q8_0 matrix-vector product of the portable path: each block is dequantised into a
/// stack buffer and dotted with the same 8-accumulator sum as the float kernels.
///
/// # Errors
/// [`Error::KernelShape`] if `x.len()` is not a multiple of 32 or `w` is not `y.len()` rows of
/// `x.len()` values.
pub fn matvec_q8_portable(w: &[BlockQ8_0], x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    #[cfg(not(feature = "q8_0"))]
    crate::q8_0::built(&Tensor::Q8_0(w))?;
    let cols = x.len();
    shape::matvec(Tensor::Q8_0(w).len(), cols, y.len(), true)?;
    let nb = cols / Q8_0_BLOCK;
    if nb == 0 {
        y.fill(0.0);
        return Ok(());
    }
    for (yr, wr) in y.iter_mut().zip(w.chunks_exact(nb)) {
        let mut s = 0.0;
        for (b, xb) in wr.iter().zip(x.chunks_exact(Q8_0_BLOCK)) {
            s += portable::dot_of(&dequantize_block(b), xb);
        }
        *yr = s;
    }
    Ok(())
}

/// `y = x·Wᵀ` for one position: `W` is `[y.len(), x.len()]` row-major.
///
/// # Errors
/// [`Error::KernelShape`] if `w` does not hold `y.len()` rows of `x.len()` values (for Q8_0
/// weights, `x.len()` must also be a multiple of 32).
pub fn matvec(w: Tensor<'_>, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    #[cfg(not(feature = "q8_0"))]
    crate::q8_0::built(&w)?;
    let cols = x.len();
    shape::matvec(w.len(), cols, y.len(), matches!(w, Tensor::Q8_0(_)))?;
    if let Some(t) = token() {
        match w {
            Tensor::F32(w) => arch::matvec(t, w, x, y),
            Tensor::F16(w) => arch::matvec(t, w, x, y),
            Tensor::Bf16(w) => arch::matvec(t, w, x, y),
            Tensor::Q8_0(w) => arch::matvec_q8(t, w, x, y),
        }
        return Ok(());
    }
    portable_ran();
    #[cfg(picoformer_cortexm)]
    match w {
        Tensor::F32(w) => {
            cortexm::matvec_f32(w, x, y);
            return Ok(());
        }
        Tensor::F16(w) => {
            cortexm::matvec_f16(w, x, y);
            return Ok(());
        }
        // Helium (Cortex-M55, M85): the same numbers.
        #[cfg(picoformer_arm_mve)]
        Tensor::Q8_0(w) => {
            cortexm::matvec_q8(w, x, y);
            return Ok(());
        }
        _ => {}
    }
    match w {
        Tensor::F32(w) => portable::matvec(w, cols, x, y),
        Tensor::F16(w) => portable::matvec(w, cols, x, y),
        Tensor::Bf16(w) => portable::matvec(w, cols, x, y),
        Tensor::Q8_0(w) => matvec_q8_portable(w, x, y),
    }
}

/// Positions from which every matrix-matrix product ([`matmul`], [`matmul_panels`],
/// [`matmul_int8`], [`matmul_int8_panels`]) sums each position's outputs by the same code in
/// the same order, whatever the number of positions: one position is a matrix-vector product,
/// the broadcast form takes over from one vector of positions (at most 16 lanes), and Q8_0
/// weights are widened per strip from 6. So a chunk's product split into parts of at least this
/// many positions gives the numbers of the whole, bit for bit (`crate::parallel`).
pub(crate) const SAME_SUMS_POSITIONS: usize = 16;

/// `Y = X·Wᵀ` for `n` positions: `X[n, cols]`, `W[rows, cols]`, `Y[n, rows]`, all row-major.
///
/// # Errors
/// [`Error::KernelShape`] if `cols` is 0 or the lengths do not describe those shapes (for
/// Q8_0 weights, `cols` must also be a multiple of 32).
pub fn matmul(w: Tensor<'_>, cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    #[cfg(not(feature = "q8_0"))]
    crate::q8_0::built(&w)?;
    let (n, rows) = shape::matmul(
        w.len(),
        cols,
        x.len(),
        y.len(),
        matches!(w, Tensor::Q8_0(_)),
    )?;
    if n == 0 || rows == 0 {
        return Ok(()); // nothing to compute
    }
    if n == 1 {
        return matvec(w, x, y);
    }
    match (w, token()) {
        (Tensor::F32(w), Some(t)) => arch::matmul(t, w, cols, x, y),
        (Tensor::F16(w), Some(t)) => arch::matmul(t, w, cols, x, y),
        (Tensor::Bf16(w), Some(t)) => arch::matmul(t, w, cols, x, y),
        (Tensor::Q8_0(w), Some(t)) => arch::matmul_q8(t, w, cols, x, y),
        (w, None) => {
            portable_ran();
            // Cortex-M: one matrix-vector product per position (the same sums as the portable
            // matmul's, which takes each position's in the matvec's order).
            #[cfg(picoformer_cortexm)]
            if matches!(w, Tensor::F32(_) | Tensor::F16(_)) {
                return x
                    .chunks_exact(cols)
                    .zip(y.chunks_exact_mut(rows))
                    .try_for_each(|(xr, yr)| matvec(w, xr, yr));
            }
            return match w {
                Tensor::F32(w) => portable::matmul(w, cols, x, y),
                Tensor::F16(w) => portable::matmul(w, cols, x, y),
                Tensor::Bf16(w) => portable::matmul(w, cols, x, y),
                // One matrix-vector product per position.
                Tensor::Q8_0(q) => x
                    .chunks_exact(cols)
                    .zip(y.chunks_exact_mut(rows))
                    .try_for_each(|(xr, yr)| matvec(Tensor::Q8_0(q), xr, yr)),
            };
        }
    }
    Ok(())
}

/// `Y = X·Wᵀ` for `n` positions over weights packed into panels ([`Panels`], prefill):
/// `X[n, w.cols()]`, `Y[n, w.rows()]`, row-major.
///
/// # Errors
/// [`Error::KernelShape`] if `x` is not whole rows of `w.cols()` values or `y` is not
/// `n · w.rows()` long.
pub fn matmul_panels(w: Panels<'_>, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    let n = shape::rows("matmul_panels", "x", x.len(), w.cols())?;
    shape::len("matmul_panels", "y", n.checked_mul(w.rows()), y.len())?;
    if n == 0 || w.rows() == 0 {
        return Ok(());
    }
    if let Some(t) = token() {
        arch::matmul_panels(t, w, x, y);
        return Ok(());
    }
    portable_ran();
    panels::matmul(w, x, y);
    Ok(())
}

/// Adds a bias to every row of `y` (`[n, bias.len()]`).
///
/// # Errors
/// [`Error::KernelShape`] if `bias` is empty or `y.len()` is not a multiple of its length.
pub fn add_bias(y: &mut [f32], bias: Tensor<'_>) -> Result<(), Error> {
    let n = bias.len();
    shape::positive("add_bias", "bias", n)?;
    shape::rows("add_bias", "y", y.len(), n)?;
    match (token(), bias) {
        (Some(t), Tensor::F32(b)) => arch::add_bias(t, y, b),
        (Some(t), Tensor::F16(b)) => arch::add_bias(t, y, b),
        (Some(t), Tensor::Bf16(b)) => arch::add_bias(t, y, b),
        (t, _) => {
            if t.is_none() {
                portable_ran();
            }
            for row in y.chunks_exact_mut(n) {
                match bias {
                    Tensor::F32(b) => row.iter_mut().zip(b).for_each(|(v, b)| *v += b),
                    Tensor::F16(b) => add_f16(row, b),
                    Tensor::Bf16(b) => row.iter_mut().zip(b).for_each(|(v, b)| *v += b.to_f32()),
                    Tensor::Q8_0(_) => row
                        .iter_mut()
                        .enumerate()
                        .for_each(|(i, v)| *v += bias.get(i).unwrap_or(f32::NAN)),
                }
            }
        }
    }
    Ok(())
}

/// `y[i] += b[i]` for an f16 bias where there is no SIMD set: eight at a time by the FPU on
/// Cortex-M (`cortexm.rs`, the same sums), else converted one by one.
#[inline(always)]
fn add_f16(y: &mut [f32], b: &[half::f16]) {
    #[cfg(picoformer_cortexm)]
    return cortexm::add_f16(y, b);
    #[allow(unreachable_code)]
    y.iter_mut()
        .zip(b)
        .for_each(|(v, b)| *v += Element::to_f32(*b));
}

/// LayerNorm of one row with gain `g + offset` (see [`portable::layer_norm`]).
///
/// # Errors
/// [`Error::KernelShape`] if `out` or the gain is not as long as `x`.
pub fn layer_norm(
    x: &[f32],
    g: Option<Tensor<'_>>,
    offset: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    norm(Norm::Layer, x, g, offset, out)
}

/// RMSNorm of one row with gain `g + offset`, or no gain (see [`portable::rms_norm`]).
///
/// # Errors
/// [`Error::KernelShape`] if `out` or the gain is not as long as `x`.
pub fn rms_norm(
    x: &[f32],
    g: Option<Tensor<'_>>,
    offset: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    norm(Norm::Rms, x, g, offset, out)
}

/// Which norm [`norm`] computes.
#[derive(Clone, Copy)]
pub(crate) enum Norm {
    Layer,
    Rms,
}

/// [`layer_norm`] or [`rms_norm`] for any gain type: the SIMD body where there is one (the
/// same formulas; the row's sums are added lanes first), else the portable one.
fn norm(
    kind: Norm,
    x: &[f32],
    g: Option<Tensor<'_>>,
    offset: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    /// The portable twin for the gain type `E`.
    fn run<E: Element>(
        kind: Norm,
        x: &[f32],
        g: Option<&[E]>,
        offset: f32,
        out: &mut [f32],
    ) -> Result<(), Error> {
        match kind {
            Norm::Layer => portable::layer_norm(x, g, offset, out),
            Norm::Rms => portable::rms_norm(x, g, offset, out),
        }
    }
    let name = match kind {
        Norm::Layer => "layer_norm",
        Norm::Rms => "rms_norm",
    };
    shape::same(name, "out", x.len(), out.len())?;
    if let Some(g) = g {
        shape::same(name, "g", x.len(), g.len())?;
    }
    match (token(), g) {
        (Some(t), None) => arch::norm::<f32>(t, kind, x, None, offset, out),
        (Some(t), Some(Tensor::F32(g))) => arch::norm(t, kind, x, Some(g), offset, out),
        (Some(t), Some(Tensor::F16(g))) => arch::norm(t, kind, x, Some(g), offset, out),
        (Some(t), Some(Tensor::Bf16(g))) => arch::norm(t, kind, x, Some(g), offset, out),
        (t, _) => {
            if t.is_none() {
                portable_ran();
            }
            return match g {
                None => run::<f32>(kind, x, None, offset, out),
                Some(Tensor::F32(g)) => run(kind, x, Some(g), offset, out),
                Some(Tensor::F16(g)) => run(kind, x, Some(g), offset, out),
                Some(Tensor::Bf16(g)) => run(kind, x, Some(g), offset, out),
                Some(g @ Tensor::Q8_0(_)) => {
                    // Never produced by the loader (gains are not quantised); correct but slow.
                    run::<f32>(kind, x, None, offset, out)?;
                    out.iter_mut()
                        .enumerate()
                        .for_each(|(i, o)| *o *= g.get(i).unwrap_or(f32::NAN) + offset);
                    Ok(())
                }
            };
        }
    }
    Ok(())
}

/// `y = t` for a row of weights (an embedding row), converted to `f32`.
///
/// # Errors
/// [`Error::KernelShape`] if the lengths differ.
pub fn load(y: &mut [f32], t: Tensor<'_>) -> Result<(), Error> {
    #[cfg(not(feature = "q8_0"))]
    crate::q8_0::built(&t)?;
    shape::same("load", "y", t.len(), y.len())?;
    match t {
        // (The lengths are equal: zipped, without a panic path.)
        Tensor::F32(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y = *s),
        Tensor::F16(s) => y
            .iter_mut()
            .zip(s)
            .for_each(|(y, s)| *y = Element::to_f32(*s)),
        Tensor::Bf16(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y = s.to_f32()),
        Tensor::Q8_0(s) => dequantize_q8_0(s, y)?,
    }
    Ok(())
}

/// `y += a·t` for a row of weights.
///
/// # Errors
/// [`Error::KernelShape`] if the lengths differ.
pub fn add_scaled(y: &mut [f32], t: Tensor<'_>, a: f32) -> Result<(), Error> {
    #[cfg(not(feature = "q8_0"))]
    crate::q8_0::built(&t)?;
    shape::same("add_scaled", "y", t.len(), y.len())?;
    match t {
        Tensor::F32(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y += a * s),
        Tensor::F16(s) => y
            .iter_mut()
            .zip(s)
            .for_each(|(y, s)| *y += a * Element::to_f32(*s)),
        Tensor::Bf16(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y += a * s.to_f32()),
        Tensor::Q8_0(s) => {
            for (b, yb) in s.iter().zip(y.chunks_exact_mut(Q8_0_BLOCK)) {
                let v = dequantize_block(b);
                yb.iter_mut().zip(&v).for_each(|(y, s)| *y += a * s);
            }
        }
    }
    Ok(())
}

/// `y += x`, element-wise (the residual add).
///
/// # Errors
/// [`Error::KernelShape`] if the lengths differ.
pub fn add(y: &mut [f32], x: &[f32]) -> Result<(), Error> {
    shape::same("add", "y", x.len(), y.len())?;
    y.iter_mut().zip(x).for_each(|(y, x)| *y += x);
    Ok(())
}
