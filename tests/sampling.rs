//! The sampler: x-transformers' filter semantics (pinned against recorded torch results),
//! distributions checked by chi-square on fixed logits, determinism for a seed, every error.

use picoformer::sampling::{default_top_k, Candidate, Rng, SampleError, Sampler, SamplerConfig};

/// Kept sets of x-transformers 2.31.10's `top_k`, `top_p` and `min_p` filters (`ar:82-126`),
/// recorded with torch 2.15 on logits that are multiples of 1/16: (logits, filter, value, kept).
const XT_FILTERS: &[(&[f32], &str, f32, &str)] = &[
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "top_k",
        1.0,
        "000000001000",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "top_k",
        3.0,
        "001000101000",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "top_k",
        7.0,
        "001001111011",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "top_p",
        0.0,
        "000000001000",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "top_p",
        0.3,
        "000000001000",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "top_p",
        0.6,
        "000000101000",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "top_p",
        0.9,
        "001000111001",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "top_p",
        0.99,
        "011101111011",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "min_p",
        0.05,
        "001001111001",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "min_p",
        0.2,
        "000000101000",
    ),
    (
        &[
            -2.8125, -1.5, 1.0625, -1.0625, -2.1875, 0.25, 2.1875, 0.9375, 2.875, -1.6875, -0.25,
            0.5625,
        ],
        "min_p",
        0.5,
        "000000101000",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "top_k",
        1.0,
        "100000000000",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "top_k",
        3.0,
        "100010000010",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "top_k",
        7.0,
        "110011110010",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "top_p",
        0.0,
        "100000000000",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "top_p",
        0.3,
        "100000000000",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "top_p",
        0.6,
        "100010000010",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "top_p",
        0.9,
        "110011110010",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "top_p",
        0.99,
        "111011110111",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "min_p",
        0.05,
        "110011110111",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "min_p",
        0.2,
        "100011000010",
    ),
    (
        &[
            1.625, -0.6875, -1.625, -3.875, 1.0, 0.4375, -0.4375, -0.3125, -2.375, -1.0, 0.5, -0.75,
        ],
        "min_p",
        0.5,
        "100010000000",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "top_k",
        1.0,
        "010000000000",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "top_k",
        3.0,
        "010010100000",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "top_k",
        7.0,
        "010010110111",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "top_p",
        0.0,
        "010000000000",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "top_p",
        0.3,
        "010000000000",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "top_p",
        0.6,
        "010010000000",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "top_p",
        0.9,
        "010010110110",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "top_p",
        0.99,
        "111111110111",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "min_p",
        0.05,
        "010010110110",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "min_p",
        0.2,
        "010000000000",
    ),
    (
        &[
            -0.9375, 2.6875, -0.75, -0.875, 0.875, -0.9375, 0.8125, -0.125, -2.875, 0.0625, 0.0625,
            -0.6875,
        ],
        "min_p",
        0.5,
        "010000000000",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "top_k",
        1.0,
        "000000000001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "top_k",
        3.0,
        "000110000001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "top_k",
        7.0,
        "101110110001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "top_p",
        0.0,
        "000000000001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "top_p",
        0.3,
        "000000000001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "top_p",
        0.6,
        "000010000001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "top_p",
        0.9,
        "000110100001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "top_p",
        0.99,
        "101110111111",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "min_p",
        0.05,
        "000110000001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "min_p",
        0.2,
        "000010000001",
    ),
    (
        &[
            -0.625, -1.6875, -1.125, 0.4375, 1.9375, -2.5625, -0.3125, -1.125, -1.375, -1.3125,
            -1.3125, 2.75,
        ],
        "min_p",
        0.5,
        "000000000001",
    ),
];

fn work(n: usize) -> Vec<Candidate> {
    vec![Candidate::EMPTY; Sampler::work_len(n)]
}

/// Counts of `draws` samples.
fn histogram(
    cfg: SamplerConfig,
    seed: u64,
    logits: &[f32],
    recent: &[u32],
    draws: usize,
) -> Vec<usize> {
    let mut s = Sampler::new(cfg, seed).unwrap();
    let mut w = work(logits.len());
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..draws {
        let t = s.sample(logits, recent, &mut w).unwrap() as usize;
        counts[t] += 1;
    }
    counts
}

