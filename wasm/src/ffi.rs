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
//! truncate, set_context, full_vs_stepwise, gen_begin, encode or forward_values changes nothing
//! (everything is checked before anything runs); a failed load leaves no model loaded. Any model
//! of the family loads ([`pf_kind`]): a decoder wrapper or an `XTransformer`'s decoder is a
//! [`Session`] (the `XTransformer`'s encoder a [`SourceEncoder`] writing its context), the rest
//! a [`Frames`]; an export the loaded kind does not take returns `BAD_ARGUMENT`.
//! This is the only file of the crate with `unsafe`.

use core::arch::wasm32;
use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use picoformer::sampling::{Candidate, Sampler};
use picoformer::Error;

use crate::engine::{
    Buffers, EngineError, Generate, KvBuf, KvKind, Options, Plan, Sampling, Session,
    MAX_STOP_TOKENS,
};
use crate::family::{
    self, CacheBuf, Emit, FrameBuffers, FrameOptions, FramePlan, Frames, Input, Kind, Loaded,
    SourceEncoder, SourcePlan,
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
const PLAN_FIELDS: usize = 29;

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
    /// A decoder wrapper's session, or an `XTransformer` decoder's.
    session: Option<Session<'static, 'static>>,
    /// Any other model of the family.
    frames: Option<Frames<'static, 'static>>,
    /// An `XTransformer`'s encoder.
    source: Option<SourceEncoder<'static, 'static>>,
    /// What is loaded.
    kind: Option<Kind>,
    /// Token input buffer (`tokens_len` u32: the capacity, or an `XTransformer`'s longest
    /// source if more) and generation output buffer (`capacity` u32).
    tokens: usize,
    tokens_len: usize,
    out: usize,
    /// Input values of a frame model (`values_len` f32).
    values: usize,
    values_len: usize,
    /// A window's or source's padding mask as JS writes it (`mask_len` bytes), and a
    /// context's (`context_mask_len` bytes).
    mask: usize,
    mask_len: usize,
    context_mask: usize,
    context_mask_len: usize,
    /// Stop tokens for [`pf_gen_begin`], written by JS.
    stop: [u32; MAX_STOP_TOKENS],
    /// All-positions logits (for `pf_full_logits_ptr`; the session holds the slice).
    full_logits: u32,
    capacity: usize,
    plan: [u32; PLAN_FIELDS],
    error: ErrorText,
}

/// The state, made on the first call ([`state`]). Not a `static mut State = State { session:
/// None, .. }`: the `None`s of its models are niches with bytes other than zero (a `bool`'s 2,
/// a `Kind`'s 7), which would put the whole state, tens of KB of model structs (a
/// `TransformerWrapper` holds its layers inline), in the module's data section. Zeroed, it is
/// zero-filled memory (`.bss`) that costs the module nothing; [`init`] then writes its fields
/// one by one (a whole `State` value would be a constant of that size in the data section).
static mut STATE: MaybeUninit<State> = MaybeUninit::zeroed();
static mut STATE_READY: bool = false;

/// Writes every field of the state at `p`: nothing loaded.
///
/// # Safety
/// `p` is valid for writes and no reference to it is alive.
#[inline(never)]
unsafe fn init(p: *mut State) {
    // SAFETY: as the caller promises; each write is to a field of `*p`, which drops nothing.
    unsafe {
        addr_of_mut!((*p).base).write(0);
        addr_of_mut!((*p).model_len).write(0);
        addr_of_mut!((*p).session).write(None);
        addr_of_mut!((*p).frames).write(None);
        addr_of_mut!((*p).source).write(None);
        addr_of_mut!((*p).kind).write(None);
        addr_of_mut!((*p).tokens).write(0);
        addr_of_mut!((*p).tokens_len).write(0);
        addr_of_mut!((*p).out).write(0);
        addr_of_mut!((*p).values).write(0);
        addr_of_mut!((*p).values_len).write(0);
        addr_of_mut!((*p).mask).write(0);
        addr_of_mut!((*p).mask_len).write(0);
        addr_of_mut!((*p).context_mask).write(0);
        addr_of_mut!((*p).context_mask_len).write(0);
        addr_of_mut!((*p).stop).write([0; MAX_STOP_TOKENS]);
        addr_of_mut!((*p).full_logits).write(0);
        addr_of_mut!((*p).capacity).write(0);
        addr_of_mut!((*p).plan).write([0; PLAN_FIELDS]);
        addr_of_mut!((*p).error.len).write(0);
        addr_of_mut!((*p).error.buf).write([0; 512]);
    }
}

