//! Padding masks (issue 25): x-transformers' `mask` and `context_mask`, against torch fixtures
//! (`tools/make_mask_fixtures.py`), full and step-wise, and their typed errors.

use picoformer::safetensors::SafeTensors;
use picoformer::{Buffer, Error, KvCache, Masks, Model, Scratch};

#[path = "common/torch.rs"]
mod torch;
use torch::{fixture, max_diff, TOLERANCE};

struct Io {
    x: Option<Vec<f32>>,
    tokens: Option<Vec<u32>>,
    mask: Option<Vec<bool>>,
    context: Option<Vec<f32>>,
    context_mask: Option<Vec<bool>>,
    full: Vec<f32>,
    b: usize,
    n: usize,
    m: usize,
}

fn read_io(name: &str) -> Io {
    let (words, len) = fixture(name, "io");
    let st = SafeTensors::parse(&bytemuck::cast_slice(&words)[..len]).unwrap();
    let f32s = |k: &str| st.tensor(k).map(|t| t.as_f32().unwrap().to_vec());
    let bools = |k: &str| {
        st.tensor(k)
            .map(|t| t.data().iter().map(|&v| v != 0).collect::<Vec<bool>>())
    };
    let full_t = st.tensor("full").unwrap();
    let (b, n) = (full_t.shape()[0], full_t.shape()[1]);
    let context = f32s("context");
    let m = st.tensor("context").map_or(0, |t| t.shape()[1]);
    Io {
        x: f32s("x"),
        tokens: st
            .tensor("tokens")
            .map(|t| t.as_i64().unwrap().iter().map(|&v| v as u32).collect()),
        mask: bools("mask"),
        context,
        context_mask: bools("context_mask"),
        full: f32s("full").unwrap(),
        b,
        n,
        m,
    }
}

/// Runs `model` on batch element `bi` of `io`: the first `first` positions in one call, then one
/// position per call, each call given the mask of every position up to its end. `x` replaces
/// the fixture's embeddings when given.
fn run(model: &Model, io: &Io, bi: usize, first: usize, x: Option<&[f32]>) -> Vec<f32> {
    let cfg = model.config().decoder;
    let n = io.n;
    let w = io.full.len() / io.b / n;
    let rows = io.m.max(1);
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(&cfg, n)];
    let mut kc = vec![f32::NAN; KvCache::<f32>::context_elements(&cfg, rows)];
    let mut sb = vec![f32::NAN; Scratch::elements(&cfg, 3)];
    let mut cache = KvCache::with_context(&cfg, n, &mut kv, rows, &mut kc).unwrap();
    let mut scratch = Scratch::new(&cfg, 3, &mut sb).unwrap();
    let mut out = vec![f32::NAN; n * w];
    let ctx_w = io.m * cfg.dim_context();
    let ctx = io
        .context
        .as_ref()
        .map(|c| &c[bi * ctx_w..(bi + 1) * ctx_w]);
    let mask = io.mask.as_ref().map(|m| &m[bi * n..(bi + 1) * n]);
    let cmask = io
        .context_mask
        .as_ref()
        .map(|m| &m[bi * io.m..(bi + 1) * io.m]);
    let mut start = 0;
    while start < n {
        let end = if start == 0 { first } else { start + 1 };
        let masks = Masks {
            mask: mask.map(|m| &m[..end]),
            context_mask: cmask,
        };
        let ctx = if start == 0 { ctx } else { None };
        match model {
            Model::Decoder(dec) => {
                let x = x.unwrap_or(&io.x.as_ref().unwrap()[bi * n * w..(bi + 1) * n * w]);
                dec.forward_masked(
                    &mut cache,
                    &mut scratch,
                    &x[start * w..end * w],
                    ctx,
                    masks,
                    &mut out[start * w..end * w],
                )
                .unwrap();
            }
            Model::Wrapper(wr) => {
                let t = &io.tokens.as_ref().unwrap()[bi * n..(bi + 1) * n];
                wr.forward_masked(
                    &mut cache,
                    &mut scratch,
                    &t[start..end],
                    ctx,
                    masks,
                    &mut out[start * w..end * w],
                )
                .unwrap();
            }
        }
        start = end;
    }
    out
}

