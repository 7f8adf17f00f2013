//! Kernel benchmarks with the peers side by side in the same run (single thread, weights W[N,K]
//! row-major like `nn.Linear`, Y[M,N] = X[M,K]·Wᵀ):
//!
//! - `gemv/M,K,N/*` and `gemm/M,K,N/*`: picoformer (dispatched: AVX-512 or AVX2 on x86-64
//!   through runtime detection, since benches see the library with the `std` feature; on an
//!   AVX-512 CPU also `picoformer_avx2` and `picoformer_f16_avx2`, forced), picoformer's portable
//!   kernel, the `gemm` crate, `matrixmultiply`, and a naive dot loop. Throughput is in FLOP
//!   (2·M·K·N per call), so criterion's "elem/s" read as FLOP/s.
//! - `attention/d64/len/*`: one decode query head over `len` cached positions, f32 and f16
//!   cache, against the portable kernel and a straightforward scalar implementation.
//! - `attention_gqa/d64x4/len/*`: four query heads sharing one kv head (grouped-query
//!   attention), one grouped call against four single-head calls.
//!
//! - In each of those groups, `fma_peak` (register-only AVX2 FMAs: the FLOP/s peak; with
//!   AVX-512 also `fma_peak_avx512`) and
//!   `f16_roof` (F16C conversions and FMAs from L1: what f16 weights can reach), measured
//!   between the kernels so that shares of them hold on a busy shared machine.
//! - `sampler/32000/*`: one token chosen from 32,000 logits (greedy, top-k, top-p, min-p).
//!
//! Run: `cargo bench --bench kernels -- --warm-up-time 1 --measurement-time 3`, then
//! `python3 tools/bench_table.py` for the table of medians.

#[cfg(target_arch = "x86_64")]
#[path = "common/cpu_time.rs"]
mod cpu_time;

#[cfg(target_arch = "x86_64")]
#[path = "../tests/common/values.rs"]
mod values;

#[cfg(target_arch = "x86_64")]
#[path = "common/roof.rs"]
mod roof;

#[cfg(target_arch = "x86_64")]
mod imp {
    use crate::cpu_time::CpuTime;
    use crate::roof;
    use crate::values::values;
    use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
    use picoformer::kernels::{self, portable, Isa};
    use picoformer::q8_0::{quantize_q8_0, BlockQ8_0};
    use picoformer::{f16, Activation, Tensor};

    /// Y[m, n] = X[m, k]·W[n, k]ᵀ with the `gemm` crate, single thread.
    #[allow(unsafe_code)] // the peers' APIs are unsafe: benchmark code, not the library
    fn peer_gemm(m: usize, k: usize, n: usize, w: &[f32], x: &[f32], y: &mut [f32]) {
        assert!(w.len() == n * k && x.len() == m * k && y.len() == m * n);
        // SAFETY: the strides describe exactly the three buffers checked above: X m×k (row stride
        // k), Wᵀ k×n (W row-major: column stride k, row stride 1), Y m×n (row stride n).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    }

    /// The same with `matrixmultiply::sgemm`.
    #[allow(unsafe_code)] // the peers' APIs are unsafe: benchmark code, not the library
    fn peer_matrixmultiply(m: usize, k: usize, n: usize, w: &[f32], x: &[f32], y: &mut [f32]) {
        assert!(w.len() == n * k && x.len() == m * k && y.len() == m * n);
        // SAFETY: as for `peer_gemm`: the strides describe the checked buffers.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                x.as_ptr(),
                k as isize,
                1,
                w.as_ptr(),
                1,
                k as isize,
                0.0,
                y.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    }

    /// The naive dot loop (one accumulator, as a straightforward C loop compiles without -ffast-math).
    fn naive(k: usize, w: &[f32], x: &[f32], y: &mut [f32]) {
        let n = w.len() / k;
        for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
            for (wr, o) in w.chunks_exact(k).zip(yr.iter_mut()) {
                let mut s = 0.0f32;
                for (a, b) in wr.iter().zip(xr) {
                    s += a * b;
                }
                *o = s;
            }
        }
    }

    /// The x86 int8 sets present besides the dispatched one, to force beside it, by name:
    /// AVX-VNNI (256-bit `vpdpbusd`) and AVX2 (`vpmaddubsw`).
    fn other_int8_sets() -> Vec<(&'static str, Isa)> {
        let active = kernels::active_isa();
        let present = |isa| {
            kernels::force_isa(Some(isa));
            let ok = kernels::active_isa() == isa;
            kernels::force_isa(None);
            ok
        };
        [("avxvnni", Isa::AvxVnni), ("avx2", Isa::Avx2)]
            .into_iter()
            .filter(|&(_, isa)| isa != active && present(isa))
            .collect()
    }

