//! Zero-copy, allocation-free reader for the [safetensors] container.
//!
//! Layout: an 8-byte little-endian `u64` `N`, then `N` bytes of UTF-8 JSON header (starting with
//! `{`, possibly padded with trailing spaces), then the data section. The header maps each tensor
//! name to `{"dtype": .., "shape": [..], "data_offsets": [begin, end]}` (offsets relative to the
//! data section) and may hold one `"__metadata__"` object of string values.
//!
//! [`SafeTensors::parse`] validates the whole file up front and keeps only the header and data
//! slices; lookups re-scan the header, which cannot fail any more. Nothing is copied or
//! allocated: tensors are views into the caller's bytes.
//!
//! # Rules enforced
//! Everything the specification requires: the data section must be covered exactly by the
//! tensors — no overlap, **no holes** (nor trailing bytes) and nothing out of range —, each
//! tensor's byte length must equal `product(shape) * dtype size`, tensor names and metadata keys
//! must be unique, entries have exactly the three fields, metadata values are strings. Zero-sized
//! tensors are allowed anywhere on a boundary between tensors (not strictly inside another one).
//!
//! # Limits and cost
//! At most [`MAX_TENSORS`] tensors, [`MAX_METADATA`] metadata entries, [`MAX_DIMS`] dimensions
//! per tensor. Without allocation, the global rules (unique names, exact coverage) are checked by
//! walking the entries in sorted order, which costs one extra pass over the header per 64
//! entries (`ceil(n / 64)` passes, 64 entries held on the stack: about 1.5 KiB on 64-bit
//! targets, under 1 KiB on 32-bit ones). A pass is skipped when the header already lists the
//! tensors in data order (coverage) or in name order (uniqueness), so a file from the reference
//! writer, which lists tensors in data order, is parsed in one or a few passes over the header.
//! The worst case allowed, 4096 tensors listed in reverse order of both names and offsets (a
//! 0.5 MB header), takes 64 passes for each of the two rules. [`SafeTensors::tensor`] and [`SafeTensors::metadata`] re-scan the header
//! (`O(header)`); use [`SafeTensors::tensors`] to visit all tensors in one pass.
//!
//! # Alignment
//! Typed views ([`TensorInfo::as_f32`], ...) borrow the bytes in place, so the tensor's data must
//! be aligned in memory for its element type. The reference writer pads the header so the data
//! section starts at a multiple of 8 in the file; place the file at an 8-aligned address (e.g. a
//! `#[repr(align(8))]` wrapper around `include_bytes!`) and the views succeed. picoformer's
//! exporter (`tools/export.py`) starts it at a multiple of 64 and puts the matrices on 64-byte
//! cache lines: a file at a 64-aligned address then gives the kernels aligned rows.
//!
//! ```
//! use picoformer::safetensors::{Dtype, SafeTensors};
//!
//! # #[repr(align(8))] struct Aligned<T: ?Sized>(T);
//! // One f32 tensor "w" of shape [2] holding [1.0, 2.0], header padded to 56 bytes.
//! # const FILE: &Aligned<[u8; 72]> = &Aligned(*b"\x38\0\0\0\0\0\0\0{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  \0\0\x80\x3f\0\0\0\x40");
//! let st = SafeTensors::parse(&FILE.0)?;
//! let w = st.tensor("w").unwrap();
//! assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[2][..]));
//! assert_eq!(w.as_f32()?, &[1.0, 2.0]);
//! # Ok::<(), picoformer::safetensors::FormatError>(())
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

#![deny(unsafe_code)]

use core::fmt;

mod error;
mod order;

// The JSON reader of the header, which also reads the JSON documents that metadata values hold
// (`MetaValue::parser`).
pub use crate::json::{
    BufferTooSmall, Chars, JsonError, JsonErrorKind, JsonStr, Parser, ValueKind, MAX_JSON_DEPTH,
};
use error::json_at;
pub use error::{FormatError, FormatErrorOf, OwnedFormatError};
use order::Order;

