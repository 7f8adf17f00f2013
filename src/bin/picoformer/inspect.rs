//! `picoformer inspect`: the configuration and the exact RAM plan of a model file.

use picoformer::safetensors::SafeTensors;
use picoformer::{f16, KvCache, Model, Scratch};

use crate::args::{json_string, Args, CliError};
use crate::files::{human, Aligned};

/// A size from the library's `const fn`s, which saturate at `usize::MAX` when too large: `None`
/// then.
fn fits(bytes: usize) -> Option<u64> {
    (bytes != usize::MAX).then_some(bytes as u64)
}

/// A size in human units, or "too large".
fn size(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "too large".into(), human)
}

/// A size as JSON: bytes, or `null` when too large.
fn json_size(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "null".into(), |b| b.to_string())
}

/// The RAM plan in bytes (`None`: too large to hold).
struct Plan {
    arena: Option<u64>,
    kv32: Option<u64>,
    kv16: Option<u64>,
    ctx32: Option<u64>,
    ctx16: Option<u64>,
    logits: u64,
}

impl Plan {
    /// Arena, KV cache, context cache and logits, with an f32 (`f16 = false`) or f16 cache.
    fn total(&self, f16: bool) -> Option<u64> {
        let (kv, ctx) = if f16 {
            (self.kv16, self.ctx16)
        } else {
            (self.kv32, self.ctx32)
        };
        Some(self.arena? + kv? + ctx? + self.logits)
    }
}

