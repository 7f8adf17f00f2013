//! `picoformer inspect --rust`: the constants and statics it prints compile against the crate
//! (each `tests/inspect_rust/*.rs` is the tool's output for one model, included here), the
//! configuration equals the loaded one, `Model::<MAX_DEPTH>` loads the file, and every size is
//! what the library's `const fn`s and `inspect --json` give for the same arguments.
//!
//! The files are checked against the tool's current output; after a deliberate change of the
//! output, `PICOFORMER_BLESS=1 cargo test --release --all-features --test cli_inspect_rust`
//! rewrites them (then run it again, to compile the new ones).
#![cfg(feature = "cli")]

use std::process::Command;

use picoformer::sampling::Sampler;
use picoformer::{KvCache, Model, ModelConfig, Scratch};

const BIN: &str = env!("CARGO_BIN_EXE_picoformer");

/// What a generated file declares, gathered for the checks.
struct Declared {
    config: ModelConfig,
    max_depth: usize,
    capacity: usize,
    context: usize,
    chunk: usize,
    kv_len: usize,
    context_len: usize,
    scratch_len: usize,
    logits_len: Option<usize>,
    work_len: Option<usize>,
    output_len: Option<usize>,
    /// The lengths of the statics themselves: KV cache, context cache, scratch, logits or output.
    statics: [usize; 4],
}

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn tool(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "picoformer {args:?}: {err}");
    String::from_utf8(out.stdout).unwrap()
}

/// The number after `"key":` in a one-line JSON object.
fn json_usize(json: &str, key: &str) -> usize {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} in {json}"))
        + key.len()
        + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or_else(|_| panic!("{key} in {json}"))
}

/// The checks for the file `tests/inspect_rust/{name}.rs`, printed for `model` with `args`.
fn check(name: &str, model: &str, args: &[&str], declared: Declared, load: impl Fn(&[u8]) -> bool) {
    // 1. The file is the tool's current output.
    let golden = repo(&format!("tests/inspect_rust/{name}.rs"));
    let mut argv = vec!["inspect", model];
    argv.extend_from_slice(args);
    let printed = tool(&[argv.as_slice(), &["--rust"]].concat());
    if std::env::var_os("PICOFORMER_BLESS").is_some() {
        std::fs::write(&golden, &printed).unwrap();
    }
    let file = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        file, printed,
        "{golden} is not what `picoformer inspect --rust` prints now (PICOFORMER_BLESS=1 rewrites it)"
    );

    // 2. The printed configuration is the file's, and the printed MAX_DEPTH loads it.
    let bytes = std::fs::read(model).unwrap();
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
    let loaded: Model<'_, 64> = Model::from_safetensors(bytes).unwrap();
    let cfg = loaded.config();
    assert_eq!(declared.config, cfg);
    assert_eq!(declared.max_depth, cfg.decoder.depth);
    assert!(load(bytes), "Model::<MAX_DEPTH> loads {model}");

    // 3. Every size is the library's, for the arguments given, and what `inspect --json` says.
    let d = &cfg.decoder;
    assert_eq!(
        declared.kv_len,
        KvCache::<f32>::elements(d, declared.capacity)
    );
    assert_eq!(
        declared.context_len,
        KvCache::<f32>::context_elements(d, declared.context)
    );
    assert_eq!(declared.scratch_len, Scratch::elements(d, declared.chunk));
    assert_eq!(declared.logits_len, cfg.wrapper.map(|w| w.logits_width()));
    assert_eq!(
        declared.work_len,
        declared.logits_len.map(Sampler::work_len)
    );
    assert_eq!(
        declared.output_len,
        cfg.wrapper.is_none().then_some(d.dim * declared.chunk)
    );
    let json = tool(&[argv.as_slice(), &["--json"]].concat());
    let ram = &json[json.find("\"ram\":").unwrap()..];
    assert_eq!(json_usize(ram, "capacity"), declared.capacity);
    assert_eq!(json_usize(ram, "chunk"), declared.chunk);
    assert_eq!(json_usize(ram, "kv_cache_f32_bytes"), 4 * declared.kv_len);
    assert_eq!(json_usize(ram, "scratch_bytes"), 4 * declared.scratch_len);
    assert_eq!(
        json_usize(ram, "logits_bytes"),
        4 * declared.logits_len.unwrap_or(0)
    );
    if d.cross_attend {
        assert_eq!(json_usize(ram, "context"), declared.context);
        assert_eq!(
            json_usize(ram, "context_cache_f32_bytes"),
            4 * declared.context_len
        );
    }
    // 4. The statics have those lengths.
    let output = declared.logits_len.or(declared.output_len).unwrap();
    assert_eq!(
        declared.statics,
        [
            declared.kv_len,
            declared.context_len,
            declared.scratch_len,
            output
        ]
    );
}

