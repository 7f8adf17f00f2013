//! Loading an x-transformers model from one safetensors file, zero-copy and without `alloc`.
//!
//! The file holds `model.state_dict()` of a `Decoder` or `TransformerWrapper` under its own keys
//! (f32, f16 or bf16), and its `__metadata__` holds the constructor arguments as JSON under
//! `x_transformers`: `{"decoder": {<Decoder kwargs>}, "wrapper": {<TransformerWrapper kwargs
//! other than attn_layers>} | null}` (`tools/export.py` writes such files). Weights are views
//! straight into the file's bytes; the +1 norm-gain offset is applied in the computation. The
//! other kinds of file ([`crate::options::ModelKind`]) have their own loaders:
//! [`crate::EncoderModel`], [`crate::ContinuousModel`], [`crate::XTransformer`].

use core::cell::Cell;
use core::fmt;

use crate::config::{DecoderConfig, WrapperConfig};
use crate::decoder::Decoder;
use crate::error::{Error, OwnedStr};
use crate::json::{JsonError, JsonErrorKind};
#[cfg(feature = "parallel")]
use crate::parallel::Parallel;
use crate::q8_0::{BlockQ8_0, Q8_0_BLOCK, Q8_0_BYTES};
use crate::safetensors::{Dtype, FormatErrorOf, SafeTensors, MAX_TENSORS};
use crate::tensor::{Tensor, TensorSource, TensorView};

use crate::wrapper::TransformerWrapper;

use crate::options::{read_config, METADATA_KEY};

/// Why a model file was refused: names and values borrowed from the file as written.
///
/// This is [`LoadErrorOf`] with `T = &'a str`. [`LoadError::into_owned`] copies them into an
/// [`OwnedLoadError`], which is `'static` and implements [`core::error::Error`]; with the `std`
/// feature, `?` does that by itself where the function returns a `Box<dyn std::error::Error>`
/// (or one that is `Send + Sync`), so the natural host program compiles:
///
/// ```
/// use picoformer::Model;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let bytes = std::fs::read("models/demo.safetensors")?;
///     let model: Model = Model::from_safetensors(&bytes)?;
///     println!("{:?}", model.config().decoder);
///     Ok(())
/// }
/// ```
///
/// (`fs::read`'s buffer is as aligned as the allocator makes it, 16 bytes on the usual hosts;
/// a tensor that is not aligned for its element type is refused with
/// [`FormatErrorOf::Misaligned`], never copied. With `std`, `session::Session::open` reads into
/// aligned memory.)
///
/// A borrowed error is not itself an `Error`: the standard library's conversion of any
/// `Error` into a `Box<dyn Error>` needs it `'static`, and would take the place of this one.
pub type LoadError<'a> = LoadErrorOf<&'a str>;

/// A [`LoadError`] with its names and values copied ([`OwnedStr`], at most
/// [`OwnedStr::CAPACITY`] bytes each, a longer one truncated with a marker), in place and
/// without allocation: `'static`, an [`core::error::Error`], for `?` into `Box<dyn Error>`, for
/// storing, or for another thread.
pub type OwnedLoadError = LoadErrorOf<OwnedStr>;

