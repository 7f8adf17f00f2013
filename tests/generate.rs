//! The generation loop: greedy generation with the cache equals greedy generation by full
//! recomputation at every step (token level), the sliding window equals recomputation over the
//! window, the same seed gives the same tokens, every stop reason and every error; no heap
//! allocation while generating; and the bundled demo model's bits per character equal
//! PyTorch's.

mod common;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;
mod reference;

use std::ops::ControlFlow;

use common::*;
use counting_alloc::{COUNT, WATCHING};
use picoformer::generate::{self, GenerateConfig, GenerateError, Generator, Overflow, StopReason};
use picoformer::metrics;
use picoformer::sampling::{Candidate, SampleError, Sampler, SamplerConfig};
use picoformer::{
    f16, DecoderConfig, Element, Error, KvCache, Model, Scratch, TransformerWrapper, WrapperConfig,
};

/// Test models: rotary with grouped-query attention, and absolute positions with tied
/// embeddings (every setting visible: random gains and biases from the reference).
fn configs() -> Vec<WrapperConfig> {
    let rotary = DecoderConfig::new(16, 2)
        .heads(4)
        .attn_dim_head(8)
        .attn_kv_heads(2)
        .rotary_pos_emb(true)
        .use_rmsnorm(true)
        .ff_glu(true)
        .ff_swish(true);
    let absolute = DecoderConfig::new(12, 2).heads(3).attn_dim_head(4);
    vec![
        WrapperConfig::new(23, 64, rotary),
        WrapperConfig::new(17, 64, absolute).tie_embedding(true),
    ]
}

fn table(w: &WrapperConfig, seed: u64) -> Table {
    let r = ref_config(&w.attn_layers, Some(w));
    let mut weights = reference::random_weights(&r, seed);
    Table::from_ref(&r, &mut weights)
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig::greedy(), 0).unwrap()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy generation with no cache reuse: for every new token, a fresh cache and a full
/// forward pass over `tokens[start..]`, where the window start follows the sliding rule
/// (`keep` = None: never slides).
fn greedy_by_recomputation(
    model: &TransformerWrapper,
    prompt: &[u32],
    n: usize,
    capacity: usize,
    keep: Option<usize>,
    context: Option<&[f32]>,
) -> Vec<u32> {
    let cfg = model.config();
    let d = cfg.attn_layers;
    let v = cfg.logits_width();
    let mut all = prompt.to_vec();
    let mut start = match keep {
        Some(k) if prompt.len() > capacity => prompt.len() - k.min(prompt.len()),
        _ => 0,
    };
    let mut out = Vec::new();
    for i in 0..n {
        if i > 0 && all.len() - start > capacity {
            start = all.len() - keep.unwrap();
        }
        let seq = &all[start..];
        let rows = context.map_or(0, |c| c.len() / d.dim_context());
        let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, seq.len())];
        let mut kc = vec![0.0f32; KvCache::<f32>::context_elements(&d, rows)];
        let mut sb = vec![0.0f32; Scratch::elements(&d, seq.len())];
        let mut cache = KvCache::with_context(&d, seq.len(), &mut kv, rows, &mut kc).unwrap();
        let mut scratch = Scratch::new(&d, seq.len(), &mut sb).unwrap();
        let mut logits = vec![0.0f32; seq.len() * v];
        model
            .forward(&mut cache, &mut scratch, seq, context, &mut logits)
            .unwrap();
        let t = argmax(&logits[(seq.len() - 1) * v..]);
        out.push(t);
        all.push(t);
    }
    out
}

struct Bufs<K: Element> {
    kv: Vec<K>,
    scratch: Vec<f32>,
    logits: Vec<f32>,
    work: Vec<Candidate>,
    history: Vec<u32>,
}

impl<K: Element> Bufs<K> {
    fn new(w: &WrapperConfig, capacity: usize, chunk: usize, history: usize) -> Self {
        Bufs {
            kv: vec![K::NAN; KvCache::<K>::elements(&w.attn_layers, capacity)],
            scratch: vec![f32::NAN; Scratch::elements(&w.attn_layers, chunk)],
            logits: vec![f32::NAN; w.logits_width()],
            work: vec![Candidate::EMPTY; Sampler::work_len(w.logits_width())],
            history: vec![u32::MAX; history],
        }
    }
}

