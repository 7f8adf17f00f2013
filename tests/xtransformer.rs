//! x-transformers' `XTransformer` (issue 25) against torch fixtures
//! (`tools/make_xtransformer_fixture.py`, written by `tools/export.py`), loaded from the model files
//! with `XTransformer::from_safetensors`: the encoder's embeddings of a padded source, then the
//! decoder's logits for `tgt` given them with `context_mask` = the source mask, full and
//! step-wise; the same through `picoformer run`; typed errors.

use core::ops::ControlFlow;

use picoformer::generate::{CrossContext, GenerateConfig, GenerateError, Generator, Overflow};
use picoformer::safetensors::SafeTensors;
use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
use picoformer::{
    Buffer, DecoderConfig, Error, KvCache, Masks, Scratch, WrapperConfig, XTransformer,
};

#[cfg(feature = "cli")]
#[path = "common/safetensors_file.rs"]
mod safetensors_file;
#[path = "common/torch.rs"]
mod torch;
#[cfg(feature = "cli")]
use safetensors_file::safetensors_bytes;
use torch::{fixture, max_diff, TOLERANCE};

fn ids(io: &SafeTensors<'_>, name: &str) -> Vec<u32> {
    io.tensor(name)
        .unwrap()
        .as_i64()
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect()
}

/// Runs fixture `name` from its model file; returns the worst (encoder, full, step-wise)
/// differences from torch.
fn check(name: &str) -> (f32, f32, f32) {
    let (mw, ml) = fixture(name, "model");
    let xt: XTransformer =
        XTransformer::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let (iw, il) = fixture(name, "io");
    let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
    let (src, tgt) = (ids(&io, "src"), ids(&io, "tgt"));
    let src_mask: Vec<bool> = io
        .tensor("src_mask")
        .unwrap()
        .data()
        .iter()
        .map(|&v| v != 0)
        .collect();
    let want_enc = io.tensor("enc").unwrap().as_f32().unwrap();
    let full = io.tensor("full").unwrap().as_f32().unwrap();
    let stepwise = io.tensor("stepwise").unwrap().as_f32().unwrap();
    let s = io.tensor("full").unwrap().shape().to_vec();
    let (b, m, v) = (s[0], s[1], s[2]);
    let n = src.len() / b;
    let ecfg = xt.encoder().decoder().config();
    let dcfg = xt.decoder().decoder().config();
    let dim = ecfg.dim;
    // The encoder's memory tokens take positions too.
    let positions = xt.encoder().config().cache_positions(n);
    let mut ekv = vec![f32::NAN; KvCache::<f32>::elements(ecfg, positions)];
    let mut esb = vec![f32::NAN; Scratch::elements(ecfg, positions)];
    let mut ecache = KvCache::new(ecfg, positions, &mut ekv).unwrap();
    let mut escratch = Scratch::new(ecfg, positions, &mut esb).unwrap();
    let mut dkv = vec![f32::NAN; KvCache::<f32>::elements(dcfg, m)];
    let mut dkc = vec![f32::NAN; KvCache::<f32>::context_elements(dcfg, n)];
    let mut dsb = vec![f32::NAN; Scratch::elements(dcfg, 3)];
    let mut dscratch = Scratch::new(dcfg, 3, &mut dsb).unwrap();
    let (mut worst_enc, mut worst_full, mut worst_step) = (0.0f32, 0.0f32, 0.0f32);
    for bi in 0..b {
        let mut memory = vec![f32::NAN; n * dim];
        let smask = &src_mask[bi * n..(bi + 1) * n];
        xt.encode(
            &mut ecache,
            &mut escratch,
            &src[bi * n..(bi + 1) * n],
            Some(smask),
            &mut memory,
        )
        .unwrap();
        worst_enc = worst_enc.max(max_diff(
            &memory,
            &want_enc[bi * n * dim..(bi + 1) * n * dim],
        ));
        let t = &tgt[bi * m..(bi + 1) * m];
        let masks = Masks {
            mask: None,
            context_mask: Some(smask),
        };
        for step in [false, true] {
            let mut cache = KvCache::with_context(dcfg, m, &mut dkv, n, &mut dkc).unwrap();
            let mut out = vec![f32::NAN; m * v];
            if step {
                xt.decoder()
                    .forward_masked(
                        &mut cache,
                        &mut dscratch,
                        &t[..1],
                        Some(&memory),
                        masks,
                        &mut out[..v],
                    )
                    .unwrap();
                for i in 1..m {
                    xt.decoder()
                        .forward_masked(
                            &mut cache,
                            &mut dscratch,
                            &t[i..i + 1],
                            None,
                            masks,
                            &mut out[i * v..(i + 1) * v],
                        )
                        .unwrap();
                }
                worst_step =
                    worst_step.max(max_diff(&out, &stepwise[bi * m * v..(bi + 1) * m * v]));
            } else {
                xt.decoder()
                    .forward_masked(&mut cache, &mut dscratch, t, Some(&memory), masks, &mut out)
                    .unwrap();
                worst_full = worst_full.max(max_diff(&out, &full[bi * m * v..(bi + 1) * m * v]));
            }
        }
    }
    println!("{name}: max |encoder - torch| = {worst_enc:.2e}, |full - torch| = {worst_full:.2e}, |step-wise - torch| = {worst_step:.2e}");
    assert!(worst_enc <= TOLERANCE && worst_full <= TOLERANCE && worst_step <= TOLERANCE);
    (worst_enc, worst_full, worst_step)
}

