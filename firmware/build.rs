//! Build script of the firmware:
//! 1. picks the board and model for the target triple (`build/boards.rs`);
//! 2. puts the model file into OUT_DIR, where the firmware embeds it with `include_bytes!`: a
//!    file exported from x-transformers (`tests/fixtures`), or one written by
//!    `build/model_file.rs` in the same format with deterministic weights;
//! 3. runs that model ON THE HOST with picoformer and the firmware's own decoding code
//!    (`src/decode.rs`): greedy tokens and full logits become `expected.rs`, so nothing the
//!    device is checked against is typed in by hand;
//! 4. passes the linker script (`cargo:rustc-link-arg-bins`, never RUSTFLAGS);
//! 5. lists the model file's tensors (name, type, shape, byte range) into `weights.rs`, so the
//!    decode-only program (`src/decode_only.rs`) needs no parser on the device;
//! 6. with `--features kws`, the same for the keyword-spotting example (`build/kws.rs`): its
//!    model file and the host's scores of its windows into `kws_expected.rs`.

#[path = "build/boards.rs"]
mod boards;
#[path = "src/classify.rs"]
mod classify;
#[path = "src/decode.rs"]
#[allow(dead_code)]
mod decode;
#[path = "build/kws.rs"]
mod kws;
#[path = "build/model_file.rs"]
mod model_file;

use std::fmt::Write as _;
use std::path::PathBuf;

use boards::{Board, Source};
use picoformer::safetensors::{Dtype, SafeTensors};
use picoformer::{KvCache, Model, Scratch, TransformerWrapper, WrapperConfig};

/// Smallest gap between the best and the second-best logit accepted at a greedy step, relative
/// to the largest logit: a closer race could flip on a different rounding and is avoided by
/// trying the next prompt.
const MIN_MARGIN: f32 = 1e-3;

/// What the host computed.
struct Expected {
    config: WrapperConfig,
    dtype: &'static str,
    prompt: Vec<u32>,
    tokens: Vec<u32>,
    /// Logits of every position of prompt ++ tokens[..G-1], in one `forward`.
    full: Vec<f32>,
    margin: f32,
}

/// The file's bytes in an 8-aligned buffer, so the zero-copy views work like on the device.
fn aligned(file: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; file.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..file.len()].copy_from_slice(file);
    words
}

/// Loads the model with picoformer's own loader, as the device does.
fn load(bytes: &[u8]) -> TransformerWrapper<'_> {
    match Model::from_safetensors(bytes) {
        Ok(Model::Wrapper(w)) => w,
        Ok(Model::Decoder(_)) => {
            panic!("host: the model file holds a raw Decoder, not a TransformerWrapper")
        }
        Err(e) => panic!("host: cannot load the model file: {e}"),
    }
}

/// Positions of the scratch arena: the board's chunk, or the whole decoded sequence.
fn chunk(board: &Board) -> usize {
    let n = board.prompt + board.generate - 1;
    if board.chunk == 0 {
        n
    } else {
        board.chunk.min(n)
    }
}

/// Runs the model on the host for one prompt.
fn run_host(board: &Board, bytes: &[u8], prompt: Vec<u32>, int8: bool) -> Expected {
    let model = load(bytes).with_int8_activations(int8);
    let cfg = *model.config();
    if let Source::Generated { config, .. } = &board.source {
        assert_eq!(
            &cfg, config,
            "host: the file's metadata does not give back the configuration written"
        );
    }
    // The token embedding's element type, as the file stores it.
    let dtype = picoformer::safetensors::SafeTensors::parse(bytes)
        .ok()
        .and_then(|f| f.tensor("token_emb.emb.weight").map(|t| t.dtype()))
        .map_or("?", |d| match d {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
            Dtype::U8 if int8 => "int8",
            Dtype::U8 => "q8_0",
            _ => "?",
        });

    let (p, g, v) = (board.prompt, board.generate, cfg.num_tokens);
    let n = p + g - 1;
    let dec = &cfg.attn_layers;
    let mut kv = vec![0f32; KvCache::<f32>::elements(dec, n)];
    // The device's arena: the same chunks, so the same calls.
    let chunk = chunk(board);
    let mut sc = vec![0f32; Scratch::elements(dec, chunk)];
    let mut cache = KvCache::new(dec, n, &mut kv).expect("host: cache");
    let mut scratch = Scratch::new(dec, chunk, &mut sc).expect("host: scratch");

    let mut tokens = vec![0u32; g];
    let mut row = vec![0f32; v];
    decode::greedy(
        &model,
        &mut cache,
        &mut scratch,
        &prompt,
        &mut tokens,
        &mut row,
    )
    .expect("host: greedy");
    let mut seq = prompt.clone();
    seq.extend_from_slice(&tokens[..g - 1]);
    let mut full = vec![0f32; n * v];
    decode::full(&model, &mut cache, &mut scratch, &seq, &mut full).expect("host: full");

    // The greedy race at every generated position, measured on the full pass.
    let mut margin = f32::INFINITY;
    for i in 0..g {
        let r = &full[(p - 1 + i) * v..(p + i) * v];
        let best = decode::argmax(r);
        assert_eq!(
            best as u32, tokens[i],
            "host: full and step-wise greedy disagree at {i}"
        );
        let second = r
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != best)
            .fold(f32::NEG_INFINITY, |m, (_, &x)| m.max(x));
        margin = margin.min((r[best] - second) / decode::max_abs(r).max(1.0));
    }
    assert!(
        full.iter().all(|x| x.is_finite()),
        "host: non-finite logits"
    );
    Expected {
        config: cfg,
        dtype,
        prompt,
        tokens,
        full,
        margin,
    }
}

