//! Attention over one cached kv head: block-wise scores, the online softmax and the weighted
//! values, for several queries per pass over the cache.

use super::gemv::gemv;
use super::maps::exp;
use super::{Isa, LoadW};
use crate::kernels::{HeadGroup, Positions};

/// Keys per block of the online softmax.
const BLOCK: usize = 16;

/// Queries (query heads × positions) handled per pass over the cache by [`attention`] (the
/// size of its per-query state).
const QUERIES_PER_PASS: usize = 8;

/// Where [`attention`]'s queries are: the query heads of `group` (which share one cached kv
/// head), at each of `positions`.
#[derive(Clone, Copy)]
pub(crate) struct Queries {
    pub group: HeadGroup,
    pub positions: Positions,
}

impl Queries {
    /// Query `u` (positions outer, heads inner): its offset in q and out, and how many of the
    /// `len` cached rows it sees.
    #[inline(always)]
    fn at(self, u: usize, len: usize) -> (usize, usize) {
        let (g, pos) = (self.group, self.positions);
        let (p, t) = (u / g.heads, u % g.heads);
        (p * pos.stride + t * g.stride, pos.seen(p, len))
    }
}

/// The queries of `qs` over `len` cached rows of `d = qs.group.dim` values (see
/// `portable::attention_positions`): query u reads q[at(u)..][..d] and writes out[at(u)..][..d]. The keys and values are read
/// from memory once per pass of up to [`QUERIES_PER_PASS`] queries (the heads of a kv head
/// group, and the positions of a prefill chunk): each block of [`BLOCK`] keys is scored for every
/// query of the pass that sees it while it is in L1 ([`gemv`] into a stack array), then each
/// query rescales its running output once, takes its probabilities with the vector [`exp`] and
/// accumulates the block's weighted values over the head dimension. Every query's arithmetic
/// is that of its own pass alone (blocks from row 0, the same order), so a position's output
/// does not depend on the other positions of its chunk. Ranges: q and out
/// `qs.positions.span(qs.group)` long (which is some: the group and positions are valid), keys
/// and values [..len·d]; `len >= qs.positions.count` when causal, else `len >= 1`.
#[inline(always)]
pub(crate) unsafe fn attention<I: Isa, K: LoadW<I>>(
    q: *const f32,
    qs: Queries,
    keys: *const K,
    values: *const K,
    len: usize,
    scale: f32,
    out: *mut f32,
) {
    let d = qs.group.dim;
    let total = qs.group.heads * qs.positions.count;
    let mut u0 = 0;
    while u0 < total {
        let n = QUERIES_PER_PASS.min(total - u0);
        let mut max = [f32::NEG_INFINITY; QUERIES_PER_PASS];
        let mut sum = [0.0f32; QUERIES_PER_PASS];
        // Each query's offset in q and out and the rows it sees, once per pass.
        let mut at = [0usize; QUERIES_PER_PASS];
        let mut seen = [0usize; QUERIES_PER_PASS];
        for u in 0..n {
            (at[u], seen[u]) = qs.at(u0 + u, len);
            for c in 0..d {
                *out.add(at[u] + c) = 0.0;
            }
        }
        let seen_max = seen.iter().take(n).copied().max().unwrap_or(0);
        let mut s = [[0.0f32; BLOCK]; QUERIES_PER_PASS];
        let mut j0 = 0;
        while j0 < seen_max {
            let (kb, vb) = (keys.add(j0 * d), values.add(j0 * d));
            // The scores of every query that sees this block, then their softmax steps, then
            // their weighted values: each query's own steps are a chain (a score waits on its
            // dot product, through the stack, the probabilities on the maximum), so the
            // queries' steps are issued side by side.
            let mut nb = [0usize; QUERIES_PER_PASS];
            for u in 0..n {
                if j0 < seen[u] {
                    nb[u] = BLOCK.min(seen[u] - j0);
                    gemv::<I, K>(kb, d, q.add(at[u]), s[u].as_mut_ptr(), nb[u], false);
                }
            }
            let mut corr = [1.0f32; QUERIES_PER_PASS];
            for u in 0..n {
                if nb[u] > 0 {
                    corr[u] = softmax_step::<I>(&mut s[u], nb[u], scale, &mut max[u], &mut sum[u]);
                }
            }
            for u in 0..n {
                if nb[u] > 0 {
                    weigh_block::<I, K>(&s[u], nb[u], vb, d, out.add(at[u]), corr[u]);
                }
            }
            j0 += BLOCK;
        }
        for (u, &total) in sum.iter().enumerate().take(n) {
            let (o, inv) = (out.add(at[u]), 1.0 / total);
            for c in 0..d {
                *o.add(c) *= inv;
            }
        }
        u0 += n;
    }
}

/// One query's step of the online softmax over a block of `nb` scores in `s` (`1 <= nb <=
/// BLOCK`): the scores scaled and turned into probabilities (relative to the running maximum
/// `max`, which grows to the block's), `sum` updated; returns the factor that rescales what was
/// accumulated before the block.
#[inline(always)]
unsafe fn softmax_step<I: Isa>(
    s: &mut [f32; BLOCK],
    nb: usize,
    scale: f32,
    max: &mut f32,
    sum: &mut f32,
) -> f32 {
    let bmax = scale_scores::<I>(s, nb, scale);
    let mut corr = 1.0f32;
    if bmax > *max {
        corr = I::hmax(exp::<I>(I::splat(*max - bmax)));
        *max = bmax;
    }
    let m = I::splat(*max);
    let mut k = 0;
    let mut psum = I::zero();
    while k < BLOCK {
        let p = exp::<I>(I::sub(I::load(s.as_ptr().add(k)), m));
        I::store(s.as_mut_ptr().add(k), p);
        psum = I::add(psum, p);
        k += I::LANES;
    }
    *sum = *sum * corr + I::hsum(psum);
    corr
}

