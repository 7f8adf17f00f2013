//! Model configuration, named after x-transformers' own constructor arguments.
//!
//! [`DecoderConfig`] mirrors `x_transformers.Decoder(...)` and [`WrapperConfig`] mirrors
//! `x_transformers.TransformerWrapper(...)`. Optional arguments are `Option`s that resolve to
//! x-transformers' defaults in the `const fn` accessors (`kv_heads()`, `rotary_dim()`, ...).
//! Everything is checked once by [`DecoderConfig::validate`]; the rest of the crate trusts a
//! validated configuration.

use crate::error::ConfigError;
use crate::layers::{ExecuteOrder, LayerTypes};

/// The norm used before every sublayer and as the final norm (`xt:2971-2976`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// Bias-less LayerNorm, eps 1e-5, gain stored as `gamma` (effective gain γ+1). The default.
    LayerNorm,
    /// `use_rmsnorm`: x / max(‖x‖₂, 1e-12) · √dim · (g+1), gain stored as `g`.
    RmsNorm,
    /// `use_simple_rmsnorm`: x / max(‖x‖₂, 1e-12) · √dim, no parameters.
    SimpleRmsNorm,
    /// `use_scalenorm`: x / max(‖x‖₂, 1e-12) · √dim · (g+1) with one scalar gain `g` of shape
    /// (1,) (`xt:1059-1074`).
    ScaleNorm,
}

/// The feed-forward activation (`xt:1799-1801`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, ½·z·(1 + erf(z/√2)) (`nn.GELU()`), the default.
    Gelu,
    /// SiLU, z·σ(z) (`ff_swish`).
    Silu,
    /// ReLU², max(z, 0)² (`ff_relu_squared`).
    ReluSquared,
}

