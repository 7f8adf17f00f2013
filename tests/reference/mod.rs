//! Independent, slow, cache-free float64 reference of the x-transformers 2.31.10 forward pass,
//! written from `docs/x-transformers.md` (cited as "spec §N" / "pitfall N") only.
//!
//! Included by integration tests with `mod reference;`. Everything is recomputed from scratch for
//! every call: no KV cache, no incremental state. Weights are looked up by their x-transformers
//! `state_dict` names (spec §4), row-major `[out, in]` as torch stores them.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;

pub mod math;

pub use math::{act, erf, layer_norm, rms_norm, rotary_angle, rotary_inv_freq, rotate_head};

/// Norm type of every Decoder norm (pre-norms and final norm), spec §3.2.
#[allow(clippy::enum_variant_names)] // names fixed by the brief
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefNorm {
    /// `nn.LayerNorm` without affine, eps 1e-5, then ·(γ+1); key `….gamma`.
    LayerNorm,
    /// `use_rmsnorm`: x / max(‖x‖, 1e-12) · √D · (g+1); key `….g`.
    RmsNorm,
    /// `use_simple_rmsnorm`: x / max(‖x‖, 1e-12) · √D; no key.
    SimpleRmsNorm,
    /// `use_scalenorm`: x / max(‖x‖, 1e-12) · √D · (g+1) with a scalar g; key `….g` of shape (1,)
    /// (`ScaleNorm`, x_transformers.py 1059-1074).
    ScaleNorm,
}

/// Where the norms are (x_transformers.py `AttentionLayers.forward`: `pre_branch_norm`,
/// `post_branch_norm`, `post_main_norm`, `softclamp_output`, `final_norm`), and the residual,
/// attention-output and feed-forward extras.
#[derive(Clone, Debug, PartialEq)]
pub struct RefExtras {
    /// `pre_norm`: u = Norm(x) before each sublayer (key `….0.0`); false: post-norm, x = Norm(x +
    /// branch) after each sublayer (key `….0.2`) and no final norm.
    pub pre_norm: bool,
    /// `pre_norm_has_final_norm` (only with `pre_norm`).
    pub final_norm: bool,
    /// `sandwich_norm`: the branch output is normed before the add (key `….0.1`).
    pub sandwich: bool,
    /// `softclamp_output` with its value: x = tanh(x/v)·v before the final norm.
    pub softclamp_output: Option<f64>,
    /// `scale_residual`: the residual path times `layers.ℓ.2.residual_scale` (x_transformers.py
    /// `Residual.forward`).
    pub scale_residual: bool,
    /// `scale_residual_constant`: then times this constant.
    pub scale_residual_constant: f64,
    /// `attn_head_scale`: each head's attention output times `….1.head_scale_params[h]`.
    pub head_scale: bool,
    /// `attn_gate_values`: attention output ⊙ sigmoid(u·W_gᵀ), W_g = `….1.to_v_gate.weight`.
    pub gate_values: bool,
    /// `ff_softclamp_value`: tanh(z/v)·v on the first linear's output, before the activation
    /// (no GLU).
    pub ff_softclamp: Option<f64>,
    /// `attn_qk_norm` as (groups, logit scale, dim scale): q and k of every head l2-normalised
    /// per group (x / max(‖x‖, 1e-12)) before rotary, times `….1.qk_norm_{q,k}_scale` with dim
    /// scale; logits scaled by the given scale (d^−½ with dim scale).
    pub qk_norm: Option<(usize, f64, bool)>,
    /// `norm_add_unit_offset`: stored norm gains are gain − 1 (true, the default) or the gain.
    pub unit_offset: bool,
    /// `ff_glu_mult_bias` (with GLU): h ⊙ `….ff.0.mult_bias`.
    pub glu_mult_bias: bool,
    /// `ff_post_act_ln`: LayerNorm of the hidden features with the gain `….ff.1.gamma` as stored;
    /// the output linear is then `….ff.3`.
    pub ff_post_act_ln: bool,
    /// `use_layerscale`: every sublayer's output times `….1.gamma` (+1 with the unit offset),
    /// before the sandwich norm; the sublayer's own keys are under `….1.fn.`.
    pub layerscale: bool,
    /// `gate_residual`: x = GRUCell(branch, residual) with `layers.ℓ.2.gru.*` (gates r, z, n);
    /// `residual_scale` first, the constant unused.
    pub gate_residual: bool,
    /// `macaron`: blocks ('f', 'a', ['c',] 'f'), every feed-forward's output halved and its keys
    /// under `….1.fn.` (`Scale`).
    pub macaron: bool,
    /// `attn_value_rmsnorm`: every value head x / max(‖x‖, 1e-12) · √d · (γ + 1), γ =
    /// `….1.value_rmsnorm.gamma` [H, 1, d], before the values are stored.
    pub value_rmsnorm: bool,
    /// `alibi_pos_bias`: the first this many heads' self-attention logits get −slope_h·|i − j|.
    pub alibi_heads: usize,
    /// `attn_max_attend_past`: self-attention keys more than this many positions back are masked.
    pub max_attend_past: Option<usize>,
    /// `attn_num_mem_kv`: learned keys/values `….1.mem_k`/`mem_v` [H_kv, M, d] seen by every query
    /// (self- and cross-attention), keys qk-normed with qk norm, no position.
    pub mem_kv: usize,
    /// `attn_add_zero_kv`: a zero key (logit 0) and zero value seen by every query.
    pub zero_kv: bool,
    /// `attn_softclamp_logits` with its value: logits tanh(s/v)·v after the ALiBi bias.
    pub logit_softclamp: Option<f64>,
    /// `weight_tie_layers`: the keys of block 0 only, which every block reads.
    pub weight_tie: bool,
    /// `add_value_residual` with `learned_value_residual_mix`: the self-attention values of every
    /// block after the first are lerp(v₀, v, mix) with v₀ the first block's projected values and
    /// mix = sigmoid(u·Wᵀ + b) per head (`….1.to_value_residual_mix.0.*`), or 0.5 unlearned.
    pub value_residual: Option<bool>,
    /// `rotary_xpos` with its scale base B: after rotary, pair m of q at position i times
    /// s_m^((i − c)/B) and of k at j times s_m^(−(j − c)/B), s_m = (2m + 0.4r)/(1.4r), c = ⌊n/2⌋.
    pub xpos: Option<usize>,
    /// `custom_layers`: the sublayers' letters ('a', 'c', 'f') instead of `depth` default blocks.
    pub custom_layers: Option<String>,
    /// `residual_attn`: every self-attention adds the previous one's pre-softmax logits (after
    /// its bias, softclamp and mask) before its own bias.
    pub residual_attn: bool,
    /// `cross_residual_attn`: the same between cross-attentions.
    pub cross_residual_attn: bool,
    /// `par_ratio` (without `custom_layers`).
    pub par_ratio: Option<usize>,
    /// `sandwich_coef` (without `custom_layers` and `par_ratio`).
    pub sandwich_coef: Option<usize>,
    /// `layers_execute_order`: the stored sublayers run in this order.
    pub execute_order: Option<Vec<usize>>,
}

impl Default for RefExtras {
    fn default() -> Self {
        RefExtras {
            pre_norm: true,
            final_norm: true,
            sandwich: false,
            softclamp_output: None,
            scale_residual: false,
            scale_residual_constant: 1.0,
            head_scale: false,
            gate_values: false,
            ff_softclamp: None,
            qk_norm: None,
            unit_offset: true,
            glu_mult_bias: false,
            ff_post_act_ln: false,
            layerscale: false,
            gate_residual: false,
            macaron: false,
            value_rmsnorm: false,
            alibi_heads: 0,
            max_attend_past: None,
            mem_kv: 0,
            zero_kv: false,
            logit_softclamp: None,
            xpos: None,
            weight_tie: false,
            value_residual: None,
            custom_layers: None,
            residual_attn: false,
            cross_residual_attn: false,
            par_ratio: None,
            sandwich_coef: None,
            execute_order: None,
        }
    }
}