fn state() -> &'static mut State {
    // SAFETY: wasm32 here is single-threaded, and every export takes this reference once at its
    // start and never calls another export or back into JS, so no two references are alive.
    // Every field of STATE is written by `init` before the first reference to it is made.
    unsafe {
        let p = addr_of_mut!(STATE).cast::<State>();
        if !*addr_of_mut!(STATE_READY) {
            init(p);
            *addr_of_mut!(STATE_READY) = true;
        }
        &mut *p
    }
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
            | EngineError::Sample(_)
            | EngineError::WrongKind(_) => code::BAD_ARGUMENT,
            EngineError::Model(e) => model_code(e),
        };
        self.fail(code, format_args!("{e}"))
    }

    fn session(&mut self) -> Result<&mut Session<'static, 'static>, i32> {
        if self.session.is_none() {
            return Err(self.wrong_kind());
        }
        self.session.as_mut().ok_or(-code::OTHER)
    }

    fn frames(&mut self) -> Result<&mut Frames<'static, 'static>, i32> {
        if self.frames.is_none() {
            return Err(self.wrong_kind());
        }
        self.frames.as_mut().ok_or(-code::OTHER)
    }

    /// The error of a call that the loaded model does not take (or of any, when none is).
    fn wrong_kind(&mut self) -> i32 {
        match self.kind {
            Some(k) => self.fail(
                code::BAD_ARGUMENT,
                format_args!("{}", EngineError::WrongKind(k)),
            ),
            None => self.not_loaded(),
        }
    }

    fn not_loaded(&mut self) -> i32 {
        self.error.len = 0;
        let _ = self.error.write_str("no model loaded: call load first");
        -code::NOT_LOADED
    }

    /// Drops whatever is loaded.
    fn unload(&mut self) {
        self.session = None;
        self.frames = None;
        self.source = None;
        self.kind = None;
    }

    /// The first `n` bytes of a mask buffer written by JS (`has` 0: no mask).
    fn mask_bytes(&self, at: usize, len: usize, n: usize, has: u32) -> Option<&'static [u8]> {
        if has == 0 {
            return None;
        }
        // SAFETY: `at` was carved in `pf_load` for `len` bytes inside grown memory, disjoint
        // from every buffer the models hold; JS writes it only between calls. Any byte is a u8.
        Some(unsafe { core::slice::from_raw_parts(at as *const u8, n.min(len)) })
    }

    /// Token buffer `which` (`tokens` or `out`), first `n` elements.
    fn token_slice(&self, at: usize, n: usize) -> &'static mut [u32] {
        debug_assert!(n <= self.capacity.max(self.tokens_len));
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
        | Error::ContextTooLong { .. }
        | Error::ContextNotExpected
        | Error::BufferLength { .. } => code::BAD_ARGUMENT,
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
    st.unload();
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

/// Carves buffers 16-byte aligned from `top` on.
struct Carver {
    top: usize,
    ok: bool,
}

impl Carver {
    fn take(&mut self, bytes: usize) -> usize {
        let at = align16(self.top).unwrap_or(usize::MAX);
        match at.checked_add(bytes) {
            Some(end) if self.ok => self.top = end,
            _ => self.ok = false,
        }
        at
    }
}

/// A mutable slice of `len` `T`s at `at`.
///
/// # Safety
/// `at..at + len · size_of::<T>()` was carved by a [`Carver`] (16-byte aligned, disjoint from
/// every other buffer and from the model bytes) inside memory that `ensure_memory` grew, and no
/// other live reference covers it. Every bit pattern must be a valid `T` (f32, u32, f16, bf16,
/// `Candidate`), or the memory must hold valid values (`bool`: fresh pages are zero, and only
/// the engine writes it).
unsafe fn carved<T>(at: usize, len: usize) -> &'static mut [T] {
    // SAFETY: as the caller promises.
    unsafe { core::slice::from_raw_parts_mut(at as *mut T, len) }
}

