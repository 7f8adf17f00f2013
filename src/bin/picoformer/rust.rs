//! `picoformer inspect --rust`: a model file's configuration as Rust constants (the builder
//! expression `Model::from_safetensors` returns the equal of) and the `static` buffers a
//! firmware declares, each sized by picoformer's `const fn`s.
//!
//! The expression is rebuilt alongside its text, with the same builder calls, and compared with
//! the loaded configuration: an option this writer does not know fails the command, never
//! prints a wrong configuration.

use std::fmt::Write as _;

use picoformer::layers::Kind;
use picoformer::sampling::{Candidate, Sampler};
use picoformer::{
    DecoderConfig, ExecuteOrder, KvCache, LayerTypes, ModelConfig, Scratch, WrapperConfig,
};

use crate::args::CliError;
use crate::files::human;

/// A value as a Rust literal of its type.
trait Lit {
    fn lit(&self) -> String;
}

impl Lit for usize {
    fn lit(&self) -> String {
        self.to_string()
    }
}

impl Lit for u16 {
    fn lit(&self) -> String {
        self.to_string()
    }
}

impl Lit for bool {
    fn lit(&self) -> String {
        self.to_string()
    }
}

impl Lit for f64 {
    fn lit(&self) -> String {
        if self.is_nan() {
            "f64::NAN".into()
        } else if self.is_infinite() {
            if *self > 0.0 {
                "f64::INFINITY"
            } else {
                "f64::NEG_INFINITY"
            }
            .into()
        } else {
            // `Debug` keeps a `.0` on whole numbers and prints the shortest exact digits.
            format!("{self:?}")
        }
    }
}

impl Lit for LayerTypes {
    fn lit(&self) -> String {
        let letters: String = (0..self.len())
            .filter_map(|i| self.get(i))
            .map(|k| match k {
                Kind::Attention => 'a',
                Kind::Cross => 'c',
                Kind::FeedForward => 'f',
            })
            .collect();
        format!("picoformer::LayerTypes::parse({letters:?}).unwrap()")
    }
}

impl Lit for ExecuteOrder {
    fn lit(&self) -> String {
        let order: Vec<String> = (0..self.len())
            .filter_map(|i| self.get(i))
            .map(|i| i.to_string())
            .collect();
        format!(
            "picoformer::ExecuteOrder::new(&[{}]).unwrap()",
            order.join(", ")
        )
    }
}

impl<T: Lit> Lit for Option<T> {
    fn lit(&self) -> String {
        match self {
            Some(v) => format!("Some({})", v.lit()),
            None => "None".into(),
        }
    }
}

/// Every line after the first indented by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `base` with the fields `set` ("name: value") changed by struct update syntax (for the fields
/// no builder sets), or `base` itself.
fn with_fields(ty: &str, set: &[String], base: String) -> String {
    if set.is_empty() {
        return base;
    }
    let mut s = format!("{ty} {{\n");
    for f in set {
        writeln!(s, "    {f},").unwrap();
    }
    write!(s, "    ..{}\n}}", indent(&base, 4)).unwrap();
    s
}

