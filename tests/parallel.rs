//! A decode step and a prompt's chunks split over an executor (`picoformer::parallel`) give the
//! numbers of one thread, bit for bit: f32, f16 and Q8_0 weights (with and without the int8
//! path, as stored and packed), a wrapper's logits included; with an executor that runs the
//! parts in a scrambled order, and with rayon's pool (no allocation on the calling thread per
//! step).

mod common;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;
mod reference;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use counting_alloc::{COUNT, WATCHING};
use picoformer::parallel::{Job, Parallel};
use picoformer::{
    f16, DecoderConfig, Error, KvCache, Scratch, Tensor, TensorSource, TensorView,
    TransformerWrapper, WrapperConfig,
};

/// Runs the parts one at a time in a scrambled order (last first, then the rest from the
/// middle), counting how many products it split.
struct Scrambled {
    parts: usize,
    split: AtomicUsize,
}

impl Parallel for Scrambled {
    fn parts(&self) -> usize {
        self.parts
    }

    fn run(&self, out: &mut [f32], chunk: usize, job: &Job<'_>) -> Result<(), Error> {
        self.split.fetch_add(1, Ordering::Relaxed);
        let mut parts: Vec<(usize, &mut [f32])> = out.chunks_mut(chunk).enumerate().collect();
        let n = parts.len();
        parts.rotate_left(n / 2);
        parts.reverse();
        parts.into_iter().try_for_each(|(i, p)| job(i, p))
    }
}

/// A wrapper wide enough that its products split (feed-forward 512 rows, logits 300), with
/// cross-attention and rotary embeddings.
fn config() -> WrapperConfig {
    let d = DecoderConfig::new(128, 2)
        .heads(4)
        .attn_dim_head(32)
        .attn_kv_heads(2)
        .cross_attend(true)
        .rotary_pos_emb(true);
    WrapperConfig::new(300, 0, d)
}

/// The reference's random weights as f16.
struct F16Table(HashMap<String, (Vec<f16>, Vec<usize>)>);

impl<'w> TensorSource<'w> for &'w F16Table {
    fn tensor(&self, name: &str) -> Option<TensorView<'w>> {
        self.0
            .get(name)
            .map(|(v, s)| TensorView::new(Tensor::F16(v), s))
    }
}

/// A prompt of `len` tokens, read in chunks of at most `chunk` positions (the scratch's).
#[derive(Clone, Copy, Debug)]
struct Prompt {
    len: usize,
    chunk: usize,
}

impl Prompt {
    /// The KV cache's positions: the prompt and 11 more (room for the 6 decode steps).
    fn capacity(self) -> usize {
        self.len + 11
    }
}

/// Decode steps only (the prompt's 5 positions never split); a prompt of 50 positions in one
/// chunk (products in parts of 25 or 17 positions, attention in parts of 10); and in chunks of
/// 32 and 18 (the first one split, the second too short to split but for its attention, in
/// parts of 9).
const PROMPTS: [Prompt; 3] = [
    Prompt { len: 5, chunk: 8 },
    Prompt { len: 50, chunk: 64 },
    Prompt { len: 50, chunk: 32 },
];

/// A KV cache of the prompt and 11 more positions, 4 context rows, and a scratch of the
/// prompt's chunk.
struct Buffers {
    kv: Vec<f32>,
    ctx: Vec<f32>,
    scratch: Vec<f32>,
    prompt: Prompt,
}

impl Buffers {
    fn new(d: &DecoderConfig, prompt: Prompt) -> Self {
        Buffers {
            kv: vec![0.0; KvCache::<f32>::elements(d, prompt.capacity())],
            ctx: vec![0.0; KvCache::<f32>::context_elements(d, 4)],
            scratch: vec![0.0; Scratch::elements(d, prompt.chunk)],
            prompt,
        }
    }

    fn session(&mut self, d: &DecoderConfig) -> (KvCache<'_, f32>, Scratch<'_>) {
        let (capacity, chunk) = (self.prompt.capacity(), self.prompt.chunk);
        (
            KvCache::with_context(d, capacity, &mut self.kv, 4, &mut self.ctx).unwrap(),
            Scratch::new(d, chunk, &mut self.scratch).unwrap(),
        )
    }
}

