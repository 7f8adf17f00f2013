//! The fixed-capacity KV cache: self-attention keys and values for every block, plus the
//! cross-attention keys and values computed once from the context.
//!
//! Layout (elements of `T`): keys, then values, each `[layers][kv_heads][capacity][dim_head]`
//! (a layer per run of a self-attention sublayer, `crate::layers`),
//! so one kv head's cached rows are contiguous for attention. The context part has the same
//! layout with `max_context` rows. Keys are stored after rotary (x-transformers caches them
//! before and re-rotates every step; both are the same numbers, `docs/x-transformers.md` §3.8).
//!
//! The cache never grows. Appending past the capacity is [`Error::CacheFull`] and changes nothing;
//! [`KvCache::truncate`] and [`KvCache::reset`] rewind the position index in O(1).
//!
//! A model with local attention (`attn_max_attend_past` = N) can instead take a rolling cache
//! ([`KvCache::rolling`]): position p lives in row p mod capacity, and since no query sees a key
//! more than N positions back, a ring of more than N rows holds everything attention reads.
//! Positions then go on for ever in the same memory, and the outputs are still those of the full
//! pass.

use crate::config::DecoderConfig;
use crate::error::{Buffer, Error};
use crate::layers::Kind;
use crate::tensor::Element;

/// The self- and cross-attention cache of one decoding session, over caller-provided buffers.
#[derive(Debug)]
pub struct KvCache<'b, T: Element = f32> {
    keys: &'b mut [T],
    values: &'b mut [T],
    ctx_keys: &'b mut [T],
    ctx_values: &'b mut [T],
    /// Runs of self-attention sublayers (the default stack: `depth`).
    layers: usize,
    /// Runs of cross-attention sublayers.
    context_layers: usize,
    kv_heads: usize,
    dim_head: usize,
    capacity: usize,
    len: usize,
    max_context: usize,
    context_len: Option<usize>,
    cross_attend: bool,
    /// `Some(N)` for a rolling cache over a model with `attn_max_attend_past` = N.
    window: Option<usize>,
}

impl<'b, T: Element> KvCache<'b, T> {
    /// Elements of `T` the self-attention cache needs: 2 · layers · kv_heads · dim_head ·
    /// capacity, with a layer per run of a self-attention sublayer (`depth` by default).
    pub const fn elements(cfg: &DecoderConfig, capacity: usize) -> usize {
        Self::layers_of(cfg.runs_of(Kind::Attention), cfg, capacity)
    }

    /// 2 · layers · kv_heads · dim_head · rows.
    const fn layers_of(layers: usize, cfg: &DecoderConfig, rows: usize) -> usize {
        2usize
            .saturating_mul(layers)
            .saturating_mul(cfg.kv_dim())
            .saturating_mul(rows)
    }

    /// Bytes the self-attention cache needs (`elements · size_of::<T>()`).
    pub const fn bytes(cfg: &DecoderConfig, capacity: usize) -> usize {
        Self::elements(cfg, capacity).saturating_mul(core::mem::size_of::<T>())
    }

    /// Elements of `T` the cross-attention context cache needs for up to `max_context` context
    /// rows: 2 · layers · kv_heads · dim_head · max_context, a layer per run of a
    /// cross-attention sublayer (`depth` by default, 0 without `cross_attend`).
    pub const fn context_elements(cfg: &DecoderConfig, max_context: usize) -> usize {
        Self::layers_of(cfg.runs_of(Kind::Cross), cfg, max_context)
    }

    /// Bytes of the context cache.
    pub const fn context_bytes(cfg: &DecoderConfig, max_context: usize) -> usize {
        Self::context_elements(cfg, max_context).saturating_mul(core::mem::size_of::<T>())
    }

    /// A cache for `capacity` positions of a model without cross-attention. The first
    /// [`Self::elements`] elements of `buf` are used.
    ///
    /// # Errors
    /// [`Error::Config`] if the configuration is invalid, [`Error::BufferTooSmall`], or
    /// [`Error::BufferTooSmall`] with [`Buffer::ContextCache`] if the model cross-attends
    /// (use [`Self::with_context`]).
    pub fn new(cfg: &DecoderConfig, capacity: usize, buf: &'b mut [T]) -> Result<Self, Error> {
        Self::with_context(cfg, capacity, buf, 0, &mut [])
    }

