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

use core::num::{NonZeroU128, NonZeroU64};

use crate::config::DecoderConfig;
use crate::error::ConfigError;

/// More runs than a valid plan has (at most 256 stored sublayers): the loops over runs stop
/// here on a configuration that `validate` refuses.
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
    const fn code(self) -> u64 {
        match self {
            Kind::Attention => 1,
            Kind::Cross => 2,
            Kind::FeedForward => 3,
        }
    }

    /// The kind of a letter `a`, `c` or `f`.
    pub const fn from_letter(letter: u8) -> Option<Kind> {
        match letter {
            b'a' => Some(Kind::Attention),
            b'c' => Some(Kind::Cross),
            b'f' => Some(Kind::FeedForward),
            _ => None,
        }
    }
}

/// x-transformers' `custom_layers`: 1 to [`LayerTypes::MAX`] sublayer kinds, two bits each in
/// one word (a configuration is copied through the loader's frames, and every byte of it counts
/// several times on a microcontroller's stack).
///
/// ```
/// use picoformer::{DecoderConfig, LayerTypes};
/// const CFG: DecoderConfig = DecoderConfig::new(64, 1)
///     .heads(4)
///     .custom_layers(LayerTypes::parse("faaf").unwrap());
/// assert_eq!(CFG.blocks(), 2); // ('f', 'a') and ('a', 'f')
/// assert!(CFG.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerTypes(NonZeroU64);

impl LayerTypes {
    /// The most sublayers a list holds.
    pub const MAX: usize = 32;

    /// The kinds of `s`, one letter each: `a`, `c` or `f` (x-transformers takes the string as
    /// well as a tuple of letters); `None` for any other letter, none, or more than [`Self::MAX`].
    pub const fn parse(s: &str) -> Option<Self> {
        Self::from_letters(s.as_bytes())
    }

    /// As [`Self::parse`], from bytes.
    pub const fn from_letters(letters: &[u8]) -> Option<Self> {
        if letters.is_empty() || letters.len() > Self::MAX {
            return None;
        }
        let (mut bits, mut i) = (0u64, 0);
        while i < letters.len() {
            match Kind::from_letter(letters[i]) {
                Some(k) => bits |= k.code() << (2 * i),
                None => return None,
            }
            i += 1;
        }
        match NonZeroU64::new(bits) {
            Some(b) => Some(Self(b)),
            None => None,
        }
    }

    /// The list of `kinds`; `None` for none or more than [`Self::MAX`].
    pub const fn from_kinds(kinds: &[Kind]) -> Option<Self> {
        if kinds.is_empty() || kinds.len() > Self::MAX {
            return None;
        }
        let (mut bits, mut i) = (0u64, 0);
        while i < kinds.len() {
            bits |= kinds[i].code() << (2 * i);
            i += 1;
        }
        match NonZeroU64::new(bits) {
            Some(b) => Some(Self(b)),
            None => None,
        }
    }

    /// The number of kinds (1 to [`Self::MAX`]).
    pub const fn len(&self) -> usize {
        // Every kind's code is nonzero and the list ends at the first zero pair.
        let used = u64::BITS - self.0.get().leading_zeros();
        used.div_ceil(2) as usize
    }

    /// Always false: a list has at least one kind.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Kind `i`.
    pub const fn get(&self, i: usize) -> Option<Kind> {
        if i >= self.len() {
            return None;
        }
        match (self.0.get() >> (2 * i)) & 3 {
            1 => Some(Kind::Attention),
            2 => Some(Kind::Cross),
            _ => Some(Kind::FeedForward),
        }
    }
}

/// x-transformers' `layers_execute_order`: 1 to [`ExecuteOrder::MAX`] runs, each the index of a
/// sublayer below 63, six bits each in one 128-bit word (see [`LayerTypes`] on why compact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecuteOrder(NonZeroU128);

impl ExecuteOrder {
    /// The most runs an order holds.
    pub const MAX: usize = 21;
    /// Sublayer indices are below this.
    pub const MAX_INDEX: usize = 63;

    /// The runs of `order`; `None` for none, more than [`Self::MAX`], or an index of
    /// [`Self::MAX_INDEX`] or more.
    pub const fn new(order: &[usize]) -> Option<Self> {
        if order.is_empty() || order.len() > Self::MAX {
            return None;
        }
        let (mut bits, mut i) = (0u128, 0);
        while i < order.len() {
            if order[i] >= Self::MAX_INDEX {
                return None;
            }
            // index + 1: a zero field ends the order.
            bits |= ((order[i] + 1) as u128) << (6 * i);
            i += 1;
        }
        match NonZeroU128::new(bits) {
            Some(b) => Some(Self(b)),
            None => None,
        }
    }

    /// The number of runs (1 to [`Self::MAX`]).
    pub const fn len(&self) -> usize {
        let used = u128::BITS - self.0.get().leading_zeros();
        used.div_ceil(6) as usize
    }

    /// Always false: an order has at least one run.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Run `i`'s sublayer index.
    pub const fn get(&self, i: usize) -> Option<usize> {
        if i >= self.len() {
            return None;
        }
        Some(((self.0.get() >> (6 * i)) & 63) as usize - 1)
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
        let mut kinds = [Kind::FeedForward; 4];
        let mut n = self.macaron as usize;
        kinds[n] = Kind::Attention;
        n += 1;
        if self.cross_attend {
            kinds[n] = Kind::Cross;
            n += 1;
        }
        match LayerTypes::from_kinds(kinds.split_at(n + 1).0) {
            Some(t) => t,
            None => LayerTypes(NonZeroU64::MIN), // (never: 2 to 4 kinds)
        }
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
            let s = s as usize;
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
            let ratio = ratio as usize;
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
            let s = s as usize;
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
        if self.custom_layers.is_some() {
            // (`LayerTypes` holds 1 to 32 kinds by construction.)
        } else if let Some(ratio) = self.par_ratio {
            if self.par_shape(ratio as usize).is_none() {
                return Err(ConfigError::Layers(
                    "par_ratio",
                    "must be above 1 and at most depth × the block's sublayers, with the \
                     attention block no wider than the pattern (x-transformers asserts)",
                ));
            }
        } else if let Some(s) = self.sandwich_coef {
            if s == 0 || s as usize > self.depth {
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
            // Indices are below 63 (`ExecuteOrder`), so 63 sublayers at most can all run.
            if self.stored_layers() > ExecuteOrder::MAX_INDEX {
                return Err(ConfigError::Layers(
                    "layers_execute_order",
                    "over 63 sublayers, more than an order can name",
                ));
            }
            let mut ran = 0u64;
            let mut j = 0;
            while j < o.len() {
                let i = self.run(j);
                if i >= self.stored_layers() {
                    return Err(ConfigError::Layers(
                        "layers_execute_order",
                        "runs a sublayer that does not exist",
                    ));
                }
                ran |= 1 << i;
                j += 1;
            }
            let mut i = 0;
            while i < self.stored_layers() {
                if ran & (1 << i) == 0 {
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