/// The expression of a `DecoderConfig` (multi-line, continuation lines indented relative to the
/// first), and the value it builds.
fn decoder_expr(c: &DecoderConfig) -> (String, DecoderConfig) {
    let def = DecoderConfig::new(c.dim, c.depth);
    let mut d = def;
    let mut s = format!("DecoderConfig::new({}, {})", c.dim, c.depth);
    // One builder call: applied to the value and written to the text, from the same arguments.
    macro_rules! call {
        ($when:expr, $method:ident($($arg:expr),*)) => {
            if $when {
                d = d.$method($($arg),*);
                let args: Vec<String> = vec![$(Lit::lit(&$arg)),*];
                write!(s, "\n    .{}({})", stringify!($method), args.join(", ")).unwrap();
            }
        };
    }
    // A builder that takes the field's own value.
    macro_rules! field {
        ($($f:ident),*) => {
            $( call!(c.$f != def.$f, $f(c.$f)); )*
        };
    }
    // A builder that takes the value of an `Option` field that is `Some`.
    macro_rules! some {
        ($($f:ident),*) => {
            $( if let Some(v) = c.$f { call!(true, $f(v)); } )*
        };
    }
    field!(heads, attn_dim_head);
    some!(attn_kv_heads);
    field!(attn_one_kv_head, cross_attend);
    some!(cross_attn_dim_context);
    field!(rotary_pos_emb);
    some!(rotary_emb_dim);
    field!(
        rotary_base_rescale_factor,
        rotary_interpolation_factor,
        use_rmsnorm,
        use_simple_rmsnorm,
        ff_mult,
        ff_glu,
        ff_swish,
        ff_relu_squared,
        ff_no_bias,
        use_scalenorm,
        pre_norm,
        pre_norm_has_final_norm,
        sandwich_norm
    );
    call!(
        c.softclamp_output,
        softclamp_output(c.softclamp_output_value)
    );
    field!(
        scale_residual,
        scale_residual_constant,
        attn_head_scale,
        attn_gate_values
    );
    some!(ff_softclamp_value);
    call!(
        c.attn_qk_norm,
        attn_qk_norm(c.attn_qk_norm_groups, c.attn_qk_norm_scale)
    );
    field!(
        attn_qk_norm_dim_scale,
        ff_glu_mult_bias,
        ff_post_act_ln,
        use_layerscale,
        gate_residual,
        macaron,
        attn_value_rmsnorm,
        norm_add_unit_offset
    );
    some!(disable_abs_pos_emb);
    call!(c.alibi_pos_bias, alibi_pos_bias(c.alibi_num_heads));
    some!(attn_max_attend_past);
    field!(attn_num_mem_kv, attn_add_zero_kv);
    call!(
        c.attn_softclamp_logits,
        attn_softclamp_logits(c.attn_logit_softclamp_value)
    );
    call!(c.rotary_xpos, rotary_xpos(c.rotary_xpos_scale_base));
    field!(weight_tie_layers);
    call!(
        c.add_value_residual,
        add_value_residual(c.learned_value_residual_mix)
    );
    some!(custom_layers, layers_execute_order);
    if let Some(r) = c.par_ratio {
        call!(true, par_ratio(usize::from(r)));
    }
    if let Some(s) = c.sandwich_coef {
        call!(true, sandwich_coef(usize::from(s)));
    }
    field!(residual_attn, cross_residual_attn);

    // Whatever the builders leave different (a value no builder sets alone), by field.
    let mut set = Vec::new();
    macro_rules! rest {
        ($($f:ident),*) => {
            $( if d.$f != c.$f {
                d.$f = c.$f;
                set.push(format!("{}: {}", stringify!($f), Lit::lit(&c.$f)));
            } )*
        };
    }
    rest!(
        heads,
        attn_dim_head,
        attn_kv_heads,
        attn_one_kv_head,
        cross_attend,
        cross_attn_dim_context,
        rotary_pos_emb,
        rotary_emb_dim,
        rotary_base_rescale_factor,
        rotary_interpolation_factor,
        use_rmsnorm,
        use_simple_rmsnorm,
        ff_mult,
        ff_glu,
        ff_swish,
        ff_relu_squared,
        ff_no_bias,
        use_scalenorm,
        pre_norm,
        pre_norm_has_final_norm,
        sandwich_norm,
        softclamp_output,
        softclamp_output_value,
        scale_residual,
        scale_residual_constant,
        attn_head_scale,
        attn_gate_values,
        ff_softclamp_value,
        attn_qk_norm,
        attn_qk_norm_groups,
        attn_qk_norm_scale,
        attn_qk_norm_dim_scale,
        ff_glu_mult_bias,
        ff_post_act_ln,
        use_layerscale,
        gate_residual,
        macaron,
        attn_value_rmsnorm,
        norm_add_unit_offset,
        disable_abs_pos_emb,
        alibi_pos_bias,
        alibi_num_heads,
        attn_max_attend_past,
        attn_num_mem_kv,
        attn_add_zero_kv,
        attn_softclamp_logits,
        attn_logit_softclamp_value,
        rotary_xpos,
        rotary_xpos_scale_base,
        weight_tie_layers,
        add_value_residual,
        learned_value_residual_mix,
        custom_layers,
        par_ratio,
        sandwich_coef,
        layers_execute_order,
        residual_attn,
        cross_residual_attn
    );
    (with_fields("DecoderConfig", &set, s), d)
}

