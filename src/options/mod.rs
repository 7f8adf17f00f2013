//! Every x-transformers constructor argument, its default, and what picoformer does with it.
//!
//! [`ARGS`] is generated from x-transformers' own signatures and source by
//! `tools/xt_arguments.py` (`xt_args.rs`, do not edit); [`CLASSES`] is the hand-written
//! classification of every one of its rows (`classes.rs`). The loader ([`read_config`]) and
//! `tools/export.py` (through `tools/options.json`, written from these two tables by
//! `tests/options.rs`) decide by one rule:
//!
//! * a value equal to x-transformers' default (Python `==`: `False == 0`, `1 == 1.0`, `None`
//!   only equals `None`) or an argument of [`Class::NoEffect`] is accepted and changes nothing;
//! * a [`Class::Supported`] argument with any other value is computed exactly (a field of
//!   [`crate::DecoderConfig`] / [`crate::WrapperConfig`]), or refused if that value is outside
//!   what is implemented;
//! * anything else is refused with [`crate::LoadError::UnsupportedOption`], which names the
//!   argument, its value as written and the reason.
//!
//! `cross_attn_<x>` overrides `attn_<x>` for cross-attention only (x-transformers merges the two
//! groups, the `cross_attn_` value winning), so a refused `cross_attn_<x>` is accepted when it
//! equals the value `attn_<x>` has in the same file (or its default).

mod classes;
mod metadata;
mod xt_args;

pub use classes::{CLASSES, NOT_IMPLEMENTED};
pub use metadata::{
    model_kind, read_config, read_config_class, read_continuous_config, read_xtransformer_config,
    ModelKind, METADATA_KEY,
};
pub use xt_args::{ARGS, XT_VERSION};

use core::fmt;

/// Where an argument goes in x-transformers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// A value `Decoder` forces on `AttentionLayers` (`causal = True`).
    Decoder,
    /// A named parameter of `AttentionLayers.__init__`.
    Layers,
    /// `attn_<x>`: parameter `<x>` of `Attention`, for self- and cross-attention.
    Attn,
    /// `cross_attn_<x>`: parameter `<x>` of `Attention`, for cross-attention only.
    CrossAttn,
    /// `ff_<x>`: parameter `<x>` of `FeedForward`.
    Ff,
    /// A parameter of `TransformerWrapper.__init__`.
    Wrapper,
    /// A parameter of `ContinuousTransformerWrapper.__init__` (`continuous.py:63-80`).
    Continuous,
    /// A parameter of `XTransformer.__init__`, or a wrapper argument it takes out of its `enc_` /
    /// `dec_` groups (`enc_num_tokens`, ...; `xt:4725-4738`). Every other `enc_<x>` / `dec_<x>`
    /// is argument `<x>` of its `Encoder` / `Decoder` ([`Table::Layers`]).
    XTransformer,
}

impl Group {
    /// The group's name as in `tools/xt_arguments.json`.
    pub const fn name(self) -> &'static str {
        match self {
            Group::Decoder => "decoder",
            Group::Layers => "layers",
            Group::Attn => "attn",
            Group::CrossAttn => "cross_attn",
            Group::Ff => "ff",
            Group::Wrapper => "wrapper",
            Group::Continuous => "continuous",
            Group::XTransformer => "xtransformer",
        }
    }

    /// The constructor whose arguments the group belongs to.
    pub const fn table(self) -> Table {
        match self {
            Group::Decoder | Group::Layers | Group::Attn | Group::CrossAttn | Group::Ff => {
                Table::Layers
            }
            Group::Wrapper => Table::Wrapper,
            Group::Continuous => Table::Continuous,
            Group::XTransformer => Table::XTransformer,
        }
    }
}

/// The constructors whose keyword arguments a model file's metadata holds, one object each: an
/// argument's name is unique within one (`max_seq_len` is an argument of three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `Decoder` / `Encoder` (`AttentionLayers` with the `attn_`, `cross_attn_` and `ff_` groups).
    Layers,
    /// `TransformerWrapper`, besides `attn_layers`.
    Wrapper,
    /// `ContinuousTransformerWrapper`, besides `attn_layers`.
    Continuous,
    /// `XTransformer`.
    XTransformer,
}

impl Table {
    /// The x-transformers class, as error messages name it.
    pub const fn class_name(self) -> &'static str {
        match self {
            Table::Layers => "Decoder",
            Table::Wrapper => "TransformerWrapper",
            Table::Continuous => "ContinuousTransformerWrapper",
            Table::XTransformer => "XTransformer",
        }
    }
}

/// An argument's default in x-transformers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PyDefault {
    /// No default: the argument must be given.
    Required,
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(&'static str),
    /// An empty `dict`.
    EmptyDict,
    /// Anything else (its Python `repr`); no JSON value equals it.
    Other(&'static str),
}

impl fmt::Display for PyDefault {
    /// Python's spelling (`True`, `None`, `1.0`, `{}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyDefault::Required => write!(f, "required"),
            PyDefault::None => write!(f, "None"),
            PyDefault::Bool(true) => write!(f, "True"),
            PyDefault::Bool(false) => write!(f, "False"),
            PyDefault::Int(i) => write!(f, "{i}"),
            PyDefault::Float(x) if *x == (*x as i64) as f64 => write!(f, "{x:.1}"),
            PyDefault::Float(x) => write!(f, "{x}"),
            PyDefault::Str(s) => write!(f, "'{s}'"),
            PyDefault::EmptyDict => write!(f, "{{}}"),
            PyDefault::Other(s) => write!(f, "{s}"),
        }
    }
}

/// One argument of the generated table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arg {
    /// The keyword as a user passes it (`attn_kv_heads`, `tie_embedding`, ...).
    pub name: &'static str,
    /// Where it goes.
    pub group: Group,
    /// Its default.
    pub default: PyDefault,
}

impl Arg {
    /// A row of the table.
    pub const fn new(name: &'static str, group: Group, default: PyDefault) -> Self {
        Self {
            name,
            group,
            default,
        }
    }

    /// What picoformer does with it ([`CLASSES`], the row of the same index); `Refused` if it
    /// were missing there (a test checks that it never is).
    pub fn class(&self) -> Class {
        ARGS.iter()
            .position(|a| a.name == self.name && a.group == self.group)
            .and_then(|i| CLASSES.get(i))
            .filter(|(n, _)| *n == self.name)
            .map_or(Class::Refused(NOT_IMPLEMENTED), |(_, c)| *c)
    }
}

/// What picoformer does with an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Changes nothing at inference whatever its value (why).
    NoEffect(&'static str),
    /// Computed: read into a field of [`crate::DecoderConfig`] / [`crate::WrapperConfig`].
    Supported,
    /// Accepted only at its default; otherwise refused (why).
    Refused(&'static str),
}

/// The row of `name` among the arguments of `table`.
pub fn find(name: &str, table: Table) -> Option<(usize, &'static Arg)> {
    ARGS.iter()
        .enumerate()
        .find(|(_, a)| a.name == name && a.group.table() == table)
}
