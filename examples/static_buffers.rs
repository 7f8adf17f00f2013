//! The no_std way, run on a host: the model in the binary (flash, on a device), every buffer a
//! `static` sized by picoformer's `const fn`s, no allocator anywhere. Greedy decoding of the
//! bundled demo model.
//!
//!     cargo run --release --example static_buffers
//!
//! Everything above `main` is what a microcontroller runs under `#![no_std]` (README.md shows
//! it, and `tests/readme.rs` checks that the two are the same); `firmware/template/` is a
//! complete board project.

use core::ptr::addr_of_mut;

use picoformer::{DecoderConfig, KvCache, Model, Scratch, WrapperConfig};

#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);
// In flash, viewed in place: no copy, no allocator.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../models/demo.safetensors"));

// The file's configuration (`picoformer inspect --rust` prints it): every buffer can be a static.
const CFG: WrapperConfig = WrapperConfig::new(
    256,
    256,
    DecoderConfig::new(128, 4)
        .heads(4)
        .attn_kv_heads(2)
        .attn_dim_head(64)
        .rotary_pos_emb(true)
        .use_rmsnorm(true)
        .ff_mult(3.0)
        .ff_glu(true)
        .ff_swish(true),
);
const D: DecoderConfig = CFG.attn_layers;
const CAPACITY: usize = 64; // positions the KV cache holds
const CHUNK: usize = 4; // prompt positions per forward pass
static mut KV: [f32; KvCache::<f32>::elements(&D, CAPACITY)] =
    [0.0; KvCache::<f32>::elements(&D, CAPACITY)];
static mut SCRATCH: [f32; Scratch::elements(&D, CHUNK)] = [0.0; Scratch::elements(&D, CHUNK)];
static mut LOGITS: [f32; CFG.num_tokens] = [0.0; CFG.num_tokens];

/// Greedy decoding: the prompt, then `out.len()` tokens.
#[allow(unsafe_code)]
fn generate(prompt: &[u32], out: &mut [u32]) -> Result<(), picoformer::Error> {
    let Ok(Model::Wrapper(model)) = Model::<4>::from_safetensors(&MODEL.0) else {
        panic!("not a model file, or not a TransformerWrapper")
    };
    assert!(*model.config() == CFG, "the file is not CFG");
    // SAFETY: called once, on one core; nothing else refers to these statics.
    let (kv, sc, logits) = unsafe {
        (
            &mut *addr_of_mut!(KV),
            &mut *addr_of_mut!(SCRATCH),
            &mut *addr_of_mut!(LOGITS),
        )
    };
    let mut cache = KvCache::new(&D, CAPACITY, kv)?;
    let mut scratch = Scratch::new(&D, CHUNK, sc)?;
    model.forward_last(&mut cache, &mut scratch, prompt, None, logits)?; // prefill
    for t in out.iter_mut() {
        *t = argmax(logits);
        model.step(&mut cache, &mut scratch, *t, logits)?;
    }
    Ok(())
}

fn argmax(l: &[f32]) -> u32 {
    (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b }) as u32
}

// On a host: run it and print the text (the demo model is byte-level).
fn main() -> Result<(), picoformer::Error> {
    let prompt = b"Emma".map(u32::from);
    let mut out = [0u32; CAPACITY - 4]; // fills the cache
    generate(&prompt, &mut out)?;
    let text: Vec<u8> = prompt.iter().chain(&out).map(|&t| t as u8).collect();
    println!("{}", String::from_utf8_lossy(&text));
    println!(
        "statics: KV cache {} B, scratch {} B, logits {} B; the model stays where it is",
        KvCache::<f32>::bytes(&D, CAPACITY),
        Scratch::bytes(&D, CHUNK),
        4 * CFG.num_tokens
    );
    Ok(())
}
