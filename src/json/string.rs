//! Reading characters: UTF-8, backslash escapes, the character source that undoes the escapes of
//! an outer string literal on the fly, and the [`JsonStr`] handles of validated strings.

use core::cmp::Ordering;
use core::fmt;

use super::{err, BufferTooSmall, JsonError, JsonErrorKind, Parser};

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
pub(super) fn unescape(
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
pub(super) struct Src<'a> {
    pub(super) raw: &'a [u8],
    pub(super) pos: usize,
    pub(super) escaped: bool,
    /// The decoded character at `pos` and its raw length, once peeked.
    cur: Option<(char, u8)>,
}

impl<'a> Src<'a> {
    pub(super) const fn new(raw: &'a [u8], escaped: bool) -> Self {
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

    pub(super) fn peek(&mut self) -> Result<Option<char>, JsonError> {
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

    pub(super) fn bump(&mut self) {
        if let Some((_, len)) = self.cur.take() {
            self.pos += len as usize;
        }
    }

    pub(super) fn next(&mut self) -> Result<Option<char>, JsonError> {
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
    pub(super) raw: &'a str,
    /// The raw text is the body of an outer string literal too (two levels of escapes).
    pub(super) escaped: bool,
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
        let too_small = BufferTooSmall {
            needed,
            capacity: buf.len(),
        };
        if needed > buf.len() {
            return Err(too_small);
        }
        let mut n = 0;
        for c in self.chars() {
            for &b in c.encode_utf8(&mut [0; 4]).as_bytes() {
                // Cannot fail: `needed` bytes fit.
                *buf.get_mut(n).ok_or(too_small)? = b;
                n += 1;
            }
        }
        // Whole characters were written, so this cannot fail.
        (buf.get(..n))
            .and_then(|b| core::str::from_utf8(b).ok())
            .ok_or(too_small)
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
