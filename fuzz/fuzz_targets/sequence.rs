//! Arbitrary sequences of API calls on the committed fixture models, checked by an oracle.
//!
//! Each input picks a model (cross-attending decoders `seed` (f16) and `rms_glu_gqa`, the
//! cross-attending wrapper `cross_wrap`, the tied wrapper `wrap_tied`, wrappers with absolute
//! positions in f32/f16/bf16, the general attention path's and the sublayer plans' fixtures,
//! and three of them packed into prefill panels), a cache element type
//! (f32, f16, bf16), a capacity, a context capacity and a scratch chunk, then runs up to
//! `MAX_OPS` calls: `forward`, `forward_last`, `step`, `truncate`, `reset` and
//! `Generator::run` with random sampler settings, overflow policies and buffer sizes; with
//! inputs, outputs and contexts of right and wrong sizes and tokens sometimes out of range.
//!
//! The oracle:
//! - every `Err` leaves the state unchanged: the cache length, the context length, the cached
//!   rows and the cached context (read through the model: a probe step after the error must give
//!   the same bits as before it, then is truncated away), the output buffer, and for generation
//!   the generator's history, logits and RNG state;
//! - every `Ok` agrees with a fresh full pass: the outputs equal (within `tol` of the largest
//!   magnitude: 1e-4, or eight units of an f16 or bf16 cache's rounding) those of a new cache running, in one `forward`, the whole sequence a shadow list
//!   says the cache now holds (with its context); generation also draws exactly one random number
//!   per token (checked against a copy of the sampler), reports what it produced, and leaves the
//!   cache holding the last `cache.len()` tokens of what it has seen (the last token excluded);
//! - no panic, no out-of-bounds access (run it with `-s address`).
#![no_main]

use std::ops::ControlFlow;
use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use picoformer::generate::{GenerateConfig, Generator, Overflow, StopReason};
use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
use picoformer::{
    bf16, f16, Decoder, DecoderConfig, Element, KvCache, Model, Scratch, TransformerWrapper,
};

/// Outputs agree with the fresh pass within this fraction of the largest magnitude (at least 1).
/// tests/decoder.rs measures full vs step-wise below 5e-5 on final-normed rows (f32 rounding,
/// not bit equality: the two sum in different orders).
const TOL: f32 = 1e-4;

/// [`TOL`] for a cache of `K`: with an f16 or bf16 cache, a key or value whose f32 value moved
/// by the last bit (the chunks of the two passes sum in different orders) can round to the
/// neighbouring f16 or bf16, a whole ulp of that format; so four of its ulps, relative (f16 2⁻⁸,
/// bf16 2⁻⁵). A 15-minute run of this fuzzer found an f16 case 3.2e-4 apart (`fuzz/corpus/sequence/f16-rounding`).
fn tol<K: Element>() -> f32 {
    // The format's unit roundoff: the largest 2⁻ᵏ that 1 + 2⁻ᵏ rounds away from.
    let mut u = 1.0f32;
    while K::from_f32(1.0 + u).to_f32() != 1.0 && u > f32::EPSILON {
        u *= 0.5;
    }
    TOL.max(8.0 * u)
}
/// Calls per input.
const MAX_OPS: usize = 24;

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

/// A fixture model file, 8-byte aligned so that the loader reads its tensors in place.
macro_rules! fixture {
    ($name:literal) => {{
        static FILE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
            "../../tests/fixtures/",
            $name,
            ".model.safetensors"
        )));
        (&FILE.0, $name)
    }};
}

type M = Model<'static, 4>;