/// Runs a generator, returning the tokens the callback saw and the result.
#[allow(clippy::too_many_arguments)]
fn generate_with<K: Element>(
    model: &TransformerWrapper,
    capacity: usize,
    chunk: usize,
    scfg: SamplerConfig,
    seed: u64,
    gcfg: GenerateConfig,
    prompt: &[u32],
) -> (Vec<u32>, Result<generate::Generated, GenerateError>, usize) {
    let w = *model.config();
    let mut b = Bufs::<K>::new(
        &w,
        capacity,
        chunk,
        gcfg.history_len(scfg.repetition_window),
    );
    let d = w.attn_layers;
    let mut cache = KvCache::new(&d, capacity, &mut b.kv).unwrap();
    let mut scratch = Scratch::new(&d, chunk, &mut b.scratch).unwrap();
    let sampler = Sampler::new(scfg, seed).unwrap();
    let mut g = Generator::new(sampler, gcfg, &mut b.logits, &mut b.work, &mut b.history).unwrap();
    let mut seen = Vec::with_capacity(gcfg.max_new_tokens);
    let r = g.run(model, &mut cache, &mut scratch, prompt, |t| {
        seen.push(t);
        ControlFlow::Continue(())
    });
    let len = cache.len();
    (seen, r, len)
}

/// Over int8 panels the logits (`to_logits`, or the tied embedding) are packed too: the same
/// logits as the int8 path over the stored Q8_0 rows (up to the rounding of the per-block
/// scaling), for every position; and an arena one byte short is a typed error.
#[test]
fn int8_panels_pack_the_logits_too() {
    for tie in [false, true] {
        let d = DecoderConfig::new(64, 1).heads(2).attn_dim_head(32);
        // 37 tokens: the last panel of 16 rows is partial.
        let w = WrapperConfig::new(37, 16, d).tie_embedding(tie);
        let t = table(&w, 11).quantized();
        let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
        let rows = model.clone().with_int8_activations(true);
        let mut arena = vec![0xA5u8; model.int8_panels_len()];
        let short = arena.len() - 1;
        assert!(matches!(
            model.with_int8_panels(&mut arena[..short]),
            Err(Error::BufferTooSmall { .. })
        ));
        let panels = model.with_int8_panels(&mut arena).unwrap();
        let tokens = [3u32, 36, 0, 17, 29];
        let logits = |m: &TransformerWrapper| {
            let (mut kv, mut sb) = (
                vec![f32::NAN; KvCache::<f32>::elements(&d, tokens.len())],
                vec![f32::NAN; Scratch::elements(&d, tokens.len())],
            );
            let mut cache = KvCache::new(&d, tokens.len(), &mut kv).unwrap();
            let mut scratch = Scratch::new(&d, tokens.len(), &mut sb).unwrap();
            let mut out = vec![f32::NAN; tokens.len() * w.num_tokens];
            m.forward(&mut cache, &mut scratch, &tokens, None, &mut out)
                .unwrap();
            out
        };
        let (want, got) = (logits(&rows), logits(&panels));
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = max_diff(&got, &want);
        assert!(
            scale > 0.0 && diff <= 1e-5 * scale,
            "tie {tie}: {diff} (scale {scale})"
        );
    }
}

#[test]
fn greedy_with_the_cache_equals_greedy_by_full_recomputation() {
    for (i, w) in configs().into_iter().enumerate() {
        for seed in 0..3u64 {
            let t = table(&w, seed + 10 * i as u64);
            let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
            let prompt: Vec<u32> = (0..7)
                .map(|j| (j * 5 + seed as u32) % w.num_tokens as u32)
                .collect();
            let n = 40;
            let expected = greedy_by_recomputation(&model, &prompt, n, 64, None, None);
            for chunk in [1, 3, 64] {
                let (got, r, len) = generate_with::<f32>(
                    &model,
                    64,
                    chunk,
                    SamplerConfig::greedy(),
                    0,
                    GenerateConfig::new(n),
                    &prompt,
                );
                let r = r.unwrap();
                assert_eq!(got, expected, "config {i}, seed {seed}, chunk {chunk}");
                assert_eq!(r.reason, StopReason::MaxTokens);
                assert_eq!(
                    (r.new_tokens, r.prompt_tokens, r.last),
                    (n, 7, expected.last().copied())
                );
                // the cache holds the prompt and every token but the last
                assert_eq!(len, prompt.len() + n - 1);
            }
            // an f16 cache decodes the same greedy tokens on these models
            let (got16, _, _) = generate_with::<f16>(
                &model,
                64,
                4,
                SamplerConfig::greedy(),
                0,
                GenerateConfig::new(n),
                &prompt,
            );
            let same = got16
                .iter()
                .zip(&expected)
                .take_while(|(a, b)| a == b)
                .count();
            assert!(same >= 10, "f16 cache diverged after {same} tokens");
        }
    }
}

