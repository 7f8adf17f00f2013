//! Q8_0 weights packed once for the int8 path ([`Int8Panels`]): 16 rows interleaved, so that
//! each lane of an integer vector sums one row.
//!
//! Over Q8_0 blocks in their row layout, the int8 product ([`super::matvec_int8`]) ends every
//! block of every row in f32: a vector of partial sums is converted, scaled by that row's own
//! f16 scale (converted and broadcast) and accumulated: that per-block f32 work, not the bytes
//! of weights, bounds it when the weights are in L1/L2.
//! Packed into panels of [`INT8_PANEL`] rows, one block of a panel is eight steps of four
//! columns; step `k` holds, for each row `q` of the panel, its quants `4k..4k+4` of the block:
//!
//! `quants[((j·nb + b)·8 + k)·64 + 4q + i] = W[16j + q][32b + 4k + i] + 128` (u8), and
//! `scales[(j·nb + b)·16 + q] = d(W[16j + q], block b)` (f16, little-endian),
//!
//! for panel `j`, block `b` of `nb` per row. The quants are stored biased, as unsigned bytes
//! (the top bit flipped), because that is what `vpdpbusd` multiplies: the sets that multiply
//! signed bytes flip it back when they load, one instruction per vector. A 64-byte load of one
//! step times the activations' four quants broadcast to every lane gives, per 32-bit lane, one row's four products summed
//! (`vpdpbusd` does it in one instruction): after the eight steps each lane holds a whole block
//! of its row, and the block is scaled once for all 16 rows by a vector of their scales. The
//! same load serves every position of a prefill chunk.
//!
//! The copy takes exactly as many bytes as the Q8_0 weights (34 per 32 values) plus 63 bytes of
//! alignment slack, in an arena the caller provides ([`Int8Panels::len`], a `const fn`); rows
//! past the last one in the last panel are zero. With it, the weights in their own layout are
//! no longer read by the int8 path: a model can be packed once at load.

use super::shape;
use crate::error::Error;
use crate::q8_0::{q8_0_quants, q8_0_scale, BlockQ8_0, Q8_0_BLOCK};

/// Weight rows per int8 panel: one 512-bit vector of 32-bit lanes (two of 256, four of 128).
pub const INT8_PANEL: usize = 16;

/// Bytes of quants per panel and block: 8 steps of 4 columns × 16 rows.
pub(crate) const GROUP_BYTES: usize = INT8_PANEL * Q8_0_BLOCK;

/// Bytes of scales per panel and block: 16 f16.
const SCALE_BYTES: usize = INT8_PANEL * 2;

/// Bytes of slack, so that the quants can start on a 64-byte cache line wherever the arena does.
const ALIGN_SLACK: usize = 63;

/// Q8_0 `W[rows, cols]` packed into int8 panels of [`INT8_PANEL`] rows (see the module
/// documentation), borrowed from the arena it was packed into.
#[derive(Clone, Copy, Debug)]
pub struct Int8Panels<'a> {
    /// `panels · nb` groups of [`GROUP_BYTES`] quants (+128, as u8), from a cache line.
    quants: &'a [u8],
    /// `panels · nb · 16` f16 scales, little-endian.
    scales: &'a [u8],
    rows: usize,
    cols: usize,
}

impl<'a> Int8Panels<'a> {
    /// The bytes an arena needs for Q8_0 `W[rows, cols]`: 34 per 32 weights with the rows
    /// rounded up to a multiple of [`INT8_PANEL`], and 63 of slack for their alignment. `None`
    /// if that overflows.
    pub const fn len(rows: usize, cols: usize) -> Option<usize> {
        let groups = match rows.div_ceil(INT8_PANEL).checked_mul(cols / Q8_0_BLOCK) {
            Some(g) => g,
            None => return None,
        };
        match groups.checked_mul(GROUP_BYTES + SCALE_BYTES) {
            Some(b) => b.checked_add(ALIGN_SLACK),
            None => None,
        }
    }

    /// Packs the Q8_0 blocks `w` (`[rows, cols]`, rows = `32·w.len() / cols`) into `arena`,
    /// which must be exactly [`Int8Panels::len`] long.
    ///
    /// # Errors
    /// [`Error::KernelShape`] (kernel `"pack_int8"`) if `cols` is 0 or not a multiple of 32, `w`
    /// is not whole rows, or `arena` has another length. Nothing is written then.
    pub fn pack(w: &[BlockQ8_0], cols: usize, arena: &'a mut [u8]) -> Result<Self, Error> {
        #[cfg(not(feature = "q8_0"))]
        crate::q8_0::built(&crate::tensor::Tensor::Q8_0(w))?;
        const K: &str = "pack_int8";
        shape::q8_cols(K, cols)?;
        let nb = cols / Q8_0_BLOCK;
        let rows = shape::rows(K, "w", w.len(), nb)?;
        shape::len(K, "arena", Self::len(rows, cols), arena.len())?;
        let skip = match arena.as_ptr().align_offset(64) {
            s if s <= ALIGN_SLACK => s,
            _ => 0,
        };
        let groups = rows.div_ceil(INT8_PANEL) * nb;
        arena.fill(0);
        let (quants, scales) = arena[skip..].split_at_mut(groups * GROUP_BYTES);
        let scales = &mut scales[..groups * SCALE_BYTES];
        // Rows of the last panel past `rows` keep scales 0 (and quants −128: they are never stored).
        for (r, row) in w.chunks_exact(nb).enumerate() {
            let (j, q) = (r / INT8_PANEL, r % INT8_PANEL);
            for (b, block) in row.iter().enumerate() {
                let g = j * nb + b;
                let group = &mut quants[g * GROUP_BYTES..][..GROUP_BYTES];
                for (c, v) in q8_0_quants(block).iter().enumerate() {
                    group[quant_at(q, c)] = v.to_le_bytes()[0] ^ 0x80;
                }
                let at = scale_at(g, q);
                scales[at..at + 2].copy_from_slice(&q8_0_scale(block).to_bits().to_le_bytes());
            }
        }
        Ok(Int8Panels {
            quants,
            scales,
            rows,
            cols,
        })
    }