/// The models, loaded once (and three of them also packed into prefill panels).
fn models() -> &'static [(&'static str, M)] {
    static MODELS: OnceLock<Vec<(&'static str, M)>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let files: [(&'static [u8], &'static str); 13] = [
            fixture!("seed"),
            fixture!("rms_glu_gqa"),
            fixture!("cross_wrap"),
            fixture!("wrap_tied"),
            fixture!("wrap_abs"),
            fixture!("wrap_f16"),
            fixture!("wrap_bf16"),
            // the general attention path: ALiBi, memory keys with rotary, the zero key with a
            // logit softclamp, xpos
            fixture!("alibi"),
            fixture!("mem_kv"),
            fixture!("zero_kv_softclamp"),
            fixture!("xpos"),
            // sublayer plans: custom letters with macaron, a reordered stack with repeated runs
            fixture!("custom_layers"),
            fixture!("execute_order"),
        ];
        let mut out = Vec::new();
        for (bytes, name) in files {
            let model = M::from_safetensors(bytes).expect("fixture loads");
            if name == "seed" || name == "cross_wrap" || name == "execute_order" {
                let arena: &'static mut [f32] =
                    Box::leak(vec![0.0f32; model.prefill_panels_len()].into_boxed_slice());
                let packed = model.with_prefill_panels(arena).expect("fixture packs");
                out.push((name, packed));
            }
            out.push((name, model));
        }
        out
    })
}

#[derive(Clone, Copy)]
enum Net<'m> {
    Dec(&'m Decoder<'static, 4>),
    Wrap(&'m TransformerWrapper<'static, 4>),
}

/// The model and the facts about it the oracle needs.
struct World<'m> {
    name: &'static str,
    net: Net<'m>,
    cfg: DecoderConfig,
    /// Output elements per position: dim (decoder) or the logits' width (wrapper: num_tokens,
    /// or logits_dim).
    width: usize,
    /// num_tokens (wrapper), 0 (decoder).
    v: usize,
    /// Elements per context row.
    wctx: usize,
    /// The input row of the probe (decoder).
    probe_row: Vec<f32>,
}

/// What the cache holds, according to the oracle: tokens (wrapper) or input rows (decoder),
/// and the context it has cached.
#[derive(Clone, Default)]
struct Shadow {
    toks: Vec<u32>,
    rows: Vec<f32>,
    ctx: Option<Vec<f32>>,
}

impl Shadow {
    fn len(&self, w: &World) -> usize {
        match w.net {
            Net::Dec(_) => self.rows.len() / w.cfg.dim,
            Net::Wrap(_) => self.toks.len(),
        }
    }
}

/// `n` values in [-2, 2) from a seed drawn from the input.
fn values(u: &mut Unstructured, n: usize) -> ArbResult<Vec<f32>> {
    let mut s: u64 = u.arbitrary::<u64>()? | 1;
    Ok((0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 22) as f32 - 2.0
        })
        .collect())
}

/// True once in `n` (never when the input is used up: defaults are the ordinary case).
fn rare(u: &mut Unstructured, n: u8) -> ArbResult<bool> {
    Ok(u.int_in_range(0..=n - 1)? == n - 1)
}

/// `n` tokens, mostly in range, sometimes just past the vocabulary.
fn tokens(u: &mut Unstructured, n: usize, v: usize) -> ArbResult<Vec<u32>> {
    (0..n)
        .map(|_| {
            Ok(if rare(u, 24)? {
                (v + u.int_in_range(0..=3usize)?) as u32
            } else {
                u.int_in_range(0..=v - 1)? as u32
            })
        })
        .collect()
}

/// A length near `right`: usually `right`, sometimes one off.
fn near(u: &mut Unstructured, right: usize) -> ArbResult<usize> {
    Ok(match u.int_in_range(0..=15u8)? {
        14 => right + 1,
        15 => right.saturating_sub(1),
        _ => right,
    })
}

/// A context for a call: none, a right one, or one of a wrong shape.
fn context(u: &mut Unstructured, w: &World, max_context: usize) -> ArbResult<Option<Vec<f32>>> {
    let wc = w.wctx;
    Ok(match u.int_in_range(0..=11u8)? {
        8 => None,
        9 => Some(values(u, (max_context + 1) * wc)?),
        10 => Some(values(u, wc + 1)?),
        11 => Some(Vec::new()),
        _ if w.cfg.cross_attend => {
            let rows = u.int_in_range(1..=max_context.max(1))?;
            Some(values(u, rows * wc)?)
        }
        _ => None,
    })
}

fn close<K: Element>(got: &[f32], want: &[f32]) -> bool {
    let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (g - w).abs() <= tol::<K>() * scale)
}

fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()))
}

/// The outputs of every position of a fresh cache (of the same element type) running the
/// whole shadow sequence in one call, with its context.
fn reference<K: Element>(w: &World, sh: &Shadow) -> Vec<f32> {
    let n = sh.len(w);
    if n == 0 {
        return Vec::new();
    }
    let cfg = &w.cfg;
    let rows = sh.ctx.as_ref().map_or(1, |c| c.len() / w.wctx).max(1);
    let mut kv = vec![K::NAN; KvCache::<K>::elements(cfg, n)];
    let mut kc = vec![K::NAN; KvCache::<K>::context_elements(cfg, rows)];
    let mut sb = vec![f32::NAN; Scratch::elements(cfg, 5)];
    let mut cache = KvCache::with_context(cfg, n, &mut kv, rows, &mut kc).expect("fresh cache");
    let mut scratch = Scratch::new(cfg, 5, &mut sb).expect("fresh scratch");
    let mut out = vec![f32::NAN; n * w.width];
    let ctx = sh.ctx.as_deref();
    let r = match w.net {
        Net::Dec(d) => d.forward(&mut cache, &mut scratch, &sh.rows, ctx, &mut out),
        Net::Wrap(t) => t.forward(&mut cache, &mut scratch, &sh.toks, ctx, &mut out),
    };
    if let Err(e) = r {
        panic!(
            "{}: the fresh full pass over {n} positions fails: {e:?}",
            w.name
        );
    }
    out
}

/// The state of the cache that a failed call must not change. `probe` is the output of one
/// more position run on the cache (then truncated away), as bits: it reads every cached row and
/// the cached context, so equal bits mean equal contents (the library gives no way to read the
/// buffers while the cache borrows them).
#[derive(Debug, PartialEq)]
struct Snap {
    len: usize,
    context_len: Option<usize>,
    probe: Option<Vec<u32>>,
}

fn probe<K: Element>(w: &World, cache: &mut KvCache<'_, K>, scratch: &mut Scratch<'_>) -> Snap {
    let (len, context_len) = (cache.len(), cache.context_len());
    let mut probe = None;
    if cache.remaining() > 0 && !(w.cfg.cross_attend && context_len.is_none()) {
        let mut out = vec![f32::NAN; w.width];
        let r = match w.net {
            Net::Dec(d) => d.step(cache, scratch, &w.probe_row, None, &mut out),
            Net::Wrap(t) => t.step(cache, scratch, (len % w.v) as u32, &mut out),
        };
        match r {
            Ok(()) => {
                assert_eq!(cache.len(), len + 1, "{}: probe step", w.name);
                cache.truncate(len).expect("truncating the probe away");
                probe = Some(out.iter().map(|x| x.to_bits()).collect());
            }
            Err(_) => assert_eq!(cache.len(), len, "{}: failed probe moved the cache", w.name),
        }
    }
    assert_eq!(
        cache.context_len(),
        context_len,
        "{}: probe changed the context",
        w.name
    );
    Snap {
        len,
        context_len,
        probe,
    }
}

/// A random sampler configuration, sometimes with a value out of range.
fn sampler_config(u: &mut Unstructured, v: usize) -> ArbResult<SamplerConfig> {
    let temperature = match u.int_in_range(0..=7u8)? {
        0 | 1 => 0.0,
        2 => 1.0,
        3 => 0.7,
        4 => 2.5,
        5 => f32::NAN,
        6 => -1.0,
        _ => u.int_in_range(1..=400u16)? as f32 / 100.0,
    };
    let unit = |u: &mut Unstructured| -> ArbResult<Option<f32>> {
        Ok(match u.int_in_range(0..=9u8)? {
            0..=3 => None,
            4 => Some(0.0),
            5 => Some(1.0),
            6 => Some(if u.arbitrary()? { 1.5 } else { f32::NAN }),
            _ => Some(u.int_in_range(0..=100u8)? as f32 / 100.0),
        })
    };
    let top_k = match u.int_in_range(0..=5u8)? {
        0..=2 => None,
        3 => Some(0),
        _ => Some(u.int_in_range(1..=v + 2)?),
    };
    let top_p = unit(u)?;
    let min_p = unit(u)?;
    let repetition_penalty = match u.int_in_range(0..=7u8)? {
        0..=2 => 1.0,
        3 => 1.3,
        4 => 0.8,
        5 => 0.0,
        6 => f32::INFINITY,
        _ => 5.0,
    };
    let repetition_window = u.int_in_range(0..=8usize)?;
    Ok(SamplerConfig {
        temperature,
        top_k,
        top_p,
        min_p,
        repetition_penalty,
        repetition_window,
    })
}

