//! Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus), min-p and a
//! repetition penalty, with a small seeded PRNG. No allocation: the sorting and filtering work
//! in a caller-provided slice of [`Candidate`]s, [`Sampler::work_len`]`(num_tokens)` long.
//!
//! # What x-transformers does, and where this differs
//!
//! x-transformers' `AutoregressiveWrapper.generate` (`ar:377-543`, `docs/x-transformers.md` §3.9) picks
//! a token like this:
//!
//! * `temperature == 0`: greedy, `logits.argmax()` (`ar:511-512`), ignoring the filter. Ties go
//!   to the lowest token id, as `torch.argmax` does. Same here ([`SamplerConfig::greedy`]).
//! * otherwise `softmax(filter_logits_fn(logits) / temperature)` and `torch.multinomial`
//!   (`ar:513-516`): the filter sees the logits **before** the temperature, so top-p's
//!   cumulative probabilities and min-p's ratio are those of temperature 1. Same here (Hugging
//!   Face and llama.cpp divide by the temperature first; results differ when T ≠ 1).
//! * the default filter is `top_k` with k = ⌈0.1 · num_tokens⌉, computed in f64 as Python does
//!   (`ar:102-111, 384`); [`default_top_k`] reproduces it. Here no filter is on unless asked for:
//!   [`SamplerConfig::x_transformers_default`] gives x-transformers' default.
//! * `top_k(k)` keeps the k largest logits (`torch.topk`); equal logits at the boundary are
//!   kept lowest id first here (torch leaves that order unspecified).
//! * `top_p(thres)` (`ar:82-91`) sorts descending, takes the cumulative softmax and removes a
//!   token when the cumulative probability **before** it exceeds `thres` (`cum > thres`, shifted
//!   by one): the smallest prefix whose mass exceeds `thres` is kept, and always the top token.
//!   Same rule here, with ties in the sort broken by lower id first.
//! * `min_p(p)` (`ar:122-126`) removes tokens whose probability is below `p · max probability`.
//!   Here the test is `exp(logit − max) < p`, the same inequality without the normalisation
//!   (it can differ from torch's only by a rounding step at the boundary).
//! * x-transformers applies one filter. Here any combination can be on; they run in the order
//!   top-k, top-p, min-p, each on the survivors of the one before (renormalised), as Hugging
//!   Face chains its warpers.
//! * The repetition penalty is not in x-transformers: it is the CTRL / Hugging Face rule
//!   (`logit / penalty` if positive, `logit · penalty` otherwise), applied once to each distinct
//!   token among the last `repetition_window` tokens, before everything else (greedy included).
//! * The random numbers are this module's own [`Rng`] (PCG-XSH-RR 32), not torch's generator:
//!   the same seed gives the same tokens on every run and platform, not torch's tokens.
//!
//! # Errors, not panics
//! NaN or +∞ logits, an empty slice, every logit −∞ (all masked), an invalid configuration or a
//! short work slice are a [`SampleError`]; a returned token is always below `logits.len()`.
//! −∞ is a legitimate mask: such tokens are never chosen.

use core::cmp::Ordering;
use core::fmt;

/// Why no token could be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SampleError {
    /// The logits slice is empty.
    Empty,
    /// A logit is NaN.
    NotANumber {
        /// Its token id.
        index: usize,
    },
    /// A logit is +∞ (softmax would be NaN).
    Infinite {
        /// Its token id.
        index: usize,
    },
    /// Every logit is −∞: nothing can be chosen.
    AllMasked,
    /// More logits than token ids fit in a `u32`.
    TooManyTokens {
        /// `logits.len()`.
        num_tokens: usize,
    },
    /// The work slice is shorter than [`Sampler::work_len`].
    WorkTooSmall {
        /// Elements needed.
        needed: usize,
        /// Elements provided.
        available: usize,
    },
    /// A configuration value is out of range; the name is the field's.
    InvalidConfig(&'static str),
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SampleError::Empty => write!(f, "no logits to sample from"),
            SampleError::NotANumber { index } => write!(f, "logit of token {index} is NaN"),
            SampleError::Infinite { index } => write!(f, "logit of token {index} is +infinity"),
            SampleError::AllMasked => write!(f, "every logit is -infinity"),
            SampleError::TooManyTokens { num_tokens } => {
                write!(f, "{num_tokens} logits: token ids must fit in u32")
            }
            SampleError::WorkTooSmall { needed, available } => {
                write!(
                    f,
                    "sampler work slice too small: needs {needed} elements, has {available}"
                )
            }
            SampleError::InvalidConfig(what) => {
                write!(f, "sampler option `{what}` is out of range")
            }
        }
    }
}