#[test]
fn sliding_window_equals_recomputation_over_the_window() {
    let w = configs()[0];
    let t = table(&w, 3);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let cap = 12;
    let prompt = [1u32, 4, 9, 16, 2];
    for keep in [1, 5, cap - 1, cap] {
        let n = 40;
        let expected = greedy_by_recomputation(&model, &prompt, n, cap, Some(keep), None);
        let gcfg = GenerateConfig::new(n).overflow(Overflow::Slide { keep });
        let (got, r, _) =
            generate_with::<f32>(&model, cap, 4, SamplerConfig::greedy(), 0, gcfg, &prompt);
        let r = r.unwrap();
        assert_eq!(got, expected, "keep {keep}");
        // positions fed: prompt + n − 1 tokens; the cache takes cap, then cap − keep after each slide
        let fed = prompt.len() + n - 1;
        let slides = (fed - cap).div_ceil(cap - keep + 1);
        assert_eq!(r.reencodes, slides, "keep {keep}");
        assert_eq!(r.reencoded_tokens, slides * keep);
    }
    // keep = capacity is x-transformers' uncached generate: always the last `capacity` tokens
    let long: Vec<u32> = (0..30).map(|i| (i * 7 % 23) as u32).collect();
    let expected = greedy_by_recomputation(&model, &long, 10, cap, Some(cap), None);
    let gcfg = GenerateConfig::new(10).overflow(Overflow::Slide { keep: cap });
    let (got, r, _) = generate_with::<f32>(&model, cap, 4, SamplerConfig::greedy(), 0, gcfg, &long);
    assert_eq!(got, expected);
    // a prompt longer than the cache: its last `keep` tokens are encoded
    assert_eq!(r.unwrap().prompt_tokens, cap);
}

