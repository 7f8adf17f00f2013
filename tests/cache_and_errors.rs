//! KV cache edges (capacity − 1, capacity, capacity + 1), truncate/reset, poisoned buffers, and
//! every error path: each returns its typed error and leaves all state unchanged.

mod common;
mod reference;

use common::*;
use picoformer::{
    Buffer, ConfigError, Decoder, DecoderConfig, Dims, Error, KvCache, Scratch, Tensor, TensorView,
    TransformerWrapper, WeightName, WrapperConfig,
};

fn cfg() -> DecoderConfig {
    DecoderConfig::new(16, 2)
        .heads(4)
        .attn_dim_head(8)
        .attn_kv_heads(2)
        .rotary_pos_emb(true)
        .cross_attend(true)
        .cross_attn_dim_context(6)
        .ff_glu(true)
}

fn table(cfg: &DecoderConfig, wrapper: Option<&WrapperConfig>) -> Table {
    let r = ref_config(cfg, wrapper);
    let mut w = reference::random_weights(&r, 7);
    Table::from_ref(&r, &mut w)
}

const CAP: usize = 6;

#[test]
fn capacity_edges_and_full_changes_nothing() {
    let c = cfg();
    let t = table(&c, None);
    let dec: Decoder = Decoder::from_source(c, &&t).unwrap();
    let x = values(1, (CAP + 1) * c.dim);
    let ctx = values(2, 3 * 6);
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(&c, CAP)];
    let mut kc = vec![f32::NAN; KvCache::<f32>::context_elements(&c, 3)];
    let mut sb = vec![f32::NAN; Scratch::elements(&c, 2)];
    let mut cache = KvCache::with_context(&c, CAP, &mut kv, 3, &mut kc).unwrap();
    let mut scratch = Scratch::new(&c, 2, &mut sb).unwrap();

    // A prefill of capacity + 1 on an empty cache is refused and writes nothing.
    let mut out = vec![7.0f32; (CAP + 1) * c.dim];
    let e = dec
        .forward(&mut cache, &mut scratch, &x, Some(&ctx), &mut out)
        .unwrap_err();
    assert_eq!(
        e,
        Error::CacheFull {
            len: 0,
            requested: CAP + 1,
            capacity: CAP
        }
    );
    assert!(out.iter().all(|&v| v == 7.0));
    assert_eq!((cache.len(), cache.context_len()), (0, None));

    // capacity − 1, then the last slot, then one more.
    let d = c.dim;
    dec.forward(
        &mut cache,
        &mut scratch,
        &x[..(CAP - 1) * d],
        Some(&ctx),
        &mut out[..(CAP - 1) * d],
    )
    .unwrap();
    assert_eq!(cache.remaining(), 1);
    dec.step(
        &mut cache,
        &mut scratch,
        &x[(CAP - 1) * d..CAP * d],
        None,
        &mut out[(CAP - 1) * d..CAP * d],
    )
    .unwrap();
    assert_eq!(cache.len(), CAP);
    let before = out.clone();
    let e = dec
        .step(
            &mut cache,
            &mut scratch,
            &x[CAP * d..],
            None,
            &mut out[CAP * d..],
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::CacheFull {
            len: CAP,
            requested: 1,
            capacity: CAP
        }
    );
    assert_eq!(cache.len(), CAP);
    assert_eq!(out, before);

    // A full cache still truncates and continues identically.
    cache.truncate(CAP - 1).unwrap();
    let mut again = vec![0.0; d];
    dec.step(
        &mut cache,
        &mut scratch,
        &x[(CAP - 1) * d..CAP * d],
        None,
        &mut again,
    )
    .unwrap();
    assert_eq!(again, out[(CAP - 1) * d..CAP * d]);
}