/// Feed-forward activation, spec §3.6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefAct {
    /// exact GELU (default, `nn.GELU()` with approximate='none').
    Gelu,
    /// `ff_swish`.
    Silu,
    /// `ff_relu_squared`.
    ReluSquared,
}

/// A fully resolved Decoder configuration (all x-transformers defaults already applied by the caller).
#[derive(Clone, Debug, PartialEq)]
pub struct RefConfig {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub attn_dim_head: usize,
    /// Already resolved (1 for MQA, `heads` if not GQA).
    pub attn_kv_heads: usize,
    pub cross_attend: bool,
    /// Already resolved (defaults to `dim`).
    pub dim_context: usize,
    pub rotary_pos_emb: bool,
    /// Already resolved (default dim_head/2).
    pub rotary_emb_dim: usize,
    pub rotary_base_rescale_factor: f64,
    pub rotary_interpolation_factor: f64,
    pub norm: RefNorm,
    /// Where the norms are, and the extras.
    pub extras: RefExtras,
    /// int(dim * ff_mult), already resolved.
    pub ff_inner: usize,
    pub ff_glu: bool,
    pub act: RefAct,
    pub ff_no_bias: bool,
    /// TransformerWrapper part (None = raw Decoder).
    pub wrapper: Option<RefWrapper>,
}

/// The TransformerWrapper around the Decoder (spec §3.9).
#[derive(Clone, Debug, PartialEq)]
pub struct RefWrapper {
    pub num_tokens: usize,
    pub max_seq_len: usize,
    /// Resolved: false when rotary is on, abs pos emb is disabled, or max_seq_len == 0.
    pub abs_pos_emb: bool,
    pub tie_embedding: bool,
    /// `tie_embedding_scale`; None: D^−½.
    pub tie_embedding_scale: Option<f64>,
    /// `post_emb_norm`: LayerNorm of x₀ with the gain `post_emb_norm.gamma` as stored.
    pub post_emb_norm: bool,
    /// `l2norm_embed`: x₀ = E[t]/‖E[t]‖ + P[pos]/‖P[pos]‖ (no D^−½).
    pub l2norm_embed: bool,
    /// Resolved `emb_dim` (default D): the width E of the token and position embeddings and of
    /// `post_emb_norm`; E ≠ D adds `project_emb` (W `[D, E]`, bias `[D]`) after them.
    pub emb_dim: usize,
    /// Resolved `logits_dim` (default V): the rows of `to_logits.weight` (unused when tied).
    pub logits_dim: usize,
    /// `scaled_sinu_pos_emb`: with absolute positions, P[p] = [sin(p·ω), cos(p·ω)] · s with
    /// ω_k = 10000^(−k/(E/2)) and s = `pos_emb.scale`, instead of the table (and without its
    /// E^−½).
    pub scaled_sinu: bool,
    /// `num_memory_tokens`: M rows `memory_tokens` [M, D] before the embedded sequence (after
    /// `project_emb`), run through the layers with it and dropped after them.
    pub num_memory_tokens: usize,
}

/// Weights by x-transformers `state_dict` key; matrices row-major `[out, in]`.
pub type RefWeights = HashMap<String, Vec<f64>>;

impl RefConfig {
    /// `Decoder(dim, depth)` with every x-transformers default (spec §3.1, right column):
    /// heads 8, dim_head 64, no GQA, no cross-attention, no rotary, LayerNorm, FF 4·dim with GELU and biases.
    pub fn default_decoder(dim: usize, depth: usize) -> Self {
        RefConfig {
            dim,
            depth,
            heads: 8,
            attn_dim_head: 64,
            attn_kv_heads: 8,
            cross_attend: false,
            dim_context: dim,
            rotary_pos_emb: false,
            rotary_emb_dim: 32,
            rotary_base_rescale_factor: 1.0,
            rotary_interpolation_factor: 1.0,
            norm: RefNorm::LayerNorm,
            extras: RefExtras::default(),
            ff_inner: 4 * dim,
            ff_glu: false,
            act: RefAct::Gelu,
            ff_no_bias: false,
            wrapper: None,
        }
    }

    /// The article config `Decoder(dim=128, depth=4, heads=4, cross_attend=True, rotary_pos_emb=True)`
    /// (spec §3.1, left column): dim_head 64, r = 32.
    pub fn article() -> Self {
        RefConfig {
            heads: 4,
            attn_kv_heads: 4,
            cross_attend: true,
            rotary_pos_emb: true,
            rotary_emb_dim: 32,
            ..RefConfig::default_decoder(128, 4)
        }
    }

    /// The default block's letters: ['f',] 'a', ['c',] 'f' (spec §3.1).
    fn default_block(&self) -> Vec<char> {
        let mut b = Vec::new();
        if self.extras.macaron {
            b.push('f');
        }
        b.push('a');
        if self.cross_attend {
            b.push('c');
        }
        b.push('f');
        b
    }

    /// The stored sublayers' letters, `layers.0` … (spec §3.17), as x-transformers builds
    /// them: `custom_layers`, else `par_ratio`'s pattern, else `sandwich_coef`'s, else the
    /// default block `depth` times (once with weight tying).
    pub fn layer_types(&self) -> Vec<char> {
        let block = self.default_block();
        let e = &self.extras;
        if let Some(t) = &e.custom_layers {
            return t.chars().collect();
        }
        if let Some(ratio) = e.par_ratio {
            let par_depth = self.depth * block.len();
            let no_ff: Vec<char> = block.iter().copied().filter(|&c| c != 'f').collect();
            let par_attn = par_depth / ratio;
            let depth_cut = par_depth * 2 / 3;
            let par_width = (depth_cut + depth_cut / par_attn) / par_attn;
            let mut par_block = no_ff.clone();
            par_block.resize(par_width, 'f');
            let mut t: Vec<char> = par_block.repeat(par_attn);
            t.resize(par_depth, 'f');
            return t;
        }
        if let Some(s) = e.sandwich_coef {
            let mut t = vec!['a'; s];
            t.extend(block.repeat(self.depth - s));
            t.extend(vec!['f'; s]);
            return t;
        }
        if e.weight_tie {
            return block;
        }
        block.repeat(self.depth)
    }

    /// The order the stored sublayers run in: `layers_execute_order`, the default block's
    /// sublayers `depth` times with weight tying, else each once.
    pub fn execute_order(&self) -> Vec<usize> {
        if let Some(o) = &self.extras.execute_order {
            return o.clone();
        }
        if self.extras.weight_tie {
            return (0..self.default_block().len())
                .cycle()
                .take(self.default_block().len() * self.depth)
                .collect();
        }
        (0..self.layer_types().len()).collect()
    }

    fn check(&self) {
        assert!(self.dim > 0 && self.heads > 0 && self.attn_dim_head > 0);
        assert!(
            self.attn_kv_heads > 0 && self.attn_kv_heads <= self.heads,
            "kv heads must be in 1..=heads"
        );
        // spec §3.3 step 9: without `to_out` (heads == 1) the head output is added to the residual directly.
        assert!(
            self.heads > 1 || self.attn_dim_head == self.dim,
            "heads == 1 has no to_out, so attn_dim_head must equal dim (spec §3.3 step 9)"
        );
        if self.rotary_pos_emb {
            assert!(
                self.rotary_emb_dim >= 4
                    && self.rotary_emb_dim.is_multiple_of(2)
                    && self.rotary_emb_dim <= self.attn_dim_head,
                "rotary_emb_dim must be even, >= 4 and <= attn_dim_head"
            );
        }
    }
}

