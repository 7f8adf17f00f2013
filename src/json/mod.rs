//! A small allocation-free JSON pull parser, for the safetensors header and the JSON documents
//! its `__metadata__` values hold. Its public types are re-exported by [`crate::safetensors`].
//!
//! It reads two kinds of source without copying:
//!
//! 1. raw JSON text ([`Parser::new`]);
//! 2. the *body of a JSON string literal* whose content is itself a JSON document
//!    ([`Parser::new_escaped`]). The escapes of the outer literal (`\"`, `\\`, `\uXXXX`, ...) are
//!    undone on the fly while the inner document is parsed. This is how safetensors
//!    `__metadata__` values carry nested JSON, e.g. `{\"decoder\": {\"dim\": 128}}`.
//!
//! Strings are returned as [`JsonStr`] handles that borrow the raw text; they compare against a
//! `&str` (after unescaping) without allocating, and can be decoded into a caller buffer.
//!
//! The files: this one holds the errors and the [`Parser`]'s structure (objects, arrays,
//! literals, skipping); `string.rs` reads characters (UTF-8, escapes, the escaped source) and
//! holds the [`JsonStr`] handles; `number.rs` reads numbers, `float.rs` converts them to `f64`.

#![deny(unsafe_code)]

use core::fmt;

mod float;
#[cfg(test)]
mod float_tests;
mod number;
mod string;
#[cfg(test)]
mod tests;

use string::{unescape, Src};
pub use string::{Chars, JsonStr};

/// Maximum nesting depth of arrays and objects; deeper documents fail with
/// [`JsonErrorKind::TooDeep`].
pub const MAX_JSON_DEPTH: usize = 32;

/// A JSON parse error: what went wrong and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset into the raw source (for an escaped source: into the string body, i.e. counted
    /// in escaped bytes).
    pub offset: usize,
    /// What went wrong.
    pub kind: JsonErrorKind,
}

/// The kinds of [`JsonError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// The input ended inside a value (unterminated string, array, object or escape).
    UnexpectedEnd,
    /// A character that does not fit the grammar at this point.
    UnexpectedChar {
        /// The character found.
        found: char,
        /// What the grammar allows here.
        expected: &'static str,
    },
    /// A backslash escape other than `\" \\ \/ \b \f \n \r \t \uXXXX`.
    InvalidEscape,
    /// A `\u` escape naming a UTF-16 surrogate that is not part of a valid pair.
    LoneSurrogate,
    /// A raw control character (below U+0020) inside a string.
    ControlChar,
    /// Bytes that are not valid UTF-8.
    InvalidUtf8,
    /// An unescaped `"` inside a string body given to [`Parser::new_escaped`].
    UnescapedQuote,
    /// A number that does not follow the JSON grammar (`01`, `1.`, `-`, `1e`).
    InvalidNumber,
    /// A number too large for the requested type (or for `f64`), or negative where unsigned was
    /// requested.
    NumberOutOfRange,
    /// A number with a fraction or exponent where an integer was requested.
    NotAnInteger,
    /// Arrays and objects nested deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
    /// Something other than whitespace after the top-level value.
    TrailingData,
    /// The value is of another type than the one requested. The value is not consumed.
    WrongType {
        /// The type requested.
        expected: ValueKind,
        /// The type found.
        found: ValueKind,
    },
    /// The call does not fit the parser's position (e.g. [`Parser::next_member`] outside an
    /// object, or reading a value where a key is due). The parser is unchanged.
    WrongState,
}

/// The six kinds of JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
    /// `"..."`
    String,
    /// `-1.5e3`
    Number,
    /// `true` or `false`
    Bool,
    /// `null`
    Null,
}

