//! Reading a model file's `x_transformers` metadata into a [`ModelConfig`], by the rule of
//! [`super`]: every argument is looked up in [`ARGS`] and decided by its [`Class`].

use crate::config::{DecoderConfig, WrapperConfig};
use crate::error::Error;
use crate::json::{JsonError, JsonErrorKind, JsonStr, Parser, ValueKind};
use crate::model::{LoadError, ModelConfig};
use crate::safetensors::SafeTensors;

use super::{find, Class, Group, PyDefault, ARGS, NOT_IMPLEMENTED};

/// The metadata key that holds the constructor arguments.
pub const METADATA_KEY: &str = "x_transformers";

/// Reads and validates the configuration in a model file's metadata.
///
/// # Errors
/// [`LoadError::MissingMetadata`], [`LoadError::Metadata`], [`LoadError::UnsupportedOption`],
/// [`LoadError::InvalidOption`], or [`LoadError::Model`] with the [`crate::ConfigError`].
pub fn read_config<'a>(file: &SafeTensors<'a>) -> Result<ModelConfig, LoadError<'a>> {
    match read_config_class(file)? {
        (cfg, false) => Ok(cfg),
        (_, true) => Err(LoadError::UnsupportedOption {
            option: "encoder",
            value: "{...}",
            reason: "an Encoder model: load it with picoformer::EncoderModel::from_safetensors",
        }),
    }
}

/// [`read_config`] for a file holding a `Decoder` (`"decoder"`, returns false) or an `Encoder`
/// (`"encoder"`: the same arguments, `causal` false; returns true), each bare or in a
/// `TransformerWrapper`.
///
/// # Errors
/// As [`read_config`].
pub fn read_config_class<'a>(file: &SafeTensors<'a>) -> Result<(ModelConfig, bool), LoadError<'a>> {
    let mut encoder = false;
    let meta = file
        .metadata(METADATA_KEY)
        .ok_or(LoadError::MissingMetadata(METADATA_KEY))?;
    let src = meta.raw();
    let mut p = meta.parser();
    p.begin_object()?;
    let mut decoder = None;
    let mut wrapper = None;
    while let Some(key) = p.next_member()? {
        if key.eq_str("decoder") || key.eq_str("encoder") {
            if decoder.is_some() {
                return Err(LoadError::UnsupportedOption {
                    option: key.raw(),
                    value: "{...}",
                    reason: "one of `decoder` and `encoder`, once",
                });
            }
            encoder = key.eq_str("encoder");
            decoder = Some(read_decoder(&mut p, src)?);
        } else if key.eq_str("wrapper") {
            if p.kind()? == ValueKind::Null {
                p.null()?;
            } else {
                wrapper = Some(read_wrapper(&mut p, src)?);
            }
        } else {
            let (_, value) = read_value(&mut p, src)?;
            return Err(LoadError::UnsupportedOption {
                option: key.raw(),
                value,
                reason: "not an entry of picoformer's metadata (`decoder` or `encoder`, `wrapper`)",
            });
        }
    }
    p.finish()?;
    let decoder = decoder.ok_or(LoadError::MissingMetadata("decoder"))?;
    decoder.validate().map_err(Error::from)?;
    let wrapper = match wrapper {
        Some(w) => {
            let w = w.finish(decoder)?;
            w.validate().map_err(Error::from)?;
            Some(w)
        }
        None => None,
    };
    Ok((ModelConfig { decoder, wrapper }, encoder))
}

/// A JSON value as far as Python's `==` with a default needs it.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    Null,
    Bool(bool),
    /// A number: its nearest f64 (`None` if it overflows; Python's `inf` equals no default).
    Num(Option<f64>),
    Str(JsonStr<'a>),
    /// `{}`.
    EmptyObject,
    /// A non-empty object or any array (a Python list never equals a tuple or a dict default).
    Other,
}

