//! x-transformers' `ContinuousTransformerWrapper` (`continuous.py`, the class at line 63):
//! frames of `dim_in` features in, `dim_out` out, around a `Decoder` (streaming: one frame in,
//! one frame out, over the KV cache) or an `Encoder` (a window in, a sequence or, with
//! `average_pool_embed`, one pooled vector out). See `docs/x-transformers.md` §3.16.

use crate::cache::KvCache;
use crate::config::{DecoderConfig, WrapperConfig};
use crate::decoder::Decoder;
use crate::error::{Buffer, ConfigError, Error, WeightName};
use crate::masks::Masks;
use crate::scratch::Scratch;
use crate::tensor::{Element, Tensor, TensorSource};

/// The `ContinuousTransformerWrapper` arguments picoformer computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContinuousConfig {
    /// `dim_in`: features per input frame, projected to `dim` by `project_in` (a bias-free
    /// linear); `None`: the frames are `dim` wide and taken as they are.
    pub dim_in: Option<usize>,
    /// `dim_out`: features per output, projected from `dim` by `project_out` (bias-free);
    /// `None`: the hidden states.
    pub dim_out: Option<usize>,
    /// `max_seq_len` (0: no absolute positions).
    pub max_seq_len: usize,
    /// `use_abs_pos_emb` (default true): absolute positions `P[pos]·dim^-½` when
    /// `max_seq_len > 0` and the layers do not disable them (rotary does by default).
    pub use_abs_pos_emb: bool,
    /// `post_emb_norm`: a LayerNorm (eps 1e-5, gain `post_emb_norm.gamma` as stored) on the
    /// projected frames plus positions, before the layers (`continuous.py:99, 184`).
    pub post_emb_norm: bool,
    /// `average_pool_embed`: the mean of the real positions' hidden states, then `project_out`
    /// (an encoder's pooled output).
    pub average_pool_embed: bool,
    /// `num_memory_tokens`: learned rows (`memory_tokens`, M × dim) run before the first frame,
    /// after the frames' projection, positions and `post_emb_norm`, and dropped from the
    /// outputs (`continuous.py:186-193, 207-210`); they take the cache's first M positions.
    pub num_memory_tokens: usize,
    /// The `attn_layers` (`Decoder` or `Encoder` arguments).
    pub attn_layers: DecoderConfig,
}

impl ContinuousConfig {
    /// Defaults as x-transformers' (`use_abs_pos_emb` true, no projections, no pooling).
    pub const fn new(max_seq_len: usize, attn_layers: DecoderConfig) -> Self {
        Self {
            dim_in: None,
            dim_out: None,
            max_seq_len,
            use_abs_pos_emb: true,
            post_emb_norm: false,
            average_pool_embed: false,
            num_memory_tokens: 0,
            attn_layers,
        }
    }

    /// Sets `num_memory_tokens`.
    pub const fn num_memory_tokens(mut self, m: usize) -> Self {
        self.num_memory_tokens = m;
        self
    }

    /// Positions a KV cache (and, for an encoder's window, the scratch) needs for `frames`
    /// frames: the memory tokens' too.
    pub const fn cache_positions(&self, frames: usize) -> usize {
        frames.saturating_add(self.num_memory_tokens)
    }

    /// Checks the wrapper and its layers.
    ///
    /// # Errors
    /// The first [`ConfigError`] found: the layers', a zero `dim_in` or `dim_out`, or a
    /// projection, position or memory-token table over 2^30 elements.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = self.attn_layers.validate() {
            return Err(e);
        }
        if let Some(0) = self.dim_in {
            return Err(ConfigError::Zero("dim_in"));
        }
        if let Some(0) = self.dim_out {
            return Err(ConfigError::Zero("dim_out"));
        }
        let (dim, limit) = (self.attn_layers.dim, 1usize << 30);
        if self.input_width() > limit / dim
            || self.output_width() > limit / dim
            || self.max_seq_len > limit / dim
            || self.num_memory_tokens > limit / dim
        {
            return Err(ConfigError::TooLarge);
        }
        Ok(())
    }

    /// Features per input frame.
    pub const fn input_width(&self) -> usize {
        match self.dim_in {
            Some(d) => d,
            None => self.attn_layers.dim,
        }
    }

    /// Features per output row.
    pub const fn output_width(&self) -> usize {
        match self.dim_out {
            Some(d) => d,
            None => self.attn_layers.dim,
        }
    }

    /// Whether absolute positions are added (`continuous.py:90`).
    pub const fn has_abs_pos_emb(&self) -> bool {
        WrapperConfig::new(1, self.max_seq_len, self.attn_layers)
            .use_abs_pos_emb(self.use_abs_pos_emb)
            .has_abs_pos_emb()
    }
}

