//! Reading a model file's `x_transformers` metadata into a configuration, by the rule of
//! [`super`]: every argument is looked up in [`ARGS`] and decided by its [`Class`].
//!
//! The metadata is one JSON object whose entries say what the file holds ([`ModelKind`]):
//! `{"decoder" | "encoder": {...}, "wrapper": {...} | null}`, `{"decoder" | "encoder": {...},
//! "continuous_wrapper": {...}}` or `{"xtransformer": {...}}`.

use crate::config::{saturating_u16, DecoderConfig, WrapperConfig};
use crate::continuous::ContinuousConfig;
use crate::error::{ConfigError, Error};
use crate::json::{JsonError, JsonErrorKind, JsonStr, Parser, ValueKind};
use crate::layers::{ExecuteOrder, LayerTypes};
use crate::model::{LoadError, ModelConfig};
use crate::safetensors::SafeTensors;
use crate::xtransformer::XTransformerConfig;

use super::{find, Class, Group, PyDefault, Table, ARGS, NOT_IMPLEMENTED};

/// The metadata key that holds the constructor arguments.
pub const METADATA_KEY: &str = "x_transformers";

/// What a model file holds, by the entries of its metadata, and the loader that takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// `{"decoder": {...}, "wrapper": {...} | null}`: a `Decoder`, bare or in a
    /// `TransformerWrapper` ([`crate::Model::from_safetensors`]).
    Decoder,
    /// `{"encoder": {...}, "wrapper": {...} | null}`: an `Encoder`, bare or in a
    /// `TransformerWrapper` ([`crate::EncoderModel::from_safetensors`]).
    Encoder,
    /// `{"decoder" | "encoder": {...}, "continuous_wrapper": {...}}`: a
    /// `ContinuousTransformerWrapper` ([`crate::ContinuousModel::from_safetensors`]).
    Continuous,
    /// `{"xtransformer": {...}}`: an `XTransformer` ([`crate::XTransformer::from_safetensors`]).
    XTransformer,
}

impl ModelKind {
    /// The metadata entry that makes a file of this kind (`decoder`, `encoder`,
    /// `continuous_wrapper`, `xtransformer`).
    pub const fn entry(self) -> &'static str {
        match self {
            ModelKind::Decoder => "decoder",
            ModelKind::Encoder => "encoder",
            ModelKind::Continuous => "continuous_wrapper",
            ModelKind::XTransformer => "xtransformer",
        }
    }

    /// The loader that takes a file of this kind.
    pub const fn loader(self) -> &'static str {
        match self {
            ModelKind::Decoder => "picoformer::Model::from_safetensors",
            ModelKind::Encoder => "picoformer::EncoderModel::from_safetensors",
            ModelKind::Continuous => "picoformer::ContinuousModel::from_safetensors",
            ModelKind::XTransformer => "picoformer::XTransformer::from_safetensors",
        }
    }

    /// How another loader refuses a file of this kind: [`LoadError::UnsupportedOption`] naming
    /// the entry and, in the reason, [`Self::loader`].
    pub const fn refusal(self) -> LoadError<'static> {
        LoadError::UnsupportedOption {
            option: self.entry(),
            value: "{...}",
            reason: match self {
                ModelKind::Decoder => {
                    "a Decoder model: load it with picoformer::Model::from_safetensors"
                }
                ModelKind::Encoder => {
                    "an Encoder model: load it with picoformer::EncoderModel::from_safetensors"
                }
                ModelKind::Continuous => {
                    "a ContinuousTransformerWrapper model: load it with \
                     picoformer::ContinuousModel::from_safetensors"
                }
                ModelKind::XTransformer => {
                    "an XTransformer model: load it with picoformer::XTransformer::from_safetensors"
                }
            },
        }
    }
}