/// The typed KV cache buffer of `bytes` bytes at `at`.
///
/// # Safety
/// As [`carved`].
unsafe fn kv_buf(kv: KvKind, at: usize, bytes: usize) -> (KvBuf<'static>, CacheBuf<'static>) {
    let n = bytes / kv.size();
    // SAFETY: as the caller promises; the two views of each kind are the same slice, and the
    // caller uses only one of them.
    unsafe {
        match kv {
            KvKind::F32 => (KvBuf::F32(carved(at, n)), CacheBuf::F32(carved(at, n))),
            KvKind::F16 => (KvBuf::F16(carved(at, n)), CacheBuf::F16(carved(at, n))),
            KvKind::Bf16 => (KvBuf::Bf16(carved(at, n)), CacheBuf::Bf16(carved(at, n))),
        }
    }
}

/// Parses the model written at [`pf_alloc_model`]'s address, whatever its kind ([`pf_kind`]),
/// and carves its buffers: a KV cache of `capacity` positions (`kv`: 0 f32, 1 f16, 2 bf16), a
/// scratch arena for `chunk` positions per prefill chunk, `full_rows` rows of all-positions
/// logits, and for a cross-attending model room for a context of `max_context` rows. For an
/// encoder, `capacity` is the longest window (run in one chunk); for an `XTransformer`,
/// `max_context` is the longest source (0: the encoder's `max_seq_len`). With `panels` (1) a
/// token-generating model's decoder matrices are also packed into f32 panels for prefill
/// (`TransformerWrapper::with_prefill_panels`; other kinds ignore it). Returns 0 or `-code`.
#[no_mangle]
pub extern "C" fn pf_load(
    capacity: u32,
    kv: u32,
    chunk: u32,
    full_rows: u32,
    max_context: u32,
    panels: u32,
) -> i32 {
    let st = state();
    st.unload();
    let Some(kv) = KvKind::from_code(kv) else {
        return st.fail(
            code::BAD_ARGUMENT,
            format_args!("unknown kv cache type {kv}"),
        );
    };
    if st.base == 0 || st.model_len == 0 {
        return st.fail(
            code::LOAD,
            format_args!("no model bytes: call alloc_model first"),
        );
    }
    // SAFETY: `base..base + model_len` was grown for the model in `pf_alloc_model` and is written
    // only by JS between that call and this one; nothing borrows it (dropped above) and the
    // carving below starts after it, so the bytes stay unchanged while the model lives.
    let bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(st.base as *const u8, st.model_len) };
    let loaded = match family::load_any(bytes) {
        Ok(m) => m,
        Err(e) => return st.engine_error(e),
    };
    let kind = loaded.kind();
    let mut opts = Options {
        capacity: capacity as usize,
        chunk: chunk as usize,
        kv,
        full_rows: full_rows as usize,
        max_context: max_context as usize,
    };
    let oom = |st: &mut State, total: usize| {
        st.fail(
            code::OUT_OF_MEMORY,
            format_args!(
                "cannot grow memory to {total} bytes for this plan (capacity {capacity}, chunk {chunk})"
            ),
        )
    };
    let mut c = Carver {
        top: st.base + st.model_len,
        ok: true,
    };
    let mut fields = [0usize; PLAN_FIELDS];
    match loaded {
        Loaded::Tokens(_) | Loaded::Xt(_) => {
            let (model, xt) = match loaded {
                Loaded::Tokens(w) => (w, None),
                Loaded::Xt(x) => {
                    if opts.max_context == 0 {
                        opts.max_context = x.encoder().config().max_seq_len;
                    }
                    (x.decoder().clone(), Some(x))
                }
                Loaded::Frames(_) => unreachable!(),
            };
            let cfg = *model.config();
            let d = &cfg.attn_layers;
            let plan = Plan::new(&cfg, st.model_len, &opts);
            let rows = opts.context_rows(d);
            let source = xt.as_ref().map(|x| SourcePlan::new(x, opts.max_context));
            let tokens_len = match xt {
                Some(_) => opts.capacity.max(opts.max_context),
                None => opts.capacity,
            };
            let kv_at = c.take(plan.kv_cache.saturating_add(plan.context_cache));
            let context_at = c.take(plan.context);
            let cmask_at = c.take(plan.context_mask);
            let scratch_at = c.take(plan.scratch);
            let logits_at = c.take(plan.logits);
            let full_at = c.take(plan.full_logits);
            let work_at = c.take(plan.sampler);
            let tokens_at = c.take(tokens_len.saturating_mul(4));
            let out_at = c.take(plan.tokens);
            let history_at = c.take(plan.tokens);
            let mask_len = source.map_or(0, |s| s.mask);
            let mask_at = c.take(mask_len);
            let cmask_in_at = c.take(rows);
            let enc_kv_at = c.take(source.map_or(0, |s| s.kv_cache));
            let enc_scratch_at = c.take(source.map_or(0, |s| s.scratch));
            let enc_mask_at = c.take(source.map_or(0, |s| s.mask));
            let panels_len = if panels != 0 {
                model.prefill_panels_len()
            } else {
                0
            };
            let panels_bytes = panels_len.saturating_mul(4);
            let panels_at = c.take(panels_bytes);
            let end = c.top;
            if !c.ok || end > u32::MAX as usize || !ensure_memory(end) {
                return oom(st, plan.total().saturating_add(panels_bytes));
            }
            let v = cfg.num_tokens;
            // SAFETY: each region was carved above by `c`, disjoint from the others and from
            // the model bytes, inside memory `ensure_memory` grew; fresh pages are zero (valid
            // bools). The old models, which held slices over this arena, were dropped above.
            let buffers = unsafe {
                Buffers {
                    kv: kv_buf(kv, kv_at, plan.kv_cache + plan.context_cache).0,
                    context: carved(context_at, plan.context / 4),
                    context_mask: carved(cmask_at, plan.context_mask),
                    scratch: carved(scratch_at, plan.scratch / 4),
                    logits: carved(logits_at, v),
                    full_logits: carved(full_at, plan.full_logits / 4),
                    work: carved::<Candidate>(work_at, Sampler::work_len(v)),
                    history: carved(history_at, opts.capacity),
                }
            };
            let model = if panels_len > 0 {
                // SAFETY: as above.
                let arena = unsafe { carved(panels_at, panels_len) };
                match model.with_prefill_panels(arena) {
                    Ok(m) => m,
                    Err(e) => return st.engine_error(EngineError::Model(e)),
                }
            } else {
                model
            };
            let session = match Session::new(model, &opts, buffers) {
                Ok(s) => s,
                Err(e) => return st.engine_error(e),
            };
            if let (Some(x), Some(p)) = (xt, source) {
                // SAFETY: as above.
                let (kvb, scratch, mask) = unsafe {
                    (
                        carved(enc_kv_at, p.kv_cache / 4),
                        carved(enc_scratch_at, p.scratch / 4),
                        carved(enc_mask_at, p.mask),
                    )
                };
                match SourceEncoder::new(x.encoder().clone(), opts.max_context, kvb, scratch, mask)
                {
                    Ok(s) => st.source = Some(s),
                    Err(e) => return st.engine_error(e),
                }
                let e = x.encoder().config();
                fields[25] = p.kv_cache;
                fields[26] = p.scratch;
                fields[27] = e.num_tokens;
                fields[19] = 1;
                fields[20] = e.attn_layers.dim;
            } else {
                fields[19] = 1;
                fields[20] = cfg.logits_width();
            }
            st.session = Some(session);
            st.tokens = tokens_at;
            st.tokens_len = tokens_len;
            st.out = out_at;
            st.full_logits = full_at as u32;
            st.mask = mask_at;
            st.mask_len = mask_len;
            st.context_mask = cmask_in_at;
            st.context_mask_len = rows;
            fields[..18].copy_from_slice(&[
                plan.weights,
                plan.kv_cache,
                plan.scratch,
                plan.logits,
                plan.full_logits,
                plan.sampler,
                plan.tokens * 2 + tokens_len * 4,
                end - st.base,
                opts.capacity,
                opts.chunk,
                v,
                d.dim,
                d.depth,
                0,
                plan.context_cache,
                plan.context,
                rows,
                d.dim_context(),
            ]);
            fields[24] = plan.context_mask + mask_len + rows + source.map_or(0, |s| s.mask);
            fields[28] = panels_bytes;
        }
        Loaded::Frames(net) => {
            // f32 for an encoder, whatever `kv` says.
            let kv = net.cache_kind(kv);
            let fo = FrameOptions {
                capacity: opts.capacity,
                chunk: opts.chunk,
                kv,
                max_context: opts.max_context,
            };
            let plan = FramePlan::new(&net, &fo);
            let d = *net.layers();
            let rows = plan.context_mask;
            let tokens_len = if net.kind() == Kind::EncoderWrapper {
                opts.capacity
            } else {
                0
            };
            let kv_at = c.take(plan.kv_cache.saturating_add(plan.context_cache));
            let context_at = c.take(plan.context);
            let cmask_at = c.take(plan.context_mask);
            let scratch_at = c.take(plan.scratch);
            let output_at = c.take(plan.output);
            let bools_at = c.take(plan.mask);
            let tokens_at = c.take(tokens_len.saturating_mul(4));
            let values_len = if tokens_len == 0 { plan.input / 4 } else { 0 };
            let values_at = c.take(values_len.saturating_mul(4));
            let mask_at = c.take(plan.mask);
            let cmask_in_at = c.take(rows);
            let end = c.top;
            let total = [
                st.model_len,
                plan.kv_cache,
                plan.context_cache,
                plan.context,
                plan.scratch,
                plan.output,
                plan.input,
            ]
            .iter()
            .fold(0usize, |a, &b| a.saturating_add(b));
            if !c.ok || end > u32::MAX as usize || !ensure_memory(end) {
                return oom(st, total);
            }
            // SAFETY: as for a session above.
            let buffers = unsafe {
                FrameBuffers {
                    kv: kv_buf(kv, kv_at, plan.kv_cache + plan.context_cache).1,
                    context: carved(context_at, plan.context / 4),
                    context_mask: carved(cmask_at, plan.context_mask),
                    scratch: carved(scratch_at, plan.scratch / 4),
                    output: carved(output_at, plan.output / 4),
                    mask: carved(bools_at, plan.mask),
                }
            };
            let (input_width, output_width, pooled) =
                (net.input_width(), net.output_width(), net.pooled());
            let num_tokens = match &net {
                family::Net::EncoderWrapper(w) => w.config().num_tokens,
                _ => 0,
            };
            let chunk = if net.is_encoder() {
                net.positions(opts.capacity)
            } else {
                opts.chunk
            };
            match Frames::new(net, &fo, buffers) {
                Ok(f) => st.frames = Some(f),
                Err(e) => return st.engine_error(e),
            }
            st.tokens = tokens_at;
            st.tokens_len = tokens_len;
            st.out = 0;
            st.full_logits = 0;
            st.values = values_at;
            st.values_len = values_len;
            st.mask = mask_at;
            st.mask_len = plan.mask;
            st.context_mask = cmask_in_at;
            st.context_mask_len = rows;
            fields[..18].copy_from_slice(&[
                st.model_len,
                plan.kv_cache,
                plan.scratch,
                0,
                0,
                0,
                0,
                end - st.base,
                opts.capacity,
                chunk,
                num_tokens,
                d.dim,
                d.depth,
                0,
                plan.context_cache,
                plan.context,
                rows,
                d.dim_context(),
            ]);
            fields[19] = input_width;
            fields[20] = output_width;
            fields[21] = pooled as usize;
            fields[22] = (tokens_len + values_len) * 4;
            fields[23] = plan.output;
            fields[24] = plan.context_mask + plan.mask * 2 + rows;
        }
    }
    st.kind = Some(kind);
    st.capacity = opts.capacity;
    fields[13] = wasm32::memory_size(0) * PAGE;
    fields[18] = kind as usize;
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

