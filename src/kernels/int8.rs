//! The int8 products over Q8_0 weights: the activations are quantised to Q8_0 blocks on the
//! stack, a column chunk of several positions at a time, and each block's products are summed
//! exactly in integers.

use super::isa::{portable_ran, token};
use super::{arch, int8_panels, portable, shape, Int8Panels};
use crate::error::Error;
use crate::q8_0::{BlockQ8_0, Q8_0_BLOCK};
use crate::tensor::Tensor;

/// Blocks of activations [`matvec_int8`] quantises at a time, into a stack buffer: rows longer
/// than this are multiplied in column chunks, each pass reading a slice of every row. Where
/// there is a SIMD path, 128 blocks (4,096 values, 4,352 bytes of stack and 512 for their
/// sums): passes over slices of long rows from DRAM are slower than one pass over whole rows,
/// so the chunks are as long as the stack allows. Elsewhere (microcontrollers, small stacks)
/// 32 blocks (1,088 bytes and 128 for their sums).
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
/// the larger buffer is a visible share of a small product). `f` gets the blocks and their
/// sums.
#[inline(always)]
#[allow(clippy::if_same_then_else)] // (both branches alike where INT8_CHUNK is 32)
fn with_int8_buffer<R>(blocks: usize, f: impl FnOnce(&mut [BlockQ8_0], &mut [i32]) -> R) -> R {
    const SMALL: usize = 32;
    if blocks <= SMALL {
        f(&mut [[0u8; 34]; SMALL], &mut [0i32; SMALL])
    } else {
        f(&mut [[0u8; 34]; INT8_CHUNK], &mut [0i32; INT8_CHUNK])
    }
}

/// `y = x·Wᵀ` for Q8_0 weights `W` `[y.len(), x.len()]` on the int8 path: `x` is quantised to
/// Q8_0 blocks ([`crate::q8_0::quantize_q8_0`], into a stack buffer of at most 4,352 bytes
/// and 512 of block sums, which only the int8 panels use, up to 4,096 values at a time) and
/// each block's 32 products are summed exactly in integers (AVX-512 VNNI or AVX-VNNI
/// `vpdpbusd`, AVX2 `vpmaddubsw`, NEON `smull`, simd128 `extmul`, or portable `i32`), then
/// scaled by `d_w·d_x` in f32 ([`portable::matvec_int8`] is the definition). Faster than
/// [`matvec`](super::matvec) over the same weights, but the activations carry a quantisation
/// error too (at most half a step, 1/254 of each block's largest magnitude; `docs/accuracy.md`
/// has the measured cost). NaN or infinite activations make the outputs NaN; a block of
/// activations whose largest magnitude is above 127·65504 (≈ 8.3·10⁶: its f16 scale
/// overflows) makes them ±∞ or NaN.
///
/// # Errors
/// [`Error::KernelShape`] if `x.len()` is not a multiple of 32 or `w` is not `y.len()` rows of
/// `x.len()` values.
pub fn matvec_int8(w: &[BlockQ8_0], x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    #[cfg(not(feature = "q8_0"))]
    crate::q8_0::built(&Tensor::Q8_0(w))?;
    shape::matvec(Tensor::Q8_0(w).len(), x.len(), y.len(), true)?;
    if x.is_empty() || y.is_empty() {
        y.fill(0.0);
        return Ok(());
    }
    int8_rows_product(w, x.len(), x, y);
    Ok(())
}

