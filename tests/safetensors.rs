//! Round trips and every error path of the safetensors reader, on files written by hand.

use half::{bf16, f16};
use picoformer::safetensors::{
    Dtype, FormatError, JsonErrorKind, SafeTensors, ValueKind, MAX_DIMS, MAX_METADATA, MAX_TENSORS,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// A tiny writer.

/// A tensor to write; `name` is the raw JSON string body (escapes allowed).
struct W<'a> {
    name: &'a str,
    dtype: &'a str,
    shape: &'a [usize],
    bytes: Vec<u8>,
}

fn w<'a>(name: &'a str, dtype: &'a str, shape: &'a [usize], bytes: Vec<u8>) -> W<'a> {
    W {
        name,
        dtype,
        shape,
        bytes,
    }
}

fn le<T: bytemuck::Pod>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}

/// Lays the tensors out back to back in the given order; `meta` pairs are raw JSON string
/// bodies. The header is padded with spaces to a multiple of 8.
fn write(tensors: &[W<'_>], meta: &[(&str, &str)]) -> Vec<u8> {
    let mut entries = Vec::new();
    if !meta.is_empty() {
        let kv: Vec<String> = meta
            .iter()
            .map(|(k, v)| format!("\"{k}\":\"{v}\""))
            .collect();
        entries.push(format!("\"__metadata__\":{{{}}}", kv.join(",")));
    }
    let mut data = Vec::new();
    for t in tensors {
        entries.push(format!(
            "\"{}\":{{\"dtype\":\"{}\",\"shape\":{:?},\"data_offsets\":[{},{}]}}",
            t.name,
            t.dtype,
            t.shape,
            data.len(),
            data.len() + t.bytes.len()
        ));
        data.extend_from_slice(&t.bytes);
    }
    let mut header = format!("{{{}}}", entries.join(","));
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    file(&header, &data)
}

/// Length prefix + header text as given + data.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut f = (header.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(header.as_bytes());
    f.extend_from_slice(data);
    f
}

/// One tensor entry's JSON.
fn entry(name: &str, dtype: &str, shape: &str, begin: u64, end: u64) -> String {
    format!(
        "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}"
    )
}

/// A file with the given entries (joined into the header object) and `data_len` zero bytes.
fn entries(list: &[String], data_len: usize) -> Vec<u8> {
    file(&format!("{{{}}}", list.join(",")), &vec![0; data_len])
}

/// Bytes stored at `shift` bytes past an 8-aligned address, so alignment is deterministic.
struct Aligned {
    words: Vec<u64>,
    shift: usize,
    len: usize,
}

impl Aligned {
    fn at(bytes: &[u8], shift: usize) -> Self {
        let mut words = vec![0u64; (bytes.len() + shift).div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[shift..shift + bytes.len()]
            .copy_from_slice(bytes);
        Aligned {
            words,
            shift,
            len: bytes.len(),
        }
    }

    fn new(bytes: &[u8]) -> Self {
        Self::at(bytes, 0)
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[self.shift..self.shift + self.len]
    }
}

fn parse_err(bytes: &[u8]) -> FormatError<'_> {
    SafeTensors::parse(bytes).unwrap_err()
}

// ---------------------------------------------------------------------------------------------
// Round trips.

#[test]
fn round_trip_all_view_types() {
    let f32s = [1.5f32, -2.0, 3.25, 0.0, 1e-7, f32::MAX];
    let f16s = [
        f16::from_f32(0.5),
        f16::from_f32(-65504.0),
        f16::from_f32(1.0),
    ];
    let bf16s = [bf16::from_f32(3.0), bf16::from_f32(-1e30)];
    let i64s = [i64::MIN, -1, 0, 7, i64::MAX];
    let i32s = [-5i32, 6];
    let f64s = [std::f64::consts::PI];
    let bytes = write(
        // Largest alignment first, as the reference writer does.
        &[
            w("pos", "I64", &[5], le(&i64s)),
            w("pi", "F64", &[], le(&f64s)),
            w("w.f32", "F32", &[2, 3], le(&f32s)),
            w("i", "I32", &[1, 2], le(&i32s)),
            w("w.f16", "F16", &[3], le(&f16s)),
            w("w.bf16", "BF16", &[2, 1], le(&bf16s)),
            w("mask", "BOOL", &[3], vec![1, 0, 1]),
            w("q", "I8", &[2], vec![0x80, 0x7f]),
            w("u", "U8", &[1], vec![200]),
        ],
        &[],
    );
    let buf = Aligned::new(&bytes);
    let st = SafeTensors::parse(buf.bytes()).unwrap();
    assert_eq!(st.len(), 9);
    assert!(!st.is_empty());
    assert_eq!(st.data_offset() % 8, 0);

    let t = st.tensor("w.f32").unwrap();
    assert_eq!(
        (t.name(), t.dtype(), t.shape(), t.numel()),
        ("w.f32", Dtype::F32, &[2, 3][..], 6)
    );
    assert_eq!(t.as_f32().unwrap(), &f32s);
    assert_eq!(t.data_offsets(), (48, 72));
    assert_eq!(t.file_offset(), st.data_offset() + 48);
    assert_eq!(st.tensor("w.f16").unwrap().as_f16().unwrap(), &f16s);
    assert_eq!(st.tensor("w.bf16").unwrap().as_bf16().unwrap(), &bf16s);
    assert_eq!(st.tensor("pos").unwrap().as_i64().unwrap(), &i64s);
    assert_eq!(st.tensor("i").unwrap().as_i32().unwrap(), &i32s);
    let pi = st.tensor("pi").unwrap();
    assert_eq!((pi.shape(), pi.numel()), (&[][..], 1));
    assert_eq!(pi.as_f64().unwrap(), &f64s);
    assert_eq!(st.tensor("mask").unwrap().data(), &[1, 0, 1]);
    assert_eq!(st.tensor("q").unwrap().as_i8().unwrap(), &[-128, 127]);
    assert_eq!(st.tensor("u").unwrap().as_u8().unwrap(), &[200]);
    assert!(st.tensor("nope").is_none());
    assert!(st.tensor("__metadata__").is_none());

    let names: Vec<&str> = st.tensors().map(|t| t.name()).collect();
    assert_eq!(
        names,
        ["pos", "pi", "w.f32", "i", "w.f16", "w.bf16", "mask", "q", "u"]
    );
    assert_eq!(
        st.tensors().map(|t| t.data().len()).sum::<usize>(),
        st.data().len()
    );
}

