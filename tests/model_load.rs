//! Loading model files: every malformed or unsupported file gets its typed error, never a panic.
//! The cases are made by editing the header of real exported fixtures.

use picoformer::safetensors::{Dtype, FormatError, JsonErrorKind};
use picoformer::{Dims, Error, LoadError, Model, WeightName};
use proptest::prelude::*;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}.model.safetensors",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Splits a file into its header text and data section.
fn split(file: &[u8]) -> (String, &[u8]) {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    (
        String::from_utf8(file[8..8 + n].to_vec()).unwrap(),
        &file[8 + n..],
    )
}

/// Reassembles a file with a new header, padded so the data section stays 8-byte aligned, into
/// 8-byte-aligned memory. Returns the words and the byte length.
fn join(header: &str, data: &[u8]) -> (Vec<u64>, usize) {
    let mut h = header.as_bytes().to_vec();
    while !(8 + h.len()).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(data);
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    (words, bytes.len())
}

/// Loads `name` with its header edited by `edit`; returns the outcome as a string-free summary.
fn load_edited(
    name: &str,
    edit: impl Fn(&str) -> String,
    check: impl Fn(Result<Model<'_>, LoadError<'_>>),
) {
    let file = read(name);
    let (header, data) = split(&file);
    let edited = edit(&header);
    assert_ne!(edited, header, "the edit must change something");
    let (words, len) = join(&edited, data);
    let bytes = &bytemuck::cast_slice(&words)[..len];
    same_in_place(bytes);
    check(Model::from_safetensors(bytes));
}

/// `Model::from_safetensors_in` gives what `Model::from_safetensors` gives: the same model, or
/// the same error with the slot emptied (it starts full, with another file's model).
fn same_in_place(bytes: &[u8]) {
    let (words, len) = join(&split(&read("wrap_tied")).0, split(&read("wrap_tied")).1);
    let other = &bytemuck::cast_slice(&words)[..len];
    let mut slot: Option<Model<'_>> = Some(Model::from_safetensors(other).unwrap());
    let in_place = Model::from_safetensors_in(bytes, &mut slot);
    match Model::<16>::from_safetensors(bytes) {
        Ok(m) => {
            assert_eq!(in_place, Ok(()));
            assert_eq!(format!("{:?}", slot.unwrap()), format!("{m:?}"));
        }
        Err(e) => {
            assert_eq!(in_place, Err(e));
            assert!(slot.is_none());
        }
    }
}

#[test]
fn loading_in_place_equals_loading_by_value() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path
            .to_str()
            .and_then(|p| p.strip_suffix(".model.safetensors"))
        else {
            continue;
        };
        n += 1;
        let file = read(name.rsplit('/').next().unwrap());
        let (header, data) = split(&file);
        let (words, len) = join(&header, data);
        same_in_place(&bytemuck::cast_slice(&words)[..len]);
    }
    assert!(n > 10, "{n} fixtures");
}

#[test]
fn fixtures_load_and_report_their_config() {
    let (words, len) = join(&split(&read("wrap_tied")).0, split(&read("wrap_tied")).1);
    let m: Model = Model::from_safetensors(&bytemuck::cast_slice(&words)[..len]).unwrap();
    let c = m.config();
    let w = c.wrapper.unwrap();
    assert_eq!(
        (w.num_tokens, w.max_seq_len, w.tie_embedding),
        (40, 32, true)
    );
    assert_eq!(
        (
            c.decoder.dim,
            c.decoder.depth,
            c.decoder.heads,
            c.decoder.kv_heads(),
            c.decoder.rotary_dim()
        ),
        (32, 2, 2, 1, 8)
    );
}