    /// A cache for `capacity` positions and a cross-attention context of up to `max_context`
    /// rows. Contents of the buffers are never read before being written.
    ///
    /// # Errors
    /// [`Error::Config`], or [`Error::BufferTooSmall`] naming the buffer, with needed and
    /// available elements. A cross-attending model needs `max_context >= 1`.
    pub fn with_context(
        cfg: &DecoderConfig,
        capacity: usize,
        buf: &'b mut [T],
        max_context: usize,
        context_buf: &'b mut [T],
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let needed = Self::elements(cfg, capacity);
        if buf.len() < needed || needed == usize::MAX {
            return Err(Error::BufferTooSmall {
                buffer: Buffer::KvCache,
                needed,
                available: buf.len(),
            });
        }
        let ctx_needed = Self::context_elements(cfg, max_context);
        let ctx_minimum = Self::context_elements(cfg, max_context.max(1));
        if context_buf.len() < ctx_minimum || ctx_needed == usize::MAX {
            return Err(Error::BufferTooSmall {
                buffer: Buffer::ContextCache,
                needed: ctx_minimum,
                available: context_buf.len(),
            });
        }
        let (keys, rest) = buf[..needed].split_at_mut(needed / 2);
        let (ctx_keys, ctx_rest) = context_buf[..ctx_needed].split_at_mut(ctx_needed / 2);
        Ok(Self {
            keys,
            values: rest,
            ctx_keys,
            ctx_values: ctx_rest,
            layers: cfg.runs_of(Kind::Attention),
            context_layers: cfg.runs_of(Kind::Cross),
            kv_heads: cfg.kv_heads(),
            dim_head: cfg.attn_dim_head,
            capacity,
            len: 0,
            max_context: if cfg.cross_attend { max_context } else { 0 },
            context_len: None,
            cross_attend: cfg.cross_attend,
            window: None,
        })
    }

    /// A rolling cache for a model with local attention (`attn_max_attend_past` = N): `capacity`
    /// rows (at least N + 1) that hold the last positions, position p in row p mod capacity, so
    /// that positions go on for ever: [`Self::len`] counts every position seen, and a call never
    /// fails for lack of room. The outputs are those of the full pass, since no query sees a key
    /// more than N positions back. A call of n positions runs in chunks of at most
    /// capacity − N (the keys of a chunk must not overwrite the window of its first position),
    /// so a capacity of N + P lets a scratch of P positions run whole chunks. Buffers and sizes
    /// as [`Self::with_context`] (`max_context` 0 and an empty buffer without cross-attention).
    ///
    /// # Errors
    /// [`Error::RollingCache`] if the model has no `attn_max_attend_past` or `capacity` is N or
    /// less; otherwise as [`Self::with_context`].
    pub fn rolling(
        cfg: &DecoderConfig,
        capacity: usize,
        buf: &'b mut [T],
        max_context: usize,
        context_buf: &'b mut [T],
    ) -> Result<Self, Error> {
        let window = cfg.attn_max_attend_past;
        match window {
            Some(w) if capacity > w => {}
            _ => return Err(Error::RollingCache { window, capacity }),
        }
        let mut cache = Self::with_context(cfg, capacity, buf, max_context, context_buf)?;
        cache.window = window;
        Ok(cache)
    }

    /// Whether this is a rolling cache ([`Self::rolling`]).
    pub fn is_rolling(&self) -> bool {
        self.window.is_some()
    }