/// Why a model file was refused, with the names and values from the file as `T`:
/// [`LoadError`] (borrowed) or [`OwnedLoadError`] (copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadErrorOf<T> {
    /// The safetensors container is malformed, or a tensor cannot be viewed in place
    /// (e.g. [`FormatErrorOf::Misaligned`]).
    Format(FormatErrorOf<T>),
    /// A required metadata entry or argument is absent (`x_transformers`, `decoder`, `dim`, ...).
    MissingMetadata(&'static str),
    /// The `x_transformers` metadata is not valid JSON of the expected shape.
    Metadata(JsonError),
    /// An x-transformers argument with a value picoformer does not compute (see
    /// [`crate::options`]): not its default, and either not implemented, or a value of a
    /// supported argument outside what is implemented.
    UnsupportedOption {
        /// The argument, as written in the file.
        option: T,
        /// Its value, as written in the file (JSON text).
        value: T,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A supported argument with a value of the wrong type or out of range.
    InvalidOption {
        /// The argument.
        option: T,
        /// Its value, as written in the file (JSON text).
        value: T,
        /// What is wrong with its value.
        error: JsonErrorKind,
    },
    /// A tensor of an element type other than F32, F16, BF16 (or U8 `[rows, cols/32, 34]` Q8_0).
    UnsupportedDtype {
        /// The tensor.
        tensor: T,
        /// Its dtype.
        dtype: Dtype,
    },
    /// A tensor the configuration does not use (a key outside the known layout).
    UnexpectedTensor(T),
    /// The configuration or the weights do not fit (invalid configuration, missing weight,
    /// wrong shape).
    Model(Error),
}

impl<T: core::ops::Deref<Target = str> + fmt::Display + fmt::Debug> fmt::Display
    for LoadErrorOf<T>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadErrorOf::Format(e) => write!(f, "malformed safetensors file: {e}"),
            LoadErrorOf::MissingMetadata(what) => write!(f, "model metadata lacks `{what}`"),
            LoadErrorOf::Metadata(e) => write!(
                f,
                "bad `{METADATA_KEY}` metadata JSON at byte {}: {:?}",
                e.offset, e.kind
            ),
            LoadErrorOf::UnsupportedOption {
                option,
                value,
                reason,
            } => {
                write!(f, "unsupported x-transformers option '{option}' = ")?;
                unescaped(f, value)?;
                write!(f, " ({reason})")
            }
            LoadErrorOf::InvalidOption {
                option,
                value,
                error,
            } => {
                write!(f, "invalid value for '{option}' = ")?;
                unescaped(f, value)?;
                write!(f, ": {error:?}")
            }
            LoadErrorOf::UnsupportedDtype { tensor, dtype } => {
                write!(
                    f,
                    "tensor `{tensor}` has dtype {} (supported: F32, F16, BF16)",
                    dtype.name()
                )
            }
            LoadErrorOf::UnexpectedTensor(t) => {
                write!(f, "tensor `{t}` is not part of this configuration")
            }
            LoadErrorOf::Model(e) => write!(f, "{e}"),
        }
    }
}

/// Writes JSON text taken from inside the metadata's string literal with the literal's `\"`,
/// `\\` and `\/` undone (other escapes are shown as written).
fn unescaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
            if !matches!(c, '"' | '\\' | '/') {
                write!(f, "\\")?;
            }
            write!(f, "{c}")?;
        } else if c == '\\' {
            escaped = true;
        } else {
            write!(f, "{c}")?;
        }
    }
    if escaped {
        write!(f, "\\")?;
    }
    Ok(())
}

// Only the owned form is an `Error` (see `LoadError`).
impl core::error::Error for OwnedLoadError {}

impl<'a> LoadError<'a> {
    /// The same error with its names and values copied ([`OwnedStr`]; a longer one keeps its
    /// first [`OwnedStr::CAPACITY`] bytes, ending in `…`): `'static`, an
    /// [`core::error::Error`].
    pub fn into_owned(self) -> OwnedLoadError {
        match self {
            LoadErrorOf::Format(e) => LoadErrorOf::Format(e.into_owned()),
            LoadErrorOf::MissingMetadata(what) => LoadErrorOf::MissingMetadata(what),
            LoadErrorOf::Metadata(e) => LoadErrorOf::Metadata(e),
            LoadErrorOf::UnsupportedOption {
                option,
                value,
                reason,
            } => LoadErrorOf::UnsupportedOption {
                option: OwnedStr::new(option),
                value: OwnedStr::new(value),
                reason,
            },
            LoadErrorOf::InvalidOption {
                option,
                value,
                error,
            } => LoadErrorOf::InvalidOption {
                option: OwnedStr::new(option),
                value: OwnedStr::new(value),
                error,
            },
            LoadErrorOf::UnsupportedDtype { tensor, dtype } => LoadErrorOf::UnsupportedDtype {
                tensor: OwnedStr::new(tensor),
                dtype,
            },
            LoadErrorOf::UnexpectedTensor(t) => LoadErrorOf::UnexpectedTensor(OwnedStr::new(t)),
            LoadErrorOf::Model(e) => LoadErrorOf::Model(e),
        }
    }
}