/// Address of the plan table: [`PLAN_FIELDS`] u32s, in the order of `PLAN_FIELDS` in
/// `js/picoformer.mjs` (bytes of weights, kv_cache, scratch, logits, full_logits, sampler, the
/// three token buffers, arena total; then capacity, chunk, num_tokens, dim, depth, memory bytes;
/// then bytes of the context cache and the context, max_context rows and dim_context; then the
/// kind and the encoders' fields; last the bytes of the prefill panels).
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

/// Address of the context buffer (`max_context × dim_context` f32s; 0 without a model).
/// Write a context's rows there, then call [`pf_set_context`].
#[no_mangle]
pub extern "C" fn pf_context_ptr() -> u32 {
    let st = state();
    if let Some(ref mut s) = st.session {
        return s.context_buffer().as_ptr() as u32;
    }
    match st.frames {
        Some(ref mut f) => f.context_buffer().as_ptr() as u32,
        None => 0,
    }
}

/// Address of the context mask JS writes ([`pf_set_context`]'s, a byte per row).
#[no_mangle]
pub extern "C" fn pf_context_mask_ptr() -> u32 {
    state().context_mask as u32
}

/// Address of the padding mask JS writes for [`pf_encode`] (a byte per position, 0 for
/// padding).
#[no_mangle]
pub extern "C" fn pf_mask_ptr() -> u32 {
    state().mask as u32
}

