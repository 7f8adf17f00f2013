//! The x-transformers `Decoder` forward pass, top to bottom, over the KV cache.
//!
//! Every step names the x-transformers line it reproduces (`xt:N` = `x_transformers.py`,
//! `at:N` = `attend.py`, version 2.31.10; see `docs/x-transformers.md`).

use crate::cache::KvCache;
use crate::config::DecoderConfig;
use crate::error::{Buffer, Error};
use crate::kernels;
use crate::masks::{zero_masked_rows, Masks};
use crate::packing::{self, Arenas, Matrix, Packed};
use crate::parallel::Parallel;
use crate::scratch::{Buffers, Scratch};
use crate::tensor::{Element, Tensor, TensorSource};
mod general;
mod ops;

use crate::layers::Kind;
use crate::weights::{AttentionWeights, DecoderWeights};
use general::{Earlier, General, Keys};
use ops::{value_rmsnorm, Heads};

/// An x-transformers `Decoder` over borrowed weights: takes embeddings `x` (positions × dim)
/// and an optional context (rows × dim_context), returns hidden states after the final norm.
///
/// `MAX_DEPTH` bounds the number of blocks (the weight table is a fixed-capacity array).
#[derive(Clone, Debug)]
pub struct Decoder<'w, const MAX_DEPTH: usize = 16> {
    config: DecoderConfig,
    weights: DecoderWeights<'w, MAX_DEPTH>,
    /// The arenas the blocks' matrices are packed into ([`Self::with_prefill_panels`],
    /// [`Self::with_int8_panels`]), if any: two references, each matrix's place computed from
    /// the configuration.
    panels: Arenas<'w>,
    /// Whether products with Q8_0 weights take the int8 path ([`Self::with_int8_activations`]).
    int8: bool,
    /// The executor a step's products are split over ([`Self::with_parallel`]), if any.
    parallel: Option<Executor<'w>>,
}

/// A caller's [`Parallel`] executor, held by reference (feature `parallel`).
#[cfg(feature = "parallel")]
#[derive(Clone, Copy)]
pub(crate) struct Executor<'p>(pub &'p dyn Parallel);

/// Without the feature `parallel` there is no executor: the field holding one is always `None`
/// and the splitting code is not compiled in (a firmware image is the size it was).
#[cfg(not(feature = "parallel"))]
#[derive(Clone, Copy)]
pub(crate) struct Executor<'p>(core::marker::PhantomData<&'p ()>);

impl core::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        #[cfg(feature = "parallel")]
        return write!(f, "Parallel({} parts)", self.0.parts());
        #[cfg(not(feature = "parallel"))]
        f.write_str("Parallel")
    }
}