#[test]
fn truncate_and_reset_replay_bit_for_bit() {
    let c = cfg();
    let t = table(&c, None);
    let dec: Decoder = Decoder::from_source(c, &&t).unwrap();
    let d = c.dim;
    let x = values(3, CAP * d);
    let ctx = values(4, 2 * 6);
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(&c, CAP)];
    let mut kc = vec![f32::NAN; KvCache::<f32>::context_elements(&c, 2)];
    let mut sb = vec![f32::NAN; Scratch::elements(&c, 1)];
    let mut cache = KvCache::with_context(&c, CAP, &mut kv, 2, &mut kc).unwrap();
    let mut scratch = Scratch::new(&c, 1, &mut sb).unwrap();
    let mut first = vec![0.0; CAP * d];
    for i in 0..CAP {
        dec.step(
            &mut cache,
            &mut scratch,
            &x[i * d..(i + 1) * d],
            Some(&ctx),
            &mut first[i * d..(i + 1) * d],
        )
        .unwrap();
    }
    assert!(first.iter().all(|v| v.is_finite()));

    // Truncate to every length, poison what is past it, and replay.
    for k in 0..CAP {
        cache.truncate(k).unwrap();
        cache.poison_unused();
        scratch.poison();
        let mut replay = vec![0.0; (CAP - k) * d];
        dec.forward(&mut cache, &mut scratch, &x[k * d..], None, &mut replay)
            .unwrap();
        assert_eq!(replay, first[k * d..], "replay after truncate({k})");
    }
    assert_eq!(
        cache.truncate(CAP + 1),
        Err(Error::TruncateBeyondLength {
            requested: CAP + 1,
            len: CAP
        })
    );
    assert_eq!(cache.len(), CAP);

    // Reset forgets the context too: the next call needs one, and gives the same numbers.
    cache.reset();
    cache.poison_unused();
    let mut out = vec![0.0; CAP * d];
    assert_eq!(
        dec.forward(&mut cache, &mut scratch, &x, None, &mut out),
        Err(Error::ContextRequired)
    );
    dec.forward(&mut cache, &mut scratch, &x, Some(&ctx), &mut out)
        .unwrap();
    assert!(max_diff(&out, &first) <= 2e-5);
    // A context given after the first call is ignored, as in x-transformers.
    cache.truncate(CAP - 1).unwrap();
    let other = values(99, 2 * 6);
    let mut last = vec![0.0; d];
    dec.step(
        &mut cache,
        &mut scratch,
        &x[(CAP - 1) * d..],
        Some(&other),
        &mut last,
    )
    .unwrap();
    assert_eq!(last, out[(CAP - 1) * d..]);
}