/// An x-transformers `Decoder` configuration (the supported subset).
///
/// Field names are x-transformers' keyword arguments. Build one with [`DecoderConfig::new`]
/// and the `const fn` setters, so a configuration can be a `const`:
///
/// ```
/// use picoformer::DecoderConfig;
/// const CFG: DecoderConfig = DecoderConfig::new(128, 4)
///     .heads(4)
///     .cross_attend(true)
///     .rotary_pos_emb(true);
/// assert_eq!(CFG.attn_dim_head, 64); // x-transformers' default, independent of dim
/// assert_eq!(CFG.rotary_dim(), 32); // default rotary_emb_dim = dim_head / 2
/// assert!(CFG.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecoderConfig {
    /// Model width D (`dim`).
    pub dim: usize,
    /// Number of blocks (`depth`); each block is self-attention, optional cross-attention, feed-forward.
    pub depth: usize,
    /// Query heads H (`heads`, x-transformers default 8).
    pub heads: usize,
    /// Width of one head d (`attn_dim_head`, default 64, independent of `dim`).
    pub attn_dim_head: usize,
    /// Key/value heads for grouped-query attention (`attn_kv_heads`); `None` means `heads`.
    pub attn_kv_heads: Option<usize>,
    /// Multi-query attention: one key/value head (`attn_one_kv_head`).
    pub attn_one_kv_head: bool,
    /// Adds a cross-attention sublayer to every block (`cross_attend`).
    pub cross_attend: bool,
    /// Width of the context rows (`cross_attn_dim_context`); `None` means `dim`.
    pub cross_attn_dim_context: Option<usize>,
    /// Rotary position embedding on self-attention queries and keys (`rotary_pos_emb`).
    pub rotary_pos_emb: bool,
    /// Rotated features per head (`rotary_emb_dim`); `None` means `attn_dim_head / 2`.
    pub rotary_emb_dim: Option<usize>,
    /// NTK-style base rescale: base = 10000 · f^(r/(r−2)) (`rotary_base_rescale_factor`).
    pub rotary_base_rescale_factor: f64,
    /// Positions are divided by this factor (`rotary_interpolation_factor`).
    pub rotary_interpolation_factor: f64,
    /// `use_rmsnorm`.
    pub use_rmsnorm: bool,
    /// `use_simple_rmsnorm`.
    pub use_simple_rmsnorm: bool,
    /// Feed-forward inner width is `int(dim * ff_mult)` (`ff_mult`, default 4).
    pub ff_mult: f64,
    /// Gated feed-forward: up = first half, gate = second half of the input projection (`ff_glu`).
    pub ff_glu: bool,
    /// SiLU activation (`ff_swish`).
    pub ff_swish: bool,
    /// ReLU² activation (`ff_relu_squared`).
    pub ff_relu_squared: bool,
    /// No biases in the feed-forward linears, except the GLU projection's (`ff_no_bias`).
    pub ff_no_bias: bool,
    /// `use_scalenorm`.
    pub use_scalenorm: bool,
    /// `pre_norm` (default true): a norm before every sublayer (`layers.ℓ.0.0`); `false` is
    /// post-norm: a norm after every residual add (`layers.ℓ.0.2`) and no final norm
    /// (`xt:3155, 3303, 3728-3729`).
    pub pre_norm: bool,
    /// `pre_norm_has_final_norm` (default true): the final norm, with `pre_norm`.
    pub pre_norm_has_final_norm: bool,
    /// `sandwich_norm`: a norm on every sublayer's output before the residual add
    /// (`layers.ℓ.0.1`, `xt:3714-3715`); needs `pre_norm`.
    pub sandwich_norm: bool,
    /// `softclamp_output`: x = tanh(x / v) · v before the final norm, v =
    /// `softclamp_output_value` (`xt:3746-3747`).
    pub softclamp_output: bool,
    /// `softclamp_output_value` (default 30).
    pub softclamp_output_value: f64,
    /// `scale_residual`: the residual (skip) path is multiplied by a learned gain
    /// (`layers.ℓ.2.residual_scale`, `xt:1189-1205`).
    pub scale_residual: bool,
    /// `scale_residual_constant` (default 1): the residual path is multiplied by it.
    pub scale_residual_constant: f64,
    /// `attn_head_scale`: every head's output is multiplied by a learned scalar
    /// (`layers.ℓ.1.head_scale_params`, `xt:2638-2639`); self- and cross-attention.
    pub attn_head_scale: bool,
    /// `attn_gate_values`: out ⊙ sigmoid(u·W_gᵀ) per value feature (`layers.ℓ.1.to_v_gate`,
    /// `xt:2711-2720`); self- and cross-attention.
    pub attn_gate_values: bool,
    /// `ff_softclamp_value`: tanh(z / v)·v on the feed-forward's first linear before the
    /// activation, without GLU (`xt:1814-1817`; with GLU x-transformers ignores it).
    pub ff_softclamp_value: Option<f64>,
    /// `attn_qk_norm`: queries and keys l2-normalised per head (in `attn_qk_norm_groups` groups),
    /// logits scaled by `attn_qk_norm_scale` instead of d^−½ (`xt:2067-2082, 2422-2427`); keys
    /// are normalised before they are cached. Self- and cross-attention.
    pub attn_qk_norm: bool,
    /// `attn_qk_norm_groups` (default 1).
    pub attn_qk_norm_groups: usize,
    /// `attn_qk_norm_scale` (default 10).
    pub attn_qk_norm_scale: f64,
    /// `attn_qk_norm_dim_scale`: learned per-feature gains `qk_norm_q_scale` `[H, 1, d]` and
    /// `qk_norm_k_scale` `[H_kv, 1, d]` after the normalisation; the logit scale is then d^−½.
    pub attn_qk_norm_dim_scale: bool,
    /// `ff_glu_mult_bias`: with `ff_glu`, h = up ⊙ act(gate) ⊙ `ff.0.mult_bias` (`xt:1753-1761`).
    pub ff_glu_mult_bias: bool,
    /// `ff_post_act_ln`: a LayerNorm (eps 1e-5, gain `ff.1.gamma` `[F]` as stored, no unit
    /// offset) on the activated hidden features before the output linear, which becomes `ff.3`
    /// (`xt:1824`).
    pub ff_post_act_ln: bool,
    /// `use_layerscale`: every sublayer's output times a learned per-feature gain `layers.ℓ.1.gamma`
    /// `[D]` (plus 1 with `norm_add_unit_offset`), before the sandwich norm; the sublayer's own
    /// keys move under `layers.ℓ.1.fn.` (`LayerScale`, `xt:1658-1690, 3022-3031, 3247-3248`).
    /// The gain's initial value (`layerscale_init_value`) is in the stored weights.
    pub use_layerscale: bool,
    /// `gate_residual`: the residual add is a GRU cell, x = GRUCell(branch, residual)
    /// (`GRUGating`, `xt:1207-1224, 3280-3281`), weights `layers.ℓ.2.gru.{weight,bias}_{ih,hh}`
    /// (`[3D, D]`, `[3D]`, gates r, z, n); `scale_residual` still scales the residual first,
    /// `scale_residual_constant` is not used (as in x-transformers).
    pub gate_residual: bool,
    /// `macaron`: every block starts with a second feed-forward, ('f', 'a', ['c',] 'f'), and
    /// both feed-forwards' outputs are halved (`Scale(0.5, …)`, keys under `layers.ℓ.1.fn.`;
    /// `xt:3009-3010, 3237`).
    pub macaron: bool,
    /// `attn_value_rmsnorm`: every value head x / max(‖x‖₂, 1e-12) · √d · (γ + 1) with γ =
    /// `layers.ℓ.1.value_rmsnorm.gamma` `[H, 1, d]`, before the values are cached
    /// (`MultiheadRMSNorm`, `xt:1126-1133, 2096, 2436`); self- and cross-attention. Needs
    /// `kv_heads == heads` (otherwise x-transformers broadcasts γ over the heads of the values).
    pub attn_value_rmsnorm: bool,
    /// `norm_add_unit_offset` (default true): every decoder norm's gain is stored as gain − 1
    /// (`xt:2993-2995`); `false`: as the gain itself.
    pub norm_add_unit_offset: bool,
    /// `disable_abs_pos_emb`: read by a `TransformerWrapper` only; `None` means "whenever rotary
    /// embeddings are on" (`xt:2892`). A bare `Decoder` has no absolute positions either way.
    pub disable_abs_pos_emb: Option<bool>,
    /// `alibi_pos_bias`: self-attention logits get the bias −slope_h·|i − j| on the first
    /// `alibi_num_heads` heads, geometric slopes (`AlibiPositionalBias`, `xt:631-700, 2926-2929`).
    pub alibi_pos_bias: bool,
    /// `alibi_num_heads`: heads with an ALiBi bias; `None` means all.
    pub alibi_num_heads: Option<usize>,
    /// `attn_max_attend_past`: local self-attention, a query at position i sees keys j with
    /// i − j <= N (`xt:2567-2573`). With [`crate::KvCache::rolling`] the cache holds only that
    /// window and decoding runs for ever in bounded memory.
    pub attn_max_attend_past: Option<usize>,
    /// `attn_num_mem_kv`: M learned key/value rows per kv head (`layers.ℓ.1.mem_k`/`mem_v`
    /// `[H_kv, M, d]`) that every query sees, in self- and cross-attention; not cached, no
    /// position (`xt:2188-2191, 2510-2521`).
    pub attn_num_mem_kv: usize,
    /// `attn_add_zero_kv`: a zero key and value every query sees (logit 0), in self- and
    /// cross-attention (`at:536-543`).
    pub attn_add_zero_kv: bool,
    /// `attn_softclamp_logits`: logits become tanh(s / v)·v after the bias, v =
    /// `attn_logit_softclamp_value` (`at:572-573`); self- and cross-attention.
    pub attn_softclamp_logits: bool,
    /// `attn_logit_softclamp_value` (default 50).
    pub attn_logit_softclamp_value: f64,
    /// `rotary_xpos` (with `rotary_pos_emb`, causal only): rotated pair m of q scaled by
    /// s_m^(p/B) and of k by s_m^(−p/B), s_m = (2m + 0.4r)/(1.4r), B =
    /// `rotary_xpos_scale_base` (`xt:835-891`): the logit's pair m gets s_m^((p_q − p_k)/B).
    pub rotary_xpos: bool,
    /// `rotary_xpos_scale_base` (default 512).
    pub rotary_xpos_scale_base: usize,
    /// `weight_tie_layers`: one block's weights (`layers.0` … `layers.per−1`) run `depth` times
    /// (`xt:3060-3064`); every run has its own place in the KV cache.
    pub weight_tie_layers: bool,
    /// `add_value_residual`: the self-attention values of every block after the first become
    /// v₀ + mix·(v − v₀), v₀ the first block's projected values at the same positions, before
    /// qk-norm and the value norm, so before they are cached (`xt:2410-2418, 3687-3712`).
    pub add_value_residual: bool,
    /// `learned_value_residual_mix` (default true): mix = sigmoid(u·Wᵀ + b) per position and
    /// head (`layers.ℓ.1.to_value_residual_mix.0`, `[H, D]` and `[H]`); else 0.5.
    pub learned_value_residual_mix: bool,
    /// `residual_attn`: every self-attention run adds the previous run's pre-softmax logits
    /// (after its bias, softclamp and mask) to its own before the bias (`xt:3723-3724`,
    /// `at:558-559`), for the same queries and keys.
    pub residual_attn: bool,
    /// `cross_residual_attn`: the same between the cross-attention runs (`xt:3725-3726`).
    pub cross_residual_attn: bool,
    /// `custom_layers`: the sublayers' kinds in order, instead of `depth` default blocks
    /// (`xt:3070-3071`, `crate::layers`).
    pub custom_layers: Option<LayerTypes>,
    /// `par_ratio`: the sandwich-transformer pattern of `depth · len(block)` sublayers with
    /// `depth · len(block) / par_ratio` attention blocks first (`xt:3072-3082`).
    pub par_ratio: Option<u16>,
    /// `sandwich_coef` = s: s self-attentions, `depth − s` default blocks, s feed-forwards
    /// (`xt:3083-3085`).
    pub sandwich_coef: Option<u16>,
    /// `layers_execute_order`: the sublayers run in this order, any of them any number of
    /// times (`xt:3100, 3555-3556`); every run of an attention has its own cache layer.
    pub layers_execute_order: Option<ExecuteOrder>,
}

