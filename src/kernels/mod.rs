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
//! | others | portable | always |
//!
//! The SIMD bodies are written once, generically, in `simd.rs`, and instantiated by each
//! architecture file inside its `#[target_feature]` functions. The int8 path
//! ([`matvec_int8`], [`matmul_int8`]) has its own dot product per set (`Int8Dot`,
//! `Int8Lanes`): on x86-64 AVX-512 VNNI's `vpdpbusd`, else AVX-VNNI's (the same on 256 bits),
//! else AVX2's `vpmaddubsw` (with the build's features, or detected with `std`; AVX-512F alone
//! adds nothing to byte products); on aarch64 `sdot`, else base NEON's `smull`/`sadalp`.

mod int8_panels;
mod panels;
pub mod portable;
mod shape;

#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon"),
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod simd;

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
use none as arch;

pub use int8_panels::{Int8Panels, INT8_PANEL};
pub use panels::{Panels, PANEL};
pub use portable::{gelu, relu_squared, rotary, silu, softmax};

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::error::Error;
use crate::tensor::{dequantize_block, dequantize_q8_0, BlockQ8_0, Element, Tensor, Q8_0_BLOCK};

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
fn token() -> Option<arch::Token> {
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
fn detect_once(state: &AtomicU8, detect: impl FnOnce() -> u8) -> u8 {
    let mut s = state.load(Ordering::Relaxed);
    if s == 0 {
        s = 1 | detect();
        state.store(s, Ordering::Relaxed);
    }
    s & !1
}

#[inline]
fn portable_ran() {
    mark_ran(Isa::Portable);
}

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
/// vector exp where there is one (within about 3 ulp of [`silu`]), GELU (erf) and ReLU² as
/// [`gelu`] and [`relu_squared`].
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
        Activation::Gelu => x.iter_mut().for_each(|v| *v = gelu(*v)),
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
    match w {
        Tensor::F32(w) => portable::matvec(w, cols, x, y),
        Tensor::F16(w) => portable::matvec(w, cols, x, y),
        Tensor::Bf16(w) => portable::matvec(w, cols, x, y),
        Tensor::Q8_0(w) => matvec_q8_portable(w, x, y),
    }
}

/// Blocks of activations [`matvec_int8`] quantises at a time, into a stack buffer: rows longer
/// than this are multiplied in column chunks, each pass reading a slice of every row. Where
/// there is a SIMD path, 128 blocks (4,096 values, 4,352 bytes of stack and 512 for their
/// sums): passes over slices of long rows run from DRAM at two thirds of the speed of one pass
/// (1,4096,4096: 22.7 vs 35 GFLOP/s with chunks of 32). Elsewhere (microcontrollers, small
/// stacks) 32 blocks (1,088 bytes and 128 for their sums).
const INT8_CHUNK: usize = if cfg!(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "wasm32"
)) {
    128
} else {
    32
};

/// The buffer of a product that quantises at most `blocks` blocks per pass: 32 blocks when
/// that is enough (rows of up to 1,024 values on one position), else [`INT8_CHUNK`] (zeroing
/// 4.8 KiB of stack was 7% of a 128×128 product). `f` gets the blocks and their sums.
#[inline(always)]
fn with_int8_buffer<R>(blocks: usize, f: impl FnOnce(&mut [BlockQ8_0], &mut [i32]) -> R) -> R {
    const SMALL: usize = 32;
    if blocks <= SMALL {
        f(&mut [[0u8; 34]; SMALL], &mut [0i32; SMALL])
    } else {
        f(&mut [[0u8; 34]; INT8_CHUNK], &mut [0i32; INT8_CHUNK])
    }
}

