//! Loading an x-transformers model from one safetensors file, zero-copy and without `alloc`.
//!
//! The file holds `model.state_dict()` of a `Decoder` or `TransformerWrapper` under its own keys
//! (f32, f16 or bf16), and its `__metadata__` holds the constructor arguments as JSON under
//! `x_transformers`: `{"decoder": {<Decoder kwargs>}, "wrapper": {<TransformerWrapper kwargs
//! other than attn_layers>} | null}` (`tools/export.py` writes such files). Weights are views
//! straight into the file's bytes; the +1 norm-gain offset is applied in the computation.

use core::cell::Cell;
use core::fmt;

use crate::config::{DecoderConfig, WrapperConfig};
use crate::decoder::Decoder;
use crate::error::Error;
use crate::json::{JsonError, JsonErrorKind, Parser, ValueKind};
use crate::q8_0::{BlockQ8_0, Q8_0_BLOCK};
use crate::safetensors::{Dtype, FormatError, SafeTensors, MAX_TENSORS};
use crate::tensor::{Tensor, TensorSource, TensorView};

/// Bytes of one Q8_0 block: an f16 scale and 32 int8 values.
pub const Q8_0_BYTES: usize = 34;
use crate::wrapper::TransformerWrapper;

/// The metadata key that holds the constructor arguments.
pub const METADATA_KEY: &str = "x_transformers";

/// Why a model file was refused. Names are borrowed from the file as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError<'a> {
    /// The safetensors container is malformed, or a tensor cannot be viewed in place
    /// (e.g. [`FormatError::Misaligned`]).
    Format(FormatError<'a>),
    /// A required metadata entry or argument is absent (`x_transformers`, `decoder`, `dim`, ...).
    MissingMetadata(&'static str),
    /// The `x_transformers` metadata is not valid JSON of the expected shape.
    Metadata(JsonError),
    /// An x-transformers argument picoformer does not support, with a value that matters.
    UnsupportedOption(&'a str),
    /// A supported argument with a value of the wrong type or out of range.
    InvalidOption {
        /// The argument.
        option: &'a str,
        /// What is wrong with its value.
        error: JsonErrorKind,
    },
    /// A tensor of an element type other than F32, F16, BF16 (or U8 `[rows, cols/32, 34]` Q8_0).
    UnsupportedDtype {
        /// The tensor.
        tensor: &'a str,
        /// Its dtype.
        dtype: Dtype,
    },
    /// A tensor the configuration does not use (a key outside the known layout).
    UnexpectedTensor(&'a str),
    /// The configuration or the weights do not fit (invalid configuration, missing weight,
    /// wrong shape).
    Model(Error),
}

impl fmt::Display for LoadError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Format(e) => write!(f, "malformed safetensors file: {e}"),
            LoadError::MissingMetadata(what) => write!(f, "model metadata lacks `{what}`"),
            LoadError::Metadata(e) => write!(
                f,
                "bad `{METADATA_KEY}` metadata JSON at byte {}: {:?}",
                e.offset, e.kind
            ),
            LoadError::UnsupportedOption(o) => write!(f, "unsupported x-transformers option `{o}`"),
            LoadError::InvalidOption { option, error } => {
                write!(f, "invalid value for `{option}`: {error:?}")
            }
            LoadError::UnsupportedDtype { tensor, dtype } => {
                write!(
                    f,
                    "tensor `{tensor}` has dtype {} (supported: F32, F16, BF16)",
                    dtype.name()
                )
            }
            LoadError::UnexpectedTensor(t) => {
                write!(f, "tensor `{t}` is not part of this configuration")
            }
            LoadError::Model(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LoadError<'_> {}

impl<'a> From<FormatError<'a>> for LoadError<'a> {
    fn from(e: FormatError<'a>) -> Self {
        LoadError::Format(e)
    }
}

impl From<JsonError> for LoadError<'_> {
    fn from(e: JsonError) -> Self {
        LoadError::Metadata(e)
    }
}

impl From<Error> for LoadError<'_> {
    fn from(e: Error) -> Self {
        LoadError::Model(e)
    }
}

/// The configuration read from a model file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig {
    /// The `Decoder` (the wrapper's `attn_layers`).
    pub decoder: DecoderConfig,
    /// The `TransformerWrapper`, if the file holds one.
    pub wrapper: Option<WrapperConfig>,
}

