//! `picoformer inspect`: the configuration and the exact RAM plan of a model file.

use picoformer::safetensors::SafeTensors;
use picoformer::{f16, KvCache, Model, Scratch};

use crate::args::{json_string, Args, CliError};
use crate::files::{human, Aligned};

/// A size from the library's `const fn`s, which saturate at `usize::MAX` when too large.
fn size(bytes: usize) -> String {
    if bytes == usize::MAX {
        "too large".into()
    } else {
        human(bytes as u64)
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
    if args.switch("json") {
        // Sizes that saturate (too large for usize) are null.
        let n = |b: usize| {
            if b == usize::MAX {
                "null".to_string()
            } else {
                b.to_string()
            }
        };
        let arena = Scratch::bytes(&d, chunk);
        let logits = cfg.wrapper.map_or(0, |w| 4 * w.num_tokens as u64);
        let total = |parts: [usize; 3]| {
            if parts.contains(&usize::MAX) {
                "null".to_string()
            } else {
                (parts.iter().map(|&p| p as u64).sum::<u64>() + logits).to_string()
            }
        };
        let (kv32, kv16) = (
            KvCache::<f32>::bytes(&d, capacity),
            KvCache::<f16>::bytes(&d, capacity),
        );
        let (ctx32, ctx16) = (
            KvCache::<f32>::context_bytes(&d, context),
            KvCache::<f16>::context_bytes(&d, context),
        );
        let wrapper = match cfg.wrapper {
            Some(w) => format!(
                "{{\"num_tokens\":{},\"max_seq_len\":{},\"abs_pos_emb\":{},\"tie_embedding\":{}}}",
                w.num_tokens,
                w.max_seq_len,
                w.has_abs_pos_emb(),
                w.tie_embedding
            ),
            None => "null".into(),
        };
        let dtypes: Vec<String> = dtypes.iter().map(|t| json_string(t)).collect();
        outln!(
            "{{\"model\":{},\"decoder\":{{\"dim\":{},\"depth\":{},\"heads\":{},\"kv_heads\":{},\"attn_dim_head\":{},\"rotary_dim\":{},\"norm\":\"{:?}\",\"activation\":\"{:?}\",\"ff_glu\":{},\"ff_inner\":{},\"cross_attend\":{},\"dim_context\":{}}},\"wrapper\":{wrapper},\"parameters\":{params},\"tensors\":{},\"dtypes\":[{}],\"weights_bytes\":{bytes},\"ram\":{{\"capacity\":{capacity},\"context\":{context},\"chunk\":{chunk},\"scratch_bytes\":{},\"kv_cache_f32_bytes\":{},\"kv_cache_f16_bytes\":{},\"context_cache_f32_bytes\":{},\"context_cache_f16_bytes\":{},\"logits_bytes\":{logits},\"total_f32_bytes\":{},\"total_f16_bytes\":{}}}}}",
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
            n(arena),
            n(kv32),
            n(kv16),
            n(ctx32),
            n(ctx16),
            total([arena, kv32, ctx32]),
            total([arena, kv16, ctx16]),
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
            "wrapper     num_tokens {}, max_seq_len {}, absolute positions {}, tied embedding {}",
            w.num_tokens,
            w.max_seq_len,
            w.has_abs_pos_emb(),
            w.tie_embedding
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
    let arena = Scratch::bytes(&d, chunk);
    let kv32 = KvCache::<f32>::bytes(&d, capacity);
    let kv16 = KvCache::<f16>::bytes(&d, capacity);
    let ctx32 = KvCache::<f32>::context_bytes(&d, context);
    let ctx16 = KvCache::<f16>::context_bytes(&d, context);
    outln!(
        "  scratch arena          {:>12}  Scratch::bytes(&cfg, {chunk})",
        size(arena)
    );
    outln!(
        "  KV cache, f32          {:>12}  KvCache::<f32>::bytes(&cfg, {capacity})",
        size(kv32)
    );
    outln!(
        "  KV cache, f16          {:>12}  KvCache::<f16>::bytes(&cfg, {capacity})",
        size(kv16)
    );
    if d.cross_attend {
        outln!(
            "  context cache, f32     {:>12}  KvCache::<f32>::context_bytes(&cfg, {context})",
            size(ctx32)
        );
        outln!("  context cache, f16     {:>12}", size(ctx16));
    }
    if let Some(w) = cfg.wrapper {
        outln!(
            "  logits (one position)  {:>12}",
            human(4 * w.num_tokens as u64)
        );
    }
    let logits = cfg.wrapper.map_or(0, |w| 4 * w.num_tokens as u64);
    // In u64 from sizes that saturate at usize::MAX: a total too large to hold says so.
    let total = |parts: &[usize]| -> String {
        let sum = parts.iter().map(|&p| p as u64).sum::<u64>() + logits;
        if parts.contains(&usize::MAX) {
            "too large".into()
        } else {
            human(sum)
        }
    };
    outln!(
        "  total RAM, f32 cache   {:>12}",
        total(&[arena, kv32, ctx32])
    );
    outln!(
        "  total RAM, f16 cache   {:>12}",
        total(&[arena, kv16, ctx16])
    );
    Ok(())
}