/// `y = x·Wᵀ` for Q8_0 weights `W` `[y.len(), x.len()]` on the int8 path: `x` is quantised to
/// Q8_0 blocks ([`crate::tensor::quantize_q8_0`], into a stack buffer of at most 4,352 bytes
/// and 512 of block sums, which only the int8 panels use, up to 4,096 values at a time) and
/// each block's 32 products are summed exactly in integers (AVX-512 VNNI or AVX-VNNI
/// `vpdpbusd`, AVX2 `vpmaddubsw`, NEON `smull`, simd128 `extmul`, or portable `i32`), then
/// scaled by `d_w·d_x` in f32 ([`portable::matvec_int8`] is the definition). Faster than
/// [`matvec`] over the same weights, but the activations carry a quantisation error too (at
/// most half a step, 1/254 of each block's largest magnitude; the README's accuracy section
/// has the measured cost). NaN or infinite activations make the outputs NaN; a block of
/// activations whose largest magnitude is above 127·65504 (≈ 8.3·10⁶: its f16 scale
/// overflows) makes them ±∞ or NaN.
///
/// # Errors
/// [`Error::KernelShape`] if `x.len()` is not a multiple of 32 or `w` is not `y.len()` rows of
/// `x.len()` values.
pub fn matvec_int8(w: &[BlockQ8_0], x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    shape::matvec(Tensor::Q8_0(w).len(), x.len(), y.len(), true)?;
    if x.is_empty() || y.is_empty() {
        y.fill(0.0);
        return Ok(());
    }
    int8_rows_product(w, x.len(), x, y);
    Ok(())
}

/// [`crate::tensor::quantize_q8_0`] of `x` (whole blocks) into `out`, and the sums of each
/// block's quants: with the SIMD set's own instructions where there is one (the same blocks
/// bit for bit).
fn quantize(t: Option<arch::Token>, x: &[f32], out: &mut [BlockQ8_0], sums: &mut [i32]) {
    match t {
        Some(t) => arch::quantize(t, x, out, sums),
        None => crate::tensor::quantize_blocks(x, out, sums),
    }
}

/// `Y = X·Wᵀ` on the int8 path for `n` positions over Q8_0 weights packed into int8 panels
/// ([`Int8Panels`]): `X[n, w.cols()]`, `Y[n, w.rows()]`, row-major; one position is the
/// matrix-vector product of decoding. The numbers are [`matvec_int8`]'s over the same weights
/// (each position's activations quantised to Q8_0, each block summed exactly in integers, the
/// blocks of a row accumulated in order), up to the rounding of `d_w·d_x·sum` (fused where
/// there is FMA); the panels put 16 rows in the lanes of one vector (AVX-512 VNNI), so a block
/// is scaled once for 16 rows and each weight load serves several positions. Activations are
/// quantised into the same stack buffer as [`matvec_int8`]'s (at most 4,352 bytes, plus 512 of
/// sums), several positions at a time.
///
/// # Errors
/// [`Error::KernelShape`] if `x` is not whole rows of `w.cols()` values or `y` is not
/// `n · w.rows()` long.
pub fn matmul_int8(w: Int8Panels<'_>, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    const K: &str = "matmul_int8";
    let (rows, cols) = (w.rows(), w.cols());
    let n = shape::rows(K, "x", x.len(), cols)?;
    shape::len(K, "y", n.checked_mul(rows), y.len())?;
    if n == 0 || rows == 0 || cols == 0 {
        return Ok(());
    }
    let t = token();
    int8_passes(t, cols, x, y, |b0, xq, xs, ys, add| match t {
        Some(t) => arch::matmul_int8_panels(t, w, b0, xq, xs, ys, add),
        None => int8_panels::product(w, b0, xq, ys, add),
    });
    Ok(())
}

