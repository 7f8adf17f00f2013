//! Weight views for a decoder and a wrapper, looked up by x-transformers' `state_dict` keys and
//! checked against the configuration once, at construction. Nothing is copied.
//!
//! Key layout (`docs/x-transformers.md` §4): sublayer ℓ counts every sublayer in order
//! ('a', then 'c' with cross-attention, then 'f' per block); `layers.ℓ.0.0.*` is its pre-norm,
//! `layers.ℓ.1.*` its attention or feed-forward module.

use core::fmt::Write;

use crate::config::{DecoderConfig, Norm, WrapperConfig};
use crate::error::{Error, WeightName};
use crate::layers::Kind;
use crate::tensor::{Tensor, TensorSource};

/// Attention sublayer weights (self or cross). Shapes: `to_q [H·d, D]`, `to_k`/`to_v [H_kv·d, D_in]`
/// (D_in = dim_context for cross-attention), `to_out [D, H·d]` (absent with one head).
#[derive(Clone, Copy, Debug)]
pub struct AttentionWeights<'w> {
    /// Pre-norm gain (stored as gain − 1), `None` for `use_simple_rmsnorm` or post-norm.
    pub norm: Option<Tensor<'w>>,
    /// The norms after the branch (`sandwich_norm`, `layers.ℓ.0.1`) and after the residual add
    /// (post-norm, `layers.ℓ.0.2`), when configured and with a gain.
    pub post: PostNorms<'w>,
    /// W_q `[H·d, D]`.
    pub to_q: Tensor<'w>,
    /// W_k `[H_kv·d, D_in]`.
    pub to_k: Tensor<'w>,
    /// W_v `[H_kv·d, D_in]`.
    pub to_v: Tensor<'w>,
    /// W_o `[D, H·d]`, or `None` when `heads == 1`.
    pub to_out: Option<Tensor<'w>>,
    /// `attn_head_scale`: `head_scale_params` `[1, H, 1, 1]`.
    pub head_scale: Option<Tensor<'w>>,
    /// `attn_gate_values`: `to_v_gate.weight` `[H·d, D]`.
    pub to_v_gate: Option<Tensor<'w>>,
    /// `attn_qk_norm_dim_scale`: `qk_norm_q_scale` `[H, 1, d]`.
    pub qk_norm_q_scale: Option<Tensor<'w>>,
    /// `attn_qk_norm_dim_scale`: `qk_norm_k_scale` `[H_kv, 1, d]`.
    pub qk_norm_k_scale: Option<Tensor<'w>>,
    /// `attn_value_rmsnorm`: `value_rmsnorm.gamma` `[H, 1, d]`.
    pub value_rmsnorm: Option<Tensor<'w>>,
    /// `attn_num_mem_kv`: the memory keys and values `mem_k`, `mem_v` `[H_kv, M, d]`.
    pub mem_kv: Option<(Tensor<'w>, Tensor<'w>)>,
    /// `add_value_residual` with a learned mix, self-attention after the first:
    /// `to_value_residual_mix.0.weight` `[H, D]` and `.bias` `[H]`.
    pub value_residual_mix: Option<(Tensor<'w>, Tensor<'w>)>,
}

impl AttentionWeights<'_> {
    /// No tensors (what the loader fills in place).
    const EMPTY: AttentionWeights<'static> = AttentionWeights {
        norm: None,
        post: PostNorms::NONE,
        to_q: Tensor::EMPTY,
        to_k: Tensor::EMPTY,
        to_v: Tensor::EMPTY,
        to_out: None,
        head_scale: None,
        to_v_gate: None,
        qk_norm_q_scale: None,
        qk_norm_k_scale: None,
        value_rmsnorm: None,
        mem_kv: None,
        value_residual_mix: None,
    };
}

