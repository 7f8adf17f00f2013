//! One decoding session over caller-provided buffers: a `TransformerWrapper` borrowed from the
//! model bytes, its KV cache, the scratch arena, the logits and the sampler's work buffers.
//! The wasm exports and the native `host-tokens` tool both drive this type, so they run the
//! same code path.
#![deny(unsafe_code)]

use core::fmt;

use picoformer::sampling::{Candidate, Rng, SampleError, Sampler, SamplerConfig};
use picoformer::{
    bf16, f16, Error, KvCache, LoadError, Masks, Model, Scratch, TransformerWrapper, WrapperConfig,
};

/// Sampling options as the wasm ABI passes them (`top_k` 0, `top_p` exactly 1, `min_p` exactly 0,
/// `repetition_penalty` exactly 1 mean "off"), for [`picoformer::sampling`]. Every other value
/// goes to the library, which refuses what is out of range (NaN included).
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
    /// Divide positive logits (multiply negative ones) of recent tokens by this; 1 is off.
    pub repetition_penalty: f32,
    /// How many of the most recent tokens (prompt and generated) the penalty covers.
    pub repetition_window: u32,
}

impl Sampling {
    /// Greedy decoding.
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        repetition_window: 0,
    };

    /// The library's configuration, checked: a value out of range (a `top_p` of 2 or NaN, a
    /// negative temperature, ...) is an error, never silently "off".
    ///
    /// # Errors
    /// [`SampleError::InvalidConfig`] naming the field.
    pub fn config(&self) -> Result<SamplerConfig, SampleError> {
        let mut c = SamplerConfig::temperature(self.temperature);
        if self.top_k > 0 {
            c = c.with_top_k(self.top_k as usize);
        }
        if self.top_p != 1.0 {
            c = c.with_top_p(self.top_p);
        }
        if self.min_p != 0.0 {
            c = c.with_min_p(self.min_p);
        }
        c = c.with_repetition_penalty(self.repetition_penalty, self.repetition_window as usize);
        c.validate()?;
        Ok(c)
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
    /// The context's padding mask (`max_context` bools).
    pub context_mask: usize,
    /// The scratch arena for `chunk` positions.
    pub scratch: usize,
    /// Last-position logits (`num_tokens` f32).
    pub logits: usize,
    /// All-positions logits for [`Session::forward_all`] (`full_rows · num_tokens` f32).
    pub full_logits: usize,
    /// The sampler's work slice (`num_tokens` [`Candidate`]s).
    pub sampler: usize,
    /// One token buffer (`capacity` u32); the arena has three: the input, the generated
    /// output and the generation history (repetition penalty, sliding window).
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
            context_mask: rows,
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
            self.context_mask,
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
    /// [`Session::next`] without a generation: begin one first.
    NoGeneration,
    /// The sampler refused the options or the logits.
    Sample(SampleError),
    /// The library refused the call; nothing changed.
    Model(Error),
    /// The call does not fit the model's kind (a token generation asked of an encoder, ...).
    WrongKind(crate::family::Kind),
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
            Self::NoGeneration => write!(
                f,
                "no generation in progress (a prefill, step, truncate or reset ended it): call generate"
            ),
            Self::Sample(e) => write!(f, "cannot sample: {e}"),
            Self::Model(e) => write!(f, "{e}"),
            Self::WrongKind(k) => write!(
                f,
                "the model is {} {}: it does not take this call",
                if matches!(k, crate::family::Kind::EncoderWrapper | crate::family::Kind::Encoder) {
                    "an"
                } else {
                    "a"
                },
                k.name()
            ),
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
    /// The context's padding mask ([`Plan::context_mask`] entries).
    pub context_mask: &'b mut [bool],
    /// Scratch arena.
    pub scratch: &'b mut [f32],
    /// Last-position logits.
    pub logits: &'b mut [f32],
    /// All-positions logits.
    pub full_logits: &'b mut [f32],
    /// The sampler's work slice.
    pub work: &'b mut [Candidate],
    /// The generation history (`capacity` u32: the repetition window and the sliding window's
    /// `keep` are at most the capacity).
    pub history: &'b mut [u32],
}

