//! The wasm exports: a C ABI over one [`Session`] that lives in a linear arena the module owns.
//!
//! Memory: the module never allocates. On the first call the arena starts at the end of the
//! initial memory (above Rust's stack, data and `__heap_base`, which nothing else uses since
//! there is no allocator). [`pf_alloc_model`] grows memory for the model bytes, which JS writes
//! in place; [`pf_load`] grows it once more for the KV cache, scratch, logits, sampler and token
//! buffers (the plan, see [`Plan`]) and carves them, 16-byte aligned. Loading another model
//! reuses the same arena. Every later call works inside it: no per-token allocation.
//!
//! Calls return 0 (or a count / token ≥ 0) on success and a negative error code otherwise; the
//! message is at [`pf_error_ptr`] / [`pf_error_len`] as UTF-8. A failed prefill, step, sample,
//! truncate, set_context, full_vs_stepwise or gen_begin changes nothing (everything is checked
//! before anything runs); a failed load leaves no model loaded.
//! This is the only file of the crate with `unsafe`.

use core::arch::wasm32;
use core::fmt::{self, Write};
use core::ptr::addr_of_mut;

use picoformer::sampling::{Candidate, Sampler};
use picoformer::Error;

use crate::engine::{
    self, Buffers, EngineError, Generate, KvBuf, KvKind, Options, Plan, Sampling, Session,
    MAX_STOP_TOKENS,
};

const PAGE: usize = 65536;

/// Error codes (negated in return values).
mod code {
    pub const LOAD: i32 = 1;
    pub const UNSUPPORTED_MODEL: i32 = 2;
    pub const OUT_OF_MEMORY: i32 = 3;
    pub const TOKEN_OUT_OF_RANGE: i32 = 4;
    pub const CACHE_FULL: i32 = 5;
    pub const POSITION_OUT_OF_RANGE: i32 = 6;
    pub const NOT_LOADED: i32 = 7;
    pub const BAD_ARGUMENT: i32 = 8;
    pub const OTHER: i32 = 9;
}

/// Fields of the plan table at [`pf_plan_ptr`] (u32 each), in this order.
const PLAN_FIELDS: usize = 18;

struct ErrorText {
    buf: [u8; 512],
    len: usize,
}

impl Write for ErrorText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Truncate on a char boundary so the text stays valid UTF-8.
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

struct State {
    /// Start of the arena (page-aligned); 0 before the first call.
    base: usize,
    /// The model bytes: `base..base + model_len`.
    model_len: usize,
    session: Option<Session<'static, 'static>>,
    /// Token input buffer (`capacity` u32) and generation output buffer (`capacity` u32).
    tokens: usize,
    out: usize,
    /// Stop tokens for [`pf_gen_begin`], written by JS.
    stop: [u32; MAX_STOP_TOKENS],
    /// All-positions logits (for `pf_full_logits_ptr`; the session holds the slice).
    full_logits: u32,
    capacity: usize,
    plan: [u32; PLAN_FIELDS],
    error: ErrorText,
}

static mut STATE: State = State {
    base: 0,
    model_len: 0,
    session: None,
    tokens: 0,
    out: 0,
    stop: [0; MAX_STOP_TOKENS],
    full_logits: 0,
    capacity: 0,
    plan: [0; PLAN_FIELDS],
    error: ErrorText {
        buf: [0; 512],
        len: 0,
    },
};

fn state() -> &'static mut State {
    // SAFETY: wasm32 here is single-threaded, and every export takes this reference once at its
    // start and never calls another export or back into JS, so no two references are alive.
    unsafe { &mut *addr_of_mut!(STATE) }
}

impl State {
    fn fail(&mut self, code: i32, msg: fmt::Arguments<'_>) -> i32 {
        self.error.len = 0;
        let _ = self.error.write_fmt(msg);
        -code
    }

    fn engine_error(&mut self, e: EngineError<'_>) -> i32 {
        let code = match e {
            EngineError::Load(_) => code::LOAD,
            EngineError::NotAWrapper => code::UNSUPPORTED_MODEL,
            EngineError::BadOption(_)
            | EngineError::NoContextRoom
            | EngineError::NotCrossAttending
            | EngineError::TooManyRows { .. }
            | EngineError::NoLogits
            | EngineError::NoGeneration
            | EngineError::Sample(_) => code::BAD_ARGUMENT,
            EngineError::Model(e) => model_code(e),
        };
        self.fail(code, format_args!("{e}"))
    }

