//! A small allocation-free JSON pull parser.
//!
//! It reads two kinds of source without copying:
//!
//! 1. raw JSON text ([`Parser::new`]);
//! 2. the *body of a JSON string literal* whose content is itself a JSON document
//!    ([`Parser::new_escaped`]). The escapes of the outer literal (`\"`, `\\`, `\uXXXX`, ...) are
//!    undone on the fly while the inner document is parsed. This is how safetensors
//!    `__metadata__` values carry nested JSON, e.g. `{\"decoder\": {\"dim\": 128}}`.
//!
//! The caller pulls values in document order: [`Parser::begin_object`] then
//! [`Parser::next_member`] until it returns `None`, [`Parser::begin_array`] then
//! [`Parser::next_element`] until it returns `false`, and one of the scalar readers
//! ([`Parser::f64`], [`Parser::u64`], [`Parser::bool`], [`Parser::string`], ...) or
//! [`Parser::skip`] for every value. A member or element whose value the caller does not read is
//! skipped (and validated) automatically. [`Parser::finish`] validates whatever is left and rejects
//! trailing data.
//!
//! ```
//! use picoformer::json::Parser;
//!
//! let mut p = Parser::new(br#"{"decoder": {"dim": 128, "rotary": true}, "note": [1, 2]}"#);
//! let (mut dim, mut rotary) = (0, false);
//! p.begin_object()?;
//! while let Some(key) = p.next_member()? {
//!     if key == "decoder" {
//!         p.begin_object()?;
//!         while let Some(key) = p.next_member()? {
//!             if key == "dim" {
//!                 dim = p.u64()?;
//!             } else if key == "rotary" {
//!                 rotary = p.bool()?;
//!             }
//!         }
//!     }
//! }
//! p.finish()?;
//! assert_eq!((dim, rotary), (128, true));
//! # Ok::<(), picoformer::json::JsonError>(())
//! ```
//!
//! Strings are returned as [`JsonStr`] handles that borrow the raw text; they compare against a
//! `&str` (after unescaping) without allocating, and can be decoded into a caller buffer.
//!
//! Strictness: the grammar of RFC 8259 is enforced (no leading zeros, no `1.`, no `.5`, no
//! trailing commas, no control characters in strings, valid UTF-8, valid escapes; lone UTF-16
//! surrogates in `\u` escapes are rejected because they are not Unicode scalar values). Nesting is
//! limited to [`MAX_DEPTH`]. Duplicate object keys are not detected here.

#![deny(unsafe_code)]

use core::cmp::Ordering;
use core::fmt;

/// Maximum nesting depth of arrays and objects; deeper documents fail with
/// [`JsonErrorKind::TooDeep`].
pub const MAX_DEPTH: usize = 32;

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
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
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
            JsonErrorKind::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH}"),
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

/// Decodes one UTF-8 character at `pos` (which must be in bounds).
fn utf8_at(raw: &[u8], pos: usize) -> Result<(char, u8), JsonError> {
    let b0 = raw[pos];
    if b0 < 0x80 {
        return Ok((b0 as char, 1));
    }
    let len = match b0 {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Err(err(pos, JsonErrorKind::InvalidUtf8)),
    };
    let bytes = raw
        .get(pos..pos + len)
        .ok_or(err(pos, JsonErrorKind::InvalidUtf8))?;
    match core::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(c) => Ok((c, len as u8)),
        None => Err(err(pos, JsonErrorKind::InvalidUtf8)),
    }
}

/// Reads four hex digits.
fn hex4(
    next: &mut impl FnMut() -> Result<Option<char>, JsonError>,
    at: usize,
) -> Result<u32, JsonError> {
    let mut v = 0;
    for _ in 0..4 {
        let c = next()?.ok_or(err(at, JsonErrorKind::UnexpectedEnd))?;
        let d = c
            .to_digit(16)
            .ok_or(err(at, JsonErrorKind::InvalidEscape))?;
        v = v * 16 + d;
    }
    Ok(v)
}