/// One session: a cache of `K` and a sequence of calls.
fn session<K: Element>(w: &World, u: &mut Unstructured) -> ArbResult<()> {
    let cfg = w.cfg;
    let capacity = u.int_in_range(1..=20usize)?;
    let max_context = if cfg.cross_attend {
        u.int_in_range(1..=6usize)?
    } else {
        0
    };
    let chunk = u.int_in_range(1..=4usize)?;
    let mut kv = vec![K::NAN; KvCache::<K>::elements(&cfg, capacity)];
    let mut kc = vec![K::NAN; KvCache::<K>::context_elements(&cfg, max_context)];
    let mut sb = vec![f32::NAN; Scratch::elements(&cfg, chunk)];
    let mut cache = KvCache::with_context(&cfg, capacity, &mut kv, max_context, &mut kc)
        .expect("cache over buffers of the right size");
    let mut scratch = Scratch::new(&cfg, chunk, &mut sb).expect("scratch");
    let mut sh = Shadow::default();
    let (width, v, dim) = (w.width, w.v, cfg.dim);
    let is_wrap = matches!(w.net, Net::Wrap(_));

    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        // A cross-attending model without a cached context mostly gets a forward first (which
        // usually brings one), so that steps and generation (which give no context) run.
        let op = match cfg.cross_attend && cache.context_len().is_none() && !rare(u, 4)? {
            true => 0,
            false => u.int_in_range(0..=9u8)?,
        };
        let before = probe(w, &mut cache, &mut scratch);
        let old = sh.len(w);
        assert_eq!(before.len, old, "{}: cache length vs shadow", w.name);
        match op {
            // forward
            0..=2 => {
                let n = match rare(u, 16)? {
                    true => 0,
                    false => u.int_in_range(1..=cache.remaining() + 2)?,
                };
                let ctx = context(u, w, max_context)?;
                let out_len = near(u, n * width)?;
                let sentinel = f32::from_bits(0x7fc0_1234);
                let mut out = vec![sentinel; out_len];
                let (r, toks, rows) = match w.net {
                    Net::Dec(d) => {
                        let len = near(u, n * dim)?;
                        let rows = values(u, len)?;
                        let r =
                            d.forward(&mut cache, &mut scratch, &rows, ctx.as_deref(), &mut out);
                        (r, Vec::new(), rows)
                    }
                    Net::Wrap(t) => {
                        let toks = tokens(u, n, v)?;
                        let r =
                            t.forward(&mut cache, &mut scratch, &toks, ctx.as_deref(), &mut out);
                        (r, toks, Vec::new())
                    }
                };
                match r {
                    Ok(()) => {
                        let had_ctx = before.context_len.is_some();
                        sh.toks.extend_from_slice(&toks);
                        sh.rows.extend_from_slice(&rows);
                        if cfg.cross_attend && !had_ctx {
                            sh.ctx = ctx;
                        }
                        let new = sh.len(w);
                        assert_eq!(cache.len(), new, "{}: forward Ok, cache length", w.name);
                        let want = reference::<K>(w, &sh);
                        let got = &out[..];
                        let want = &want[old * width..];
                        assert!(
                            close::<K>(got, want),
                            "{}: forward of {} after {old}: differs from the full pass by {}",
                            w.name,
                            new - old,
                            max_diff(got, want)
                        );
                    }
                    Err(e) => {
                        let after = probe(w, &mut cache, &mut scratch);
                        assert_eq!(
                            before, after,
                            "{}: forward Err({e:?}) changed the cache",
                            w.name
                        );
                        assert!(
                            out.iter().all(|x| x.to_bits() == sentinel.to_bits()),
                            "{}: forward Err({e:?}) wrote the output",
                            w.name
                        );
                    }
                }
            }
            // step (and the wrapper's forward_last)
            3..=4 => {
                let sentinel = f32::from_bits(0x7fc0_4321);
                let last = is_wrap && u.arbitrary::<bool>()?;
                let mut n = 1;
                let (r, toks, rows, ctx, mut out) = match w.net {
                    Net::Dec(d) => {
                        let ctx = context(u, w, max_context)?;
                        let len = near(u, dim)?;
                        let rows = values(u, len)?;
                        let mut out = vec![sentinel; near(u, dim)?];
                        let r = d.step(&mut cache, &mut scratch, &rows, ctx.as_deref(), &mut out);
                        (r, Vec::new(), rows, ctx, out)
                    }
                    Net::Wrap(t) if last => {
                        n = match rare(u, 16)? {
                            true => 0,
                            false => u.int_in_range(1..=cache.remaining() + 1)?,
                        };
                        let ctx = context(u, w, max_context)?;
                        let toks = tokens(u, n, v)?;
                        let mut out = vec![sentinel; near(u, v)?];
                        let r = t.forward_last(
                            &mut cache,
                            &mut scratch,
                            &toks,
                            ctx.as_deref(),
                            &mut out,
                        );
                        (r, toks, Vec::new(), ctx, out)
                    }
                    Net::Wrap(t) => {
                        let toks = tokens(u, 1, v)?;
                        let mut out = vec![sentinel; near(u, v)?];
                        let r = t.step(&mut cache, &mut scratch, toks[0], &mut out);
                        (r, toks, Vec::new(), None, out)
                    }
                };
                match r {
                    Ok(()) => {
                        sh.toks.extend_from_slice(&toks);
                        sh.rows.extend_from_slice(&rows);
                        if cfg.cross_attend && before.context_len.is_none() {
                            sh.ctx = ctx;
                        }
                        let new = sh.len(w);
                        assert_eq!(new, old + n);
                        assert_eq!(cache.len(), new, "{}: step Ok, cache length", w.name);
                        let want = reference::<K>(w, &sh);
                        let want = &want[(new - 1) * width..];
                        assert!(
                            close::<K>(&out, want),
                            "{}: step/forward_last at {old}+{n} differs from the full pass by {}",
                            w.name,
                            max_diff(&out, want)
                        );
                    }
                    Err(e) => {
                        let after = probe(w, &mut cache, &mut scratch);
                        assert_eq!(
                            before, after,
                            "{}: step Err({e:?}) changed the cache",
                            w.name
                        );
                        assert!(
                            out.iter_mut().all(|x| x.to_bits() == sentinel.to_bits()),
                            "{}: step Err({e:?}) wrote the output",
                            w.name
                        );
                    }
                }
            }
            // truncate
            5 => {
                let to = u.int_in_range(0..=old + 2)?;
                match cache.truncate(to) {
                    Ok(()) => {
                        assert!(to <= old);
                        assert_eq!(cache.len(), to);
                        assert_eq!(
                            cache.context_len(),
                            before.context_len,
                            "truncate kept the context"
                        );
                        sh.toks.truncate(to);
                        sh.rows.truncate(to * dim);
                        // The rows kept are the ones computed before: compare with the fresh
                        // pass through the probe.
                        if let Some(p) = probe(w, &mut cache, &mut scratch).probe {
                            let mut with = sh.clone();
                            match w.net {
                                Net::Dec(_) => with.rows.extend_from_slice(&w.probe_row),
                                Net::Wrap(_) => with.toks.push((to % v) as u32),
                            }
                            let want = reference::<K>(w, &with);
                            let got: Vec<f32> = p.iter().map(|&b| f32::from_bits(b)).collect();
                            let want = &want[to * width..];
                            assert!(
                                close::<K>(&got, want),
                                "{}: after truncate({to}) of {old}: a step differs from the full pass by {}",
                                w.name,
                                max_diff(&got, want)
                            );
                        }
                    }
                    Err(e) => {
                        assert!(to > old);
                        let after = probe(w, &mut cache, &mut scratch);
                        assert_eq!(
                            before, after,
                            "{}: truncate Err({e:?}) changed the cache",
                            w.name
                        );
                    }
                }
            }
            // reset
            6 => {
                cache.reset();
                assert_eq!((cache.len(), cache.context_len()), (0, None));
                sh = Shadow::default();
            }
            // generation
            _ => {
                let Net::Wrap(t) = w.net else { continue };
                generation(w, t, u, &mut cache, &mut scratch, &mut sh, before)?;
            }
        }
    }
    Ok(())
}