/// Runs a call that must fail and checks that neither the cache nor the output changed, and that
/// decoding afterwards gives what it would have given without the failed call.
#[test]
fn every_error_leaves_state_unchanged() {
    let c = cfg();
    let t = table(&c, None);
    let dec: Decoder = Decoder::from_source(c, &&t).unwrap();
    let d = c.dim;
    let x = values(5, 3 * d);
    let ctx = values(6, 2 * 6);
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(&c, 4)];
    let mut kc = vec![f32::NAN; KvCache::<f32>::context_elements(&c, 2)];
    let mut sb = vec![f32::NAN; Scratch::elements(&c, 2)];
    let mut cache = KvCache::with_context(&c, 4, &mut kv, 2, &mut kc).unwrap();
    let mut scratch = Scratch::new(&c, 2, &mut sb).unwrap();
    let mut out = vec![3.0f32; 3 * d];

    let long_ctx = values(7, 3 * 6);
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        (
            "empty",
            dec.forward(&mut cache, &mut scratch, &[], Some(&ctx), &mut []),
        ),
        (
            "ragged x",
            dec.forward(
                &mut cache,
                &mut scratch,
                &x[..d + 1],
                Some(&ctx),
                &mut out[..d + 1],
            ),
        ),
        (
            "out length",
            dec.forward(&mut cache, &mut scratch, &x, Some(&ctx), &mut out[..d]),
        ),
        (
            "no context",
            dec.forward(&mut cache, &mut scratch, &x, None, &mut out),
        ),
        (
            "ragged context",
            dec.forward(&mut cache, &mut scratch, &x, Some(&ctx[..7]), &mut out),
        ),
        (
            "long context",
            dec.forward(&mut cache, &mut scratch, &x, Some(&long_ctx), &mut out),
        ),
        (
            "step of 3 rows",
            dec.step(&mut cache, &mut scratch, &x, Some(&ctx), &mut out),
        ),
        (
            "too many",
            dec.forward(
                &mut cache,
                &mut scratch,
                &values(8, 5 * d),
                Some(&ctx),
                &mut vec![0.0; 5 * d],
            ),
        ),
    ];
    let expected = [
        Error::EmptyInput,
        Error::BufferLength {
            buffer: Buffer::Input,
            expected: d,
            found: d + 1,
        },
        Error::BufferLength {
            buffer: Buffer::Output,
            expected: 3 * d,
            found: d,
        },
        Error::ContextRequired,
        Error::BufferLength {
            buffer: Buffer::Context,
            expected: 6,
            found: 7,
        },
        Error::ContextTooLong {
            rows: 3,
            capacity: 2,
        },
        Error::BufferLength {
            buffer: Buffer::Input,
            expected: d,
            found: 3 * d,
        },
        Error::CacheFull {
            len: 0,
            requested: 5,
            capacity: 4,
        },
    ];
    for ((name, got), want) in cases.into_iter().zip(expected) {
        assert_eq!(got, Err(want), "{name}");
        assert_eq!(
            (cache.len(), cache.context_len()),
            (0, None),
            "{name} changed the cache"
        );
    }
    assert!(out.iter().all(|&v| v == 3.0), "a failed call wrote to out");

    // A config mismatch between decoder and buffers.
    let other = DecoderConfig::new(16, 1).heads(4).attn_dim_head(8);
    let mut kv2 = vec![0.0f32; KvCache::<f32>::elements(&other, 4)];
    let mut sb2 = vec![0.0f32; Scratch::elements(&other, 2)];
    let mut cache2 = KvCache::new(&other, 4, &mut kv2).unwrap();
    let mut scratch2 = Scratch::new(&other, 2, &mut sb2).unwrap();
    assert_eq!(
        dec.forward(&mut cache2, &mut scratch, &x, Some(&ctx), &mut out),
        Err(Error::ConfigMismatch(Buffer::KvCache))
    );
    assert_eq!(
        dec.forward(&mut cache, &mut scratch2, &x, Some(&ctx), &mut out),
        Err(Error::ConfigMismatch(Buffer::Scratch))
    );

    // Nothing was lost: decoding now equals decoding on a fresh cache.
    dec.forward(&mut cache, &mut scratch, &x, Some(&ctx), &mut out)
        .unwrap();
    let mut kv3 = vec![f32::NAN; KvCache::<f32>::elements(&c, 4)];
    let mut kc3 = vec![f32::NAN; KvCache::<f32>::context_elements(&c, 2)];
    let mut fresh_cache = KvCache::with_context(&c, 4, &mut kv3, 2, &mut kc3).unwrap();
    let mut fresh = vec![0.0; 3 * d];
    dec.forward(&mut fresh_cache, &mut scratch, &x, Some(&ctx), &mut fresh)
        .unwrap();
    assert_eq!(out, fresh);
    // A context for a model without cross-attention.
    let plain = DecoderConfig::new(16, 1).heads(2).attn_dim_head(8);
    let pt = table(&plain, None);
    let pdec: Decoder = Decoder::from_source(plain, &&pt).unwrap();
    let mut kv4 = vec![0.0f32; KvCache::<f32>::elements(&plain, 2)];
    let mut sb4 = vec![0.0f32; Scratch::elements(&plain, 1)];
    let mut c4 = KvCache::new(&plain, 2, &mut kv4).unwrap();
    let mut s4 = Scratch::new(&plain, 1, &mut sb4).unwrap();
    assert_eq!(
        pdec.forward(&mut c4, &mut s4, &x[..d], Some(&ctx), &mut out[..d]),
        Err(Error::ContextNotExpected)
    );
    assert_eq!(c4.len(), 0);
}