/// Logits of every position of a prompt and then of 6 decode steps, each step's in order.
fn run(model: &TransformerWrapper<'_, 4>, prompt: Prompt) -> Vec<Vec<f32>> {
    let cfg = *model.config();
    let d = cfg.attn_layers;
    let mut bufs = Buffers::new(&d, prompt);
    let (mut cache, mut scratch) = bufs.session(&d);
    let context: Vec<f32> = (0..4 * d.dim)
        .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let v = cfg.logits_width();
    let mut out = Vec::new();
    let tokens: Vec<u32> = (0..prompt.len as u32).map(|i| (i * 37 + 3) % 300).collect();
    let mut logits = vec![0.0f32; prompt.len * v];
    model
        .forward(
            &mut cache,
            &mut scratch,
            &tokens,
            Some(&context),
            &mut logits,
        )
        .unwrap();
    out.push(logits);
    for t in [9u32, 2, 6, 5, 3, 5] {
        let mut l = vec![0.0f32; v];
        model
            .forward(&mut cache, &mut scratch, &[t], None, &mut l)
            .unwrap();
        out.push(l);
    }
    out
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|r| r.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Every weight type: sequential and split give the same bits; the split executor was used.
#[test]
fn split_steps_equal_one_thread_bit_for_bit() {
    use_required_isa();
    let cfg = config();
    let rc = ref_config(&cfg.attn_layers, Some(&cfg));
    let mut w = reference::random_weights(&rc, 11);
    let table = Table::from_ref(&rc, &mut w);
    let quant = table.quantized();
    let halves = F16Table(
        table
            .tensors
            .iter()
            .map(|(k, (v, s))| {
                (
                    k.clone(),
                    (v.iter().map(|&x| f16::from_f32(x)).collect(), s.clone()),
                )
            })
            .collect(),
    );
    let models: Vec<(&str, TransformerWrapper<'_, 4>)> = vec![
        (
            "f32",
            TransformerWrapper::from_source(cfg, &&table).unwrap(),
        ),
        (
            "f16",
            TransformerWrapper::from_source(cfg, &&halves).unwrap(),
        ),
        (
            "q8_0",
            TransformerWrapper::from_source(cfg, &&quant).unwrap(),
        ),
        (
            "q8_0 int8",
            TransformerWrapper::from_source(cfg, &&quant)
                .unwrap()
                .with_int8_activations(true),
        ),
    ];
    // Packed: f32 prefill panels, and int8 panels (whose one-position products stay whole).
    let f32_model = &models[0].1;
    let mut arena = vec![0.0f32; f32_model.prefill_panels_len()];
    let panels = f32_model.with_prefill_panels(&mut arena).unwrap();
    let int8_model = &models[3].1;
    let mut arena8 = vec![0u8; int8_model.int8_panels_len()];
    let int8_panels = int8_model.with_int8_panels(&mut arena8).unwrap();
    let packed = [("f32 panels", panels), ("q8_0 int8 panels", int8_panels)];
    for (name, model) in models.iter().chain(&packed) {
        for prompt in PROMPTS {
            let one = bits(&run(model, prompt));
            for parts in [2, 3] {
                let exec = Scrambled {
                    parts,
                    split: AtomicUsize::new(0),
                };
                let split = bits(&run(&model.with_parallel(&exec), prompt));
                assert!(
                    one == split,
                    "{name}, {prompt:?}, {parts} parts: the numbers differ"
                );
                let count = exec.split.load(Ordering::Relaxed);
                assert_eq!(
                    count,
                    expected_splits(prompt),
                    "{name}, {prompt:?}, {parts} parts"
                );
            }
        }
    }
    check_required_isa();
}

/// The splits of a run of [`config`]'s wrapper: a prompt's chunk of 32 positions or more splits
/// every product (2 blocks × the 4 of self-attention, cross-attention's 2 and the
/// feed-forward's 2; and the wrapper's logits), and from 16 positions both attentions (the 4
/// context rows are projected in one piece); each of the 6 steps splits 2 blocks × one 512-row
/// feed-forward matrix and the 300-row logits, and its self-attention in both blocks once it
/// sees 32 cached rows (32 × 4 heads × 32 = 4,096 rows × query values).
fn expected_splits(prompt: Prompt) -> usize {
    let mut left = prompt.len;
    let mut splits = 0;
    while left > 0 {
        let n = left.min(prompt.chunk);
        if n >= 32 {
            splits += 2 * 8 + 1;
        }
        if n >= 16 {
            splits += 2 * 2;
        }
        left -= n;
    }
    for step in 0..6 {
        splits += 3;
        if prompt.len + step + 1 >= 32 {
            splits += 2;
        }
    }
    splits
}

/// With rayon's pool: the same bits, and a step allocates nothing on the calling thread.
#[cfg(feature = "rayon")]
#[test]
fn rayon_steps_equal_one_thread_and_do_not_allocate() {
    use_required_isa();
    use picoformer::parallel::Rayon;
    let cfg = config();
    let rc = ref_config(&cfg.attn_layers, Some(&cfg));
    let mut w = reference::random_weights(&rc, 12);
    let table = Table::from_ref(&rc, &mut w);
    let model: TransformerWrapper<'_, 4> = TransformerWrapper::from_source(cfg, &&table).unwrap();
    let pool = Rayon { parts: 2 };
    let parallel = model.with_parallel(&pool);
    for prompt in PROMPTS {
        assert!(bits(&run(&model, prompt)) == bits(&run(&parallel, prompt)));
    }

    let d = cfg.attn_layers;
    let mut bufs = Buffers::new(&d, PROMPTS[0]);
    let (mut cache, mut scratch) = bufs.session(&d);
    let context = vec![0.25f32; 4 * d.dim];
    let mut logits = vec![0.0f32; cfg.logits_width()];
    parallel
        .forward(&mut cache, &mut scratch, &[1], Some(&context), &mut logits)
        .unwrap();
    COUNT.with(|c| c.set(0));
    WATCHING.with(|x| x.set(true));
    for t in 0..8u32 {
        parallel
            .forward(&mut cache, &mut scratch, &[t], None, &mut logits)
            .unwrap();
    }
    WATCHING.with(|x| x.set(false));
    assert_eq!(COUNT.with(|c| c.get()), 0, "allocations while decoding");
}

/// One position's attention over a long cache (600 rows, above the split's threshold) split
/// over the parts: self- and cross-attention, without grouping and with 2 and 4 query heads per
/// kv head, f32 and f16 caches (the 600-row prompt's chunks split by positions); the same bits
/// as one piece, and the attention did split.
#[test]
fn split_attention_equals_one_thread_bit_for_bit() {
    use_required_isa();
    const ROWS: usize = 600;
    for kv_heads in [4, 2, 1] {
        let d = DecoderConfig::new(128, 1)
            .heads(4)
            .attn_dim_head(32)
            .attn_kv_heads(kv_heads)
            .cross_attend(true)
            .rotary_pos_emb(true);
        let rc = ref_config(&d, None);
        let mut w = reference::random_weights(&rc, 13);
        let table = Table::from_ref(&rc, &mut w);
        let dec: picoformer::Decoder<'_, 4> = picoformer::Decoder::from_source(d, &&table).unwrap();
        let x: Vec<f32> = (0..(ROWS + 3) * d.dim)
            .map(|i| ((i * 7) % 29) as f32 / 29.0 - 0.5)
            .collect();
        let context: Vec<f32> = (0..ROWS * d.dim)
            .map(|i| ((i * 5) % 17) as f32 / 17.0 - 0.5)
            .collect();
        fn steps<K: picoformer::Element>(
            dec: &picoformer::Decoder<'_, 4>,
            x: &[f32],
            context: &[f32],
        ) -> Vec<u32> {
            let d = *dec.config();
            let mut kv = vec![K::default(); KvCache::<K>::elements(&d, ROWS + 3)];
            let mut kc = vec![K::default(); KvCache::<K>::context_elements(&d, ROWS)];
            let mut sb = vec![0.0f32; Scratch::elements(&d, 64)];
            let mut cache = KvCache::with_context(&d, ROWS + 3, &mut kv, ROWS, &mut kc).unwrap();
            let mut scratch = Scratch::new(&d, 64, &mut sb).unwrap();
            let mut out = vec![0.0f32; x.len()];
            let (prompt, rest) = x.split_at(ROWS * d.dim);
            let (o1, o2) = out.split_at_mut(ROWS * d.dim);
            dec.forward(&mut cache, &mut scratch, prompt, Some(context), o1)
                .unwrap();
            for (xs, os) in rest.chunks(d.dim).zip(o2.chunks_mut(d.dim)) {
                dec.step(&mut cache, &mut scratch, xs, None, os).unwrap();
            }
            o2.iter().map(|v| v.to_bits()).collect()
        }
        for kind in ["f32", "f16"] {
            let run = |dec: &picoformer::Decoder<'_, 4>| match kind {
                "f32" => steps::<f32>(dec, &x, &context),
                _ => steps::<f16>(dec, &x, &context),
            };
            let one = run(&dec);
            for parts in [2, 3] {
                let exec = Scrambled {
                    parts,
                    split: AtomicUsize::new(0),
                };
                let split = run(&dec.with_parallel(&exec));
                assert!(
                    one == split,
                    "kv heads {kv_heads}, {kind} cache, {parts} parts: the numbers differ"
                );
                // The prompt: 9 chunks of 64 positions × (7 products of 128 rows, the
                // feed-forward's first, 2 attentions), the context's keys and values in the
                // same 9 chunks of 64 rows, and the last chunk's 24 positions' 2 attentions;
                // then 3 steps × (self- and cross-attention + the 512-row feed-forward matrix).
                assert_eq!(
                    exec.split.load(Ordering::Relaxed),
                    9 * 10 + 9 * 2 + 2 + 3 * 3,
                    "kv heads {kv_heads}"
                );
            }
        }
    }
    check_required_isa();
}
