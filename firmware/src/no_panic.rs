//! The link-time proof that loading and decoding cannot panic (issue 28): the device path alone,
//! built like the firmware (LTO, picoformer at opt-level 3, `panic = "abort"`), with a panic
//! handler that calls a function defined nowhere. The image links only if no call to the panic
//! handler survives optimisation: loading a model file (`Model::from_safetensors_in`), the prompt
//! (`forward_last`), each decoded token (`step`) and choosing it (`sampling::Sampler`) have no
//! reachable `unwrap`, index, slice, arithmetic-overflow or assertion panic left.
//!
//! What the compiler knows is only what the device knows: the model file, the prompt, the
//! sampler's configuration and its seed go through `black_box`, so every dtype, every model
//! configuration the loader accepts and every sampler option is a path the proof covers; the
//! buffers (KV cache, scratch, logits, the sampler's work slice) are `static`s sized for the
//! embedded model by picoformer's `const fn`s, as on the device. No `core::fmt` either: the
//! result is the exit status alone (0 the host's greedy tokens, 1 other tokens, 2 an error,
//! 3 a fault), so `.ci/no-panic.sh` can also run it.
//!
//! Built by `.ci/no-panic.sh`: `cargo build --release --bin no-panic --features
//! no-panic-load,no-panic-decode,no-panic-sample` (features `no-panic-load`, `no-panic-decode`,
//! `no-panic-sample`: the parts in the proof; a part left out is replaced by an opaque value, so
//! the others are proven for anything it could give).
#![no_std]
#![no_main]

/// What the host computed (`build.rs`): configuration, prompt, expected tokens, the model file.
#[allow(dead_code)] // the host's logits and the descriptions are the firmware's
mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

use core::hint::black_box;
use core::ptr::addr_of_mut;

use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
use picoformer::{DecoderConfig, KvCache, Model, ModelConfig, Scratch};

use expected::{CONFIG, EXPECTED, MODEL_FILE, PROMPT};

/// Bytes aligned for zero-copy views of f32/f16/bf16 weights.
#[repr(C, align(16))]
pub struct Aligned<T: ?Sized>(pub T);

const DEC: DecoderConfig = CONFIG.attn_layers;
const P: usize = PROMPT.len();
const G: usize = EXPECTED.len();
/// Positions the cache holds: the prompt and every generated token but the last.
const N: usize = P + G - 1;
const V: usize = CONFIG.num_tokens;
const MAX_DEPTH: usize = CONFIG.attn_layers.depth;

static mut KV_CACHE: [f32; KvCache::<f32>::elements(&DEC, N)] =
    [0.0; KvCache::<f32>::elements(&DEC, N)];
static mut SCRATCH: [f32; Scratch::elements(&DEC, P)] = [0.0; Scratch::elements(&DEC, P)];
static mut ROW: [f32; V] = [0.0; V];
static mut WORK: [Candidate; Sampler::work_len(V)] = [Candidate::EMPTY; Sampler::work_len(V)];
static mut MODEL_SLOT: Option<Model<'static, MAX_DEPTH>> = Some(Model::unloaded(ModelConfig {
    decoder: CONFIG.attn_layers,
    wrapper: Some(CONFIG),
}));

/// Exit statuses.
const PASS: i32 = 0;
const FAIL: i32 = 1;
const LIB_ERROR: i32 = 2;
const FAULT: i32 = 3;

/// Loads the model, decodes the prompt and generates with the sampler; the exit status says
/// whether the tokens are the host's.
fn run() -> ! {
    let code = match decode() {
        Ok(true) => PASS,
        Ok(false) => FAIL,
        Err(()) => LIB_ERROR,
    };
    semihosting::process::exit(code)
}

fn decode() -> Result<bool, ()> {
    // SAFETY: `run` is entered once, from the reset handler, on the only core, with interrupts
    // unused: these are the only references to the statics, ever.
    let (slot, kv, sc, row, work) = unsafe {
        (
            &mut *addr_of_mut!(MODEL_SLOT),
            &mut *addr_of_mut!(KV_CACHE),
            &mut *addr_of_mut!(SCRATCH),
            &mut *addr_of_mut!(ROW),
            &mut *addr_of_mut!(WORK),
        )
    };
    // Opaque to the optimiser: any file, any prompt, any sampler configuration and seed.
    let prompt: &[u32] = black_box(&PROMPT);
    let sampler_config = black_box(SamplerConfig::greedy());
    let seed = black_box(0);
    if cfg!(feature = "no-panic-negative") {
        // A panic path the optimiser cannot remove: the proof must fail to link.
        let bytes = black_box([1u8; 4]);
        if bytes[black_box(4)] == 0 {
            return Err(());
        }
    }

    if cfg!(feature = "no-panic-load") {
        let file: &'static [u8] = black_box(&MODEL_FILE.0);
        Model::from_safetensors_in(file, slot).map_err(drop)?;
    }
    // Without the loader in the proof, whatever model it could have loaded.
    let slot = black_box(slot);
    let Some(Model::Wrapper(model)) = slot else {
        return Err(());
    };
    let mut cache = KvCache::new(&DEC, N, kv).map_err(drop)?;
    let mut scratch = Scratch::new(&DEC, P, sc).map_err(drop)?;
    let mut sampler = Sampler::new(sampler_config, seed).map_err(drop)?;

    if cfg!(feature = "no-panic-decode") {
        model
            .forward_last(&mut cache, &mut scratch, prompt, None, row)
            .map_err(drop)?;
    }
    let mut tokens = [0u32; G];
    for i in 0..G {
        let (done, next) = tokens.split_at_mut(i);
        // Without the sampler in the proof, any token; without decoding, any logits.
        let t = if cfg!(feature = "no-panic-sample") {
            sampler.sample(black_box(&*row), done, work).map_err(drop)?
        } else {
            black_box(0)
        };
        if let Some(slot) = next.first_mut() {
            *slot = t;
        }
        if cfg!(feature = "no-panic-decode") && i + 1 < G {
            model.step(&mut cache, &mut scratch, t, row).map_err(drop)?;
        }
    }
    Ok(tokens == EXPECTED)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    extern "C" {
        /// Defined nowhere: referenced only if a panic path survived optimisation.
        fn picoformer_no_panic_proof_failed_a_panic_path_survived_optimisation() -> !;
    }
    // SAFETY: never runs: an image that calls it cannot link.
    unsafe { picoformer_no_panic_proof_failed_a_panic_path_survived_optimisation() }
}

#[cfg(target_arch = "arm")]
mod rt {
    use cortex_m_rt::{entry, exception, ExceptionFrame};

    #[entry]
    fn main() -> ! {
        crate::run()
    }

    #[exception]
    unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
        semihosting::process::exit(crate::FAULT)
    }

    #[exception]
    unsafe fn DefaultHandler(_irqn: i16) {
        semihosting::process::exit(crate::FAULT)
    }
}

#[cfg(target_arch = "riscv32")]
mod rt {
    // The firmware's start-up: it calls `fw_main` at reset and `fw_trap` on every trap.
    core::arch::global_asm!(include_str!("rt/riscv_start.s"));

    #[no_mangle]
    extern "C" fn fw_main() -> ! {
        crate::run()
    }

    #[no_mangle]
    extern "C" fn fw_trap(_mcause: usize, _mepc: usize, _mtval: usize) -> ! {
        semihosting::process::exit(crate::FAULT)
    }
}