#[test]
fn buffers_too_small_report_needed_and_available() {
    let c = cfg();
    let need = KvCache::<f32>::elements(&c, 5);
    assert_eq!(need, 2 * 2 * (2 * 8) * 5);
    let mut small = vec![0.0f32; need - 1];
    let mut ctx = vec![0.0f32; KvCache::<f32>::context_elements(&c, 1)];
    assert_eq!(
        KvCache::with_context(&c, 5, &mut small, 1, &mut ctx).unwrap_err(),
        Error::BufferTooSmall {
            buffer: Buffer::KvCache,
            needed: need,
            available: need - 1
        }
    );
    let mut big = vec![0.0f32; need];
    assert_eq!(
        KvCache::with_context(&c, 5, &mut big, 2, &mut ctx).unwrap_err(),
        Error::BufferTooSmall {
            buffer: Buffer::ContextCache,
            needed: 2 * ctx.len(),
            available: ctx.len()
        }
    );
    // A cross-attending model needs a context cache.
    assert!(matches!(
        KvCache::new(&c, 5, &mut big),
        Err(Error::BufferTooSmall {
            buffer: Buffer::ContextCache,
            ..
        })
    ));
    let s = Scratch::elements(&c, 3);
    let mut sb = vec![0.0f32; s - 1];
    assert_eq!(
        Scratch::new(&c, 3, &mut sb).unwrap_err(),
        Error::BufferTooSmall {
            buffer: Buffer::Scratch,
            needed: s,
            available: s - 1
        }
    );
    assert_eq!(Scratch::new(&c, 0, &mut sb).unwrap_err(), Error::EmptyInput);
    // Prefill panels: per block to_q [32, 16], to_k/to_v [16, 16], to_out [16, 32], the cross
    // to_q, to_k/to_v [16, 6] (the context's width) and to_out, ff proj [128, 16] (GLU) and
    // out [16, 64]; rows rounded up to 32, plus 15.
    let panel = |rows: usize, cols: usize| rows.div_ceil(32) * 32 * cols + 15;
    let p = 2
        * (3 * panel(32, 16)
            + panel(16, 32)
            + panel(32, 16)
            + 2 * panel(16, 6)
            + panel(16, 32)
            + panel(128, 16)
            + panel(16, 64));
    assert_eq!(picoformer::packing::prefill_panels_len(&c), p);
    let t = table(&c, None);
    let dec: Decoder = Decoder::from_source(c, &&t).unwrap();
    assert_eq!(dec.prefill_panels_len(), p);
    let mut arena = vec![0.0f32; p - 1];
    assert_eq!(
        dec.with_prefill_panels(&mut arena).unwrap_err(),
        Error::BufferTooSmall {
            buffer: Buffer::PrefillPanels,
            needed: p,
            available: p - 1
        }
    );
    assert!(!dec.has_prefill_panels());
    // A larger arena is fine (its first `p` values are used).
    let mut arena = vec![0.0f32; p + 7];
    assert!(dec
        .with_prefill_panels(&mut arena)
        .unwrap()
        .has_prefill_panels());
    // The f16 cache needs the same number of elements, half the bytes.
    assert_eq!(KvCache::<picoformer::f16>::elements(&c, 5), need);
    assert_eq!(
        KvCache::<picoformer::f16>::bytes(&c, 5) * 2,
        KvCache::<f32>::bytes(&c, 5)
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let base = DecoderConfig::new(16, 1).heads(4).attn_dim_head(8);
    let cases = [
        (DecoderConfig::new(0, 1), ConfigError::Zero("dim")),
        (DecoderConfig::new(16, 0), ConfigError::Zero("depth")),
        (base.heads(0), ConfigError::Zero("heads")),
        (base.attn_dim_head(0), ConfigError::Zero("attn_dim_head")),
        (
            base.attn_kv_heads(3),
            ConfigError::KvHeads {
                heads: 4,
                kv_heads: 3,
            },
        ),
        (
            base.attn_kv_heads(8),
            ConfigError::KvHeads {
                heads: 4,
                kv_heads: 8,
            },
        ),
        (
            base.heads(1),
            ConfigError::SingleHeadWidth {
                dim: 16,
                dim_head: 8,
            },
        ),
        (
            base.rotary_pos_emb(true).rotary_emb_dim(3),
            ConfigError::RotaryDim {
                rotary_emb_dim: 3,
                dim_head: 8,
            },
        ),
        (
            base.rotary_pos_emb(true).rotary_emb_dim(10),
            ConfigError::RotaryDim {
                rotary_emb_dim: 10,
                dim_head: 8,
            },
        ),
        (
            base.rotary_pos_emb(true)
                .rotary_emb_dim(2)
                .rotary_base_rescale_factor(2.0),
            ConfigError::RotaryDim {
                rotary_emb_dim: 2,
                dim_head: 8,
            },
        ),
        (
            base.rotary_pos_emb(true).rotary_interpolation_factor(0.5),
            ConfigError::NotPositive("rotary_interpolation_factor"),
        ),
        (
            base.rotary_pos_emb(true)
                .rotary_base_rescale_factor(f64::NAN),
            ConfigError::NotFinite("rotary_base_rescale_factor"),
        ),
        (
            base.use_rmsnorm(true).use_simple_rmsnorm(true),
            ConfigError::Conflict("use_rmsnorm", "use_simple_rmsnorm"),
        ),
        (base.ff_mult(0.01), ConfigError::Zero("ff_mult")),
        (base.ff_mult(f64::NAN), ConfigError::NotFinite("ff_mult")),
        // Too large, not "must be positive" (the inner width saturates to 0 past usize).
        (base.ff_mult(1e30), ConfigError::TooLarge),
        (DecoderConfig::new(usize::MAX, 1), ConfigError::TooLarge),
        (
            base.cross_attend(true).cross_attn_dim_context(0),
            ConfigError::Zero("cross_attn_dim_context"),
        ),
        (
            DecoderConfig::new(1 << 20, 1)
                .heads(2)
                .attn_dim_head(1 << 20),
            ConfigError::TooLarge,
        ),
    ];
    for (c, e) in cases {
        assert_eq!(c.validate(), Err(e), "{c:?}");
        let t = Table {
            tensors: Default::default(),
        };
        assert_eq!(
            Decoder::<16>::from_source(c, &&t).unwrap_err(),
            Error::Config(e)
        );
        let mut buf = [0.0f32; 4];
        assert_eq!(KvCache::new(&c, 1, &mut buf).unwrap_err(), Error::Config(e));
    }
    let w = WrapperConfig::new(0, 8, base);
    assert_eq!(w.validate(), Err(ConfigError::Zero("num_tokens")));
}

#[test]
fn weight_errors_name_the_tensor() {
    let c = cfg();
    let mut t = table(&c, None);
    let name = WeightName {
        prefix: "",
        sublayer: Some(3),
        suffix: "1.to_k.weight",
    };
    assert_eq!(name.to_string(), "layers.3.1.to_k.weight");
    let (v, _) = t.tensors.remove("layers.3.1.to_k.weight").unwrap();
    assert_eq!(
        Decoder::<16>::from_source(c, &&t).unwrap_err(),
        Error::MissingWeight(name)
    );
    t.tensors
        .insert("layers.3.1.to_k.weight".into(), (v.clone(), vec![8, 32]));
    let e = Decoder::<16>::from_source(c, &&t).unwrap_err();
    assert_eq!(
        e,
        Error::WeightShape {
            name,
            expected: Dims::new(&[16, 16]),
            found: Dims::new(&[8, 32])
        }
    );
    assert_eq!(
        e.to_string(),
        "weight `layers.3.1.to_k.weight` has shape (8, 32), expected (16, 16)"
    );
    // Data shorter than its shape.
    let short = v[..10].to_vec();
    let src = |n: &str| {
        if n == "layers.3.1.to_k.weight" {
            Some(TensorView::new(Tensor::F32(&short), &[16, 16]))
        } else {
            t.tensors
                .get(n)
                .map(|(v, s)| TensorView::new(Tensor::F32(v), s))
        }
    };
    assert!(matches!(
        Decoder::<16>::from_source(c, &src),
        Err(Error::WeightShape { .. })
    ));
    // Depth beyond MAX_DEPTH.
    t.tensors
        .insert("layers.3.1.to_k.weight".into(), (v, vec![16, 16]));
    assert_eq!(
        Decoder::<1>::from_source(c, &&t).unwrap_err(),
        Error::DepthExceedsCapacity {
            depth: 2,
            max_depth: 1
        }
    );
    assert!(Decoder::<2>::from_source(c, &&t).is_ok());
}

#[test]
fn wrapper_errors() {
    let d = DecoderConfig::new(8, 1).heads(2).attn_dim_head(4);
    let w = WrapperConfig::new(11, 4, d);
    let t = table(&d, Some(&w));
    let m: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    assert_eq!(m.tensors_used(), t.tensors.len());
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, 8)];
    let mut sb = vec![0.0f32; Scratch::elements(&d, 2)];
    let mut cache = KvCache::new(&d, 8, &mut kv).unwrap();
    let mut scratch = Scratch::new(&d, 2, &mut sb).unwrap();
    let mut logits = vec![5.0f32; 3 * 11];
    assert_eq!(
        m.forward(&mut cache, &mut scratch, &[1, 11, 2], None, &mut logits),
        Err(Error::TokenOutOfRange {
            token: 11,
            index: 1,
            num_tokens: 11
        })
    );
    assert_eq!(
        m.forward(&mut cache, &mut scratch, &[1, 2], None, &mut logits),
        Err(Error::BufferLength {
            buffer: Buffer::Output,
            expected: 22,
            found: 33
        })
    );
    assert_eq!(
        m.forward(&mut cache, &mut scratch, &[], None, &mut []),
        Err(Error::EmptyInput)
    );
    assert_eq!(
        m.forward(
            &mut cache,
            &mut scratch,
            &[1, 2, 3, 4, 5],
            None,
            &mut vec![0.0; 55]
        ),
        Err(Error::PositionOutOfRange {
            position: 4,
            max_seq_len: 4
        })
    );
    assert!(logits.iter().all(|&v| v == 5.0));
    assert_eq!(cache.len(), 0);
    m.forward(&mut cache, &mut scratch, &[1, 2, 3], None, &mut logits)
        .unwrap();
    assert_eq!(
        m.step(&mut cache, &mut scratch, 7, &mut logits[..10]),
        Err(Error::BufferLength {
            buffer: Buffer::Output,
            expected: 11,
            found: 10
        })
    );
    m.step(&mut cache, &mut scratch, 4, &mut logits[..11])
        .unwrap();
    // The absolute position table is exhausted at max_seq_len even though the cache has room.
    assert_eq!(
        m.step(&mut cache, &mut scratch, 4, &mut logits[..11]),
        Err(Error::PositionOutOfRange {
            position: 4,
            max_seq_len: 4
        })
    );
    assert_eq!(cache.len(), 4);
}