    /// The int8 path one position at a time (`matvec_int8` on each row of x): what
    /// `matmul_int8` replaced.
    fn int8_per_position(w: &[BlockQ8_0], cols: usize, x: &[f32], y: &mut [f32]) {
        let rows = w.len() * 32 / cols;
        for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
            kernels::matvec_int8(w, xr, yr).unwrap();
        }
    }

    /// Benchmarks `f` as `name` in `g` with the kernels forced to `isa` (the other x86 sets
    /// beside the dispatched one).
    fn forced(
        g: &mut criterion::BenchmarkGroup<'_, CpuTime>,
        name: String,
        isa: Isa,
        f: impl FnMut(&mut criterion::Bencher<'_, CpuTime>),
    ) {
        kernels::force_isa(Some(isa));
        g.bench_function(name, f);
        kernels::force_isa(None);
    }

    fn bench_products(c: &mut Criterion<CpuTime>) {
        let shapes: &[(&str, usize, usize, usize)] = &[
            ("gemv", 1, 128, 128),
            ("gemv", 1, 512, 512),
            ("gemv", 1, 512, 2048),
            ("gemv", 1, 2048, 512),
            ("gemv", 1, 4096, 4096),
            ("gemv", 1, 288, 32000),
            // Rows ending inside a vector (300 = 18·16 + 12): the tails' share.
            ("gemv", 1, 300, 300),
            ("gemm", 16, 512, 512),
            ("gemm", 64, 512, 512),
            ("gemm", 64, 128, 384),
            ("gemm", 64, 288, 288),
            ("gemm", 64, 288, 1536),
            ("gemm", 64, 768, 288),
        ];
        eprintln!("picoformer kernels: {:?}", kernels::active_isa());
        // Where AVX-512 is the dispatched path, AVX2 is measured beside it (forced); the int8
        // products also on every other x86 int8 set present.
        let avx512 = kernels::active_isa() == Isa::Avx512;
        let int8_sets = other_int8_sets();
        for &(kind, m, k, n) in shapes {
            let mut g = c.benchmark_group(format!("{kind}/{m},{k},{n}"));
            g.throughput(Throughput::Elements((2 * m * k * n) as u64));
            let w = values(1, n * k);
            let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            // Q8_0 (and the int8 path) only where rows are whole blocks.
            let q8 = k % 32 == 0;
            let mut wq: Vec<BlockQ8_0> = vec![[0; 34]; if q8 { n * k / 32 } else { 0 }];
            if q8 {
                quantize_q8_0(&w, &mut wq).unwrap();
            }
            let x = values(2, m * k);
            let mut y = vec![0.0f32; m * n];
            g.bench_function("picoformer", |b| {
                b.iter(|| kernels::matmul(Tensor::F32(black_box(&w)), k, black_box(&x), &mut y))
            });
            if avx512 {
                forced(&mut g, "picoformer_avx2".into(), Isa::Avx2, |b| {
                    b.iter(|| kernels::matmul(Tensor::F32(black_box(&w)), k, black_box(&x), &mut y))
                });
            }
            if kind == "gemm" {
                // The weights packed once into panels (as at load time), then the product.
                let mut arena = vec![0.0f32; kernels::Panels::len(n, k).unwrap()];
                let p = kernels::Panels::pack(Tensor::F32(&w), k, &mut arena).unwrap();
                g.bench_function("picoformer_panels", |b| {
                    b.iter(|| kernels::matmul_panels(black_box(p), black_box(&x), &mut y))
                });
                if avx512 {
                    forced(&mut g, "picoformer_panels_avx2".into(), Isa::Avx2, |b| {
                        b.iter(|| kernels::matmul_panels(black_box(p), black_box(&x), &mut y))
                    });
                }
            }
            g.bench_function("picoformer_f16", |b| {
                b.iter(|| kernels::matmul(Tensor::F16(black_box(&w16)), k, black_box(&x), &mut y))
            });
            if avx512 {
                forced(&mut g, "picoformer_f16_avx2".into(), Isa::Avx2, |b| {
                    b.iter(|| {
                        kernels::matmul(Tensor::F16(black_box(&w16)), k, black_box(&x), &mut y)
                    })
                });
            }
            if q8 {
                g.bench_function("picoformer_q8_0", |b| {
                    b.iter(|| {
                        kernels::matmul(Tensor::Q8_0(black_box(&wq)), k, black_box(&x), &mut y)
                    })
                });
            }
            if q8 {
                // The int8 path: x quantised to Q8_0 (inside the call), then integer products
                // with the Q8_0 weights as stored (one position, or several at a time).
                let gemv = kind == "gemv";
                let mut int8 = |b: &mut criterion::Bencher<'_, CpuTime>| {
                    b.iter(|| match gemv {
                        true => kernels::matvec_int8(black_box(&wq), black_box(&x), &mut y),
                        false => kernels::matmul_int8(black_box(&wq), k, black_box(&x), &mut y),
                    })
                };
                g.bench_function("picoformer_int8", &mut int8);
                for &(name, isa) in &int8_sets {
                    forced(&mut g, format!("picoformer_int8_{name}"), isa, &mut int8);
                }
                if !gemv {
                    // Beside it, what it replaces: one matrix-vector product per position;
                    // both also on the portable kernels (what a microcontroller runs).
                    g.bench_function("picoformer_int8_per_position", |b| {
                        b.iter(|| int8_per_position(black_box(&wq), k, black_box(&x), &mut y))
                    });
                    forced(&mut g, "portable_int8".into(), Isa::Portable, |b| {
                        b.iter(|| kernels::matmul_int8(black_box(&wq), k, black_box(&x), &mut y))
                    });
                    forced(
                        &mut g,
                        "portable_int8_per_position".into(),
                        Isa::Portable,
                        |b| b.iter(|| int8_per_position(black_box(&wq), k, black_box(&x), &mut y)),
                    );
                }
            }
            // The int8 path over the Q8_0 weights packed once into int8 panels (as at load).
            if q8 {
                let mut arena8 = vec![0u8; kernels::Int8Panels::len(n, k).unwrap()];
                let p8 = kernels::Int8Panels::pack(&wq, k, &mut arena8).unwrap();
                let mut int8p = |b: &mut criterion::Bencher<'_, CpuTime>| {
                    b.iter(|| kernels::matmul_int8_panels(black_box(p8), black_box(&x), &mut y))
                };
                g.bench_function("picoformer_int8_panels", &mut int8p);
                for &(name, isa) in &int8_sets {
                    forced(
                        &mut g,
                        format!("picoformer_int8_panels_{name}"),
                        isa,
                        &mut int8p,
                    );
                }
            }
            g.bench_function("portable", |b| {
                b.iter(|| portable::matmul(black_box(&w), k, black_box(&x), &mut y))
            });
            g.bench_function("gemm", |b| {
                b.iter(|| peer_gemm(m, k, n, black_box(&w), black_box(&x), &mut y))
            });
            g.bench_function("matrixmultiply", |b| {
                b.iter(|| peer_matrixmultiply(m, k, n, black_box(&w), black_box(&x), &mut y))
            });
            g.bench_function("naive", |b| {
                b.iter(|| naive(k, black_box(&w), black_box(&x), &mut y))
            });
            // The machine's limits for the same work, measured between the kernels.
            g.bench_function("fma_peak", |b| {
                b.iter(|| roof::fma_peak(black_box(2 * m * k * n)))
            });
            if avx512 {
                g.bench_function("fma_peak_avx512", |b| {
                    b.iter(|| roof::fma_peak_avx512(black_box(2 * m * k * n)))
                });
            }
            if kind == "gemm" && is_x86_feature_detected!("avx512bf16") {
                g.bench_function("bf16_dot_peak", |b| {
                    b.iter(|| roof::bf16_dot_peak(black_box(2 * m * k * n)))
                });
            }
            let f16_buf: [u16; 2048] = core::array::from_fn(|i| w16[i % w16.len()].to_bits());
            g.bench_function("f16_roof", |b| {
                b.iter(|| roof::f16_roof(black_box(&f16_buf), m * k * n))
            });
            g.finish();
        }
    }

    /// Decode attention as it is usually first written: all scores, softmax, weighted sum.
    fn naive_attention(q: &[f32], keys: &[f32], values: &[f32], scale: f32, out: &mut [f32]) {
        let d = q.len();
        let len = keys.len() / d;
        let mut scores = vec![0.0f32; len];
        for (s, k) in scores.iter_mut().zip(keys.chunks_exact(d)) {
            let mut acc = 0.0f32;
            for (a, b) in q.iter().zip(k) {
                acc += a * b;
            }
            *s = acc * scale;
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        out.fill(0.0);
        for (s, v) in scores.iter().zip(values.chunks_exact(d)) {
            let p = s / sum;
            for (o, x) in out.iter_mut().zip(v) {
                *o += p * x;
            }
        }
    }

    fn bench_attention(c: &mut Criterion<CpuTime>) {
        let d = 64;
        for len in [128usize, 1024, 4096] {
            let mut g = c.benchmark_group(format!("attention/d{d}/{len}"));
            // Elements = cached positions read per call.
            g.throughput(Throughput::Elements(len as u64));
            let q = values(3, d);
            let k = values(4, len * d);
            let v = values(5, len * d);
            let k16: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
            let v16: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let scale = 0.125;
            let mut out = vec![0.0f32; d];
            g.bench_with_input(BenchmarkId::new("picoformer", "f32"), &(), |b, _| {
                b.iter(|| kernels::attention(black_box(&q), &k, &v, scale, &mut out))
            });
            if kernels::active_isa() == Isa::Avx512 {
                g.bench_with_input(BenchmarkId::new("picoformer_avx2", "f32"), &(), |b, _| {
                    kernels::force_isa(Some(Isa::Avx2));
                    b.iter(|| kernels::attention(black_box(&q), &k, &v, scale, &mut out));
                    kernels::force_isa(None);
                });
            }
            g.bench_with_input(BenchmarkId::new("picoformer", "f16"), &(), |b, _| {
                b.iter(|| kernels::attention(black_box(&q), &k16, &v16, scale, &mut out))
            });
            g.bench_with_input(BenchmarkId::new("portable", "f32"), &(), |b, _| {
                b.iter(|| portable::attention(black_box(&q), &k, &v, scale, &mut out))
            });
            g.bench_with_input(BenchmarkId::new("naive", "f32"), &(), |b, _| {
                b.iter(|| naive_attention(black_box(&q), &k, &v, scale, &mut out))
            });
            g.finish();
        }
    }

    /// Grouped-query attention: 4 query heads sharing one kv head, read once by
    /// `attention_group` against four single-head calls (each reading the cache again).
    fn bench_attention_group(c: &mut Criterion<CpuTime>) {
        let (d, heads) = (64, 4);
        let group = kernels::HeadGroup {
            dim: d,
            heads,
            stride: d,
        };
        for len in [1024usize, 4096] {
            let mut g = c.benchmark_group(format!("attention_gqa/d{d}x{heads}/{len}"));
            // Elements = (query head, cached position) pairs per call.
            g.throughput(Throughput::Elements((heads * len) as u64));
            let q = values(3, heads * d);
            let k = values(4, len * d);
            let v = values(5, len * d);
            let scale = 0.125;
            let mut out = vec![0.0f32; heads * d];
            g.bench_function("picoformer_group", |b| {
                b.iter(|| kernels::attention_group(black_box(&q), group, &k, &v, scale, &mut out))
            });
            g.bench_function("picoformer_per_head", |b| {
                b.iter(|| {
                    for (qh, oh) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                        kernels::attention(black_box(qh), &k, &v, scale, oh).unwrap()
                    }
                })
            });
            g.finish();
        }
    }

    /// Prefill attention: a chunk of `n` positions, each seeing the cache up to itself (one
    /// head of 64), by one `attention_positions` call (each block of keys read once for 8
    /// positions) against one call per position (the cache read again for each).
    fn bench_attention_prefill(c: &mut Criterion<CpuTime>) {
        let d = 64;
        for (n, rows) in [(128usize, 128usize), (64, 1024), (64, 4096)] {
            let mut g = c.benchmark_group(format!("attention_prefill/d{d}/{n}of{rows}"));
            // Elements = (position, cached position it sees) pairs per call.
            let positions = kernels::Positions {
                count: n,
                stride: d,
                causal: true,
            };
            let seen: usize = (0..n).map(|p| positions.seen(p, rows)).sum();
            g.throughput(Throughput::Elements(seen as u64));
            let q = values(3, n * d);
            let k = values(4, rows * d);
            let v = values(5, rows * d);
            let scale = 0.125;
            let mut out = vec![0.0f32; n * d];
            let one = kernels::HeadGroup::one(d);
            g.bench_function("picoformer_positions", |b| {
                b.iter(|| {
                    kernels::attention_positions(
                        black_box(&q),
                        one,
                        positions,
                        &k,
                        &v,
                        scale,
                        &mut out,
                    )
                })
            });
            g.bench_function("picoformer_per_position", |b| {
                b.iter(|| {
                    for (p, (qp, op)) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate()
                    {
                        let s = positions.seen(p, rows) * d;
                        kernels::attention(black_box(qp), &k[..s], &v[..s], scale, op).unwrap()
                    }
                })
            });
            g.finish();
        }
    }

    /// The row operations around the products, at the widths of the demo model (128) and the
    /// stories15M shape (288): RMSNorm and LayerNorm with an f16 gain, an f16 bias over 64
    /// positions, and GELU and SiLU over 64 positions of the hidden width (4n), against the
    /// portable code (the same functions forced to it).
    fn bench_rows(c: &mut Criterion<CpuTime>) {
        for n in [128usize, 288] {
            let mut g = c.benchmark_group(format!("rows/{n}"));
            let x = values(3, n);
            let g16: Vec<f16> = values(4, n).iter().map(|&v| f16::from_f32(v)).collect();
            let mut out = vec![0.0f32; n];
            let mut y = values(5, 64 * n);
            let hidden: Vec<f32> = values(6, 64 * 4 * n).iter().map(|v| 3.0 * v).collect();
            let mut h = hidden.clone();
            for (name, isa) in [("picoformer", None), ("portable", Some(Isa::Portable))] {
                g.bench_function(format!("rms_norm/{name}"), |b| {
                    kernels::force_isa(isa);
                    b.iter(|| {
                        kernels::rms_norm(black_box(&x), Some(Tensor::F16(&g16)), 1.0, &mut out)
                    });
                    kernels::force_isa(None);
                });
                g.bench_function(format!("layer_norm/{name}"), |b| {
                    kernels::force_isa(isa);
                    b.iter(|| {
                        kernels::layer_norm(black_box(&x), Some(Tensor::F16(&g16)), 1.0, &mut out)
                    });
                    kernels::force_isa(None);
                });
                g.bench_function(format!("add_bias_64/{name}"), |b| {
                    kernels::force_isa(isa);
                    b.iter(|| kernels::add_bias(black_box(&mut y), Tensor::F16(&g16)));
                    kernels::force_isa(None);
                });
                // The activations over 64 positions of a hidden row 4n wide, on a fresh copy
                // of the same values each time (the copy is in both figures).
                for (act, a) in [("gelu", Activation::Gelu), ("silu", Activation::Silu)] {
                    g.bench_function(format!("{act}_64x4/{name}"), |b| {
                        kernels::force_isa(isa);
                        b.iter(|| {
                            h.copy_from_slice(&hidden);
                            kernels::activate(a, black_box(&mut h));
                        });
                        kernels::force_isa(None);
                    });
                }
            }
            g.finish();
        }
    }

    /// The sampler over a stories15M-sized vocabulary (32,000 logits from the shared value
    /// generator): greedy, top-k 40, top-p 0.9 and min-p 0.05, each at temperature 1.
    fn bench_sampler(c: &mut Criterion<CpuTime>) {
        use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
        let n = 32_000;
        let logits = values(11, n);
        let mut work = vec![Candidate::EMPTY; Sampler::work_len(n)];
        let mut g = c.benchmark_group("sampler/32000");
        let t = SamplerConfig::temperature(1.0);
        for (name, config) in [
            ("greedy", SamplerConfig::greedy()),
            ("top_k_40", t.with_top_k(40)),
            ("top_p_0.9", t.with_top_p(0.9)),
            ("min_p_0.05", t.with_min_p(0.05)),
        ] {
            let mut sampler = Sampler::new(config, 7).expect("valid sampler settings");
            g.bench_function(name, |b| {
                b.iter(|| sampler.sample(black_box(&logits), &[], &mut work))
            });
        }
        g.finish();
    }

    criterion_group! {
        name = benches;
        config = Criterion::default().with_measurement(CpuTime::new()).sample_size(20);
        targets = bench_products, bench_attention, bench_attention_group, bench_attention_prefill, bench_rows,
            bench_sampler
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        imp::benches();
        criterion::Criterion::default()
            .with_measurement(cpu_time::CpuTime::new())
            .configure_from_args()
            .final_summary();
    }
}
