//! Why a safetensors file was refused, or a typed view of a tensor could not be taken.

use core::fmt;

use super::{Dtype, PREFIX};
use crate::error::OwnedStr;
use crate::json::{JsonError, JsonErrorKind, ValueKind};

/// Why a file was refused, or a view could not be taken: names of tensors and keys borrowed
/// from the file as written (JSON escapes not undone).
///
/// This is [`FormatErrorOf`] with `T = &'a str`; [`FormatError::into_owned`] copies the names
/// into an [`OwnedFormatError`], which is `'static` and implements [`core::error::Error`]. With
/// the `std` feature, `?` turns a `FormatError` straight into a `Box<dyn std::error::Error>`
/// (through that copy), so a host program can return it from `main`.
pub type FormatError<'a> = FormatErrorOf<&'a str>;

/// A [`FormatError`] whose names are copied ([`OwnedStr`], at most [`OwnedStr::CAPACITY`] bytes
/// each): `'static`, for `?` into `Box<dyn Error>`, storing, or sending to another thread.
pub type OwnedFormatError = FormatErrorOf<OwnedStr>;

/// Why a file was refused, or a view could not be taken, with the names of tensors and keys as
/// `T`: [`FormatError`] (borrowed from the file) or [`OwnedFormatError`] (copied).
///
/// Offsets named `offset` are byte offsets from the start of the file; `begin`/`end`/`data_len`
/// are relative to the data section, like `data_offsets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatErrorOf<T> {
    /// The file is shorter than the 8-byte header length.
    TooShort {
        /// File length in bytes.
        file_len: usize,
    },
    /// The header length prefix points beyond the end of the file.
    HeaderTooLarge {
        /// The header length read from the prefix.
        header_len: u64,
        /// File length in bytes.
        file_len: usize,
    },
    /// The header is not valid UTF-8 or JSON, or a value has the wrong JSON type.
    Json {
        /// Byte offset from the start of the file.
        offset: usize,
        /// What is wrong.
        kind: JsonErrorKind,
    },
    /// A tensor entry lacks one of `dtype`, `shape`, `data_offsets`.
    MissingField {
        /// The tensor.
        tensor: T,
        /// The missing field.
        field: &'static str,
    },
    /// A tensor entry has a field other than `dtype`, `shape`, `data_offsets`.
    UnknownField {
        /// The tensor.
        tensor: T,
        /// The unknown field.
        field: T,
    },
    /// A tensor entry has the same field twice.
    DuplicateField {
        /// The tensor.
        tensor: T,
        /// The repeated field.
        field: &'static str,
    },
    /// A dtype this reader does not know.
    UnknownDtype {
        /// The tensor.
        tensor: T,
        /// The dtype as written.
        dtype: T,
    },
    /// More than [`MAX_DIMS`](super::MAX_DIMS) dimensions.
    TooManyDims {
        /// The tensor.
        tensor: T,
        /// [`MAX_DIMS`](super::MAX_DIMS).
        max: usize,
    },
    /// The number of elements or bytes does not fit in `usize`.
    ShapeOverflow {
        /// The tensor.
        tensor: T,
    },
    /// `data_offsets` does not have exactly two elements.
    OffsetsNotPair {
        /// The tensor.
        tensor: T,
        /// How many elements it has.
        len: usize,
    },
    /// `data_offsets` has `begin > end`.
    OffsetsReversed {
        /// The tensor.
        tensor: T,
        /// First offset.
        begin: u64,
        /// Second offset.
        end: u64,
    },
    /// The tensor ends beyond the data section (e.g. a truncated file).
    TensorOutOfRange {
        /// The tensor.
        tensor: T,
        /// Its end offset.
        end: u64,
        /// Length of the data section.
        data_len: usize,
    },
    /// `end - begin` differs from `product(shape) * dtype size`.
    SizeMismatch {
        /// The tensor.
        tensor: T,
        /// Bytes its shape and dtype need.
        expected: usize,
        /// `end - begin`.
        actual: u64,
    },
    /// Two tensors share bytes (a zero-sized tensor strictly inside another counts too).
    Overlap {
        /// The tensor listed first in the header.
        first: T,
        /// The tensor listed second.
        second: T,
        /// Start of the shared range.
        begin: usize,
        /// End of the shared range (equal to `begin` for a zero-sized tensor).
        end: usize,
    },
    /// Bytes of the data section that belong to no tensor (the specification forbids holes and
    /// trailing bytes).
    Hole {
        /// Start of the uncovered range.
        begin: usize,
        /// End of the uncovered range.
        end: usize,
    },
    /// A tensor name (or `__metadata__`) appears twice.
    DuplicateKey {
        /// The name.
        key: T,
    },
    /// A `__metadata__` key appears twice.
    DuplicateMetadataKey {
        /// The key.
        key: T,
    },
    /// A `__metadata__` value is not a string.
    MetadataNotString {
        /// Its key.
        key: T,
        /// What it is instead.
        found: ValueKind,
    },
    /// More than [`MAX_TENSORS`](super::MAX_TENSORS) tensors.
    TooManyTensors {
        /// [`MAX_TENSORS`](super::MAX_TENSORS).
        max: usize,
    },
    /// More than [`MAX_METADATA`](super::MAX_METADATA) metadata entries.
    TooManyMetadata {
        /// [`MAX_METADATA`](super::MAX_METADATA).
        max: usize,
    },
    /// A typed view of another dtype than the tensor's was requested.
    WrongDtype {
        /// The tensor.
        tensor: T,
        /// The view's dtype.
        expected: Dtype,
        /// The tensor's dtype.
        actual: Dtype,
    },
    /// The tensor's bytes are not aligned in memory for a typed view.
    Misaligned {
        /// The tensor.
        tensor: T,
        /// Offset of its data from the start of the file.
        offset: usize,
        /// Alignment the element type needs.
        align: usize,
    },
    /// Typed views of multi-byte elements need a little-endian target.
    BigEndianUnsupported,
}

