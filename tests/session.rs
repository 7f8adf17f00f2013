//! The owned session (feature `std`): the same greedy tokens as the explicit no_std API over
//! caller buffers on the bundled demo model, its stop reasons, and typed errors for a bad file,
//! a raw decoder, a cross-attending model and an impossible capacity.

use std::ops::ControlFlow;

use picoformer::generate::{GenerateConfig, GenerateError, Generator, Overflow, StopReason};
use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
use picoformer::session::{Session, SessionConfig, SessionError};
use picoformer::{KvCache, Model, Scratch};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.safetensors");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn prompt() -> Vec<u32> {
    b"It is a truth".iter().map(|&b| u32::from(b)).collect()
}

/// The tokens of `Generator::run` over buffers sized by hand, as a no_std caller does.
fn explicit(capacity: usize, config: GenerateConfig, sampler: Sampler) -> (Vec<u32>, StopReason) {
    let bytes = std::fs::read(DEMO).unwrap();
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let file = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
    let Model::Wrapper(model) = Model::<16>::from_safetensors(file).unwrap() else {
        panic!("the demo model is a TransformerWrapper")
    };
    let d = model.config().attn_layers;
    let v = model.config().logits_width();
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, capacity)];
    let mut arena = vec![0.0f32; Scratch::elements(&d, 8)];
    let mut cache = KvCache::new(&d, capacity, &mut kv).unwrap();
    let mut scratch = Scratch::new(&d, 8, &mut arena).unwrap();
    let (mut logits, mut work) = (
        vec![0.0f32; v],
        vec![Candidate::EMPTY; Sampler::work_len(v)],
    );
    let mut history = vec![0u32; config.history_len(sampler.config().repetition_window) + 1];
    let mut g = Generator::new(sampler, config, &mut logits, &mut work, &mut history).unwrap();
    let mut tokens = Vec::new();
    let done = g
        .run(&model, &mut cache, &mut scratch, &prompt(), |t| {
            tokens.push(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    (tokens, done.reason)
}

#[test]
fn greedy_tokens_equal_the_explicit_api() {
    let config = GenerateConfig::new(40);
    let mut session = Session::open(DEMO, SessionConfig::new().capacity(64)).unwrap();
    let (tokens, done) = session.generate_tokens(&prompt(), config).unwrap();
    let greedy = Sampler::new(SamplerConfig::greedy(), 0).unwrap();
    let (expected, reason) = explicit(64, config, greedy);
    assert_eq!(tokens, expected);
    assert_eq!(
        (done.reason, reason),
        (StopReason::MaxTokens, StopReason::MaxTokens)
    );
    assert_eq!(done.new_tokens, 40);
    // A second call starts from an empty cache again: the same greedy tokens.
    assert_eq!(
        session.generate_tokens(&prompt(), config).unwrap().0,
        expected
    );
}

#[test]
fn sampled_tokens_equal_the_explicit_api_and_the_rng_carries_over() {
    let scfg = SamplerConfig::temperature(0.8)
        .with_top_p(0.9)
        .with_repetition_penalty(1.2, 16);
    let config = GenerateConfig::new(30).overflow(Overflow::Slide { keep: 16 });
    let bytes = std::fs::read(DEMO).unwrap();
    let mut session = Session::from_vec(bytes, SessionConfig::new().capacity(32).chunk(8))
        .unwrap()
        .with_sampler(scfg, 7)
        .unwrap();
    let (tokens, done) = session.generate_tokens(&prompt(), config).unwrap();
    let (expected, _) = explicit(32, config, Sampler::new(scfg, 7).unwrap());
    assert_eq!(tokens, expected);
    assert!(done.reencodes >= 1);
    // The random state went on: the next run differs (with overwhelming probability).
    let (again, _) = session.generate_tokens(&prompt(), config).unwrap();
    assert_ne!(again, tokens);
}

#[test]
fn stop_reasons() {
    let mut session = Session::open(DEMO, SessionConfig::new().capacity(20)).unwrap();
    let p = prompt(); // 13 tokens
    let (tokens, done) = session.generate_tokens(&p, GenerateConfig::new(5)).unwrap();
    assert_eq!((tokens.len(), done.reason), (5, StopReason::MaxTokens));
    let (tokens, done) = session
        .generate_tokens(&p, GenerateConfig::new(100))
        .unwrap();
    assert_eq!(done.reason, StopReason::CacheFull);
    // 13 prompt positions + 7 steps fill 20; the 8th token is sampled but not run.
    assert_eq!(tokens.len(), 20 - p.len() + 1);
    let end = tokens[2];
    let done = session
        .generate(&p, GenerateConfig::new(100).end_token(end), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(done.reason, StopReason::EndToken);
    let mut n = 0;
    let done = session
        .generate(&p, GenerateConfig::new(100), |_| {
            n += 1;
            if n == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((done.reason, done.new_tokens), (StopReason::Stopped, 3));
}

#[test]
fn generation_errors_are_typed() {
    let mut session = Session::open(DEMO, SessionConfig::new().capacity(8)).unwrap();
    let cfg = GenerateConfig::new(4);
    let err = session.generate_tokens(&[], cfg).unwrap_err();
    assert!(
        matches!(err, SessionError::Generate(GenerateError::EmptyPrompt)),
        "{err}"
    );
    let err = session.generate_tokens(&[300], cfg).unwrap_err();
    assert!(
        matches!(err, SessionError::Generate(GenerateError::Model(_))),
        "{err}"
    );
    // 13 tokens do not fit 8 positions without a sliding window.
    let err = session.generate_tokens(&prompt(), cfg).unwrap_err();
    assert!(
        matches!(err, SessionError::Generate(GenerateError::Model(_))),
        "{err}"
    );
    let slide = cfg.overflow(Overflow::Slide { keep: 9 });
    let err = session.generate_tokens(&prompt(), slide).unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Generate(GenerateError::InvalidWindow { .. })
        ),
        "{err}"
    );
    let err = session
        .set_sampler(SamplerConfig::temperature(f32::NAN), 0)
        .unwrap_err();
    assert!(matches!(err, SessionError::Sampler(_)), "{err}");
    // Still usable after every error.
    let keep = cfg.overflow(Overflow::Slide { keep: 4 });
    assert_eq!(session.generate_tokens(&prompt(), keep).unwrap().0.len(), 4);
}

#[test]
fn bad_files_are_typed_errors() {
    let missing = Session::open("/nonexistent/model.safetensors", SessionConfig::new());
    assert!(
        matches!(missing, Err(SessionError::Io { .. })),
        "{missing:?}"
    );
    let dir = Session::open(FIXTURES, SessionConfig::new());
    assert!(matches!(dir, Err(SessionError::NotAFile(_))), "{dir:?}");
    let text = Session::open(
        concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"),
        SessionConfig::new(),
    );
    assert!(matches!(text, Err(SessionError::Load(_))), "{text:?}");
    let empty = Session::from_bytes(&[], SessionConfig::new());
    assert!(matches!(empty, Err(SessionError::Load(_))), "{empty:?}");
    // Every truncation of the demo model's header and first tensor.
    let bytes = std::fs::read(DEMO).unwrap();
    for len in (0..4096).step_by(37) {
        let cut = Session::from_vec(bytes[..len].to_vec(), SessionConfig::new());
        assert!(matches!(cut, Err(SessionError::Load(_))), "{len}");
    }
    // A raw Decoder has no tokens; a cross-attending wrapper needs a context.
    let raw = Session::open(
        format!("{FIXTURES}/mqa.model.safetensors"),
        SessionConfig::new(),
    );
    assert!(matches!(raw, Err(SessionError::NotAWrapper)), "{raw:?}");
    let cross = Session::open(
        format!("{FIXTURES}/cross_wrap.model.safetensors"),
        SessionConfig::new(),
    );
    assert!(matches!(cross, Err(SessionError::Model(_))), "{cross:?}");
    // Displayed, with a source where there is one.
    let e = missing.unwrap_err();
    assert!(e.to_string().contains("/nonexistent/model.safetensors"));
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn misaligned_borrowed_bytes_are_refused_owned_ones_copied() {
    let bytes = std::fs::read(DEMO).unwrap();
    let mut words = vec![0u64; bytes.len() / 8 + 2];
    let buf = bytemuck::cast_slice_mut::<u64, u8>(&mut words);
    buf[1..1 + bytes.len()].copy_from_slice(&bytes);
    let shifted = &buf[1..1 + bytes.len()];
    let err = Session::from_bytes(shifted, SessionConfig::new()).unwrap_err();
    assert!(err.to_string().contains("align"), "{err}");
    let mut owned = Session::from_vec(shifted.to_vec(), SessionConfig::new().capacity(32)).unwrap();
    assert_eq!(
        owned
            .generate_tokens(&prompt(), GenerateConfig::new(3))
            .unwrap()
            .0
            .len(),
        3
    );
}

#[test]
fn impossible_capacities_are_errors_not_aborts() {
    for capacity in [usize::MAX, usize::MAX / 4, usize::MAX / 1024] {
        let r = Session::open(DEMO, SessionConfig::new().capacity(capacity));
        assert!(
            matches!(
                r,
                Err(SessionError::OutOfMemory {
                    what: "the KV cache",
                    ..
                })
            ),
            "{capacity}: {r:?}"
        );
    }
    let r = Session::open(DEMO, SessionConfig::new().chunk(usize::MAX));
    assert!(matches!(r, Err(SessionError::OutOfMemory { .. })), "{r:?}");
    let r = Session::open(DEMO, SessionConfig::new().capacity(0));
    assert!(
        matches!(r, Err(SessionError::InvalidCapacity { capacity: 0, .. })),
        "{r:?}"
    );
    let r = Session::open(DEMO, SessionConfig::new().chunk(0));
    assert!(matches!(r, Err(SessionError::InvalidChunk)), "{r:?}");
    // Absolute positions: no position past the table.
    let abs = format!("{FIXTURES}/wrap_abs.model.safetensors");
    let r = Session::open(&abs, SessionConfig::new().capacity(17));
    assert!(
        matches!(
            r,
            Err(SessionError::InvalidCapacity {
                capacity: 17,
                max: 16
            })
        ),
        "{r:?}"
    );
    let mut s = Session::open(&abs, SessionConfig::new()).unwrap();
    assert_eq!(s.capacity(), 16);
    let (tokens, done) = s
        .generate_tokens(&[1, 2, 3], GenerateConfig::new(100))
        .unwrap();
    assert_eq!((tokens.len(), done.reason), (14, StopReason::CacheFull));
}

#[test]
fn errors_work_with_question_mark() {
    fn run() -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        let session = Session::open(DEMO, SessionConfig::new())?;
        Ok(session.buffer_bytes())
    }
    assert!(run().unwrap() > 0);
}