/// A NaN in any float field is refused, even where the option is off: configurations are
/// compared with `==` (caches and arenas are built for one), and NaN equals nothing, so such a
/// configuration used to validate and then fail every forward call with `ConfigMismatch`.
#[test]
fn nan_in_an_unused_float_field_is_refused() {
    let base = DecoderConfig::new(16, 1).heads(2).attn_dim_head(8);
    for (cfg, field) in [
        (
            base.rotary_base_rescale_factor(f64::NAN),
            "rotary_base_rescale_factor",
        ),
        (
            base.rotary_interpolation_factor(f64::NAN),
            "rotary_interpolation_factor",
        ),
        (
            base.scale_residual_constant(f64::NAN),
            "scale_residual_constant",
        ),
    ] {
        assert_eq!(cfg.validate(), Err(ConfigError::NotFinite(field)));
        let mut kv = vec![0.0f32; 1024];
        assert!(KvCache::new(&cfg, 4, &mut kv).is_err());
    }
}

/// A rolling cache: refused without local attention or with a capacity that cannot hold the
/// window; it never fills; truncate goes back only as far as the ring still holds the window,
/// and a refused truncate changes nothing.
#[test]
fn rolling_cache_edges() {
    let plain = cfg().cross_attend(false);
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&plain, 4)];
    assert_eq!(
        KvCache::rolling(&plain, 4, &mut kv, 0, &mut []).unwrap_err(),
        Error::RollingCache {
            window: None,
            capacity: 4
        }
    );
    let c = plain.attn_max_attend_past(3);
    let e = KvCache::rolling(&c, 3, &mut kv, 0, &mut []).unwrap_err();
    assert_eq!(
        e,
        Error::RollingCache {
            window: Some(3),
            capacity: 3
        }
    );
    assert_eq!(
        e.to_string(),
        "a rolling cache for attn_max_attend_past = 3 needs a capacity of at least 4, not 3"
    );
    // Local attention with cross-attention is refused (x-transformers windows the context too).
    assert_eq!(
        cfg().attn_max_attend_past(3).validate(),
        Err(ConfigError::Conflict(
            "attn_max_attend_past",
            "cross_attend"
        ))
    );

    let t = table(&c, None);
    let dec: Decoder = Decoder::from_source(c, &&t).unwrap();
    let mut cache = KvCache::rolling(&c, 4, &mut kv, 0, &mut []).unwrap();
    assert!(cache.is_rolling() && cache.max_len() == usize::MAX);
    let mut sb = vec![0.0f32; Scratch::elements(&c, 8)];
    let mut scratch = Scratch::new(&c, 8, &mut sb).unwrap();
    let x = values(3, 20 * c.dim);
    let mut out = vec![0.0f32; 20 * c.dim];
    // 20 positions in one call (chunks of capacity − N = 1) in a ring of 4.
    dec.forward(&mut cache, &mut scratch, &x, None, &mut out)
        .unwrap();
    assert_eq!(cache.len(), 20);
    // The ring holds positions 16..20; going back to 19 needs 16..19: fine; to 18 needs 15.
    assert_eq!(
        cache.truncate(18),
        Err(Error::TruncateBeyondWindow {
            requested: 18,
            oldest: 19
        })
    );
    assert_eq!(cache.len(), 20);
    cache.truncate(19).unwrap();
    assert_eq!(cache.len(), 19);
    cache.truncate(0).unwrap();
    assert_eq!(cache.len(), 0);
}

