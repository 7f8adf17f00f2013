//! The decoding the firmware checks. Compiled twice: into the firmware, and into `build.rs`, which
//! runs it on the host to produce the expected tokens. One source, so both sides make the very
//! same calls in the same order.

use picoformer::{Error, KvCache, Scratch, TransformerWrapper};

/// Index of the largest logit (the first one on ties). A NaN is never chosen over a number.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Largest |a − b| over two equally long slices (NaN if either holds a NaN).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    let mut m = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        if d.is_nan() {
            return f32::NAN;
        }
        m = m.max(d);
    }
    m
}

/// Largest |x|.
pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Greedy generation: the prompt in one call (`forward_last`), then one `step` per token.
/// Writes `out.len()` tokens; `logits` is one row (num_tokens).
pub fn greedy<const D: usize>(
    model: &TransformerWrapper<'_, D>,
    cache: &mut KvCache<'_, f32>,
    scratch: &mut Scratch<'_>,
    prompt: &[u32],
    out: &mut [u32],
    logits: &mut [f32],
) -> Result<(), Error> {
    cache.reset();
    model.forward_last(cache, scratch, prompt, None, logits)?;
    for i in 0..out.len() {
        out[i] = argmax(logits) as u32;
        if i + 1 < out.len() {
            model.step(cache, scratch, out[i], logits)?;
        }
    }
    Ok(())
}

/// The whole sequence in one call: every position's logits (`seq.len()` × num_tokens).
pub fn full<const D: usize>(
    model: &TransformerWrapper<'_, D>,
    cache: &mut KvCache<'_, f32>,
    scratch: &mut Scratch<'_>,
    seq: &[u32],
    logits: &mut [f32],
) -> Result<(), Error> {
    cache.reset();
    model.forward(cache, scratch, seq, None, logits)
}

/// The same sequence one token at a time; `check(i, row)` sees the logits of position `i`.
pub fn stepwise<const D: usize>(
    model: &TransformerWrapper<'_, D>,
    cache: &mut KvCache<'_, f32>,
    scratch: &mut Scratch<'_>,
    seq: &[u32],
    row: &mut [f32],
    mut check: impl FnMut(usize, &[f32]),
) -> Result<(), Error> {
    cache.reset();
    for (i, &t) in seq.iter().enumerate() {
        model.step(cache, scratch, t, row)?;
        check(i, row);
    }
    Ok(())
}