/// A sublayer's norms other than its pre-norm (gains stored as gain − 1; `None` when the norm
/// is not configured or has no gain).
#[derive(Clone, Copy, Debug, Default)]
pub struct PostNorms<'w> {
    /// `sandwich_norm`: `layers.ℓ.0.1`, on the branch output before the residual add.
    pub branch: Option<Tensor<'w>>,
    /// Post-norm (`pre_norm=False`): `layers.ℓ.0.2`, after the residual add.
    pub main: Option<Tensor<'w>>,
    /// `scale_residual`: `layers.ℓ.2.residual_scale` `[D]`, the gain of the residual path.
    pub residual_scale: Option<Tensor<'w>>,
    /// `use_layerscale`: `layers.ℓ.1.gamma` `[D]`, the gain of the branch output.
    pub layerscale: Option<Tensor<'w>>,
    /// `gate_residual`: the GRU cell `layers.ℓ.2.gru` that replaces the residual add.
    pub gru: Option<GruWeights<'w>>,
}

/// `gate_residual`'s `nn.GRUCell(dim, dim)`: rows in the gate order r, z, n.
#[derive(Clone, Copy, Debug)]
pub struct GruWeights<'w> {
    /// `gru.weight_ih` `[3D, D]`, on the branch output.
    pub weight_ih: Tensor<'w>,
    /// `gru.weight_hh` `[3D, D]`, on the residual.
    pub weight_hh: Tensor<'w>,
    /// `gru.bias_ih` `[3D]`.
    pub bias_ih: Tensor<'w>,
    /// `gru.bias_hh` `[3D]`.
    pub bias_hh: Tensor<'w>,
}

impl PostNorms<'_> {
    /// None of them.
    const NONE: PostNorms<'static> = PostNorms {
        branch: None,
        main: None,
        residual_scale: None,
        layerscale: None,
        gru: None,
    };
}

/// Feed-forward sublayer weights.
#[derive(Clone, Copy, Debug)]
pub struct FeedForwardWeights<'w> {
    /// Pre-norm gain (stored as gain − 1), `None` for `use_simple_rmsnorm` or post-norm.
    pub norm: Option<Tensor<'w>>,
    /// The norms after the branch and after the residual add ([`PostNorms`]).
    pub post: PostNorms<'w>,
    /// Input projection `[F, D]`, or `[2F, D]` with GLU (rows 0..F up, F..2F gate).
    pub proj: Tensor<'w>,
    /// Its bias (always present with GLU, absent with `ff_no_bias` otherwise).
    pub proj_bias: Option<Tensor<'w>>,
    /// `ff_glu_mult_bias` with GLU: `ff.0.mult_bias` `[F]`.
    pub mult_bias: Option<Tensor<'w>>,
    /// `ff_post_act_ln`: the hidden LayerNorm's gain `ff.1.gamma` `[F]` (as stored).
    pub post_act_ln: Option<Tensor<'w>>,
    /// Output projection `[D, F]` (`ff.2`, or `ff.3` after the hidden LayerNorm).
    pub out: Tensor<'w>,
    /// Its bias (absent with `ff_no_bias`).
    pub out_bias: Option<Tensor<'w>>,
}

/// One block ([`crate::layers::BlockPlan`]): up to four sublayers, run in the order `ff_pre`,
/// `attn`, `cross`, `ff`. The default stack's blocks are ('a', ['c',] 'f'), with `macaron`
/// ('f', 'a', ['c',] 'f').
#[derive(Clone, Copy, Debug)]
pub struct BlockWeights<'w> {
    /// A feed-forward before the attention (`macaron`'s first).
    pub ff_pre: Option<FeedForwardWeights<'w>>,
    /// Self-attention ('a').
    pub attn: Option<AttentionWeights<'w>>,
    /// Cross-attention ('c').
    pub cross: Option<AttentionWeights<'w>>,
    /// Feed-forward ('f').
    pub ff: Option<FeedForwardWeights<'w>>,
}