/// The set of tokens a configuration can produce, found by sampling at a huge temperature
/// (uniform over the survivors: the filters see temperature-1 probabilities, as in x-transformers).
fn support(cfg: SamplerConfig, logits: &[f32]) -> String {
    let cfg = SamplerConfig {
        temperature: 1e6,
        ..cfg
    };
    histogram(cfg, 11, logits, &[], 4000)
        .iter()
        .map(|&c| if c > 0 { '1' } else { '0' })
        .collect()
}

#[test]
fn filters_keep_what_x_transformers_keeps() {
    for &(logits, filter, value, kept) in XT_FILTERS {
        let cfg = SamplerConfig::temperature(1.0);
        let cfg = match filter {
            "top_k" => cfg.with_top_k(value as usize),
            "top_p" => cfg.with_top_p(value),
            "min_p" => cfg.with_min_p(value),
            _ => unreachable!(),
        };
        assert_eq!(support(cfg, logits), kept, "{filter}={value} on {logits:?}");
    }
}

#[test]
fn default_top_k_is_pythons_ceil_of_a_tenth() {
    // ceil(0.1 * n) in f64, as `top_k(frac_num_tokens=0.1)` computes it (ar:102-111)
    assert_eq!(default_top_k(256), 26);
    assert_eq!(default_top_k(30), 3);
    assert_eq!(default_top_k(31), 4);
    assert_eq!(default_top_k(10), 1);
    assert_eq!(default_top_k(1), 1);
    assert_eq!(default_top_k(50257), 5026);
    let cfg = SamplerConfig::x_transformers_default(256);
    assert_eq!((cfg.temperature, cfg.top_k), (1.0, Some(26)));
}

#[test]
fn greedy_is_argmax_with_lowest_id_on_ties_and_ignores_filters() {
    let logits = [0.5, 3.0, -1.0, 3.0, f32::NEG_INFINITY];
    let mut w = work(5);
    for cfg in [
        SamplerConfig::greedy(),
        SamplerConfig::greedy()
            .with_top_p(0.0)
            .with_min_p(1.0)
            .with_top_k(1),
    ] {
        let mut s = Sampler::new(cfg, 0).unwrap();
        for _ in 0..3 {
            assert_eq!(s.sample(&logits, &[], &mut w), Ok(1));
        }
    }
    // the penalty acts before greedy: 3.0 / 2 = 1.5 < 3.0 of token 3
    let mut s = Sampler::new(SamplerConfig::greedy().with_repetition_penalty(2.0, 4), 0).unwrap();
    assert_eq!(s.sample(&logits, &[1], &mut w), Ok(3));
    // a masked logit is never chosen, even when it is the only one left with a value > others
    let mut s = Sampler::new(SamplerConfig::greedy(), 0).unwrap();
    assert_eq!(s.sample(&[f32::NEG_INFINITY, -5.0], &[], &mut w), Ok(1));
}

/// The first NaN or +inf in id order, else the first largest finite logit, else all masked.
fn naive_greedy(logits: &[f32]) -> Result<u32, SampleError> {
    let mut best: Option<(u32, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() {
            return Err(SampleError::NotANumber { index: i });
        }
        if l == f32::INFINITY {
            return Err(SampleError::Infinite { index: i });
        }
        if l > f32::NEG_INFINITY && best.is_none_or(|(_, b)| l > b) {
            best = Some((i as u32, l));
        }
    }
    best.map(|(i, _)| i).ok_or(SampleError::AllMasked)
}

proptest::proptest! {
    /// Greedy without a penalty takes a one-pass path of its own (lanes, then a search):
    /// the same token or error as the naive scan, on every length (lane tails included) and
    /// with NaN, ±inf, ±0 and ties mixed in.
    #[test]
    fn greedy_fast_path_equals_the_naive_scan(
        picks in proptest::collection::vec(0u8..12, 1..70),
        seed in 0u64..1000,
    ) {
        let logits: Vec<f32> = picks
            .iter()
            .enumerate()
            .map(|(i, &p)| match p {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 | 3 => f32::NEG_INFINITY,
                4 => 0.0,
                5 => -0.0,
                6 => 1.5,
                _ => ((seed.wrapping_mul(31).wrapping_add(i as u64) % 17) as f32) - 8.0,
            })
            .collect();
        let mut w = work(logits.len());
        let mut s = Sampler::new(SamplerConfig::greedy(), 0).unwrap();
        proptest::prop_assert_eq!(s.sample(&logits, &[], &mut w), naive_greedy(&logits));
        // a penalty on a token id past the vocabulary changes no logit but takes the general
        // path (candidates, then the largest): the same answer
        let greedy_penalty = SamplerConfig::greedy().with_repetition_penalty(2.0, 4);
        let mut p = Sampler::new(greedy_penalty, 0).unwrap();
        proptest::prop_assert_eq!(p.sample(&logits, &[u32::MAX], &mut w), naive_greedy(&logits));
    }
}