/// A cross-attending model slides too: the context cached before generation survives every
/// re-encode, and the tokens equal recomputation over the window with that context.
#[test]
fn a_cross_attending_model_slides_with_its_context() {
    let d = DecoderConfig::new(16, 2)
        .heads(2)
        .attn_dim_head(8)
        .rotary_pos_emb(true)
        .cross_attend(true)
        .cross_attn_dim_context(6);
    let w = WrapperConfig::new(19, 64, d);
    let t = table(&w, 11);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let context: Vec<f32> = (0..3 * 6)
        .map(|i| ((i * 5 % 7) as f32 - 3.0) / 4.0)
        .collect();
    let (cap, keep, n) = (10, 4, 30);
    let (prime, prompt) = ([3u32], [1u32, 4, 9, 16]);
    let all: Vec<u32> = prime.iter().chain(&prompt).copied().collect();
    let expected = greedy_by_recomputation(&model, &all, n, cap, Some(keep), Some(&context));

    let mut b = Bufs::<f32>::new(&w, cap, 4, keep);
    let mut kc = vec![f32::NAN; KvCache::<f32>::context_elements(&d, 3)];
    let mut cache = KvCache::with_context(&d, cap, &mut b.kv, 3, &mut kc).unwrap();
    let mut scratch = Scratch::new(&d, 4, &mut b.scratch).unwrap();
    // The context is cached by a first call; generation appends to it.
    model
        .forward_last(
            &mut cache,
            &mut scratch,
            &prime,
            Some(&context),
            &mut b.logits,
        )
        .unwrap();
    let gcfg = GenerateConfig::new(n).overflow(Overflow::Slide { keep });
    let mut g = Generator::new(greedy(), gcfg, &mut b.logits, &mut b.work, &mut b.history).unwrap();
    let mut got = Vec::new();
    let r = g
        .run(&model, &mut cache, &mut scratch, &prompt, |t| {
            got.push(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(r.reencodes >= 3, "{r:?}");
    assert_eq!(cache.context_len(), Some(3));
    // The first token's window starts at the primed token; recomputation sees the same.
    assert_eq!(got, expected);
}

/// A slide whose re-encode fails (here: a scratch arena of another model) leaves the cached
/// positions as they were, and the cache goes on as if the call had not been made.
#[test]
fn a_failed_slide_keeps_the_cache() {
    let w = configs()[0];
    let t = table(&w, 5);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let d = w.attn_layers;
    let other = DecoderConfig::new(8, 1).heads(1).attn_dim_head(8);
    let mut b = Bufs::<f32>::new(&w, 8, 4, 4);
    let mut other_sb = vec![0.0f32; Scratch::elements(&other, 4)];
    let mut cache = KvCache::new(&d, 8, &mut b.kv).unwrap();
    let mut scratch = Scratch::new(&d, 4, &mut b.scratch).unwrap();
    let mut wrong = Scratch::new(&other, 4, &mut other_sb).unwrap();
    let slide = GenerateConfig::new(3).overflow(Overflow::Slide { keep: 4 });
    let mut g =
        Generator::new(greedy(), slide, &mut b.logits, &mut b.work, &mut b.history).unwrap();
    g.run(&model, &mut cache, &mut scratch, &[1, 2, 3, 4, 5], |_| {
        ControlFlow::Break(())
    })
    .unwrap();
    assert_eq!(cache.len(), 5);
    // Twelve prompt tokens do not fit the 3 free positions: the slide re-encodes, and fails.
    assert_eq!(
        g.run(&model, &mut cache, &mut wrong, &[7u32; 12], |_| {
            ControlFlow::Continue(())
        })
        .err(),
        Some(GenerateError::Model(Error::ConfigMismatch(
            picoformer::Buffer::Scratch
        )))
    );
    assert_eq!(cache.len(), 5);
    // The kept positions are intact: the next token's logits equal a fresh pass over all six.
    let v = w.num_tokens;
    let mut logits = vec![0.0f32; v];
    model
        .step(&mut cache, &mut scratch, 6, &mut logits)
        .unwrap();
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, 8)];
    let mut sb = vec![0.0f32; Scratch::elements(&d, 8)];
    let mut fresh = KvCache::new(&d, 8, &mut kv).unwrap();
    let mut fs = Scratch::new(&d, 8, &mut sb).unwrap();
    let mut expected = vec![0.0f32; v];
    model
        .forward_last(
            &mut fresh,
            &mut fs,
            &[1, 2, 3, 4, 5, 6],
            None,
            &mut expected,
        )
        .unwrap();
    assert!(
        max_diff(&logits, &expected) < 1e-5,
        "{}",
        max_diff(&logits, &expected)
    );
}

#[test]
fn the_same_seed_gives_the_same_tokens_on_every_run() {
    let w = configs()[0];
    let t = table(&w, 5);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let scfg = SamplerConfig::temperature(1.2)
        .with_top_k(10)
        .with_top_p(0.95)
        .with_repetition_penalty(1.3, 8);
    let gcfg = GenerateConfig::new(50).overflow(Overflow::Slide { keep: 8 });
    let run = |seed| generate_with::<f32>(&model, 16, 4, scfg, seed, gcfg, &[3, 1, 4]).0;
    let a = run(7);
    assert_eq!(a.len(), 50);
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
    assert!(a.iter().all(|&t| (t as usize) < w.num_tokens));
}

#[test]
fn every_stop_reason() {
    let w = configs()[0];
    let t = table(&w, 1);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let prompt = [2u32, 7, 1, 8, 2];
    let greedy = greedy_by_recomputation(&model, &prompt, 8, 64, None, None);

    // end token: the third greedy token (reported, then stop)
    let end = greedy[2];
    let first = greedy.iter().position(|&x| x == end).unwrap();
    let gcfg = GenerateConfig::new(20).end_token(end);
    let (got, r, len) =
        generate_with::<f32>(&model, 64, 4, SamplerConfig::greedy(), 0, gcfg, &prompt);
    let r = r.unwrap();
    assert_eq!(r.reason, StopReason::EndToken);
    assert_eq!(got, greedy[..=first]);
    assert_eq!(len, prompt.len() + first);

    // budget, including 0 (only the prefill runs)
    let (got, r, len) = generate_with::<f32>(
        &model,
        64,
        4,
        SamplerConfig::greedy(),
        0,
        GenerateConfig::new(0),
        &prompt,
    );
    let r = r.unwrap();
    assert_eq!(
        (r.reason, r.new_tokens, r.last, got.len(), len),
        (StopReason::MaxTokens, 0, None, 0, 5)
    );

    // full cache: capacity 8, prompt 5 → 8 − 5 + 1 = 4 tokens (the last is not fed)
    let (got, r, len) = generate_with::<f32>(
        &model,
        8,
        4,
        SamplerConfig::greedy(),
        0,
        GenerateConfig::new(20),
        &prompt,
    );
    let r = r.unwrap();
    assert_eq!((r.reason, r.new_tokens, len), (StopReason::CacheFull, 4, 8));
    assert_eq!(got, greedy[..4]);

    // the callback stops it
    let d = w.attn_layers;
    let mut b = Bufs::<f32>::new(&w, 64, 4, 0);
    let mut cache = KvCache::new(&d, 64, &mut b.kv).unwrap();
    let mut scratch = Scratch::new(&d, 4, &mut b.scratch).unwrap();
    let sampler = Sampler::new(SamplerConfig::greedy(), 0).unwrap();
    let mut g = Generator::new(
        sampler,
        GenerateConfig::new(20),
        &mut b.logits,
        &mut b.work,
        &mut b.history,
    )
    .unwrap();
    let mut n = 0;
    let r = g
        .run(&model, &mut cache, &mut scratch, &prompt, |_| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(
        (r.reason, r.new_tokens, r.last),
        (StopReason::Stopped, 2, Some(greedy[1]))
    );
    // continuing by hand: feed the last token, the next greedy token follows
    let mut logits = vec![0.0; w.num_tokens];
    model
        .step(&mut cache, &mut scratch, greedy[1], &mut logits)
        .unwrap();
    assert_eq!(argmax(&logits), greedy[2]);
}

#[test]
fn generation_allocates_nothing() {
    let w = configs()[0];
    let t = table(&w, 2);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let d = w.attn_layers;
    let scfg = SamplerConfig::temperature(0.8)
        .with_top_p(0.9)
        .with_min_p(0.05)
        .with_repetition_penalty(1.2, 6);
    let gcfg = GenerateConfig::new(60).overflow(Overflow::Slide { keep: 6 });
    let mut b = Bufs::<f32>::new(&w, 16, 4, gcfg.history_len(6));
    let mut cache = KvCache::new(&d, 16, &mut b.kv).unwrap();
    let mut scratch = Scratch::new(&d, 4, &mut b.scratch).unwrap();
    let sampler = Sampler::new(scfg, 1).unwrap();
    let mut g = Generator::new(sampler, gcfg, &mut b.logits, &mut b.work, &mut b.history).unwrap();
    let mut count = 0;
    COUNT.with(|c| c.set(0));
    WATCHING.with(|x| x.set(true));
    let r = g.run(&model, &mut cache, &mut scratch, &[1, 2, 3], |_| {
        count += 1;
        ControlFlow::Continue(())
    });
    WATCHING.with(|x| x.set(false));
    assert_eq!(
        COUNT.with(|c| c.get()),
        0,
        "heap allocations while generating"
    );
    let r = r.unwrap();
    assert_eq!((r.new_tokens, count), (60, 60));
    assert!(r.reencodes > 0);
    assert_eq!(g.history().len(), 6.max(g.history().len()));
}

#[test]
fn every_error_path() {
    let w = configs()[0];
    let d = w.attn_layers;
    let t = table(&w, 4);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let v = w.num_tokens;

    // construction
    let (mut logits, mut work, mut hist) = (vec![0.0; v], vec![Candidate::EMPTY; v], vec![0u32; 4]);
    assert_eq!(
        Generator::new(
            greedy(),
            GenerateConfig::new(1),
            &mut [],
            &mut work,
            &mut hist
        )
        .err(),
        Some(GenerateError::Sample(SampleError::Empty))
    );
    assert_eq!(
        Generator::new(
            greedy(),
            GenerateConfig::new(1),
            &mut logits,
            &mut work[..v - 1],
            &mut hist
        )
        .err(),
        Some(GenerateError::Sample(SampleError::WorkTooSmall {
            needed: v,
            available: v - 1
        }))
    );
    let slide = GenerateConfig::new(1).overflow(Overflow::Slide { keep: 5 });
    assert_eq!(
        Generator::new(greedy(), slide, &mut logits, &mut work, &mut hist).err(),
        Some(GenerateError::HistoryTooSmall {
            needed: 5,
            available: 4
        })
    );
    let penalised =
        Sampler::new(SamplerConfig::greedy().with_repetition_penalty(1.5, 9), 0).unwrap();
    assert_eq!(
        Generator::new(penalised, slide, &mut logits, &mut work, &mut hist).err(),
        Some(GenerateError::HistoryTooSmall {
            needed: 9,
            available: 4
        })
    );

    // run: each failure before the prefill leaves the cache untouched
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, 8)];
    let mut sb = vec![0.0f32; Scratch::elements(&d, 4)];
    let mut cache = KvCache::new(&d, 8, &mut kv).unwrap();
    let mut scratch = Scratch::new(&d, 4, &mut sb).unwrap();
    let go = |_| ControlFlow::Continue(());
    {
        let mut short = vec![0.0; v - 1];
        let mut g = Generator::new(
            greedy(),
            GenerateConfig::new(3),
            &mut short,
            &mut work,
            &mut hist,
        )
        .unwrap();
        assert_eq!(
            g.run(&model, &mut cache, &mut scratch, &[1], go).err(),
            Some(GenerateError::LogitsLength {
                expected: v,
                found: v - 1
            })
        );
    }
    let mut g = Generator::new(
        greedy(),
        GenerateConfig::new(3),
        &mut logits,
        &mut work,
        &mut hist,
    )
    .unwrap();
    assert_eq!(
        g.run(&model, &mut cache, &mut scratch, &[], go).err(),
        Some(GenerateError::EmptyPrompt)
    );
    assert_eq!(
        g.run(&model, &mut cache, &mut scratch, &[0; 9], go).err(),
        Some(GenerateError::Model(Error::CacheFull {
            len: 0,
            requested: 9,
            capacity: 8
        }))
    );
    assert_eq!(
        g.run(&model, &mut cache, &mut scratch, &[1, 99], go).err(),
        Some(GenerateError::Model(Error::TokenOutOfRange {
            token: 99,
            index: 1,
            num_tokens: v
        }))
    );
    assert_eq!(cache.len(), 0);
    for keep in [0, 9] {
        let mut h9 = [0u32; 9];
        let mut g = Generator::new(
            greedy(),
            GenerateConfig::new(3).overflow(Overflow::Slide { keep }),
            &mut logits,
            &mut work,
            &mut h9,
        )
        .unwrap();
        assert_eq!(
            g.run(&model, &mut cache, &mut scratch, &[1], go).err(),
            Some(GenerateError::InvalidWindow { keep, capacity: 8 })
        );
    }
    assert_eq!(cache.len(), 0);
    // a sliding prompt longer than the cache with a bad token: refused before the cache resets
    let mut h9 = [0u32; 9];
    let slide = GenerateConfig::new(3).overflow(Overflow::Slide { keep: 4 });
    let mut g = Generator::new(greedy(), slide, &mut logits, &mut work, &mut h9).unwrap();
    g.run(&model, &mut cache, &mut scratch, &[1, 2, 3], |_| {
        ControlFlow::Break(())
    })
    .unwrap();
    let before = cache.len();
    assert_eq!(
        g.run(&model, &mut cache, &mut scratch, &[30u32; 12], go)
            .err(),
        Some(GenerateError::Model(Error::TokenOutOfRange {
            token: 30,
            index: 0,
            num_tokens: v
        }))
    );
    assert_eq!(cache.len(), before);

    // a model whose logits are NaN: a typed sampler error, never a token
    let mut bad = table(&w, 4);
    bad.tensors.get_mut("to_logits.weight").unwrap().0[5 * d.dim] = f32::NAN;
    let broken: TransformerWrapper = TransformerWrapper::from_source(w, &&bad).unwrap();
    let mut g = Generator::new(
        greedy(),
        GenerateConfig::new(3),
        &mut logits,
        &mut work,
        &mut hist,
    )
    .unwrap();
    assert_eq!(
        g.run(&broken, &mut cache, &mut scratch, &[1, 2], go).err(),
        Some(GenerateError::Sample(SampleError::NotANumber { index: 5 }))
    );
    // and the errors print
    let e = GenerateError::InvalidWindow {
        keep: 0,
        capacity: 8,
    };
    assert!(e.to_string().contains("between 1 and the cache capacity 8"));
}

