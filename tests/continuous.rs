//! x-transformers' `ContinuousTransformerWrapper` (issue 25) against torch fixtures
//! (`tools/make_continuous_fixtures.py`): around a Decoder (full and streaming, one frame per
//! call) and around an Encoder (a sequence out, and a pooled keyword-spotting-shaped output).

use picoformer::safetensors::SafeTensors;
use picoformer::{
    ContinuousConfig, ContinuousTransformerWrapper, DecoderConfig, Error, KvCache, Masks, Scratch,
    Tensor, TensorView,
};

#[path = "common/torch.rs"]
mod torch;
use torch::{aligned, max_diff, TOLERANCE};

/// Runs fixture `name` with `cfg`; `encoder` selects the bidirectional pass. Returns the worst
/// (full, step-wise) differences.
fn check(name: &str, cfg: ContinuousConfig, encoder: bool) -> (f32, f32) {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let (mw, ml) = aligned(&format!("{dir}/{name}.model.safetensors"));
    let file = SafeTensors::parse(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let source = |k: &str| {
        file.tensor(k)
            .map(|t| TensorView::new(Tensor::F32(t.as_f32().unwrap()), t.shape()))
    };
    let model: ContinuousTransformerWrapper =
        ContinuousTransformerWrapper::from_source(cfg, &source).unwrap();
    let (iw, il) = aligned(&format!("{dir}/{name}.io.safetensors"));
    let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
    let x = io.tensor("x").unwrap();
    let (b, n, wi) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let x = x.as_f32().unwrap();
    let mask: Option<Vec<bool>> = io
        .tensor("mask")
        .map(|t| t.data().iter().map(|&v| v != 0).collect());
    let full = io.tensor("full").unwrap().as_f32().unwrap();
    let stepwise = io.tensor("stepwise").unwrap().as_f32().unwrap();
    let per = full.len() / b;
    let wo = cfg.output_width();
    let lc = &cfg.attn_layers;
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(lc, n)];
    let mut sb = vec![f32::NAN; Scratch::elements(lc, n)];
    let mut scratch = Scratch::new(lc, n, &mut sb).unwrap();
    let (mut wf, mut ws) = (0.0f32, 0.0f32);
    for bi in 0..b {
        let xb = &x[bi * n * wi..(bi + 1) * n * wi];
        let m = mask.as_ref().map(|m| &m[bi * n..(bi + 1) * n]);
        let mut out = vec![f32::NAN; per];
        let mut cache = KvCache::new(lc, n, &mut kv).unwrap();
        let masks = Masks {
            mask: m,
            context_mask: None,
        };
        if encoder {
            model
                .encode(&mut cache, &mut scratch, xb, None, masks, &mut out)
                .unwrap();
            wf = wf.max(max_diff(&out, &full[bi * per..(bi + 1) * per]));
        } else {
            model
                .forward(&mut cache, &mut scratch, xb, None, masks, &mut out)
                .unwrap();
            wf = wf.max(max_diff(&out, &full[bi * per..(bi + 1) * per]));
            // streaming: one frame in, one frame out
            let mut cache = KvCache::new(lc, n, &mut kv).unwrap();
            for i in 0..n {
                let masks = Masks {
                    mask: m.map(|m| &m[..i + 1]),
                    context_mask: None,
                };
                model
                    .forward(
                        &mut cache,
                        &mut scratch,
                        &xb[i * wi..(i + 1) * wi],
                        None,
                        masks,
                        &mut out[i * wo..(i + 1) * wo],
                    )
                    .unwrap();
            }
            ws = ws.max(max_diff(&out, &stepwise[bi * per..(bi + 1) * per]));
        }
    }
    println!("{name}: max |full - torch| = {wf:.2e}, max |step-wise - torch| = {ws:.2e}");
    assert!(wf <= TOLERANCE && ws <= TOLERANCE, "{name}: {wf:e} {ws:e}");
    (wf, ws)
}

#[test]
fn cont_dec() {
    let mut cfg = ContinuousConfig::new(16, DecoderConfig::new(32, 2).heads(2).attn_dim_head(16));
    cfg.dim_in = Some(10);
    cfg.dim_out = Some(6);
    check("cont_dec", cfg, false);
}

#[test]
fn cont_enc() {
    let layers = DecoderConfig::new(32, 2)
        .heads(4)
        .attn_dim_head(8)
        .rotary_pos_emb(true);
    let mut cfg = ContinuousConfig::new(16, layers);
    cfg.dim_in = Some(10);
    cfg.dim_out = Some(6);
    check("cont_enc", cfg, true);
}

#[test]
fn cont_enc_pool() {
    let mut cfg = ContinuousConfig::new(49, DecoderConfig::new(32, 2).heads(4).attn_dim_head(8));
    cfg.dim_in = Some(10);
    cfg.dim_out = Some(12);
    cfg.average_pool_embed = true;
    check("cont_enc_pool", cfg, true);
}

/// Streaming past `max_seq_len` with absolute positions is a typed error; nothing is written.
#[test]
fn positions_past_max_seq_len() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let (mw, ml) = aligned(&format!("{dir}/cont_dec.model.safetensors"));
    let file = SafeTensors::parse(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let source = |k: &str| {
        file.tensor(k)
            .map(|t| TensorView::new(Tensor::F32(t.as_f32().unwrap()), t.shape()))
    };
    let mut cfg = ContinuousConfig::new(16, DecoderConfig::new(32, 2).heads(2).attn_dim_head(16));
    cfg.dim_in = Some(10);
    cfg.dim_out = Some(6);
    let model: ContinuousTransformerWrapper =
        ContinuousTransformerWrapper::from_source(cfg, &source).unwrap();
    let lc = &cfg.attn_layers;
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(lc, 20)];
    let mut sb = vec![0.0f32; Scratch::elements(lc, 4)];
    let mut cache = KvCache::new(lc, 20, &mut kv).unwrap();
    let mut scratch = Scratch::new(lc, 4, &mut sb).unwrap();
    let x = vec![0.1f32; 17 * 10];
    let mut out = vec![7.0f32; 17 * 6];
    let e = model
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
    assert!(out.iter().all(|&v| v == 7.0));
}