/// Key prefix of the decoder weights: none for a raw Decoder, `attn_layers.` inside a wrapper (spec §4).
fn decoder_prefix(cfg: &RefConfig) -> &'static str {
    if cfg.wrapper.is_some() {
        "attn_layers."
    } else {
        ""
    }
}

/// Stored-norm key suffix for a norm kind (spec §3.2, §4): `gamma` (LayerNorm), `g` (RMSNorm), none.
fn norm_param(kind: RefNorm) -> Option<&'static str> {
    match kind {
        RefNorm::LayerNorm => Some("gamma"),
        RefNorm::RmsNorm | RefNorm::ScaleNorm => Some("g"),
        RefNorm::SimpleRmsNorm => None,
    }
}

/// Length of a norm's gain: dim, or 1 for ScaleNorm.
fn norm_len(cfg: &RefConfig) -> usize {
    if cfg.norm == RefNorm::ScaleNorm {
        1
    } else {
        cfg.dim
    }
}

/// Every `state_dict` key of this config with its shape, in `state_dict` order (spec §4).
pub fn param_shapes(cfg: &RefConfig) -> Vec<(String, Vec<usize>)> {
    cfg.check();
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let d = cfg.dim;
    if let Some(wr) = &cfg.wrapper {
        // spec §3.9 / §4: token embedding [V, E], absolute positions [S, E] only when enabled;
        // the sinusoids' amplitude [1] and their frequencies [E/2] (a buffer the exporter adds).
        let e = wr.emb_dim;
        out.push(("token_emb.emb.weight".into(), vec![wr.num_tokens, e]));
        if wr.abs_pos_emb && !wr.scaled_sinu {
            out.push(("pos_emb.emb.weight".into(), vec![wr.max_seq_len, e]));
        }
        if wr.abs_pos_emb && wr.scaled_sinu {
            out.push(("pos_emb.scale".into(), vec![1]));
            out.push(("pos_emb.inv_freq".into(), vec![e / 2]));
        }
    }
    let pre = decoder_prefix(cfg);
    let inner_q = cfg.heads * cfg.attn_dim_head;
    let inner_kv = cfg.attn_kv_heads * cfg.attn_dim_head;
    let types = cfg.layer_types();
    let first_attn = types.iter().position(|&t| t == 'a');
    {
        for (l, &kind) in types.iter().enumerate() {
            // spec §3.7: layers.ℓ.0.0 is the pre-norm, .0.1 the sandwich norm, .0.2 the post-norm;
            // no key for SimpleRMSNorm.
            if let Some(p) = norm_param(cfg.norm) {
                let nl = norm_len(cfg);
                if cfg.extras.pre_norm {
                    out.push((format!("{pre}layers.{l}.0.0.{p}"), vec![nl]));
                }
                if cfg.extras.sandwich {
                    out.push((format!("{pre}layers.{l}.0.1.{p}"), vec![nl]));
                }
                if !cfg.extras.pre_norm {
                    out.push((format!("{pre}layers.{l}.0.2.{p}"), vec![nl]));
                }
            }
            if cfg.extras.scale_residual {
                out.push((format!("{pre}layers.{l}.2.residual_scale"), vec![d]));
            }
            if cfg.extras.gate_residual {
                for m in ["weight_ih", "weight_hh"] {
                    out.push((format!("{pre}layers.{l}.2.gru.{m}"), vec![3 * d, d]));
                }
                for b in ["bias_ih", "bias_hh"] {
                    out.push((format!("{pre}layers.{l}.2.gru.{b}"), vec![3 * d]));
                }
            }
            let is_ff = kind == 'f';
            if !is_ff {
                // spec §3.3 / §3.5 / §4: no-bias projections; cross-attn K/V read dim_context.
                let kv_in = if kind == 'c' { cfg.dim_context } else { d };
                out.push((format!("{pre}layers.{l}.1.to_q.weight"), vec![inner_q, d]));
                out.push((
                    format!("{pre}layers.{l}.1.to_k.weight"),
                    vec![inner_kv, kv_in],
                ));
                out.push((
                    format!("{pre}layers.{l}.1.to_v.weight"),
                    vec![inner_kv, kv_in],
                ));
                if cfg.heads > 1 {
                    out.push((format!("{pre}layers.{l}.1.to_out.weight"), vec![d, inner_q]));
                }
                if cfg.extras.head_scale {
                    out.push((
                        format!("{pre}layers.{l}.1.head_scale_params"),
                        vec![1, cfg.heads, 1, 1],
                    ));
                }
                if cfg.extras.gate_values {
                    out.push((
                        format!("{pre}layers.{l}.1.to_v_gate.weight"),
                        vec![inner_q, d],
                    ));
                }
                if cfg.extras.value_rmsnorm {
                    out.push((
                        format!("{pre}layers.{l}.1.value_rmsnorm.gamma"),
                        vec![cfg.heads, 1, cfg.attn_dim_head],
                    ));
                }
                if cfg.extras.value_residual == Some(true) && kind == 'a' && first_attn != Some(l) {
                    out.push((
                        format!("{pre}layers.{l}.1.to_value_residual_mix.0.weight"),
                        vec![cfg.heads, d],
                    ));
                    out.push((
                        format!("{pre}layers.{l}.1.to_value_residual_mix.0.bias"),
                        vec![cfg.heads],
                    ));
                }
                if cfg.extras.mem_kv > 0 {
                    for t in ["mem_k", "mem_v"] {
                        out.push((
                            format!("{pre}layers.{l}.1.{t}"),
                            vec![cfg.attn_kv_heads, cfg.extras.mem_kv, cfg.attn_dim_head],
                        ));
                    }
                }
                if let Some((_, _, true)) = cfg.extras.qk_norm {
                    let dh = cfg.attn_dim_head;
                    out.push((
                        format!("{pre}layers.{l}.1.qk_norm_q_scale"),
                        vec![cfg.heads, 1, dh],
                    ));
                    out.push((
                        format!("{pre}layers.{l}.1.qk_norm_k_scale"),
                        vec![cfg.attn_kv_heads, 1, dh],
                    ));
                }
            } else if cfg.ff_glu {
                // spec §3.6 / pitfall 5: the GLU projection always has a bias.
                let f = cfg.ff_inner;
                out.push((
                    format!("{pre}layers.{l}.1.ff.0.proj.weight"),
                    vec![2 * f, d],
                ));
                out.push((format!("{pre}layers.{l}.1.ff.0.proj.bias"), vec![2 * f]));
                if cfg.extras.glu_mult_bias {
                    out.push((format!("{pre}layers.{l}.1.ff.0.mult_bias"), vec![f]));
                }
                ff_out_shapes(cfg, &mut out, pre, l, f);
            } else {
                let f = cfg.ff_inner;
                out.push((format!("{pre}layers.{l}.1.ff.0.0.weight"), vec![f, d]));
                if !cfg.ff_no_bias {
                    out.push((format!("{pre}layers.{l}.1.ff.0.0.bias"), vec![f]));
                }
                ff_out_shapes(cfg, &mut out, pre, l, f);
            }
        }
    }
    if cfg.extras.macaron {
        // Scale(0.5, FeedForward): the feed-forward's keys one level down.
        for (k, _) in out.iter_mut() {
            if k.contains(".1.ff.") {
                *k = k.replace(".1.ff.", ".1.fn.ff.");
            }
        }
    }
    if cfg.extras.layerscale {
        // LayerScale wraps every sublayer module: its keys move under `….1.fn.`, and its gain is
        // `….1.gamma` [D].
        let marker = format!("{pre}layers.");
        let mut gains = Vec::new();
        for (k, _) in out.iter_mut() {
            if let Some(rest) = k.strip_prefix(&marker) {
                let mut parts = rest.splitn(3, '.');
                let (l, m, tail) = (parts.next(), parts.next(), parts.next());
                if let (Some(l), Some("1"), Some(tail)) = (l, m, tail) {
                    let g = format!("{marker}{l}.1.gamma");
                    if !gains.contains(&g) {
                        gains.push(g);
                    }
                    *k = format!("{marker}{l}.1.fn.{tail}");
                }
            }
        }
        out.extend(gains.into_iter().map(|g| (g, vec![d])));
    }
    if cfg.rotary_pos_emb {
        // spec §3.4: persistent buffer with r/2 entries.
        out.push((
            format!("{pre}rotary_pos_emb.inv_freq"),
            vec![cfg.rotary_emb_dim / 2],
        ));
        if cfg.extras.xpos.is_some() {
            // The xpos scales, also a persistent buffer.
            out.push((
                format!("{pre}rotary_pos_emb.scale"),
                vec![cfg.rotary_emb_dim / 2],
            ));
        }
    }
    if let Some(p) = norm_param(cfg.norm) {
        if cfg.extras.pre_norm && cfg.extras.final_norm {
            out.push((format!("{pre}final_norm.{p}"), vec![norm_len(cfg)]));
        }
    }
    if let Some(wr) = &cfg.wrapper {
        if !wr.tie_embedding {
            out.push(("to_logits.weight".into(), vec![wr.logits_dim, d]));
        }
        if wr.post_emb_norm {
            out.push(("post_emb_norm.gamma".into(), vec![wr.emb_dim]));
        }
        if wr.emb_dim != d {
            out.push(("project_emb.weight".into(), vec![d, wr.emb_dim]));
            out.push(("project_emb.bias".into(), vec![d]));
        }
        if wr.num_memory_tokens > 0 {
            out.push(("memory_tokens".into(), vec![wr.num_memory_tokens, d]));
        }
    }
    out
}