fn check(name: &str) {
    let (words, len) = fixture(name, "model");
    let model: Model = Model::from_safetensors(&bytemuck::cast_slice(&words)[..len]).unwrap();
    let io = read_io(name);
    let per = io.full.len() / io.b;
    let (mut full, mut step) = (0.0f32, 0.0f32);
    for bi in 0..io.b {
        let want = &io.full[bi * per..(bi + 1) * per];
        full = full.max(max_diff(&run(&model, &io, bi, io.n, None), want));
        // step-wise: a prompt of the first half (padding included), then one position per call
        step = step.max(max_diff(&run(&model, &io, bi, io.n / 2, None), want));
        step = step.max(max_diff(&run(&model, &io, bi, 1, None), want));
    }
    println!("{name}: max |full - torch| = {full:.2e}, max |step-wise - torch| = {step:.2e}");
    assert!(
        full <= TOLERANCE && step <= TOLERANCE,
        "{name}: full {full:e}, step-wise {step:e}"
    );
}

#[test]
fn mask_left_pad() {
    check("mask_left_pad");
}

#[test]
fn mask_abs() {
    check("mask_abs");
}

#[test]
fn mask_cross() {
    check("mask_cross");
}

#[test]
fn mask_context_only() {
    check("mask_context_only");
}

/// Masked positions never influence the real ones: changing the inputs at padded positions
/// changes no output at a real position by more than 2e-6 (a step-wise pass and a full one sum
/// in different orders; a leak would move them by orders of magnitude more).
#[test]
fn masked_inputs_change_nothing() {
    let (words, len) = fixture("mask_cross", "model");
    let model: Model = Model::from_safetensors(&bytemuck::cast_slice(&words)[..len]).unwrap();
    let io = read_io("mask_cross");
    let dim = model.config().decoder.dim;
    let n = io.n;
    for bi in 0..io.b {
        let mask = &io.mask.as_ref().unwrap()[bi * n..(bi + 1) * n];
        let x = &io.x.as_ref().unwrap()[bi * n * dim..(bi + 1) * n * dim];
        let base = run(&model, &io, bi, n, Some(x));
        for seed in 0..4u32 {
            let mut y = x.to_vec();
            for (i, real) in mask.iter().enumerate() {
                if !real {
                    for (j, v) in y[i * dim..(i + 1) * dim].iter_mut().enumerate() {
                        *v = ((seed * 31 + j as u32 * 7 + i as u32) % 17) as f32 - 8.0;
                    }
                }
            }
            for first in [n, 1] {
                let out = run(&model, &io, bi, first, Some(&y));
                for (i, real) in mask.iter().enumerate() {
                    if *real {
                        let d =
                            max_diff(&out[i * dim..(i + 1) * dim], &base[i * dim..(i + 1) * dim]);
                        assert!(d <= 2e-6, "position {i} moved by {d:e}");
                    }
                }
            }
        }
    }
}

