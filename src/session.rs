//! With the `std` feature: an owned convenience layer over the no_std core. A [`Session`] holds a
//! `TransformerWrapper` model file (read from a path, or bytes the caller owns or lends, e.g. a
//! memory map) and every buffer generation needs — the KV cache, the scratch arena, the logits
//! row, the sampler's work slice and the token history — each sized by the library's `const fn`s
//! ([`KvCache::elements`], [`Scratch::elements`], [`WrapperConfig::logits_width`],
//! [`Sampler::work_len`], [`GenerateConfig::history_len`]) and allocated fallibly: a capacity too
//! large for the machine is [`SessionError::OutOfMemory`], never an abort.
//!
//! ```
//! use std::ops::ControlFlow;
//! use picoformer::generate::{GenerateConfig, StopReason};
//! use picoformer::sampling::SamplerConfig;
//! use picoformer::session::{Session, SessionConfig};
//!
//! let mut session = Session::open("models/demo.safetensors", SessionConfig::new().capacity(64))?
//!     .with_sampler(SamplerConfig::temperature(0.8).with_top_p(0.9), 42)?;
//! let prompt: Vec<u32> = b"Emma".iter().map(|&b| u32::from(b)).collect();
//! let mut text = Vec::new();
//! let done = session.generate(&prompt, GenerateConfig::new(20), |token| {
//!     text.push(token as u8); // the demo model is byte-level
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!((done.new_tokens, done.reason), (20, StopReason::MaxTokens));
//! # Ok::<(), picoformer::session::SessionError>(())
//! ```
//!
//! Each [`Session::generate`] starts from an empty cache and runs [`Generator::run`] over the
//! session's buffers: the same tokens as the explicit API over caller buffers, the same stop
//! reasons ([`StopReason`](crate::generate::StopReason)). The sampler's random state carries
//! over from call to call.
//!
//! The model's weights are views into the bytes, so a session does not keep a parsed model next
//! to the bytes it owns (that would borrow from itself): [`Session::model`] parses the file's
//! header again, which costs the header's JSON and a lookup per tensor (small next to a prefill;
//! not measured separately), once per call, not per token.
//!
//! Lower-level needs (an f16 cache, prefill or int8 panels, threads, a cross-attention context,
//! a depth above 16 blocks) use the core API directly: `examples/static_buffers.rs` and the
//! [`crate::generate`] module show it.

use std::boxed::Box;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::vec::Vec;

use core::fmt;
use core::ops::ControlFlow;

use crate::cache::KvCache;
use crate::config::WrapperConfig;
use crate::error::Error;
use crate::generate::{GenerateConfig, GenerateError, Generated, Generator};
use crate::model::{Model, OwnedLoadError};
use crate::sampling::{Candidate, SampleError, Sampler, SamplerConfig};
use crate::scratch::Scratch;
use crate::wrapper::TransformerWrapper;

/// Buffers start on a 64-byte boundary (a cache line: vector loads of a row do not straddle two).
const ALIGN: usize = 64;

/// How a [`Session`] sizes its buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Token positions the KV cache holds; `None`: the model's `max_seq_len` (256 if it has
    /// none). Must be at least 1, and at most `max_seq_len` for a model with absolute positions.
    pub capacity: Option<usize>,
    /// Prompt positions per forward chunk (the scratch arena's size); at least 1.
    pub chunk: usize,
}

impl SessionConfig {
    /// The default: the model's `max_seq_len` positions, chunks of 64.
    pub const fn new() -> Self {
        Self {
            capacity: None,
            chunk: 64,
        }
    }

    /// Sets the cache capacity in token positions.
    pub const fn capacity(mut self, positions: usize) -> Self {
        self.capacity = Some(positions);
        self
    }