/// The decoded string does not fit the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the decoded UTF-8 string needs.
    pub needed: usize,
    /// Bytes the buffer has.
    pub capacity: usize,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Object => "object",
            ValueKind::Array => "array",
            ValueKind::String => "string",
            ValueKind::Number => "number",
            ValueKind::Bool => "bool",
            ValueKind::Null => "null",
        })
    }
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            JsonErrorKind::UnexpectedEnd => f.write_str("unexpected end of input"),
            JsonErrorKind::UnexpectedChar { found, expected } => {
                write!(f, "expected {expected}, found {found:?}")
            }
            JsonErrorKind::InvalidEscape => f.write_str("invalid escape sequence"),
            JsonErrorKind::LoneSurrogate => f.write_str("unpaired UTF-16 surrogate in \\u escape"),
            JsonErrorKind::ControlChar => f.write_str("raw control character in string"),
            JsonErrorKind::InvalidUtf8 => f.write_str("invalid UTF-8"),
            JsonErrorKind::UnescapedQuote => f.write_str("unescaped '\"' in string body"),
            JsonErrorKind::InvalidNumber => f.write_str("malformed number"),
            JsonErrorKind::NumberOutOfRange => f.write_str("number out of range"),
            JsonErrorKind::NotAnInteger => f.write_str("expected an integer"),
            JsonErrorKind::TooDeep => write!(f, "nesting deeper than {MAX_JSON_DEPTH}"),
            JsonErrorKind::TrailingData => f.write_str("trailing data after the document"),
            JsonErrorKind::WrongType { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            JsonErrorKind::WrongState => f.write_str("call does not fit the parser position"),
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON error at byte {}: {}", self.offset, self.kind)
    }
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "string needs {} bytes, buffer has {}",
            self.needed, self.capacity
        )
    }
}

impl core::error::Error for JsonError {}
impl core::error::Error for BufferTooSmall {}

const fn err(offset: usize, kind: JsonErrorKind) -> JsonError {
    JsonError { offset, kind }
}

/// A pull parser over one JSON document.
///
/// The caller pulls values in document order: [`Parser::begin_object`] then
/// [`Parser::next_member`] until it returns `None`, [`Parser::begin_array`] then
/// [`Parser::next_element`] until it returns `false`, and one of the scalar readers
/// ([`Parser::f64`], [`Parser::u64`], [`Parser::bool`], [`Parser::string`], ...) or
/// [`Parser::skip`] for every value. A member or element whose value the caller does not read is
/// skipped (and validated) automatically. [`Parser::finish`] validates whatever is left and rejects
/// trailing data.
///
/// ```
/// use picoformer::safetensors::Parser;
///
/// let mut p = Parser::new(br#"{"decoder": {"dim": 128, "rotary": true}, "note": [1, 2]}"#);
/// let (mut dim, mut rotary) = (0, false);
/// p.begin_object()?;
/// while let Some(key) = p.next_member()? {
///     if key == "decoder" {
///         p.begin_object()?;
///         while let Some(key) = p.next_member()? {
///             if key == "dim" {
///                 dim = p.u64()?;
///             } else if key == "rotary" {
///                 rotary = p.bool()?;
///             }
///         }
///     }
/// }
/// p.finish()?;
/// assert_eq!((dim, rotary), (128, true));
/// # Ok::<(), picoformer::safetensors::JsonError>(())
/// ```
///
/// Strictness: the grammar of RFC 8259 is enforced (no leading zeros, no `1.`, no `.5`, no
/// trailing commas, no control characters in strings, valid UTF-8, valid escapes; lone UTF-16
/// surrogates in `\u` escapes are rejected because they are not Unicode scalar values). Nesting is
/// limited to [`MAX_JSON_DEPTH`]. Duplicate object keys are not detected here (the safetensors
/// reader checks its own keys).
///
/// After an error other than [`JsonErrorKind::WrongType`] or [`JsonErrorKind::WrongState`]
/// (which leave the parser unchanged) the parser's position is unspecified; further calls
/// return errors or garbage but never panic.
#[derive(Clone, Debug)]
pub struct Parser<'a> {
    src: Src<'a>,
    depth: u8,
    /// Bit `d` set: the container at depth `d + 1` is an array.
    arrays: u32,
    /// No member/element has been started in the innermost container yet.
    first: bool,
    /// A value is due (the root, a member's value, or an array element).
    expect_value: bool,
}