impl core::error::Error for SampleError {}

/// x-transformers' default `top_k`: ⌈0.1 · num_tokens⌉ computed in f64 as Python does
/// (`ar:102-111`), at most `num_tokens` (26 for 256 tokens).
pub fn default_top_k(num_tokens: usize) -> usize {
    (libm::ceil(0.1 * num_tokens as f64) as usize).min(num_tokens)
}

/// How to choose tokens. Build with [`SamplerConfig::greedy`] or [`SamplerConfig::temperature`]
/// and the `with_*` methods; [`Sampler::new`] checks the values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax); otherwise probabilities ∝ exp(logit / temperature). Finite, >= 0.
    pub temperature: f32,
    /// Keep only the `k` largest logits (`k >= 1`).
    pub top_k: Option<usize>,
    /// Nucleus: keep the smallest most-likely prefix whose mass exceeds `p` (0 ≤ p ≤ 1).
    pub top_p: Option<f32>,
    /// Drop tokens whose probability is below `p` times the largest (0 ≤ p ≤ 1).
    pub min_p: Option<f32>,
    /// Penalty (> 0; 1 = off) for each distinct token among the last `repetition_window`.
    pub repetition_penalty: f32,
    /// How many of the most recent tokens the penalty looks at.
    pub repetition_window: usize,
}

impl SamplerConfig {
    /// Greedy decoding: always the largest logit (lowest id on ties).
    pub const fn greedy() -> Self {
        Self::temperature(0.0)
    }

    /// Sampling at `temperature` with no filter and no penalty.
    pub const fn temperature(temperature: f32) -> Self {
        Self {
            temperature,
            top_k: None,
            top_p: None,
            min_p: None,
            repetition_penalty: 1.0,
            repetition_window: 0,
        }
    }

    /// What x-transformers' `generate` does by default for a vocabulary of `num_tokens`:
    /// temperature 1 and `top_k` with k = [`default_top_k`]`(num_tokens)`.
    pub fn x_transformers_default(num_tokens: usize) -> Self {
        Self::temperature(1.0).with_top_k(default_top_k(num_tokens))
    }