/// Decodes the escape whose backslash (at `at`) was just consumed; `next` yields the following
/// characters.
fn unescape(
    next: &mut impl FnMut() -> Result<Option<char>, JsonError>,
    at: usize,
) -> Result<char, JsonError> {
    let c = next()?.ok_or(err(at, JsonErrorKind::UnexpectedEnd))?;
    Ok(match c {
        '"' => '"',
        '\\' => '\\',
        '/' => '/',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'u' => {
            let hi = hex4(next, at)?;
            let cp = match hi {
                0xD800..=0xDBFF => {
                    let lone = err(at, JsonErrorKind::LoneSurrogate);
                    if next()? != Some('\\') || next()? != Some('u') {
                        return Err(lone);
                    }
                    let lo = hex4(next, at)?;
                    if !(0xDC00..=0xDFFF).contains(&lo) {
                        return Err(lone);
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                }
                0xDC00..=0xDFFF => return Err(err(at, JsonErrorKind::LoneSurrogate)),
                _ => hi,
            };
            char::from_u32(cp).ok_or(err(at, JsonErrorKind::LoneSurrogate))?
        }
        _ => return Err(err(at, JsonErrorKind::InvalidEscape)),
    })
}

/// A character source over raw bytes: either plain JSON text, or a string body whose escapes are
/// undone on the fly.
#[derive(Clone, Copy, Debug)]
struct Src<'a> {
    raw: &'a [u8],
    pos: usize,
    escaped: bool,
    /// The decoded character at `pos` and its raw length, once peeked.
    cur: Option<(char, u8)>,
}

impl<'a> Src<'a> {
    const fn new(raw: &'a [u8], escaped: bool) -> Self {
        Src {
            raw,
            pos: 0,
            escaped,
            cur: None,
        }
    }

    fn decode(&self) -> Result<(char, u8), JsonError> {
        let (c, len) = utf8_at(self.raw, self.pos)?;
        if !self.escaped {
            return Ok((c, len));
        }
        match c {
            '\\' => {
                let raw = self.raw;
                let mut p = self.pos + 1;
                let c = unescape(
                    &mut || {
                        let b = raw.get(p).map(|&b| b as char);
                        p += 1;
                        Ok(b)
                    },
                    self.pos,
                )?;
                Ok((c, (p - self.pos) as u8))
            }
            '"' => Err(err(self.pos, JsonErrorKind::UnescapedQuote)),
            c if c < ' ' => Err(err(self.pos, JsonErrorKind::ControlChar)),
            c => Ok((c, len)),
        }
    }

    fn peek(&mut self) -> Result<Option<char>, JsonError> {
        if let Some((c, _)) = self.cur {
            return Ok(Some(c));
        }
        if self.pos >= self.raw.len() {
            return Ok(None);
        }
        let cur = self.decode()?;
        self.cur = Some(cur);
        Ok(Some(cur.0))
    }

    fn bump(&mut self) {
        if let Some((_, len)) = self.cur.take() {
            self.pos += len as usize;
        }
    }

    fn next(&mut self) -> Result<Option<char>, JsonError> {
        let c = self.peek()?;
        self.bump();
        Ok(c)
    }
}

/// A JSON string as found in the source: its raw body (escapes not undone) plus what is needed to
/// decode it. Compares with `&str` after decoding, without allocating.
///
/// Obtained from [`Parser::string`] and [`Parser::next_member`], which have validated it.
#[derive(Clone, Copy, Debug)]
pub struct JsonStr<'a> {
    raw: &'a str,
    /// The raw text is the body of an outer string literal too (two levels of escapes).
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// The raw text between the quotes, escapes not undone (for an escaped source, both levels of
    /// escapes are still there). Good for error messages.
    pub const fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the raw text contains no escapes, i.e. [`raw`](Self::raw) is the decoded string.
    pub fn is_plain(&self) -> bool {
        !self.raw.as_bytes().contains(&b'\\')
    }

    /// The decoded characters.
    pub fn chars(&self) -> Chars<'a> {
        Chars {
            src: Src::new(self.raw.as_bytes(), self.escaped),
        }
    }

    /// Length in bytes of the decoded string as UTF-8.
    pub fn decoded_len(&self) -> usize {
        if self.is_plain() {
            self.raw.len()
        } else {
            self.chars().map(char::len_utf8).sum()
        }
    }

    /// Decodes the string into `buf` and returns the decoded part of it.
    ///
    /// # Errors
    /// [`BufferTooSmall`] with the length needed if the decoded string does not fit.
    pub fn decode_into<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, BufferTooSmall> {
        let needed = self.decoded_len();
        if needed > buf.len() {
            return Err(BufferTooSmall {
                needed,
                capacity: buf.len(),
            });
        }
        let mut n = 0;
        for c in self.chars() {
            n += c.encode_utf8(&mut buf[n..]).len();
        }
        // Whole characters were written, so this cannot fail.
        core::str::from_utf8(&buf[..n]).map_err(|_| BufferTooSmall {
            needed,
            capacity: buf.len(),
        })
    }

    /// Whether the decoded string equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        if self.is_plain() {
            self.raw == s
        } else {
            self.chars().eq(s.chars())
        }
    }

    /// Compares the decoded strings by code point (the same order as `str`).
    pub fn cmp_decoded(&self, other: &JsonStr<'_>) -> Ordering {
        if self.is_plain() && other.is_plain() {
            self.raw.cmp(other.raw)
        } else {
            self.chars().cmp(other.chars())
        }
    }

    /// A parser over the decoded content, for strings whose content is JSON.
    ///
    /// Returns `None` if this string already comes from an escaped source (a third level of
    /// escaping is not supported).
    pub fn parser(&self) -> Option<Parser<'a>> {
        (!self.escaped).then(|| Parser::new_escaped(self.raw.as_bytes()))
    }
}