impl FeedForwardWeights<'_> {
    /// No tensors (what the loader fills in place).
    const EMPTY: FeedForwardWeights<'static> = FeedForwardWeights {
        norm: None,
        post: PostNorms::NONE,
        proj: Tensor::EMPTY,
        proj_bias: None,
        mult_bias: None,
        post_act_ln: None,
        out: Tensor::EMPTY,
        out_bias: None,
    };
}

impl BlockWeights<'_> {
    /// No tensors (what the loader fills in place).
    const EMPTY: BlockWeights<'static> = BlockWeights {
        ff_pre: None,
        attn: None,
        cross: None,
        ff: None,
    };
}

/// All weights of a `Decoder`, for up to `MAX_DEPTH` blocks.
#[derive(Clone, Debug)]
pub struct DecoderWeights<'w, const MAX_DEPTH: usize = 16> {
    /// The blocks, in order.
    pub blocks: heapless::Vec<BlockWeights<'w>, MAX_DEPTH>,
    /// Final norm gain (stored as gain − 1), `None` for `use_simple_rmsnorm` or without a final
    /// norm ([`DecoderConfig::has_final_norm`]).
    pub final_norm: Option<Tensor<'w>>,
    /// `rotary_pos_emb.inv_freq` `[r/2]` if the file has it; otherwise it is computed.
    pub inv_freq: Option<Tensor<'w>>,
    /// `rotary_xpos`: `rotary_pos_emb.scale` `[r/2]` if the file has it; otherwise it is computed.
    pub xpos_scale: Option<Tensor<'w>>,
    /// How many tensors were taken from the source (to detect unexpected extra tensors).
    pub tensors_used: usize,
}