impl Value<'_> {
    /// The number Python compares with (`True == 1`, `False == 0.0`).
    fn number(&self) -> Option<f64> {
        match *self {
            Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            Value::Num(x) => x,
            _ => None,
        }
    }

    /// Python's `value == default`.
    fn eq_default(&self, d: &PyDefault) -> bool {
        match *d {
            PyDefault::Required | PyDefault::Other(_) => false,
            PyDefault::None => matches!(self, Value::Null),
            PyDefault::Bool(b) => self.number() == Some(if b { 1.0 } else { 0.0 }),
            PyDefault::Int(i) => self.number() == Some(i as f64),
            PyDefault::Float(x) => self.number() == Some(x),
            PyDefault::Str(s) => matches!(self, Value::Str(v) if v.eq_str(s)),
            PyDefault::EmptyDict => matches!(self, Value::EmptyObject),
        }
    }

    /// Python's `a == b` for two values read from the file (non-empty containers: never).
    fn eq_value(&self, other: &Value<'_>) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) | (Value::EmptyObject, Value::EmptyObject) => true,
            (Value::Str(a), Value::Str(b)) => a == b,
            _ => match (self.number(), other.number()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }
}

/// Reads the next value; returns it with its text as written in the metadata.
fn read_value<'a>(p: &mut Parser<'a>, src: &'a str) -> Result<(Value<'a>, &'a str), JsonError> {
    let kind = p.kind()?; // also skips the whitespace before the value
    let start = p.offset();
    let value = match kind {
        ValueKind::Null => {
            p.null()?;
            Value::Null
        }
        ValueKind::Bool => Value::Bool(p.bool()?),
        ValueKind::Number => {
            let x = p.clone().f64().ok();
            p.skip()?;
            Value::Num(x)
        }
        ValueKind::String => Value::Str(p.string()?),
        ValueKind::Object => {
            let mut q = p.clone();
            q.begin_object()?;
            let empty = q.next_member()?.is_none();
            p.skip()?;
            if empty {
                Value::EmptyObject
            } else {
                Value::Other
            }
        }
        ValueKind::Array => {
            p.skip()?;
            Value::Other
        }
    };
    Ok((value, src.get(start..p.offset()).unwrap_or("?")))
}

/// Reads one argument's value with a typed reader, naming the argument on error.
fn typed<'a, T>(
    p: &mut Parser<'a>,
    option: &'a str,
    value: &'a str,
    read: impl FnOnce(&mut Parser<'a>) -> Result<T, JsonError>,
) -> Result<T, LoadError<'a>> {
    read(p).map_err(|e| match e.kind {
        JsonErrorKind::WrongType { .. }
        | JsonErrorKind::NumberOutOfRange
        | JsonErrorKind::NotAnInteger => LoadError::InvalidOption {
            option,
            value,
            error: e.kind,
        },
        _ => LoadError::Metadata(e),
    })
}

/// `null` or a non-negative integer.
fn optional_usize(p: &mut Parser<'_>) -> Result<Option<usize>, JsonError> {
    if p.kind()? == ValueKind::Null {
        p.null()?;
        Ok(None)
    } else {
        p.usize().map(Some)
    }
}

/// A number, or a bool as Python's arithmetic reads it (`False` is 0, `True` is 1).
fn number_or_bool(p: &mut Parser<'_>) -> Result<f64, JsonError> {
    if p.kind()? == ValueKind::Bool {
        p.bool().map(|b| if b { 1.0 } else { 0.0 })
    } else {
        p.f64()
    }
}

/// `null` or a bool.
fn optional_bool(p: &mut Parser<'_>) -> Result<Option<bool>, JsonError> {
    if p.kind()? == ValueKind::Null {
        p.null()?;
        Ok(None)
    } else {
        p.bool().map(Some)
    }
}

/// Longest argument name the loader decodes; longer keys are no argument.
const KEY_BUF: usize = 64;