/// The expression of a `WrapperConfig` and the value it builds.
fn wrapper_expr(c: &WrapperConfig) -> (String, WrapperConfig) {
    let (layers, d) = decoder_expr(&c.attn_layers);
    let def = WrapperConfig::new(c.num_tokens, c.max_seq_len, d);
    let mut w = def;
    let mut s = format!(
        "WrapperConfig::new(\n    {},\n    {},\n    {},\n)",
        c.num_tokens,
        c.max_seq_len,
        indent(&layers, 4)
    );
    macro_rules! call {
        ($when:expr, $method:ident($arg:expr)) => {
            if $when {
                w = w.$method($arg);
                write!(s, "\n.{}({})", stringify!($method), Lit::lit(&$arg)).unwrap();
            }
        };
    }
    call!(
        c.use_abs_pos_emb != def.use_abs_pos_emb,
        use_abs_pos_emb(c.use_abs_pos_emb)
    );
    call!(
        c.tie_embedding != def.tie_embedding,
        tie_embedding(c.tie_embedding)
    );
    if let Some(v) = c.tie_embedding_scale {
        call!(true, tie_embedding_scale(v));
    }
    call!(
        c.post_emb_norm != def.post_emb_norm,
        post_emb_norm(c.post_emb_norm)
    );
    if let Some(v) = c.emb_dim {
        call!(true, emb_dim(v));
    }
    if let Some(v) = c.logits_dim {
        call!(true, logits_dim(v));
    }
    call!(
        c.scaled_sinu_pos_emb != def.scaled_sinu_pos_emb,
        scaled_sinu_pos_emb(c.scaled_sinu_pos_emb)
    );
    call!(
        c.num_memory_tokens != def.num_memory_tokens,
        num_memory_tokens(c.num_memory_tokens)
    );
    let mut set = Vec::new();
    macro_rules! rest {
        ($($f:ident),*) => {
            $( if w.$f != c.$f {
                w.$f = c.$f;
                set.push(format!("{}: {}", stringify!($f), Lit::lit(&c.$f)));
            } )*
        };
    }
    rest!(
        use_abs_pos_emb,
        tie_embedding,
        tie_embedding_scale,
        post_emb_norm,
        l2norm_embed,
        emb_dim,
        logits_dim,
        scaled_sinu_pos_emb,
        num_memory_tokens
    );
    (with_fields("WrapperConfig", &set, s), w)
}

/// `f32` elements in bytes, for the comments.
fn f32_bytes(n: usize) -> String {
    human((n as u64).saturating_mul(4))
}