/// Address of the input values of a frame model (rows of `inputWidth` f32s).
#[no_mangle]
pub extern "C" fn pf_values_ptr() -> u32 {
    state().values as u32
}

/// What is loaded: a [`Kind`] code, or -1 (`NOT_LOADED` is -7 elsewhere; here nothing is).
#[no_mangle]
pub extern "C" fn pf_kind() -> i32 {
    state().kind.map_or(-1, |k| k as i32)
}

/// Makes the first `rows` rows of the context buffer the cross-attention context and starts a
/// new sequence (the cache is reset); with `has_mask`, the first `rows` bytes at
/// [`pf_context_mask_ptr`] are its padding mask. Returns 0 or `-code`; on error nothing changes.
#[no_mangle]
pub extern "C" fn pf_set_context(rows: u32, has_mask: u32) -> i32 {
    let st = state();
    let mask = st.mask_bytes(
        st.context_mask,
        st.context_mask_len,
        rows as usize,
        has_mask,
    );
    let r = if st.session.is_some() || st.kind.is_none() {
        match st.session() {
            Ok(s) => s.set_context(rows as usize, mask),
            Err(c) => return c,
        }
    } else {
        match st.frames() {
            Ok(f) => f.set_context(rows as usize, mask),
            Err(c) => return c,
        }
    };
    match r {
        Ok(()) => 0,
        Err(e) => st.engine_error(e),
    }
}