impl DecoderConfig {
    /// A `Decoder(dim=dim, depth=depth)` with every other argument at x-transformers' default.
    pub const fn new(dim: usize, depth: usize) -> Self {
        Self {
            dim,
            depth,
            heads: 8,
            attn_dim_head: 64,
            attn_kv_heads: None,
            attn_one_kv_head: false,
            cross_attend: false,
            cross_attn_dim_context: None,
            rotary_pos_emb: false,
            rotary_emb_dim: None,
            rotary_base_rescale_factor: 1.0,
            rotary_interpolation_factor: 1.0,
            use_rmsnorm: false,
            use_simple_rmsnorm: false,
            ff_mult: 4.0,
            ff_glu: false,
            ff_swish: false,
            ff_relu_squared: false,
            ff_no_bias: false,
            use_scalenorm: false,
            pre_norm: true,
            pre_norm_has_final_norm: true,
            sandwich_norm: false,
            softclamp_output: false,
            softclamp_output_value: 30.0,
            scale_residual: false,
            scale_residual_constant: 1.0,
            attn_head_scale: false,
            attn_gate_values: false,
            ff_softclamp_value: None,
            attn_qk_norm: false,
            attn_qk_norm_groups: 1,
            attn_qk_norm_scale: 10.0,
            attn_qk_norm_dim_scale: false,
            ff_glu_mult_bias: false,
            ff_post_act_ln: false,
            use_layerscale: false,
            gate_residual: false,
            macaron: false,
            attn_value_rmsnorm: false,
            norm_add_unit_offset: true,
            disable_abs_pos_emb: None,
            alibi_pos_bias: false,
            alibi_num_heads: None,
            attn_max_attend_past: None,
            attn_num_mem_kv: 0,
            attn_add_zero_kv: false,
            attn_softclamp_logits: false,
            attn_logit_softclamp_value: 50.0,
            rotary_xpos: false,
            rotary_xpos_scale_base: 512,
            weight_tie_layers: false,
            add_value_residual: false,
            learned_value_residual_mix: true,
            residual_attn: false,
            cross_residual_attn: false,
            custom_layers: None,
            par_ratio: None,
            sandwich_coef: None,
            layers_execute_order: None,
        }
    }

