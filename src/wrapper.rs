//! x-transformers' `TransformerWrapper`: token and absolute position embeddings in front of the
//! [`Decoder`], logits behind it (`xt:3974-4198, 4281-4295`).

use crate::cache::KvCache;
use crate::config::WrapperConfig;
use crate::decoder::Decoder;
use crate::error::{Buffer, Error};
use crate::kernels::Int8Panels;
use crate::masks::Masks;
use crate::packing::{self, Packed};
#[cfg(feature = "parallel")]
use crate::parallel::Parallel;
use crate::scratch::Scratch;
use crate::tensor::{Element, Tensor, TensorSource};
use crate::weights::WrapperWeights;

/// A decoder with token embeddings and logits: token ids in, logits out.
#[derive(Clone, Debug)]
pub struct TransformerWrapper<'w, const MAX_DEPTH: usize = 16> {
    config: WrapperConfig,
    decoder: Decoder<'w, MAX_DEPTH>,
    weights: WrapperWeights<'w>,
    /// The logits' Q8_0 matrix packed into int8 panels ([`Self::with_int8_panels`]).
    logits_panels: Option<Int8Panels<'w>>,
}

impl<'w, const MAX_DEPTH: usize> TransformerWrapper<'w, MAX_DEPTH> {
    /// A wrapper whose weights are looked up in `source` under a `TransformerWrapper`'s
    /// `state_dict` keys (decoder keys prefixed `attn_layers.`).
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::MissingWeight`], [`Error::WeightShape`],
    /// [`Error::DepthExceedsCapacity`].
    pub fn from_source<S: TensorSource<'w>>(
        config: WrapperConfig,
        source: &S,
    ) -> Result<Self, Error> {
        // Filled in place (`Self::load`): neither the decoder nor its weight table is built on
        // the stack and then moved into the wrapper.
        let mut wrapper = Self::empty(config);
        wrapper.load(source)?;
        Ok(wrapper)
    }

    /// As [`Self::from_source`], building the wrapper in place in `slot` (`None` after an
    /// error): for a wrapper kept in a `static` on a small stack, where `from_source` builds it
    /// in its own frame and moves it into the result (the weight table alone is about 400 bytes
    /// per block on a 32-bit target). A slot that starts as `Some(`[`Self::unloaded`]`(..))` is
    /// emptied and filled field by field, so the wrapper is never assembled on the stack. With
    /// a `TensorSource` over weights linked into the image (a table of names, shapes and byte
    /// ranges), a firmware needs no model-file parser at all.
    ///
    /// # Errors
    /// As [`Self::from_source`].
    pub fn from_source_in<S: TensorSource<'w>>(
        config: WrapperConfig,
        source: &S,
        slot: &mut Option<Self>,
    ) -> Result<(), Error> {
        Self::empty_into(config, slot);
        let loaded = match slot {
            Some(wrapper) => wrapper.load(source),
            None => Ok(()),
        };
        if loaded.is_err() {
            *slot = None;
        }
        loaded
    }

    /// A wrapper of this configuration without weights: the starting value of a `static` slot
    /// for [`Self::from_source_in`].
    pub const fn unloaded(config: WrapperConfig) -> Self {
        Self::empty(config)
    }

    /// Empties the wrapper in `slot` for `config`: in place when there is one; otherwise writes
    /// [`Self::empty`] there from this frame (not inlined, so that temporary is gone when
    /// loading starts).
    #[inline(never)]
    fn empty_into(config: WrapperConfig, slot: &mut Option<Self>) {
        match slot {
            Some(wrapper) => wrapper.reset(config),
            None => *slot = Some(Self::empty(config)),
        }
    }

    /// Makes this wrapper [`Self::empty`] for `config` in place (field by field: no
    /// wrapper-sized temporary on the stack).
    pub(crate) fn reset(&mut self, config: WrapperConfig) {
        let TransformerWrapper {
            config: c,
            decoder,
            weights,
            logits_panels,
        } = self;
        *c = config;
        decoder.reset(config.attn_layers);
        *weights = WrapperWeights::empty();
        *logits_panels = None;
    }

    /// A wrapper with this configuration and no weights yet: what [`Self::load`] fills in place.
    pub(crate) const fn empty(config: WrapperConfig) -> Self {
        Self {
            config,
            decoder: Decoder::empty(config.attn_layers),
            weights: WrapperWeights::empty(),
            logits_panels: None,
        }
    }

    /// Looks up the weights of [`Self::empty`] in `source`, in place: the wrapper's own, then
    /// the decoder's (under `attn_layers.`).
    ///
    /// # Errors
    /// As [`Self::from_source`].
    pub(crate) fn load<S: TensorSource<'w>>(&mut self, source: &S) -> Result<(), Error> {
        self.weights = WrapperWeights::from_source(&self.config, source)?;
        self.decoder.load(source, "attn_layers.")
    }

    /// The configuration.
    pub fn config(&self) -> &WrapperConfig {
        &self.config
    }

    /// The decoder inside.
    pub fn decoder(&self) -> &Decoder<'w, MAX_DEPTH> {
        &self.decoder
    }

    /// f32 elements of the arena that [`Self::with_prefill_panels`] needs.
    pub const fn prefill_panels_len(&self) -> usize {
        self.decoder.prefill_panels_len()
    }

    /// This wrapper with the decoder's matrices packed for prefill
    /// ([`Decoder::with_prefill_panels`]).
    ///
    /// # Errors
    /// As [`Decoder::with_prefill_panels`].
    pub fn with_prefill_panels<'a>(
        &self,
        arena: &'a mut [f32],
    ) -> Result<TransformerWrapper<'a, MAX_DEPTH>, Error>
    where
        'w: 'a,
    {
        Ok(TransformerWrapper {
            config: self.config,
            decoder: self.decoder.with_prefill_panels(arena)?,
            weights: self.weights,
            logits_panels: self.logits_panels,
        })
    }

    /// Bytes of the arena that [`Self::with_int8_panels`] needs: the decoder's
    /// ([`Decoder::int8_panels_len`]) and the logits' matrix `[logits width, dim]` as if it were
    /// Q8_0 (34 bytes per 32 weights, rows rounded up to 16, 63 bytes of alignment slack).
    /// Saturates at `usize::MAX`.
    pub const fn int8_panels_len(&self) -> usize {
        let logits = packing::len_int8(self.config.logits_width(), self.config.attn_layers.dim);
        self.decoder.int8_panels_len().saturating_add(logits)
    }

    /// This wrapper on the int8 path with the decoder's Q8_0 matrices
    /// ([`Decoder::with_int8_panels`]) and the logits' (`to_logits`, or the token embedding
    /// when tied), if Q8_0, packed into int8 panels in `arena`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `arena` holds fewer than [`Self::int8_panels_len`] bytes;
    /// the errors of [`Decoder::with_int8_panels`].
    pub fn with_int8_panels<'a>(
        &self,
        arena: &'a mut [u8],
    ) -> Result<TransformerWrapper<'a, MAX_DEPTH>, Error>
    where
        'w: 'a,
    {
        packing::room(Buffer::Int8Panels, self.int8_panels_len(), arena.len())?;
        let (blocks, logits) = arena.split_at_mut(self.decoder.int8_panels_len());
        let logits_panels = match self.logits_weights().0 {
            Tensor::Q8_0(q) => Some(Int8Panels::pack(q, self.config.attn_layers.dim, logits)?),
            _ => None,
        };
        Ok(TransformerWrapper {
            config: self.config,
            decoder: self.decoder.with_int8_panels(blocks)?,
            weights: self.weights,
            logits_panels,
        })
    }

    /// This wrapper with a step's products split over `executor`'s parts, the logits included
    /// ([`Decoder::with_parallel`]): the numbers of one thread, bit for bit.
    #[cfg(feature = "parallel")]
    pub fn with_parallel<'p>(&self, executor: &'p dyn Parallel) -> TransformerWrapper<'p, MAX_DEPTH>
    where
        'w: 'p,
    {
        TransformerWrapper {
            config: self.config,
            decoder: self.decoder.with_parallel(executor),
            weights: self.weights,
            logits_panels: self.logits_panels,
        }
    }

    /// This wrapper with every product by Q8_0 weights on the int8 path, the logits included
    /// ([`Decoder::with_int8_activations`]).
    pub fn with_int8_activations(mut self, on: bool) -> Self {
        self.set_int8_activations(on);
        self
    }

    /// [`Self::with_int8_activations`] in place ([`Decoder::set_int8_activations`]).
    pub fn set_int8_activations(&mut self, on: bool) {
        self.decoder.set_int8_activations(on);
    }

    /// Number of tensors the model consists of (wrapper and decoder).
    pub fn tensors_used(&self) -> usize {
        self.weights.tensors_used + self.decoder.weights().tensors_used
    }

    /// Runs `tokens` at positions `cache.len()..+n` and writes the logits of every position to
    /// `logits` (n × [`WrapperConfig::logits_width`]: `num_tokens`, or `logits_dim`).
    ///
    /// # Errors
    /// [`Error::BufferLength`] for a wrong `logits` length, [`Error::TokenOutOfRange`],
    /// [`Error::PositionOutOfRange`] past `max_seq_len` with absolute positions, and every error of
    /// [`Decoder::forward`]. On error nothing is written.
    pub fn forward<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        tokens: &[u32],
        context: Option<&[f32]>,
        logits: &mut [f32],
    ) -> Result<(), Error> {
        let v = self.config.logits_width();
        output_length(logits, tokens.len().saturating_mul(v))?;
        self.run(cache, scratch, tokens, context, Masks::NONE, logits, false)
    }

    /// [`Self::forward`] with padding masks ([`Masks`], as [`Decoder::forward_masked`]): `mask`
    /// covers the positions `0..cache.len() + n`, `context_mask` the context rows.
    ///
    /// # Errors
    /// As [`Self::forward`] and [`Decoder::forward_masked`]. On error nothing is written.
    pub fn forward_masked<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        tokens: &[u32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        logits: &mut [f32],
    ) -> Result<(), Error> {
        let v = self.config.logits_width();
        output_length(logits, tokens.len().saturating_mul(v))?;
        self.run(cache, scratch, tokens, context, masks, logits, false)
    }

    /// `TransformerWrapper(attn_layers=Encoder(...))`: the logits of `tokens` (n × logits width)
    /// with bidirectional self-attention, the whole window in one chunk over `cache` emptied
    /// first (its storage for the keys and values) — see [`crate::Encoder::forward`].
    ///
    /// # Errors
    /// As [`crate::Encoder::forward`], [`Error::BufferLength`] for a wrong `logits` length,
    /// [`Error::TokenOutOfRange`], [`Error::PositionOutOfRange`]. On error nothing is written.
    pub fn encode<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        tokens: &[u32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        logits: &mut [f32],
    ) -> Result<(), Error> {
        let v = self.config.logits_width();
        output_length(logits, tokens.len().saturating_mul(v))?;
        let n = tokens.len().saturating_add(self.config.num_memory_tokens);
        crate::encoder::in_fresh_cache(&self.decoder, cache, scratch, n, |c, s| {
            self.run_mode(c, s, tokens, context, masks, logits, Emit::Logits, false)
        })
    }

    /// [`Self::encode`] returning the encoder's output embeddings (n × dim, after the final
    /// norm) instead of logits: `TransformerWrapper(return_only_embed=True)` or
    /// `return_embeddings=True` (`xt:4153-4154`), as `XTransformer` runs its encoder.
    ///
    /// # Errors
    /// As [`Self::encode`], with [`Error::BufferLength`] if `out` is not n × dim.
    pub fn encode_embeddings<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        tokens: &[u32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let dim = self.config.attn_layers.dim;
        output_length(out, tokens.len().saturating_mul(dim))?;
        let n = tokens.len().saturating_add(self.config.num_memory_tokens);
        crate::encoder::in_fresh_cache(&self.decoder, cache, scratch, n, |c, s| {
            self.run_mode(c, s, tokens, context, masks, out, Emit::Embeddings, false)
        })
    }

    /// Runs `tokens` like [`Self::forward`] but writes only the last position's logits
    /// ([`WrapperConfig::logits_width`]), which is what generation needs after a prompt.
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn forward_last<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        tokens: &[u32],
        context: Option<&[f32]>,
        logits: &mut [f32],
    ) -> Result<(), Error> {
        self.forward_last_masked(cache, scratch, tokens, context, Masks::NONE, logits)
    }

    /// [`Self::forward_last`] with padding masks ([`Masks`], as [`Self::forward_masked`]): what
    /// generation over a padded context runs (the context mask applies on every call).
    ///
    /// # Errors
    /// As [`Self::forward_masked`].
    pub fn forward_last_masked<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        tokens: &[u32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        logits: &mut [f32],
    ) -> Result<(), Error> {
        let v = self.config.logits_width();
        output_length(logits, v)?;
        self.run(cache, scratch, tokens, context, masks, logits, true)
    }

    /// One token: [`Self::forward_last`] with `[token]` and no new context.
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn step<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        token: u32,
        logits: &mut [f32],
    ) -> Result<(), Error> {
        self.forward_last(cache, scratch, &[token], None, logits)
    }

    /// The logits' matrix `[logits width, dim]`, and the scale of the logits: `to_logits`, or the
    /// token embedding with `tie_embedding_scale` (default dim^-½) when tied (xt:4155-4162).
    fn logits_weights(&self) -> (Tensor<'w>, Option<f32>) {
        match self.weights.to_logits {
            Some(t) => (t, None),
            None => (
                self.weights.token_emb,
                Some(match self.config.tie_embedding_scale {
                    Some(s) => s as f32,
                    None => inv_sqrt(self.config.attn_layers.dim),
                }),
            ),
        }
    }

    /// Validates tokens and positions, then runs the decoder. Logits of position `i` go to row
    /// `i` of `logits`, or, with `last_only`, only the last position's to `logits` itself.
    #[allow(clippy::too_many_arguments)]
    fn run<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        tokens: &[u32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        logits: &mut [f32],
        last_only: bool,
    ) -> Result<(), Error> {
        let emit = if last_only { Emit::Last } else { Emit::Logits };
        self.run_mode(cache, scratch, tokens, context, masks, logits, emit, true)
    }

    /// [`Self::run`] writing what `emit` says, bidirectional without `causal`.
    #[allow(clippy::too_many_arguments)]
    fn run_mode<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        tokens: &[u32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        logits: &mut [f32],
        emit: Emit,
        causal: bool,
    ) -> Result<(), Error> {
        let last_only = emit == Emit::Last;
        let cfg = &self.config;
        let (v, dim) = (cfg.logits_width(), cfg.attn_layers.dim);
        let num_tokens = cfg.num_tokens;
        if let Some((index, &token)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= num_tokens)
        {
            return Err(Error::TokenOutOfRange {
                token,
                index,
                num_tokens,
            });
        }
        // num_memory_tokens: the cache's first M positions hold the memory tokens, run before
        // the first token (the rows of them it does not hold yet: `prefix`); the tokens'
        // positions count from after them (xt:4369-4390, 4559-4571).
        let mem = cfg.num_memory_tokens;
        let len0 = cache.len();
        let prefix = mem.saturating_sub(len0);
        let pos0 = len0.saturating_add(prefix) - mem;
        if self.weights.pos_emb.is_some() && pos0.saturating_add(tokens.len()) > cfg.max_seq_len {
            // nn.Embedding would index out of range (x-transformers asserts seq_len <= max_seq_len).
            // The sinusoids of `scaled_sinu_pos_emb` have no such bound.
            let position = pos0.saturating_add(tokens.len()).saturating_sub(1);
            return Err(Error::PositionOutOfRange {
                position,
                max_seq_len: cfg.max_seq_len,
            });
        }
        let (to_logits, logit_scale) = self.logits_weights();
        let packed = self.logits_panels.map(Packed::Int8);
        let last = tokens.len().wrapping_sub(1);
        self.decoder.run_masked(
            cache,
            scratch,
            prefix.saturating_add(tokens.len()),
            context,
            masks,
            mem,
            causal,
            // x₀ = project_emb(post_emb_norm(E[t] + P[pos])) (xt:4295, 4319, 4349), after the
            // memory tokens' rows (xt:4381-4382)
            |start, x| {
                // (dim > 0: validated)
                for (j, xr) in x.chunks_exact_mut(dim.max(1)).enumerate() {
                    match (start + j).checked_sub(prefix) {
                        Some(i) => {
                            // (never past the tokens: the chunks cover prefix + tokens.len())
                            let Some(&t) = tokens.get(i) else {
                                return Err(Error::BufferLength {
                                    buffer: Buffer::Input,
                                    expected: i + 1,
                                    found: tokens.len(),
                                });
                            };
                            self.embed(t as usize, pos0 + i, xr)
                        }
                        None => {
                            let row = len0 + start + j;
                            let m = self.weights.memory_tokens.map(|t| t.slice(row * dim, dim));
                            xr.iter_mut()
                                .enumerate()
                                .for_each(|(c, v)| *v = m.and_then(|m| m.get(c)).unwrap_or(0.0));
                        }
                    }
                }
                Ok(())
            },
            // logits = y·W_logitsᵀ, or y·Eᵀ · dim^-½ when tied (xt:4155-4162), of the tokens'
            // rows (the memory tokens' are dropped, xt:4563).
            // Every position's logits: the chunk's positions in one matrix product, which reads
            // the [num_tokens, dim] matrix once for all of them instead of once per position.
            |start, y| {
                let dim = dim.max(1); // (validated: > 0)
                let skip = prefix.saturating_sub(start).min(y.len() / dim);
                let y = y.get(skip * dim..).unwrap_or_default();
                let start = start + skip - prefix.min(start + skip);
                let n = y.len() / dim;
                if n == 0 {
                    return Ok(());
                }
                if emit == Emit::Embeddings {
                    logits[start * dim..(start + n) * dim].copy_from_slice(y);
                    return Ok(());
                }
                let (y, out) = match last_only {
                    false => (y, &mut logits[start * v..(start + n) * v]),
                    true if (start..start + n).contains(&last) => {
                        let at = (last - start) * dim;
                        (y.get(at..at + dim).unwrap_or_default(), &mut logits[..])
                    }
                    true => return Ok(()),
                };
                self.decoder.linear(to_logits, packed, dim, y, out)?;
                if let Some(scale) = logit_scale {
                    out.iter_mut().for_each(|l| *l *= scale);
                }
                Ok(())
            },
        )
    }
}

/// n^-½ as x-transformers scales the absolute position embedding (n = `emb_dim`) and the tied
/// logits (n = `dim`): a Python float cast to f32 (xt:419, 4157).
fn inv_sqrt(n: usize) -> f32 {
    libm::pow(n as f64, -0.5) as f32
}

/// ‖row‖₂ clamped below at 1e-12, as `F.normalize` divides (xt:227-230).
fn l2_norm(row: Tensor<'_>) -> f32 {
    let sq = (0..row.len())
        .map(|i| row.get(i).unwrap_or(0.0))
        .map(|v| v * v);
    libm::sqrtf(sq.sum::<f32>()).max(1e-12)
}

/// The absolute position term of an embedding (xt:415-472).
#[derive(Clone, Copy)]
enum Position<'w> {
    /// No absolute positions.
    None,
    /// A row P[pos] of the learned table times `emb_dim`^-½, or times 1/‖P[pos]‖ with
    /// `l2norm_embed` (xt:419, 438-442).
    Table(Tensor<'w>, f32),
    /// `scaled_sinu_pos_emb`: [sin(p·ω), cos(p·ω)] · scale (xt:444-472).
    Sinusoid {
        /// The position, as the f32 that `einsum` multiplies.
        p: f32,
        /// `pos_emb.scale`.
        scale: f32,
        /// ω as x-transformers computed it, if the file has it.
        inv_freq: Option<Tensor<'w>>,
        /// `emb_dim / 2`.
        half: usize,
    },
}

impl Position<'_> {
    /// Element `i` of the position term.
    fn get(&self, i: usize) -> f32 {
        match *self {
            Position::None => 0.0,
            Position::Table(row, scale) => scale * row.get(i).unwrap_or(0.0),
            Position::Sinusoid {
                p,
                scale,
                inv_freq,
                half,
            } => {
                let k = if i < half { i } else { i - half };
                // ω_k = 10000^(−k/half): torch's f32 pow of an f32 exponent (xt:451-452), here
                // correctly rounded; a file's stored buffer is torch's own.
                let w = match inv_freq {
                    Some(f) => f.get(k).unwrap_or(0.0),
                    None => libm::pow(10000.0, -f64::from(k as f32 / half as f32)) as f32,
                };
                let a = p * w;
                if i < half {
                    libm::sinf(a) * scale
                } else {
                    libm::cosf(a) * scale
                }
            }
        }
    }
}

/// One position's embedding before `project_emb`, `emb_dim` wide, element by element
/// (xt:4295-4319): the token's row (divided by its norm with `l2norm_embed`) plus the position
/// term, then `post_emb_norm`. It is never stored: its width may differ from the residual row it
/// is projected into, and the scratch arena is the decoder's, so every element is computed where
/// it is used (the same f32 operations, in the same order, as on a stored row).
struct Embedding<'w> {
    /// E[t].
    token: Tensor<'w>,
    /// ‖E[t]‖ with `l2norm_embed`, else 1.
    token_norm: f32,
    /// The position term.
    position: Position<'w>,
    /// `emb_dim`.
    width: usize,
    /// `post_emb_norm`: mean, 1/√(σ² + 1e-5) and the gain γ (as stored).
    norm: Option<(f32, f32, Tensor<'w>)>,
}

impl<'w> Embedding<'w> {
    /// E[t] (+ the position term), before the norm (xt:4295).
    fn sum(&self, i: usize) -> f32 {
        self.token.get(i).unwrap_or(0.0) / self.token_norm + self.position.get(i)
    }

    /// Element `i`: `post_emb_norm` (xt:1017-1036 with unit_offset False, 4319):
    /// (x − μ) / √(σ² + 1e-5) · γ, γ as stored.
    fn get(&self, i: usize) -> f32 {
        match self.norm {
            Some((mean, inv, gamma)) => (self.sum(i) - mean) * inv * gamma.get(i).unwrap_or(1.0),
            None => self.sum(i),
        }
    }

    /// With `post_emb_norm`'s gain: its mean and 1/σ over the row, as a LayerNorm computes them.
    fn normed(mut self, gamma: Option<Tensor<'w>>) -> Self {
        if let Some(g) = gamma {
            let n = self.width.max(1) as f32;
            let mean = (0..self.width).map(|i| self.sum(i)).sum::<f32>() / n;
            let var = (0..self.width)
                .map(|i| self.sum(i) - mean)
                .map(|d| d * d)
                .sum::<f32>()
                / n;
            self.norm = Some((mean, 1.0 / libm::sqrtf(var + 1e-5), g));
        }
        self
    }

    /// Writes x₀ (`dim` wide) to `x`: the embedding itself when `emb_dim` is `dim`, else
    /// `project_emb`'s W·e + b (xt:4074, 4349), accumulated column by column so that each
    /// element of e is computed once.
    ///
    /// The shapes were checked when the weights were loaded (`project_emb.weight` `[dim, emb_dim]`).
    fn write(&self, x: &mut [f32], project: Option<(Tensor<'_>, Tensor<'_>)>) {
        let Some((w, b)) = project else {
            x.iter_mut().enumerate().for_each(|(i, v)| *v = self.get(i));
            return;
        };
        let e = self.width;
        x.fill(0.0);
        for i in 0..e {
            let ei = self.get(i);
            for (j, v) in x.iter_mut().enumerate() {
                *v += w.get(j * e + i).unwrap_or(0.0) * ei;
            }
        }
        x.iter_mut()
            .enumerate()
            .for_each(|(j, v)| *v += b.get(j).unwrap_or(0.0));
    }
}

impl<'w, const MAX_DEPTH: usize> TransformerWrapper<'w, MAX_DEPTH> {
    /// Writes x₀ of token `t` at position `pos` to `x` (`dim` wide). Not inlined: its frame (the
    /// sinusoids' and the norms' temporaries) would otherwise join the frame of the decoder's
    /// chunk loop, which is on the stack while the whole forward pass runs (see
    /// `Decoder::forward_chunk`).
    #[inline(never)]
    fn embed(&self, t: usize, pos: usize, x: &mut [f32]) {
        self.embedding(t, pos).write(x, self.weights.project_emb);
    }

    /// The embedding of token `t` (< num_tokens) at position `pos` (within the table, if any).
    fn embedding(&self, t: usize, pos: usize) -> Embedding<'w> {
        let (cfg, w) = (&self.config, &self.weights);
        let e = cfg.emb_width();
        let token = w.token_emb.slice(t * e, e);
        // l2norm(E[t]) (xt:406, 227-230)
        let token_norm = if cfg.l2norm_embed {
            l2_norm(token)
        } else {
            1.0
        };
        let position = match (w.pos_emb, w.pos_emb_scale) {
            (Some(table), _) => {
                let row = table.slice(pos * e, e);
                // l2norm(P[pos]) unscaled with l2norm_embed (xt:419, 442)
                let scale = if cfg.l2norm_embed {
                    1.0 / l2_norm(row)
                } else {
                    inv_sqrt(e)
                };
                Position::Table(row, scale)
            }
            (None, Some(scale)) => Position::Sinusoid {
                p: pos as f32,
                scale: scale.get(0).unwrap_or(0.0),
                inv_freq: w.pos_emb_inv_freq,
                half: e / 2,
            },
            (None, None) => Position::None,
        };
        Embedding {
            token,
            token_norm,
            position,
            width: e,
            norm: None,
        }
        .normed(w.post_emb_norm)
    }
}

/// What a wrapper pass writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Emit {
    /// Every position's logits.
    Logits,
    /// The last position's logits.
    Last,
    /// Every position's embeddings (the final-normed hidden states).
    Embeddings,
}

/// [`Error::BufferLength`] unless the output buffer `out` holds `expected` values.
fn output_length(out: &[f32], expected: usize) -> Result<(), Error> {
    if out.len() != expected {
        return Err(Error::BufferLength {
            buffer: Buffer::Output,
            expected,
            found: out.len(),
        });
    }
    Ok(())
}