/// Prints the constants and statics of `cfg` (read from `path`) for `capacity` cached positions,
/// `context` context rows and chunks of `chunk` positions.
pub fn print(
    path: &str,
    cfg: &ModelConfig,
    capacity: usize,
    context: usize,
    chunk: usize,
) -> Result<(), CliError> {
    let d = cfg.decoder;
    let (expr, ty, rebuilt) = match cfg.wrapper {
        Some(w) => {
            let (e, v) = wrapper_expr(&w);
            (e, "WrapperConfig", v == w)
        }
        None => {
            let (e, v) = decoder_expr(&d);
            (e, "DecoderConfig", v == d)
        }
    };
    if !rebuilt {
        return Err(CliError::Failed(format!(
            "{path}: `inspect --rust` cannot write this configuration as Rust (an option it does \
             not know): {cfg:?}"
        )));
    }
    // Sizes as the library computes them; `usize::MAX` is its "too large".
    let kv = KvCache::<f32>::elements(&d, capacity);
    let ctx = KvCache::<f32>::context_elements(&d, context);
    let scratch = Scratch::elements(&d, chunk);
    let logits = cfg.wrapper.map(|w| w.logits_width());
    let output = d.dim.checked_mul(chunk);
    if [kv, ctx, scratch].contains(&usize::MAX) || (logits.is_none() && output.is_none()) {
        return Err(CliError::Failed(format!(
            "{path}: buffers for {capacity} positions, {context} context rows and chunks of \
             {chunk} are too large to declare"
        )));
    }
    if d.cross_attend && context == 0 {
        return Err(CliError::Usage(
            "--context: this model cross-attends: give at least 1 context row".into(),
        ));
    }
    let name = std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    let mut s = String::new();
    let w = &mut s;
    writeln!(
        w,
        "// Written by `picoformer inspect --rust` from {name} ({capacity} positions{}, chunks of {chunk}).",
        if d.cross_attend { format!(", {context} context rows") } else { String::new() }
    )
    .unwrap();
    writeln!(
        w,
        "// The model's configuration and the static buffers it runs in, each sized by picoformer's\n\
         // const fns: paste into the firmware (see firmware/template). The statics are `static mut`:\n\
         // take each one once, e.g. `unsafe {{ &mut *core::ptr::addr_of_mut!(KV_CACHE) }}`."
    )
    .unwrap();
    match cfg.wrapper {
        Some(_) => {
            writeln!(w, "use picoformer::sampling::{{Candidate, Sampler}};").unwrap();
            writeln!(
                w,
                "use picoformer::{{DecoderConfig, KvCache, Scratch, WrapperConfig}};"
            )
            .unwrap();
        }
        None => writeln!(w, "use picoformer::{{DecoderConfig, KvCache, Scratch}};").unwrap(),
    }
    writeln!(w).unwrap();
    writeln!(
        w,
        "/// The configuration in the file's metadata: the model loaded from it has this one\n\
         /// (`*model.config() == CONFIG`)."
    )
    .unwrap();
    writeln!(w, "const CONFIG: {ty} = {expr};").unwrap();
    if cfg.wrapper.is_some() {
        writeln!(w, "/// Its layers.").unwrap();
        writeln!(w, "const DECODER: DecoderConfig = CONFIG.attn_layers;").unwrap();
    } else {
        writeln!(
            w,
            "/// The layers (a raw `Decoder`: embeddings in, hidden states out)."
        )
        .unwrap();
        writeln!(w, "const DECODER: DecoderConfig = CONFIG;").unwrap();
    }
    writeln!(
        w,
        "/// Blocks the model's weight table has room for (`depth`, or as `custom_layers` and\n/// `layers_execute_order` cut them): load with `Model::<MAX_DEPTH>`."
    )
    .unwrap();
    writeln!(w, "const MAX_DEPTH: usize = DECODER.blocks();").unwrap();
    writeln!(w, "/// Positions the KV cache holds.").unwrap();
    writeln!(w, "const CAPACITY: usize = {capacity};").unwrap();
    if d.cross_attend {
        writeln!(
            w,
            "/// Rows of cross-attention context the context cache holds."
        )
        .unwrap();
        writeln!(w, "const CONTEXT: usize = {context};").unwrap();
    }
    writeln!(
        w,
        "/// Positions per forward call: the prompt (and a re-encode) runs in chunks of this many."
    )
    .unwrap();
    writeln!(w, "const CHUNK: usize = {chunk};").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/// f32 elements of the KV cache ({}; a `KvCache::<f16>` of `f16::ZERO`s takes half).",
        f32_bytes(kv)
    )
    .unwrap();
    writeln!(
        w,
        "const KV_LEN: usize = KvCache::<f32>::elements(&DECODER, CAPACITY);"
    )
    .unwrap();
    if d.cross_attend {
        writeln!(
            w,
            "/// f32 elements of the context cache ({}), for `KvCache::with_context`.",
            f32_bytes(ctx)
        )
        .unwrap();
        writeln!(
            w,
            "const CONTEXT_LEN: usize = KvCache::<f32>::context_elements(&DECODER, CONTEXT);"
        )
        .unwrap();
    }
    writeln!(
        w,
        "/// f32 elements of the scratch arena ({}).",
        f32_bytes(scratch)
    )
    .unwrap();
    writeln!(
        w,
        "const SCRATCH_LEN: usize = Scratch::elements(&DECODER, CHUNK);"
    )
    .unwrap();
    match logits {
        Some(n) => {
            writeln!(w, "/// One logit per token ({}).", f32_bytes(n)).unwrap();
            writeln!(w, "const LOGITS_LEN: usize = CONFIG.logits_width();").unwrap();
            writeln!(
                w,
                "/// The sampler's work buffer (`Sampler::new`, `Generator::new`): {} candidates.",
                Sampler::work_len(n)
            )
            .unwrap();
            writeln!(w, "const WORK_LEN: usize = Sampler::work_len(LOGITS_LEN);").unwrap();
        }
        None => {
            writeln!(
                w,
                "/// The hidden states of one chunk ({}).",
                f32_bytes(output.unwrap_or(0))
            )
            .unwrap();
            writeln!(w, "const OUTPUT_LEN: usize = DECODER.dim * CHUNK;").unwrap();
        }
    }
    writeln!(w).unwrap();
    writeln!(w, "static mut KV_CACHE: [f32; KV_LEN] = [0.0; KV_LEN];").unwrap();
    if d.cross_attend {
        writeln!(
            w,
            "static mut CONTEXT_CACHE: [f32; CONTEXT_LEN] = [0.0; CONTEXT_LEN];"
        )
        .unwrap();
    }
    writeln!(
        w,
        "static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];"
    )
    .unwrap();
    if logits.is_some() {
        writeln!(
            w,
            "static mut LOGITS: [f32; LOGITS_LEN] = [0.0; LOGITS_LEN];"
        )
        .unwrap();
        writeln!(
            w,
            "static mut WORK: [Candidate; WORK_LEN] = [Candidate::EMPTY; WORK_LEN];"
        )
        .unwrap();
    } else {
        writeln!(
            w,
            "static mut OUTPUT: [f32; OUTPUT_LEN] = [0.0; OUTPUT_LEN];"
        )
        .unwrap();
    }
    let work = logits.map_or(0, |n| {
        Sampler::work_len(n).saturating_mul(std::mem::size_of::<Candidate>())
    });
    let total = [kv, ctx, scratch, logits.or(output).unwrap_or(0)]
        .iter()
        .try_fold(0usize, |a, &b| a.checked_add(b))
        .and_then(|n| n.checked_mul(4))
        .and_then(|n| n.checked_add(work));
    if let Some(total) = total {
        writeln!(
            w,
            "// {} of statics in all, besides the model file (in flash) and the stack.",
            human(total as u64)
        )
        .unwrap();
    }
    outln!("{}", s.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every builder and every field the writer knows comes back equal, one at a time.
    #[test]
    fn every_option_round_trips() {
        let base = DecoderConfig::new(64, 2);
        let variants = [
            base.heads(2).attn_dim_head(32).attn_kv_heads(1),
            base.attn_one_kv_head(true)
                .cross_attend(true)
                .cross_attn_dim_context(24),
            base.rotary_pos_emb(true)
                .rotary_emb_dim(16)
                .rotary_base_rescale_factor(2.0),
            base.rotary_interpolation_factor(1.5)
                .use_rmsnorm(true)
                .use_simple_rmsnorm(true),
            base.ff_mult(2.5)
                .ff_glu(true)
                .ff_swish(true)
                .ff_relu_squared(true)
                .ff_no_bias(true),
            base.use_scalenorm(true)
                .pre_norm(false)
                .pre_norm_has_final_norm(false),
            base.sandwich_norm(true)
                .softclamp_output(25.0)
                .scale_residual(true),
            base.scale_residual_constant(0.5)
                .attn_head_scale(true)
                .attn_gate_values(true),
            base.ff_softclamp_value(7.5)
                .attn_qk_norm(2, 8.0)
                .attn_qk_norm_dim_scale(true),
            base.ff_glu_mult_bias(true)
                .ff_post_act_ln(true)
                .use_layerscale(true),
            base.gate_residual(true)
                .macaron(true)
                .attn_value_rmsnorm(true),
            base.norm_add_unit_offset(false).disable_abs_pos_emb(false),
            base.alibi_pos_bias(Some(4))
                .attn_max_attend_past(32)
                .attn_num_mem_kv(2),
            base.alibi_pos_bias(None)
                .attn_add_zero_kv(true)
                .attn_softclamp_logits(40.0),
            base.rotary_xpos(256)
                .weight_tie_layers(true)
                .add_value_residual(false),
            base.custom_layers(LayerTypes::parse("faaf").unwrap())
                .residual_attn(true)
                .cross_residual_attn(true),
            base.par_ratio(2).sandwich_coef(1),
            base.layers_execute_order(ExecuteOrder::new(&[1, 0, 1]).unwrap()),
            // Values no builder sets on their own: written by field.
            DecoderConfig {
                softclamp_output_value: 12.0,
                attn_qk_norm_scale: 1e-3,
                ..base
            },
        ];
        for c in variants {
            let (text, d) = decoder_expr(&c);
            assert_eq!(d, c, "{text}");
            let w = WrapperConfig {
                l2norm_embed: true,
                ..WrapperConfig::new(300, 128, c)
                    .use_abs_pos_emb(false)
                    .tie_embedding(true)
                    .tie_embedding_scale(0.5)
                    .post_emb_norm(true)
                    .emb_dim(32)
                    .logits_dim(10)
                    .scaled_sinu_pos_emb(true)
                    .num_memory_tokens(3)
            };
            let (text, v) = wrapper_expr(&w);
            assert_eq!(v, w, "{text}");
            assert!(
                text.starts_with("WrapperConfig {\n    l2norm_embed: true,\n"),
                "{text}"
            );
        }
    }

    #[test]
    fn literals() {
        assert_eq!(4.0f64.lit(), "4.0");
        assert_eq!(1e-5f64.lit(), "1e-5");
        assert_eq!(f64::INFINITY.lit(), "f64::INFINITY");
        assert_eq!(Some(3usize).lit(), "Some(3)");
        assert_eq!(None::<usize>.lit(), "None");
    }
}
