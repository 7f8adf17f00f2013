//! The generation loop over the KV cache: prefill the prompt with
//! [`TransformerWrapper::forward_last`], then one [`TransformerWrapper::step`] per token, choosing
//! each token with a [`Sampler`] and handing it to a callback (so a caller can stream it).
//!
//! It stops on an end token, after a token budget, when the cache is full, or when the callback
//! says so, and reports which ([`StopReason`]). Every buffer is the caller's: the logits row, the
//! sampler's work slice and a token-history slice, all held by a [`Generator`].
//!
//! ```
//! use core::ops::ControlFlow;
//! use picoformer::generate::{GenerateConfig, Generator, Overflow};
//! use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
//! use picoformer::{KvCache, Model, Scratch};
//!
//! // The bundled demo model (byte-level, 256 tokens), 8-byte aligned so it is read in place.
//! #[repr(C, align(8))]
//! struct Aligned<T: ?Sized>(T);
//! static FILE: &Aligned<[u8]> =
//!     &Aligned(*include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.safetensors")));
//! let Model::Wrapper(model) = Model::<16>::from_safetensors(&FILE.0)? else { unreachable!() };
//! let d = model.config().attn_layers;
//!
//! const CAPACITY: usize = 64;
//! // 2 · depth 4 · (2 kv heads · dim_head 64) · CAPACITY = KvCache::<f32>::elements(&d, CAPACITY)
//! let mut kv = [0.0f32; 2 * 4 * 128 * CAPACITY];
//! let mut arena = [0.0f32; 16 * 1024]; // Scratch::elements(&d, 8) = 15,632
//! assert!(kv.len() >= KvCache::<f32>::elements(&d, CAPACITY));
//! assert!(arena.len() >= Scratch::elements(&d, 8));
//! let mut cache = KvCache::new(&d, CAPACITY, &mut kv)?;
//! let mut scratch = Scratch::new(&d, 8, &mut arena)?;
//!
//! let sampler = Sampler::new(SamplerConfig::temperature(0.8).with_top_p(0.9), 42)?;
//! let config = GenerateConfig::new(100).overflow(Overflow::Slide { keep: 32 });
//! let (mut logits, mut work, mut history) = ([0.0f32; 256], [Candidate::EMPTY; 256], [0u32; 32]);
//! let mut generator = Generator::new(sampler, config, &mut logits, &mut work, &mut history)?;
//!
//! let prompt: [u32; 4] = b"Emma".map(u32::from);
//! let mut text = [0u8; 100];
//! let mut n = 0;
//! let done = generator.run(&model, &mut cache, &mut scratch, &prompt, |token| {
//!     text[n] = token as u8; // a byte: print it, send it over a serial line...
//!     n += 1;
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!((done.new_tokens, n), (100, 100));
//! assert!(done.reencodes >= 1); // 4 + 99 positions do not fit 64 without sliding
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # When the cache is full
//! For a model with absolute positions the cache ends at `max_seq_len` if its capacity is larger
//! (there is no position past the table).
//! [`Overflow::Stop`] (the default) stops with [`StopReason::CacheFull`]. [`Overflow::Slide`] is
//! an explicit sliding window: the cache is rewound to position 0 (a cross-attending model keeps
//! its cached context) and the last `keep` tokens are encoded again (a prefill of `keep`
//! positions, from the history slice), then decoding goes on one step per token until the cache
//! is full again. A re-encode that fails leaves the cache as it was. The model therefore always sees between `keep` and
//! `capacity` of the most recent tokens.
//!
//! **Cost.** One re-encode costs about as much as a prefill of `keep` tokens, i.e. roughly `keep`
//! decode steps (less on a machine where batched prefill is faster per token), and happens every
//! `capacity − keep + 1` tokens. `keep = capacity / 2` costs about one extra step per generated
//! token; `keep = capacity` re-encodes `capacity` positions for **every** token.
//!
//! **Versus x-transformers.** `AutoregressiveWrapper.generate` feeds `out[:, -max_seq_len:]` on
//! every step (`ar:463-473`, `docs/x-transformers.md` §3.9). Without its cache (`cache_kv=False`, and
//! always for models with absolute positions) that is exactly `Slide { keep: capacity }` with
//! `capacity = max_seq_len`: every token's logits come from the last `max_seq_len` tokens,
//! positions counted from the window start. With its cache (rotary models) x-transformers instead
//! keeps the cached keys and values of the last `max_seq_len − 1` positions and re-rotates them,
//! so the kept rows still carry information from tokens that left the window; picoformer does not
//! imitate that (its cache stores rotated keys at absolute positions), and re-encoding is the
//! exact sliding-window computation.
//!
//! # The cache after a run
//! The cache holds the prompt and every generated token **except the last one**
//! ([`Generated::last`]), which has been sampled and reported but not run through the model (no
//! work is spent on a token whose logits nobody asked for). Feed it with
//! [`TransformerWrapper::step`] to continue.