/// The kind of model a file holds, from its metadata's entries alone (their arguments are read
/// by the loader of that kind).
///
/// # Errors
/// [`LoadError::MissingMetadata`] (`x_transformers`, or `decoder` when there is neither a
/// `decoder` nor an `encoder` nor an `xtransformer`), [`LoadError::Metadata`], and
/// [`LoadError::UnsupportedOption`] for an entry that is not one of these or does not go with
/// the others.
#[inline(never)]
pub fn model_kind<'a>(file: &SafeTensors<'a>) -> Result<ModelKind, LoadError<'a>> {
    let meta = file
        .metadata(METADATA_KEY)
        .ok_or(LoadError::MissingMetadata(METADATA_KEY))?;
    let src = meta.raw();
    let mut p = meta.parser();
    p.begin_object()?;
    let (mut layers, mut wrapper, mut continuous, mut xtransformer) = (None, None, None, None);
    while let Some(key) = p.next_member()? {
        let (_, value) = read_value(&mut p, src)?;
        let entry = (key.raw(), value);
        let slot = if key.eq_str("decoder") || key.eq_str("encoder") {
            &mut layers
        } else if key.eq_str("wrapper") {
            &mut wrapper
        } else if key.eq_str("continuous_wrapper") {
            &mut continuous
        } else if key.eq_str("xtransformer") {
            &mut xtransformer
        } else {
            return Err(LoadError::UnsupportedOption {
                option: key.raw(),
                value,
                reason:
                    "not an entry of picoformer's metadata (`decoder` or `encoder`, `wrapper`, \
                         `continuous_wrapper`, `xtransformer`)",
            });
        };
        if slot.is_some() {
            return Err(LoadError::UnsupportedOption {
                option: key.raw(),
                value,
                reason: if key.eq_str("decoder") || key.eq_str("encoder") {
                    "one of `decoder` and `encoder`, once"
                } else {
                    "given twice"
                },
            });
        }
        *slot = Some(entry);
    }
    p.finish()?;
    let alone = |(option, value): (&'a str, &'a str), reason| LoadError::UnsupportedOption {
        option,
        value,
        reason,
    };
    if xtransformer.is_some() {
        if let Some(other) = layers.or(wrapper).or(continuous) {
            return Err(alone(other, "an `xtransformer` entry stands alone"));
        }
        return Ok(ModelKind::XTransformer);
    }
    let (option, _) = layers.ok_or(LoadError::MissingMetadata("decoder"))?;
    if let (Some(_), Some(c)) = (wrapper, continuous) {
        return Err(alone(c, "one of `wrapper` and `continuous_wrapper`"));
    }
    Ok(match (continuous, option == "encoder") {
        (Some(_), _) => ModelKind::Continuous,
        (None, true) => ModelKind::Encoder,
        (None, false) => ModelKind::Decoder,
    })
}

/// Reads and validates the configuration in the metadata of a `Decoder`'s file.
///
/// # Errors
/// [`LoadError::MissingMetadata`], [`LoadError::Metadata`], [`LoadError::UnsupportedOption`]
/// (also for a file of another [`ModelKind`], naming its loader), [`LoadError::InvalidOption`],
/// or [`LoadError::Model`] with the [`crate::ConfigError`].
pub fn read_config<'a>(file: &SafeTensors<'a>) -> Result<ModelConfig, LoadError<'a>> {
    match read_config_class(file)? {
        (cfg, false) => Ok(cfg),
        (_, true) => Err(ModelKind::Encoder.refusal()),
    }
}

/// [`read_config`] for a file holding a `Decoder` (`"decoder"`, returns false) or an `Encoder`
/// (`"encoder"`: the same arguments, `causal` false; returns true), each bare or in a
/// `TransformerWrapper`.
///
/// # Errors
/// As [`read_config`].
pub fn read_config_class<'a>(file: &SafeTensors<'a>) -> Result<(ModelConfig, bool), LoadError<'a>> {
    match model_kind(file)? {
        ModelKind::Decoder | ModelKind::Encoder => {}
        other => return Err(other.refusal()),
    }
    let parts = read_parts::<false>(file)?;
    let decoder = parts.layers;
    let wrapper = match parts.wrapper {
        Some(w) => {
            let w = w.finish(decoder)?;
            w.validate().map_err(Error::from)?;
            Some(w)
        }
        None => None,
    };
    Ok((ModelConfig { decoder, wrapper }, parts.encoder))
}