/// Arguments seen so far in one object (a key given twice is refused: Python's `json` would
/// keep the last one silently).
struct Seen([u64; ARGS.len().div_ceil(64)]);

impl Seen {
    fn insert(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        match self.0.get_mut(w) {
            Some(word) if *word & b == 0 => {
                *word |= b;
                true
            }
            _ => false,
        }
    }
}

/// One argument of an object, decided by the rule of [`super`]. Returns the row when the value
/// is to be computed (a supported argument away from its default); the parser is then before
/// the value, so the caller reads it with its typed reader.
enum Decision<'a> {
    /// Accepted; nothing to compute (the value was consumed).
    Keep,
    /// A supported argument with a non-default value (not consumed yet).
    Compute(&'static str, &'a str),
    /// A refused `cross_attn_<x>`: accepted only if it equals what cross-attention gets without
    /// it, `attn_<x>` of the same object or else the default; checked once the object is read.
    CrossCheck,
}

fn decide<'a>(
    p: &mut Parser<'a>,
    src: &'a str,
    raw: &'a str,
    name: &str,
    wrapper: bool,
    seen: &mut Seen,
) -> Result<Decision<'a>, LoadError<'a>> {
    let at = p.clone();
    let (value, text) = read_value(p, src)?;
    let unsupported = |reason| LoadError::UnsupportedOption {
        option: raw,
        value: text,
        reason,
    };
    let Some((i, arg)) = find(name, wrapper) else {
        return Err(unsupported(if wrapper {
            "not an argument of x-transformers' TransformerWrapper"
        } else {
            "not an argument of x-transformers' Decoder"
        }));
    };
    if !seen.insert(i) {
        return Err(unsupported("given twice"));
    }
    let class = arg.class();
    if arg.group == Group::CrossAttn && matches!(class, Class::Refused(_)) {
        // Even its own default is a change when `attn_<x>` differs from it.
        return Ok(Decision::CrossCheck);
    }
    if value.eq_default(&arg.default) {
        // Every supported field starts at x-transformers' default.
        return Ok(Decision::Keep);
    }
    match class {
        Class::NoEffect(_) => Ok(Decision::Keep),
        Class::Supported => {
            *p = at;
            Ok(Decision::Compute(arg.name, text))
        }
        Class::Refused(reason) => Err(unsupported(reason)),
    }
}

