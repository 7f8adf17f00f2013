//! `picoformer inspect`: the configuration and the exact RAM plan of a model file.

use picoformer::options::ModelKind;
use picoformer::safetensors::SafeTensors;
use picoformer::{
    f16, ContinuousModel, DecoderConfig, EncoderModel, KvCache, Model, Scratch, XTransformer,
};

use crate::args::{json_string, Args, CliError};
use crate::files::{human, ModelFile};

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
    let file = ModelFile::open(path)?;
    let model: Model = match Model::from_safetensors(file.bytes()) {
        Ok(m) => m,
        Err(e) => {
            // A file of another kind: its own plan.
            let kind = [
                ModelKind::Encoder,
                ModelKind::Continuous,
                ModelKind::XTransformer,
            ]
            .into_iter()
            .find(|k| k.refusal() == e)
            .ok_or_else(|| CliError::Failed(format!("{path}: {e}")))?;
            if args.switch("rust") {
                return Err(CliError::Failed(format!(
                    "{path}: `inspect --rust` writes a Decoder's or a TransformerWrapper's \
                     configuration; this file holds another kind ({kind:?})"
                )));
            }
            return family(args, path, file.bytes(), kind);
        }
    };
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
    if args.switch("rust") {
        if args.switch("json") {
            return Err(CliError::Usage(
                "--rust and --json: one or the other".into(),
            ));
        }
        return crate::rust::print(path, &cfg, capacity, context, chunk);
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

/// One buffer of a plan: its JSON key, its label, its bytes with an f32 and an f16 cache (the
/// same for buffers that are not caches; `None`: too large) and the `const fn` that sizes it.
struct Row {
    key: &'static str,
    label: String,
    f32: Option<u64>,
    f16: Option<u64>,
    how: String,
}

impl Row {
    /// A buffer of f32 values, the same whatever the cache's type.
    fn plain(key: &'static str, label: &str, bytes: Option<u64>, how: String) -> Row {
        Row {
            key,
            label: label.into(),
            f32: bytes,
            f16: bytes,
            how,
        }
    }

    /// A KV or context cache.
    fn cache(key: &'static str, label: &str, f32: usize, f16: usize, how: String) -> Row {
        Row {
            key,
            label: label.into(),
            f32: fits(f32),
            f16: fits(f16),
            how,
        }
    }
}

/// `n` f32 values in bytes (`None` past u64).
fn f32s(n: usize) -> Option<u64> {
    (n as u64).checked_mul(4)
}

/// The sum of the rows' bytes, with an f32 (`f16 = false`) or f16 cache.
fn total(rows: &[Row], f16: bool) -> Option<u64> {
    rows.iter()
        .map(|r| if f16 { r.f16 } else { r.f32 })
        .try_fold(0u64, |a, b| a.checked_add(b?))
}

/// The layers' line of the configuration.
fn layers_text(d: &DecoderConfig) -> String {
    format!(
        "dim {}, depth {}, heads {} (kv heads {}), attn_dim_head {}, rotary dim {}, norm {:?}, ff {:?}{} inner {}{}",
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
        if d.cross_attend {
            format!(", cross-attend (context dim {})", d.dim_context())
        } else {
            String::new()
        }
    )
}

/// The layers as JSON.
fn layers_json(d: &DecoderConfig) -> String {
    format!(
        "{{\"dim\":{},\"depth\":{},\"heads\":{},\"kv_heads\":{},\"attn_dim_head\":{},\"rotary_dim\":{},\"norm\":\"{:?}\",\"activation\":\"{:?}\",\"ff_glu\":{},\"ff_inner\":{},\"cross_attend\":{},\"dim_context\":{}}}",
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
        d.dim_context()
    )
}

/// The scratch arena, KV cache and context cache of `cfg` for `positions` per chunk, `capacity`
/// cached positions and `context` rows, their keys and labels prefixed by `who` (`""`,
/// `"encoder_"`, ...).
fn layer_rows(
    rows: &mut Vec<Row>,
    who: (&'static str, &'static str, &'static str, &str),
    cfg: &DecoderConfig,
    positions: usize,
    capacity: usize,
    context: usize,
) {
    let (scratch_key, kv_key, ctx_key, label) = who;
    rows.push(Row::plain(
        scratch_key,
        &format!("{label}scratch arena"),
        fits(Scratch::bytes(cfg, positions)),
        format!("Scratch::bytes(&cfg, {positions})"),
    ));
    rows.push(Row::cache(
        kv_key,
        &format!("{label}KV cache"),
        KvCache::<f32>::bytes(cfg, capacity),
        KvCache::<f16>::bytes(cfg, capacity),
        format!("KvCache::<T>::bytes(&cfg, {capacity})"),
    ));
    if cfg.cross_attend {
        rows.push(Row::cache(
            ctx_key,
            &format!("{label}context cache"),
            KvCache::<f32>::context_bytes(cfg, context),
            KvCache::<f16>::context_bytes(cfg, context),
            format!("KvCache::<T>::context_bytes(&cfg, {context})"),
        ));
    }
}

/// `inspect` of an Encoder's, a ContinuousTransformerWrapper's or an XTransformer's file: the
/// configuration and the RAM plan of each part.
fn family(args: &Args, path: &str, bytes: &[u8], kind: ModelKind) -> Result<(), CliError> {
    let load = |e| CliError::Failed(format!("{path}: {e}"));
    let st = SafeTensors::parse(bytes)?;
    // What each kind takes: (kind, configuration lines as (label, text, json key, json),
    // capacity, context, chunk, rows).
    let mut lines: Vec<(&str, String, &str, String)> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let chunk_given = args.text("chunk").is_some();
    let chunk = args.get("chunk", 1usize)?;
    if chunk == 0 {
        return Err(CliError::Usage("--chunk must be at least 1".into()));
    }
    let window_only = |what: &str| {
        if chunk_given {
            Err(CliError::Usage(format!(
                "--chunk: {what} runs its window in one chunk (--capacity sets the window)"
            )))
        } else {
            Ok(())
        }
    };
    let (name, capacity, context, chunk) = match kind {
        ModelKind::Encoder => {
            let model: EncoderModel = EncoderModel::from_safetensors(bytes).map_err(load)?;
            window_only("an Encoder")?;
            let d = *model.config();
            let (name, width, default) = match &model {
                EncoderModel::Encoder(_) => ("Encoder", d.dim, 512),
                EncoderModel::Wrapper(w) => {
                    let c = w.config();
                    lines.push((
                        "wrapper",
                        format!(
                            "num_tokens {}, max_seq_len {}, absolute positions {}",
                            c.num_tokens,
                            c.max_seq_len,
                            c.has_abs_pos_emb()
                        ),
                        "wrapper",
                        format!(
                            "{{\"num_tokens\":{},\"max_seq_len\":{},\"abs_pos_emb\":{}}}",
                            c.num_tokens,
                            c.max_seq_len,
                            c.has_abs_pos_emb()
                        ),
                    ));
                    let default = if c.has_abs_pos_emb() {
                        c.max_seq_len
                    } else {
                        512
                    };
                    ("TransformerWrapper(Encoder)", c.num_tokens, default)
                }
            };
            lines.insert(0, ("encoder", layers_text(&d), "encoder", layers_json(&d)));
            let window = args.get("capacity", default)?;
            let context = args.get("context", if d.cross_attend { 16 } else { 0 })?;
            // A wrapper's memory tokens take positions too.
            let positions = match &model {
                EncoderModel::Wrapper(w) => w.config().cache_positions(window),
                EncoderModel::Encoder(_) => window,
            };
            layer_rows(
                &mut rows,
                ("scratch", "kv_cache", "context_cache", ""),
                &d,
                positions,
                positions,
                context,
            );
            rows.push(Row::plain(
                "outputs",
                "outputs (the window)",
                f32s(window.saturating_mul(width)),
                format!("{window} x {width} f32"),
            ));
            (name, window, context, window)
        }
        ModelKind::Continuous => {
            let model: ContinuousModel = ContinuousModel::from_safetensors(bytes).map_err(load)?;
            let c = *model.config();
            let d = c.attn_layers;
            let (wi, wo) = (c.input_width(), c.output_width());
            lines.push((
                if model.is_encoder() {
                    "encoder"
                } else {
                    "decoder"
                },
                layers_text(&d),
                "layers",
                layers_json(&d),
            ));
            lines.push((
                "wrapper",
                format!(
                    "frames of {wi} in, {wo} out{}, max_seq_len {}, absolute positions {}, post_emb_norm {}, memory tokens {}",
                    if model.is_encoder() && c.average_pool_embed {
                        " (pooled: one row per window)"
                    } else {
                        ""
                    },
                    c.max_seq_len,
                    c.has_abs_pos_emb(),
                    c.post_emb_norm,
                    c.num_memory_tokens
                ),
                "continuous_wrapper",
                format!(
                    "{{\"dim_in\":{wi},\"dim_out\":{wo},\"max_seq_len\":{},\"abs_pos_emb\":{},\"post_emb_norm\":{},\"average_pool_embed\":{},\"num_memory_tokens\":{}}}",
                    c.max_seq_len,
                    c.has_abs_pos_emb(),
                    c.post_emb_norm,
                    c.average_pool_embed,
                    c.num_memory_tokens
                ),
            ));
            let default = if c.has_abs_pos_emb() {
                c.max_seq_len
            } else {
                512
            };
            let capacity = args.get("capacity", default)?;
            let context = args.get("context", if d.cross_attend { 16 } else { 0 })?;
            if model.is_encoder() {
                window_only("a ContinuousTransformerWrapper around an Encoder")?;
                let positions = c.cache_positions(capacity);
                layer_rows(
                    &mut rows,
                    ("scratch", "kv_cache", "context_cache", ""),
                    &d,
                    positions,
                    positions,
                    context,
                );
                let out = if c.average_pool_embed {
                    wo
                } else {
                    capacity.saturating_mul(wo)
                };
                rows.push(Row::plain(
                    "frames",
                    "frames in and out",
                    f32s(capacity.saturating_mul(wi).saturating_add(out)),
                    format!("{capacity} x {wi} + {out} f32"),
                ));
                (
                    "ContinuousTransformerWrapper(Encoder)",
                    capacity,
                    context,
                    capacity,
                )
            } else {
                layer_rows(
                    &mut rows,
                    ("scratch", "kv_cache", "context_cache", ""),
                    &d,
                    chunk,
                    c.cache_positions(capacity),
                    context,
                );
                rows.push(Row::plain(
                    "frames",
                    "frames in and out (one chunk)",
                    f32s(chunk.saturating_mul(wi + wo)),
                    format!("{chunk} x ({wi} + {wo}) f32"),
                ));
                (
                    "ContinuousTransformerWrapper(Decoder)",
                    capacity,
                    context,
                    chunk,
                )
            }
        }
        _ => {
            let xt: XTransformer = XTransformer::from_safetensors(bytes).map_err(load)?;
            let c = xt.config();
            let (e, d) = (c.encoder.attn_layers, c.decoder.attn_layers);
            lines.push(("encoder", layers_text(&e), "encoder", layers_json(&e)));
            lines.push(("decoder", layers_text(&d), "decoder", layers_json(&d)));
            lines.push((
                "wrappers",
                format!(
                    "source: num_tokens {}, max_seq_len {}, absolute positions {}; target: num_tokens {}, max_seq_len {}, absolute positions {}; tied token embedding {}",
                    c.encoder.num_tokens,
                    c.encoder.max_seq_len,
                    c.encoder.has_abs_pos_emb(),
                    c.decoder.num_tokens,
                    c.decoder.max_seq_len,
                    c.decoder.has_abs_pos_emb(),
                    c.tie_token_emb
                ),
                "wrappers",
                format!(
                    "{{\"enc_num_tokens\":{},\"enc_max_seq_len\":{},\"enc_abs_pos_emb\":{},\"dec_num_tokens\":{},\"dec_max_seq_len\":{},\"dec_abs_pos_emb\":{},\"tie_token_emb\":{}}}",
                    c.encoder.num_tokens,
                    c.encoder.max_seq_len,
                    c.encoder.has_abs_pos_emb(),
                    c.decoder.num_tokens,
                    c.decoder.max_seq_len,
                    c.decoder.has_abs_pos_emb(),
                    c.tie_token_emb
                ),
            ));
            let source = args.get(
                "context",
                if c.encoder.has_abs_pos_emb() {
                    c.encoder.max_seq_len
                } else {
                    16
                },
            )?;
            let capacity = args.get(
                "capacity",
                if c.decoder.has_abs_pos_emb() {
                    c.decoder.max_seq_len
                } else {
                    512
                },
            )?;
            layer_rows(
                &mut rows,
                (
                    "encoder_scratch",
                    "encoder_kv_cache",
                    "encoder_context_cache",
                    "encoder ",
                ),
                &e,
                c.encoder.cache_positions(source),
                c.encoder.cache_positions(source),
                0,
            );
            rows.push(Row::plain(
                "source_embeddings",
                "source embeddings",
                f32s(source.saturating_mul(e.dim)),
                format!("{source} x {} f32", e.dim),
            ));
            layer_rows(
                &mut rows,
                (
                    "decoder_scratch",
                    "decoder_kv_cache",
                    "decoder_context_cache",
                    "decoder ",
                ),
                &d,
                chunk,
                capacity,
                source,
            );
            rows.push(Row::plain(
                "logits",
                "logits (one position)",
                f32s(c.decoder.num_tokens),
                format!("{} f32", c.decoder.num_tokens),
            ));
            ("XTransformer", capacity, source, chunk)
        }
    };

    let (mut params, mut weights) = (0usize, 0usize);
    let mut dtypes: Vec<&str> = Vec::new();
    for t in st.tensors() {
        params += t.numel();
        weights += t.data().len();
        if !dtypes.contains(&t.dtype().name()) {
            dtypes.push(t.dtype().name());
        }
    }
    if args.switch("json") {
        let config: Vec<String> = lines
            .iter()
            .map(|(_, _, key, json)| format!("\"{key}\":{json}"))
            .collect();
        let ram: Vec<String> = rows
            .iter()
            .map(|r| {
                if r.f32 == r.f16 {
                    format!("\"{}_bytes\":{}", r.key, json_size(r.f32))
                } else {
                    format!(
                        "\"{k}_f32_bytes\":{},\"{k}_f16_bytes\":{}",
                        json_size(r.f32),
                        json_size(r.f16),
                        k = r.key
                    )
                }
            })
            .collect();
        let dtypes: Vec<String> = dtypes.iter().map(|t| json_string(t)).collect();
        outln!(
            "{{\"model\":{},\"kind\":{},{},\"parameters\":{params},\"tensors\":{},\"dtypes\":[{}],\"weights_bytes\":{weights},\"ram\":{{\"capacity\":{capacity},\"context\":{context},\"chunk\":{chunk},{},\"total_f32_bytes\":{},\"total_f16_bytes\":{}}}}}",
            json_string(path),
            json_string(name),
            config.join(","),
            st.len(),
            dtypes.join(","),
            ram.join(","),
            json_size(total(&rows, false)),
            json_size(total(&rows, true)),
        );
        return Ok(());
    }
    outln!("model       {path}");
    outln!("kind        {name}");
    for (label, text, _, _) in &lines {
        outln!("{label:<11} {text}");
    }
    outln!(
        "parameters  {params} in {} tensors ({})",
        st.len(),
        dtypes.join(", ")
    );
    outln!(
        "weights     {} (viewed in place in the file, never copied)",
        human(weights as u64)
    );
    outln!();
    outln!(
        "RAM plan for {}:",
        match kind {
            ModelKind::XTransformer => format!(
                "a source of {context} tokens, {capacity} target positions, chunks of {chunk}"
            ),
            ModelKind::Continuous if name.ends_with("(Decoder)") => {
                format!("{capacity} positions, {context} context rows, chunks of {chunk}")
            }
            _ => format!("a window of {capacity} positions, {context} context rows"),
        }
    );
    for r in &rows {
        if r.f32 == r.f16 {
            outln!("  {:<30} {:>12}  {}", r.label, size(r.f32), r.how);
        } else {
            outln!(
                "  {:<30} {:>12}  {}",
                format!("{}, f32", r.label),
                size(r.f32),
                r.how
            );
            outln!("  {:<30} {:>12}", format!("{}, f16", r.label), size(r.f16));
        }
    }
    outln!(
        "  {:<30} {:>12}",
        "total RAM, f32 cache",
        size(total(&rows, false))
    );
    outln!(
        "  {:<30} {:>12}",
        "total RAM, f16 cache",
        size(total(&rows, true))
    );
    Ok(())
}