/// A generator with random settings and buffer sizes, run one to three times.
fn generation<K: Element>(
    w: &World,
    t: &TransformerWrapper<'static, 4>,
    u: &mut Unstructured,
    cache: &mut KvCache<'_, K>,
    scratch: &mut Scratch<'_>,
    sh: &mut Shadow,
    mut before: Snap,
) -> ArbResult<()> {
    let v = w.v;
    let sc = sampler_config(u, v)?;
    let seed: u64 = u.arbitrary()?;
    let Ok(sampler) = Sampler::new(sc, seed) else {
        assert!(sc.validate().is_err());
        return Ok(());
    };
    let overflow = if u.arbitrary()? {
        Overflow::Stop
    } else {
        // keep = 0 or capacity + 1 (refused) now and then.
        let keep = u.int_in_range(1..=cache.capacity())?;
        Overflow::Slide {
            keep: match u.int_in_range(0..=15u8)? {
                14 => 0,
                15 => cache.capacity() + 1,
                _ => keep,
            },
        }
    };
    let mut gc = GenerateConfig::new(u.int_in_range(0..=12usize)?).overflow(overflow);
    if rare(u, 4)? {
        gc = gc.end_token(u.int_in_range(0..=v - 1)? as u32);
    }
    let need = gc.history_len(sc.repetition_window);
    // Logits (and the sampler's work) as wide as the model's logits, logits_dim if it is set.
    let mut logits = vec![f32::NAN; near(u, w.width)?.max(1)];
    let mut work = vec![Candidate::EMPTY; near(u, w.width)?];
    let history_len = match u.int_in_range(0..=7u8)? {
        6 => need.saturating_sub(1),
        7 => need + 5,
        _ => need,
    };
    let mut history = vec![u32::MAX; history_len];
    let Ok(mut gen) = Generator::new(sampler, gc, &mut logits, &mut work, &mut history) else {
        return Ok(());
    };
    let runs = u.int_in_range(1..=3u8)?;
    for run in 0..runs {
        if run > 0 {
            before = probe(w, cache, scratch);
        }
        let old = sh.len(w);
        let n = match rare(u, 16)? {
            true => 0,
            false => u.int_in_range(1..=cache.capacity() + 3)?,
        };
        let prompt = tokens(u, n, v)?;
        let break_after = if rare(u, 4)? {
            Some(u.int_in_range(1..=6usize)?)
        } else {
            None
        };
        let hist = gen.history().to_vec();
        let rng = *gen.sampler().rng();
        let logits_before: Vec<u32> = gen.logits().iter().map(|x| x.to_bits()).collect();
        let mut twin = *gen.sampler();
        let mut produced = Vec::new();
        let r = gen.run(t, cache, scratch, &prompt, |tok| {
            produced.push(tok);
            if Some(produced.len()) == break_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match r {
            Err(e) => {
                let after = probe(w, cache, scratch);
                let ctx = format!(
                    "{}: generation Err({e:?}) ({:?}, capacity {}, {old} cached, prompt {n}, produced {})",
                    w.name,
                    gc.overflow,
                    cache.capacity(),
                    produced.len()
                );
                assert_eq!(before, after, "{ctx}: changed the cache");
                assert_eq!(gen.history(), &hist[..], "{ctx}: changed the history");
                assert_eq!(*gen.sampler().rng(), rng, "{ctx}: advanced the RNG");
                let now: Vec<u32> = gen.logits().iter().map(|x| x.to_bits()).collect();
                assert!(now == logits_before, "{ctx}: changed the logits");
                assert!(produced.is_empty(), "{ctx}: reported tokens");
            }
            Ok(g) => {
                let ctx = format!(
                    "{}: generation {g:?} ({:?}, capacity {}, {old} cached, prompt {n})",
                    w.name,
                    gc.overflow,
                    cache.capacity()
                );
                assert_eq!(g.new_tokens, produced.len(), "{ctx}");
                assert_eq!(g.last, produced.last().copied(), "{ctx}");
                assert!(g.new_tokens <= gc.max_new_tokens, "{ctx}");
                assert!(produced.iter().all(|&x| (x as usize) < v), "{ctx}");
                match g.reason {
                    StopReason::MaxTokens => assert_eq!(g.new_tokens, gc.max_new_tokens, "{ctx}"),
                    StopReason::EndToken => assert_eq!(g.last, gc.end_token, "{ctx}"),
                    StopReason::Stopped => assert_eq!(Some(g.new_tokens), break_after, "{ctx}"),
                    StopReason::CacheFull => {
                        assert_eq!(gc.overflow, Overflow::Stop, "{ctx}");
                        assert_eq!(cache.remaining(), 0, "{ctx}");
                    }
                }
                // One random number per token unless greedy.
                if !sc.is_greedy() {
                    for _ in 0..g.new_tokens {
                        twin.rng().next_u32();
                    }
                }
                assert_eq!(*gen.sampler().rng(), *twin.rng(), "{ctx}: RNG draws");
                // The context survives, slides included.
                assert_eq!(cache.context_len(), before.context_len, "{ctx}: context");
                // The cache holds the last cache.len() tokens seen (the last one excluded).
                let mut seen = sh.toks.clone();
                seen.extend_from_slice(&prompt);
                seen.extend_from_slice(&produced[..produced.len().saturating_sub(1)]);
                let len = cache.len();
                assert!(len <= seen.len() && len > 0, "{ctx}: cache length {len}");
                sh.toks = seen[seen.len() - len..].to_vec();
                if g.reencodes == 0
                    && !(prompt.len() > cache.capacity() - old.min(cache.capacity()))
                {
                    assert_eq!(len, seen.len(), "{ctx}: no slide, nothing dropped");
                }
                // History: a suffix of this run's tokens.
                let mut run_toks = prompt.clone();
                run_toks.extend_from_slice(&produced);
                let h = gen.history();
                assert!(
                    run_toks.ends_with(h),
                    "{ctx}: history {h:?} of {run_toks:?}"
                );
                assert!(
                    h.len() >= need.min(run_toks.len()),
                    "{ctx}: history too short"
                );
                // The logits are those of the last cached position.
                let want = reference::<K>(w, sh);
                let want = &want[(len - 1) * w.width..];
                assert!(
                    close::<K>(gen.logits(), want),
                    "{ctx}: logits differ from the full pass by {}",
                    max_diff(gen.logits(), want)
                );
            }
        }
    }
    Ok(())
}

fn world<'m>(name: &'static str, model: &'m M) -> World<'m> {
    let mc = model.config();
    let cfg = mc.decoder;
    let (net, width, v) = match model {
        Model::Decoder(d) => (Net::Dec(d), cfg.dim, 0),
        Model::Wrapper(t) => (
            Net::Wrap(t),
            t.config().logits_width(),
            t.config().num_tokens,
        ),
    };
    World {
        name,
        net,
        cfg,
        width,
        v,
        wctx: cfg.dim_context(),
        probe_row: (0..cfg.dim)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
            .collect(),
    }
}

fn one(data: &[u8]) -> ArbResult<()> {
    let mut u = Unstructured::new(data);
    let models = models();
    let (name, model) = &models[u.choose_index(models.len())?];
    let w = world(name, model);
    match u.int_in_range(0..=2u8)? {
        0 => session::<f32>(&w, &mut u),
        1 => session::<f16>(&w, &mut u),
        _ => session::<bf16>(&w, &mut u),
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = one(data);
});
