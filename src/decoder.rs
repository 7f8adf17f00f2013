//! The x-transformers `Decoder` forward pass, top to bottom, over the KV cache.
//!
//! Every step names the x-transformers line it reproduces (`xt:N` = `x_transformers.py`,
//! `at:N` = `attend.py`, version 2.31.10; see `docs/x-transformers.md`).

use crate::cache::KvCache;
use crate::config::{DecoderConfig, Norm};
use crate::error::{Buffer, Error};
use crate::kernels;
use crate::packing::{self, BlockPanels, Packed};
use crate::scratch::{Buffers, Scratch};
use crate::tensor::{Element, Tensor, TensorSource};
use crate::weights::{AttentionWeights, DecoderWeights, FeedForwardWeights, GruWeights, PostNorms};

/// An x-transformers `Decoder` over borrowed weights: takes embeddings `x` (positions × dim)
/// and an optional context (rows × dim_context), returns hidden states after the final norm.
///
/// `MAX_DEPTH` bounds the number of blocks (the weight table is a fixed-capacity array).
#[derive(Clone, Debug)]
pub struct Decoder<'w, const MAX_DEPTH: usize = 16> {
    config: DecoderConfig,
    weights: DecoderWeights<'w, MAX_DEPTH>,
    /// The blocks' matrices packed ([`Self::with_prefill_panels`], [`Self::with_int8_panels`]),
    /// or empty.
    panels: heapless::Vec<BlockPanels<'w>, MAX_DEPTH>,
    /// Whether products with Q8_0 weights take the int8 path ([`Self::with_int8_activations`]).
    int8: bool,
}