/// splitmix64 (Steele, Lea, Flood 2014), written from its definition.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// 64-bit FNV-1a of a key, so every tensor gets its own stream (adding a key never shifts the others).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The feed-forward's hidden LayerNorm (`ff_post_act_ln`, `….ff.1.gamma`) and output linear
/// (`….ff.2`, or `….ff.3` after the LayerNorm).
fn ff_out_shapes(
    cfg: &RefConfig,
    out: &mut Vec<(String, Vec<usize>)>,
    pre: &str,
    l: usize,
    f: usize,
) {
    let d = cfg.dim;
    let i = if cfg.extras.ff_post_act_ln {
        out.push((format!("{pre}layers.{l}.1.ff.1.gamma"), vec![f]));
        3
    } else {
        2
    };
    out.push((format!("{pre}layers.{l}.1.ff.{i}.weight"), vec![d, f]));
    if !cfg.ff_no_bias {
        out.push((format!("{pre}layers.{l}.1.ff.{i}.bias"), vec![d]));
    }
}

/// Deterministic random weights for every key of `param_shapes(cfg)`:
/// matrices N(0, 1/in) (embeddings N(0, 1)), stored norm gains and biases U(−0.5, 0.5) (so the
/// effective gain γ+1 is visibly ≠ 1), and `rotary_pos_emb.inv_freq` from the exact f32 formula (spec §3.4).
pub fn random_weights(cfg: &RefConfig, seed: u64) -> RefWeights {
    let mut w = RefWeights::new();
    for (key, shape) in param_shapes(cfg) {
        let len: usize = shape.iter().product();
        let mut rng = SplitMix64(fnv1a(&key) ^ seed.wrapping_mul(0xD134_2543_DE82_EF95));
        let v: Vec<f64> = if key.ends_with("rotary_pos_emb.inv_freq") {
            rotary_inv_freq(cfg.rotary_emb_dim, cfg.rotary_base_rescale_factor)
                .into_iter()
                .map(f64::from)
                .collect()
        } else if key.ends_with("rotary_pos_emb.scale") {
            let r = cfg.rotary_emb_dim as f64;
            (0..len)
                .map(|m| ((2.0 * m as f64 + 0.4 * r) / (1.4 * r)) as f32 as f64)
                .collect()
        } else if key == "pos_emb.inv_freq" {
            sinusoid_inv_freq(len)
        } else if key == "pos_emb.scale" {
            // the sinusoids' amplitude (dim^−½ in x-transformers' initialisation)
            (0..len).map(|_| 0.1 + 0.3 * rng.uniform()).collect()
        } else if key.ends_with(".gamma")
            || key.ends_with(".g")
            || key.ends_with(".bias")
            || key.ends_with(".bias_ih")
            || key.ends_with(".bias_hh")
        {
            (0..len).map(|_| rng.uniform() - 0.5).collect()
        } else if key.ends_with(".residual_scale")
            || key.ends_with(".head_scale_params")
            || key.ends_with("_scale")
            || key.ends_with(".mult_bias")
        {
            // gains used as stored (initialised to 1 in x-transformers)
            (0..len).map(|_| 0.5 + rng.uniform()).collect()
        } else if key == "token_emb.emb.weight"
            || key == "pos_emb.emb.weight"
            || key.ends_with(".mem_k")
            || key.ends_with(".mem_v")
        {
            // torch.randn, as x-transformers initialises them
            (0..len).map(|_| rng.normal()).collect()
        } else {
            assert_eq!(shape.len(), 2, "{key}");
            let sd = 1.0 / (shape[1] as f64).sqrt();
            (0..len).map(|_| rng.normal() * sd).collect()
        };
        w.insert(key, v);
    }
    w
}

/// Looks a tensor up and checks its length.
fn get<'a>(w: &'a RefWeights, key: &str, len: usize) -> &'a [f64] {
    let v = w
        .get(key)
        .unwrap_or_else(|| panic!("reference: missing weight `{key}`"));
    assert_eq!(v.len(), len, "reference: weight `{key}` has the wrong size");
    v
}

/// y = x·Wᵀ (+ b) for `n` rows; W is `[out, in]` row-major (spec §3.1, `nn.Linear`).
fn linear(x: &[f64], n: usize, w: &[f64], out: usize, inp: usize, b: Option<&[f64]>) -> Vec<f64> {
    assert_eq!(x.len(), n * inp);
    assert_eq!(w.len(), out * inp);
    let mut y = vec![0.0; n * out];
    for i in 0..n {
        let xi = &x[i * inp..(i + 1) * inp];
        for o in 0..out {
            let wo = &w[o * inp..(o + 1) * inp];
            let mut s: f64 = xi.iter().zip(wo).map(|(a, b)| a * b).sum();
            if let Some(b) = b {
                s += b[o];
            }
            y[i * out + o] = s;
        }
    }
    y
}

/// Applies a Decoder norm (pre-norm `…layers.ℓ.0.0` or `…final_norm`) to every row (spec §3.2, pitfalls 1–2).
fn norm_rows(cfg: &RefConfig, w: &RefWeights, key_base: &str, x: &[f64]) -> Vec<f64> {
    let d = cfg.dim;
    // Without norm_add_unit_offset the stored value is the gain itself: hand the norms gain − 1.
    let gain: Option<Vec<f64>> = norm_param(cfg.norm).map(|p| {
        let g = get(w, &format!("{key_base}.{p}"), norm_len(cfg));
        let off = if cfg.extras.unit_offset { 0.0 } else { 1.0 };
        g.iter().map(|v| v - off).collect()
    });
    let gain = gain.as_deref();
    x.chunks(d)
        .flat_map(|row| math::norm_row(cfg.norm, row, gain))
        .collect()
}

