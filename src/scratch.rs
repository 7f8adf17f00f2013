//! The scratch arena of a forward pass: named activation buffers (llama2.c's `RunState`) carved
//! from one caller-provided `&mut [f32]`.
//!
//! The arena is sized for `max_positions` positions processed at once. Longer inputs are not
//! an error: the forward pass runs them in chunks of `max_positions` (which gives the same
//! numbers, since prefill(a ++ b) == prefill(a) then prefill(b)). A decode-only arena is
//! `max_positions = 1`.

use crate::config::DecoderConfig;
use crate::error::{Buffer, Error};
use crate::layers::Kind;

/// Caller-provided working memory for [`crate::Decoder`] and [`crate::TransformerWrapper`].
#[derive(Debug)]
pub struct Scratch<'b> {
    buf: &'b mut [f32],
    config: DecoderConfig,
    max_positions: usize,
}

/// The arena split into its named buffers, each `[positions, width]` row-major.
pub(crate) struct Buffers<'a> {
    /// Residual stream `[P, dim]`.
    pub x: &'a mut [f32],
    /// Normed input of a sublayer, and the final norm's output `[P, dim]`.
    pub xb: &'a mut [f32],
    /// Output of a sublayer before the residual add `[P, dim]`.
    pub xb2: &'a mut [f32],
    /// Queries `[P, heads·d]`.
    pub q: &'a mut [f32],
    /// New keys `[P, kv_heads·d]` (also a chunk of context rows' keys).
    pub k: &'a mut [f32],
    /// New values `[P, kv_heads·d]`.
    pub v: &'a mut [f32],
    /// Attention output, heads merged `[P, heads·d]`.
    pub att: &'a mut [f32],
    /// Feed-forward hidden `[P, F]` or `[P, 2F]` with GLU; the GRU gates `[P, 6·dim]` with
    /// `gate_residual` ([`DecoderConfig::hidden_width`]).
    pub hb: &'a mut [f32],
    /// Rotary cosines `[P, r/2]`.
    pub cos: &'a mut [f32],
    /// Rotary sines `[P, r/2]`.
    pub sin: &'a mut [f32],
    /// Rotary inverse frequencies `[r/2]`.
    pub inv_freq: &'a mut [f32],
    /// A sublayer's memory keys then values (`attn_num_mem_kv`), `[2, kv_heads, M, d]`.
    pub mem: &'a mut [f32],
    /// The first self-attention's values of the chunk (`add_value_residual`), `[P, kv_heads·d]`.
    pub v0: &'a mut [f32],
    /// The queries of every attention run whose logits later runs add (`residual_attn`: the
    /// self-attention runs, then with `cross_residual_attn` the cross-attention runs), `[runs, P,
    /// heads·d]`.
    pub earlier_q: &'a mut [f32],
    /// Their memory keys (`attn_num_mem_kv`), `[runs, kv_heads, M, d]`.
    pub earlier_mem: &'a mut [f32],
}

impl<'b> Scratch<'b> {
    /// `f32` elements needed for `max_positions` positions at once:
    /// P·(3·dim + 2·heads·d + 2·kv_heads·d + h) + (2P + 1)·r/2 + 2·kv_heads·d·M, with h = F·(2
    /// with GLU), or 6·dim with `gate_residual` if more ([`DecoderConfig::hidden_width`]), and M
    /// the memory keys (`attn_num_mem_kv`); plus P·kv_heads·d with `add_value_residual`, and
    /// R·(P·heads·d + kv_heads·d·M) for the R attention runs whose logits later runs add
    /// (`residual_attn`, `cross_residual_attn`).
    pub const fn elements(cfg: &DecoderConfig, max_positions: usize) -> usize {
        let per_position = 3usize
            .saturating_mul(cfg.dim)
            .saturating_add(2usize.saturating_mul(cfg.q_dim()))
            .saturating_add(2usize.saturating_mul(cfg.kv_dim()))
            .saturating_add(cfg.hidden_width());
        let half = cfg.rotary_dim() / 2;
        max_positions
            .saturating_mul(per_position)
            .saturating_add(half.saturating_mul(max_positions.saturating_mul(2).saturating_add(1)))
            .saturating_add(Self::mem_elements(cfg))
            .saturating_add(max_positions.saturating_mul(Self::v0_width(cfg)))
            .saturating_add(
                Self::earlier_runs(cfg).saturating_mul(
                    max_positions
                        .saturating_mul(cfg.q_dim())
                        .saturating_add(Self::mem_elements(cfg) / 2),
                ),
            )
    }

