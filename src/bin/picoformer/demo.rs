//! `picoformer demo`: greedy decoding with a small built-in random-weight byte-level model,
//! reporting what it did, its speed and every byte of memory it used.

use std::collections::HashMap;
use std::time::Instant;

use picoformer::{
    DecoderConfig, KvCache, Scratch, Tensor, TensorView, TransformerWrapper, WrapperConfig,
};

use crate::args::{Args, CliError};
use crate::files::{human, AlignedVec};

/// A byte-level model: 256 tokens, rotary, grouped-query attention, a SiLU GLU feed-forward.
const DECODER: DecoderConfig = DecoderConfig::new(128, 4)
    .heads(4)
    .attn_dim_head(32)
    .attn_kv_heads(2)
    .rotary_pos_emb(true)
    .use_rmsnorm(true)
    .ff_glu(true)
    .ff_swish(true)
    .ff_mult(2.0);
const MODEL: WrapperConfig = WrapperConfig::new(256, 0, DECODER);
const CAPACITY: usize = 256;
const CHUNK: usize = 16;

/// The tensors of `MODEL`, deterministic pseudo-random values scaled like an initialised model.
fn weights() -> HashMap<String, (Vec<f32>, Vec<usize>)> {
    let (d, q, kv, f) = (
        DECODER.dim,
        DECODER.q_dim(),
        DECODER.kv_dim(),
        DECODER.ff_inner(),
    );
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("token_emb.emb.weight".into(), vec![256, d]),
        ("to_logits.weight".into(), vec![256, d]),
    ];
    for b in 0..DECODER.depth {
        let (a, ff) = (2 * b, 2 * b + 1);
        let p = |l: usize, s: &str| format!("attn_layers.layers.{l}.{s}");
        shapes.push((p(a, "0.0.g"), vec![d]));
        shapes.push((p(a, "1.to_q.weight"), vec![q, d]));
        shapes.push((p(a, "1.to_k.weight"), vec![kv, d]));
        shapes.push((p(a, "1.to_v.weight"), vec![kv, d]));
        shapes.push((p(a, "1.to_out.weight"), vec![d, q]));
        shapes.push((p(ff, "0.0.g"), vec![d]));
        shapes.push((p(ff, "1.ff.0.proj.weight"), vec![2 * f, d]));
        shapes.push((p(ff, "1.ff.0.proj.bias"), vec![2 * f]));
        shapes.push((p(ff, "1.ff.2.weight"), vec![d, f]));
        shapes.push((p(ff, "1.ff.2.bias"), vec![d]));
    }
    shapes.push(("attn_layers.final_norm.g".into(), vec![d]));
    let mut state = 0x5eed_u64;
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let fan_in = if shape.len() == 2 { shape[1] } else { 16 };
            let scale = 1.7 / (fan_in as f32).sqrt();
            let n: usize = shape.iter().product();
            let v = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
                })
                .collect();
            (name, (v, shape))
        })
        .collect()
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

pub fn main(args: &Args) -> Result<(), CliError> {
    args.positional(&[])?;
    let prompt = args
        .text("prompt")
        .unwrap_or("Once upon a time")
        .as_bytes()
        .to_vec();
    let max_new = args.get("tokens", 64usize)?;
    if prompt.is_empty() || prompt.len().saturating_add(max_new) > CAPACITY {
        return Err(CliError::Usage(format!(
            "the prompt plus --tokens must be between 1 and {CAPACITY} positions"
        )));
    }
    let table = weights();
    let weight_bytes: usize = table.values().map(|(v, _)| v.len() * 4).sum();
    let source = |name: &str| {
        table
            .get(name)
            .map(|(v, s)| TensorView::new(Tensor::F32(v), s))
    };
    let model: TransformerWrapper = TransformerWrapper::from_source(MODEL, &source)?;
    let mut kv =
        AlignedVec::<f32>::zeroed(KvCache::<f32>::elements(&DECODER, CAPACITY), "the KV cache")?;
    let mut sb =
        AlignedVec::<f32>::zeroed(Scratch::elements(&DECODER, CHUNK), "the scratch arena")?;
    let mut cache = KvCache::new(&DECODER, CAPACITY, &mut kv)?;
    let mut scratch = Scratch::new(&DECODER, CHUNK, &mut sb)?;
    let mut logits = vec![0.0f32; MODEL.num_tokens];

    outln!("picoformer demo: a random-weight byte-level TransformerWrapper (dim 128, depth 4, 4 heads / 2 kv heads, rotary, RMSNorm, SiLU GLU)");
    outln!("(the weights are random, so the text is noise: this shows the machinery, not a trained model)");
    let tokens: Vec<u32> = prompt.iter().map(|&b| b as u32).collect();
    let t0 = Instant::now();
    model.forward_last(&mut cache, &mut scratch, &tokens, None, &mut logits)?;
    let prefill = t0.elapsed();
    let mut generated = Vec::with_capacity(max_new);
    let t1 = Instant::now();
    for _ in 0..max_new {
        let next = argmax(&logits);
        generated.push(next);
        model.step(&mut cache, &mut scratch, next, &mut logits)?;
    }
    let decode = t1.elapsed();
    let text: String = generated
        .iter()
        .map(|&t| (t as u8).escape_ascii().to_string())
        .collect();
    outln!("prompt    {:?}", String::from_utf8_lossy(&prompt));
    outln!("greedy    {text}");
    outln!(
        "speed     prefill {} tokens in {:.2} ms ({:.0} tokens/s), decode {} tokens in {:.2} ms ({:.0} tokens/s)",
        tokens.len(),
        prefill.as_secs_f64() * 1e3,
        tokens.len() as f64 / prefill.as_secs_f64(),
        max_new,
        decode.as_secs_f64() * 1e3,
        max_new as f64 / decode.as_secs_f64()
    );
    outln!(
        "memory    weights {} (borrowed), KV cache {} ({} of {CAPACITY} positions used), scratch arena {}, logits {}; heap allocations while decoding: 0",
        human(weight_bytes as u64),
        human(KvCache::<f32>::bytes(&DECODER, CAPACITY) as u64),
        cache.len(),
        human(Scratch::bytes(&DECODER, CHUNK) as u64),
        human(4 * MODEL.num_tokens as u64)
    );
    Ok(())
}
