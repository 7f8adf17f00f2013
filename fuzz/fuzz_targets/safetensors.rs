//! Parses arbitrary bytes as a safetensors file and, when that succeeds, touches everything the
//! file exposes; also walks the bytes as raw JSON and as an escaped JSON string body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picoformer::safetensors::{Parser, SafeTensors, ValueKind};

/// Reads every value of a JSON document, trying several readers on each scalar.
fn walk(mut p: Parser<'_>) {
    let mut buf = [0u8; 64];
    // Explicit stack of "in a container" steps: the parser tracks the nesting itself.
    loop {
        if p.depth() > 0 {
            // Inside a container: advance to the next member/element (or leave it).
            let more = match p.clone().next_member() {
                Ok(_) => p.next_member().map(|k| {
                    if let Some(k) = k {
                        let _ = k.decode_into(&mut buf);
                        let _ = k == "x";
                        true
                    } else {
                        false
                    }
                }),
                Err(_) => p.next_element(),
            };
            match more {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
        }
        let kind = match p.kind() {
            Ok(k) => k,
            Err(_) => {
                let _ = p.finish();
                return;
            }
        };
        let r = match kind {
            ValueKind::Object => p.begin_object(),
            ValueKind::Array => p.begin_array(),
            ValueKind::String => p.string().map(|s| {
                let _ = s.decode_into(&mut buf);
                let n: usize = s.chars().map(char::len_utf8).sum();
                assert_eq!(n, s.decoded_len());
                if let Some(inner) = s.parser() {
                    walk_flat(inner);
                }
            }),
            ValueKind::Number => {
                let _ = p.clone().u64();
                let _ = p.clone().i64();
                p.f64().map(drop)
            }
            ValueKind::Bool => p.bool().map(drop),
            ValueKind::Null => p.null(),
        };
        if r.is_err() {
            return;
        }
        if p.depth() == 0 {
            let _ = p.finish();
            return;
        }
    }
}

/// Skips the whole document (for nested documents, to bound the work).
fn walk_flat(mut p: Parser<'_>) {
    let _ = p.finish();
}

fuzz_target!(|data: &[u8]| {
    walk(Parser::new(data));
    walk(Parser::new_escaped(data));

    let Ok(st) = SafeTensors::parse(data) else {
        return;
    };
    let mut count = 0;
    let mut bytes = 0;
    for t in st.tensors() {
        count += 1;
        bytes += t.data().len();
        assert_eq!(t.data().len(), t.numel() * t.dtype().size());
        let _ = t.as_f32();
        let _ = t.as_f16();
        let _ = t.as_bf16();
        let _ = t.as_f64();
        let _ = t.as_i64();
        let _ = t.as_i32();
        let _ = t.as_i8();
        let _ = t.as_u8();
        if !t.name().contains('\\') {
            assert_eq!(st.tensor(t.name()), Some(t));
        }
    }
    assert_eq!(count, st.len());
    assert_eq!(bytes, st.data().len());

    // Reference checks with allocation: sorted by offsets, the tensors tile the data section
    // (zero-sized ones on boundaries), and names and metadata keys are unique once decoded.
    let mut spans: Vec<(usize, usize)> = st.tensors().map(|t| t.data_offsets()).collect();
    spans.sort();
    let mut cursor = 0;
    for (begin, end) in spans {
        assert_eq!(begin, cursor);
        cursor = end;
    }
    assert_eq!(cursor, st.data().len());
    let mut names: Vec<String> = st.tensors().map(|t| t.name_json().to_string()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), st.len());
    assert!(!names.iter().any(|n| n == "__metadata__"));
    let mut keys: Vec<String> = st.metadata_entries().map(|(k, _)| k.to_string()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
    for (k, v) in st.metadata_entries() {
        if k.is_plain() {
            assert!(st.metadata(k.raw()).is_some());
        }
        let _ = v == "x";
        walk(v.parser());
    }
});