/// Expected distribution, computed independently in f64: penalty, then top-k, top-p, min-p on
/// temperature-1 probabilities, then softmax(l / T).
fn expected(cfg: &SamplerConfig, logits: &[f32], recent: &[u32]) -> Vec<f64> {
    let mut l: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
    let window = &recent[recent.len().saturating_sub(cfg.repetition_window)..];
    let mut seen = vec![false; l.len()];
    for &t in window {
        seen[t as usize] = true;
    }
    for (x, s) in l.iter_mut().zip(&seen) {
        if *s && cfg.repetition_penalty != 1.0 {
            let p = cfg.repetition_penalty as f64;
            *x = if *x > 0.0 { *x / p } else { *x * p };
        }
    }
    let mut alive: Vec<bool> = l.iter().map(|x| x.is_finite()).collect();
    let order = |alive: &Vec<bool>| {
        let mut idx: Vec<usize> = (0..l.len()).filter(|&i| alive[i]).collect();
        idx.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap().then(a.cmp(&b)));
        idx
    };
    let probs = |alive: &Vec<bool>| {
        let m = l
            .iter()
            .zip(alive)
            .filter(|(_, a)| **a)
            .map(|(x, _)| *x)
            .fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = l
            .iter()
            .zip(alive)
            .filter(|(_, a)| **a)
            .map(|(x, _)| (x - m).exp())
            .sum();
        l.iter()
            .zip(alive)
            .map(|(x, a)| if *a { (x - m).exp() / z } else { 0.0 })
            .collect::<Vec<f64>>()
    };
    if let Some(k) = cfg.top_k {
        for &i in order(&alive).iter().skip(k) {
            alive[i] = false;
        }
    }
    if let Some(p) = cfg.top_p {
        let pr = probs(&alive);
        let mut cum = 0.0;
        for (j, &i) in order(&alive).iter().enumerate() {
            if j > 0 && cum > p as f64 {
                alive[i] = false;
            }
            cum += pr[i];
        }
    }
    if let Some(p) = cfg.min_p {
        let pr = probs(&alive);
        let max = pr.iter().cloned().fold(0.0, f64::max);
        for i in 0..l.len() {
            if alive[i] && pr[i] < p as f64 * max {
                alive[i] = false;
            }
        }
    }
    let t = cfg.temperature as f64;
    let m = l
        .iter()
        .zip(&alive)
        .filter(|(_, a)| **a)
        .map(|(x, _)| *x)
        .fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = l
        .iter()
        .zip(&alive)
        .map(|(x, a)| if *a { ((x - m) / t).exp() } else { 0.0 })
        .collect();
    let z: f64 = w.iter().sum();
    w.iter().map(|x| x / z).collect()
}

/// Chi-square critical values at p = 0.001 for 1..=12 degrees of freedom.
const CHI2_999: [f64; 12] = [
    10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26, 32.91,
];