#[test]
fn wrong_dtype_view() {
    let bytes = write(&[w("a", "F16", &[2], le(&[f16::ONE, f16::ONE]))], &[]);
    let buf = Aligned::new(&bytes);
    let st = SafeTensors::parse(buf.bytes()).unwrap();
    let t = st.tensor("a").unwrap();
    assert_eq!(
        t.as_f32(),
        Err(FormatError::WrongDtype {
            tensor: "a",
            expected: Dtype::F32,
            actual: Dtype::F16
        })
    );
    assert!(t.as_bf16().is_err());
    assert!(t.as_u8().is_err());
}

#[test]
fn misaligned_tensor() {
    // "b" (F32) starts 2 bytes into the data section, which starts 8-aligned.
    let bytes = write(
        &[
            w("a", "U8", &[2], vec![1, 2]),
            w("b", "F32", &[1], le(&[1.0f32])),
            w("c", "U8", &[2], vec![3, 4]),
        ],
        &[],
    );
    let buf = Aligned::new(&bytes);
    let st = SafeTensors::parse(buf.bytes()).unwrap();
    let b = st.tensor("b").unwrap();
    let err = b.as_f32().unwrap_err();
    assert_eq!(
        err,
        FormatError::Misaligned {
            tensor: "b",
            offset: st.data_offset() + 2,
            align: 4
        }
    );
    assert!(!err.to_string().contains("buffer itself"));
    // The raw bytes are still there.
    assert_eq!(b.data(), 1.0f32.to_le_bytes());

    // A well-placed f64 tensor in a file buffer that is itself misaligned.
    let bytes = write(&[w("d", "F64", &[1], le(&[2.0f64]))], &[]);
    let buf = Aligned::at(&bytes, 4);
    let st = SafeTensors::parse(buf.bytes()).unwrap();
    let err = st.tensor("d").unwrap().as_f64().unwrap_err();
    assert_eq!(
        err,
        FormatError::Misaligned {
            tensor: "d",
            offset: st.data_offset(),
            align: 8
        }
    );
    assert!(err.to_string().contains("buffer itself"));
    // u8 views never need alignment.
    let bytes = write(&[w("u", "U8", &[1], vec![9])], &[]);
    let buf = Aligned::at(&bytes, 3);
    let st = SafeTensors::parse(buf.bytes()).unwrap();
    assert_eq!(st.tensor("u").unwrap().as_u8().unwrap(), &[9]);
}