/// Encodes the first `n` inputs: token ids from [`pf_tokens_ptr`] (an encoder wrapper, an
/// `XTransformer`'s source), or rows of values from [`pf_values_ptr`] (a bare or continuous
/// encoder); with `has_mask`, the first `n` bytes at [`pf_mask_ptr`] are the padding mask. With
/// `embeddings`, an encoder wrapper writes its embeddings instead of its logits. The outputs go
/// to [`pf_output_ptr`] (for an `XTransformer`, the source's embeddings, which become its
/// decoder's context). Returns the rows written (1 for a pooled output) or `-code`; on error
/// nothing changes.
#[no_mangle]
pub extern "C" fn pf_encode(n: u32, has_mask: u32, embeddings: u32) -> i32 {
    let st = state();
    let n = n as usize;
    let mask = st.mask_bytes(st.mask, st.mask_len, n, has_mask);
    if has_mask != 0 && n > st.mask_len {
        let len = st.mask_len;
        return st.fail(
            code::BAD_ARGUMENT,
            format_args!("{n} positions do not fit the mask buffer of {len}"),
        );
    }
    if let (Some(src), Some(sess)) = (st.source.as_mut(), st.session.as_mut()) {
        if n > st.tokens_len || embeddings != 0 {
            let len = st.tokens_len;
            return st.fail(
                code::BAD_ARGUMENT,
                format_args!(
                    "a source of {n} tokens does not fit the {len} of the option maxContext"
                ),
            );
        }
        // SAFETY: carved in `pf_load` for `tokens_len` u32s (n is at most that), disjoint from
        // the models' buffers.
        let tokens = unsafe { carved_ref(st.tokens, n) };
        return match src.encode(sess, tokens, mask) {
            Ok(()) => n as i32,
            Err(e) => st.engine_error(e),
        };
    }
    let (tokens_at, tokens_len, values_at, values_len) =
        (st.tokens, st.tokens_len, st.values, st.values_len);
    let emit = if embeddings != 0 {
        Emit::Embeddings
    } else {
        Emit::Logits
    };
    let f = match st.frames() {
        Ok(f) => f,
        Err(c) => return c,
    };
    // Tokens (an encoder wrapper) or rows of `width` values, checked to fit their buffer.
    let width = f.net().input_width().max(1);
    let fits = match tokens_len {
        0 => n.checked_mul(width).is_some_and(|len| len <= values_len),
        _ => n <= tokens_len,
    };
    if !fits {
        let cap = st.capacity;
        return st.fail(
            code::CACHE_FULL,
            format_args!("{n} positions do not fit the capacity of {cap}"),
        );
    }
    // SAFETY: carved in `pf_load` for `tokens_len` u32s or `values_len` f32s, disjoint from the
    // model's buffers, and written by JS only between calls.
    let input = unsafe {
        match tokens_len {
            0 => Input::Values(carved_ref(values_at, n * width)),
            _ => Input::Tokens(carved_ref(tokens_at, n)),
        }
    };
    let w = if emit == Emit::Embeddings {
        f.net().layers().dim
    } else {
        f.net().output_width()
    };
    let r = f
        .encode(input, mask, emit)
        .map(|out| (out.len() / w.max(1)) as i32);
    r.unwrap_or_else(|e| st.engine_error(e))
}