impl<'a> Parser<'a> {
    /// A parser over raw JSON text.
    pub const fn new(json: &'a [u8]) -> Self {
        Self::with_src(Src::new(json, false))
    }

    /// A parser over the body of a JSON string literal (the bytes between its quotes, escapes
    /// not undone) whose decoded content is a JSON document, e.g. `{\"dim\": 128}`.
    pub const fn new_escaped(body: &'a [u8]) -> Self {
        Self::with_src(Src::new(body, true))
    }

    const fn with_src(src: Src<'a>) -> Self {
        Parser {
            src,
            depth: 0,
            arrays: 0,
            first: true,
            expect_value: true,
        }
    }

    /// Current byte offset into the raw source.
    pub const fn offset(&self) -> usize {
        self.src.pos
    }

    /// Number of currently open arrays and objects.
    pub const fn depth(&self) -> usize {
        self.depth as usize
    }

    fn here(&self, kind: JsonErrorKind) -> JsonError {
        err(self.src.pos, kind)
    }

    fn skip_ws(&mut self) -> Result<(), JsonError> {
        while let Some(' ' | '\t' | '\n' | '\r') = self.src.peek()? {
            self.src.bump();
        }
        Ok(())
    }

    fn top_is_array(&self) -> bool {
        self.depth > 0 && self.arrays & (1 << (self.depth - 1)) != 0
    }

    /// Positions at the next value and returns its first character.
    fn value_start(&mut self) -> Result<char, JsonError> {
        if !self.expect_value {
            return Err(self.here(JsonErrorKind::WrongState));
        }
        self.skip_ws()?;
        self.src
            .peek()?
            .ok_or(self.here(JsonErrorKind::UnexpectedEnd))
    }

    fn kind_of(&self, c: char) -> Result<ValueKind, JsonError> {
        Ok(match c {
            '{' => ValueKind::Object,
            '[' => ValueKind::Array,
            '"' => ValueKind::String,
            '-' | '0'..='9' => ValueKind::Number,
            't' | 'f' => ValueKind::Bool,
            'n' => ValueKind::Null,
            found => {
                return Err(self.here(JsonErrorKind::UnexpectedChar {
                    found,
                    expected: "a value",
                }))
            }
        })
    }

    /// Positions at the next value and checks its kind, without consuming anything.
    fn expect_kind(&mut self, expected: ValueKind) -> Result<(), JsonError> {
        let c = self.value_start()?;
        let found = self.kind_of(c)?;
        if found != expected {
            return Err(self.here(JsonErrorKind::WrongType { expected, found }));
        }
        Ok(())
    }

    fn value_done(&mut self) {
        self.expect_value = false;
        self.first = false;
    }

    /// The kind of the next value, without consuming it.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongState`] if no value is due here; [`JsonErrorKind::UnexpectedEnd`] or
    /// [`JsonErrorKind::UnexpectedChar`] if no value starts here.
    pub fn kind(&mut self) -> Result<ValueKind, JsonError> {
        let c = self.value_start()?;
        self.kind_of(c)
    }

    fn open(&mut self, array: bool) -> Result<(), JsonError> {
        if self.depth as usize >= MAX_JSON_DEPTH {
            return Err(self.here(JsonErrorKind::TooDeep));
        }
        self.src.bump();
        let bit = 1 << self.depth;
        if array {
            self.arrays |= bit;
        } else {
            self.arrays &= !bit;
        }
        self.depth += 1;
        self.first = true;
        self.expect_value = false;
        Ok(())
    }

    fn close(&mut self) {
        self.src.bump();
        self.depth -= 1;
        self.first = false;
        self.expect_value = false;
    }

    /// Enters the object that is the next value. Then call [`next_member`](Self::next_member).
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if the value is not an object, [`JsonErrorKind::TooDeep`]
    /// beyond [`MAX_JSON_DEPTH`], or the errors of [`kind`](Self::kind).
    pub fn begin_object(&mut self) -> Result<(), JsonError> {
        self.expect_kind(ValueKind::Object)?;
        self.open(false)
    }