pub fn main(args: &Args) -> Result<(), CliError> {
    let path = &args.positional(&["MODEL"])?[0];
    let file = Aligned::read(path)?;
    let model: Model = Model::from_safetensors(file.bytes())
        .map_err(|e| CliError::Failed(format!("{path}: {e}")))?;
    let st = SafeTensors::parse(file.bytes())?;
    let cfg = model.config();
    let d = cfg.decoder;
    let default_capacity = match cfg.wrapper {
        Some(w) if w.has_abs_pos_emb() => w.max_seq_len,
        _ => 512,
    };
    let capacity = args.get("capacity", default_capacity)?;
    let context = args.get("context", if d.cross_attend { 16 } else { 0 })?;
    let chunk = args.get("chunk", 1usize)?;
    if chunk == 0 {
        return Err(CliError::Usage("--chunk must be at least 1".into()));
    }

    let (mut params, mut bytes) = (0usize, 0usize);
    let mut dtypes: Vec<&str> = Vec::new();
    for t in st.tensors() {
        params += t.numel();
        bytes += t.data().len();
        if !dtypes.contains(&t.dtype().name()) {
            dtypes.push(t.dtype().name());
        }
    }
    let plan = Plan {
        arena: fits(Scratch::bytes(&d, chunk)),
        kv32: fits(KvCache::<f32>::bytes(&d, capacity)),
        kv16: fits(KvCache::<f16>::bytes(&d, capacity)),
        ctx32: fits(KvCache::<f32>::context_bytes(&d, context)),
        ctx16: fits(KvCache::<f16>::context_bytes(&d, context)),
        logits: cfg.wrapper.map_or(0, |w| 4 * w.logits_width() as u64),
    };
    if args.switch("json") {
        let wrapper = match cfg.wrapper {
            Some(w) => format!(
                "{{\"num_tokens\":{},\"max_seq_len\":{},\"abs_pos_emb\":{},\"sinusoidal_pos_emb\":{},\"tie_embedding\":{},\"emb_dim\":{},\"logits_dim\":{}}}",
                w.num_tokens,
                w.max_seq_len,
                w.has_abs_pos_emb(),
                w.has_sinusoidal_pos_emb(),
                w.tie_embedding,
                w.emb_width(),
                w.logits_width()
            ),
            None => "null".into(),
        };
        let dtypes: Vec<String> = dtypes.iter().map(|t| json_string(t)).collect();
        outln!(
            "{{\"model\":{},\"decoder\":{{\"dim\":{},\"depth\":{},\"heads\":{},\"kv_heads\":{},\"attn_dim_head\":{},\"rotary_dim\":{},\"norm\":\"{:?}\",\"activation\":\"{:?}\",\"ff_glu\":{},\"ff_inner\":{},\"cross_attend\":{},\"dim_context\":{}}},\"wrapper\":{wrapper},\"parameters\":{params},\"tensors\":{},\"dtypes\":[{}],\"weights_bytes\":{bytes},\"ram\":{{\"capacity\":{capacity},\"context\":{context},\"chunk\":{chunk},\"scratch_bytes\":{},\"kv_cache_f32_bytes\":{},\"kv_cache_f16_bytes\":{},\"context_cache_f32_bytes\":{},\"context_cache_f16_bytes\":{},\"logits_bytes\":{},\"total_f32_bytes\":{},\"total_f16_bytes\":{}}}}}",
            json_string(path),
            d.dim,
            d.depth,
            d.heads,
            d.kv_heads(),
            d.attn_dim_head,
            d.rotary_dim(),
            d.norm(),
            d.activation(),
            d.ff_glu,
            d.ff_inner(),
            d.cross_attend,
            d.dim_context(),
            st.len(),
            dtypes.join(","),
            json_size(plan.arena),
            json_size(plan.kv32),
            json_size(plan.kv16),
            json_size(plan.ctx32),
            json_size(plan.ctx16),
            plan.logits,
            json_size(plan.total(false)),
            json_size(plan.total(true)),
        );
        return Ok(());
    }
    outln!("model       {path}");
    outln!(
        "kind        {}",
        if cfg.wrapper.is_some() {
            "TransformerWrapper"
        } else {
            "Decoder"
        }
    );
    outln!(
        "decoder     dim {}, depth {}, heads {} (kv heads {}), attn_dim_head {}, rotary dim {}, norm {:?}, ff {:?}{} inner {}{}",
        d.dim,
        d.depth,
        d.heads,
        d.kv_heads(),
        d.attn_dim_head,
        d.rotary_dim(),
        d.norm(),
        d.activation(),
        if d.ff_glu { " GLU" } else { "" },
        d.ff_inner(),
        if d.cross_attend { format!(", cross-attend (context dim {})", d.dim_context()) } else { String::new() }
    );
    if let Some(w) = cfg.wrapper {
        outln!(
            "wrapper     num_tokens {}, max_seq_len {}, absolute positions {}{}, tied embedding {}, embedding width {}, logits width {}",
            w.num_tokens,
            w.max_seq_len,
            w.has_abs_pos_emb(),
            if w.has_sinusoidal_pos_emb() { " (scaled sinusoids)" } else { "" },
            w.tie_embedding,
            w.emb_width(),
            w.logits_width()
        );
    }
    outln!(
        "parameters  {params} in {} tensors ({})",
        st.len(),
        dtypes.join(", ")
    );
    outln!(
        "weights     {} (viewed in place in the file, never copied)",
        human(bytes as u64)
    );
    outln!();
    outln!("RAM plan for {capacity} positions, {context} context rows, chunks of {chunk}:");
    outln!(
        "  scratch arena          {:>12}  Scratch::bytes(&cfg, {chunk})",
        size(plan.arena)
    );
    outln!(
        "  KV cache, f32          {:>12}  KvCache::<f32>::bytes(&cfg, {capacity})",
        size(plan.kv32)
    );
    outln!(
        "  KV cache, f16          {:>12}  KvCache::<f16>::bytes(&cfg, {capacity})",
        size(plan.kv16)
    );
    if d.cross_attend {
        outln!(
            "  context cache, f32     {:>12}  KvCache::<f32>::context_bytes(&cfg, {context})",
            size(plan.ctx32)
        );
        outln!("  context cache, f16     {:>12}", size(plan.ctx16));
    }
    if let Some(w) = cfg.wrapper {
        outln!(
            "  logits (one position)  {:>12}",
            human(4 * w.logits_width() as u64)
        );
    }
    outln!("  total RAM, f32 cache   {:>12}", size(plan.total(false)));
    outln!("  total RAM, f16 cache   {:>12}", size(plan.total(true)));
    Ok(())
}
