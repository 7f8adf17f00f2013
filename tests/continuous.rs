//! x-transformers' `ContinuousTransformerWrapper` (issue 25) against torch fixtures
//! (`tools/make_continuous_fixtures.py`, written by `tools/export.py`), loaded from the model files
//! with `ContinuousModel::from_safetensors`: around a Decoder (full and streaming, one frame per
//! call; with a padded context) and around an Encoder (a sequence out, and a pooled
//! keyword-spotting-shaped output); the same through `picoformer run`; typed errors.

use picoformer::safetensors::SafeTensors;
use picoformer::{
    Buffer, ContinuousConfig, ContinuousModel, DecoderConfig, Error, KvCache, Masks, Scratch,
};

#[cfg(feature = "cli")]
#[path = "common/safetensors_file.rs"]
mod safetensors_file;
#[path = "common/torch.rs"]
mod torch;
#[cfg(feature = "cli")]
use safetensors_file::safetensors_bytes;
use torch::{fixture, max_diff, TOLERANCE};

fn bools(t: Option<picoformer::safetensors::TensorInfo<'_>>) -> Option<Vec<bool>> {
    t.map(|t| t.data().iter().map(|&v| v != 0).collect())
}

/// Runs fixture `name` from its model file; returns the configuration read from the file and
/// the worst (full, step-wise) differences from torch.
fn check(name: &str) -> (ContinuousConfig, f32, f32) {
    check_chunked(name, None)
}

/// [`check`] with a decoder's scratch holding `chunk` positions (default: all).
fn check_chunked(name: &str, chunk: Option<usize>) -> (ContinuousConfig, f32, f32) {
    let (mw, ml) = fixture(name, "model");
    let model: ContinuousModel =
        ContinuousModel::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let (iw, il) = fixture(name, "io");
    let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
    let x = io.tensor("x").unwrap();
    let (b, n, wi) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let x = x.as_f32().unwrap();
    let mask = bools(io.tensor("mask"));
    let context = io.tensor("context");
    let m = context.map_or(1, |t| t.shape()[1]);
    let context = context.map(|t| t.as_f32().unwrap());
    let cmask = bools(io.tensor("context_mask"));
    let full = io.tensor("full").unwrap().as_f32().unwrap();
    let stepwise = io.tensor("stepwise").unwrap().as_f32().unwrap();
    let cfg = *model.config();
    assert_eq!(cfg.input_width(), wi);
    let per = full.len() / b;
    let wo = cfg.output_width();
    let lc = &cfg.attn_layers;
    // The memory tokens take positions too; `chunk` positions per scratch pass for a decoder
    // (an encoder's window runs in one).
    let positions = cfg.cache_positions(n);
    let chunk = match &model {
        ContinuousModel::Encoder(_) => positions,
        ContinuousModel::Decoder(_) => chunk.unwrap_or(positions),
    };
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(lc, positions)];
    let mut kc = vec![f32::NAN; KvCache::<f32>::context_elements(lc, m)];
    let mut sb = vec![f32::NAN; Scratch::elements(lc, chunk)];
    let mut scratch = Scratch::new(lc, chunk, &mut sb).unwrap();
    let (mut wf, mut ws) = (0.0f32, 0.0f32);
    for bi in 0..b {
        let xb = &x[bi * n * wi..(bi + 1) * n * wi];
        let mb = mask.as_ref().map(|v| &v[bi * n..(bi + 1) * n]);
        let ctx = context.map(|c| &c[bi * c.len() / b..(bi + 1) * c.len() / b]);
        let cm = cmask.as_ref().map(|v| &v[bi * m..(bi + 1) * m]);
        let masks = |end: usize| Masks {
            mask: mb.map(|v| &v[..end]),
            context_mask: cm,
        };
        let mut out = vec![f32::NAN; per];
        let mut cache = KvCache::with_context(lc, positions, &mut kv, m, &mut kc).unwrap();
        match &model {
            ContinuousModel::Encoder(w) => {
                w.encode(&mut cache, &mut scratch, xb, ctx, masks(n), &mut out)
                    .unwrap();
                wf = wf.max(max_diff(&out, &full[bi * per..(bi + 1) * per]));
            }
            ContinuousModel::Decoder(w) => {
                w.forward(&mut cache, &mut scratch, xb, ctx, masks(n), &mut out)
                    .unwrap();
                wf = wf.max(max_diff(&out, &full[bi * per..(bi + 1) * per]));
                // streaming: one frame in, one frame out; the context on the first call
                let mut cache = KvCache::with_context(lc, positions, &mut kv, m, &mut kc).unwrap();
                for i in 0..n {
                    w.forward(
                        &mut cache,
                        &mut scratch,
                        &xb[i * wi..(i + 1) * wi],
                        if i == 0 { ctx } else { None },
                        masks(i + 1),
                        &mut out[i * wo..(i + 1) * wo],
                    )
                    .unwrap();
                }
                ws = ws.max(max_diff(&out, &stepwise[bi * per..(bi + 1) * per]));
            }
        }
    }
    println!("{name}: max |full - torch| = {wf:.2e}, max |step-wise - torch| = {ws:.2e}");
    assert!(wf <= TOLERANCE && ws <= TOLERANCE, "{name}: {wf:e} {ws:e}");
    (cfg, wf, ws)
}

