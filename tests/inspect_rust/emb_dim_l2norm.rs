// Written by `picoformer inspect --rust` from emb_dim_l2norm.model.safetensors (48 positions, 5 context rows, chunks of 4).
// The model's configuration and the static buffers it runs in, each sized by picoformer's
// const fns: paste into the firmware (see firmware/template). The statics are `static mut`:
// take each one once, e.g. `unsafe { &mut *core::ptr::addr_of_mut!(KV_CACHE) }`.
use picoformer::sampling::{Candidate, Sampler};
use picoformer::{DecoderConfig, KvCache, Scratch, WrapperConfig};

/// The configuration in the file's metadata: the model loaded from it has this one
/// (`*model.config() == CONFIG`).
const CONFIG: WrapperConfig = WrapperConfig {
    l2norm_embed: true,
    ..WrapperConfig::new(
        40,
        16,
        DecoderConfig::new(32, 2)
            .heads(2)
            .attn_dim_head(16)
            .cross_attend(true)
            .use_rmsnorm(true),
    )
    .emb_dim(24)
};
/// Its layers.
const DECODER: DecoderConfig = CONFIG.attn_layers;
/// Blocks the model's weight table has room for (`depth`, or as `custom_layers` and
/// `layers_execute_order` cut them): load with `Model::<MAX_DEPTH>`.
const MAX_DEPTH: usize = DECODER.blocks();
/// Positions the KV cache holds.
const CAPACITY: usize = 48;
/// Rows of cross-attention context the context cache holds.
const CONTEXT: usize = 5;
/// Positions per forward call: the prompt (and a re-encode) runs in chunks of this many.
const CHUNK: usize = 4;

/// f32 elements of the KV cache (24.0 KiB; a `KvCache::<f16>` of `f16::ZERO`s takes half).
const KV_LEN: usize = KvCache::<f32>::elements(&DECODER, CAPACITY);
/// f32 elements of the context cache (2.5 KiB), for `KvCache::with_context`.
const CONTEXT_LEN: usize = KvCache::<f32>::context_elements(&DECODER, CONTEXT);
/// f32 elements of the scratch arena (5.5 KiB).
const SCRATCH_LEN: usize = Scratch::elements(&DECODER, CHUNK);
/// One logit per token (160 B).
const LOGITS_LEN: usize = CONFIG.logits_width();
/// The sampler's work buffer (`Sampler::new`, `Generator::new`): 40 candidates.
const WORK_LEN: usize = Sampler::work_len(LOGITS_LEN);

static mut KV_CACHE: [f32; KV_LEN] = [0.0; KV_LEN];
static mut CONTEXT_CACHE: [f32; CONTEXT_LEN] = [0.0; CONTEXT_LEN];
static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];
static mut LOGITS: [f32; LOGITS_LEN] = [0.0; LOGITS_LEN];
static mut WORK: [Candidate; WORK_LEN] = [Candidate::EMPTY; WORK_LEN];
// 32.5 KiB of statics in all, besides the model file (in flash) and the stack.
