//! The keyword spotter's classification, as the example checks it. Compiled twice: into the `kws`
//! program, and into `build.rs`, which runs it on the host to produce the expected scores. One
//! source, so both sides make the very same calls in the same order.

use picoformer::{ContinuousTransformerWrapper, Error, KvCache, Masks, Scratch};

/// The class scores of one window: `frames` (n × features), `real` (n entries, `true` for a
/// frame of the utterance, `false` for padding) into `scores` (one per class). A window without
/// padding runs without a mask, as an application would run it.
pub fn classify<const D: usize>(
    model: &ContinuousTransformerWrapper<'_, D>,
    cache: &mut KvCache<'_, f32>,
    scratch: &mut Scratch<'_>,
    frames: &[f32],
    real: &[bool],
    scores: &mut [f32],
) -> Result<(), Error> {
    let masks = if real.iter().all(|&r| r) {
        Masks::NONE
    } else {
        Masks::mask(real)
    };
    model.encode(cache, scratch, frames, None, masks, scores)
}

/// The window with every padded frame's features replaced (−3x + 1: other values, still of the
/// features' scale, so nothing overflows): a padded frame must not change the scores at all.
/// Writes `frames.len()` values to `out`.
pub fn repad(frames: &[f32], real: &[bool], out: &mut [f32]) {
    let features = frames.len() / real.len().max(1);
    for ((o, f), &r) in out
        .chunks_exact_mut(features.max(1))
        .zip(frames.chunks_exact(features.max(1)))
        .zip(real)
    {
        for (o, &f) in o.iter_mut().zip(f) {
            *o = if r { f } else { 1.0 - 3.0 * f };
        }
    }
}

/// The gap between the best and the second-best score, relative to the largest |score| (at
/// least 1): how far the decision is from flipping.
pub fn margin(scores: &[f32]) -> f32 {
    let best = crate::decode::argmax(scores);
    let Some(&top) = scores.get(best) else {
        return 0.0;
    };
    let second = scores
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .fold(f32::NEG_INFINITY, |m, (_, &s)| m.max(s));
    (top - second) / crate::decode::max_abs(scores).max(1.0)
}