#[test]
fn bits_chunked_and_stepwise_agree_and_check_their_inputs() {
    let w = configs()[0];
    let d = w.attn_layers;
    let v = w.num_tokens;
    let t = table(&w, 6);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let tokens: Vec<u32> = (0..20).map(|i| (i * 11 % 23) as u32).collect();
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, 19)];
    let mut sb = vec![0.0f32; Scratch::elements(&d, 4)];
    let mut cache = KvCache::new(&d, 19, &mut kv).unwrap();
    let mut scratch = Scratch::new(&d, 4, &mut sb).unwrap();
    let mut results = Vec::new();
    for rows in [1, 4, 19] {
        cache.reset();
        let mut logits = vec![0.0f32; rows * v];
        results
            .push(metrics::bits(&model, &mut cache, &mut scratch, &tokens, &mut logits).unwrap());
    }
    assert!(
        results
            .iter()
            .all(|b| (b - results[0]).abs() < 1e-4 * results[0]),
        "{results:?}"
    );
    // an independent computation from full logits
    cache.reset();
    let mut all = vec![0.0f32; 19 * v];
    model
        .forward(&mut cache, &mut scratch, &tokens[..19], None, &mut all)
        .unwrap();
    let mut expect = 0.0f64;
    for (i, row) in all.chunks(v).enumerate() {
        let z: f64 = row.iter().map(|&l| (l as f64).exp()).sum();
        expect -= ((row[tokens[i + 1] as usize] as f64).exp() / z).log2();
    }
    assert!(
        (results[0] - expect).abs() < 1e-6 * expect,
        "{} vs {expect}",
        results[0]
    );

    cache.reset();
    let mut logits = vec![0.0f32; v];
    assert_eq!(
        metrics::bits(&model, &mut cache, &mut scratch, &tokens[..1], &mut logits),
        Err(Error::EmptyInput)
    );
    assert!(matches!(
        metrics::bits(
            &model,
            &mut cache,
            &mut scratch,
            &tokens,
            &mut logits[..v - 1]
        ),
        Err(Error::BufferLength { .. })
    ));
    let mut long = tokens.clone();
    long.push(0);
    assert_eq!(
        metrics::bits(&model, &mut cache, &mut scratch, &long, &mut logits),
        Err(Error::CacheFull {
            len: 0,
            requested: 20,
            capacity: 19
        })
    );
    assert_eq!(cache.len(), 0);
}

