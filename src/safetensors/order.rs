//! The rules that hold across the entries of a header: tensor names and metadata keys are
//! unique, and the tensors tile the data section exactly.
//!
//! Both are checked by visiting the entries in order, of names or of offsets. The first pass over
//! the header ([`Order::push`]) does so for free when the header already lists them in that
//! order; otherwise [`Order::check`] walks them sorted, in batches of [`BATCH`] held on the stack,
//! one pass over the header per batch.

use core::cmp::Ordering;

use super::{FormatError, SafeTensors, TensorInfo};
use crate::json::JsonStr;

/// The global rules as the first pass over the header meets the tensors, in header order: names
/// listed in strictly increasing order cannot repeat, and tensors listed in data order can be
/// checked for coverage as they come.
pub(super) struct Order<'a> {
    /// The name and place of the previous tensor.
    prev: Option<(JsonStr<'a>, Span)>,
    /// The names so far are strictly increasing.
    names_sorted: bool,
    /// The tensors so far are in data order.
    spans_sorted: bool,
    tiling: Tiling,
    /// The coverage so far, while the tensors are in data order.
    tile_result: Result<(), TileError>,
}

impl<'a> Order<'a> {
    pub(super) const fn new() -> Self {
        Order {
            prev: None,
            names_sorted: true,
            spans_sorted: true,
            tiling: Tiling::new(),
            tile_result: Ok(()),
        }
    }

    /// Takes the tensor `t`, the `index`th in header order.
    pub(super) fn push(&mut self, index: usize, t: &TensorInfo<'a>) {
        let span = Span::of(index, t);
        if let Some((name, s)) = self.prev {
            self.names_sorted &= name.cmp_decoded(&t.key).is_lt();
            self.spans_sorted &= s < span;
        }
        self.prev = Some((t.key, span));
        if self.spans_sorted && self.tile_result.is_ok() {
            self.tile_result = self.tiling.visit(span);
        }
    }

