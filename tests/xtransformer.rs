//! x-transformers' `XTransformer` (issue 25) against a torch fixture with a padded source
//! (`tools/make_xtransformer_fixture.py`): the encoder's embeddings, then the decoder's logits
//! for `tgt` given them with `context_mask` = the source mask, full and step-wise.

use picoformer::safetensors::SafeTensors;
use picoformer::{
    DecoderConfig, KvCache, Masks, Scratch, Tensor, TensorView, WrapperConfig, XTransformer,
};

#[path = "common/torch.rs"]
mod torch;
use torch::{aligned, max_diff, TOLERANCE};

#[test]
fn xt_pad() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let (mw, ml) = aligned(&format!("{dir}/xt_pad.model.safetensors"));
    let file = SafeTensors::parse(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let source = |name: &str| {
        file.tensor(name)
            .map(|t| TensorView::new(Tensor::F32(t.as_f32().unwrap()), t.shape()))
    };
    // The fixture's XTransformer(dim=32, enc_depth=2, enc_heads=2, enc_attn_dim_head=16,
    // enc_num_tokens=40, enc_max_seq_len=16, dec_depth=2, dec_heads=4, dec_attn_dim_head=8,
    // dec_num_tokens=30, dec_max_seq_len=16, dec_rotary_pos_emb=True).
    let enc = WrapperConfig::new(40, 16, DecoderConfig::new(32, 2).heads(2).attn_dim_head(16));
    let dec = WrapperConfig::new(
        30,
        16,
        DecoderConfig::new(32, 2)
            .heads(4)
            .attn_dim_head(8)
            .rotary_pos_emb(true)
            .cross_attend(true),
    );
    let xt: XTransformer = XTransformer::from_source(enc, dec, &source).unwrap();
    let (iw, il) = aligned(&format!("{dir}/xt_pad.io.safetensors"));
    let io = SafeTensors::parse(&bytemuck::cast_slice(&iw)[..il]).unwrap();
    let src: Vec<u32> = io
        .tensor("src")
        .unwrap()
        .as_i64()
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect();
    let tgt: Vec<u32> = io
        .tensor("tgt")
        .unwrap()
        .as_i64()
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect();
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
    let (b, n, m, v, dim) = (2, 6, 5, 30, 32);
    let ecfg = xt.encoder().decoder().config();
    let dcfg = xt.decoder().decoder().config();
    let mut ekv = vec![f32::NAN; KvCache::<f32>::elements(ecfg, n)];
    let mut esb = vec![f32::NAN; Scratch::elements(ecfg, n)];
    let mut ecache = KvCache::new(ecfg, n, &mut ekv).unwrap();
    let mut escratch = Scratch::new(ecfg, n, &mut esb).unwrap();
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
    println!("xt_pad: max |encoder - torch| = {worst_enc:.2e}, |full - torch| = {worst_full:.2e}, |step-wise - torch| = {worst_step:.2e}");
    assert!(worst_enc <= TOLERANCE && worst_full <= TOLERANCE && worst_step <= TOLERANCE);
}

/// A source longer than the decoder's context cache, and one longer than the encoder's
/// scratch: typed errors, nothing written.
#[test]
fn source_too_long() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let (mw, ml) = aligned(&format!("{dir}/xt_pad.model.safetensors"));
    let file = SafeTensors::parse(&bytemuck::cast_slice(&mw)[..ml]).unwrap();
    let source = |name: &str| {
        file.tensor(name)
            .map(|t| TensorView::new(Tensor::F32(t.as_f32().unwrap()), t.shape()))
    };
    let enc = WrapperConfig::new(40, 16, DecoderConfig::new(32, 2).heads(2).attn_dim_head(16));
    let dec = WrapperConfig::new(
        30,
        16,
        DecoderConfig::new(32, 2)
            .heads(4)
            .attn_dim_head(8)
            .rotary_pos_emb(true)
            .cross_attend(true),
    );
    let xt: XTransformer = XTransformer::from_source(enc, dec, &source).unwrap();
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
            picoformer::Error::BufferTooSmall {
                buffer: picoformer::Buffer::Scratch,
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
        picoformer::Error::ContextTooLong {
            rows: 6,
            capacity: 4
        }
    );
    assert_eq!((cache.len(), cache.context_len()), (0, None));
    assert!(out.iter().all(|&v| v == 7.0));
}