    /// The panels of Q8_0 `W[rows, cols]` that [`Int8Panels::pack`] wrote into `arena` (the
    /// same slice, [`Int8Panels::len`] long), found again from the arena's address. `None` if
    /// `arena` has another length or `cols` is not whole blocks.
    pub(crate) fn view(arena: &'a [u8], rows: usize, cols: usize) -> Option<Self> {
        if cols == 0
            || !cols.is_multiple_of(Q8_0_BLOCK)
            || Self::len(rows, cols) != Some(arena.len())
        {
            return None;
        }
        let skip = match arena.as_ptr().align_offset(64) {
            s if s <= ALIGN_SLACK => s,
            _ => 0,
        };
        let groups = rows.div_ceil(INT8_PANEL) * (cols / Q8_0_BLOCK);
        let (quants, scales) = arena.get(skip..)?.split_at_checked(groups * GROUP_BYTES)?;
        let scales = scales.get(..groups * SCALE_BYTES)?;
        Some(Int8Panels {
            quants,
            scales,
            rows,
            cols,
        })
    }

    /// Rows `start..start + len` of W, `start` a multiple of [`INT8_PANEL`]: a view of their
    /// panels (the same bytes, so a product over it gives those rows' numbers bit for bit).
    /// `None` if the range is not such rows of W.
    pub(crate) fn rows_view(&self, start: usize, len: usize) -> Option<Self> {
        let end = start.checked_add(len)?;
        if !start.is_multiple_of(INT8_PANEL) || end > self.rows {
            return None;
        }
        let nb = self.cols / Q8_0_BLOCK;
        let (p0, p1) = (start / INT8_PANEL, end.div_ceil(INT8_PANEL));
        Some(Int8Panels {
            quants: self
                .quants
                .get(p0 * nb * GROUP_BYTES..p1 * nb * GROUP_BYTES)?,
            scales: self
                .scales
                .get(p0 * nb * SCALE_BYTES..p1 * nb * SCALE_BYTES)?,
            rows: len,
            cols: self.cols,
        })
    }

    /// Rows of W (columns of Y).
    pub const fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of W (values per position of X).
    pub const fn cols(&self) -> usize {
        self.cols
    }

    /// The quants: `rows.div_ceil(16) · cols/32` groups of 512 (each + 128, as u8).
    pub const fn quants(&self) -> &'a [u8] {
        self.quants
    }

    /// The scales: `rows.div_ceil(16) · cols/32 · 16` f16, little-endian.
    pub const fn scales(&self) -> &'a [u8] {
        self.scales
    }
}

/// Where a group (one panel's block) holds the quant of its row `q` and column `c` (0..32):
/// step `c / 4`, row `q`, byte `c % 4` of the row's four (the module documentation's layout).
pub(crate) const fn quant_at(q: usize, c: usize) -> usize {
    (c / 4) * 4 * INT8_PANEL + 4 * q + c % 4
}

/// Where the scales hold the f16 of group `g`'s row `q` (its first byte).
const fn scale_at(g: usize, q: usize) -> usize {
    (g * INT8_PANEL + q) * 2
}

/// The int8 product over panels, portably, for blocks `b0..b0 + nbc` of each row:
/// `y[p·rows + r] (+)= Σ_b d_w·d_x · Σ_i w·x` for the `n = y.len() / rows` positions whose
/// quantised activations are `x[p·nbc..(p + 1)·nbc]` (`add`: add to y). Each row's blocks are
/// summed in order, as [`super::portable::matvec_int8`] does. Shapes are checked by the caller.
pub(crate) fn product(w: Int8Panels<'_>, b0: usize, x: &[BlockQ8_0], y: &mut [f32], add: bool) {
    // (`rows` and the positions are at least 1 here.)
    let (rows, nb) = (w.rows.max(1), w.cols / Q8_0_BLOCK);
    let nbc = (x.len() / (y.len() / rows).max(1)).max(1);
    for (xp, yp) in x.chunks_exact(nbc).zip(y.chunks_exact_mut(rows)) {
        for (r, yr) in yp.iter_mut().enumerate() {
            let (j, q) = (r / INT8_PANEL, r % INT8_PANEL);
            // The row's groups from block b0: its quants and its scales.
            let g0 = j * nb + b0;
            let quants = w.quants.get(g0 * GROUP_BYTES..).unwrap_or(&[]);
            let scales = w.scales.get(g0 * SCALE_BYTES..).unwrap_or(&[]);
            let groups = quants
                .chunks_exact(GROUP_BYTES)
                .zip(scales.chunks_exact(SCALE_BYTES));
            let mut s = 0.0f32;
            for ((group, sc), xb) in groups.zip(xp) {
                let xq = q8_0_quants(xb);
                let mut dot = 0i32;
                for (c, xv) in xq.iter().enumerate() {
                    let wv = (group[quant_at(q, c)] ^ 0x80) as i8;
                    dot += i32::from(wv) * i32::from(*xv);
                }
                let at = scale_at(0, q);
                let dw = half::f16::from_bits(u16::from_le_bytes([sc[at], sc[at + 1]]));
                s += dw.to_f32() * q8_0_scale(xb).to_f32() * dot as f32;
            }
            *yr = if add { *yr + s } else { s };
        }
    }
}
