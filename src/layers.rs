//! Which sublayers run, in which order, and how the forward pass groups them into blocks.
//!
//! x-transformers builds a list of sublayers, each self-attention ('a'), cross-attention ('c')
//! or feed-forward ('f'): by default `depth` copies of the block ('a', ['c',] 'f') (with
//! `macaron` a first 'f'), or `custom_layers` as given, or the patterns of `par_ratio` and
//! `sandwich_coef` (`xt:3000-3100`). Sublayer i's weights are `layers.i` of the `state_dict`.
//! `layers_execute_order` then runs them in another order, any of them any number of times
//! (`weight_tie_layers` is the order (0, 1, …, per−1) repeated `depth` times over one block's
//! sublayers). Every run of an attention sublayer has its own place in the KV cache.
//!
//! The forward pass (`crate::decoder`) runs *blocks*: up to four sublayers in the order
//! ('f', 'a', 'c', 'f'), any of them absent. The runs are cut into blocks greedily, so the
//! default stack of `depth` blocks is `depth` blocks here too, and a custom order costs no more
//! blocks than it needs ([`DecoderConfig::blocks`]; a decoder holds at most `MAX_DEPTH`).

use crate::config::DecoderConfig;
use crate::error::ConfigError;

/// The most sublayers `custom_layers` and `layers_execute_order` can list.
pub const MAX_LISTED: usize = 64;

/// More runs than a valid plan has (at most [`MAX_LISTED`] listed, 256 stored): the loops over
/// runs stop here on a configuration that `validate` refuses.
const LOOP_LIMIT: usize = 1024;

/// A sublayer's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Self-attention, 'a'.
    Attention,
    /// Cross-attention, 'c'.
    Cross,
    /// Feed-forward, 'f'.
    FeedForward,
}

impl Kind {
    const fn code(self) -> u128 {
        match self {
            Kind::Attention => 1,
            Kind::Cross => 2,
            Kind::FeedForward => 3,
        }
    }
}

/// x-transformers' `custom_layers`: up to [`MAX_LISTED`] sublayer kinds, as a `const`-friendly
/// value (two bits each).
///
/// ```
/// use picoformer::{DecoderConfig, LayerTypes};
/// const CFG: DecoderConfig = DecoderConfig::new(64, 1)
///     .heads(4)
///     .custom_layers(LayerTypes::parse("faaf"));
/// assert_eq!(CFG.blocks(), 2); // ('f', 'a') and ('a', 'f')
/// assert!(CFG.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerTypes {
    bits: u128,
    /// The number of kinds, or `u8::MAX` once an invalid kind or a 65th was added.
    len: u8,
}

impl LayerTypes {
    /// No sublayers.
    pub const EMPTY: Self = Self { bits: 0, len: 0 };

    /// The kinds of `s`, one letter each: `a`, `c` or `f` (x-transformers accepts the string
    /// as well as a tuple of letters). Any other letter, or more than [`MAX_LISTED`], gives a
    /// value that [`DecoderConfig::validate`] refuses.
    pub const fn parse(s: &str) -> Self {
        let b = s.as_bytes();
        let mut t = Self::EMPTY;
        let mut i = 0;
        while i < b.len() {
            t = t.push_letter(b[i]);
            i += 1;
        }
        t
    }

    /// This list with the kind of one more letter (`a`, `c`, `f`) at the end; see [`Self::parse`].
    pub const fn push_letter(self, letter: u8) -> Self {
        match letter {
            b'a' => self.push(Kind::Attention),
            b'c' => self.push(Kind::Cross),
            b'f' => self.push(Kind::FeedForward),
            _ => Self::INVALID,
        }
    }

    /// This list with `kind` at the end.
    pub const fn push(self, kind: Kind) -> Self {
        let n = self.len as usize;
        if n >= MAX_LISTED {
            return Self::INVALID;
        }
        Self {
            bits: self.bits | (kind.code() << (2 * n)),
            len: self.len + 1,
        }
    }

    const INVALID: Self = Self {
        bits: 0,
        len: u8::MAX,
    };

    /// Whether every letter was a kind and there were at most [`MAX_LISTED`].
    pub const fn is_valid(&self) -> bool {
        self.len != u8::MAX
    }

    /// The number of kinds (0 if invalid).
    pub const fn len(&self) -> usize {
        if self.is_valid() {
            self.len as usize
        } else {
            0
        }
    }

    /// Whether the list is empty (or invalid).
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kind `i`.
    pub const fn get(&self, i: usize) -> Option<Kind> {
        if i >= self.len() {
            return None;
        }
        match (self.bits >> (2 * i)) & 3 {
            1 => Some(Kind::Attention),
            2 => Some(Kind::Cross),
            _ => Some(Kind::FeedForward),
        }
    }
}