/// Maximum number of dimensions of a tensor.
pub const MAX_DIMS: usize = 8;
/// Maximum number of tensors in a file (bounds the cost of the uniqueness and coverage checks,
/// see the [module docs](self#limits-and-cost)).
pub const MAX_TENSORS: usize = 4096;
/// Maximum number of `__metadata__` entries.
pub const MAX_METADATA: usize = 1024;

/// The key of the metadata object in the header.
const METADATA_KEY: &str = "__metadata__";

/// Size of the length prefix.
const PREFIX: usize = 8;

/// Element type of a tensor, as named in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// `BOOL`, one byte.
    Bool,
    /// `U8`
    U8,
    /// `I8`
    I8,
    /// `F8_E5M2`
    F8E5M2,
    /// `F8_E4M3`
    F8E4M3,
    /// `I16`
    I16,
    /// `U16`
    U16,
    /// `F16`
    F16,
    /// `BF16`
    BF16,
    /// `I32`
    I32,
    /// `U32`
    U32,
    /// `F32`
    F32,
    /// `F64`
    F64,
    /// `I64`
    I64,
    /// `U64`
    U64,
}

impl Dtype {
    /// Every dtype this reader knows.
    pub const ALL: [Dtype; 15] = [
        Dtype::Bool,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8E5M2,
        Dtype::F8E4M3,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::F64,
        Dtype::I64,
        Dtype::U64,
    ];

    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E5M2 | Dtype::F8E4M3 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }

    /// The name used in the header (`"F32"`, `"BF16"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// The dtype with the given header name.
    pub fn from_name(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == name)
    }

    fn from_json(s: &JsonStr<'_>) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| s.eq_str(d.name()))
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor shape of up to [`MAX_DIMS`] dimensions. Dereferences to `[usize]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    dims: [usize; MAX_DIMS],
    len: u8,
}

impl Shape {
    /// The dimensions.
    pub fn as_slice(&self) -> &[usize] {
        &self.dims[..usize::from(self.len).min(MAX_DIMS)]
    }

    /// Number of elements (1 for a scalar of shape `[]`). Cannot overflow: checked at parse time.
    pub fn numel(&self) -> usize {
        self.as_slice().iter().product()
    }
}

impl core::ops::Deref for Shape {
    type Target = [usize];

    fn deref(&self) -> &[usize] {
        self.as_slice()
    }
}
/// One tensor: name, dtype, shape and a view of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    key: JsonStr<'a>,
    dtype: Dtype,
    shape: Shape,
    data: &'a [u8],
    begin: usize,
    file_offset: usize,
}

impl<'a> TensorInfo<'a> {
    /// The name as written in the header (JSON escapes, if any, not undone).
    pub const fn name(&self) -> &'a str {
        self.key.raw()
    }

    /// The name as a JSON string, to compare or decode it with its escapes undone.
    pub const fn name_json(&self) -> JsonStr<'a> {
        self.key
    }

    /// The element type.
    pub const fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The dimensions (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        self.shape.as_slice()
    }

    /// The shape as a value.
    pub const fn shape_value(&self) -> Shape {
        self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// The raw little-endian bytes.
    pub const fn data(&self) -> &'a [u8] {
        self.data
    }

    /// `[begin, end)` relative to the data section, as in the header.
    pub const fn data_offsets(&self) -> (usize, usize) {
        (self.begin, self.begin + self.data.len())
    }

    /// Offset of the tensor's first byte from the start of the file.
    pub const fn file_offset(&self) -> usize {
        self.file_offset
    }

    fn end(&self) -> usize {
        self.begin + self.data.len()
    }

    fn view<T: bytemuck::Pod>(&self, want: Dtype) -> Result<&'a [T], FormatError<'a>> {
        if self.dtype != want {
            return Err(FormatError::WrongDtype {
                tensor: self.key.raw(),
                expected: want,
                actual: self.dtype,
            });
        }
        if cfg!(target_endian = "big") && core::mem::size_of::<T>() > 1 {
            return Err(FormatError::BigEndianUnsupported);
        }
        if self.data.is_empty() {
            return Ok(&[]);
        }
        let misaligned = FormatError::Misaligned {
            tensor: self.key.raw(),
            offset: self.file_offset,
            align: core::mem::align_of::<T>(),
        };
        if !(self.data.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()) {
            return Err(misaligned);
        }
        // Length is a multiple of the element size (checked at parse time) and alignment was
        // just checked, so this cannot fail.
        bytemuck::try_cast_slice(self.data).map_err(|_| misaligned)
    }

    /// The elements of an `F32` tensor.
    ///
    /// # Errors
    /// [`FormatError::WrongDtype`], [`FormatError::Misaligned`] (see the
    /// [module docs](self#alignment)), [`FormatError::BigEndianUnsupported`].
    pub fn as_f32(&self) -> Result<&'a [f32], FormatError<'a>> {
        self.view(Dtype::F32)
    }

    /// The elements of an `F16` tensor.
    ///
    /// # Errors
    /// As [`as_f32`](Self::as_f32).
    pub fn as_f16(&self) -> Result<&'a [half::f16], FormatError<'a>> {
        self.view(Dtype::F16)
    }

    /// The elements of a `BF16` tensor.
    ///
    /// # Errors
    /// As [`as_f32`](Self::as_f32).
    pub fn as_bf16(&self) -> Result<&'a [half::bf16], FormatError<'a>> {
        self.view(Dtype::BF16)
    }

    /// The elements of an `F64` tensor.
    ///
    /// # Errors
    /// As [`as_f32`](Self::as_f32).
    pub fn as_f64(&self) -> Result<&'a [f64], FormatError<'a>> {
        self.view(Dtype::F64)
    }

    /// The elements of an `I64` tensor.
    ///
    /// # Errors
    /// As [`as_f32`](Self::as_f32).
    pub fn as_i64(&self) -> Result<&'a [i64], FormatError<'a>> {
        self.view(Dtype::I64)
    }

    /// The elements of an `I32` tensor.
    ///
    /// # Errors
    /// As [`as_f32`](Self::as_f32).
    pub fn as_i32(&self) -> Result<&'a [i32], FormatError<'a>> {
        self.view(Dtype::I32)
    }

    /// The elements of an `I8` tensor.
    ///
    /// # Errors
    /// [`FormatError::WrongDtype`].
    pub fn as_i8(&self) -> Result<&'a [i8], FormatError<'a>> {
        self.view(Dtype::I8)
    }

    /// The elements of a `U8` tensor.
    ///
    /// # Errors
    /// [`FormatError::WrongDtype`].
    pub fn as_u8(&self) -> Result<&'a [u8], FormatError<'a>> {
        self.view(Dtype::U8)
    }
}

/// A `__metadata__` value: a JSON string, borrowed raw from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaValue<'a> {
    value: JsonStr<'a>,
}

impl<'a> MetaValue<'a> {
    /// The raw string body, JSON escapes not undone (e.g. `{\"dim\": 128}`).
    pub const fn raw(&self) -> &'a str {
        self.value.raw()
    }

    /// The string value, to compare, decode or iterate over.
    pub const fn value(&self) -> JsonStr<'a> {
        self.value
    }

    /// A JSON parser over the decoded string, for values that hold a JSON document. Escapes are
    /// undone on the fly; error offsets count bytes of [`raw`](Self::raw).
    pub const fn parser(&self) -> Parser<'a> {
        Parser::new_escaped(self.value.raw().as_bytes())
    }
}