#[test]
fn cont_dec() {
    let (cfg, ..) = check("cont_dec");
    let mut want = ContinuousConfig::new(16, DecoderConfig::new(32, 2).heads(2).attn_dim_head(16));
    want.dim_in = Some(10);
    want.dim_out = Some(6);
    assert_eq!(cfg, want);
}

#[test]
fn cont_enc() {
    let (cfg, ..) = check("cont_enc");
    let layers = DecoderConfig::new(32, 2)
        .heads(4)
        .attn_dim_head(8)
        .rotary_pos_emb(true);
    let mut want = ContinuousConfig::new(16, layers);
    want.dim_in = Some(10);
    want.dim_out = Some(6);
    assert_eq!(cfg, want);
}

#[test]
fn cont_enc_pool() {
    let (cfg, ..) = check("cont_enc_pool");
    let mut want = ContinuousConfig::new(49, DecoderConfig::new(32, 2).heads(4).attn_dim_head(8));
    want.dim_in = Some(10);
    want.dim_out = Some(12);
    want.average_pool_embed = true;
    assert_eq!(cfg, want);
}

/// The firmware's keyword-spotting model (`firmware/src/kws.rs`): 49 frames of 10 features, 12
/// classes, pooled, f16 weights; four windows, three of them padded (at the end, and at the start).
#[test]
fn kws() {
    let (cfg, ..) = check("kws");
    let layers = DecoderConfig::new(64, 4)
        .heads(4)
        .attn_dim_head(16)
        .ff_mult(2.0);
    let mut want = ContinuousConfig::new(49, layers);
    want.dim_in = Some(10);
    want.dim_out = Some(12);
    want.average_pool_embed = true;
    assert_eq!(cfg, want);
}

/// `ContinuousModel::from_safetensors_in` (the firmware's in-place load): into an empty slot, a
/// slot holding an unloaded model of the file's kind and one of the other kind, the same model as
/// `from_safetensors` (the same scores); a file that fails to load leaves the slot empty.
#[test]
fn from_safetensors_in() {
    let (mw, ml) = fixture("kws", "model");
    let bytes = &bytemuck::cast_slice::<u64, u8>(&mw)[..ml];
    let model: ContinuousModel<4> = ContinuousModel::from_safetensors(bytes).unwrap();
    let cfg = *model.config();
    let lc = &cfg.attn_layers;
    let (iw, il) = fixture("kws", "io");
    let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
    let x = io.tensor("x").unwrap().as_f32().unwrap();
    let n = cfg.max_seq_len;
    let scores = |m: &ContinuousModel<'_, 4>| {
        let ContinuousModel::Encoder(w) = m else {
            panic!("an Encoder's wrapper")
        };
        let mut kv = vec![f32::NAN; KvCache::<f32>::elements(lc, n)];
        let mut sb = vec![f32::NAN; Scratch::elements(lc, n)];
        let mut cache = KvCache::new(lc, n, &mut kv).unwrap();
        let mut scratch = Scratch::new(lc, n, &mut sb).unwrap();
        let mut out = vec![f32::NAN; cfg.output_width()];
        w.encode(
            &mut cache,
            &mut scratch,
            &x[..n * 10],
            None,
            Masks::NONE,
            &mut out,
        )
        .unwrap();
        out
    };
    let want = scores(&model);
    for start in [
        None,
        Some(ContinuousModel::unloaded(cfg, true)),
        Some(ContinuousModel::unloaded(cfg, false)),
    ] {
        let mut slot = start;
        ContinuousModel::from_safetensors_in(bytes, &mut slot).unwrap();
        let loaded = slot.as_ref().unwrap();
        assert!(loaded.is_encoder());
        assert_eq!(*loaded.config(), cfg);
        assert_eq!(scores(loaded), want);
    }
    let mut slot = Some(ContinuousModel::unloaded(cfg, true));
    assert!(ContinuousModel::<4>::from_safetensors_in(&bytes[..ml / 2], &mut slot).is_err());
    assert!(slot.is_none());
}

