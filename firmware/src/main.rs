//! picoformer on bare metal: loads the embedded model in place, decodes a fixed prompt full and
//! step-wise, generates greedily, and checks everything against what the host computed for the
//! same model at build time. Prints a report over semihosting; the exit status is the verdict.
//!
//! Exit status: 0 pass, 1 a check failed, 2 picoformer returned an error, 3 a fault (HardFault,
//! RISC-V trap), 101 a panic. Semihosting arguments select a negative check that must fail:
//! `mismatch` (corrupts one expected token), `panic`, `fault` (reads an invalid address).
#![no_std]
#![no_main]

mod clock;
mod decode;
mod harness;
mod rt;
mod timed;

/// What the host computed (`build.rs`): configuration, prompt, expected tokens and logits,
/// and the model file itself.
mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

use core::ptr::addr_of_mut;

use picoformer::{DecoderConfig, Error, KvCache, Model, ModelConfig, Scratch, TransformerWrapper};
use semihosting::println;

use decode::{argmax, max_abs, max_abs_diff};
use expected::{CHUNK, CONFIG, EXPECTED, HOST_LOGITS, MODEL_FILE, PROMPT};
pub use harness::Aligned;
use harness::{verdict, FAIL, LIB_ERROR, PASS};

const DEC: DecoderConfig = CONFIG.attn_layers;
const P: usize = PROMPT.len();
const G: usize = EXPECTED.len();
/// Positions decoded: the prompt and every generated token but the last.
const N: usize = P + G - 1;
const V: usize = CONFIG.num_tokens;

/// Blocks the decoder type has room for: exactly the model's depth (its weight table lives on
/// the stack, so it is sized for the model rather than picoformer's default of 16).
const MAX_DEPTH: usize = CONFIG.attn_layers.depth;

/// Largest |full − step-wise| and |device − host| accepted, relative to the largest logit.
const TOLERANCE: f32 = 1e-4;

// Every buffer is a `static` sized by picoformer's const fns: no allocator, no heap.
static mut KV_CACHE: [f32; KvCache::<f32>::elements(&DEC, N)] =
    [0.0; KvCache::<f32>::elements(&DEC, N)];
/// The scratch arena for CHUNK positions per forward chunk: N on most boards (the whole sequence
/// in one chunk), 1 on the 16 KiB Cortex-M0 (`build/boards.rs`).
static mut SCRATCH: [f32; Scratch::elements(&DEC, CHUNK)] = [0.0; Scratch::elements(&DEC, CHUNK)];
static mut LOGITS: [f32; N * V] = [0.0; N * V];
static mut ROW: [f32; V] = [0.0; V];
/// The loaded model (its weight table of views into the file), filled in place: it starts as an
/// unloaded wrapper of this configuration, which the loader empties and fills field by field, so
/// the table is never assembled on the stack.
static mut MODEL_SLOT: Option<Model<'static, MAX_DEPTH>> = Some(Model::unloaded(ModelConfig {
    decoder: CONFIG.attn_layers,
    wrapper: Some(CONFIG),
}));

/// Entered once from the reset handler (`rt`).
pub fn run() -> ! {
    harness::run_program!(
        println!(
            "picoformer firmware: {} on {}, model {} ({}, {} bytes at {:#010x})",
            env!("FW_TARGET"),
            expected::BOARD,
            expected::MODEL,
            expected::DTYPE,
            MODEL_FILE.0.len(),
            MODEL_FILE.0.as_ptr() as usize
        ),
        check
    )
}

/// Loads, decodes three ways, compares; prints the report. Returns the exit status.
#[inline(never)] // its own frame: the steps of `run` never overlap, so neither do their frames
fn check(force_mismatch: bool) -> i32 {
    let model = match load() {
        Ok(model) => model,
        Err(status) => return status,
    };
    if *model.config() != CONFIG {
        println!("error: the file's configuration differs from the one the buffers were sized for");
        return FAIL;
    }
    match decode_and_compare(model, force_mismatch) {
        Ok(true) => PASS,
        Ok(false) => FAIL,
        Err(e) => {
            println!("error: {e}");
            LIB_ERROR
        }
    }
}

/// Loads the embedded model file. Zero-copy: the weights stay where the file is (flash, or the
/// DDR on the AN547). The model value (its table of tensor views, a few KB) is built in place in
/// a static, like the other large buffers, so it costs no stack. Not inlined: the loader's
/// temporaries (configurations, errors) are off the stack before decoding starts, whose chain
/// of frames is then the deeper one.
#[inline(never)]
fn load() -> Result<&'static TransformerWrapper<'static, MAX_DEPTH>, i32> {
    // SAFETY: `load` runs once, on one core; nothing else refers to MODEL_SLOT.
    let slot = unsafe { &mut *addr_of_mut!(MODEL_SLOT) };
    match Model::<MAX_DEPTH>::from_safetensors_in(&MODEL_FILE.0, slot) {
        Ok(()) => match slot {
            Some(Model::Wrapper(w)) => {
                w.set_int8_activations(expected::INT8);
                Ok(w)
            }
            _ => {
                println!("error: the model file holds a raw Decoder");
                Err(LIB_ERROR)
            }
        },
        Err(e) => {
            println!("error: cannot load the model: {e}");
            Err(LIB_ERROR)
        }
    }
}