impl PartialEq<str> for MetaValue<'_> {
    fn eq(&self, other: &str) -> bool {
        self.value.eq_str(other)
    }
}

impl PartialEq<&str> for MetaValue<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.value.eq_str(other)
    }
}

/// A validated safetensors file: the header and data slices of the caller's bytes.
#[derive(Clone, Copy, Debug)]
pub struct SafeTensors<'a> {
    header: &'a str,
    data: &'a [u8],
    count: usize,
    /// Offset in the header just after `"__metadata__":`.
    metadata_at: Option<usize>,
}

/// A top-level header entry.
enum Entry<'a> {
    Tensor(TensorInfo<'a>),
    /// The metadata value starts at this header offset.
    Metadata(usize),
}

/// Walks the top-level header entries.
#[derive(Clone, Debug)]
struct Scanner<'a> {
    p: Parser<'a>,
    header: &'a str,
    data: &'a [u8],
    /// Validate metadata (first pass) or just skip it (file already validated).
    validate: bool,
}

impl<'a> Scanner<'a> {
    fn new(header: &'a str, data: &'a [u8], validate: bool) -> Result<Self, FormatError<'a>> {
        let mut p = Parser::new(header.as_bytes());
        p.begin_object().map_err(json_at(PREFIX))?;
        Ok(Scanner {
            p,
            header,
            data,
            validate,
        })
    }

    fn next(&mut self) -> Result<Option<Entry<'a>>, FormatError<'a>> {
        let e = json_at(PREFIX);
        let Some(key) = self.p.next_member().map_err(&e)? else {
            self.p.finish().map_err(&e)?;
            return Ok(None);
        };
        if key == METADATA_KEY {
            let at = self.p.offset();
            if self.validate {
                // `at` is where a value starts, so on a character boundary.
                validate_metadata(self.header.get(at..).unwrap_or(""), PREFIX + at)?;
            }
            self.p.skip().map_err(&e)?;
            return Ok(Some(Entry::Metadata(at)));
        }
        let data_start = self.data_start();
        let info = parse_tensor(&mut self.p, key, self.data, data_start)?;
        Ok(Some(Entry::Tensor(info)))
    }

    fn data_start(&self) -> usize {
        PREFIX + self.header.len()
    }
}

