//! Weight views for a decoder and a wrapper, looked up by x-transformers' `state_dict` keys and
//! checked against the configuration once, at construction. Nothing is copied.
//!
//! Key layout (`docs/x-transformers.md` §4): sublayer ℓ counts every sublayer in order
//! ('a', then 'c' with cross-attention, then 'f' per block); `layers.ℓ.0.0.*` is its pre-norm,
//! `layers.ℓ.1.*` its attention or feed-forward module.

use core::fmt::Write;

use crate::config::{DecoderConfig, Norm, WrapperConfig};
use crate::error::{Dims, Error, WeightName};
use crate::tensor::{Tensor, TensorSource};

/// Attention sublayer weights (self or cross). Shapes: `to_q [H·d, D]`, `to_k`/`to_v [H_kv·d, D_in]`
/// (D_in = dim_context for cross-attention), `to_out [D, H·d]` (absent with one head).
#[derive(Clone, Copy, Debug)]
pub struct AttentionWeights<'w> {
    /// Pre-norm gain (stored as gain − 1), `None` for `use_simple_rmsnorm`.
    pub norm: Option<Tensor<'w>>,
    /// W_q `[H·d, D]`.
    pub to_q: Tensor<'w>,
    /// W_k `[H_kv·d, D_in]`.
    pub to_k: Tensor<'w>,
    /// W_v `[H_kv·d, D_in]`.
    pub to_v: Tensor<'w>,
    /// W_o `[D, H·d]`, or `None` when `heads == 1`.
    pub to_out: Option<Tensor<'w>>,
}

/// Feed-forward sublayer weights.
#[derive(Clone, Copy, Debug)]
pub struct FeedForwardWeights<'w> {
    /// Pre-norm gain (stored as gain − 1), `None` for `use_simple_rmsnorm`.
    pub norm: Option<Tensor<'w>>,
    /// Input projection `[F, D]`, or `[2F, D]` with GLU (rows 0..F up, F..2F gate).
    pub proj: Tensor<'w>,
    /// Its bias (always present with GLU, absent with `ff_no_bias` otherwise).
    pub proj_bias: Option<Tensor<'w>>,
    /// Output projection `[D, F]`.
    pub out: Tensor<'w>,
    /// Its bias (absent with `ff_no_bias`).
    pub out_bias: Option<Tensor<'w>>,
}

/// One block: self-attention, optional cross-attention, feed-forward.
#[derive(Clone, Copy, Debug)]
pub struct BlockWeights<'w> {
    /// Self-attention ('a').
    pub attn: AttentionWeights<'w>,
    /// Cross-attention ('c'), with `cross_attend`.
    pub cross: Option<AttentionWeights<'w>>,
    /// Feed-forward ('f').
    pub ff: FeedForwardWeights<'w>,
}

/// All weights of a `Decoder`, for up to `MAX_DEPTH` blocks.
#[derive(Clone, Debug)]
pub struct DecoderWeights<'w, const MAX_DEPTH: usize = 16> {
    /// The blocks, in order.
    pub blocks: heapless::Vec<BlockWeights<'w>, MAX_DEPTH>,
    /// Final norm gain (stored as gain − 1), `None` for `use_simple_rmsnorm`.
    pub final_norm: Option<Tensor<'w>>,
    /// `rotary_pos_emb.inv_freq` `[r/2]` if the file has it; otherwise it is computed.
    pub inv_freq: Option<Tensor<'w>>,
    /// How many tensors were taken from the source (to detect unexpected extra tensors).
    pub tensors_used: usize,
}

/// Looks tensors up by key with shape checks.
struct Loader<'s, S> {
    source: &'s S,
    prefix: &'static str,
    used: usize,
}

