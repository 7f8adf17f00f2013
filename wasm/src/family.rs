//! The rest of the x-transformers family, beside the decoder `TransformerWrapper` of
//! [`crate::engine::Session`]: which kind a model file holds ([`Kind`], [`load_any`]), the models
//! that map inputs to outputs without generating ([`Frames`]: encoders, bare decoders and
//! `ContinuousTransformerWrapper`s), and an `XTransformer`'s encoder ([`SourceEncoder`]), whose
//! output becomes the context of its decoder's [`crate::engine::Session`].
//!
//! Every call checks what the library could refuse before it writes anything, so a refused
//! call changes nothing (the library's own calls write nothing when they fail).
#![deny(unsafe_code)]

use picoformer::options::{model_kind, ModelKind};
use picoformer::safetensors::SafeTensors;
use picoformer::{
    ContinuousModel, ContinuousTransformerWrapper, Decoder, DecoderConfig, Encoder, EncoderModel,
    Error, KvCache, LoadError, Masks, Model, Scratch, TransformerWrapper, XTransformer,
};

use crate::engine::{context, context_masks, copy_mask, EngineError, KvKind};

/// What a model file holds (the wasm ABI's code is the discriminant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `TransformerWrapper(attn_layers=Decoder(...))`: tokens in, logits out, generation.
    DecoderWrapper = 0,
    /// `TransformerWrapper(attn_layers=Encoder(...))`: tokens in, logits or embeddings out.
    EncoderWrapper = 1,
    /// A bare `Decoder`: embeddings in, hidden states out, streaming over the KV cache.
    Decoder = 2,
    /// A bare `Encoder`: embeddings in, hidden states out.
    Encoder = 3,
    /// `ContinuousTransformerWrapper(attn_layers=Decoder(...))`: frames in and out, streaming.
    ContinuousDecoder = 4,
    /// `ContinuousTransformerWrapper(attn_layers=Encoder(...))`: frames in, frames or one
    /// pooled vector out.
    ContinuousEncoder = 5,
    /// `XTransformer`: a source encoded once, then generation over it.
    XTransformer = 6,
}

impl Kind {
    /// Its name in JS (`kind`).
    pub const fn name(self) -> &'static str {
        match self {
            Kind::DecoderWrapper => "decoderWrapper",
            Kind::EncoderWrapper => "encoderWrapper",
            Kind::Decoder => "decoder",
            Kind::Encoder => "encoder",
            Kind::ContinuousDecoder => "continuousDecoder",
            Kind::ContinuousEncoder => "continuousEncoder",
            Kind::XTransformer => "xtransformer",
        }
    }
}

/// A model file, loaded as what it is.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Loaded<'w> {
    /// A decoder `TransformerWrapper` ([`crate::engine::Session`]).
    Tokens(TransformerWrapper<'w>),
    /// Inputs to outputs ([`Frames`]).
    Frames(Net<'w>),
    /// An `XTransformer` ([`SourceEncoder`] and a [`crate::engine::Session`] of its decoder).
    Xt(XTransformer<'w>),
}

impl Loaded<'_> {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Loaded::Tokens(_) => Kind::DecoderWrapper,
            Loaded::Frames(n) => n.kind(),
            Loaded::Xt(_) => Kind::XTransformer,
        }
    }
}

/// Parses a model file of any kind of the family (its metadata says which) with that kind's
/// loader.
///
/// # Errors
/// [`EngineError::Load`] for a file the loader refuses.
pub fn load_any(bytes: &[u8]) -> Result<Loaded<'_>, EngineError<'_>> {
    let file = SafeTensors::parse(bytes).map_err(|e| EngineError::Load(LoadError::from(e)))?;
    let kind = model_kind(&file).map_err(EngineError::Load)?;
    Ok(match kind {
        ModelKind::Decoder => match Model::from_safetensors(bytes).map_err(EngineError::Load)? {
            Model::Wrapper(w) => Loaded::Tokens(w),
            Model::Decoder(d) => Loaded::Frames(Net::Decoder(d)),
        },
        ModelKind::Encoder => {
            match EncoderModel::from_safetensors(bytes).map_err(EngineError::Load)? {
                EncoderModel::Wrapper(w) => Loaded::Frames(Net::EncoderWrapper(w)),
                EncoderModel::Encoder(e) => Loaded::Frames(Net::Encoder(e)),
            }
        }
        ModelKind::Continuous => {
            match ContinuousModel::from_safetensors(bytes).map_err(EngineError::Load)? {
                ContinuousModel::Decoder(c) => Loaded::Frames(Net::ContinuousDecoder(c)),
                ContinuousModel::Encoder(c) => Loaded::Frames(Net::ContinuousEncoder(c)),
            }
        }
        ModelKind::XTransformer => {
            Loaded::Xt(XTransformer::from_safetensors(bytes).map_err(EngineError::Load)?)
        }
    })
}

