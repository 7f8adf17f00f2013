//! Zero heap allocations: a counting global allocator watches construction and decoding.

mod common;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;
mod reference;

use common::*;
use counting_alloc::{COUNT, WATCHING};
use picoformer::{Decoder, DecoderConfig, KvCache, Scratch, TransformerWrapper, WrapperConfig};

fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    WATCHING.with(|w| w.set(true));
    let r = f();
    WATCHING.with(|w| w.set(false));
    (r, COUNT.with(|c| c.get()))
}

#[test]
fn construction_and_decoding_allocate_nothing() {
    let d = DecoderConfig::new(16, 2)
        .heads(4)
        .attn_dim_head(8)
        .attn_kv_heads(2)
        .rotary_pos_emb(true)
        .cross_attend(true)
        .ff_glu(true);
    let w = WrapperConfig::new(20, 0, d).tie_embedding(true);
    let r = ref_config(&d, Some(&w));
    let mut rw = reference::random_weights(&r, 3);
    let table = Table::from_ref(&r, &mut rw);
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, 8)];
    let mut kc = vec![0.0f32; KvCache::<f32>::context_elements(&d, 3)];
    let mut sb = vec![0.0f32; Scratch::elements(&d, 2)];
    let ctx = values(1, 3 * 16);
    let x = values(2, 3 * 16);
    let mut logits = vec![0.0f32; 3 * 20];
    let mut out = vec![0.0f32; 3 * 16];
    // Table lookups by name hash a &str (no allocation); the keys are built in a heapless::String.
    let tref = &table;

    let (_, n) = allocations(|| {
        let model: TransformerWrapper = TransformerWrapper::from_source(w, &tref).unwrap();
        let mut cache = KvCache::with_context(&d, 8, &mut kv, 3, &mut kc).unwrap();
        let mut scratch = Scratch::new(&d, 2, &mut sb).unwrap();
        model
            .forward(
                &mut cache,
                &mut scratch,
                &[1, 2, 3],
                Some(&ctx),
                &mut logits,
            )
            .unwrap();
        for t in 0..4 {
            model
                .step(&mut cache, &mut scratch, t, &mut logits[..20])
                .unwrap();
        }
        assert!(model
            .step(&mut cache, &mut scratch, 99, &mut logits[..20])
            .is_err());
        cache.truncate(2).unwrap();
        model
            .step(&mut cache, &mut scratch, 5, &mut logits[..20])
            .unwrap();
        let dec = model.decoder();
        cache.reset();
        // The decoder alone, on the wrapper's decoder weights.
        dec.forward(&mut cache, &mut scratch, &x, Some(&ctx), &mut out)
            .unwrap();
        let _ = Decoder::<4>::from_source_prefixed(d, &tref, "attn_layers.").unwrap();
    });
    assert_eq!(n, 0, "heap allocations during construction and decoding");
    // The counter works: a Vec allocates.
    let (_, m) = allocations(|| vec![1u8; 10]);
    assert_eq!(m, 1);
}

/// The family's loaders and passes: an XTransformer and a ContinuousTransformerWrapper loaded
/// from their model files (metadata parsed, weights viewed in place), encoded and decoded.
#[test]
fn family_loading_and_running_allocate_nothing() {
    use picoformer::{ContinuousModel, Masks, XTransformer};
    let read = |name: &str| {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/{name}.model.safetensors",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
        (words, bytes.len())
    };
    let (xw, xl) = read("xt_tie");
    let (cw, cl) = read("cont_dec_ctx");
    let xt_bytes = &bytemuck::cast_slice::<u64, u8>(&xw)[..xl];
    let c_bytes = &bytemuck::cast_slice::<u64, u8>(&cw)[..cl];
    // Buffers for the configurations, sized outside the watched region.
    let xt: XTransformer = XTransformer::from_safetensors(xt_bytes).unwrap();
    let (e, d) = (
        *xt.encoder().decoder().config(),
        *xt.decoder().decoder().config(),
    );
    let mut ekv = vec![0.0f32; KvCache::<f32>::elements(&e, 4)];
    let mut esb = vec![0.0f32; Scratch::elements(&e, 4)];
    let mut memory = vec![0.0f32; 4 * e.dim];
    let mut dkv = vec![0.0f32; KvCache::<f32>::elements(&d, 3)];
    let mut dkc = vec![0.0f32; KvCache::<f32>::context_elements(&d, 4)];
    let mut dsb = vec![0.0f32; Scratch::elements(&d, 2)];
    let mut logits = vec![0.0f32; 3 * 20];
    let cm: ContinuousModel = ContinuousModel::from_safetensors(c_bytes).unwrap();
    let c = cm.config().attn_layers;
    let mut ckv = vec![0.0f32; KvCache::<f32>::elements(&c, 3)];
    let mut ckc = vec![0.0f32; KvCache::<f32>::context_elements(&c, 2)];
    let mut csb = vec![0.0f32; Scratch::elements(&c, 2)];
    let frames = values(4, 3 * 24);
    let ctx = values(5, 2 * 24);
    let mut out = [0.0f32; 3 * 5];
    let (_, n) = allocations(|| {
        let xt: XTransformer = XTransformer::from_safetensors(xt_bytes).unwrap();
        let mut ec = KvCache::new(&e, 4, &mut ekv).unwrap();
        let mut es = Scratch::new(&e, 4, &mut esb).unwrap();
        let src_mask = [false, true, true, true];
        xt.encode(
            &mut ec,
            &mut es,
            &[1, 2, 3, 4],
            Some(&src_mask),
            &mut memory,
        )
        .unwrap();
        let mut dc = KvCache::with_context(&d, 3, &mut dkv, 4, &mut dkc).unwrap();
        let mut ds = Scratch::new(&d, 2, &mut dsb).unwrap();
        let masks = Masks {
            mask: None,
            context_mask: Some(&src_mask),
        };
        xt.decoder()
            .forward_masked(
                &mut dc,
                &mut ds,
                &[5, 6],
                Some(&memory),
                masks,
                &mut logits[..40],
            )
            .unwrap();
        xt.decoder()
            .forward_masked(&mut dc, &mut ds, &[7], None, masks, &mut logits[40..])
            .unwrap();
        let cm: ContinuousModel = ContinuousModel::from_safetensors(c_bytes).unwrap();
        let ContinuousModel::Decoder(w) = &cm else {
            panic!("a Decoder's wrapper")
        };
        let mut cc = KvCache::with_context(&c, 3, &mut ckv, 2, &mut ckc).unwrap();
        let mut cs = Scratch::new(&c, 2, &mut csb).unwrap();
        for i in 0..3 {
            w.forward(
                &mut cc,
                &mut cs,
                &frames[i * 24..(i + 1) * 24],
                (i == 0).then_some(&ctx[..]),
                Masks::NONE,
                &mut out[i * 5..(i + 1) * 5],
            )
            .unwrap();
        }
        // Refusals allocate nothing either.
        assert!(picoformer::Model::<16>::from_safetensors(xt_bytes).is_err());
        assert!(ContinuousModel::<16>::from_safetensors(xt_bytes).is_err());
    });
    assert_eq!(
        n, 0,
        "heap allocations while loading and running the family"
    );
}