    /// Sets the prefill chunk.
    pub const fn chunk(mut self, positions: usize) -> Self {
        self.chunk = positions;
        self
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a session could not be made or could not generate.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionError {
    /// The file could not be opened or read.
    Io {
        /// The path given.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The path is not a regular file (a directory, a device...).
    NotAFile(PathBuf),
    /// The bytes are not a model file picoformer loads.
    Load(Box<OwnedLoadError>),
    /// The file holds a raw `Decoder` (embeddings in): a session needs a `TransformerWrapper`
    /// (tokens in, logits out).
    NotAWrapper,
    /// The capacity is 0, or above the model's absolute position table (`max`).
    InvalidCapacity {
        /// The capacity asked for.
        capacity: usize,
        /// The most the model allows.
        max: usize,
    },
    /// The prefill chunk is 0.
    InvalidChunk,
    /// The model cannot run over the session's buffers (a cross-attending model needs a context:
    /// the core API's [`KvCache::with_context`]).
    Model(Error),
    /// A buffer could not be allocated (too large for the address space or the allocator).
    OutOfMemory {
        /// Which buffer.
        what: &'static str,
        /// Its size in bytes (saturated at `usize::MAX`).
        bytes: usize,
    },
    /// The sampler configuration is out of range.
    Sampler(SampleError),
    /// Generation failed (an empty prompt, a token outside the vocabulary, a prompt longer than
    /// the cache, a bad sliding window, non-finite logits...).
    Generate(GenerateError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Io { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            SessionError::NotAFile(path) => {
                write!(f, "cannot read {}: not a regular file", path.display())
            }
            SessionError::Load(e) => write!(f, "{e}"),
            SessionError::NotAWrapper => write!(
                f,
                "the file holds a raw Decoder: a session needs a TransformerWrapper (tokens in, logits out)"
            ),
            SessionError::InvalidCapacity { capacity, max } => write!(
                f,
                "cache capacity {capacity}: must be between 1 and {max} positions"
            ),
            SessionError::InvalidChunk => write!(f, "the prefill chunk must be at least 1"),
            SessionError::Model(e) => write!(f, "{e}"),
            SessionError::OutOfMemory { what, bytes } => {
                write!(f, "cannot allocate {bytes} bytes for {what}")
            }
            SessionError::Sampler(e) => write!(f, "{e}"),
            SessionError::Generate(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SessionError::Io { error, .. } => Some(error),
            SessionError::Load(e) => Some(&**e),
            SessionError::Model(e) => Some(e),
            SessionError::Sampler(e) => Some(e),
            SessionError::Generate(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GenerateError> for SessionError {
    fn from(e: GenerateError) -> Self {
        SessionError::Generate(e)
    }
}

impl From<OwnedLoadError> for SessionError {
    fn from(e: OwnedLoadError) -> Self {
        SessionError::Load(Box::new(e))
    }
}

/// `len` copies of `value`, or [`SessionError::OutOfMemory`] instead of an abort.
fn filled<T: Clone>(len: usize, value: T, what: &'static str) -> Result<Vec<T>, SessionError> {
    let mut v = Vec::new();
    if v.try_reserve_exact(len).is_err() {
        return Err(SessionError::OutOfMemory {
            what,
            bytes: len.saturating_mul(core::mem::size_of::<T>()),
        });
    }
    v.resize(len, value);
    Ok(v)
}

/// `len` zeros starting on a 64-byte boundary, in a vector a cache line longer.
#[derive(Debug)]
struct AlignedBuf<T> {
    v: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedBuf<T> {
    fn zeroed(len: usize, what: &'static str) -> Result<Self, SessionError> {
        let extra = ALIGN / core::mem::size_of::<T>().max(1);
        let v = filled(len.saturating_add(extra), T::default(), what)?;
        let start = v.as_ptr().align_offset(ALIGN).min(extra);
        Ok(Self { v, start, len })
    }

    fn get(&self) -> &[T] {
        self.v.get(self.start..self.start + self.len).unwrap_or(&[])
    }

    fn get_mut(&mut self) -> &mut [T] {
        let (start, len) = (self.start, self.len);
        self.v.get_mut(start..start + len).unwrap_or(&mut [])
    }
}

/// The model file's bytes.
#[derive(Debug)]
enum Bytes<'a> {
    /// Lent by the caller.
    Borrowed(&'a [u8]),
    /// Given by the caller, already 8-byte aligned.
    Vec(Vec<u8>),
    /// Read or copied into 64-byte-aligned words: the first `len` bytes.
    Words(AlignedBuf<u64>, usize),
}

impl Bytes<'_> {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Vec(v) => v,
            Bytes::Words(w, len) => bytemuck::cast_slice(w.get()).get(..*len).unwrap_or(&[]),
        }
    }

    /// `bytes` copied into aligned words.
    fn copied(bytes: &[u8]) -> Result<Bytes<'static>, SessionError> {
        let mut words = AlignedBuf::<u64>::zeroed(bytes.len().div_ceil(8), "the model file")?;
        if let Some(dst) =
            bytemuck::cast_slice_mut::<u64, u8>(words.get_mut()).get_mut(..bytes.len())
        {
            dst.copy_from_slice(bytes);
        }
        Ok(Bytes::Words(words, bytes.len()))
    }
}

/// Parses `bytes` as a `TransformerWrapper` file.
fn wrapper(bytes: &[u8]) -> Result<TransformerWrapper<'_>, SessionError> {
    match Model::from_safetensors(bytes) {
        Ok(Model::Wrapper(w)) => Ok(w),
        Ok(Model::Decoder(_)) => Err(SessionError::NotAWrapper),
        Err(e) => Err(SessionError::Load(Box::new(e.into_owned()))),
    }
}

/// A `TransformerWrapper` model file and the buffers to generate with it, sized from the file's
/// configuration and owned (see the [module documentation](self)).
#[derive(Debug)]
pub struct Session<'a> {
    bytes: Bytes<'a>,
    config: WrapperConfig,
    /// Token positions.
    capacity: usize,
    chunk: usize,
    kv: AlignedBuf<f32>,
    scratch: AlignedBuf<f32>,
    logits: Vec<f32>,
    work: Vec<Candidate>,
    history: Vec<u32>,
    sampler: Sampler,
}

impl Session<'static> {
    /// Reads the model file at `path` into 64-byte-aligned memory the session owns, then sizes
    /// the buffers (see [`Self::from_bytes`]).
    ///
    /// # Errors
    /// [`SessionError::Io`], [`SessionError::NotAFile`], [`SessionError::OutOfMemory`], and those
    /// of [`Self::from_bytes`].
    pub fn open(path: impl AsRef<Path>, config: SessionConfig) -> Result<Self, SessionError> {
        let path = path.as_ref();
        let io = |error| SessionError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(SessionError::NotAFile(path.to_path_buf()));
        }
        let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        let mut words = AlignedBuf::<u64>::zeroed(len.div_ceil(8), "the model file")?;
        let buf = bytemuck::cast_slice_mut::<u64, u8>(words.get_mut());
        let buf = buf.get_mut(..len).unwrap_or(&mut []);
        file.read_exact(buf).map_err(io)?;
        if file.read(&mut [0u8; 1]).map_err(io)? != 0 {
            return Err(io(std::io::Error::other("the file grew while being read")));
        }
        Self::with_bytes(Bytes::Words(words, len), config)
    }

    /// A session owning `bytes` (kept as they are when 8-byte aligned, as the allocator usually
    /// gives them; otherwise copied once into aligned memory).
    ///
    /// # Errors
    /// As [`Self::from_bytes`], and [`SessionError::OutOfMemory`] for the copy.
    pub fn from_vec(bytes: Vec<u8>, config: SessionConfig) -> Result<Self, SessionError> {
        let bytes = if bytes.as_ptr().align_offset(8) == 0 {
            Bytes::Vec(bytes)
        } else {
            Bytes::copied(&bytes)?
        };
        Self::with_bytes(bytes, config)
    }
}

impl<'a> Session<'a> {
    /// A session over a model file the caller keeps (a memory map, `include_bytes!` in an
    /// aligned static...): no copy. The tensors are viewed in place, so they must be aligned for
    /// their element type (an 8-byte-aligned file is; otherwise the error is
    /// [`crate::safetensors::FormatErrorOf::Misaligned`] inside [`SessionError::Load`]).
    ///
    /// The sampler is greedy until [`Self::with_sampler`] or [`Self::set_sampler`].
    ///
    /// # Errors
    /// [`SessionError::Load`] for a file the loader refuses, [`SessionError::NotAWrapper`],
    /// [`SessionError::InvalidCapacity`], [`SessionError::InvalidChunk`],
    /// [`SessionError::OutOfMemory`] for a cache or arena the allocator cannot give,
    /// [`SessionError::Model`] for a model the session's buffers cannot run (one that
    /// cross-attends).
    pub fn from_bytes(bytes: &'a [u8], config: SessionConfig) -> Result<Self, SessionError> {
        Self::with_bytes(Bytes::Borrowed(bytes), config)
    }