use core::ops::ControlFlow;

use crate::cache::KvCache;
use crate::error::Error;
use crate::masks::Masks;
use crate::sampling::{Candidate, SampleError, Sampler};
use crate::scratch::Scratch;
use crate::tensor::Element;
use crate::wrapper::TransformerWrapper;

/// What a cross-attending decoder attends to while it generates ([`Generator::run_with`]): an
/// encoder's output, as `XTransformer.generate` hands it to the decoder (`xt:4759-4761`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CrossContext<'c> {
    /// The context rows (rows × `dim_context`), cached on the run's first model call if the
    /// cache holds no context yet (like [`crate::Decoder::forward`], a context given when one is
    /// cached is ignored); `None` uses the cached one.
    pub rows: Option<&'c [f32]>,
    /// Which context rows are real (one entry per cached row), applied on every model call of
    /// the run, sliding re-encodes included; `None`: all.
    pub mask: Option<&'c [bool]>,
}

impl CrossContext<'_> {
    /// No context given: a model that cross-attends uses the one its cache holds.
    pub const NONE: CrossContext<'static> = CrossContext {
        rows: None,
        mask: None,
    };
}

/// What to do when the KV cache is full and another token must be run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Stop with [`StopReason::CacheFull`].
    #[default]
    Stop,
    /// Reset the cache and re-encode the last `keep` tokens (1 ≤ keep ≤ capacity). See the
    /// module documentation for the cost.
    Slide {
        /// Tokens kept (re-encoded) when the window slides.
        keep: usize,
    },
}

/// When to stop and what to do when the cache is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateConfig {
    /// At most this many new tokens.
    pub max_new_tokens: usize,
    /// Stop after producing this token (it is reported).
    pub end_token: Option<u32>,
    /// Full-cache behaviour.
    pub overflow: Overflow,
}

impl GenerateConfig {
    /// Up to `max_new_tokens` tokens, no end token, stop when the cache is full.
    pub const fn new(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            end_token: None,
            overflow: Overflow::Stop,
        }
    }

    /// Sets the end token.
    pub const fn end_token(mut self, token: u32) -> Self {
        self.end_token = Some(token);
        self
    }

    /// Sets the full-cache behaviour.
    pub const fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// History entries a [`Generator`] needs with a sampler whose repetition window is
    /// `repetition_window`: the larger of that window and the sliding window's `keep`.
    pub const fn history_len(&self, repetition_window: usize) -> usize {
        let keep = match self.overflow {
            Overflow::Stop => 0,
            Overflow::Slide { keep } => keep,
        };
        if keep > repetition_window {
            keep
        } else {
            repetition_window
        }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The end token was produced.
    EndToken,
    /// `max_new_tokens` were produced.
    MaxTokens,
    /// The cache is full, or at `max_seq_len` for a model with absolute positions (with
    /// [`Overflow::Stop`]).
    CacheFull,
    /// The callback returned [`ControlFlow::Break`].
    Stopped,
}

/// What a run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generated {
    /// Why it stopped.
    pub reason: StopReason,
    /// Prompt tokens run through the model (the last `keep` if a sliding prompt was too long).
    pub prompt_tokens: usize,
    /// Tokens produced (and reported to the callback).
    pub new_tokens: usize,
    /// The last token produced, which is not in the cache yet.
    pub last: Option<u32>,
    /// How many times the window slid (re-encodes).
    pub reencodes: usize,
    /// Positions encoded again by those re-encodes (their cost, in prefill positions).
    pub reencoded_tokens: usize,
}