    /// Enters the array that is the next value. Then call [`next_element`](Self::next_element).
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if the value is not an array, [`JsonErrorKind::TooDeep`]
    /// beyond [`MAX_JSON_DEPTH`], or the errors of [`kind`](Self::kind).
    pub fn begin_array(&mut self) -> Result<(), JsonError> {
        self.expect_kind(ValueKind::Array)?;
        self.open(true)
    }

    /// Advances to the next member of the innermost open object and returns its key; the member's
    /// value is read next. Returns `None` (and leaves the object) at its end. If the previous
    /// member's value was not read, it is skipped first.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongState`] if the innermost open container is not an object; syntax
    /// errors in the object.
    pub fn next_member(&mut self) -> Result<Option<JsonStr<'a>>, JsonError> {
        if self.depth == 0 || self.top_is_array() {
            return Err(self.here(JsonErrorKind::WrongState));
        }
        if self.expect_value {
            self.skip()?;
        }
        self.skip_ws()?;
        match self.src.peek()? {
            None => return Err(self.here(JsonErrorKind::UnexpectedEnd)),
            Some('}') => {
                self.close();
                return Ok(None);
            }
            Some(',') if !self.first => {
                self.src.bump();
                self.skip_ws()?;
            }
            Some('"') if self.first => {}
            Some(found) => {
                let expected = if self.first {
                    "'\"' or '}'"
                } else {
                    "',' or '}'"
                };
                return Err(self.here(JsonErrorKind::UnexpectedChar { found, expected }));
            }
        }
        match self.src.peek()? {
            Some('"') => {}
            Some(found) => {
                return Err(self.here(JsonErrorKind::UnexpectedChar {
                    found,
                    expected: "'\"'",
                }))
            }
            None => return Err(self.here(JsonErrorKind::UnexpectedEnd)),
        }
        let key = self.read_string()?;
        self.skip_ws()?;
        match self.src.next()? {
            Some(':') => {}
            Some(found) => {
                return Err(err(
                    self.src.pos - 1,
                    JsonErrorKind::UnexpectedChar {
                        found,
                        expected: "':'",
                    },
                ))
            }
            None => return Err(self.here(JsonErrorKind::UnexpectedEnd)),
        }
        self.first = false;
        self.expect_value = true;
        Ok(Some(key))
    }

    /// Advances to the next element of the innermost open array: returns `true` if there is one
    /// (read it next), `false` (and leaves the array) at its end. If the previous element was not
    /// read, it is skipped first.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongState`] if the innermost open container is not an array; syntax
    /// errors in the array.
    pub fn next_element(&mut self) -> Result<bool, JsonError> {
        if !self.top_is_array() {
            return Err(self.here(JsonErrorKind::WrongState));
        }
        if self.expect_value {
            self.skip()?;
        }
        self.skip_ws()?;
        match self.src.peek()? {
            None => return Err(self.here(JsonErrorKind::UnexpectedEnd)),
            Some(']') => {
                self.close();
                return Ok(false);
            }
            Some(',') if !self.first => self.src.bump(),
            Some(_) if self.first => {}
            Some(found) => {
                return Err(self.here(JsonErrorKind::UnexpectedChar {
                    found,
                    expected: "',' or ']'",
                }))
            }
        }
        self.first = false;
        self.expect_value = true;
        Ok(true)
    }

    /// Skips (and validates) the rest of the innermost open array or object, and leaves it.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongState`] if no container is open; syntax errors in the skipped part.
    pub fn end_container(&mut self) -> Result<(), JsonError> {
        if self.depth == 0 {
            return Err(self.here(JsonErrorKind::WrongState));
        }
        let target = self.depth - 1;
        while self.depth > target {
            if self.top_is_array() {
                self.next_element()?;
            } else {
                self.next_member()?;
            }
        }
        Ok(())
    }

    /// Reads the next value, a string.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if it is not a string; string syntax errors.
    pub fn string(&mut self) -> Result<JsonStr<'a>, JsonError> {
        self.expect_kind(ValueKind::String)?;
        let s = self.read_string()?;
        self.value_done();
        Ok(s)
    }

    /// Reads a string whose opening quote is the next character.
    fn read_string(&mut self) -> Result<JsonStr<'a>, JsonError> {
        self.src.bump();
        let start = self.src.pos;
        let end = loop {
            let here = self.src.pos;
            match self.src.next()? {
                None => return Err(err(here, JsonErrorKind::UnexpectedEnd)),
                Some('"') => break here,
                Some('\\') => {
                    let src = &mut self.src;
                    unescape(&mut || src.next(), here)?;
                }
                Some(c) if c < ' ' => return Err(err(here, JsonErrorKind::ControlChar)),
                Some(_) => {}
            }
        };
        // Raw text is whole UTF-8 characters and ASCII escapes, so this cannot fail.
        let raw = (self.src.raw.get(start..end))
            .and_then(|raw| core::str::from_utf8(raw).ok())
            .ok_or(err(start, JsonErrorKind::InvalidUtf8))?;
        Ok(JsonStr {
            raw,
            escaped: self.src.escaped,
        })
    }

    fn literal(&mut self, word: &str) -> Result<(), JsonError> {
        for expected in word.chars() {
            match self.src.peek()? {
                Some(c) if c == expected => self.src.bump(),
                Some(found) => {
                    return Err(self.here(JsonErrorKind::UnexpectedChar {
                        found,
                        expected: "a literal (true, false, null)",
                    }))
                }
                None => return Err(self.here(JsonErrorKind::UnexpectedEnd)),
            }
        }
        self.value_done();
        Ok(())
    }

    /// Reads the next value, `true` or `false`.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if it is not a bool; [`JsonErrorKind::UnexpectedChar`] for a
    /// misspelt literal.
    pub fn bool(&mut self) -> Result<bool, JsonError> {
        self.expect_kind(ValueKind::Bool)?;
        if self.src.peek()? == Some('t') {
            self.literal("true")?;
            Ok(true)
        } else {
            self.literal("false")?;
            Ok(false)
        }
    }

    /// Reads the next value, `null`.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if it is not null; [`JsonErrorKind::UnexpectedChar`] for a
    /// misspelt literal.
    pub fn null(&mut self) -> Result<(), JsonError> {
        self.expect_kind(ValueKind::Null)?;
        self.literal("null")
    }

    /// Reads a scalar value, or enters a container.
    fn skip_start(&mut self) -> Result<(), JsonError> {
        match self.kind()? {
            ValueKind::Object => self.begin_object(),
            ValueKind::Array => self.begin_array(),
            ValueKind::String => self.string().map(drop),
            ValueKind::Number => self.number().map(drop),
            ValueKind::Bool => self.bool().map(drop),
            ValueKind::Null => self.null(),
        }
    }

    /// Skips (and validates) the next value, however deeply nested (up to [`MAX_JSON_DEPTH`] in
    /// total).
    ///
    /// # Errors
    /// Any syntax error inside the value; [`JsonErrorKind::TooDeep`].
    pub fn skip(&mut self) -> Result<(), JsonError> {
        let base = self.depth;
        self.skip_start()?;
        while self.depth > base {
            let more = if self.top_is_array() {
                self.next_element()?
            } else {
                self.next_member()?.is_some()
            };
            if more {
                self.skip_start()?;
            }
        }
        Ok(())
    }

    /// Validates the rest of the document: reads (skips) the root value if it was not read,
    /// leaves all open containers, and checks that only whitespace follows.
    ///
    /// # Errors
    /// Syntax errors in the remaining part; [`JsonErrorKind::TrailingData`].
    pub fn finish(&mut self) -> Result<(), JsonError> {
        if self.depth == 0 && self.expect_value {
            self.skip()?;
        }
        while self.depth > 0 {
            self.end_container()?;
        }
        self.skip_ws()?;
        if self.src.peek()?.is_some() {
            return Err(self.here(JsonErrorKind::TrailingData));
        }
        Ok(())
    }
}
