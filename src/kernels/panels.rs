//! Weights packed once into panels for the matrix-matrix product of prefill ([`Panels`]).
//!
//! `W[rows, cols]` in its `nn.Linear` layout is read one row at a time: the dot-product and
//! broadcast tiles of the plain matrix-matrix product either end every output with a horizontal
//! sum or broadcast weights from 12–24 rows that lie `cols` values apart, and both repack the
//! activations on every call. Packed into panels, the weights of [`PANEL`] consecutive rows are
//! interleaved column by column, `panel[k][q] = W[32j + q][k]`, so the product reads them as
//! one contiguous stream of whole vectors along the rows (which are the columns of Y), broadcasts
//! the activations from where they are and stores whole vectors of Y.
//!
//! The copy is f32 (16-bit and Q8_0 weights are widened once, here) and lives in an arena the
//! caller provides: [`Panels::len`] f32 for a matrix, a `const fn`. Packing is a load-time
//! choice that trades that memory (a second copy of the weights, 4 bytes per weight) for prefill
//! speed; decoding one position reads the weights in their own layout and does not need it.

use super::shape;
use crate::error::Error;
use crate::q8_0::Q8_0_BLOCK;
use crate::tensor::Tensor;

/// Weight rows per panel: two vectors of 16 lanes (AVX-512), four of 8 (AVX2), eight of 4.
pub const PANEL: usize = 32;

/// f32 of slack in an arena, so that the panels can start on a 64-byte cache line wherever the
/// arena starts (a vector load that straddles two lines costs two).
const ALIGN_SLACK: usize = 15;

/// `W[rows, cols]` packed into panels of [`PANEL`] rows (see the module documentation), borrowed
/// from the arena it was packed into. Rows past `rows` in the last panel are zero.
#[derive(Clone, Copy, Debug)]
pub struct Panels<'a> {
    /// `rows.div_ceil(PANEL)` panels of `cols × PANEL` values, starting on a cache line.
    data: &'a [f32],
    rows: usize,
    cols: usize,
}

impl<'a> Panels<'a> {
    /// The f32 an arena needs for `W[rows, cols]`: the panels (rows rounded up to a multiple of
    /// [`PANEL`]) and 15 values of slack for their alignment. `None` if that overflows.
    pub const fn len(rows: usize, cols: usize) -> Option<usize> {
        match rows.div_ceil(PANEL).checked_mul(PANEL) {
            Some(r) => match r.checked_mul(cols) {
                Some(v) => v.checked_add(ALIGN_SLACK),
                None => None,
            },
            None => None,
        }
    }

    /// Packs `w` (`[rows, cols]` row-major, rows = `w.len() / cols`) into `arena`, which must
    /// be exactly [`Panels::len`] long. 16-bit and Q8_0 values are widened to f32.
    ///
    /// # Errors
    /// [`Error::KernelShape`] (kernel `"pack"`) if `cols` is 0, `w` is not whole rows of
    /// `cols` values (for Q8_0, `cols` must also be a multiple of 32), or `arena` has another
    /// length. Nothing is written then.
    pub fn pack(w: Tensor<'_>, cols: usize, arena: &'a mut [f32]) -> Result<Panels<'a>, Error> {
        #[cfg(not(feature = "q8_0"))]
        crate::q8_0::built(&w)?;
        const K: &str = "pack";
        let rows = shape::rows(K, "w", w.len(), cols)?;
        if matches!(w, Tensor::Q8_0(_)) {
            shape::q8_cols(K, cols)?;
        }
        shape::len(K, "arena", Panels::len(rows, cols), arena.len())?;
        // In 0..=15: a f32 pointer is 4-aligned, so a 64-byte boundary is at most 15 values on.
        let skip = match arena.as_ptr().align_offset(64) {
            s if s <= ALIGN_SLACK => s,
            _ => 0,
        };
        let (head, rest) = arena.split_at_mut(skip);
        head.fill(0.0);
        let (data, tail) = rest.split_at_mut(rest.len() - (ALIGN_SLACK - skip));
        tail.fill(0.0);
        // Zero first: the rows of the last panel past `rows` stay 0.
        data.fill(0.0);
        let mut chunk = [0.0f32; Q8_0_BLOCK];
        for r in 0..rows {
            let panel = &mut data[(r / PANEL) * PANEL * cols..][..PANEL * cols];
            let q = r % PANEL;
            for c0 in (0..cols).step_by(Q8_0_BLOCK) {
                // Q8_0 rows are whole blocks, so the chunk is one whole block there.
                let len = Q8_0_BLOCK.min(cols - c0);
                super::load(&mut chunk[..len], w.slice(r * cols + c0, len))?;
                for (k, v) in chunk[..len].iter().enumerate() {
                    panel[(c0 + k) * PANEL + q] = *v;
                }
            }
        }
        Ok(Panels { data, rows, cols })
    }

    /// The panels of `W[rows, cols]` that [`Panels::pack`] wrote into `arena` (the same slice,
    /// [`Panels::len`] long): the same start on a cache line, found again from the arena's
    /// address. `None` if `arena` has another length.
    pub(crate) fn view(arena: &'a [f32], rows: usize, cols: usize) -> Option<Panels<'a>> {
        if Panels::len(rows, cols) != Some(arena.len()) {
            return None;
        }
        let skip = match arena.as_ptr().align_offset(64) {
            s if s <= ALIGN_SLACK => s,
            _ => 0,
        };
        let data = arena.get(skip..arena.len().checked_sub(ALIGN_SLACK - skip)?)?;
        Some(Panels { data, rows, cols })
    }

    /// Rows of W (columns of Y).
    pub const fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of W (values per position of X).
    pub const fn cols(&self) -> usize {
        self.cols
    }

    /// The panels: `rows.div_ceil(PANEL)` of `cols × PANEL` values each.
    pub const fn as_slice(&self) -> &'a [f32] {
        self.data
    }
}