/// The key `layers.ℓ.1.<key>` of a sublayer's module under `$wrap` wrappers (`LayerScale` with
/// `use_layerscale`): `1.<key>`, `1.fn.<key>` or `1.fn.fn.<key>`, as a `&'static str`.
macro_rules! module_key {
    ($wrap:expr, $key:literal) => {
        match $wrap {
            0 => concat!("1.", $key),
            1 => concat!("1.fn.", $key),
            _ => concat!("1.fn.fn.", $key),
        }
    };
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
        let data = view.weight(name, shape)?;
        self.used += 1;
        Ok(Some(data))
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

    /// A norm gain: `gamma` for LayerNorm, `g` for RMSNorm, `g` of shape (1,) for ScaleNorm,
    /// nothing for SimpleRMSNorm.
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
            Norm::ScaleNorm => self.required(sublayer, rms, &[1]).map(Some),
            Norm::SimpleRmsNorm => Ok(None),
        }
    }

    /// A sublayer's pre-norm gain (`layers.ℓ.0.0`), with `pre_norm`.
    fn pre_norm(&mut self, cfg: &DecoderConfig, l: usize) -> Result<Option<Tensor<'w>>, Error> {
        if cfg.pre_norm {
            self.norm(cfg, Some(l), "0.0.gamma", "0.0.g")
        } else {
            Ok(None)
        }
    }

    /// A sublayer's sandwich and post-norm gains (`layers.ℓ.0.1`, `layers.ℓ.0.2`), residual
    /// scale, layer scale and residual gate, into `post` (in place in the table).
    fn post_norms(
        &mut self,
        cfg: &DecoderConfig,
        l: usize,
        post: &mut PostNorms<'w>,
    ) -> Result<(), Error> {
        post.branch = if cfg.sandwich_norm {
            self.norm(cfg, Some(l), "0.1.gamma", "0.1.g")?
        } else {
            None
        };
        post.main = if cfg.pre_norm {
            None
        } else {
            self.norm(cfg, Some(l), "0.2.gamma", "0.2.g")?
        };
        post.residual_scale = if cfg.scale_residual {
            Some(self.required(Some(l), "2.residual_scale", &[cfg.dim])?)
        } else {
            None
        };
        post.layerscale = if cfg.use_layerscale {
            Some(self.required(Some(l), "1.gamma", &[cfg.dim])?)
        } else {
            None
        };
        post.gru = if cfg.gate_residual {
            let (d, g) = (cfg.dim, cfg.dim.saturating_mul(3));
            Some(GruWeights {
                weight_ih: self.required(Some(l), "2.gru.weight_ih", &[g, d])?,
                weight_hh: self.required(Some(l), "2.gru.weight_hh", &[g, d])?,
                bias_ih: self.required(Some(l), "2.gru.bias_ih", &[g])?,
                bias_hh: self.required(Some(l), "2.gru.bias_hh", &[g])?,
            })
        } else {
            None
        };
        Ok(())
    }

    /// Fills `w` (an attention sublayer's weights, in place in the table) for sublayer `l`.
    fn attention(
        &mut self,
        cfg: &DecoderConfig,
        l: usize,
        d_in: usize,
        w: &mut AttentionWeights<'w>,
    ) -> Result<(), Error> {
        let (q, kv, d) = (cfg.q_dim(), cfg.kv_dim(), cfg.dim);
        let dim_scale = cfg.attn_qk_norm && cfg.attn_qk_norm_dim_scale;
        let wrap = usize::from(cfg.use_layerscale);
        w.norm = self.pre_norm(cfg, l)?;
        self.post_norms(cfg, l, &mut w.post)?;
        w.to_q = self.required(Some(l), module_key!(wrap, "to_q.weight"), &[q, d])?;
        w.to_k = self.required(Some(l), module_key!(wrap, "to_k.weight"), &[kv, d_in])?;
        w.to_v = self.required(Some(l), module_key!(wrap, "to_v.weight"), &[kv, d_in])?;
        w.to_out = if cfg.has_to_out() {
            Some(self.required(Some(l), module_key!(wrap, "to_out.weight"), &[d, q])?)
        } else {
            None
        };
        w.head_scale = if cfg.attn_head_scale {
            Some(self.required(
                Some(l),
                module_key!(wrap, "head_scale_params"),
                &[1, cfg.heads, 1, 1],
            )?)
        } else {
            None
        };
        w.to_v_gate = if cfg.attn_gate_values {
            Some(self.required(Some(l), module_key!(wrap, "to_v_gate.weight"), &[q, d])?)
        } else {
            None
        };
        w.qk_norm_q_scale = if dim_scale {
            let shape = [cfg.heads, 1, cfg.attn_dim_head];
            Some(self.required(Some(l), module_key!(wrap, "qk_norm_q_scale"), &shape)?)
        } else {
            None
        };
        w.qk_norm_k_scale = if dim_scale {
            let shape = [cfg.kv_heads(), 1, cfg.attn_dim_head];
            Some(self.required(Some(l), module_key!(wrap, "qk_norm_k_scale"), &shape)?)
        } else {
            None
        };
        w.value_rmsnorm = if cfg.attn_value_rmsnorm {
            let shape = [cfg.heads, 1, cfg.attn_dim_head];
            Some(self.required(Some(l), module_key!(wrap, "value_rmsnorm.gamma"), &shape)?)
        } else {
            None
        };
        w.mem_kv = if cfg.attn_num_mem_kv > 0 {
            let shape = [cfg.kv_heads(), cfg.attn_num_mem_kv, cfg.attn_dim_head];
            Some((
                self.required(Some(l), module_key!(wrap, "mem_k"), &shape)?,
                self.required(Some(l), module_key!(wrap, "mem_v"), &shape)?,
            ))
        } else {
            None
        };
        Ok(())
    }

    /// Runs `load`; if `again`, the tensors it looks up were counted before and are not
    /// counted twice.
    fn counted_once(
        &mut self,
        again: bool,
        load: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let used = self.used;
        load(self)?;
        if again {
            self.used = used;
        }
        Ok(())
    }

    /// The learned value-residual mix of self-attention sublayer `l` (`add_value_residual`
    /// with `learned_value_residual_mix`, every self-attention but the first).
    fn value_residual_mix(
        &mut self,
        cfg: &DecoderConfig,
        l: usize,
        w: &mut AttentionWeights<'w>,
    ) -> Result<(), Error> {
        let wrap = usize::from(cfg.use_layerscale);
        let (h, d) = (cfg.heads, cfg.dim);
        w.value_residual_mix = Some((
            self.required(
                Some(l),
                module_key!(wrap, "to_value_residual_mix.0.weight"),
                &[h, d],
            )?,
            self.required(
                Some(l),
                module_key!(wrap, "to_value_residual_mix.0.bias"),
                &[h],
            )?,
        ));
        Ok(())
    }

    /// Fills `w` (a feed-forward sublayer's weights, in place in the table) for sublayer `l`.
    fn feed_forward(
        &mut self,
        cfg: &DecoderConfig,
        l: usize,
        w: &mut FeedForwardWeights<'w>,
    ) -> Result<(), Error> {
        let (d, f, p) = (cfg.dim, cfg.ff_inner(), cfg.ff_proj_rows());
        // LayerScale(Scale(0.5, FeedForward)) with macaron.
        let wrap = usize::from(cfg.use_layerscale) + usize::from(cfg.macaron);
        w.norm = self.pre_norm(cfg, l)?;
        self.post_norms(cfg, l, &mut w.post)?;
        (w.proj, w.proj_bias) = if cfg.ff_glu {
            // The GLU projection always has a bias, even with ff_no_bias (xt:1729-1761).
            (
                self.required(Some(l), module_key!(wrap, "ff.0.proj.weight"), &[p, d])?,
                Some(self.required(Some(l), module_key!(wrap, "ff.0.proj.bias"), &[p])?),
            )
        } else {
            let w = self.required(Some(l), module_key!(wrap, "ff.0.0.weight"), &[p, d])?;
            let b = if cfg.ff_no_bias {
                None
            } else {
                Some(self.required(Some(l), module_key!(wrap, "ff.0.0.bias"), &[p])?)
            };
            (w, b)
        };
        w.mult_bias = if cfg.ff_glu && cfg.ff_glu_mult_bias {
            Some(self.required(Some(l), module_key!(wrap, "ff.0.mult_bias"), &[f])?)
        } else {
            None
        };
        // ff_post_act_ln: LayerNorm(F) is ff.1 and the output linear moves to ff.3 (the
        // Sequential drops the absent modules, xt:1822-1828).
        let (out_w, out_b);
        (w.post_act_ln, out_w, out_b) = if cfg.ff_post_act_ln {
            let g = self.required(Some(l), module_key!(wrap, "ff.1.gamma"), &[f])?;
            (
                Some(g),
                module_key!(wrap, "ff.3.weight"),
                module_key!(wrap, "ff.3.bias"),
            )
        } else {
            (
                None,
                module_key!(wrap, "ff.2.weight"),
                module_key!(wrap, "ff.2.bias"),
            )
        };
        w.out = self.required(Some(l), out_w, &[d, f])?;
        w.out_bias = if cfg.ff_no_bias {
            None
        } else {
            Some(self.required(Some(l), out_b, &[d])?)
        };
        Ok(())
    }
}

