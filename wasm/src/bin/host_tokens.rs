//! The host's tokens for a model and prompt, from the same engine the wasm module runs:
//! `host-tokens MODEL PROMPT MAX [TEMPERATURE TOP_K TOP_P MIN_P SEED [PENALTY WINDOW KEEP CAPACITY]]`
//! prints the generated token ids as a JSON array. PROMPT is comma-separated token ids; PENALTY
//! and WINDOW are the repetition penalty, KEEP the sliding window (0: stop when full), CAPACITY
//! the cache positions (default: prompt + MAX). The Node tests compare with it.

use picoformer::sampling::{Candidate, Sampler};
use picoformer::{KvCache, Scratch};
use picoformer_wasm::engine::{self, Buffers, Generate, KvBuf, KvKind, Options, Sampling, Session};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if ![3, 8, 12].contains(&args.len()) {
        eprintln!(
            "usage: host-tokens MODEL PROMPT MAX [TEMPERATURE TOP_K TOP_P MIN_P SEED [PENALTY WINDOW KEEP CAPACITY]]"
        );
        std::process::exit(2);
    }
    let bytes = std::fs::read(&args[0]).expect("read model");
    // Copy into u64s so every tensor is aligned for its dtype.
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let aligned = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
    let prompt: Vec<u32> = args[1]
        .split(',')
        .map(|t| t.trim().parse().expect("token id"))
        .collect();
    let max: usize = args[2].parse().expect("MAX");
    let (sampling, seed) = if args.len() >= 8 {
        let mut s = Sampling {
            temperature: args[3].parse().expect("TEMPERATURE"),
            top_k: args[4].parse().expect("TOP_K"),
            top_p: args[5].parse().expect("TOP_P"),
            min_p: args[6].parse().expect("MIN_P"),
            ..Sampling::GREEDY
        };
        if args.len() == 12 {
            s.repetition_penalty = args[8].parse().expect("PENALTY");
            s.repetition_window = args[9].parse().expect("WINDOW");
        }
        (s, args[7].parse::<u64>().expect("SEED"))
    } else {
        (Sampling::GREEDY, 0)
    };
    let (keep, capacity) = if args.len() == 12 {
        (
            args[10].parse().expect("KEEP"),
            args[11].parse().expect("CAPACITY"),
        )
    } else {
        (0, prompt.len() + max)
    };
    let model = engine::load(aligned).unwrap_or_else(|e| panic!("{e}"));
    let cfg = *model.config();
    let o = Options {
        capacity,
        chunk: 8,
        kv: KvKind::F32,
        full_rows: 0,
        max_context: 0,
    };
    let v = cfg.num_tokens;
    let mut kv = vec![0f32; KvCache::<f32>::elements(&cfg.attn_layers, o.capacity)];
    let mut scratch = vec![0f32; Scratch::elements(&cfg.attn_layers, o.chunk)];
    let mut logits = vec![0f32; v];
    let mut work = vec![Candidate::EMPTY; Sampler::work_len(v)];
    let buffers = Buffers {
        kv: KvBuf::F32(&mut kv),
        context: &mut [],
        context_mask: &mut [],
        scratch: &mut scratch,
        logits: &mut logits,
        full_logits: &mut [],
        work: &mut work,
        history: &mut vec![0u32; o.capacity],
    };
    let mut session = Session::new(model, &o, buffers).unwrap_or_else(|e| panic!("{e}"));
    let mut g = Generate::new(sampling, max);
    g.keep = keep;
    g.seed = Some(seed);
    let mut out = Vec::new();
    session
        .generate(&prompt, &g, |t| out.push(t))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{out:?}");
}