/// A model that maps inputs to outputs: everything of the family but a decoder wrapper and an
/// `XTransformer`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Net<'w> {
    /// Tokens in, logits (n × logits width) or embeddings (n × dim) out, bidirectional.
    EncoderWrapper(TransformerWrapper<'w>),
    /// Embeddings (n × dim) in, hidden states out, bidirectional.
    Encoder(Encoder<'w>),
    /// Embeddings (n × dim) in at the cached positions, hidden states out.
    Decoder(Decoder<'w>),
    /// Frames (n × dim_in) in at the cached positions, n × dim_out out.
    ContinuousDecoder(ContinuousTransformerWrapper<'w>),
    /// Frames (n × dim_in) in, n × dim_out (or one pooled row) out, bidirectional.
    ContinuousEncoder(ContinuousTransformerWrapper<'w>),
}

impl Net<'_> {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Net::EncoderWrapper(_) => Kind::EncoderWrapper,
            Net::Encoder(_) => Kind::Encoder,
            Net::Decoder(_) => Kind::Decoder,
            Net::ContinuousDecoder(_) => Kind::ContinuousDecoder,
            Net::ContinuousEncoder(_) => Kind::ContinuousEncoder,
        }
    }

    /// The attention layers' configuration.
    pub fn layers(&self) -> &DecoderConfig {
        match self {
            Net::EncoderWrapper(w) => &w.config().attn_layers,
            Net::Encoder(e) => e.config(),
            Net::Decoder(d) => d.config(),
            Net::ContinuousDecoder(c) | Net::ContinuousEncoder(c) => &c.config().attn_layers,
        }
    }

    /// Whether it attends bidirectionally over a window ([`Frames::encode`]); otherwise it
    /// streams over the KV cache ([`Frames::forward`]).
    pub fn is_encoder(&self) -> bool {
        matches!(
            self,
            Net::EncoderWrapper(_) | Net::Encoder(_) | Net::ContinuousEncoder(_)
        )
    }

    /// Values per input position: 1 (a token id) for a wrapper, `dim_in` for a continuous
    /// wrapper, `dim` for bare layers.
    pub fn input_width(&self) -> usize {
        match self {
            Net::EncoderWrapper(_) => 1,
            Net::ContinuousDecoder(c) | Net::ContinuousEncoder(c) => c.config().input_width(),
            _ => self.layers().dim,
        }
    }

    /// Values per output row: the logits' width for a wrapper (its embeddings are `dim` wide),
    /// `dim_out` for a continuous wrapper, `dim` for bare layers.
    pub fn output_width(&self) -> usize {
        match self {
            Net::EncoderWrapper(w) => w.config().logits_width(),
            Net::ContinuousDecoder(c) | Net::ContinuousEncoder(c) => c.config().output_width(),
            _ => self.layers().dim,
        }
    }

    /// The KV cache element type it runs with `kv` asked for: `kv` for a streaming decoder, f32
    /// for an encoder. An encoder's cache holds one window's keys and values, emptied by the next
    /// window (scratch rather than state, small and short-lived), so f16 or bf16 would save little
    /// memory; f32 only means one copy of the encoders' layer code in the module instead of three
    /// (one per element type).
    pub fn cache_kind(&self, kv: KvKind) -> KvKind {
        if self.is_encoder() {
            KvKind::F32
        } else {
            kv
        }
    }

    /// Whether the output is one pooled row (`average_pool_embed`).
    pub fn pooled(&self) -> bool {
        matches!(self, Net::ContinuousEncoder(c) if c.config().average_pool_embed)
    }

    /// Cache positions a window of `n` inputs takes (a wrapper's memory tokens come first).
    pub fn positions(&self, n: usize) -> usize {
        match self {
            Net::EncoderWrapper(w) => n.saturating_add(w.config().num_memory_tokens),
            _ => n,
        }
    }

    /// The last position an absolute position table has room for, if there is one.
    fn max_seq_len(&self) -> Option<usize> {
        match self {
            Net::EncoderWrapper(w) if w.config().has_abs_pos_emb() => Some(w.config().max_seq_len),
            Net::ContinuousDecoder(c) | Net::ContinuousEncoder(c)
                if c.config().has_abs_pos_emb() =>
            {
                Some(c.config().max_seq_len)
            }
            _ => None,
        }
    }
}

/// Options of a [`Frames`] (and of an `XTransformer`'s [`SourceEncoder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameOptions {
    /// Positions: the longest window of an encoder, the KV cache of a streaming decoder.
    pub capacity: usize,
    /// Positions a streaming decoder runs at once (an encoder runs its window in one chunk).
    pub chunk: usize,
    /// KV cache element type of a streaming decoder; an encoder's cache is f32 whatever this
    /// says ([`Net::cache_kind`]).
    pub kv: KvKind,
    /// Context rows of a cross-attending model.
    pub max_context: usize,
}