/// `Y = X·Wᵀ` on the int8 path for `n` positions over Q8_0 weights as stored, `W[rows, cols]`
/// (no packing, so the weights can stay where they are, in a microcontroller's flash):
/// `X[n, cols]`, `Y[n, rows]`, row-major. The numbers are [`matvec_int8`]'s for each position,
/// bit for bit, but each weight block is read once for several positions (tiles of four rows
/// and up to four positions), not once per position. Activations are quantised into the same
/// stack buffer as [`matvec_int8`]'s, several positions at a time.
///
/// # Errors
/// [`Error::KernelShape`] if `cols` is 0 or not a multiple of 32, or the lengths do not
/// describe `X[n, cols]`, `W[rows, cols]`, `Y[n, rows]`.
pub fn matmul_int8_rows(
    w: &[BlockQ8_0],
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<(), Error> {
    const K: &str = "matmul_int8_rows";
    let n = shape::rows(K, "x", x.len(), cols)?;
    shape::q8_cols(K, cols)?;
    let rows = shape::rows(K, "w", Tensor::Q8_0(w).len(), cols)?;
    shape::len(K, "y", n.checked_mul(rows), y.len())?;
    if n > 0 && rows > 0 {
        int8_rows_product(w, cols, x, y);
    }
    Ok(())
}

/// The body of [`matvec_int8`] (one position) and [`matmul_int8_rows`]: `Y = X·Wᵀ` over the
/// Q8_0 rows of `w` as stored, for shapes already checked (`cols` > 0 a multiple of 32, X and Y
/// whole positions, at least one of each and one row).
fn int8_rows_product(w: &[BlockQ8_0], cols: usize, x: &[f32], y: &mut [f32]) {
    let t = token();
    let (nb, rows) = (cols / Q8_0_BLOCK, y.len() / (x.len() / cols));
    // Row r's chunk from block b0 starts at block r·nb + b0.
    int8_passes(t, cols, x, y, |b0, xq, _, ys, add| match t {
        Some(t) => arch::matmul_int8_rows(t, &w[b0..], nb, xq, ys, rows, add),
        None => portable::int8_rows(&w[b0..], nb, xq, ys, rows, add),
    });
}

/// The passes of an int8 product over `n = x.len() / cols` positions (`cols` > 0, a multiple
/// of 32; `y` `n` rows): the activations are quantised into the stack buffer of
/// [`with_int8_buffer`], a column chunk of several positions at a time (the chunks of
/// [`matvec_int8`]), and `pass(b0, xq, xsum, ys, add)` multiplies each: `xq` holds `m`
/// positions of the chunk's `nbc` blocks from block `b0` (`xsum` the sums of their quants),
/// `ys` the `m` positions' rows of y, to add to after the first chunk. Marks the portable path
/// as run if there is no token.
fn int8_passes(
    t: Option<arch::Token>,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
    mut pass: impl FnMut(usize, &[BlockQ8_0], &[i32], &mut [f32], bool),
) {
    if t.is_none() {
        portable_ran();
    }
    let n = x.len() / cols;
    let (nb, rows) = (cols / Q8_0_BLOCK, y.len() / n);
    with_int8_buffer(n.saturating_mul(nb), |buf, sums| {
        // Each pass quantises up to buf.len() blocks: `per` positions of a column chunk.
        let cb = nb.min(buf.len());
        let per = buf.len() / cb;
        for b0 in (0..nb).step_by(cb) {
            let nbc = cb.min(nb - b0);
            let mut i = 0;
            while i < n {
                let m = per.min(n - i);
                let (xq, xs) = (&mut buf[..m * nbc], &mut sums[..m * nbc]);
                for (p, (xp, sp)) in xq
                    .chunks_exact_mut(nbc)
                    .zip(xs.chunks_exact_mut(nbc))
                    .enumerate()
                {
                    let at = (i + p) * cols + b0 * Q8_0_BLOCK;
                    quantize(t, &x[at..at + nbc * Q8_0_BLOCK], xp, sp);
                }
                pass(b0, xq, xs, &mut y[i * rows..(i + m) * rows], b0 > 0);
                i += m;
            }
        }
    });
}

/// `Y = X·Wᵀ` for `n` positions: `X[n, cols]`, `W[rows, cols]`, `Y[n, rows]`, all row-major.
///
/// # Errors
/// [`Error::KernelShape`] if `cols` is 0 or the lengths do not describe those shapes (for
/// Q8_0 weights, `cols` must also be a multiple of 32).
pub fn matmul(w: Tensor<'_>, cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
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
            return match w {
                Tensor::F32(w) => portable::matmul(w, cols, x, y),
                Tensor::F16(w) => portable::matmul(w, cols, x, y),
                Tensor::Bf16(w) => portable::matmul(w, cols, x, y),
                // One matrix-vector product per position.
                Tensor::Q8_0(q) => x
                    .chunks_exact(cols)
                    .zip(y.chunks_exact_mut(rows))
                    .try_for_each(|(xr, yr)| matvec_q8_portable(q, xr, yr)),
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
                    Tensor::F16(b) => row.iter_mut().zip(b).for_each(|(v, b)| *v += b.to_f32()),
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

/// Query heads that share one cached kv head (grouped-query attention): `heads` heads of `dim`
/// values each, head t at offset `t·stride` of the query and output slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadGroup {
    /// Values per head (the head dimension).
    pub dim: usize,
    /// Query heads in the group.
    pub heads: usize,
    /// Distance between the starts of consecutive heads, `>= dim`.
    pub stride: usize,
}

impl HeadGroup {
    /// A single head of `dim` values.
    pub const fn one(dim: usize) -> HeadGroup {
        HeadGroup {
            dim,
            heads: 1,
            stride: dim,
        }
    }

    /// The length of the query and output slices, `(heads − 1)·stride + dim`, or `None` if
    /// `dim` or `heads` is 0, `stride < dim`, or the length overflows.
    pub const fn span(self) -> Option<usize> {
        if self.dim == 0 || self.heads == 0 || self.stride < self.dim {
            return None;
        }
        match (self.heads - 1).checked_mul(self.stride) {
            Some(v) => v.checked_add(self.dim),
            None => None,
        }
    }
}

/// One query head over one cached kv head (see [`portable::attention`]).
///
/// # Errors
/// As [`attention_group`] with one head of `q.len()` values.
pub fn attention<K: Element>(
    q: &[f32],
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    attention_group(q, HeadGroup::one(q.len()), keys, values, scale, out)
}

/// The query heads of `group` over one cached kv head, which the SIMD kernels read once for
/// all of them (see [`portable::attention_group`]).
///
/// # Errors
/// [`Error::KernelShape`] if `group` is not valid (`dim`, `heads` >= 1, `stride >= dim`), `q`
/// or `out` is not `group.span()` long, `keys` is empty or not whole rows of `group.dim`, or the
/// keys and values differ in length.
pub fn attention_group<K: Element>(
    q: &[f32],
    group: HeadGroup,
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    attention_positions(q, group, Positions::one(), keys, values, scale, out)
}

/// Positions of a chunk whose queries attend to one cached kv head together
/// ([`attention_positions`]): `count` positions, position p's query heads from offset
/// `p·stride` of the query and output slices. With `causal`, position p sees the first
/// `rows − (count − 1 − p)` cached rows (the chunk's last position all of them: the chunk's
/// own keys are cached before it attends), else every position sees all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Positions {
    /// Positions in the chunk.
    pub count: usize,
    /// Distance between the starts of consecutive positions' queries, at least the group's
    /// span when `count > 1`.
    pub stride: usize,
    /// Whether position p sees only the rows up to its own (self-attention's causal mask).
    pub causal: bool,
}

impl Positions {
    /// A single position.
    pub const fn one() -> Positions {
        Positions {
            count: 1,
            stride: 0,
            causal: false,
        }
    }

    /// The length of the query and output slices for `group`,
    /// `(count − 1)·stride + group.span()`, or `None` if the group is not valid, `count` is 0,
    /// the positions overlap (`count > 1` and `stride < group.span()`) or the length overflows.
    pub const fn span(self, group: HeadGroup) -> Option<usize> {
        let span = match group.span() {
            Some(s) if self.count > 0 && (self.count == 1 || self.stride >= s) => s,
            _ => return None,
        };
        match (self.count - 1).checked_mul(self.stride) {
            Some(v) => v.checked_add(span),
            None => None,
        }
    }

    /// How many of `rows` cached rows position `p` (< `count`) sees: all but the last
    /// `count − 1 − p` when causal, else all. `rows >= count` when causal.
    pub const fn seen(self, p: usize, rows: usize) -> usize {
        if self.causal {
            rows - (self.count - 1 - p)
        } else {
            rows
        }
    }
}

/// The query heads of `group` at each of `positions` over one cached kv head: each block of
/// cached keys and values is read from memory once for up to 8 queries (heads × positions),
/// where one call per position reads the whole cache again for each (see
/// [`portable::attention_positions`]). Every query's output is bit for bit what
/// [`attention_group`] gives it alone over the rows it sees.
///
/// # Errors
/// [`Error::KernelShape`] as [`attention_group`], and if `positions.count` is 0, the positions
/// overlap, `q` or `out` is not `positions.span(group)` long, or, with `causal`, there are
/// fewer cached rows than positions.
pub fn attention_positions<K: Element>(
    q: &[f32],
    group: HeadGroup,
    positions: Positions,
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    shape::attention(
        q.len(),
        group,
        positions,
        keys.len(),
        values.len(),
        out.len(),
    )?;
    if let Some(t) = token() {
        match (K::as_tensor(keys), K::as_tensor(values)) {
            (Tensor::F32(k), Tensor::F32(v)) => {
                arch::attention(t, q, group, positions, k, v, scale, out);
                return Ok(());
            }
            (Tensor::F16(k), Tensor::F16(v)) => {
                arch::attention(t, q, group, positions, k, v, scale, out);
                return Ok(());
            }
            (Tensor::Bf16(k), Tensor::Bf16(v)) => {
                arch::attention(t, q, group, positions, k, v, scale, out);
                return Ok(());
            }
            _ => {}
        }
    }
    portable_ran();
    portable::attention_positions(q, group, positions, keys, values, scale, out)
}

/// `y = t` for a row of weights (an embedding row), converted to `f32`.
///
/// # Errors
/// [`Error::KernelShape`] if the lengths differ.
pub fn load(y: &mut [f32], t: Tensor<'_>) -> Result<(), Error> {
    shape::same("load", "y", t.len(), y.len())?;
    match t {
        Tensor::F32(s) => y.copy_from_slice(s),
        Tensor::F16(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y = s.to_f32()),
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
    shape::same("add_scaled", "y", t.len(), y.len())?;
    match t {
        Tensor::F32(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y += a * s),
        Tensor::F16(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y += a * s.to_f32()),
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

/// The stand-in for architectures without SIMD kernels: no token ever exists.
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon"),
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
mod none {
    use super::{BlockQ8_0, Element, Isa};

    /// Uninhabited: there is no SIMD path on this target.
    #[derive(Clone, Copy)]
    pub(crate) enum Token {}

    impl Token {
        #[inline(always)]
        pub(crate) fn get(_: Option<Isa>) -> Option<Token> {
            None
        }
        pub(crate) fn isa(self) -> Isa {
            match self {}
        }
    }

    pub(crate) fn matvec<E: Element>(t: Token, _: &[E], _: &[f32], _: &mut [f32]) {
        match t {}
    }
    pub(crate) fn matvec_q8(t: Token, _: &[BlockQ8_0], _: &[f32], _: &mut [f32]) {
        match t {}
    }
    pub(crate) fn matmul_int8_rows(
        t: Token,
        _: &[BlockQ8_0],
        _: usize,
        _: &[BlockQ8_0],
        _: &mut [f32],
        _: usize,
        _: bool,
    ) {
        match t {}
    }
    pub(crate) fn quantize(t: Token, _: &[f32], _: &mut [BlockQ8_0], _: &mut [i32]) {
        match t {}
    }
    pub(crate) fn matmul_int8_panels(
        t: Token,
        _: super::Int8Panels<'_>,
        _: usize,
        _: &[BlockQ8_0],
        _: &[i32],
        _: &mut [f32],
        _: bool,
    ) {
        match t {}
    }
    pub(crate) fn matmul<E: Element>(t: Token, _: &[E], _: usize, _: &[f32], _: &mut [f32]) {
        match t {}
    }
    pub(crate) fn matmul_q8(t: Token, _: &[BlockQ8_0], _: usize, _: &[f32], _: &mut [f32]) {
        match t {}
    }
    pub(crate) fn matmul_panels(t: Token, _: super::Panels<'_>, _: &[f32], _: &mut [f32]) {
        match t {}
    }
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention<K: Element>(
        t: Token,
        _: &[f32],
        _: super::HeadGroup,
        _: super::Positions,
        _: &[K],
        _: &[K],
        _: f32,
        _: &mut [f32],
    ) {
        match t {}
    }
    pub(crate) fn exp(t: Token, _: &[f32], _: &mut [f32]) {
        match t {}
    }
    pub(crate) fn add_bias<E: Element>(t: Token, _: &mut [f32], _: &[E]) {
        match t {}
    }
    pub(crate) fn norm<E: Element>(
        t: Token,
        _: super::Norm,
        _: &[f32],
        _: Option<&[E]>,
        _: f32,
        _: &mut [f32],
    ) {
        match t {}
    }
    pub(crate) fn silu(t: Token, _: &mut [f32]) {
        match t {}
    }
}