/// Stop tokens a generation can have.
pub const MAX_STOP_TOKENS: usize = 16;

/// A generation's settings, checked as a whole by [`Session::begin`] before anything runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Generate {
    /// The sampler's settings.
    pub sampling: Sampling,
    /// At most this many new tokens (0: none).
    pub max_tokens: usize,
    /// 0: stop when the cache is full ([`picoformer::generate::Overflow::Stop`]); otherwise
    /// slide the window, re-encoding the last `keep` tokens
    /// ([`picoformer::generate::Overflow::Slide`]).
    pub keep: usize,
    /// Stop after producing one of the first `n_stop` of these (it is reported).
    pub stop: [u32; MAX_STOP_TOKENS],
    /// Stop tokens in use.
    pub n_stop: usize,
    /// Reseed the sampler first.
    pub seed: Option<u64>,
    /// The prompt given is the end of a longer one (cut by the caller to fit its buffer): with
    /// a sliding window it is run as one that does not fit.
    pub cut_prompt: bool,
}

impl Generate {
    /// Up to `max_tokens` tokens with `sampling`, stopping when the cache is full.
    pub const fn new(sampling: Sampling, max_tokens: usize) -> Self {
        Self {
            sampling,
            max_tokens,
            keep: 0,
            stop: [0; MAX_STOP_TOKENS],
            n_stop: 0,
            seed: None,
            cut_prompt: false,
        }
    }

    /// The stop tokens in use (empty if `n_stop` is out of range, which `begin` refuses).
    pub fn stop_tokens(&self) -> &[u32] {
        self.stop.get(..self.n_stop).unwrap_or(&[])
    }
}

/// Why a generation stopped (as [`picoformer::generate::StopReason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `max_tokens` were produced.
    MaxTokens = 1,
    /// A stop token was produced (the last token).
    StopToken = 2,
    /// The cache (or the absolute position table) is full, without a sliding window.
    CacheFull = 3,
}

/// The generation in progress.
#[derive(Clone, Copy, Debug)]
struct Gen {
    settings: Generate,
    sampler: SamplerConfig,
    produced: usize,
    /// Tokens the history must keep: the repetition window and the sliding window.
    need: usize,
    done: Option<Stop>,
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
fn cache<'b, T: picoformer::Element>(
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
pub(crate) fn context<'c>(
    d: &picoformer::DecoderConfig,
    buf: &'c [f32],
    rows: usize,
) -> Option<&'c [f32]> {
    let n = rows.saturating_mul(d.dim_context());
    (rows > 0).then(|| buf.get(..n)).flatten()
}

/// The set context's padding mask (its first `rows` entries of `mask`, if one was given), for
/// every model call: x-transformers' `context_mask`, applied on each call (the library keeps
/// the projected rows, not their mask).
pub(crate) fn context_masks(mask: &[bool], rows: usize, masked: bool) -> Masks<'_> {
    Masks {
        mask: None,
        context_mask: if masked { mask.get(..rows) } else { None },
    }
}

/// Copies a padding mask given as bytes (0: padding, anything else: real) into `to`.
///
/// # Errors
/// [`Error::BufferLength`] with [`picoformer::Buffer::Mask`] unless `from` has `rows` entries
/// and `to` room for them; nothing is written then.
pub(crate) fn copy_mask(from: &[u8], to: &mut [bool], rows: usize) -> Result<(), Error> {
    if from.len() != rows || to.len() < rows {
        return Err(Error::BufferLength {
            buffer: picoformer::Buffer::Mask,
            expected: rows,
            found: from.len(),
        });
    }
    for (t, &f) in to.iter_mut().zip(from) {
        *t = f != 0;
    }
    Ok(())
}