impl PartialEq for JsonStr<'_> {
    fn eq(&self, other: &JsonStr<'_>) -> bool {
        self.cmp_decoded(other) == Ordering::Equal
    }
}

impl Eq for JsonStr<'_> {}

impl PartialEq<str> for JsonStr<'_> {
    fn eq(&self, other: &str) -> bool {
        self.eq_str(other)
    }
}

impl PartialEq<&str> for JsonStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.eq_str(other)
    }
}

impl fmt::Display for JsonStr<'_> {
    /// Writes the decoded string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        if self.is_plain() {
            return f.write_str(self.raw);
        }
        self.chars().try_for_each(|c| f.write_char(c))
    }
}

/// Iterator over the decoded characters of a [`JsonStr`].
#[derive(Clone, Debug)]
pub struct Chars<'a> {
    src: Src<'a>,
}

impl Iterator for Chars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        // The string was validated when it was parsed, so decoding errors cannot happen; should
        // one happen anyway, iteration just ends.
        let at = self.src.pos;
        match self.src.next().ok()?? {
            '\\' => {
                let src = &mut self.src;
                unescape(&mut || src.next(), at).ok()
            }
            c => Some(c),
        }
    }
}

/// A number the tokenizer has checked against the JSON grammar.
#[derive(Clone, Copy, Debug)]
struct Num {
    neg: bool,
    /// Had a fraction or an exponent.
    fractional: bool,
    /// The exact integer part, if it fits in a `u64`.
    int: Option<u64>,
    /// Where its raw text starts and ends in the source.
    start: usize,
    end: usize,
}

/// Significant digits [`decoded_f64`] keeps: more than the 767 that can decide how a decimal
/// number rounds to an `f64`.
const KEPT_DIGITS: usize = 800;