fn write_expected(board: &Board, file_len: usize, e: &Expected) -> String {
    let mut s = String::new();
    let list = |v: &[u32]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        s,
        "// @generated by build.rs: the host's run of the embedded model. Do not edit."
    )
    .unwrap();
    writeln!(s, "use picoformer::{{DecoderConfig, WrapperConfig}};").unwrap();
    writeln!(s, "use crate::Aligned;").unwrap();
    writeln!(
        s,
        "/// QEMU machine.\npub const BOARD: &str = {:?};",
        board.machine
    )
    .unwrap();
    writeln!(
        s,
        "/// Model name.\npub const MODEL: &str = {:?};",
        board.model
    )
    .unwrap();
    writeln!(
        s,
        "/// The model's configuration (the file's metadata says the same)."
    )
    .unwrap();
    writeln!(s, "pub const CONFIG: WrapperConfig = {:?};", e.config).unwrap();
    writeln!(
        s,
        "/// Weight element type.\npub const DTYPE: &str = {:?};",
        e.dtype
    )
    .unwrap();
    writeln!(
        s,
        "/// Whether products by Q8_0 weights take the int8 path.\npub const INT8: bool = {};",
        e.dtype == "int8"
    )
    .unwrap();
    writeln!(
        s,
        "/// Positions of the scratch arena (a forward pass runs in chunks of this many).\npub const CHUNK: usize = {};",
        chunk(board)
    )
    .unwrap();
    writeln!(
        s,
        "/// The prompt.\npub const PROMPT: [u32; {}] = [{}];",
        e.prompt.len(),
        list(&e.prompt)
    )
    .unwrap();
    writeln!(
        s,
        "/// The host's greedy tokens.\npub const EXPECTED: [u32; {}] = [{}];",
        e.tokens.len(),
        list(&e.tokens)
    )
    .unwrap();
    writeln!(
        s,
        "/// Smallest relative top-1/top-2 gap the host saw.\npub const MARGIN: f32 = {:?};",
        e.margin
    )
    .unwrap();
    let floats: Vec<String> = e.full.iter().map(|x| format!("{x:?}")).collect();
    writeln!(
        s,
        "/// The host's logits of the full pass.\npub static HOST_LOGITS: [f32; {}] = [{}];",
        e.full.len(),
        floats.join(", ")
    )
    .unwrap();
    writeln!(
        s,
        "/// The model file, embedded and aligned; weights are viewed in place."
    )
    .unwrap();
    if !board.model_section.is_empty() {
        writeln!(s, "#[link_section = {:?}]", board.model_section).unwrap();
    }
    writeln!(
        s,
        "pub static MODEL_FILE: Aligned<[u8; {}]> = Aligned(*include_bytes!(concat!(env!(\"OUT_DIR\"), \"/model.safetensors\")));",
        file_len
    )
    .unwrap();
    s
}

/// The model file's tensors as a table for the decode-only program (`src/decode_only.rs`):
/// each one's name, element type, shape and byte range in the embedded file, read here so that
/// the device needs no parser.
fn write_weights(bytes: &[u8]) -> String {
    let file = SafeTensors::parse(bytes).expect("host: the model file parses");
    let mut rows = String::new();
    let mut count = 0;
    for t in file.tensors() {
        let dtype = match t.dtype() {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "Bf16",
            Dtype::U8 => "Q8_0",
            other => panic!(
                "host: tensor {} is {other:?}: the decode-only program takes f32, f16 and bf16",
                t.name()
            ),
        };
        let start = t.file_offset();
        writeln!(
            rows,
            "    Weight {{ name: {:?}, dtype: Dtype::{dtype}, shape: &{:?}, start: {start}, end: {} }},",
            t.name(),
            logical_shape(t.dtype(), t.shape()),
            start + t.data().len()
        )
        .unwrap();
        count += 1;
    }
    format!(
        "/// The model file's tensors (`build.rs`, `write_weights`): name, element type, shape and bytes in `MODEL_FILE`.\npub const WEIGHTS: [Weight; {count}] = [\n{rows}];\n"
    )
}