    /// Positions cached (on a rolling cache: every position seen, of which the last
    /// [`Self::capacity`] are held).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Maximum positions held (the ring's rows on a rolling cache).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// The length the cache can reach: its capacity, or without end (`usize::MAX`) when rolling.
    pub fn max_len(&self) -> usize {
        if self.window.is_some() {
            usize::MAX
        } else {
            self.capacity
        }
    }
    /// Positions that can still be appended.
    pub fn remaining(&self) -> usize {
        self.max_len() - self.len
    }
    /// Positions a call may append before the next must wait for them to be cached: all of
    /// them, or capacity − N on a rolling cache (the rows a chunk's keys may overwrite without
    /// touching the window of its first position).
    pub(crate) fn chunk_limit(&self) -> usize {
        match self.window {
            Some(w) => self.capacity - w,
            None => usize::MAX,
        }
    }
    /// Maximum context rows.
    pub fn max_context(&self) -> usize {
        self.max_context
    }
    /// Context rows whose keys and values are cached, once the first call has computed them.
    pub fn context_len(&self) -> Option<usize> {
        self.context_len
    }

    /// Rewinds to position 0 and forgets the context, so the next call computes it again. O(1).
    pub fn reset(&mut self) {
        self.len = 0;
        self.context_len = None;
    }

    /// Rewinds to position `len` (undo, speculation), keeping the context. O(1): rows past
    /// `len` are simply overwritten by the next calls.
    ///
    /// # Errors
    /// [`Error::TruncateBeyondLength`] if `len` is more than is cached;
    /// [`Error::TruncateBeyondWindow`] on a rolling cache if the rows of the window before `len`
    /// were overwritten since. Nothing changes.
    pub fn truncate(&mut self, len: usize) -> Result<(), Error> {
        if len > self.len {
            return Err(Error::TruncateBeyondLength {
                requested: len,
                len: self.len,
            });
        }
        if let Some(w) = self.window {
            // Positions len − N .. len must still be in the ring, which holds the last
            // `capacity` ones (or from 0, back to which a reset is always possible).
            let oldest = self.len.saturating_sub(self.capacity);
            if len != 0 && len.saturating_sub(w) < oldest {
                return Err(Error::TruncateBeyondWindow {
                    requested: len,
                    oldest: oldest.saturating_add(w),
                });
            }
        }
        self.len = len;
        Ok(())
    }

    /// Gives back positions up to `len` after a call that failed before writing anything
    /// (the rows are as they were), undoing a [`Self::truncate`] made for that call.
    pub(crate) fn restore_len(&mut self, len: usize) {
        debug_assert!(len <= self.max_len());
        self.len = len.min(self.max_len());
    }

    /// Whether this cache was built for the shape of `cfg`.
    pub(crate) fn fits(&self, cfg: &DecoderConfig) -> bool {
        self.layers == cfg.runs_of(Kind::Attention)
            && self.context_layers == cfg.runs_of(Kind::Cross)
            && self.kv_heads == cfg.kv_heads()
            && self.dim_head == cfg.attn_dim_head
            && self.cross_attend == cfg.cross_attend
    }