impl<'a> From<LoadError<'a>> for OwnedLoadError {
    fn from(e: LoadError<'a>) -> Self {
        e.into_owned()
    }
}

#[cfg(feature = "std")]
impl<'a, 'b> From<LoadError<'a>> for std::boxed::Box<dyn core::error::Error + 'b> {
    fn from(e: LoadError<'a>) -> Self {
        std::boxed::Box::new(e.into_owned())
    }
}

#[cfg(feature = "std")]
impl<'a, 'b> From<LoadError<'a>> for std::boxed::Box<dyn core::error::Error + Send + Sync + 'b> {
    fn from(e: LoadError<'a>) -> Self {
        std::boxed::Box::new(e.into_owned())
    }
}

impl<T> From<FormatErrorOf<T>> for LoadErrorOf<T> {
    fn from(e: FormatErrorOf<T>) -> Self {
        LoadErrorOf::Format(e)
    }
}

impl<T> From<JsonError> for LoadErrorOf<T> {
    fn from(e: JsonError) -> Self {
        LoadErrorOf::Metadata(e)
    }
}

impl<T> From<Error> for LoadErrorOf<T> {
    fn from(e: Error) -> Self {
        LoadErrorOf::Model(e)
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

/// The tensors of a parsed file as a [`TensorSource`], remembering which were used and the first
/// tensor that could not be viewed.
pub(crate) struct FileSource<'a> {
    file: SafeTensors<'a>,
    used: [Cell<u64>; MAX_TENSORS / 64],
    pub(crate) error: Cell<Option<LoadError<'a>>>,
}

impl<'a> FileSource<'a> {
    pub(crate) fn new(file: SafeTensors<'a>) -> Self {
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
    pub(crate) fn first_unused(&self) -> Option<&'a str> {
        self.file
            .tensors()
            .enumerate()
            .find(|(i, _)| {
                self.used
                    .get(i / 64)
                    .is_none_or(|bits| bits.get() & (1 << (i % 64)) == 0)
            })
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
        let (cfg, source) = Self::open(bytes)?;
        // Built once, here, and filled in place: the decoder and its weight table are not
        // moved through the loaders' results (each copy costs the model's size on the stack).
        let mut model = Self::empty(&cfg);
        model.load(&source)?;
        Ok(model)
    }

    /// As [`Self::from_safetensors`], building the model in place in `slot` (`None` after an
    /// error): the model is written where the caller keeps it and never copied, where
    /// `from_safetensors` builds it in its own frame and then moves it into the result, so that
    /// loading needs the model's size twice on the stack. For a small stack (a microcontroller's,
    /// with the model on it): the weight table alone is about 400 bytes per block on a 32-bit
    /// target.
    ///
    /// # Errors
    /// As [`Self::from_safetensors`].
    pub fn from_safetensors_in(
        bytes: &'w [u8],
        slot: &mut Option<Self>,
    ) -> Result<(), LoadError<'w>> {
        let (cfg, source) = match Self::open(bytes) {
            Ok(opened) => opened,
            Err(e) => {
                *slot = None;
                return Err(e);
            }
        };
        Self::empty_into(&cfg, slot);
        let loaded = match slot {
            Some(model) => model.load(&source),
            None => Ok(()),
        };
        if loaded.is_err() {
            *slot = None;
        }
        loaded
    }