/// `out = out·corr + Σ_j p[j]·values[j]` over a block's `nb` values `vb` (`d` each) and
/// probabilities `p`. Ranges: out [..d], vb [..nb·d].
#[inline(always)]
unsafe fn weigh_block<I: Isa, K: LoadW<I>>(
    p: &[f32; BLOCK],
    nb: usize,
    vb: *const K,
    d: usize,
    ot: *mut f32,
    corr: f32,
) {
    let l = I::LANES;
    let dm = d - d % l;
    let cv = I::splat(corr);
    let mut c = 0;
    while c + OUT_VECS * l <= dm {
        weigh_values::<I, K, OUT_VECS>(p, nb, vb, d, ot, c, cv);
        c += OUT_VECS * l;
    }
    // The last vectors of the head (fewer than OUT_VECS) in chunks of 4, 2, 1.
    for chunk in [4, 2, 1] {
        if c + chunk * l <= dm {
            match chunk {
                4 => weigh_values::<I, K, 4>(p, nb, vb, d, ot, c, cv),
                2 => weigh_values::<I, K, 2>(p, nb, vb, d, ot, c, cv),
                _ => weigh_values::<I, K, 1>(p, nb, vb, d, ot, c, cv),
            }
            c += chunk * l;
        }
    }
    if I::MASKED && dm < d {
        let t = d - dm;
        let mut o = I::mul(I::load_partial(ot.add(dm), t), cv);
        for (j, &pj) in p.iter().enumerate().take(nb) {
            o = I::fma(I::splat(pj), K::loadw_partial(vb.add(j * d + dm), t), o);
        }
        I::store_partial(ot.add(dm), o, t);
    } else {
        for c in dm..d {
            let mut o = *ot.add(c) * corr;
            for (j, &pj) in p.iter().enumerate().take(nb) {
                o += pj * (*vb.add(j * d + c)).to_f32();
            }
            *ot.add(c) = o;
        }
    }
}

/// Scales the block's `nb` scores in `s` and returns their maximum; the lanes from `nb` on
/// become −∞ (they weigh 0). A whole block a vector at a time: a scalar maximum is a chain of
/// dependent comparisons, a large share of the attention time at small head dims. (A NaN
/// score may or may not be the maximum; either way the head's outputs are NaN, as its weight
/// enters their sum.)
#[inline(always)]
unsafe fn scale_scores<I: Isa>(s: &mut [f32; BLOCK], nb: usize, scale: f32) -> f32 {
    let l = I::LANES;
    let sv = I::splat(scale);
    let mut m = I::splat(f32::NEG_INFINITY);
    let mut k = 0;
    while k < BLOCK {
        // In bounds: BLOCK is a multiple of every set's LANES.
        let v = I::mul(I::load(s.as_ptr().add(k)), sv);
        I::store(s.as_mut_ptr().add(k), v);
        m = I::max(m, v);
        k += l;
    }
    if nb == BLOCK {
        return I::hmax(m);
    }
    // The last block of the cache: lanes past nb hold stale scores.
    let mut bmax = f32::NEG_INFINITY;
    for v in s.iter().take(nb) {
        bmax = bmax.max(*v);
    }
    for v in s.iter_mut().skip(nb) {
        *v = f32::NEG_INFINITY;
    }
    bmax
}

/// Output vectors of one head accumulated together by [`weigh_values`]: each is its own
/// chain of FMAs, so 8 of them keep both FMA pipes busy where one chain waits out the FMA
/// latency at every key.
const OUT_VECS: usize = 8;

/// `out[c..c + N·LANES] = out·corr + Σ_j p[j]·values[j, c..]` over the block's `nb` keys: the
/// `N` output vectors from column `c` stay in registers across the keys. Each output sums the
/// keys in order (for N <= 4 the even and the odd keys apart, then the two sums). Ranges: values
/// [..nb·d], out [..d], `c + N·LANES <= d`.
#[inline(always)]
unsafe fn weigh_values<I: Isa, K: LoadW<I>, const N: usize>(
    p: &[f32; BLOCK],
    nb: usize,
    values: *const K,
    d: usize,
    out: *mut f32,
    c: usize,
    corr: I::V,
) {
    let l = I::LANES;
    let mut o: [I::V; N] = core::array::from_fn(|k| I::mul(I::load(out.add(c + k * l)), corr));
    // With fewer than 8 output vectors, the odd keys go to a second set of accumulators, so
    // that 2N chains of FMAs run side by side (N alone leave the FMA latency exposed: 16 keys
    // of a block are 16 dependent FMAs per vector).
    let split = N <= 4;
    let mut e = [I::zero(); N];
    let mut j = 0;
    while j < nb {
        let row = values.add(j * d + c);
        let pv = I::splat(p[j]);
        if split && j + 1 < nb {
            let (row1, pv1) = (row.add(d), I::splat(p[j + 1]));
            for k in 0..N {
                o[k] = I::fma(pv, K::loadw(row.add(k * l)), o[k]);
                e[k] = I::fma(pv1, K::loadw(row1.add(k * l)), e[k]);
            }
            j += 2;
        } else {
            for (k, ok) in o.iter_mut().enumerate() {
                *ok = I::fma(pv, K::loadw(row.add(k * l)), *ok);
            }
            j += 1;
        }
    }
    for k in 0..N {
        let v = if split { I::add(o[k], e[k]) } else { o[k] };
        I::store(out.add(c + k * l), v);
    }
}