/// Options whose x-transformers default is `True`: `false` would change the maths, so it is
/// refused even though unknown options set to `false`/`null` are otherwise accepted as defaults.
const DEFAULT_TRUE: [&str; 5] = [
    "pre_norm",
    "norm_add_unit_offset",
    "pre_norm_has_final_norm",
    "causal",
    "use_abs_pos_emb",
];

/// Reads and validates the configuration in a model file's metadata.
///
/// # Errors
/// [`LoadError::MissingMetadata`], [`LoadError::Metadata`], [`LoadError::UnsupportedOption`],
/// [`LoadError::InvalidOption`], or [`LoadError::Model`] with the [`crate::ConfigError`].
pub fn read_config<'a>(file: &SafeTensors<'a>) -> Result<ModelConfig, LoadError<'a>> {
    let meta = file
        .metadata(METADATA_KEY)
        .ok_or(LoadError::MissingMetadata(METADATA_KEY))?;
    let mut p = meta.parser();
    p.begin_object()?;
    let mut decoder = None;
    let mut wrapper = None;
    while let Some(key) = p.next_member()? {
        if key.eq_str("decoder") {
            decoder = Some(read_decoder(&mut p)?);
        } else if key.eq_str("wrapper") {
            if p.kind()? == ValueKind::Null {
                p.null()?;
            } else {
                wrapper = Some(read_wrapper(&mut p)?);
            }
        } else {
            return Err(LoadError::UnsupportedOption(key.raw()));
        }
    }
    p.finish()?;
    let decoder = decoder.ok_or(LoadError::MissingMetadata("decoder"))?;
    decoder.validate().map_err(Error::from)?;
    let wrapper = match wrapper {
        Some(w) => {
            let w = w.finish(decoder)?;
            w.validate().map_err(Error::from)?;
            Some(w)
        }
        None => None,
    };
    Ok(ModelConfig { decoder, wrapper })
}

/// Reads one argument's value with a typed reader, naming the argument on error.
fn value<'a, T>(
    p: &mut Parser<'a>,
    option: &'a str,
    read: impl FnOnce(&mut Parser<'a>) -> Result<T, JsonError>,
) -> Result<T, LoadError<'a>> {
    read(p).map_err(|e| match e.kind {
        JsonErrorKind::WrongType { .. }
        | JsonErrorKind::NumberOutOfRange
        | JsonErrorKind::NotAnInteger => LoadError::InvalidOption {
            option,
            error: e.kind,
        },
        _ => LoadError::Metadata(e),
    })
}

/// `null` or a non-negative integer.
fn optional_usize(p: &mut Parser<'_>) -> Result<Option<usize>, JsonError> {
    if p.kind()? == ValueKind::Null {
        p.null()?;
        Ok(None)
    } else {
        p.usize().map(Some)
    }
}

/// An argument picoformer does not know: accepted only with the value `false` or `null` and
/// when that is x-transformers' default (so it cannot change the numbers).
fn unknown<'a>(p: &mut Parser<'a>, raw: &'a str, name: &str) -> Result<(), LoadError<'a>> {
    let harmless = match p.kind()? {
        ValueKind::Null => {
            p.null()?;
            true
        }
        ValueKind::Bool => !p.bool()?,
        _ => false,
    };
    if harmless && !DEFAULT_TRUE.contains(&name) {
        Ok(())
    } else {
        Err(LoadError::UnsupportedOption(raw))
    }
}

/// Decodes a key into `buf`; keys too long for it cannot be supported options.
fn key_text<'b>(key: &crate::json::JsonStr<'_>, buf: &'b mut [u8; 48]) -> &'b str {
    key.decode_into(buf).unwrap_or("")
}