/// [`Error::TokenOutOfRange`] for the first token not below `v`.
fn check_tokens(tokens: &[u32], v: usize) -> Result<(), Error> {
    match tokens.iter().position(|&t| t as usize >= v) {
        Some(index) => Err(Error::TokenOutOfRange {
            token: tokens[index],
            index,
            num_tokens: v,
        }),
        None => Ok(()),
    }
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
    /// The context's padding mask (`max_context` entries), in use when `masked`.
    context_mask: &'b mut [bool],
    masked: bool,
    rng: Rng,
    has_logits: bool,
    /// The most recent tokens of the generation, oldest first (`history[..history_len]`).
    history: &'b mut [u32],
    history_len: usize,
    /// The last generated token: reported, not yet run (run by the next token's [`Session::next`]).
    pending: Option<u32>,
    generation: Option<Gen>,
    reencodes: usize,
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
        if buf.context_mask.len() < rows {
            return Err(too_small(
                picoformer::Buffer::ContextMask,
                rows,
                buf.context_mask.len(),
            ));
        }
        let scratch = Scratch::new(d, o.chunk, buf.scratch)?;
        if buf.logits.len() < v || buf.work.len() < Sampler::work_len(v) {
            return Err(too_small(Output, v, buf.logits.len().min(buf.work.len())));
        }
        let full = v.saturating_mul(o.full_rows);
        if buf.full_logits.len() < full {
            return Err(too_small(Output, full, buf.full_logits.len()));
        }
        if buf.history.len() < o.capacity {
            return Err(too_small(Output, o.capacity, buf.history.len()));
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
            context_mask: buf.context_mask,
            masked: false,
            rng: Rng::new(0),
            has_logits: false,
            history: buf.history,
            history_len: 0,
            pending: None,
            generation: None,
            reencodes: 0,
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

    /// Context rows the context buffer holds (`max_context`; 0 without cross-attention).
    pub fn max_context(&self) -> usize {
        self.context.len() / self.model.config().attn_layers.dim_context().max(1)
    }

    /// The context buffer (`max_context · dim_context` f32; empty without cross-attention):
    /// the caller writes a context's rows here, then calls [`Self::set_context`].
    pub fn context_buffer(&mut self) -> &mut [f32] {
        self.context
    }

    /// Makes the first `rows` rows of the context buffer the context and starts a new sequence
    /// (the cache is reset: its context's keys and values are computed again, from these rows,
    /// by the next prefill or step). `mask` (one byte per row, 0 for padding) is the context's
    /// padding mask, x-transformers' `context_mask`, applied on every call; `None`: all real.
    ///
    /// # Errors
    /// [`EngineError::NotCrossAttending`], or [`Error::ContextTooLong`] for `rows` beyond
    /// `max_context`, [`Error::EmptyInput`] for 0 and [`Error::BufferLength`] for a mask of
    /// another length; nothing changes then.
    pub fn set_context(&mut self, rows: usize, mask: Option<&[u8]>) -> Result<(), EngineError<'w>> {
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
        if let Some(m) = mask {
            copy_mask(m, self.context_mask, rows)?;
        }
        self.masked = mask.is_some();
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
        self.run(tokens)?;
        self.end_generation();
        Ok(())
    }

    /// [`Self::prefill`] without ending a generation.
    fn run(&mut self, tokens: &[u32]) -> Result<(), Error> {
        if tokens.is_empty() {
            return Err(Error::EmptyInput);
        }
        let d = &self.model.config().attn_layers;
        let ctx = context(d, self.context, self.context_rows);
        let masks = context_masks(self.context_mask, self.context_rows, self.masked);
        let (m, s, l) = (&self.model, &mut self.scratch, &mut *self.logits);
        with_cache!(&mut self.cache, c => m.forward_last_masked(c, s, tokens, ctx, masks, l))?;
        self.has_logits = true;
        Ok(())
    }

    /// Forgets the generation in progress (its last token, not yet run, and its history).
    fn end_generation(&mut self) {
        self.generation = None;
        self.pending = None;
        self.history_len = 0;
    }

    /// Positions that can still be run: the cache's room, and for absolute positions the
    /// table's.
    pub fn room(&self) -> usize {
        let cfg = self.model.config();
        let len = self.len();
        let room = self.capacity().saturating_sub(len);
        if cfg.has_abs_pos_emb() {
            room.min(cfg.max_seq_len.saturating_sub(len))
        } else {
            room
        }
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
        let d = &self.model.config().attn_layers;
        let ctx = context(d, self.context, self.context_rows);
        let masks = context_masks(self.context_mask, self.context_rows, self.masked);
        let out = &mut self.full_logits[..tokens.len() * v];
        let (m, s) = (&self.model, &mut self.scratch);
        with_cache!(&mut self.cache, c => m.forward_masked(c, s, tokens, ctx, masks, out))?;
        // The last row is the newest logits, as after a prefill.
        if let Some(last) = out.len().checked_sub(v).and_then(|at| out.get(at..)) {
            self.logits.copy_from_slice(last);
        }
        self.has_logits = true;
        self.end_generation();
        Ok(&self.full_logits[..tokens.len() * v])
    }

    /// Largest |full − stepwise| over the logits of `tokens` decoded from an empty cache both
    /// ways: all positions at once, and one position per call. Leaves `tokens` cached.
    ///
    /// # Errors
    /// As [`Self::forward_all`].
    pub fn full_vs_stepwise(&mut self, tokens: &[u32]) -> Result<f32, EngineError<'w>> {
        // Everything the two passes could refuse is checked before the cache is reset.
        let cfg = *self.model.config();
        let v = cfg.num_tokens;
        let rows = self.full_logits.len() / v.max(1);
        if tokens.len() > rows {
            return Err(EngineError::TooManyRows {
                rows: tokens.len(),
                capacity: rows,
            });
        }
        if tokens.is_empty() {
            return Err(Error::EmptyInput.into());
        }
        check_tokens(tokens, v)?;
        if tokens.len() > self.capacity() {
            return Err(Error::CacheFull {
                len: 0,
                requested: tokens.len(),
                capacity: self.capacity(),
            }
            .into());
        }
        if cfg.has_abs_pos_emb() && tokens.len() > cfg.max_seq_len {
            return Err(Error::PositionOutOfRange {
                position: cfg.max_seq_len,
                max_seq_len: cfg.max_seq_len,
            }
            .into());
        }
        if cfg.attn_layers.cross_attend && self.context_rows == 0 {
            return Err(Error::ContextRequired.into());
        }
        self.reset();
        self.forward_all(tokens)?;
        self.reset();
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

    /// Picks the next token from the current logits (no repetition penalty: it has no
    /// history; [`Self::next_token`] has).
    ///
    /// # Errors
    /// [`EngineError::Sample`] for settings out of range, [`EngineError::NoLogits`] before the
    /// first prefill after a reset; nothing changes then (the RNG included).
    pub fn sample(&mut self, s: &Sampling) -> Result<u32, EngineError<'w>> {
        let config = s.config().map_err(EngineError::Sample)?;
        if !self.has_logits {
            return Err(EngineError::NoLogits);
        }
        self.draw(config, false)
    }

    /// One token from the current logits with `config`, the RNG carried over; with `recent`,
    /// the history is the repetition penalty's.
    fn draw(&mut self, config: SamplerConfig, recent: bool) -> Result<u32, EngineError<'w>> {
        let mut sampler = Sampler::new(config, 0).map_err(EngineError::Sample)?;
        // The RNG state lives in the session, so options can change from one token to the next.
        *sampler.rng() = self.rng;
        let history = if recent {
            &self.history[..self.history_len]
        } else {
            &[]
        };
        let token = sampler
            .sample(self.logits, history, self.work)
            .map_err(EngineError::Sample)?;
        self.rng = *sampler.rng();
        Ok(token)
    }

    /// Starts a generation: checks every setting and the prompt, then runs `prompt` after what
    /// is cached (with a sliding window, a prompt longer than the room left is cut to its last
    /// `keep` tokens and run from position 0, as the library's `Generator` does). An empty
    /// prompt continues the generation in progress (its last token is run by the next
    /// [`Self::next_token`]) or, without one, samples from the current logits. Then call
    /// [`Self::next_token`] for each token.
    ///
    /// # Errors
    /// [`EngineError::Sample`] and [`EngineError::BadOption`] for settings out of range,
    /// [`Error::TokenOutOfRange`], [`Error::CacheFull`], [`Error::PositionOutOfRange`],
    /// [`Error::ContextRequired`], [`EngineError::NoLogits`]: then nothing has changed (cache,
    /// logits, RNG, history, the generation in progress).
    pub fn begin(&mut self, prompt: &[u32], g: &Generate) -> Result<(), EngineError<'w>> {
        let cfg = *self.model.config();
        let v = cfg.num_tokens;
        let sampler = g.sampling.config().map_err(EngineError::Sample)?;
        let capacity = self.capacity();
        let positions = if cfg.has_abs_pos_emb() {
            capacity.min(cfg.max_seq_len)
        } else {
            capacity
        };
        if sampler.repetition_window > self.history.len() {
            return Err(EngineError::BadOption("repetitionWindow"));
        }
        if g.n_stop > MAX_STOP_TOKENS || g.stop_tokens().iter().any(|&t| t as usize >= v) {
            return Err(EngineError::BadOption("stop"));
        }
        if g.keep > positions {
            return Err(EngineError::BadOption("slide"));
        }
        check_tokens(prompt, v)?;
        if cfg.attn_layers.cross_attend && self.context_rows == 0 {
            return Err(Error::ContextRequired.into());
        }
        let need = sampler.repetition_window.max(g.keep);
        if prompt.is_empty() {
            if self.pending.is_none() && !self.has_logits {
                return Err(EngineError::NoLogits);
            }
            // Continue: the history and the last token stay.
        } else {
            if (prompt.len() > self.room() || g.cut_prompt) && g.keep > 0 {
                // The window: the prompt's last `keep` tokens, from position 0 (the cached
                // context stays). Checked above: the tokens, the context, `keep` fits.
                let window = &prompt[prompt.len() - g.keep.min(prompt.len())..];
                // Everything the model call could refuse was checked above (tokens, context,
                // a window of 1..=positions), so the rewind is not followed by a failure.
                with_cache!(&mut self.cache, c => c.truncate(0))?;
                self.run(window)?;
                self.reencodes += 1;
            } else {
                // Refused (cache or position table full) before anything is written.
                self.run(prompt)?;
            }
            self.pending = None;
            self.history_len = 0;
            let tail = &prompt[prompt.len().saturating_sub(self.history.len())..];
            for &t in tail {
                self.push(t, need);
            }
        }
        if let Some(seed) = g.seed {
            self.rng = Rng::new(seed);
        }
        self.generation = Some(Gen {
            settings: *g,
            sampler,
            produced: 0,
            need,
            done: None,
        });
        Ok(())
    }

    /// The next token of the generation started by [`Self::begin`], or `None` when it has
    /// stopped ([`Self::stop_reason`] says why). Runs the previous token first (sliding the
    /// window when the cache is full and the generation has one), then samples.
    ///
    /// # Errors
    /// [`EngineError::NoGeneration`] without one; [`EngineError::Sample`] if the model produced
    /// NaN or infinite logits.
    pub fn next_token(&mut self) -> Result<Option<u32>, EngineError<'w>> {
        let Some(mut g) = self.generation else {
            return Err(EngineError::NoGeneration);
        };
        if g.done.is_some() {
            return Ok(None);
        }
        if g.produced >= g.settings.max_tokens {
            return Ok(self.finish(Stop::MaxTokens));
        }
        if let Some(p) = self.pending {
            if self.room() == 0 {
                let keep = g.settings.keep;
                if keep == 0 {
                    return Ok(self.finish(Stop::CacheFull));
                }
                // Slide: the last `keep` tokens (the pending one included) from position 0.
                let from = self.history_len - keep.min(self.history_len);
                let d = &self.model.config().attn_layers;
                let ctx = context(d, self.context, self.context_rows);
                let masks = context_masks(self.context_mask, self.context_rows, self.masked);
                let window = &self.history[from..self.history_len];
                let (m, s, l) = (&self.model, &mut self.scratch, &mut *self.logits);
                with_cache!(&mut self.cache, c => {
                    c.truncate(0)?;
                    m.forward_last_masked(c, s, window, ctx, masks, l)?;
                });
                self.reencodes += 1;
            } else {
                self.run(&[p])?;
            }
            self.pending = None;
        }
        let t = self.draw(g.sampler, true)?;
        self.push(t, g.need);
        self.pending = Some(t);
        g.produced += 1;
        if g.settings.stop_tokens().contains(&t) {
            g.done = Some(Stop::StopToken);
        }
        self.generation = Some(g);
        Ok(Some(t))
    }

    fn finish(&mut self, why: Stop) -> Option<u32> {
        if let Some(g) = self.generation.as_mut() {
            g.done = Some(why);
        }
        None
    }

    /// Why the generation stopped (`None` while it runs or without one).
    pub fn stop_reason(&self) -> Option<Stop> {
        self.generation.and_then(|g| g.done)
    }

    /// Times a sliding window re-encoded its last tokens since the session was made.
    pub fn reencodes(&self) -> usize {
        self.reencodes
    }

    /// Appends one token to the history, dropping the oldest first when it is full (keeping
    /// the last `need - 1`, as the library's `Generator`).
    fn push(&mut self, token: u32, need: usize) {
        let cap = self.history.len();
        if cap == 0 {
            return;
        }
        if self.history_len >= cap {
            let keep = need.saturating_sub(1).min(cap - 1);
            self.history.copy_within(cap - keep..cap, 0);
            self.history_len = keep;
        }
        self.history[self.history_len] = token;
        self.history_len += 1;
    }

    /// [`Self::begin`], then [`Self::next_token`] until it stops, handing each token to `on_token`.
    /// Returns the number of tokens and why it stopped.
    ///
    /// # Errors
    /// As [`Self::begin`] and [`Self::next_token`].
    pub fn generate(
        &mut self,
        prompt: &[u32],
        g: &Generate,
        mut on_token: impl FnMut(u32),
    ) -> Result<(usize, Stop), EngineError<'w>> {
        self.begin(prompt, g)?;
        let mut n = 0;
        while let Some(t) = self.next_token()? {
            on_token(t);
            n += 1;
        }
        Ok((n, self.stop_reason().unwrap_or(Stop::MaxTokens)))
    }

    /// Forgets everything cached. O(1).
    pub fn reset(&mut self) {
        with_cache!(&mut self.cache, c => c.reset());
        self.has_logits = false;
        self.end_generation();
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
        self.end_generation();
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
    fn sampling_options_map_zero_and_one_to_off_and_refuse_the_rest() {
        let c = Sampling::GREEDY.config().unwrap();
        assert!(c.is_greedy() && c.top_k.is_none() && c.top_p.is_none() && c.min_p.is_none());
        let c = Sampling {
            temperature: 0.7,
            top_k: 5,
            top_p: 0.9,
            min_p: 0.1,
            repetition_penalty: 1.2,
            repetition_window: 8,
        }
        .config()
        .unwrap();
        assert_eq!((c.top_k, c.top_p, c.min_p), (Some(5), Some(0.9), Some(0.1)));
        assert_eq!((c.repetition_penalty, c.repetition_window), (1.2, 8));
        // Out of range is an error, never "off" (top_p 2 and NaN were silently off before).
        let bad = |f: fn(&mut Sampling)| {
            let mut s = Sampling::GREEDY;
            f(&mut s);
            s.config().unwrap_err()
        };
        let name = |e| match e {
            SampleError::InvalidConfig(n) => n,
            e => panic!("{e:?}"),
        };
        assert_eq!(name(bad(|s| s.top_p = 2.0)), "top_p");
        assert_eq!(name(bad(|s| s.top_p = f32::NAN)), "top_p");
        assert_eq!(name(bad(|s| s.min_p = f32::NAN)), "min_p");
        assert_eq!(name(bad(|s| s.min_p = -0.5)), "min_p");
        assert_eq!(name(bad(|s| s.temperature = f32::NAN)), "temperature");
        assert_eq!(
            name(bad(|s| s.repetition_penalty = 0.0)),
            "repetition_penalty"
        );
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
        let mut history = vec![0u32; 6];
        let buf = Buffers {
            kv: KvBuf::F16(&mut kv),
            context: &mut [],
            context_mask: &mut [],
            scratch: &mut scratch,
            logits: &mut logits,
            full_logits: &mut [],
            work: &mut work,
            history: &mut history,
        };
        let mut s = Session::new(model, &o, buf).unwrap();
        assert_eq!(s.sample(&Sampling::GREEDY), Err(EngineError::NoLogits));
        let mut out = vec::Vec::new();
        // 3 prompt positions + 3 fed back fill the 6; the 4th token is sampled, not fed back.
        let g = Generate::new(Sampling::GREEDY, 10);
        let (n, why) = s.generate(&[1, 2, 3], &g, |t| out.push(t)).unwrap();
        assert_eq!((n, out.len(), s.len(), why), (4, 4, 6, Stop::CacheFull));
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

    /// A wrap_tied session with `capacity` positions, run by `f`.
    fn with_session<R>(capacity: usize, f: impl FnOnce(&mut Session<'_, '_>) -> R) -> R {
        let words = model_bytes();
        let len = include_bytes!("../../tests/fixtures/wrap_tied.model.safetensors").len();
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..len];
        let model = load(bytes).unwrap();
        let d = model.config().attn_layers;
        let o = Options {
            capacity,
            chunk: 4,
            kv: KvKind::F32,
            full_rows: 0,
            max_context: 0,
        };
        let mut kv = vec![0f32; KvCache::<f32>::elements(&d, capacity)];
        let mut scratch = vec![0f32; Scratch::elements(&d, 4)];
        let (mut logits, mut work) = (vec![0f32; 40], vec![Candidate::EMPTY; 40]);
        let mut history = vec![0u32; capacity];
        let buf = Buffers {
            kv: KvBuf::F32(&mut kv),
            context: &mut [],
            context_mask: &mut [],
            scratch: &mut scratch,
            logits: &mut logits,
            full_logits: &mut [],
            work: &mut work,
            history: &mut history,
        };
        let mut s = Session::new(model, &o, buf).unwrap();
        f(&mut s)
    }

    /// The library's `Generator` with the same settings: its tokens and stop reason.
    fn library_tokens(
        capacity: usize,
        prompt: &[u32],
        g: &Generate,
    ) -> (vec::Vec<u32>, picoformer::generate::StopReason) {
        use core::ops::ControlFlow;
        use picoformer::generate::{GenerateConfig, Generator, Overflow};
        let words = model_bytes();
        let len = include_bytes!("../../tests/fixtures/wrap_tied.model.safetensors").len();
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..len];
        let model = load(bytes).unwrap();
        let d = model.config().attn_layers;
        let mut kv = vec![0f32; KvCache::<f32>::elements(&d, capacity)];
        let mut arena = vec![0f32; Scratch::elements(&d, 4)];
        let mut cache = KvCache::new(&d, capacity, &mut kv).unwrap();
        let mut scratch = Scratch::new(&d, 4, &mut arena).unwrap();
        let sampler = Sampler::new(g.sampling.config().unwrap(), g.seed.unwrap()).unwrap();
        let mut config = GenerateConfig::new(g.max_tokens);
        if let Some(&t) = g.stop_tokens().first() {
            config = config.end_token(t);
        }
        if g.keep > 0 {
            config = config.overflow(Overflow::Slide { keep: g.keep });
        }
        let (mut logits, mut work) = (vec![0f32; 40], vec![Candidate::EMPTY; 40]);
        let mut history = vec![0u32; capacity];
        let mut gen =
            Generator::new(sampler, config, &mut logits, &mut work, &mut history).unwrap();
        let mut out = vec::Vec::new();
        let done = gen
            .run(&model, &mut cache, &mut scratch, prompt, |t| {
                out.push(t);
                ControlFlow::Continue(())
            })
            .unwrap();
        (out, done.reason)
    }

    #[test]
    fn generation_equals_the_library_generator_with_penalty_slide_and_end_token() {
        use picoformer::generate::StopReason;
        let sampling = Sampling {
            temperature: 0.9,
            top_k: 0,
            top_p: 0.95,
            min_p: 0.0,
            repetition_penalty: 1.5,
            repetition_window: 5,
        };
        for (keep, max, stop) in [
            (4, 40, None),
            (8, 25, None),
            (0, 40, None),
            (3, 60, Some(7)),
        ] {
            let mut g = Generate::new(sampling, max);
            g.keep = keep;
            g.seed = Some(11);
            if let Some(t) = stop {
                g.stop[0] = t;
                g.n_stop = 1;
            }
            let (expected, reason) = library_tokens(8, &[1, 2, 3], &g);
            let (got, why, slides) = with_session(8, |s| {
                let mut out = vec::Vec::new();
                let (_, why) = s.generate(&[1, 2, 3], &g, |t| out.push(t)).unwrap();
                (out, why, s.reencodes())
            });
            assert_eq!(got, expected, "keep {keep}");
            let want = match reason {
                StopReason::MaxTokens => Stop::MaxTokens,
                StopReason::CacheFull => Stop::CacheFull,
                StopReason::EndToken => Stop::StopToken,
                StopReason::Stopped => unreachable!(),
            };
            assert_eq!(why, want, "keep {keep}");
            assert_eq!(slides > 0, keep > 0 && got.len() > 5, "keep {keep}");
        }
    }

    #[test]
    fn a_refused_generation_changes_nothing() {
        with_session(8, |s| {
            s.prefill(&[1, 2, 3]).unwrap();
            s.seed(5);
            let logits = s.logits().to_vec();
            let rng = s.rng;
            let mut g = Generate::new(Sampling::GREEDY, 4);
            g.seed = Some(9);
            let bad = |f: fn(&mut Generate)| {
                let mut b = g;
                f(&mut b);
                b
            };
            let cases = [
                bad(|g| g.sampling.top_p = f32::NAN),
                bad(|g| g.sampling.temperature = -1.0),
                bad(|g| g.sampling.repetition_window = 9),
                bad(|g| g.keep = 9),
                bad(|g| {
                    g.stop[0] = 40;
                    g.n_stop = 1;
                }),
                bad(|g| g.n_stop = MAX_STOP_TOKENS + 1),
            ];
            for c in &cases {
                assert!(s.begin(&[4, 5], c).is_err(), "{c:?}");
            }
            assert!(s.begin(&[4, 40], &g).is_err());
            assert!(s.begin(&[4, 5, 6, 7, 8, 9], &g).is_err()); // 3 + 6 > 8
            assert_eq!((s.len(), s.logits(), s.rng), (3, &logits[..], rng));
            assert_eq!(s.next_token(), Err(EngineError::NoGeneration));
        });
    }
}