/// A padded source; the configuration read from the file is the one written by hand before.
#[test]
fn xt_pad() {
    check("xt_pad");
    let (mw, ml) = fixture("xt_pad", "model");
    let xt: XTransformer =
        XTransformer::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    // XTransformer(dim=32, enc_depth=2, enc_heads=2, enc_attn_dim_head=16, enc_num_tokens=40,
    // enc_max_seq_len=16, dec_depth=2, dec_heads=4, dec_attn_dim_head=8, dec_num_tokens=30,
    // dec_max_seq_len=16, dec_rotary_pos_emb=True); the encoder has no logits.
    let enc = WrapperConfig::new(40, 16, DecoderConfig::new(32, 2).heads(2).attn_dim_head(16))
        .tie_embedding(true);
    let dec = WrapperConfig::new(
        30,
        16,
        DecoderConfig::new(32, 2)
            .heads(4)
            .attn_dim_head(8)
            .rotary_pos_emb(true)
            .cross_attend(true),
    );
    let c = xt.config();
    assert_eq!((c.encoder, c.decoder, c.tie_token_emb), (enc, dec, false));
}

/// `tie_token_emb`, an encoder without absolute positions (rotary), a GQA + GLU decoder with
/// absolute positions, sources padded on the left and on the right.
#[test]
fn xt_tie() {
    check("xt_tie");
    let (mw, ml) = fixture("xt_tie", "model");
    let xt: XTransformer =
        XTransformer::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let c = xt.config();
    assert!(c.tie_token_emb);
    assert!(!c.encoder.has_abs_pos_emb() && c.decoder.has_abs_pos_emb());
    assert_eq!(c.decoder.attn_layers.kv_heads(), 2);
}

/// The encoder with memory tokens (`enc_num_memory_tokens`), a padded source: the encoder's
/// output (the memory rows dropped) and the decoder's logits over it equal torch's.
#[test]
fn xt_mem() {
    check("xt_mem");
    let (mw, ml) = fixture("xt_mem", "model");
    let xt: XTransformer =
        XTransformer::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    assert_eq!(xt.config().encoder.num_memory_tokens, 2);
    assert_eq!(xt.config().decoder.num_memory_tokens, 0);
}