fn read_decoder<'a>(p: &mut Parser<'a>, src: &'a str) -> Result<DecoderConfig, LoadError<'a>> {
    let object = p.clone();
    p.begin_object()?;
    let mut c = DecoderConfig::new(0, 0);
    let (mut have_dim, mut have_depth, mut cross_check) = (false, false, false);
    let mut seen = Seen([0; ARGS.len().div_ceil(64)]);
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        let name = key.decode_into(&mut buf).unwrap_or(raw);
        let (name, text) = match decide(p, src, raw, name, false, &mut seen)? {
            Decision::Keep => continue,
            Decision::CrossCheck => {
                cross_check = true;
                continue;
            }
            Decision::Compute(name, text) => (name, text),
        };
        match name {
            "dim" => {
                c.dim = typed(p, raw, text, Parser::usize)?;
                have_dim = true;
            }
            "depth" => {
                c.depth = typed(p, raw, text, Parser::usize)?;
                have_depth = true;
            }
            "heads" => c.heads = typed(p, raw, text, Parser::usize)?,
            "attn_dim_head" => c.attn_dim_head = typed(p, raw, text, Parser::usize)?,
            "attn_kv_heads" => c.attn_kv_heads = typed(p, raw, text, optional_usize)?,
            "attn_one_kv_head" => c.attn_one_kv_head = typed(p, raw, text, Parser::bool)?,
            "cross_attend" => c.cross_attend = typed(p, raw, text, Parser::bool)?,
            "cross_attn_dim_context" => {
                c.cross_attn_dim_context = typed(p, raw, text, optional_usize)?
            }
            "rotary_pos_emb" => c.rotary_pos_emb = typed(p, raw, text, Parser::bool)?,
            "rotary_emb_dim" => c.rotary_emb_dim = typed(p, raw, text, optional_usize)?,
            "rotary_base_rescale_factor" => {
                c.rotary_base_rescale_factor = typed(p, raw, text, Parser::f64)?
            }
            "rotary_interpolation_factor" => {
                c.rotary_interpolation_factor = typed(p, raw, text, Parser::f64)?
            }
            "use_rmsnorm" => c.use_rmsnorm = typed(p, raw, text, Parser::bool)?,
            "use_simple_rmsnorm" => c.use_simple_rmsnorm = typed(p, raw, text, Parser::bool)?,
            "use_scalenorm" => c.use_scalenorm = typed(p, raw, text, Parser::bool)?,
            "pre_norm" => c.pre_norm = typed(p, raw, text, Parser::bool)?,
            "pre_norm_has_final_norm" => {
                c.pre_norm_has_final_norm = typed(p, raw, text, Parser::bool)?
            }
            "sandwich_norm" => c.sandwich_norm = typed(p, raw, text, Parser::bool)?,
            "softclamp_output" => c.softclamp_output = typed(p, raw, text, Parser::bool)?,
            "softclamp_output_value" => {
                c.softclamp_output_value = typed(p, raw, text, Parser::f64)?
            }
            "scale_residual" => c.scale_residual = typed(p, raw, text, Parser::bool)?,
            "scale_residual_constant" => {
                c.scale_residual_constant = typed(p, raw, text, number_or_bool)?
            }
            "attn_head_scale" => c.attn_head_scale = typed(p, raw, text, Parser::bool)?,
            "attn_gate_values" => c.attn_gate_values = typed(p, raw, text, Parser::bool)?,
            "ff_softclamp_value" => c.ff_softclamp_value = Some(typed(p, raw, text, Parser::f64)?),
            "attn_qk_norm" => c.attn_qk_norm = typed(p, raw, text, Parser::bool)?,
            "attn_qk_norm_groups" => c.attn_qk_norm_groups = typed(p, raw, text, Parser::usize)?,
            "attn_qk_norm_scale" => c.attn_qk_norm_scale = typed(p, raw, text, Parser::f64)?,
            "attn_qk_norm_dim_scale" => {
                c.attn_qk_norm_dim_scale = typed(p, raw, text, Parser::bool)?
            }
            "norm_add_unit_offset" => c.norm_add_unit_offset = typed(p, raw, text, Parser::bool)?,
            "ff_glu_mult_bias" => c.ff_glu_mult_bias = typed(p, raw, text, Parser::bool)?,
            "ff_post_act_ln" => c.ff_post_act_ln = typed(p, raw, text, Parser::bool)?,
            "use_layerscale" => c.use_layerscale = typed(p, raw, text, Parser::bool)?,
            "gate_residual" => c.gate_residual = typed(p, raw, text, Parser::bool)?,
            "macaron" => c.macaron = typed(p, raw, text, Parser::bool)?,
            "attn_value_rmsnorm" => c.attn_value_rmsnorm = typed(p, raw, text, Parser::bool)?,
            "disable_abs_pos_emb" => c.disable_abs_pos_emb = typed(p, raw, text, optional_bool)?,
            "alibi_pos_bias" => c.alibi_pos_bias = typed(p, raw, text, Parser::bool)?,
            "alibi_num_heads" => c.alibi_num_heads = typed(p, raw, text, optional_usize)?,
            "attn_max_attend_past" => c.attn_max_attend_past = typed(p, raw, text, optional_usize)?,
            "attn_num_mem_kv" => c.attn_num_mem_kv = typed(p, raw, text, Parser::usize)?,
            "attn_add_zero_kv" => c.attn_add_zero_kv = typed(p, raw, text, Parser::bool)?,
            "attn_softclamp_logits" => c.attn_softclamp_logits = typed(p, raw, text, Parser::bool)?,
            "rotary_xpos" => c.rotary_xpos = typed(p, raw, text, Parser::bool)?,
            "weight_tie_layers" => c.weight_tie_layers = typed(p, raw, text, Parser::bool)?,
            "add_value_residual" => c.add_value_residual = typed(p, raw, text, Parser::bool)?,
            "learned_value_residual_mix" => {
                c.learned_value_residual_mix = typed(p, raw, text, Parser::bool)?
            }
            "rotary_xpos_scale_base" => {
                c.rotary_xpos_scale_base = typed(p, raw, text, Parser::usize)?
            }
            "attn_logit_softclamp_value" => {
                c.attn_logit_softclamp_value = typed(p, raw, text, Parser::f64)?
            }
            "ff_mult" => c.ff_mult = typed(p, raw, text, Parser::f64)?,
            "ff_glu" => c.ff_glu = typed(p, raw, text, Parser::bool)?,
            "ff_swish" => c.ff_swish = typed(p, raw, text, Parser::bool)?,
            "ff_relu_squared" => c.ff_relu_squared = typed(p, raw, text, Parser::bool)?,
            "ff_no_bias" => c.ff_no_bias = typed(p, raw, text, Parser::bool)?,
            // `Decoder` forces `causal = True`; its only other value is an `Encoder`.
            "causal" => {
                return Err(LoadError::UnsupportedOption {
                    option: raw,
                    value: text,
                    reason: "a Decoder is causal; an Encoder is stored under `encoder`",
                })
            }
            // A supported argument without a field here would be a bug: refuse, never ignore.
            _ => {
                return Err(LoadError::UnsupportedOption {
                    option: raw,
                    value: text,
                    reason: NOT_IMPLEMENTED,
                })
            }
        }
    }
    if !have_dim {
        return Err(LoadError::MissingMetadata("dim"));
    }
    if !have_depth {
        return Err(LoadError::MissingMetadata("depth"));
    }
    if cross_check {
        check_cross(object, src)?;
    }
    Ok(c)
}