    fn with_bytes(bytes: Bytes<'a>, config: SessionConfig) -> Result<Self, SessionError> {
        let cfg = *wrapper(bytes.get())?.config();
        let d = cfg.attn_layers;
        let table = cfg.has_abs_pos_emb().then_some(cfg.max_seq_len);
        let capacity = match config.capacity {
            Some(c) => c,
            None if cfg.max_seq_len > 0 => cfg.max_seq_len,
            None => 256,
        };
        if capacity == 0 || table.is_some_and(|max| capacity > max) {
            return Err(SessionError::InvalidCapacity {
                capacity,
                max: table.unwrap_or(usize::MAX),
            });
        }
        if config.chunk == 0 {
            return Err(SessionError::InvalidChunk);
        }
        // The const fns saturate: usize::MAX elements is more than any allocator gives.
        let kv_len = KvCache::<f32>::elements(&d, cfg.cache_positions(capacity));
        let mut kv = AlignedBuf::zeroed(kv_len, "the KV cache")?;
        let mut scratch =
            AlignedBuf::zeroed(Scratch::elements(&d, config.chunk), "the scratch arena")?;
        // What `generate` builds over them, checked once here (e.g. a cross-attending model).
        KvCache::new(&d, cfg.cache_positions(capacity), kv.get_mut())
            .map_err(SessionError::Model)?;
        Scratch::new(&d, config.chunk, scratch.get_mut()).map_err(SessionError::Model)?;
        let width = cfg.logits_width();
        let logits = filled(width, 0.0, "the logits")?;
        let work = filled(Sampler::work_len(width), Candidate::EMPTY, "the sampler")?;
        let sampler = Sampler::new(SamplerConfig::greedy(), 0).map_err(SessionError::Sampler)?;
        Ok(Self {
            bytes,
            config: cfg,
            capacity,
            chunk: config.chunk,
            kv,
            scratch,
            logits,
            work,
            history: Vec::new(),
            sampler,
        })
    }