/// Why a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GenerateError {
    /// The model refused a call (e.g. [`Error::CacheFull`] for a prompt that does not fit with
    /// [`Overflow::Stop`], [`Error::TokenOutOfRange`] for a prompt token).
    Model(Error),
    /// The sampler refused the logits (NaN, infinities, all masked).
    Sample(SampleError),
    /// The prompt is empty.
    EmptyPrompt,
    /// The logits slice is not as long as the model's logits ([`crate::WrapperConfig::logits_width`]:
    /// `num_tokens`, or `logits_dim`).
    LogitsLength {
        /// The width of the model's logits.
        expected: usize,
        /// `logits.len()`.
        found: usize,
    },
    /// The history slice is shorter than [`GenerateConfig::history_len`].
    HistoryTooSmall {
        /// Entries needed.
        needed: usize,
        /// Entries provided.
        available: usize,
    },
    /// The model's logits are wider than its vocabulary (`logits_dim` > `num_tokens`): a sampled
    /// index could be no token id, and the next step could not embed it (x-transformers' own
    /// `generate` fails there, indexing the token embedding out of range). A narrower
    /// `logits_dim` generates: every index it samples is a token id.
    LogitsNotTokens {
        /// The width of the logits (`logits_dim`).
        logits: usize,
        /// `num_tokens`.
        num_tokens: usize,
    },
    /// `Slide { keep }` with `keep` 0 or above the cache capacity (or `max_seq_len`, for a model
    /// with absolute positions, if less).
    InvalidWindow {
        /// `keep`.
        keep: usize,
        /// The cache capacity.
        capacity: usize,
    },
}

impl From<Error> for GenerateError {
    fn from(e: Error) -> Self {
        GenerateError::Model(e)
    }
}

impl From<SampleError> for GenerateError {
    fn from(e: SampleError) -> Self {
        GenerateError::Sample(e)
    }
}

impl core::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            GenerateError::Model(e) => write!(f, "{e}"),
            GenerateError::Sample(e) => write!(f, "{e}"),
            GenerateError::EmptyPrompt => write!(f, "the prompt is empty"),
            GenerateError::LogitsLength { expected, found } => {
                write!(f, "logits buffer has {found} elements, the model's logits have {expected}")
            }
            GenerateError::LogitsNotTokens { logits, num_tokens } => write!(
                f,
                "the model's logits ({logits} wide) are wider than its vocabulary ({num_tokens} tokens): \
                 a sampled index could be no token id"
            ),
            GenerateError::HistoryTooSmall { needed, available } => {
                write!(f, "history buffer too small: needs {needed} tokens, has {available}")
            }
            GenerateError::InvalidWindow { keep, capacity } => write!(
                f,
                "sliding window keeps {keep} tokens: must be between 1 and the cache capacity {capacity}"
            ),
        }
    }
}

impl core::error::Error for GenerateError {}

/// The caller's buffers for generation, a [`Sampler`] and a [`GenerateConfig`].
#[derive(Debug)]
pub struct Generator<'b> {
    sampler: Sampler,
    config: GenerateConfig,
    logits: &'b mut [f32],
    work: &'b mut [Candidate],
    history: &'b mut [u32],
    /// Tokens at the start of `history` in use.
    len: usize,
    /// Tokens the history must keep (repetition window, sliding window).
    need: usize,
}

impl<'b> Generator<'b> {
    /// A generator for a model with `logits.len()` tokens. `work` needs
    /// [`Sampler::work_len`]`(num_tokens)` entries and `history`
    /// [`GenerateConfig::history_len`]`(repetition_window)` (more saves copying: when the
    /// history is full the oldest tokens are dropped by one `copy_within`).
    ///
    /// # Errors
    /// [`GenerateError::Sample`] with [`SampleError::Empty`] or [`SampleError::WorkTooSmall`],
    /// [`GenerateError::HistoryTooSmall`].
    pub fn new(
        sampler: Sampler,
        config: GenerateConfig,
        logits: &'b mut [f32],
        work: &'b mut [Candidate],
        history: &'b mut [u32],
    ) -> Result<Self, GenerateError> {
        if logits.is_empty() {
            return Err(SampleError::Empty.into());
        }
        let needed = Sampler::work_len(logits.len());
        if work.len() < needed {
            return Err(SampleError::WorkTooSmall {
                needed,
                available: work.len(),
            }
            .into());
        }
        let need = config.history_len(sampler.config().repetition_window);
        if history.len() < need {
            return Err(GenerateError::HistoryTooSmall {
                needed: need,
                available: history.len(),
            });
        }
        Ok(Self {
            sampler,
            config,
            logits,
            work,
            history,
            len: 0,
            need,
        })
    }

