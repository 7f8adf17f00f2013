//! x-transformers' `Encoder` (issue 25): bidirectional self-attention, bare and in a
//! `TransformerWrapper`, with padding masks, against torch fixtures
//! (`tools/make_mask_fixtures.py`), and its typed, state-preserving errors.

use picoformer::safetensors::SafeTensors;
use picoformer::{Buffer, EncoderModel, Error, KvCache, LoadError, Masks, Model, Scratch};

#[path = "common/torch.rs"]
mod torch;
use torch::{fixture, max_diff, TOLERANCE};

fn check(name: &str) -> f32 {
    let (mw, ml) = fixture(name, "model");
    let model: EncoderModel =
        EncoderModel::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let (iw, il) = fixture(name, "io");
    let st = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
    let full = st.tensor("full").unwrap();
    let (b, n, w) = (full.shape()[0], full.shape()[1], full.shape()[2]);
    let want = full.as_f32().unwrap();
    let cfg = *model.config();
    let mask: Option<Vec<bool>> = st
        .tensor("mask")
        .map(|t| t.data().iter().map(|&v| v != 0).collect());
    let context = st.tensor("context");
    let m = context.map_or(1, |t| t.shape()[1]);
    let cmask: Option<Vec<bool>> = st
        .tensor("context_mask")
        .map(|t| t.data().iter().map(|&v| v != 0).collect());
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(&cfg, n)];
    let mut kc = vec![f32::NAN; KvCache::<f32>::context_elements(&cfg, m)];
    let mut sb = vec![f32::NAN; Scratch::elements(&cfg, n)];
    let mut cache = KvCache::with_context(&cfg, n, &mut kv, m, &mut kc).unwrap();
    let mut scratch = Scratch::new(&cfg, n, &mut sb).unwrap();
    let mut worst = 0.0f32;
    // Twice over the same cache: each pass starts from an empty one.
    for _ in 0..2 {
        for bi in 0..b {
            let masks = Masks {
                mask: mask.as_ref().map(|v| &v[bi * n..(bi + 1) * n]),
                context_mask: cmask.as_ref().map(|v| &v[bi * m..(bi + 1) * m]),
            };
            let ctx = context.map(|t| {
                let c = t.as_f32().unwrap();
                &c[bi * c.len() / b..(bi + 1) * c.len() / b]
            });
            let mut out = vec![f32::NAN; n * w];
            match &model {
                EncoderModel::Encoder(e) => {
                    let x = st.tensor("x").unwrap().as_f32().unwrap();
                    let x = &x[bi * n * w..(bi + 1) * n * w];
                    e.forward(&mut cache, &mut scratch, x, ctx, masks, &mut out)
                        .unwrap();
                }
                EncoderModel::Wrapper(wr) => {
                    let t = st.tensor("tokens").unwrap().as_i64().unwrap();
                    let t: Vec<u32> = t[bi * n..(bi + 1) * n].iter().map(|&v| v as u32).collect();
                    wr.encode(&mut cache, &mut scratch, &t, ctx, masks, &mut out)
                        .unwrap();
                }
            }
            assert_eq!(cache.len(), n);
            worst = worst.max(max_diff(&out, &want[bi * n * w..(bi + 1) * n * w]));
        }
    }
    println!("{name}: max |full - torch| = {worst:.2e}");
    assert!(worst <= TOLERANCE, "{name}: {worst:e}");
    worst
}

#[test]
fn enc_bare() {
    check("enc_bare");
}

#[test]
fn enc_bare_mask() {
    check("enc_bare_mask");
}

#[test]
fn enc_wrap() {
    check("enc_wrap");
}

#[test]
fn enc_cross() {
    check("enc_cross");
}

