//! Self-tests of the float64 reference (tests/reference): hand-computed cases that can fail.
// Expected values are quoted with mpmath's full digits on purpose.
#![allow(clippy::excessive_precision)]

mod reference;

use reference::*;

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[track_caller]
fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert!(
        close(a, b, tol),
        "not within {tol}:\n  got      {a:?}\n  expected {b:?}"
    );
}

/// Hand formula of SimpleRMSNorm, v/‖v‖·√D, used to finish hand computations.
fn srms(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let s = (v.len() as f64).sqrt() / n;
    v.iter().map(|x| x * s).collect()
}

fn base_cfg(dim: usize, heads: usize, dh: usize) -> RefConfig {
    RefConfig {
        dim,
        depth: 1,
        heads,
        attn_dim_head: dh,
        attn_kv_heads: heads,
        cross_attend: false,
        dim_context: dim,
        rotary_pos_emb: false,
        rotary_emb_dim: 4,
        rotary_base_rescale_factor: 1.0,
        rotary_interpolation_factor: 1.0,
        norm: RefNorm::SimpleRmsNorm,
        extras: RefExtras::default(),
        ff_inner: 2,
        ff_glu: false,
        act: RefAct::Gelu,
        ff_no_bias: true,
        wrapper: None,
    }
}