    /// Sets `heads`.
    pub const fn heads(mut self, heads: usize) -> Self {
        self.heads = heads;
        self
    }
    /// Sets `attn_dim_head`.
    pub const fn attn_dim_head(mut self, d: usize) -> Self {
        self.attn_dim_head = d;
        self
    }
    /// Sets `attn_kv_heads`.
    pub const fn attn_kv_heads(mut self, kv_heads: usize) -> Self {
        self.attn_kv_heads = Some(kv_heads);
        self
    }
    /// Sets `attn_one_kv_head`.
    pub const fn attn_one_kv_head(mut self, on: bool) -> Self {
        self.attn_one_kv_head = on;
        self
    }
    /// Sets `cross_attend`.
    pub const fn cross_attend(mut self, on: bool) -> Self {
        self.cross_attend = on;
        self
    }
    /// Sets `cross_attn_dim_context`.
    pub const fn cross_attn_dim_context(mut self, dim_context: usize) -> Self {
        self.cross_attn_dim_context = Some(dim_context);
        self
    }
    /// Sets `rotary_pos_emb`.
    pub const fn rotary_pos_emb(mut self, on: bool) -> Self {
        self.rotary_pos_emb = on;
        self
    }
    /// Sets `rotary_emb_dim`.
    pub const fn rotary_emb_dim(mut self, r: usize) -> Self {
        self.rotary_emb_dim = Some(r);
        self
    }
    /// Sets `rotary_base_rescale_factor`.
    pub const fn rotary_base_rescale_factor(mut self, f: f64) -> Self {
        self.rotary_base_rescale_factor = f;
        self
    }
    /// Sets `rotary_interpolation_factor`.
    pub const fn rotary_interpolation_factor(mut self, f: f64) -> Self {
        self.rotary_interpolation_factor = f;
        self
    }
    /// Sets `use_rmsnorm`.
    pub const fn use_rmsnorm(mut self, on: bool) -> Self {
        self.use_rmsnorm = on;
        self
    }
    /// Sets `use_simple_rmsnorm`.
    pub const fn use_simple_rmsnorm(mut self, on: bool) -> Self {
        self.use_simple_rmsnorm = on;
        self
    }
    /// Sets `ff_mult`.
    pub const fn ff_mult(mut self, mult: f64) -> Self {
        self.ff_mult = mult;
        self
    }
    /// Sets `ff_glu`.
    pub const fn ff_glu(mut self, on: bool) -> Self {
        self.ff_glu = on;
        self
    }
    /// Sets `ff_swish`.
    pub const fn ff_swish(mut self, on: bool) -> Self {
        self.ff_swish = on;
        self
    }
    /// Sets `ff_relu_squared`.
    pub const fn ff_relu_squared(mut self, on: bool) -> Self {
        self.ff_relu_squared = on;
        self
    }
    /// Sets `ff_no_bias`.
    pub const fn ff_no_bias(mut self, on: bool) -> Self {
        self.ff_no_bias = on;
        self
    }
    /// Sets `use_scalenorm`.
    pub const fn use_scalenorm(mut self, on: bool) -> Self {
        self.use_scalenorm = on;
        self
    }
    /// Sets `pre_norm` (`false`: post-norm).
    pub const fn pre_norm(mut self, on: bool) -> Self {
        self.pre_norm = on;
        self
    }
    /// Sets `pre_norm_has_final_norm`.
    pub const fn pre_norm_has_final_norm(mut self, on: bool) -> Self {
        self.pre_norm_has_final_norm = on;
        self
    }
    /// Sets `sandwich_norm`.
    pub const fn sandwich_norm(mut self, on: bool) -> Self {
        self.sandwich_norm = on;
        self
    }
    /// Sets `softclamp_output` and `softclamp_output_value`.
    pub const fn softclamp_output(mut self, value: f64) -> Self {
        self.softclamp_output = true;
        self.softclamp_output_value = value;
        self
    }
    /// Sets `scale_residual`.
    pub const fn scale_residual(mut self, on: bool) -> Self {
        self.scale_residual = on;
        self
    }
    /// Sets `scale_residual_constant`.
    pub const fn scale_residual_constant(mut self, c: f64) -> Self {
        self.scale_residual_constant = c;
        self
    }
    /// Sets `attn_head_scale`.
    pub const fn attn_head_scale(mut self, on: bool) -> Self {
        self.attn_head_scale = on;
        self
    }
    /// Sets `attn_gate_values`.
    pub const fn attn_gate_values(mut self, on: bool) -> Self {
        self.attn_gate_values = on;
        self
    }
    /// Sets `ff_softclamp_value`.
    pub const fn ff_softclamp_value(mut self, v: f64) -> Self {
        self.ff_softclamp_value = Some(v);
        self
    }
    /// Sets `attn_qk_norm` with `attn_qk_norm_groups` and `attn_qk_norm_scale`.
    pub const fn attn_qk_norm(mut self, groups: usize, scale: f64) -> Self {
        self.attn_qk_norm = true;
        self.attn_qk_norm_groups = groups;
        self.attn_qk_norm_scale = scale;
        self
    }
    /// Sets `ff_glu_mult_bias`.
    pub const fn ff_glu_mult_bias(mut self, on: bool) -> Self {
        self.ff_glu_mult_bias = on;
        self
    }
    /// Sets `ff_post_act_ln`.
    pub const fn ff_post_act_ln(mut self, on: bool) -> Self {
        self.ff_post_act_ln = on;
        self
    }
    /// Sets `use_layerscale`.
    pub const fn use_layerscale(mut self, on: bool) -> Self {
        self.use_layerscale = on;
        self
    }
    /// Sets `attn_value_rmsnorm`.
    pub const fn attn_value_rmsnorm(mut self, on: bool) -> Self {
        self.attn_value_rmsnorm = on;
        self
    }
    /// Sets `macaron`.
    pub const fn macaron(mut self, on: bool) -> Self {
        self.macaron = on;
        self
    }
    /// Sets `gate_residual`.
    pub const fn gate_residual(mut self, on: bool) -> Self {
        self.gate_residual = on;
        self
    }
    /// Width of the scratch's hidden buffer per position: the feed-forward's
    /// [`Self::ff_proj_rows`], or 6·dim for the GRU gates of `gate_residual` if that is more.
    pub const fn hidden_width(&self) -> usize {
        let gru = if self.gate_residual {
            self.dim.saturating_mul(6)
        } else {
            0
        };
        if gru > self.ff_proj_rows() {
            gru
        } else {
            self.ff_proj_rows()
        }
    }
    /// Sets `norm_add_unit_offset`.
    pub const fn norm_add_unit_offset(mut self, on: bool) -> Self {
        self.norm_add_unit_offset = on;
        self
    }
    /// What a stored norm gain is added to: 1 with `norm_add_unit_offset`, else 0.
    pub const fn norm_gain_offset(&self) -> f32 {
        if self.norm_add_unit_offset {
            1.0
        } else {
            0.0
        }
    }
    /// Sets `attn_qk_norm_dim_scale`.
    pub const fn attn_qk_norm_dim_scale(mut self, on: bool) -> Self {
        self.attn_qk_norm_dim_scale = on;
        self
    }
    /// The attention logits' scale: d^−½, or `attn_qk_norm_scale` with `attn_qk_norm` (and
    /// without `attn_qk_norm_dim_scale`) (`xt:1957, 2080-2082, 2155`).
    pub fn attn_scale(&self) -> f32 {
        if self.attn_qk_norm && !self.attn_qk_norm_dim_scale {
            self.attn_qk_norm_scale as f32
        } else {
            (1.0 / libm::sqrt(self.attn_dim_head as f64)) as f32
        }
    }
    /// Whether there is a final norm: `pre_norm` and `pre_norm_has_final_norm` (`xt:3155`).
    pub const fn has_final_norm(&self) -> bool {
        self.pre_norm && self.pre_norm_has_final_norm
    }
    /// Sets `alibi_pos_bias` with `alibi_num_heads` (`None`: every head).
    pub const fn alibi_pos_bias(mut self, heads: Option<usize>) -> Self {
        self.alibi_pos_bias = true;
        self.alibi_num_heads = heads;
        self
    }
    /// Sets `attn_max_attend_past`.
    pub const fn attn_max_attend_past(mut self, n: usize) -> Self {
        self.attn_max_attend_past = Some(n);
        self
    }
    /// Sets `attn_num_mem_kv`.
    pub const fn attn_num_mem_kv(mut self, m: usize) -> Self {
        self.attn_num_mem_kv = m;
        self
    }
    /// Sets `attn_add_zero_kv`.
    pub const fn attn_add_zero_kv(mut self, on: bool) -> Self {
        self.attn_add_zero_kv = on;
        self
    }
    /// Sets `attn_softclamp_logits` with `attn_logit_softclamp_value`.
    pub const fn attn_softclamp_logits(mut self, value: f64) -> Self {
        self.attn_softclamp_logits = true;
        self.attn_logit_softclamp_value = value;
        self
    }
    /// Sets `add_value_residual` with `learned_value_residual_mix`.
    pub const fn add_value_residual(mut self, learned: bool) -> Self {
        self.add_value_residual = true;
        self.learned_value_residual_mix = learned;
        self
    }
    /// Sets `weight_tie_layers`.
    pub const fn weight_tie_layers(mut self, on: bool) -> Self {
        self.weight_tie_layers = on;
        self
    }
    /// Sets `residual_attn`.
    pub const fn residual_attn(mut self, on: bool) -> Self {
        self.residual_attn = on;
        self
    }
    /// Sets `cross_residual_attn`.
    pub const fn cross_residual_attn(mut self, on: bool) -> Self {
        self.cross_residual_attn = on;
        self
    }
    /// Sets `custom_layers`.
    pub const fn custom_layers(mut self, types: LayerTypes) -> Self {
        self.custom_layers = Some(types);
        self
    }
    /// Sets `par_ratio`.
    pub const fn par_ratio(mut self, ratio: usize) -> Self {
        self.par_ratio = Some(saturating_u16(ratio));
        self
    }
    /// Sets `sandwich_coef`.
    pub const fn sandwich_coef(mut self, coef: usize) -> Self {
        self.sandwich_coef = Some(saturating_u16(coef));
        self
    }
    /// Sets `layers_execute_order`.
    pub const fn layers_execute_order(mut self, order: ExecuteOrder) -> Self {
        self.layers_execute_order = Some(order);
        self
    }
    /// Sets `rotary_xpos` with `rotary_xpos_scale_base`.
    pub const fn rotary_xpos(mut self, scale_base: usize) -> Self {
        self.rotary_xpos = true;
        self.rotary_xpos_scale_base = scale_base;
        self
    }
    /// Whether xpos scales the rotary pairs: `rotary_xpos` with `rotary_pos_emb` (without
    /// rotary embeddings x-transformers builds no rotary module, and xpos does nothing).
    pub const fn xpos(&self) -> bool {
        self.rotary_xpos && self.rotary_pos_emb
    }
    /// Heads with an ALiBi bias: `alibi_num_heads` (default all) with `alibi_pos_bias`, else 0.
    pub const fn alibi_heads(&self) -> usize {
        if !self.alibi_pos_bias {
            return 0;
        }
        match self.alibi_num_heads {
            Some(h) => h,
            None => self.heads,
        }
    }
    /// Extra key rows every query sees before the positions' own: the zero key
    /// (`attn_add_zero_kv`) and the `attn_num_mem_kv` memory keys.
    pub const fn extra_keys(&self) -> usize {
        self.attn_num_mem_kv
            .saturating_add(if self.attn_add_zero_kv { 1 } else { 0 })
    }
    /// Whether attention needs the general path (logit terms the SIMD kernel does not take:
    /// ALiBi, a local window, a logit softclamp, memory or zero keys, xpos, residual attention).
    pub const fn general_attention(&self) -> bool {
        self.alibi_pos_bias
            || self.attn_max_attend_past.is_some()
            || self.attn_softclamp_logits
            || self.extra_keys() > 0
            || self.xpos()
            || self.residual_attn
            || self.cross_residual_attn
    }
    /// Sets `disable_abs_pos_emb`.
    pub const fn disable_abs_pos_emb(mut self, on: bool) -> Self {
        self.disable_abs_pos_emb = Some(on);
        self
    }
    /// Resolved `disable_abs_pos_emb` (`xt:2892`: default true with rotary embeddings).
    pub const fn abs_pos_emb_disabled(&self) -> bool {
        match self.disable_abs_pos_emb {
            Some(on) => on,
            None => self.rotary_pos_emb,
        }
    }

