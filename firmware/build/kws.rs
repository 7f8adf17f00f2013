//! The keyword-spotting example's part of the build (`--features kws`): its model and windows
//! are the fixture `tests/fixtures/kws` (made with x-transformers by
//! `tools/make_continuous_fixtures.py --only kws`). The host runs the model with picoformer and
//! the program's own calls (`src/classify.rs`) on the fixture's windows, checks the scores
//! against PyTorch's and that the padding cannot move them, and writes everything the device
//! is checked against to `OUT_DIR/kws_expected.rs`, the model file to `OUT_DIR/kws.safetensors`.

use std::fmt::Write as _;
use std::path::Path;

use picoformer::safetensors::{Dtype, SafeTensors};
use picoformer::{ContinuousModel, KvCache, Scratch};

use crate::boards::Board;
use crate::{aligned, classify, decode, MIN_MARGIN};

/// Largest |host − PyTorch| accepted, relative to the largest score (as on the device).
const TOLERANCE: f32 = 1e-4;

fn read(path: &Path) -> Vec<u8> {
    println!("cargo:rerun-if-changed={}", path.display());
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn list<T: std::fmt::Debug>(v: &[T]) -> String {
    v.iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `kws.safetensors` and `kws_expected.rs` into `out`.
pub fn write(board: &Board, fixtures: &Path, out: &Path) {
    let file = read(&fixtures.join("kws.model.safetensors"));
    let io = read(&fixtures.join("kws.io.safetensors"));
    let (file_words, io_words) = (aligned(&file), aligned(&io));
    let bytes = &bytemuck::cast_slice::<u64, u8>(&file_words)[..file.len()];
    let model = match ContinuousModel::<16>::from_safetensors(bytes) {
        Ok(ContinuousModel::Encoder(w)) => w,
        Ok(ContinuousModel::Decoder(_)) => {
            panic!("host: kws.model.safetensors wraps a Decoder, not an Encoder")
        }
        Err(e) => panic!("host: cannot load kws.model.safetensors: {e}"),
    };
    let cfg = *model.config();
    assert!(
        cfg.average_pool_embed,
        "host: the keyword spotter's scores are pooled (average_pool_embed)"
    );
    let dtype = SafeTensors::parse(bytes)
        .ok()
        .and_then(|f| f.tensor("project_out.weight").map(|t| t.dtype()))
        .map_or("?", |d| match d {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
            _ => "?",
        });

    let io = SafeTensors::parse(&bytemuck::cast_slice::<u64, u8>(&io_words)[..io.len()])
        .unwrap_or_else(|e| panic!("host: kws.io.safetensors: {e}"));
    let tensor = |name: &str| {
        io.tensor(name)
            .unwrap_or_else(|| panic!("host: kws.io.safetensors has no `{name}`"))
    };
    let x = tensor("x");
    let (windows, n, features) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let (classes, lc) = (cfg.output_width(), &cfg.attn_layers);
    assert_eq!(features, cfg.input_width(), "host: frames of another width");
    let x = x.as_f32().expect("host: `x` is f32");
    let real: Vec<bool> = tensor("mask").data().iter().map(|&v| v != 0).collect();
    let torch = tensor("full")
        .as_f32()
        .expect("host: `full` is f32")
        .to_vec();
    assert_eq!(real.len(), windows * n, "host: one mask entry per frame");
    assert_eq!(torch.len(), windows * classes, "host: PyTorch's scores");

    let mut kv = vec![0f32; KvCache::<f32>::elements(lc, n)];
    let mut sc = vec![0f32; Scratch::elements(lc, n)];
    let mut cache = KvCache::new(lc, n, &mut kv).expect("host: cache");
    let mut scratch = Scratch::new(lc, n, &mut sc).expect("host: scratch");
    let mut scores = vec![0f32; windows * classes];
    let mut row = vec![0f32; classes];
    let mut repadded = vec![0f32; n * features];
    let mut margin = f32::INFINITY;
    for w in 0..windows {
        let frames = &x[w * n * features..(w + 1) * n * features];
        let real = &real[w * n..(w + 1) * n];
        let s = &mut scores[w * classes..(w + 1) * classes];
        classify::classify(&model, &mut cache, &mut scratch, frames, real, s)
            .expect("host: classify");
        margin = margin.min(classify::margin(s));
        // The device checks that the padded frames cannot move the scores: so must the host.
        if real.iter().any(|&r| !r) {
            classify::repad(frames, real, &mut repadded);
            classify::classify(&model, &mut cache, &mut scratch, &repadded, real, &mut row)
                .expect("host: classify");
            assert!(
                row.iter()
                    .zip(s.iter())
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "host: window {w}'s padded frames change its scores"
            );
        }
    }
    let scale = decode::max_abs(&scores).max(1.0);
    let torch_diff = decode::max_abs_diff(&scores, &torch);
    assert!(
        torch_diff <= TOLERANCE * scale,
        "host: picoformer's scores differ from PyTorch's by {torch_diff:e}"
    );
    assert!(
        margin >= MIN_MARGIN,
        "host: a window's top-1/top-2 gap is {margin:e}, too close to call"
    );
    let host_classes: Vec<usize> = scores.chunks(classes).map(decode::argmax).collect();

    std::fs::write(out.join("kws.safetensors"), &file).unwrap();
    let mut s = String::new();
    let w = |s: &mut String, text: String| writeln!(s, "{text}").unwrap();
    w(
        &mut s,
        "// @generated by build.rs (build/kws.rs): the host's run of the keyword spotter. Do not edit."
            .into(),
    );
    w(
        &mut s,
        "use picoformer::{ContinuousConfig, DecoderConfig};".into(),
    );
    w(&mut s, "use crate::Aligned;".into());
    w(
        &mut s,
        format!(
            "/// QEMU machine.\npub const BOARD: &str = {:?};",
            board.machine
        ),
    );
    w(
        &mut s,
        "/// Model name.\npub const MODEL: &str = \"kws\";".into(),
    );
    w(
        &mut s,
        format!("/// Weight element type.\npub const DTYPE: &str = {dtype:?};"),
    );
    w(
        &mut s,
        format!("/// The model's configuration (the file's metadata says the same).\npub const CONFIG: ContinuousConfig = {cfg:?};"),
    );
    w(
        &mut s,
        format!("/// Frames per window.\npub const FRAMES: usize = {n};"),
    );
    w(
        &mut s,
        format!(
            "/// The windows' frames ({windows} × {n} × {features}, PyTorch's inputs).\npub static INPUT: [f32; {}] = [{}];",
            x.len(),
            list(x)
        ),
    );
    w(
        &mut s,
        format!(
            "/// Which frames are real ({windows} × {n}; false: padding).\npub static REAL: [bool; {}] = [{}];",
            real.len(),
            list(&real)
        ),
    );
    w(
        &mut s,
        format!(
            "/// The host's scores ({windows} × {classes}).\npub static HOST_SCORES: [f32; {}] = [{}];",
            scores.len(),
            list(&scores)
        ),
    );
    w(
        &mut s,
        format!(
            "/// PyTorch's scores (x-transformers, the fixture's `full`).\npub static TORCH_SCORES: [f32; {}] = [{}];",
            torch.len(),
            list(&torch)
        ),
    );
    w(
        &mut s,
        format!(
            "/// The host's class of every window.\npub const HOST_CLASSES: [usize; {windows}] = [{}];",
            list(&host_classes)
        ),
    );
    w(
        &mut s,
        format!("/// Smallest relative top-1/top-2 gap the host saw.\npub const MARGIN: f32 = {margin:?};"),
    );
    w(
        &mut s,
        "/// The model file, embedded and aligned; weights are viewed in place.".into(),
    );
    if !board.model_section.is_empty() {
        w(
            &mut s,
            format!("#[link_section = {:?}]", board.model_section),
        );
    }
    w(
        &mut s,
        format!(
            "pub static MODEL_FILE: Aligned<[u8; {}]> = Aligned(*include_bytes!(concat!(env!(\"OUT_DIR\"), \"/kws.safetensors\")));",
            file.len()
        ),
    );
    std::fs::write(out.join("kws_expected.rs"), s).unwrap();
}