    fn session(&mut self) -> Result<&mut Session<'static, 'static>, i32> {
        match self.session {
            Some(ref mut s) => Ok(s),
            None => {
                self.error.len = 0;
                let _ = self.error.write_str("no model loaded: call load first");
                Err(-code::NOT_LOADED)
            }
        }
    }

    /// Token buffer `which` (`tokens` or `out`), first `n` elements.
    fn token_slice(&self, at: usize, n: usize) -> &'static mut [u32] {
        debug_assert!(n <= self.capacity);
        // SAFETY: `at` was carved in `pf_load` for `capacity` u32s, 16-byte aligned, inside
        // memory grown for it; callers pass `n <= capacity`. The token buffers are separate from
        // every buffer the session holds, and each export uses one such slice at a time.
        unsafe { core::slice::from_raw_parts_mut(at as *mut u32, n) }
    }
}

fn model_code(e: Error) -> i32 {
    match e {
        Error::TokenOutOfRange { .. } => code::TOKEN_OUT_OF_RANGE,
        Error::CacheFull { .. } => code::CACHE_FULL,
        Error::PositionOutOfRange { .. } => code::POSITION_OUT_OF_RANGE,
        Error::EmptyInput
        | Error::TruncateBeyondLength { .. }
        | Error::ContextRequired
        | Error::ContextTooLong { .. } => code::BAD_ARGUMENT,
        _ => code::OTHER,
    }
}

/// Grows memory so that `end` bytes are addressable.
fn ensure_memory(end: usize) -> bool {
    let have = wasm32::memory_size(0) * PAGE;
    if end <= have {
        return true;
    }
    let pages = (end - have).div_ceil(PAGE);
    wasm32::memory_grow(0, pages) != usize::MAX
}

fn align16(x: usize) -> Option<usize> {
    x.checked_add(15).map(|x| x & !15)
}

/// Drops any session and reserves `len` bytes for a model file at the start of the arena.
/// Returns the address JS writes the bytes to, or 0 if memory cannot grow.
#[no_mangle]
pub extern "C" fn pf_alloc_model(len: u32) -> u32 {
    let st = state();
    st.session = None;
    st.model_len = 0;
    if st.base == 0 {
        st.base = wasm32::memory_size(0) * PAGE;
    }
    match st.base.checked_add(len as usize) {
        Some(end) if ensure_memory(end) => {
            st.model_len = len as usize;
            st.base as u32
        }
        _ => {
            st.fail(
                code::OUT_OF_MEMORY,
                format_args!("cannot grow memory for a model of {len} bytes"),
            );
            0
        }
    }
}

