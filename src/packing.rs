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
use crate::layers::BlockPlan;
use crate::tensor::Tensor;
use crate::weights::BlockWeights;

/// One matrix packed once: f32 panels for the matrix-matrix product of prefill, or int8 panels
/// (Q8_0 weights only) for every product on the int8 path, one position included.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Packed<'p> {
    F32(Panels<'p>),
    Int8(Int8Panels<'p>),
}

/// A block's matrices, in the order they lie in an arena ([`arena_len`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Matrix {
    Q,
    K,
    V,
    Out,
    CrossQ,
    CrossK,
    CrossV,
    CrossOut,
    FfProj,
    FfOut,
}

/// Every matrix of a block, in arena order.
pub(crate) const MATRICES: [Matrix; 10] = Matrix::ALL;

impl Matrix {
    const ALL: [Matrix; 10] = [
        Matrix::Q,
        Matrix::K,
        Matrix::V,
        Matrix::Out,
        Matrix::CrossQ,
        Matrix::CrossK,
        Matrix::CrossV,
        Matrix::CrossOut,
        Matrix::FfProj,
        Matrix::FfOut,
    ];

    /// `[rows, cols]` of this matrix in a block of plan `block` under `cfg`, `None` where the
    /// block has no such matrix.
    const fn shape(self, cfg: &DecoderConfig, block: &BlockPlan) -> Option<(usize, usize)> {
        let (dim, qd, kvd) = (cfg.dim, cfg.q_dim(), cfg.kv_dim());
        let (attn, cross, ff) = (
            block.attn.is_some(),
            block.cross.is_some(),
            block.ff.is_some(),
        );
        match self {
            Matrix::Q if attn => Some((qd, dim)),
            Matrix::K | Matrix::V if attn => Some((kvd, dim)),
            Matrix::Out if attn && cfg.has_to_out() => Some((dim, qd)),
            Matrix::CrossQ if cross => Some((qd, dim)),
            Matrix::CrossK | Matrix::CrossV if cross => Some((kvd, cfg.dim_context())),
            Matrix::CrossOut if cross && cfg.has_to_out() => Some((dim, qd)),
            Matrix::FfProj if ff => Some((cfg.ff_proj_rows(), dim)),
            Matrix::FfOut if ff => Some((dim, cfg.ff_inner())),
            _ => None,
        }
    }

    /// This matrix of `block`, if the block has it.
    pub(crate) fn of<'w>(self, block: &BlockWeights<'w>) -> Option<Tensor<'w>> {
        let (a, c, f) = (block.attn.as_ref(), block.cross.as_ref(), block.ff.as_ref());
        match self {
            Matrix::Q => a.map(|a| a.to_q),
            Matrix::K => a.map(|a| a.to_k),
            Matrix::V => a.map(|a| a.to_v),
            Matrix::Out => a.and_then(|a| a.to_out),
            Matrix::CrossQ => c.map(|c| c.to_q),
            Matrix::CrossK => c.map(|c| c.to_k),
            Matrix::CrossV => c.map(|c| c.to_v),
            Matrix::CrossOut => c.and_then(|c| c.to_out),
            Matrix::FfProj => f.map(|f| f.proj),
            Matrix::FfOut => f.map(|f| f.out),
        }
    }
}

/// The arenas a decoder's matrices are packed into: two references, whatever the depth. Where
/// each matrix lies is computed from the configuration ([`Arenas::get`]), so a decoder carries
/// no per-matrix descriptors (which it would copy with itself through every stack frame).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Arenas<'p> {
    /// The f32 panels of every matrix ([`pack`]), if packed.
    pub f32: Option<&'p [f32]>,
    /// The int8 panels of the Q8_0 matrices ([`pack_int8`]), if packed; they take precedence
    /// over the f32 panels for those matrices.
    pub int8: Option<&'p [u8]>,
}

impl<'p> Arenas<'p> {
    /// Nothing packed.
    pub(crate) const fn empty() -> Self {
        Self {
            f32: None,
            int8: None,
        }
    }

    /// Matrix `m` of block `block` (whose weight is `w`) as packed: int8 panels if `w` is Q8_0
    /// and int8 panels were packed, else f32 panels if they were, else `None`.
    pub(crate) fn get(
        &self,
        cfg: &DecoderConfig,
        block: usize,
        m: Matrix,
        w: Tensor<'_>,
    ) -> Option<Packed<'p>> {
        let int8 = matches!(w, Tensor::Q8_0(_)) && self.int8.is_some();
        if !int8 && self.f32.is_none() {
            return None; // nothing packed: every product of an unpacked decoder asks
        }
        let (at, rows, cols) = place(cfg, block, m, int8)?;
        if let (true, Some(arena)) = (int8, self.int8) {
            let here = arena.get(at..at.checked_add(len_int8(rows, cols))?)?;
            return Int8Panels::view(here, rows, cols).map(Packed::Int8);
        }
        let arena = self.f32?;
        let here = arena.get(at..at.checked_add(len(rows, cols))?)?;
        Panels::view(here, rows, cols).map(Packed::F32)
    }
}

/// Size of matrix `m` of a block of plan `block` in an arena (0 where it has no such matrix).
const fn size_of(cfg: &DecoderConfig, block: &BlockPlan, m: Matrix, int8: bool) -> usize {
    match m.shape(cfg, block) {
        Some((rows, cols)) if int8 => len_int8(rows, cols),
        Some((rows, cols)) => len(rows, cols),
        None => 0,
    }
}