    /// This session with the sampler `config` and its random generator seeded by `seed`.
    ///
    /// # Errors
    /// [`SessionError::Sampler`] if the configuration is out of range.
    pub fn with_sampler(mut self, config: SamplerConfig, seed: u64) -> Result<Self, SessionError> {
        self.set_sampler(config, seed)?;
        Ok(self)
    }

    /// Replaces the sampler (and reseeds it). On error the sampler is unchanged.
    ///
    /// # Errors
    /// [`SessionError::Sampler`] if the configuration is out of range.
    pub fn set_sampler(&mut self, config: SamplerConfig, seed: u64) -> Result<(), SessionError> {
        self.sampler = Sampler::new(config, seed).map_err(SessionError::Sampler)?;
        Ok(())
    }

    /// The sampler (its configuration and random state).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// The model's configuration.
    pub fn config(&self) -> &WrapperConfig {
        &self.config
    }

    /// Token positions the KV cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The model file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get()
    }

    /// Bytes of the session's buffers (cache, arena, logits, sampler, history).
    pub fn buffer_bytes(&self) -> usize {
        let size = |n: usize, s: usize| n.saturating_mul(s);
        size(self.kv.len, 4)
            .saturating_add(size(self.scratch.len, 4))
            .saturating_add(size(self.logits.len(), 4))
            .saturating_add(size(self.work.len(), core::mem::size_of::<Candidate>()))
            .saturating_add(size(self.history.len(), 4))
    }

