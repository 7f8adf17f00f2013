//! Decimal to `f64`, correctly rounded (ties to even) and without a panic path: the number's
//! significant digits, in a fixed ring buffer, are multiplied and divided by powers of two until
//! the integer part is the `f64`'s significand, and the digits left decide the rounding.
//!
//! Every step is exact but one: digits beyond [`CAP`] are dropped, and if any of them was nonzero
//! the last digit kept is made odd. That keeps the value strictly between the same two numbers of
//! `CAP - 1` significant digits as the exact one, and every rounding boundary of an `f64` (a
//! midpoint between two of them, scaled by the powers of two applied so far) has at most 767
//! significant digits, so the value stays on the same side of each, and is a tie only if the
//! exact one is. Speed is not a goal (only metadata numbers come here): the loops are bounded by
//! the range checks, at most a few hundred shifts of at most [`CAP`] digits.

/// The ring buffer's size: indices are taken modulo it (a mask), so no index can be out of bounds.
const RING: usize = 1024;
/// Significant digits kept (more than the 768 that decide a rounding, and room for the 19 digits
/// a multiplication by `2^60` can add in front).
const CAP: usize = 1000;
/// The largest shift at once: `10 · 2^60 + 9` still fits in a `u64`.
const MAX_SHIFT: u32 = 60;

/// A decimal number `0.d₁d₂…dₙ · 10^dp` being built from its digits, then converted.
pub(super) struct Decimal {
    /// Digit `i` is at `(start + i) % RING`; the first is nonzero once there is one.
    ring: [u8; RING],
    start: usize,
    len: usize,
    /// The position of the decimal point (saturating: far outside the `f64` range either way).
    dp: i64,
}

