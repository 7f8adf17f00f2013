//! One decoding session over caller-provided buffers: a `TransformerWrapper` borrowed from the
//! model bytes, its KV cache, the scratch arena, the logits and the sampler's work buffers.
//! The wasm exports and the native `host-tokens` tool both drive this type, so they run the
//! same code path.
#![deny(unsafe_code)]

use core::fmt;

use picoformer::{
    bf16, f16, Candidate, Error, KvCache, LoadError, Model, Rng, SampleError, Sampler,
    SamplerConfig, Scratch, TransformerWrapper, WrapperConfig,
};

/// Sampling options as the wasm ABI passes them (0 / 1 mean "off"), for [`picoformer::sampling`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// 0 is greedy; otherwise the softmax temperature.
    pub temperature: f32,
    /// Keep the `top_k` largest logits; 0 keeps all.
    pub top_k: u32,
    /// Nucleus threshold; 1 (or more) keeps all.
    pub top_p: f32,
    /// Drop tokens below `min_p` times the most likely one's probability; 0 keeps all.
    pub min_p: f32,
}

impl Sampling {
    /// Greedy decoding.
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
    };

    /// The library's configuration.
    pub fn config(&self) -> SamplerConfig {
        let mut c = SamplerConfig::temperature(self.temperature);
        if self.top_k > 0 {
            c = c.with_top_k(self.top_k as usize);
        }
        if self.top_p < 1.0 {
            c = c.with_top_p(self.top_p);
        }
        if self.min_p > 0.0 {
            c = c.with_min_p(self.min_p);
        }
        c
    }
}

/// The element type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvKind {
    /// 4 bytes per element, exact.
    F32,
    /// 2 bytes per element, half the memory.
    F16,
    /// 2 bytes per element, f32's range.
    Bf16,
}

impl KvKind {
    /// From the wasm ABI code: 0 f32, 1 f16, 2 bf16.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            2 => Some(Self::Bf16),
            _ => None,
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
}

/// Session options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// KV cache positions (prompt + generated tokens).
    pub capacity: usize,
    /// Positions a prefill processes at once (the scratch arena is sized for this many).
    pub chunk: usize,
    /// KV cache element type.
    pub kv: KvKind,
    /// Rows of the all-positions logits buffer used by [`Session::forward_all`]; 0 for none.
    pub full_rows: usize,
    /// Cross-attention context rows the session holds (at least 1 for a cross-attending
    /// model; ignored otherwise).
    pub max_context: usize,
}

impl Options {
    /// Context rows to make room for with `d`: `max_context` if it cross-attends, else none.
    pub fn context_rows(&self, d: &picoformer::DecoderConfig) -> usize {
        if d.cross_attend {
            self.max_context
        } else {
            0
        }
    }
}

/// Bytes of every buffer of a session, as the arena lays them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The model file (weights are borrowed from it in place).
    pub weights: usize,
    /// The self-attention KV cache.
    pub kv_cache: usize,
    /// The cross-attention keys and values of the context (after the KV cache, same type).
    pub context_cache: usize,
    /// The context itself (`max_context · dim_context` f32), as the caller sets it.
    pub context: usize,
    /// The scratch arena for `chunk` positions.
    pub scratch: usize,
    /// Last-position logits (`num_tokens` f32).
    pub logits: usize,
    /// All-positions logits for [`Session::forward_all`] (`full_rows · num_tokens` f32).
    pub full_logits: usize,
    /// The sampler's work slice (`num_tokens` [`Candidate`]s).
    pub sampler: usize,
    /// The token input buffer (`capacity` u32).
    pub tokens: usize,
}

impl Plan {
    /// The plan for a wrapper configuration, a model file of `weights` bytes and `o`.
    pub fn new(cfg: &WrapperConfig, weights: usize, o: &Options) -> Self {
        let d = &cfg.attn_layers;
        let v = cfg.num_tokens;
        let rows = o.context_rows(d);
        Self {
            weights,
            kv_cache: KvCache::<f32>::elements(d, o.capacity).saturating_mul(o.kv.size()),
            context_cache: KvCache::<f32>::context_elements(d, rows).saturating_mul(o.kv.size()),
            context: rows.saturating_mul(d.dim_context()).saturating_mul(4),
            scratch: Scratch::bytes(d, o.chunk),
            logits: v.saturating_mul(4),
            full_logits: v.saturating_mul(o.full_rows).saturating_mul(4),
            sampler: Sampler::work_len(v).saturating_mul(core::mem::size_of::<Candidate>()),
            tokens: o.capacity.saturating_mul(4),
        }
    }

