//! The decimal to `f64` conversion (`float.rs`) against `core`'s parse and against exact
//! midpoints between neighbouring `f64`s (ties to even, and a hair either side).

extern crate std;
use super::*;
use std::string::String;
use std::vec::Vec;

/// The conversion of `s` (plain), `Err` with the kind if it fails.
fn plain(s: &str) -> Result<u64, JsonErrorKind> {
    Parser::new(s.as_bytes())
        .f64()
        .map(f64::to_bits)
        .map_err(|e| e.kind)
}

/// As [`plain`], with every other character of `s` written as a `\u00XX` escape in an escaped
/// source.
fn escaped(s: &str) -> Result<u64, JsonErrorKind> {
    let body: String = s
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                std::format!("\\u{:04x}", c as u32)
            } else {
                c.into()
            }
        })
        .collect();
    Parser::new_escaped(body.as_bytes())
        .f64()
        .map(f64::to_bits)
        .map_err(|e| e.kind)
}

/// What the conversion must give for `s`: `core`'s nearest `f64`, or out of range if infinite.
fn core_f64(s: &str) -> Result<u64, JsonErrorKind> {
    let v: f64 = s.parse().unwrap();
    if v.is_finite() {
        Ok(v.to_bits())
    } else {
        Err(JsonErrorKind::NumberOutOfRange)
    }
}

/// Checks `s` against `core` in both sources.
fn check(s: &str) -> Result<(), proptest::test_runner::TestCaseError> {
    let want = core_f64(s);
    proptest::prop_assert_eq!(plain(s), want, "plain {}", s);
    proptest::prop_assert_eq!(escaped(s), want, "escaped {}", s);
    Ok(())
}

/// The decimal digits (most significant first) of `m · 2^twos · 5^fives`.
fn digits(m: u128, twos: u32, fives: u32) -> Vec<u8> {
    let mut d: Vec<u8> = std::format!("{m}")
        .bytes()
        .map(|b| b - b'0')
        .rev()
        .collect();
    for f in core::iter::repeat_n(2, twos as usize).chain(core::iter::repeat_n(5, fives as usize)) {
        let mut carry = 0;
        for x in d.iter_mut() {
            let v = *x * f + carry;
            *x = v % 10;
            carry = v / 10;
        }
        if carry > 0 {
            d.push(carry);
        }
    }
    d.reverse();
    d
}

/// `digits` as text (without leading zeros) followed by `e{exp}`.
fn text(digits: &[u8], exp: i64) -> String {
    let first = digits
        .iter()
        .position(|&d| d != 0)
        .unwrap_or(digits.len() - 1);
    let mut s: String = digits[first..]
        .iter()
        .map(|&d| char::from(b'0' + d))
        .collect();
    s.push_str(&std::format!("e{exp}"));
    s
}

/// The exact midpoint above the finite `f64` `x > 0` (for the largest, the midpoint towards
/// 2^1024), as digits `D` with `value = D · 10^exp`.
fn midpoint_above(x: f64) -> (Vec<u8>, i64) {
    let bits = x.to_bits();
    let (biased, frac) = ((bits >> 52) as i64, bits & ((1 << 52) - 1));
    // x = m · 2^e with the implicit bit.
    let (m, e) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | 1 << 52, biased - 1075)
    };
    // (2m + 1) · 2^(e - 1)
    let (m2, q) = (u128::from(m) * 2 + 1, e - 1);
    if q >= 0 {
        (digits(m2, q as u32, 0), 0)
    } else {
        // 2^q = 5^-q · 10^q
        (digits(m2, 0, (-q) as u32), q)
    }
}

/// `D` minus one unit in its last place (`D > 0`).
fn decrement(d: &mut [u8]) {
    for x in d.iter_mut().rev() {
        if *x > 0 {
            *x -= 1;
            return;
        }
        *x = 9;
    }
}

/// Checks the midpoint above `x` (ties to even), and a hair above and below it, written with
/// `extra` more digits.
fn check_midpoint(x: f64, extra: usize) -> Result<(), proptest::test_runner::TestCaseError> {
    let next = f64::from_bits(x.to_bits() + 1);
    let even = if x.to_bits() & 1 == 0 { x } else { next };
    let expect = |v: f64| {
        if v.is_finite() {
            Ok(v.to_bits())
        } else {
            Err(JsonErrorKind::NumberOutOfRange)
        }
    };
    let (mut d, exp) = midpoint_above(x);
    let tie = text(&d, exp);
    proptest::prop_assert_eq!(plain(&tie), expect(even), "tie {}", tie);
    check(&tie)?;
    // A tie with trailing zeros after the decimal point.
    let int: String = d.iter().map(|&d| char::from(b'0' + d)).collect();
    let zeros = std::format!("{int}.{}e{exp}", "0".repeat(extra));
    proptest::prop_assert_eq!(plain(&zeros), expect(even), "tie {}", zeros);
    // D·10^extra + 1 and D·10^extra - 1, at 10^(exp - extra).
    let len = d.len();
    d.resize(len + extra, 0);
    let exp = exp - extra as i64;
    let mut above = d.clone();
    if let Some(last) = above.last_mut() {
        *last = 1;
    }
    let above = text(&above, exp);
    proptest::prop_assert_eq!(plain(&above), expect(next), "above {}", above);
    check(&above)?;
    decrement(&mut d);
    let below = text(&d, exp);
    proptest::prop_assert_eq!(plain(&below), expect(x), "below {}", below);
    check(&below)?;
    Ok(())
}