fn read_decoder<'a>(p: &mut Parser<'a>) -> Result<DecoderConfig, LoadError<'a>> {
    p.begin_object()?;
    let mut c = DecoderConfig::new(0, 0);
    let (mut have_dim, mut have_depth) = (false, false);
    let mut buf = [0u8; 48];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        match key_text(&key, &mut buf) {
            "dim" => {
                c.dim = value(p, raw, Parser::usize)?;
                have_dim = true;
            }
            "depth" => {
                c.depth = value(p, raw, Parser::usize)?;
                have_depth = true;
            }
            "heads" => c.heads = value(p, raw, Parser::usize)?,
            "attn_dim_head" => c.attn_dim_head = value(p, raw, Parser::usize)?,
            "attn_kv_heads" => c.attn_kv_heads = value(p, raw, optional_usize)?,
            "attn_one_kv_head" => c.attn_one_kv_head = value(p, raw, Parser::bool)?,
            "cross_attend" => c.cross_attend = value(p, raw, Parser::bool)?,
            "cross_attn_dim_context" => c.cross_attn_dim_context = value(p, raw, optional_usize)?,
            "rotary_pos_emb" => c.rotary_pos_emb = value(p, raw, Parser::bool)?,
            "rotary_emb_dim" => c.rotary_emb_dim = value(p, raw, optional_usize)?,
            "rotary_base_rescale_factor" => {
                c.rotary_base_rescale_factor = value(p, raw, Parser::f64)?
            }
            "rotary_interpolation_factor" => {
                c.rotary_interpolation_factor = value(p, raw, Parser::f64)?
            }
            "use_rmsnorm" => c.use_rmsnorm = value(p, raw, Parser::bool)?,
            "use_simple_rmsnorm" => c.use_simple_rmsnorm = value(p, raw, Parser::bool)?,
            "ff_mult" => c.ff_mult = value(p, raw, Parser::f64)?,
            "ff_glu" => c.ff_glu = value(p, raw, Parser::bool)?,
            "ff_swish" => c.ff_swish = value(p, raw, Parser::bool)?,
            "ff_relu_squared" => c.ff_relu_squared = value(p, raw, Parser::bool)?,
            "ff_no_bias" => c.ff_no_bias = value(p, raw, Parser::bool)?,
            // Kernel choice and dropouts do not change inference.
            "attn_flash" => {
                value(p, raw, Parser::bool)?;
            }
            "attn_dropout" | "ff_dropout" | "layer_dropout" => {
                value(p, raw, Parser::f64)?;
            }
            // A Decoder is causal; `causal=False` would be an Encoder.
            "causal" => {
                if !value(p, raw, Parser::bool)? {
                    return Err(LoadError::UnsupportedOption(raw));
                }
            }
            name => unknown(p, raw, name)?,
        }
    }
    if !have_dim {
        return Err(LoadError::MissingMetadata("dim"));
    }
    if !have_depth {
        return Err(LoadError::MissingMetadata("depth"));
    }
    Ok(c)
}

/// Wrapper arguments as read, checked against the decoder once both are known.
struct WrapperArgs<'a> {
    num_tokens: Option<usize>,
    max_seq_len: Option<usize>,
    use_abs_pos_emb: bool,
    tie_embedding: bool,
    emb_dim: Option<(usize, &'a str)>,
    logits_dim: Option<(usize, &'a str)>,
}

impl<'a> WrapperArgs<'a> {
    fn finish(self, decoder: DecoderConfig) -> Result<WrapperConfig, LoadError<'a>> {
        let num_tokens = self
            .num_tokens
            .ok_or(LoadError::MissingMetadata("num_tokens"))?;
        let max_seq_len = self
            .max_seq_len
            .ok_or(LoadError::MissingMetadata("max_seq_len"))?;
        // A different embedding width adds a projection; different logits a separate head.
        if let Some((d, raw)) = self.emb_dim {
            if d != decoder.dim {
                return Err(LoadError::UnsupportedOption(raw));
            }
        }
        if let Some((l, raw)) = self.logits_dim {
            if l != num_tokens {
                return Err(LoadError::UnsupportedOption(raw));
            }
        }
        Ok(WrapperConfig::new(num_tokens, max_seq_len, decoder)
            .use_abs_pos_emb(self.use_abs_pos_emb)
            .tie_embedding(self.tie_embedding))
    }
}