/// The module of one generated file: includes it and checks it (`wrapper` or `decoder`: what
/// `CONFIG` is; `cross` when the model cross-attends).
macro_rules! generated {
    ($name:ident, $model:expr, [$($arg:expr),*], wrapper) => {
        #[allow(dead_code)]
        mod $name {
            include!(concat!("inspect_rust/", stringify!($name), ".rs"));
            generated!(@test $name, $model, [$($arg),*],
                picoformer::ModelConfig { decoder: CONFIG.attn_layers, wrapper: Some(CONFIG) },
                Some(LOGITS_LEN), Some(WORK_LEN), None, core::ptr::addr_of!(LOGITS) as *const [f32]);
        }
    };
    ($name:ident, $model:expr, [$($arg:expr),*], decoder) => {
        #[allow(dead_code)]
        mod $name {
            include!(concat!("inspect_rust/", stringify!($name), ".rs"));
            generated!(@test $name, $model, [$($arg),*],
                picoformer::ModelConfig { decoder: CONFIG, wrapper: None },
                None, None, Some(OUTPUT_LEN), core::ptr::addr_of!(OUTPUT) as *const [f32]);
        }
    };
    (@test $name:ident, $model:expr, [$($arg:expr),*], $config:expr, $logits:expr, $work:expr,
     $output:expr, $out_static:expr) => {
        // Defaults for the names a model without cross-attention does not declare.
        mod no_context {
            pub const CONTEXT: usize = 0;
            pub const CONTEXT_LEN: usize = 0;
            pub static mut CONTEXT_CACHE: [f32; 0] = [];
        }
        #[allow(unused_imports)]
        use no_context::*;

        #[test]
        fn compiles_and_matches_the_library() {
            super::check(
                stringify!($name),
                &super::repo($model),
                &[$($arg),*],
                super::Declared {
                    config: $config,
                    max_depth: MAX_DEPTH,
                    capacity: CAPACITY,
                    context: CONTEXT,
                    chunk: CHUNK,
                    kv_len: KV_LEN,
                    context_len: CONTEXT_LEN,
                    scratch_len: SCRATCH_LEN,
                    logits_len: $logits,
                    work_len: $work,
                    output_len: $output,
                    statics: [
                        (core::ptr::addr_of!(KV_CACHE) as *const [f32]).len(),
                        (core::ptr::addr_of!(CONTEXT_CACHE) as *const [f32]).len(),
                        (core::ptr::addr_of!(SCRATCH) as *const [f32]).len(),
                        ($out_static).len(),
                    ],
                },
                |bytes| picoformer::Model::<MAX_DEPTH>::from_safetensors(bytes).is_ok(),
            );
        }
    };
}

// The bundled model, as the firmware template runs it (a TransformerWrapper).
generated!(
    demo,
    "models/demo.safetensors",
    ["--capacity", "256", "--chunk", "8"],
    wrapper
);
// A cross-attending wrapper with `l2norm_embed`, which no builder sets (struct update syntax).
generated!(
    emb_dim_l2norm,
    "tests/fixtures/emb_dim_l2norm.model.safetensors",
    ["--capacity", "48", "--context", "5", "--chunk", "4"],
    wrapper
);
// A raw Decoder with ALiBi and cross-attention: hidden states out, a context cache.
generated!(
    alibi,
    "tests/fixtures/alibi.model.safetensors",
    ["--capacity", "32", "--context", "3"],
    decoder
);
// Builders that take values (`attn_softclamp_logits`, `attn_add_zero_kv`).
generated!(
    zero_kv_softclamp,
    "tests/fixtures/zero_kv_softclamp.model.safetensors",
    ["--capacity", "20", "--context", "2", "--chunk", "2"],
    decoder
);

/// Every Decoder and TransformerWrapper fixture can be written (the tool rebuilds the value
/// from the text's builder calls and refuses what it cannot write); other kinds are refused
/// with a message, exit 1.
#[test]
fn every_fixture_is_written_or_refused() {
    let dir = repo("tests/fixtures");
    let mut written = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".model.safetensors") {
            continue;
        }
        let out = Command::new(BIN)
            .args([
                "inspect",
                path.to_str().unwrap(),
                "--rust",
                "--context",
                "2",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let other_kind = not_a_decoder(&path);
        if other_kind {
            assert_eq!(out.status.code(), Some(1), "{name}: {stdout}{stderr}");
            assert!(stderr.contains("another kind"), "{name}: {stderr}");
        } else {
            assert!(out.status.success(), "{name}: {stderr}");
            assert!(stdout.contains("const CONFIG: "), "{name}: {stdout}");
            assert!(
                stdout.contains("static mut KV_CACHE: [f32; KV_LEN]"),
                "{name}"
            );
            written += 1;
        }
    }
    assert!(written > 40, "{written} fixtures written");
}

#[test]
fn usage_errors() {
    let demo = repo("models/demo.safetensors");
    let out = Command::new(BIN)
        .args(["inspect", &demo, "--rust", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args([
            "inspect",
            &demo,
            "--rust",
            "--capacity",
            "99999999999999999",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("too large"));
}

/// Whether a model file holds another kind than a (wrapped) decoder: its `x_transformers`
/// metadata names an encoder, a continuous wrapper or an XTransformer (read from the header, not
/// guessed from the file's name).
fn not_a_decoder(path: &std::path::Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8_lossy(&bytes[8..8 + len]);
    [
        "\\\"encoder\\\"",
        "\\\"continuous_wrapper\\\"",
        "\\\"xtransformer\\\"",
    ]
    .iter()
    .any(|key| header.contains(key))
}