    /// Resolved number of key/value heads H_kv (`xt:1963-1972`).
    pub const fn kv_heads(&self) -> usize {
        if self.attn_one_kv_head {
            1
        } else {
            match self.attn_kv_heads {
                Some(h) => h,
                None => self.heads,
            }
        }
    }
    /// Resolved context width (`cross_attn_dim_context`, default `dim`).
    pub const fn dim_context(&self) -> usize {
        match self.cross_attn_dim_context {
            Some(d) => d,
            None => self.dim,
        }
    }
    /// Resolved rotary width r (0 without rotary; default `attn_dim_head / 2`, `xt:2894`).
    pub const fn rotary_dim(&self) -> usize {
        if !self.rotary_pos_emb {
            return 0;
        }
        match self.rotary_emb_dim {
            Some(r) => r,
            None => self.attn_dim_head / 2,
        }
    }
    /// Width of all query heads, H·d.
    pub const fn q_dim(&self) -> usize {
        self.heads.saturating_mul(self.attn_dim_head)
    }
    /// Width of all key (or value) heads, H_kv·d.
    pub const fn kv_dim(&self) -> usize {
        self.kv_heads().saturating_mul(self.attn_dim_head)
    }
    /// Feed-forward inner width F = `int(dim * ff_mult)` (`xt:1787`).
    pub const fn ff_inner(&self) -> usize {
        let f = self.dim as f64 * self.ff_mult;
        if f >= 0.0 && f < (usize::MAX as f64) {
            f as usize
        } else {
            0
        }
    }
    /// Rows of the feed-forward input projection: 2F with GLU, F otherwise.
    pub const fn ff_proj_rows(&self) -> usize {
        if self.ff_glu {
            self.ff_inner().saturating_mul(2)
        } else {
            self.ff_inner()
        }
    }
    /// The resolved norm kind.
    pub const fn norm(&self) -> Norm {
        if self.use_scalenorm {
            Norm::ScaleNorm
        } else if self.use_simple_rmsnorm {
            Norm::SimpleRmsNorm
        } else if self.use_rmsnorm {
            Norm::RmsNorm
        } else {
            Norm::LayerNorm
        }
    }
    /// The resolved feed-forward activation: ReLU² wins over SiLU, as in x-transformers
    /// (`xt:1794-1799`).
    pub const fn activation(&self) -> Activation {
        if self.ff_relu_squared {
            Activation::ReluSquared
        } else if self.ff_swish {
            Activation::Silu
        } else {
            Activation::Gelu
        }
    }
    /// Whether attention has an output projection `to_out` (`xt:2237`: exists iff heads > 1).
    pub const fn has_to_out(&self) -> bool {
        self.heads > 1
    }

