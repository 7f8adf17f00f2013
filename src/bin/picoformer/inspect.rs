//! `picoformer inspect`: the configuration and the exact RAM plan of a model file.

use picoformer::safetensors::SafeTensors;
use picoformer::{f16, KvCache, Model, Scratch};

use crate::args::{Args, CliError};
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
    println!("model       {path}");
    println!(
        "kind        {}",
        if cfg.wrapper.is_some() {
            "TransformerWrapper"
        } else {
            "Decoder"
        }
    );
    println!(
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
        println!(
            "wrapper     num_tokens {}, max_seq_len {}, absolute positions {}, tied embedding {}",
            w.num_tokens,
            w.max_seq_len,
            w.has_abs_pos_emb(),
            w.tie_embedding
        );
    }
    println!(
        "parameters  {params} in {} tensors ({})",
        st.len(),
        dtypes.join(", ")
    );
    println!(
        "weights     {} (viewed in place in the file, never copied)",
        human(bytes as u64)
    );
    println!();
    println!("RAM plan for {capacity} positions, {context} context rows, chunks of {chunk}:");
    let arena = Scratch::bytes(&d, chunk);
    let kv32 = KvCache::<f32>::bytes(&d, capacity);
    let kv16 = KvCache::<f16>::bytes(&d, capacity);
    let ctx32 = KvCache::<f32>::context_bytes(&d, context);
    let ctx16 = KvCache::<f16>::context_bytes(&d, context);
    println!(
        "  scratch arena          {:>12}  Scratch::bytes(&cfg, {chunk})",
        size(arena)
    );
    println!(
        "  KV cache, f32          {:>12}  KvCache::<f32>::bytes(&cfg, {capacity})",
        size(kv32)
    );
    println!(
        "  KV cache, f16          {:>12}  KvCache::<f16>::bytes(&cfg, {capacity})",
        size(kv16)
    );
    if d.cross_attend {
        println!(
            "  context cache, f32     {:>12}  KvCache::<f32>::context_bytes(&cfg, {context})",
            size(ctx32)
        );
        println!("  context cache, f16     {:>12}", size(ctx16));
    }
    if let Some(w) = cfg.wrapper {
        println!(
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
    println!(
        "  total RAM, f32 cache   {:>12}",
        total(&[arena, kv32, ctx32])
    );
    println!(
        "  total RAM, f16 cache   {:>12}",
        total(&[arena, kv16, ctx16])
    );
    Ok(())
}