/// The configuration of a `ContinuousTransformerWrapper`'s file, and whether its layers are an
/// `Encoder`.
///
/// # Errors
/// As [`read_config`].
pub fn read_continuous_config<'a>(
    file: &SafeTensors<'a>,
) -> Result<(ContinuousConfig, bool), LoadError<'a>> {
    match model_kind(file)? {
        ModelKind::Continuous => {}
        other => return Err(other.refusal()),
    }
    let parts = read_parts::<true>(file)?;
    let Some(c) = parts.continuous else {
        return Err(LoadError::MissingMetadata("continuous_wrapper"));
    };
    let cfg = c.finish(parts.layers, parts.encoder)?;
    cfg.validate().map_err(Error::from)?;
    Ok((cfg, parts.encoder))
}

/// The configuration of an `XTransformer`'s file.
///
/// # Errors
/// As [`read_config`].
pub fn read_xtransformer_config<'a>(
    file: &SafeTensors<'a>,
) -> Result<XTransformerConfig, LoadError<'a>> {
    match model_kind(file)? {
        ModelKind::XTransformer => {}
        other => return Err(other.refusal()),
    }
    let meta = file
        .metadata(METADATA_KEY)
        .ok_or(LoadError::MissingMetadata(METADATA_KEY))?;
    let src = meta.raw();
    let mut p = meta.parser();
    p.begin_object()?;
    let mut cfg = None;
    while p.next_member()?.is_some() {
        // the one entry, `xtransformer` (`model_kind` checked)
        cfg = Some(read_xtransformer(&mut p, src)?);
    }
    p.finish()?;
    cfg.ok_or(LoadError::MissingMetadata("xtransformer"))
}

/// The entries of a `decoder` / `encoder` file, read (the kind already checked).
struct Parts<'a> {
    layers: DecoderConfig,
    encoder: bool,
    wrapper: Option<WrapperArgs>,
    continuous: Option<ContinuousArgs<'a>>,
}

/// `CONTINUOUS`: whether the file holds a `continuous_wrapper` (else a `wrapper`): a constant, so
/// that the decoder's loader does not carry the continuous wrapper's reader (code size on a
/// microcontroller). Not inlined, nor is [`model_kind`]: each in its own frame, one after the
/// other, rather than both in their caller's (the stack of a microcontroller's loader).
#[inline(never)]
fn read_parts<'a, const CONTINUOUS: bool>(
    file: &SafeTensors<'a>,
) -> Result<Parts<'a>, LoadError<'a>> {
    let meta = file
        .metadata(METADATA_KEY)
        .ok_or(LoadError::MissingMetadata(METADATA_KEY))?;
    let src = meta.raw();
    let mut p = meta.parser();
    p.begin_object()?;
    let (mut layers, mut encoder, mut wrapper, mut continuous) = (None, false, None, None);
    while let Some(key) = p.next_member()? {
        if key.eq_str("decoder") || key.eq_str("encoder") {
            encoder = key.eq_str("encoder");
            layers = Some(read_decoder(&mut p, src, encoder)?);
        } else if key.eq_str("wrapper") && !CONTINUOUS {
            if p.kind()? == ValueKind::Null {
                p.null()?;
            } else {
                wrapper = Some(read_wrapper(&mut p, src)?);
            }
        } else if key.eq_str("continuous_wrapper") && CONTINUOUS {
            continuous = Some(read_continuous(&mut p, src)?);
        } else {
            // `model_kind` refused every other entry.
            p.skip()?;
        }
    }
    p.finish()?;
    let layers = layers.ok_or(LoadError::MissingMetadata("decoder"))?;
    layers.validate().map_err(Error::from)?;
    if encoder {
        check_encoder(&layers)?;
    }
    Ok(Parts {
        layers,
        encoder,
        wrapper,
        continuous,
    })
}

