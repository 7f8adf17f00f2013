//! The decoder's matrices packed once, into an arena the caller provides, for the kernels that
//! read packed weights: f32 panels ([`crate::kernels::Panels`]) for the matrix-matrix products of
//! prefill, and int8 panels ([`crate::kernels::Int8Panels`]) for every product on the int8 path,
//! single-token decoding included.
//!
//! A chunk of positions multiplies its rows by every matrix of every block; the GEMM tiles keep
//! more of the FMA units busy over panels than over the weights in their own layout. The f32
//! panels are a copy of those matrices ([`prefill_panels_len`] f32, a `const fn` of the
//! configuration); decoding one position does not read them. The int8 panels hold the Q8_0
//! matrices in as many bytes as the weights ([`int8_panels_len`]) and serve every product on the
//! int8 path, decoding included.
//!
//! Packed: self- and cross-attention `to_q`, `to_k`, `to_v` and `to_out`, the feed-forward
//! `proj` and `out` (the cross-attention `to_k`/`to_v` project the context's rows, once per
//! context, in chunks of the scratch's positions). Not packed: the wrapper's embeddings and
//! logits (the wrapper packs its logits into int8 panels of its own).

use crate::config::DecoderConfig;
use crate::error::{Buffer, Error};
use crate::kernels::{Int8Panels, Panels};
use crate::tensor::Tensor;
use crate::weights::BlockWeights;

/// One matrix packed once: f32 panels for the matrix-matrix product of prefill, or int8 panels
/// (Q8_0 weights only) for every product on the int8 path, one position included.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Packed<'p> {
    F32(Panels<'p>),
    Int8(Int8Panels<'p>),
}

/// One block's matrices as packed (each `None` where the block has no such matrix, or where it
/// was not packed: int8 panels hold only Q8_0 matrices).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockPanels<'p> {
    pub q: Option<Packed<'p>>,
    pub k: Option<Packed<'p>>,
    pub v: Option<Packed<'p>>,
    pub out: Option<Packed<'p>>,
    pub cross_q: Option<Packed<'p>>,
    pub cross_k: Option<Packed<'p>>,
    pub cross_v: Option<Packed<'p>>,
    pub cross_out: Option<Packed<'p>>,
    pub ff_proj: Option<Packed<'p>>,
    pub ff_out: Option<Packed<'p>>,
}

/// `Panels::len` as a saturating `const fn`.
const fn len(rows: usize, cols: usize) -> usize {
    match Panels::len(rows, cols) {
        Some(n) => n,
        None => usize::MAX,
    }
}

/// `Int8Panels::len` as a saturating `const fn`.
pub(crate) const fn len_int8(rows: usize, cols: usize) -> usize {
    match Int8Panels::len(rows, cols) {
        Some(n) => n,
        None => usize::MAX,
    }
}

/// The arena for the packed matrices of `cfg`, each `[rows, cols]` matrix taking [`len`] (or
/// [`len_int8`] if `int8`): per block `to_q [H·d, D]`, `to_k`, `to_v [H_kv·d, D]`, `to_out [D, H·d]`
/// (with more than one head), with cross-attention its `to_q`, `to_k`, `to_v [H_kv·d, C]` (C the
/// context's width) and `to_out`, and the feed-forward `proj [F or 2F, D]` and `out [D, F]`.
/// Saturates at `usize::MAX`.
const fn arena_len(cfg: &DecoderConfig, int8: bool) -> usize {
    // (A function pointer cannot be called in a `const fn`.)
    const fn size(int8: bool, rows: usize, cols: usize) -> usize {
        if int8 {
            len_int8(rows, cols)
        } else {
            len(rows, cols)
        }
    }
    let (dim, qd, kvd) = (cfg.dim, cfg.q_dim(), cfg.kv_dim());
    let attn_out = if cfg.has_to_out() {
        size(int8, dim, qd)
    } else {
        0
    };
    let attention = size(int8, qd, dim).saturating_add(attn_out);
    let mut block = attention
        .saturating_add(size(int8, kvd, dim).saturating_mul(2))
        .saturating_add(size(int8, cfg.ff_proj_rows(), dim))
        .saturating_add(size(int8, dim, cfg.ff_inner()));
    if cfg.cross_attend {
        let context_kv = size(int8, kvd, cfg.dim_context()).saturating_mul(2);
        block = block.saturating_add(attention).saturating_add(context_kv);
    }
    block.saturating_mul(cfg.depth)
}

/// f32 elements of the arena that [`crate::Decoder::with_prefill_panels`] needs for `cfg`: per
/// block the panels of `to_q [H·d, D]`, `to_k`, `to_v [H_kv·d, D]`, `to_out [D, H·d]` (with
/// more than one head), with cross-attention its `to_q`, `to_k`, `to_v [H_kv·d, C]` (C the
/// context's width) and `to_out`, and the feed-forward `proj [F or 2F, D]` and `out [D, F]`,
/// each with rows rounded up to 32 and 15 values of alignment slack. Saturates at `usize::MAX`
/// for sizes that do not exist.
pub const fn prefill_panels_len(cfg: &DecoderConfig) -> usize {
    arena_len(cfg, false)
}