impl<'w, const MAX_DEPTH: usize> Decoder<'w, MAX_DEPTH> {
    /// A decoder whose weights are looked up in `source` under a raw `Decoder`'s `state_dict` keys.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::DepthExceedsCapacity`],
    /// [`Error::MissingWeight`] and [`Error::WeightShape`] naming the offending key.
    pub fn from_source<S: TensorSource<'w>>(
        config: DecoderConfig,
        source: &S,
    ) -> Result<Self, Error> {
        Self::from_source_prefixed(config, source, "")
    }

    /// As [`Self::from_source`], with keys prefixed (`"attn_layers."` under a wrapper).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::DepthExceedsCapacity`],
    /// [`Error::MissingWeight`] and [`Error::WeightShape`] naming the offending key.
    pub fn from_source_prefixed<S: TensorSource<'w>>(
        config: DecoderConfig,
        source: &S,
        prefix: &'static str,
    ) -> Result<Self, Error> {
        let weights = DecoderWeights::from_source(&config, source, prefix)?;
        Ok(Self {
            config,
            weights,
            panels: heapless::Vec::new(),
            int8: false,
        })
    }

    /// f32 elements of the arena that [`Self::with_prefill_panels`] needs
    /// ([`packing::prefill_panels_len`] of the configuration).
    pub const fn prefill_panels_len(&self) -> usize {
        packing::prefill_panels_len(&self.config)
    }

    /// This decoder with the matrices that a chunk of positions is multiplied by packed into
    /// `arena` (f32 copies in panels, `crate::packing`), so that prefill runs the matrix-matrix
    /// product over panels (faster with every SIMD set). Decoding one position keeps reading the
    /// weights as stored. The results agree with the unpacked pass to f32 rounding (the sums run
    /// in another order). The decoder returned borrows the arena; `self` is left as it is.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `arena` holds fewer than [`Self::prefill_panels_len`]
    /// values.
    pub fn with_prefill_panels<'a>(
        &self,
        arena: &'a mut [f32],
    ) -> Result<Decoder<'a, MAX_DEPTH>, Error>
    where
        'w: 'a,
    {
        let panels = packing::pack(&self.config, &self.weights.blocks, arena)?;
        Ok(Decoder {
            config: self.config,
            weights: self.weights.clone(),
            panels,
            int8: self.int8,
        })
    }

    /// Bytes of the arena that [`Self::with_int8_panels`] needs ([`packing::int8_panels_len`] of
    /// the configuration: as if every matrix were Q8_0).
    pub const fn int8_panels_len(&self) -> usize {
        packing::int8_panels_len(&self.config)
    }

    /// This decoder on the int8 path ([`Self::with_int8_activations`]) with its Q8_0 matrices
    /// packed into int8 panels in `arena` ([`kernels::Int8Panels`]: 16 rows to the lanes of a
    /// vector, as many bytes as the weights), so that every product by them, decoding one
    /// position included, runs [`kernels::matmul_int8_panels`]: a block is scaled once for 16 rows,
    /// and in a chunk each weight load serves several positions. The numbers are the int8
    /// path's (up to the rounding of each block's `d_w·d_x·sum`). Matrices of other types keep
    /// any f32 prefill panels packed before. The decoder returned borrows the arena; `self` is
    /// left as it is.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `arena` holds fewer than [`Self::int8_panels_len`] bytes.
    pub fn with_int8_panels<'a>(&self, arena: &'a mut [u8]) -> Result<Decoder<'a, MAX_DEPTH>, Error>
    where
        'w: 'a,
    {
        let panels = packing::pack_int8(&self.config, &self.weights.blocks, &self.panels, arena)?;
        Ok(Decoder {
            config: self.config,
            weights: self.weights.clone(),
            panels,
            int8: true,
        })
    }

    /// This decoder with every product by Q8_0 weights on the int8 path (`on`), or in f32 (the
    /// default): each input row is quantised to Q8_0 blocks of 32 (`d = max|x| / 127`, as
    /// ggml's `q8_0`) and multiplied with integer dot products ([`kernels::matvec_int8`]: AVX-512
    /// VNNI, AVX-VNNI, AVX2, NEON, simd128 or portable). Decoding Q8_0 weights gets faster (`docs/performance.md`), at
    /// the price of the activations' quantisation error (`docs/accuracy.md`). It applies to prefill too: several positions at a time over the weights as stored
    /// ([`kernels::matmul_int8`], each position's numbers those of one position, so
    /// step-wise still equals full), and it takes precedence over prefill panels for Q8_0
    /// matrices. Other weight types
    /// are not affected.
    pub fn with_int8_activations(mut self, on: bool) -> Self {
        self.int8 = on;
        self
    }

    /// Whether products by Q8_0 weights take the int8 path ([`Self::with_int8_activations`]).
    pub fn int8_activations(&self) -> bool {
        self.int8
    }

    /// Whether any matrix is packed into f32 prefill panels ([`Self::with_prefill_panels`]).
    pub fn has_prefill_panels(&self) -> bool {
        self.has_packed(|p| matches!(p, Packed::F32(_)))
    }

    /// Whether any matrix is packed into int8 panels ([`Self::with_int8_panels`]).
    pub fn has_int8_panels(&self) -> bool {
        self.has_packed(|p| matches!(p, Packed::Int8(_)))
    }

    /// Whether a packed matrix satisfies `f`.
    fn has_packed(&self, f: impl Fn(&Packed<'_>) -> bool) -> bool {
        self.panels.iter().any(|b| {
            [
                b.q,
                b.k,
                b.v,
                b.out,
                b.cross_q,
                b.cross_k,
                b.cross_v,
                b.cross_out,
                b.ff_proj,
                b.ff_out,
            ]
            .iter()
            .flatten()
            .any(&f)
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The weights.
    pub(crate) fn weights(&self) -> &DecoderWeights<'w, MAX_DEPTH> {
        &self.weights
    }

    /// Runs `x` (n × dim, row-major) through the decoder at positions `cache.len()..+n`,
    /// appends its keys and values to the cache and writes the n hidden states to `out`.
    ///
    /// A cross-attending model computes the context's keys and values on the first call (the
    /// cache has no context yet) and reuses them afterwards; like x-transformers, a context
    /// given on later calls is ignored (`xt:3500-3501`). [`KvCache::reset`] forgets it.
    ///
    /// Chunking is invisible: `forward(a ++ b)` equals `forward(a)` then `forward(b)` (to
    /// rounding), and inputs longer than the scratch's `max_positions` run in chunks.
    ///
    /// # Errors
    /// [`Error::BufferLength`] if `x` is not whole rows or `out` differs in length from `x`,
    /// [`Error::EmptyInput`], [`Error::CacheFull`], [`Error::ContextRequired`],
    /// [`Error::ContextNotExpected`], [`Error::ContextTooLong`], [`Error::ConfigMismatch`].
    /// On error nothing is written: not the cache, not `out`.
    pub fn forward<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let dim = self.config.dim;
        if !x.len().is_multiple_of(dim) {
            return Err(Error::BufferLength {
                buffer: Buffer::Input,
                expected: dim,
                found: x.len(),
            });
        }
        if out.len() != x.len() {
            return Err(Error::BufferLength {
                buffer: Buffer::Output,
                expected: x.len(),
                found: out.len(),
            });
        }
        self.run(
            cache,
            scratch,
            x.len() / dim,
            context,
            |start, rows| {
                rows.copy_from_slice(&x[start * dim..start * dim + rows.len()]);
                Ok(())
            },
            |start, rows| {
                out[start * dim..start * dim + rows.len()].copy_from_slice(rows);
                Ok(())
            },
        )
    }

    /// One position: [`Self::forward`] with a single row `x` (dim) and `out` (dim).
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn step<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        if x.len() != self.config.dim {
            return Err(Error::BufferLength {
                buffer: Buffer::Input,
                expected: self.config.dim,
                found: x.len(),
            });
        }
        self.forward(cache, scratch, x, context, out)
    }

    /// Checks everything a call needs before anything is written.
    fn validate<K: Element>(
        &self,
        cache: &KvCache<'_, K>,
        scratch: &Scratch<'_>,
        n: usize,
        context: Option<&[f32]>,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        if !scratch.fits(cfg) {
            return Err(Error::ConfigMismatch(Buffer::Scratch));
        }
        if !cache.fits(cfg) {
            return Err(Error::ConfigMismatch(Buffer::KvCache));
        }
        if n == 0 {
            return Err(Error::EmptyInput);
        }
        cache.check_room(n)?;
        if !cfg.cross_attend {
            if context.is_some() {
                return Err(Error::ContextNotExpected);
            }
        } else if cache.context_len().is_none() {
            let c = context.ok_or(Error::ContextRequired)?;
            let w = cfg.dim_context();
            if c.is_empty() || c.len() % w != 0 {
                return Err(Error::BufferLength {
                    buffer: Buffer::Context,
                    expected: w,
                    found: c.len(),
                });
            }
            if c.len() / w > cache.max_context() {
                return Err(Error::ContextTooLong {
                    rows: c.len() / w,
                    capacity: cache.max_context(),
                });
            }
        }
        Ok(())
    }

    /// The forward pass shared by the decoder and the wrapper: validates, then for each chunk of
    /// positions lets `fill` write the input rows into the residual stream, runs every block,
    /// and hands the final-normed rows to `emit`. `fill`/`emit` get the chunk's start index.
    pub(crate) fn run<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        n: usize,
        context: Option<&[f32]>,
        mut fill: impl FnMut(usize, &mut [f32]) -> Result<(), Error>,
        mut emit: impl FnMut(usize, &[f32]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.validate(cache, scratch, n, context)?;
        let chunk = scratch.max_positions();
        let mut s = scratch.buffers();
        if self.config.cross_attend && cache.context_len().is_none() {
            if let Some(c) = context {
                self.encode_context(cache, &mut s, chunk, c)?;
            }
        }
        self.fill_inv_freq(s.inv_freq)?;
        let dim = self.config.dim;
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            fill(start, &mut s.x[..len * dim])?;
            self.forward_chunk(cache, &mut s, len)?;
            emit(start, &s.xb[..len * dim])?;
            start += len;
        }
        Ok(())
    }

    /// Cross-attention keys and values of the context, once (`xt:2341, 2448-2457`): K = c·W_kᵀ,
    /// V = c·W_vᵀ from the raw (un-normed) context rows, `chunk` rows (the scratch's positions)
    /// at a time, so that a packed `to_k`/`to_v` runs the matrix-matrix product.
    fn encode_context<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        s: &mut Buffers<'_>,
        chunk: usize,
        context: &[f32],
    ) -> Result<(), Error> {
        let (w, kv) = (self.config.dim_context(), self.config.kv_dim());
        for (b, block) in self.weights.blocks.iter().enumerate() {
            let Some(cross) = &block.cross else { continue };
            let p = self.panels.get(b);
            for (i, c) in context.chunks(chunk.saturating_mul(w).max(1)).enumerate() {
                let n = c.len() / w;
                let (k, v) = (&mut s.k[..n * kv], &mut s.v[..n * kv]);
                self.linear(cross.to_k, p.and_then(|p| p.cross_k), w, c, k)?;
                self.linear(cross.to_v, p.and_then(|p| p.cross_v), w, c, v)?;
                self.qk_norm(k, self.config.kv_heads(), cross.qk_norm_k_scale)?;
                value_rmsnorm(v, self.config.attn_dim_head, cross.value_rmsnorm);
                for (r, (kr, vr)) in k.chunks_exact(kv).zip(v.chunks_exact(kv)).enumerate() {
                    cache.store_context(b, i * chunk + r, kr, vr);
                }
            }
        }
        cache.set_context_len(context.len() / w);
        Ok(())
    }

    /// inv_freq[m] = 1 / base^(2m/r), base = 10000 · rescale^(r/(r−2)), in f32 like torch
    /// (`xt:849-852`); the file's `rotary_pos_emb.inv_freq` buffer is used when present.
    fn fill_inv_freq(&self, inv_freq: &mut [f32]) -> Result<(), Error> {
        let r = self.config.rotary_dim();
        match self.weights.inv_freq {
            Some(t) => kernels::load(inv_freq, t)?,
            None if r > 0 => {
                let rescale = self.config.rotary_base_rescale_factor;
                let base = (10000.0 * libm::pow(rescale, r as f64 / (r as f64 - 2.0))) as f32;
                for (m, f) in inv_freq.iter_mut().enumerate() {
                    *f = 1.0 / libm::powf(base, (2 * m) as f32 / r as f32);
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Rotary tables for positions pos0..pos0+n: φ = (p·inv_freq[m]) / interpolation_factor in f32
    /// (`xt:876-881`).
    fn fill_rotary(&self, s: &mut Buffers<'_>, pos0: usize, n: usize) {
        let half = self.config.rotary_dim() / 2;
        let interp = self.config.rotary_interpolation_factor as f32;
        for i in 0..n {
            let p = (pos0 + i) as f32;
            for m in 0..half {
                let angle = (p * s.inv_freq[m]) / interp;
                s.cos[i * half + m] = libm::cosf(angle);
                s.sin[i * half + m] = libm::sinf(angle);
            }
        }
    }

    /// A norm of `n` rows (`xt:3677-3678`); gains are stored as gain − 1 (`xt:2993-2995`), or as
    /// the gain without `norm_add_unit_offset`.
    fn norm(&self, gain: Option<Tensor<'_>>, x: &[f32], out: &mut [f32]) -> Result<(), Error> {
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
    fn pre_norm(&self, gain: Option<Tensor<'_>>, x: &[f32], xb: &mut [f32]) -> Result<(), Error> {
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
    fn residual(
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
            let gain = &mut tmp[..dim];
            kernels::load(gain, g)?;
            for row in x.chunks_exact_mut(dim) {
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
            x.copy_from_slice(tmp);
        }
        Ok(())
    }

    /// A feed-forward sublayer 'f' (`xt:1763-1858`): x = x + W₂·act(W₁·u + b₁) + b₂, or GLU,
    /// with `panels` its (input, output) packed matrices; `gates` is the hidden buffer.
    #[allow(clippy::too_many_arguments)]
    fn feed_forward(
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
        let hb = &mut gates[..n * rows];
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
                let (up, gate) = row.split_at_mut(inner);
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
                hb.copy_within(i * rows..i * rows + inner, i * inner);
            }
        } else {
            // ff_softclamp_value: tanh(z / v)·v before the activation (xt:1814-1817).
            if let Some(v) = cfg.ff_softclamp_value {
                let v = v as f32;
                hb.iter_mut().for_each(|e| *e = libm::tanhf(*e / v) * v);
            }
            kernels::activate(act, hb);
        }
        if let Some(g) = f.post_act_ln {
            post_act_layer_norm(&mut hb[..n * inner], inner, g);
        }
        self.linear(f.out, panels.1, inner, &hb[..n * inner], xb2)?;
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
    fn gru_gate(
        &self,
        w: &GruWeights<'_>,
        branch: &[f32],
        h: &mut [f32],
        gates: &mut [f32],
    ) -> Result<(), Error> {
        let dim = self.config.dim;
        let n = h.len() / dim;
        let (gi, rest) = gates.split_at_mut(n * 3 * dim);
        let gh = &mut rest[..n * 3 * dim];
        self.linear(w.weight_ih, None, dim, branch, gi)?;
        kernels::add_bias(gi, w.bias_ih)?;
        self.linear(w.weight_hh, None, dim, h, gh)?;
        kernels::add_bias(gh, w.bias_hh)?;
        let sigmoid = |v: f32| 1.0 / (1.0 + libm::expf(-v));
        for ((hr, i), g) in h
            .chunks_exact_mut(dim)
            .zip(gi.chunks_exact(3 * dim))
            .zip(gh.chunks_exact(3 * dim))
        {
            for (j, hv) in hr.iter_mut().enumerate() {
                let r = sigmoid(i[j] + g[j]);
                let z = sigmoid(i[dim + j] + g[dim + j]);
                let c = libm::tanhf(i[2 * dim + j] + r * g[2 * dim + j]);
                *hv = (1.0 - z) * c + z * *hv;
            }
        }
        Ok(())
    }

    /// `use_layerscale` (`LayerScale.forward`, xt:1673-1681): the branch output `out` times the
    /// stored gain plus the norm offset (1 with `norm_add_unit_offset`), via `tmp`.
    fn layer_scale(&self, g: Tensor<'_>, out: &mut [f32], tmp: &mut [f32]) -> Result<(), Error> {
        let dim = self.config.dim;
        let gain = &mut tmp[..dim];
        kernels::load(gain, g)?;
        let offset = self.config.norm_gain_offset();
        gain.iter_mut().for_each(|v| *v += offset);
        for row in out.chunks_exact_mut(dim) {
            row.iter_mut().zip(gain.iter()).for_each(|(v, g)| *v *= g);
        }
        Ok(())
    }

    /// The attention output's per-head scale (`attn_head_scale`, xt:2638-2639) and value gates
    /// (`attn_gate_values`, xt:2711-2720: att ⊙ sigmoid(u·W_gᵀ), into `gates`), in that order.
    fn scale_and_gate(
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
    fn qk_norm(
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
    fn project_out(
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

    /// All blocks over the `n` positions in `s.x`, then the final norm into `s.xb`. The shapes
    /// were validated before, so the kernels' shape errors cannot occur here.
    fn forward_chunk<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        s: &mut Buffers<'_>,
        n: usize,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let (dim, qd, kvd, d) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.attn_dim_head);
        let half = cfg.rotary_dim() / 2;
        let heads = Heads::new(cfg);
        let pos0 = cache.len();
        self.fill_rotary(s, pos0, n);
        let x = &mut s.x[..n * dim];
        let xb = &mut s.xb[..n * dim];
        let xb2 = &mut s.xb2[..n * dim];
        let q = &mut s.q[..n * qd];
        let k = &mut s.k[..n * kvd];
        let v = &mut s.v[..n * kvd];
        let att = &mut s.att[..n * qd];

        for (b, block) in self.weights.blocks.iter().enumerate() {
            // The block's packed matrices, if any (`linear` chooses which it reads).
            let p = self.panels.get(b);
            // ---- macaron: the block's first feed-forward (xt:3009-3010), stored weights only
            if let Some(f0) = &block.ff_pre {
                self.feed_forward(f0, (None, None), x, xb, xb2, &mut s.hb[..], n)?;
            }
            // ---- self-attention 'a': x = x + to_out(attend(q, K, V))   (xt:3660-3717, 2297-2759)
            let a = &block.attn;
            self.pre_norm(a.norm, x, xb)?;
            self.linear(a.to_q, p.and_then(|p| p.q), dim, xb, q)?; // q = u·W_qᵀ, no bias (xt:2013)
            self.linear(a.to_k, p.and_then(|p| p.k), dim, xb, k)?;
            self.linear(a.to_v, p.and_then(|p| p.v), dim, xb, v)?;
            // qk norm before rotary and before the keys are cached (xt:2422-2427, 2459).
            self.qk_norm(q, cfg.heads, a.qk_norm_q_scale)?;
            self.qk_norm(k, cfg.kv_heads(), a.qk_norm_k_scale)?;
            value_rmsnorm(v, d, a.value_rmsnorm); // before the values are cached (xt:2436)
            if half > 0 {
                // Rotary on q and k, first r features in adjacent pairs (xt:2459-2482, 893-915).
                for i in 0..n {
                    let (c, sn) = (
                        &s.cos[i * half..(i + 1) * half],
                        &s.sin[i * half..(i + 1) * half],
                    );
                    q[i * qd..(i + 1) * qd]
                        .chunks_exact_mut(d)
                        .try_for_each(|h| kernels::rotary(h, c, sn))?;
                    k[i * kvd..(i + 1) * kvd]
                        .chunks_exact_mut(d)
                        .try_for_each(|h| kernels::rotary(h, c, sn))?;
                }
            }
            for i in 0..n {
                cache.store(
                    b,
                    pos0 + i,
                    &k[i * kvd..(i + 1) * kvd],
                    &v[i * kvd..(i + 1) * kvd],
                );
            }
            // Causal: position pos0+i sees keys 0..=pos0+i (at:179-180).
            heads.attend(q, att, n, true, |j| cache.head(b, j, pos0 + n))?;
            self.scale_and_gate(a, xb, att, q)?;
            self.project_out(a, p.and_then(|p| p.out), att, xb2)?;
            self.residual(&a.post, x, xb2, xb, &mut s.hb[..])?;

            // ---- cross-attention 'c': q from the normed x, K/V of the raw context, no mask (xt:3233, 2341)
            if let Some(c) = &block.cross {
                self.pre_norm(c.norm, x, xb)?;
                self.linear(c.to_q, p.and_then(|p| p.cross_q), dim, xb, q)?;
                self.qk_norm(q, cfg.heads, c.qk_norm_q_scale)?;
                heads.attend(q, att, n, false, |j| cache.context_head(b, j))?;
                self.scale_and_gate(c, xb, att, q)?;
                self.project_out(c, p.and_then(|p| p.cross_out), att, xb2)?;
                self.residual(&c.post, x, xb2, xb, &mut s.hb[..])?;
            }

            // ---- feed-forward 'f' (xt:1763-1858)
            let ff_panels = (p.and_then(|p| p.ff_proj), p.and_then(|p| p.ff_out));
            self.feed_forward(&block.ff, ff_panels, x, xb, xb2, &mut s.hb[..], n)?;
        }

        // ---- softclamp_output: x = tanh(x / v)·v (xt:3746-3747, 232-233)
        if cfg.softclamp_output {
            let v = cfg.softclamp_output_value as f32;
            x.iter_mut().for_each(|e| *e = libm::tanhf(*e / v) * v);
        }
        // ---- final norm (xt:3750), or none (post-norm, pre_norm_has_final_norm=False)
        if cfg.has_final_norm() {
            self.norm(self.weights.final_norm, x, xb)?;
        } else {
            xb.copy_from_slice(x);
        }
        cache.advance(n);
        Ok(())
    }
}

/// `attn_value_rmsnorm` (`MultiheadRMSNorm`, `xt:1126-1133`): every head of `width` values in
/// `rows` becomes x / max(‖x‖₂, 1e-12) · √width · (γ + 1), γ the head's row of `gain`
/// (`[H, 1, d]`). Nothing without it.
fn value_rmsnorm(rows: &mut [f32], width: usize, gain: Option<Tensor<'_>>) {
    let Some(g) = gain else { return };
    let w = width.max(1);
    let heads = g.len() / w;
    let root = libm::sqrtf(w as f32);
    for row in rows.chunks_exact_mut(heads.max(1) * w) {
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
struct Heads {
    kv_heads: usize,
    group: kernels::HeadGroup,
    /// A position's length in q, `heads·d`.
    q_dim: usize,
    scale: f32,
}

impl Heads {
    fn new(cfg: &DecoderConfig) -> Heads {
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
    fn attend<'c, K: Element + 'c>(
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
impl<const MAX_DEPTH: usize> Decoder<'_, MAX_DEPTH> {
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