    /// The sampler (its PRNG state carries over from run to run).
    pub fn sampler(&mut self) -> &mut Sampler {
        &mut self.sampler
    }

    /// The configuration.
    pub fn config(&self) -> &GenerateConfig {
        &self.config
    }

    /// The most recent tokens of the last run (prompt and generated), oldest first; at least
    /// the last [`GenerateConfig::history_len`] when that many were seen, at most the history
    /// slice's length.
    pub fn history(&self) -> &[u32] {
        &self.history[..self.len]
    }

    /// The logits row of the last model call.
    pub fn logits(&self) -> &[f32] {
        self.logits
    }

    /// Runs `prompt` (appended to whatever `cache` holds), then generates, calling `on_token`
    /// with each new token as soon as it is chosen. See the module documentation for the stop
    /// rules, the sliding window and what the cache holds afterwards. A cross-attending model
    /// uses the context its cache holds ([`Self::run_with`] gives one).
    ///
    /// # Errors
    /// [`GenerateError::EmptyPrompt`], [`GenerateError::InvalidWindow`],
    /// [`GenerateError::LogitsLength`], [`GenerateError::LogitsNotTokens`] for a model whose
    /// `logits_dim` exceeds `num_tokens`, [`GenerateError::Model`] (a prompt that does not fit the
    /// cache with [`Overflow::Stop`] is [`Error::CacheFull`] before anything runs), and
    /// [`GenerateError::Sample`] if the model produced NaN or infinite logits.
    pub fn run<K: Element, const MAX_DEPTH: usize, F>(
        &mut self,
        model: &TransformerWrapper<'_, MAX_DEPTH>,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        prompt: &[u32],
        on_token: F,
    ) -> Result<Generated, GenerateError>
    where
        F: FnMut(u32) -> ControlFlow<()>,
    {
        self.run_with(model, cache, scratch, prompt, CrossContext::NONE, on_token)
    }

    /// [`Self::run`] for a cross-attending decoder, given what it attends to: `XTransformer`'s
    /// `generate` (the encoder's output as `context.rows`, the source's padding mask as
    /// `context.mask`), or any decoder with `cross_attend`. The cache needs room for the
    /// context ([`KvCache::with_context`]).
    ///
    /// # Errors
    /// As [`Self::run`], and those of [`TransformerWrapper::forward_masked`] for the context
    /// (required, not expected, too long, a mask of the wrong length) before anything runs.
    pub fn run_with<K: Element, const MAX_DEPTH: usize, F>(
        &mut self,
        model: &TransformerWrapper<'_, MAX_DEPTH>,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        prompt: &[u32],
        context: CrossContext<'_>,
        mut on_token: F,
    ) -> Result<Generated, GenerateError>
    where
        F: FnMut(u32) -> ControlFlow<()>,
    {
        let (v, num_tokens) = (model.config().logits_width(), model.config().num_tokens);
        if self.logits.len() != v {
            return Err(GenerateError::LogitsLength {
                expected: v,
                found: self.logits.len(),
            });
        }
        if v > num_tokens {
            return Err(GenerateError::LogitsNotTokens {
                logits: v,
                num_tokens,
            });
        }
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        // Checked here too (the model checks it) so that a sliding prompt that is too long
        // fails before the cache is reset.
        if let Some((index, &token)) = prompt
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= num_tokens)
        {
            return Err(Error::TokenOutOfRange {
                token,
                index,
                num_tokens,
            }
            .into());
        }
        // Where the cache ends for this model: its capacity (none for a rolling cache), or
        // `max_seq_len` if that is less and the model has absolute positions (no position
        // beyond the table exists).
        let cfg = model.config();
        let end = if cfg.has_abs_pos_emb() {
            cache.max_len().min(cfg.cache_positions(cfg.max_seq_len))
        } else {
            cache.max_len()
        };
        if let Overflow::Slide { keep } = self.config.overflow {
            if keep == 0 || keep > end {
                return Err(GenerateError::InvalidWindow {
                    keep,
                    capacity: end,
                });
            }
        }
        let masks = Masks {
            mask: None,
            context_mask: context.mask,
        };
        let mut out = Generated {
            reason: StopReason::MaxTokens,
            prompt_tokens: prompt.len(),
            new_tokens: 0,
            last: None,
            reencodes: 0,
            reencoded_tokens: 0,
        };