/// Greedy, full and step-wise decoding of the model, checked against each other and the host.
#[inline(never)] // its own frame: the steps of `run` never overlap, so neither do their frames
fn decode_and_compare(
    model: &TransformerWrapper<'_, MAX_DEPTH>,
    force_mismatch: bool,
) -> Result<bool, Error> {
    // SAFETY: `run` is entered once, from the reset handler, on the only core, with interrupts
    // unused: these are the only references to the statics, ever.
    let (kv, sc, logits, row) = unsafe {
        (
            &mut *addr_of_mut!(KV_CACHE),
            &mut *addr_of_mut!(SCRATCH),
            &mut *addr_of_mut!(LOGITS),
            &mut *addr_of_mut!(ROW),
        )
    };
    let mut cache = KvCache::new(&DEC, N, kv)?;
    let mut scratch = Scratch::new(&DEC, CHUNK, sc)?;

    let mut tokens = [0u32; G];
    decode::greedy(model, &mut cache, &mut scratch, &PROMPT, &mut tokens, row)?;
    let mut seq = [0u32; N];
    seq[..P].copy_from_slice(&PROMPT);
    seq[P..].copy_from_slice(&tokens[..G - 1]);
    decode::full(model, &mut cache, &mut scratch, &seq, logits)?;
    let mut step_diff = 0.0f32;
    decode::stepwise(model, &mut cache, &mut scratch, &seq, row, |i, r| {
        step_diff = step_diff.max(max_abs_diff(r, &logits[i * V..(i + 1) * V]));
    })?;

    // The same greedy decoding once more, timed (instructions under QEMU's -icount).
    let timing = timed::greedy(model, &mut cache, &mut scratch, &PROMPT, &tokens, row)?;
    let timed_ok = timing.same_last_token;

    let max_logit = max_abs(logits);
    let scale = max_logit.max(1.0);
    let host_diff = max_abs_diff(logits, &HOST_LOGITS);
    let full_tokens_agree =
        (0..G).all(|i| argmax(&logits[(P - 1 + i) * V..(P + i) * V]) == tokens[i] as usize);
    let mut expected = EXPECTED;
    if force_mismatch {
        expected[G - 1] = (expected[G - 1] + 1) % V as u32;
        println!("negative check: expected token {} corrupted", G - 1);
    }
    let tokens_ok = tokens == expected;
    let step_ok = step_diff <= TOLERANCE * scale;
    let host_ok = host_diff <= TOLERANCE * scale;
    let ok = tokens_ok && step_ok && host_ok && full_tokens_agree && timed_ok;

    let c = &CONFIG.attn_layers;
    println!(
        "model: TransformerWrapper(num_tokens={}, max_seq_len={}) Decoder(dim={}, depth={}, heads={}, kv_heads={}, dim_head={}), {} tensors",
        CONFIG.num_tokens,
        CONFIG.max_seq_len,
        c.dim,
        c.depth,
        c.heads,
        c.kv_heads(),
        c.attn_dim_head,
        model.tensors_used()
    );
    println!("prompt:   {:?}", PROMPT);
    println!("tokens:   {:?} (device, greedy)", tokens);
    println!(
        "expected: {:?} (host; smallest top-1/top-2 gap {:.1e}) -> {}",
        expected,
        expected::MARGIN,
        verdict(tokens_ok)
    );
    println!(
        "full vs step-wise: max |diff| = {:e} over {}x{} logits (max |logit| {:.3}, tolerance {:.1e}) -> {}",
        step_diff,
        N,
        V,
        max_logit,
        TOLERANCE * scale,
        verdict(step_ok)
    );
    println!(
        "device vs host logits: max |diff| = {:e} -> {}",
        host_diff,
        verdict(host_ok)
    );
    println!(
        "full-pass argmax = greedy tokens: {}",
        verdict(full_tokens_agree)
    );
    println!("timed greedy pass: same last token: {}", verdict(timed_ok));
    timing.print(expected::MACS);
    println!(
        "memory: kv cache {} B, scratch {} B (max_positions {}), logits {} B, model file {} B (in place), host reference logits {} B",
        KvCache::<f32>::bytes(&DEC, N),
        Scratch::bytes(&DEC, CHUNK),
        CHUNK,
        core::mem::size_of_val(logits) + core::mem::size_of_val(row),
        MODEL_FILE.0.len(),
        core::mem::size_of_val(&HOST_LOGITS)
    );
    Ok(ok)
}