/// Byte-level vocabularies: full and step-wise as the others, then greedy generation over the
/// encoded (padded) source through `Generator::run_with` equals x-transformers'
/// `XTransformer.generate(src, start, 8, mask=src_mask, temperature=0.)` token for token, with
/// the context cached by the run itself; a cache too small for it slides and keeps the context.
#[test]
fn xt_bytes_generate() {
    check("xt_bytes");
    let (mw, ml) = fixture("xt_bytes", "model");
    let xt: XTransformer =
        XTransformer::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let (iw, il) = fixture("xt_bytes", "io");
    let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
    let (src, start, want) = (ids(&io, "src"), ids(&io, "gen_start"), ids(&io, "gen"));
    let src_mask: Vec<bool> = io
        .tensor("src_mask")
        .unwrap()
        .data()
        .iter()
        .map(|&v| v != 0)
        .collect();
    let b = start.len();
    let (n, g) = (src.len() / b, want.len() / b);
    let (ecfg, dcfg) = (
        xt.encoder().decoder().config(),
        xt.decoder().decoder().config(),
    );
    let mut ekv = vec![0.0f32; KvCache::<f32>::elements(ecfg, n)];
    let mut esb = vec![0.0f32; Scratch::elements(ecfg, n)];
    let mut ecache = KvCache::new(ecfg, n, &mut ekv).unwrap();
    let mut escratch = Scratch::new(ecfg, n, &mut esb).unwrap();
    let mut dsb = vec![0.0f32; Scratch::elements(dcfg, 4)];
    let mut dscratch = Scratch::new(dcfg, 4, &mut dsb).unwrap();
    for bi in 0..b {
        let smask = &src_mask[bi * n..(bi + 1) * n];
        let mut memory = vec![0.0f32; n * ecfg.dim];
        xt.encode(
            &mut ecache,
            &mut escratch,
            &src[bi * n..(bi + 1) * n],
            Some(smask),
            &mut memory,
        )
        .unwrap();
        let context = CrossContext {
            rows: Some(&memory),
            mask: Some(smask),
        };
        // Capacity 1 + g holds the whole run; capacity 4 slides (keep 2) and must keep the
        // context (it then differs from torch's, which never slides here).
        for (capacity, overflow) in [(1 + g, Overflow::Stop), (4, Overflow::Slide { keep: 2 })] {
            let mut dkv = vec![0.0f32; KvCache::<f32>::elements(dcfg, capacity)];
            let mut dkc = vec![0.0f32; KvCache::<f32>::context_elements(dcfg, n)];
            let mut cache = KvCache::with_context(dcfg, capacity, &mut dkv, n, &mut dkc).unwrap();
            let (mut logits, mut work, mut history) = (
                vec![0.0f32; 256],
                vec![Candidate::EMPTY; 256],
                vec![0u32; 16],
            );
            let sampler = Sampler::new(SamplerConfig::greedy(), 0).unwrap();
            let config = GenerateConfig::new(g).overflow(overflow);
            let mut generator =
                Generator::new(sampler, config, &mut logits, &mut work, &mut history).unwrap();
            let mut got = Vec::new();
            let done = generator
                .run_with(
                    xt.decoder(),
                    &mut cache,
                    &mut dscratch,
                    &start[bi..bi + 1],
                    context,
                    |t| {
                        got.push(t);
                        ControlFlow::Continue(())
                    },
                )
                .unwrap();
            assert_eq!(done.new_tokens, g);
            assert_eq!(cache.context_len(), Some(n));
            if capacity > g {
                assert_eq!(got, want[bi * g..(bi + 1) * g], "row {bi}");
                assert_eq!(done.reencodes, 0);
            } else {
                assert!(done.reencodes > 0);
                assert_eq!(
                    got[..3],
                    want[bi * g..bi * g + 3],
                    "row {bi}, before sliding"
                );
            }
        }
    }
}