        // Prefill.
        let mut run_prompt = prompt;
        if prompt.len() > end.saturating_sub(cache.len()) {
            match self.config.overflow {
                Overflow::Stop => {
                    return Err(Error::CacheFull {
                        len: cache.len(),
                        requested: prompt.len(),
                        capacity: end,
                    }
                    .into())
                }
                Overflow::Slide { keep } => {
                    // The window: the prompt's last `keep` tokens, from position 0.
                    run_prompt = &prompt[prompt.len() - keep.min(prompt.len())..];
                    reencode(model, cache, scratch, run_prompt, context, self.logits)?;
                }
            }
        } else {
            model.forward_last_masked(
                cache,
                scratch,
                run_prompt,
                context.rows,
                masks,
                self.logits,
            )?;
        }
        out.prompt_tokens = run_prompt.len();
        self.len = 0;
        self.push_all(prompt);

        while out.new_tokens < self.config.max_new_tokens {
            let token = self
                .sampler
                .sample(self.logits, &self.history[..self.len], self.work)?;
            self.push(token);
            out.new_tokens += 1;
            out.last = Some(token);
            let flow = on_token(token);
            if self.config.end_token == Some(token) {
                out.reason = StopReason::EndToken;
                return Ok(out);
            }
            if flow.is_break() {
                out.reason = StopReason::Stopped;
                return Ok(out);
            }
            if out.new_tokens == self.config.max_new_tokens {
                break;
            }
            if cache.len() >= end {
                match self.config.overflow {
                    Overflow::Stop => {
                        out.reason = StopReason::CacheFull;
                        return Ok(out);
                    }
                    Overflow::Slide { keep } => {
                        // The last `keep` tokens of this run, the new one included (fewer only
                        // if the caller's cache was already filled before the prompt).
                        let window = &self.history[self.len - keep.min(self.len)..self.len];
                        reencode(model, cache, scratch, window, context, self.logits)?;
                        out.reencodes += 1;
                        out.reencoded_tokens += window.len();
                        continue;
                    }
                }
            }
            model.forward_last_masked(cache, scratch, &[token], None, masks, self.logits)?;
        }
        out.reason = StopReason::MaxTokens;
        Ok(out)
    }

    /// Appends one token, dropping the oldest ones first if the history is full.
    fn push(&mut self, token: u32) {
        let cap = self.history.len();
        if cap == 0 {
            return;
        }
        if self.len == cap {
            let keep = self.need.saturating_sub(1).min(cap - 1);
            self.history.copy_within(self.len - keep..self.len, 0);
            self.len = keep;
        }
        self.history[self.len] = token;
        self.len += 1;
    }

    /// Appends tokens; only the last `history.len()` can matter.
    fn push_all(&mut self, tokens: &[u32]) {
        let tail = &tokens[tokens.len().saturating_sub(self.history.len())..];
        for &t in tail {
            self.push(t);
        }
    }
}

/// Runs `window` from position 0 of `cache`, keeping the cached context (so a cross-attending
/// model slides too; a context not yet cached is cached from `context`). Atomic: a model call
/// fails before it writes anything, so on failure the cached positions are given back and the
/// cache is as it was.
fn reencode<K: Element, const MAX_DEPTH: usize>(
    model: &TransformerWrapper<'_, MAX_DEPTH>,
    cache: &mut KvCache<'_, K>,
    scratch: &mut Scratch<'_>,
    window: &[u32],
    context: CrossContext<'_>,
    logits: &mut [f32],
) -> Result<(), Error> {
    let len = cache.len();
    cache.truncate(0)?;
    let masks = Masks {
        mask: None,
        context_mask: context.mask,
    };
    model
        .forward_last_masked(cache, scratch, window, context.rows, masks, logits)
        .inspect_err(|_| cache.restore_len(len))
}