/// Loading the wrong class is refused: an encoder file by `Model`, a decoder file by
/// `EncoderModel`.
#[test]
fn classes_are_not_confused() {
    let (mw, ml) = fixture("enc_bare", "model");
    let e = Model::<16>::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::UnsupportedOption {
                option: "encoder",
                ..
            }
        ),
        "{e:?}"
    );
    let (mw, ml) = fixture("mask_cross", "model");
    let e = EncoderModel::<16>::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap_err();
    assert_eq!(e, picoformer::options::ModelKind::Decoder.refusal());
    assert!(e
        .to_string()
        .contains("load it with picoformer::Model::from_safetensors"));
}

/// A window larger than the scratch or the cache, and a mask of the wrong length: typed
/// errors, and the cache keeps its positions.
#[test]
fn errors_are_typed_and_preserve_state() {
    let (mw, ml) = fixture("enc_bare", "model");
    let model: EncoderModel =
        EncoderModel::from_safetensors(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let EncoderModel::Encoder(enc) = &model else {
        panic!("bare")
    };
    let cfg = *enc.config();
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&cfg, 6)];
    let mut sb = vec![0.0f32; Scratch::elements(&cfg, 4)];
    let mut cache = KvCache::new(&cfg, 6, &mut kv).unwrap();
    let mut scratch = Scratch::new(&cfg, 4, &mut sb).unwrap();
    let x = vec![0.25f32; 32 * 5];
    let mut out = vec![7.0f32; 32 * 5];
    enc.forward(
        &mut cache,
        &mut scratch,
        &x[..96],
        None,
        Masks::NONE,
        &mut out[..96],
    )
    .unwrap();
    assert_eq!(cache.len(), 3);
    out.iter_mut().for_each(|v| *v = 7.0);
    let e = enc
        .forward(&mut cache, &mut scratch, &x, None, Masks::NONE, &mut out)
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
    let e = enc
        .forward(
            &mut cache,
            &mut scratch,
            &x[..64],
            None,
            Masks::mask(&[true; 3]),
            &mut out[..64],
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::BufferLength {
            buffer: Buffer::Mask,
            expected: 2,
            found: 3
        }
    );
    assert_eq!(cache.len(), 3);
    assert!(out.iter().all(|&v| v == 7.0));
    let mut small = vec![0.0f32; KvCache::<f32>::elements(&cfg, 2)];
    let mut small = KvCache::new(&cfg, 2, &mut small).unwrap();
    let e = enc
        .forward(
            &mut small,
            &mut scratch,
            &x[..96],
            None,
            Masks::NONE,
            &mut out[..96],
        )
        .unwrap_err();
    assert!(matches!(e, Error::CacheFull { .. }), "{e:?}");
}

/// `picoformer run` on an Encoder's file: `full` equals torch's for a bare encoder (with a
/// context mask) and for a wrapper (with a mask).
#[cfg(feature = "cli")]
#[test]
fn cli_run_encoders() {
    let dir = std::env::temp_dir().join(format!("picoformer-encoder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    for name in ["enc_cross", "enc_wrap", "enc_bare"] {
        let out = dir.join(format!("{name}.out.safetensors"));
        let res = std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
            .args([
                "run",
                &format!("{fixtures}/{name}.model.safetensors"),
                &format!("{fixtures}/{name}.io.safetensors"),
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(res.status.success(), "{name}: {res:?}");
        let (ow, ol) = torch::aligned(out.to_str().unwrap());
        let got = SafeTensors::parse(&bytemuck::cast_slice(&ow)[..ol]).unwrap();
        let (iw, il) = fixture(name, "io");
        let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
        let d = max_diff(
            got.tensor("full").unwrap().as_f32().unwrap(),
            io.tensor("full").unwrap().as_f32().unwrap(),
        );
        assert!(d <= TOLERANCE, "{name}: {d:e}");
    }
    // A decoder's inputs given to an encoder wrapper: `x` is refused by name.
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_picoformer"))
        .args([
            "run",
            &format!("{fixtures}/enc_wrap.model.safetensors"),
            &format!("{fixtures}/enc_bare.io.safetensors"),
            dir.join("never.safetensors").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("`x` is not an input"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