/// What an `Encoder` cannot be that a `Decoder` can.
fn check_encoder<'a>(layers: &DecoderConfig) -> Result<(), LoadError<'a>> {
    if layers.xpos() {
        // x-transformers asserts that xpos is causal (xt:2902).
        return Err(Error::Config(ConfigError::Conflict("rotary_xpos", "causal")).into());
    }
    Ok(())
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

/// `custom_layers`: a string of sublayer letters, or an array of one-letter strings (both are
/// what x-transformers iterates); `None` for another letter, none or too many.
fn layer_types(p: &mut Parser<'_>) -> Result<Option<LayerTypes>, JsonError> {
    let mut letters = [0u8; LayerTypes::MAX + 1];
    let mut n = 0;
    let mut add = |b: u8| {
        if let Some(slot) = letters.get_mut(n) {
            *slot = b;
        }
        n += 1;
    };
    if p.kind()? == ValueKind::String {
        p.string()?.raw().bytes().for_each(&mut add);
    } else {
        p.begin_array()?;
        while p.next_element()? {
            match p.string()?.raw().as_bytes() {
                [b] => add(*b),
                _ => add(0),
            }
        }
    }
    Ok(letters.get(..n).and_then(LayerTypes::from_letters))
}

/// `layers_execute_order`: an array of sublayer indices; `None` for none, too many or too large.
fn execute_order(p: &mut Parser<'_>) -> Result<Option<ExecuteOrder>, JsonError> {
    let mut order = [0usize; ExecuteOrder::MAX + 1];
    let mut n = 0;
    p.begin_array()?;
    while p.next_element()? {
        let i = p.usize()?;
        if let Some(slot) = order.get_mut(n) {
            *slot = i;
        }
        n += 1;
    }
    Ok(order.get(..n).and_then(ExecuteOrder::new))
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

/// Why an argument that is in no row of `table` is refused.
const fn not_an_argument(table: Table) -> &'static str {
    match table {
        Table::Layers => "not an argument of x-transformers' Decoder",
        Table::Wrapper => "not an argument of x-transformers' TransformerWrapper",
        Table::Continuous => "not an argument of x-transformers' ContinuousTransformerWrapper",
        Table::XTransformer => "not an argument of x-transformers' XTransformer",
    }
}

/// Decides argument `name` (written `raw`) of `table`; `unknown` is the reason given when it is
/// not one.
fn decide<'a>(
    p: &mut Parser<'a>,
    src: &'a str,
    raw: &'a str,
    name: &str,
    table: Table,
    unknown: &'static str,
    seen: &mut Seen,
) -> Result<Decision<'a>, LoadError<'a>> {
    let at = p.clone();
    let (value, text) = read_value(p, src)?;
    let unsupported = |reason| LoadError::UnsupportedOption {
        option: raw,
        value: text,
        reason,
    };
    let Some((i, arg)) = find(name, table) else {
        return Err(unsupported(unknown));
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

/// An `AttentionLayers` object being read, one argument at a time.
struct LayersReader {
    c: DecoderConfig,
    have_dim: bool,
    have_depth: bool,
    /// A refused `cross_attn_<x>` was given: checked against `attn_<x>` once all is read.
    cross_check: bool,
    seen: Seen,
}

impl LayersReader {
    fn new() -> Self {
        Self {
            c: DecoderConfig::new(0, 0),
            have_dim: false,
            have_depth: false,
            cross_check: false,
            seen: Seen([0; ARGS.len().div_ceil(64)]),
        }
    }

    /// Decides argument `name` (written `raw`; `unknown`: why a name of no row is refused) and
    /// reads its value into the configuration when it is computed.
    fn arg<'a>(
        &mut self,
        p: &mut Parser<'a>,
        src: &'a str,
        raw: &'a str,
        name: &str,
        unknown: &'static str,
    ) -> Result<(), LoadError<'a>> {
        let (name, text) = match decide(p, src, raw, name, Table::Layers, unknown, &mut self.seen)?
        {
            Decision::Keep => return Ok(()),
            Decision::CrossCheck => {
                self.cross_check = true;
                return Ok(());
            }
            Decision::Compute(name, text) => (name, text),
        };
        let c = &mut self.c;
        match name {
            "dim" => {
                c.dim = typed(p, raw, text, Parser::usize)?;
                self.have_dim = true;
            }
            "depth" => {
                // `None` (null) is x-transformers' default, given with `custom_layers`.
                let depth = typed(p, raw, text, optional_usize)?;
                c.depth = depth.unwrap_or(0);
                self.have_depth = depth.is_some();
            }
            "custom_layers" => {
                c.custom_layers = Some(typed(p, raw, text, layer_types)?.ok_or(
                    LoadError::UnsupportedOption {
                        option: raw,
                        value: text,
                        reason: "picoformer takes 1 to 32 sublayers, each 'a', 'c' or 'f'",
                    },
                )?);
            }
            "layers_execute_order" => {
                c.layers_execute_order = Some(typed(p, raw, text, execute_order)?.ok_or(
                    LoadError::UnsupportedOption {
                        option: raw,
                        value: text,
                        reason: "picoformer takes 1 to 21 runs, each a sublayer index below 63",
                    },
                )?);
            }
            "par_ratio" => {
                c.par_ratio = typed(p, raw, text, optional_usize)?.map(saturating_u16);
            }
            "residual_attn" => c.residual_attn = typed(p, raw, text, Parser::bool)?,
            "cross_residual_attn" => c.cross_residual_attn = typed(p, raw, text, Parser::bool)?,
            "sandwich_coef" => {
                c.sandwich_coef = typed(p, raw, text, optional_usize)?.map(saturating_u16);
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
        Ok(())
    }
}

/// The `decoder` or (`encoder`) `encoder` object.
fn read_decoder<'a>(
    p: &mut Parser<'a>,
    src: &'a str,
    encoder: bool,
) -> Result<DecoderConfig, LoadError<'a>> {
    let object = p.clone();
    p.begin_object()?;
    let mut r = LayersReader::new();
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        let name = key.decode_into(&mut buf).unwrap_or(raw);
        if encoder && name == "causal" {
            // x-transformers' Encoder asserts that `causal` is not given (xt:3781).
            let (_, value) = read_value(p, src)?;
            return Err(LoadError::UnsupportedOption {
                option: raw,
                value,
                reason: "x-transformers' Encoder takes no `causal` (it is not causal)",
            });
        }
        r.arg(p, src, raw, name, not_an_argument(Table::Layers))?;
    }
    if !r.have_dim {
        return Err(LoadError::MissingMetadata("dim"));
    }
    if !r.have_depth && r.c.custom_layers.is_none() {
        return Err(LoadError::MissingMetadata("depth"));
    }
    if r.cross_check {
        check_cross(object, src, "")?;
    }
    Ok(r.c)
}