    /// Checks the configuration against what x-transformers itself accepts and what picoformer supports.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        // Every float field is a number, used or not: configurations are compared with `==`
        // (a cache or arena built for one), and NaN is unequal to itself.
        let floats = [
            (
                "rotary_base_rescale_factor",
                self.rotary_base_rescale_factor,
            ),
            (
                "rotary_interpolation_factor",
                self.rotary_interpolation_factor,
            ),
            ("ff_mult", self.ff_mult),
            ("softclamp_output_value", self.softclamp_output_value),
            ("scale_residual_constant", self.scale_residual_constant),
            ("attn_qk_norm_scale", self.attn_qk_norm_scale),
            (
                "attn_logit_softclamp_value",
                self.attn_logit_softclamp_value,
            ),
            (
                "ff_softclamp_value",
                match self.ff_softclamp_value {
                    Some(v) => v,
                    None => 0.0,
                },
            ),
        ];
        let mut i = 0;
        while i < floats.len() {
            if floats[i].1.is_nan() {
                return Err(ConfigError::NotFinite(floats[i].0));
            }
            i += 1;
        }
        if self.dim == 0 {
            return Err(ConfigError::Zero("dim"));
        }
        // `custom_layers` replaces `depth` (which x-transformers then does not read).
        if self.depth == 0 && self.custom_layers.is_none() {
            return Err(ConfigError::Zero("depth"));
        }
        if self.heads == 0 {
            return Err(ConfigError::Zero("heads"));
        }
        if self.attn_dim_head == 0 {
            return Err(ConfigError::Zero("attn_dim_head"));
        }
        let kv = self.kv_heads();
        if kv == 0 {
            return Err(ConfigError::Zero("attn_kv_heads"));
        }
        if kv > self.heads || !self.heads.is_multiple_of(kv) {
            return Err(ConfigError::KvHeads {
                heads: self.heads,
                kv_heads: kv,
            });
        }
        if self.heads == 1 && self.attn_dim_head != self.dim {
            // Without `to_out` the head output must already be `dim` wide (xt:2237).
            return Err(ConfigError::SingleHeadWidth {
                dim: self.dim,
                dim_head: self.attn_dim_head,
            });
        }
        if self.cross_attend && self.dim_context() == 0 {
            return Err(ConfigError::Zero("cross_attn_dim_context"));
        }
        if self.rotary_pos_emb {
            let r = self.rotary_dim();
            if r < 2 || !r.is_multiple_of(2) || r > self.attn_dim_head {
                return Err(ConfigError::RotaryDim {
                    rotary_emb_dim: r,
                    dim_head: self.attn_dim_head,
                });
            }
            let f = self.rotary_base_rescale_factor;
            if !(f > 0.0 && f < 1e30) {
                return Err(ConfigError::NotPositive("rotary_base_rescale_factor"));
            }
            if f != 1.0 && r == 2 {
                // base · f^(r/(r−2)) divides by zero in x-transformers.
                return Err(ConfigError::RotaryDim {
                    rotary_emb_dim: r,
                    dim_head: self.attn_dim_head,
                });
            }
            let g = self.rotary_interpolation_factor;
            if !(g >= 1.0 && g < 1e30) {
                // x-transformers asserts interpolation_factor >= 1 (xt:853).
                return Err(ConfigError::NotPositive("rotary_interpolation_factor"));
            }
        }
        if self.use_rmsnorm && self.use_simple_rmsnorm {
            return Err(ConfigError::Conflict("use_rmsnorm", "use_simple_rmsnorm"));
        }
        // x-transformers asserts at most one norm kind, and sandwich norm only with pre-norm.
        if self.use_scalenorm && self.use_rmsnorm {
            return Err(ConfigError::Conflict("use_scalenorm", "use_rmsnorm"));
        }
        if self.use_scalenorm && self.use_simple_rmsnorm {
            return Err(ConfigError::Conflict("use_scalenorm", "use_simple_rmsnorm"));
        }
        if self.sandwich_norm && !self.pre_norm {
            return Err(ConfigError::Conflict("sandwich_norm", "pre_norm"));
        }
        if self.alibi_pos_bias {
            let h = self.alibi_heads();
            if h == 0 || h > self.heads {
                // x-transformers asserts alibi_num_heads <= heads (xt:2928).
                return Err(ConfigError::NotPositive("alibi_num_heads"));
            }
        }
        if self.attn_softclamp_logits
            && !(self.attn_logit_softclamp_value > 0.0 && self.attn_logit_softclamp_value < 1e30)
        {
            // x-transformers asserts a positive value (at:319).
            return Err(ConfigError::NotPositive("attn_logit_softclamp_value"));
        }
        if self.attn_max_attend_past.is_some() && self.cross_attend {
            // x-transformers masks cross-attention's context rows by their distance to the
            // query too, counted from the end of the call's queries: its cached and full passes
            // differ, so there is nothing to match.
            return Err(ConfigError::Conflict(
                "attn_max_attend_past",
                "cross_attend",
            ));
        }
        if self.xpos() && self.rotary_xpos_scale_base == 0 {
            return Err(ConfigError::Zero("rotary_xpos_scale_base"));
        }
        if self.xpos() && self.attn_num_mem_kv > 0 {
            // x-transformers scales the queries by s^((p − c)/B) with c half the call's length,
            // and the memory keys not at all: their logits depend on the length of the call,
            // which differs between its full and cached passes (and is unknown step by step).
            return Err(ConfigError::Conflict("rotary_xpos", "attn_num_mem_kv"));
        }
        if self.add_value_residual {
            // Cross-attention's value residual mixes context values, which x-transformers' cached
            // pass takes from its cache; a tied block is both the first self-attention and a
            // later one. Neither is implemented; a learned mix per query head does not fit
            // fewer value heads.
            if self.cross_attend {
                return Err(ConfigError::Conflict("add_value_residual", "cross_attend"));
            }
            if self.weight_tie_layers {
                return Err(ConfigError::Conflict(
                    "add_value_residual",
                    "weight_tie_layers",
                ));
            }
            if self.learned_value_residual_mix && self.kv_heads() != self.heads {
                return Err(ConfigError::Conflict(
                    "learned_value_residual_mix",
                    "attn_kv_heads",
                ));
            }
        }
        if self.attn_num_mem_kv > (1 << 20) {
            return Err(ConfigError::TooLarge);
        }
        if self.attn_qk_norm {
            // x-transformers asserts dim_head % groups == 0 and dim_head / groups > 2.
            let g = self.attn_qk_norm_groups;
            if g == 0 || !self.attn_dim_head.is_multiple_of(g) || self.attn_dim_head / g <= 2 {
                return Err(ConfigError::Conflict(
                    "attn_qk_norm_groups",
                    "attn_dim_head",
                ));
            }
            if !(self.attn_qk_norm_scale > -1e30 && self.attn_qk_norm_scale < 1e30) {
                return Err(ConfigError::NotFinite("attn_qk_norm_scale"));
            }
        }
        if let Some(v) = self.ff_softclamp_value {
            if !(v > 0.0 && v < 1e30) {
                return Err(ConfigError::NotPositive("ff_softclamp_value"));
            }
        }
        if !(self.scale_residual_constant > -1e30 && self.scale_residual_constant < 1e30) {
            return Err(ConfigError::NotFinite("scale_residual_constant"));
        }
        if self.softclamp_output {
            let v = self.softclamp_output_value;
            if !(v > 0.0 && v < 1e30) {
                return Err(ConfigError::NotPositive("softclamp_output_value"));
            }
        }
        if self.attn_value_rmsnorm && self.kv_heads() != self.heads {
            return Err(ConfigError::Conflict("attn_value_rmsnorm", "attn_kv_heads"));
        }
        if self.ff_mult.is_nan() || self.ff_mult <= 0.0 {
            return Err(ConfigError::Zero("ff_mult"));
        }
        // Too wide (ff_inner saturates to 0 past usize) before too narrow.
        if self.dim as f64 * self.ff_mult >= (1u64 << 30) as f64 {
            return Err(ConfigError::TooLarge);
        }
        if self.ff_inner() == 0 {
            return Err(ConfigError::Zero("ff_mult"));
        }
        // Every size below must fit comfortably in usize (and in u32 element counts on 32-bit targets).
        let limit = 1usize << 30;
        let widths = [
            self.hidden_width(),
            self.dim,
            self.dim_context(),
            self.q_dim(),
            self.kv_dim(),
            self.ff_proj_rows(),
            self.depth,
        ];
        let mut i = 0;
        while i < widths.len() {
            if widths[i] > limit {
                return Err(ConfigError::TooLarge);
            }
            i += 1;
        }
        let biggest = if self.ff_proj_rows() > self.q_dim() {
            self.ff_proj_rows()
        } else {
            self.q_dim()
        };
        match biggest.checked_mul(if self.dim > self.dim_context() {
            self.dim
        } else {
            self.dim_context()
        }) {
            Some(n) if n <= limit => {}
            _ => return Err(ConfigError::TooLarge),
        }
        self.validate_layers()
    }
}