    /// A model of this configuration without weights: a `static` slot for
    /// [`Self::from_safetensors_in`] that starts as `Some(Model::unloaded(..))` of the kind the
    /// file holds is emptied and filled field by field, so the model is never assembled on the
    /// stack at all (a few KB on a 32-bit target).
    pub const fn unloaded(cfg: ModelConfig) -> Self {
        match cfg.wrapper {
            Some(w) => Model::Wrapper(TransformerWrapper::empty(w)),
            None => Model::Decoder(Decoder::empty(cfg.decoder)),
        }
    }

    /// Empties the model in `slot` for `cfg`: in place, field by field, when it holds one of the
    /// same kind; otherwise [`Self::build_into`]. Not inlined, and neither is that: the reset's
    /// frame is small, and the whole-model temporary of a build is on the stack only when it
    /// is needed.
    #[inline(never)]
    fn empty_into(cfg: &ModelConfig, slot: &mut Option<Self>) {
        match (slot.as_mut(), cfg.wrapper) {
            (Some(Model::Wrapper(w)), Some(wc)) => w.reset(wc),
            (Some(Model::Decoder(d)), None) => d.reset(cfg.decoder),
            _ => Self::build_into(cfg, slot),
        }
    }

    /// Writes [`Self::empty`] into `slot`. Not inlined: the value is assembled in this frame,
    /// which is gone when loading starts, instead of in a temporary of the caller's frame that
    /// would stay on the stack as long as the caller runs (the model's size, a few KB on a
    /// 32-bit target).
    #[inline(never)]
    fn build_into(cfg: &ModelConfig, slot: &mut Option<Self>) {
        *slot = Some(Self::empty(cfg));
    }

    /// Parses the container and reads the configuration.
    fn open(bytes: &'w [u8]) -> Result<(ModelConfig, FileSource<'w>), LoadError<'w>> {
        let file = SafeTensors::parse(bytes)?;
        let cfg = read_config(&file)?;
        Ok((cfg, FileSource::new(file)))
    }

    /// Looks up the weights of [`Self::empty`] in `source`, in place; then checks that every
    /// tensor of the file was used.
    #[inline(never)] // see `Decoder::forward_chunk`: the loader's frame apart from the forward pass's
    fn load(&mut self, source: &FileSource<'w>) -> Result<(), LoadError<'w>> {
        let loaded = match self {
            Model::Wrapper(w) => w.load(source),
            Model::Decoder(d) => d.load(source, ""),
        };
        // A tensor that could not be viewed shows up as "missing": report the real cause.
        if let Some(e) = source.error.get() {
            return Err(e);
        }
        loaded?;
        match source.first_unused() {
            Some(name) => Err(LoadError::UnexpectedTensor(name)),
            None => Ok(()),
        }
    }

    /// A model of this configuration without weights, for [`Self::from_safetensors`] to fill in
    /// place. Not inlined: it returns straight into the caller's slot, whereas inlined, the
    /// empty weight table (whose block array is copied whole, uninitialised as it is) would be
    /// assembled in a temporary of the caller's frame, which stays on the stack while loading.
    #[inline(never)]
    fn empty(cfg: &ModelConfig) -> Self {
        match cfg.wrapper {
            Some(w) => Model::Wrapper(TransformerWrapper::empty(w)),
            None => Model::Decoder(Decoder::empty(cfg.decoder)),
        }
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

    /// This model with a step's products split over `executor`'s parts
    /// ([`Decoder::with_parallel`]): the numbers of one thread, bit for bit.
    #[cfg(feature = "parallel")]
    pub fn with_parallel<'p>(&self, executor: &'p dyn Parallel) -> Model<'p, MAX_DEPTH>
    where
        'w: 'p,
    {
        match self {
            Model::Decoder(d) => Model::Decoder(d.with_parallel(executor)),
            Model::Wrapper(w) => Model::Wrapper(w.with_parallel(executor)),
        }
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