fn read_wrapper<'a>(p: &mut Parser<'a>) -> Result<WrapperArgs<'a>, LoadError<'a>> {
    p.begin_object()?;
    let mut w = WrapperArgs {
        num_tokens: None,
        max_seq_len: None,
        use_abs_pos_emb: true,
        tie_embedding: false,
        emb_dim: None,
        logits_dim: None,
    };
    let mut buf = [0u8; 48];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        match key_text(&key, &mut buf) {
            "num_tokens" => w.num_tokens = Some(value(p, raw, Parser::usize)?),
            "max_seq_len" => w.max_seq_len = Some(value(p, raw, Parser::usize)?),
            "use_abs_pos_emb" => w.use_abs_pos_emb = value(p, raw, Parser::bool)?,
            "tie_embedding" => w.tie_embedding = value(p, raw, Parser::bool)?,
            "emb_dropout" => {
                value(p, raw, Parser::f64)?;
            }
            "emb_dim" => w.emb_dim = value(p, raw, optional_usize)?.map(|d| (d, raw)),
            "logits_dim" => w.logits_dim = value(p, raw, optional_usize)?.map(|d| (d, raw)),
            name => unknown(p, raw, name)?,
        }
    }
    Ok(w)
}

/// The tensors of a parsed file as a [`TensorSource`], remembering which were used and the first
/// tensor that could not be viewed.
struct FileSource<'a> {
    file: SafeTensors<'a>,
    used: [Cell<u64>; MAX_TENSORS / 64],
    error: Cell<Option<LoadError<'a>>>,
}

impl<'a> FileSource<'a> {
    fn new(file: SafeTensors<'a>) -> Self {
        Self {
            file,
            used: [const { Cell::new(0) }; MAX_TENSORS / 64],
            error: Cell::new(None),
        }
    }

    fn fail(&self, e: LoadError<'a>) -> Option<TensorView<'a>> {
        if self.error.get().is_none() {
            self.error.set(Some(e));
        }
        None
    }

    /// The first tensor in the file no lookup asked for.
    fn first_unused(&self) -> Option<&'a str> {
        self.file
            .tensors()
            .enumerate()
            .find(|(i, _)| self.used[i / 64].get() & (1 << (i % 64)) == 0)
            .map(|(_, t)| t.name())
    }
}

impl<'a> TensorSource<'a> for FileSource<'a> {
    fn tensor(&self, name: &str) -> Option<TensorView<'a>> {
        let (i, t) = self
            .file
            .tensors()
            .enumerate()
            .find(|(_, t)| t.name() == name)?;
        if let Some(bits) = self.used.get(i / 64) {
            bits.set(bits.get() | 1 << (i % 64));
        }
        // Q8_0 matrices (written by `picoformer quantize`) are U8 tensors of shape
        // [rows, cols / 32, 34]: per block of 32 values, an f16 scale and 32 int8 values.
        let s = t.shape();
        if t.dtype() == Dtype::U8 && s.len() == 3 && s[2] == Q8_0_BYTES {
            return match t.as_u8().map(bytemuck::try_cast_slice::<u8, BlockQ8_0>) {
                Ok(Ok(blocks)) => Some(TensorView::new(
                    Tensor::Q8_0(blocks),
                    &[s[0], s[1].saturating_mul(Q8_0_BLOCK)],
                )),
                Ok(Err(_)) => self.fail(LoadError::UnsupportedDtype {
                    tensor: t.name(),
                    dtype: Dtype::U8,
                }),
                Err(e) => self.fail(LoadError::Format(e)),
            };
        }
        let data = match t.dtype() {
            Dtype::F32 => t.as_f32().map(Tensor::F32),
            Dtype::F16 => t.as_f16().map(Tensor::F16),
            Dtype::BF16 => t.as_bf16().map(Tensor::Bf16),
            dtype => {
                return self.fail(LoadError::UnsupportedDtype {
                    tensor: t.name(),
                    dtype,
                })
            }
        };
        match data {
            Ok(data) => Some(TensorView::new(data, s)),
            Err(e) => self.fail(LoadError::Format(e)),
        }
    }
}