    /// The attention runs whose queries and memory keys are kept for the later runs' residual
    /// logits: the self-attention runs with `residual_attn`, the cross-attention runs with
    /// `cross_residual_attn`.
    pub(crate) const fn earlier_runs(cfg: &DecoderConfig) -> usize {
        let own = if cfg.residual_attn {
            cfg.runs_of(Kind::Attention)
        } else {
            0
        };
        let cross = if cfg.cross_residual_attn {
            cfg.runs_of(Kind::Cross)
        } else {
            0
        };
        own.saturating_add(cross)
    }

    /// Width of the first self-attention's values per position: kv_heads·d with
    /// `add_value_residual`, else 0.
    const fn v0_width(cfg: &DecoderConfig) -> usize {
        if cfg.add_value_residual {
            cfg.kv_dim()
        } else {
            0
        }
    }

    /// Elements of the memory keys and values, 2·kv_heads·d·M.
    const fn mem_elements(cfg: &DecoderConfig) -> usize {
        2usize
            .saturating_mul(cfg.kv_dim())
            .saturating_mul(cfg.attn_num_mem_kv)
    }

    /// Bytes needed (`elements · 4`).
    pub const fn bytes(cfg: &DecoderConfig, max_positions: usize) -> usize {
        Self::elements(cfg, max_positions).saturating_mul(4)
    }

    /// An arena for up to `max_positions` positions per chunk, over the first
    /// [`Self::elements`] elements of `buf`. Its contents are never read before being written.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::EmptyInput`] if `max_positions` is 0, or
    /// [`Error::BufferTooSmall`] with needed and available elements.
    pub fn new(
        cfg: &DecoderConfig,
        max_positions: usize,
        buf: &'b mut [f32],
    ) -> Result<Self, Error> {
        cfg.validate()?;
        if max_positions == 0 {
            return Err(Error::EmptyInput);
        }
        let needed = Self::elements(cfg, max_positions);
        if buf.len() < needed || needed == usize::MAX {
            return Err(Error::BufferTooSmall {
                buffer: Buffer::Scratch,
                needed,
                available: buf.len(),
            });
        }
        Ok(Self {
            buf: &mut buf[..needed],
            config: *cfg,
            max_positions,
        })
    }

    /// Positions processed per chunk.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Whether the arena was made for this configuration.
    pub(crate) fn fits(&self, cfg: &DecoderConfig) -> bool {
        self.config == *cfg
    }

    /// Splits the arena into its named buffers.
    pub(crate) fn buffers(&mut self) -> Buffers<'_> {
        let c = &self.config;
        let p = self.max_positions;
        let half = c.rotary_dim() / 2;
        // Each buffer in turn (the arena is sized for them all: `Scratch::new` checks; a
        // buffer past its end would be empty, and the forward pass would say
        // `Error::BufferTooSmall`, without a panic path, issue 28).
        let mut rest = &mut *self.buf;
        let mut take = |len: usize| take(&mut rest, len);
        let x = take(p * c.dim);
        let xb = take(p * c.dim);
        let xb2 = take(p * c.dim);
        let q = take(p * c.q_dim());
        let k = take(p * c.kv_dim());
        let v = take(p * c.kv_dim());
        let att = take(p * c.q_dim());
        let hb = take(p * c.hidden_width());
        let cos = take(p * half);
        let sin = take(p * half);
        let inv_freq = take(half);
        let mem = take(Self::mem_elements(c));
        let v0 = take(p * Self::v0_width(c));
        let runs = Self::earlier_runs(c);
        let earlier_q = take(runs * p * c.q_dim());
        let earlier_mem = take(runs * Self::mem_elements(c) / 2);
        Buffers {
            x,
            xb,
            xb2,
            q,
            k,
            v,
            att,
            hb,
            cos,
            sin,
            inv_freq,
            mem,
            v0,
            earlier_q,
            earlier_mem,
        }
    }

    /// Fills the arena with NaN (tests use it to show that nothing unwritten is read).
    #[doc(hidden)]
    pub fn poison(&mut self) {
        self.buf.fill(f32::NAN);
    }
}

/// The first `len` values of `rest`, which keeps the others; empty, and `rest` unchanged, if
/// it is shorter.
fn take<'a>(rest: &mut &'a mut [f32], len: usize) -> &'a mut [f32] {
    let all = core::mem::take(rest);
    if len > all.len() {
        *rest = all;
        return &mut [];
    }
    let (head, tail) = all.split_at_mut(len);
    *rest = tail;
    head
}
