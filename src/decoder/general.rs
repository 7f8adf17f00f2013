//! Attention with the logit terms the SIMD kernel does not take: padding masks, a local window
//! (`attn_max_attend_past`), ALiBi, a logit softclamp, and the memory and zero keys every query
//! sees (`attn_num_mem_kv`, `attn_add_zero_kv`). One query head at a time, over the keys it
//! sees, with an online softmax (running maximum and sum), so no buffer of scores is needed; the
//! keys are read by absolute position, so a rolling cache's ring works the same as a flat one.
//!
//! The logit of query i (position p_i) and key j (position p_j), as x-transformers computes it
//! (`at:552-573`, `xt:2567-2590`): s = (q·k)·scale, plus −slope_h·|p_i − p_j| with ALiBi, then
//! tanh(s / v)·v with the softclamp. The zero key's logit is 0 and its value 0; the memory keys
//! have no position (no bias) and are never masked. Keys outside the causal mask, outside the
//! window (p_i − p_j > N) or padded get no weight; a query that sees no key gets zeros
//! (`at:663-664`). See `docs/x-transformers.md` §3.17.
//!
//! With residual attention (`residual_attn`, `cross_residual_attn`) every run adds the previous
//! run's pre-softmax logit of the same query and key before its bias: s_r = clamp(q_r·k_r·scale +
//! s_{r−1} + bias). x-transformers keeps the previous run's whole logit matrix; here the chain is
//! recomputed from the earlier runs' queries (kept in the scratch for the call's positions) and
//! keys (in the cache), so no buffer grows with the cache ([`Earlier`]).

use crate::config::DecoderConfig;
use crate::tensor::{Element, Tensor};

/// One attention sublayer's logit terms and geometry.
pub(super) struct General<'a> {
    pub heads: usize,
    pub kv_heads: usize,
    /// Values per head.
    pub dim: usize,
    pub scale: f32,
    /// Heads with an ALiBi bias (the first ones), 0 for none (and in cross-attention).
    pub alibi_heads: usize,
    /// `attn_max_attend_past` (self-attention only).
    pub window: Option<usize>,
    /// `attn_logit_softclamp_value` with `attn_softclamp_logits`.
    pub softclamp: Option<f32>,
    /// `attn_add_zero_kv`.
    pub zero_kv: bool,
    /// The memory keys and values, `[kv_heads, M, dim]` each (keys already qk-normed), or empty.
    pub mem: (&'a [f32], &'a [f32]),
    /// xpos (self-attention only): the rotary width r, `rotary_xpos_scale_base`, and the
    /// stored scales `rotary_pos_emb.scale` if the file has them.
    pub xpos: Option<(usize, f32, Option<Tensor<'a>>)>,
}

/// Which keys a call's queries see: positions `0..end` (the cache's rows), of which query i of
/// `n` sits at `end − n + i`; `causal` hides the later ones; `keep` the padded ones: it covers
/// the positions from `prefix` on (`keep[p − prefix]`), those before are always real.
#[derive(Clone, Copy)]
pub(super) struct Keys<'m> {
    pub end: usize,
    pub causal: bool,
    pub keep: Option<&'m [bool]>,
    pub prefix: usize,
}

/// The earlier runs of the same kind of attention whose logits add to this run's
/// (`residual_attn`, `cross_residual_attn`; `runs` 0 without).
pub(super) struct Earlier<'a, F> {
    /// Their queries for the call's positions, run r's `[n, heads·dim]` at `r·stride`.
    pub queries: &'a [f32],
    pub stride: usize,
    /// Their memory keys, run r's `[kv_heads, M, dim]` at `r·kv_heads·M·dim`.
    pub mem_keys: &'a [f32],
    pub runs: usize,
    /// Run r's key of kv head j at position p: `key(r, j, p)`.
    pub key: F,
}

/// A key a query sees: the zero key, memory key m, or the key at a position.
#[derive(Clone, Copy)]
enum Key {
    Zero,
    Memory(usize),
    Position(usize),
}

impl Keys<'_> {
    /// Whether position `p` is real (not padding).
    fn real(&self, p: usize) -> bool {
        match (self.keep, p.checked_sub(self.prefix)) {
            (Some(m), Some(i)) => m.get(i).copied().unwrap_or(false),
            _ => true,
        }
    }
}

