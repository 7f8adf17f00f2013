//! A whole decode step (`TransformerWrapper::step`, logits included) on a random-weight model of
//! the stories15M shape: dim 288, 6 layers, 6 heads of 48, SwiGLU hidden 768, RMSNorm, rotary,
//! vocab 32000, untied logits. Weights in f32, f16 and Q8_0 (matrices only; gains stay f32),
//! f32 KV cache, 64 cached positions (each iteration decodes position 64 and truncates back).
//!
//! Throughput is Bytes = the weight bytes one token reads (every matrix except the embedding
//! table, plus one embedding row), so criterion's B/s is the effective weight bandwidth and
//! tokens/s = 1 / time (`tools/bench_table.py` prints both).
//!
//! Weights live in transparent huge pages where the kernel allows (`MADV_HUGEPAGE`); times
//! are on the thread CPU clock.
//!
//! `prefill/stories15M/*`: the same model reading a prompt of 64 tokens in one chunk
//! (`forward_last`), with the weights as stored and with the matrices packed into prefill panels
//! (`*_panels`, `Decoder::with_prefill_panels`); throughput in tokens.
//!
//! `prefill_parts/stories15M/*`: where a prefill of 64 and of 256 tokens spends its time: the
//! whole beside its matrix products, logits and attention run alone, and the FMA peak for the
//! products' FLOPs (see `bench_prefill_parts`).
//!
//! `*/q8_0_int8`: the Q8_0 model on the int8 path (`with_int8_activations`: activations
//! quantised to Q8_0, integer dot products); `*/q8_0_int8_panels`: the same over int8 panels
//! (`with_int8_panels`: the blocks' Q8_0 matrices packed 16 rows to a vector's lanes).
//!
//! `context/stories15M/*`: the same blocks with cross-attention (context width 288, vocab 256,
//! scratch of 64 positions) reading a context of 64 rows, whose keys and values each block
//! projects once, and decoding one position over it; throughput in context rows. `*_panels`
//! packs the matrices first (the cross-attention `to_k`/`to_v` included).
//!
//! `parallel/stories15M/*`: a decode step on one thread and split over two
//! (`with_parallel(&Rayon { parts: 2 })`, `crate::parallel`), side by side, on the wall clock
//! (the thread CPU clock would miss the second thread); the Q8_0 model on the int8 path over
//! the weights as stored and over int8 panels.
//!
//! `parallel_prefill/stories15M/*`: prompts of 64 and 256 tokens in one chunk on one thread and
//! split over two by positions, wall clock: f32, f16, f32 panels and Q8_0 over int8 panels.
//!
//! `long_context/stories15M/*`: f16 weights decoding at 1,024 and 4,096 cached positions (f32
//! and f16 KV caches), one thread and two, wall clock; throughput in the bytes a step reads,
//! weights plus the cache's keys and values.
//!
//! Run: `cargo bench --bench decode -- --warm-up-time 1 --measurement-time 3`.

#[cfg(target_arch = "x86_64")]
#[path = "common/cpu_time.rs"]
mod cpu_time;