#[test]
fn distributions_match_by_chi_square() {
    const DRAWS: usize = 20_000;
    let logits = [
        2.0,
        1.0,
        0.5,
        0.0,
        -1.0,
        -3.0,
        f32::NEG_INFINITY,
        1.5,
        0.25,
        -0.5,
    ];
    let recent = [7u32, 1, 7, 3];
    let configs = [
        SamplerConfig::temperature(1.0),
        SamplerConfig::temperature(0.7),
        SamplerConfig::temperature(2.5),
        SamplerConfig::temperature(1.0).with_top_k(4),
        SamplerConfig::temperature(0.8).with_top_k(1),
        SamplerConfig::temperature(1.0).with_top_p(0.8),
        SamplerConfig::temperature(1.3).with_top_p(0.5),
        SamplerConfig::temperature(1.0).with_min_p(0.2),
        SamplerConfig::temperature(0.9)
            .with_top_k(6)
            .with_top_p(0.9)
            .with_min_p(0.1),
        SamplerConfig::temperature(1.0).with_repetition_penalty(1.8, 3),
        SamplerConfig::x_transformers_default(10),
    ];
    for (n, cfg) in configs.iter().enumerate() {
        let p = expected(cfg, &logits, &recent);
        let counts = histogram(*cfg, 1000 + n as u64, &logits, &recent, DRAWS);
        let mut chi2 = 0.0;
        let mut df = 0usize;
        for (i, (&c, &pi)) in counts.iter().zip(&p).enumerate() {
            if pi == 0.0 {
                assert_eq!(
                    c, 0,
                    "config {n}: token {i} has probability 0 but was drawn"
                );
                continue;
            }
            let e = pi * DRAWS as f64;
            chi2 += (c as f64 - e).powi(2) / e;
            df += 1;
        }
        let df = df.saturating_sub(1);
        if df == 0 {
            continue; // one possible token: checked above that nothing else came out
        }
        assert!(
            chi2 < CHI2_999[df - 1],
            "config {n} ({cfg:?}): chi2 {chi2:.2} over {df} df; counts {counts:?}, expected {p:?}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_tokens() {
    let logits: Vec<f32> = (0..50).map(|i| ((i * 37 % 11) as f32) * 0.3).collect();
    let cfg = SamplerConfig::temperature(0.9).with_top_p(0.95);
    let draw = |seed| {
        let mut s = Sampler::new(cfg, seed).unwrap();
        let mut w = work(50);
        (0..200)
            .map(|_| s.sample(&logits, &[], &mut w).unwrap())
            .collect::<Vec<u32>>()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
    // pinned: the PRNG and the sampling order are part of the contract (same tokens on every run
    // and platform)
    let first: Vec<u32> = draw(42)[..12].to_vec();
    assert_eq!(first, PINNED_SEED_42, "got {first:?}");
}

const PINNED_SEED_42: [u32; 12] = [38, 19, 21, 13, 49, 19, 40, 41, 24, 49, 35, 19];

#[test]
fn rng_is_pcg32() {
    // PCG-XSH-RR 64/32 with the default increment, seeded as pcg32_srandom_r(seed, 0 stream)
    // would with this increment: state = (inc + seed) * mult + inc.
    let mut r = Rng::new(0);
    let a: Vec<u32> = (0..4).map(|_| r.next_u32()).collect();
    let mut r = Rng::new(0);
    let b: Vec<u32> = (0..4).map(|_| r.next_u32()).collect();
    assert_eq!(a, b);
    let mut r = Rng::new(7);
    for _ in 0..10_000 {
        let x = r.next_f32();
        assert!((0.0..1.0).contains(&x));
    }
    // mean and variance of a uniform: 1/2 and 1/12
    let mut r = Rng::new(9);
    let xs: Vec<f64> = (0..100_000).map(|_| r.next_f32() as f64).collect();
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    assert!((mean - 0.5).abs() < 0.005, "{mean}");
    assert!((var - 1.0 / 12.0).abs() < 0.002, "{var}");
}

#[test]
fn repetition_penalty_counts_each_token_once_and_only_in_the_window() {
    let logits = [2.0, 2.0, -1.0];
    let mut w = work(3);
    // token 0 three times in the window: penalised once (2/2 = 1 < 2): greedy picks 1
    let cfg = SamplerConfig::greedy().with_repetition_penalty(2.0, 3);
    let mut s = Sampler::new(cfg, 0).unwrap();
    assert_eq!(s.sample(&logits, &[0, 0, 0], &mut w), Ok(1));
    // token 0 outside the window of 2: no penalty, tie goes to 0
    let mut s = Sampler::new(SamplerConfig::greedy().with_repetition_penalty(2.0, 2), 0).unwrap();
    assert_eq!(s.sample(&logits, &[0, 2, 2], &mut w), Ok(0));
    assert_eq!(s.sample(&logits, &[2, 0, 2], &mut w), Ok(1));
    // ids out of range in `recent` are ignored
    assert_eq!(s.sample(&logits, &[9, 1000], &mut w), Ok(0));
    // negative logits are multiplied: -1 * 2 = -2
    let cfg = SamplerConfig::temperature(1.0).with_repetition_penalty(2.0, 8);
    let p = expected(&cfg, &[0.0, -1.0], &[1]);
    assert!((p[1] - (-2.0f64).exp() / (1.0 + (-2.0f64).exp())).abs() < 1e-12);
    // an extreme penalty keeps every logit finite: no NaN, no panic
    for penalty in [1e-38f32, 3e38] {
        let cfg = SamplerConfig::temperature(1.0).with_repetition_penalty(penalty, 8);
        let mut s = Sampler::new(cfg, 1).unwrap();
        for _ in 0..50 {
            let t = s.sample(&[1e30, -1e30, 5.0], &[0, 1, 2], &mut w).unwrap();
            assert!(t < 3);
        }
    }
}

#[test]
fn extreme_temperatures_and_logits_stay_in_range() {
    let mut w = work(4);
    for t in [1e-30f32, 1e-45, 1e30, f32::MAX] {
        let mut s = Sampler::new(SamplerConfig::temperature(t), 3).unwrap();
        for _ in 0..100 {
            let tok = s
                .sample(&[f32::MAX, f32::MIN, 0.0, f32::NEG_INFINITY], &[], &mut w)
                .unwrap();
            assert!(tok < 3, "temperature {t}: token {tok}");
        }
    }
    // a tiny temperature is greedy in effect
    let mut s = Sampler::new(SamplerConfig::temperature(1e-30), 3).unwrap();
    assert_eq!(s.sample(&[0.0, 1.0, 0.999], &[], &mut w), Ok(1));
    // one token
    let mut s = Sampler::new(SamplerConfig::temperature(1.0).with_top_p(0.5), 3).unwrap();
    assert_eq!(s.sample(&[7.0], &[], &mut w), Ok(0));
}

#[test]
fn every_error_is_typed_and_leaves_the_rng_alone() {
    let mut w = work(4);
    let fresh = || Sampler::new(SamplerConfig::temperature(1.0), 5).unwrap();
    let mut s = fresh();
    assert_eq!(s.sample(&[], &[], &mut w), Err(SampleError::Empty));
    assert_eq!(
        s.sample(&[0.0, f32::NAN, 1.0], &[], &mut w),
        Err(SampleError::NotANumber { index: 1 })
    );
    assert_eq!(
        s.sample(&[0.0, 1.0, f32::INFINITY], &[], &mut w),
        Err(SampleError::Infinite { index: 2 })
    );
    assert_eq!(
        s.sample(&[f32::NEG_INFINITY; 3], &[], &mut w),
        Err(SampleError::AllMasked)
    );
    assert_eq!(
        s.sample(&[0.0; 5], &[], &mut w),
        Err(SampleError::WorkTooSmall {
            needed: 5,
            available: 4
        })
    );
    // greedy refuses the same inputs
    let mut g = Sampler::new(SamplerConfig::greedy(), 0).unwrap();
    assert_eq!(
        g.sample(&[f32::NAN], &[], &mut w),
        Err(SampleError::NotANumber { index: 0 })
    );
    assert_eq!(
        g.sample(&[f32::NEG_INFINITY], &[], &mut w),
        Err(SampleError::AllMasked)
    );
    // none of the failures advanced the PRNG
    let logits = [0.3, 0.1, 0.7, 0.2];
    let mut f = fresh();
    for _ in 0..20 {
        assert_eq!(
            s.sample(&logits, &[], &mut w),
            f.sample(&logits, &[], &mut w)
        );
    }

    let bad = [
        (SamplerConfig::temperature(-1.0), "temperature"),
        (SamplerConfig::temperature(f32::NAN), "temperature"),
        (SamplerConfig::temperature(f32::INFINITY), "temperature"),
        (SamplerConfig::temperature(1.0).with_top_k(0), "top_k"),
        (SamplerConfig::temperature(1.0).with_top_p(1.5), "top_p"),
        (SamplerConfig::temperature(1.0).with_top_p(-0.1), "top_p"),
        (
            SamplerConfig::temperature(1.0).with_top_p(f32::NAN),
            "top_p",
        ),
        (SamplerConfig::temperature(1.0).with_min_p(2.0), "min_p"),
        (
            SamplerConfig::temperature(1.0).with_repetition_penalty(0.0, 4),
            "repetition_penalty",
        ),
        (
            SamplerConfig::temperature(1.0).with_repetition_penalty(f32::NAN, 4),
            "repetition_penalty",
        ),
    ];
    for (cfg, field) in bad {
        assert_eq!(
            Sampler::new(cfg, 0).err(),
            Some(SampleError::InvalidConfig(field))
        );
        assert_eq!(cfg.validate(), Err(SampleError::InvalidConfig(field)));
    }
    // errors print the numbers a person needs
    let e = SampleError::WorkTooSmall {
        needed: 5,
        available: 4,
    };
    assert_eq!(
        e.to_string(),
        "sampler work slice too small: needs 5 elements, has 4"
    );
}
