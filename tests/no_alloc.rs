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
