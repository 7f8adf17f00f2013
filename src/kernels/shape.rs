//! The shape checks of the public kernels: every relation between lengths that a kernel relies
//! on, checked once at its entry and reported as [`Error::KernelShape`], never a panic. After
//! these checks the kernel bodies' own assertions cannot fail.

use super::{HeadGroup, Positions};
use crate::error::Error;
use crate::q8_0::Q8_0_BLOCK;

/// The error for argument `arg` of `kernel`: `found` where the others call for `expected`.
pub(crate) fn wrong(
    kernel: &'static str,
    arg: &'static str,
    expected: usize,
    found: usize,
) -> Error {
    Error::KernelShape {
        kernel,
        arg,
        expected,
        found,
    }
}

/// `found == expected`; `None` stands for a length too large to exist (an overflowed product).
pub(crate) fn len(
    kernel: &'static str,
    arg: &'static str,
    expected: Option<usize>,
    found: usize,
) -> Result<(), Error> {
    match expected {
        Some(e) if e == found => Ok(()),
        e => Err(wrong(kernel, arg, e.unwrap_or(usize::MAX), found)),
    }
}

/// `value >= 1` for a size argument.
pub(crate) fn positive(kernel: &'static str, arg: &'static str, value: usize) -> Result<(), Error> {
    match value {
        0 => Err(wrong(kernel, arg, 1, 0)),
        _ => Ok(()),
    }
}

/// The number of whole rows of `cols >= 1` values in `found` values; otherwise the error
/// expects the next whole number of rows.
pub(crate) fn rows(
    kernel: &'static str,
    arg: &'static str,
    found: usize,
    cols: usize,
) -> Result<usize, Error> {
    positive(kernel, "cols", cols)?;
    match found % cols {
        0 => Ok(found / cols),
        _ => Err(wrong(
            kernel,
            arg,
            (found / cols + 1).saturating_mul(cols),
            found,
        )),
    }
}

/// Q8_0 rows are whole blocks of 32.
pub(crate) fn q8_cols(kernel: &'static str, cols: usize) -> Result<(), Error> {
    match cols % Q8_0_BLOCK {
        0 => Ok(()),
        _ => Err(wrong(
            kernel,
            "cols",
            (cols / Q8_0_BLOCK + 1).saturating_mul(Q8_0_BLOCK),
            cols,
        )),
    }
}

/// `y = x·Wᵀ` for one position: W holds `y_len` rows of `x_len` values (`w_len` values in
/// all); Q8_0 rows are whole blocks.
pub(crate) fn matvec(w_len: usize, x_len: usize, y_len: usize, q8: bool) -> Result<(), Error> {
    if q8 {
        q8_cols("matvec", x_len)?;
    }
    len("matvec", "w", x_len.checked_mul(y_len), w_len)
}

/// `Y = X·Wᵀ`: X `[n, cols]`, W `[rows, cols]`, Y `[n, rows]`, `cols >= 1`; returns
/// `(n, rows)`.
pub(crate) fn matmul(
    w_len: usize,
    cols: usize,
    x_len: usize,
    y_len: usize,
    q8: bool,
) -> Result<(usize, usize), Error> {
    let n = rows("matmul", "x", x_len, cols)?;
    if q8 {
        q8_cols("matmul", cols)?;
    }
    let r = rows("matmul", "w", w_len, cols)?;
    len("matmul", "y", n.checked_mul(r), y_len)?;
    Ok((n, r))
}

/// The heads of `group` at each of `positions` over `keys_len / group.dim >= 1` cached rows
/// (at least `positions.count` when causal): q and out `positions.span(group)` long, keys and
/// values whole rows of the same length. Returns the row count.
pub(crate) fn attention(
    q_len: usize,
    group: HeadGroup,
    positions: Positions,
    keys_len: usize,
    values_len: usize,
    out_len: usize,
) -> Result<usize, Error> {
    const K: &str = "attention";
    positive(K, "group.dim", group.dim)?;
    positive(K, "group.heads", group.heads)?;
    if group.stride < group.dim {
        return Err(wrong(K, "group.stride", group.dim, group.stride));
    }
    positive(K, "positions.count", positions.count)?;
    if positions.count > 1 {
        // A valid group has a span (None only on overflow, which no slice reaches).
        let span = group.span().unwrap_or(usize::MAX);
        if positions.stride < span {
            return Err(wrong(K, "positions.stride", span, positions.stride));
        }
    }
    len(K, "q", positions.span(group), q_len)?;
    len(K, "out", Some(q_len), out_len)?;
    let least = if positions.causal { positions.count } else { 1 };
    let rows = rows(K, "keys", keys_len, group.dim)?;
    if rows < least {
        return Err(wrong(K, "keys", least.saturating_mul(group.dim), keys_len));
    }
    len(K, "values", Some(keys_len), values_len)?;
    Ok(rows)
}

/// Two arguments of one length (element-wise kernels).
pub(crate) fn same(
    kernel: &'static str,
    arg: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), Error> {
    len(kernel, arg, Some(expected), found)
}
