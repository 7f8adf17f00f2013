//! Loads arbitrary bytes as a model file and, when that succeeds, runs it: a prompt in chunks
//! then steps through a small KV cache (f32 and f16), with the matrices as stored, packed into
//! f32 prefill panels, and over int8 panels; inputs (tokens, context rows) drawn from the bytes,
//! some of them out of range. Every call must return a value or a typed error: a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picoformer::{f16, Element, KvCache, Model, Scratch};

/// Elements (of any of the buffers below) beyond which a fuzzed configuration is not run, so
/// that the fuzzer's memory stays bounded (the weights themselves are bounded by the input).
const LIMIT: usize = 1 << 22;

/// A small deterministic stream of numbers drawn from the input.
struct Draw(u64);

impl Draw {
    fn new(data: &[u8]) -> Draw {
        Draw(data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        }))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }
}

/// One prompt (in chunks of the scratch) and steps over `model` with a cache of `K`.
fn run<K: Element>(model: &Model<'_, 4>, draw: &mut Draw) {
    let cfg = model.config();
    let d = cfg.decoder;
    let capacity = 1 + draw.below(6);
    let chunk = 1 + draw.below(4);
    let rows = 1 + draw.below(3);
    // One more position than the cache holds, so that the call reaching past it is refused
    // (CacheFull) rather than run.
    let n = capacity + 1;
    let (kv_len, context_len, scratch_len) = (
        KvCache::<K>::elements(&d, capacity),
        KvCache::<K>::context_elements(&d, rows),
        Scratch::elements(&d, chunk),
    );
    let (context_values, input_values) = (
        rows.saturating_mul(d.dim_context()),
        n.saturating_mul(d.dim),
    );
    let sizes = [
        kv_len,
        context_len,
        scratch_len,
        context_values,
        input_values,
    ];
    if sizes.iter().any(|&len| len > LIMIT) {
        return;
    }
    let mut kv = vec![K::NAN; kv_len];
    let mut kc = vec![K::NAN; context_len];
    let mut sb = vec![f32::NAN; scratch_len];
    let (Ok(mut cache), Ok(mut scratch)) = (
        KvCache::with_context(&d, capacity, &mut kv, rows, &mut kc),
        Scratch::new(&d, chunk, &mut sb),
    ) else {
        return;
    };
    let context = draw.values(context_values);
    let context = d.cross_attend.then_some(&context[..]);
    let prompt = 1 + draw.below(n);
    match model {
        Model::Decoder(dec) => {
            let x = draw.values(input_values);
            let mut out = vec![f32::NAN; input_values];
            let mut at = 0;
            for (i, len) in [prompt, n - prompt].into_iter().enumerate() {
                if len == 0 {
                    continue;
                }
                let span = at * d.dim..(at + len) * d.dim;
                let ctx = if i == 0 { context } else { None };
                let _ = dec.forward(
                    &mut cache,
                    &mut scratch,
                    &x[span.clone()],
                    ctx,
                    &mut out[span],
                );
                at += len;
            }
        }
        Model::Wrapper(w) => {
            // Token ids below num_tokens; logits_width (logits_dim) logits per position.
            let (v, lw) = (w.config().num_tokens, w.config().logits_width());
            if lw.saturating_mul(n) > LIMIT {
                return;
            }
            // Mostly valid tokens, sometimes one past the vocabulary.
            let tokens: Vec<u32> = (0..n).map(|_| draw.below(v + v / 8 + 1) as u32).collect();
            let mut logits = vec![f32::NAN; n * lw];
            let _ = w.forward(
                &mut cache,
                &mut scratch,
                &tokens[..prompt],
                context,
                &mut logits[..prompt * lw],
            );
            for &t in &tokens[prompt..] {
                let _ = w.step(&mut cache, &mut scratch, t, &mut logits[..lw]);
            }
            let _ = w.forward_last(&mut cache, &mut scratch, &tokens, None, &mut logits);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::<4>::from_safetensors(data) else {
        return;
    };
    let mut draw = Draw::new(data);
    run::<f32>(&model, &mut draw);
    run::<f16>(&model, &mut draw);
    if model.prefill_panels_len() <= LIMIT {
        let mut arena = vec![0.0f32; model.prefill_panels_len()];
        if let Ok(packed) = model.with_prefill_panels(&mut arena) {
            run::<f32>(&packed, &mut draw);
        };
    }
    if model.int8_panels_len() <= LIMIT {
        let mut arena = vec![0u8; model.int8_panels_len()];
        if let Ok(packed) = model.with_int8_panels(&mut arena) {
            run::<f32>(&packed, &mut draw);
        };
    }
});