/// Checks the metadata object at the start of `src` (`base` bytes into the file).
fn validate_metadata(src: &str, base: usize) -> Result<(), FormatError<'_>> {
    let e = json_at(base);
    let mut p = Parser::new(src.as_bytes());
    p.begin_object().map_err(&e)?;
    let mut n = 0;
    while let Some(key) = p.next_member().map_err(&e)? {
        if n == MAX_METADATA {
            return Err(FormatError::TooManyMetadata { max: MAX_METADATA });
        }
        match p.kind().map_err(&e)? {
            ValueKind::String => {
                p.string().map_err(&e)?;
            }
            found => {
                return Err(FormatError::MetadataNotString {
                    key: key.raw(),
                    found,
                })
            }
        }
        n += 1;
    }
    Ok(())
}
/// Parses the value of a tensor entry.
fn parse_tensor<'a>(
    p: &mut Parser<'a>,
    key: JsonStr<'a>,
    data: &'a [u8],
    data_start: usize,
) -> Result<TensorInfo<'a>, FormatError<'a>> {
    let e = json_at(PREFIX);
    let tensor = key.raw();
    let (mut dtype, mut shape, mut offsets) = (None, None, None);
    p.begin_object().map_err(&e)?;
    while let Some(field) = p.next_member().map_err(&e)? {
        let dup = |field| FormatError::DuplicateField { tensor, field };
        if field == "dtype" {
            if dtype.is_some() {
                return Err(dup("dtype"));
            }
            let s = p.string().map_err(&e)?;
            dtype = Some(Dtype::from_json(&s).ok_or(FormatError::UnknownDtype {
                tensor,
                dtype: s.raw(),
            })?);
        } else if field == "shape" {
            if shape.is_some() {
                return Err(dup("shape"));
            }
            let mut s = Shape {
                dims: [0; MAX_DIMS],
                len: 0,
            };
            p.begin_array().map_err(&e)?;
            while p.next_element().map_err(&e)? {
                let Some(dim) = s.dims.get_mut(usize::from(s.len)) else {
                    return Err(FormatError::TooManyDims {
                        tensor,
                        max: MAX_DIMS,
                    });
                };
                let d = p.u64().map_err(&e)?;
                *dim = usize::try_from(d).map_err(|_| FormatError::ShapeOverflow { tensor })?;
                s.len += 1;
            }
            shape = Some(s);
        } else if field == "data_offsets" {
            if offsets.is_some() {
                return Err(dup("data_offsets"));
            }
            let mut pair = [0u64; 2];
            let mut len = 0;
            p.begin_array().map_err(&e)?;
            while p.next_element().map_err(&e)? {
                if len < 2 {
                    pair[len] = p.u64().map_err(&e)?;
                }
                len += 1;
            }
            if len != 2 {
                return Err(FormatError::OffsetsNotPair { tensor, len });
            }
            offsets = Some((pair[0], pair[1]));
        } else {
            return Err(FormatError::UnknownField {
                tensor,
                field: field.raw(),
            });
        }
    }
    let missing = |field| FormatError::MissingField { tensor, field };
    let dtype = dtype.ok_or(missing("dtype"))?;
    let shape = shape.ok_or(missing("shape"))?;
    let (begin, end) = offsets.ok_or(missing("data_offsets"))?;
    let nbytes = shape
        .as_slice()
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or(FormatError::ShapeOverflow { tensor })?;
    if begin > end {
        return Err(FormatError::OffsetsReversed { tensor, begin, end });
    }
    let out_of_range = FormatError::TensorOutOfRange {
        tensor,
        end,
        data_len: data.len(),
    };
    if end > data.len() as u64 {
        return Err(out_of_range);
    }
    if end - begin != nbytes as u64 {
        return Err(FormatError::SizeMismatch {
            tensor,
            expected: nbytes,
            actual: end - begin,
        });
    }
    // Both fit in usize: end <= data.len().
    let (begin, end) = (begin as usize, end as usize);
    Ok(TensorInfo {
        key,
        dtype,
        shape,
        data: data.get(begin..end).ok_or(out_of_range)?,
        begin,
        file_offset: data_start + begin,
    })
}

