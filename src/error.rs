//! Typed errors. Every error is a small `Copy` value carrying the numbers a person needs
//! (needed vs available sizes, capacity, the offending token), printable over a serial line.

use core::fmt;

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The named size is zero.
    Zero(&'static str),
    /// The named factor must be a finite positive number (>= 1 for `rotary_interpolation_factor`).
    NotPositive(&'static str),
    /// The named factor must be a finite number.
    NotFinite(&'static str),
    /// `heads` is not a multiple of the key/value heads.
    KvHeads {
        /// `heads`.
        heads: usize,
        /// Resolved key/value heads.
        kv_heads: usize,
    },
    /// With one head there is no `to_out`, so `attn_dim_head` must equal `dim`.
    SingleHeadWidth {
        /// `dim`.
        dim: usize,
        /// `attn_dim_head`.
        dim_head: usize,
    },
    /// `rotary_emb_dim` must be even, at least 2 (more than 2 with a base rescale) and at most `attn_dim_head`.
    RotaryDim {
        /// Resolved rotary width.
        rotary_emb_dim: usize,
        /// `attn_dim_head`.
        dim_head: usize,
    },
    /// Two options that cannot be combined.
    Conflict(&'static str, &'static str),
    /// Sizes too large for this library (over 2^30 elements in one matrix).
    TooLarge,
    /// The named argument of the sublayer plan (`custom_layers`, `par_ratio`, `sandwich_coef`,
    /// `layers_execute_order`) cannot be run, for the reason given (`crate::layers`).
    Layers(&'static str, &'static str),
}

/// Which caller-provided buffer an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Buffer {
    /// The scratch arena of a forward step ([`crate::Scratch`]).
    Scratch,
    /// The self-attention key/value cache.
    KvCache,
    /// The cross-attention context cache.
    ContextCache,
    /// The input `x` (positions × dim).
    Input,
    /// The cross-attention context (rows × dim_context).
    Context,
    /// The output buffer (hidden states or logits).
    Output,
    /// The arena of the prefill panels ([`crate::Decoder::with_prefill_panels`]).
    PrefillPanels,
    /// The arena of the int8 panels ([`crate::Decoder::with_int8_panels`]).
    Int8Panels,
    /// The self-attention padding mask ([`crate::Masks::mask`]).
    Mask,
    /// The cross-attention context mask ([`crate::Masks::context_mask`]).
    ContextMask,
}

/// A weight tensor, named the way x-transformers' `state_dict` names it.
///
/// `sublayer` is ℓ in `layers.ℓ.…`; `prefix` is `"attn_layers."` under a `TransformerWrapper`.
/// Displayed as the full key, e.g. `attn_layers.layers.3.1.to_q.weight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightName {
    /// `""` for a raw Decoder, `"attn_layers."` for decoder weights under a wrapper.
    pub prefix: &'static str,
    /// The sublayer index ℓ for `layers.ℓ.*` keys.
    pub sublayer: Option<u32>,
    /// The rest of the key (after `layers.ℓ.`), e.g. `1.to_q.weight` or `final_norm.gamma`.
    pub suffix: &'static str,
}

impl fmt::Display for WeightName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sublayer {
            Some(l) => write!(f, "{}layers.{}.{}", self.prefix, l, self.suffix),
            None => write!(f, "{}{}", self.prefix, self.suffix),
        }
    }
}

/// A tensor shape of up to four dimensions, printed like PyTorch's `(256, 128)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// The sizes (saturated at `u32::MAX`); only the first `ndim` are used.
    pub dims: [u32; 4],
    /// Number of dimensions.
    pub ndim: u8,
}