/// Cross-attention to a padded context, `post_emb_norm`, frames already `dim` wide
/// (`use_identity_if_same_dim`: no `project_in` in the file).
#[test]
fn cont_dec_ctx() {
    let (cfg, ..) = check("cont_dec_ctx");
    let layers = DecoderConfig::new(24, 2)
        .heads(4)
        .attn_dim_head(6)
        .attn_kv_heads(2)
        .cross_attend(true)
        .ff_glu(true);
    let mut want = ContinuousConfig::new(12, layers);
    want.dim_out = Some(5);
    want.post_emb_norm = true;
    assert_eq!(cfg, want);
}

/// Memory tokens (`num_memory_tokens`) before a padded, pooled Encoder window with absolute
/// positions and `post_emb_norm` (which the memory rows do not get).
#[test]
fn cont_enc_mem() {
    let (cfg, ..) = check("cont_enc_mem");
    let mut want = ContinuousConfig::new(8, DecoderConfig::new(16, 2).heads(2).attn_dim_head(8))
        .num_memory_tokens(3);
    want.dim_in = Some(6);
    want.dim_out = Some(4);
    want.post_emb_norm = true;
    want.average_pool_embed = true;
    assert_eq!(cfg, want);
    assert_eq!(cfg.cache_positions(7), 10);
}

/// Memory tokens streaming through a rotary Decoder: full, one frame per call (the first call
/// runs the memory first), and in scratch chunks of 1 and 3 positions (chunks of memory rows
/// only, and chunks mixing memory and frames), each equal to x-transformers.
#[test]
fn cont_dec_mem() {
    let (cfg, ..) = check("cont_dec_mem");
    assert_eq!(cfg.num_memory_tokens, 2);
    check_chunked("cont_dec_mem", Some(1));
    check_chunked("cont_dec_mem", Some(3));
}