/// The nearest `f64` to a number whose raw text, in an escaped source, contains escapes (`\u0031`
/// for `1`): the decoded number, shortened to [`KEPT_DIGITS`] significant digits and one more
/// nonzero digit if any nonzero digit was dropped (which keeps it on the same side of every
/// rounding midpoint), as text parsed by `core`. `None` if it is not a JSON number.
#[cold]
#[inline(never)]
fn decoded_f64(raw: &[u8]) -> Option<f64> {
    let mut src = Src::new(raw, true);
    let mut text = [0u8; KEPT_DIGITS + 24];
    let mut len = 0;
    let (mut neg, mut frac, mut exp_part, mut exp_neg, mut sticky) =
        (false, false, false, false, false);
    // The value is text[..len] (as an integer) · 10^(scale + exponent).
    let (mut scale, mut exponent) = (0i64, 0i64);
    while let Some(c) = src.next().ok()? {
        match c {
            '-' if exp_part => exp_neg = true,
            '-' => neg = true,
            '+' => {}
            '.' => frac = true,
            'e' | 'E' => exp_part = true,
            '0'..='9' if exp_part => {
                let d = i64::from(c as u8 - b'0');
                exponent = exponent.saturating_mul(10).saturating_add(d);
            }
            '0'..='9' => {
                if len < KEPT_DIGITS && (len > 0 || c != '0') {
                    text[len] = c as u8;
                    len += 1;
                    scale -= i64::from(frac);
                } else if len == 0 {
                    // A leading zero: only its place counts.
                    scale -= i64::from(frac);
                } else {
                    scale += i64::from(!frac);
                    sticky |= c != '0';
                }
            }
            _ => return None,
        }
    }
    if len == 0 {
        return Some(if neg { -0.0 } else { 0.0 });
    }
    if sticky {
        text[len] = b'1';
        len += 1;
        scale -= 1;
    }
    let exponent = if exp_neg { -exponent } else { exponent };
    // Far beyond both ends of f64 (whose parse saturates such exponents too).
    let e = scale.saturating_add(exponent).clamp(-1 << 40, 1 << 40);
    text[len] = b'e';
    text[len + 1] = if e < 0 { b'-' } else { b'+' };
    len += 2;
    let digits = len;
    let mut m = e.unsigned_abs();
    loop {
        text[len] = b'0' + (m % 10) as u8;
        len += 1;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    text[digits..len].reverse();
    let v: f64 = core::str::from_utf8(&text[..len]).ok()?.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// A pull parser over one JSON document. See the [module docs](self) for the calling protocol.
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
        if self.depth as usize >= MAX_DEPTH {
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
    /// beyond [`MAX_DEPTH`], or the errors of [`kind`](Self::kind).
    pub fn begin_object(&mut self) -> Result<(), JsonError> {
        self.expect_kind(ValueKind::Object)?;
        self.open(false)
    }

    /// Enters the array that is the next value. Then call [`next_element`](Self::next_element).
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if the value is not an array, [`JsonErrorKind::TooDeep`]
    /// beyond [`MAX_DEPTH`], or the errors of [`kind`](Self::kind).
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
        let raw = core::str::from_utf8(&self.src.raw[start..end])
            .map_err(|_| err(start, JsonErrorKind::InvalidUtf8))?;
        Ok(JsonStr {
            raw,
            escaped: self.src.escaped,
        })
    }

    fn scan_number(&mut self) -> Result<Num, JsonError> {
        let start = self.src.pos;
        let bad = err(start, JsonErrorKind::InvalidNumber);
        let mut n = Num {
            neg: false,
            fractional: false,
            int: Some(0),
            start,
            end: start,
        };
        if self.src.peek()? == Some('-') {
            self.src.bump();
            n.neg = true;
        }
        match self.src.peek()? {
            Some('0') => {
                self.src.bump();
                if let Some('0'..='9') = self.src.peek()? {
                    return Err(bad);
                }
            }
            Some(c @ '1'..='9') => {
                let mut c = c;
                loop {
                    let d = c as u8 - b'0';
                    n.int = n
                        .int
                        .and_then(|v| v.checked_mul(10))
                        .and_then(|v| v.checked_add(d as u64));
                    self.src.bump();
                    match self.src.peek()? {
                        Some(next @ '0'..='9') => c = next,
                        _ => break,
                    }
                }
            }
            _ => return Err(bad),
        }
        if self.src.peek()? == Some('.') {
            self.src.bump();
            n.fractional = true;
            self.digits(bad)?;
        }
        if let Some('e' | 'E') = self.src.peek()? {
            self.src.bump();
            n.fractional = true;
            if let Some('-' | '+') = self.src.peek()? {
                self.src.bump();
            }
            self.digits(bad)?;
        }
        n.end = self.src.pos;
        Ok(n)
    }

    /// Consumes one or more decimal digits; `bad` if there is none.
    fn digits(&mut self, bad: JsonError) -> Result<(), JsonError> {
        let mut any = false;
        while let Some('0'..='9') = self.src.peek()? {
            self.src.bump();
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err(bad)
        }
    }

    fn number(&mut self) -> Result<Num, JsonError> {
        self.expect_kind(ValueKind::Number)?;
        let n = self.scan_number()?;
        self.value_done();
        Ok(n)
    }

    /// Reads the next value, a number, as the nearest `f64` (`core`'s correctly rounded
    /// conversion of its text: integers up to 2^53 are exact, `0.1`, `2.0`, `1e-5` are the
    /// nearest `f64`, tiny values round to zero).
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if it is not a number; [`JsonErrorKind::InvalidNumber`];
    /// [`JsonErrorKind::NumberOutOfRange`] if its nearest `f64` is infinite.
    pub fn f64(&mut self) -> Result<f64, JsonError> {
        let n = self.number()?;
        let raw = &self.src.raw[n.start..n.end];
        let v = if self.src.escaped && raw.contains(&b'\\') {
            decoded_f64(raw)
        } else {
            // The grammar admits only ASCII here, all of it in `core`'s float syntax.
            core::str::from_utf8(raw).ok().and_then(|s| s.parse().ok())
        };
        match v {
            Some(v) if v.is_finite() => Ok(v),
            Some(_) => Err(err(n.start, JsonErrorKind::NumberOutOfRange)),
            None => Err(err(n.start, JsonErrorKind::InvalidNumber)),
        }
    }

    fn integer(&mut self) -> Result<(bool, u64, usize), JsonError> {
        let n = self.number()?;
        let at = n.start;
        if n.fractional {
            return Err(err(at, JsonErrorKind::NotAnInteger));
        }
        let v = n.int.ok_or(err(at, JsonErrorKind::NumberOutOfRange))?;
        Ok((n.neg, v, at))
    }

    /// Reads the next value, an integer written without fraction or exponent, as a `u64`.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if it is not a number; [`JsonErrorKind::NotAnInteger`] for
    /// `1.0` or `1e3`; [`JsonErrorKind::NumberOutOfRange`] if negative or above `u64::MAX`;
    /// [`JsonErrorKind::InvalidNumber`].
    pub fn u64(&mut self) -> Result<u64, JsonError> {
        let (neg, v, at) = self.integer()?;
        if neg && v != 0 {
            return Err(err(at, JsonErrorKind::NumberOutOfRange));
        }
        Ok(v)
    }

    /// Reads the next value, an integer, as a `usize`.
    ///
    /// # Errors
    /// As [`u64`](Self::u64), and [`JsonErrorKind::NumberOutOfRange`] above `usize::MAX`.
    pub fn usize(&mut self) -> Result<usize, JsonError> {
        let at = self.src.pos;
        let v = self.u64()?;
        usize::try_from(v).map_err(|_| err(at, JsonErrorKind::NumberOutOfRange))
    }

    /// Reads the next value, an integer written without fraction or exponent, as an `i64`.
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if it is not a number; [`JsonErrorKind::NotAnInteger`];
    /// [`JsonErrorKind::NumberOutOfRange`] outside `i64`; [`JsonErrorKind::InvalidNumber`].
    pub fn i64(&mut self) -> Result<i64, JsonError> {
        let (neg, v, at) = self.integer()?;
        let out_of_range = err(at, JsonErrorKind::NumberOutOfRange);
        if neg {
            if v > i64::MAX as u64 + 1 {
                return Err(out_of_range);
            }
            Ok((v as i64).wrapping_neg())
        } else {
            i64::try_from(v).map_err(|_| out_of_range)
        }
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

    /// Skips (and validates) the next value, however deeply nested (up to [`MAX_DEPTH`] in
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn walk(p: &mut Parser<'_>, out: &mut String) -> Result<(), JsonError> {
        use std::fmt::Write;
        match p.kind()? {
            ValueKind::Object => {
                p.begin_object()?;
                out.push('{');
                while let Some(k) = p.next_member()? {
                    write!(out, "{k}:").unwrap();
                    walk(p, out)?;
                    out.push(',');
                }
                out.push('}');
            }
            ValueKind::Array => {
                p.begin_array()?;
                out.push('[');
                while p.next_element()? {
                    walk(p, out)?;
                    out.push(',');
                }
                out.push(']');
            }
            ValueKind::String => write!(out, "{}", p.string()?).unwrap(),
            ValueKind::Number => write!(out, "{}", p.f64()?).unwrap(),
            ValueKind::Bool => write!(out, "{}", p.bool()?).unwrap(),
            ValueKind::Null => {
                p.null()?;
                out.push_str("null");
            }
        }
        Ok(())
    }

    fn render(json: &str) -> Result<String, JsonError> {
        let mut p = Parser::new(json.as_bytes());
        let mut s = String::new();
        walk(&mut p, &mut s)?;
        p.finish()?;
        Ok(s)
    }

    fn kind(json: &str) -> JsonErrorKind {
        render(json).unwrap_err().kind
    }

    #[test]
    fn walks_documents() {
        assert_eq!(
            render(r#" {"a": [1, 2.5, -3e2, true, false, null, "x\ny"], "b": {}} "#).unwrap(),
            "{a:[1,2.5,-300,true,false,null,x\ny,],b:{},}"
        );
        assert_eq!(render("[]").unwrap(), "[]");
        assert_eq!(render("\"\\u00e9\\ud83d\\ude00\"").unwrap(), "é😀");
    }

    #[test]
    fn rejects_bad_numbers() {
        for bad in ["01", "-", "1.", "-01", "1e", "1e+", "1.e3", "-a"] {
            assert_eq!(kind(bad), JsonErrorKind::InvalidNumber, "{bad}");
        }
        assert!(matches!(
            kind(".5"),
            JsonErrorKind::UnexpectedChar { found: '.', .. }
        ));
        assert!(matches!(
            kind("+1"),
            JsonErrorKind::UnexpectedChar { found: '+', .. }
        ));
        assert_eq!(kind("1x"), JsonErrorKind::TrailingData);
        assert_eq!(kind("1e400"), JsonErrorKind::NumberOutOfRange);
    }

    #[test]
    fn rejects_bad_strings() {
        assert_eq!(kind("\"a\\x\""), JsonErrorKind::InvalidEscape);
        assert_eq!(kind("\"a\\u12g4\""), JsonErrorKind::InvalidEscape);
        assert_eq!(kind("\"\\ud800\""), JsonErrorKind::LoneSurrogate);
        assert_eq!(kind("\"\\udc00\""), JsonErrorKind::LoneSurrogate);
        assert_eq!(kind("\"\\ud800\\u0041\""), JsonErrorKind::LoneSurrogate);
        assert_eq!(kind("\"a\tb\""), JsonErrorKind::ControlChar);
        assert_eq!(kind("\"abc"), JsonErrorKind::UnexpectedEnd);
        assert_eq!(kind("\"\\u12"), JsonErrorKind::UnexpectedEnd);
        let mut p = Parser::new(b"\"\xff\"");
        assert_eq!(p.string().unwrap_err().kind, JsonErrorKind::InvalidUtf8);
        let mut p = Parser::new(b"\"\xe2\x82\"");
        assert_eq!(p.string().unwrap_err().kind, JsonErrorKind::InvalidUtf8);
        // Overlong encoding and surrogate encoded in UTF-8.
        let mut p = Parser::new(b"\"\xc0\xaf\"");
        assert_eq!(p.string().unwrap_err().kind, JsonErrorKind::InvalidUtf8);
        let mut p = Parser::new(b"\"\xed\xa0\x80\"");
        assert_eq!(p.string().unwrap_err().kind, JsonErrorKind::InvalidUtf8);
    }

    #[test]
    fn rejects_bad_structure() {
        assert_eq!(kind(""), JsonErrorKind::UnexpectedEnd);
        assert_eq!(kind("[1,2"), JsonErrorKind::UnexpectedEnd);
        assert_eq!(kind("{\"a\":1"), JsonErrorKind::UnexpectedEnd);
        assert!(matches!(
            kind("[1,]"),
            JsonErrorKind::UnexpectedChar { found: ']', .. }
        ));
        assert!(matches!(
            kind("{\"a\":1,}"),
            JsonErrorKind::UnexpectedChar { found: '}', .. }
        ));
        assert!(matches!(
            kind("{\"a\" 1}"),
            JsonErrorKind::UnexpectedChar { found: '1', .. }
        ));
        assert!(matches!(
            kind("{1:1}"),
            JsonErrorKind::UnexpectedChar { found: '1', .. }
        ));
        assert!(matches!(
            kind("[1 2]"),
            JsonErrorKind::UnexpectedChar { found: '2', .. }
        ));
        assert_eq!(kind("{} {}"), JsonErrorKind::TrailingData);
        assert!(matches!(kind("tru"), JsonErrorKind::UnexpectedEnd));
        assert!(matches!(
            kind("nul1"),
            JsonErrorKind::UnexpectedChar { found: '1', .. }
        ));
    }

    #[test]
    fn depth_limit() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(render(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(kind(&deep), JsonErrorKind::TooDeep);
        let mut p = Parser::new(deep.as_bytes());
        assert_eq!(p.skip().unwrap_err().kind, JsonErrorKind::TooDeep);
        assert_eq!(p.skip().unwrap_err().kind, JsonErrorKind::TooDeep);
    }

    #[test]
    fn skips_unread_values_and_finishes() {
        let mut p = Parser::new(br#"{"a": {"x": [1, {"y": 2}]}, "b": 3, "c": [4, 5]}"#);
        p.begin_object().unwrap();
        assert!(p.next_member().unwrap().unwrap() == "a");
        assert!(p.next_member().unwrap().unwrap() == "b");
        assert_eq!(p.u64().unwrap(), 3);
        assert!(p.next_member().unwrap().unwrap() == "c");
        p.begin_array().unwrap();
        assert!(p.next_element().unwrap());
        assert_eq!(p.i64().unwrap(), 4);
        p.finish().unwrap();

        let mut p = Parser::new(br#"{"a": [1, 2,, 3]}"#);
        p.begin_object().unwrap();
        assert!(p.finish().is_err());
    }

    #[test]
    fn wrong_type_and_state_leave_parser_unchanged() {
        let mut p = Parser::new(br#"{"a": "s"}"#);
        assert_eq!(p.next_member().unwrap_err().kind, JsonErrorKind::WrongState);
        p.begin_object().unwrap();
        assert_eq!(p.f64().unwrap_err().kind, JsonErrorKind::WrongState);
        assert!(p.next_member().unwrap().unwrap() == "a");
        assert_eq!(
            p.f64().unwrap_err().kind,
            JsonErrorKind::WrongType {
                expected: ValueKind::Number,
                found: ValueKind::String
            }
        );
        assert_eq!(
            p.next_element().unwrap_err().kind,
            JsonErrorKind::WrongState
        );
        assert!(p.string().unwrap() == "s");
        assert!(p.next_member().unwrap().is_none());
        p.finish().unwrap();
    }

    #[test]
    fn integers() {
        let read = |s: &str| Parser::new(s.as_bytes()).u64().map_err(|e| e.kind);
        assert_eq!(read("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            read("18446744073709551616"),
            Err(JsonErrorKind::NumberOutOfRange)
        );
        assert_eq!(read("-0"), Ok(0));
        assert_eq!(read("-1"), Err(JsonErrorKind::NumberOutOfRange));
        assert_eq!(read("1.0"), Err(JsonErrorKind::NotAnInteger));
        assert_eq!(read("1e2"), Err(JsonErrorKind::NotAnInteger));
        let read = |s: &str| Parser::new(s.as_bytes()).i64().map_err(|e| e.kind);
        assert_eq!(read("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(read("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(
            read("9223372036854775808"),
            Err(JsonErrorKind::NumberOutOfRange)
        );
        assert_eq!(
            read("-9223372036854775809"),
            Err(JsonErrorKind::NumberOutOfRange)
        );
    }

    fn f(s: &str) -> f64 {
        Parser::new(s.as_bytes()).f64().unwrap()
    }

    #[test]
    fn floats_match_core() {
        for s in [
            "0",
            "-0",
            "0.1",
            "2.0",
            "1e-5",
            "3.14159",
            "9007199254740993",
            "1e22",
            "1e23",
            "123456789012345678901234567890",
            "2.2250738585072014e-308",
            "4.9e-324",
            "5e-324",
            "2e-324",
            "3e-324",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "0.30000000000000004",
            "1.00000000000000011102230246251565404236316680908203125",
            "0.000000000000000000000000000000000001",
            "1e-400",
            "7.038531e-26",
        ] {
            let want: f64 = s.parse().unwrap();
            assert_eq!(f(s).to_bits(), want.to_bits(), "{s}");
            assert_eq!(f_escaped(s).to_bits(), want.to_bits(), "{s}");
        }
        assert!(f("-0").is_sign_negative());
        assert!(f_escaped("-0").is_sign_negative());
        assert_eq!(kind("1.8e308"), JsonErrorKind::NumberOutOfRange);
        assert_eq!(kind("-1e400"), JsonErrorKind::NumberOutOfRange);
        let escaped = |s: &str| Parser::new_escaped(escape_all(s).as_bytes()).f64();
        assert_eq!(
            escaped("1.8e308").unwrap_err().kind,
            JsonErrorKind::NumberOutOfRange
        );
        assert_eq!(
            escaped("1.").unwrap_err().kind,
            JsonErrorKind::InvalidNumber
        );
    }

    /// `s` with every character written as a `\u00XX` escape, as the body of a string literal.
    fn escape_all(s: &str) -> String {
        s.chars()
            .map(|c| std::format!("\\u{:04x}", c as u32))
            .collect()
    }

    fn f_escaped(s: &str) -> f64 {
        let body = escape_all(s);
        let mut p = Parser::new_escaped(body.as_bytes());
        let v = p.f64().unwrap();
        p.finish().unwrap();
        v
    }

    /// The decimal digits of `5^n`.
    fn pow5(n: u32) -> String {
        let mut digits = std::vec![1u32]; // little-endian
        for _ in 0..n {
            let mut carry = 0;
            for d in digits.iter_mut() {
                let v = *d * 5 + carry;
                *d = v % 10;
                carry = v / 10;
            }
            if carry > 0 {
                digits.push(carry);
            }
        }
        digits
            .iter()
            .rev()
            .map(|d| char::from(b'0' + *d as u8))
            .collect()
    }

    #[test]
    fn long_numbers_round_like_core() {
        // 2^-1075, half the smallest subnormal: 1075 decimals, 752 of them significant. It rounds
        // to 0 (ties to even); anything above it, however far down, rounds to 5e-324.
        let half = std::format!("0.{}{}", "0".repeat(1075 - 752), pow5(1075));
        assert_eq!(pow5(1075).len(), 752);
        for s in [
            half.clone(),
            std::format!("{half}{}1", "0".repeat(100)),
            std::format!("{half}{}", "0".repeat(100)),
            std::format!("{}.{}", "1".repeat(300), "5".repeat(600)),
            std::format!("{}e-900", "9".repeat(1000)),
            std::format!("0.{}1e-300", "0".repeat(1000)),
        ] {
            let want: f64 = s.parse().unwrap();
            assert_eq!(f(&s).to_bits(), want.to_bits(), "{s}");
            assert_eq!(f_escaped(&s).to_bits(), want.to_bits(), "{s}");
        }
        assert_eq!(f(&half), 0.0);
        assert_eq!(
            f_escaped(&std::format!("{half}{}1", "0".repeat(100))),
            5e-324
        );
    }

    proptest::proptest! {
        #[test]
        fn floats_equal_core(m in 0u64.., frac in 0u32..25, e in -360i32..330) {
            let s = std::format!("{}.{:0>w$}e{}", m / 10u64.pow(frac.min(19)), m % 10u64.pow(frac.min(19)), e, w = frac.min(19) as usize);
            let want: f64 = s.parse().unwrap();
            let got = Parser::new(s.as_bytes()).f64();
            if want.is_infinite() {
                proptest::prop_assert_eq!(got.unwrap_err().kind, JsonErrorKind::NumberOutOfRange);
            } else {
                proptest::prop_assert_eq!(got.unwrap().to_bits(), want.to_bits(), "{}", s);
                proptest::prop_assert_eq!(f_escaped(&s).to_bits(), want.to_bits(), "{}", s);
            }
        }

        #[test]
        fn up_to_19_digits_exact(m in 0u64..10_000_000_000_000_000_000, e in -345i32..310) {
            let s = std::format!("{m}e{e}");
            let want: f64 = s.parse().unwrap();
            let got = Parser::new(s.as_bytes()).f64();
            if want.is_infinite() {
                proptest::prop_assert_eq!(got.unwrap_err().kind, JsonErrorKind::NumberOutOfRange);
            } else {
                proptest::prop_assert_eq!(got.unwrap().to_bits(), want.to_bits(), "{}", s);
            }
        }

        #[test]
        fn short_decimals_exact(m in 0u64..1_000_000_000_000_000, e in -22i32..=22) {
            let s = std::format!("{m}e{e}");
            let want: f64 = s.parse().unwrap();
            proptest::prop_assert_eq!(f(&s).to_bits(), want.to_bits(), "{}", s);
        }

        #[test]
        fn escaped_digits_equal_plain(
            neg in proptest::bool::ANY,
            int in "0|[1-9][0-9]{0,40}",
            frac in proptest::option::of("[0-9]{1,900}"),
            exp in proptest::option::of(-400i32..400),
            escape in proptest::collection::vec(proptest::bool::ANY, 1..64),
        ) {
            let s = std::format!(
                "{}{int}{}{}",
                if neg { "-" } else { "" },
                frac.map(|d| std::format!(".{d}")).unwrap_or_default(),
                exp.map(|e| std::format!("e{e}")).unwrap_or_default(),
            );
            // Some characters escaped, the others as they are.
            let body: String = s
                .chars()
                .zip(escape.iter().cycle())
                .map(|(c, &e)| if e { std::format!("\\u{:04x}", c as u32) } else { c.into() })
                .collect();
            let plain = Parser::new(s.as_bytes()).f64().map(f64::to_bits);
            let escaped = Parser::new_escaped(body.as_bytes()).f64().map(f64::to_bits);
            proptest::prop_assert_eq!(plain.map_err(|e| e.kind), escaped.map_err(|e| e.kind), "{}", s);
        }
    }

    #[test]
    fn escaped_source() {
        // The body of "{\"a\": \"x\\\"y\", \"b\": [1, \"\\u00e9\"]}" as written in a JSON file.
        let body = br#"{\"a\": \"x\\\"y\", \"b\": [1, \"\u00e9\\u00e8\"], \"c\": {\"d\": 0.5}}"#;
        let mut p = Parser::new_escaped(body);
        let mut s = String::new();
        walk(&mut p, &mut s).unwrap();
        p.finish().unwrap();
        assert_eq!(s, "{a:x\"y,b:[1,éè,],c:{d:0.5,},}");

        let mut p = Parser::new_escaped(body);
        p.begin_object().unwrap();
        let k = p.next_member().unwrap().unwrap();
        assert_eq!(k.raw(), "a");
        assert!(k == "a");
        let v = p.string().unwrap();
        assert!(v == "x\"y");
        assert_eq!(std::format!("{v}"), "x\"y");
        let mut buf = [0u8; 3];
        assert_eq!(v.decode_into(&mut buf), Ok("x\"y"));
        let mut small = [0u8; 2];
        assert_eq!(
            v.decode_into(&mut small),
            Err(BufferTooSmall {
                needed: 3,
                capacity: 2
            })
        );
        assert!(v.parser().is_none());
    }

    #[test]
    fn escaped_source_errors() {
        let k = |b: &[u8]| {
            let mut p = Parser::new_escaped(b);
            p.skip().and_then(|_| p.finish()).unwrap_err()
        };
        assert_eq!(k(b"{\"a\": 1}").kind, JsonErrorKind::UnescapedQuote);
        assert_eq!(k(b"{\\\"a\\\": 1}\\q").kind, JsonErrorKind::InvalidEscape);
        assert_eq!(k(b"[1,\n2]").kind, JsonErrorKind::ControlChar);
        // An escaped newline is fine as whitespace, but not inside an inner string.
        assert!(Parser::new_escaped(b"[1,\\n2]").finish().is_ok());
        assert_eq!(k(b"\\\"a\\nb\\\"").kind, JsonErrorKind::ControlChar);
        assert_eq!(k(b"[1, 2\\").kind, JsonErrorKind::UnexpectedEnd);
        assert_eq!(k(b"\\ud800").kind, JsonErrorKind::LoneSurrogate);
        let e = k(b"[1, 2, x]");
        assert_eq!(e.offset, 7);
    }
}