impl<'w, const MAX_DEPTH: usize> DecoderWeights<'w, MAX_DEPTH> {
    /// No blocks, no tensors: what [`Self::load`] fills.
    pub(crate) const fn empty() -> Self {
        Self {
            blocks: heapless::Vec::new(),
            final_norm: None,
            inv_freq: None,
            xpos_scale: None,
            tensors_used: 0,
        }
    }

    /// Makes this table [`Self::empty`] in place (no table-sized temporary on the stack).
    pub(crate) fn reset(&mut self) {
        let DecoderWeights {
            blocks,
            final_norm,
            inv_freq,
            xpos_scale,
            tensors_used,
        } = self;
        blocks.clear();
        *final_norm = None;
        *inv_freq = None;
        *xpos_scale = None;
        *tensors_used = 0;
    }

    /// Looks up every weight of a `Decoder` with this configuration into `self` (empty), in
    /// place: the table is written once where it lives instead of being built on the stack and
    /// moved out (a few hundred bytes per block on the stack of a microcontroller, per move).
    /// `prefix` is `""` for a raw Decoder's `state_dict` and `"attn_layers."` under a
    /// `TransformerWrapper`.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::DepthExceedsCapacity`],
    /// [`Error::MissingWeight`] and [`Error::WeightShape`] naming the offending key; `self` may
    /// then hold blocks only partly filled.
    pub(crate) fn load<S: TensorSource<'w>>(
        &mut self,
        cfg: &DecoderConfig,
        source: &S,
        prefix: &'static str,
    ) -> Result<(), Error> {
        cfg.validate()?;
        let blocks = cfg.blocks();
        if blocks > MAX_DEPTH {
            return Err(Error::DepthExceedsCapacity {
                depth: blocks,
                max_depth: MAX_DEPTH,
            });
        }
        let mut ld = Loader {
            source,
            prefix,
            used: 0,
        };
        // Every block is written where it lives, sublayer by sublayer, rather than assembled on
        // the stack and pushed. Cannot fail: blocks <= MAX_DEPTH was checked above.
        self.blocks.clear();
        let _ = self.blocks.resize(blocks, BlockWeights::EMPTY);
        // The first self-attention has no learned value-residual mix (xt:3220-3223).
        let first_attn =
            (0..cfg.stored_layers()).find(|&i| matches!(cfg.stored_kind(i), Kind::Attention));
        // Sublayer `l` at run `j`: a sublayer that ran before (`weight_tie_layers`,
        // `layers_execute_order`) is looked up again, its tensors counted once.
        let again = |l: usize, j: usize| (0..j).any(|k| cfg.run(k) == l);
        let mut j = 0;
        for block in self.blocks.iter_mut() {
            let (plan, next) = cfg.block_at(j);
            if let Some(l) = plan.ff_pre {
                let ff = block.ff_pre.insert(FeedForwardWeights::EMPTY);
                ld.counted_once(again(l, j), |ld| ld.feed_forward(cfg, l, ff))?;
                j += 1;
            }
            if let Some(l) = plan.attn {
                let attn = block.attn.insert(AttentionWeights::EMPTY);
                let mix = cfg.add_value_residual
                    && cfg.learned_value_residual_mix
                    && first_attn != Some(l);
                ld.counted_once(again(l, j), |ld| {
                    ld.attention(cfg, l, cfg.dim, attn)?;
                    if mix {
                        ld.value_residual_mix(cfg, l, attn)?;
                    }
                    Ok(())
                })?;
                j += 1;
            }
            if let Some(l) = plan.cross {
                let cross = block.cross.insert(AttentionWeights::EMPTY);
                ld.counted_once(again(l, j), |ld| {
                    ld.attention(cfg, l, cfg.dim_context(), cross)
                })?;
                j += 1;
            }
            if let Some(l) = plan.ff {
                let ff = block.ff.insert(FeedForwardWeights::EMPTY);
                ld.counted_once(again(l, j), |ld| ld.feed_forward(cfg, l, ff))?;
                j += 1;
            }
            debug_assert_eq!(j, next);
        }
        self.final_norm = if cfg.has_final_norm() {
            ld.norm(cfg, None, "final_norm.gamma", "final_norm.g")?
        } else {
            None
        };
        self.inv_freq = if cfg.rotary_pos_emb {
            ld.optional(None, "rotary_pos_emb.inv_freq", &[cfg.rotary_dim() / 2])?
        } else {
            None
        };
        self.xpos_scale = if cfg.xpos() {
            ld.optional(None, "rotary_pos_emb.scale", &[cfg.rotary_dim() / 2])?
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
    /// `token_emb.emb.weight` `[V, E]` (E = `emb_dim`, by default D).
    pub token_emb: Tensor<'w>,
    /// `pos_emb.emb.weight` `[max_seq_len, E]`, when the wrapper has a learned table of absolute
    /// positions.
    pub pos_emb: Option<Tensor<'w>>,
    /// `pos_emb.scale` `[1]`, the sinusoids' learned amplitude, with `scaled_sinu_pos_emb`.
    pub pos_emb_scale: Option<Tensor<'w>>,
    /// `pos_emb.inv_freq` `[E/2]`, the sinusoids' frequencies as x-transformers computed them
    /// (`tools/export.py` stores the buffer, which x-transformers does not save); computed when
    /// absent.
    pub pos_emb_inv_freq: Option<Tensor<'w>>,
    /// `to_logits.weight` `[L, D]` (L = `logits_dim`, by default V), absent with `tie_embedding`.
    pub to_logits: Option<Tensor<'w>>,
    /// `post_emb_norm.gamma` `[E]` (the gain as stored), with `post_emb_norm`.
    pub post_emb_norm: Option<Tensor<'w>>,
    /// `project_emb.weight` `[D, E]` and `project_emb.bias` `[D]`, when E ≠ D.
    pub project_emb: Option<(Tensor<'w>, Tensor<'w>)>,
    /// `memory_tokens` `[M, D]`, with `num_memory_tokens` = M > 0.
    pub memory_tokens: Option<Tensor<'w>>,
    /// How many tensors were taken from the source.
    pub tensors_used: usize,
}

impl<'w> WrapperWeights<'w> {
    /// No tensors: what [`Self::from_source`] replaces in a wrapper being loaded in place.
    pub(crate) const fn empty() -> Self {
        Self {
            token_emb: Tensor::EMPTY,
            pos_emb: None,
            pos_emb_scale: None,
            pos_emb_inv_freq: None,
            to_logits: None,
            post_emb_norm: None,
            project_emb: None,
            memory_tokens: None,
            tensors_used: 0,
        }
    }

    /// Looks up the wrapper's weights.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::MissingWeight`], [`Error::WeightShape`].
    pub fn from_source<S: TensorSource<'w>>(
        cfg: &WrapperConfig,
        source: &S,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let (d, e) = (cfg.attn_layers.dim, cfg.emb_width());
        let mut ld = Loader {
            source,
            prefix: "",
            used: 0,
        };
        let token_emb = ld.required(None, "token_emb.emb.weight", &[cfg.num_tokens, e])?;
        let pos_emb = if cfg.has_pos_table() {
            Some(ld.required(None, "pos_emb.emb.weight", &[cfg.max_seq_len, e])?)
        } else {
            None
        };
        let (pos_emb_scale, pos_emb_inv_freq) = if cfg.has_sinusoidal_pos_emb() {
            (
                Some(ld.required(None, "pos_emb.scale", &[1])?),
                ld.optional(None, "pos_emb.inv_freq", &[e / 2])?,
            )
        } else {
            (None, None)
        };
        let to_logits = if cfg.tie_embedding {
            None
        } else {
            Some(ld.required(None, "to_logits.weight", &[cfg.logits_width(), d])?)
        };
        let post_emb_norm = if cfg.post_emb_norm {
            Some(ld.required(None, "post_emb_norm.gamma", &[e])?)
        } else {
            None
        };
        let project_emb = if cfg.has_project_emb() {
            Some((
                ld.required(None, "project_emb.weight", &[d, e])?,
                ld.required(None, "project_emb.bias", &[d])?,
            ))
        } else {
            None
        };
        let m = cfg.num_memory_tokens;
        let memory_tokens = if m > 0 {
            Some(ld.required(None, "memory_tokens", &[m, d])?)
        } else {
            None
        };
        Ok(Self {
            token_emb,
            pos_emb,
            pos_emb_scale,
            pos_emb_inv_freq,
            to_logits,
            post_emb_norm,
            project_emb,
            memory_tokens,
            tensors_used: ld.used,
        })
    }
}