    /// Sets top-k.
    pub const fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    /// Sets top-p (nucleus) with x-transformers' threshold rule.
    pub const fn with_top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }

    /// Sets min-p.
    pub const fn with_min_p(mut self, p: f32) -> Self {
        self.min_p = Some(p);
        self
    }

    /// Sets the repetition penalty and the number of recent tokens it covers.
    pub const fn with_repetition_penalty(mut self, penalty: f32, window: usize) -> Self {
        self.repetition_penalty = penalty;
        self.repetition_window = window;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`SampleError::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), SampleError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(SampleError::InvalidConfig("temperature"));
        }
        if self.top_k == Some(0) {
            return Err(SampleError::InvalidConfig("top_k"));
        }
        let unit = |p: Option<f32>| p.is_none_or(|p| (0.0..=1.0).contains(&p));
        if !unit(self.top_p) {
            return Err(SampleError::InvalidConfig("top_p"));
        }
        if !unit(self.min_p) {
            return Err(SampleError::InvalidConfig("min_p"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(SampleError::InvalidConfig("repetition_penalty"));
        }
        Ok(())
    }

    /// Whether this configuration never draws a random number.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// A small, fast, seeded PRNG: PCG-XSH-RR with 64-bit state and 32-bit output (O'Neill 2014).
/// Not cryptographic. The same seed gives the same sequence everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

const PCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;
const PCG_INCREMENT: u64 = 1_442_695_040_888_963_407;

impl Rng {
    /// A generator seeded with `seed` (every `u64` is a valid seed).
    pub const fn new(seed: u64) -> Self {
        // The reference seeding: state = 0, step, add the seed, step.
        let state = PCG_INCREMENT.wrapping_add(seed);
        Self {
            state: state
                .wrapping_mul(PCG_MULTIPLIER)
                .wrapping_add(PCG_INCREMENT),
        }
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(PCG_MULTIPLIER).wrapping_add(PCG_INCREMENT);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// A uniform `f32` in [0, 1) with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

/// One entry of the sampler's work slice: a token and its (penalised) logit, later its weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub token: u32,
    /// Logit, then unnormalised probability.
    pub value: f32,
}

impl Candidate {
    /// A blank entry, to initialise static work slices.
    pub const EMPTY: Candidate = Candidate {
        token: 0,
        value: 0.0,
    };
}

/// A validated [`SamplerConfig`] and its PRNG.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
}

/// Descending by value, then ascending by token id: a total order, so every sort and selection
/// gives one answer whatever the algorithm.
/// Greedy choice without candidates: the first largest finite logit (ties go to the lowest id),
/// with the errors [`Sampler::sample`] reports for the first bad logit in id order. One pass in
/// eight independent lanes (the compiler keeps them in vector registers) for the maximum and
/// whether any logit is NaN or +inf, then the first position holding the maximum.
fn argmax(logits: &[f32]) -> Result<u32, SampleError> {
    const LANES: usize = 8;
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut bad = [false; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for ((m, b), &l) in max.iter_mut().zip(&mut bad).zip(chunk) {
            // (A NaN never replaces the maximum.)
            *b |= l.is_nan() | (l == f32::INFINITY);
            *m = if l > *m { l } else { *m };
        }
    }
    for ((m, b), &l) in max.iter_mut().zip(&mut bad).zip(tail) {
        *b |= l.is_nan() | (l == f32::INFINITY);
        *m = if l > *m { l } else { *m };
    }
    if bad.iter().any(|&b| b) {
        for (index, &l) in logits.iter().enumerate() {
            if l.is_nan() {
                return Err(SampleError::NotANumber { index });
            }
            if l == f32::INFINITY {
                return Err(SampleError::Infinite { index });
            }
        }
    }
    let best = max.iter().fold(f32::NEG_INFINITY, |a, &m| a.max(m));
    if best == f32::NEG_INFINITY {
        return Err(SampleError::AllMasked);
    }
    // `index < logits.len()`, which fits a u32 (checked by the caller).
    logits
        .iter()
        .position(|&l| l == best)
        .map(|index| index as u32)
        .ok_or(SampleError::AllMasked)
}

fn by_value_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.value
        .partial_cmp(&a.value)
        .unwrap_or(Ordering::Equal)
        .then(a.token.cmp(&b.token))
}

impl Sampler {
    /// [`Candidate`]s the work slice must hold for `num_tokens` logits: one per token.
    pub const fn work_len(num_tokens: usize) -> usize {
        num_tokens
    }

    /// A sampler for `config`, with its PRNG seeded by `seed`.
    ///
    /// # Errors
    /// [`SampleError::InvalidConfig`] (see [`SamplerConfig::validate`]).
    pub fn new(config: SamplerConfig, seed: u64) -> Result<Self, SampleError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: Rng::new(seed),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The PRNG (e.g. to save and restore its state).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Chooses a token from `logits` (one per token id). `recent` holds the tokens produced so
    /// far, oldest first; the repetition penalty looks at its last `repetition_window` entries
    /// (ids not below `logits.len()` are ignored). `work` needs [`Self::work_len`] entries; its
    /// contents are overwritten. Draws exactly one random number unless greedy.
    ///
    /// # Errors
    /// [`SampleError::Empty`], [`SampleError::NotANumber`], [`SampleError::Infinite`],
    /// [`SampleError::AllMasked`], [`SampleError::TooManyTokens`], [`SampleError::WorkTooSmall`].
    /// On error the PRNG has not advanced.
    pub fn sample(
        &mut self,
        logits: &[f32],
        recent: &[u32],
        work: &mut [Candidate],
    ) -> Result<u32, SampleError> {
        let n = logits.len();
        if n == 0 {
            return Err(SampleError::Empty);
        }
        if u32::try_from(n).is_err() {
            return Err(SampleError::TooManyTokens { num_tokens: n });
        }
        if work.len() < n {
            return Err(SampleError::WorkTooSmall {
                needed: n,
                available: work.len(),
            });
        }
        if self.config.is_greedy() && !self.penalises(recent) {
            return argmax(logits);
        }
        let mut masked = 0;
        for (index, &l) in logits.iter().enumerate() {
            if l.is_nan() {
                return Err(SampleError::NotANumber { index });
            }
            if l == f32::INFINITY {
                return Err(SampleError::Infinite { index });
            }
            masked += usize::from(l == f32::NEG_INFINITY);
        }
        if masked == n {
            return Err(SampleError::AllMasked);
        }

        // Every finite logit becomes a candidate, in id order; then the penalty.
        // (`len` stays at most the token's index, below `n <= work.len()`: every write lands.)
        let mut len = 0;
        for (token, &value) in logits.iter().enumerate() {
            if value != f32::NEG_INFINITY {
                if let Some(slot) = work.get_mut(len) {
                    *slot = Candidate {
                        token: token as u32,
                        value,
                    };
                    len += 1;
                }
            }
        }
        let c = &mut work[..len.min(n)];
        self.penalise(c, recent, n);
        // Not empty (some logit is finite), but said so without a panic path.
        let Some(&first) = c.first() else {
            return Err(SampleError::AllMasked);
        };
        if self.config.is_greedy() {
            // The first largest value: candidates are in id order, so ties go to the lowest id.
            let best = c.iter().fold(
                first,
                |best, x| if x.value > best.value { *x } else { best },
            );
            return Ok(best.token);
        }
        let c = self.filter(c);
        // Sample in id order, so the token drawn for a given random number does not depend on
        // how the filters permuted the candidates (no filter: still in id order).
        if !c.is_sorted_by_key(|x| x.token) {
            heap_sort(c, |a, b| a.token < b.token);
        }
        let max = c.iter().fold(f32::NEG_INFINITY, |m, x| m.max(x.value));
        let inv_t = 1.0 / self.config.temperature;
        let mut total = 0.0f32;
        for x in c.iter_mut() {
            // softmax(l / T) with the maximum subtracted; the largest weight is exactly 1 (also
            // when 1/T overflows to infinity, where 0 · ∞ would be NaN).
            let d = x.value - max;
            x.value = if d == 0.0 { 1.0 } else { libm::expf(d * inv_t) };
            total += x.value;
        }
        let u = self.rng.next_f32() * total;
        let mut cum = 0.0f32;
        for x in c.iter() {
            cum += x.value;
            if u < cum {
                return Ok(x.token);
            }
        }
        // Only reachable through rounding when u lands on the very top of the sum. (`filter`
        // never returns an empty prefix: the error is for the compiler, which cannot know it.)
        c.iter()
            .rev()
            .find(|x| x.value > 0.0)
            .or(c.first())
            .map(|x| x.token)
            .ok_or(SampleError::AllMasked)
    }

    /// Whether the repetition penalty changes anything for these recent tokens.
    fn penalises(&self, recent: &[u32]) -> bool {
        self.config.repetition_penalty != 1.0
            && self.config.repetition_window != 0
            && !recent.is_empty()
    }

    /// Applies the repetition penalty to the candidates (in id order, all finite), once per
    /// distinct recent token.
    fn penalise(&self, c: &mut [Candidate], recent: &[u32], n: usize) {
        let penalty = self.config.repetition_penalty;
        if penalty == 1.0 || self.config.repetition_window == 0 {
            return;
        }
        let mut window = &recent[recent.len().saturating_sub(self.config.repetition_window)..];
        while let Some((&t, later)) = window.split_first() {
            window = later;
            // Count each token once: only at its last occurrence in the window.
            if t as usize >= n || later.contains(&t) {
                continue;
            }
            // Candidates are the finite logits in id order: find t by binary search.
            let at = c.binary_search_by_key(&t, |x| x.token);
            if let Some(x) = at.ok().and_then(|at| c.get_mut(at)) {
                let v = &mut x.value;
                // Clamped so an extreme penalty cannot make a logit infinite.
                *v = if *v > 0.0 { *v / penalty } else { *v * penalty }.clamp(f32::MIN, f32::MAX);
            }
        }
    }

    /// top-k, then top-p, then min-p; returns the surviving prefix of `c` (never empty).
    fn filter<'c>(&self, mut c: &'c mut [Candidate]) -> &'c mut [Candidate] {
        if let Some(k) = self.config.top_k {
            if k < c.len() {
                keep_best(c, k);
                c = &mut c[..k];
            }
        }
        if let Some(p) = self.config.top_p {
            let max = c.iter().fold(f32::NEG_INFINITY, |m, x| m.max(x.value));
            let total: f32 = c.iter().map(|x| libm::expf(x.value - max)).sum();
            // The candidates in descending order (x-transformers sorts them all), but only as
            // far as the nucleus goes: a heap whose root is the first in that order, each root
            // moved behind the shrinking heap, so the kept ones collect at the back of `c`.
            let n = c.len();
            let first = |a: &Candidate, b: &Candidate| by_value_desc(a, b) == Ordering::Greater;
            for node in (0..n / 2).rev() {
                sift_down(c, node, &first);
            }
            // Keep token j while the mass before it is <= p (x-transformers' shifted `cum > p`).
            let mut cum = 0.0f32;
            let mut keep = 0;
            while !(keep > 0 && cum > p) {
                let Some((last, rest)) = c.get_mut(..n - keep).and_then(|h| h.split_last_mut())
                else {
                    break;
                };
                if let Some(root) = rest.first_mut() {
                    core::mem::swap(root, last);
                    sift_down(rest, 0, &first);
                }
                cum += libm::expf(last.value - max) / total;
                keep += 1;
            }
            let keep = keep.min(n);
            c = &mut c[n - keep..];
        }
        if let Some(p) = self.config.min_p {
            let max = c.iter().fold(f32::NEG_INFINITY, |m, x| m.max(x.value));
            // prob < p · max prob  ⇔  exp(l − max) < p
            // Survivors move to the front, in place (each swap within `keep <= i < c.len()`).
            let mut keep = 0;
            for i in 0..c.len() {
                if c.get(i).is_some_and(|x| libm::expf(x.value - max) >= p) {
                    if let Some([first, .., last]) = c.get_mut(keep..=i) {
                        core::mem::swap(first, last);
                    }
                    keep += 1;
                }
            }
            let keep = keep.min(c.len());
            c = &mut c[..keep];
        }
        c
    }
}

/// Sorts `v` so that `before(a, b)` holds for no later `a` and earlier `b` (`before` a strict
/// total order): heapsort, in place. The sampler's own rather than `core`'s sorts, whose internal
/// checks would be the one panic path left in sampling (issue 28, `firmware/src/no_panic.rs`).
fn heap_sort(v: &mut [Candidate], before: impl Fn(&Candidate, &Candidate) -> bool) {
    for node in (0..v.len() / 2).rev() {
        sift_down(v, node, &before);
    }
    // The root is the last in order: it goes behind the shrinking heap.
    let mut heap = v;
    while let Some((last, rest)) = core::mem::take(&mut heap).split_last_mut() {
        let Some(root) = rest.first_mut() else {
            break;
        };
        core::mem::swap(root, last);
        sift_down(rest, 0, &before);
        heap = rest;
    }
}

/// Moves the `k` candidates first by [`by_value_desc`] to `v[..k]`, in no particular order: a
/// heap of the first `k` whose root is the worst of them, replaced by every better one after.
fn keep_best(v: &mut [Candidate], k: usize) {
    let before = |a: &Candidate, b: &Candidate| by_value_desc(a, b) == Ordering::Less;
    let Some((heap, rest)) = v.split_at_mut_checked(k) else {
        return;
    };
    for node in (0..heap.len() / 2).rev() {
        sift_down(heap, node, &before);
    }
    for x in rest {
        if let Some(worst) = heap.first_mut() {
            if before(x, worst) {
                core::mem::swap(x, worst);
                sift_down(heap, 0, &before);
            }
        }
    }
}

/// Restores the heap below `node`: no child comes after its parent in `before`'s order, so the
/// root is the last of the heap in that order.
fn sift_down(
    v: &mut [Candidate],
    mut node: usize,
    before: &impl Fn(&Candidate, &Candidate) -> bool,
) {
    loop {
        let Some(left) = node.checked_mul(2).and_then(|x| x.checked_add(1)) else {
            return;
        };
        let (Some(&parent), Some(&l)) = (v.get(node), v.get(left)) else {
            return;
        };
        // The later of the two children.
        let (child, c) = match v.get(left + 1) {
            Some(&r) if before(&l, &r) => (left + 1, r),
            _ => (left, l),
        };
        if !before(&parent, &c) {
            return;
        }
        if let Some(p) = v.get_mut(node) {
            *p = c;
        }
        if let Some(x) = v.get_mut(child) {
            *x = parent;
        }
        node = child;
    }
}
