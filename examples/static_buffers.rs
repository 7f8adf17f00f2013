//! The no_std way, run on a host: the model in the binary (flash, on a device), every buffer a
//! `static` sized by picoformer's `const fn`s, no allocator anywhere. Greedy decoding of the
//! bundled demo model.
//!
//!     cargo run --release --example static_buffers
//!
//! On a microcontroller the same code sits in `main` under `#![no_std]` (see
//! `firmware/template/` for a complete board project).

use core::ptr::addr_of_mut;

use picoformer::{DecoderConfig, KvCache, Model, Scratch, WrapperConfig};

#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);
/// Viewed in place: no copy, no allocator.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../models/demo.safetensors"));

/// The file's configuration, so every buffer below can be a `static` (`picoformer inspect
/// models/demo.safetensors --rust` prints it, with the statics).
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
/// Positions the KV cache holds.
const CAPACITY: usize = 64;
/// Prompt positions per forward chunk.
const CHUNK: usize = 4;

static mut KV: [f32; KvCache::<f32>::elements(&D, CAPACITY)] =
    [0.0; KvCache::<f32>::elements(&D, CAPACITY)];
static mut SCRATCH: [f32; Scratch::elements(&D, CHUNK)] = [0.0; Scratch::elements(&D, CHUNK)];
static mut LOGITS: [f32; CFG.num_tokens] = [0.0; CFG.num_tokens];

fn argmax(l: &[f32]) -> u32 {
    (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b }) as u32
}

fn main() -> Result<(), picoformer::Error> {
    let model = match Model::<4>::from_safetensors(&MODEL.0) {
        Ok(Model::Wrapper(model)) if *model.config() == CFG => model,
        Ok(other) => {
            eprintln!("the file's configuration is {:?}, not CFG", other.config());
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cannot load the model: {e}");
            std::process::exit(1);
        }
    };
    #[allow(unsafe_code)]
    // SAFETY: main runs once, on one thread; nothing else refers to these statics.
    let (kv, sc, logits) = unsafe {
        (
            &mut *addr_of_mut!(KV),
            &mut *addr_of_mut!(SCRATCH),
            &mut *addr_of_mut!(LOGITS),
        )
    };
    let mut cache = KvCache::new(&D, CAPACITY, kv)?;
    let mut scratch = Scratch::new(&D, CHUNK, sc)?;

    let prompt: [u32; 4] = [b'E', b'm', b'm', b'a'].map(u32::from);
    model.forward_last(&mut cache, &mut scratch, &prompt, None, logits)?; // prefill
    let mut text = Vec::from(b"Emma".as_slice());
    while cache.remaining() > 0 {
        let t = argmax(logits);
        text.push(t as u8); // the demo model is byte-level
        model.step(&mut cache, &mut scratch, t, logits)?;
    }
    println!("{}", String::from_utf8_lossy(&text));
    println!(
        "statics: KV cache {} B, scratch {} B, logits {} B; the model stays where it is",
        KvCache::<f32>::bytes(&D, CAPACITY),
        Scratch::bytes(&D, CHUNK),
        4 * CFG.num_tokens
    );
    Ok(())
}