fn weights(pairs: &[(&str, Vec<f64>)]) -> RefWeights {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn keys_of(cfg: &RefConfig) -> Vec<String> {
    param_shapes(cfg).into_iter().map(|(k, _)| k).collect()
}

/// A config exercising every option at once, for property tests.
fn rich_cfg() -> RefConfig {
    RefConfig {
        dim: 24,
        depth: 2,
        heads: 4,
        attn_dim_head: 8,
        attn_kv_heads: 2,
        cross_attend: true,
        dim_context: 10,
        rotary_pos_emb: true,
        rotary_emb_dim: 4,
        rotary_base_rescale_factor: 2.0,
        rotary_interpolation_factor: 2.0,
        norm: RefNorm::RmsNorm,
        extras: RefExtras::default(),
        ff_inner: 20,
        ff_glu: true,
        act: RefAct::Gelu,
        ff_no_bias: true,
        wrapper: None,
    }
}

fn pseudo(n: usize, salt: u64) -> Vec<f64> {
    // small deterministic input generator for the property tests
    (0..n)
        .map(|i| {
            let z = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((z >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

// ---------------------------------------------------------------- erf and activations

#[test]
fn erf_known_values() {
    // From the brief.
    for (x, e) in [
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (-2.0, -0.9953222650189527),
        (3.0, 0.9999779095030014),
    ] {
        assert!((erf(x) - e).abs() <= 2e-16, "erf({x}) = {} vs {e}", erf(x));
    }
    // mpmath (40 digits), covering both branches and the switch at 2.
    let table: [(f64, f64); 26] = [
        (1e-10, 1.128379167095512615e-10),
        (0.001, 0.0011283787909692364034),
        (0.05, 0.056371977797016626955),
        (0.1, 0.1124629160182848984),
        (0.25, 0.27632639016823693299),
        (0.5, 0.52049987781304653768),
        (0.75, 0.7111556336535151316),
        (1.0, 0.84270079294971486934),
        (1.25, 0.92290012825645823014),
        (1.5, 0.96610514647531072707),
        (1.75, 0.98667167121918244377),
        (1.9999, 0.99532019790702939169),
        (2.0, 0.99532226501895273416),
        (2.0001, 0.99532433130419666017),
        (2.25, 0.9985372834133188483),
        (2.5, 0.99959304798255504106),
        (3.0, 0.99997790950300141456),
        (3.5, 0.99999925690162765859),
        (4.0, 0.99999998458274209972),
        (5.0, 0.99999999999846254021),
        (6.0, 0.99999999999999997848),
        (6.4, 0.99999999999999999986),
        (7.0, 1.0),
        (-0.5, -0.52049987781304653768),
        (-2.0, -0.99532226501895273416),
        (-3.3, -0.99999694229020356183),
    ];
    for (x, e) in table {
        let got = erf(x);
        // within 2 ulp of the correctly rounded value (the implementation measures ~1 ulp)
        let tol = 2.0 * f64::EPSILON * e.abs();
        assert!(
            (got - e).abs() <= tol,
            "erf({x}) = {got:e}, expected {e:e}, diff {:e}",
            got - e
        );
    }
    assert_eq!(erf(0.0), 0.0);
    assert_eq!(erf(40.0), 1.0);
    assert_eq!(erf(-40.0), -1.0);
    assert!(erf(f64::NAN).is_nan());
    // odd and monotone on a fine grid across the branch switch
    let mut prev = -1.0;
    for i in -800..=800 {
        let x = i as f64 * 0.01;
        assert_eq!(erf(-x), -erf(x));
        assert!(erf(x) >= prev, "erf not monotone at {x}");
        prev = erf(x);
    }
}

#[test]
fn activations_known_values() {
    // mpmath values; 3e-16 absolute (GELU inherits erf's ~1e-16 absolute error)
    assert!((act(RefAct::Gelu, 1.0) - 0.84134474606854294859).abs() < 3e-16);
    assert!((act(RefAct::Gelu, -1.0) - -0.15865525393145705141).abs() < 3e-16);
    assert!((act(RefAct::Gelu, 0.3) - 0.18537342665668578306).abs() < 3e-16);
    assert!((act(RefAct::Gelu, -3.0) - -0.00404969409489028358).abs() < 3e-16);
    assert!((act(RefAct::Silu, 1.0) - 0.73105857863000487925).abs() < 3e-16);
    assert!((act(RefAct::Silu, -2.0) - -0.23840584404423511188).abs() < 3e-16);
    assert_eq!(act(RefAct::ReluSquared, 3.0), 9.0);
    assert_eq!(act(RefAct::ReluSquared, -3.0), 0.0);
}

// ---------------------------------------------------------------- norms

#[test]
fn layer_norm_hand_values() {
    // x = [1,2,3,4]: μ = 2.5, biased σ² = 1.25; stored γ = [0, .5, -.5, 1] → gains [1, 1.5, .5, 2].
    let y = layer_norm(&[1.0, 2.0, 3.0, 4.0], &[0.0, 0.5, -0.5, 1.0]);
    let e = [
        -1.3416354199689269826,
        -0.67081770998446349128,
        0.22360590332815449709,
        2.6832708399378539651,
    ];
    assert_close(&y, &e, 1e-15);
    // constant row: (x-μ) = 0 → exactly 0, eps keeps it finite
    assert_eq!(layer_norm(&[3.0, 3.0], &[0.0, 0.0]), vec![0.0, 0.0]);
}

#[test]
fn rms_norm_hand_values() {
    let s2 = 2f64.sqrt();
    // ‖[3,4]‖ = 5, √D = √2, stored g = [.5, -.25] → gains [1.5, .75]
    assert_close(
        &rms_norm(&[3.0, 4.0], Some(&[0.5, -0.25])),
        &[0.6 * s2 * 1.5, 0.8 * s2 * 0.75],
        1e-15,
    );
    assert_close(&rms_norm(&[3.0, 4.0], None), &[0.6 * s2, 0.8 * s2], 1e-15);
    // pitfall 2: eps on the norm (1e-12), not on the mean square. ‖[1e-13, 0]‖ < 1e-12 → divide by 1e-12.
    assert_close(&rms_norm(&[1e-13, 0.0], None), &[0.1 * s2, 0.0], 1e-15);
    assert_eq!(rms_norm(&[0.0, 0.0], None), vec![0.0, 0.0]);
}

// ---------------------------------------------------------------- rotary

#[test]
fn rotary_inv_freq_formula() {
    // r = 4: base 10000 → [1, 1/100]; rescale 2 → base 10000·2^{4/2} = 40000 → [1, 1/200]
    assert_eq!(rotary_inv_freq(4, 1.0), vec![1.0f32, 1.0f32 / 100.0]);
    assert_eq!(rotary_inv_freq(4, 2.0), vec![1.0f32, 1.0f32 / 200.0]);
    // r = 32 (article): 16 values θ_m = 10000^(-m/16), f32, within 1 ulp of the exact value
    let f = rotary_inv_freq(32, 1.0);
    assert_eq!(f.len(), 16);
    for (m, v) in f.iter().enumerate() {
        let exact = 10000f64.powf(-(m as f64) / 16.0);
        let ulp = f64::from(f32::EPSILON) * exact;
        assert!(
            (f64::from(*v) - exact).abs() <= ulp,
            "inv_freq[{m}] = {v} vs {exact}"
        );
    }
    assert_eq!(f[0], 1.0);
    // rescale for r = 32: base = 10000 · 4^{32/30}
    let g = rotary_inv_freq(32, 4.0);
    let base = 10000f64 * 4f64.powf(32.0 / 30.0);
    let exact = base.powf(-0.5); // m = 8
    assert!((f64::from(g[8]) - exact).abs() <= f64::from(f32::EPSILON) * exact);
}

#[test]
fn rotary_rotates_only_first_r_in_adjacent_pairs() {
    let inv = [1.0f32, 0.01f32]; // r = 4 of d = 8
    let t0 = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let mut t = t0;
    rotate_head(&mut t, 3, &inv, 1.0);
    assert_eq!(&t[4..], &t0[4..], "tail beyond r must pass through");
    // pair (0,1) by angle 3·1 = 3 rad
    let (s, c) = 3f64.sin_cos();
    assert_close(&t[..2], &[1.0 * c - 2.0 * s, 2.0 * c + 1.0 * s], 1e-15);
    // pair (2,3) by the f32 angle 3·0.01f32
    let a = f64::from(3.0f32 * 0.01f32);
    let (s, c) = a.sin_cos();
    assert_close(&t[2..4], &[3.0 * c - 4.0 * s, 4.0 * c + 3.0 * s], 1e-15);
    // position 0 is the identity
    let mut t = t0;
    rotate_head(&mut t, 0, &inv, 1.0);
    assert_eq!(t, t0);
    // interpolation factor 2 halves the angle: pair (0,1) at p = 3 turns by 1.5 rad
    let mut t = t0;
    rotate_head(&mut t, 3, &inv, 2.0);
    let (s, c) = 1.5f64.sin_cos();
    assert_close(&t[..2], &[c - 2.0 * s, 2.0 * c + s], 1e-15);
    // the angle is an f32 product: p = 10^6 with inv 0.01f32 is not exactly 10^4
    assert_eq!(
        rotary_angle(1_000_000, 0.01f32, 1.0),
        1_000_000f32 * 0.01f32
    );
}

// ---------------------------------------------------------------- hand-computed models

/// 1 layer, D = d = 2, one head (no to_out), SimpleRMSNorm, W_q = W_k = W_v = I, FF ReLU² with W = I.
#[test]
fn hand_model_attention_and_ff() {
    let mut cfg = base_cfg(2, 1, 2);
    cfg.act = RefAct::ReluSquared;
    cfg.ff_no_bias = false;
    assert_eq!(
        keys_of(&cfg),
        vec![
            "layers.0.1.to_q.weight",
            "layers.0.1.to_k.weight",
            "layers.0.1.to_v.weight",
            "layers.1.1.ff.0.0.weight",
            "layers.1.1.ff.0.0.bias",
            "layers.1.1.ff.2.weight",
            "layers.1.1.ff.2.bias",
        ]
    );
    let id = vec![1.0, 0.0, 0.0, 1.0];
    let w = weights(&[
        ("layers.0.1.to_q.weight", id.clone()),
        ("layers.0.1.to_k.weight", id.clone()),
        ("layers.0.1.to_v.weight", id.clone()),
        ("layers.1.1.ff.0.0.weight", id.clone()),
        ("layers.1.1.ff.0.0.bias", vec![0.5, -0.25]),
        ("layers.1.1.ff.2.weight", id.clone()),
        ("layers.1.1.ff.2.bias", vec![0.1, -0.2]),
    ]);
    let y = decoder_forward(&cfg, &w, &[1.0, 0.0, 0.0, 1.0], None);

    // By hand: u0 = [√2, 0], u1 = [0, √2]; q = k = v = u; scale 1/√2.
    // row 0 sees only itself: o0 = [√2, 0].
    // row 1: s10 = 0, s11 = 2/√2 = √2 → a = [1, e^√2]/(1 + e^√2); o1 = [√2 a0, √2 a1].
    let r2 = 2f64.sqrt();
    let a1 = r2.exp() / (1.0 + r2.exp());
    let a0 = 1.0 - a1;
    let x1 = [[1.0 + r2, 0.0], [r2 * a0, 1.0 + r2 * a1]];
    // FF: u' = srms(x'); out = relu(u' + b1)² + b2 (W1 = W2 = I)
    let mut expected = Vec::new();
    for row in x1 {
        let u = srms(&row);
        let h0 = (u[0] + 0.5).max(0.0).powi(2);
        let h1 = (u[1] - 0.25).max(0.0).powi(2);
        let x2 = [row[0] + h0 + 0.1, row[1] + h1 - 0.2];
        expected.extend(srms(&x2));
    }
    assert_close(&y, &expected, 1e-14);
}

/// Rotary at the model level: D = d = r = 4, one head, SimpleRMSNorm, W_q = W_k = W_v = I, FF zero.
#[test]
fn hand_model_rotary() {
    let mut cfg = base_cfg(4, 1, 4);
    cfg.rotary_pos_emb = true;
    cfg.rotary_emb_dim = 4;
    cfg.ff_inner = 1;
    let mut id = vec![0.0; 16];
    for i in 0..4 {
        id[i * 5] = 1.0;
    }
    let mut w = weights(&[
        ("layers.0.1.to_q.weight", id.clone()),
        ("layers.0.1.to_k.weight", id.clone()),
        ("layers.0.1.to_v.weight", id.clone()),
        ("layers.1.1.ff.0.0.weight", vec![0.0; 4]),
        ("layers.1.1.ff.2.weight", vec![0.0; 4]),
        // a non-standard stored inv_freq: the stored buffer must win over the formula
        ("rotary_pos_emb.inv_freq", vec![0.5, 0.25]),
    ]);
    assert_eq!(
        {
            let mut k: Vec<String> = w.keys().cloned().collect();
            k.sort();
            k
        },
        {
            let mut k = keys_of(&cfg);
            k.sort();
            k
        }
    );
    let x = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    // By hand: u0 = [2,0,0,0], u1 = [0,2,0,0]. k0 = u0 (p = 0). q1 = k1 = R(1)·u1: pair (0,1) turns by θ:
    // [-2 sin θ, 2 cos θ, 0, 0]. s10 = q1·k0/2 = -2 sin θ, s11 = |q1|²/2 = 2. V is not rotated: v = u.
    let expected = |theta: f64| {
        let s10 = -2.0 * theta.sin();
        let a1 = 2f64.exp() / (s10.exp() + 2f64.exp());
        let a0 = 1.0 - a1;
        let mut e = srms(&[3.0, 0.0, 0.0, 0.0]);
        e.extend(srms(&[2.0 * a0, 1.0 + 2.0 * a1, 0.0, 0.0]));
        e
    };
    let y = decoder_forward(&cfg, &w, &x, None);
    assert_close(&y, &expected(0.5), 1e-14);
    // without the stored buffer the formula gives inv_freq[0] = 1 → θ = 1
    w.remove("rotary_pos_emb.inv_freq");
    let y = decoder_forward(&cfg, &w, &x, None);
    assert_close(&y, &expected(1.0), 1e-14);
    // interpolation factor 4 → θ = 1/4
    cfg.rotary_interpolation_factor = 4.0;
    let y = decoder_forward(&cfg, &w, &x, None);
    assert_close(&y, &expected(0.25), 1e-14);
    // and no rotary at all → θ = 0
    cfg.rotary_pos_emb = false;
    let y = decoder_forward(&cfg, &w, &x, None);
    assert_close(&y, &expected(0.0), 1e-14);
}

/// GQA: heads 4, kv_heads 2, dh 1, D 4; query head h must read kv head h % 2 (pitfall 3).
#[test]
fn gqa_query_head_reads_kv_head_h_mod_kv_heads() {
    let mut cfg = base_cfg(4, 4, 1);
    cfg.attn_kv_heads = 2;
    cfg.ff_inner = 1;
    let mut id = vec![0.0; 16];
    for i in 0..4 {
        id[i * 5] = 1.0;
    }
    let w = weights(&[
        // every query head: q = u[1]
        ("layers.0.1.to_q.weight", [0.0, 1.0, 0.0, 0.0].repeat(4)),
        // kv head 0: k = 0;        kv head 1: k = u[1]
        (
            "layers.0.1.to_k.weight",
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        ),
        // kv head 0: v = u[0];     kv head 1: v = 3 u[1]
        (
            "layers.0.1.to_v.weight",
            vec![1.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0],
        ),
        ("layers.0.1.to_out.weight", id),
        ("layers.1.1.ff.0.0.weight", vec![0.0; 4]),
        ("layers.1.1.ff.2.weight", vec![0.0; 4]),
    ]);
    let x = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    let y = decoder_forward(&cfg, &w, &x, None);
    // u0 = [2,0,0,0], u1 = [0,2,0,0]; scale 1.
    // kv head 0: k = [0, 0], v = [2, 0]; kv head 1: k = [0, 2], v = [0, 6]. q(row0) = 0, q(row1) = 2.
    // row 0 (sees key 0): kv0 → 2, kv1 → 0.
    // row 1: kv0 → scores [0, 0] → (2 + 0)/2 = 1; kv1 → scores [0, 4] → 6·e⁴/(1+e⁴).
    let b = 6.0 * 4f64.exp() / (1.0 + 4f64.exp());
    let per_kv_row0 = [2.0, 0.0];
    let per_kv_row1 = [1.0, b];
    let expect_with = |map: &dyn Fn(usize) -> usize| {
        let o0: Vec<f64> = (0..4).map(|h| per_kv_row0[map(h)]).collect();
        let o1: Vec<f64> = (0..4).map(|h| per_kv_row1[map(h)]).collect();
        let mut e = srms(&[1.0 + o0[0], o0[1], o0[2], o0[3]]);
        e.extend(srms(&[o1[0], 1.0 + o1[1], o1[2], o1[3]]));
        e
    };
    let right = expect_with(&|h| h % 2);
    let wrong = expect_with(&|h| h / 2);
    assert!(
        !close(&right, &wrong, 1e-3),
        "test must tell the mappings apart"
    );
    assert_close(&y, &right, 1e-14);
    // head 3 reads kv head 1 (its output is the last column of the attention output, row 1)
    let o1_h3 = y[7] / y[4]; // srms scales a row uniformly, so ratios of row 1 are ratios of x'
    assert!((o1_h3 - b / 1.0).abs() < 1e-12);
    // heads 1 and 2 read kv heads 1 and 0 respectively
    assert!((y[6] / y[4] - 1.0).abs() < 1e-12); // head 2: kv 0 → 1 (same as head 0)
    assert!((y[5] / y[4] - (1.0 + b)).abs() < 1e-12); // head 1: kv 1 → b, plus the residual 1
}

/// GLU with ff_no_bias: the projection bias is still used, up = first half, gate = second half.
/// Also LayerNorm gains at the model level (stored + 1).
#[test]
fn hand_model_glu_and_layernorm() {
    let mut cfg = base_cfg(2, 1, 2);
    cfg.norm = RefNorm::LayerNorm;
    cfg.ff_glu = true;
    cfg.ff_inner = 1;
    cfg.act = RefAct::Silu;
    cfg.ff_no_bias = true;
    assert_eq!(
        keys_of(&cfg),
        vec![
            "layers.0.0.0.gamma",
            "layers.0.1.to_q.weight",
            "layers.0.1.to_k.weight",
            "layers.0.1.to_v.weight",
            "layers.1.0.0.gamma",
            "layers.1.1.ff.0.proj.weight",
            "layers.1.1.ff.0.proj.bias",
            "layers.1.1.ff.2.weight",
            "final_norm.gamma",
        ]
    );
    let w = weights(&[
        ("layers.0.0.0.gamma", vec![0.3, 0.3]),
        ("layers.0.1.to_q.weight", vec![0.0; 4]),
        ("layers.0.1.to_k.weight", vec![0.0; 4]),
        ("layers.0.1.to_v.weight", vec![0.0; 4]), // attention output 0
        ("layers.1.0.0.gamma", vec![0.25, -0.5]),
        ("layers.1.1.ff.0.proj.weight", vec![1.0, 0.0, 0.0, 1.0]),
        ("layers.1.1.ff.0.proj.bias", vec![0.5, -0.25]),
        ("layers.1.1.ff.2.weight", vec![1.0, 0.0]),
        ("final_norm.gamma", vec![-0.5, 0.5]),
    ]);
    let y = decoder_forward(&cfg, &w, &[2.0, 0.0], None);
    // LN of [2, 0]: μ = 1, σ² = 1 → [±1/√(1+1e-5)], gains [1.25, 0.5]
    let k = 1.0 / (1.0 + 1e-5f64).sqrt();
    let u = [1.25 * k, -0.5 * k];
    let up = u[0] + 0.5;
    let gate = u[1] - 0.25;
    let h = up * gate / (1.0 + (-gate).exp());
    let x = [2.0 + h, 0.0];
    // final LN: μ = x0/2, deviations ±x0/2, gains [0.5, 1.5]
    let dev = x[0] / 2.0;
    let nrm = dev / (dev * dev + 1e-5).sqrt();
    assert_close(&y, &[0.5 * nrm, -1.5 * nrm], 1e-14);
    // the swapped convention (gate first) gives something else
    let hs = gate * up / (1.0 + (-up).exp());
    let dev_s = (2.0 + hs) / 2.0;
    let nrm_s = dev_s / (dev_s * dev_s + 1e-5).sqrt();
    assert!((y[0] - 0.5 * nrm_s).abs() > 1e-6 || (h - hs).abs() > 1e-3);
    assert!((h - hs).abs() > 1e-2);
}

/// Wrapper: x0 = E[t] + D^-½ P[pos]; tied logits y·Eᵀ·D^-½; untied y·W_logitsᵀ. Depth 0 (final norm only).
#[test]
fn hand_wrapper_embeddings_and_logits() {
    let mut cfg = base_cfg(2, 1, 2);
    cfg.depth = 0;
    cfg.wrapper = Some(RefWrapper {
        num_tokens: 3,
        max_seq_len: 4,
        abs_pos_emb: true,
        tie_embedding: true,
        tie_embedding_scale: None,
        post_emb_norm: false,
        l2norm_embed: false,
        emb_dim: cfg.dim,
        logits_dim: 3,
        scaled_sinu: false,
        num_memory_tokens: 0,
    });
    assert_eq!(
        keys_of(&cfg),
        vec!["token_emb.emb.weight", "pos_emb.emb.weight"]
    );
    let e = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    let p = vec![0.5, 0.5, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0];
    let mut w = weights(&[
        ("token_emb.emb.weight", e.clone()),
        ("pos_emb.emb.weight", p),
    ]);
    let logits = wrapper_forward(&cfg, &w, &[2, 0], None);
    let s = 0.5f64.sqrt();
    let y0 = srms(&[1.0 + 0.5 * s, 1.0 + 0.5 * s]);
    let y1 = srms(&[1.0 + s, -s]);
    let tied = |y: &[f64]| -> Vec<f64> {
        (0..3)
            .map(|t| (y[0] * e[2 * t] + y[1] * e[2 * t + 1]) * s)
            .collect()
    };
    let mut expected = tied(&y0);
    expected.extend(tied(&y1));
    assert_close(&logits, &expected, 1e-14);

    // untied, no absolute positions
    let wr = cfg.wrapper.as_mut().unwrap();
    wr.tie_embedding = false;
    wr.abs_pos_emb = false;
    assert_eq!(
        keys_of(&cfg),
        vec!["token_emb.emb.weight", "to_logits.weight"]
    );
    let wl = vec![1.0, 2.0, -1.0, 0.5, 0.0, 3.0];
    w.insert("to_logits.weight".into(), wl.clone());
    let logits = wrapper_forward(&cfg, &w, &[2, 0], None);
    let y0 = srms(&[1.0, 1.0]);
    let y1 = srms(&[1.0, 0.0]);
    let untied = |y: &[f64]| -> Vec<f64> {
        (0..3)
            .map(|t| y[0] * wl[2 * t] + y[1] * wl[2 * t + 1])
            .collect()
    };
    let mut expected = untied(&y0);
    expected.extend(untied(&y1));
    assert_close(&logits, &expected, 1e-14);
}

/// Wrapper with `emb_dim` 4 ≠ dim 2, `scaled_sinu_pos_emb` and `logits_dim` 1: x0 =
/// W_p·(E[t] + s·[sin(p·ω), cos(p·ω)]) + b with ω = [1, 10000^−½]; logits y·W_logitsᵀ. Depth 0.
#[test]
fn hand_wrapper_projection_sinusoids_and_logits_dim() {
    let mut cfg = base_cfg(2, 1, 2);
    cfg.depth = 0;
    cfg.wrapper = Some(RefWrapper {
        num_tokens: 3,
        max_seq_len: 1,
        abs_pos_emb: true,
        tie_embedding: false,
        tie_embedding_scale: None,
        post_emb_norm: false,
        l2norm_embed: false,
        emb_dim: 4,
        logits_dim: 1,
        scaled_sinu: true,
        num_memory_tokens: 0,
    });
    assert_eq!(
        keys_of(&cfg),
        vec![
            "token_emb.emb.weight",
            "pos_emb.scale",
            "pos_emb.inv_freq",
            "to_logits.weight",
            "project_emb.weight",
            "project_emb.bias"
        ]
    );
    let e = vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
    let wp = vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]; // x = [e0 + e2, e1 + e3]
    let mut w = weights(&[
        ("token_emb.emb.weight", e),
        ("pos_emb.scale", vec![0.5]),
        ("to_logits.weight", vec![2.0, -1.0]),
        ("project_emb.weight", wp),
        ("project_emb.bias", vec![0.25, -0.25]),
    ]);
    // positions 0, 1 and 2 (past max_seq_len: sinusoids have no table); ω from the formula
    let logits = wrapper_forward(&cfg, &w, &[0, 1, 2], None);
    let om = [1.0, 0.01];
    let pos = |p: f64| -> [f64; 4] {
        let a = [p * om[0], p * om[1]];
        [
            0.5 * a[0].sin(),
            0.5 * a[1].sin(),
            0.5 * a[0].cos(),
            0.5 * a[1].cos(),
        ]
    };
    let tok = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, 1.0, 1.0],
    ];
    let expected: Vec<f64> = (0..3)
        .map(|p| {
            let ps = pos(p as f64);
            let x0: Vec<f64> = (0..4).map(|i| tok[p][i] + ps[i]).collect();
            let y = srms(&[x0[0] + x0[2] + 0.25, x0[1] + x0[3] - 0.25]);
            2.0 * y[0] - y[1]
        })
        .collect();
    assert_close(&logits, &expected, 1e-14);
    // a stored inv_freq is what is used
    w.insert("pos_emb.inv_freq".into(), vec![0.0, 0.0]);
    let logits = wrapper_forward(&cfg, &w, &[2], None);
    let y = srms(&[1.0 + 1.0 + 0.5 + 0.25, 1.0 + 1.0 + 0.5 - 0.25]);
    assert_close(&logits, &[2.0 * y[0] - y[1]], 1e-14);
}

// ---------------------------------------------------------------- properties on a full random model

#[test]
fn causality_and_prefix_consistency() {
    let cfg = rich_cfg();
    let w = random_weights(&cfg, 7);
    let n = 5;
    let x = pseudo(n * cfg.dim, 1);
    let ctx = pseudo(3 * cfg.dim_context, 2);
    let y = decoder_forward(&cfg, &w, &x, Some(&ctx));
    // changing the last row leaves every earlier row bit-identical
    let mut x2 = x.clone();
    for v in &mut x2[(n - 1) * cfg.dim..] {
        *v += 0.7;
    }
    let y2 = decoder_forward(&cfg, &w, &x2, Some(&ctx));
    let split = (n - 1) * cfg.dim;
    assert_eq!(&y[..split], &y2[..split]);
    assert!(!close(&y[split..], &y2[split..], 1e-6));
    // a prefix gives the same rows (positions 0..k-1 either way)
    for k in 1..n {
        let yk = decoder_forward(&cfg, &w, &x[..k * cfg.dim], Some(&ctx));
        assert_eq!(&yk[..], &y[..k * cfg.dim]);
    }
}

#[test]
fn rotary_makes_position_visible_and_v_is_not_rotated() {
    // two identical rows: with rotary, q·k scores differ per position, but since v is not rotated
    // (and both v rows are equal), row 1 still averages equal values: outputs of rows 0 and 1 agree.
    let mut cfg = rich_cfg();
    cfg.cross_attend = false;
    cfg.depth = 1;
    let w = random_weights(&cfg, 3);
    let row = pseudo(cfg.dim, 9);
    let x = [row.clone(), row].concat();
    let y = decoder_forward(&cfg, &w, &x, None);
    assert_close(&y[..cfg.dim], &y[cfg.dim..], 1e-13);
    // with different rows, turning rotary off changes row 1 (rotary is really applied) but not row 0
    let x = pseudo(2 * cfg.dim, 10);
    let y_rot = decoder_forward(&cfg, &w, &x, None);
    let mut cfg_off = cfg.clone();
    cfg_off.rotary_pos_emb = false;
    let y_off = decoder_forward(&cfg_off, &w, &x, None);
    assert_close(&y_rot[..cfg.dim], &y_off[..cfg.dim], 1e-14);
    assert!(!close(&y_rot[cfg.dim..], &y_off[cfg.dim..], 1e-6));
}

#[test]
fn cross_attention_is_unordered_unmasked_and_reads_raw_context() {
    let cfg = rich_cfg();
    let w = random_weights(&cfg, 11);
    let n = 3;
    let m = 4;
    let dc = cfg.dim_context;
    let x = pseudo(n * cfg.dim, 5);
    let ctx = pseudo(m * dc, 6);
    let y = decoder_forward(&cfg, &w, &x, Some(&ctx));
    // no positions and no mask on cross-attention: permuting context rows changes nothing
    let perm = [2, 0, 3, 1];
    let ctx_p: Vec<f64> = perm
        .iter()
        .flat_map(|&j| ctx[j * dc..(j + 1) * dc].to_vec())
        .collect();
    let y_p = decoder_forward(&cfg, &w, &x, Some(&ctx_p));
    assert_close(&y, &y_p, 1e-13);
    // every query row (also row 0) sees the last context row
    let mut ctx_l = ctx.clone();
    for v in &mut ctx_l[(m - 1) * dc..] {
        *v -= 0.5;
    }
    let y_l = decoder_forward(&cfg, &w, &x, Some(&ctx_l));
    for i in 0..n {
        assert!(!close(
            &y[i * cfg.dim..(i + 1) * cfg.dim],
            &y_l[i * cfg.dim..(i + 1) * cfg.dim],
            1e-6
        ));
    }
    // K/V come from the raw context (a norm would make a uniform scaling invisible)
    let ctx_s: Vec<f64> = ctx.iter().map(|v| v * 2.0).collect();
    let y_s = decoder_forward(&cfg, &w, &x, Some(&ctx_s));
    assert!(!close(&y, &y_s, 1e-6));
}

/// Every stored tensor (including inv_freq and every gain) influences the output, so param_shapes
/// lists no dead keys and the forward pass reads them all.
#[test]
fn every_parameter_matters() {
    let mut wrapped = rich_cfg();
    wrapped.depth = 1;
    wrapped.norm = RefNorm::LayerNorm;
    wrapped.ff_glu = false;
    wrapped.ff_no_bias = false;
    wrapped.rotary_pos_emb = false;
    wrapped.act = RefAct::Silu;
    wrapped.wrapper = Some(RefWrapper {
        num_tokens: 11,
        max_seq_len: 8,
        abs_pos_emb: true,
        tie_embedding: false,
        tie_embedding_scale: None,
        post_emb_norm: false,
        l2norm_embed: false,
        emb_dim: wrapped.dim,
        logits_dim: 11,
        scaled_sinu: false,
        num_memory_tokens: 0,
    });
    let mut tied = wrapped.clone();
    tied.wrapper.as_mut().unwrap().tie_embedding = true;
    // emb_dim ≠ dim (project_emb), logits_dim ≠ num_tokens, the scaled sinusoids, post_emb_norm
    let mut projected = wrapped.clone();
    let pw = projected.wrapper.as_mut().unwrap();
    pw.emb_dim = projected.dim + 6;
    pw.logits_dim = 7;
    pw.scaled_sinu = true;
    pw.post_emb_norm = true;
    let mut narrow = wrapped.clone();
    let nw = narrow.wrapper.as_mut().unwrap();
    nw.emb_dim = narrow.dim / 2;
    nw.logits_dim = 13;
    nw.l2norm_embed = true;
    let mut relu2 = rich_cfg();
    relu2.act = RefAct::ReluSquared;
    relu2.heads = 1;
    relu2.attn_kv_heads = 1;
    relu2.attn_dim_head = relu2.dim;
    for cfg in [rich_cfg(), wrapped, tied, projected, narrow, relu2] {
        let w = random_weights(&cfg, 5);
        let ctx = pseudo(3 * cfg.dim_context, 8);
        let run = |w: &RefWeights| match &cfg.wrapper {
            Some(_) => wrapper_forward(&cfg, w, &[3, 1, 4, 1, 5], Some(&ctx)),
            None => decoder_forward(&cfg, w, &pseudo(5 * cfg.dim, 4), Some(&ctx)),
        };
        let y = run(&w);
        assert_eq!(w.len(), param_shapes(&cfg).len());
        for (key, _) in param_shapes(&cfg) {
            let mut w2 = w.clone();
            for v in w2.get_mut(&key).unwrap().iter_mut() {
                *v = *v * 1.5 + 0.25;
            }
            let y2 = run(&w2);
            assert!(!close(&y, &y2, 1e-9), "{key} has no effect");
        }
    }
}

// ---------------------------------------------------------------- state_dict layout (spec §4)

#[test]
fn article_param_shapes() {
    let cfg = RefConfig::article();
    let shapes = param_shapes(&cfg);
    assert_eq!(shapes.len(), 62);
    let m: std::collections::HashMap<String, Vec<usize>> = shapes.iter().cloned().collect();
    assert_eq!(m.len(), 62, "duplicate keys");
    let expect = |k: &str, s: &[usize]| assert_eq!(m.get(k).map(|v| &v[..]), Some(s), "{k}");
    for b in 0..4 {
        for (l, kind) in [(3 * b, 'a'), (3 * b + 1, 'c'), (3 * b + 2, 'f')] {
            expect(&format!("layers.{l}.0.0.gamma"), &[128]);
            if kind == 'f' {
                expect(&format!("layers.{l}.1.ff.0.0.weight"), &[512, 128]);
                expect(&format!("layers.{l}.1.ff.0.0.bias"), &[512]);
                expect(&format!("layers.{l}.1.ff.2.weight"), &[128, 512]);
                expect(&format!("layers.{l}.1.ff.2.bias"), &[128]);
            } else {
                expect(&format!("layers.{l}.1.to_q.weight"), &[256, 128]);
                expect(&format!("layers.{l}.1.to_k.weight"), &[256, 128]);
                expect(&format!("layers.{l}.1.to_v.weight"), &[256, 128]);
                expect(&format!("layers.{l}.1.to_out.weight"), &[128, 256]);
            }
        }
    }
    expect("rotary_pos_emb.inv_freq", &[16]);
    expect("final_norm.gamma", &[128]);
    // spec §3.1: 1,577,088 trainable parameters (+16 in the inv_freq buffer)
    let total: usize = shapes
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(total, 1_577_088 + 16);
    // state_dict order: layers first, then the rotary buffer, then the final norm (spec §4 table)
    assert_eq!(shapes[0].0, "layers.0.0.0.gamma");
    assert_eq!(shapes[60].0, "rotary_pos_emb.inv_freq");
    assert_eq!(shapes[61].0, "final_norm.gamma");
    // the forward pass runs on it and the stored inv_freq is the formula's
    let w = random_weights(&cfg, 0);
    let inv: Vec<f64> = rotary_inv_freq(32, 1.0)
        .into_iter()
        .map(f64::from)
        .collect();
    assert_eq!(w["rotary_pos_emb.inv_freq"], inv);
    let y = decoder_forward(&cfg, &w, &pseudo(3 * 128, 1), Some(&pseudo(2 * 128, 2)));
    assert!(y.iter().all(|v| v.is_finite()));
}

#[test]
fn gqa_glu_rmsnorm_example_shapes() {
    // spec §4: attn_kv_heads=2, attn_dim_head=32, heads=4, dim=96 (self and cross); ff_glu, ff_mult=2.
    let cfg = RefConfig {
        dim: 96,
        depth: 1,
        heads: 4,
        attn_dim_head: 32,
        attn_kv_heads: 2,
        cross_attend: true,
        dim_context: 96,
        rotary_pos_emb: false,
        rotary_emb_dim: 16,
        rotary_base_rescale_factor: 1.0,
        rotary_interpolation_factor: 1.0,
        norm: RefNorm::RmsNorm,
        extras: RefExtras::default(),
        ff_inner: 192,
        ff_glu: true,
        act: RefAct::Gelu,
        ff_no_bias: false,
        wrapper: None,
    };
    let m: std::collections::HashMap<String, Vec<usize>> = param_shapes(&cfg).into_iter().collect();
    let expect = |k: &str, s: &[usize]| assert_eq!(m.get(k).map(|v| &v[..]), Some(s), "{k}");
    for l in [0, 1] {
        expect(&format!("layers.{l}.0.0.g"), &[96]);
        expect(&format!("layers.{l}.1.to_q.weight"), &[128, 96]);
        expect(&format!("layers.{l}.1.to_k.weight"), &[64, 96]);
        expect(&format!("layers.{l}.1.to_v.weight"), &[64, 96]);
        expect(&format!("layers.{l}.1.to_out.weight"), &[96, 128]);
    }
    expect("layers.2.0.0.g", &[96]);
    expect("layers.2.1.ff.0.proj.weight", &[384, 96]);
    expect("layers.2.1.ff.0.proj.bias", &[384]);
    expect("layers.2.1.ff.2.weight", &[96, 192]);
    expect("layers.2.1.ff.2.bias", &[96]);
    expect("final_norm.g", &[96]);
    assert_eq!(m.len(), 3 + 8 + 4 + 1);
    assert!(!m
        .keys()
        .any(|k| k.contains("gamma") || k.contains("inv_freq")));

    // ff_no_bias: the GLU projection bias stays (pitfall 5), the output bias goes
    let nb = RefConfig {
        ff_no_bias: true,
        ..cfg.clone()
    };
    let k = keys_of(&nb);
    assert!(k.contains(&"layers.2.1.ff.0.proj.bias".to_string()));
    assert!(!k.contains(&"layers.2.1.ff.2.bias".to_string()));
    // cross_attn dim_context: to_k/to_v of the cross sublayer only
    let dc = RefConfig {
        dim_context: 40,
        ..cfg.clone()
    };
    let m: std::collections::HashMap<String, Vec<usize>> = param_shapes(&dc).into_iter().collect();
    assert_eq!(m["layers.0.1.to_k.weight"], vec![64, 96]);
    assert_eq!(m["layers.1.1.to_k.weight"], vec![64, 40]);
    assert_eq!(m["layers.1.1.to_v.weight"], vec![64, 40]);
    // SimpleRMSNorm: no norm keys at all; non-GLU ff_no_bias: no biases
    let s = RefConfig {
        norm: RefNorm::SimpleRmsNorm,
        ff_glu: false,
        ff_no_bias: true,
        ..cfg.clone()
    };
    let k = keys_of(&s);
    assert!(!k
        .iter()
        .any(|k| k.ends_with(".g") || k.ends_with(".gamma") || k.ends_with("bias")));
    assert_eq!(k.len(), 8 + 2);
}

#[test]
fn wrapper_keys_are_prefixed() {
    let mut cfg = RefConfig::article();
    cfg.depth = 1;
    cfg.wrapper = Some(RefWrapper {
        num_tokens: 50,
        max_seq_len: 0,
        abs_pos_emb: false,
        tie_embedding: false,
        tie_embedding_scale: None,
        post_emb_norm: false,
        l2norm_embed: false,
        emb_dim: cfg.dim,
        logits_dim: 50,
        scaled_sinu: false,
        num_memory_tokens: 0,
    });
    let k = keys_of(&cfg);
    assert_eq!(k.first().unwrap(), "token_emb.emb.weight");
    assert_eq!(k.last().unwrap(), "to_logits.weight");
    assert!(k.contains(&"attn_layers.layers.0.0.0.gamma".to_string()));
    assert!(k.contains(&"attn_layers.rotary_pos_emb.inv_freq".to_string()));
    assert!(k.contains(&"attn_layers.final_norm.gamma".to_string()));
    assert_eq!(k.len(), 2 + 15 + 2);
    assert!(k[1..k.len() - 1]
        .iter()
        .all(|k| k.starts_with("attn_layers.")));
    let w = random_weights(&cfg, 2);
    let logits = wrapper_forward(&cfg, &w, &[1, 2, 3], Some(&pseudo(2 * 128, 3)));
    assert_eq!(logits.len(), 3 * 50);
}

#[test]
fn random_weights_are_deterministic_and_perturbed() {
    let cfg = rich_cfg();
    let a = random_weights(&cfg, 42);
    let b = random_weights(&cfg, 42);
    let c = random_weights(&cfg, 43);
    assert_eq!(a, b);
    for (key, shape) in param_shapes(&cfg) {
        let v = &a[&key];
        assert_eq!(v.len(), shape.iter().product::<usize>(), "{key}");
        if key.ends_with("inv_freq") {
            let f: Vec<f64> = rotary_inv_freq(4, 2.0).into_iter().map(f64::from).collect();
            assert_eq!(v, &f);
            assert_eq!(c[&key], f);
            continue;
        }
        assert_ne!(v, &c[&key], "{key} ignores the seed");
        if key.ends_with(".g") || key.ends_with(".bias") {
            assert!(v.iter().all(|x| x.abs() < 0.5 && *x != 0.0), "{key}");
        } else {
            // N(0, 1/in): the sample variance is near 1/in
            let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
            let target = 1.0 / shape[1] as f64;
            assert!(
                var > 0.6 * target && var < 1.5 * target,
                "{key}: {var} vs {target}"
            );
        }
    }
}