impl<'a> SafeTensors<'a> {
    /// Parses and fully validates a safetensors file. See the [module docs](self) for the rules
    /// and the cost.
    ///
    /// # Errors
    /// [`FormatError::TooShort`], [`FormatError::HeaderTooLarge`] for a bad prefix;
    /// [`FormatError::Json`] for a header that is not UTF-8, not JSON, does not start with `{`,
    /// or has values of the wrong JSON type; one of the entry errors
    /// ([`MissingField`](FormatError::MissingField), [`UnknownField`](FormatError::UnknownField),
    /// [`DuplicateField`](FormatError::DuplicateField),
    /// [`UnknownDtype`](FormatError::UnknownDtype), [`TooManyDims`](FormatError::TooManyDims),
    /// [`ShapeOverflow`](FormatError::ShapeOverflow),
    /// [`OffsetsNotPair`](FormatError::OffsetsNotPair),
    /// [`OffsetsReversed`](FormatError::OffsetsReversed),
    /// [`TensorOutOfRange`](FormatError::TensorOutOfRange),
    /// [`SizeMismatch`](FormatError::SizeMismatch)) for the first bad entry; metadata errors
    /// ([`MetadataNotString`](FormatError::MetadataNotString),
    /// [`DuplicateMetadataKey`](FormatError::DuplicateMetadataKey),
    /// [`TooManyMetadata`](FormatError::TooManyMetadata));
    /// [`DuplicateKey`](FormatError::DuplicateKey), [`TooManyTensors`](FormatError::TooManyTensors);
    /// then [`Overlap`](FormatError::Overlap) or [`Hole`](FormatError::Hole) if the tensors do not
    /// cover the data section exactly.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError<'a>> {
        let file_len = bytes.len();
        let Some(prefix) = bytes.first_chunk::<PREFIX>() else {
            return Err(FormatError::TooShort { file_len });
        };
        let header_len = u64::from_le_bytes(*prefix);
        if header_len > (file_len - PREFIX) as u64 {
            return Err(FormatError::HeaderTooLarge {
                header_len,
                file_len,
            });
        }
        let (header, data) = bytes[PREFIX..].split_at(header_len as usize);
        let header = core::str::from_utf8(header).map_err(|e| FormatError::Json {
            offset: PREFIX + e.valid_up_to(),
            kind: JsonErrorKind::InvalidUtf8,
        })?;
        match header.chars().next() {
            Some('{') => {}
            Some(found) => {
                return Err(FormatError::Json {
                    offset: PREFIX,
                    kind: JsonErrorKind::UnexpectedChar {
                        found,
                        expected: "'{' at the start of the header",
                    },
                })
            }
            None => {
                return Err(FormatError::Json {
                    offset: PREFIX,
                    kind: JsonErrorKind::UnexpectedEnd,
                })
            }
        }
        let mut st = SafeTensors {
            header,
            data,
            count: 0,
            metadata_at: None,
        };