/// The rotary `inv_freq` the forward pass uses: the stored buffer if present (what a loader reads),
/// else the formula (spec §3.4). Values are f32 by construction.
fn inv_freq_for(cfg: &RefConfig, w: &RefWeights) -> Vec<f32> {
    let key = format!("{}rotary_pos_emb.inv_freq", decoder_prefix(cfg));
    match w.get(&key) {
        Some(v) => {
            assert_eq!(
                v.len(),
                cfg.rotary_emb_dim / 2,
                "`{key}` has the wrong size"
            );
            v.iter().map(|&x| x as f32).collect()
        }
        None => rotary_inv_freq(cfg.rotary_emb_dim, cfg.rotary_base_rescale_factor),
    }
}

/// One attention sublayer (spec §3.3 for self-attention, §3.5 for cross-attention).
/// `u`: n pre-normed rows of width D. `kv_src`: m rows of width `kv_dim` (u itself, or the raw context).
/// `self_attn`: causal mask + rotary (if configured) on q and k; otherwise no mask and no positions.
#[allow(clippy::too_many_arguments)]
fn attention(
    cfg: &RefConfig,
    w: &RefWeights,
    key_base: &str,
    u: &[f64],
    n: usize,
    kv_src: &[f64],
    m: usize,
    kv_dim: usize,
    self_attn: bool,
    inv_freq: Option<&[f32]>,
    store: &mut Store<'_>,
    masks: (Option<&[bool]>, Option<&[bool]>),
    causal: bool,
    first_values: &mut Option<Vec<f64>>,
    prev_logits: Option<&mut Option<Vec<f64>>>,
) -> Vec<f64> {
    // Padding (spec §3.13): `key_mask` excludes keys, `query_mask` zeroes the sublayer's output
    // at padded positions.
    let (query_mask, key_mask) = match self_attn {
        true => (masks.0, masks.0),
        false => (masks.0, masks.1),
    };
    let d = cfg.dim;
    let dh = cfg.attn_dim_head;
    let h_q = cfg.heads;
    let h_kv = cfg.attn_kv_heads;
    let iq = h_q * dh;
    let ikv = h_kv * dh;
    // §3.3 step 1: projections without bias.
    let wq = get(w, &format!("{key_base}.to_q.weight"), iq * d);
    let wk = get(w, &format!("{key_base}.to_k.weight"), ikv * kv_dim);
    let wv = get(w, &format!("{key_base}.to_v.weight"), ikv * kv_dim);
    let mut q = linear(u, n, wq, iq, d, None);
    let mut k = linear(kv_src, m, wk, ikv, kv_dim, None);
    let mut v = linear(kv_src, m, wv, ikv, kv_dim, None);
    // add_value_residual: the first self-attention keeps its values, the later ones lerp to them.
    if let (Some(learned), true) = (cfg.extras.value_residual, self_attn) {
        match first_values {
            None => *first_values = Some(v.clone()),
            Some(v0) => {
                let mix: Vec<f64> = if learned {
                    let wm = get(
                        w,
                        &format!("{key_base}.to_value_residual_mix.0.weight"),
                        h_q * d,
                    );
                    let bm = get(w, &format!("{key_base}.to_value_residual_mix.0.bias"), h_q);
                    linear(u, n, wm, h_q, d, Some(bm))
                        .into_iter()
                        .map(|z| 1.0 / (1.0 + (-z).exp()))
                        .collect()
                } else {
                    vec![0.5; n * h_q]
                };
                for (j, row) in v.chunks_mut(ikv).enumerate() {
                    for (c, e) in row.iter_mut().enumerate() {
                        let a = v0[j * ikv + c];
                        *e = a + mix[j * h_q + c / dh] * (*e - a);
                    }
                }
            }
        }
    }
    // attn_qk_norm: per head and group, before rotary.
    if let Some((groups, _, dim_scale)) = cfg.extras.qk_norm {
        let gq = dim_scale.then(|| get(w, &format!("{key_base}.qk_norm_q_scale"), iq));
        let gk = dim_scale.then(|| get(w, &format!("{key_base}.qk_norm_k_scale"), ikv));
        for (t, width, gain) in [(&mut q, iq, gq), (&mut k, ikv, gk)] {
            for row in t.chunks_mut(width) {
                for part in row.chunks_mut(dh / groups) {
                    let norm = part.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                    part.iter_mut().for_each(|v| *v /= norm);
                }
                if let Some(g) = gain {
                    row.iter_mut().zip(g).for_each(|(v, s)| *v *= s);
                }
            }
        }
    }
    if cfg.extras.value_rmsnorm {
        let g = get(w, &format!("{key_base}.value_rmsnorm.gamma"), ikv);
        for row in v.chunks_mut(ikv) {
            for (h, head) in row.chunks_mut(dh).enumerate() {
                let norm = head.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                for (i, x) in head.iter_mut().enumerate() {
                    *x = *x / norm * (dh as f64).sqrt() * (g[h * dh + i] + 1.0);
                }
            }
        }
    }
    // §3.3 step 2: column c belongs to head c / dh.
    // §3.3 step 4 / §3.4: RoPE on q and k of self-attention at positions 0..n-1 (V never rotated);
    // §3.5: none on cross-attention.
    if self_attn {
        if let Some(f) = inv_freq {
            for i in 0..n {
                for h in 0..h_q {
                    let s = i * iq + h * dh;
                    rotate_head(&mut q[s..s + dh], i, f, cfg.rotary_interpolation_factor);
                }
            }
            for j in 0..m {
                for h in 0..h_kv {
                    let s = j * ikv + h * dh;
                    rotate_head(&mut k[s..s + dh], j, f, cfg.rotary_interpolation_factor);
                }
            }
        }
    }
    // Keys (as rotated, before xpos scales them: a cache holds them so and scales each q·k by
    // its distance) and values as a KV cache of the caller's storage type would hold them.
    for e in k.iter_mut().chain(v.iter_mut()) {
        *e = store(self_attn, *e);
    }
    if let (true, Some(base)) = (self_attn && inv_freq.is_some(), cfg.extras.xpos) {
        // xpos, as the full pass computes it: centred on half the sequence.
        let r = cfg.rotary_emb_dim;
        let c = (n / 2) as f64;
        let scale = |head: &mut [f64], pos: usize, sign: f64| {
            for (mm, pair) in head[..r].chunks_mut(2).enumerate() {
                let sm = (2.0 * mm as f64 + 0.4 * r as f64) / (1.4 * r as f64);
                let w = sm.powf(sign * (pos as f64 - c) / base as f64);
                pair.iter_mut().for_each(|e| *e *= w);
            }
        };
        for (i, row) in q.chunks_mut(iq).enumerate() {
            row.chunks_mut(dh).for_each(|hd| scale(hd, i, 1.0));
        }
        for (j, row) in k.chunks_mut(ikv).enumerate() {
            row.chunks_mut(dh).for_each(|hd| scale(hd, j, -1.0));
        }
    }
    let scale = match cfg.extras.qk_norm {
        Some((_, s, false)) => s,    // attn_qk_norm_scale
        _ => (dh as f64).powf(-0.5), // §3.3 step 6
    };
    // attn_num_mem_kv: the memory keys (qk-normed like k) and values, per kv head.
    let mem = cfg.extras.mem_kv;
    let (mut mem_k, mem_v) = if mem > 0 {
        (
            get(w, &format!("{key_base}.mem_k"), h_kv * mem * dh).to_vec(),
            get(w, &format!("{key_base}.mem_v"), h_kv * mem * dh).to_vec(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    if let (Some((groups, _, dim_scale)), true) = (cfg.extras.qk_norm, mem > 0) {
        let gk = dim_scale.then(|| get(w, &format!("{key_base}.qk_norm_k_scale"), ikv));
        for (r, row) in mem_k.chunks_mut(dh).enumerate() {
            for part in row.chunks_mut(dh / groups) {
                let norm = part.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                part.iter_mut().for_each(|v| *v /= norm);
            }
            if let Some(g) = gk {
                let head = r / mem; // [H_kv, M, d]
                row.iter_mut()
                    .zip(&g[head * dh..(head + 1) * dh])
                    .for_each(|(v, s)| *v *= s);
            }
        }
    }
    let slopes = alibi_slopes(
        cfg.heads,
        if self_attn { cfg.extras.alibi_heads } else { 0 },
    );
    let clamp = |s: f64| cfg.extras.logit_softclamp.map_or(s, |v| (s / v).tanh() * v);
    let zero = vec![0.0; dh];
    let mut o = vec![0.0; n * iq];
    // residual_attn: the previous run's pre-softmax logits [h][i][column] (columns: the zero key,
    // the memory keys, the keys), added before the bias; this run's, kept for the next.
    let z = usize::from(cfg.extras.zero_kv);
    let cols = z + mem + m;
    let prev = prev_logits.as_ref().and_then(|p| p.as_ref()).cloned();
    let mut cur = vec![f64::NAN; h_q * n * cols];
    for h in 0..h_q {
        let g = h % h_kv; // §3.3 step 5, pitfall 3: query head h reads kv head h mod H_kv
        for i in 0..n {
            let qi = &q[i * iq + h * dh..i * iq + (h + 1) * dh];
            let dot = |k: &[f64]| qi.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale;
            let at = |c: usize| (h * n + i) * cols + c;
            let before = |c: usize| prev.as_ref().map_or(0.0, |p| p[at(c)]);
            // (logit, value) of every key this query sees: the zero key, the memory keys, then
            // the positions'.
            let mut seen: Vec<(f64, &[f64])> = Vec::new();
            if cfg.extras.zero_kv {
                let s = clamp(0.0 + before(0));
                cur[at(0)] = s;
                seen.push((s, &zero));
            }
            for r in 0..mem {
                let a = (g * mem + r) * dh;
                let s = clamp(dot(&mem_k[a..a + dh]) + before(z + r));
                cur[at(z + r)] = s;
                seen.push((s, &mem_v[a..a + dh]));
            }
            for j in 0..m {
                // §3.3 step 7: causal (key j visible iff j <= i); an Encoder (spec §3.14) and
                // cross-attention (§3.5): every key; the local window: i − j <= N.
                if self_attn && causal && j > i {
                    continue;
                }
                if self_attn
                    && cfg
                        .extras
                        .max_attend_past
                        .is_some_and(|w| i as i64 - j as i64 > w as i64)
                {
                    continue;
                }
                // §3.13: a padded key gets no weight.
                if key_mask.is_some_and(|km| !km[j]) {
                    continue;
                }
                let kj = &k[j * ikv + g * dh..j * ikv + (g + 1) * dh];
                let bias = -(i.abs_diff(j) as f64) * slopes[h];
                let s = clamp(dot(kj) + before(z + mem + j) + bias);
                cur[at(z + mem + j)] = s;
                seen.push((s, &v[j * ikv + g * dh..j * ikv + (g + 1) * dh]));
            }
            if seen.is_empty() {
                continue; // no key seen: a zero output (at:663-664)
            }
            // §3.3 step 8: softmax over the keys seen.
            let mx = seen.iter().map(|e| e.0).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = seen.iter().map(|e| (e.0 - mx).exp()).sum();
            let oi = &mut o[i * iq + h * dh..i * iq + (h + 1) * dh];
            for (s, vj) in &seen {
                let a = (s - mx).exp() / z;
                for (ov, vv) in oi.iter_mut().zip(*vj) {
                    *ov += a * vv;
                }
            }
        }
    }
    if let Some(p) = prev_logits {
        *p = Some(cur);
    }
    // attn_head_scale, then attn_gate_values (x_transformers.py Attention.forward, in that order).
    if cfg.extras.head_scale {
        let hs = get(w, &format!("{key_base}.head_scale_params"), h_q);
        for i in 0..n {
            for h in 0..h_q {
                for e in &mut o[i * iq + h * dh..i * iq + (h + 1) * dh] {
                    *e *= hs[h];
                }
            }
        }
    }
    if cfg.extras.gate_values {
        let wg = get(w, &format!("{key_base}.to_v_gate.weight"), iq * d);
        let g = linear(u, n, wg, iq, d, None);
        for (e, z) in o.iter_mut().zip(&g) {
            *e *= 1.0 / (1.0 + (-z).exp());
        }
    }
    // §3.3 step 9: merge heads (h major), then to_out. to_out exists iff heads > 1; with one head
    // and no to_out the head output (dh == D) is the sublayer output.
    let out_key = format!("{key_base}.to_out.weight");
    let mut out = if h_q > 1 || w.contains_key(&out_key) {
        let wo = get(w, &out_key, d * iq);
        linear(&o, n, wo, d, iq, None)
    } else {
        assert_eq!(iq, d, "no to_out and heads*dim_head != dim");
        o
    };
    // §3.13: the output at a padded position is zero (xt:2751-2752).
    if let Some(qm) = query_mask {
        for (row, real) in out.chunks_mut(d).zip(qm) {
            if !real {
                row.iter_mut().for_each(|e| *e = 0.0);
            }
        }
    }
    out
}

/// ALiBi slopes of `heads` heads, the first `alibi` of them biased (x_transformers.py
/// `AlibiPositionalBias._get_slopes`): for a power of two n, 2^(−8(i+1)/n); otherwise those of
/// the power of two p below n, then the even-indexed ones of 2p. Rounded to f32, as torch stores
/// them; 0 for the heads without a bias.
fn alibi_slopes(heads: usize, alibi: usize) -> Vec<f64> {
    let pow2 = |n: usize| (0..n).map(move |i| 2f64.powf(-8.0 * (i + 1) as f64 / n as f64));
    let mut s: Vec<f64> = if alibi == 0 {
        Vec::new()
    } else if alibi.is_power_of_two() {
        pow2(alibi).collect()
    } else {
        let p = 1 << alibi.ilog2();
        pow2(p)
            .chain(pow2(2 * p).step_by(2).take(alibi - p))
            .collect()
    };
    s.iter_mut().for_each(|v| *v = *v as f32 as f64);
    s.resize(heads, 0.0);
    s
}

/// Feed-forward sublayer (spec §3.6, pitfall 5).
fn feed_forward(cfg: &RefConfig, w: &RefWeights, key_base: &str, u: &[f64], n: usize) -> Vec<f64> {
    let d = cfg.dim;
    let f = cfg.ff_inner;
    let h: Vec<f64> = if cfg.ff_glu {
        // p = u·W_pᵀ + b_p (bias always present); up = first F columns, gate = last F; h = up ⊙ act(gate).
        let wp = get(w, &format!("{key_base}.ff.0.proj.weight"), 2 * f * d);
        let bp = get(w, &format!("{key_base}.ff.0.proj.bias"), 2 * f);
        let p = linear(u, n, wp, 2 * f, d, Some(bp));
        let ones = vec![1.0; f];
        let mb = if cfg.extras.glu_mult_bias {
            get(w, &format!("{key_base}.ff.0.mult_bias"), f)
        } else {
            &ones[..]
        };
        p.chunks(2 * f)
            .flat_map(|row| {
                let (up, gate) = row.split_at(f);
                up.iter()
                    .zip(gate)
                    .zip(mb)
                    .map(|((a, g), m)| a * act(cfg.act, *g) * m)
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        // h = act(u·W₁ᵀ + b₁); keys ff.0.0.* (bias absent with ff_no_bias).
        let w1 = get(w, &format!("{key_base}.ff.0.0.weight"), f * d);
        let b1 = (!cfg.ff_no_bias).then(|| get(w, &format!("{key_base}.ff.0.0.bias"), f));
        // ff_softclamp_value: tanh(z/v)·v before the activation.
        let clamp = |z: f64| cfg.extras.ff_softclamp.map_or(z, |v| (z / v).tanh() * v);
        linear(u, n, w1, f, d, b1)
            .into_iter()
            .map(|z| act(cfg.act, clamp(z)))
            .collect()
    };
    // ff_post_act_ln: h = LayerNorm(h) with the gain as stored (layer_norm adds 1 to what it
    // is given); the output linear is then ff.3.
    let (h, i) = if cfg.extras.ff_post_act_ln {
        let g: Vec<f64> = get(w, &format!("{key_base}.ff.1.gamma"), f)
            .iter()
            .map(|v| v - 1.0)
            .collect();
        (h.chunks(f).flat_map(|row| layer_norm(row, &g)).collect(), 3)
    } else {
        (h, 2)
    };
    // out = h·W₂ᵀ + b₂; keys ff.2.* (bias absent with ff_no_bias).
    let w2 = get(w, &format!("{key_base}.ff.{i}.weight"), d * f);
    let b2 = (!cfg.ff_no_bias).then(|| get(w, &format!("{key_base}.ff.{i}.bias"), d));
    linear(&h, n, w2, d, f, b2)
}

/// Decoder forward pass (spec §3.7): x ← x + Sublayer_ℓ(PreNorm_ℓ(x)) for ℓ = 0 … L−1, then FinalNorm.
/// `x` is n×dim, `context` is m×dim_context (required iff `cross_attend`). Positions are 0..n−1,
/// self-attention is causal. Returns n×dim. If `cfg.wrapper` is Some, the decoder keys are read
/// with the `attn_layers.` prefix (so this also gives the wrapper's hidden states).
pub fn decoder_forward(
    cfg: &RefConfig,
    w: &RefWeights,
    x: &[f64],
    context: Option<&[f64]>,
) -> Vec<f64> {
    decoder_forward_stored(cfg, w, x, context, &mut |_, e| e)
}

/// What a KV cache holds in place of a key or value: `store(self_attn, e)` for each element `e`
/// of self-attention (`true`) or cross-attention, in the order [`decoder_forward_stored`] gives.
pub type Store<'a> = dyn FnMut(bool, f64) -> f64 + 'a;

/// [`decoder_forward`] with every key (after rotary) and value of self- and cross-attention
/// passed through `store` before use: what a KV cache that stores them in a narrower type
/// (rounding to it) computes. The elements come sublayer by sublayer in the order they run,
/// for each its keys then its values, each position by position (`[rows][kv_heads][dim_head]`).
pub fn decoder_forward_stored(
    cfg: &RefConfig,
    w: &RefWeights,
    x: &[f64],
    context: Option<&[f64]>,
    store: &mut Store<'_>,
) -> Vec<f64> {
    decoder_forward_masked(cfg, w, x, context, store, None, None)
}

/// An x-transformers `Encoder` (spec §3.14): [`decoder_forward_masked`] with bidirectional
/// self-attention (no causal mask; rotary and everything else as in the decoder).
pub fn encoder_forward(
    cfg: &RefConfig,
    w: &RefWeights,
    x: &[f64],
    context: Option<&[f64]>,
    mask: Option<&[bool]>,
    context_mask: Option<&[bool]>,
) -> Vec<f64> {
    layers_forward(cfg, w, x, context, &mut |_, e| e, mask, context_mask, false)
}

/// [`decoder_forward_masked`], causal or not.
#[allow(clippy::too_many_arguments)]
fn layers_forward(
    cfg: &RefConfig,
    w: &RefWeights,
    x: &[f64],
    context: Option<&[f64]>,
    store: &mut Store<'_>,
    mask: Option<&[bool]>,
    context_mask: Option<&[bool]>,
    causal: bool,
) -> Vec<f64> {
    decoder_forward_impl(cfg, w, x, context, store, mask, context_mask, causal)
}

/// [`decoder_forward_stored`] with padding masks (spec §3.13): `mask` (n entries, true = real)
/// excludes padded positions as keys and zeroes the attention outputs at them; `context_mask`
/// (m entries) excludes padded context rows.
pub fn decoder_forward_masked(
    cfg: &RefConfig,
    w: &RefWeights,
    x: &[f64],
    context: Option<&[f64]>,
    store: &mut Store<'_>,
    mask: Option<&[bool]>,
    context_mask: Option<&[bool]>,
) -> Vec<f64> {
    decoder_forward_impl(cfg, w, x, context, store, mask, context_mask, true)
}

#[allow(clippy::too_many_arguments)]
fn decoder_forward_impl(
    cfg: &RefConfig,
    w: &RefWeights,
    x: &[f64],
    context: Option<&[f64]>,
    store: &mut Store<'_>,
    mask: Option<&[bool]>,
    context_mask: Option<&[bool]>,
    causal: bool,
) -> Vec<f64> {
    cfg.check();
    let d = cfg.dim;
    assert_eq!(x.len() % d, 0, "x must be n*dim");
    let n = x.len() / d;
    let ctx = match (cfg.cross_attend, context) {
        (true, Some(c)) => {
            assert!(
                !c.is_empty() && c.len() % cfg.dim_context == 0,
                "context must be m*dim_context, m >= 1"
            );
            Some(c)
        }
        (true, None) => panic!("cross_attend needs a context"),
        (false, Some(_)) => panic!("context given to a decoder without cross_attend"),
        (false, None) => None,
    };
    let pre = decoder_prefix(cfg);
    let inv_freq = cfg.rotary_pos_emb.then(|| inv_freq_for(cfg, w));
    let types = cfg.layer_types();
    let mut x = x.to_vec();
    let mut first_values = None;
    // residual_attn / cross_residual_attn: the last self- / cross-attention's logits.
    let (mut prev_self, mut prev_cross) = (None, None);
    {
        // Sublayers run in the execute order (weight tying: the stored block, `depth` times).
        for l in cfg.execute_order() {
            // spec §3.7: residual = x; u = PreNorm_ℓ(x) (key layers.ℓ.0.0.*), or x with post-norm;
            // x = [PostBranchNorm](Sublayer(u)) + residual; then [PostMainNorm](x).
            let u = if cfg.extras.pre_norm {
                norm_rows(cfg, w, &format!("{pre}layers.{l}.0.0"), &x)
            } else {
                x.clone()
            };
            let base = if cfg.extras.layerscale {
                format!("{pre}layers.{l}.1.fn")
            } else {
                format!("{pre}layers.{l}.1")
            };
            let kind = types[l];
            let o = if kind == 'f' {
                // macaron: Scale(0.5, FeedForward), keys one level down
                if cfg.extras.macaron {
                    let o = feed_forward(cfg, w, &format!("{base}.fn"), &u, n);
                    o.into_iter().map(|v| 0.5 * v).collect()
                } else {
                    feed_forward(cfg, w, &base, &u, n)
                }
            } else if kind == 'a' {
                attention(
                    cfg,
                    w,
                    &base,
                    &u,
                    n,
                    &u,
                    n,
                    d,
                    true,
                    inv_freq.as_deref(),
                    &mut *store,
                    (mask, None),
                    causal,
                    &mut first_values,
                    cfg.extras.residual_attn.then_some(&mut prev_self),
                )
            } else {
                // spec §3.5: K/V from the raw (un-normed) context.
                let c = ctx.expect("checked above");
                let m = c.len() / cfg.dim_context;
                attention(
                    cfg,
                    w,
                    &base,
                    &u,
                    n,
                    c,
                    m,
                    cfg.dim_context,
                    false,
                    None,
                    &mut *store,
                    (mask, context_mask),
                    false,
                    &mut None,
                    cfg.extras.cross_residual_attn.then_some(&mut prev_cross),
                )
            };
            // LayerScale: o ⊙ (gamma + unit offset), before the sandwich norm.
            let o = if cfg.extras.layerscale {
                let off = if cfg.extras.unit_offset { 1.0 } else { 0.0 };
                let g = get(w, &format!("{pre}layers.{l}.1.gamma"), d);
                o.chunks(d)
                    .flat_map(|row| row.iter().zip(g).map(|(v, gv)| v * (gv + off)))
                    .collect()
            } else {
                o
            };
            let o = if cfg.extras.sandwich {
                norm_rows(cfg, w, &format!("{pre}layers.{l}.0.1"), &o)
            } else {
                o
            };
            // Residual.forward: x = branch + residual·residual_scale·constant.
            if cfg.extras.scale_residual {
                let g = get(w, &format!("{pre}layers.{l}.2.residual_scale"), d);
                for row in x.chunks_mut(d) {
                    for (xv, gv) in row.iter_mut().zip(g) {
                        *xv *= gv;
                    }
                }
            }
            if cfg.extras.gate_residual {
                // GRUGating: x = GRUCell(input o, hidden x), no constant.
                let k = format!("{pre}layers.{l}.2.gru");
                let wi = get(w, &format!("{k}.weight_ih"), 3 * d * d);
                let wh = get(w, &format!("{k}.weight_hh"), 3 * d * d);
                let bi = get(w, &format!("{k}.bias_ih"), 3 * d);
                let bh = get(w, &format!("{k}.bias_hh"), 3 * d);
                let gi = linear(&o, n, wi, 3 * d, d, Some(bi));
                let gh = linear(&x, n, wh, 3 * d, d, Some(bh));
                let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
                for i in 0..n {
                    let (a, b) = (
                        &gi[i * 3 * d..(i + 1) * 3 * d],
                        &gh[i * 3 * d..(i + 1) * 3 * d],
                    );
                    for j in 0..d {
                        let r = sig(a[j] + b[j]);
                        let z = sig(a[d + j] + b[d + j]);
                        let c = (a[2 * d + j] + r * b[2 * d + j]).tanh();
                        let h = x[i * d + j];
                        x[i * d + j] = (1.0 - z) * c + z * h;
                    }
                }
            } else {
                if cfg.extras.scale_residual_constant != 1.0 {
                    x.iter_mut()
                        .for_each(|xv| *xv *= cfg.extras.scale_residual_constant);
                }
                for (xv, ov) in x.iter_mut().zip(&o) {
                    *xv += ov;
                }
            }
            if !cfg.extras.pre_norm {
                x = norm_rows(cfg, w, &format!("{pre}layers.{l}.0.2"), &x);
            }
        }
    }
    if let Some(v) = cfg.extras.softclamp_output {
        x.iter_mut().for_each(|e| *e = (*e / v).tanh() * v);
    }
    if cfg.extras.pre_norm && cfg.extras.final_norm {
        norm_rows(cfg, w, &format!("{pre}final_norm"), &x)
    } else {
        x
    }
}

/// TransformerWrapper forward (spec §3.9): x₀ = E[t] + D^−½·P[pos] (P only with abs_pos_emb),
/// y = Decoder(x₀), logits = y·W_logitsᵀ or, tied, y·Eᵀ·D^−½. Returns n×num_tokens.
pub fn wrapper_forward(
    cfg: &RefConfig,
    w: &RefWeights,
    tokens: &[usize],
    context: Option<&[f64]>,
) -> Vec<f64> {
    let wr = cfg
        .wrapper
        .as_ref()
        .expect("wrapper_forward needs cfg.wrapper");
    let d = cfg.dim;
    let e = wr.emb_dim;
    let v = wr.num_tokens;
    let n = tokens.len();
    let emb = get(w, "token_emb.emb.weight", v * e);
    let scale = (d as f64).powf(-0.5);
    let l2 = |v: &[f64]| {
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
        v.iter().map(|a| a / n).collect::<Vec<f64>>()
    };
    // The sinusoids' frequencies: the stored buffer if present (what a loader reads), else the formula.
    let omega: Vec<f64> = match w.get("pos_emb.inv_freq") {
        Some(f) => f.clone(),
        None => sinusoid_inv_freq(e / 2),
    };
    let mut x = Vec::with_capacity(n * e);
    for (p, &t) in tokens.iter().enumerate() {
        assert!(t < v, "token {t} out of range");
        let tok = &emb[t * e..(t + 1) * e];
        let tok = if wr.l2norm_embed {
            l2(tok)
        } else {
            tok.to_vec()
        };
        let pe: Vec<f64> = if !wr.abs_pos_emb {
            vec![0.0; e]
        } else if wr.scaled_sinu {
            // [sin(p·ω), cos(p·ω)] · s, defined at every position
            let s = get(w, "pos_emb.scale", 1)[0];
            let sin = omega.iter().map(|o| (p as f64 * o).sin() * s);
            let cos = omega.iter().map(|o| (p as f64 * o).cos() * s);
            sin.chain(cos).collect()
        } else {
            assert!(p < wr.max_seq_len, "sequence longer than max_seq_len");
            let row = &get(w, "pos_emb.emb.weight", wr.max_seq_len * e)[p * e..(p + 1) * e];
            if wr.l2norm_embed {
                l2(row)
            } else {
                let pos_scale = (e as f64).powf(-0.5);
                row.iter().map(|b| pos_scale * b).collect()
            }
        };
        x.extend(tok.iter().zip(&pe).map(|(a, b)| a + b));
    }
    if wr.post_emb_norm {
        // gain used as stored: layer_norm adds 1 to what it is given
        let g: Vec<f64> = get(w, "post_emb_norm.gamma", e)
            .iter()
            .map(|v| v - 1.0)
            .collect();
        x = x.chunks(e).flat_map(|row| layer_norm(row, &g)).collect();
    }
    if e != d {
        // project_emb: nn.Linear(E, D) with its bias
        let pw = get(w, "project_emb.weight", d * e);
        let pb = get(w, "project_emb.bias", d);
        x = linear(&x, n, pw, d, e, Some(pb));
    }
    // num_memory_tokens: the memory rows first, then the sequence; their outputs dropped.
    let mem = wr.num_memory_tokens;
    if mem > 0 {
        let mut with_mem = get(w, "memory_tokens", mem * d).to_vec();
        with_mem.extend_from_slice(&x);
        x = with_mem;
    }
    let y = decoder_forward(cfg, w, &x, context);
    let y = y[mem * d..].to_vec();
    if wr.tie_embedding {
        assert_eq!(
            e, d,
            "x-transformers cannot tie embeddings of another width"
        );
        let tie = wr.tie_embedding_scale.unwrap_or(scale);
        linear(&y, n, emb, v, d, None)
            .into_iter()
            .map(|z| z * tie)
            .collect()
    } else {
        let l = wr.logits_dim;
        let wl = get(w, "to_logits.weight", l * d);
        linear(&y, n, wl, l, d, None)
    }
}

/// ω_k = 10000^(−k/h) for k < h, the frequencies of `scaled_sinu_pos_emb` (h = E/2): the
/// exponent k/h is an f32 division in x-transformers (`arange(h).float() / h`), whose rounding
/// moves ω by up to ~5 f32 ulps, so it is rounded here too; the power is taken in f64.
pub fn sinusoid_inv_freq(h: usize) -> Vec<f64> {
    (0..h)
        .map(|k| 10000f64.powf(-f64::from(k as f32 / h as f32)))
        .collect()
}