/// Second pass over a decoder's object (`object` is positioned before it), over its arguments
/// named `<prefix><x>` (`prefix` "", or an `XTransformer`'s `enc_` / `dec_`): every refused
/// `cross_attn_<x>` must equal the value cross-attention gets without it, `attn_<x>` of the same
/// object or else the default (x-transformers merges the groups, `cross_attn_` winning);
/// otherwise it is refused.
fn check_cross<'a>(object: Parser<'a>, src: &'a str, prefix: &str) -> Result<(), LoadError<'a>> {
    let mut p = object.clone();
    p.begin_object()?;
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        let Some(name) = key
            .decode_into(&mut buf)
            .unwrap_or(raw)
            .strip_prefix(prefix)
        else {
            continue;
        };
        let (value, text) = read_value(&mut p, src)?;
        let Some((_, arg)) = find(name, Table::Layers) else {
            continue;
        };
        let Class::Refused(reason) = arg.class() else {
            continue;
        };
        if arg.group != Group::CrossAttn {
            continue;
        }
        let suffix = name.get("cross_attn_".len()..).unwrap_or("");
        let same = match attn_value(object.clone(), src, prefix, suffix)? {
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

/// The value of `<prefix>attn_<suffix>` in the object `q` is positioned before, if given.
fn attn_value<'a>(
    mut q: Parser<'a>,
    src: &'a str,
    prefix: &str,
    suffix: &str,
) -> Result<Option<Value<'a>>, LoadError<'a>> {
    q.begin_object()?;
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = q.next_member()? {
        let name = key.decode_into(&mut buf).unwrap_or(key.raw());
        let attn = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_prefix("attn_"));
        if attn == Some(suffix) {
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

/// Reads the object at `p` (its `{` consumed) argument by argument in `table` by the one rule
/// ([`decide`]), and hands each argument to compute to `f` (`name`, the key as written, the
/// value's JSON text), which reads the value.
fn each_computed<'a>(
    p: &mut Parser<'a>,
    src: &'a str,
    table: Table,
    mut f: impl FnMut(&mut Parser<'a>, &str, &'a str, &'a str) -> Result<(), LoadError<'a>>,
) -> Result<(), LoadError<'a>> {
    let mut seen = Seen([0; ARGS.len().div_ceil(64)]);
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        let name = key.decode_into(&mut buf).unwrap_or(raw);
        match decide(p, src, raw, name, table, not_an_argument(table), &mut seen)? {
            Decision::Keep | Decision::CrossCheck => {}
            Decision::Compute(name, text) => f(p, name, raw, text)?,
        }
    }
    Ok(())
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
    each_computed(p, src, Table::Wrapper, |p, name, raw, text| {
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
        Ok(())
    })?;
    Ok(w)
}

/// `ContinuousTransformerWrapper` arguments as read, checked against the layers once both are
/// known.
struct ContinuousArgs<'a> {
    max_seq_len: Option<usize>,
    dim_in: Option<usize>,
    dim_out: Option<usize>,
    post_emb_norm: bool,
    use_abs_pos_emb: bool,
    /// `average_pool_embed` when true: its key and value as written.
    average_pool_embed: Option<(&'a str, &'a str)>,
    use_identity_if_same_dim: bool,
    num_memory_tokens: usize,
}

