// Written by `picoformer inspect --rust` from zero_kv_softclamp.model.safetensors (20 positions, 2 context rows, chunks of 2).
// The model's configuration and the static buffers it runs in, each sized by picoformer's
// const fns: paste into the firmware (see firmware/template). The statics are `static mut`:
// take each one once, e.g. `unsafe { &mut *core::ptr::addr_of_mut!(KV_CACHE) }`.
use picoformer::{DecoderConfig, KvCache, Scratch};

/// The configuration in the file's metadata: the model loaded from it has this one
/// (`*model.config() == CONFIG`).
const CONFIG: DecoderConfig = DecoderConfig::new(32, 2)
    .heads(2)
    .attn_dim_head(16)
    .cross_attend(true)
    .rotary_pos_emb(true)
    .attn_add_zero_kv(true)
    .attn_softclamp_logits(1.5);
/// The layers (a raw `Decoder`: embeddings in, hidden states out).
const DECODER: DecoderConfig = CONFIG;
/// Blocks the model's weight table has room for (`depth`, or as `custom_layers` and
/// `layers_execute_order` cut them): load with `Model::<MAX_DEPTH>`.
const MAX_DEPTH: usize = DECODER.blocks();
/// Positions the KV cache holds.
const CAPACITY: usize = 20;
/// Rows of cross-attention context the context cache holds.
const CONTEXT: usize = 2;
/// Positions per forward call: the prompt (and a re-encode) runs in chunks of this many.
const CHUNK: usize = 2;

/// f32 elements of the KV cache (10.0 KiB; a `KvCache::<f16>` of `f16::ZERO`s takes half).
const KV_LEN: usize = KvCache::<f32>::elements(&DECODER, CAPACITY);
/// f32 elements of the context cache (1.0 KiB), for `KvCache::with_context`.
const CONTEXT_LEN: usize = KvCache::<f32>::context_elements(&DECODER, CONTEXT);
/// f32 elements of the scratch arena (2.8 KiB).
const SCRATCH_LEN: usize = Scratch::elements(&DECODER, CHUNK);
/// The hidden states of one chunk (256 B).
const OUTPUT_LEN: usize = DECODER.dim * CHUNK;

static mut KV_CACHE: [f32; KV_LEN] = [0.0; KV_LEN];
static mut CONTEXT_CACHE: [f32; CONTEXT_LEN] = [0.0; CONTEXT_LEN];
static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];
static mut OUTPUT: [f32; OUTPUT_LEN] = [0.0; OUTPUT_LEN];
// 14.1 KiB of statics in all, besides the model file (in flash) and the stack.
