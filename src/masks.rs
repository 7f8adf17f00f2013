//! Padding masks (x-transformers' `mask` and `context_mask`): which positions are real.
//!
//! x-transformers turns a key-padding mask into an attention mask in `Attention.forward`
//! (`xt:2489-2492, 2555-2557, 2575-2576`): a masked key's logit is filled with `-finfo.max`
//! (`at:591-592`), so it gets exactly zero weight; a query row whose every key is masked gets a
//! zero output (`at:600-601, 663-664`); and the attention sublayer's output at a masked query
//! position is zeroed (`xt:2751-2752`, without a cache), in self- and in cross-attention alike.
//! See `docs/x-transformers.md` §3.13.

use crate::error::{Buffer, Error};

/// The padding masks of a forward call, `true` for a real position.
///
/// - `mask`: one entry for every self-attention position up to the end of the call,
///   `0..cache.len() + n`: the cached positions' entries as given on the calls that cached them
///   (the caller keeps them; the cache stores keys, not their mask), then the call's own. Masked
///   positions are excluded as keys, and the attention outputs at masked positions are zeroed,
///   as x-transformers computes a full pass with `mask`, so step-wise decoding after a masked
///   (e.g. left-padded) prompt equals the full pass.
/// - `context_mask`: one entry per context row (cross-attention): masked rows are excluded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Masks<'m> {
    /// Which self-attention positions `0..cache.len() + n` are real, or `None` (all).
    pub mask: Option<&'m [bool]>,
    /// Which context rows are real, or `None` (all).
    pub context_mask: Option<&'m [bool]>,
}

impl<'m> Masks<'m> {
    /// No masks: every position and every context row is real.
    pub const NONE: Masks<'static> = Masks {
        mask: None,
        context_mask: None,
    };

    /// A self-attention padding mask only.
    pub const fn mask(mask: &'m [bool]) -> Self {
        Masks {
            mask: Some(mask),
            context_mask: None,
        }
    }

    /// Checks the lengths: `mask` covers `positions` (cached plus new), `context_mask` covers
    /// `context_rows` (`None`: the model takes no context).
    pub(crate) fn validate(
        &self,
        positions: usize,
        context_rows: Option<usize>,
    ) -> Result<(), Error> {
        if let Some(m) = self.mask {
            if m.len() != positions {
                return Err(Error::BufferLength {
                    buffer: Buffer::Mask,
                    expected: positions,
                    found: m.len(),
                });
            }
        }
        if let Some(m) = self.context_mask {
            let rows = context_rows.ok_or(Error::ContextNotExpected)?;
            if m.len() != rows {
                return Err(Error::BufferLength {
                    buffer: Buffer::ContextMask,
                    expected: rows,
                    found: m.len(),
                });
            }
        }
        Ok(())
    }
}

/// Zeroes the rows (`width` values each) of the `n` positions starting at `pos0` that `mask`
/// marks as padding (`xt:2751-2752`); the mask covers the positions from `prefix` on (those
/// before, a wrapper's memory tokens, are real).
pub(crate) fn zero_masked_rows(
    out: &mut [f32],
    width: usize,
    pos0: usize,
    prefix: usize,
    mask: Option<&[bool]>,
) {
    let Some(m) = mask else { return };
    for (i, row) in out.chunks_exact_mut(width.max(1)).enumerate() {
        let real = match (pos0 + i).checked_sub(prefix) {
            Some(p) => m.get(p).copied().unwrap_or(true),
            None => true,
        };
        if !real {
            row.iter_mut().for_each(|v| *v = 0.0);
        }
    }
}
