// Written by `picoformer inspect --rust` from demo.safetensors (256 positions, chunks of 8).
// The model's configuration and the static buffers it runs in, each sized by picoformer's
// const fns: paste into the firmware (see firmware/template). The statics are `static mut`:
// take each one once, e.g. `unsafe { &mut *core::ptr::addr_of_mut!(KV_CACHE) }`.
use picoformer::sampling::{Candidate, Sampler};
use picoformer::{DecoderConfig, KvCache, Scratch, WrapperConfig};

/// The configuration in the file's metadata: the model loaded from it has this one
/// (`*model.config() == CONFIG`).
const CONFIG: WrapperConfig = WrapperConfig::new(
    256,
    256,
    DecoderConfig::new(128, 4)
        .heads(4)
        .attn_kv_heads(2)
        .rotary_pos_emb(true)
        .use_rmsnorm(true)
        .ff_mult(3.0)
        .ff_glu(true)
        .ff_swish(true),
);
/// Its layers.
const DECODER: DecoderConfig = CONFIG.attn_layers;
/// Blocks the model's weight table has room for (`depth`, or as `custom_layers` and
/// `layers_execute_order` cut them): load with `Model::<MAX_DEPTH>`.
const MAX_DEPTH: usize = DECODER.blocks();
/// Positions the KV cache holds.
const CAPACITY: usize = 256;
/// Positions per forward call: the prompt (and a re-encode) runs in chunks of this many.
const CHUNK: usize = 8;

/// f32 elements of the KV cache (1.00 MiB; a `KvCache::<f16>` of `f16::ZERO`s takes half).
const KV_LEN: usize = KvCache::<f32>::elements(&DECODER, CAPACITY);
/// f32 elements of the scratch arena (61.1 KiB).
const SCRATCH_LEN: usize = Scratch::elements(&DECODER, CHUNK);
/// One logit per token (1.0 KiB).
const LOGITS_LEN: usize = CONFIG.logits_width();
/// The sampler's work buffer (`Sampler::new`, `Generator::new`): 256 candidates.
const WORK_LEN: usize = Sampler::work_len(LOGITS_LEN);

static mut KV_CACHE: [f32; KV_LEN] = [0.0; KV_LEN];
static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];
static mut LOGITS: [f32; LOGITS_LEN] = [0.0; LOGITS_LEN];
static mut WORK: [Candidate; WORK_LEN] = [Candidate::EMPTY; WORK_LEN];
// 1.06 MiB of statics in all, besides the model file (in flash) and the stack.