/// Bytes of every buffer of a [`Frames`], as the arena lays them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePlan {
    /// The self-attention KV cache (the window's keys and values for an encoder, f32).
    pub kv_cache: usize,
    /// The context's keys and values (after the KV cache, same type).
    pub context_cache: usize,
    /// The context (`max_context · dim_context` f32).
    pub context: usize,
    /// Its padding mask (`max_context` bools).
    pub context_mask: usize,
    /// The scratch arena (the whole window for an encoder, `chunk` positions otherwise).
    pub scratch: usize,
    /// Inputs: `capacity` token ids (u32) or rows of `input_width` f32.
    pub input: usize,
    /// Outputs: `capacity` rows (one if pooled) of the widest output, f32.
    pub output: usize,
    /// The padding mask of a window (`capacity` bools).
    pub mask: usize,
}

impl FramePlan {
    /// The plan of `net` with `o`.
    pub fn new(net: &Net<'_>, o: &FrameOptions) -> Self {
        let d = net.layers();
        let rows = if d.cross_attend { o.max_context } else { 0 };
        let positions = net.positions(o.capacity);
        let chunk = if net.is_encoder() { positions } else { o.chunk };
        let width = match net {
            Net::EncoderWrapper(w) => w.config().logits_width().max(d.dim),
            _ => net.output_width(),
        };
        let out_rows = if net.pooled() { 1 } else { o.capacity };
        let kv = net.cache_kind(o.kv).size();
        Self {
            kv_cache: KvCache::<f32>::elements(d, positions).saturating_mul(kv),
            context_cache: KvCache::<f32>::context_elements(d, rows).saturating_mul(kv),
            context: rows.saturating_mul(d.dim_context()).saturating_mul(4),
            context_mask: rows,
            scratch: Scratch::bytes(d, chunk),
            input: o
                .capacity
                .saturating_mul(net.input_width())
                .saturating_mul(4),
            output: out_rows.saturating_mul(width).saturating_mul(4),
            mask: o.capacity,
        }
    }
}