/// Second pass over a decoder's object (`object` is positioned before it): every refused
/// `cross_attn_<x>` must equal the value cross-attention gets without it, `attn_<x>` of the same
/// object or else the default (x-transformers merges the groups, `cross_attn_` winning);
/// otherwise it is refused.
fn check_cross<'a>(object: Parser<'a>, src: &'a str) -> Result<(), LoadError<'a>> {
    let mut p = object.clone();
    p.begin_object()?;
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        let name = key.decode_into(&mut buf).unwrap_or(raw);
        let (value, text) = read_value(&mut p, src)?;
        let Some((_, arg)) = find(name, false) else {
            continue;
        };
        let Class::Refused(reason) = arg.class() else {
            continue;
        };
        if arg.group != Group::CrossAttn {
            continue;
        }
        let suffix = name.get("cross_attn_".len()..).unwrap_or("");
        let same = match attn_value(object.clone(), src, suffix)? {
            Some(attn) => value.eq_value(&attn),
            None => value.eq_default(&arg.default),
        };
        if !same {
            return Err(LoadError::UnsupportedOption {
                option: raw,
                value: text,
                reason,
            });
        }
    }
    Ok(())
}

/// The value of `attn_<suffix>` in the object `q` is positioned before, if given.
fn attn_value<'a>(
    mut q: Parser<'a>,
    src: &'a str,
    suffix: &str,
) -> Result<Option<Value<'a>>, LoadError<'a>> {
    q.begin_object()?;
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = q.next_member()? {
        let name = key.decode_into(&mut buf).unwrap_or(key.raw());
        if name.strip_prefix("attn_") == Some(suffix) {
            return Ok(Some(read_value(&mut q, src)?.0));
        }
    }
    Ok(None)
}