    /// Total bytes (each buffer is carved 16-byte aligned, which the caller adds).
    pub fn total(&self) -> usize {
        [
            self.weights,
            self.kv_cache,
            self.context_cache,
            self.context,
            self.scratch,
            self.logits,
            self.full_logits,
            self.sampler,
            self.tokens,
        ]
        .iter()
        .fold(0usize, |a, &b| a.saturating_add(b))
    }
}

/// Why a session could not be made or a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineError<'w> {
    /// The model file was refused.
    Load(LoadError<'w>),
    /// The file holds a raw `Decoder` (embeddings in); this package runs token models.
    NotAWrapper,
    /// A cross-attending model needs room for at least one context row (`max_context`).
    NoContextRoom,
    /// A context was set for a model without cross-attention.
    NotCrossAttending,
    /// An option is out of range (its name).
    BadOption(&'static str),
    /// More rows than the all-positions logits buffer holds.
    TooManyRows {
        /// Rows requested.
        rows: usize,
        /// Rows the buffer holds.
        capacity: usize,
    },
    /// Sampling needs logits: prefill or step first.
    NoLogits,
    /// The sampler refused the options or the logits.
    Sample(SampleError),
    /// The library refused the call; nothing changed.
    Model(Error),
}

impl fmt::Display for EngineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Load(e) => write!(f, "cannot load model: {e}"),
            Self::NotAWrapper => write!(
                f,
                "the model is a raw Decoder; this package runs TransformerWrapper models (token ids in, logits out)"
            ),
            Self::NoContextRoom => write!(
                f,
                "the model cross-attends: give the option maxContext (context rows, at least 1)"
            ),
            Self::NotCrossAttending => {
                write!(f, "the model has no cross-attention: it takes no context")
            }
            Self::BadOption(o) => write!(f, "option `{o}` is out of range"),
            Self::TooManyRows { rows, capacity } => write!(
                f,
                "{rows} positions do not fit the all-positions logits buffer of {capacity} rows (option fullRows)"
            ),
            Self::NoLogits => write!(f, "no logits yet: prefill a prompt first"),
            Self::Sample(e) => write!(f, "cannot sample: {e}"),
            Self::Model(e) => write!(f, "{e}"),
        }
    }
}

impl From<Error> for EngineError<'_> {
    fn from(e: Error) -> Self {
        Self::Model(e)
    }
}

/// Parses a model file and checks that this package can run it.
///
/// # Errors
/// [`EngineError::Load`], [`EngineError::NotAWrapper`].
pub fn load(bytes: &[u8]) -> Result<TransformerWrapper<'_>, EngineError<'_>> {
    match Model::from_safetensors(bytes).map_err(EngineError::Load)? {
        Model::Decoder(_) => Err(EngineError::NotAWrapper),
        Model::Wrapper(w) => Ok(w),
    }
}

/// The KV cache buffer, typed.
#[derive(Debug)]
pub enum KvBuf<'b> {
    /// f32 elements.
    F32(&'b mut [f32]),
    /// f16 elements.
    F16(&'b mut [f16]),
    /// bf16 elements.
    Bf16(&'b mut [bf16]),
}

/// The buffers a session runs in, sized by [`Plan`].
#[derive(Debug)]
pub struct Buffers<'b> {
    /// KV cache, then the context cache ([`Plan::kv_cache`] + [`Plan::context_cache`] bytes).
    pub kv: KvBuf<'b>,
    /// The context ([`Plan::context`] bytes).
    pub context: &'b mut [f32],
    /// Scratch arena.
    pub scratch: &'b mut [f32],
    /// Last-position logits.
    pub logits: &'b mut [f32],
    /// All-positions logits.
    pub full_logits: &'b mut [f32],
    /// The sampler's work slice.
    pub work: &'b mut [Candidate],
}

#[derive(Debug)]
enum Cache<'b> {
    F32(KvCache<'b, f32>),
    F16(KvCache<'b, f16>),
    Bf16(KvCache<'b, bf16>),
}

/// Runs `$body` with `$c` bound to the typed cache.
macro_rules! with_cache {
    ($cache:expr, $c:ident => $body:expr) => {
        match $cache {
            Cache::F32($c) => $body,
            Cache::F16($c) => $body,
            Cache::Bf16($c) => $body,
        }
    };
}

/// The cache for `capacity` positions and `rows` context rows in `b`: its first `kv_len`
/// elements for the positions, the rest for the context's keys and values.
fn cache<'b, T: picoformer::tensor::Element>(
    d: &picoformer::DecoderConfig,
    capacity: usize,
    rows: usize,
    kv_len: usize,
    b: &'b mut [T],
) -> Result<KvCache<'b, T>, Error> {
    let (kv, ctx) = b.split_at_mut(kv_len.min(b.len()));
    KvCache::with_context(d, capacity, kv, rows, ctx)
}

/// The context set (`rows` rows of `buf`), for the model's calls: the library projects it on
/// the first call after a reset and ignores it later. `None` before [`Session::set_context`],
/// which a cross-attending model refuses with [`Error::ContextRequired`].
fn context<'c>(cfg: &WrapperConfig, buf: &'c [f32], rows: usize) -> Option<&'c [f32]> {
    let n = rows.saturating_mul(cfg.attn_layers.dim_context());
    (rows > 0).then(|| buf.get(..n)).flatten()
}

