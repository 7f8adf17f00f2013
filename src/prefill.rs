//! The decoder's matrices packed once into panels for prefill ([`crate::kernels::Panels`]).
//!
//! A chunk of positions multiplies its rows by every matrix of every block; over panels that
//! product runs at most of the FMA peak (see the README's GEMM table), where the weights in
//! their own layout leave a third to a half of it unused. The panels are an f32 copy of those
//! matrices in an arena the caller provides ([`prefill_panels_len`] f32, a `const fn` of the
//! configuration); decoding one position does not read them.
//!
//! Packed: self- and cross-attention `to_q` and `to_out`, self-attention `to_k` and `to_v`,
//! the feed-forward `proj` and `out`. Not packed: the cross-attention `to_k`/`to_v` (each
//! context row is projected once, by a matrix-vector product) and the wrapper's embeddings and
//! logits.

use crate::config::DecoderConfig;
use crate::error::{Buffer, Error};
use crate::kernels::Panels;
use crate::tensor::Tensor;
use crate::weights::BlockWeights;

/// One block's matrices as panels (each `None` where the block has no such matrix).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockPanels<'p> {
    pub q: Panels<'p>,
    pub k: Panels<'p>,
    pub v: Panels<'p>,
    pub out: Option<Panels<'p>>,
    pub cross_q: Option<Panels<'p>>,
    pub cross_out: Option<Panels<'p>>,
    pub ff_proj: Panels<'p>,
    pub ff_out: Panels<'p>,
}

/// `Panels::len` as a saturating `const fn`.
const fn len(rows: usize, cols: usize) -> usize {
    match Panels::len(rows, cols) {
        Some(n) => n,
        None => usize::MAX,
    }
}

/// f32 elements of the arena that [`crate::Decoder::with_prefill_panels`] needs for `cfg`: per block
/// the panels of `to_q [H·d, D]`, `to_k`, `to_v [H_kv·d, D]`, `to_out [D, H·d]` (with more than
/// one head), with cross-attention its `to_q` and `to_out`, and the feed-forward `proj
/// [F or 2F, D]` and `out [D, F]`, each with rows rounded up to 32 and 15 values of alignment
/// slack. Saturates at `usize::MAX` for sizes that do not exist.
pub const fn prefill_panels_len(cfg: &DecoderConfig) -> usize {
    let (dim, qd, kvd) = (cfg.dim, cfg.q_dim(), cfg.kv_dim());
    let attn_out = if cfg.has_to_out() { len(dim, qd) } else { 0 };
    let attention = len(qd, dim).saturating_add(attn_out);
    let mut block = attention
        .saturating_add(len(kvd, dim).saturating_mul(2))
        .saturating_add(len(cfg.ff_proj_rows(), dim))
        .saturating_add(len(dim, cfg.ff_inner()));
    if cfg.cross_attend {
        block = block.saturating_add(attention);
    }
    block.saturating_mul(cfg.depth)
}

/// Packs the matrices of `blocks` (weights checked against `cfg` at load) into `arena`.
///
/// # Errors
/// [`Error::BufferTooSmall`] with [`Buffer::PrefillPanels`] if `arena` holds fewer than
/// [`prefill_panels_len`] f32.
pub(crate) fn pack<'p, const MAX_DEPTH: usize>(
    cfg: &DecoderConfig,
    blocks: &[BlockWeights<'_>],
    arena: &'p mut [f32],
) -> Result<heapless::Vec<BlockPanels<'p>, MAX_DEPTH>, Error> {
    let needed = prefill_panels_len(cfg);
    if arena.len() < needed || needed == usize::MAX {
        return Err(Error::BufferTooSmall {
            buffer: Buffer::PrefillPanels,
            needed,
            available: arena.len(),
        });
    }
    let (dim, qd, inner) = (cfg.dim, cfg.q_dim(), cfg.ff_inner());
    let mut rest = arena;
    let mut out = heapless::Vec::new();
    for b in blocks {
        // The next matrix's share of the arena, in the order of `prefill_panels_len`.
        let mut next = |w: Tensor<'_>, cols: usize| -> Result<Panels<'p>, Error> {
            let (here, after) = core::mem::take(&mut rest).split_at_mut(len(w.len() / cols, cols));
            rest = after;
            Panels::pack(w, cols, here)
        };
        let (a, f) = (&b.attn, &b.ff);
        let (q, k, v) = (next(a.to_q, dim)?, next(a.to_k, dim)?, next(a.to_v, dim)?);
        let attn_out = a.to_out.map(|o| next(o, qd)).transpose()?;
        let (cross_q, cross_out) = match &b.cross {
            Some(c) => (
                Some(next(c.to_q, dim)?),
                c.to_out.map(|o| next(o, qd)).transpose()?,
            ),
            None => (None, None),
        };
        let panels = BlockPanels {
            q,
            k,
            v,
            out: attn_out,
            cross_q,
            cross_out,
            ff_proj: next(f.proj, dim)?,
            ff_out: next(f.out, inner)?,
        };
        // The weights hold at most MAX_DEPTH blocks, so this never fails.
        out.push(panels).map_err(|_| Error::DepthExceedsCapacity {
            depth: cfg.depth,
            max_depth: MAX_DEPTH,
        })?;
    }
    Ok(out)
}