/// Runs the first `n` rows of values from [`pf_values_ptr`] through a streaming decoder (a bare
/// `Decoder` or a continuous wrapper around one) after what is cached; their outputs go to
/// [`pf_output_ptr`]. Returns `n` or `-code`; on error nothing changes.
#[no_mangle]
pub extern "C" fn pf_forward_values(n: u32) -> i32 {
    let st = state();
    let n = n as usize;
    let (values_at, values_len, cap) = (st.values, st.values_len, st.capacity);
    let f = match st.frames() {
        Ok(f) => f,
        Err(c) => return c,
    };
    let width = f.net().input_width();
    let fits = n
        .checked_mul(width.max(1))
        .is_some_and(|len| len <= values_len);
    if !fits && !f.net().is_encoder() {
        return st.fail(
            code::CACHE_FULL,
            format_args!("{n} positions do not fit the capacity of {cap}"),
        );
    }
    // SAFETY: carved in `pf_load` for `values_len` f32s, disjoint from the model's buffers.
    let x = unsafe { carved_ref(values_at, (n * width).min(values_len)) };
    let r = f.forward(Input::Values(x)).map(|_| n as i32);
    r.unwrap_or_else(|e| st.engine_error(e))
}

/// Address of the outputs of the last [`pf_encode`] or [`pf_forward_values`].
#[no_mangle]
pub extern "C" fn pf_output_ptr() -> u32 {
    let st = state();
    if let Some(ref mut s) = st.session {
        return s.context_buffer().as_ptr() as u32;
    }
    match st.frames {
        Some(ref f) => f.output().as_ptr() as u32,
        None => 0,
    }
}

/// A shared slice of `len` `T`s at `at`.
///
/// # Safety
/// As [`carved`], for a region no mutable reference covers while the slice lives.
unsafe fn carved_ref<T>(at: usize, len: usize) -> &'static [T] {
    // SAFETY: as the caller promises.
    unsafe { core::slice::from_raw_parts(at as *const T, len) }
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
    let st = state();
    if let Some(ref mut s) = st.session {
        s.reset();
    }
    if let Some(ref mut f) = st.frames {
        f.reset();
    }
}

/// Rewinds the cache to `len` positions. Returns 0 or `-code`.
#[no_mangle]
pub extern "C" fn pf_truncate(len: u32) -> i32 {
    let st = state();
    let r = if let Some(ref mut s) = st.session {
        s.truncate(len as usize)
    } else if let Some(ref mut f) = st.frames {
        f.truncate(len as usize)
    } else {
        return st.not_loaded();
    };
    match r {
        Ok(()) => 0,
        Err(e) => st.engine_error(e.into()),
    }
}

/// Positions cached.
#[no_mangle]
pub extern "C" fn pf_len() -> u32 {
    let st = state();
    match (&st.session, &st.frames) {
        (Some(s), _) => s.len() as u32,
        (None, Some(f)) => f.len() as u32,
        (None, None) => 0,
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // A trap: JS sees a RuntimeError("unreachable") and the instance must not be used again.
    wasm32::unreachable()
}