#[test]
fn metadata_with_nested_escaped_json() {
    // As a Python json.dumps of a config would write it into "__metadata__".
    let config = r#"{\"decoder\": {\"dim\": 128, \"depth\": 6, \"heads\": 8, \"rotary_pos_emb\": true, \"ff_glu\": false, \"dropout\": 0.1, \"eps\": 1e-5, \"scale\": -2.0, \"norm\": null, \"name\": \"d\\u00e9c\\\\\\\"o\\ud83d\\ude00\", \"layers\": [1, [2, 3], {\"x\": 4}]}, \"vocab\": 256}"#;
    let bytes = write(
        &[w("w", "F32", &[1], le(&[1.0f32]))],
        &[
            ("format", "pt"),
            ("config", config),
            ("k\\u00e9y", "caf\\u00e9 \\\"ok\\\""),
        ],
    );
    let buf = Aligned::new(&bytes);
    let st = SafeTensors::parse(buf.bytes()).unwrap();

    let format = st.metadata("format").unwrap();
    assert!(format == "pt");
    assert!(format != "tf");
    assert_eq!(format.raw(), "pt");
    let v = st.metadata("kéy").unwrap();
    assert!(v == "café \"ok\"");
    assert_eq!(v.raw(), "caf\\u00e9 \\\"ok\\\"");
    assert_eq!(v.value().to_string(), "café \"ok\"");
    let mut buf8 = [0u8; 32];
    assert_eq!(v.value().decode_into(&mut buf8).unwrap(), "café \"ok\"");
    assert!(st.metadata("key").is_none());
    assert!(st.metadata("missing").is_none());
    let keys: Vec<String> = st.metadata_entries().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys, ["format", "config", "kéy"]);

    // Walk the config as a loader would.
    let cfg = st.metadata("config").unwrap();
    assert_eq!(cfg.raw(), config);
    let mut p = cfg.parser();
    let (mut dim, mut depth, mut heads, mut vocab) = (0u64, 0usize, 0i64, 0u64);
    let (mut rotary, mut glu) = (false, true);
    let (mut dropout, mut eps, mut scale) = (0.0, 0.0, 0.0);
    let mut saw_null = false;
    let mut name = String::new();
    let mut layers = Vec::new();
    p.begin_object().unwrap();
    while let Some(key) = p.next_member().unwrap() {
        if key == "decoder" {
            p.begin_object().unwrap();
            while let Some(key) = p.next_member().unwrap() {
                match key.to_string().as_str() {
                    "dim" => dim = p.u64().unwrap(),
                    "depth" => depth = p.usize().unwrap(),
                    "heads" => heads = p.i64().unwrap(),
                    "rotary_pos_emb" => rotary = p.bool().unwrap(),
                    "ff_glu" => glu = p.bool().unwrap(),
                    "dropout" => dropout = p.f64().unwrap(),
                    "eps" => eps = p.f64().unwrap(),
                    "scale" => scale = p.f64().unwrap(),
                    "norm" => {
                        assert_eq!(p.kind().unwrap(), ValueKind::Null);
                        p.null().unwrap();
                        saw_null = true;
                    }
                    "name" => name = p.string().unwrap().to_string(),
                    "layers" => {
                        p.begin_array().unwrap();
                        assert!(p.next_element().unwrap());
                        layers.push(p.u64().unwrap());
                        assert!(p.next_element().unwrap());
                        p.skip().unwrap();
                        assert!(p.next_element().unwrap());
                        p.begin_object().unwrap();
                        let k = p.next_member().unwrap().unwrap();
                        assert!(k == "x");
                        assert_eq!(k.raw(), "x");
                        layers.push(p.u64().unwrap());
                        assert!(p.next_member().unwrap().is_none());
                        assert!(!p.next_element().unwrap());
                    }
                    other => panic!("unexpected key {other}"),
                }
            }
        } else {
            assert!(key == "vocab");
            vocab = p.u64().unwrap();
        }
    }
    p.finish().unwrap();
    assert_eq!((dim, depth, heads, vocab), (128, 6, 8, 256));
    assert!(rotary && !glu && saw_null);
    assert_eq!((dropout, eps, scale), (0.1, 1e-5, -2.0));
    assert_eq!(name, "déc\\\"o😀");
    assert_eq!(layers, [1, 4]);

    // A non-JSON metadata value fails to parse as JSON, with an offset into the raw body.
    let err = format.parser().finish().unwrap_err();
    assert_eq!(err.offset, 0);
}

#[test]
fn unicode_escaped_tensor_names() {
    let bytes = write(
        &[
            w("\\u00e9\\ud83d\\ude00", "U8", &[1], vec![1]),
            w("tab\\there", "U8", &[1], vec![2]),
            w("plain", "U8", &[1], vec![3]),
        ],
        &[],
    );
    let st = SafeTensors::parse(&bytes).unwrap();
    let t = st.tensor("é😀").unwrap();
    assert_eq!(t.name(), "\\u00e9\\ud83d\\ude00");
    assert_eq!(t.data(), &[1]);
    assert_eq!(st.tensor("tab\there").unwrap().data(), &[2]);
    assert!(st.tensor("tab\\there").is_none());
}