impl<'a> ContinuousArgs<'a> {
    fn finish(
        self,
        layers: DecoderConfig,
        encoder: bool,
    ) -> Result<ContinuousConfig, LoadError<'a>> {
        let mut c = ContinuousConfig::new(self.max_seq_len.unwrap_or(0), layers);
        c.use_abs_pos_emb = self.use_abs_pos_emb;
        c.post_emb_norm = self.post_emb_norm;
        c.num_memory_tokens = self.num_memory_tokens;
        if let Some((option, value)) = self.average_pool_embed {
            if !encoder {
                // The mean of a causal pass's outputs: one row for the whole sequence, which
                // no step of a stream has.
                return Err(LoadError::UnsupportedOption {
                    option,
                    value,
                    reason: "pooling a Decoder's outputs is not implemented (an Encoder's is)",
                });
            }
            c.average_pool_embed = true;
        }
        // `use_identity_if_same_dim`: no projection where the width is already `dim`
        // (continuous.py:123, 131).
        let same = |d: Option<usize>| self.use_identity_if_same_dim && d == Some(layers.dim);
        c.dim_in = if same(self.dim_in) { None } else { self.dim_in };
        c.dim_out = if same(self.dim_out) {
            None
        } else {
            self.dim_out
        };
        Ok(c)
    }
}

