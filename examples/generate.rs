//! The README's host example, as a program: load a model file, then sample 200 tokens.
//!
//!     cargo run --release --example generate
//!
//! (tests/readme.rs checks that the README shows this file's code.)

use std::io::{Read, Write};
use std::ops::ControlFlow;

use picoformer::generate::{GenerateConfig, Generator, Overflow};
use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
use picoformer::{KvCache, Model, Scratch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 8-byte-aligned memory: the loader views tensors in place, never copies.
    let mut file = std::fs::File::open("models/demo.safetensors")?;
    let len = file.metadata()?.len() as usize;
    let mut words = vec![0u64; len.div_ceil(8)];
    file.read_exact(&mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len])?;
    let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..len];

    let Model::Wrapper(model) = Model::<16>::from_safetensors(bytes)? else {
        return Err("expected a TransformerWrapper".into());
    };
    let d = model.config().attn_layers;
    let vocab = model.config().num_tokens;

    // Every buffer is sized by a const fn of the configuration and owned by the caller.
    const CAPACITY: usize = 256; // positions the KV cache holds
    const CHUNK: usize = 8; // prompt positions per forward chunk
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, CAPACITY)];
    let mut arena = vec![0.0f32; Scratch::elements(&d, CHUNK)];
    let mut cache = KvCache::new(&d, CAPACITY, &mut kv)?;
    let mut scratch = Scratch::new(&d, CHUNK, &mut arena)?;

    let sampler = Sampler::new(SamplerConfig::temperature(0.8).with_top_p(0.9), 42)?;
    let config = GenerateConfig::new(200).overflow(Overflow::Slide { keep: 64 });
    let (mut logits, mut work) = (
        vec![0.0f32; vocab],
        vec![Candidate::EMPTY; Sampler::work_len(vocab)],
    );
    let mut history = vec![0u32; config.history_len(0)];
    let mut generator = Generator::new(sampler, config, &mut logits, &mut work, &mut history)?;

    let prompt: Vec<u32> = b"Emma Woodhouse".iter().map(|&b| u32::from(b)).collect();
    let mut out = std::io::stdout();
    let done = generator.run(&model, &mut cache, &mut scratch, &prompt, |token| {
        let _ = out.write_all(&[token as u8]); // the demo model is byte-level
        ControlFlow::Continue(())
    })?;
    println!("\n{} tokens, stopped by {:?}", done.new_tokens, done.reason);
    Ok(())
}