/// Generation errors over a context: none given to an empty cache, a context mask of the
/// wrong length, a context longer than the cache's context rows: typed, before anything runs
/// (cache, context and history as they were).
#[test]
fn generate_context_errors_preserve_state() {
    let (mw, ml) = fixture("xt_bytes", "model");
    let xt: XTransformer =
        XTransformer::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let dcfg = xt.decoder().decoder().config();
    let mut dsb = vec![0.0f32; Scratch::elements(dcfg, 4)];
    let mut dscratch = Scratch::new(dcfg, 4, &mut dsb).unwrap();
    let mut dkv = vec![0.0f32; KvCache::<f32>::elements(dcfg, 8)];
    let mut dkc = vec![0.0f32; KvCache::<f32>::context_elements(dcfg, 4)];
    let mut cache = KvCache::with_context(dcfg, 8, &mut dkv, 4, &mut dkc).unwrap();
    let (mut logits, mut work, mut history) = (
        vec![0.0f32; 256],
        vec![Candidate::EMPTY; 256],
        vec![0u32; 16],
    );
    let sampler = Sampler::new(SamplerConfig::greedy(), 0).unwrap();
    let mut generator = Generator::new(
        sampler,
        GenerateConfig::new(3),
        &mut logits,
        &mut work,
        &mut history,
    )
    .unwrap();
    let memory = vec![0.5f32; 4 * dcfg.dim];
    let long = vec![0.5f32; 6 * dcfg.dim];
    let cases: [(CrossContext<'_>, Error); 3] = [
        (CrossContext::NONE, Error::ContextRequired),
        (
            CrossContext {
                rows: Some(&memory),
                mask: Some(&[true; 3]),
            },
            Error::BufferLength {
                buffer: Buffer::ContextMask,
                expected: 4,
                found: 3,
            },
        ),
        (
            CrossContext {
                rows: Some(&long),
                mask: None,
            },
            Error::ContextTooLong {
                rows: 6,
                capacity: 4,
            },
        ),
    ];
    for (context, want) in cases {
        let e = generator
            .run_with(
                xt.decoder(),
                &mut cache,
                &mut dscratch,
                &[120],
                context,
                |_| ControlFlow::Continue(()),
            )
            .unwrap_err();
        assert_eq!(e, GenerateError::Model(want));
        assert_eq!((cache.len(), cache.context_len()), (0, None));
        assert!(generator.history().is_empty());
    }
}

/// A source longer than the decoder's context cache, and one longer than the encoder's
/// scratch; a memory of the wrong length; tokens past the vocabulary: typed errors, nothing
/// written.
#[test]
fn errors_are_typed_and_preserve_state() {
    let (mw, ml) = fixture("xt_pad", "model");
    let xt: XTransformer =
        XTransformer::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let (ecfg, dcfg) = (
        xt.encoder().decoder().config(),
        xt.decoder().decoder().config(),
    );
    let mut ekv = vec![0.0f32; KvCache::<f32>::elements(ecfg, 8)];
    let mut esb = vec![0.0f32; Scratch::elements(ecfg, 4)];
    let mut ecache = KvCache::new(ecfg, 8, &mut ekv).unwrap();
    let mut escratch = Scratch::new(ecfg, 4, &mut esb).unwrap();
    let mut memory = vec![7.0f32; 6 * 32];
    let e = xt
        .encode(&mut ecache, &mut escratch, &[1; 6], None, &mut memory)
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
    let e = xt
        .encode(&mut ecache, &mut escratch, &[1; 3], None, &mut memory)
        .unwrap_err();
    assert_eq!(
        e,
        Error::BufferLength {
            buffer: Buffer::Output,
            expected: 96,
            found: 192
        }
    );
    let e = xt
        .encode(
            &mut ecache,
            &mut escratch,
            &[1, 40, 2],
            None,
            &mut memory[..96],
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::TokenOutOfRange { token: 40, .. }),
        "{e:?}"
    );
    let e = xt
        .encode(
            &mut ecache,
            &mut escratch,
            &[1, 2, 3],
            Some(&[true, false]),
            &mut memory[..96],
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferLength {
                buffer: Buffer::Mask,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(memory.iter().all(|&v| v == 7.0));
    // The decoder's context cache holds 4 rows; a 6-row source does not fit.
    let mut dkv = vec![0.0f32; KvCache::<f32>::elements(dcfg, 4)];
    let mut dkc = vec![0.0f32; KvCache::<f32>::context_elements(dcfg, 4)];
    let mut dsb = vec![0.0f32; Scratch::elements(dcfg, 2)];
    let mut cache = KvCache::with_context(dcfg, 4, &mut dkv, 4, &mut dkc).unwrap();
    let mut dscratch = Scratch::new(dcfg, 2, &mut dsb).unwrap();
    let mut out = vec![7.0f32; 30];
    let e = xt
        .decoder()
        .forward_masked(
            &mut cache,
            &mut dscratch,
            &[1],
            Some(&memory),
            Masks::NONE,
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::ContextTooLong {
            rows: 6,
            capacity: 4
        }
    );
    assert_eq!((cache.len(), cache.context_len()), (0, None));
    assert!(out.iter().all(|&v| v == 7.0));
}

/// `picoformer run` on the XTransformer fixtures: `enc`, `full` and `stepwise` equal torch's;
/// hostile inputs are refused by name; `inspect` prints both parts' plan.
#[cfg(feature = "cli")]
#[test]
fn cli_run_and_inspect() {
    let dir = std::env::temp_dir().join(format!("picoformer-xt-{}", std::process::id()));
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
    for name in ["xt_pad", "xt_tie", "xt_mem"] {
        let out = dir.join(format!("{name}.out.safetensors"));
        let res = run(name, &format!("{fixtures}/{name}.io.safetensors"), &out);
        assert!(res.status.success(), "{name}: {res:?}");
        let (ow, ol) = torch::aligned(out.to_str().unwrap());
        let got = SafeTensors::parse(&bytemuck::cast_slice(&ow)[..ol]).unwrap();
        let (iw, il) = fixture(name, "io");
        let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
        for o in ["enc", "full", "stepwise"] {
            let (a, b) = (got.tensor(o).unwrap(), io.tensor(o).unwrap());
            assert_eq!(a.shape(), b.shape(), "{name} {o}");
            let d = max_diff(a.as_f32().unwrap(), b.as_f32().unwrap());
            println!("{name} via picoformer run: max |{o} - torch| = {d:.2e}");
            assert!(d <= TOLERANCE, "{name} {o}: {d:e}");
        }
    }
    let write = |name: &str, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]| {
        let path = dir.join(name);
        let file = safetensors_bytes(&[], tensors);
        std::fs::write(&path, file).unwrap();
        path.to_str().unwrap().to_string()
    };
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let src = ("src", "I64", vec![1, 3], i64s(&[1, 2, 3]));
    let tgt = ("tgt", "I64", vec![1, 2], i64s(&[4, 5]));
    let cases: Vec<(String, &str)> = vec![
        (
            write("no_tgt.st", std::slice::from_ref(&src)),
            "needs `tgt`",
        ),
        (
            write("no_src.st", std::slice::from_ref(&tgt)),
            "needs `src`",
        ),
        (
            write(
                "far.st",
                &[("src", "I64", vec![1, 3], i64s(&[1, 40, 3])), tgt.clone()],
            ),
            "`src`: token 40 at index 1 is out of range (num_tokens = 40)",
        ),
        (
            write(
                "rows.st",
                &[src.clone(), ("tgt", "I64", vec![2, 1], i64s(&[4, 5]))],
            ),
            "`tgt` has 2 rows and `src` 1",
        ),
        (
            write(
                "smask.st",
                &[
                    src.clone(),
                    tgt.clone(),
                    ("src_mask", "BOOL", vec![1, 2], vec![1, 1]),
                ],
            ),
            "`src_mask` must be bool or uint8 of shape (1, 3)",
        ),
        (
            write(
                "float.st",
                &[("src", "F32", vec![1, 3], vec![0; 12]), tgt.clone()],
            ),
            "`src` must be i64",
        ),
        (
            write(
                "mask.st",
                &[
                    src.clone(),
                    tgt.clone(),
                    ("mask", "BOOL", vec![1, 3], vec![1; 3]),
                ],
            ),
            "`mask` is not an input of an XTransformer (it takes `src`, `src_mask`, `tgt`)",
        ),
        // xt_tie's decoder has absolute positions up to 10 (xt_pad's is rotary)
        (
            write(
                "long.st",
                &[src.clone(), ("tgt", "I64", vec![1, 11], i64s(&[1; 11]))],
            ),
            "position 10",
        ),
    ];
    for (inputs, want) in cases {
        let out = dir.join("never.safetensors");
        let model = if inputs.ends_with("long.st") {
            "xt_tie"
        } else {
            "xt_pad"
        };
        let res = run(model, &inputs, &out);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "{inputs}: {err}");
        assert!(err.contains(want), "{inputs}: {err}");
        assert!(!out.exists());
    }
    let path = format!("{fixtures}/xt_pad.model.safetensors");
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
        .args([
            "inspect",
            &path,
            "--context",
            "6",
            "--capacity",
            "16",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(res.status.success(), "{res:?}");
    let json = String::from_utf8_lossy(&res.stdout);
    let (mw, ml) = fixture("xt_pad", "model");
    let xt: XTransformer =
        XTransformer::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let (e, d) = (
        xt.encoder().decoder().config(),
        xt.decoder().decoder().config(),
    );
    for (key, bytes) in [
        ("encoder_scratch_bytes", Scratch::bytes(e, 6)),
        ("encoder_kv_cache_f32_bytes", KvCache::<f32>::bytes(e, 6)),
        ("source_embeddings_bytes", 6 * 32 * 4),
        ("decoder_kv_cache_f32_bytes", KvCache::<f32>::bytes(d, 16)),
        (
            "decoder_context_cache_f32_bytes",
            KvCache::<f32>::context_bytes(d, 6),
        ),
        ("logits_bytes", 30 * 4),
    ] {
        assert!(
            json.contains(&format!("\"{key}\":{bytes},")),
            "{key}: {json}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `picoformer generate --source` on the byte-level fixture: greedy text equals
/// x-transformers' `XTransformer.generate` (row 0: source "hello!", start "x"); the source is
/// required for an XTransformer, refused for a TransformerWrapper, and bounded.
#[cfg(feature = "cli")]
#[test]
fn cli_generate_source() {
    let model = format!(
        "{}/tests/fixtures/xt_bytes.model.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let generate = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
            .arg("generate")
            .args(args)
            .output()
            .unwrap()
    };
    let (iw, il) = fixture("xt_bytes", "io");
    let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
    let want: Vec<u8> = ids(&io, "gen")[..8].iter().map(|&t| t as u8).collect();
    let res = generate(&[
        "--model",
        &model,
        "--source",
        "hello!",
        "--prompt",
        "x",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
    ]);
    assert!(res.status.success(), "{res:?}");
    let text = String::from_utf8(res.stdout).unwrap();
    assert_eq!(text, format!("x{}\n", String::from_utf8_lossy(&want)));
    let stats = String::from_utf8(res.stderr).unwrap();
    assert!(stats.contains("context cache"), "{stats}");

    let long = "a".repeat(33);
    for (args, message) in [
        (
            vec!["--model", &model, "--prompt", "x"],
            "holds an XTransformer: give the text to translate with --source TEXT",
        ),
        (
            vec!["--source", "hello"],
            "--source is for an XTransformer's file",
        ),
        (
            vec!["--model", &model, "--source", "", "--prompt", "x"],
            "--source must hold 1 to 32 bytes",
        ),
        (
            vec!["--model", &model, "--source", &long, "--prompt", "x"],
            "--source must hold 1 to 32 bytes for this model's encoder, it holds 33",
        ),
    ] {
        let res = generate(&args);
        let err = String::from_utf8(res.stderr).unwrap();
        assert_eq!(res.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