/// Wrapper arguments as read, checked against the decoder once both are known.
struct WrapperArgs {
    num_tokens: Option<usize>,
    max_seq_len: Option<usize>,
    use_abs_pos_emb: bool,
    tie_embedding: bool,
    tie_embedding_scale: Option<f64>,
    post_emb_norm: bool,
    l2norm_embed: bool,
    emb_dim: Option<usize>,
    logits_dim: Option<usize>,
    scaled_sinu_pos_emb: bool,
    num_memory_tokens: usize,
}

impl WrapperArgs {
    fn finish<'a>(self, decoder: DecoderConfig) -> Result<WrapperConfig, LoadError<'a>> {
        let num_tokens = self
            .num_tokens
            .ok_or(LoadError::MissingMetadata("num_tokens"))?;
        let max_seq_len = self
            .max_seq_len
            .ok_or(LoadError::MissingMetadata("max_seq_len"))?;
        let mut w = WrapperConfig::new(num_tokens, max_seq_len, decoder)
            .use_abs_pos_emb(self.use_abs_pos_emb)
            .tie_embedding(self.tie_embedding);
        w.tie_embedding_scale = self.tie_embedding_scale;
        w.post_emb_norm = self.post_emb_norm;
        w.l2norm_embed = self.l2norm_embed;
        w.emb_dim = self.emb_dim;
        w.logits_dim = self.logits_dim;
        w.scaled_sinu_pos_emb = self.scaled_sinu_pos_emb;
        w.num_memory_tokens = self.num_memory_tokens;
        Ok(w)
    }
}

fn read_wrapper<'a>(p: &mut Parser<'a>, src: &'a str) -> Result<WrapperArgs, LoadError<'a>> {
    p.begin_object()?;
    let mut w = WrapperArgs {
        num_tokens: None,
        max_seq_len: None,
        use_abs_pos_emb: true,
        tie_embedding: false,
        tie_embedding_scale: None,
        post_emb_norm: false,
        l2norm_embed: false,
        emb_dim: None,
        logits_dim: None,
        scaled_sinu_pos_emb: false,
        num_memory_tokens: 0,
    };
    let mut seen = Seen([0; ARGS.len().div_ceil(64)]);
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        let name = key.decode_into(&mut buf).unwrap_or(raw);
        let (name, text) = match decide(p, src, raw, name, true, &mut seen)? {
            Decision::Keep | Decision::CrossCheck => continue,
            Decision::Compute(name, text) => (name, text),
        };
        match name {
            "num_tokens" => w.num_tokens = Some(typed(p, raw, text, Parser::usize)?),
            "max_seq_len" => w.max_seq_len = Some(typed(p, raw, text, Parser::usize)?),
            "use_abs_pos_emb" => w.use_abs_pos_emb = typed(p, raw, text, Parser::bool)?,
            "tie_embedding" => w.tie_embedding = typed(p, raw, text, Parser::bool)?,
            "post_emb_norm" => w.post_emb_norm = typed(p, raw, text, Parser::bool)?,
            "l2norm_embed" => w.l2norm_embed = typed(p, raw, text, Parser::bool)?,
            "tie_embedding_scale" => {
                w.tie_embedding_scale = Some(typed(p, raw, text, number_or_bool)?)
            }
            "emb_dim" => w.emb_dim = typed(p, raw, text, optional_usize)?,
            "logits_dim" => w.logits_dim = typed(p, raw, text, optional_usize)?,
            "scaled_sinu_pos_emb" => w.scaled_sinu_pos_emb = typed(p, raw, text, Parser::bool)?,
            "num_memory_tokens" => {
                w.num_memory_tokens = typed(p, raw, text, optional_usize)?.unwrap_or(0)
            }
            _ => {
                return Err(LoadError::UnsupportedOption {
                    option: raw,
                    value: text,
                    reason: NOT_IMPLEMENTED,
                })
            }
        }
    }
    Ok(w)
}