impl<T: fmt::Debug> fmt::Display for FormatErrorOf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatErrorOf::TooShort { file_len } => {
                write!(
                    f,
                    "file is {file_len} bytes, shorter than the 8-byte length prefix"
                )
            }
            FormatErrorOf::HeaderTooLarge {
                header_len,
                file_len,
            } => write!(
                f,
                "header length {header_len} exceeds the {} bytes after the prefix",
                file_len.saturating_sub(PREFIX)
            ),
            FormatErrorOf::Json { offset, kind } => {
                write!(f, "header JSON error at file offset {offset}: {kind}")
            }
            FormatErrorOf::MissingField { tensor, field } => {
                write!(f, "tensor {tensor:?} has no {field:?}")
            }
            FormatErrorOf::UnknownField { tensor, field } => {
                write!(f, "tensor {tensor:?} has unknown field {field:?}")
            }
            FormatErrorOf::DuplicateField { tensor, field } => {
                write!(f, "tensor {tensor:?} has {field:?} twice")
            }
            FormatErrorOf::UnknownDtype { tensor, dtype } => {
                write!(f, "tensor {tensor:?} has unknown dtype {dtype:?}")
            }
            FormatErrorOf::TooManyDims { tensor, max } => {
                write!(f, "tensor {tensor:?} has more than {max} dimensions")
            }
            FormatErrorOf::ShapeOverflow { tensor } => {
                write!(f, "tensor {tensor:?}: size of shape overflows usize")
            }
            FormatErrorOf::OffsetsNotPair { tensor, len } => write!(
                f,
                "tensor {tensor:?}: data_offsets has {len} elements, expected 2"
            ),
            FormatErrorOf::OffsetsReversed { tensor, begin, end } => write!(
                f,
                "tensor {tensor:?}: data_offsets [{begin}, {end}] has begin > end"
            ),
            FormatErrorOf::TensorOutOfRange {
                tensor,
                end,
                data_len,
            } => write!(
                f,
                "tensor {tensor:?} ends at {end}, beyond the {data_len}-byte data section"
            ),
            FormatErrorOf::SizeMismatch {
                tensor,
                expected,
                actual,
            } => write!(
                f,
                "tensor {tensor:?} spans {actual} bytes, its shape and dtype need {expected}"
            ),
            FormatErrorOf::Overlap {
                first,
                second,
                begin,
                end,
            } => write!(
                f,
                "tensors {first:?} and {second:?} overlap in data bytes {begin}..{end}"
            ),
            FormatErrorOf::Hole { begin, end } => {
                write!(f, "data bytes {begin}..{end} belong to no tensor")
            }
            FormatErrorOf::DuplicateKey { key } => write!(f, "{key:?} appears twice in the header"),
            FormatErrorOf::DuplicateMetadataKey { key } => {
                write!(f, "metadata key {key:?} appears twice")
            }
            FormatErrorOf::MetadataNotString { key, found } => {
                write!(f, "metadata value of {key:?} is a {found}, not a string")
            }
            FormatErrorOf::TooManyTensors { max } => write!(f, "more than {max} tensors"),
            FormatErrorOf::TooManyMetadata { max } => write!(f, "more than {max} metadata entries"),
            FormatErrorOf::WrongDtype {
                tensor,
                expected,
                actual,
            } => write!(f, "tensor {tensor:?} is {actual}, not {expected}"),
            FormatErrorOf::Misaligned {
                tensor,
                offset,
                align,
            } => {
                write!(
                    f,
                    "tensor {tensor:?} at file offset {offset} is not {align}-byte aligned"
                )?;
                if offset.checked_rem(*align) == Some(0) {
                    f.write_str(" (the file buffer itself is not aligned)")?;
                }
                Ok(())
            }
            FormatErrorOf::BigEndianUnsupported => {
                f.write_str("typed views need a little-endian target")
            }
        }
    }
}