#[cfg(target_arch = "x86_64")]
#[path = "common/roof.rs"]
#[allow(dead_code)] // the f16 roof is the kernel benches'
mod roof;

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::collections::HashMap;

    use crate::cpu_time::CpuTime;
    use crate::roof;
    use criterion::{black_box, criterion_group, Criterion, Throughput};
    use picoformer::kernels::Panels;
    use picoformer::q8_0::{quantize_q8_0, BlockQ8_0};
    use picoformer::{
        f16, DecoderConfig, Error, KvCache, Scratch, Tensor, TensorView, TransformerWrapper,
        WrapperConfig,
    };

    const CFG: DecoderConfig = DecoderConfig::new(288, 6)
        .heads(6)
        .attn_dim_head(48)
        .rotary_pos_emb(true)
        .use_rmsnorm(true)
        .ff_glu(true)
        .ff_swish(true)
        .ff_mult(768.0 / 288.0)
        .ff_no_bias(true);
    const WCFG: WrapperConfig = WrapperConfig::new(32000, 1024, CFG)
        .use_abs_pos_emb(false)
        .tie_embedding(false);
    const PROMPT: usize = 64;

    fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
            })
            .collect()
    }

    enum Stored {
        F32(Vec<f32>),
        F16(Vec<f16>),
        Q8(Vec<BlockQ8_0>),
    }

    type Table = HashMap<String, (Stored, Vec<usize>)>;

    /// `v` copied into a fresh allocation whose 2 MiB-aligned interior is advised to use
    /// transparent huge pages before it is first written (what a loader mapping a model file
    /// should do too: the page size is the biggest single factor for weights beyond L3).
    fn huge<T: Copy>(v: &[T]) -> Vec<T> {
        let mut out: Vec<T> = Vec::with_capacity(v.len());
        let start = out.as_ptr() as usize;
        let end = start + std::mem::size_of_val(v);
        let (a, b) = (
            (start + (2 << 20) - 1) & !((2 << 20) - 1),
            end & !((2 << 20) - 1),
        );
        if b > a {
            #[allow(unsafe_code)] // benchmark harness code, not the library
            // SAFETY: [a, b) lies inside the allocation just reserved; MADV_HUGEPAGE only
            // changes how its pages are backed, not their contents or validity.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE)
            };
        }
        out.extend_from_slice(v);
        out
    }

    fn view<'a>(t: &'a Table, name: &str) -> Option<TensorView<'a>> {
        t.get(name).map(|(s, shape)| {
            let data = match s {
                Stored::F32(v) => Tensor::F32(v),
                Stored::F16(v) => Tensor::F16(v),
                Stored::Q8(v) => Tensor::Q8_0(v),
            };
            TensorView::new(data, shape)
        })
    }

    /// Every weight name and shape the wrapper asks for, found by offering a wrong shape and
    /// reading the expected one from the error.
    fn shapes(wcfg: WrapperConfig) -> Vec<(String, Vec<usize>)> {
        static DUMMY: [f32; 1] = [0.0];
        let mut found: Table = HashMap::new();
        loop {
            let r = TransformerWrapper::<16>::from_source(wcfg, &|name: &str| {
                if name == "rotary_pos_emb.inv_freq" {
                    return None;
                }
                view(&found, name).or(Some(TensorView::new(Tensor::F32(&DUMMY), &[1])))
            })
            .map(|_| ());
            match r {
                Ok(_) => break,
                Err(Error::WeightShape { name, expected, .. }) => {
                    let shape: Vec<usize> = expected.dims[..expected.ndim as usize]
                        .iter()
                        .map(|&d| d as usize)
                        .collect();
                    let n = shape.iter().product();
                    found.insert(name.to_string(), (Stored::F32(vec![0.0; n]), shape));
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        let mut v: Vec<_> = found.into_iter().map(|(k, (_, s))| (k, s)).collect();
        v.sort();
        v
    }

    /// The model's tensors in one weight type, and the weight bytes one decode step reads.
    fn table(kind: &str, shapes: &[(String, Vec<usize>)]) -> (Table, u64) {
        let mut t = HashMap::new();
        let mut bytes = 0u64;
        for (i, (name, shape)) in shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            let cols = *shape.last().unwrap();
            let scale = if shape.len() == 2 {
                1.0 / (cols as f32).sqrt()
            } else {
                0.1
            };
            let v = values(i as u64 + 1, n, scale);
            let s = match (kind, shape.len()) {
                ("f16", _) => {
                    let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
                    Stored::F16(huge(&h))
                }
                ("q8_0", 2) if cols % 32 == 0 => {
                    let mut q: Vec<BlockQ8_0> = vec![[0; 34]; n / 32];
                    quantize_q8_0(&v, &mut q).unwrap();
                    Stored::Q8(huge(&q))
                }
                _ => Stored::F32(huge(&v)),
            };
            let total = match &s {
                Stored::F32(v) => v.len() * 4,
                Stored::F16(v) => v.len() * 2,
                Stored::Q8(v) => v.len() * 34,
            } as u64;
            bytes += if name == "token_emb.emb.weight" {
                total / shape[0] as u64
            } else {
                total
            };
            t.insert(name.clone(), (s, shape.clone()));
        }
        (t, bytes)
    }

    /// The model of `kind` over the weights `t`: on the int8 path for `*_int8*`, over int8
    /// panels packed into `arena8` for `*_panels`.
    fn decode_model<'a>(
        kind: &str,
        t: &'a Table,
        arena8: &'a mut Vec<u8>,
    ) -> TransformerWrapper<'a, 16> {
        let stored = TransformerWrapper::<16>::from_source(WCFG, &|name: &str| view(t, name))
            .unwrap()
            .with_int8_activations(kind.contains("_int8"));
        if !kind.ends_with("_panels") {
            return stored;
        }
        *arena8 = huge(&vec![0u8; stored.int8_panels_len()]);
        stored.with_int8_panels(arena8).unwrap()
    }

    fn bench_decode(c: &mut Criterion<CpuTime>) {
        let shapes = shapes(WCFG);
        eprintln!(
            "stories15M shape: {} tensors, kernels {:?}",
            shapes.len(),
            picoformer::kernels::active_isa()
        );
        let mut g = c.benchmark_group("decode/stories15M");
        for kind in ["f32", "f16", "q8_0", "q8_0_int8", "q8_0_int8_panels"] {
            // `q8_0_int8`: the Q8_0 weights on the int8 path (`with_int8_activations`);
            // `q8_0_int8_panels`: over int8 panels (`with_int8_panels`).
            let base = kind.split("_int8").next().unwrap_or(kind);
            let (t, bytes) = table(base, &shapes);
            let mut arena8 = Vec::new();
            let model = decode_model(kind, &t, &mut arena8);
            g.throughput(Throughput::Bytes(bytes));
            bench_step(&mut g, kind.to_string(), &model, |step| step());
        }
        g.finish();
    }

    fn bench_prefill(c: &mut Criterion<CpuTime>) {
        prompt_group(c, "prefill", &["f32", "f16", "q8_0"], true);
    }

    /// Where a prefill's time goes (`prefill_parts/stories15M`): for prompts of 64 and 256
    /// tokens in one chunk, the whole `forward_last` beside its parts run alone on the same
    /// weights: `products`, the decoder's matrix-matrix products (every `attn_layers.*` matrix
    /// over `n` positions, as the decoder calls them); `logits`, the one position's logits (a
    /// matrix-vector product over 32000 rows); `attention`, every layer's and head's causal
    /// attention over the chunk (f32 cache); and `fma_peak` (`fma_peak_avx512` where there is
    /// AVX-512), register-only FMAs doing as many FLOPs as `products`, so that `fma_peak` time
    /// over `products` time is the products' share of the machine's peak. Throughput in tokens
    /// for `whole` and `attention`, FLOPs for `products` and `fma_peak`. What the parts leave of
    /// `whole` is the norms, rotary, activations, residuals, cache stores and the embedding.
    fn bench_prefill_parts(c: &mut Criterion<CpuTime>) {
        let shapes = shapes(WCFG);
        let mut g = c.benchmark_group("prefill_parts/stories15M");
        let lengths = [PROMPT, 4 * PROMPT];
        let matrices: Vec<&(String, Vec<usize>)> = shapes
            .iter()
            .filter(|(name, s)| name.starts_with("attn_layers.") && s.len() == 2)
            .collect();
        let flops = |n: usize| -> usize { matrices.iter().map(|(_, s)| 2 * n * s[0] * s[1]).sum() };
        let widest = matrices
            .iter()
            .map(|(_, s)| s[0].max(s[1]))
            .max()
            .unwrap_or(1);
        let n_max = lengths[1];
        let x = values(11, n_max * widest, 1.0);
        let mut y = vec![0.0f32; n_max * widest];
        // Attention: every head of every layer over n cached rows, causal.
        let dh = CFG.attn_dim_head;
        let (q, keys, vals) = (
            values(12, n_max * CFG.dim, 1.0),
            values(13, n_max * dh, 1.0),
            values(14, n_max * dh, 1.0),
        );
        let mut out = vec![0.0f32; n_max * CFG.dim];
        for n in lengths {
            let group = picoformer::kernels::HeadGroup::one(dh);
            let positions = picoformer::kernels::Positions {
                count: n,
                stride: CFG.dim,
                causal: true,
            };
            let span = (n - 1) * CFG.dim + dh;
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(format!("{n}/attention"), |b| {
                b.iter(|| {
                    for _layer in 0..CFG.depth {
                        for h in 0..CFG.heads {
                            picoformer::kernels::attention_positions(
                                &q[h * dh..h * dh + span],
                                group,
                                positions,
                                &keys[..n * dh],
                                &vals[..n * dh],
                                1.0 / (dh as f32).sqrt(),
                                &mut out[h * dh..h * dh + span],
                            )
                            .unwrap();
                        }
                    }
                })
            });
            let f = flops(n);
            g.throughput(Throughput::Elements(f as u64));
            g.bench_function(format!("{n}/fma_peak"), |b| {
                b.iter(|| black_box(roof::fma_peak(f)))
            });
            if std::is_x86_feature_detected!("avx512f") {
                g.bench_function(format!("{n}/fma_peak_avx512"), |b| {
                    b.iter(|| black_box(roof::fma_peak_avx512(f)))
                });
            }
        }
        for kind in ["f32", "f16"] {
            with_variants(kind, WCFG, &shapes, |runs, t| {
                // The products alone: over the weights as stored, and over panels packed
                // from them (as `with_prefill_panels` packs them).
                let views: Vec<(TensorView<'_>, usize)> = matrices
                    .iter()
                    .map(|(name, s)| (view(t, name).unwrap(), s[1]))
                    .collect();
                let mut arenas: Vec<Vec<f32>> = views
                    .iter()
                    .map(|(v, cols)| {
                        huge(&vec![
                            0.0f32;
                            Panels::len(v.data.len() / cols, *cols).unwrap()
                        ])
                    })
                    .collect();
                let panels: Vec<Panels<'_>> = views
                    .iter()
                    .zip(arenas.iter_mut())
                    .map(|((v, cols), a)| Panels::pack(v.data, *cols, a).unwrap())
                    .collect();
                // The logits do not depend on the prompt's length: measured once.
                let lw = view(t, "to_logits.weight").unwrap();
                let mut logits = vec![0.0f32; 32000];
                g.throughput(Throughput::Elements(1));
                g.bench_function(format!("{kind}/logits"), |b| {
                    b.iter(|| {
                        let xi = black_box(&x[..CFG.dim]);
                        picoformer::kernels::matvec(lw.data, xi, &mut logits).unwrap();
                    })
                });
                for n in lengths {
                    g.throughput(Throughput::Elements(n as u64));
                    for (name, m) in runs {
                        bench_prompt(&mut g, format!("{n}/{name}/whole"), m, n, true);
                    }
                    g.throughput(Throughput::Elements(flops(n) as u64));
                    g.bench_function(format!("{n}/{kind}/products"), |b| {
                        b.iter(|| {
                            for (v, cols) in &views {
                                let rows = v.data.len() / cols;
                                let (xi, yi) = (&x[..n * cols], &mut y[..n * rows]);
                                picoformer::kernels::matmul(v.data, *cols, xi, yi).unwrap();
                            }
                        })
                    });
                    g.bench_function(format!("{n}/{kind}_panels/products"), |b| {
                        b.iter(|| {
                            for p in &panels {
                                let (xi, yi) = (&x[..n * p.cols()], &mut y[..n * p.rows()]);
                                picoformer::kernels::matmul_panels(*p, xi, yi).unwrap();
                            }
                        })
                    });
                }
            });
        }
        g.finish();
    }

    /// The logits of every position (what scoring a text, `metrics::bits`, runs): 64 tokens in
    /// one chunk, each position's 32000 logits.
    fn bench_score(c: &mut Criterion<CpuTime>) {
        prompt_group(c, "score", &["f32", "q8_0"], false);
    }

    /// `group`/stories15M: a 64-token prompt in one chunk through each variant of each weight
    /// type, with the logits of the last position only (`forward_last`) or of every position.
    fn prompt_group(c: &mut Criterion<CpuTime>, group: &str, kinds: &[&str], last_only: bool) {
        let shapes = shapes(WCFG);
        let mut g = c.benchmark_group(format!("{group}/stories15M"));
        g.throughput(Throughput::Elements(PROMPT as u64));
        for &kind in kinds {
            with_variants(kind, WCFG, &shapes, |runs, _| {
                for (name, m) in runs {
                    bench_prompt(&mut g, name.clone(), m, PROMPT, last_only);
                }
            });
        }
        g.finish();
    }

    /// `name`: a prompt of `n` tokens through `m` in one chunk, with the logits of the last
    /// position only (`forward_last`) or of every position.
    fn bench_prompt<M: criterion::measurement::Measurement>(
        g: &mut criterion::BenchmarkGroup<'_, M>,
        name: String,
        m: &TransformerWrapper<'_, 16>,
        n: usize,
        last_only: bool,
    ) {
        let mut kv = vec![0.0f32; KvCache::<f32>::elements(&CFG, n)];
        let mut sb = vec![0.0f32; Scratch::elements(&CFG, n)];
        let mut cache = KvCache::new(&CFG, n, &mut kv).unwrap();
        let mut scratch = Scratch::new(&CFG, n, &mut sb).unwrap();
        let prompt: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % 32000).collect();
        let rows = if last_only { 1 } else { n };
        let mut logits = vec![0.0f32; rows * 32000];
        g.bench_function(name, |b| {
            b.iter(|| {
                let (s, p) = (&mut scratch, black_box(&prompt[..]));
                match last_only {
                    true => m.forward_last(&mut cache, s, p, None, &mut logits),
                    false => m.forward(&mut cache, s, p, None, &mut logits),
                }
                .unwrap();
                cache.reset();
            })
        });
    }

    /// `f` over the [`variants`] of the `wcfg`-shaped model with `kind` weights, and the table of
    /// weights they read.
    fn with_variants(
        kind: &str,
        wcfg: WrapperConfig,
        shapes: &[(String, Vec<usize>)],
        f: impl FnOnce(&[(String, TransformerWrapper<'_, 16>)], &Table),
    ) {
        let (t, _) = table(kind, shapes);
        let model =
            TransformerWrapper::<16>::from_source(wcfg, &|name: &str| view(&t, name)).unwrap();
        let mut arena = huge(&vec![0.0f32; model.prefill_panels_len()]);
        let mut arena8 = huge(&vec![0u8; model.int8_panels_len()]);
        f(&variants(kind, &model, &mut arena, &mut arena8), &t);
    }

    /// `model` as stored and over f32 prefill panels, and for Q8_0 on the int8 path over the
    /// weights as stored and over int8 panels, each with its bench name.
    fn variants<'a>(
        kind: &str,
        model: &TransformerWrapper<'a, 16>,
        arena: &'a mut [f32],
        arena8: &'a mut [u8],
    ) -> Vec<(String, TransformerWrapper<'a, 16>)> {
        let mut runs = vec![
            (kind.to_string(), model.clone()),
            (
                format!("{kind}_panels"),
                model.with_prefill_panels(arena).unwrap(),
            ),
        ];
        if kind == "q8_0" {
            runs.push((
                format!("{kind}_int8"),
                model.clone().with_int8_activations(true),
            ));
            runs.push((
                format!("{kind}_int8_panels"),
                model.with_int8_panels(arena8).unwrap(),
            ));
        }
        runs
    }

    fn bench_context(c: &mut Criterion<CpuTime>) {
        const CROSS: DecoderConfig = CFG.cross_attend(true);
        // A small vocabulary: the logits are not what this measures.
        const XCFG: WrapperConfig = WrapperConfig::new(256, 1024, CROSS).use_abs_pos_emb(false);
        const ROWS: usize = 64;
        let shapes = shapes(XCFG);
        let mut g = c.benchmark_group("context/stories15M");
        g.throughput(Throughput::Elements(ROWS as u64));
        let context = values(7, ROWS * CROSS.dim_context(), 1.0);
        for kind in ["f32", "q8_0"] {
            with_variants(kind, XCFG, &shapes, |runs, _| {
                let mut kv = vec![0.0f32; KvCache::<f32>::elements(&CROSS, 1)];
                let mut kc = vec![0.0f32; KvCache::<f32>::context_elements(&CROSS, ROWS)];
                let mut sb = vec![0.0f32; Scratch::elements(&CROSS, ROWS)];
                let mut cache = KvCache::with_context(&CROSS, 1, &mut kv, ROWS, &mut kc).unwrap();
                let mut scratch = Scratch::new(&CROSS, ROWS, &mut sb).unwrap();
                let mut logits = vec![0.0f32; XCFG.num_tokens];
                for (name, m) in runs {
                    g.bench_function(name, |b| {
                        b.iter(|| {
                            m.forward_last(
                                &mut cache,
                                &mut scratch,
                                &[42],
                                Some(black_box(&context)),
                                &mut logits,
                            )
                            .unwrap();
                            cache.reset();
                        })
                    });
                }
            });
        }
        g.finish();
    }

    /// `name`: a decode step of `model` at position 64 after a 64-token prompt (truncated back
    /// after each), each run by `run` (on the calling thread, or inside a pool).
    fn bench_step<M: criterion::measurement::Measurement>(
        g: &mut criterion::BenchmarkGroup<'_, M>,
        name: String,
        model: &TransformerWrapper<'_, 16>,
        run: impl Fn(&mut (dyn FnMut() + Send)),
    ) {
        bench_step_at::<M, f32>(g, name, model, PROMPT, run)
    }

    /// [`bench_step`] at position `prompt` after a prompt of that many tokens, over a KV cache
    /// of `K`.
    fn bench_step_at<M: criterion::measurement::Measurement, K: picoformer::Element>(
        g: &mut criterion::BenchmarkGroup<'_, M>,
        name: String,
        model: &TransformerWrapper<'_, 16>,
        prompt: usize,
        run: impl Fn(&mut (dyn FnMut() + Send)),
    ) {
        let cap = prompt + 1;
        let mut kv = huge(&vec![K::default(); KvCache::<K>::elements(&CFG, cap)]);
        let mut sb = vec![0.0f32; Scratch::elements(&CFG, 16)];
        let mut cache = KvCache::new(&CFG, cap, &mut kv).unwrap();
        let mut scratch = Scratch::new(&CFG, 16, &mut sb).unwrap();
        let tokens: Vec<u32> = (0..prompt as u32).map(|i| (i * 7919) % 32000).collect();
        let mut logits = vec![0.0f32; 32000];
        model
            .forward_last(&mut cache, &mut scratch, &tokens, None, &mut logits)
            .unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                run(&mut || {
                    model
                        .step(&mut cache, &mut scratch, black_box(42), &mut logits)
                        .unwrap()
                });
                cache.truncate(prompt).unwrap();
            })
        });
    }

    /// Decode steps at 1,024 and 4,096 cached positions, where attention reads about as many
    /// bytes as the weights: f16 weights, f32 and f16 KV caches, one thread and two (wall
    /// clock). Throughput: the bytes a step reads (weights and the cache's keys and values).
    fn bench_long_context(c: &mut Criterion) {
        let shapes = shapes(WCFG);
        let (pool, pool2) = two_threads();
        let (t, weight_bytes) = table("f16", &shapes);
        let mut arena8 = Vec::new();
        let one = decode_model("f16", &t, &mut arena8);
        let two = one.with_parallel(&pool);
        let mut g = c.benchmark_group("long_context/stories15M");
        for positions in [1024usize, 4096] {
            for cache in ["f32", "f16"] {
                let size = if cache == "f32" { 4 } else { 2 };
                // keys and values of every layer: 2 · layers · kv_dim · positions
                let kv_bytes = 2 * CFG.depth * CFG.kv_dim() * positions * size;
                g.throughput(Throughput::Bytes(weight_bytes + kv_bytes as u64));
                for (threads, model) in [("1", &one), ("2", &two)] {
                    let name = format!("{positions}/{cache}_cache/{threads}_thread");
                    let run = |step: &mut (dyn FnMut() + Send)| pool2.install(step);
                    match cache {
                        "f32" => bench_step_at::<_, f32>(&mut g, name, model, positions, run),
                        _ => bench_step_at::<_, f16>(&mut g, name, model, positions, run),
                    }
                }
            }
        }
        g.finish();
    }

    /// The executor of two parts, and the pool of two threads whose `install` runs a step so
    /// that its splits are rayon's cheap `join`s.
    fn two_threads() -> (picoformer::parallel::Rayon, rayon::ThreadPool) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        (picoformer::parallel::Rayon { parts: 2 }, pool)
    }

    /// A decode step on one thread and over two, wall clock.
    fn bench_parallel(c: &mut Criterion) {
        let shapes = shapes(WCFG);
        let (pool, pool2) = two_threads();
        let mut g = c.benchmark_group("parallel/stories15M");
        for kind in ["f32", "f16", "q8_0_int8", "q8_0_int8_panels"] {
            let base = kind.split("_int8").next().unwrap_or(kind);
            let (t, bytes) = table(base, &shapes);
            let mut arena8 = Vec::new();
            let one = decode_model(kind, &t, &mut arena8);
            let two = one.with_parallel(&pool);
            g.throughput(Throughput::Bytes(bytes));
            for (threads, model) in [("1", &one), ("2", &two)] {
                // On a pool thread, so that the splits are rayon's cheap `join`s.
                let name = format!("{kind}/{threads}_thread");
                bench_step(&mut g, name, model, |step| pool2.install(step));
            }
        }
        g.finish();
    }

    criterion_group! {
        name = benches;
        config = Criterion::default().with_measurement(CpuTime::new()).sample_size(20);
        targets = bench_decode, bench_prefill, bench_prefill_parts, bench_score, bench_context
    }

    /// A prompt of 64 and of 256 tokens in one chunk (`forward_last`) on one thread and split
    /// over two by positions, wall clock: f32 and f16 weights as stored, f32 panels, and Q8_0
    /// over int8 panels.
    fn bench_parallel_prefill(c: &mut Criterion) {
        let shapes = shapes(WCFG);
        let (pool, pool2) = two_threads();
        let mut g = c.benchmark_group("parallel_prefill/stories15M");
        for kind in ["f32", "f16", "q8_0"] {
            with_variants(kind, WCFG, &shapes, |runs, _| {
                let wanted = ["f32", "f32_panels", "f16", "q8_0_int8_panels"];
                for (name, one) in runs.iter().filter(|(n, _)| wanted.contains(&n.as_str())) {
                    let two = one.with_parallel(&pool);
                    for prompt in [64usize, 256] {
                        g.throughput(Throughput::Elements(prompt as u64));
                        let mut kv = vec![0.0f32; KvCache::<f32>::elements(&CFG, prompt)];
                        let mut sb = vec![0.0f32; Scratch::elements(&CFG, prompt)];
                        let mut cache = KvCache::new(&CFG, prompt, &mut kv).unwrap();
                        let mut scratch = Scratch::new(&CFG, prompt, &mut sb).unwrap();
                        let tokens: Vec<u32> =
                            (0..prompt as u32).map(|i| (i * 7919) % 32000).collect();
                        let mut logits = vec![0.0f32; 32000];
                        for (threads, m) in [("1", one), ("2", &two)] {
                            g.bench_function(format!("{prompt}/{name}/{threads}_thread"), |b| {
                                b.iter(|| {
                                    pool2.install(|| {
                                        let p = black_box(&tokens[..]);
                                        m.forward_last(
                                            &mut cache,
                                            &mut scratch,
                                            p,
                                            None,
                                            &mut logits,
                                        )
                                        .unwrap();
                                    });
                                    cache.reset();
                                })
                            });
                        }
                    }
                }
            });
        }
        g.finish();
    }

    criterion_group! {
        name = parallel;
        config = Criterion::default().sample_size(20);
        targets = bench_parallel, bench_parallel_prefill, bench_long_context
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        imp::benches();
        imp::parallel();
        criterion::Criterion::default()
            .with_measurement(cpu_time::CpuTime::new())
            .configure_from_args()
            .final_summary();
    }
}
