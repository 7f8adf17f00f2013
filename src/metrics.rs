//! Evaluation metrics: how well a model predicts a text.
//!
//! [`bits`] is the information content of a token sequence under the model, the sum of
//! `−log2 p(token | tokens before it)`; divided by the number of predicted tokens it is the bits
//! per token (per character for a byte- or character-level model), and `2^(bits per token)` is
//! the perplexity.

use crate::cache::KvCache;
use crate::error::Error;
use crate::scratch::Scratch;
use crate::tensor::Element;
use crate::wrapper::TransformerWrapper;

/// Bits needed to code `tokens[1..]` given the tokens before each: the sum over `i` of
/// `−log2 p(tokens[i+1] | tokens[..=i])`, with the model reading `tokens[..n−1]` from the
/// cache's current position (reset it first for a fresh window). The mean over a text is its
/// bits per token (per character for a byte- or character-level model).
///
/// `logits` holds one or more rows of the model's logits ([`crate::WrapperConfig::logits_width`]:
/// `num_tokens`, or `logits_dim`): that many positions are run per call (one row = token-by-token
/// decoding; `n − 1` rows = one prefill). Log-softmax is computed in f64.
///
/// # Errors
/// [`Error::EmptyInput`] for fewer than 2 tokens, [`Error::TokenOutOfRange`] for a token not
/// below `num_tokens` and [`Error::NoLogit`] for a predicted token not below a narrower
/// `logits_dim` (both before anything runs), [`Error::BufferLength`] if `logits` is not a
/// non-zero multiple of the logits' width, and the errors of [`TransformerWrapper::forward`] (e.g.
/// [`Error::CacheFull`] when the cache cannot take `n − 1` more positions; nothing runs then).
pub fn bits<K: Element, const MAX_DEPTH: usize>(
    model: &TransformerWrapper<'_, MAX_DEPTH>,
    cache: &mut KvCache<'_, K>,
    scratch: &mut Scratch<'_>,
    tokens: &[u32],
    logits: &mut [f32],
) -> Result<f64, Error> {
    let (v, num_tokens) = (model.config().logits_width(), model.config().num_tokens);
    if tokens.len() < 2 {
        return Err(Error::EmptyInput);
    }
    for (index, &token) in tokens.iter().enumerate() {
        if token as usize >= num_tokens {
            return Err(Error::TokenOutOfRange {
                token,
                index,
                num_tokens,
            });
        }
        // Every token after the first is a target: its logit must exist.
        if index > 0 && token as usize >= v {
            return Err(Error::NoLogit {
                token,
                index,
                logits: v,
            });
        }
    }
    if logits.is_empty() || !logits.len().is_multiple_of(v) {
        return Err(Error::BufferLength {
            buffer: crate::error::Buffer::Output,
            expected: v,
            found: logits.len(),
        });
    }
    let inputs = &tokens[..tokens.len() - 1];
    if inputs.len() > cache.remaining() {
        return Err(Error::CacheFull {
            len: cache.len(),
            requested: inputs.len(),
            capacity: cache.capacity(),
        });
    }
    let rows = logits.len() / v;
    let mut total = 0.0f64;
    for (c, chunk) in inputs.chunks(rows).enumerate() {
        let out = &mut logits[..chunk.len() * v];
        model.forward(cache, scratch, chunk, None, out)?;
        for (j, row) in out.chunks_exact(v).enumerate() {
            let target = tokens[c * rows + j + 1] as usize;
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(l as f64));
            let sum: f64 = row.iter().map(|&l| libm::exp(l as f64 - max)).sum();
            let log_p = row[target] as f64 - max - libm::log(sum);
            total -= log_p;
        }
    }
    Ok(total / core::f64::consts::LN_2)
}