// Only the owned form is an `Error`: a borrowed one could not be boxed into the `'static`
// `Box<dyn Error>` of a `main` (E0515), so it converts into one instead (below), which the
// standard library's blanket conversion would conflict with if it were an `Error` too.
impl core::error::Error for OwnedFormatError {}

impl<'a> FormatError<'a> {
    /// The same error with its names copied ([`OwnedStr`]; a longer name keeps its first
    /// [`OwnedStr::CAPACITY`] bytes, ending in `…`): `'static`, an [`core::error::Error`].
    pub fn into_owned(self) -> OwnedFormatError {
        self.map(OwnedStr::new)
    }
}

impl<'a> From<FormatError<'a>> for OwnedFormatError {
    fn from(e: FormatError<'a>) -> Self {
        e.into_owned()
    }
}

#[cfg(feature = "std")]
impl<'a, 'b> From<FormatError<'a>> for std::boxed::Box<dyn core::error::Error + 'b> {
    fn from(e: FormatError<'a>) -> Self {
        std::boxed::Box::new(e.into_owned())
    }
}

#[cfg(feature = "std")]
impl<'a, 'b> From<FormatError<'a>> for std::boxed::Box<dyn core::error::Error + Send + Sync + 'b> {
    fn from(e: FormatError<'a>) -> Self {
        std::boxed::Box::new(e.into_owned())
    }
}

impl<T> FormatErrorOf<T> {
    /// The same error with every name passed through `f`.
    fn map<U>(self, f: impl Fn(T) -> U) -> FormatErrorOf<U> {
        use FormatErrorOf as E;
        match self {
            E::TooShort { file_len } => E::TooShort { file_len },
            E::HeaderTooLarge {
                header_len,
                file_len,
            } => E::HeaderTooLarge {
                header_len,
                file_len,
            },
            E::Json { offset, kind } => E::Json { offset, kind },
            E::MissingField { tensor, field } => E::MissingField {
                tensor: f(tensor),
                field,
            },
            E::UnknownField { tensor, field } => E::UnknownField {
                tensor: f(tensor),
                field: f(field),
            },
            E::DuplicateField { tensor, field } => E::DuplicateField {
                tensor: f(tensor),
                field,
            },
            E::UnknownDtype { tensor, dtype } => E::UnknownDtype {
                tensor: f(tensor),
                dtype: f(dtype),
            },
            E::TooManyDims { tensor, max } => E::TooManyDims {
                tensor: f(tensor),
                max,
            },
            E::ShapeOverflow { tensor } => E::ShapeOverflow { tensor: f(tensor) },
            E::OffsetsNotPair { tensor, len } => E::OffsetsNotPair {
                tensor: f(tensor),
                len,
            },
            E::OffsetsReversed { tensor, begin, end } => E::OffsetsReversed {
                tensor: f(tensor),
                begin,
                end,
            },
            E::TensorOutOfRange {
                tensor,
                end,
                data_len,
            } => E::TensorOutOfRange {
                tensor: f(tensor),
                end,
                data_len,
            },
            E::SizeMismatch {
                tensor,
                expected,
                actual,
            } => E::SizeMismatch {
                tensor: f(tensor),
                expected,
                actual,
            },
            E::Overlap {
                first,
                second,
                begin,
                end,
            } => E::Overlap {
                first: f(first),
                second: f(second),
                begin,
                end,
            },
            E::Hole { begin, end } => E::Hole { begin, end },
            E::DuplicateKey { key } => E::DuplicateKey { key: f(key) },
            E::DuplicateMetadataKey { key } => E::DuplicateMetadataKey { key: f(key) },
            E::MetadataNotString { key, found } => E::MetadataNotString { key: f(key), found },
            E::TooManyTensors { max } => E::TooManyTensors { max },
            E::TooManyMetadata { max } => E::TooManyMetadata { max },
            E::WrongDtype {
                tensor,
                expected,
                actual,
            } => E::WrongDtype {
                tensor: f(tensor),
                expected,
                actual,
            },
            E::Misaligned {
                tensor,
                offset,
                align,
            } => E::Misaligned {
                tensor: f(tensor),
                offset,
                align,
            },
            E::BigEndianUnsupported => E::BigEndianUnsupported,
        }
    }
}

/// A JSON error at `base` bytes into the file.
pub(super) fn json_at(base: usize) -> impl Fn(JsonError) -> FormatError<'static> {
    move |e| FormatError::Json {
        offset: base + e.offset,
        kind: e.kind,
    }
}