/// A tensor's shape as the model sees it: a Q8_0 matrix's U8 `[rows, cols / 32, 34]` is
/// `[rows, cols]`.
fn logical_shape(dtype: Dtype, shape: &[usize]) -> Vec<usize> {
    match (dtype, shape) {
        (Dtype::U8, &[rows, blocks, 34]) => vec![rows, blocks * 32],
        _ => shape.to_vec(),
    }
}

/// Weight multiply-adds of one decoded token: every matrix but the embeddings (looked up, not
/// multiplied), and the token embedding once more when it is tied to the logits.
fn macs_per_token(bytes: &[u8], tied: bool) -> usize {
    let file = SafeTensors::parse(bytes).expect("host: the model file parses");
    file.tensors()
        .map(|t| {
            let s = logical_shape(t.dtype(), t.shape());
            match (t.name(), &s[..]) {
                ("token_emb.emb.weight", [v, d]) if tied => v * d,
                ("token_emb.emb.weight" | "pos_emb.emb.weight", _) => 0,
                (_, [rows, cols]) => rows * cols,
                _ => 0,
            }
        })
        .sum()
}

fn main() {
    let target = std::env::var("TARGET").unwrap();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=link");
    println!("cargo:rerun-if-changed=src/decode.rs");
    println!("cargo:rerun-if-changed=src/classify.rs");
    println!("cargo::rustc-check-cfg=cfg(board, values(\"microbit\", \"lm3s6965evb\", \"mps2-an386\", \"mps3-an547\", \"virt\"))");

    println!("cargo:rerun-if-env-changed=PICOFORMER_FW_WEIGHTS");
    let mut board = boards::for_target(&target);
    // Another weight type for the same model (run.sh's table by weight type).
    let (mut int8, weights) = (false, boards::weights_override());
    if let (Source::Generated { dtype, .. }, Some((d, on))) = (&mut board.source, weights) {
        (*dtype, int8) = (d, on);
    }
    println!("cargo:rustc-cfg=board=\"{}\"", board.machine);
    println!("cargo:rustc-env=FW_TARGET={target}");

    let file = match &board.source {
        Source::Fixture(name) => {
            let path = manifest
                .join("..")
                .join("tests")
                .join("fixtures")
                .join(format!("{name}.model.safetensors"));
            println!("cargo:rerun-if-changed={}", path.display());
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }
        Source::Generated {
            config,
            dtype,
            seed,
        } => model_file::generate(config, *dtype, *seed),
    };
    std::fs::write(out.join("model.safetensors"), &file).unwrap();
    let words = aligned(&file);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..file.len()];

    // Deterministic prompts, tried in order until every greedy step is a clear win.
    let vocab = load(bytes).config().num_tokens;
    let expected = (0..64u64)
        .map(|k| {
            run_host(
                &board,
                bytes,
                model_file::tokens(board.seed * 1000 + k, board.prompt, vocab),
                int8,
            )
        })
        .find(|e| e.margin >= MIN_MARGIN)
        .expect("no prompt among 64 gives clear greedy margins");
    let macs = macs_per_token(bytes, expected.config.tie_embedding);
    std::fs::write(
        out.join("expected.rs"),
        write_expected(&board, file.len(), &expected)
            + &format!(
                "/// Weight multiply-adds of one decoded token.\npub const MACS: usize = {macs};\n"
            ),
    )
    .unwrap();

    std::fs::write(out.join("weights.rs"), write_weights(bytes)).unwrap();

    if std::env::var_os("CARGO_FEATURE_KWS").is_some() {
        assert!(
            board.kws,
            "picoformer-firmware: the keyword-spotting example (--features kws) has no room on \
             {} ({target}); build it for thumbv7em-none-eabihf",
            board.machine
        );
        kws::write(
            &board,
            &manifest.join("..").join("tests").join("fixtures"),
            &out,
        );
    }

    let link = manifest.join("link").join(board.link);
    if board.cortex_m {
        std::fs::copy(&link, out.join("memory.x")).unwrap();
        println!("cargo:rustc-link-search={}", out.display());
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
    } else {
        println!("cargo:rustc-link-arg-bins=-T{}", link.display());
    }
}