/// A `ContinuousTransformerWrapper` over borrowed weights.
#[derive(Clone, Debug)]
pub struct ContinuousTransformerWrapper<'w, const MAX_DEPTH: usize = 16> {
    config: ContinuousConfig,
    layers: Decoder<'w, MAX_DEPTH>,
    project_in: Option<Tensor<'w>>,
    project_out: Option<Tensor<'w>>,
    pos_emb: Option<Tensor<'w>>,
    post_emb_norm: Option<Tensor<'w>>,
    memory_tokens: Option<Tensor<'w>>,
}

fn weight<'w, S: TensorSource<'w>>(
    source: &S,
    suffix: &'static str,
    shape: &[usize],
) -> Result<Tensor<'w>, Error> {
    let name = WeightName {
        prefix: "",
        sublayer: None,
        suffix,
    };
    source
        .tensor(suffix)
        .ok_or(Error::MissingWeight(name))?
        .weight(name, shape)
}

impl<'w, const MAX_DEPTH: usize> ContinuousTransformerWrapper<'w, MAX_DEPTH> {
    /// A wrapper whose weights are looked up in `source` under its `state_dict` keys
    /// (`project_in.weight`, `pos_emb.emb.weight`, `post_emb_norm.gamma`, `memory_tokens`,
    /// `project_out.weight`, the layers under `attn_layers.`).
    ///
    /// # Errors
    /// As [`Decoder::from_source`]; [`Error::Config`] as [`ContinuousConfig::validate`].
    pub fn from_source<S: TensorSource<'w>>(
        config: ContinuousConfig,
        source: &S,
    ) -> Result<Self, Error> {
        // Filled in place (`Self::load`): neither the layers nor their weight table is built on
        // the stack and then moved into the wrapper.
        let mut wrapper = Self::empty(config);
        wrapper.load(source)?;
        Ok(wrapper)
    }

    /// A wrapper with this configuration and no weights yet: what [`Self::load`] fills in place.
    pub(crate) const fn empty(config: ContinuousConfig) -> Self {
        Self {
            config,
            layers: Decoder::empty(config.attn_layers),
            project_in: None,
            project_out: None,
            pos_emb: None,
            post_emb_norm: None,
            memory_tokens: None,
        }
    }

    /// Makes this wrapper [`Self::empty`] for `config` in place (field by field: no
    /// wrapper-sized temporary on the stack).
    fn reset(&mut self, config: ContinuousConfig) {
        let ContinuousTransformerWrapper {
            config: c,
            layers,
            project_in,
            project_out,
            pos_emb,
            post_emb_norm,
            memory_tokens,
        } = self;
        *c = config;
        layers.reset(config.attn_layers);
        *project_in = None;
        *project_out = None;
        *pos_emb = None;
        *post_emb_norm = None;
        *memory_tokens = None;
    }

    /// Looks up the weights of [`Self::empty`] in `source`, in place: the layers' (under
    /// `attn_layers.`), then the wrapper's own.
    ///
    /// # Errors
    /// As [`Self::from_source`].
    fn load<S: TensorSource<'w>>(&mut self, source: &S) -> Result<(), Error> {
        let config = self.config;
        config.validate()?;
        let dim = config.attn_layers.dim;
        self.layers.load(source, "attn_layers.")?;
        self.project_in = match config.dim_in {
            Some(d) => Some(weight(source, "project_in.weight", &[dim, d])?),
            None => None,
        };
        self.project_out = match config.dim_out {
            Some(d) => Some(weight(source, "project_out.weight", &[d, dim])?),
            None => None,
        };
        self.pos_emb = match config.has_abs_pos_emb() {
            true => Some(weight(
                source,
                "pos_emb.emb.weight",
                &[config.max_seq_len, dim],
            )?),
            false => None,
        };
        self.post_emb_norm = match config.post_emb_norm {
            true => Some(weight(source, "post_emb_norm.gamma", &[dim])?),
            false => None,
        };
        self.memory_tokens = match config.num_memory_tokens {
            0 => None,
            m => Some(weight(source, "memory_tokens", &[m, dim])?),
        };
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &ContinuousConfig {
        &self.config
    }

    /// The layers.
    pub fn layers(&self) -> &Decoder<'w, MAX_DEPTH> {
        &self.layers
    }

    /// Around a `Decoder`: the frames `x` (n × input width) after those the cache holds (the
    /// first call runs the memory tokens first), their outputs (n × output width) into `out`;
    /// one frame per call streams. `masks.mask` covers the frames, cached and new (not the
    /// memory tokens, which are real).
    ///
    /// # Errors
    /// [`Error::BufferLength`], [`Error::PositionOutOfRange`] past `max_seq_len` with absolute
    /// positions, and every error of [`Decoder::forward_masked`]. On error nothing is written.
    pub fn forward<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let n = self.check(x, out, false)?;
        let mem = self.config.num_memory_tokens;
        self.check_positions(cache.len().saturating_sub(mem), n)?;
        self.run(cache, scratch, x, context, masks, out, true)
    }

    /// Around an `Encoder`: the window `x` (n × input width) bidirectionally, in one chunk over
    /// `cache` emptied first (as [`crate::Encoder::forward`]; cache and scratch hold
    /// [`ContinuousConfig::cache_positions`]`(n)` positions); `out` gets n × output width, or,
    /// with `average_pool_embed`, one row: `project_out` of the mean of the real frames'
    /// hidden states.
    ///
    /// # Errors
    /// As [`crate::Encoder::forward`] and [`Self::forward`].
    pub fn encode<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let n = self.check(x, out, self.config.average_pool_embed)?;
        self.check_positions(0, n)?;
        let positions = self.config.cache_positions(n);
        crate::encoder::in_fresh_cache(&self.layers, cache, scratch, positions, |c, s| {
            self.run(c, s, x, context, masks, out, false)
        })
    }

    /// Checks the lengths of `x` and `out`; returns the number of frames.
    fn check(&self, x: &[f32], out: &[f32], pooled: bool) -> Result<usize, Error> {
        let (wi, wo) = (self.config.input_width(), self.config.output_width());
        if x.is_empty() || !x.len().is_multiple_of(wi) {
            return Err(Error::BufferLength {
                buffer: Buffer::Input,
                expected: wi,
                found: x.len(),
            });
        }
        let n = x.len() / wi;
        let expected = if pooled { wo } else { n.saturating_mul(wo) };
        if out.len() != expected {
            return Err(Error::BufferLength {
                buffer: Buffer::Output,
                expected,
                found: out.len(),
            });
        }
        Ok(n)
    }

    fn check_positions(&self, pos0: usize, n: usize) -> Result<(), Error> {
        if self.pos_emb.is_some() && pos0.saturating_add(n) > self.config.max_seq_len {
            return Err(Error::PositionOutOfRange {
                position: pos0.saturating_add(n).saturating_sub(1),
                max_seq_len: self.config.max_seq_len,
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        out: &mut [f32],
        causal: bool,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let (dim, wi, wo) = (cfg.attn_layers.dim, cfg.input_width(), cfg.output_width());
        let n = x.len() / wi;
        // The cache's first M positions hold the memory tokens, run before the first frame
        // (the rows of them it does not hold yet: `prefix`); the frames' positions count from
        // after them.
        let (mem, len0) = (cfg.num_memory_tokens, cache.len());
        let prefix = mem.saturating_sub(len0);
        let pos0 = len0.saturating_add(prefix).saturating_sub(mem);
        let pooled = cfg.average_pool_embed && !causal;
        let scale = libm::pow(dim as f64, -0.5) as f32;
        if pooled {
            out.iter_mut().for_each(|v| *v = 0.0);
        }
        self.layers.run_masked(
            cache,
            scratch,
            prefix.saturating_add(n),
            context,
            masks,
            mem,
            causal,
            |start, rows| {
                // the memory tokens' rows first (continuous.py:186-188)
                let k = prefix.saturating_sub(start).min(rows.len() / dim);
                let (memory, rows) = rows.split_at_mut(k * dim);
                if let Some(m) = self.memory_tokens {
                    for (j, r) in memory.chunks_exact_mut(dim).enumerate() {
                        let t = m.slice((len0 + start + j) * dim, dim);
                        r.iter_mut()
                            .enumerate()
                            .for_each(|(c, v)| *v = t.get(c).unwrap_or(0.0));
                    }
                }
                // x₀ = project_in(x) + P[pos]·dim^-½ (continuous.py:178-179)
                // (a chunk of memory tokens only has no frame rows: `rows` is empty)
                let first = (start + k).saturating_sub(prefix);
                let len = rows.len() / dim;
                if len == 0 {
                    return Ok(());
                }
                let xin = &x[first * wi..(first + len) * wi];
                match self.project_in {
                    Some(w) => self.layers.linear(w, None, wi, xin, rows)?,
                    None => rows.copy_from_slice(xin),
                }
                if let Some(p) = self.pos_emb {
                    for (j, r) in rows.chunks_exact_mut(dim).enumerate() {
                        crate::kernels::add_scaled(
                            r,
                            p.slice((pos0 + first + j) * dim, dim),
                            scale,
                        )?;
                    }
                }
                // post_emb_norm (continuous.py:184)
                if let Some(g) = self.post_emb_norm {
                    rows.chunks_exact_mut(dim)
                        .for_each(|r| layer_norm_in_place(r, g));
                }
                Ok(())
            },
            |start, y| {
                // the memory tokens' rows are dropped (continuous.py:207-210)
                let skip = prefix.saturating_sub(start).min(y.len() / dim);
                let (start, y) = ((start + skip).saturating_sub(prefix), &y[skip * dim..]);
                let len = y.len() / dim;
                if len == 0 {
                    return Ok(());
                }
                if pooled {
                    // masked mean over the real frames, then project_out (continuous.py:212-216)
                    let mask = masks.mask;
                    let real = |i: usize| mask.is_none_or(|m| m.get(i).copied().unwrap_or(false));
                    let count = (0..n).filter(|&i| real(i)).count().max(1) as f32;
                    for (o, v) in out.iter_mut().enumerate() {
                        let mut sum = 0.0f32;
                        for (i, row) in y.chunks_exact(dim).enumerate() {
                            if !real(start + i) {
                                continue;
                            }
                            sum += match self.project_out {
                                Some(w) => row
                                    .iter()
                                    .enumerate()
                                    .map(|(d, yv)| yv * w.get(o * dim + d).unwrap_or(0.0))
                                    .sum::<f32>(),
                                None => row[o],
                            };
                        }
                        *v += sum / count;
                    }
                    return Ok(());
                }
                let o = &mut out[start * wo..(start + len) * wo];
                match self.project_out {
                    Some(w) => self.layers.linear(w, None, dim, y, o),
                    None => {
                        o.copy_from_slice(y);
                        Ok(())
                    }
                }
            },
        )
    }
}

/// `post_emb_norm`, x-transformers' `LayerNorm(dim)` (`xt:1017-1036`, `unit_offset` False):
/// (x − μ) / √(σ² + 1e-5) · γ in place, γ as stored.
fn layer_norm_in_place(x: &mut [f32], gamma: Tensor<'_>) {
    let n = x.len().max(1) as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / libm::sqrtf(var + 1e-5);
    for (i, v) in x.iter_mut().enumerate() {
        *v = (*v - mean) * inv * gamma.get(i).unwrap_or(1.0);
    }
}

/// A `ContinuousTransformerWrapper` loaded from a file whose metadata holds `{"decoder" |
/// "encoder": {...}, "continuous_wrapper": {...}}`, weights borrowed from the file's bytes.
/// The variant says how it runs.
#[derive(Clone, Debug)]
pub enum ContinuousModel<'w, const MAX_DEPTH: usize = 16> {
    /// Around a `Decoder`: frames stream through [`ContinuousTransformerWrapper::forward`].
    Decoder(ContinuousTransformerWrapper<'w, MAX_DEPTH>),
    /// Around an `Encoder`: a window through [`ContinuousTransformerWrapper::encode`].
    Encoder(ContinuousTransformerWrapper<'w, MAX_DEPTH>),
}

impl<'w, const MAX_DEPTH: usize> ContinuousModel<'w, MAX_DEPTH> {
    /// Parses a `ContinuousTransformerWrapper`'s model file and borrows its weights in place.
    ///
    /// # Errors
    /// As [`crate::Model::from_safetensors`]; a file of another kind is refused
    /// ([`crate::LoadError::UnsupportedOption`] naming its entry and its loader).
    pub fn from_safetensors(bytes: &'w [u8]) -> Result<Self, crate::LoadError<'w>> {
        let (cfg, encoder, source) = Self::open(bytes)?;
        // Built once, here, and filled in place.
        let mut model = Self::unloaded(cfg, encoder);
        model.load(&source)?;
        Ok(model)
    }

    /// As [`Self::from_safetensors`], building the model in place in `slot` (`None` after an
    /// error): the model is written where the caller keeps it and never copied, where
    /// `from_safetensors` builds it in its own frame and moves it into the result. For a small
    /// stack (a microcontroller's): the weight table is about 400 bytes per block on a 32-bit
    /// target. A `static` slot that starts as `Some(ContinuousModel::unloaded(..))` of the
    /// file's kind is emptied and filled field by field, so the model is never assembled on
    /// the stack at all (see [`crate::Model::from_safetensors_in`]).
    ///
    /// # Errors
    /// As [`Self::from_safetensors`].
    pub fn from_safetensors_in(
        bytes: &'w [u8],
        slot: &mut Option<Self>,
    ) -> Result<(), crate::LoadError<'w>> {
        let (cfg, encoder, source) = match Self::open(bytes) {
            Ok(opened) => opened,
            Err(e) => {
                *slot = None;
                return Err(e);
            }
        };
        Self::empty_into(cfg, encoder, slot);
        let loaded = match slot {
            Some(model) => model.load(&source),
            None => Ok(()),
        };
        if loaded.is_err() {
            *slot = None;
        }
        loaded
    }

    /// A model of this configuration without weights, around an `Encoder` or a `Decoder`: a
    /// `static` slot for [`Self::from_safetensors_in`].
    pub const fn unloaded(config: ContinuousConfig, encoder: bool) -> Self {
        let wrapper = ContinuousTransformerWrapper::empty(config);
        if encoder {
            Self::Encoder(wrapper)
        } else {
            Self::Decoder(wrapper)
        }
    }

    /// Empties the model in `slot` for `cfg`: in place, field by field, when it holds one of the
    /// same kind; otherwise [`Self::build_into`]. Not inlined, and neither is that (as
    /// `Model::empty_into`).
    #[inline(never)]
    fn empty_into(cfg: ContinuousConfig, encoder: bool, slot: &mut Option<Self>) {
        match (slot.as_mut(), encoder) {
            (Some(Self::Encoder(w)), true) | (Some(Self::Decoder(w)), false) => w.reset(cfg),
            _ => Self::build_into(cfg, encoder, slot),
        }
    }

    /// Writes [`Self::unloaded`] into `slot`, in this frame rather than the caller's.
    #[inline(never)]
    fn build_into(cfg: ContinuousConfig, encoder: bool, slot: &mut Option<Self>) {
        *slot = Some(Self::unloaded(cfg, encoder));
    }

    /// Parses the container and reads the configuration (and whether the layers are an
    /// `Encoder`).
    fn open(
        bytes: &'w [u8],
    ) -> Result<(ContinuousConfig, bool, crate::model::FileSource<'w>), crate::LoadError<'w>> {
        let file = crate::safetensors::SafeTensors::parse(bytes)?;
        let (cfg, encoder) = crate::options::read_continuous_config(&file)?;
        Ok((cfg, encoder, crate::model::FileSource::new(file)))
    }

    /// Looks up the weights of [`Self::unloaded`] in `source`, in place; then checks that every
    /// tensor of the file was used.
    #[inline(never)] // the loader's frame apart from the forward pass's
    fn load(&mut self, source: &crate::model::FileSource<'w>) -> Result<(), crate::LoadError<'w>> {
        let loaded = match self {
            Self::Decoder(w) | Self::Encoder(w) => w.load(source),
        };
        // A tensor that could not be viewed shows up as "missing": report the real cause.
        if let Some(e) = source.error.get() {
            return Err(e);
        }
        loaded?;
        match source.first_unused() {
            Some(name) => Err(crate::LoadError::UnexpectedTensor(name)),
            None => Ok(()),
        }
    }

    /// The wrapper, whichever its layers.
    pub fn wrapper(&self) -> &ContinuousTransformerWrapper<'w, MAX_DEPTH> {
        match self {
            Self::Decoder(w) | Self::Encoder(w) => w,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ContinuousConfig {
        self.wrapper().config()
    }

    /// Whether the layers are an `Encoder` (bidirectional, [`ContinuousTransformerWrapper::encode`]).
    pub fn is_encoder(&self) -> bool {
        matches!(self, Self::Encoder(_))
    }
}