/// `n` as a `u16`, `u16::MAX` if larger (a value no check accepts).
pub(crate) const fn saturating_u16(n: usize) -> u16 {
    if n > u16::MAX as usize {
        u16::MAX
    } else {
        n as u16
    }
}

/// An x-transformers `TransformerWrapper(num_tokens, max_seq_len, attn_layers=Decoder(...))` configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrapperConfig {
    /// Vocabulary size V (`num_tokens`).
    pub num_tokens: usize,
    /// Length of the absolute position table (`max_seq_len`); 0 means none.
    pub max_seq_len: usize,
    /// `use_abs_pos_emb` (default true; ignored when rotary is on, as in x-transformers).
    pub use_abs_pos_emb: bool,
    /// Logits reuse the token embedding, scaled by dim^−½ (`tie_embedding`).
    pub tie_embedding: bool,
    /// The tied logits' scale (`tie_embedding_scale`); `None` means dim^−½ (`xt:4157`).
    pub tie_embedding_scale: Option<f64>,
    /// `post_emb_norm`: a LayerNorm (eps 1e-5, gain `post_emb_norm.gamma` as stored) on the
    /// embeddings (`xt:4071, 4310`).
    pub post_emb_norm: bool,
    /// `l2norm_embed`: token and absolute position embeddings l2-normalised, the positions not
    /// scaled by dim^−½ (`xt:399-442`).
    pub l2norm_embed: bool,
    /// `emb_dim`: the width of the token and absolute position embeddings; `None` means `dim`.
    /// Another width adds `project_emb`, a linear layer with bias from it to `dim`, after the
    /// embeddings (and `post_emb_norm`, which then normalises `emb_dim` features) (`xt:4025,
    /// 4071-4074, 4349`). x-transformers cannot tie such embeddings to the logits (its product is
    /// `dim` by `emb_dim`), so `tie_embedding` with another width is refused.
    pub emb_dim: Option<usize>,
    /// `logits_dim`: the width of `to_logits`; `None` means `num_tokens`. Ignored with
    /// `tie_embedding`, whose logits are `num_tokens` wide (`xt:4149-4162`).
    pub logits_dim: Option<usize>,
    /// `scaled_sinu_pos_emb`: the absolute positions are sinusoids of learned amplitude
    /// `pos_emb.scale` instead of a learned table, `[sin(p·ω), cos(p·ω)] · scale` with
    /// ω_i = 10000^(−i/(emb_dim/2)), defined at every position (`xt:444-472, 4045-4046`).
    /// x-transformers cannot build them with `l2norm_embed` (its initialisation reads a table
    /// they do not have) nor of an odd width: both are refused.
    pub scaled_sinu_pos_emb: bool,
    /// `num_memory_tokens` (default 0): M learned rows `memory_tokens` `[M, dim]` put before the
    /// sequence, after the embeddings (`xt:4181-4182, 4369-4390`), and dropped after the layers:
    /// every position attends to them. x-transformers turns its KV cache off for them and
    /// recomputes everything; picoformer caches them as a prefix of M positions (a cache then
    /// holds M more positions than tokens), which gives the full pass's numbers.
    pub num_memory_tokens: usize,
    /// The decoder (`attn_layers`).
    pub attn_layers: DecoderConfig,
}