/// A model with its cache and buffers: prefill, step, sample, generate.
#[derive(Debug)]
pub struct Session<'w, 'b> {
    model: TransformerWrapper<'w>,
    cache: Cache<'b>,
    scratch: Scratch<'b>,
    logits: &'b mut [f32],
    full_logits: &'b mut [f32],
    work: &'b mut [Candidate],
    /// The context (`max_context` rows) and how many of its rows are set.
    context: &'b mut [f32],
    context_rows: usize,
    rng: Rng,
    has_logits: bool,
}

impl<'w, 'b> Session<'w, 'b> {
    /// A session for `model` in `buf` (sized by [`Plan::new`] with the same options).
    ///
    /// # Errors
    /// [`EngineError::BadOption`] for a zero capacity or chunk, [`EngineError::NoContextRoom`]
    /// for a cross-attending model without `max_context`, or [`EngineError::Model`] with the
    /// buffer that is too small.
    pub fn new(
        model: TransformerWrapper<'w>,
        o: &Options,
        buf: Buffers<'b>,
    ) -> Result<Self, EngineError<'w>> {
        if o.capacity == 0 {
            return Err(EngineError::BadOption("capacity"));
        }
        if o.chunk == 0 {
            return Err(EngineError::BadOption("chunk"));
        }
        let cfg = *model.config();
        let d = &cfg.attn_layers;
        let v = cfg.num_tokens;
        let rows = o.context_rows(d);
        if d.cross_attend && rows == 0 {
            return Err(EngineError::NoContextRoom);
        }
        // The self-attention cache, then the context's keys and values, from one buffer.
        let kv_len = KvCache::<f32>::elements(d, o.capacity);
        let cache = match buf.kv {
            KvBuf::F32(b) => Cache::F32(cache(d, o.capacity, rows, kv_len, b)?),
            KvBuf::F16(b) => Cache::F16(cache(d, o.capacity, rows, kv_len, b)?),
            KvBuf::Bf16(b) => Cache::Bf16(cache(d, o.capacity, rows, kv_len, b)?),
        };
        let too_small = |buffer, needed, available| {
            EngineError::Model(Error::BufferTooSmall {
                buffer,
                needed,
                available,
            })
        };
        use picoformer::Buffer::{Context, Output};
        let context_len = rows.saturating_mul(d.dim_context());
        if buf.context.len() < context_len {
            return Err(too_small(Context, context_len, buf.context.len()));
        }
        let scratch = Scratch::new(d, o.chunk, buf.scratch)?;
        if buf.logits.len() < v || buf.work.len() < Sampler::work_len(v) {
            return Err(too_small(Output, v, buf.logits.len().min(buf.work.len())));
        }
        let full = v.saturating_mul(o.full_rows);
        if buf.full_logits.len() < full {
            return Err(too_small(Output, full, buf.full_logits.len()));
        }
        Ok(Self {
            model,
            cache,
            scratch,
            logits: &mut buf.logits[..v],
            full_logits: &mut buf.full_logits[..full],
            work: &mut buf.work[..Sampler::work_len(v)],
            context: &mut buf.context[..context_len],
            context_rows: 0,
            rng: Rng::new(0),
            has_logits: false,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &WrapperConfig {
        self.model.config()
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        with_cache!(&self.cache, c => c.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cache capacity in positions.
    pub fn capacity(&self) -> usize {
        with_cache!(&self.cache, c => c.capacity())
    }

    /// The logits of the last prefill or step.
    pub fn logits(&self) -> &[f32] {
        self.logits
    }

    /// The context buffer (`max_context · dim_context` f32; empty without cross-attention):
    /// the caller writes a context's rows here, then calls [`Self::set_context`].
    pub fn context_buffer(&mut self) -> &mut [f32] {
        self.context
    }

    /// Makes the first `rows` rows of the context buffer the context and starts a new sequence
    /// (the cache is reset: its context's keys and values are computed again, from these rows,
    /// by the next prefill or step).
    ///
    /// # Errors
    /// [`EngineError::NotCrossAttending`], or [`Error::ContextTooLong`] for `rows` beyond
    /// `max_context` and [`Error::EmptyInput`] for 0; nothing changes then.
    pub fn set_context(&mut self, rows: usize) -> Result<(), EngineError<'w>> {
        let d = &self.model.config().attn_layers;
        if !d.cross_attend {
            return Err(EngineError::NotCrossAttending);
        }
        let capacity = self.context.len() / d.dim_context().max(1);
        if rows > capacity {
            return Err(Error::ContextTooLong { rows, capacity }.into());
        }
        if rows == 0 {
            return Err(Error::EmptyInput.into());
        }
        self.context_rows = rows;
        self.reset();
        Ok(())
    }

    /// Runs `tokens` after what is cached and keeps the last position's logits.
    ///
    /// # Errors
    /// The library's errors ([`Error::EmptyInput`], [`Error::TokenOutOfRange`],
    /// [`Error::CacheFull`], [`Error::PositionOutOfRange`]); nothing changes then.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<(), Error> {
        if tokens.is_empty() {
            return Err(Error::EmptyInput);
        }
        let ctx = context(self.model.config(), self.context, self.context_rows);
        let (m, s, l) = (&self.model, &mut self.scratch, &mut *self.logits);
        with_cache!(&mut self.cache, c => m.forward_last(c, s, tokens, ctx, l))?;
        self.has_logits = true;
        Ok(())
    }

    /// Runs one token.
    ///
    /// # Errors
    /// As [`Self::prefill`].
    pub fn step(&mut self, token: u32) -> Result<(), Error> {
        self.prefill(&[token])
    }

    /// Runs `tokens` and returns the logits of every position (`n × num_tokens`).
    ///
    /// # Errors
    /// [`EngineError::TooManyRows`] beyond `full_rows`, or as [`Self::prefill`].
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<&[f32], EngineError<'w>> {
        let v = self.model.config().num_tokens;
        let rows = self.full_logits.len() / v;
        if tokens.len() > rows {
            return Err(EngineError::TooManyRows {
                rows: tokens.len(),
                capacity: rows,
            });
        }
        let ctx = context(self.model.config(), self.context, self.context_rows);
        let out = &mut self.full_logits[..tokens.len() * v];
        let (m, s) = (&self.model, &mut self.scratch);
        with_cache!(&mut self.cache, c => m.forward(c, s, tokens, ctx, out))?;
        // The last row is the newest logits, as after a prefill.
        self.logits.copy_from_slice(&out[out.len() - v..]);
        self.has_logits = true;
        Ok(&self.full_logits[..tokens.len() * v])
    }

    /// Largest |full − stepwise| over the logits of `tokens` decoded from an empty cache both
    /// ways: all positions at once, and one position per call. Leaves `tokens` cached.
    ///
    /// # Errors
    /// As [`Self::forward_all`].
    pub fn full_vs_stepwise(&mut self, tokens: &[u32]) -> Result<f32, EngineError<'w>> {
        self.reset();
        self.forward_all(tokens)?;
        self.reset();
        let v = self.model.config().num_tokens;
        let mut worst = 0.0f32;
        for (i, &t) in tokens.iter().enumerate() {
            self.step(t)?;
            for (a, b) in self
                .logits
                .iter()
                .zip(&self.full_logits[i * v..(i + 1) * v])
            {
                let d = (a - b).abs();
                worst = if d.is_nan() {
                    f32::INFINITY
                } else {
                    worst.max(d)
                };
            }
        }
        Ok(worst)
    }