/// `Y = X·Wᵀ` over packed weights, portably: each output's sum runs over the columns in order,
/// [`PANEL`] outputs at a time (which the compiler vectorises). `x.len()` and `y.len()` are
/// `n·cols` and `n·rows` (checked by the caller).
pub(crate) fn matmul(w: Panels<'_>, x: &[f32], y: &mut [f32]) {
    // (`rows` and `cols` are at least 1 here.)
    let (rows, cols) = (w.rows.max(1), w.cols.max(1));
    for (j, panel) in w.data.chunks_exact((PANEL * cols).max(1)).enumerate() {
        let r0 = j * PANEL;
        for (xi, yi) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
            let mut acc = [0.0f32; PANEL];
            for (wk, xv) in panel.chunks_exact(PANEL).zip(xi) {
                for (a, wv) in acc.iter_mut().zip(wk) {
                    *a += wv * xv;
                }
            }
            // The panel's rows that exist: up to PANEL from r0.
            if let Some(yr) = yi.get_mut(r0..) {
                let valid = yr.len().min(PANEL);
                if let (Some(dst), Some(src)) = (yr.get_mut(..valid), acc.get(..valid)) {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::portable::tests::vals;

    /// Packed at any arena offset, the portable product over panels equals the f64 sums, and
    /// rows past the last one are zero.
    #[test]
    fn portable_product_over_panels_matches_f64() {
        let (rows, cols) = (35, 6);
        let w = vals(rows * cols, 5);
        let len = Panels::len(rows, cols).unwrap_or(0);
        let mut arena = [f32::NAN; 2 * PANEL * 6 + 15 + 3];
        for off in [0, 1, 3] {
            let p = Panels::pack(
                Tensor::F32(&w[..rows * cols]),
                cols,
                &mut arena[off..off + len],
            )
            .unwrap();
            assert!(p.as_slice()[PANEL * cols..]
                .chunks_exact(PANEL)
                .all(|k| k[rows - PANEL..].iter().all(|v| *v == 0.0)));
            for n in 1..=3 {
                let x = vals(n * cols, 6);
                let mut y = [f32::NAN; 3 * 35];
                matmul(p, &x[..n * cols], &mut y[..n * rows]);
                for (o, got) in y[..n * rows].iter().enumerate() {
                    let (i, r) = (o / rows, o % rows);
                    let want: f64 = (0..cols)
                        .map(|c| f64::from(w[r * cols + c]) * f64::from(x[i * cols + c]))
                        .sum();
                    assert!((f64::from(*got) - want).abs() < 1e-5, "n={n} i={i} r={r}");
                }
            }
        }
    }
}