/// x-transformers' `layers_execute_order`: up to [`MAX_LISTED`] sublayer indices, each below
/// 256, as a `const`-friendly value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecuteOrder {
    order: [u8; MAX_LISTED],
    /// The number of indices, or `u8::MAX` once an index ≥ 256 or a 65th was added.
    len: u8,
}

impl ExecuteOrder {
    /// No runs.
    pub const EMPTY: Self = Self {
        order: [0; MAX_LISTED],
        len: 0,
    };

    /// The indices of `order`; more than [`MAX_LISTED`], or one of 256 or more, give a value
    /// that [`DecoderConfig::validate`] refuses.
    pub const fn new(order: &[usize]) -> Self {
        let mut o = Self::EMPTY;
        let mut i = 0;
        while i < order.len() {
            o = o.push(order[i]);
            i += 1;
        }
        o
    }

    /// This order with one more run, of sublayer `index`.
    pub const fn push(mut self, index: usize) -> Self {
        let n = self.len as usize;
        if n >= MAX_LISTED || index > u8::MAX as usize {
            return Self {
                order: [0; MAX_LISTED],
                len: u8::MAX,
            };
        }
        self.order[n] = index as u8;
        self.len += 1;
        self
    }

    /// Whether it holds at most [`MAX_LISTED`] indices, each below 256.
    pub const fn is_valid(&self) -> bool {
        self.len != u8::MAX
    }

    /// The number of runs (0 if invalid).
    pub const fn len(&self) -> usize {
        if self.is_valid() {
            self.len as usize
        } else {
            0
        }
    }

    /// Whether there are no runs (or the order is invalid).
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run `i`'s sublayer index.
    pub const fn get(&self, i: usize) -> Option<usize> {
        if i >= self.len() {
            return None;
        }
        Some(self.order[i] as usize)
    }
}

/// One block of runs: up to four sublayers in the order ('f', 'a', 'c', 'f'), each the index
/// of its weights (`layers.i`), or `None` where the block has no such sublayer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockPlan {
    /// A feed-forward before the attention (`macaron`'s first, or any 'f' followed by 'a'/'c').
    pub ff_pre: Option<usize>,
    /// Self-attention.
    pub attn: Option<usize>,
    /// Cross-attention.
    pub cross: Option<usize>,
    /// The feed-forward after the attention (or a feed-forward on its own).
    pub ff: Option<usize>,
}

impl DecoderConfig {
    /// The default block: ('a', ['c',] 'f'), with `macaron` a first 'f' (`xt:3002-3010`).
    const fn default_block(&self) -> LayerTypes {
        let mut t = LayerTypes::EMPTY;
        if self.macaron {
            t = t.push(Kind::FeedForward);
        }
        t = t.push(Kind::Attention);
        if self.cross_attend {
            t = t.push(Kind::Cross);
        }
        t.push(Kind::FeedForward)
    }

    /// Whether the sublayers are not `depth` default blocks: `custom_layers`, `par_ratio` or
    /// `sandwich_coef` (the first given wins, as in x-transformers).
    pub const fn has_custom_layer_types(&self) -> bool {
        self.custom_layers.is_some() || self.par_ratio.is_some() || self.sandwich_coef.is_some()
    }

    /// `par_ratio`'s (attention sublayers, block width) for the default block without its 'f's
    /// (`xt:3072-3082`): `None` where x-transformers asserts.
    const fn par_shape(&self, ratio: usize) -> Option<(usize, usize)> {
        let par_depth = self.depth.saturating_mul(self.default_block().len());
        if ratio <= 1 || ratio > par_depth {
            return None;
        }
        let par_attn = par_depth / ratio;
        let depth_cut = par_depth * 2 / 3;
        let par_width = (depth_cut + depth_cut / par_attn) / par_attn;
        let attention = if self.cross_attend { 2 } else { 1 };
        if attention > par_width {
            return None;
        }
        Some((par_attn, par_width))
    }

    /// The number of sublayers with weights (`layers.0` …): `custom_layers`' length, the
    /// pattern of `par_ratio` or `sandwich_coef`, one default block with `weight_tie_layers`,
    /// else `depth` of them.
    pub const fn stored_layers(&self) -> usize {
        let block = self.default_block().len();
        if let Some(t) = self.custom_layers {
            t.len()
        } else if self.par_ratio.is_some() {
            self.depth.saturating_mul(block)
        } else if let Some(s) = self.sandwich_coef {
            let middle = self.depth.saturating_sub(s).saturating_mul(block);
            middle.saturating_add(s.saturating_mul(2))
        } else if self.weight_tie_layers {
            block
        } else {
            self.depth.saturating_mul(block)
        }
    }