impl<'w, S: TensorSource<'w>> Loader<'_, S> {
    fn lookup(&mut self, name: WeightName, shape: &[usize]) -> Result<Option<Tensor<'w>>, Error> {
        let mut key: heapless::String<128> = heapless::String::new();
        if write!(key, "{name}").is_err() {
            return Err(Error::MissingWeight(name));
        }
        let Some(view) = self.source.tensor(&key) else {
            return Ok(None);
        };
        let expected: usize = shape.iter().product();
        if view.dims() != shape || view.data.len() != expected {
            return Err(Error::WeightShape {
                name,
                expected: Dims::new(shape),
                found: Dims::new(view.dims()),
            });
        }
        self.used += 1;
        Ok(Some(view.data))
    }

    fn name(&self, sublayer: Option<usize>, suffix: &'static str) -> WeightName {
        WeightName {
            prefix: self.prefix,
            sublayer: sublayer.map(|l| l as u32),
            suffix,
        }
    }

    fn required(
        &mut self,
        sublayer: Option<usize>,
        suffix: &'static str,
        shape: &[usize],
    ) -> Result<Tensor<'w>, Error> {
        let name = self.name(sublayer, suffix);
        self.lookup(name, shape)?.ok_or(Error::MissingWeight(name))
    }

    fn optional(
        &mut self,
        sublayer: Option<usize>,
        suffix: &'static str,
        shape: &[usize],
    ) -> Result<Option<Tensor<'w>>, Error> {
        let name = self.name(sublayer, suffix);
        self.lookup(name, shape)
    }

    /// A norm gain: `gamma` for LayerNorm, `g` for RMSNorm, nothing for SimpleRMSNorm.
    fn norm(
        &mut self,
        cfg: &DecoderConfig,
        sublayer: Option<usize>,
        ln: &'static str,
        rms: &'static str,
    ) -> Result<Option<Tensor<'w>>, Error> {
        match cfg.norm() {
            Norm::LayerNorm => self.required(sublayer, ln, &[cfg.dim]).map(Some),
            Norm::RmsNorm => self.required(sublayer, rms, &[cfg.dim]).map(Some),
            Norm::SimpleRmsNorm => Ok(None),
        }
    }

    fn attention(
        &mut self,
        cfg: &DecoderConfig,
        l: usize,
        d_in: usize,
    ) -> Result<AttentionWeights<'w>, Error> {
        let (q, kv, d) = (cfg.q_dim(), cfg.kv_dim(), cfg.dim);
        Ok(AttentionWeights {
            norm: self.norm(cfg, Some(l), "0.0.gamma", "0.0.g")?,
            to_q: self.required(Some(l), "1.to_q.weight", &[q, d])?,
            to_k: self.required(Some(l), "1.to_k.weight", &[kv, d_in])?,
            to_v: self.required(Some(l), "1.to_v.weight", &[kv, d_in])?,
            to_out: if cfg.has_to_out() {
                Some(self.required(Some(l), "1.to_out.weight", &[d, q])?)
            } else {
                None
            },
        })
    }

    fn feed_forward(
        &mut self,
        cfg: &DecoderConfig,
        l: usize,
    ) -> Result<FeedForwardWeights<'w>, Error> {
        let (d, f, p) = (cfg.dim, cfg.ff_inner(), cfg.ff_proj_rows());
        let norm = self.norm(cfg, Some(l), "0.0.gamma", "0.0.g")?;
        let (proj, proj_bias) = if cfg.ff_glu {
            // The GLU projection always has a bias, even with ff_no_bias (xt:1729-1761).
            (
                self.required(Some(l), "1.ff.0.proj.weight", &[p, d])?,
                Some(self.required(Some(l), "1.ff.0.proj.bias", &[p])?),
            )
        } else {
            let w = self.required(Some(l), "1.ff.0.0.weight", &[p, d])?;
            let b = if cfg.ff_no_bias {
                None
            } else {
                Some(self.required(Some(l), "1.ff.0.0.bias", &[p])?)
            };
            (w, b)
        };
        let out = self.required(Some(l), "1.ff.2.weight", &[d, f])?;
        let out_bias = if cfg.ff_no_bias {
            None
        } else {
            Some(self.required(Some(l), "1.ff.2.bias", &[d])?)
        };
        Ok(FeedForwardWeights {
            norm,
            proj,
            proj_bias,
            out,
            out_bias,
        })
    }
}