    /// Checks that `n` more positions fit.
    pub(crate) fn check_room(&self, n: usize) -> Result<(), Error> {
        if n > self.remaining() {
            return Err(Error::CacheFull {
                len: self.len,
                requested: n,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Advances the position index after `n` positions were written.
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.remaining());
        self.len = self.len.saturating_add(n);
    }

    /// The row that holds position `pos`.
    fn row(&self, pos: usize) -> usize {
        if self.window.is_some() {
            pos % self.capacity.max(1)
        } else {
            pos
        }
    }

    fn offset(&self, rows: usize, layer: usize, head: usize) -> usize {
        (layer * self.kv_heads + head) * rows * self.dim_head
    }

    /// Writes one position's keys and values (`[kv_heads · dim_head]` each) of `layer` at `pos`.
    pub(crate) fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let d = self.dim_head;
        let row = self.row(pos);
        for h in 0..self.kv_heads {
            let at = self.offset(self.capacity, layer, h) + row * d;
            let (k, v) = (part(k, h * d, d), part(v, h * d, d));
            store_row(part_mut(self.keys, at, d), k);
            store_row(part_mut(self.values, at, d), v);
        }
    }

    /// Keys and values of kv head `head` in `layer`, positions `0..n`.
    pub(crate) fn head(&self, layer: usize, head: usize, n: usize) -> (&[T], &[T]) {
        let at = self.offset(self.capacity, layer, head);
        let len = n * self.dim_head;
        (part(self.keys, at, len), part(self.values, at, len))
    }

    /// The key and value of kv head `head` in `layer` at position `pos` (held: on a rolling
    /// cache, one of the last `capacity`).
    pub(crate) fn key_row(&self, layer: usize, head: usize, pos: usize) -> (&[T], &[T]) {
        let at = self.offset(self.capacity, layer, head) + self.row(pos) * self.dim_head;
        let d = self.dim_head;
        (part(self.keys, at, d), part(self.values, at, d))
    }

    /// Context row `row` of kv head `head` in `layer`.
    pub(crate) fn context_row(&self, layer: usize, head: usize, row: usize) -> (&[T], &[T]) {
        let at = self.offset(self.max_context, layer, head) + row * self.dim_head;
        let d = self.dim_head;
        (part(self.ctx_keys, at, d), part(self.ctx_values, at, d))
    }

    /// Writes the context row `row` of `layer`.
    pub(crate) fn store_context(&mut self, layer: usize, row: usize, k: &[f32], v: &[f32]) {
        let d = self.dim_head;
        for h in 0..self.kv_heads {
            let at = self.offset(self.max_context, layer, h) + row * d;
            let (k, v) = (part(k, h * d, d), part(v, h * d, d));
            store_row(part_mut(self.ctx_keys, at, d), k);
            store_row(part_mut(self.ctx_values, at, d), v);
        }
    }

    /// Marks the context as computed.
    pub(crate) fn set_context_len(&mut self, rows: usize) {
        self.context_len = Some(rows);
    }

    /// Context keys and values of kv head `head` in `layer`, all cached rows.
    pub(crate) fn context_head(&self, layer: usize, head: usize) -> (&[T], &[T]) {
        let at = self.offset(self.max_context, layer, head);
        let len = self.context_len.unwrap_or(0) * self.dim_head;
        (part(self.ctx_keys, at, len), part(self.ctx_values, at, len))
    }

    /// Fills every element not in use with NaN: positions at and after `len` (on a rolling
    /// cache: every row but those of the window before `len`, the only ones a query can still
    /// see), and context rows past the cached context. Tests use it to show that nothing stale
    /// is ever read.
    #[doc(hidden)]
    pub fn poison_unused(&mut self) {
        let d = self.dim_head;
        let ctx = self.context_len.unwrap_or(0);
        for layer in 0..self.layers {
            for h in 0..self.kv_heads {
                let at = self.offset(self.capacity, layer, h);
                for row in 0..self.capacity {
                    let used = match self.window {
                        // Position of this row among the last `capacity`, if any.
                        Some(w) => {
                            (self.len.saturating_sub(w)..self.len).any(|p| p % self.capacity == row)
                        }
                        None => row < self.len,
                    };
                    if !used {
                        self.keys[at + row * d..at + (row + 1) * d].fill(T::NAN);
                        self.values[at + row * d..at + (row + 1) * d].fill(T::NAN);
                    }
                }
            }
        }
        for layer in 0..self.context_layers {
            for h in 0..self.kv_heads {
                let at = self.offset(self.max_context, layer, h);
                self.ctx_keys[at + ctx * d..at + self.max_context * d].fill(T::NAN);
                self.ctx_values[at + ctx * d..at + self.max_context * d].fill(T::NAN);
            }
        }
    }
}

/// `s[at..at + len]`. Every row of the cache is inside its buffers (`KvCache::new` checks their
/// lengths against the configuration), so this is that slice; said without a panic path (issue
/// 28): an out-of-range request would be empty.
fn part<T>(s: &[T], at: usize, len: usize) -> &[T] {
    s.get(at..).and_then(|s| s.get(..len)).unwrap_or(&[])
}

/// `s[at..at + len]`, mutable: as [`part`].
fn part_mut<T>(s: &mut [T], at: usize, len: usize) -> &mut [T] {
    s.get_mut(at..)
        .and_then(|s| s.get_mut(..len))
        .unwrap_or(&mut [])
}

fn store_row<T: Element>(dst: &mut [T], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = T::from_f32(*s);
    }
}