#[test]
fn empty_and_padded_files() {
    let f = file("{}", &[]);
    let st = SafeTensors::parse(&f).unwrap();
    assert!(st.is_empty());
    assert_eq!(st.tensors().count(), 0);
    assert_eq!(st.metadata_entries().count(), 0);
    let f = file("{}      ", &[]);
    let st = SafeTensors::parse(&f).unwrap();
    assert_eq!(st.header(), "{}      ");
    let f = file(r#"{"__metadata__":{}} "#, &[]);
    let st = SafeTensors::parse(&f).unwrap();
    assert!(st.is_empty());
    // Zero-sized tensors at tensor boundaries, at 0 and at the end.
    let list = [
        entry("z0", "F32", "[0]", 0, 0),
        entry("a", "U8", "[4]", 0, 4),
        entry("z1", "F32", "[3, 0]", 4, 4),
        entry("b", "U8", "[4]", 4, 8),
        entry("z2", "F16", "[0, 0]", 8, 8),
    ];
    let bytes = entries(&list, 8);
    let st = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(st.len(), 5);
    assert_eq!(st.tensor("z1").unwrap().as_f32().unwrap(), &[] as &[f32]);
}

#[test]
fn tensors_listed_in_any_order() {
    // Reverse data order forces the multi-pass coverage check.
    let n = 300;
    let mut list: Vec<String> = (0..n)
        .map(|i| entry(&format!("t{i:03}"), "F32", "[1]", i * 4, i * 4 + 4))
        .collect();
    list.reverse();
    let bytes = entries(&list, n as usize * 4);
    let st = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(st.len(), n as usize);
    assert_eq!(st.tensor("t123").unwrap().data_offsets(), (492, 496));

    // Names unsorted and offsets shuffled.
    let mut list: Vec<String> = (0..n)
        .map(|i| {
            let k = (i * 7) % n; // a permutation
            entry(&format!("n{}", (i * 13) % n), "U8", "[2]", k * 2, k * 2 + 2)
        })
        .collect();
    list.swap(3, 250);
    let st_bytes = entries(&list, n as usize * 2);
    assert!(SafeTensors::parse(&st_bytes).is_ok());
}

#[test]
fn many_tensors_up_to_the_cap() {
    let list: Vec<String> = (0..MAX_TENSORS as u64)
        .map(|i| entry(&format!("t{i:05}"), "U8", "[1]", i, i + 1))
        .collect();
    let bytes = entries(&list, MAX_TENSORS);
    assert_eq!(SafeTensors::parse(&bytes).unwrap().len(), MAX_TENSORS);
    let mut list = list;
    list.push(entry("t99999", "U8", "[0]", 0, 0));
    let bytes = entries(&list, MAX_TENSORS);
    assert_eq!(
        parse_err(&bytes),
        FormatError::TooManyTensors { max: MAX_TENSORS }
    );
}

// ---------------------------------------------------------------------------------------------
// Error paths, each with its exact variant.

#[test]
fn prefix_errors() {
    for n in 0..8 {
        assert_eq!(
            parse_err(&vec![0; n]),
            FormatError::TooShort { file_len: n }
        );
    }
    let mut f = file("{}", &[]);
    f[0] = 3;
    assert_eq!(
        parse_err(&f),
        FormatError::HeaderTooLarge {
            header_len: 3,
            file_len: 10
        }
    );
    let mut f = vec![0xff; 8];
    f.extend_from_slice(b"{}");
    assert_eq!(
        parse_err(&f),
        FormatError::HeaderTooLarge {
            header_len: u64::MAX,
            file_len: 10
        }
    );
}

fn json_kind(bytes: &[u8]) -> (usize, JsonErrorKind) {
    match parse_err(bytes) {
        FormatError::Json { offset, kind } => (offset, kind),
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

#[test]
fn header_json_errors() {
    assert_eq!(json_kind(&file("", &[])), (8, JsonErrorKind::UnexpectedEnd));
    assert_eq!(
        json_kind(&file(" {}", &[])),
        (
            8,
            JsonErrorKind::UnexpectedChar {
                found: ' ',
                expected: "'{' at the start of the header"
            }
        )
    );
    assert!(matches!(
        json_kind(&file("[]", &[])),
        (8, JsonErrorKind::UnexpectedChar { found: '[', .. })
    ));
    let mut f = file("{\"a?\":1}", &[]);
    f[11] = 0xff;
    assert_eq!(json_kind(&f), (11, JsonErrorKind::InvalidUtf8));
    assert_eq!(
        json_kind(&file("{", &[])),
        (9, JsonErrorKind::UnexpectedEnd)
    );
    assert_eq!(
        json_kind(&file("{}x", &[])),
        (10, JsonErrorKind::TrailingData)
    );
    assert_eq!(
        json_kind(&file("{} {}", &[])),
        (11, JsonErrorKind::TrailingData)
    );
    assert_eq!(
        json_kind(&file("{}\0", &[])),
        (10, JsonErrorKind::TrailingData)
    );
    assert!(matches!(
        json_kind(&file(r#"{"a":{"dtype":"F32",}}"#, &[])),
        (_, JsonErrorKind::UnexpectedChar { found: '}', .. })
    ));
    assert_eq!(
        json_kind(&file(r#"{"a":{"dtype":"F\32"}}"#, &[])),
        (24, JsonErrorKind::InvalidEscape)
    );
    assert_eq!(
        json_kind(&file("{\"a\":{\"dtype\":\"F\n32\"}}", &[])),
        (24, JsonErrorKind::ControlChar)
    );
    // Wrong JSON types inside an entry.
    assert_eq!(
        json_kind(&file(r#"{"a":[]}"#, &[])).1,
        JsonErrorKind::WrongType {
            expected: ValueKind::Object,
            found: ValueKind::Array
        }
    );
    assert_eq!(
        json_kind(&file(r#"{"a":{"dtype":4}}"#, &[])).1,
        JsonErrorKind::WrongType {
            expected: ValueKind::String,
            found: ValueKind::Number
        }
    );
    assert_eq!(
        json_kind(&entries(&[entry("a", "U8", "\"1\"", 0, 1)], 1)).1,
        JsonErrorKind::WrongType {
            expected: ValueKind::Array,
            found: ValueKind::String
        }
    );
    assert_eq!(
        json_kind(&entries(&[entry("a", "U8", "[1.0]", 0, 1)], 1)).1,
        JsonErrorKind::NotAnInteger
    );
    assert_eq!(
        json_kind(&entries(&[entry("a", "U8", "[-1]", 0, 1)], 1)).1,
        JsonErrorKind::NumberOutOfRange
    );
    assert_eq!(
        json_kind(&entries(&[entry("a", "U8", "[01]", 0, 1)], 1)).1,
        JsonErrorKind::InvalidNumber
    );
    assert_eq!(
        json_kind(&file(r#"{"__metadata__":[]}"#, &[])).1,
        JsonErrorKind::WrongType {
            expected: ValueKind::Object,
            found: ValueKind::Array
        }
    );
    let deep = format!("{{\"__metadata__\":{{\"a\":{}}}}}", "[".repeat(40));
    assert_eq!(
        parse_err(&file(&deep, &[])),
        FormatError::MetadataNotString {
            key: "a",
            found: ValueKind::Array
        }
    );
}

#[test]
fn field_errors() {
    let e = |json: &str| parse_err(&file(json, &[0; 4])).to_owned_variant();
    assert_eq!(
        e(r#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#),
        FormatError::MissingField {
            tensor: "a",
            field: "dtype"
        }
        .to_owned_variant()
    );
    assert_eq!(
        e(r#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#),
        FormatError::MissingField {
            tensor: "a",
            field: "shape"
        }
        .to_owned_variant()
    );
    assert_eq!(
        e(r#"{"a":{"dtype":"F32","shape":[1]}}"#),
        FormatError::MissingField {
            tensor: "a",
            field: "data_offsets"
        }
        .to_owned_variant()
    );
    let bytes = file(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#,
        &[0; 4],
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::UnknownField {
            tensor: "a",
            field: "extra"
        }
    );
    let bytes = file(
        r#"{"a":{"dtype":"F32","shape":[1],"dtype":"F32","data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::DuplicateField {
            tensor: "a",
            field: "dtype"
        }
    );
    let bytes = file(
        r#"{"a":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::DuplicateField {
            tensor: "a",
            field: "shape"
        }
    );
    let bytes = file(
        r#"{"a":{"data_offsets":[0,4],"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::DuplicateField {
            tensor: "a",
            field: "data_offsets"
        }
    );
}

/// Lets `assert_eq!` compare errors borrowed from different buffers.
trait OwnedVariant {
    fn to_owned_variant(&self) -> String;
}

impl OwnedVariant for FormatError<'_> {
    fn to_owned_variant(&self) -> String {
        format!("{self:?}")
    }
}

#[test]
fn dtype_and_shape_errors() {
    let bytes = entries(&[entry("a", "F31", "[1]", 0, 4)], 4);
    assert_eq!(
        parse_err(&bytes),
        FormatError::UnknownDtype {
            tensor: "a",
            dtype: "F31"
        }
    );
    let bytes = entries(&[entry("a", "f32", "[1]", 0, 4)], 4);
    assert!(matches!(
        parse_err(&bytes),
        FormatError::UnknownDtype { .. }
    ));
    // An escaped dtype name is decoded before matching.
    let bytes = entries(&[entry("a", "F\\u0033\\u0032", "[1]", 0, 4)], 4);
    assert!(SafeTensors::parse(&bytes).is_ok());

    let ok = format!("[{}]", ["1"; MAX_DIMS].join(","));
    assert!(SafeTensors::parse(&entries(&[entry("a", "U8", &ok, 0, 1)], 1)).is_ok());
    let bad = format!("[{}]", ["1"; MAX_DIMS + 1].join(","));
    assert_eq!(
        parse_err(&entries(&[entry("a", "U8", &bad, 0, 1)], 1)),
        FormatError::TooManyDims {
            tensor: "a",
            max: MAX_DIMS
        }
    );
    let huge = format!("[{}, {}]", u64::MAX / 2, 4);
    assert_eq!(
        parse_err(&entries(&[entry("a", "U8", &huge, 0, 1)], 1)),
        FormatError::ShapeOverflow { tensor: "a" }
    );
    // Elements fit, bytes do not.
    let huge = format!("[{}]", usize::MAX / 2 + 1);
    assert_eq!(
        parse_err(&entries(&[entry("a", "F16", &huge, 0, 1)], 1)),
        FormatError::ShapeOverflow { tensor: "a" }
    );
    // A zero dimension makes any other dimension fine.
    let zero = format!("[0, {}]", u64::MAX);
    #[cfg(target_pointer_width = "64")]
    assert!(SafeTensors::parse(&entries(&[entry("a", "U8", &zero, 0, 0)], 0)).is_ok());
    let _ = zero;
}

#[test]
fn offset_errors() {
    let bytes = file(
        r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}"#,
        &[0],
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::OffsetsNotPair {
            tensor: "a",
            len: 1
        }
    );
    let bytes = file(
        r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}"#,
        &[0],
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::OffsetsNotPair {
            tensor: "a",
            len: 3
        }
    );
    let bytes = entries(&[entry("a", "U8", "[1]", 2, 1)], 2);
    assert_eq!(
        parse_err(&bytes),
        FormatError::OffsetsReversed {
            tensor: "a",
            begin: 2,
            end: 1
        }
    );
    let bytes = entries(&[entry("a", "U8", "[4]", 0, 4)], 3);
    assert_eq!(
        parse_err(&bytes),
        FormatError::TensorOutOfRange {
            tensor: "a",
            end: 4,
            data_len: 3
        }
    );
    let bytes = entries(&[entry("a", "U8", "[0]", u64::MAX, u64::MAX)], 3);
    assert_eq!(
        parse_err(&bytes),
        FormatError::TensorOutOfRange {
            tensor: "a",
            end: u64::MAX,
            data_len: 3
        }
    );
    let bytes = entries(&[entry("a", "F32", "[2]", 0, 4)], 4);
    assert_eq!(
        parse_err(&bytes),
        FormatError::SizeMismatch {
            tensor: "a",
            expected: 8,
            actual: 4
        }
    );
}

#[test]
fn overlap_errors() {
    let bytes = entries(
        &[entry("a", "U8", "[4]", 0, 4), entry("b", "U8", "[4]", 2, 6)],
        6,
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::Overlap {
            first: "a",
            second: "b",
            begin: 2,
            end: 4
        }
    );
    // Listed out of order, same start.
    let bytes = entries(
        &[
            entry("c", "U8", "[2]", 4, 6),
            entry("b", "U8", "[4]", 0, 4),
            entry("a", "U8", "[2]", 0, 2),
        ],
        6,
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::Overlap {
            first: "b",
            second: "a",
            begin: 0,
            end: 2
        }
    );
    // Identical ranges, and covering the whole section otherwise.
    let bytes = entries(
        &[entry("a", "U8", "[4]", 0, 4), entry("b", "U8", "[4]", 0, 4)],
        4,
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::Overlap {
            first: "a",
            second: "b",
            begin: 0,
            end: 4
        }
    );
    // A zero-sized tensor strictly inside another.
    let bytes = entries(
        &[entry("a", "U8", "[4]", 0, 4), entry("z", "U8", "[0]", 2, 2)],
        4,
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::Overlap {
            first: "a",
            second: "z",
            begin: 2,
            end: 2
        }
    );
    let bytes = entries(
        &[entry("z", "U8", "[0]", 3, 3), entry("a", "U8", "[4]", 0, 4)],
        4,
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::Overlap {
            first: "z",
            second: "a",
            begin: 3,
            end: 3
        }
    );
}

#[test]
fn hole_errors() {
    let bytes = entries(
        &[entry("a", "U8", "[2]", 0, 2), entry("b", "U8", "[2]", 4, 6)],
        6,
    );
    assert_eq!(parse_err(&bytes), FormatError::Hole { begin: 2, end: 4 });
    let bytes = entries(&[entry("b", "U8", "[2]", 3, 5)], 5);
    assert_eq!(parse_err(&bytes), FormatError::Hole { begin: 0, end: 3 });
    // Trailing bytes.
    let bytes = entries(&[entry("a", "U8", "[2]", 0, 2)], 5);
    assert_eq!(parse_err(&bytes), FormatError::Hole { begin: 2, end: 5 });
    // Data but no tensors.
    assert_eq!(
        parse_err(&file("{}", &[1, 2, 3])),
        FormatError::Hole { begin: 0, end: 3 }
    );
    // Overlap is reported before a hole.
    let bytes = entries(
        &[entry("a", "U8", "[4]", 0, 4), entry("b", "U8", "[2]", 1, 3)],
        6,
    );
    assert!(matches!(parse_err(&bytes), FormatError::Overlap { .. }));
}

#[test]
fn duplicate_errors() {
    let bytes = entries(
        &[entry("a", "U8", "[1]", 0, 1), entry("a", "U8", "[1]", 1, 2)],
        2,
    );
    assert_eq!(parse_err(&bytes), FormatError::DuplicateKey { key: "a" });
    // Not adjacent, not sorted.
    let bytes = entries(
        &[
            entry("x", "U8", "[1]", 0, 1),
            entry("b", "U8", "[1]", 1, 2),
            entry("c", "U8", "[1]", 2, 3),
            entry("x", "U8", "[1]", 3, 4),
        ],
        4,
    );
    assert_eq!(parse_err(&bytes), FormatError::DuplicateKey { key: "x" });
    // The same name spelt with an escape.
    let bytes = entries(
        &[
            entry("ab", "U8", "[1]", 0, 1),
            entry("\\u0061b", "U8", "[1]", 1, 2),
        ],
        2,
    );
    assert_eq!(
        parse_err(&bytes),
        FormatError::DuplicateKey { key: "\\u0061b" }
    );
    let bytes = file(r#"{"__metadata__":{},"__metadata__":{}}"#, &[]);
    assert_eq!(
        parse_err(&bytes),
        FormatError::DuplicateKey {
            key: "__metadata__"
        }
    );
    let bytes = file(r#"{"__metadata__":{"k":"1","j":"2","k":"3"}}"#, &[]);
    assert_eq!(
        parse_err(&bytes),
        FormatError::DuplicateMetadataKey { key: "k" }
    );
    // Many unsorted names without duplicates go through the filter path.
    let n = 500u64;
    let list: Vec<String> = (0..n)
        .map(|i| entry(&format!("{}", (i * 37) % n), "U8", "[1]", i, i + 1))
        .collect();
    assert_eq!(
        SafeTensors::parse(&entries(&list, n as usize))
            .unwrap()
            .len(),
        500
    );
    let mut list = list;
    list.push(entry("123", "U8", "[0]", 0, 0));
    assert_eq!(
        parse_err(&entries(&list, n as usize)),
        FormatError::DuplicateKey { key: "123" }
    );
}

#[test]
fn metadata_errors() {
    assert_eq!(
        parse_err(&file(r#"{"__metadata__":{"a":"1","b":2}}"#, &[])),
        FormatError::MetadataNotString {
            key: "b",
            found: ValueKind::Number
        }
    );
    assert_eq!(
        parse_err(&file(r#"{"__metadata__":{"a":null}}"#, &[])),
        FormatError::MetadataNotString {
            key: "a",
            found: ValueKind::Null
        }
    );
    assert_eq!(
        parse_err(&file(r#"{"__metadata__":{"a":{"b":"c"}}}"#, &[])),
        FormatError::MetadataNotString {
            key: "a",
            found: ValueKind::Object
        }
    );
    let kv: Vec<String> = (0..=MAX_METADATA)
        .map(|i| format!("\"k{i:05}\":\"v\""))
        .collect();
    let json = format!("{{\"__metadata__\":{{{}}}}}", kv.join(","));
    assert_eq!(
        parse_err(&file(&json, &[])),
        FormatError::TooManyMetadata { max: MAX_METADATA }
    );
    // A string value must itself be valid.
    assert_eq!(
        json_kind(&file(r#"{"__metadata__":{"a":"\x"}}"#, &[])).1,
        JsonErrorKind::InvalidEscape
    );
}

#[test]
fn errors_display_their_numbers() {
    let bytes = entries(&[entry("w.q", "U8", "[4]", 0, 4)], 3);
    let msg = parse_err(&bytes).to_string();
    assert_eq!(
        msg,
        "tensor \"w.q\" ends at 4, beyond the 3-byte data section"
    );
    let msg = json_kind_msg(&file("{}x", &[]));
    assert_eq!(
        msg,
        "header JSON error at file offset 10: trailing data after the document"
    );
    assert_eq!(
        FormatError::Hole { begin: 2, end: 4 }.to_string(),
        "data bytes 2..4 belong to no tensor"
    );
}

fn json_kind_msg(bytes: &[u8]) -> String {
    parse_err(bytes).to_string()
}

// ---------------------------------------------------------------------------------------------
// Robustness.

fn sample_file() -> Vec<u8> {
    write(
        &[
            w("b", "F16", &[2], le(&[f16::ONE, f16::ZERO])),
            w("a", "F32", &[2, 1], le(&[1.0f32, 2.0])),
            w("z", "I64", &[0], vec![]),
            w("c\\u00e9", "I64", &[1], le(&[5i64])),
        ],
        &[
            ("config", r#"{\"dim\": [1, 2.5, true, null, \"x\\ny\"]}"#),
            ("format", "pt"),
        ],
    )
}

/// Touches everything a parsed file exposes.
fn exercise(bytes: &[u8]) {
    if let Ok(st) = SafeTensors::parse(bytes) {
        for t in st.tensors() {
            let _ = (t.as_f32(), t.as_f16(), t.as_bf16(), t.as_i64(), t.as_u8());
            assert_eq!(t.data().len(), t.numel() * t.dtype().size());
        }
        for (_, v) in st.metadata_entries() {
            let mut p = v.parser();
            let _ = p.skip().and_then(|()| p.finish());
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample_file();
    let buf = Aligned::new(&bytes);
    assert!(SafeTensors::parse(buf.bytes()).is_ok());
    for n in 0..bytes.len() {
        assert!(SafeTensors::parse(&bytes[..n]).is_err(), "length {n}");
    }
}

proptest! {
    #[test]
    fn mutations_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = sample_file();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        exercise(&bytes);
        let n = cut.index(bytes.len());
        exercise(&bytes[..n]);
    }

    #[test]
    fn header_bytes_never_panic(header in prop::collection::vec(any::<u8>(), 0..200), data in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&data);
        exercise(&bytes);
    }
}

/// A permutation of `0..n` that is far from sorted.
fn scramble(i: u64, n: u64) -> u64 {
    (i * 37 + 11) % n
}

#[test]
fn duplicates_found_across_batches() {
    // Names out of order force the batched sorted walk (64 names per pass); put the duplicate at
    // every rank around the batch boundaries.
    let n = 200u64;
    for rank in [0, 1, 62, 63, 64, 65, 127, 128, 129, 198, 199] {
        let list: Vec<String> = (0..n)
            .map(|i| {
                let mut k = scramble(i, n);
                if k == (rank + 1) % n {
                    k = rank; // a second copy of the name with this rank
                }
                entry(&format!("n{k:03}"), "U8", "[1]", i, i + 1)
            })
            .collect();
        let bytes = entries(&list, n as usize);
        let dup = format!("n{rank:03}");
        assert_eq!(
            parse_err(&bytes),
            FormatError::DuplicateKey { key: &dup },
            "rank {rank}"
        );
    }
}

#[test]
fn coverage_errors_found_across_batches() {
    // Offsets out of header order force the batched walk; break the tiling at every position
    // around the batch boundaries.
    let n = 200u64;
    let layout = |bad: u64, shift: u64| -> Vec<u8> {
        let list: Vec<String> = (0..n)
            .map(|i| {
                let k = scramble(i, n);
                let (b, e) = if k >= bad {
                    (k * 2 + shift, k * 2 + 2 + shift)
                } else {
                    (k * 2, k * 2 + 2)
                };
                entry(&format!("t{k:03}"), "U8", "[2]", b, e)
            })
            .collect();
        entries(&list, (n * 2 + shift) as usize)
    };
    for bad in [1, 63, 64, 65, 127, 128, 199] {
        assert!(SafeTensors::parse(&layout(bad, 0)).is_ok());
        assert_eq!(
            parse_err(&layout(bad, 1)),
            FormatError::Hole {
                begin: (bad * 2) as usize,
                end: (bad * 2 + 1) as usize
            },
            "hole before {bad}"
        );
    }
    // Overlap: tensor `bad` starts one byte early.
    for bad in [1, 63, 64, 65, 127, 128, 199] {
        let mut list: Vec<String> = Vec::new();
        for i in 0..n {
            let k = scramble(i, n);
            let (b, e) = if k == bad {
                (k * 2 - 1, k * 2 + 1)
            } else {
                (k * 2, k * 2 + 2)
            };
            list.push(entry(&format!("t{k:03}"), "U8", "[2]", b, e));
        }
        let bytes = entries(&list, (n * 2) as usize);
        let (prev, this) = (format!("t{:03}", bad - 1), format!("t{bad:03}"));
        let (i_prev, i_this) = (
            (0..n).position(|i| scramble(i, n) == bad - 1).unwrap(),
            (0..n).position(|i| scramble(i, n) == bad).unwrap(),
        );
        let (first, second) = if i_prev < i_this {
            (prev.as_str(), this.as_str())
        } else {
            (this.as_str(), prev.as_str())
        };
        assert_eq!(
            parse_err(&bytes),
            FormatError::Overlap {
                first,
                second,
                begin: (bad * 2 - 1) as usize,
                end: (bad * 2) as usize
            },
            "overlap at {bad}"
        );
    }
}

#[test]
fn zero_sized_tensors_across_batches() {
    // 150 one-byte tensors and a zero-sized one at every boundary, all out of order.
    let n = 150u64;
    let mut list: Vec<String> = Vec::new();
    for i in 0..n {
        let k = scramble(i, n);
        list.push(entry(&format!("t{k:03}"), "U8", "[1]", k, k + 1));
        list.push(entry(&format!("z{k:03}"), "F32", "[0]", k, k));
    }
    list.push(entry("zend", "F32", "[2, 0]", n, n));
    assert_eq!(
        SafeTensors::parse(&entries(&list, n as usize))
            .unwrap()
            .len(),
        301
    );
}

#[test]
fn fuzz_corpus_never_panics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/safetensors");
    let mut n = 0;
    for f in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        exercise(&bytes);
        exercise(Aligned::new(&bytes).bytes());
        n += 1;
    }
    assert!(n > 0);
}