        // One pass validates every entry and checks the global rules where the header order
        // makes them cheap (see `Order`); `Order::check` walks the rest in sorted order.
        let mut scan = Scanner::new(header, data, true)?;
        let mut order = Order::new();
        while let Some(entry) = scan.next()? {
            let t = match entry {
                Entry::Metadata(at) => {
                    if st.metadata_at.is_some() {
                        return Err(FormatError::DuplicateKey { key: METADATA_KEY });
                    }
                    st.metadata_at = Some(at);
                    continue;
                }
                Entry::Tensor(t) => t,
            };
            if st.count == MAX_TENSORS {
                return Err(FormatError::TooManyTensors { max: MAX_TENSORS });
            }
            order.push(st.count, &t);
            st.count += 1;
        }
        order.check(&st)?;
        Ok(st)
    }

    /// Number of tensors.
    pub const fn len(&self) -> usize {
        self.count
    }

    /// Whether the file holds no tensors.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The header JSON text (including any trailing padding).
    pub const fn header(&self) -> &'a str {
        self.header
    }

    /// The data section.
    pub const fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Offset of the data section from the start of the file.
    pub const fn data_offset(&self) -> usize {
        PREFIX + self.header.len()
    }

    /// The tensor called `name` (compared after undoing JSON escapes), scanning the header.
    pub fn tensor(&self, name: &str) -> Option<TensorInfo<'a>> {
        if name == METADATA_KEY {
            return None;
        }
        let mut p = Parser::new(self.header.as_bytes());
        p.begin_object().ok()?;
        while let Some(key) = p.next_member().ok()? {
            if key == name {
                return parse_tensor(&mut p, key, self.data, self.data_offset()).ok();
            }
        }
        None
    }

    /// All tensors, in header order.
    pub fn tensors(&self) -> Tensors<'a> {
        Tensors {
            scan: Scanner::new(self.header, self.data, false).ok(),
        }
    }

    /// The `__metadata__` value for `key` (compared after undoing JSON escapes).
    pub fn metadata(&self, key: &str) -> Option<MetaValue<'a>> {
        self.metadata_entries()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// All `__metadata__` entries as `(key, value)`, in header order.
    pub fn metadata_entries(&self) -> MetadataEntries<'a> {
        let p = self.metadata_at.and_then(|at| {
            let mut p = Parser::new(self.header.as_bytes().get(at..)?);
            p.begin_object().ok().map(|()| p)
        });
        MetadataEntries { p }
    }
}

/// Iterator over the tensors of a [`SafeTensors`], in header order.
#[derive(Clone, Debug)]
pub struct Tensors<'a> {
    scan: Option<Scanner<'a>>,
}

impl<'a> Iterator for Tensors<'a> {
    type Item = TensorInfo<'a>;

    fn next(&mut self) -> Option<TensorInfo<'a>> {
        let scan = self.scan.as_mut()?;
        loop {
            match scan.next() {
                Ok(Some(Entry::Tensor(t))) => return Some(t),
                Ok(Some(Entry::Metadata(_))) => {}
                // Errors cannot happen on a validated header; end the iteration if one does.
                Ok(None) | Err(_) => {
                    self.scan = None;
                    return None;
                }
            }
        }
    }
}

/// Iterator over the `__metadata__` entries of a [`SafeTensors`], as `(key, value)`.
#[derive(Clone, Debug)]
pub struct MetadataEntries<'a> {
    p: Option<Parser<'a>>,
}

impl<'a> Iterator for MetadataEntries<'a> {
    type Item = (JsonStr<'a>, MetaValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let p = self.p.as_mut()?;
        let entry = p
            .next_member()
            .ok()
            .flatten()
            .and_then(|k| p.string().ok().map(|value| (k, MetaValue { value })));
        if entry.is_none() {
            self.p = None;
        }
        entry
    }
}