/// Bytes of the arena that [`crate::Decoder::with_int8_panels`] needs for `cfg`: the int8
/// panels of the matrices of [`prefill_panels_len`] as if every one were Q8_0, 34 bytes per 32
/// weights with rows rounded up to 16, and 63 bytes of alignment slack each. Saturates at
/// `usize::MAX`.
pub const fn int8_panels_len(cfg: &DecoderConfig) -> usize {
    arena_len(cfg, true)
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
    room(Buffer::PrefillPanels, prefill_panels_len(cfg), arena.len())?;
    let mut rest = arena;
    walk(cfg, blocks, &[], |w, cols, _| {
        let here = take_front(&mut rest, len(w.len() / cols, cols));
        Ok(Some(Packed::F32(Panels::pack(w, cols, here)?)))
    })
}

/// Packs the Q8_0 matrices of `blocks` into int8 panels in `arena`; the others keep their
/// packing in `old` (the f32 prefill panels, if any).
///
/// # Errors
/// [`Error::BufferTooSmall`] with [`Buffer::Int8Panels`] if `arena` holds fewer than
/// [`int8_panels_len`] bytes.
pub(crate) fn pack_int8<'p, const MAX_DEPTH: usize>(
    cfg: &DecoderConfig,
    blocks: &[BlockWeights<'_>],
    old: &[BlockPanels<'p>],
    arena: &'p mut [u8],
) -> Result<heapless::Vec<BlockPanels<'p>, MAX_DEPTH>, Error> {
    room(Buffer::Int8Panels, int8_panels_len(cfg), arena.len())?;
    let mut rest = arena;
    walk(cfg, blocks, old, |w, cols, prev| {
        let here = take_front(&mut rest, len_int8(w.len() / cols, cols));
        Ok(match w {
            Tensor::Q8_0(q) => Some(Packed::Int8(Int8Panels::pack(q, cols, here)?)),
            _ => prev,
        })
    })
}

/// The first `n` elements of `rest`, which keeps the others: the next matrix's share of the
/// arena, in the order of [`arena_len`] (whose total [`room`] checked first).
fn take_front<'p, T>(rest: &mut &'p mut [T], n: usize) -> &'p mut [T] {
    let (here, after) = core::mem::take(rest).split_at_mut(n);
    *rest = after;
    here
}

/// Whether an arena of `available` elements holds the `needed` of `buffer` (`usize::MAX`: a
/// size that does not exist).
pub(crate) fn room(buffer: Buffer, needed: usize, available: usize) -> Result<(), Error> {
    if available < needed || needed == usize::MAX {
        return Err(Error::BufferTooSmall {
            buffer,
            needed,
            available,
        });
    }
    Ok(())
}

/// Each block's matrices in the order of [`arena_len`], packed by `next(w, cols, prev)` (`prev`:
/// that matrix's packing in `old`, if any).
fn walk<'p, const MAX_DEPTH: usize>(
    cfg: &DecoderConfig,
    blocks: &[BlockWeights<'_>],
    old: &[BlockPanels<'p>],
    mut next: impl FnMut(Tensor<'_>, usize, Option<Packed<'p>>) -> Result<Option<Packed<'p>>, Error>,
) -> Result<heapless::Vec<BlockPanels<'p>, MAX_DEPTH>, Error> {
    let (dim, qd, inner, context) = (cfg.dim, cfg.q_dim(), cfg.ff_inner(), cfg.dim_context());
    let mut out = heapless::Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let o = old.get(i);
        let (a, f) = (&b.attn, &b.ff);
        let q = next(a.to_q, dim, o.and_then(|o| o.q))?;
        let k = next(a.to_k, dim, o.and_then(|o| o.k))?;
        let v = next(a.to_v, dim, o.and_then(|o| o.v))?;
        let attn_out = match a.to_out {
            Some(w) => next(w, qd, o.and_then(|o| o.out))?,
            None => None,
        };
        let (cross_q, cross_k, cross_v, cross_out) = match &b.cross {
            Some(c) => (
                next(c.to_q, dim, o.and_then(|o| o.cross_q))?,
                next(c.to_k, context, o.and_then(|o| o.cross_k))?,
                next(c.to_v, context, o.and_then(|o| o.cross_v))?,
                match c.to_out {
                    Some(w) => next(w, qd, o.and_then(|o| o.cross_out))?,
                    None => None,
                },
            ),
            None => (None, None, None, None),
        };
        let panels = BlockPanels {
            q,
            k,
            v,
            out: attn_out,
            cross_q,
            cross_k,
            cross_v,
            cross_out,
            ff_proj: next(f.proj, dim, o.and_then(|o| o.ff_proj))?,
            ff_out: next(f.out, inner, o.and_then(|o| o.ff_out))?,
        };
        // The weights hold at most MAX_DEPTH blocks, so this never fails.
        out.push(panels).map_err(|_| Error::DepthExceedsCapacity {
            depth: cfg.depth,
            max_depth: MAX_DEPTH,
        })?;
    }
    Ok(out)
}