/// A model loaded from a file: a raw `Decoder` or a `TransformerWrapper`, with weights borrowed
/// from the file's bytes.
// The variants differ in size by the wrapper's embedding views; a model is built once and there
// is no allocator to box it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Model<'w, const MAX_DEPTH: usize = 16> {
    /// A raw `Decoder`: embeddings in, hidden states out.
    Decoder(Decoder<'w, MAX_DEPTH>),
    /// A `TransformerWrapper`: tokens in, logits out.
    Wrapper(TransformerWrapper<'w, MAX_DEPTH>),
}

impl<'w, const MAX_DEPTH: usize> Model<'w, MAX_DEPTH> {
    /// Parses a model file (e.g. `include_bytes!` in flash, or a memory-mapped file) and
    /// borrows its weights in place. Every malformed file gets a typed error, never a panic.
    ///
    /// # Errors
    /// Any [`LoadError`]: a malformed container, bad or unsupported metadata, a tensor that is
    /// missing, misaligned, of the wrong shape or dtype, or not part of the configuration.
    pub fn from_safetensors(bytes: &'w [u8]) -> Result<Self, LoadError<'w>> {
        let file = SafeTensors::parse(bytes)?;
        let cfg = read_config(&file)?;
        let source = FileSource::new(file);
        let model = match cfg.wrapper {
            Some(w) => TransformerWrapper::from_source(w, &source).map(Model::Wrapper),
            None => Decoder::from_source(cfg.decoder, &source).map(Model::Decoder),
        };
        // A tensor that could not be viewed shows up as "missing": report the real cause.
        if let Some(e) = source.error.get() {
            return Err(e);
        }
        let model = model?;
        if let Some(name) = source.first_unused() {
            return Err(LoadError::UnexpectedTensor(name));
        }
        Ok(model)
    }

    /// The decoder (the wrapper's `attn_layers`).
    pub fn decoder(&self) -> &Decoder<'w, MAX_DEPTH> {
        match self {
            Model::Decoder(d) => d,
            Model::Wrapper(w) => w.decoder(),
        }
    }

    /// f32 elements of the arena that [`Self::with_prefill_panels`] needs.
    pub const fn prefill_panels_len(&self) -> usize {
        match self {
            Model::Decoder(d) => d.prefill_panels_len(),
            Model::Wrapper(w) => w.prefill_panels_len(),
        }
    }

    /// This model with the decoder's matrices packed for prefill
    /// ([`Decoder::with_prefill_panels`]).
    ///
    /// # Errors
    /// As [`Decoder::with_prefill_panels`].
    pub fn with_prefill_panels<'a>(
        &self,
        arena: &'a mut [f32],
    ) -> Result<Model<'a, MAX_DEPTH>, Error>
    where
        'w: 'a,
    {
        Ok(match self {
            Model::Decoder(d) => Model::Decoder(d.with_prefill_panels(arena)?),
            Model::Wrapper(w) => Model::Wrapper(w.with_prefill_panels(arena)?),
        })
    }

    /// Bytes of the arena that [`Self::with_int8_panels`] needs.
    pub const fn int8_panels_len(&self) -> usize {
        match self {
            Model::Decoder(d) => d.int8_panels_len(),
            Model::Wrapper(w) => w.int8_panels_len(),
        }
    }

    /// This model on the int8 path with the decoder's Q8_0 matrices (and a wrapper's logits)
    /// packed into int8 panels ([`Decoder::with_int8_panels`],
    /// [`TransformerWrapper::with_int8_panels`]).
    ///
    /// # Errors
    /// As [`Decoder::with_int8_panels`] and [`TransformerWrapper::with_int8_panels`].
    pub fn with_int8_panels<'a>(&self, arena: &'a mut [u8]) -> Result<Model<'a, MAX_DEPTH>, Error>
    where
        'w: 'a,
    {
        Ok(match self {
            Model::Decoder(d) => Model::Decoder(d.with_int8_panels(arena)?),
            Model::Wrapper(w) => Model::Wrapper(w.with_int8_panels(arena)?),
        })
    }

    /// This model with every product by Q8_0 weights on the int8 path
    /// ([`Decoder::with_int8_activations`]).
    pub fn with_int8_activations(self, on: bool) -> Self {
        match self {
            Model::Decoder(d) => Model::Decoder(d.with_int8_activations(on)),
            Model::Wrapper(w) => Model::Wrapper(w.with_int8_activations(on)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> ModelConfig {
        match self {
            Model::Decoder(d) => ModelConfig {
                decoder: *d.config(),
                wrapper: None,
            },
            Model::Wrapper(w) => ModelConfig {
                decoder: w.config().attn_layers,
                wrapper: Some(*w.config()),
            },
        }
    }
}