#[test]
fn metadata_errors() {
    load_edited(
        "wrap_tied",
        |h| h.replace("\"x_transformers\":", "\"x_transformerz\":"),
        |r| {
            assert_eq!(r.unwrap_err(), LoadError::MissingMetadata("x_transformers"));
        },
    );
    load_edited(
        "wrap_tied",
        |h| h.replace("\\\"dim\\\": 32, ", ""),
        |r| {
            assert_eq!(r.unwrap_err(), LoadError::MissingMetadata("dim"));
        },
    );
    // An unsupported option is named with its value and the reason.
    load_edited(
        "wrap_tied",
        |h| {
            h.replace(
                "\\\"heads\\\": 2",
                "\\\"heads\\\": 2, \\\"rel_pos_bias\\\": true",
            )
        },
        |r| {
            let e = r.unwrap_err();
            assert_eq!(
                e,
                LoadError::UnsupportedOption {
                    option: "rel_pos_bias",
                    value: "true",
                    reason: picoformer::options::NOT_IMPLEMENTED
                }
            );
            assert_eq!(
                e.to_string(),
                "unsupported x-transformers option 'rel_pos_bias' = true (not implemented by picoformer)"
            );
        },
    );
    // Values equal to x-transformers' defaults change nothing (Python equality: 0 == False).
    load_edited(
        "wrap_tied",
        |h| {
            h.replace(
                "\\\"heads\\\": 2",
                "\\\"heads\\\": 2, \\\"sandwich_norm\\\": 0, \\\"alibi_num_heads\\\": null, \\\"pre_norm\\\": true",
            )
        },
        |r| {
            assert!(r.is_ok());
        },
    );
    // `false` is not the default True.
    load_edited(
        "wrap_tied",
        |h| {
            h.replace(
                "\\\"heads\\\": 2",
                "\\\"heads\\\": 2, \\\"attn_gumbel_softmax_hard\\\": false",
            )
        },
        |r| {
            assert!(matches!(
                r.unwrap_err(),
                LoadError::UnsupportedOption {
                    option: "attn_gumbel_softmax_hard",
                    value: "false",
                    ..
                }
            ));
        },
    );
    load_edited(
        "wrap_tied",
        |h| h.replace("\\\"heads\\\": 2", "\\\"heads\\\": \\\"two\\\""),
        |r| {
            assert!(matches!(
                r.unwrap_err(),
                LoadError::InvalidOption {
                    option: "heads",
                    value: "\\\"two\\\"",
                    error: JsonErrorKind::WrongType { .. }
                }
            ));
        },
    );
    load_edited(
        "wrap_tied",
        |h| h.replace("\\\"depth\\\": 2", "\\\"depth\\\": -2"),
        |r| {
            assert_eq!(
                r.unwrap_err(),
                LoadError::InvalidOption {
                    option: "depth",
                    value: "-2",
                    error: JsonErrorKind::NumberOutOfRange
                }
            );
        },
    );
    load_edited(
        "wrap_tied",
        |h| {
            h.replace(
                "\\\"tie_embedding\\\": true}}",
                "\\\"tie_embedding\\\": true}",
            )
        },
        |r| {
            assert!(matches!(r.unwrap_err(), LoadError::Metadata(_)));
        },
    );
    load_edited(
        "wrap_tied",
        |h| h.replace("\\\"attn_kv_heads\\\": 1", "\\\"attn_kv_heads\\\": 4"),
        |r| {
            assert!(matches!(r.unwrap_err(), LoadError::Model(Error::Config(_))));
        },
    );
    load_edited(
        "wrap_tied",
        |h| {
            h.replace(
                "\\\"num_tokens\\\": 40",
                "\\\"num_tokens\\\": 40, \\\"emb_dim\\\": 16",
            )
        },
        |r| {
            assert!(matches!(
                r.unwrap_err(),
                LoadError::UnsupportedOption {
                    option: "emb_dim",
                    value: "16",
                    ..
                }
            ));
        },
    );
}

#[test]
fn tensor_errors() {
    // A tensor the configuration needs is absent.
    load_edited(
        "wrap_tied",
        |h| {
            h.replace(
                "attn_layers.layers.0.1.to_q.weight",
                "attn_layers.layers.0.1.to_qq.weight",
            )
        },
        |r| {
            let name = WeightName {
                prefix: "attn_layers.",
                sublayer: Some(0),
                suffix: "1.to_q.weight",
            };
            assert_eq!(r.unwrap_err(), LoadError::Model(Error::MissingWeight(name)));
        },
    );
    // A tensor the configuration does not use.
    load_edited(
        "wrap_abs",
        |h| {
            h.replace(
                "\\\"num_tokens\\\": 50",
                "\\\"num_tokens\\\": 50, \\\"tie_embedding\\\": true",
            )
        },
        |r| {
            assert_eq!(
                r.unwrap_err(),
                LoadError::UnexpectedTensor("to_logits.weight")
            );
        },
    );
    // Wrong shape for the configuration.
    load_edited(
        "wrap_tied",
        |h| h.replace("\\\"attn_dim_head\\\": 16", "\\\"attn_dim_head\\\": 8"),
        |r| {
            let name = WeightName {
                prefix: "attn_layers.",
                sublayer: Some(0),
                suffix: "1.to_q.weight",
            };
            assert_eq!(
                r.unwrap_err(),
                LoadError::Model(Error::WeightShape {
                    name,
                    expected: Dims::new(&[16, 32]),
                    found: Dims::new(&[32, 32])
                })
            );
        },
    );
    // An element type the decoder cannot use (same size, so the container is still valid).
    load_edited(
        "wrap_tied",
        |h| h.replacen("\"dtype\":\"F32\"", "\"dtype\":\"I32\"", 1),
        |r| {
            assert_eq!(
                r.unwrap_err(),
                LoadError::UnsupportedDtype {
                    tensor: "token_emb.emb.weight",
                    dtype: Dtype::I32
                }
            );
        },
    );
}

#[test]
fn misaligned_data_is_refused_not_copied() {
    let file = read("wrap_tied");
    let mut words = vec![0u64; file.len() / 8 + 2];
    let buf = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[1..1 + file.len()];
    buf.copy_from_slice(&file);
    let e = Model::<16>::from_safetensors(buf).unwrap_err();
    assert!(
        matches!(e, LoadError::Format(FormatError::Misaligned { .. })),
        "{e:?}"
    );
}

#[test]
fn every_truncation_is_an_error() {
    let file = read("cross_wrap");
    let mut words = vec![0u64; file.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..file.len()].copy_from_slice(&file);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..file.len()];
    assert!(Model::<16>::from_safetensors(bytes).is_ok());
    for len in (0..file.len())
        .step_by(13)
        .chain(file.len() - 8..file.len())
    {
        assert!(
            Model::<16>::from_safetensors(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
    /// Random byte edits anywhere in the header never panic.
    #[test]
    fn mutated_headers_never_panic(edits in prop::collection::vec((0usize..4000, any::<u8>()), 1..6)) {
        let file = read("wrap_tied");
        let mut words = vec![0u64; file.len().div_ceil(8)];
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..file.len()];
        bytes.copy_from_slice(&file);
        let header_end = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        for (at, v) in edits {
            bytes[at % header_end] = v;
        }
        let _ = Model::<16>::from_safetensors(bytes);
    }
}