/// The size of block `b`'s matrices in an arena.
const fn block_len(cfg: &DecoderConfig, plan: &BlockPlan, int8: bool) -> usize {
    let mut total = 0usize;
    let mut i = 0;
    while i < Matrix::ALL.len() {
        total = total.saturating_add(size_of(cfg, plan, Matrix::ALL[i], int8));
        i += 1;
    }
    total
}

/// Where matrix `m` of block `block` starts in an arena, and its `[rows, cols]`: the blocks
/// before it, then the matrices before it in [`Matrix::ALL`]'s order (the order [`walk`] packs
/// them in). `None` past the last block or where the block has no such matrix. On the default
/// stack, whose blocks are all alike, without walking the blocks before it.
fn place(
    cfg: &DecoderConfig,
    block: usize,
    m: Matrix,
    int8: bool,
) -> Option<(usize, usize, usize)> {
    let (mut at, mut j) = (0usize, 0);
    if cfg.is_default_plan() {
        if block >= cfg.depth {
            return None;
        }
        at = block_len(cfg, &cfg.block_at(0).0, int8).checked_mul(block)?;
    } else {
        for _ in 0..block {
            let (plan, next) = cfg.block_at(j);
            at = at.checked_add(block_len(cfg, &plan, int8))?;
            j = next;
        }
        if j >= cfg.runs() {
            return None;
        }
    }
    let plan = cfg.block_at(j).0;
    let (rows, cols) = m.shape(cfg, &plan)?;
    for n in Matrix::ALL {
        if n == m {
            return Some((at, rows, cols));
        }
        at = at.checked_add(size_of(cfg, &plan, n, int8))?;
    }
    None
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
/// [`len_int8`] if `int8`): per block with self-attention `to_q [H·d, D]`, `to_k`, `to_v
/// [H_kv·d, D]` and `to_out [D, H·d]` (with more than one head), with cross-attention its
/// `to_q`, `to_k`, `to_v [H_kv·d, C]` (C the context's width) and `to_out`, and with a
/// feed-forward after the attention its `proj [F or 2F, D]` and `out [D, F]`. Saturates at
/// `usize::MAX`.
const fn arena_len(cfg: &DecoderConfig, int8: bool) -> usize {
    if cfg.validate().is_err() {
        return usize::MAX;
    }
    // The default stack's blocks are all alike: one block's size, `depth` times.
    if cfg.is_default_plan() {
        return block_len(cfg, &cfg.block_at(0).0, int8).saturating_mul(cfg.depth);
    }
    let (mut total, mut j, mut b) = (0usize, 0, 0);
    while b < cfg.blocks() {
        let (plan, next) = cfg.block_at(j);
        total = total.saturating_add(block_len(cfg, &plan, int8));
        j = next;
        b += 1;
    }
    total
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

/// Packs the matrices of `blocks` (weights checked against `cfg` at load) into `arena`, and
/// returns it.
///
/// # Errors
/// [`Error::BufferTooSmall`] with [`Buffer::PrefillPanels`] if `arena` holds fewer than
/// [`prefill_panels_len`] f32.
pub(crate) fn pack<'p>(
    cfg: &DecoderConfig,
    blocks: &[BlockWeights<'_>],
    arena: &'p mut [f32],
) -> Result<&'p [f32], Error> {
    room(Buffer::PrefillPanels, prefill_panels_len(cfg), arena.len())?;
    let mut rest = &mut arena[..];
    walk(cfg, blocks, |w, rows, cols| {
        let here = take_front(&mut rest, len(rows, cols));
        Panels::pack(w, cols, here).map(|_| ())
    })?;
    Ok(arena)
}

/// Packs the Q8_0 matrices of `blocks` into int8 panels in `arena`, and returns it (the other
/// matrices' places stay zero, unread).
///
/// # Errors
/// [`Error::BufferTooSmall`] with [`Buffer::Int8Panels`] if `arena` holds fewer than
/// [`int8_panels_len`] bytes.
pub(crate) fn pack_int8<'p>(
    cfg: &DecoderConfig,
    blocks: &[BlockWeights<'_>],
    arena: &'p mut [u8],
) -> Result<&'p [u8], Error> {
    room(Buffer::Int8Panels, int8_panels_len(cfg), arena.len())?;
    let mut rest = &mut arena[..];
    walk(cfg, blocks, |w, rows, cols| {
        let here = take_front(&mut rest, len_int8(rows, cols));
        match w {
            Tensor::Q8_0(q) => Int8Panels::pack(q, cols, here).map(|_| ()),
            _ => Ok(()),
        }
    })?;
    Ok(arena)
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

/// Each block's matrices in the order of [`Matrix::ALL`], handed to `next(w, rows, cols)` with
/// their shapes under `cfg` (where [`Arenas::get`] finds them again).
fn walk(
    cfg: &DecoderConfig,
    blocks: &[BlockWeights<'_>],
    mut next: impl FnMut(Tensor<'_>, usize, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut j = 0;
    for b in blocks {
        let (plan, after) = cfg.block_at(j);
        for m in Matrix::ALL {
            if let (Some((rows, cols)), Some(w)) = (m.shape(cfg, &plan), m.of(b)) {
                next(w, rows, cols)?;
            }
        }
        j = after;
    }
    Ok(())
}