    /// The model, parsed again from the bytes (the header and a lookup per tensor; the weights
    /// are views, never copied), for the core API's calls.
    ///
    /// # Errors
    /// None for the bytes the session was made with (they were loaded then); the type is that of
    /// loading.
    pub fn model(&self) -> Result<TransformerWrapper<'_>, SessionError> {
        wrapper(self.bytes.get())
    }

    /// Runs `prompt` from an empty cache, then generates up to `config.max_new_tokens` tokens,
    /// calling `on_token` with each as soon as it is chosen ([`ControlFlow::Break`] stops with
    /// [`StopReason::Stopped`](crate::generate::StopReason::Stopped)). The result says why it
    /// stopped: [`StopReason`](crate::generate::StopReason).
    ///
    /// # Errors
    /// [`SessionError::Generate`] (as [`Generator::run`]: an empty prompt, a token outside the
    /// vocabulary, a prompt longer than the cache with [`crate::generate::Overflow::Stop`], a
    /// bad sliding window, non-finite logits), [`SessionError::OutOfMemory`] for the token
    /// history. Nothing is generated on an error found before the first token.
    pub fn generate<F>(
        &mut self,
        prompt: &[u32],
        config: GenerateConfig,
        on_token: F,
    ) -> Result<Generated, SessionError>
    where
        F: FnMut(u32) -> ControlFlow<()>,
    {
        // Twice what the history must keep, so dropping old tokens is one copy per `need`.
        let need = config
            .history_len(self.sampler.config().repetition_window)
            .max(1)
            .saturating_mul(2);
        if self.history.len() < need {
            self.history = filled(need, 0, "the token history")?;
        }
        let model = wrapper(self.bytes.get())?;
        let d = self.config.attn_layers;
        let positions = self.config.cache_positions(self.capacity);
        let mut cache =
            KvCache::new(&d, positions, self.kv.get_mut()).map_err(SessionError::Model)?;
        let mut scratch =
            Scratch::new(&d, self.chunk, self.scratch.get_mut()).map_err(SessionError::Model)?;
        let mut generator = Generator::new(
            self.sampler,
            config,
            &mut self.logits,
            &mut self.work,
            &mut self.history,
        )?;
        let done = generator.run(&model, &mut cache, &mut scratch, prompt, on_token);
        // The random state goes on from where this run left it.
        self.sampler = *generator.sampler();
        Ok(done?)
    }

    /// [`Self::generate`] collecting the new tokens.
    ///
    /// # Errors
    /// As [`Self::generate`].
    pub fn generate_tokens(
        &mut self,
        prompt: &[u32],
        config: GenerateConfig,
    ) -> Result<(Vec<u32>, Generated), SessionError> {
        let mut tokens = Vec::new();
        let mut full = false;
        let done = self.generate(prompt, config, |t| {
            // An allocation failure stops the run rather than aborting the process.
            if tokens.try_reserve(1).is_err() {
                full = true;
                return ControlFlow::Break(());
            }
            tokens.push(t);
            ControlFlow::Continue(())
        })?;
        if full {
            return Err(SessionError::OutOfMemory {
                what: "the tokens",
                bytes: tokens.len().saturating_add(1).saturating_mul(4),
            });
        }
        Ok((tokens, done))
    }
}