/// `logits_dim` narrower than the vocabulary generates (every sampled index is a token id) as
/// greedy recomputation does, with a repetition penalty over prompt tokens that have no logit; a
/// wider one is refused before anything runs (a sampled index could be no token id, which
/// x-transformers' own `generate` then fails to embed); `bits` needs a logit for every target
/// and refuses a last token past the vocabulary (it indexed the logits out of bounds before).
#[test]
fn logits_dim_generation_and_bits() {
    let base = configs()[0];
    let w = base.logits_dim(9);
    let t = table(&w, 11);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let prompt = [22u32, 3, 17, 5];
    let (seen, r, _) = generate_with::<f32>(
        &model,
        32,
        4,
        SamplerConfig::greedy(),
        0,
        GenerateConfig::new(10),
        &prompt,
    );
    assert_eq!(r.unwrap().new_tokens, 10);
    assert_eq!(
        seen,
        greedy_by_recomputation(&model, &prompt, 10, 32, None, None)
    );
    let scfg = SamplerConfig::temperature(0.9)
        .with_top_k(4)
        .with_repetition_penalty(1.3, 8);
    let (seen, r, _) =
        generate_with::<f32>(&model, 32, 4, scfg, 5, GenerateConfig::new(12), &prompt);
    assert_eq!(r.unwrap().new_tokens, 12);
    assert!(seen.iter().all(|&t| t < 9), "{seen:?}");

    // a logits row of num_tokens is the wrong length
    let d = w.attn_layers;
    let (mut kv, mut sb) = (
        vec![0.0f32; KvCache::<f32>::elements(&d, 32)],
        vec![0.0f32; Scratch::elements(&d, 4)],
    );
    let mut cache = KvCache::new(&d, 32, &mut kv).unwrap();
    let mut scratch = Scratch::new(&d, 4, &mut sb).unwrap();
    let (mut logits, mut work, mut history) =
        (vec![0.0f32; 23], vec![Candidate::EMPTY; 23], vec![0u32; 8]);
    let mut g = Generator::new(
        greedy(),
        GenerateConfig::new(3),
        &mut logits,
        &mut work,
        &mut history,
    )
    .unwrap();
    let r = g.run(&model, &mut cache, &mut scratch, &prompt, |_| {
        ControlFlow::Continue(())
    });
    assert_eq!(
        r,
        Err(GenerateError::LogitsLength {
            expected: 9,
            found: 23
        })
    );
    let mut wrong = vec![0.0f32; 2 * 23];
    assert!(matches!(
        model.forward(&mut cache, &mut scratch, &[1, 2], None, &mut wrong),
        Err(Error::BufferLength { expected: 18, .. })
    ));

    // bits: every target needs a logit; a token past the vocabulary is refused, not indexed
    cache.reset();
    let mut logits = vec![0.0f32; 4 * 9];
    assert!(metrics::bits(
        &model,
        &mut cache,
        &mut scratch,
        &[1, 2, 8, 0, 4],
        &mut logits
    )
    .is_ok());
    cache.reset();
    assert_eq!(
        metrics::bits(&model, &mut cache, &mut scratch, &[12, 2, 15], &mut logits),
        Err(Error::NoLogit {
            token: 15,
            index: 2,
            logits: 9
        })
    );
    assert_eq!(
        metrics::bits(&model, &mut cache, &mut scratch, &[1, 2, 23], &mut logits),
        Err(Error::TokenOutOfRange {
            token: 23,
            index: 2,
            num_tokens: 23
        })
    );
    assert_eq!(cache.len(), 0);

    // wider than the vocabulary: forward returns the 30 logits, generation is refused
    let w = base.logits_dim(30);
    let t = table(&w, 12);
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let mut logits = vec![f32::NAN; 2 * 30];
    model
        .forward(&mut cache, &mut scratch, &[1, 2], None, &mut logits)
        .unwrap();
    assert!(logits.iter().all(|l| l.is_finite()));
    let (seen, r, len) = generate_with::<f32>(
        &model,
        32,
        4,
        SamplerConfig::greedy(),
        0,
        GenerateConfig::new(5),
        &prompt,
    );
    assert_eq!(
        r,
        Err(GenerateError::LogitsNotTokens {
            logits: 30,
            num_tokens: 23
        })
    );
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("wider than its vocabulary"));
    assert_eq!((seen.len(), len), (0, 0));
}