impl<'w, const MAX_DEPTH: usize> DecoderWeights<'w, MAX_DEPTH> {
    /// Looks up every weight of a `Decoder` with this configuration. `prefix` is `""` for a raw
    /// Decoder's `state_dict` and `"attn_layers."` under a `TransformerWrapper`.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::DepthExceedsCapacity`],
    /// [`Error::MissingWeight`] and [`Error::WeightShape`] naming the offending key.
    pub fn from_source<S: TensorSource<'w>>(
        cfg: &DecoderConfig,
        source: &S,
        prefix: &'static str,
    ) -> Result<Self, Error> {
        let mut weights = Self::empty();
        weights.load(cfg, source, prefix)?;
        Ok(weights)
    }

    /// No blocks, no tensors: what [`Self::load`] fills.
    pub(crate) const fn empty() -> Self {
        Self {
            blocks: heapless::Vec::new(),
            final_norm: None,
            inv_freq: None,
            tensors_used: 0,
        }
    }

    /// [`Self::from_source`] into `self` (empty), in place: the table is written once where it
    /// lives instead of being built on the stack and moved out (a few hundred bytes per block
    /// on the stack of a microcontroller, per move).
    ///
    /// # Errors
    /// As [`Self::from_source`]; `self` may then hold some of the blocks.
    pub(crate) fn load<S: TensorSource<'w>>(
        &mut self,
        cfg: &DecoderConfig,
        source: &S,
        prefix: &'static str,
    ) -> Result<(), Error> {
        cfg.validate()?;
        if cfg.depth > MAX_DEPTH {
            return Err(Error::DepthExceedsCapacity {
                depth: cfg.depth,
                max_depth: MAX_DEPTH,
            });
        }
        let mut ld = Loader {
            source,
            prefix,
            used: 0,
        };
        let per = cfg.sublayers_per_block();
        for b in 0..cfg.depth {
            let l = b * per;
            let attn = ld.attention(cfg, l, cfg.dim)?;
            let cross = if cfg.cross_attend {
                Some(ld.attention(cfg, l + 1, cfg.dim_context())?)
            } else {
                None
            };
            let ff = ld.feed_forward(cfg, l + per - 1)?;
            // Cannot fail: depth <= MAX_DEPTH was checked above.
            let _ = self.blocks.push(BlockWeights { attn, cross, ff });
        }
        self.final_norm = ld.norm(cfg, None, "final_norm.gamma", "final_norm.g")?;
        self.inv_freq = if cfg.rotary_pos_emb {
            ld.optional(None, "rotary_pos_emb.inv_freq", &[cfg.rotary_dim() / 2])?
        } else {
            None
        };
        self.tensors_used = ld.used;
        Ok(())
    }
}

/// The `TransformerWrapper`'s own weights (the decoder's are in [`DecoderWeights`]).
#[derive(Clone, Copy, Debug)]
pub struct WrapperWeights<'w> {
    /// `token_emb.emb.weight` `[V, D]`.
    pub token_emb: Tensor<'w>,
    /// `pos_emb.emb.weight` `[max_seq_len, D]`, when the wrapper has absolute positions.
    pub pos_emb: Option<Tensor<'w>>,
    /// `to_logits.weight` `[V, D]`, absent with `tie_embedding`.
    pub to_logits: Option<Tensor<'w>>,
    /// How many tensors were taken from the source.
    pub tensors_used: usize,
}

impl<'w> WrapperWeights<'w> {
    /// Looks up the wrapper's weights.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::MissingWeight`], [`Error::WeightShape`].
    pub fn from_source<S: TensorSource<'w>>(
        cfg: &WrapperConfig,
        source: &S,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let d = cfg.attn_layers.dim;
        let mut ld = Loader {
            source,
            prefix: "",
            used: 0,
        };
        let token_emb = ld.required(None, "token_emb.emb.weight", &[cfg.num_tokens, d])?;
        let pos_emb = if cfg.has_abs_pos_emb() {
            Some(ld.required(None, "pos_emb.emb.weight", &[cfg.max_seq_len, d])?)
        } else {
            None
        };
        let to_logits = if cfg.tie_embedding {
            None
        } else {
            Some(ld.required(None, "to_logits.weight", &[cfg.num_tokens, d])?)
        };
        Ok(Self {
            token_emb,
            pos_emb,
            to_logits,
            tensors_used: ld.used,
        })
    }
}