fn read_continuous<'a>(
    p: &mut Parser<'a>,
    src: &'a str,
) -> Result<ContinuousArgs<'a>, LoadError<'a>> {
    p.begin_object()?;
    let mut c = ContinuousArgs {
        max_seq_len: None,
        dim_in: None,
        dim_out: None,
        post_emb_norm: false,
        use_abs_pos_emb: true,
        average_pool_embed: None,
        use_identity_if_same_dim: false,
        num_memory_tokens: 0,
    };
    each_computed(p, src, Table::Continuous, |p, name, raw, text| {
        match name {
            "max_seq_len" => c.max_seq_len = typed(p, raw, text, optional_usize)?,
            "dim_in" => c.dim_in = typed(p, raw, text, optional_usize)?,
            "dim_out" => c.dim_out = typed(p, raw, text, optional_usize)?,
            "post_emb_norm" => c.post_emb_norm = typed(p, raw, text, Parser::bool)?,
            "use_abs_pos_emb" => c.use_abs_pos_emb = typed(p, raw, text, Parser::bool)?,
            "average_pool_embed" => {
                c.average_pool_embed = typed(p, raw, text, Parser::bool)?.then_some((raw, text))
            }
            "use_identity_if_same_dim" => {
                c.use_identity_if_same_dim = typed(p, raw, text, Parser::bool)?
            }
            "num_memory_tokens" => {
                c.num_memory_tokens = typed(p, raw, text, optional_usize)?.unwrap_or(0)
            }
            _ => {
                return Err(LoadError::UnsupportedOption {
                    option: raw,
                    value: text,
                    reason: NOT_IMPLEMENTED,
                })
            }
        }
        Ok(())
    })?;
    Ok(c)
}

/// Why an `enc_<x>` / `dec_<x>` that is no argument of the Encoder / Decoder is refused.
const NOT_ENCODER: &str =
    "not an argument of x-transformers' Encoder (XTransformer's `enc_` group)";
const NOT_DECODER: &str =
    "not an argument of x-transformers' Decoder (XTransformer's `dec_` group)";

