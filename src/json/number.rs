//! Reading numbers: the tokenizer checks the JSON grammar and keeps the integer part exactly;
//! floats are the text converted by [`Decimal`] (`float.rs`), correctly rounded.

use super::float::Decimal;
use super::string::Src;
use super::{err, JsonError, JsonErrorKind, Parser, ValueKind};

/// A number the tokenizer has checked against the JSON grammar.
#[derive(Clone, Copy, Debug)]
pub(super) struct Num {
    neg: bool,
    /// Had a fraction or an exponent.
    fractional: bool,
    /// The exact integer part, if it fits in a `u64`.
    int: Option<u64>,
    /// Where its raw text starts and ends in the source.
    start: usize,
    end: usize,
}

/// The nearest `f64` to a number's raw text (which may contain escapes, `\u0031` for `1`, in an
/// escaped source), correctly rounded by [`Decimal`]. `None` if it is not a JSON number.
#[cold]
#[inline(never)]
fn text_f64(raw: &[u8], escaped: bool) -> Option<f64> {
    let mut src = Src::new(raw, escaped);
    let mut digits = Decimal::new();
    let (mut neg, mut frac, mut exp_part, mut exp_neg) = (false, false, false, false);
    let mut exponent = 0i64;
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
            '0'..='9' => digits.push(c as u8 - b'0', frac),
            _ => return None,
        }
    }
    Some(digits.nearest_f64(neg, if exp_neg { -exponent } else { exponent }))
}

impl Parser<'_> {
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

    pub(super) fn number(&mut self) -> Result<Num, JsonError> {
        self.expect_kind(ValueKind::Number)?;
        let n = self.scan_number()?;
        self.value_done();
        Ok(n)
    }

    /// Reads the next value, a number, as the nearest `f64` (the correctly rounded conversion
    /// of its text, ties to even: integers up to 2^53 are exact, `0.1`, `2.0`, `1e-5` are the
    /// nearest `f64`, tiny values round to zero).
    ///
    /// # Errors
    /// [`JsonErrorKind::WrongType`] if it is not a number; [`JsonErrorKind::InvalidNumber`];
    /// [`JsonErrorKind::NumberOutOfRange`] if its nearest `f64` is infinite.
    pub fn f64(&mut self) -> Result<f64, JsonError> {
        let n = self.number()?;
        let v = self
            .src
            .raw
            .get(n.start..n.end)
            .and_then(|raw| text_f64(raw, self.src.escaped));
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
}