/// Parses the model written at [`pf_alloc_model`]'s address and makes a session with a KV cache
/// of `capacity` positions (`kv`: 0 f32, 1 f16, 2 bf16), a scratch arena for `chunk` positions
/// per prefill chunk, `full_rows` rows of all-positions logits, and for a cross-attending
/// model room for a context of `max_context` rows. Returns 0 or `-code`.
#[no_mangle]
pub extern "C" fn pf_load(
    capacity: u32,
    kv: u32,
    chunk: u32,
    full_rows: u32,
    max_context: u32,
) -> i32 {
    let st = state();
    st.session = None;
    let Some(kv) = KvKind::from_code(kv) else {
        return st.fail(
            code::BAD_ARGUMENT,
            format_args!("unknown kv cache type {kv}"),
        );
    };
    let opts = Options {
        capacity: capacity as usize,
        chunk: chunk as usize,
        kv,
        full_rows: full_rows as usize,
        max_context: max_context as usize,
    };
    if st.base == 0 || st.model_len == 0 {
        return st.fail(
            code::LOAD,
            format_args!("no model bytes: call alloc_model first"),
        );
    }
    // SAFETY: `base..base + model_len` was grown for the model in `pf_alloc_model` and is written
    // only by JS between that call and this one; no session borrows it (dropped above) and the
    // carving below starts after it, so the bytes stay unchanged while the session lives.
    let bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(st.base as *const u8, st.model_len) };
    let model = match engine::load(bytes) {
        Ok(m) => m,
        Err(e) => return st.engine_error(e),
    };
    let cfg = *model.config();
    let plan = Plan::new(&cfg, st.model_len, &opts);
    // Carve each buffer 16-byte aligned after the model bytes.
    let mut top = st.base + st.model_len;
    let mut carve = |bytes: usize| -> Option<usize> {
        let at = align16(top)?;
        top = at.checked_add(bytes)?;
        Some(at)
    };
    let layout = (|| {
        Some([
            carve(plan.kv_cache.checked_add(plan.context_cache)?)?,
            carve(plan.context)?,
            carve(plan.scratch)?,
            carve(plan.logits)?,
            carve(plan.full_logits)?,
            carve(plan.sampler)?,
            carve(plan.tokens)?,
            carve(plan.tokens)?,
            carve(plan.tokens)?,
        ])
    })();
    let end = top;
    let Some(
        [kv_at, context_at, scratch_at, logits_at, full_at, work_at, tokens_at, out_at, history_at],
    ) = layout.filter(|_| end <= u32::MAX as usize && ensure_memory(end))
    else {
        return st.fail(
            code::OUT_OF_MEMORY,
            format_args!(
                "cannot grow memory to {} bytes for this plan (capacity {capacity}, chunk {chunk})",
                plan.total()
            ),
        );
    };
    let v = cfg.num_tokens;
    let kv_elems = (plan.kv_cache + plan.context_cache) / kv.size();
    // SAFETY: each region was carved above, disjoint from the others and from the model bytes,
    // aligned to 16 (enough for f32/u32/f16/bf16 and `Candidate`, a u32 and an f32), inside
    // memory that `ensure_memory` grew and that is initialised (fresh pages are zero). Every bit
    // pattern is a valid value of these element types, `Candidate` included. The old session, which held
    // the previous slices over this arena, was dropped at the top of this function.
    let buffers = unsafe {
        Buffers {
            kv: match kv {
                KvKind::F32 => {
                    KvBuf::F32(core::slice::from_raw_parts_mut(kv_at as *mut f32, kv_elems))
                }
                KvKind::F16 => {
                    KvBuf::F16(core::slice::from_raw_parts_mut(kv_at as *mut _, kv_elems))
                }
                KvKind::Bf16 => {
                    KvBuf::Bf16(core::slice::from_raw_parts_mut(kv_at as *mut _, kv_elems))
                }
            },
            context: core::slice::from_raw_parts_mut(context_at as *mut f32, plan.context / 4),
            scratch: core::slice::from_raw_parts_mut(scratch_at as *mut f32, plan.scratch / 4),
            logits: core::slice::from_raw_parts_mut(logits_at as *mut f32, v),
            full_logits: core::slice::from_raw_parts_mut(full_at as *mut f32, plan.full_logits / 4),
            work: core::slice::from_raw_parts_mut(work_at as *mut Candidate, Sampler::work_len(v)),
            history: core::slice::from_raw_parts_mut(history_at as *mut u32, opts.capacity),
        }
    };
    match Session::new(model, &opts, buffers) {
        Ok(s) => st.session = Some(s),
        Err(e) => return st.engine_error(e),
    }
    st.tokens = tokens_at;
    st.out = out_at;
    st.full_logits = full_at as u32;
    st.capacity = opts.capacity;
    let d = &cfg.attn_layers;
    let fields = [
        plan.weights,
        plan.kv_cache,
        plan.scratch,
        plan.logits,
        plan.full_logits,
        plan.sampler,
        plan.tokens * 3,
        end - st.base,
        opts.capacity,
        opts.chunk,
        v,
        d.dim,
        d.depth,
        wasm32::memory_size(0) * PAGE,
        plan.context_cache,
        plan.context,
        opts.context_rows(d),
        d.dim_context(),
    ];
    for (p, f) in st.plan.iter_mut().zip(fields) {
        *p = f as u32;
    }
    0
}

/// Address of the last error message (UTF-8, [`pf_error_len`] bytes).
#[no_mangle]
pub extern "C" fn pf_error_ptr() -> u32 {
    state().error.buf.as_ptr() as u32
}

/// Length of the last error message.
#[no_mangle]
pub extern "C" fn pf_error_len() -> u32 {
    state().error.len as u32
}

/// Address of the plan table: 18 u32s (bytes of weights, kv_cache, scratch, logits,
/// full_logits, sampler, the three token buffers, arena total; then capacity, chunk, num_tokens, dim, depth,
/// memory bytes; then bytes of the context cache and the context, max_context rows and
/// dim_context, the values per context row).
#[no_mangle]
pub extern "C" fn pf_plan_ptr() -> u32 {
    state().plan.as_ptr() as u32
}

/// Address of the token input buffer (`capacity` u32s).
#[no_mangle]
pub extern "C" fn pf_tokens_ptr() -> u32 {
    state().tokens as u32
}

/// Address of the generated-token buffer (`capacity` u32s) written by [`pf_gen_run`].
#[no_mangle]
pub extern "C" fn pf_out_ptr() -> u32 {
    state().out as u32
}

