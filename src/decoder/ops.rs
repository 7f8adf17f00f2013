//! The decoder's sublayer operations: norms, residuals, gates and scales, qk-norm, the output
//! projection, how a chunk's query heads read the cache, and the matrix products. The forward
//! pass in `mod.rs` calls them in x-transformers' order.

use super::Decoder;
use crate::config::{DecoderConfig, Norm};
use crate::error::Error;
use crate::kernels;
use crate::packing::{Matrix, Packed};
use crate::tensor::{Element, Tensor};
use crate::weights::{AttentionWeights, PostNorms};

/// The sublayers' operations.
impl<'w, const MAX_DEPTH: usize> Decoder<'w, MAX_DEPTH> {
    /// A norm of `n` rows (`xt:3677-3678`); gains are stored as gain − 1 (`xt:2993-2995`), or as
    /// the gain without `norm_add_unit_offset`.
    pub(super) fn norm(
        &self,
        gain: Option<Tensor<'_>>,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let dim = self.config.dim;
        let norm = self.config.norm();
        // ScaleNorm: F.normalize(x)·√dim, then ·(g + 1) with one scalar g (xt:1072-1074).
        let mut scalar = [0.0f32];
        if let (Norm::ScaleNorm, Some(g)) = (norm, gain) {
            kernels::load(&mut scalar, g)?;
        }
        // The stored gain plus 1 (norm_add_unit_offset, the default) or plus 0.
        let offset = self.config.norm_gain_offset();
        for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            match norm {
                Norm::LayerNorm => kernels::layer_norm(xr, gain, offset, or)?,
                Norm::RmsNorm | Norm::SimpleRmsNorm => kernels::rms_norm(xr, gain, offset, or)?,
                Norm::ScaleNorm => {
                    kernels::rms_norm(xr, None, 1.0, or)?;
                    let g = scalar[0] + offset;
                    or.iter_mut().for_each(|v| *v *= g);
                }
            }
        }
        Ok(())
    }

    /// A sublayer's input (`xt:3677-3678`): its pre-norm of `x` into `xb` with `pre_norm`; `x`
    /// itself (copied to `xb`) with post-norm.
    pub(super) fn pre_norm(
        &self,
        gain: Option<Tensor<'_>>,
        x: &[f32],
        xb: &mut [f32],
    ) -> Result<(), Error> {
        if self.config.pre_norm {
            self.norm(gain, x, xb)
        } else {
            xb.copy_from_slice(x);
            Ok(())
        }
    }

    /// The end of a sublayer: its output `out` through the sandwich norm (`xt:3714-3715`, via
    /// `tmp`), added to the residual stream `x` (`xt:3717`), then the post-norm of `x`
    /// (`xt:3728-3729`, via `tmp`).
    pub(super) fn residual(
        &self,
        post: &PostNorms<'_>,
        x: &mut [f32],
        out: &mut [f32],
        tmp: &mut [f32],
    ) -> Result<(), Error> {
        // The residual path's gains (`Residual.forward`, xt:1198-1205): the learned one, then
        // the constant.
        if let Some(g) = post.residual_scale {
            let dim = self.config.dim;
            let gain = &mut tmp[..dim];
            kernels::load(gain, g)?;
            for row in x.chunks_exact_mut(dim) {
                row.iter_mut().zip(gain.iter()).for_each(|(v, g)| *v *= g);
            }
        }
        if self.config.scale_residual_constant != 1.0 {
            let c = self.config.scale_residual_constant as f32;
            x.iter_mut().for_each(|v| *v *= c);
        }
        if self.config.sandwich_norm {
            self.norm(post.branch, out, tmp)?;
            kernels::add(x, tmp)?;
        } else {
            kernels::add(x, out)?;
        }
        if !self.config.pre_norm {
            self.norm(post.main, x, tmp)?;
            x.copy_from_slice(tmp);
        }
        Ok(())
    }

    /// The attention output's per-head scale (`attn_head_scale`, xt:2638-2639) and value gates
    /// (`attn_gate_values`, xt:2711-2720: att ⊙ sigmoid(u·W_gᵀ), into `gates`), in that order.
    pub(super) fn scale_and_gate(
        &self,
        w: &AttentionWeights<'_>,
        u: &[f32],
        att: &mut [f32],
        gates: &mut [f32],
    ) -> Result<(), Error> {
        let (qd, d) = (self.config.q_dim(), self.config.attn_dim_head);
        if let Some(hs) = w.head_scale {
            let scales = &mut gates[..self.config.heads];
            kernels::load(scales, hs)?;
            for row in att.chunks_exact_mut(qd) {
                for (head, s) in row.chunks_exact_mut(d).zip(scales.iter()) {
                    head.iter_mut().for_each(|v| *v *= s);
                }
            }
        }
        if let Some(g) = w.to_v_gate {
            self.linear(g, None, self.config.dim, u, gates)?;
            for (v, z) in att.iter_mut().zip(gates.iter()) {
                *v *= 1.0 / (1.0 + libm::expf(-z));
            }
        }
        Ok(())
    }

    /// `attn_qk_norm` on rows of `heads` heads (`xt:2422-2427`): each head l2-normalised in
    /// `attn_qk_norm_groups` groups, x / max(‖x‖₂, 1e-12) (`xt:227-230`), then times the
    /// per-feature gains `[heads, 1, d]` with `attn_qk_norm_dim_scale`. Nothing without qk norm.
    pub(super) fn qk_norm(
        &self,
        rows: &mut [f32],
        heads: usize,
        gains: Option<Tensor<'_>>,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        if !cfg.attn_qk_norm {
            return Ok(());
        }
        let d = cfg.attn_dim_head;
        let group = d / cfg.attn_qk_norm_groups.max(1);
        for row in rows.chunks_exact_mut(heads * d) {
            for part in row.chunks_exact_mut(group.max(1)) {
                let norm = libm::sqrtf(part.iter().map(|v| v * v).sum::<f32>()).max(1e-12);
                part.iter_mut().for_each(|v| *v /= norm);
            }
            if let Some(g) = gains {
                for (i, v) in row.iter_mut().enumerate() {
                    *v *= g.get(i).unwrap_or(1.0);
                }
            }
        }
        Ok(())
    }

    /// Merges heads and projects back to dim: out = o·W_oᵀ (`xt:2745`), or o itself with one head.
    pub(super) fn project_out(
        &self,
        w: &AttentionWeights<'_>,
        panels: Option<Packed<'_>>,
        att: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        match w.to_out {
            Some(to_out) => self.linear(to_out, panels, self.config.q_dim(), att, out),
            None => kernels::load(out, Tensor::F32(att)),
        }
    }
}

