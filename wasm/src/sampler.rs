//! Token sampling without allocation: greedy, temperature, top-k and top-p (nucleus) with a
//! seeded RNG, over two caller-provided work buffers of `num_tokens` elements.
//!
//! The same inputs give the same token on every target: the RNG is integer-only, the softmax uses
//! `libm::expf`, and ties are broken by the lower token id.
#![deny(unsafe_code)]

use core::cmp::Ordering;

/// How to pick the next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; `<= 0` means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; `>= 1` keeps all.
    pub top_p: f32,
}

impl Sampling {
    /// Greedy decoding.
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
    };

    /// Whether this always picks the most likely token.
    pub fn is_greedy(&self) -> bool {
        // NaN temperatures are greedy too.
        self.temperature.is_nan() || self.temperature <= 0.0 || self.top_k == 1
    }
}

/// SplitMix64: a tiny, well-mixed 64-bit generator; fully determined by its seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

/// The most likely token (the lowest id among equals; NaN logits never win).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Picks a token from `logits` (`num_tokens` values). `probs` and `order` are work buffers of at
/// least `logits.len()` elements; the RNG advances once per non-greedy draw.
///
/// # Panics
/// If `logits` is empty or a work buffer is shorter than `logits`.
pub fn sample(
    logits: &[f32],
    s: &Sampling,
    rng: &mut Rng,
    probs: &mut [f32],
    order: &mut [u32],
) -> u32 {
    let v = logits.len();
    assert!(v > 0 && probs.len() >= v && order.len() >= v);
    if s.is_greedy() {
        return argmax(logits);
    }
    // Softmax of logits / temperature, max-subtracted.
    let max = logits[argmax(logits) as usize];
    let probs = &mut probs[..v];
    for (p, &l) in probs.iter_mut().zip(logits) {
        *p = libm::expf((l - max) / s.temperature);
        if p.is_nan() {
            *p = 0.0;
        }
    }
    let order = &mut order[..v];
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u32;
    }
    // Most likely first; equal probabilities by token id.
    let desc = |a: &u32, b: &u32| -> Ordering {
        probs[*b as usize]
            .total_cmp(&probs[*a as usize])
            .then(a.cmp(b))
    };
    let mut keep = v;
    if s.top_k > 0 && (s.top_k as usize) < v {
        keep = s.top_k as usize;
        order.select_nth_unstable_by(keep - 1, desc);
    }
    let order = &mut order[..keep];
    if s.top_p < 1.0 {
        order.sort_unstable_by(desc);
        let total: f32 = order.iter().map(|&i| probs[i as usize]).sum();
        let mut cum = 0.0;
        for (n, &i) in order.iter().enumerate() {
            cum += probs[i as usize];
            if cum >= s.top_p * total {
                keep = n + 1;
                break;
            }
        }
    }
    let order = &order[..keep.min(order.len())];
    let total: f32 = order.iter().map(|&i| probs[i as usize]).sum();
    let mut r = rng.next_f32() * total;
    for &i in order {
        r -= probs[i as usize];
        if r < 0.0 {
            return i;
        }
    }
    // Rounding left a sliver: the last kept token.
    order[order.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(logits: &[f32], s: Sampling, seed: u64, n: usize) -> std::vec::Vec<u32> {
        let mut rng = Rng::new(seed);
        let mut p = std::vec![0.0; logits.len()];
        let mut o = std::vec![0; logits.len()];
        (0..n)
            .map(|_| sample(logits, &s, &mut rng, &mut p, &mut o))
            .collect()
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5]), 1);
        assert_eq!(draw(&[0.0, 2.0, 1.0], Sampling::GREEDY, 1, 3), [1, 1, 1]);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_k_limits_the_support() {
        let l = [0.0, 1.0, 2.0, 3.0, 4.0];
        let s = Sampling {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
        };
        assert_eq!(draw(&l, s, 7, 5), [4; 5]);
        let s = Sampling {
            temperature: 5.0,
            top_k: 2,
            top_p: 1.0,
        };
        assert!(draw(&l, s, 7, 200).iter().all(|&t| t == 3 || t == 4));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probabilities ~ 0.64, 0.24, 0.09, 0.03: top_p 0.8 keeps the first two.
        let l = [3.0, 2.0, 1.0, 0.0];
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.8,
        };
        let t = draw(&l, s, 3, 300);
        assert!(t.iter().all(|&t| t < 2));
        assert!(t.contains(&0) && t.contains(&1));
    }

    #[test]
    fn same_seed_same_tokens_and_frequencies_follow_softmax() {
        let l = [0.0, (2.0f32).ln(), (3.0f32).ln()];
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        };
        let a = draw(&l, s, 42, 6000);
        assert_eq!(a, draw(&l, s, 42, 6000));
        let count = |k| a.iter().filter(|&&t| t == k).count() as f32 / 6000.0;
        assert!((count(0) - 1.0 / 6.0).abs() < 0.02);
        assert!((count(2) - 0.5).abs() < 0.02);
    }
}