/// `scaled_sinu_pos_emb`: the sinusoids are defined past `max_seq_len`, so a forward pass runs
/// there (a learned table refuses: [`Error::PositionOutOfRange`]); generation stops at
/// `max_seq_len`, as x-transformers' generation with its cache does; without the stored
/// `pos_emb.inv_freq` the frequencies are computed, giving the same logits.
#[test]
fn sinusoids_past_max_seq_len_and_without_stored_frequencies() {
    let d = configs()[1].attn_layers;
    let table_cfg = WrapperConfig::new(17, 6, d);
    let w = table_cfg.scaled_sinu_pos_emb(true).emb_dim(10);
    let t = table(&w, 13);
    assert!(t.tensors.contains_key("pos_emb.inv_freq") && t.tensors.contains_key("pos_emb.scale"));
    let model: TransformerWrapper = TransformerWrapper::from_source(w, &&t).unwrap();
    let tokens: Vec<u32> = (0..10).map(|i| (i * 7 % 17) as u32).collect();
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, 10)];
    let mut sb = vec![0.0f32; Scratch::elements(&d, 4)];
    let mut cache = KvCache::new(&d, 10, &mut kv).unwrap();
    let mut scratch = Scratch::new(&d, 4, &mut sb).unwrap();
    let mut stored = vec![f32::NAN; 10 * 17];
    model
        .forward(&mut cache, &mut scratch, &tokens, None, &mut stored)
        .unwrap();
    assert!(stored.iter().all(|l| l.is_finite()));

    let mut computed_t = table(&w, 13);
    computed_t.tensors.remove("pos_emb.inv_freq");
    let computed: TransformerWrapper = TransformerWrapper::from_source(w, &&computed_t).unwrap();
    assert_eq!(computed.tensors_used() + 1, model.tensors_used());
    cache.reset();
    let mut logits = vec![f32::NAN; 10 * 17];
    computed
        .forward(&mut cache, &mut scratch, &tokens, None, &mut logits)
        .unwrap();
    let diff = max_diff(&logits, &stored);
    assert!(diff <= 1e-6, "computed vs stored inv_freq: {diff}");

    let t = table(&table_cfg, 13);
    let tabled: TransformerWrapper = TransformerWrapper::from_source(table_cfg, &&t).unwrap();
    cache.reset();
    assert_eq!(
        tabled.forward(&mut cache, &mut scratch, &tokens, None, &mut logits),
        Err(Error::PositionOutOfRange {
            position: 9,
            max_seq_len: 6
        })
    );

    let (seen, r, len) = generate_with::<f32>(
        &model,
        32,
        4,
        SamplerConfig::greedy(),
        0,
        GenerateConfig::new(20),
        &[1, 2, 3],
    );
    assert_eq!(r.unwrap().reason, StopReason::CacheFull);
    assert_eq!((seen.len(), len), (4, 6));
}

