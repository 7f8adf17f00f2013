//! Portable kernels: the reference every SIMD kernel is tested against, and the path used on
//! targets without one. Plain safe Rust over slices; lengths are checked once at entry.
//!
//! Sums use 8 independent accumulators, so the compiler can vectorise them and the rounding
//! behaves like the 8-lane SIMD kernels'.

use super::shape;
use crate::error::Error;
use crate::q8_0::{q8_0_quants, q8_0_scale, BlockQ8_0};
use crate::tensor::Element;

const LANES: usize = 8;

/// `Σ w[i]·x[i]` with 8 accumulators, reduced pairwise.
///
/// # Errors
/// [`Error::KernelShape`] if the lengths differ.
#[inline]
pub fn dot<E: Element>(w: &[E], x: &[f32]) -> Result<f32, Error> {
    shape::same("dot", "x", w.len(), x.len())?;
    Ok(dot_of(w, x))
}

/// [`dot`] of two slices of one length (shorter one's length otherwise).
#[inline]
pub(crate) fn dot_of<E: Element>(w: &[E], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut wc = w.chunks_exact(LANES);
    let mut xc = x.chunks_exact(LANES);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        for l in 0..LANES {
            acc[l] += wb[l].to_f32() * xb[l];
        }
    }
    for (l, (wv, xv)) in wc.remainder().iter().zip(xc.remainder()).enumerate() {
        acc[l] += wv.to_f32() * xv;
    }
    reduce(acc)
}