/// Streaming past `max_seq_len` with absolute positions, frames of the wrong width, an output
/// of the wrong length, a mask of the wrong length: typed errors; nothing is written and the
/// cache keeps its positions.
#[test]
fn errors_are_typed_and_preserve_state() {
    let (mw, ml) = fixture("cont_dec", "model");
    let model: ContinuousModel =
        ContinuousModel::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let ContinuousModel::Decoder(w) = &model else {
        panic!("a Decoder's wrapper")
    };
    let lc = &model.config().attn_layers;
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(lc, 20)];
    let mut sb = vec![0.0f32; Scratch::elements(lc, 4)];
    let mut cache = KvCache::new(lc, 20, &mut kv).unwrap();
    let mut scratch = Scratch::new(lc, 4, &mut sb).unwrap();
    let x = vec![0.1f32; 17 * 10];
    let mut out = vec![7.0f32; 17 * 6];
    let e = w
        .forward(&mut cache, &mut scratch, &x, None, Masks::NONE, &mut out)
        .unwrap_err();
    assert_eq!(
        e,
        Error::PositionOutOfRange {
            position: 16,
            max_seq_len: 16
        }
    );
    assert_eq!(cache.len(), 0);
    w.forward(
        &mut cache,
        &mut scratch,
        &x[..20],
        None,
        Masks::NONE,
        &mut out[..12],
    )
    .unwrap();
    out.iter_mut().for_each(|v| *v = 7.0);
    let cases: [(&[f32], usize, Masks<'_>, Error); 3] = [
        (
            &x[..15],
            6,
            Masks::NONE,
            Error::BufferLength {
                buffer: Buffer::Input,
                expected: 10,
                found: 15,
            },
        ),
        (
            &x[..10],
            5,
            Masks::NONE,
            Error::BufferLength {
                buffer: Buffer::Output,
                expected: 6,
                found: 5,
            },
        ),
        (
            &x[..10],
            6,
            Masks::mask(&[true; 2]),
            Error::BufferLength {
                buffer: Buffer::Mask,
                expected: 3,
                found: 2,
            },
        ),
    ];
    for (xin, len, masks, want) in cases {
        let e = w
            .forward(&mut cache, &mut scratch, xin, None, masks, &mut out[..len])
            .unwrap_err();
        assert_eq!(e, want);
        assert_eq!(cache.len(), 2);
        assert!(out.iter().all(|&v| v == 7.0));
    }
    // Around an Encoder: a window longer than the scratch, and a pooled output of the wrong size.
    let (mw, ml) = fixture("cont_enc_pool", "model");
    let model: ContinuousModel =
        ContinuousModel::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let ContinuousModel::Encoder(w) = &model else {
        panic!("an Encoder's wrapper")
    };
    let lc = &model.config().attn_layers;
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(lc, 8)];
    let mut sb = vec![0.0f32; Scratch::elements(lc, 4)];
    let mut cache = KvCache::new(lc, 8, &mut kv).unwrap();
    let mut scratch = Scratch::new(lc, 4, &mut sb).unwrap();
    let mut out = vec![7.0f32; 12 * 6];
    let e = w
        .encode(
            &mut cache,
            &mut scratch,
            &x[..60],
            None,
            Masks::NONE,
            &mut out[..12],
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferTooSmall {
                buffer: Buffer::Scratch,
                ..
            }
        ),
        "{e:?}"
    );
    let e = w
        .encode(
            &mut cache,
            &mut scratch,
            &x[..40],
            None,
            Masks::NONE,
            &mut out[..48],
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::BufferLength {
            buffer: Buffer::Output,
            expected: 12,
            found: 48
        }
    );
    assert!(out.iter().all(|&v| v == 7.0));
}

