//! Attention over one cached kv head: the geometry of its queries (heads of a group, positions
//! of a chunk) and the dispatcher.

use super::isa::{portable_ran, token};
use super::{arch, portable, shape};
use crate::error::Error;
use crate::tensor::{Element, Tensor};

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
    /// `count − 1 − p` when causal, else all. Never more than `rows`: outside its preconditions
    /// (`p >= count`, or fewer rows than the positions need) the count saturates instead of
    /// wrapping or panicking.
    pub const fn seen(self, p: usize, rows: usize) -> usize {
        if self.causal {
            rows.saturating_sub(self.count.saturating_sub(1).saturating_sub(p))
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
    #[cfg(picoformer_cortexm)]
    if let (Tensor::F32(k), Tensor::F32(v)) = (K::as_tensor(keys), K::as_tensor(values)) {
        return super::cortexm::attention_positions_f32(q, group, positions, k, v, scale, out);
    }
    portable::attention_positions(q, group, positions, keys, values, scale, out)
}