impl Dims {
    /// The shape `dims` (at most four dimensions are kept).
    pub fn new(dims: &[usize]) -> Self {
        let mut d = [0u32; 4];
        let ndim = dims.len().min(4);
        for (o, &i) in d.iter_mut().zip(&dims[..ndim]) {
            *o = u32::try_from(i).unwrap_or(u32::MAX);
        }
        Self {
            dims: d,
            ndim: ndim as u8,
        }
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(")?;
        for (i, d) in self.dims[..self.ndim as usize].iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        if self.ndim == 1 {
            write!(f, ",")?;
        }
        write!(f, ")")
    }
}

/// Everything that can go wrong in picoformer. Each failing call leaves all state unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid or unsupported.
    Config(ConfigError),
    /// A caller-provided buffer is too small.
    BufferTooSmall {
        /// Which buffer.
        buffer: Buffer,
        /// Elements needed.
        needed: usize,
        /// Elements provided.
        available: usize,
    },
    /// A buffer's length is not what the call requires (e.g. not a whole number of rows).
    BufferLength {
        /// Which buffer.
        buffer: Buffer,
        /// Elements expected (or the row width the length must be a multiple of).
        expected: usize,
        /// Elements provided.
        found: usize,
    },
    /// The slices given to a kernel ([`crate::kernels`]) have lengths that do not fit together.
    KernelShape {
        /// The kernel, e.g. `"matmul"`.
        kernel: &'static str,
        /// The argument that does not fit the others, e.g. `"y"` (or a size such as `"cols"`).
        arg: &'static str,
        /// The length the other arguments call for: for one that must hold whole rows, the next
        /// whole number of rows; for a size, its least allowed value.
        expected: usize,
        /// Its length (or value).
        found: usize,
    },
    /// A weight the configuration needs was not provided.
    MissingWeight(WeightName),
    /// A weight has the wrong shape for the configuration (or its data does not fill its shape).
    WeightShape {
        /// The weight.
        name: WeightName,
        /// Expected shape.
        expected: Dims,
        /// Shape found.
        found: Dims,
    },
    /// Empty input: no positions (or no tokens).
    EmptyInput,
    /// A token id is not below `num_tokens`.
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// Its index in the input.
        index: usize,
        /// `num_tokens`.
        num_tokens: usize,
    },
    /// A token the model's logits have no entry for: the logits are `logits_dim` wide, fewer than
    /// `num_tokens` (a target of [`crate::metrics::bits`]).
    NoLogit {
        /// The token.
        token: u32,
        /// Its index in the input.
        index: usize,
        /// The width of the logits ([`crate::WrapperConfig::logits_width`]).
        logits: usize,
    },
    /// A position is beyond the absolute position table (`max_seq_len`).
    PositionOutOfRange {
        /// The first position that does not fit.
        position: usize,
        /// `max_seq_len`.
        max_seq_len: usize,
    },
    /// The KV cache cannot take that many more positions. Nothing was written.
    CacheFull {
        /// Positions already cached.
        len: usize,
        /// Positions requested.
        requested: usize,
        /// The cache capacity.
        capacity: usize,
    },
    /// `truncate(n)` beyond the current length.
    TruncateBeyondLength {
        /// Requested length.
        requested: usize,
        /// Current length.
        len: usize,
    },
    /// `truncate(n)` on a rolling cache to a length whose window it no longer holds.
    TruncateBeyondWindow {
        /// Requested length.
        requested: usize,
        /// The shortest length it can go back to.
        oldest: usize,
    },
    /// A rolling cache ([`crate::KvCache::rolling`]) needs a model with `attn_max_attend_past`
    /// = N and a capacity of more than N positions.
    RollingCache {
        /// The model's `attn_max_attend_past`.
        window: Option<usize>,
        /// The capacity asked for.
        capacity: usize,
    },
    /// The context has more rows than the context cache holds.
    ContextTooLong {
        /// Context rows given.
        rows: usize,
        /// Context cache capacity.
        capacity: usize,
    },
    /// A cross-attending model's first call needs a context.
    ContextRequired,
    /// A context was given to a model without cross-attention.
    ContextNotExpected,
    /// The cache or scratch was built for a different configuration.
    ConfigMismatch(Buffer),
    /// A weight's element type is one this build leaves out: Q8_0 without picoformer's Cargo
    /// feature `q8_0` (from the loader, with the weight's name; from a kernel, without).
    NotBuilt {
        /// The Cargo feature that builds it in.
        feature: &'static str,
        /// The weight, where one is being loaded.
        weight: Option<WeightName>,
    },
    /// The model has more blocks than the `MAX_DEPTH` the decoder type was built with.
    DepthExceedsCapacity {
        /// `depth`.
        depth: usize,
        /// The `MAX_DEPTH` const parameter.
        max_depth: usize,
    },
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::Zero(what) => write!(f, "`{what}` must be positive"),
            ConfigError::NotPositive(what) => write!(f, "`{what}` must be a finite positive number"),
            ConfigError::NotFinite(what) => write!(f, "`{what}` must be a finite number"),
            ConfigError::KvHeads { heads, kv_heads } => {
                write!(f, "heads ({heads}) must be a multiple of kv heads ({kv_heads})")
            }
            ConfigError::SingleHeadWidth { dim, dim_head } => write!(
                f,
                "with heads=1 there is no to_out, so attn_dim_head ({dim_head}) must equal dim ({dim})"
            ),
            ConfigError::RotaryDim { rotary_emb_dim, dim_head } => write!(
                f,
                "rotary_emb_dim {rotary_emb_dim} must be even, >= 2 (> 2 with a base rescale) and <= attn_dim_head {dim_head}"
            ),
            ConfigError::Conflict(a, b) => write!(f, "`{a}` and `{b}` cannot both be set"),
            ConfigError::TooLarge => write!(f, "configuration too large (a matrix over 2^30 elements)"),
            ConfigError::Layers(option, reason) => write!(f, "`{option}`: {reason}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Config(e) => write!(f, "invalid configuration: {e}"),
            Error::BufferTooSmall { buffer, needed, available } => {
                write!(f, "{buffer:?} buffer too small: needs {needed} elements, has {available}")
            }
            Error::BufferLength { buffer, expected, found } => {
                write!(f, "{buffer:?} buffer has {found} elements, expected {expected} (or a multiple)")
            }
            Error::KernelShape { kernel, arg, expected, found } => {
                write!(f, "{kernel}: `{arg}` is {found}, the other arguments call for {expected}")
            }
            Error::MissingWeight(name) => write!(f, "missing weight `{name}`"),
            Error::WeightShape { name, expected, found } => write!(
                f,
                "weight `{name}` has shape {found}, expected {expected}"
            ),
            Error::EmptyInput => write!(f, "empty input"),
            Error::TokenOutOfRange { token, index, num_tokens } => {
                write!(f, "token {token} at index {index} is out of range (num_tokens = {num_tokens})")
            }
            Error::NoLogit { token, index, logits } => write!(
                f,
                "token {token} at index {index} has no logit (the logits are {logits} wide)"
            ),
            Error::PositionOutOfRange { position, max_seq_len } => write!(
                f,
                "position {position} is beyond the absolute position table (max_seq_len = {max_seq_len})"
            ),
            Error::CacheFull { len, requested, capacity } => write!(
                f,
                "KV cache full: {len} cached + {requested} requested > capacity {capacity}"
            ),
            Error::TruncateBeyondLength { requested, len } => {
                write!(f, "cannot truncate to {requested}: only {len} positions cached")
            }
            Error::TruncateBeyondWindow { requested, oldest } => write!(
                f,
                "cannot truncate a rolling cache to {requested}: its window reaches back to {oldest} at most"
            ),
            Error::RollingCache {
                window: Some(w),
                capacity,
            } => write!(
                f,
                "a rolling cache for attn_max_attend_past = {w} needs a capacity of at least {}, not {capacity}",
                w.saturating_add(1)
            ),
            Error::RollingCache { window: None, .. } => write!(
                f,
                "a rolling cache needs a model with local attention (attn_max_attend_past)"
            ),
            Error::ContextTooLong { rows, capacity } => {
                write!(f, "context of {rows} rows exceeds the context cache capacity {capacity}")
            }
            Error::ContextRequired => write!(f, "this model cross-attends: the first call needs a context"),
            Error::ContextNotExpected => write!(f, "a context was given to a model without cross-attention"),
            Error::ConfigMismatch(b) => write!(f, "{b:?} was built for a different configuration"),
            Error::NotBuilt { feature, weight } => {
                if let Some(name) = weight {
                    write!(f, "weight `{name}`: ")?;
                }
                write!(f, "this build leaves out {feature} weights (picoformer's Cargo feature `{feature}`)")
            }
            Error::DepthExceedsCapacity { depth, max_depth } => {
                write!(f, "depth {depth} exceeds the decoder's MAX_DEPTH {max_depth}")
            }
        }
    }
}