/// [`crate::q8_0::quantize_q8_0`] of `x` (whole blocks) into `out`, and the sums of each
/// block's quants: with the SIMD set's own instructions where there is one (the same blocks
/// bit for bit).
fn quantize(t: Option<arch::Token>, x: &[f32], out: &mut [BlockQ8_0], sums: &mut [i32]) {
    match t {
        Some(t) => arch::quantize(t, x, out, sums),
        None => crate::q8_0::quantize_blocks(x, out, sums),
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
pub fn matmul_int8_panels(w: Int8Panels<'_>, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    const K: &str = "matmul_int8_panels";
    // (Int8 panels hold Q8_0 weights.)
    #[cfg(not(feature = "q8_0"))]
    crate::q8_0::built(&Tensor::Q8_0(&[]))?;
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
pub fn matmul_int8(w: &[BlockQ8_0], cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    #[cfg(not(feature = "q8_0"))]
    crate::q8_0::built(&Tensor::Q8_0(w))?;
    const K: &str = "matmul_int8";
    let n = shape::rows(K, "x", x.len(), cols)?;
    shape::q8_cols(K, cols)?;
    let rows = shape::rows(K, "w", Tensor::Q8_0(w).len(), cols)?;
    shape::len(K, "y", n.checked_mul(rows), y.len())?;
    if n > 0 && rows > 0 {
        int8_rows_product(w, cols, x, y);
    }
    Ok(())
}

/// The body of [`matvec_int8`] (one position) and [`matmul_int8`]: `Y = X·Wᵀ` over the
/// Q8_0 rows of `w` as stored, for shapes already checked (`cols` > 0 a multiple of 32, X and Y
/// whole positions, at least one of each and one row).
fn int8_rows_product(w: &[BlockQ8_0], cols: usize, x: &[f32], y: &mut [f32]) {
    let t = token();
    // (`cols` and the positions are at least 1 here.)
    let (nb, rows) = (cols / Q8_0_BLOCK, y.len() / (x.len() / cols.max(1)).max(1));
    // Row r's chunk from block b0 starts at block r·nb + b0.
    int8_passes(t, cols, x, y, |b0, xq, _, ys, add| {
        let w = w.get(b0..).unwrap_or_default();
        match t {
            Some(t) => arch::matmul_int8(t, w, nb, xq, ys, rows, add),
            None => rows_without_simd(w, nb, xq, ys, rows, add),
        }
    });
}

/// The int8 rows product where there is no SIMD set: with the DSP extension on Cortex-M
/// (`cortexm.rs`, the same numbers), else portable.
#[inline(always)]
fn rows_without_simd(
    w: &[BlockQ8_0],
    stride: usize,
    x: &[BlockQ8_0],
    y: &mut [f32],
    rows: usize,
    add: bool,
) {
    #[cfg(all(picoformer_cortexm, picoformer_arm_dsp))]
    return super::cortexm::int8_rows(w, stride, x, y, rows, add);
    #[allow(unreachable_code)]
    portable::int8_rows(w, stride, x, y, rows, add)
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
    // (Checked by the callers: `cols` > 0 a multiple of 32, at least one position; the `max`s
    // and the `get`s below say so without a panic path, issue 28.)
    let (cols, nb) = (cols.max(1), (cols / Q8_0_BLOCK).max(1));
    let n = (x.len() / cols).max(1);
    let rows = y.len() / n;
    with_int8_buffer(n.saturating_mul(nb), |buf, sums| {
        // (Again: the closure may be compiled apart.)
        let cols = cols.max(1);
        // Each pass quantises up to buf.len() blocks: `per` positions of a column chunk.
        let cb = nb.min(buf.len()).max(1);
        let per = (buf.len() / cb).max(1);
        let mut b0 = 0;
        while b0 < nb {
            let nbc = cb.min(nb - b0).max(1);
            // `per` positions at a time: their rows of x and of y.
            let xs = x.chunks(per.saturating_mul(cols).max(1));
            let ys = y.chunks_mut(per.saturating_mul(rows).max(1));
            for (xg, ys) in xs.zip(ys) {
                let m = xg.len() / cols;
                let (Some(xq), Some(xs)) = (buf.get_mut(..m * nbc), sums.get_mut(..m * nbc)) else {
                    return;
                };
                for ((xp, sp), xr) in xq
                    .chunks_exact_mut(nbc)
                    .zip(xs.chunks_exact_mut(nbc))
                    .zip(xg.chunks_exact(cols))
                {
                    let at = b0 * Q8_0_BLOCK;
                    if let Some(xc) = xr.get(at..at + nbc * Q8_0_BLOCK) {
                        quantize(t, xc, xp, sp);
                    }
                }
                pass(b0, xq, xs, ys, b0 > 0);
            }
            b0 += cb;
        }
    });
}