/// xpos is causal only: an Encoder over an xpos model refuses every call with a typed error and
/// writes nothing; xpos with memory keys is refused at validation.
#[test]
fn xpos_is_causal_only() {
    let c = cfg().cross_attend(false).rotary_xpos(16);
    let t = table(&c, None);
    let enc: picoformer::Encoder = picoformer::Encoder::from_source(c, &&t).unwrap();
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(&c, 4)];
    let mut sb = vec![f32::NAN; Scratch::elements(&c, 4)];
    let mut cache = KvCache::new(&c, 4, &mut kv).unwrap();
    let mut scratch = Scratch::new(&c, 4, &mut sb).unwrap();
    let x = values(5, 4 * c.dim);
    let mut out = vec![7.0f32; 4 * c.dim];
    let e = enc
        .forward(
            &mut cache,
            &mut scratch,
            &x,
            None,
            picoformer::Masks::NONE,
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::Config(ConfigError::Conflict("rotary_xpos", "causal"))
    );
    assert!(out.iter().all(|&v| v == 7.0) && cache.is_empty());
    assert_eq!(
        c.attn_num_mem_kv(2).validate(),
        Err(ConfigError::Conflict("rotary_xpos", "attn_num_mem_kv"))
    );
}

/// `from_source_in`: into an empty slot, a slot holding an unloaded wrapper and one holding a
/// loaded wrapper of another configuration, the same logits as `from_source`; a failed load
/// empties the slot; an unloaded wrapper refuses to run instead of panicking.
#[test]
fn wrapper_built_in_place() {
    let d = DecoderConfig::new(8, 1).heads(2).attn_dim_head(4);
    let w = WrapperConfig::new(11, 4, d);
    let t = table(&d, Some(&w));
    let logits = |m: &TransformerWrapper| {
        let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, 4)];
        let mut sb = vec![0.0f32; Scratch::elements(&d, 3)];
        let mut cache = KvCache::new(&d, 4, &mut kv).unwrap();
        let mut scratch = Scratch::new(&d, 3, &mut sb).unwrap();
        let mut out = vec![0.0f32; 3 * 11];
        m.forward(&mut cache, &mut scratch, &[1, 7, 2], None, &mut out)
            .map(|()| out)
    };
    let reference: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let want = logits(&reference).unwrap();

    let other_d = DecoderConfig::new(16, 2).heads(2).attn_dim_head(8);
    let other_w = WrapperConfig::new(5, 6, other_d);
    let other_t = table(&other_d, Some(&other_w));
    let other: TransformerWrapper = TransformerWrapper::from_source(other_w, &&other_t).unwrap();
    for start in [None, Some(TransformerWrapper::unloaded(w)), Some(other)] {
        let mut slot = start;
        TransformerWrapper::from_source_in(w, &&t, &mut slot).unwrap();
        let got = slot.as_ref().unwrap();
        assert_eq!(got.tensors_used(), t.tensors.len());
        assert_eq!(logits(got).unwrap(), want);
    }

    // A missing weight: the error, and nothing left in the slot.
    let mut partial = table(&d, Some(&w));
    partial.tensors.remove("token_emb.emb.weight");
    let mut slot = Some(reference.clone());
    let err = TransformerWrapper::from_source_in(w, &&partial, &mut slot).unwrap_err();
    assert!(matches!(err, Error::MissingWeight(_)), "{err:?}");
    assert!(slot.is_none());

    // An unloaded wrapper has no weights: a typed error, not a panic.
    let unloaded: TransformerWrapper = TransformerWrapper::unloaded(w);
    assert!(logits(&unloaded).is_err());
}