/// `picoformer run` on every continuous fixture's model file: `full` (and `stepwise` around a
/// Decoder) equal torch's; inputs of the wrong kind, shape or name are refused by name.
#[cfg(feature = "cli")]
#[test]
fn cli_run() {
    let dir = std::env::temp_dir().join(format!("picoformer-continuous-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let run = |model: &str, inputs: &str, out: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
            .args([
                "run",
                &format!("{fixtures}/{model}.model.safetensors"),
                inputs,
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    for name in [
        "cont_dec",
        "cont_enc",
        "cont_enc_pool",
        "cont_dec_ctx",
        "cont_enc_mem",
        "cont_dec_mem",
        "kws",
    ] {
        let out = dir.join(format!("{name}.out.safetensors"));
        let res = run(name, &format!("{fixtures}/{name}.io.safetensors"), &out);
        assert!(res.status.success(), "{name}: {res:?}");
        let (ow, ol) = torch::aligned(out.to_str().unwrap());
        let got = SafeTensors::parse(&bytemuck::cast_slice(&ow)[..ol]).unwrap();
        let (iw, il) = fixture(name, "io");
        let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
        let outputs: &[&str] = if name.starts_with("cont_dec") {
            &["full", "stepwise"]
        } else {
            assert!(got.tensor("stepwise").is_none());
            &["full"]
        };
        for o in outputs {
            let (a, b) = (got.tensor(o).unwrap(), io.tensor(o).unwrap());
            assert_eq!(a.shape(), b.shape(), "{name} {o}");
            let d = max_diff(a.as_f32().unwrap(), b.as_f32().unwrap());
            println!("{name} via picoformer run: max |{o} - torch| = {d:.2e}");
            assert!(d <= TOLERANCE, "{name} {o}: {d:e}");
        }
    }
    // Hostile inputs: each refused with a message naming the input, exit 1, nothing written.
    let write = |name: &str, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]| {
        let path = dir.join(name);
        let file = safetensors_bytes(&[], tensors);
        std::fs::write(&path, file).unwrap();
        path.to_str().unwrap().to_string()
    };
    let f32s = |n: usize| vec![0u8; 4 * n];
    let cases: Vec<(&str, String, &str)> = vec![
        ("cont_dec", write("none.st", &[]), "needs `x`"),
        (
            "cont_dec",
            write("wide.st", &[("x", "F32", vec![1, 2, 11], f32s(22))]),
            "`x` must be f32 of shape (b, n, 10)",
        ),
        (
            "cont_dec",
            write("tokens.st", &[("tokens", "I64", vec![1, 2], vec![0; 16])]),
            "`tokens` is not an input",
        ),
        (
            "cont_enc",
            write(
                "mask.st",
                &[
                    ("x", "F32", vec![1, 2, 10], f32s(20)),
                    ("mask", "BOOL", vec![1, 3], vec![1; 3]),
                ],
            ),
            "`mask` must be bool or uint8 of shape (1, 2)",
        ),
        (
            "cont_dec",
            write(
                "ctx.st",
                &[
                    ("x", "F32", vec![1, 2, 10], f32s(20)),
                    ("context", "F32", vec![1, 2, 32], f32s(64)),
                ],
            ),
            "`context` is not an input",
        ),
        (
            "cont_dec_ctx",
            write("noctx.st", &[("x", "F32", vec![1, 2, 24], f32s(48))]),
            "needs `context`",
        ),
        (
            "cont_dec",
            write("long.st", &[("x", "F32", vec![1, 17, 10], f32s(170))]),
            "position 16",
        ),
        (
            "xt_pad",
            format!("{fixtures}/cont_dec.io.safetensors"),
            "`x` is not an input of an XTransformer",
        ),
    ];
    for (model, inputs, want) in cases {
        let out = dir.join("never.safetensors");
        let res = run(model, &inputs, &out);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "{model} {inputs}: {err}");
        assert!(err.contains(want), "{model} {inputs}: {err}");
        assert!(!out.exists());
    }
    // --dot int8 is the decoder files' path: refused, not ignored.
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
        .args([
            "run",
            &format!("{fixtures}/cont_enc.model.safetensors"),
            &format!("{fixtures}/cont_enc.io.safetensors"),
            dir.join("never.safetensors").to_str().unwrap(),
            "--dot",
            "int8",
        ])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("--dot int8 runs a Decoder's file"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `picoformer inspect` prints each continuous kind's plan, as text and as JSON.
#[cfg(feature = "cli")]
#[test]
fn cli_inspect() {
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    for (name, kind, window) in [
        (
            "cont_dec_ctx",
            "ContinuousTransformerWrapper(Decoder)",
            false,
        ),
        (
            "cont_enc_pool",
            "ContinuousTransformerWrapper(Encoder)",
            true,
        ),
    ] {
        let path = format!("{fixtures}/{name}.model.safetensors");
        let res = std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
            .args(["inspect", &path])
            .output()
            .unwrap();
        assert!(res.status.success(), "{res:?}");
        let text = String::from_utf8_lossy(&res.stdout);
        assert!(text.contains(&format!("kind        {kind}")), "{text}");
        assert!(text.contains("total RAM, f16 cache"), "{text}");
        let res = std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
            .args(["inspect", &path, "--json", "--capacity", "8"])
            .output()
            .unwrap();
        let json = String::from_utf8_lossy(&res.stdout);
        assert!(json.contains(&format!("\"kind\":\"{kind}\"")), "{json}");
        let (mw, ml) = fixture(name, "model");
        let model: ContinuousModel =
            ContinuousModel::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
        let lc = model.config().attn_layers;
        let scratch = Scratch::bytes(&lc, if window { 8 } else { 1 });
        assert!(
            json.contains(&format!("\"scratch_bytes\":{scratch},")),
            "{json}"
        );
        let kv = KvCache::<f32>::bytes(&lc, 8);
        assert!(
            json.contains(&format!("\"kv_cache_f32_bytes\":{kv},")),
            "{json}"
        );
        if window {
            // one chunk: --chunk does not apply
            let res = std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
                .args(["inspect", &path, "--chunk", "4"])
                .output()
                .unwrap();
            assert_eq!(res.status.code(), Some(2));
        }
    }
}