impl<'a> General<'a> {
    /// The terms of `cfg`'s self-attention (`self_attn`) or cross-attention, with `mem` the
    /// sublayer's memory keys and values and `xpos_scale` the stored xpos scales.
    pub fn new(
        cfg: &DecoderConfig,
        self_attn: bool,
        mem: (&'a [f32], &'a [f32]),
        xpos_scale: Option<Tensor<'a>>,
    ) -> Self {
        General {
            heads: cfg.heads,
            kv_heads: cfg.kv_heads(),
            dim: cfg.attn_dim_head,
            scale: cfg.attn_scale(),
            alibi_heads: if self_attn { cfg.alibi_heads() } else { 0 },
            window: if self_attn {
                cfg.attn_max_attend_past
            } else {
                None
            },
            softclamp: cfg
                .attn_softclamp_logits
                .then_some(cfg.attn_logit_softclamp_value as f32),
            zero_kv: cfg.attn_add_zero_kv,
            mem,
            xpos: (self_attn && cfg.xpos()).then_some((
                cfg.rotary_dim(),
                cfg.rotary_xpos_scale_base as f32,
                xpos_scale,
            )),
        }
    }

    /// Attention of `n` positions' query heads `q` (n × heads·dim) into `out`; `row(j, p)` is
    /// the key and value of kv head j at position p (`dim` each). Query head h reads kv head
    /// h mod kv_heads (`at:529-532`). Not inlined: its frame is the forward pass's only while it
    /// runs (a microcontroller's stack peak is the largest frame chain, not their sum).
    #[inline(never)]
    pub fn attend<'c, K: Element + 'c>(
        &self,
        q: &[f32],
        out: &mut [f32],
        n: usize,
        keys: Keys<'_>,
        row: impl Fn(usize, usize) -> (&'c [K], &'c [K]),
        earlier: Earlier<'_, impl Fn(usize, usize, usize) -> &'c [K]>,
    ) {
        let (d, qd) = (self.dim, self.heads * self.dim);
        let mem_rows = self.mem.0.len() / (self.kv_heads * d).max(1);
        for i in 0..n {
            // (Cross-attention has no positions: n may exceed its rows, and `pos` is unused.)
            let pos = (keys.end + i).saturating_sub(n);
            // The keys position i sees: up to its own (causal) or all, from the window's start.
            let hi = if keys.causal { pos + 1 } else { keys.end };
            let lo = self.window.map_or(0, |w| pos.saturating_sub(w));
            for h in 0..self.heads {
                let j = h % self.kv_heads.max(1);
                let at = i * qd + h * d;
                let (Some(qi), Some(oi)) = (q.get(at..at + d), out.get_mut(at..at + d)) else {
                    continue;
                };
                let slope = if h < self.alibi_heads {
                    alibi_slope(h, self.alibi_heads)
                } else {
                    0.0
                };
                let mut acc = Softmax::new(oi);
                // The earlier runs' logit of this query head and a key (0 without).
                let prev = |key: Key, bias: f32| self.earlier_logit(&earlier, i, h, pos, key, bias);
                if self.zero_kv {
                    acc.add(self.clamp(0.0 + prev(Key::Zero, 0.0)), None::<&[f32]>);
                }
                for m in 0..mem_rows {
                    let r = (j * mem_rows + m) * d;
                    let (Some(mk), Some(mv)) = (self.mem.0.get(r..r + d), self.mem.1.get(r..r + d))
                    else {
                        continue;
                    };
                    let s = dot(qi, mk) * self.scale + prev(Key::Memory(m), 0.0);
                    acc.add(self.clamp(s), Some(mv));
                }
                for p in lo..hi {
                    if !keys.real(p) {
                        continue;
                    }
                    let (k, v) = row(j, p);
                    // -|p_i - p_j| as torch's integer distance, times the f32 slope (xt:687-691).
                    let bias = -(pos.abs_diff(p) as f32) * slope;
                    let s = self.dot(qi, k, pos, p) * self.scale + prev(Key::Position(p), bias);
                    acc.add(self.clamp(s + bias), Some(v));
                }
                acc.finish();
            }
        }
    }

    /// q·k of the query at position `pos` and the key at position `p` (with xpos, its scales).
    fn dot<K: Element>(&self, q: &[f32], k: &[K], pos: usize, p: usize) -> f32 {
        match self.xpos {
            Some((r, base, stored)) => xpos_dot(q, k, r, stored, (pos as f32 - p as f32) / base),
            None => dot(q, k),
        }
    }

    /// The pre-softmax logit of the last earlier run for query i (at position `pos`), head h and
    /// `key`, whose bias is `bias`: s_r = clamp(q_r·k_r·scale + s_{r−1} + bias) from s = 0, as
    /// x-transformers adds each run's to the next (`at:558-573`); 0 without earlier runs.
    fn earlier_logit<'c, K: Element + 'c>(
        &self,
        e: &Earlier<'_, impl Fn(usize, usize, usize) -> &'c [K]>,
        i: usize,
        h: usize,
        pos: usize,
        key: Key,
        bias: f32,
    ) -> f32 {
        let (d, qd) = (self.dim, self.heads * self.dim);
        let j = h % self.kv_heads.max(1);
        let mem_len = self.mem.0.len();
        let mem_rows = mem_len / (self.kv_heads * d).max(1);
        let mut pre = 0.0;
        for r in 0..e.runs {
            let at = r * e.stride + i * qd + h * d;
            let Some(q) = e.queries.get(at..at + d) else {
                break;
            };
            let s = match key {
                Key::Zero => 0.0,
                Key::Memory(m) => {
                    let at = r * mem_len + (j * mem_rows + m) * d;
                    e.mem_keys.get(at..at + d).map_or(0.0, |k| dot(q, k))
                }
                Key::Position(p) => self.dot(q, (e.key)(r, j, p), pos, p),
            };
            pre = self.clamp(s * self.scale + pre + bias);
        }
        pre
    }