impl Decimal {
    pub(super) const fn new() -> Self {
        Decimal {
            ring: [0; RING],
            start: 0,
            len: 0,
            dp: 0,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.ring[(self.start.wrapping_add(i)) % RING]
    }

    fn set(&mut self, i: usize, d: u8) {
        self.ring[(self.start.wrapping_add(i)) % RING] = d;
    }

    /// Appends a digit (`0..=9`) of the integer part, or of the fraction if `fraction`.
    pub(super) fn push(&mut self, d: u8, fraction: bool) {
        if self.len == 0 && d == 0 {
            // A leading zero: only its place counts.
            self.dp = self.dp.saturating_sub(i64::from(fraction));
            return;
        }
        if self.len < CAP {
            self.set(self.len, d);
            self.len += 1;
        } else if d != 0 {
            self.jam();
        }
        self.dp = self.dp.saturating_add(i64::from(!fraction));
    }

    /// Records that nonzero digits beyond the last one kept were dropped.
    fn jam(&mut self) {
        if let Some(i) = self.len.checked_sub(1) {
            let d = self.at(i);
            self.set(i, d | 1);
        }
    }

    /// Drops digits beyond [`CAP`] (jamming), then trailing zeros.
    fn trim(&mut self) {
        let mut dropped = false;
        while self.len > CAP {
            self.len -= 1;
            dropped |= self.at(self.len) != 0;
        }
        if dropped {
            self.jam();
        }
        while self.len > 0 && self.at(self.len - 1) == 0 {
            self.len -= 1;
        }
    }

    /// Multiplies by `2^k` (`1 <= k <= MAX_SHIFT`), in place from the last digit; the carry left
    /// becomes new leading digits, in front of `start`.
    fn shl(&mut self, k: u32) {
        let mut carry = 0u64;
        for i in (0..self.len).rev() {
            let v = (u64::from(self.at(i)) << k) + carry;
            self.set(i, (v % 10) as u8);
            carry = v / 10;
        }
        while carry > 0 {
            self.start = self.start.wrapping_sub(1) % RING;
            self.set(0, (carry % 10) as u8);
            carry /= 10;
            self.len += 1;
            self.dp += 1;
        }
        self.trim();
    }

    /// Divides by `2^k` (`1 <= k <= MAX_SHIFT`), in place from the first digit (each digit
    /// written at or before the one last read).
    fn shr(&mut self, k: u32) {
        let mask = (1u64 << k) - 1;
        let (mut read, mut acc) = (0, 0u64);
        // Up to the first nonzero digit of the quotient (the value is nonzero: `len > 0`).
        while acc >> k == 0 {
            let d = if read < self.len { self.at(read) } else { 0 };
            acc = acc * 10 + u64::from(d);
            read += 1;
        }
        self.dp -= read as i64 - 1;
        let mut len = 0;
        loop {
            if len < CAP {
                self.set(len, (acc >> k) as u8);
                len += 1;
            } else {
                // Only the remainder is left (`read >= len >= CAP >= self.len`).
                if acc != 0 {
                    self.len = len;
                    self.jam();
                }
                break;
            }
            acc &= mask;
            if read < self.len {
                acc = acc * 10 + u64::from(self.at(read));
                read += 1;
            } else if acc != 0 {
                acc *= 10;
            } else {
                break;
            }
        }
        self.len = len;
        self.trim();
    }

    /// The nearest `f64` to `±self · 10^exp` (ties to even); infinite beyond the largest finite.
    /// Leaves `self` scaled by a power of two (by reference: a copy would double the stack).
    pub(super) fn nearest_f64(&mut self, negative: bool, exp: i64) -> f64 {
        let sign = u64::from(negative) << 63;
        self.trim();
        self.dp = self.dp.saturating_add(exp);
        if self.len == 0 || self.dp < -324 {
            // Below 10^-324, under half the smallest subnormal.
            return f64::from_bits(sign);
        }
        if self.dp > 310 {
            // At least 10^309.
            return f64::from_bits(sign | f64::INFINITY.to_bits());
        }
        // The value is self · 2^e2; first brought into [1/2, 1).
        let mut e2: i64 = 0;
        loop {
            if self.dp > 0 {
                // At least 10^(dp-1), which stays at least 1/2 divided by 2^(3(dp-1)+1).
                let k = (3 * (self.dp - 1) + 1).min(i64::from(MAX_SHIFT)) as u32;
                self.shr(k);
                e2 += i64::from(k);
            } else if self.dp < 0 {
                // Below 10^dp, which stays below 1 multiplied by 2^(-3dp).
                let k = (-3 * self.dp).min(i64::from(MAX_SHIFT)) as u32;
                self.shl(k);
                e2 -= i64::from(k);
            } else if self.at(0) < 5 {
                self.shl(1);
                e2 -= 1;
            } else {
                break;
            }
        }
        if e2 > 1024 {
            // At least 2^1024.
            return f64::from_bits(sign | f64::INFINITY.to_bits());
        }
        // The significand's bits: 53 for a normal number (value · 2^53 in [2^52, 2^53) with
        // exponent e2 - 53); fewer for a subnormal one, whose exponent is -1074.
        let bits = (e2 + 1074).min(53);
        if bits < 0 {
            // Below 2^-1075.
            return f64::from_bits(sign);
        }
        if bits > 0 {
            self.shl(bits as u32);
        }
        // The integer part (below 2^53, so at most 16 digits) and the first digit after it.
        let int_len = self.dp.clamp(0, 16) as usize;
        let mut m = 0u64;
        for i in 0..int_len {
            let d = if i < self.len { self.at(i) } else { 0 };
            m = m * 10 + u64::from(d);
        }
        let next = if int_len < self.len {
            self.at(int_len)
        } else {
            0
        };
        // Digits are trimmed: any after `next` means some nonzero one.
        let above_half = next > 5 || (next == 5 && self.len > int_len + 1);
        let tie = next == 5 && self.len == int_len + 1;
        m += u64::from(above_half || (tie && m & 1 == 1));
        // A normal number's biased exponent minus one goes under the implicit bit of `m`, and a
        // carry out of `m` moves to the exponent; 2^1024 comes out as the infinity's bits.
        let exponent = if bits == 53 { (e2 + 1021) as u64 } else { 0 };
        f64::from_bits(sign | ((exponent << 52) + m))
    }
}
