//! Why a safetensors file was refused, or a typed view of a tensor could not be taken.

use core::fmt;

use super::{Dtype, PREFIX};
use crate::json::{JsonError, JsonErrorKind, ValueKind};

/// Why a file was refused, or a view could not be taken.
///
/// Names of tensors and keys are borrowed from the file as written (JSON escapes not undone).
/// Offsets named `offset` are byte offsets from the start of the file; `begin`/`end`/`data_len`
/// are relative to the data section, like `data_offsets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError<'a> {
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
        tensor: &'a str,
        /// The missing field.
        field: &'static str,
    },
    /// A tensor entry has a field other than `dtype`, `shape`, `data_offsets`.
    UnknownField {
        /// The tensor.
        tensor: &'a str,
        /// The unknown field.
        field: &'a str,
    },
    /// A tensor entry has the same field twice.
    DuplicateField {
        /// The tensor.
        tensor: &'a str,
        /// The repeated field.
        field: &'static str,
    },
    /// A dtype this reader does not know.
    UnknownDtype {
        /// The tensor.
        tensor: &'a str,
        /// The dtype as written.
        dtype: &'a str,
    },
    /// More than [`MAX_DIMS`](super::MAX_DIMS) dimensions.
    TooManyDims {
        /// The tensor.
        tensor: &'a str,
        /// [`MAX_DIMS`](super::MAX_DIMS).
        max: usize,
    },
    /// The number of elements or bytes does not fit in `usize`.
    ShapeOverflow {
        /// The tensor.
        tensor: &'a str,
    },
    /// `data_offsets` does not have exactly two elements.
    OffsetsNotPair {
        /// The tensor.
        tensor: &'a str,
        /// How many elements it has.
        len: usize,
    },
    /// `data_offsets` has `begin > end`.
    OffsetsReversed {
        /// The tensor.
        tensor: &'a str,
        /// First offset.
        begin: u64,
        /// Second offset.
        end: u64,
    },
    /// The tensor ends beyond the data section (e.g. a truncated file).
    TensorOutOfRange {
        /// The tensor.
        tensor: &'a str,
        /// Its end offset.
        end: u64,
        /// Length of the data section.
        data_len: usize,
    },
    /// `end - begin` differs from `product(shape) * dtype size`.
    SizeMismatch {
        /// The tensor.
        tensor: &'a str,
        /// Bytes its shape and dtype need.
        expected: usize,
        /// `end - begin`.
        actual: u64,
    },
    /// Two tensors share bytes (a zero-sized tensor strictly inside another counts too).
    Overlap {
        /// The tensor listed first in the header.
        first: &'a str,
        /// The tensor listed second.
        second: &'a str,
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
        key: &'a str,
    },
    /// A `__metadata__` key appears twice.
    DuplicateMetadataKey {
        /// The key.
        key: &'a str,
    },
    /// A `__metadata__` value is not a string.
    MetadataNotString {
        /// Its key.
        key: &'a str,
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
        tensor: &'a str,
        /// The view's dtype.
        expected: Dtype,
        /// The tensor's dtype.
        actual: Dtype,
    },
    /// The tensor's bytes are not aligned in memory for a typed view.
    Misaligned {
        /// The tensor.
        tensor: &'a str,
        /// Offset of its data from the start of the file.
        offset: usize,
        /// Alignment the element type needs.
        align: usize,
    },
    /// Typed views of multi-byte elements need a little-endian target.
    BigEndianUnsupported,
}

impl fmt::Display for FormatError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FormatError::TooShort { file_len } => {
                write!(
                    f,
                    "file is {file_len} bytes, shorter than the 8-byte length prefix"
                )
            }
            FormatError::HeaderTooLarge {
                header_len,
                file_len,
            } => write!(
                f,
                "header length {header_len} exceeds the {} bytes after the prefix",
                file_len.saturating_sub(PREFIX)
            ),
            FormatError::Json { offset, kind } => {
                write!(f, "header JSON error at file offset {offset}: {kind}")
            }
            FormatError::MissingField { tensor, field } => {
                write!(f, "tensor {tensor:?} has no {field:?}")
            }
            FormatError::UnknownField { tensor, field } => {
                write!(f, "tensor {tensor:?} has unknown field {field:?}")
            }
            FormatError::DuplicateField { tensor, field } => {
                write!(f, "tensor {tensor:?} has {field:?} twice")
            }
            FormatError::UnknownDtype { tensor, dtype } => {
                write!(f, "tensor {tensor:?} has unknown dtype {dtype:?}")
            }
            FormatError::TooManyDims { tensor, max } => {
                write!(f, "tensor {tensor:?} has more than {max} dimensions")
            }
            FormatError::ShapeOverflow { tensor } => {
                write!(f, "tensor {tensor:?}: size of shape overflows usize")
            }
            FormatError::OffsetsNotPair { tensor, len } => write!(
                f,
                "tensor {tensor:?}: data_offsets has {len} elements, expected 2"
            ),
            FormatError::OffsetsReversed { tensor, begin, end } => write!(
                f,
                "tensor {tensor:?}: data_offsets [{begin}, {end}] has begin > end"
            ),
            FormatError::TensorOutOfRange {
                tensor,
                end,
                data_len,
            } => write!(
                f,
                "tensor {tensor:?} ends at {end}, beyond the {data_len}-byte data section"
            ),
            FormatError::SizeMismatch {
                tensor,
                expected,
                actual,
            } => write!(
                f,
                "tensor {tensor:?} spans {actual} bytes, its shape and dtype need {expected}"
            ),
            FormatError::Overlap {
                first,
                second,
                begin,
                end,
            } => write!(
                f,
                "tensors {first:?} and {second:?} overlap in data bytes {begin}..{end}"
            ),
            FormatError::Hole { begin, end } => {
                write!(f, "data bytes {begin}..{end} belong to no tensor")
            }
            FormatError::DuplicateKey { key } => write!(f, "{key:?} appears twice in the header"),
            FormatError::DuplicateMetadataKey { key } => {
                write!(f, "metadata key {key:?} appears twice")
            }
            FormatError::MetadataNotString { key, found } => {
                write!(f, "metadata value of {key:?} is a {found}, not a string")
            }
            FormatError::TooManyTensors { max } => write!(f, "more than {max} tensors"),
            FormatError::TooManyMetadata { max } => write!(f, "more than {max} metadata entries"),
            FormatError::WrongDtype {
                tensor,
                expected,
                actual,
            } => write!(f, "tensor {tensor:?} is {actual}, not {expected}"),
            FormatError::Misaligned {
                tensor,
                offset,
                align,
            } => {
                write!(
                    f,
                    "tensor {tensor:?} at file offset {offset} is not {align}-byte aligned"
                )?;
                if offset % align == 0 {
                    f.write_str(" (the file buffer itself is not aligned)")?;
                }
                Ok(())
            }
            FormatError::BigEndianUnsupported => {
                f.write_str("typed views need a little-endian target")
            }
        }
    }
}

impl core::error::Error for FormatError<'_> {}

/// A JSON error at `base` bytes into the file.
pub(super) fn json_at(base: usize) -> impl Fn(JsonError) -> FormatError<'static> {
    move |e| FormatError::Json {
        offset: base + e.offset,
        kind: e.kind,
    }
}