impl core::error::Error for Error {}
impl core::error::Error for ConfigError {}

const OWNED_STR_CAPACITY: usize = 64;

/// A name or value copied out of a model file, for the owned errors ([`crate::OwnedLoadError`],
/// [`crate::safetensors::OwnedFormatError`]): at most [`Self::CAPACITY`] bytes, in place, no
/// allocation. A longer text keeps its first bytes (whole characters) and ends in `…`
/// ([`Self::is_truncated`]).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct OwnedStr {
    text: heapless::String<OWNED_STR_CAPACITY>,
    truncated: bool,
}

impl OwnedStr {
    /// Bytes an `OwnedStr` holds, the marker of a truncated text included.
    pub const CAPACITY: usize = OWNED_STR_CAPACITY;
    /// Ends a truncated text.
    pub const MARKER: &'static str = "…";

    /// A copy of `text`, truncated to [`Self::CAPACITY`] bytes (marker included) if longer.
    pub fn new(text: &str) -> Self {
        let mut copy = heapless::String::new();
        if copy.push_str(text).is_ok() {
            return Self {
                text: copy,
                truncated: false,
            };
        }
        copy.clear();
        let mut end = Self::CAPACITY - Self::MARKER.len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // Both fit: `end` + the marker is at most the capacity.
        let _ = copy.push_str(text.get(..end).unwrap_or(""));
        let _ = copy.push_str(Self::MARKER);
        Self {
            text: copy,
            truncated: true,
        }
    }

    /// The text (with the marker at its end if it was truncated).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the original was longer than [`Self::CAPACITY`] bytes.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl core::ops::Deref for OwnedStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for OwnedStr {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl From<&str> for OwnedStr {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl PartialEq<str> for OwnedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for OwnedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for OwnedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// Shown like a `&str` (quoted), so an owned error prints as its borrowed original does.
impl fmt::Debug for OwnedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