    /// The logit softclamp, tanh(s / v)·v (`at:67-68, 572-573`), if configured.
    fn clamp(&self, s: f32) -> f32 {
        match self.softclamp {
            Some(v) => libm::tanhf(s / v) * v,
            None => s,
        }
    }
}

/// q·k over a head.
fn dot<K: Element>(q: &[f32], k: &[K]) -> f32 {
    q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum()
}

/// q·k with xpos: the rotated pair m (of the first r features) weighted by s_m^power, s_m =
/// (2m + 0.4r)/(1.4r) (`xt:860-862`, or as `stored`), power = (p_q − p_k)/B. x-transformers scales q by
/// s^((p_q − c)/B) and k by s^(−(p_k − c)/B) with c half the call's length (`xt:885-889`); the
/// product is the same, and centred on the query no factor exceeds 1 on a causal key, so long
/// sequences neither overflow nor lose the keys (the cache holds them rotated, unscaled).
fn xpos_dot<K: Element>(
    q: &[f32],
    k: &[K],
    r: usize,
    stored: Option<Tensor<'_>>,
    power: f32,
) -> f32 {
    let mut s = 0.0;
    let (qr, q_rest) = q.split_at(r.min(q.len()));
    let (kr, k_rest) = k.split_at(r.min(k.len()));
    let (qp, kp) = (qr.as_chunks::<2>().0, kr.as_chunks::<2>().0);
    for (m, ([q0, q1], [k0, k1])) in qp.iter().zip(kp).enumerate() {
        let scale = match stored.and_then(|t| t.get(m)) {
            Some(v) => v,
            None => ((2 * m) as f32 + 0.4 * r as f32) / (1.4 * r as f32),
        };
        let w = libm::powf(scale, power);
        s += (q0 * k0.to_f32() + q1 * k1.to_f32()) * w;
    }
    s + dot(q_rest, k_rest)
}

/// One query's online softmax: the weighted sum of the values seen so far in `out`, relative to
/// the running maximum.
struct Softmax<'o> {
    out: &'o mut [f32],
    max: f32,
    sum: f32,
}

impl<'o> Softmax<'o> {
    fn new(out: &'o mut [f32]) -> Self {
        out.iter_mut().for_each(|o| *o = 0.0);
        Softmax {
            out,
            max: f32::NEG_INFINITY,
            sum: 0.0,
        }
    }

    /// Adds a key of logit `s` and value `v` (`None`: the zero value).
    fn add<K: Element>(&mut self, s: f32, v: Option<&[K]>) {
        let p = if s > self.max {
            // Rescale what was accumulated to the new maximum.
            let f = libm::expf(self.max - s);
            self.sum *= f;
            self.out.iter_mut().for_each(|o| *o *= f);
            self.max = s;
            1.0
        } else {
            libm::expf(s - self.max)
        };
        self.sum += p;
        if let Some(v) = v {
            self.out
                .iter_mut()
                .zip(v)
                .for_each(|(o, v)| *o += p * v.to_f32());
        }
    }

    /// Divides by the sum; a query that saw no key keeps zeros.
    fn finish(self) {
        if self.sum > 0.0 {
            let inv = 1.0 / self.sum;
            self.out.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

/// ALiBi's slope of head `h` of `heads` (`AlibiPositionalBias._get_slopes`, `xt:657-667`), as the
/// f32 it becomes in torch: for a power of two n, slope_h = start^(h+1) with start =
/// 2^(−2^−(log₂n − 3)); otherwise the slopes of the power of two p below n, then every other
/// slope of 2p.
pub(crate) fn alibi_slope(h: usize, heads: usize) -> f32 {
    let power_of_two = |n: usize, i: usize| {
        let start = libm::exp2(-libm::exp2(-(libm::log2(n as f64) - 3.0)));
        start * libm::pow(start, i as f64)
    };
    if heads.is_power_of_two() {
        return power_of_two(heads, h) as f32;
    }
    let p = 1usize << (usize::BITS - 1 - heads.leading_zeros());
    if h < p {
        power_of_two(p, h) as f32
    } else {
        power_of_two(2 * p, 2 * (h - p)) as f32
    }
}