impl WrapperConfig {
    /// A `TransformerWrapper(num_tokens, max_seq_len, attn_layers)` with defaults otherwise.
    pub const fn new(num_tokens: usize, max_seq_len: usize, attn_layers: DecoderConfig) -> Self {
        Self {
            num_tokens,
            max_seq_len,
            use_abs_pos_emb: true,
            tie_embedding: false,
            tie_embedding_scale: None,
            post_emb_norm: false,
            l2norm_embed: false,
            emb_dim: None,
            logits_dim: None,
            scaled_sinu_pos_emb: false,
            num_memory_tokens: 0,
            attn_layers,
        }
    }
    /// Sets `num_memory_tokens`.
    pub const fn num_memory_tokens(mut self, m: usize) -> Self {
        self.num_memory_tokens = m;
        self
    }
    /// Positions a KV cache needs for `tokens` tokens: the memory tokens' too.
    pub const fn cache_positions(&self, tokens: usize) -> usize {
        tokens.saturating_add(self.num_memory_tokens)
    }
    /// Sets `use_abs_pos_emb`.
    pub const fn use_abs_pos_emb(mut self, on: bool) -> Self {
        self.use_abs_pos_emb = on;
        self
    }
    /// Sets `tie_embedding`.
    pub const fn tie_embedding(mut self, on: bool) -> Self {
        self.tie_embedding = on;
        self
    }
    /// Sets `post_emb_norm`.
    pub const fn post_emb_norm(mut self, on: bool) -> Self {
        self.post_emb_norm = on;
        self
    }
    /// Sets `tie_embedding_scale`.
    pub const fn tie_embedding_scale(mut self, scale: f64) -> Self {
        self.tie_embedding_scale = Some(scale);
        self
    }
    /// Sets `emb_dim`.
    pub const fn emb_dim(mut self, emb_dim: usize) -> Self {
        self.emb_dim = Some(emb_dim);
        self
    }
    /// Sets `logits_dim`.
    pub const fn logits_dim(mut self, logits_dim: usize) -> Self {
        self.logits_dim = Some(logits_dim);
        self
    }
    /// Sets `scaled_sinu_pos_emb`.
    pub const fn scaled_sinu_pos_emb(mut self, on: bool) -> Self {
        self.scaled_sinu_pos_emb = on;
        self
    }
    /// The width of the embeddings: `emb_dim`, by default `dim` (`xt:4025`).
    pub const fn emb_width(&self) -> usize {
        match self.emb_dim {
            Some(e) => e,
            None => self.attn_layers.dim,
        }
    }
    /// Whether the embeddings are projected to `dim` (`project_emb`: `emb_dim` other than `dim`,
    /// `xt:4074`).
    pub const fn has_project_emb(&self) -> bool {
        self.emb_width() != self.attn_layers.dim
    }
    /// The width of a position's logits: `num_tokens` when tied, else `logits_dim`, by default
    /// `num_tokens` (`xt:4149-4162`).
    pub const fn logits_width(&self) -> usize {
        match self.logits_dim {
            Some(l) if !self.tie_embedding => l,
            _ => self.num_tokens,
        }
    }
    /// Whether the absolute positions are a learned table `pos_emb.emb.weight` (bounded by
    /// `max_seq_len`), rather than none or `scaled_sinu_pos_emb`'s sinusoids.
    pub const fn has_pos_table(&self) -> bool {
        self.has_abs_pos_emb() && !self.scaled_sinu_pos_emb
    }
    /// Whether the absolute positions are `scaled_sinu_pos_emb`'s sinusoids.
    pub const fn has_sinusoidal_pos_emb(&self) -> bool {
        self.has_abs_pos_emb() && self.scaled_sinu_pos_emb
    }
    /// Whether the absolute position embedding exists (`xt:4041-4048`): `max_seq_len > 0`,
    /// `use_abs_pos_emb`, and not the decoder's `disable_abs_pos_emb` (by default: no rotary
    /// embedding in the decoder). A learned table ([`Self::has_pos_table`]) or, with
    /// `scaled_sinu_pos_emb`, sinusoids; either way x-transformers' generation keeps to
    /// `max_seq_len` positions with its cache (`can_cache_kv_outside_max_seq_len`, `xt:4193`).
    pub const fn has_abs_pos_emb(&self) -> bool {
        self.max_seq_len > 0 && self.use_abs_pos_emb && !self.attn_layers.abs_pos_emb_disabled()
    }
    /// Checks the wrapper and its decoder.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = self.attn_layers.validate() {
            return Err(e);
        }
        if self.num_tokens == 0 {
            return Err(ConfigError::Zero("num_tokens"));
        }
        if let Some(s) = self.tie_embedding_scale {
            if !(s > -1e30 && s < 1e30) {
                return Err(ConfigError::NotFinite("tie_embedding_scale"));
            }
        }
        if let Some(0) = self.emb_dim {
            return Err(ConfigError::Zero("emb_dim"));
        }
        if let Some(0) = self.logits_dim {
            // nn.Linear(dim, 0): logits of no width, which no caller can use.
            return Err(ConfigError::Zero("logits_dim"));
        }
        if self.tie_embedding && self.has_project_emb() {
            // The tied logits y·Eᵀ multiply `dim` features by `emb_dim` ones: x-transformers fails.
            return Err(ConfigError::Conflict("tie_embedding", "emb_dim"));
        }
        if self.has_sinusoidal_pos_emb() && self.l2norm_embed {
            // x-transformers' initialisation reads `pos_emb.emb` with l2norm_embed, which the
            // sinusoids do not have: the model cannot be built (xt:4203-4205).
            return Err(ConfigError::Conflict("scaled_sinu_pos_emb", "l2norm_embed"));
        }
        if self.has_sinusoidal_pos_emb() && !self.emb_width().is_multiple_of(2) {
            // ScaledSinusoidalEmbedding asserts an even width (xt:447).
            return Err(ConfigError::Conflict("scaled_sinu_pos_emb", "emb_dim"));
        }
        let (d, e, limit) = (self.attn_layers.dim, self.emb_width(), 1usize << 30);
        // Neither is 0 here (checked above): spares the divisions below their panic path.
        let (d, e) = (if d == 0 { 1 } else { d }, if e == 0 { 1 } else { e });
        if self.num_memory_tokens > limit / d
            || e > limit
            || self.logits_width() > limit
            || self.num_tokens > limit / e
            || self.max_seq_len > limit / e
            || self.logits_width() > limit / d
            || e > limit / d
        {
            return Err(ConfigError::TooLarge);
        }
        Ok(())
    }
}