impl<'w, const MAX_DEPTH: usize> Decoder<'w, MAX_DEPTH> {
    /// A decoder whose weights are looked up in `source` under a raw `Decoder`'s `state_dict` keys.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::DepthExceedsCapacity`],
    /// [`Error::MissingWeight`] and [`Error::WeightShape`] naming the offending key.
    pub fn from_source<S: TensorSource<'w>>(
        config: DecoderConfig,
        source: &S,
    ) -> Result<Self, Error> {
        Self::from_source_prefixed(config, source, "")
    }

    /// As [`Self::from_source`], with keys prefixed (`"attn_layers."` under a wrapper).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::DepthExceedsCapacity`],
    /// [`Error::MissingWeight`] and [`Error::WeightShape`] naming the offending key.
    pub fn from_source_prefixed<S: TensorSource<'w>>(
        config: DecoderConfig,
        source: &S,
        prefix: &'static str,
    ) -> Result<Self, Error> {
        // Filled in place (`Self::load`): the weight table is not built on the stack and then
        // moved into the decoder.
        let mut decoder = Self::empty(config);
        decoder.load(source, prefix)?;
        Ok(decoder)
    }

    /// A decoder with this configuration and no weights yet: what [`Self::load`] fills in
    /// place, where the decoder (or the wrapper or model holding it) already lives.
    pub(crate) const fn empty(config: DecoderConfig) -> Self {
        Self {
            config,
            weights: DecoderWeights::empty(),
            panels: Arenas::empty(),
            int8: false,
            parallel: None,
        }
    }

    /// Makes this decoder [`Self::empty`] for `config` in place (field by field: no decoder-sized
    /// temporary on the stack).
    pub(crate) fn reset(&mut self, config: DecoderConfig) {
        let Decoder {
            config: c,
            weights,
            panels,
            int8,
            parallel,
        } = self;
        *c = config;
        weights.reset();
        *panels = Arenas::empty();
        *int8 = false;
        *parallel = None;
    }

    /// Looks up the weights of [`Self::empty`] in `source` (keys prefixed with `prefix`), in
    /// place ([`DecoderWeights::load`]).
    ///
    /// # Errors
    /// As [`Self::from_source_prefixed`].
    pub(crate) fn load<S: TensorSource<'w>>(
        &mut self,
        source: &S,
        prefix: &'static str,
    ) -> Result<(), Error> {
        let config = self.config;
        self.weights.load(&config, source, prefix)
    }

    /// f32 elements of the arena that [`Self::with_prefill_panels`] needs
    /// ([`packing::prefill_panels_len`] of the configuration).
    pub const fn prefill_panels_len(&self) -> usize {
        packing::prefill_panels_len(&self.config)
    }

    /// This decoder with the matrices that a chunk of positions is multiplied by packed into
    /// `arena` (f32 copies in panels, `crate::packing`), so that prefill runs the matrix-matrix
    /// product over panels (faster with every SIMD set). Decoding one position keeps reading the
    /// weights as stored. The results agree with the unpacked pass to f32 rounding (the sums run
    /// in another order). The decoder returned borrows the arena; `self` is left as it is.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `arena` holds fewer than [`Self::prefill_panels_len`]
    /// values.
    pub fn with_prefill_panels<'a>(
        &self,
        arena: &'a mut [f32],
    ) -> Result<Decoder<'a, MAX_DEPTH>, Error>
    where
        'w: 'a,
    {
        let f32 = packing::pack(&self.config, &self.weights.blocks, arena)?;
        Ok(Decoder {
            config: self.config,
            weights: self.weights.clone(),
            panels: Arenas {
                f32: Some(f32),
                int8: None,
            },
            int8: self.int8,
            parallel: self.parallel,
        })
    }

    /// Bytes of the arena that [`Self::with_int8_panels`] needs ([`packing::int8_panels_len`] of
    /// the configuration: as if every matrix were Q8_0).
    pub const fn int8_panels_len(&self) -> usize {
        packing::int8_panels_len(&self.config)
    }

    /// This decoder on the int8 path ([`Self::with_int8_activations`]) with its Q8_0 matrices
    /// packed into int8 panels in `arena` ([`kernels::Int8Panels`]: 16 rows to the lanes of a
    /// vector, as many bytes as the weights), so that every product by them, decoding one
    /// position included, runs [`kernels::matmul_int8_panels`]: a block is scaled once for 16 rows,
    /// and in a chunk each weight load serves several positions. The numbers are the int8
    /// path's (up to the rounding of each block's `d_w·d_x·sum`). Matrices of other types keep
    /// any f32 prefill panels packed before. The decoder returned borrows the arena; `self` is
    /// left as it is.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `arena` holds fewer than [`Self::int8_panels_len`] bytes.
    pub fn with_int8_panels<'a>(&self, arena: &'a mut [u8]) -> Result<Decoder<'a, MAX_DEPTH>, Error>
    where
        'w: 'a,
    {
        let int8 = packing::pack_int8(&self.config, &self.weights.blocks, arena)?;
        Ok(Decoder {
            config: self.config,
            weights: self.weights.clone(),
            panels: Arenas {
                f32: self.panels.f32,
                int8: Some(int8),
            },
            int8: true,
            parallel: self.parallel,
        })
    }

    /// This decoder with every product by Q8_0 weights on the int8 path (`on`), or in f32 (the
    /// default): each input row is quantised to Q8_0 blocks of 32 (`d = max|x| / 127`, as
    /// ggml's `q8_0`) and multiplied with integer dot products ([`kernels::matvec_int8`]: AVX-512
    /// VNNI, AVX-VNNI, AVX2, NEON, simd128 or portable). Decoding Q8_0 weights gets faster (`docs/performance.md`), at
    /// the price of the activations' quantisation error (`docs/accuracy.md`). It applies to prefill too: several positions at a time over the weights as stored
    /// ([`kernels::matmul_int8`], each position's numbers those of one position, so
    /// step-wise still equals full), and it takes precedence over prefill panels for Q8_0
    /// matrices. Other weight types
    /// are not affected.
    pub fn with_int8_activations(mut self, on: bool) -> Self {
        self.set_int8_activations(on);
        self
    }

    /// [`Self::with_int8_activations`] in place: for a decoder that lives in a `static` (built
    /// by `from_source_in` or `Model::from_safetensors_in`), which moving would copy through
    /// the stack.
    pub fn set_int8_activations(&mut self, on: bool) {
        self.int8 = on;
    }

    /// The executor a step's work splits over, if any (never without the feature `parallel`).
    #[inline(always)]
    pub(super) fn executor(&self) -> Option<&'w dyn Parallel> {
        #[cfg(feature = "parallel")]
        return self.parallel.map(|p| p.0);
        #[cfg(not(feature = "parallel"))]
        None
    }

    /// This decoder with its work split over `executor`'s parts ([`crate::parallel`]): a
    /// one-position step's matrix-vector products by rows (every weight matrix, and a
    /// wrapper's logits, of at least 256 rows, in parts of whole 16-row groups, int8 panels
    /// included) and its attention over a long cache by heads; a chunk of positions (a prompt,
    /// a context) by positions, in every matrix-matrix product (parts of at least 16
    /// positions) and in attention (parts of at least 8). The numbers are those of one thread,
    /// bit for bit. The decoder returned borrows the executor;
    /// `self` is left as it is. Feature `parallel` (no dependency; `rayon` implies it).
    #[cfg(feature = "parallel")]
    pub fn with_parallel<'p>(&self, executor: &'p dyn Parallel) -> Decoder<'p, MAX_DEPTH>
    where
        'w: 'p,
    {
        Decoder {
            config: self.config,
            weights: self.weights.clone(),
            panels: self.panels,
            int8: self.int8,
            parallel: Some(Executor(executor)),
        }
    }

    /// Whether products by Q8_0 weights take the int8 path ([`Self::with_int8_activations`]).
    pub fn int8_activations(&self) -> bool {
        self.int8
    }

    /// Whether any matrix is packed into f32 prefill panels ([`Self::with_prefill_panels`]).
    pub fn has_prefill_panels(&self) -> bool {
        self.has_packed(|p| matches!(p, Packed::F32(_)))
    }

    /// Whether any matrix is packed into int8 panels ([`Self::with_int8_panels`]).
    pub fn has_int8_panels(&self) -> bool {
        self.has_packed(|p| matches!(p, Packed::Int8(_)))
    }

    /// Whether a packed matrix satisfies `f`.
    fn has_packed(&self, f: impl Fn(&Packed<'_>) -> bool) -> bool {
        self.weights.blocks.iter().enumerate().any(|(b, block)| {
            packing::MATRICES.iter().any(|&m| {
                m.of(block)
                    .and_then(|w| self.packed(b, m, w))
                    .is_some_and(|p| f(&p))
            })
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The weights.
    pub(crate) fn weights(&self) -> &DecoderWeights<'w, MAX_DEPTH> {
        &self.weights
    }

    /// Runs `x` (n × dim, row-major) through the decoder at positions `cache.len()..+n`,
    /// appends its keys and values to the cache and writes the n hidden states to `out`.
    ///
    /// A cross-attending model computes the context's keys and values on the first call (the
    /// cache has no context yet) and reuses them afterwards; like x-transformers, a context
    /// given on later calls is ignored (`xt:3500-3501`). [`KvCache::reset`] forgets it.
    ///
    /// Chunking is invisible: `forward(a ++ b)` equals `forward(a)` then `forward(b)` (to
    /// rounding), and inputs longer than the scratch's `max_positions` run in chunks.
    ///
    /// # Errors
    /// [`Error::BufferLength`] if `x` is not whole rows or `out` differs in length from `x`,
    /// [`Error::EmptyInput`], [`Error::CacheFull`], [`Error::ContextRequired`],
    /// [`Error::ContextNotExpected`], [`Error::ContextTooLong`], [`Error::ConfigMismatch`].
    /// On error nothing is written: not the cache, not `out`.
    pub fn forward<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        self.forward_masked(cache, scratch, x, context, Masks::NONE, out)
    }

    /// One position: [`Self::forward`] with a single row `x` (dim) and `out` (dim).
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn step<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        if x.len() != self.config.dim {
            return Err(Error::BufferLength {
                buffer: Buffer::Input,
                expected: self.config.dim,
                found: x.len(),
            });
        }
        self.forward(cache, scratch, x, context, out)
    }

    /// [`Self::forward`] with padding masks ([`Masks`]): `masks.mask` has an entry for every
    /// position `0..cache.len() + n` (those cached before, as given when they were cached, then
    /// the call's own), `masks.context_mask` one per context row. Masked keys are excluded from
    /// attention and the attention outputs at masked positions are zeroed, as x-transformers'
    /// full pass with `mask` / `context_mask` computes them (`docs/x-transformers.md` §3.13), so
    /// that decoding step by step after a left-padded prompt equals the full pass.
    ///
    /// # Errors
    /// As [`Self::forward`], and [`Error::BufferLength`] with [`Buffer::Mask`] or
    /// [`Buffer::ContextMask`] for a mask of the wrong length, [`Error::ContextNotExpected`] for
    /// a context mask given to a model that does not cross-attend. On error nothing is written.
    pub fn forward_masked<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let dim = self.config.dim;
        if !x.len().is_multiple_of(dim) {
            return Err(Error::BufferLength {
                buffer: Buffer::Input,
                expected: dim,
                found: x.len(),
            });
        }
        if out.len() != x.len() {
            return Err(Error::BufferLength {
                buffer: Buffer::Output,
                expected: x.len(),
                found: out.len(),
            });
        }
        self.run_masked(
            cache,
            scratch,
            x.len() / dim,
            context,
            masks,
            0,
            true,
            |start, rows| {
                rows.copy_from_slice(&x[start * dim..start * dim + rows.len()]);
                Ok(())
            },
            |start, rows| {
                out[start * dim..start * dim + rows.len()].copy_from_slice(rows);
                Ok(())
            },
        )
    }

    /// The number of context rows a call's context mask must cover: the cached context's, or
    /// the given context's; `None` for a model that does not cross-attend.
    fn context_rows<K: Element>(
        &self,
        cache: &KvCache<'_, K>,
        context: Option<&[f32]>,
    ) -> Option<usize> {
        if !self.config.cross_attend {
            return None;
        }
        cache
            .context_len()
            .or_else(|| context.map(|c| c.len() / self.config.dim_context().max(1)))
    }

    /// Checks everything a call needs before anything is written.
    fn validate<K: Element>(
        &self,
        cache: &KvCache<'_, K>,
        scratch: &Scratch<'_>,
        n: usize,
        context: Option<&[f32]>,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        if !scratch.fits(cfg) {
            return Err(Error::ConfigMismatch(Buffer::Scratch));
        }
        if !cache.fits(cfg) {
            return Err(Error::ConfigMismatch(Buffer::KvCache));
        }
        if n == 0 {
            return Err(Error::EmptyInput);
        }
        cache.check_room(n)?;
        if !cfg.cross_attend {
            if context.is_some() {
                return Err(Error::ContextNotExpected);
            }
        } else if cache.context_len().is_none() {
            let c = context.ok_or(Error::ContextRequired)?;
            let w = cfg.dim_context();
            if c.is_empty() || c.len() % w != 0 {
                return Err(Error::BufferLength {
                    buffer: Buffer::Context,
                    expected: w,
                    found: c.len(),
                });
            }
            if c.len() / w > cache.max_context() {
                return Err(Error::ContextTooLong {
                    rows: c.len() / w,
                    capacity: cache.max_context(),
                });
            }
        }
        Ok(())
    }

    /// The forward pass shared by the decoder, the encoder and the wrappers: validates, then for
    /// each chunk of positions lets `fill` write the input rows into the residual stream, runs
    /// every block, and hands the final-normed rows to `emit` (both get the chunk's start
    /// index); with padding masks ([`Self::forward_masked`]), which do not cover the first
    /// `prefix` positions of the cache (a wrapper's memory tokens: always real); `causal` false
    /// makes the self-attention bidirectional (an `Encoder`: the caller runs the window in one
    /// chunk).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_masked<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        n: usize,
        context: Option<&[f32]>,
        masks: Masks<'_>,
        prefix: usize,
        causal: bool,
        mut fill: impl FnMut(usize, &mut [f32]) -> Result<(), Error>,
        mut emit: impl FnMut(usize, &[f32]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.validate(cache, scratch, n, context)?;
        masks.validate(
            cache.len().saturating_add(n).saturating_sub(prefix),
            self.context_rows(cache, context),
        )?;
        // A rolling cache takes at most capacity − N positions at once (`KvCache::rolling`).
        let chunk = scratch.max_positions().min(cache.chunk_limit());
        let mut s = scratch.buffers();
        if self.config.cross_attend && cache.context_len().is_none() {
            if let Some(c) = context {
                self.encode_context(cache, &mut s, chunk, c)?;
            }
        }
        self.fill_inv_freq(s.inv_freq)?;
        let dim = self.config.dim;
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            fill(start, ops::rows_of(s.x, len * dim)?)?;
            self.forward_chunk(cache, &mut s, len, masks, prefix, causal)?;
            emit(start, ops::rows_of(s.xb, len * dim)?)?;
            start += len;
        }
        Ok(())
    }

    /// Cross-attention keys and values of the context, once (`xt:2341, 2448-2457`): K = c·W_kᵀ,
    /// V = c·W_vᵀ from the raw (un-normed) context rows, `chunk` rows (the scratch's positions)
    /// at a time, so that a packed `to_k`/`to_v` runs the matrix-matrix product.
    fn encode_context<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        s: &mut Buffers<'_>,
        chunk: usize,
        context: &[f32],
    ) -> Result<(), Error> {
        let (w, kv) = (self.config.dim_context(), self.config.kv_dim());
        // Each run of a cross-attention has its context layer, in order.
        let runs = self.weights.blocks.iter().enumerate();
        let crosses = runs.filter_map(|(b, block)| Some((b, block.cross.as_ref()?)));
        for (layer, (b, cross)) in crosses.enumerate() {
            for (i, c) in context.chunks(chunk.saturating_mul(w).max(1)).enumerate() {
                let n = c.len() / w;
                let (k, v) = (&mut s.k[..n * kv], &mut s.v[..n * kv]);
                self.linear(
                    cross.to_k,
                    self.packed(b, Matrix::CrossK, cross.to_k),
                    w,
                    c,
                    k,
                )?;
                self.linear(
                    cross.to_v,
                    self.packed(b, Matrix::CrossV, cross.to_v),
                    w,
                    c,
                    v,
                )?;
                self.qk_norm(k, self.config.kv_heads(), cross.qk_norm_k_scale)?;
                value_rmsnorm(v, self.config.attn_dim_head, cross.value_rmsnorm);
                for (r, (kr, vr)) in k.chunks_exact(kv).zip(v.chunks_exact(kv)).enumerate() {
                    cache.store_context(layer, i * chunk + r, kr, vr);
                }
            }
        }
        cache.set_context_len(context.len() / w);
        Ok(())
    }

    /// A sublayer's memory keys and values (`attn_num_mem_kv`, `xt:2510-2518`) in f32 in `buf`,
    /// the keys qk-normed as x-transformers norms them (`l2norm` by groups, then the key gains);
    /// empty without them.
    fn mem_keys<'b>(
        &self,
        w: &AttentionWeights<'_>,
        buf: &'b mut [f32],
    ) -> Result<(&'b [f32], &'b [f32]), Error> {
        let Some((mk, mv)) = w.mem_kv else {
            return Ok((&[], &[]));
        };
        let (keys, values) = buf.split_at_mut(buf.len() / 2);
        kernels::load(keys, mk)?;
        kernels::load(values, mv)?;
        if self.config.attn_qk_norm {
            // [H_kv, M, d]: head j's M rows, each normed and times head j's gains.
            let d = self.config.attn_dim_head.max(1); // (validated: > 0)
            let rows = self.config.attn_num_mem_kv;
            for (j, head) in keys.chunks_exact_mut((rows * d).max(1)).enumerate() {
                for row in head.chunks_exact_mut(d) {
                    ops::qk_l2norm(row, self.config.attn_qk_norm_groups);
                    if let Some(g) = w.qk_norm_k_scale {
                        for (i, v) in row.iter_mut().enumerate() {
                            *v *= g.get(j * d + i).unwrap_or(1.0);
                        }
                    }
                }
            }
        }
        Ok((keys, values))
    }

    /// inv_freq[m] = 1 / base^(2m/r), base = 10000 · rescale^(r/(r−2)), in f32 like torch
    /// (`xt:849-852`); the file's `rotary_pos_emb.inv_freq` buffer is used when present.
    fn fill_inv_freq(&self, inv_freq: &mut [f32]) -> Result<(), Error> {
        let r = self.config.rotary_dim();
        match self.weights.inv_freq {
            Some(t) => kernels::load(inv_freq, t)?,
            None if r > 0 => {
                let rescale = self.config.rotary_base_rescale_factor;
                let base = (10000.0 * libm::pow(rescale, r as f64 / (r as f64 - 2.0))) as f32;
                for (m, f) in inv_freq.iter_mut().enumerate() {
                    *f = 1.0 / libm::powf(base, (2 * m) as f32 / r as f32);
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Rotary tables for positions pos0..pos0+n: φ = (p·inv_freq[m]) / interpolation_factor in f32
    /// (`xt:876-881`).
    fn fill_rotary(&self, s: &mut Buffers<'_>, pos0: usize, n: usize) {
        let half = self.config.rotary_dim() / 2;
        let interp = self.config.rotary_interpolation_factor as f32;
        if half == 0 {
            return;
        }
        // (The scratch holds n rows of `half` in each table, and `half` frequencies.)
        let rows = s
            .cos
            .chunks_exact_mut(half)
            .zip(s.sin.chunks_exact_mut(half));
        for (i, (cos, sin)) in rows.take(n).enumerate() {
            let p = (pos0 + i) as f32;
            for ((c, sn), f) in cos.iter_mut().zip(sin.iter_mut()).zip(s.inv_freq.iter()) {
                let angle = (p * f) / interp;
                *c = libm::cosf(angle);
                *sn = libm::sinf(angle);
            }
        }
    }

    /// All blocks over the `n` positions in `s.x`, then the final norm into `s.xb`. The shapes
    /// were validated before, so the kernels' shape errors cannot occur here.
    // Not inlined: its frame (the forward pass) and the loader's are never live together, and
    // a microcontroller's stack peak is the larger of the two instead of their sum.
    #[inline(never)]
    fn forward_chunk<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        s: &mut Buffers<'_>,
        n: usize,
        masks: Masks<'_>,
        prefix: usize,
        causal: bool,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let (dim, qd, kvd, d) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.attn_dim_head);
        let half = cfg.rotary_dim() / 2;
        let heads = Heads::new(cfg);
        // The general path (`general.rs`) for what the SIMD kernel does not take.
        let general = cfg.general_attention() || masks.mask.is_some();
        let pos0 = cache.len();
        self.fill_rotary(s, pos0, n);
        // The room per run of the queries kept for residual attention (`general.rs`).
        let stride = s.q.len();
        let x = ops::rows_of(s.x, n * dim)?;
        let xb = ops::rows_of(s.xb, n * dim)?;
        let xb2 = ops::rows_of(s.xb2, n * dim)?;
        let q = ops::rows_of(s.q, n * qd)?;
        let k = ops::rows_of(s.k, n * kvd)?;
        let v = ops::rows_of(s.v, n * kvd)?;
        let att = ops::rows_of(s.att, n * qd)?;

        // The cache layers of the next self- and cross-attention run (`crate::layers`).
        let (mut layer, mut context_layer) = (0, 0);
        // Residual attention keeps the cross-attention runs after the self-attention runs.
        let cross_base = if cfg.residual_attn {
            cfg.runs_of(Kind::Attention)
        } else {
            0
        };
        for (b, block) in self.weights.blocks.iter().enumerate() {
            // The block's packed matrices, if any (`linear` chooses which it reads).
            let p = |m: Matrix, w: Tensor<'_>| self.packed(b, m, w);
            // ---- macaron: the block's first feed-forward (xt:3009-3010), stored weights only
            if let Some(f0) = &block.ff_pre {
                self.feed_forward(f0, (None, None), x, xb, xb2, &mut s.hb[..], n)?;
            }
            // ---- self-attention 'a': x = x + to_out(attend(q, K, V))   (xt:3660-3717, 2297-2759)
            if let Some(a) = &block.attn {
                self.pre_norm(a.norm, x, xb)?;
                self.linear(a.to_q, p(Matrix::Q, a.to_q), dim, xb, q)?; // q = u·W_qᵀ, no bias (xt:2013)
                self.linear(a.to_k, p(Matrix::K, a.to_k), dim, xb, k)?;
                self.linear(a.to_v, p(Matrix::V, a.to_v), dim, xb, v)?;
                // add_value_residual: the first block keeps its values, the later ones lerp to
                // them, before qk norm and the value norm (xt:2410-2418).
                if cfg.add_value_residual {
                    let v0 = ops::rows_of(s.v0, n * kvd)?;
                    if layer == 0 {
                        ops::copy(v, v0)?;
                    } else {
                        self.value_residual(a, xb, v0, v, att)?;
                    }
                }
                // qk norm before rotary and before the keys are cached (xt:2422-2427, 2459).
                self.qk_norm(q, cfg.heads, a.qk_norm_q_scale)?;
                self.qk_norm(k, cfg.kv_heads(), a.qk_norm_k_scale)?;
                value_rmsnorm(v, d, a.value_rmsnorm); // before the values are cached (xt:2436)

                // qd, kvd, d > 0: validated; each of q, k, v is n rows of them, each table n
                // rows of `half`. Zipped by hand: `Zip` of `ChunksExact`s divides by their
                // sizes where not inlined.
                let (qd, kvd, d) = (qd.max(1), kvd.max(1), d.max(1));
                if half > 0 {
                    // Rotary on q and k, first r features in adjacent pairs (xt:2459-2482, 893-915).
                    let mut cos = ops::rows_of(s.cos, n * half)?.chunks_exact(half);
                    let mut sin = ops::rows_of(s.sin, n * half)?.chunks_exact(half);
                    let mut krows = k.chunks_exact_mut(kvd);
                    for qr in q.chunks_exact_mut(qd) {
                        let (Some(c), Some(sn), Some(kr)) = (cos.next(), sin.next(), krows.next())
                        else {
                            break;
                        };
                        qr.chunks_exact_mut(d)
                            .try_for_each(|h| kernels::rotary(h, c, sn))?;
                        kr.chunks_exact_mut(d)
                            .try_for_each(|h| kernels::rotary(h, c, sn))?;
                    }
                }
                let mut vrows = v.chunks_exact(kvd);
                for (i, kr) in k.chunks_exact(kvd).enumerate() {
                    let Some(vr) = vrows.next() else { break };
                    cache.store(layer, pos0 + i, kr, vr);
                }
                // Causal: position pos0+i sees keys 0..=pos0+i (at:179-180).
                if general {
                    // Padding masks (at:591-592, crate::masks) and the logit terms of
                    // `general.rs`, over the keys by position.
                    let mem = self.mem_keys(a, &mut s.mem[..])?;
                    let keys = Keys {
                        end: pos0 + n,
                        causal,
                        keep: masks.mask,
                        prefix,
                    };
                    // residual_attn: this run kept for the later ones, which add the logits of
                    // the earlier runs (0..layer).
                    let earlier = keep_run(
                        (s.earlier_q, s.earlier_mem),
                        stride,
                        (cfg.residual_attn, 0, layer),
                        q,
                        mem.0,
                        |r, j, p| cache.key_row(r, j, p).0,
                    );
                    General::new(cfg, true, mem, self.weights.xpos_scale).attend(
                        q,
                        att,
                        n,
                        keys,
                        |j, p| cache.key_row(layer, j, p),
                        earlier,
                    );
                } else {
                    let par = self.executor();
                    heads.attend(q, att, n, causal, par, |j| cache.head(layer, j, pos0 + n))?;
                }
                self.scale_and_gate(a, xb, att, q)?;
                self.project_out(a, a.to_out.and_then(|w| p(Matrix::Out, w)), att, xb2)?;
                // The attention output at masked positions is zeroed (xt:2751-2752).
                zero_masked_rows(xb2, dim, pos0, prefix, masks.mask);
                self.residual(&a.post, x, xb2, xb, &mut s.hb[..])?;
                layer += 1;
            }

            // ---- cross-attention 'c': q from the normed x, K/V of the raw context, no mask (xt:3233, 2341)
            if let Some(c) = &block.cross {
                self.pre_norm(c.norm, x, xb)?;
                self.linear(c.to_q, p(Matrix::CrossQ, c.to_q), dim, xb, q)?;
                self.qk_norm(q, cfg.heads, c.qk_norm_q_scale)?;
                if general || masks.context_mask.is_some() {
                    let mem = self.mem_keys(c, &mut s.mem[..])?;
                    let keys = Keys {
                        end: cache.context_len().unwrap_or(0),
                        causal: false,
                        keep: masks.context_mask,
                        prefix: 0,
                    };
                    // cross_residual_attn: as residual_attn, over the cross-attention runs.
                    let earlier = keep_run(
                        (s.earlier_q, s.earlier_mem),
                        stride,
                        (cfg.cross_residual_attn, cross_base, context_layer),
                        q,
                        mem.0,
                        |r, j, row| cache.context_row(r, j, row).0,
                    );
                    General::new(cfg, false, mem, None).attend(
                        q,
                        att,
                        n,
                        keys,
                        |j, r| cache.context_row(context_layer, j, r),
                        earlier,
                    );
                } else {
                    let par = self.executor();
                    heads.attend(q, att, n, false, par, |j| {
                        cache.context_head(context_layer, j)
                    })?;
                }
                self.scale_and_gate(c, xb, att, q)?;
                self.project_out(c, c.to_out.and_then(|w| p(Matrix::CrossOut, w)), att, xb2)?;
                zero_masked_rows(xb2, dim, pos0, prefix, masks.mask);
                self.residual(&c.post, x, xb2, xb, &mut s.hb[..])?;
                context_layer += 1;
            }

            // ---- feed-forward 'f' (xt:1763-1858)
            if let Some(f) = &block.ff {
                let ff_panels = (p(Matrix::FfProj, f.proj), p(Matrix::FfOut, f.out));
                self.feed_forward(f, ff_panels, x, xb, xb2, &mut s.hb[..], n)?;
            }
        }

        // ---- softclamp_output: x = tanh(x / v)·v (xt:3746-3747, 232-233)
        if cfg.softclamp_output {
            let v = cfg.softclamp_output_value as f32;
            x.iter_mut().for_each(|e| *e = libm::tanhf(*e / v) * v);
        }
        // ---- final norm (xt:3750), or none (post-norm, pre_norm_has_final_norm=False)
        if cfg.has_final_norm() {
            self.norm(self.weights.final_norm, x, xb)?;
        } else {
            xb.copy_from_slice(x);
        }
        cache.advance(n);
        Ok(())
    }
}

/// Residual attention's record of the attention runs of one kind: with `on`
/// (`residual_attn` for self-attention, `cross_residual_attn` for cross-attention), keeps run
/// `run`'s queries `q` and memory keys `mem` in slot `base + run` of the scratch's `queries`
/// (`stride` per slot) and `mem_keys`, and returns the earlier runs of that kind (slots `base`
/// onwards, `run` of them; none without `on`), whose logits this run adds.
fn keep_run<'e, F>(
    (queries, mem_keys): (&'e mut [f32], &'e mut [f32]),
    stride: usize,
    (on, base, run): (bool, usize, usize),
    q: &[f32],
    mem: &[f32],
    key: F,
) -> Earlier<'e, F> {
    let m = mem.len();
    let slot = base + run;
    if on {
        if let Some(dst) = queries.get_mut(slot * stride..slot * stride + q.len()) {
            dst.copy_from_slice(q);
        }
        if let Some(dst) = mem_keys.get_mut(slot * m..(slot + 1) * m) {
            dst.copy_from_slice(mem);
        }
    }
    Earlier {
        queries: queries.get(base * stride..).unwrap_or(&[]),
        stride,
        mem_keys: mem_keys.get(base * m..).unwrap_or(&[]),
        runs: if on { run } else { 0 },
        key,
    }
}
