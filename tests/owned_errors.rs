//! Errors a host program can return with `?`: the borrowed load errors convert into
//! `Box<dyn Error>` (through their owned, `'static` copies), which keep the names and values
//! from the file (truncated with a marker past `OwnedStr::CAPACITY` bytes).

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use picoformer::generate::GenerateError;
use picoformer::safetensors::{FormatError, JsonError, OwnedFormatError, SafeTensors};
use picoformer::sampling::SampleError;
use picoformer::{
    ConfigError, Error, LoadError, LoadErrorOf, Model, ModelConfig, OwnedLoadError, OwnedStr,
};

fn demo_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.safetensors")
}

/// The first host program a new user writes (issue 27): `fs::read`, then `?` on the loader in a
/// function returning `Box<dyn Error>`. Before the owned errors, this did not compile (E0515:
/// the error borrowed `bytes`).
fn load_config(path: &Path) -> Result<ModelConfig, Box<dyn StdError>> {
    let bytes = std::fs::read(path)?;
    let model: Model = Model::from_safetensors(&bytes)?;
    Ok(model.config())
}

/// The same with a `Send + Sync` box (what threads and most error crates want), on the parser.
fn tensor_count(bytes: &[u8]) -> Result<usize, Box<dyn StdError + Send + Sync>> {
    let file = SafeTensors::parse(bytes)?;
    Ok(file.tensors().count())
}

/// A copy of the demo model whose `x_transformers` metadata gets `extra` after `"heads": N`,
/// written to a scratch file of the test target.
fn edited_demo(extra: &str, name: &str) -> PathBuf {
    let file = std::fs::read(demo_path()).unwrap();
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&file[8..8 + n]).unwrap();
    let at = header
        .find("\\\"heads\\\": ")
        .expect("the demo model names its heads");
    let end = at + header[at..].find([',', '}']).unwrap();
    let mut edited = format!("{}{extra}{}", &header[..end], &header[end..]).into_bytes();
    while !(8 + edited.len()).is_multiple_of(8) {
        edited.push(b' ');
    }
    let mut out = (edited.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&edited);
    out.extend_from_slice(&file[8 + n..]);
    let path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("owned_errors_{name}.safetensors"));
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn question_mark_into_box_dyn_error() {
    let cfg = load_config(&demo_path()).expect("the demo model loads");
    assert!(cfg.wrapper.is_some());

    let path = edited_demo(", \\\"rel_pos_bias\\\": true", "unsupported");
    let e = load_config(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported x-transformers option 'rel_pos_bias' = true (not implemented by picoformer)"
    );
    // The box holds the owned error, with the option's name and value.
    match e.downcast_ref::<OwnedLoadError>() {
        Some(LoadErrorOf::UnsupportedOption {
            option,
            value,
            reason,
        }) => {
            assert_eq!(*option, "rel_pos_bias");
            assert_eq!(*value, "true");
            assert_eq!(*reason, picoformer::options::NOT_IMPLEMENTED);
            assert!(!option.is_truncated());
        }
        other => panic!("expected an owned UnsupportedOption, got {other:?}"),
    }

    // An I/O error still goes through the same `?`.
    let missing = load_config(Path::new("no/such/model.safetensors")).unwrap_err();
    assert!(missing.downcast_ref::<std::io::Error>().is_some());
}

#[test]
fn question_mark_into_send_sync_box() {
    let demo = std::fs::read(demo_path()).unwrap();
    assert!(tensor_count(&demo).unwrap() > 0);
    let e = tensor_count(&demo[..5]).unwrap_err();
    assert_eq!(
        e.downcast_ref::<OwnedFormatError>(),
        Some(&OwnedFormatError::TooShort { file_len: 5 })
    );
    // Usable from another thread (checked by type: wasm32-wasip1, where this suite also runs,
    // has no threads).
    fn sendable<T: Send + Sync + 'static>(_: &T) {}
    sendable(&e);
    assert_eq!(
        e.to_string(),
        "file is 5 bytes, shorter than the 8-byte length prefix"
    );
}

#[test]
fn owned_copies_show_and_compare_like_the_borrowed() {
    let borrowed = [
        LoadError::UnsupportedOption {
            option: "ff_glu",
            value: "\\\"yes\\\"",
            reason: "not implemented",
        },
        LoadError::InvalidOption {
            option: "depth",
            value: "-2",
            error: picoformer::safetensors::JsonErrorKind::NumberOutOfRange,
        },
        LoadError::UnexpectedTensor("to_logits.weight"),
        LoadError::MissingMetadata("x_transformers"),
        LoadError::Model(Error::EmptyInput),
        LoadError::Format(FormatError::Overlap {
            first: "a",
            second: "b",
            begin: 8,
            end: 16,
        }),
        LoadError::Format(FormatError::UnknownDtype {
            tensor: "w",
            dtype: "F31",
        }),
    ];
    for e in borrowed {
        let owned = e.into_owned();
        assert_eq!(owned.to_string(), e.to_string());
        assert_eq!(format!("{owned:?}"), format!("{e:?}"));
        assert_eq!(OwnedLoadError::from(e), owned);
    }
}

#[test]
fn long_names_are_truncated_with_a_marker() {
    let long = "attn_layers.layers.123.1.".repeat(4) + "to_q.weight";
    assert!(long.len() > OwnedStr::CAPACITY);
    let owned = LoadError::UnexpectedTensor(&long).into_owned();
    let LoadErrorOf::UnexpectedTensor(name) = &owned else {
        panic!("{owned:?}")
    };
    assert!(name.is_truncated());
    assert!(name.len() <= OwnedStr::CAPACITY);
    assert!(name.ends_with(OwnedStr::MARKER));
    assert!(long.starts_with(name.trim_end_matches(OwnedStr::MARKER)));
    assert!(owned.to_string().contains(name.as_str()));

    // Multi-byte characters are never split.
    for n in 20..40 {
        let text = "é".repeat(n) + "ß";
        let s = OwnedStr::new(&text);
        assert!(s.len() <= OwnedStr::CAPACITY);
        assert_eq!(s.is_truncated(), text.len() > OwnedStr::CAPACITY);
        assert!(text.starts_with(s.trim_end_matches(OwnedStr::MARKER)));
    }
    // Exactly the capacity is kept whole.
    let exact = "x".repeat(OwnedStr::CAPACITY);
    assert_eq!(OwnedStr::new(&exact), exact.as_str());
    assert!(!OwnedStr::new(&exact).is_truncated());
    assert_eq!(OwnedStr::new(""), "");
}

/// Every error type the crate returns is a `core::error::Error` (the borrowed load errors
/// through their owned forms), `'static`, `Send` and `Sync`, with a `Display`.
#[test]
fn every_error_type_is_an_error() {
    fn is_error<E: core::error::Error + Send + Sync + 'static>() {}
    is_error::<Error>();
    is_error::<ConfigError>();
    is_error::<OwnedLoadError>();
    is_error::<OwnedFormatError>();
    is_error::<JsonError>();
    is_error::<GenerateError>();
    is_error::<SampleError>();
}