    /// Checks both rules over the whole file, once every tensor of `st` has been pushed: what the
    /// header order left unchecked is walked in sorted order.
    ///
    /// # Errors
    /// [`FormatError::DuplicateKey`], [`FormatError::DuplicateMetadataKey`], then
    /// [`FormatError::Overlap`] or [`FormatError::Hole`].
    pub(super) fn check(self, st: &SafeTensors<'a>) -> Result<(), FormatError<'a>> {
        let Order {
            names_sorted,
            spans_sorted,
            mut tiling,
            mut tile_result,
            ..
        } = self;
        // Unique names; with names out of order, a sorted walk in batches.
        if !names_sorted {
            visit_sorted(
                || st.tensors().map(|t| t.key),
                JsonStr::cmp_decoded,
                |k| FormatError::DuplicateKey { key: k.raw() },
                |_| Ok(()),
            )?;
        }
        if st.metadata_at.is_some() {
            visit_sorted(
                || st.metadata_entries().map(|(k, _)| k),
                JsonStr::cmp_decoded,
                |k| FormatError::DuplicateMetadataKey { key: k.raw() },
                |_| Ok(()),
            )?;
        }

        // Exact coverage of the data section, checked in data order.
        if !spans_sorted {
            tiling = Tiling::new();
            tile_result = visit_sorted(
                || st.tensors().enumerate().map(|(i, t)| Span::of(i, &t)),
                Span::cmp,
                // Spans are unique by index.
                |_| TileError::Hole { begin: 0, end: 0 },
                |s| tiling.visit(s),
            );
        }
        match tile_result.and_then(|()| tiling.finish(st.data.len())) {
            Ok(()) => Ok(()),
            Err(TileError::Hole { begin, end }) => Err(FormatError::Hole { begin, end }),
            Err(TileError::Overlap {
                first,
                second,
                begin,
                end,
            }) => {
                let name = |i| st.tensors().nth(i).map_or("", |t| t.name());
                Err(FormatError::Overlap {
                    first: name(first),
                    second: name(second),
                    begin,
                    end,
                })
            }
        }
    }
}

/// Items held on the stack by [`visit_sorted`]: the passes over the header it needs are
/// `ceil(n / BATCH)`.
const BATCH: usize = 64;

/// Calls `visit` on the items produced by `items()` in increasing `cmp` order, holding at most
/// [`BATCH`] items at a time: each run of `items()` (a pass over the header) selects the next
/// `BATCH` smallest. Two items that compare equal end the walk with `Err(equal(second))`.
fn visit_sorted<T: Copy, I: Iterator<Item = T>, E>(
    items: impl Fn() -> I,
    cmp: impl Fn(&T, &T) -> Ordering,
    equal: impl Fn(T) -> E,
    mut visit: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E> {
    let mut last: Option<T> = None;
    loop {
        let mut batch: heapless::Vec<T, BATCH> = heapless::Vec::new();
        for item in items() {
            if last.is_some_and(|l| cmp(&item, &l).is_le()) {
                continue; // visited in an earlier batch
            }
            match batch.binary_search_by(|b| cmp(b, &item)) {
                // An item equal to one of the batch: if the item belongs in this batch, its twin
                // is there too (the batch always holds the smallest items seen so far).
                Ok(_) => return Err(equal(item)),
                Err(BATCH) => {} // larger than a full batch: a later pass
                Err(pos) => {
                    if batch.is_full() {
                        batch.pop();
                    }
                    // Inserted at `pos` by hand (`insert` has a panic path for a `pos` beyond
                    // the length): the items from `pos` on move up one, the last is pushed,
                    // which cannot fail as there is room now.
                    let mut carry = item;
                    for slot in batch.get_mut(pos..).into_iter().flatten() {
                        core::mem::swap(slot, &mut carry);
                    }
                    let _ = batch.push(carry);
                }
            }
        }
        for &item in batch.iter() {
            visit(item)?;
        }
        if !batch.is_full() {
            return Ok(());
        }
        last = batch.last().copied();
    }
}

/// Checks, tensor by tensor in data order, that the tensors tile the data section: each starts
/// where the previous non-empty one ended. Zero-sized tensors sort before a non-empty one at the
/// same offset, so they may sit on any boundary.
struct Tiling {
    /// End of the covered prefix.
    cursor: usize,
    /// Index (header order) and range of the last non-empty tensor.
    last: Option<Span>,
}

/// A tensor's place in the data section, ordered by `(begin, non-empty, index)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    begin: usize,
    nonempty: bool,
    index: usize,
    end: usize,
}

impl Span {
    fn of(index: usize, t: &TensorInfo<'_>) -> Span {
        Span {
            begin: t.begin,
            nonempty: !t.data.is_empty(),
            index,
            end: t.end(),
        }
    }
}

/// A coverage problem, with tensors named by index until the names are looked up.
#[derive(Clone, Copy, Debug)]
enum TileError {
    Overlap {
        first: usize,
        second: usize,
        begin: usize,
        end: usize,
    },
    Hole {
        begin: usize,
        end: usize,
    },
}

impl Tiling {
    const fn new() -> Self {
        Tiling {
            cursor: 0,
            last: None,
        }
    }

    fn visit(&mut self, s: Span) -> Result<(), TileError> {
        if s.begin > self.cursor {
            return Err(TileError::Hole {
                begin: self.cursor,
                end: s.begin,
            });
        }
        if s.begin < self.cursor {
            // Sorted by begin, so the last non-empty tensor starts at or before `s` and ends
            // after its start.
            let l = self.last.unwrap_or(s);
            return Err(TileError::Overlap {
                first: l.index.min(s.index),
                second: l.index.max(s.index),
                begin: s.begin,
                end: s.end.min(l.end),
            });
        }
        if s.nonempty {
            self.cursor = s.end;
            self.last = Some(s);
        }
        Ok(())
    }

    fn finish(&self, data_len: usize) -> Result<(), TileError> {
        if self.cursor != data_len {
            return Err(TileError::Hole {
                begin: self.cursor,
                end: data_len,
            });
        }
        Ok(())
    }
}
