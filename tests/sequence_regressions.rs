//! Minimal reproductions of what the sequence fuzzer (`fuzz/fuzz_targets/sequence.rs`) found.
//! Each was a library bug, fixed; the test keeps it fixed.

use std::ops::ControlFlow;

use picoformer::generate::{GenerateConfig, Generator, Overflow};
use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
use picoformer::{KvCache, Model, Scratch};

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

/// `wrap_abs`: a wrapper with absolute positions, `max_seq_len` 16, 50 tokens.
static WRAP_ABS: &Aligned<[u8]> = &Aligned(*include_bytes!("fixtures/wrap_abs.model.safetensors"));

/// Generation with a cache larger than `max_seq_len` on a model with absolute positions: the
/// prompt fits the cache and `max_seq_len`, so the run starts, reports tokens, and the step at
/// position `max_seq_len` fails with `PositionOutOfRange`. The error comes back after the cache
/// moved (0 → 16 positions), six tokens were reported, and the history and the RNG changed:
/// a failed call changed the state. Either `Generator::run` treats `max_seq_len` as the cache's
/// end (stop with `StopReason::CacheFull`, or slide, as for a full cache), or it refuses before
/// anything runs. Found by the sequence fuzzer (`wrap_bf16`, `Slide { keep: 4 }`, capacity 19,
/// prompt 11).
#[test]
fn generation_past_max_seq_len_changes_nothing_or_stops() {
    let Model::Wrapper(model) = Model::<4>::from_safetensors(&WRAP_ABS.0).unwrap() else {
        panic!("wrap_abs is a wrapper")
    };
    let (v, max_seq_len) = (model.config().num_tokens, model.config().max_seq_len);
    assert_eq!(max_seq_len, 16);
    let d = model.config().attn_layers;
    for overflow in [Overflow::Stop, Overflow::Slide { keep: 4 }] {
        let capacity = 19; // > max_seq_len
        let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, capacity)];
        let mut sb = vec![0.0f32; Scratch::elements(&d, 4)];
        let mut cache = KvCache::new(&d, capacity, &mut kv).unwrap();
        let mut scratch = Scratch::new(&d, 4, &mut sb).unwrap();
        let sampler = Sampler::new(SamplerConfig::temperature(1.0), 7).unwrap();
        let config = GenerateConfig::new(10).overflow(overflow);
        let (mut logits, mut work, mut history) =
            (vec![0.0f32; v], vec![Candidate::EMPTY; v], vec![0u32; 8]);
        let mut generator =
            Generator::new(sampler, config, &mut logits, &mut work, &mut history).unwrap();
        let rng = *generator.sampler().rng();
        let prompt: Vec<u32> = (0..11).map(|i| (i * 7 % v) as u32).collect();
        let mut reported = 0;
        let result = generator.run(&model, &mut cache, &mut scratch, &prompt, |_| {
            reported += 1;
            ControlFlow::Continue(())
        });
        if let Err(e) = result {
            // A failed call must change nothing.
            assert_eq!(
                (cache.len(), reported, *generator.sampler().rng()),
                (0, 0, rng),
                "{overflow:?}: Err({e:?}) after the cache, the callback and the RNG moved"
            );
        } else {
            assert!(cache.len() <= max_seq_len, "{overflow:?}: {result:?}");
        }
    }
}