/// A mask of the wrong length and a context mask for a model without context are typed
/// errors, and nothing is written.
#[test]
fn mask_errors_are_typed_and_write_nothing() {
    let (words, len) = fixture("mask_left_pad", "model");
    let model: Model = Model::from_safetensors(&bytemuck::cast_slice(&words)[..len]).unwrap();
    let Model::Wrapper(w) = &model else {
        panic!("a wrapper")
    };
    let cfg = model.config().decoder;
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&cfg, 8)];
    let mut sb = vec![0.0f32; Scratch::elements(&cfg, 4)];
    let mut cache = KvCache::new(&cfg, 8, &mut kv).unwrap();
    let mut scratch = Scratch::new(&cfg, 4, &mut sb).unwrap();
    let v = w.config().num_tokens;
    let mut logits = vec![7.0f32; 3 * v];
    w.forward_masked(
        &mut cache,
        &mut scratch,
        &[1, 2],
        None,
        Masks::mask(&[false, true]),
        &mut logits[..2 * v],
    )
    .unwrap();
    assert_eq!(cache.len(), 2);
    let mut out = vec![7.0f32; v];
    // The mask must cover the 2 cached positions and the new one.
    let e = w
        .forward_masked(
            &mut cache,
            &mut scratch,
            &[3],
            None,
            Masks::mask(&[true]),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::BufferLength {
            buffer: Buffer::Mask,
            expected: 3,
            found: 1
        }
    );
    let masks = Masks {
        mask: None,
        context_mask: Some(&[true]),
    };
    let e = w
        .forward_masked(&mut cache, &mut scratch, &[3], None, masks, &mut out)
        .unwrap_err();
    assert_eq!(e, Error::ContextNotExpected);
    assert_eq!(cache.len(), 2);
    assert!(out.iter().all(|&v| v == 7.0));
    w.forward_masked(
        &mut cache,
        &mut scratch,
        &[3],
        None,
        Masks::mask(&[false, true, true]),
        &mut out,
    )
    .unwrap();
    assert_eq!(cache.len(), 3);
}

#[cfg(feature = "cli")]
/// Writes a safetensors file of f32/bool tensors (name, dtype tag, shape, bytes).
fn write_st(path: &std::path::Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, (name, tag, shape, bytes)) in tensors.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{tag}\",\"shape\":{shape:?},\"data_offsets\":[{},{}]}}",
            data.len(),
            data.len() + bytes.len()
        ));
        data.extend_from_slice(bytes);
    }
    header.push('}');
    while (8 + header.len()) % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    std::fs::write(path, file).unwrap();
}

/// `picoformer run` computes `mask` and `context_mask` (full and step-wise equal torch's full
/// pass) and refuses an input name it does not know, by name.
#[cfg(feature = "cli")]
#[test]
fn cli_run_masks_and_unknown_inputs() {
    let dir = std::env::temp_dir().join(format!("picoformer-masks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let exe = env!("CARGO_BIN_EXE_picoformer");
    for name in ["mask_cross", "mask_left_pad"] {
        let out = dir.join(format!("{name}.out.safetensors"));
        let status = std::process::Command::new(exe)
            .args([
                "run",
                &format!("{fixtures}/{name}.model.safetensors"),
                &format!("{fixtures}/{name}.io.safetensors"),
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(status.status.success(), "{name}: {status:?}");
        let (words, len) = torch::aligned(out.to_str().unwrap());
        let st = SafeTensors::parse(&bytemuck::cast_slice(&words)[..len]).unwrap();
        let io = read_io(name);
        for k in ["full", "stepwise"] {
            let got = st.tensor(k).unwrap().as_f32().unwrap();
            let d = max_diff(got, &io.full);
            assert!(d <= TOLERANCE, "{name} {k}: {d:e}");
        }
    }
    // A decoder given an input it does not take (here `src_mask`): refused by name.
    let x: Vec<u8> = vec![0u8; 4 * 2 * 32];
    let inputs = dir.join("unknown.safetensors");
    write_st(
        &inputs,
        &[
            ("x", "F32", vec![1, 2, 32], x),
            ("src_mask", "BOOL", vec![1, 2], vec![1, 1]),
        ],
    );
    let out = std::process::Command::new(exe)
        .args([
            "run",
            &format!("{fixtures}/mask_cross.model.safetensors"),
            inputs.to_str().unwrap(),
            dir.join("never.safetensors").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`src_mask`"), "{err}");
    // A mask of the wrong shape is refused too.
    let inputs = dir.join("badmask.safetensors");
    write_st(
        &inputs,
        &[
            ("tokens", "I64", vec![1, 3], vec![0u8; 24]),
            ("mask", "BOOL", vec![1, 2], vec![1, 1]),
        ],
    );
    let out = std::process::Command::new(exe)
        .args([
            "run",
            &format!("{fixtures}/mask_abs.model.safetensors"),
            inputs.to_str().unwrap(),
            dir.join("never.safetensors").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`mask` must be"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