/// Address of the last position's logits (`num_tokens` f32s).
#[no_mangle]
pub extern "C" fn pf_logits_ptr() -> u32 {
    match state().session {
        Some(ref s) => s.logits().as_ptr() as u32,
        None => 0,
    }
}

/// Address of the context buffer (`max_context × dim_context` f32s; 0 without a session).
/// Write a context's rows there, then call [`pf_set_context`].
#[no_mangle]
pub extern "C" fn pf_context_ptr() -> u32 {
    match state().session {
        Some(ref mut s) => s.context_buffer().as_ptr() as u32,
        None => 0,
    }
}

/// Makes the first `rows` rows of the context buffer the cross-attention context and starts a
/// new sequence (the cache is reset). Returns 0 or `-code`; on error nothing changes.
#[no_mangle]
pub extern "C" fn pf_set_context(rows: u32) -> i32 {
    let st = state();
    let r = match st.session() {
        Ok(s) => s.set_context(rows as usize),
        Err(c) => return c,
    };
    match r {
        Ok(()) => 0,
        Err(e) => st.engine_error(e),
    }
}

/// Reads `n` tokens from the token buffer, checking `n` against its capacity.
fn input(st: &mut State, n: u32) -> Result<&'static mut [u32], i32> {
    let n = n as usize;
    if n > st.capacity {
        let cap = st.capacity;
        return Err(st.fail(
            code::CACHE_FULL,
            format_args!("{n} tokens do not fit the token buffer of {cap} (the cache capacity)"),
        ));
    }
    Ok(st.token_slice(st.tokens, n))
}

/// Runs the first `n` tokens of the token buffer; the last position's logits go to
/// [`pf_logits_ptr`]. Returns 0 or `-code`.
#[no_mangle]
pub extern "C" fn pf_prefill(n: u32) -> i32 {
    let st = state();
    let tokens = match input(st, n) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let r = match st.session() {
        Ok(s) => s.prefill(tokens),
        Err(c) => return c,
    };
    match r {
        Ok(()) => 0,
        Err(e) => st.engine_error(e.into()),
    }
}

/// Runs one token. Returns 0 or `-code`.
#[no_mangle]
pub extern "C" fn pf_step(token: u32) -> i32 {
    let st = state();
    let r = match st.session() {
        Ok(s) => s.step(token),
        Err(c) => return c,
    };
    match r {
        Ok(()) => 0,
        Err(e) => st.engine_error(e.into()),
    }
}

/// Runs the first `n` tokens of the token buffer and writes every position's logits
/// (`n × num_tokens`) to [`pf_full_logits_ptr`]. Returns 0 or `-code`.
#[no_mangle]
pub extern "C" fn pf_forward_all(n: u32) -> i32 {
    let st = state();
    let tokens = match input(st, n) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let r = match st.session() {
        Ok(s) => s.forward_all(tokens).map(|_| 0),
        Err(c) => return c,
    };
    r.unwrap_or_else(|e| st.engine_error(e))
}

/// Address of the all-positions logits (`full_rows × num_tokens` f32s). An address, not a
/// status: it may exceed `i32::MAX` once memory passes 2 GiB, so it is only returned as `u32`.
#[no_mangle]
pub extern "C" fn pf_full_logits_ptr() -> u32 {
    state().full_logits
}

/// Largest |full − stepwise| logit difference over the first `n` tokens of the token buffer,
/// decoded from an empty cache both ways; negative (`-code`) on error.
#[no_mangle]
pub extern "C" fn pf_full_vs_stepwise(n: u32) -> f32 {
    let st = state();
    let tokens = match input(st, n) {
        Ok(t) => t,
        Err(c) => return c as f32,
    };
    let r = match st.session() {
        Ok(s) => s.full_vs_stepwise(tokens),
        Err(c) => return c as f32,
    };
    r.unwrap_or_else(|e| st.engine_error(e) as f32)
}

/// Seeds the sampler's RNG with `hi << 32 | lo`.
#[no_mangle]
pub extern "C" fn pf_seed(lo: u32, hi: u32) {
    if let Ok(s) = state().session() {
        s.seed((hi as u64) << 32 | lo as u64);
    }
}

/// Picks the next token from the current logits with the library's sampler (temperature 0:
/// greedy; `top_k` 0, `top_p` 1, `min_p` 0: off; other values out of range are refused).
/// Returns the token (≥ 0) or `-code`; on error nothing changes.
#[no_mangle]
pub extern "C" fn pf_sample(temperature: f32, top_k: u32, top_p: f32, min_p: f32) -> i32 {
    let st = state();
    let s = Sampling {
        temperature,
        top_k,
        top_p,
        min_p,
        repetition_penalty: 1.0,
        repetition_window: 0,
    };
    let r = match st.session() {
        Ok(sess) => sess.sample(&s),
        Err(c) => return c,
    };
    match r {
        Ok(t) => t as i32,
        Err(e) => st.engine_error(e),
    }
}