/// How a chunk's query heads read the cached kv heads: query head h reads kv head
/// h mod kv_heads (at:529-532), so kv head j serves heads j, j + kv_heads, …, which lie
/// kv_heads·d apart in a position's q; one call reads that kv head once for all of them at
/// every position of the chunk.
pub(super) struct Heads {
    kv_heads: usize,
    group: kernels::HeadGroup,
    /// A position's length in q, `heads·d`.
    q_dim: usize,
    scale: f32,
}

impl Heads {
    pub(super) fn new(cfg: &DecoderConfig) -> Heads {
        let (d, kv_heads) = (cfg.attn_dim_head, cfg.kv_heads());
        Heads {
            kv_heads,
            group: kernels::HeadGroup {
                dim: d,
                heads: cfg.heads / kv_heads,
                stride: kv_heads * d,
            },
            q_dim: cfg.q_dim(),
            scale: cfg.attn_scale(), // d^-1/2 (xt:1957), or attn_qk_norm_scale (xt:2155)
        }
    }

    /// Attention of `n` positions' query heads `q` into `out` (both `n·heads·d` values), with
    /// `kv(j)` the keys and values of kv head j; with `causal`, position i of n sees all but
    /// the last n − 1 − i of them.
    pub(super) fn attend<'c, K: Element + 'c>(
        &self,
        q: &[f32],
        out: &mut [f32],
        n: usize,
        causal: bool,
        kv: impl Fn(usize) -> (&'c [K], &'c [K]),
    ) -> Result<(), Error> {
        let positions = kernels::Positions {
            count: n,
            stride: self.q_dim,
            causal,
        };
        // The config is validated: heads is a multiple of kv_heads, so the last group ends
        // inside each position.
        let span = positions.span(self.group).unwrap_or(0);
        for j in 0..self.kv_heads {
            let (keys, values) = kv(j);
            let at = j * self.group.dim;
            let (qj, oj) = (&q[at..at + span], &mut out[at..at + span]);
            kernels::attention_positions(qj, self.group, positions, keys, values, self.scale, oj)?;
        }
        Ok(())
    }
}

/// Positions from which a chunk multiplies by the f32 panels (when packed) rather than by W as
/// stored: a single position is a matrix-vector product, which reads 16-bit and Q8_0 weights in
/// fewer bytes than their f32 panels.
const PANELS_MIN_POSITIONS: usize = 2;

/// The decoder's matrix products.
impl<'w, const MAX_DEPTH: usize> Decoder<'w, MAX_DEPTH> {
    /// Matrix `m` of block `b` (weight `w`) as packed, if it was ([`Arenas::get`]).
    pub(super) fn packed(&self, b: usize, m: Matrix, w: Tensor<'_>) -> Option<Packed<'w>> {
        self.panels.get(&self.config, b, m, w)
    }

    /// `y = x·Wᵀ` for a chunk's rows of `x` (`cols` values each): Q8_0 weights on the int8 path
    /// when it is on (over W's int8 panels when packed, else over W as stored), else over
    /// W's f32 panels for 2 or more positions when packed, else over W as stored.
    pub(crate) fn linear(
        &self,
        w: Tensor<'_>,
        packed: Option<Packed<'_>>,
        cols: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), Error> {
        let n = x.len() / cols.max(1);
        match (w, packed) {
            (Tensor::Q8_0(_), Some(Packed::Int8(p))) if self.int8 => {
                kernels::matmul_int8_panels(p, x, y)
            }
            (Tensor::Q8_0(q), _) if self.int8 => kernels::matmul_int8(q, cols, x, y),
            (_, Some(Packed::F32(p))) if n >= PANELS_MIN_POSITIONS => {
                kernels::matmul_panels(p, x, y)
            }
            _ => kernels::matmul(w, cols, x, y),
        }
    }
}