#[test]
fn boundaries() {
    let min_normal = f64::MIN_POSITIVE;
    let max_subnormal = f64::from_bits(min_normal.to_bits() - 1);
    for x in [
        5e-324,
        1e-323,
        max_subnormal,
        min_normal,
        1.0,
        0.1,
        9007199254740992.0,
        1e23,
        f64::MAX,
        f64::from_bits(f64::MAX.to_bits() - 1),
    ] {
        for extra in [1, 30, 400] {
            check_midpoint(x, extra).unwrap();
        }
    }
    // Half the smallest subnormal rounds to zero (ties to even); above it, to the smallest.
    let (d, exp) = (digits(1, 0, 1075), -1075);
    assert_eq!(plain(&text(&d, exp)), Ok(0));
    assert_eq!(
        plain(&std::format!(
            "{}1e{}",
            text(&d, 0).trim_end_matches("e0"),
            exp - 1
        )),
        Ok(1)
    );
}

#[test]
fn fixed_cases() {
    let out = Err(JsonErrorKind::NumberOutOfRange);
    for (s, want) in [
        ("0", Ok(0)),
        ("-0", Ok(1 << 63)),
        ("-0.0e5", Ok(1 << 63)),
        ("-1e-400", Ok(1 << 63)),
        ("0e999999999999999999999999", Ok(0)),
        ("1e-99999999999999999999999", Ok(0)),
        ("-1e99999999999999999999999", out),
        ("1.7976931348623157e308", Ok(f64::MAX.to_bits())),
        ("1.7976931348623158e308", Ok(f64::MAX.to_bits())),
        ("1.7976931348623159e308", out),
        (
            "179769313486231580793728971405301e276",
            Ok(f64::MAX.to_bits()),
        ),
        ("2.4703282292062327e-324", Ok(0)),
        ("2.4703282292062328e-324", Ok(1)),
        ("4.9406564584124654e-324", Ok(1)),
        ("2.2250738585072011e-308", Ok(0x000f_ffff_ffff_ffff)),
        ("2.2250738585072012e-308", Ok(0x0010_0000_0000_0000)),
        ("9007199254740993", Ok(9007199254740992f64.to_bits())),
        ("9007199254740995", Ok(9007199254740996f64.to_bits())),
        ("1e23", Ok(1e23f64.to_bits())),
        ("0.1", Ok(0.1f64.to_bits())),
    ] {
        assert_eq!(plain(s), want, "{s}");
        assert_eq!(escaped(s), want, "{s}");
        assert_eq!(core_f64(s), want, "{s}");
    }
    // Long runs of zeros in front of or behind the digits, with exponents moving them back.
    for s in [
        std::format!("0.{}1e2000", "0".repeat(2000)),
        std::format!("0.{}1e1990", "0".repeat(2000)),
        std::format!("1{}e-2300", "0".repeat(2000)),
        std::format!("1{}e-1700", "0".repeat(2000)),
        std::format!("{}e-5000", "7".repeat(5000)),
        std::format!("{}.{}e-4690", "3".repeat(5000), "1".repeat(3000)),
    ] {
        check(&s).unwrap();
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    /// Midpoints between random neighbours, anywhere in the range.
    #[test]
    fn midpoints_tie_to_even(bits in 1u64..0x7fef_ffff_ffff_ffff, extra in 1usize..300) {
        check_midpoint(f64::from_bits(bits), extra)?;
    }

    /// Midpoints among subnormals and just above.
    #[test]
    fn subnormal_midpoints(bits in 1u64..0x0030_0000_0000_0000, extra in 1usize..300) {
        check_midpoint(f64::from_bits(bits), extra)?;
    }

    /// Random digit strings, up to far more than the kept digits, at any scale.
    #[test]
    fn digit_strings_equal_core(
        neg in proptest::bool::ANY,
        int in "0|[1-9][0-9]{0,30}",
        frac in proptest::option::of("[0-9]{1,1200}"),
        exp in -1500i64..600,
    ) {
        let s = std::format!(
            "{}{int}{}e{exp}",
            if neg { "-" } else { "" },
            frac.map(|d| std::format!(".{d}")).unwrap_or_default(),
        );
        check(&s)?;
    }

    /// Numbers of 17 digits near the ends of the range and of the subnormals.
    #[test]
    fn boundary_scales_equal_core(m in 10_000_000_000_000_000u64..100_000_000_000_000_000, e in proptest::sample::select(std::vec![-341i64, -340, -339, -324, -323, -308, -307, -306, 291, 292]) ) {
        check(&std::format!("{m}e{e}"))?;
    }
}