// ---------------------------------------------------------------------------------------------
// the bundled demo model
// ---------------------------------------------------------------------------------------------

fn demo_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/models/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

/// The numbers `tools/train_demo.py` wrote into `models/demo.json` under `key` (a list).
fn json_list(json: &str, key: &str) -> Vec<f64> {
    let at = json
        .find(&format!("\"{key}\""))
        .unwrap_or_else(|| panic!("{key} missing"));
    let rest = &json[at..];
    let open = rest.find('[').unwrap();
    let close = rest.find(']').unwrap();
    rest[open + 1..close]
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

#[test]
fn demo_model_bits_per_character_equal_pytorchs() {
    let bytes = demo_file("demo.safetensors");
    let words = aligned(&bytes);
    let file = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
    let Model::Wrapper(model) = Model::<16>::from_safetensors(file).unwrap() else {
        panic!("the demo model is a TransformerWrapper")
    };
    let w = *model.config();
    let d = w.attn_layers;
    let seq = w.max_seq_len;
    let text: Vec<u32> = demo_file("demo.heldout.txt")
        .iter()
        .map(|&b| b as u32)
        .collect();
    let json = String::from_utf8(demo_file("demo.json")).unwrap();
    let torch = json_list(&json, "sample_window_bits_f16");
    assert_eq!(torch.len(), (text.len() - 1).div_ceil(seq));
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, seq)];
    let mut sb = vec![0.0f32; Scratch::elements(&d, 64)];
    let mut cache = KvCache::new(&d, seq, &mut kv).unwrap();
    let mut scratch = Scratch::new(&d, 64, &mut sb).unwrap();
    let mut logits = vec![0.0f32; 64 * w.num_tokens];
    // A few windows keep the test quick in debug builds too; `picoformer bpc` scores them all.
    for window in [0, 1, torch.len() - 1] {
        let start = window * seq;
        let tokens = &text[start..(start + seq + 1).min(text.len())];
        cache.reset();
        let bits = metrics::bits(&model, &mut cache, &mut scratch, tokens, &mut logits).unwrap();
        let per_char = bits / (tokens.len() - 1) as f64;
        let torch_per_char = torch[window] / (tokens.len() - 1) as f64;
        // f32 arithmetic on both sides with the same f16 weights: logits agree to ~1e-5,
        // so bits per character to far better than 1e-4.
        assert!(
            (per_char - torch_per_char).abs() < 1e-4,
            "window {window}: picoformer {per_char:.6} vs torch {torch_per_char:.6} bits per character"
        );
    }
}

#[test]
fn demo_model_greedy_with_the_cache_equals_recomputation() {
    let bytes = demo_file("demo.safetensors");
    let words = aligned(&bytes);
    let file = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
    let Model::Wrapper(model) = Model::<16>::from_safetensors(file).unwrap() else {
        panic!("the demo model is a TransformerWrapper")
    };
    let prompt: Vec<u32> = b"Mr. Darcy".iter().map(|&b| b as u32).collect();
    let n = 24;
    let expected = greedy_by_recomputation(&model, &prompt, n, 256, None, None);
    let (got, r, _) = generate_with::<f32>(
        &model,
        256,
        64,
        SamplerConfig::greedy(),
        0,
        GenerateConfig::new(n),
        &prompt,
    );
    r.unwrap();
    assert_eq!(got, expected);
    // it writes English: mostly lower-case letters and spaces
    let letters = got
        .iter()
        .filter(|&&t| (t as u8).is_ascii_lowercase() || t == 32)
        .count();
    assert!(
        letters * 4 >= n * 3,
        "{:?}",
        String::from_utf8_lossy(&got.iter().map(|&t| t as u8).collect::<Vec<u8>>())
    );
}