/// The KV cache over one of the three element types.
#[derive(Debug)]
pub enum Cache<'b> {
    /// f32.
    F32(KvCache<'b, f32>),
    /// f16.
    F16(KvCache<'b, picoformer::f16>),
    /// bf16.
    Bf16(KvCache<'b, picoformer::bf16>),
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

/// The typed KV cache buffer a [`Cache`] is made from.
#[derive(Debug)]
pub enum CacheBuf<'b> {
    /// f32 elements.
    F32(&'b mut [f32]),
    /// f16 elements.
    F16(&'b mut [picoformer::f16]),
    /// bf16 elements.
    Bf16(&'b mut [picoformer::bf16]),
}

impl<'b> Cache<'b> {
    /// A cache for `capacity` positions and `rows` context rows of `d` in `buf` (the positions'
    /// elements first).
    ///
    /// # Errors
    /// As [`KvCache::with_context`].
    pub fn new(
        d: &DecoderConfig,
        capacity: usize,
        rows: usize,
        buf: CacheBuf<'b>,
    ) -> Result<Self, Error> {
        fn one<'b, T: picoformer::Element>(
            d: &DecoderConfig,
            capacity: usize,
            rows: usize,
            b: &'b mut [T],
        ) -> Result<KvCache<'b, T>, Error> {
            let at = KvCache::<f32>::elements(d, capacity).min(b.len());
            let (kv, ctx) = b.split_at_mut(at);
            KvCache::with_context(d, capacity, kv, rows, ctx)
        }
        Ok(match buf {
            CacheBuf::F32(b) => Cache::F32(one(d, capacity, rows, b)?),
            CacheBuf::F16(b) => Cache::F16(one(d, capacity, rows, b)?),
            CacheBuf::Bf16(b) => Cache::Bf16(one(d, capacity, rows, b)?),
        })
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        with_cache!(self, c => c.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The buffers of a [`Frames`], sized by [`FramePlan`].
#[derive(Debug)]
pub struct FrameBuffers<'b> {
    /// KV cache, then the context cache.
    pub kv: CacheBuf<'b>,
    /// The context.
    pub context: &'b mut [f32],
    /// The context's padding mask.
    pub context_mask: &'b mut [bool],
    /// Scratch arena.
    pub scratch: &'b mut [f32],
    /// Outputs.
    pub output: &'b mut [f32],
    /// A window's padding mask.
    pub mask: &'b mut [bool],
}

/// What [`Frames::encode`] writes for an encoder wrapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The logits (classes) of every position.
    Logits,
    /// The embeddings (hidden states after the final norm) of every position.
    Embeddings,
}

/// The input of a call: token ids (an encoder wrapper) or rows of f32.
#[derive(Clone, Copy, Debug)]
pub enum Input<'i> {
    /// Token ids.
    Tokens(&'i [u32]),
    /// Rows of [`Net::input_width`] values, row-major.
    Values(&'i [f32]),
}

/// A model that maps inputs to outputs, over buffers sized by [`FramePlan`].
#[derive(Debug)]
pub struct Frames<'w, 'b> {
    net: Net<'w>,
    cache: Cache<'b>,
    scratch: Scratch<'b>,
    context: &'b mut [f32],
    context_rows: usize,
    context_mask: &'b mut [bool],
    masked: bool,
    output: &'b mut [f32],
    mask: &'b mut [bool],
    capacity: usize,
}

impl<'w, 'b> Frames<'w, 'b> {
    /// `net` over `buf` (sized by [`FramePlan::new`] with the same options; an encoder's cache
    /// buffer is f32, [`Net::cache_kind`]).
    ///
    /// # Errors
    /// [`EngineError::BadOption`] for a zero capacity or chunk or an encoder's cache buffer of
    /// f16 or bf16, [`EngineError::NoContextRoom`]
    /// for a cross-attending model without `max_context`, [`EngineError::Model`] with a buffer
    /// that is too small.
    pub fn new(
        net: Net<'w>,
        o: &FrameOptions,
        buf: FrameBuffers<'b>,
    ) -> Result<Self, EngineError<'w>> {
        if o.capacity == 0 {
            return Err(EngineError::BadOption("capacity"));
        }
        if o.chunk == 0 {
            return Err(EngineError::BadOption("chunk"));
        }
        let plan = FramePlan::new(&net, o);
        let d = *net.layers();
        let rows = if d.cross_attend { o.max_context } else { 0 };
        if d.cross_attend && rows == 0 {
            return Err(EngineError::NoContextRoom);
        }
        let positions = net.positions(o.capacity);
        let chunk = if net.is_encoder() { positions } else { o.chunk };
        if net.is_encoder() && !matches!(buf.kv, CacheBuf::F32(_)) {
            return Err(EngineError::BadOption("kv"));
        }
        let cache = Cache::new(&d, positions, rows, buf.kv)?;
        let scratch = Scratch::new(&d, chunk, buf.scratch)?;
        let too_small = |buffer, needed: usize, available: usize| {
            EngineError::Model(Error::BufferTooSmall {
                buffer,
                needed,
                available,
            })
        };
        use picoformer::Buffer;
        let context_len = plan.context / 4;
        if buf.context.len() < context_len || buf.context_mask.len() < rows {
            return Err(too_small(Buffer::Context, context_len, buf.context.len()));
        }
        if buf.output.len() < plan.output / 4 || buf.mask.len() < o.capacity {
            return Err(too_small(Buffer::Output, plan.output / 4, buf.output.len()));
        }
        Ok(Self {
            net,
            cache,
            scratch,
            context: &mut buf.context[..context_len],
            context_rows: 0,
            context_mask: &mut buf.context_mask[..rows],
            masked: false,
            output: &mut buf.output[..plan.output / 4],
            mask: &mut buf.mask[..o.capacity],
            capacity: o.capacity,
        })
    }

    /// The model.
    pub fn net(&self) -> &Net<'w> {
        &self.net
    }

    /// Positions cached: what a streaming decoder has run; an encoder's last window.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The context buffer (`max_context · dim_context` f32), written by the caller before
    /// [`Self::set_context`].
    pub fn context_buffer(&mut self) -> &mut [f32] {
        self.context
    }

    /// Makes the first `rows` rows of the context buffer the context, with `mask` (a byte per
    /// row, 0 for padding) as its padding mask, and empties the cache.
    ///
    /// # Errors
    /// As [`crate::engine::Session::set_context`]; nothing changes then.
    pub fn set_context(&mut self, rows: usize, mask: Option<&[u8]>) -> Result<(), EngineError<'w>> {
        let d = self.net.layers();
        if !d.cross_attend {
            return Err(EngineError::NotCrossAttending);
        }
        let capacity = self.context_mask.len();
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

    /// Checks an input of `n` positions for the model, starting at cache position `pos0`.
    fn check(&self, input: Input<'_>, pos0: usize) -> Result<usize, EngineError<'w>> {
        let n = match (input, &self.net) {
            (Input::Tokens(t), Net::EncoderWrapper(w)) => {
                let v = w.config().num_tokens;
                if let Some(index) = t.iter().position(|&x| x as usize >= v) {
                    return Err(Error::TokenOutOfRange {
                        token: t[index],
                        index,
                        num_tokens: v,
                    }
                    .into());
                }
                t.len()
            }
            (Input::Values(x), net) if !matches!(net, Net::EncoderWrapper(_)) => {
                let w = net.input_width();
                if x.len() % w != 0 {
                    return Err(Error::BufferLength {
                        buffer: picoformer::Buffer::Input,
                        expected: w,
                        found: x.len(),
                    }
                    .into());
                }
                x.len() / w
            }
            _ => return Err(EngineError::WrongKind(self.net.kind())),
        };
        if n == 0 {
            return Err(Error::EmptyInput.into());
        }
        let room = self.capacity.saturating_sub(pos0);
        if n > room {
            return Err(Error::CacheFull {
                len: pos0,
                requested: n,
                capacity: self.capacity,
            }
            .into());
        }
        if let Some(max) = self.net.max_seq_len() {
            if pos0 + n > max {
                return Err(Error::PositionOutOfRange {
                    position: pos0 + n - 1,
                    max_seq_len: max,
                }
                .into());
            }
        }
        if self.net.layers().cross_attend && self.context_rows == 0 {
            return Err(Error::ContextRequired.into());
        }
        Ok(n)
    }

    /// An encoder's window: `input` bidirectionally, with `mask` (a byte per position, 0 for
    /// padding) as its padding mask; returns the outputs (n rows, or one if the model pools, of
    /// [`Net::output_width`] values; of `dim` with [`Emit::Embeddings`]).
    ///
    /// # Errors
    /// [`EngineError::WrongKind`] for a streaming decoder or the wrong input, the library's
    /// errors ([`Error::EmptyInput`], [`Error::TokenOutOfRange`], [`Error::CacheFull`] beyond
    /// the capacity, [`Error::PositionOutOfRange`], [`Error::ContextRequired`],
    /// [`Error::BufferLength`] for a mask of the wrong length); nothing changes then.
    pub fn encode(
        &mut self,
        input: Input<'_>,
        mask: Option<&[u8]>,
        emit: Emit,
    ) -> Result<&[f32], EngineError<'w>> {
        if !self.net.is_encoder()
            || (emit == Emit::Embeddings && self.net.kind() != Kind::EncoderWrapper)
        {
            return Err(EngineError::WrongKind(self.net.kind()));
        }
        let n = self.check(input, 0)?;
        let mut masks = context_masks(self.context_mask, self.context_rows, self.masked);
        if let Some(m) = mask {
            copy_mask(m, self.mask, n)?;
            masks.mask = Some(&self.mask[..n]);
        }
        let ctx = context(self.net.layers(), self.context, self.context_rows);
        let width = match (&self.net, emit) {
            (_, Emit::Embeddings) => self.net.layers().dim,
            _ => self.net.output_width(),
        };
        let rows = if self.net.pooled() { 1 } else { n };
        let out = &mut self.output[..rows * width];
        let s = &mut self.scratch;
        // An encoder's cache is f32 (`Frames::new` refuses another): one instantiation of the
        // encoders' code.
        let Cache::F32(c) = &mut self.cache else {
            return Err(EngineError::BadOption("kv"));
        };
        match (&self.net, input) {
            (Net::EncoderWrapper(w), Input::Tokens(t)) => match emit {
                Emit::Logits => w.encode(c, s, t, ctx, masks, out),
                Emit::Embeddings => w.encode_embeddings(c, s, t, ctx, masks, out),
            }?,
            (Net::Encoder(e), Input::Values(x)) => e.forward(c, s, x, ctx, masks, out)?,
            (Net::ContinuousEncoder(w), Input::Values(x)) => w.encode(c, s, x, ctx, masks, out)?,
            _ => return Err(EngineError::WrongKind(self.net.kind())),
        }
        Ok(&self.output[..rows * width])
    }

    /// A streaming decoder: `input` at positions `len()..`, after what is cached; returns the
    /// n rows of outputs.
    ///
    /// # Errors
    /// As [`Self::encode`], for an encoder; nothing changes then.
    pub fn forward(&mut self, input: Input<'_>) -> Result<&[f32], EngineError<'w>> {
        if self.net.is_encoder() {
            return Err(EngineError::WrongKind(self.net.kind()));
        }
        let n = self.check(input, self.cache.len())?;
        let masks = context_masks(self.context_mask, self.context_rows, self.masked);
        let ctx = context(self.net.layers(), self.context, self.context_rows);
        let width = self.net.output_width();
        let out = &mut self.output[..n * width];
        let s = &mut self.scratch;
        match (&self.net, input) {
            (Net::Decoder(d), Input::Values(x)) => {
                with_cache!(&mut self.cache, c => d.forward_masked(c, s, x, ctx, masks, out))?
            }
            (Net::ContinuousDecoder(w), Input::Values(x)) => {
                with_cache!(&mut self.cache, c => w.forward(c, s, x, ctx, masks, out))?
            }
            _ => return Err(EngineError::WrongKind(self.net.kind())),
        }
        Ok(&self.output[..n * width])
    }

    /// The output buffer (the last call's outputs at its start).
    pub fn output(&self) -> &[f32] {
        self.output
    }

    /// Forgets everything cached (a context set stays set).
    pub fn reset(&mut self) {
        with_cache!(&mut self.cache, c => c.reset());
    }

    /// Rewinds a streaming decoder to `len` positions.
    ///
    /// # Errors
    /// [`Error::TruncateBeyondLength`]; nothing changes.
    pub fn truncate(&mut self, len: usize) -> Result<(), Error> {
        with_cache!(&mut self.cache, c => c.truncate(len))
    }
}

/// An `XTransformer`'s encoder and its buffers: [`Self::encode`] writes the source's embeddings
/// into the context buffer of its decoder's [`crate::engine::Session`] and makes them the
/// context, with the source's padding mask as the context mask, as `XTransformer.generate`
/// hands them to its decoder (`xt:4759-4761`).
#[derive(Debug)]
pub struct SourceEncoder<'w, 'b> {
    encoder: TransformerWrapper<'w>,
    /// f32, as every encoder's ([`Net::cache_kind`]).
    cache: KvCache<'b, f32>,
    scratch: Scratch<'b>,
    mask: &'b mut [bool],
    max_source: usize,
}

/// Bytes of a [`SourceEncoder`]'s buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourcePlan {
    /// The encoder's KV cache (the source window and the memory tokens), f32.
    pub kv_cache: usize,
    /// Its scratch arena (the whole window in one chunk).
    pub scratch: usize,
    /// The source's padding mask (`max_source` bools).
    pub mask: usize,
}

impl SourcePlan {
    /// For sources of up to `max_source` tokens (the cache is f32, as every encoder's:
    /// [`Net::cache_kind`]).
    pub fn new(xt: &XTransformer<'_>, max_source: usize) -> Self {
        let e = xt.encoder().config();
        let positions = max_source.saturating_add(e.num_memory_tokens);
        Self {
            kv_cache: KvCache::<f32>::elements(&e.attn_layers, positions).saturating_mul(4),
            scratch: Scratch::bytes(&e.attn_layers, positions),
            mask: max_source,
        }
    }
}

impl<'w, 'b> SourceEncoder<'w, 'b> {
    /// The encoder of `encoder` (an `XTransformer`'s) for sources of up to `max_source` tokens.
    ///
    /// # Errors
    /// [`EngineError::NoContextRoom`] for `max_source` 0, [`EngineError::Model`] with a buffer
    /// that is too small.
    pub fn new(
        encoder: TransformerWrapper<'w>,
        max_source: usize,
        kv: &'b mut [f32],
        scratch: &'b mut [f32],
        mask: &'b mut [bool],
    ) -> Result<Self, EngineError<'w>> {
        if max_source == 0 {
            return Err(EngineError::NoContextRoom);
        }
        let e = *encoder.config();
        let positions = max_source.saturating_add(e.num_memory_tokens);
        let cache = KvCache::new(&e.attn_layers, positions, kv)?;
        let scratch = Scratch::new(&e.attn_layers, positions, scratch)?;
        if mask.len() < max_source {
            return Err(EngineError::Model(Error::BufferTooSmall {
                buffer: picoformer::Buffer::Mask,
                needed: max_source,
                available: mask.len(),
            }));
        }
        Ok(Self {
            encoder,
            cache,
            scratch,
            mask: &mut mask[..max_source],
            max_source,
        })
    }

    /// The encoder.
    pub fn encoder(&self) -> &TransformerWrapper<'w> {
        &self.encoder
    }

    /// Encodes `src` (with `mask`, a byte per token, 0 for padding) into `session`'s context
    /// buffer and makes it the context (its padding mask the source's): the decoder's cache is
    /// reset, and the next call projects the new context.
    ///
    /// # Errors
    /// [`Error::EmptyInput`], [`Error::ContextTooLong`] for a source longer than `max_source`,
    /// [`Error::TokenOutOfRange`], [`Error::PositionOutOfRange`] past the encoder's position
    /// table, [`Error::BufferLength`] for a mask of the wrong length; nothing changes then
    /// (the decoder's cache, context and generation included).
    pub fn encode(
        &mut self,
        session: &mut crate::engine::Session<'w, 'b>,
        src: &[u32],
        mask: Option<&[u8]>,
    ) -> Result<(), EngineError<'w>> {
        let e = *self.encoder.config();
        let n = src.len();
        if n == 0 {
            return Err(Error::EmptyInput.into());
        }
        let capacity = self.max_source.min(session.max_context());
        if n > capacity {
            return Err(Error::ContextTooLong { rows: n, capacity }.into());
        }
        if let Some(index) = src.iter().position(|&t| t as usize >= e.num_tokens) {
            return Err(Error::TokenOutOfRange {
                token: src[index],
                index,
                num_tokens: e.num_tokens,
            }
            .into());
        }
        if e.has_abs_pos_emb() && n > e.max_seq_len {
            return Err(Error::PositionOutOfRange {
                position: n - 1,
                max_seq_len: e.max_seq_len,
            }
            .into());
        }
        let src_mask = match mask {
            Some(m) => {
                copy_mask(m, self.mask, n)?;
                Some(&self.mask[..n])
            }
            None => None,
        };
        let dim = e.attn_layers.dim;
        let out = session
            .context_buffer()
            .get_mut(..n * dim)
            .ok_or(Error::ContextTooLong { rows: n, capacity })?;
        let masks = Masks {
            mask: src_mask,
            context_mask: None,
        };
        let (w, c, s) = (&self.encoder, &mut self.cache, &mut self.scratch);
        w.encode_embeddings(c, s, src, None, masks, out)?;
        session.set_context(n, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Buffers, Generate, KvBuf, Options, Sampling, Session};
    use core::ops::ControlFlow;
    use picoformer::generate::{CrossContext, GenerateConfig, Generator, Overflow};
    use picoformer::sampling::{Candidate, Sampler};
    use std::vec;
    use std::vec::Vec;

    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        words
    }

    /// The package's XTransformer path (the source encoded into the session's context with its
    /// mask, then the session's generation) gives the tokens of the library's
    /// `Generator::run_with` with a `CrossContext` of the same rows and mask: sampled, with a
    /// repetition penalty and a sliding window that keeps the context.
    #[test]
    fn xtransformer_generation_equals_the_library_run_with() {
        let file = include_bytes!("../../tests/fixtures/xt_bytes.model.safetensors");
        let words = aligned(file);
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..file.len()];
        let Loaded::Xt(xt) = load_any(bytes).unwrap() else {
            panic!("an XTransformer")
        };
        let src = [72u32, 101, 108, 108, 111, 0];
        let mask = [1u8, 1, 1, 1, 1, 0];
        let bools = mask.map(|m| m != 0);
        let (ecfg, dcfg) = (*xt.encoder().config(), *xt.decoder().config());
        let (n, dim, capacity) = (src.len(), ecfg.attn_layers.dim, 6);
        let sampling = Sampling {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.0,
            repetition_penalty: 1.3,
            repetition_window: 4,
        };
        for (keep, stop) in [(3, None), (0, None), (2, Some(7))] {
            // The library: encode, then run_with.
            let d = &dcfg.attn_layers;
            let mut ekv = vec![0f32; KvCache::<f32>::elements(&ecfg.attn_layers, n)];
            let mut esb = vec![0f32; Scratch::elements(&ecfg.attn_layers, n)];
            let mut ecache = KvCache::new(&ecfg.attn_layers, n, &mut ekv).unwrap();
            let mut escratch = Scratch::new(&ecfg.attn_layers, n, &mut esb).unwrap();
            let mut memory = vec![0f32; n * dim];
            xt.encode(&mut ecache, &mut escratch, &src, Some(&bools), &mut memory)
                .unwrap();
            let mut dkv = vec![0f32; KvCache::<f32>::elements(d, capacity)];
            let mut dkc = vec![0f32; KvCache::<f32>::context_elements(d, n)];
            let mut cache = KvCache::with_context(d, capacity, &mut dkv, n, &mut dkc).unwrap();
            let mut dsb = vec![0f32; Scratch::elements(d, 4)];
            let mut scratch = Scratch::new(d, 4, &mut dsb).unwrap();
            let mut config = GenerateConfig::new(30);
            if keep > 0 {
                config = config.overflow(Overflow::Slide { keep });
            }
            if let Some(t) = stop {
                config = config.end_token(t);
            }
            let sampler = Sampler::new(sampling.config().unwrap(), 11).unwrap();
            let (mut logits, mut work, mut history) = (
                vec![0f32; 256],
                vec![Candidate::EMPTY; 256],
                vec![0u32; capacity],
            );
            let mut generator =
                Generator::new(sampler, config, &mut logits, &mut work, &mut history).unwrap();
            let context = CrossContext {
                rows: Some(&memory),
                mask: Some(&bools),
            };
            let mut want = Vec::new();
            generator
                .run_with(xt.decoder(), &mut cache, &mut scratch, &[1], context, |t| {
                    want.push(t);
                    ControlFlow::Continue(())
                })
                .unwrap();

            // The package: a session of the decoder and the source encoder.
            let o = Options {
                capacity,
                chunk: 4,
                kv: KvKind::F32,
                full_rows: 0,
                max_context: n,
            };
            let mut kv = vec![
                0f32;
                KvCache::<f32>::elements(d, capacity)
                    + KvCache::<f32>::context_elements(d, n)
            ];
            let mut ctx = vec![0f32; n * dim];
            let mut cmask = vec![false; n];
            let mut sb = vec![0f32; Scratch::elements(d, 4)];
            let (mut logits, mut work, mut history) = (
                vec![0f32; 256],
                vec![Candidate::EMPTY; 256],
                vec![0u32; capacity],
            );
            let buf = Buffers {
                kv: KvBuf::F32(&mut kv),
                context: &mut ctx,
                context_mask: &mut cmask,
                scratch: &mut sb,
                logits: &mut logits,
                full_logits: &mut [],
                work: &mut work,
                history: &mut history,
            };
            let mut session = Session::new(xt.decoder().clone(), &o, buf).unwrap();
            let p = SourcePlan::new(&xt, n);
            let mut ekv2 = vec![0f32; p.kv_cache / 4];
            let mut esb2 = vec![0f32; p.scratch / 4];
            let mut emask = vec![false; p.mask];
            let mut source =
                SourceEncoder::new(xt.encoder().clone(), n, &mut ekv2, &mut esb2, &mut emask)
                    .unwrap();
            source.encode(&mut session, &src, Some(&mask)).unwrap();
            let mut g = Generate::new(sampling, 30);
            g.keep = keep;
            g.seed = Some(11);
            if let Some(t) = stop {
                g.stop[0] = t;
                g.n_stop = 1;
            }
            let mut got = Vec::new();
            session.generate(&[1], &g, |t| got.push(t)).unwrap();
            assert_eq!(got, want, "keep {keep}, stop {stop:?}");
            assert!(got.len() > 3);
        }
    }
}