#[inline(always)]
fn reduce(a: [f32; LANES]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `y[r] = Σ_c w[r·cols + c]·x[c]` for every row r < y.len(): `y = x·Wᵀ` for an `nn.Linear`
/// weight `W[out, in]` (decode, one position).
///
/// # Errors
/// [`Error::KernelShape`] if `x.len() != cols` or `w.len() != y.len() · cols`.
pub fn matvec<E: Element>(w: &[E], cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    shape::same("matvec", "x", cols, x.len())?;
    shape::matvec(w.len(), cols, y.len(), false)?;
    if cols == 0 {
        y.fill(0.0);
        return Ok(());
    }
    for (yr, wr) in y.iter_mut().zip(w.chunks_exact(cols)) {
        *yr = dot_of(wr, x);
    }
    Ok(())
}

/// The Q8_0 × Q8_0 matrix-vector product (the int8 path, see [`crate::kernels::matvec_int8`],
/// which quantises f32 activations and then computes this):
/// `y[r] = Σ_b (d_w[r,b]·d_x[b]) · Σ_i q_w[r,b,i]·q_x[b,i]`, with `W` `[y.len(), 32·x.len()]` in
/// Q8_0 blocks and the activations `x` in Q8_0 blocks, each block's inner sum exact in `i32`,
/// activation quants of −128 read as −127.
///
/// # Errors
/// [`Error::KernelShape`] if `w.len() != y.len() · x.len()` (in blocks).
pub fn matvec_int8(w: &[BlockQ8_0], x: &[BlockQ8_0], y: &mut [f32]) -> Result<(), Error> {
    shape::len("matvec_int8", "w", x.len().checked_mul(y.len()), w.len())?;
    int8_rows(w, x.len(), x, y, y.len(), false);
    Ok(())
}

/// [`matvec_int8`] for the `n = y.len() / rows` positions of `x` (`nb = x.len() / n` blocks
/// each) over the first `nb` blocks of `rows` rows `stride` blocks apart; Y is `[n, rows]`,
/// added to if `add` (the dispatcher's chunks). Each weight block is read once for up to four
/// positions (weights in flash are read a quarter as often), each position's sum taking the
/// same steps as for one. A row past the end of `w` sums no blocks (0).
pub(crate) fn int8_rows(
    w: &[BlockQ8_0],
    stride: usize,
    x: &[BlockQ8_0],
    y: &mut [f32],
    rows: usize,
    add: bool,
) {
    const TILE: usize = 4;
    let n = y.len() / rows.max(1);
    let nb = x.len() / n.max(1);
    for r in 0..rows {
        let row = w.get(r * stride..).unwrap_or(&[]);
        for i in (0..n).step_by(TILE) {
            let xs = x.get(i * nb..).unwrap_or(&[]);
            let m = (n - i).min(TILE);
            let mut s = [0.0f32; TILE];
            for (b, wb) in row.iter().take(nb).enumerate() {
                let dw = q8_0_scale(wb).to_f32();
                let xb = xs.iter().skip(b).step_by(nb.max(1)).take(m);
                for (sp, xb) in s.iter_mut().zip(xb) {
                    let d = dw * q8_0_scale(xb).to_f32();
                    *sp += d * block_dot(q8_0_quants(wb), q8_0_quants(xb)) as f32;
                }
            }
            let ys = y.iter_mut().skip(i * rows + r).step_by(rows.max(1));
            for (yp, sp) in ys.zip(&s[..m]) {
                *yp = if add { *yp + sp } else { *sp };
            }
        }
    }
}

/// `Σ_i w[i]·max(x[i], −127)` in integers (at most 32·128·127 in magnitude).
#[inline]
fn block_dot(w: &[i8; 32], x: &[i8; 32]) -> i32 {
    w.iter()
        .zip(x)
        .map(|(&w, &x)| i32::from(w) * i32::from(x.max(-127)))
        .sum()
}

/// Y[i, r] = Σ_c W[r, c]·X[i, c] for n = x.len() / cols positions: `Y = X·Wᵀ` (prefill).
/// Y is row-major `[n, rows]` with rows = `w.len() / cols`.
///
/// # Errors
/// [`Error::KernelShape`] if `cols` is 0 or the lengths do not describe `X[n, cols]`,
/// `W[rows, cols]`, `Y[n, rows]`.
pub fn matmul<E: Element>(w: &[E], cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    let (n, rows) = shape::matmul(w.len(), cols, x.len(), y.len(), false)?;
    if rows == 0 {
        return Ok(());
    }
    // Four positions share each weight row while it is hot in cache. (`cols` and `rows` are
    // at least 1 here; `x` and `y` are `n` rows of them.)
    let (cols, rows) = (cols.max(1), rows.max(1));
    let (mut xs, mut ys) = (x.chunks_exact(cols), y.chunks_exact_mut(rows));
    for _ in 0..n / 4 {
        let (Some(x0), Some(x1), Some(x2), Some(x3)) = (xs.next(), xs.next(), xs.next(), xs.next())
        else {
            break;
        };
        let (Some(y0), Some(y1), Some(y2), Some(y3)) = (ys.next(), ys.next(), ys.next(), ys.next())
        else {
            break;
        };
        let xs = [x0, x1, x2, x3];
        let mut ys = [y0.iter_mut(), y1.iter_mut(), y2.iter_mut(), y3.iter_mut()];
        for wr in w.chunks_exact(cols) {
            for (xr, yr) in xs.iter().zip(ys.iter_mut()) {
                if let Some(y) = yr.next() {
                    *y = dot_of(wr, xr);
                }
            }
        }
    }
    for (xr, yr) in xs.zip(ys) {
        matvec(w, cols, xr, yr)?;
    }
    Ok(())
}

/// `out[i] = f(x[i])·(g[i] + offset)`, the gain 1 when there is no gain tensor (the lengths
/// are checked by the caller).
#[inline(always)]
fn with_gain<E: Element>(
    x: &[f32],
    g: Option<&[E]>,
    offset: f32,
    out: &mut [f32],
    f: impl Fn(f32) -> f32,
) {
    match g {
        Some(g) => {
            for ((o, v), g) in out.iter_mut().zip(x).zip(g) {
                *o = f(*v) * (g.to_f32() + offset);
            }
        }
        None => {
            for (o, v) in out.iter_mut().zip(x) {
                *o = f(*v) * 1.0;
            }
        }
    }
}

/// Bias-less LayerNorm (`xt:1017-1036`): (x − μ)/√(σ² + 1e-5) ⊙ (g + offset), σ² the biased variance.
/// `offset` is 1 for the Decoder's norms (`norm_add_unit_offset`) and 0 for `post_emb_norm`.
///
/// # Errors
/// [`Error::KernelShape`] if `out` or the gain is not as long as `x`.
pub fn layer_norm<E: Element>(
    x: &[f32],
    g: Option<&[E]>,
    offset: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    shape::same("layer_norm", "out", x.len(), out.len())?;
    if let Some(g) = g {
        shape::same("layer_norm", "g", x.len(), g.len())?;
    }
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / libm::sqrtf(var + 1e-5);
    with_gain(x, g, offset, out, |v| (v - mean) * inv);
    Ok(())
}

/// RMSNorm as x-transformers computes it (`xt:1076-1124`): x / max(‖x‖₂, 1e-12) · √D · (g + offset);
/// without a gain (`SimpleRMSNorm`) the gain is 1. The epsilon is on the norm, not the mean square.
///
/// # Errors
/// [`Error::KernelShape`] if `out` or the gain is not as long as `x`.
pub fn rms_norm<E: Element>(
    x: &[f32],
    g: Option<&[E]>,
    offset: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    shape::same("rms_norm", "out", x.len(), out.len())?;
    if let Some(g) = g {
        shape::same("rms_norm", "g", x.len(), g.len())?;
    }
    let norm = libm::sqrtf(x.iter().map(|v| v * v).sum::<f32>());
    let scale = libm::sqrtf(x.len() as f32) / norm.max(1e-12);
    with_gain(x, g, offset, out, |v| v * scale);
    Ok(())
}

/// Rotary embedding of one head vector (`xt:893-915`): features (2m, 2m+1) for m < cos.len()
/// rotate by the angle whose cosine and sine are `cos[m]`, `sin[m]`; the rest pass through.
///
/// # Errors
/// [`Error::KernelShape`] if `cos` and `sin` differ in length or `v` is shorter than
/// `2·cos.len()`.
pub fn rotary(v: &mut [f32], cos: &[f32], sin: &[f32]) -> Result<(), Error> {
    shape::same("rotary", "sin", cos.len(), sin.len())?;
    if v.len() / 2 < cos.len() {
        shape::same("rotary", "v", cos.len().saturating_mul(2), v.len())?;
    }
    for ((c, s), pair) in cos.iter().zip(sin).zip(v.chunks_exact_mut(2)) {
        if let [a, b] = pair {
            (*a, *b) = (*a * c - *b * s, *b * c + *a * s);
        }
    }
    Ok(())
}

/// Exact GELU, ½·z·(1 + erf(z/√2)) (`nn.GELU()`).
#[inline]
pub fn gelu(z: f32) -> f32 {
    0.5 * z * (1.0 + libm::erff(z * core::f32::consts::FRAC_1_SQRT_2))
}

/// SiLU, z·σ(z).
#[inline]
pub fn silu(z: f32) -> f32 {
    z / (1.0 + libm::expf(-z))
}

/// ReLU², max(z, 0)².
#[inline]
pub fn relu_squared(z: f32) -> f32 {
    let r = z.max(0.0);
    r * r
}

/// In-place softmax. An empty slice is left alone; if every entry is −∞ the result is NaN,
/// so callers that can meet that case must check first.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// One query head attending over `len` cached positions with an online (streaming) softmax:
/// out = Σ_j softmax_j(q·k_j·scale) v_j. `keys` and `values` hold `len` rows of `q.len()`
/// elements each (one kv head of the cache); nothing of size `len` is allocated.
///
/// # Errors
/// As [`attention_group`] with one head of `q.len()` values.
pub fn attention<K: Element>(
    q: &[f32],
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    attention_group(q, super::HeadGroup::one(q.len()), keys, values, scale, out)
}

/// [`attention`] once its shapes are checked.
fn head<K: Element>(q: &[f32], keys: &[K], values: &[K], scale: f32, out: &mut [f32]) {
    head_by(q, keys, values, scale, out, dot_of, |out, v, p| {
        for (o, vv) in out.iter_mut().zip(v) {
            *o += p * vv.to_f32();
        }
    });
}

/// [`head`] with its two inner loops given: `dot(k, q)` ([`dot_of`]'s sum) and
/// `axpy(out, v, p)` (`out[i] += p·v[i]`), for kernels of their own with the same results
/// (`cortexm.rs`).
#[inline(always)]
pub(crate) fn head_by<K: Element>(
    q: &[f32],
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
    dot: impl Fn(&[K], &[f32]) -> f32,
    axpy: impl Fn(&mut [f32], &[K], f32),
) {
    let d = q.len();
    out.fill(0.0);
    if d == 0 {
        return; // (never: the caller checked at least 1)
    }
    let mut max = f32::NEG_INFINITY;
    let mut sum = 0.0f32;
    // (Zipped by hand: `Zip` of two `ChunksExact` divides by their sizes where not inlined.)
    let mut values = values.chunks_exact(d);
    for k in keys.chunks_exact(d) {
        let Some(v) = values.next() else { break };
        let s = dot(k, q) * scale;
        if s > max {
            let c = libm::expf(max - s);
            sum *= c;
            for o in out.iter_mut() {
                *o *= c;
            }
            max = s;
        }
        let p = libm::expf(s - max);
        sum += p;
        axpy(out, v, p);
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// The query heads of `group` over one cached kv head: [`attention`] for each head t on
/// `q[t·stride..][..dim]`, writing `out[t·stride..][..dim]` (nothing else of `out`).
///
/// # Errors
/// [`Error::KernelShape`] if `group` is not valid (`dim`, `heads` >= 1, `stride >= dim`), `q`
/// or `out` is not `group.span()` long, `keys` is empty or not whole rows of `group.dim`, or the
/// keys and values differ in length.
pub fn attention_group<K: Element>(
    q: &[f32],
    group: super::HeadGroup,
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    attention_positions(q, group, super::Positions::one(), keys, values, scale, out)
}

/// [`attention_group`] at each of `positions`: position p's heads on `q[p·pstride..]`, over
/// the first `rows − (count − 1 − p)` cached rows when causal, else all of them.
///
/// # Errors
/// As [`super::attention_positions`].
pub fn attention_positions<K: Element>(
    q: &[f32],
    group: super::HeadGroup,
    positions: super::Positions,
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    attention_positions_by(q, group, positions, keys, values, scale, out, head)
}

/// [`attention_positions`] with each query head's attention given (`head`'s result, by
/// kernels of its own: `cortexm.rs`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn attention_positions_by<K: Element>(
    q: &[f32],
    group: super::HeadGroup,
    positions: super::Positions,
    keys: &[K],
    values: &[K],
    scale: f32,
    out: &mut [f32],
    head: impl Fn(&[f32], &[K], &[K], f32, &mut [f32]),
) -> Result<(), Error> {
    let rows = shape::attention(
        q.len(),
        group,
        positions,
        keys.len(),
        values.len(),
        out.len(),
    )?;
    let d = group.dim;
    for p in 0..positions.count {
        let seen = positions.seen(p, rows);
        for t in 0..group.heads {
            let at = p * positions.stride + t * group.stride;
            let (k, v) = (keys.get(..seen * d), values.get(..seen * d));
            let (Some(k), Some(v), Some(qh), Some(oh)) =
                (k, v, q.get(at..at + d), out.get_mut(at..at + d))
            else {
                // (never: the shapes are checked above)
                return Err(shape::wrong(
                    "attention",
                    "q",
                    at + d,
                    q.len().min(out.len()),
                ));
            };
            head(qh, k, v, scale, oh);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn naive_dot(w: &[f32], x: &[f32]) -> f64 {
        w.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum()
    }

    /// `n <= 256` values in [−1, 1) from a seed (xorshift), the rest 0.
    pub(crate) fn vals(n: usize, seed: u32) -> [f32; 256] {
        let mut out = [0.0; 256];
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        for o in out.iter_mut().take(n) {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *o = (s % 2001) as f32 / 1000.0 - 1.0;
        }
        out
    }

    #[test]
    fn dot_matches_f64_on_every_length() {
        for n in 0..=40 {
            let (w, x) = (vals(n, 1), vals(n, 2));
            let got = dot(&w[..n], &x[..n]).unwrap() as f64;
            assert!((got - naive_dot(&w[..n], &x[..n])).abs() < 1e-5, "n={n}");
        }
    }

    #[test]
    fn matmul_equals_rows_of_matvec() {
        let (rows, cols) = (3, 7);
        let w = vals(rows * cols, 3);
        for n in 1..=6 {
            let x = vals(n * cols, 4);
            let mut y = [f32::NAN; 18];
            matmul(&w[..rows * cols], cols, &x[..n * cols], &mut y[..n * rows]).unwrap();
            for i in 0..n {
                let mut r = [f32::NAN; 3];
                matvec(
                    &w[..rows * cols],
                    cols,
                    &x[i * cols..(i + 1) * cols],
                    &mut r,
                )
                .unwrap();
                assert_eq!(r, y[i * rows..(i + 1) * rows], "n={n} i={i}");
            }
        }
    }

    #[test]
    fn norms_hand_values() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let mut out = [0.0; 4];
        // mean 2.5, biased variance 1.25; gain (0.5 + 1).
        layer_norm(&x, Some(&[0.5f32; 4][..]), 1.0, &mut out).unwrap();
        let inv = 1.0 / (1.25f32 + 1e-5).sqrt();
        assert!((out[0] - (-1.5 * inv * 1.5)).abs() < 1e-6);
        // RMS: x / ||x|| * sqrt(4) * (g + 1); ||x|| = sqrt(30).
        rms_norm::<f32>(&x, None, 1.0, &mut out).unwrap();
        assert!((out[3] - 4.0 / 30f32.sqrt() * 2.0).abs() < 1e-6);
        // A zero row stays zero (eps on the norm, 1e-12).
        rms_norm::<f32>(&[0.0; 4], None, 1.0, &mut out).unwrap();
        assert_eq!(out, [0.0; 4]);
    }

    #[test]
    fn rotary_rotates_pairs_and_leaves_the_tail() {
        let mut v = [1.0f32, 0.0, 0.0, 1.0, 5.0, 6.0];
        let (c, s) = (0.0f32, 1.0f32); // 90 degrees
        rotary(&mut v, &[c, c], &[s, s]).unwrap();
        assert_eq!(v, [0.0, 1.0, -1.0, 0.0, 5.0, 6.0]);
    }

    #[test]
    fn activations() {
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert_eq!(relu_squared(-2.0), 0.0);
        assert_eq!(relu_squared(3.0), 9.0);
    }

    #[test]
    fn online_attention_equals_two_pass_softmax() {
        let d = 5;
        for len in 1..=9 {
            let q = vals(d, 7);
            let k = vals(len * d, 8);
            let v = vals(len * d, 9);
            let mut scores = [0.0f32; 9];
            for j in 0..len {
                scores[j] = dot(&k[j * d..(j + 1) * d], &q[..d]).unwrap() * 0.7;
            }
            softmax(&mut scores[..len]);
            let mut want = [0.0f32; 5];
            for j in 0..len {
                for c in 0..d {
                    want[c] += scores[j] * v[j * d + c];
                }
            }
            let mut out = [f32::NAN; 5];
            attention(&q[..d], &k[..len * d], &v[..len * d], 0.7, &mut out).unwrap();
            for c in 0..d {
                assert!((out[c] - want[c]).abs() < 1e-6, "len={len}");
            }
        }
    }
}