/// The `xtransformer` object: `XTransformer`'s own arguments and, by prefix, its encoder's
/// (`enc_`) and decoder's (`dec_`), as `XTransformer.__init__` splits them (`xt:4713-4751`).
fn read_xtransformer<'a>(
    p: &mut Parser<'a>,
    src: &'a str,
) -> Result<XTransformerConfig, LoadError<'a>> {
    let object = p.clone();
    p.begin_object()?;
    let (mut enc, mut dec) = (LayersReader::new(), LayersReader::new());
    let mut seen = Seen([0; ARGS.len().div_ceil(64)]);
    let mut dim = None;
    let mut tie: Option<(&'a str, &'a str)> = None;
    let (mut enc_tokens, mut enc_len, mut enc_abs, mut enc_mem) = (None, None, true, 0);
    let (mut dec_tokens, mut dec_len, mut dec_abs) = (None, None, true);
    let mut dim_context: Option<(&'a str, &'a str)> = None;
    let mut buf = [0u8; KEY_BUF];
    while let Some(key) = p.next_member()? {
        let raw = key.raw();
        let name = key.decode_into(&mut buf).unwrap_or(raw);
        if find(name, Table::XTransformer).is_some() {
            let table = Table::XTransformer;
            let (name, text) =
                match decide(p, src, raw, name, table, not_an_argument(table), &mut seen)? {
                    Decision::Keep | Decision::CrossCheck => continue,
                    Decision::Compute(name, text) => (name, text),
                };
            match name {
                "dim" => dim = Some(typed(p, raw, text, Parser::usize)?),
                "tie_token_emb" => tie = typed(p, raw, text, Parser::bool)?.then_some((raw, text)),
                "enc_num_tokens" => enc_tokens = Some(typed(p, raw, text, Parser::usize)?),
                "enc_max_seq_len" => enc_len = Some(typed(p, raw, text, Parser::usize)?),
                "enc_use_abs_pos_emb" => enc_abs = typed(p, raw, text, Parser::bool)?,
                "enc_num_memory_tokens" => {
                    enc_mem = typed(p, raw, text, optional_usize)?.unwrap_or(0)
                }
                "dec_num_tokens" => dec_tokens = Some(typed(p, raw, text, Parser::usize)?),
                "dec_max_seq_len" => dec_len = Some(typed(p, raw, text, Parser::usize)?),
                "dec_use_abs_pos_emb" => dec_abs = typed(p, raw, text, Parser::bool)?,
                _ => {
                    return Err(LoadError::UnsupportedOption {
                        option: raw,
                        value: text,
                        reason: NOT_IMPLEMENTED,
                    })
                }
            }
            continue;
        }
        let (reader, rest, unknown, encoder) = if let Some(rest) = name.strip_prefix("enc_") {
            (&mut enc, rest, NOT_ENCODER, true)
        } else if let Some(rest) = name.strip_prefix("dec_") {
            (&mut dec, rest, NOT_DECODER, false)
        } else {
            let (_, value) = read_value(p, src)?;
            return Err(LoadError::UnsupportedOption {
                option: raw,
                value,
                reason: "not an argument of x-transformers' XTransformer (its encoder's and \
                         decoder's take the prefixes `enc_` and `dec_`)",
            });
        };
        let refused = match rest {
            "dim" => {
                Some("XTransformer gives its encoder and decoder `dim` (x-transformers asserts)")
            }
            "causal" => Some("x-transformers' Encoder and Decoder take no `causal`"),
            "cross_attend" if !encoder => Some(
                "XTransformer's decoder cross-attends: x-transformers passes cross_attend itself",
            ),
            _ => None,
        };
        if let Some(reason) = refused {
            let (_, value) = read_value(p, src)?;
            return Err(LoadError::UnsupportedOption {
                option: raw,
                value,
                reason,
            });
        }
        if !encoder && rest == "cross_attn_dim_context" {
            // checked against `dim` (the encoder's width) once it is known
            let (_, value) = read_value(&mut p.clone(), src)?;
            dim_context = Some((raw, value));
        }
        reader.arg(p, src, raw, rest, unknown)?;
    }
    let dim = dim.ok_or(LoadError::MissingMetadata("dim"))?;
    if !enc.have_depth && enc.c.custom_layers.is_none() {
        return Err(LoadError::MissingMetadata("enc_depth"));
    }
    if !dec.have_depth && dec.c.custom_layers.is_none() {
        return Err(LoadError::MissingMetadata("dec_depth"));
    }
    let enc_tokens = enc_tokens.ok_or(LoadError::MissingMetadata("enc_num_tokens"))?;
    let enc_len = enc_len.ok_or(LoadError::MissingMetadata("enc_max_seq_len"))?;
    let dec_tokens = dec_tokens.ok_or(LoadError::MissingMetadata("dec_num_tokens"))?;
    let dec_len = dec_len.ok_or(LoadError::MissingMetadata("dec_max_seq_len"))?;
    if enc.cross_check {
        check_cross(object.clone(), src, "enc_")?;
    }
    if dec.cross_check {
        check_cross(object, src, "dec_")?;
    }
    let (mut e, mut d) = (enc.c, dec.c);
    e.dim = dim;
    d.dim = dim;
    d.cross_attend = true;
    if e.cross_attend {
        return Err(LoadError::UnsupportedOption {
            option: "enc_cross_attend",
            value: "true",
            reason: "XTransformer runs its encoder without a context",
        });
    }
    if let Some((option, value)) = dim_context {
        if d.dim_context() != dim {
            return Err(LoadError::UnsupportedOption {
                option,
                value,
                reason: "XTransformer's decoder attends to the encoder's output, `dim` wide",
            });
        }
    }
    if let Some((option, value)) = tie {
        if enc_tokens != dec_tokens {
            // The decoder then embeds with the encoder's table of enc_num_tokens rows.
            return Err(LoadError::UnsupportedOption {
                option,
                value,
                reason: "with enc_num_tokens other than dec_num_tokens (the decoder embeds with \
                         the encoder's table) is not implemented",
            });
        }
    }
    // `return_only_embed`: no logits of its own, as a tied wrapper reads none (xt:4153-4154).
    let encoder = WrapperConfig::new(enc_tokens, enc_len, e)
        .use_abs_pos_emb(enc_abs)
        .num_memory_tokens(enc_mem)
        .tie_embedding(true);
    let decoder = WrapperConfig::new(dec_tokens, dec_len, d).use_abs_pos_emb(dec_abs);
    encoder.validate().map_err(Error::from)?;
    decoder.validate().map_err(Error::from)?;
    check_encoder(&e)?;
    Ok(XTransformerConfig {
        encoder,
        decoder,
        tie_token_emb: tie.is_some(),
    })
}