    /// The kind of sublayer `i` (`layers.i`), for `i` below [`Self::stored_layers`].
    pub const fn stored_kind(&self, i: usize) -> Kind {
        let block = self.default_block();
        if let Some(t) = self.custom_layers {
            return match t.get(i) {
                Some(k) => k,
                None => Kind::FeedForward,
            };
        }
        if let Some(ratio) = self.par_ratio {
            // par_block = the default block without 'f', then 'f's up to par_width; par_attn of
            // them, then 'f's to the end.
            let Some((par_attn, width)) = self.par_shape(ratio) else {
                return Kind::FeedForward;
            };
            if i >= par_attn * width {
                return Kind::FeedForward;
            }
            return match i % width {
                0 => Kind::Attention,
                1 if self.cross_attend => Kind::Cross,
                _ => Kind::FeedForward,
            };
        }
        if let Some(s) = self.sandwich_coef {
            let middle = self.depth.saturating_sub(s).saturating_mul(block.len());
            return if i < s {
                Kind::Attention
            } else if i < s + middle {
                match block.get((i - s) % block.len()) {
                    Some(k) => k,
                    None => Kind::FeedForward,
                }
            } else {
                Kind::FeedForward
            };
        }
        match block.get(i % block.len()) {
            Some(k) => k,
            None => Kind::FeedForward,
        }
    }

    /// The number of sublayer runs: `layers_execute_order`'s length, `depth` default blocks
    /// with `weight_tie_layers`, else every sublayer once.
    pub const fn runs(&self) -> usize {
        if let Some(o) = self.layers_execute_order {
            o.len()
        } else if self.weight_tie_layers {
            self.depth.saturating_mul(self.default_block().len())
        } else {
            self.stored_layers()
        }
    }

    /// Run `j`: which sublayer (`layers.i`) it runs.
    pub const fn run(&self, j: usize) -> usize {
        if let Some(o) = self.layers_execute_order {
            match o.get(j) {
                Some(i) => i,
                None => 0,
            }
        } else if self.weight_tie_layers {
            j % self.default_block().len()
        } else {
            j
        }
    }

    /// The number of runs of sublayers of kind `kind`: the self-attention runs are the KV
    /// cache's layers, the cross-attention runs its context layers.
    pub const fn runs_of(&self, kind: Kind) -> usize {
        if self.is_default_plan() {
            let (block, mut i, mut per) = (self.default_block(), 0, 0);
            while i < block.len() {
                if matches!(block.get(i), Some(k) if k as u8 == kind as u8) {
                    per += 1;
                }
                i += 1;
            }
            return self.depth.saturating_mul(per);
        }
        let (mut j, mut n) = (0, 0);
        // (Bounded for configurations that `validate` refuses: they have no meaningful count.)
        while j < self.runs() && j < LOOP_LIMIT {
            if self.stored_kind(self.run(j)) as u8 == kind as u8 {
                n += 1;
            }
            j += 1;
        }
        n
    }

    /// The kind of run `j`, `None` past the last.
    const fn run_kind(&self, j: usize) -> Option<Kind> {
        if j < self.runs() {
            Some(self.stored_kind(self.run(j)))
        } else {
            None
        }
    }

    /// The block whose first run is `start`, and the run after it: greedily a feed-forward
    /// followed by an attention, a self-attention, a cross-attention, a feed-forward.
    pub const fn block_at(&self, start: usize) -> (BlockPlan, usize) {
        let n = self.runs();
        let mut plan = BlockPlan {
            ff_pre: None,
            attn: None,
            cross: None,
            ff: None,
        };
        let mut j = start;
        if j + 1 < n
            && matches!(self.run_kind(j), Some(Kind::FeedForward))
            && matches!(self.run_kind(j + 1), Some(Kind::Attention | Kind::Cross))
        {
            plan.ff_pre = Some(self.run(j));
            j += 1;
        }
        if matches!(self.run_kind(j), Some(Kind::Attention)) {
            plan.attn = Some(self.run(j));
            j += 1;
        }
        if matches!(self.run_kind(j), Some(Kind::Cross)) {
            plan.cross = Some(self.run(j));
            j += 1;
        }
        if matches!(self.run_kind(j), Some(Kind::FeedForward)) {
            plan.ff = Some(self.run(j));
            j += 1;
        }
        (plan, j)
    }