    /// Seeds the sampler's RNG.
    pub fn seed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// Picks the next token from the current logits.
    ///
    /// # Errors
    /// [`EngineError::NoLogits`] before the first prefill after a reset.
    pub fn sample(&mut self, s: &Sampling) -> Result<u32, EngineError<'w>> {
        if !self.has_logits {
            return Err(EngineError::NoLogits);
        }
        let mut sampler = Sampler::new(s.config(), 0).map_err(EngineError::Sample)?;
        // The RNG state lives in the session, so options can change from one token to the next.
        *sampler.rng() = self.rng;
        let token = sampler
            .sample(self.logits, &[], self.work)
            .map_err(EngineError::Sample)?;
        self.rng = *sampler.rng();
        Ok(token)
    }

    /// Prefills `prompt` (if not empty), then samples up to `max_tokens` tokens, feeding each
    /// back, and hands each to `on_token`. Stops early, without error, when the cache (or the
    /// absolute position table) is full: the last token is then sampled but not fed back.
    /// Returns the number of tokens produced.
    ///
    /// # Errors
    /// As [`Self::prefill`] for the prompt; [`EngineError::NoLogits`] for an empty prompt on an
    /// empty session.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        s: &Sampling,
        max_tokens: usize,
        mut on_token: impl FnMut(u32),
    ) -> Result<usize, EngineError<'w>> {
        if !prompt.is_empty() {
            self.prefill(prompt)?;
        }
        let mut produced = 0;
        while produced < max_tokens {
            let t = self.sample(s)?;
            on_token(t);
            produced += 1;
            if produced == max_tokens {
                break;
            }
            match self.step(t) {
                Ok(()) => {}
                Err(Error::CacheFull { .. } | Error::PositionOutOfRange { .. }) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(produced)
    }

    /// Forgets everything cached. O(1).
    pub fn reset(&mut self) {
        with_cache!(&mut self.cache, c => c.reset());
        self.has_logits = false;
    }

    /// Rewinds to `len` positions. The logits are those of the last call until the next one.
    ///
    /// # Errors
    /// [`Error::TruncateBeyondLength`]; nothing changes.
    pub fn truncate(&mut self, len: usize) -> Result<(), Error> {
        with_cache!(&mut self.cache, c => c.truncate(len))?;
        if len == 0 {
            self.has_logits = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    /// wrap_tied: 40 tokens, dim 32, depth 2, one kv head of 16.
    fn model_bytes() -> vec::Vec<u64> {
        let bytes = include_bytes!("../../tests/fixtures/wrap_tied.model.safetensors");
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (w, c) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            *w = u64::from_le_bytes(b);
        }
        words
    }

    #[test]
    fn sampling_options_map_zero_and_one_to_off() {
        let c = Sampling::GREEDY.config();
        assert!(c.is_greedy() && c.top_k.is_none() && c.top_p.is_none() && c.min_p.is_none());
        let c = Sampling {
            temperature: 0.7,
            top_k: 5,
            top_p: 0.9,
            min_p: 0.1,
        }
        .config();
        assert_eq!((c.top_k, c.top_p, c.min_p), (Some(5), Some(0.9), Some(0.1)));
    }

    #[test]
    fn plan_matches_the_library_formulas_and_generation_stops_when_full() {
        let words = model_bytes();
        let len = include_bytes!("../../tests/fixtures/wrap_tied.model.safetensors").len();
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..len];
        let model = load(bytes).unwrap();
        let o = Options {
            capacity: 6,
            chunk: 2,
            kv: KvKind::F16,
            full_rows: 0,
            max_context: 0,
        };
        let plan = Plan::new(model.config(), len, &o);
        assert_eq!(plan.kv_cache, 2 * 2 * 16 * 6 * 2);
        assert_eq!(plan.sampler, 40 * 8);
        let mut kv = vec![f16::ZERO; plan.kv_cache / 2];
        let mut scratch = vec![0f32; plan.scratch / 4];
        let (mut logits, mut work) = (vec![0f32; 40], vec![Candidate::EMPTY; 40]);
        let buf = Buffers {
            kv: KvBuf::F16(&mut kv),
            context: &mut [],
            scratch: &mut scratch,
            logits: &mut logits,
            full_logits: &mut [],
            work: &mut work,
        };
        let mut s = Session::new(model, &o, buf).unwrap();
        assert_eq!(s.sample(&Sampling::GREEDY), Err(EngineError::NoLogits));
        let mut out = vec::Vec::new();
        // 3 prompt positions + 3 fed back fill the 6; the 4th token is sampled, not fed back.
        let n = s
            .generate(&[1, 2, 3], &Sampling::GREEDY, 10, |t| out.push(t))
            .unwrap();
        assert_eq!((n, out.len(), s.len()), (4, 4, 6));
        assert!(matches!(
            s.step(1),
            Err(Error::CacheFull {
                len: 6,
                requested: 1,
                capacity: 6
            })
        ));
        assert!(matches!(
            s.forward_all(&[1]),
            Err(EngineError::TooManyRows {
                rows: 1,
                capacity: 0
            })
        ));
    }
}