/// Address of the stop-token buffer ([`MAX_STOP_TOKENS`] u32s) read by [`pf_gen_begin`].
#[no_mangle]
pub extern "C" fn pf_stop_ptr() -> u32 {
    state().stop.as_ptr() as u32
}

/// Starts a generation (see `Session::begin`): the first `n_prompt` tokens of the token buffer
/// (none: continue), up to `max_tokens` new tokens, the sampler's settings (`top_k` 0, `top_p`
/// 1, `min_p` 0, `repetition_penalty` 1: off), `keep` 0 to stop when the cache is full or the
/// sliding window's size, the first `n_stop` stop tokens of [`pf_stop_ptr`], and a seed when
/// `has_seed` is not 0. `cut` not 0: the prompt is the end of a longer one (for the window). Everything is checked before anything runs: on error (`-code`) nothing
/// changed. Returns 0; then call [`pf_gen_run`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn pf_gen_begin(
    n_prompt: u32,
    max_tokens: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    repetition_penalty: f32,
    repetition_window: u32,
    keep: u32,
    n_stop: u32,
    seed_lo: u32,
    seed_hi: u32,
    has_seed: u32,
    cut: u32,
) -> i32 {
    let st = state();
    let prompt = match input(st, n_prompt) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let mut g = Generate::new(
        Sampling {
            temperature,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            repetition_window,
        },
        max_tokens as usize,
    );
    g.keep = keep as usize;
    g.stop = st.stop;
    g.n_stop = n_stop as usize;
    g.seed = (has_seed != 0).then_some((seed_hi as u64) << 32 | seed_lo as u64);
    g.cut_prompt = cut != 0;
    let r = match st.session() {
        Ok(sess) => sess.begin(prompt, &g),
        Err(c) => return c,
    };
    match r {
        Ok(()) => 0,
        Err(e) => st.engine_error(e),
    }
}

/// Generates up to `max` more tokens (at most the capacity) of the generation begun by
/// [`pf_gen_begin`] into [`pf_out_ptr`], all inside wasm. Returns how many (fewer when it
/// stopped: [`pf_gen_reason`]) or `-code`.
#[no_mangle]
pub extern "C" fn pf_gen_run(max: u32) -> i32 {
    let st = state();
    let out = st.token_slice(st.out, st.capacity);
    let max = (max as usize).min(out.len());
    let r = match st.session() {
        Ok(sess) => {
            let mut n = 0;
            loop {
                if n == max {
                    break Ok(n);
                }
                match sess.next_token() {
                    Ok(Some(t)) => {
                        out[n] = t;
                        n += 1;
                    }
                    Ok(None) => break Ok(n),
                    Err(e) => break Err(e),
                }
            }
        }
        Err(c) => return c,
    };
    match r {
        Ok(n) => n as i32,
        Err(e) => st.engine_error(e),
    }
}

/// Why the generation stopped: 0 not stopped (or none), 1 max tokens, 2 a stop token, 3 the
/// cache (or position table) is full.
#[no_mangle]
pub extern "C" fn pf_gen_reason() -> u32 {
    state()
        .session
        .as_ref()
        .and_then(|s| s.stop_reason())
        .map_or(0, |r| r as u32)
}

/// Times a sliding window re-encoded since the model was loaded.
#[no_mangle]
pub extern "C" fn pf_reencodes() -> u32 {
    state().session.as_ref().map_or(0, |s| s.reencodes() as u32)
}

/// Forgets everything cached.
#[no_mangle]
pub extern "C" fn pf_reset() {
    if let Ok(s) = state().session() {
        s.reset();
    }
}

/// Rewinds the cache to `len` positions. Returns 0 or `-code`.
#[no_mangle]
pub extern "C" fn pf_truncate(len: u32) -> i32 {
    let st = state();
    let r = match st.session() {
        Ok(s) => s.truncate(len as usize),
        Err(c) => return c,
    };
    match r {
        Ok(()) => 0,
        Err(e) => st.engine_error(e.into()),
    }
}

/// Positions cached.
#[no_mangle]
pub extern "C" fn pf_len() -> u32 {
    state().session.as_ref().map_or(0, |s| s.len() as u32)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // A trap: JS sees a RuntimeError("unreachable") and the instance must not be used again.
    wasm32::unreachable()
}