    /// The number of blocks the runs are cut into ([`Self::block_at`]): `depth` for the
    /// default stack; a decoder holds at most `MAX_DEPTH`.
    pub const fn blocks(&self) -> usize {
        if self.is_default_plan() {
            return self.depth;
        }
        let (mut j, mut b) = (0, 0);
        while j < self.runs() && j < LOOP_LIMIT {
            j = self.block_at(j).1;
            b += 1;
        }
        b
    }

    /// Whether the sublayers are `depth` default blocks run in order (`weight_tie_layers`
    /// included): then there are `depth` blocks of one shape, and nothing here loops over them.
    pub(crate) const fn is_default_plan(&self) -> bool {
        !self.has_custom_layer_types() && self.layers_execute_order.is_none()
    }

    /// The argument that sets the sublayers' kinds, if any (the first given, as x-transformers
    /// reads them).
    const fn custom_argument(&self) -> &'static str {
        if self.custom_layers.is_some() {
            "custom_layers"
        } else if self.par_ratio.is_some() {
            "par_ratio"
        } else {
            "sandwich_coef"
        }
    }

    /// Checks the sublayer plan (part of [`DecoderConfig::validate`], after the sizes).
    pub(crate) const fn validate_layers(&self) -> Result<(), ConfigError> {
        if self.weight_tie_layers && self.has_custom_layer_types() {
            // x-transformers asserts this (xt:3055).
            return Err(ConfigError::Conflict(
                "weight_tie_layers",
                self.custom_argument(),
            ));
        }
        if self.weight_tie_layers && self.layers_execute_order.is_some() {
            return Err(ConfigError::Conflict(
                "weight_tie_layers",
                "layers_execute_order",
            ));
        }
        if let Some(t) = self.custom_layers {
            if t.is_empty() {
                return Err(ConfigError::Layers(
                    "custom_layers",
                    "must list 1 to 64 sublayers, each 'a', 'c' or 'f'",
                ));
            }
        } else if let Some(ratio) = self.par_ratio {
            if self.par_shape(ratio).is_none() {
                return Err(ConfigError::Layers(
                    "par_ratio",
                    "must be above 1 and at most depth × the block's sublayers, with the \
                     attention block no wider than the pattern (x-transformers asserts)",
                ));
            }
        } else if let Some(s) = self.sandwich_coef {
            if s == 0 || s > self.depth {
                return Err(ConfigError::Layers(
                    "sandwich_coef",
                    "must be 1 to depth (x-transformers asserts)",
                ));
            }
        }
        if self.has_custom_layer_types() {
            if self.stored_layers() > 256 {
                return Err(ConfigError::Layers(
                    self.custom_argument(),
                    "more than 256 sublayers",
                ));
            }
            // A 'c' without `cross_attend` would attend to its own input (x-transformers'
            // default context), and `cross_attend` without a 'c' would take a context it
            // never reads: neither is a model anyone trains on purpose.
            let mut i = 0;
            let mut cross = false;
            while i < self.stored_layers() {
                cross |= matches!(self.stored_kind(i), Kind::Cross);
                i += 1;
            }
            if cross != self.cross_attend {
                return Err(ConfigError::Conflict(
                    self.custom_argument(),
                    "cross_attend",
                ));
            }
        }
        if let Some(o) = self.layers_execute_order {
            if o.is_empty() {
                return Err(ConfigError::Layers(
                    "layers_execute_order",
                    "must list 1 to 64 runs, each a sublayer index below 256",
                ));
            }
            if self.stored_layers() > 256 {
                return Err(ConfigError::Layers(
                    "layers_execute_order",
                    "more than 256 sublayers",
                ));
            }
            let mut ran = [false; 256];
            let mut j = 0;
            while j < o.len() {
                let i = self.run(j);
                if i >= self.stored_layers() {
                    return Err(ConfigError::Layers(
                        "layers_execute_order",
                        "runs a sublayer that does not exist",
                    ));
                }
                ran[i] = true;
                j += 1;
            }
            let mut i = 0;
            while i < self.stored_layers() {
                if !ran[i] {
                    return Err(ConfigError::Layers(
                        "layers_execute_order",
                        "never runs one of the sublayers (its weights would be ignored)",
                    ));
                }
                i += 1;
            }
            if self.add_value_residual {
                // The first run of a self-attention keeps its values for the later ones; a
                // reordered stack may run the layer without the learned mix first.
                return Err(ConfigError::Conflict(
                    "add_value_residual",
                    "layers_execute_order",
                ));
            }
        }
        Ok(())
    }
}
