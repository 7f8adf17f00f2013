//! `picoformer run`: a model on an inputs file, full and step-wise, written as safetensors.

use picoformer::options::ModelKind;
use picoformer::safetensors::{Dtype, SafeTensors};
use picoformer::{
    ContinuousModel, DecoderConfig, EncoderModel, KvCache, Masks, Model, Scratch, XTransformer,
};

use crate::args::{Args, CliError};
use crate::files::{filled, write_f32, Aligned, ModelFile};

/// Positions per forward chunk of the full pass.
const CHUNK: usize = 16;

fn fail(m: impl Into<String>) -> CliError {
    CliError::Failed(m.into())
}

pub fn main(args: &Args) -> Result<(), CliError> {
    let p = args.positional(&["MODEL", "INPUTS", "OUT"])?;
    let (model_path, inputs_path, out_path) = (&p[0], &p[1], &p[2]);
    let int8 = crate::args::int8_dot(args)?;
    let file = ModelFile::open(model_path)?;
    let load_error = |e| fail(format!("{model_path}: {e}"));
    let model: Model = match Model::from_safetensors(file.bytes()) {
        Ok(m) => m,
        // A file of another kind: its loader and its own pass.
        Err(e) => {
            let kind = [
                ModelKind::Encoder,
                ModelKind::Continuous,
                ModelKind::XTransformer,
            ]
            .into_iter()
            .find(|k| k.refusal() == e)
            .ok_or_else(|| load_error(e))?;
            if int8 {
                return Err(fail(format!(
                    "--dot int8 runs a Decoder's file; {model_path} holds {}",
                    kind_name(kind)
                )));
            }
            let bytes = file.bytes();
            return match kind {
                ModelKind::Encoder => {
                    let model: EncoderModel =
                        EncoderModel::from_safetensors(bytes).map_err(load_error)?;
                    run_encoder(&model, inputs_path, out_path)
                }
                ModelKind::Continuous => {
                    let model: ContinuousModel =
                        ContinuousModel::from_safetensors(bytes).map_err(load_error)?;
                    run_continuous(&model, inputs_path, out_path)
                }
                _ => {
                    let model: XTransformer =
                        XTransformer::from_safetensors(bytes).map_err(load_error)?;
                    run_xtransformer(&model, inputs_path, out_path)
                }
            };
        }
    };
    // --dot int8: the Q8_0 matrices packed into int8 panels (every product on the int8 path).
    let mut arena = filled(
        if int8 { model.int8_panels_len() } else { 0 },
        0u8,
        "the int8 panels",
    )?;
    let model = if int8 {
        model.with_int8_panels(&mut arena)?
    } else {
        model
    };
    let inputs = Aligned::read(inputs_path)?;
    let st = SafeTensors::parse(inputs.bytes()).map_err(|e| fail(format!("{inputs_path}: {e}")))?;
    let cfg = model.config().decoder;

    // What the model takes: embeddings `x` for a Decoder, `tokens` for a wrapper.
    let (b, n, x, tokens): (usize, usize, Vec<f32>, Vec<u32>) = match &model {
        Model::Decoder(_) => {
            let t = st.tensor("x").ok_or_else(|| {
                fail(format!(
                    "{inputs_path}: a Decoder needs `x` (b, n, {})",
                    cfg.dim
                ))
            })?;
            let s = t.shape();
            if t.dtype() != Dtype::F32 || s.len() != 3 || s[2] != cfg.dim || s[0] == 0 || s[1] == 0
            {
                return Err(fail(format!(
                    "`x` must be f32 of shape (b, n, {}) with b, n >= 1; it is {} {:?}",
                    cfg.dim,
                    t.dtype().name(),
                    s
                )));
            }
            (s[0], s[1], t.as_f32()?.to_vec(), Vec::new())
        }
        Model::Wrapper(w) => {
            let v = w.config().num_tokens;
            let t = st.tensor("tokens").ok_or_else(|| {
                fail(format!(
                    "{inputs_path}: a TransformerWrapper needs `tokens` (b, n)"
                ))
            })?;
            let s = t.shape();
            if t.dtype() != Dtype::I64 || s.len() != 2 || s[0] == 0 || s[1] == 0 {
                return Err(fail(format!(
                    "`tokens` must be i64 of shape (b, n) with b, n >= 1; it is {} {:?}",
                    t.dtype().name(),
                    s
                )));
            }
            let mut toks = Vec::with_capacity(s[0] * s[1]);
            for (i, &id) in t.as_i64()?.iter().enumerate() {
                if id < 0 || id as u64 >= v as u64 {
                    return Err(fail(format!(
                        "token {id} at index {i} is out of range (num_tokens = {v})"
                    )));
                }
                toks.push(id as u32);
            }
            (s[0], s[1], Vec::new(), toks)
        }
    };
    // Every input must be one the model takes: an unknown name is refused, not ignored.
    let (kind, seq_name) = match &model {
        Model::Decoder(_) => ("a Decoder", "x"),
        Model::Wrapper(_) => ("a TransformerWrapper", "tokens"),
    };
    let mut known = vec![seq_name, "mask"];
    if cfg.cross_attend {
        known.extend(["context", "context_mask"]);
    }
    // `full` and `stepwise` are a fixture's expected outputs (tools/make_fixtures.py), not
    // inputs: they may be present and are not read.
    for t in st.tensors() {
        if !known.contains(&t.name()) && !["full", "stepwise"].contains(&t.name()) {
            return Err(fail(format!(
                "{inputs_path}: `{}` is not an input of {kind}{} (it takes {})",
                t.name(),
                if cfg.cross_attend {
                    ""
                } else {
                    " without cross-attention"
                },
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }

    let context = read_context(&st, &cfg, b)?.map(|(m, c)| (m, c.to_vec()));
    let rows = context.as_ref().map_or(1, |c| c.0);
    // Padding masks: (b, n) and (b, m), bool or uint8, nonzero = a real position.
    let mask = read_mask(&st, "mask", b, n)?;
    let context_mask = match &context {
        Some((m, _)) => read_mask(&st, "context_mask", b, *m)?,
        None => None,
    };
    let width = match &model {
        Model::Decoder(_) => cfg.dim,
        Model::Wrapper(w) => w.config().logits_width(),
    };
    // A wrapper's memory tokens take the cache's first positions.
    let cap = model.config().wrapper.map_or(n, |w| w.cache_positions(n));

    let mut kv = filled(KvCache::<f32>::elements(&cfg, cap), 0.0f32, "the KV cache")?;
    let mut kc = filled(
        KvCache::<f32>::context_elements(&cfg, rows),
        0.0f32,
        "the context cache",
    )?;
    let mut sb = filled(Scratch::elements(&cfg, CHUNK), 0.0f32, "the scratch arena")?;
    let mut scratch = Scratch::new(&cfg, CHUNK, &mut sb)?;
    let outputs = b.saturating_mul(n).saturating_mul(width);
    let mut full = filled(outputs, 0.0f32, "the outputs")?;
    let mut stepwise = filled(outputs, 0.0f32, "the outputs")?;
    for bi in 0..b {
        let ctx = context
            .as_ref()
            .map(|(m, c)| &c[bi * m * cfg.dim_context()..(bi + 1) * m * cfg.dim_context()]);
        let mask = mask.as_ref().map(|m| &m[bi * n..(bi + 1) * n]);
        let context_mask = context_mask
            .as_ref()
            .map(|m| &m[bi * rows..(bi + 1) * rows]);
        // The masks of a call that ends at position `end`.
        let masks = |end: usize| Masks {
            mask: mask.map(|m| &m[..end]),
            context_mask,
        };
        for (first, out) in [(n, &mut full), (1, &mut stepwise)] {
            let mut cache = KvCache::with_context(&cfg, cap, &mut kv, rows, &mut kc)?;
            let out = &mut out[bi * n * width..(bi + 1) * n * width];
            match &model {
                Model::Decoder(dec) => {
                    let x = &x[bi * n * cfg.dim..(bi + 1) * n * cfg.dim];
                    dec.forward_masked(
                        &mut cache,
                        &mut scratch,
                        &x[..first * width],
                        ctx,
                        masks(first),
                        &mut out[..first * width],
                    )?;
                    for i in first..n {
                        dec.forward_masked(
                            &mut cache,
                            &mut scratch,
                            &x[i * width..(i + 1) * width],
                            None,
                            masks(i + 1),
                            &mut out[i * width..(i + 1) * width],
                        )?;
                    }
                }
                Model::Wrapper(w) => {
                    let t = &tokens[bi * n..(bi + 1) * n];
                    w.forward_masked(
                        &mut cache,
                        &mut scratch,
                        &t[..first],
                        ctx,
                        masks(first),
                        &mut out[..first * width],
                    )?;
                    for i in first..n {
                        w.forward_masked(
                            &mut cache,
                            &mut scratch,
                            &t[i..i + 1],
                            None,
                            masks(i + 1),
                            &mut out[i * width..(i + 1) * width],
                        )?;
                    }
                }
            }
        }
    }
    let shape = vec![b, n, width];
    write_f32(
        out_path,
        &[
            ("full", shape.clone(), &full),
            ("stepwise", shape, &stepwise),
        ],
    )?;
    let diff = full
        .iter()
        .zip(&stepwise)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    outln!("wrote {out_path}: full and stepwise ({b}, {n}, {width}); max |full - stepwise| = {diff:.2e}");
    Ok(())
}

/// The `context` of INPUTS, (b, m, dim_context) f32, as (m, values): required by a
/// cross-attending model and refused by any other.
fn read_context<'a>(
    st: &SafeTensors<'a>,
    cfg: &DecoderConfig,
    b: usize,
) -> Result<Option<(usize, &'a [f32])>, CliError> {
    match st.tensor("context") {
        None if cfg.cross_attend => Err(fail(
            "this model cross-attends: INPUTS needs `context` (b, m, dim_context)",
        )),
        None => Ok(None),
        Some(_) if !cfg.cross_attend => Err(fail(
            "`context` given, but this model does not cross-attend",
        )),
        Some(t) => {
            let s = t.shape();
            if t.dtype() != Dtype::F32
                || s.len() != 3
                || s[0] != b
                || s[2] != cfg.dim_context()
                || s[1] == 0
            {
                return Err(fail(format!(
                    "`context` must be f32 of shape ({b}, m, {}) with m >= 1; it is {} {:?}",
                    cfg.dim_context(),
                    t.dtype().name(),
                    s
                )));
            }
            Ok(Some((s[1], t.as_f32()?)))
        }
    }
}

/// The padding mask `name` of INPUTS, (b, len), bool or uint8 (nonzero = real), if present.
fn read_mask(
    st: &SafeTensors<'_>,
    name: &str,
    b: usize,
    len: usize,
) -> Result<Option<Vec<bool>>, CliError> {
    let Some(t) = st.tensor(name) else {
        return Ok(None);
    };
    if !matches!(t.dtype(), Dtype::Bool | Dtype::U8) || t.shape() != [b, len] {
        return Err(fail(format!(
            "`{name}` must be bool or uint8 of shape ({b}, {len}); it is {} {:?}",
            t.dtype().name(),
            t.shape()
        )));
    }
    Ok(Some(t.data().iter().map(|&v| v != 0).collect()))
}

/// `picoformer run` on an Encoder's file: INPUTS `x` (b, n, dim) for a bare Encoder or
/// `tokens` (b, n) for a wrapper, optional `mask` (b, n), `context` (b, m, dim_context) and
/// `context_mask` (b, m); OUT `full` (b, n, dim or the logits' width): each window in one pass.
fn run_encoder(model: &EncoderModel, inputs_path: &str, out_path: &str) -> Result<(), CliError> {
    let inputs = Aligned::read(inputs_path)?;
    let st = SafeTensors::parse(inputs.bytes()).map_err(|e| fail(format!("{inputs_path}: {e}")))?;
    let cfg = *model.config();
    let (kind, seq_name, width) = match model {
        EncoderModel::Encoder(_) => ("an Encoder", "x", cfg.dim),
        EncoderModel::Wrapper(w) => (
            "a TransformerWrapper(Encoder)",
            "tokens",
            w.config().logits_width(),
        ),
    };
    let mut known = vec![seq_name, "mask"];
    if cfg.cross_attend {
        known.extend(["context", "context_mask"]);
    }
    for t in st.tensors() {
        if !known.contains(&t.name()) && !["full", "stepwise"].contains(&t.name()) {
            return Err(fail(format!(
                "{inputs_path}: `{}` is not an input of {kind} (it takes {})",
                t.name(),
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let t = st
        .tensor(seq_name)
        .ok_or_else(|| fail(format!("{inputs_path}: {kind} needs `{seq_name}`")))?;
    let s = t.shape().to_vec();
    let (b, n) = match (model, s.as_slice()) {
        (EncoderModel::Encoder(_), &[b, n, d])
            if t.dtype() == Dtype::F32 && d == cfg.dim && b > 0 && n > 0 =>
        {
            (b, n)
        }
        (EncoderModel::Wrapper(_), &[b, n]) if t.dtype() == Dtype::I64 && b > 0 && n > 0 => (b, n),
        _ => {
            return Err(fail(format!(
                "`{seq_name}` has the wrong type or shape for {kind} (dim {}): {} {:?}",
                cfg.dim,
                t.dtype().name(),
                s
            )))
        }
    };
    let context = read_context(&st, &cfg, b)?;
    let rows = context.as_ref().map_or(1, |c| c.0);
    let mask = read_mask(&st, "mask", b, n)?;
    let context_mask = match &context {
        Some((m, _)) => read_mask(&st, "context_mask", b, *m)?,
        None => None,
    };
    let mut kv = filled(KvCache::<f32>::elements(&cfg, n), 0.0f32, "the KV cache")?;
    let mut kc = filled(
        KvCache::<f32>::context_elements(&cfg, rows),
        0.0f32,
        "the context cache",
    )?;
    let mut sb = filled(Scratch::elements(&cfg, n), 0.0f32, "the scratch arena")?;
    let mut scratch = Scratch::new(&cfg, n, &mut sb)?;
    let mut cache = KvCache::with_context(&cfg, n, &mut kv, rows, &mut kc)?;
    let mut full = filled(
        b.saturating_mul(n).saturating_mul(width),
        0.0f32,
        "the outputs",
    )?;
    for bi in 0..b {
        let masks = Masks {
            mask: mask.as_ref().map(|m| &m[bi * n..(bi + 1) * n]),
            context_mask: context_mask
                .as_ref()
                .map(|m| &m[bi * rows..(bi + 1) * rows]),
        };
        let w = rows * cfg.dim_context();
        let ctx = context.as_ref().map(|(_, c)| &c[bi * w..(bi + 1) * w]);
        let out = &mut full[bi * n * width..(bi + 1) * n * width];
        match model {
            EncoderModel::Encoder(e) => {
                let x = &t.as_f32()?[bi * n * cfg.dim..(bi + 1) * n * cfg.dim];
                e.forward(&mut cache, &mut scratch, x, ctx, masks, out)?;
            }
            EncoderModel::Wrapper(wr) => {
                let v = wr.config().num_tokens;
                let mut toks = Vec::with_capacity(n);
                for (i, &id) in t.as_i64()?[bi * n..(bi + 1) * n].iter().enumerate() {
                    if id < 0 || id as u64 >= v as u64 {
                        return Err(fail(format!(
                            "token {id} at index {} is out of range (num_tokens = {v})",
                            bi * n + i
                        )));
                    }
                    toks.push(id as u32);
                }
                wr.encode(&mut cache, &mut scratch, &toks, ctx, masks, out)?;
            }
        }
    }
    write_f32(out_path, &[("full", vec![b, n, width], &full)])?;
    outln!("wrote {out_path}: full ({b}, {n}, {width}) of {kind}");
    Ok(())
}

/// The model a file of `kind` holds, as messages name it.
pub fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Decoder => "a Decoder",
        ModelKind::Encoder => "an Encoder",
        ModelKind::Continuous => "a ContinuousTransformerWrapper",
        ModelKind::XTransformer => "an XTransformer",
    }
}

/// Refuses every tensor of INPUTS not in `known` (a fixture's expected outputs `outputs`
/// excepted: they are not read).
fn check_names(
    st: &SafeTensors<'_>,
    inputs_path: &str,
    kind: &str,
    known: &[&str],
    outputs: &[&str],
) -> Result<(), CliError> {
    for t in st.tensors() {
        if !known.contains(&t.name()) && !outputs.contains(&t.name()) {
            return Err(fail(format!(
                "{inputs_path}: `{}` is not an input of {kind} (it takes {})",
                t.name(),
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// The token ids `name` of INPUTS, (b, n) int64 below `num_tokens`, with b and n.
fn read_tokens(
    st: &SafeTensors<'_>,
    inputs_path: &str,
    kind: &str,
    name: &str,
    num_tokens: usize,
) -> Result<(usize, usize, Vec<u32>), CliError> {
    let t = st
        .tensor(name)
        .ok_or_else(|| fail(format!("{inputs_path}: {kind} needs `{name}` (b, n) int64")))?;
    let s = t.shape();
    if t.dtype() != Dtype::I64 || s.len() != 2 || s[0] == 0 || s[1] == 0 {
        return Err(fail(format!(
            "`{name}` must be i64 of shape (b, n) with b, n >= 1; it is {} {:?}",
            t.dtype().name(),
            s
        )));
    }
    let mut ids = Vec::with_capacity(s[0] * s[1]);
    for (i, &id) in t.as_i64()?.iter().enumerate() {
        if id < 0 || id as u64 >= num_tokens as u64 {
            return Err(fail(format!(
                "`{name}`: token {id} at index {i} is out of range (num_tokens = {num_tokens})"
            )));
        }
        ids.push(id as u32);
    }
    Ok((s[0], s[1], ids))
}

/// `picoformer run` on a `ContinuousTransformerWrapper`'s file: INPUTS `x` (b, n, dim_in) f32,
/// optional `mask` (b, n), and, when the layers cross-attend, `context` (b, m, dim_context) with
/// an optional `context_mask` (b, m). OUT `full` (b, n, dim_out), or (b, dim_out) pooled; around
/// a Decoder also `stepwise` (the first frame, then one frame per call).
fn run_continuous(
    model: &ContinuousModel,
    inputs_path: &str,
    out_path: &str,
) -> Result<(), CliError> {
    let inputs = Aligned::read(inputs_path)?;
    let st = SafeTensors::parse(inputs.bytes()).map_err(|e| fail(format!("{inputs_path}: {e}")))?;
    let c = *model.config();
    let cfg = c.attn_layers;
    let kind = match model {
        ContinuousModel::Decoder(_) => "a ContinuousTransformerWrapper(Decoder)",
        ContinuousModel::Encoder(_) => "a ContinuousTransformerWrapper(Encoder)",
    };
    let mut known = vec!["x", "mask"];
    if cfg.cross_attend {
        known.extend(["context", "context_mask"]);
    }
    check_names(&st, inputs_path, kind, &known, &["full", "stepwise"])?;
    let (wi, wo) = (c.input_width(), c.output_width());
    let t = st
        .tensor("x")
        .ok_or_else(|| fail(format!("{inputs_path}: {kind} needs `x` (b, n, {wi}) f32")))?;
    let s = t.shape();
    if t.dtype() != Dtype::F32 || s.len() != 3 || s[2] != wi || s[0] == 0 || s[1] == 0 {
        return Err(fail(format!(
            "`x` must be f32 of shape (b, n, {wi}) with b, n >= 1; it is {} {:?}",
            t.dtype().name(),
            s
        )));
    }
    let (b, n, x) = (s[0], s[1], t.as_f32()?);
    let context = read_context(&st, &cfg, b)?;
    let rows = context.as_ref().map_or(1, |c| c.0);
    let mask = read_mask(&st, "mask", b, n)?;
    let context_mask = match &context {
        Some((m, _)) => read_mask(&st, "context_mask", b, *m)?,
        None => None,
    };
    let pooled = model.is_encoder() && c.average_pool_embed;
    let per = if pooled { wo } else { n.saturating_mul(wo) };
    // A window runs in one chunk; a stream in chunks of CHUNK. The memory tokens take
    // positions too.
    let positions = c.cache_positions(n);
    let chunk = if model.is_encoder() { positions } else { CHUNK };
    let mut kv = filled(
        KvCache::<f32>::elements(&cfg, positions),
        0.0f32,
        "the KV cache",
    )?;
    let mut kc = filled(
        KvCache::<f32>::context_elements(&cfg, rows),
        0.0f32,
        "the context cache",
    )?;
    let mut sb = filled(Scratch::elements(&cfg, chunk), 0.0f32, "the scratch arena")?;
    let mut scratch = Scratch::new(&cfg, chunk, &mut sb)?;
    let mut full = filled(b.saturating_mul(per), 0.0f32, "the outputs")?;
    let mut stepwise = filled(
        if model.is_encoder() {
            0
        } else {
            b.saturating_mul(per)
        },
        0.0f32,
        "the outputs",
    )?;
    let w = rows * cfg.dim_context();
    for bi in 0..b {
        let xb = &x[bi * n * wi..(bi + 1) * n * wi];
        let ctx = context.as_ref().map(|(_, c)| &c[bi * w..(bi + 1) * w]);
        let mask = mask.as_ref().map(|m| &m[bi * n..(bi + 1) * n]);
        let context_mask = context_mask
            .as_ref()
            .map(|m| &m[bi * rows..(bi + 1) * rows]);
        let masks = |end: usize| Masks {
            mask: mask.map(|m| &m[..end]),
            context_mask,
        };
        let out = &mut full[bi * per..(bi + 1) * per];
        let mut cache = KvCache::with_context(&cfg, positions, &mut kv, rows, &mut kc)?;
        match model {
            ContinuousModel::Encoder(e) => {
                e.encode(&mut cache, &mut scratch, xb, ctx, masks(n), out)?;
            }
            ContinuousModel::Decoder(d) => {
                d.forward(&mut cache, &mut scratch, xb, ctx, masks(n), out)?;
                let mut cache = KvCache::with_context(&cfg, positions, &mut kv, rows, &mut kc)?;
                let out = &mut stepwise[bi * per..(bi + 1) * per];
                for i in 0..n {
                    d.forward(
                        &mut cache,
                        &mut scratch,
                        &xb[i * wi..(i + 1) * wi],
                        if i == 0 { ctx } else { None },
                        masks(i + 1),
                        &mut out[i * wo..(i + 1) * wo],
                    )?;
                }
            }
        }
    }
    let shape = if pooled { vec![b, wo] } else { vec![b, n, wo] };
    if model.is_encoder() {
        write_f32(out_path, &[("full", shape.clone(), &full)])?;
        outln!("wrote {out_path}: full {shape:?} of {kind}");
        return Ok(());
    }
    write_f32(
        out_path,
        &[
            ("full", shape.clone(), &full),
            ("stepwise", shape.clone(), &stepwise),
        ],
    )?;
    outln!(
        "wrote {out_path}: full and stepwise {shape:?} of {kind}; max |full - stepwise| = {:.2e}",
        max_diff(&full, &stepwise)
    );
    Ok(())
}

/// `picoformer run` on an `XTransformer`'s file: INPUTS `src` (b, n) int64, optional `src_mask`
/// (b, n), `tgt` (b, m) int64. The source is encoded once per row into `enc` (b, n, dim) =
/// `encoder(src, mask=src_mask, return_embeddings=True)`; OUT `enc`, `full` (b, m,
/// dec_num_tokens) = `decoder.net(tgt, context=enc, context_mask=src_mask)` and `stepwise` (the
/// first target token with the context, then one token per call over the cache).
fn run_xtransformer(xt: &XTransformer, inputs_path: &str, out_path: &str) -> Result<(), CliError> {
    let inputs = Aligned::read(inputs_path)?;
    let st = SafeTensors::parse(inputs.bytes()).map_err(|e| fail(format!("{inputs_path}: {e}")))?;
    let kind = "an XTransformer";
    let outputs = ["full", "stepwise", "enc"];
    check_names(
        &st,
        inputs_path,
        kind,
        &["src", "src_mask", "tgt"],
        &outputs,
    )?;
    let (ecfg, dcfg) = (
        *xt.encoder().decoder().config(),
        *xt.decoder().decoder().config(),
    );
    let v = xt.decoder().config().num_tokens;
    let (b, n, src) = read_tokens(
        &st,
        inputs_path,
        kind,
        "src",
        xt.encoder().config().num_tokens,
    )?;
    let (bt, m, tgt) = read_tokens(&st, inputs_path, kind, "tgt", v)?;
    if bt != b {
        return Err(fail(format!(
            "`tgt` has {bt} rows and `src` {b}: one target per source"
        )));
    }
    let src_mask = read_mask(&st, "src_mask", b, n)?;
    let dim = ecfg.dim;
    // The encoder's memory tokens take positions too.
    let positions = xt.encoder().config().cache_positions(n);
    let mut ekv = filled(
        KvCache::<f32>::elements(&ecfg, positions),
        0.0f32,
        "the encoder's KV cache",
    )?;
    let mut esb = filled(
        Scratch::elements(&ecfg, positions),
        0.0f32,
        "the encoder's scratch arena",
    )?;
    let mut escratch = Scratch::new(&ecfg, positions, &mut esb)?;
    let mut encoded = filled(
        b.saturating_mul(n).saturating_mul(dim),
        0.0f32,
        "the encoder's output",
    )?;
    let mut kv = filled(KvCache::<f32>::elements(&dcfg, m), 0.0f32, "the KV cache")?;
    let mut kc = filled(
        KvCache::<f32>::context_elements(&dcfg, n),
        0.0f32,
        "the context cache",
    )?;
    let mut sb = filled(Scratch::elements(&dcfg, CHUNK), 0.0f32, "the scratch arena")?;
    let mut scratch = Scratch::new(&dcfg, CHUNK, &mut sb)?;
    let per = m.saturating_mul(v);
    let mut full = filled(b.saturating_mul(per), 0.0f32, "the outputs")?;
    let mut stepwise = filled(b.saturating_mul(per), 0.0f32, "the outputs")?;
    for bi in 0..b {
        let smask = src_mask.as_ref().map(|s| &s[bi * n..(bi + 1) * n]);
        let mut ecache = KvCache::new(&ecfg, positions, &mut ekv)?;
        let memory = &mut encoded[bi * n * dim..(bi + 1) * n * dim];
        xt.encode(
            &mut ecache,
            &mut escratch,
            &src[bi * n..(bi + 1) * n],
            smask,
            memory,
        )?;
        let memory = &*memory;
        let t = &tgt[bi * m..(bi + 1) * m];
        let masks = Masks {
            mask: None,
            context_mask: smask,
        };
        let mut cache = KvCache::with_context(&dcfg, m, &mut kv, n, &mut kc)?;
        xt.decoder().forward_masked(
            &mut cache,
            &mut scratch,
            t,
            Some(memory),
            masks,
            &mut full[bi * per..(bi + 1) * per],
        )?;
        let mut cache = KvCache::with_context(&dcfg, m, &mut kv, n, &mut kc)?;
        let out = &mut stepwise[bi * per..(bi + 1) * per];
        for i in 0..m {
            xt.decoder().forward_masked(
                &mut cache,
                &mut scratch,
                &t[i..i + 1],
                if i == 0 { Some(memory) } else { None },
                masks,
                &mut out[i * v..(i + 1) * v],
            )?;
        }
    }
    let shape = vec![b, m, v];
    write_f32(
        out_path,
        &[
            ("enc", vec![b, n, dim], &encoded),
            ("full", shape.clone(), &full),
            ("stepwise", shape, &stepwise),
        ],
    )?;
    outln!(
        "wrote {out_path}: enc ({b}, {n}, {dim}), full and stepwise ({b}, {m}, {v}) of {kind}; max |full - stepwise| = {:.2e}",
        max_diff(&full, &stepwise)
    );
    Ok(())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}
