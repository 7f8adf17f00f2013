//! The parser's grammar, errors and conversions.

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
    let ok = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
    assert!(render(&ok).is_ok());
    let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
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
