//! The decoder's sublayer operations: norms, residuals, gates and scales, qk-norm, the output
//! projection, how a chunk's query heads read the cache, and the matrix products. The forward
//! pass in `mod.rs` calls them in x-transformers' order.

use super::Decoder;
use crate::config::{DecoderConfig, Norm};
use crate::error::{Buffer, Error};
use crate::kernels;
use crate::packing::{Matrix, Packed};
use crate::parallel::{positions_per_part, rows_per_part, Parallel};
use crate::tensor::{Element, Tensor};
use crate::weights::{AttentionWeights, FeedForwardWeights, GruWeights, PostNorms};

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
        let dim = dim.max(1); // (validated: dim > 0)
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
            copy(x, xb)
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
        gates: &mut [f32],
    ) -> Result<(), Error> {
        if let Some(g) = post.layerscale {
            self.layer_scale(g, out, tmp)?;
        }
        // The residual path's gains (`Residual.forward`, xt:1198-1205): the learned one, then
        // the constant (which `GRUGating` does not take, xt:1207-1224).
        if let Some(g) = post.residual_scale {
            let dim = self.config.dim;
            let gain = rows_of(tmp, dim)?;
            kernels::load(gain, g)?;
            for row in x.chunks_exact_mut(dim.max(1)) {
                row.iter_mut().zip(gain.iter()).for_each(|(v, g)| *v *= g);
            }
        }
        if self.config.scale_residual_constant != 1.0 && post.gru.is_none() {
            let c = self.config.scale_residual_constant as f32;
            x.iter_mut().for_each(|v| *v *= c);
        }
        let branch: &[f32] = if self.config.sandwich_norm {
            self.norm(post.branch, out, tmp)?;
            tmp
        } else {
            out
        };
        match &post.gru {
            Some(gru) => self.gru_gate(gru, branch, x, gates)?,
            None => kernels::add(x, branch)?,
        }
        if !self.config.pre_norm {
            self.norm(post.main, x, tmp)?;
            copy(tmp, x)?;
        }
        Ok(())
    }

    /// A feed-forward sublayer 'f' (`xt:1763-1858`): x = x + W₂·act(W₁·u + b₁) + b₂, or GLU,
    /// with `panels` its (input, output) packed matrices; `gates` is the hidden buffer.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)] // run for one or two feed-forwards per block: one frame, not two
    pub(super) fn feed_forward(
        &self,
        f: &FeedForwardWeights<'_>,
        panels: (Option<Packed<'_>>, Option<Packed<'_>>),
        x: &mut [f32],
        xb: &mut [f32],
        xb2: &mut [f32],
        gates: &mut [f32],
        n: usize,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let dim = cfg.dim;
        let (inner, rows) = (cfg.ff_inner(), cfg.ff_proj_rows());
        let hb = rows_of(gates, n * rows)?;
        let rows = rows.max(1); // (validated: the hidden width > 0)
        self.pre_norm(f.norm, x, xb)?;
        self.linear(f.proj, panels.0, dim, xb, hb)?;
        if let Some(bias) = f.proj_bias {
            kernels::add_bias(hb, bias)?;
        }
        let act = cfg.activation();
        if cfg.ff_glu {
            // up = first half, gate = second half; h = up ⊙ act(gate) (xt:1729-1761), then
            // packed in place to [n, F]: each row moves to at or before where it was.
            for row in hb.chunks_exact_mut(rows) {
                let Some((up, gate)) = row.split_at_mut_checked(inner) else {
                    // (never: a GLU's rows are 2·inner)
                    return Err(Error::KernelShape {
                        kernel: "feed_forward",
                        arg: "hidden",
                        expected: inner,
                        found: row.len(),
                    });
                };
                kernels::activate(act, gate);
                up.iter_mut().zip(gate.iter()).for_each(|(u, g)| *u *= g);
                if let Some(mb) = f.mult_bias {
                    // ff_glu_mult_bias: ⊙ mult_bias (xt:1761)
                    for (i, u) in up.iter_mut().enumerate() {
                        *u *= mb.get(i).unwrap_or(1.0);
                    }
                }
            }
            for i in 1..n {
                // Row i's first `inner` values to i·inner: the end of the window between.
                if let Some(w) = hb.get_mut(i * inner..i * rows + inner) {
                    w.copy_within(w.len().saturating_sub(inner).., 0);
                }
            }
        } else {
            // ff_softclamp_value: tanh(z / v)·v before the activation (xt:1814-1817).
            if let Some(v) = cfg.ff_softclamp_value {
                let v = v as f32;
                hb.iter_mut().for_each(|e| *e = libm::tanhf(*e / v) * v);
            }
            kernels::activate(act, hb);
        }
        let hidden = rows_of(hb, n * inner)?;
        if let Some(g) = f.post_act_ln {
            post_act_layer_norm(hidden, inner, g);
        }
        self.linear(f.out, panels.1, inner, hidden, xb2)?;
        if let Some(bias) = f.out_bias {
            kernels::add_bias(xb2, bias)?;
        }
        if cfg.macaron {
            // Scale(0.5, FeedForward) (xt:3237, 998-1013)
            xb2.iter_mut().for_each(|v| *v *= 0.5);
        }
        self.residual(&f.post, x, xb2, xb, gates)
    }

    /// `gate_residual` (`GRUGating.forward`, xt:1215-1224): the residual rows `h` become
    /// `nn.GRUCell(branch, h)`: r = σ(W_ir·b + b_ir + W_hr·h + b_hr), z likewise,
    /// n = tanh(W_in·b + b_in + r ⊙ (W_hn·h + b_hn)), h = (1 − z) ⊙ n + z ⊙ h. `gates` holds
    /// both products (`[n, 6·dim]`).
    pub(super) fn gru_gate(
        &self,
        w: &GruWeights<'_>,
        branch: &[f32],
        h: &mut [f32],
        gates: &mut [f32],
    ) -> Result<(), Error> {
        let dim = self.config.dim.max(1); // (validated: dim > 0)
        let n = h.len() / dim;
        let len = n * 3 * dim;
        let available = gates.len();
        let (gi, rest) = gates
            .split_at_mut_checked(len)
            .ok_or(Error::BufferTooSmall {
                buffer: Buffer::Scratch,
                needed: len.saturating_mul(2),
                available,
            })?;
        let gh = rows_of(rest, len)?;
        self.linear(w.weight_ih, None, dim, branch, gi)?;
        kernels::add_bias(gi, w.bias_ih)?;
        self.linear(w.weight_hh, None, dim, h, gh)?;
        kernels::add_bias(gh, w.bias_hh)?;
        let sigmoid = |v: f32| 1.0 / (1.0 + libm::expf(-v));
        // Each position's three gates of `dim` values, in gi and in gh (zipped by hand: `Zip`
        // of `ChunksExact`s divides by their sizes where not inlined).
        let (mut gi, mut gh) = (gi.chunks_exact(dim), gh.chunks_exact(dim));
        for hr in h.chunks_exact_mut(dim) {
            let (Some(ir), Some(iz), Some(i_n)) = (gi.next(), gi.next(), gi.next()) else {
                break;
            };
            let (Some(gr), Some(gz), Some(g_n)) = (gh.next(), gh.next(), gh.next()) else {
                break;
            };
            let gates = ir.iter().zip(iz).zip(i_n).zip(gr.iter().zip(gz).zip(g_n));
            for (hv, (((ir, iz), i_n), ((gr, gz), g_n))) in hr.iter_mut().zip(gates) {
                let r = sigmoid(ir + gr);
                let z = sigmoid(iz + gz);
                let c = libm::tanhf(i_n + r * g_n);
                *hv = (1.0 - z) * c + z * *hv;
            }
        }
        Ok(())
    }

    /// `use_layerscale` (`LayerScale.forward`, xt:1673-1681): the branch output `out` times the
    /// stored gain plus the norm offset (1 with `norm_add_unit_offset`), via `tmp`.
    pub(super) fn layer_scale(
        &self,
        g: Tensor<'_>,
        out: &mut [f32],
        tmp: &mut [f32],
    ) -> Result<(), Error> {
        let dim = self.config.dim;
        let gain = rows_of(tmp, dim)?;
        kernels::load(gain, g)?;
        let offset = self.config.norm_gain_offset();
        gain.iter_mut().for_each(|v| *v += offset);
        for row in out.chunks_exact_mut(dim.max(1)) {
            row.iter_mut().zip(gain.iter()).for_each(|(v, g)| *v *= g);
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
            let scales = rows_of(gates, self.config.heads)?;
            let (qd, d) = (qd.max(1), d.max(1)); // (validated: both > 0)
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

    /// `add_value_residual` (`xt:2416-2418`): v = v₀ + mix·(v − v₀) per position and head, mix =
    /// sigmoid(u·Wᵀ + b) with the learned mixer (into `gates`, `[n, H]`; heads equal kv heads,
    /// the configuration checks), else 0.5.
    pub(super) fn value_residual(
        &self,
        w: &AttentionWeights<'_>,
        u: &[f32],
        v0: &[f32],
        v: &mut [f32],
        gates: &mut [f32],
    ) -> Result<(), Error> {
        let (kvd, d, h) = (
            self.config.kv_dim(),
            self.config.attn_dim_head,
            self.config.heads,
        );
        let (kvd, h) = (kvd.max(1), h.max(1)); // (validated: both > 0)
        let n = v.len() / kvd;
        let mix = rows_of(gates, n * h)?;
        match w.value_residual_mix {
            Some((wm, bm)) => {
                self.linear(wm, None, self.config.dim, u, mix)?;
                kernels::add_bias(mix, bm)?;
                mix.iter_mut()
                    .for_each(|z| *z = 1.0 / (1.0 + libm::expf(-*z)));
            }
            None => mix.fill(0.5),
        }
        // (Zipped by hand: `Zip` of `ChunksExact`s divides by their sizes where not inlined.)
        let (mut v0, mut mix) = (v0.chunks_exact(kvd), mix.chunks_exact(h));
        for row in v.chunks_exact_mut(kvd) {
            let (Some(r0), Some(m)) = (v0.next(), mix.next()) else {
                break;
            };
            for (c, (e, a)) in row.iter_mut().zip(r0).enumerate() {
                // kv head c / d: the same head index as the mix's with heads == kv heads, and
                // any with the constant mix.
                let t = m.get(c / d.max(1)).copied().unwrap_or(0.5);
                *e = a + t * (*e - a);
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
        for row in rows.chunks_exact_mut((heads * d).max(1)) {
            for head in row.chunks_exact_mut(d.max(1)) {
                qk_l2norm(head, cfg.attn_qk_norm_groups);
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

/// One head l2-normalised in `groups` groups, x / max(‖x‖₂, 1e-12) (`xt:227-230`).
pub(super) fn qk_l2norm(head: &mut [f32], groups: usize) {
    let group = (head.len() / groups.max(1)).max(1);
    for part in head.chunks_exact_mut(group) {
        let norm = libm::sqrtf(part.iter().map(|v| v * v).sum::<f32>()).max(1e-12);
        part.iter_mut().for_each(|v| *v /= norm);
    }
}

/// `attn_value_rmsnorm` (`MultiheadRMSNorm`, `xt:1126-1133`): every head of `width` values in
/// `rows` becomes x / max(‖x‖₂, 1e-12) · √width · (γ + 1), γ the head's row of `gain`
/// (`[H, 1, d]`). Nothing without it.
pub(super) fn value_rmsnorm(rows: &mut [f32], width: usize, gain: Option<Tensor<'_>>) {
    let Some(g) = gain else { return };
    let w = width.max(1);
    let heads = g.len() / w;
    let root = libm::sqrtf(w as f32);
    for row in rows.chunks_exact_mut((heads.max(1) * w).max(1)) {
        for (h, head) in row.chunks_exact_mut(w).enumerate() {
            let norm = libm::sqrtf(head.iter().map(|v| v * v).sum::<f32>()).max(1e-12);
            for (i, v) in head.iter_mut().enumerate() {
                *v = *v / norm * root * (g.get(h * w + i).unwrap_or(0.0) + 1.0);
            }
        }
    }
}

/// `ff_post_act_ln` (`xt:1824`): LayerNorm (eps 1e-5, biased variance, no bias) of each row of
/// `width` hidden features in place, times the gain `g` as stored (x-transformers builds it
/// without the unit offset). The row's mean and variance are summed in f64.
fn post_act_layer_norm(rows: &mut [f32], width: usize, g: Tensor<'_>) {
    let w = width.max(1);
    for row in rows.chunks_exact_mut(w) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / w as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean) * (f64::from(v) - mean))
            .sum::<f64>()
            / w as f64;
        let inv = 1.0 / libm::sqrt(var + 1e-5);
        for (i, v) in row.iter_mut().enumerate() {
            *v = ((f64::from(*v) - mean) * inv) as f32 * g.get(i).unwrap_or(1.0);
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
                heads: cfg.heads / kv_heads.max(1), // (validated: kv_heads divides heads)
                stride: kv_heads * d,
            },
            q_dim: cfg.q_dim(),
            scale: cfg.attn_scale(), // d^-1/2 (xt:1957), or attn_qk_norm_scale (xt:2155)
        }
    }

    /// Attention of `n` positions' query heads `q` into `out` (both `n·heads·d` values), with
    /// `kv(j)` the keys and values of kv head j; with `causal`, position i of n sees all but
    /// the last n − 1 − i of them. Over `par`'s parts: one position over a long cache by heads
    /// ([`Self::attend_split`]), a chunk by positions ([`Self::attend_positions`]).
    pub(super) fn attend<'c, K: Element + 'c>(
        &self,
        q: &[f32],
        out: &mut [f32],
        n: usize,
        causal: bool,
        par: Option<&dyn Parallel>,
        kv: impl Fn(usize) -> (&'c [K], &'c [K]) + Sync,
    ) -> Result<(), Error> {
        if let Some(par) = par.filter(|p| p.parts() > 1) {
            let rows = kv(0).0.len() / self.group.dim.max(1);
            let work = rows.saturating_mul(self.q_dim).saturating_mul(n);
            if n == 1 && work >= SPLIT_ATTENTION_MIN {
                return self.attend_split(q, out, par, &kv);
            }
            // A chunk: parts of at least 8 positions (the kernel reads the cache once for up
            // to 8 queries), up to 4 per thread (causal positions' work grows with their
            // position, and the executor balances the parts).
            let per = positions_per_part(n, 4 * par.parts(), 8);
            if let (Some(per), true) = (per, work >= SPLIT_ATTENTION_MIN) {
                let width = self.q_dim.max(1);
                return par.run(out, per * width, &|i, part| {
                    let (i0, m) = (i * per, part.len() / width);
                    let qs = q.get(i0 * width..(i0 + m) * width);
                    let qs = qs.ok_or(Error::KernelShape {
                        kernel: "attention",
                        arg: "q",
                        expected: (i0 + m) * width,
                        found: q.len(),
                    })?;
                    // Causal: the part's last position does not see the chunk's later rows.
                    let later = if causal { n.saturating_sub(i0 + m) } else { 0 };
                    self.attend_positions(qs, part, m, causal, later, &kv)
                });
            }
        }
        self.attend_positions(q, out, n, causal, 0, &kv)
    }

    /// [`Self::attend`] in one piece, each kv head over its cached rows but the last `later`
    /// (a part of a chunk: the rows of the chunk's positions after the part's). Every query's
    /// output is the kernel's for it alone over the rows it sees
    /// (`kernels::attention_positions`), so a chunk cut into parts gives the numbers of the
    /// whole, bit for bit.
    fn attend_positions<'c, K: Element + 'c>(
        &self,
        q: &[f32],
        out: &mut [f32],
        n: usize,
        causal: bool,
        later: usize,
        kv: &impl Fn(usize) -> (&'c [K], &'c [K]),
    ) -> Result<(), Error> {
        let positions = kernels::Positions {
            count: n,
            stride: self.q_dim,
            causal,
        };
        // The config is validated: heads is a multiple of kv_heads, so the last group ends
        // inside each position.
        let span = positions.span(self.group).unwrap_or(0);
        let d = self.group.dim;
        for j in 0..self.kv_heads {
            let (keys, values) = kv(j);
            let seen = keys.len().saturating_sub(later * d);
            let (keys, values) = (
                keys.get(..seen).unwrap_or(keys),
                values.get(..seen).unwrap_or(values),
            );
            let at = j * d;
            let (Some(qj), Some(oj)) = (q.get(at..at + span), out.get_mut(at..at + span)) else {
                return Err(Error::KernelShape {
                    kernel: "attention",
                    arg: "q",
                    expected: at + span,
                    found: q.len().min(out.len()),
                });
            };
            kernels::attention_positions(qj, self.group, positions, keys, values, self.scale, oj)?;
        }
        Ok(())
    }

    /// One position's attention split over `par`'s parts, each a contiguous range of the
    /// output: without grouping, whole kv heads (head j writes `out[j·d..(j + 1)·d]`); with
    /// `g` query heads per kv head, whole rounds of the kv heads (query heads
    /// `t·kv_heads..(t + 1)·kv_heads` for t in the part's range), each part reading every kv
    /// head once for its share of the group. Every query head's output is the kernel's for it
    /// alone (`kernels::attention_positions`), so the numbers are those of one piece, bit for
    /// bit.
    fn attend_split<'c, K: Element + 'c>(
        &self,
        q: &[f32],
        out: &mut [f32],
        par: &dyn Parallel,
        kv: &(impl Fn(usize) -> (&'c [K], &'c [K]) + Sync),
    ) -> Result<(), Error> {
        let (d, kvh, g) = (self.group.dim, self.kv_heads, self.group.heads);
        // Units of the output a part takes whole: a kv head's d values, or a round's kvh·d.
        let (units, width) = if g == 1 { (kvh, d) } else { (g, kvh * d) };
        let per = units.div_ceil(par.parts()).max(1);
        let shape = |arg, expected, found| Error::KernelShape {
            kernel: "attention_positions",
            arg,
            expected,
            found,
        };
        par.run(out, per * width, &|i, part| {
            let (u0, m) = (i * per, part.len() / width);
            let (heads, stride, count) = if g == 1 { (1, d, m) } else { (m, kvh * d, kvh) };
            let group = kernels::HeadGroup {
                dim: d,
                heads,
                stride,
            };
            let span = group.span().ok_or(shape("group", d, 0))?;
            for k in 0..count {
                // kv head j, and where its (first) query head of this part starts in q
                let (j, at) = if g == 1 {
                    (u0 + k, (u0 + k) * d)
                } else {
                    (k, (u0 * kvh + k) * d)
                };
                let (keys, values) = kv(j);
                let qj = q.get(at..at + span).ok_or(shape("q", at + span, q.len()))?;
                let o = k * d;
                let len = part.len();
                let oj = part
                    .get_mut(o..o + span)
                    .ok_or(shape("out", o + span, len))?;
                kernels::attention_positions(
                    qj,
                    group,
                    kernels::Positions::one(),
                    keys,
                    values,
                    self.scale,
                    oj,
                )?;
            }
            Ok(())
        })
    }
}

/// Cached rows × query values from which one position's attention splits over an executor's
/// parts: below it, the join costs about what the split saves.
const SPLIT_ATTENTION_MIN: usize = 1 << 12;

/// Multiply-adds (positions × rows × cols) from which a chunk's product splits over an
/// executor's parts: below it, a part's work is a few microseconds, about what the join costs.
const SPLIT_CHUNK_MIN: usize = 1 << 17;

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
        let int8 = self.int8;
        // (Shapes checked here so that a split never slices past a tensor; the kernels report
        // a mismatch.)
        // A chunk: its positions split over the executor's parts ([`crate::parallel`]), each
        // part the same product over its positions, at least `SAME_SUMS_POSITIONS` of them
        // (so the same code for every position, and the same sums).
        // (Each part multiplies by the whole of W, whose shape the kernel checks.)
        let chunk = n > 1
            && x.len() == n * cols
            && y.len().is_multiple_of(n)
            && y.len().saturating_mul(cols) >= SPLIT_CHUNK_MIN;
        if let (true, Some(par)) = (chunk, self.executor()) {
            if let Some(per) = positions_per_part(n, par.parts(), kernels::SAME_SUMS_POSITIONS) {
                let rows = y.len() / n;
                return par.run(y, per * rows, &|i, part| {
                    let (at, end) = (i * per * cols, (i * per + part.len() / rows) * cols);
                    let xs = x.get(at..end).ok_or(Error::KernelShape {
                        kernel: "matmul",
                        arg: "x",
                        expected: end,
                        found: x.len(),
                    })?;
                    Self::product((w, int8), packed, cols, xs, part)
                });
            }
        }
        // One position: the rows split over the executor's parts, each part the same kernel
        // over its rows (whole strips and panels, so the same sums).
        let whole = Some(w.len()) == y.len().checked_mul(cols);
        if let (1, Some(par), true) = (n, self.executor(), whole) {
            let per = rows_per_part(y.len(), par.parts());
            if per < y.len() {
                return par.run(y, per, &|i, part| {
                    let (start, rows) = (i * per, part.len());
                    let packed = match packed {
                        // The int8 panels of the part's rows (64 a part: whole panels).
                        Some(Packed::Int8(p)) if int8 => Some(Packed::Int8(
                            p.rows_view(start, rows).ok_or(Error::KernelShape {
                                kernel: "matmul_int8_panels",
                                arg: "rows",
                                expected: p.rows(),
                                found: start + rows,
                            })?,
                        )),
                        // (f32 panels serve two positions or more only.)
                        _ => None,
                    };
                    let w = w.slice(start * cols, rows * cols);
                    Self::product((w, int8), packed, cols, x, part)
                });
            }
        }
        Self::product((w, int8), packed, cols, x, y)
    }

    /// Y = X·Wᵀ by the kernel for `w` (with `int8`: Q8_0 on the int8 path) and its packing.
    fn product(
        (w, int8): (Tensor<'_>, bool),
        packed: Option<Packed<'_>>,
        cols: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), Error> {
        let n = x.len() / cols.max(1);
        match (w, packed) {
            (Tensor::Q8_0(_), Some(Packed::Int8(p))) if int8 => {
                kernels::matmul_int8_panels(p, x, y)
            }
            (Tensor::Q8_0(q), _) if int8 => kernels::matmul_int8(q, cols, x, y),
            (_, Some(Packed::F32(p))) if n >= PANELS_MIN_POSITIONS => {
                kernels::matmul_panels(p, x, y)
            }
            _ => kernels::matmul(w, cols, x, y),
        }
    }
}

/// `dst = src`, or [`Error::KernelShape`] if their lengths differ (they never do: both are
/// rows of the same chunk; said without a panic path, issue 28).
pub(super) fn copy(src: &[f32], dst: &mut [f32]) -> Result<(), Error> {
    if src.len() != dst.len() {
        return Err(Error::KernelShape {
            kernel: "copy",
            arg: "dst",
            expected: src.len(),
            found: dst.len(),
        });
    }
    dst.copy_from_slice(src);
    Ok(())
}

/// The first `len` elements of a scratch buffer, or [`Error::BufferTooSmall`] (never: the
/// scratch is sized for the configuration; said without a panic path, issue 28).
pub(super) fn rows_of(buffer: &mut [f32], len: usize) -> Result<&mut [f32], Error> {
    let available = buffer.len();
    buffer.get_mut(..len).ok_or(Error::BufferTooSmall {
        buffer: Buffer::Scratch,
        needed: len,
        available,
    })
}
