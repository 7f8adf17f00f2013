//! The smallest way to run a decoder on a device: no model-file parser. The weights are the
//! embedded file's bytes, but what the loader would read from its header (each tensor's name,
//! element type, shape and place) was read by `build.rs` into a table (`weights.rs`), and the
//! configuration is a `const`; `TransformerWrapper::from_source_in` builds the model in a
//! `static` from a `TensorSource` over that table. Greedy decoding only: no sampler, no
//! full-sequence pass. What is left of picoformer in the image is the decoding itself (README.md,
//! "Where the code goes", compares it with the decoder firmware's).
//!
//! It decodes the decoder firmware's prompt greedily (the same board, model and expected tokens,
//! `build.rs`), checks the tokens against the host's, and decodes once more timed (instructions
//! per prompt token and per decoded token under QEMU's `-icount`). Exit status as the other
//! programs (`src/main.rs`): 0 pass, 1 a check failed, 2 picoformer returned an error, 3 a
//! fault, 101 a panic; the semihosting arguments `mismatch`, `panic` and `fault` must fail so.
#![no_std]
#![no_main]

mod clock;
#[allow(dead_code)] // the decoder firmware's checks; this program uses greedy (and `timed` argmax)
mod decode;
mod harness;
mod rt;
mod timed;

/// What the host computed (`build.rs`): configuration, prompt, expected tokens, the model file.
#[allow(dead_code)] // the host's logits are the decoder firmware's
mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

/// The model file's tensors, listed by `build.rs`.
mod weights {
    use super::{Dtype, Weight};
    include!(concat!(env!("OUT_DIR"), "/weights.rs"));
}

use core::ptr::addr_of_mut;

use picoformer::q8_0::BlockQ8_0;
use picoformer::{
    bf16, f16, DecoderConfig, Error, KvCache, Scratch, Tensor, TensorView, TransformerWrapper,
};
use semihosting::println;

use expected::{CONFIG, EXPECTED, MODEL_FILE, PROMPT};
pub use harness::Aligned;
use harness::{verdict, FAIL, LIB_ERROR, PASS};
use weights::WEIGHTS;

const DEC: DecoderConfig = CONFIG.attn_layers;
const P: usize = PROMPT.len();
const G: usize = EXPECTED.len();
/// Positions decoded: the prompt and every generated token but the last.
const N: usize = P + G - 1;
const V: usize = CONFIG.num_tokens;
/// Blocks the decoder type has room for: exactly the model's depth.
const MAX_DEPTH: usize = DEC.depth;
/// Positions per forward chunk: one (decoding, and the prompt a token at a time), the smallest
/// scratch arena.
const CHUNK: usize = 1;

/// Element type of a tensor in the file.
#[derive(Clone, Copy)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    /// Blocks of 32 int8 values with an f16 scale (`picoformer quantize`'s layout).
    Q8_0,
}

/// A tensor of the embedded file: its `state_dict` name, element type, shape, and its bytes'
/// range in `MODEL_FILE`.
pub struct Weight {
    pub name: &'static str,
    pub dtype: Dtype,
    pub shape: &'static [usize],
    pub start: usize,
    pub end: usize,
}

// Every buffer is a `static` sized by picoformer's const fns: no allocator, no heap.
static mut KV_CACHE: [f32; KvCache::<f32>::elements(&DEC, N)] =
    [0.0; KvCache::<f32>::elements(&DEC, N)];
static mut SCRATCH: [f32; Scratch::elements(&DEC, CHUNK)] = [0.0; Scratch::elements(&DEC, CHUNK)];
static mut ROW: [f32; V] = [0.0; V];
/// The model (its table of views into the file), built in place: never on the stack.
static mut MODEL_SLOT: Option<TransformerWrapper<'static, MAX_DEPTH>> =
    Some(TransformerWrapper::unloaded(CONFIG));

/// The tensor named `name`: a view of its bytes in the embedded file, typed by the table.
fn tensor(name: &str) -> Option<TensorView<'static>> {
    let w = WEIGHTS.iter().find(|w| w.name == name)?;
    let bytes = MODEL_FILE.0.get(w.start..w.end)?;
    let data = match w.dtype {
        Dtype::F32 => Tensor::F32(bytemuck::try_cast_slice::<u8, f32>(bytes).ok()?),
        Dtype::F16 => Tensor::F16(bytemuck::try_cast_slice::<u8, f16>(bytes).ok()?),
        Dtype::Bf16 => Tensor::Bf16(bytemuck::try_cast_slice::<u8, bf16>(bytes).ok()?),
        Dtype::Q8_0 => Tensor::Q8_0(bytemuck::try_cast_slice::<u8, BlockQ8_0>(bytes).ok()?),
    };
    Some(TensorView::new(data, w.shape))
}

/// Entered once from the reset handler (`rt`).
pub fn run() -> ! {
    harness::run_program!(
        println!(
            "picoformer decode-only: {} on {}, model {} ({}, {} bytes at {:#010x}), {} tensors from a table",
            env!("FW_TARGET"),
            expected::BOARD,
            expected::MODEL,
            expected::DTYPE,
            MODEL_FILE.0.len(),
            MODEL_FILE.0.as_ptr() as usize,
            WEIGHTS.len()
        ),
        check
    )
}

/// Builds the model, decodes, compares; prints the report. Returns the exit status.
#[inline(never)] // its own frame: the steps of `run` never overlap, so neither do their frames
fn check(force_mismatch: bool) -> i32 {
    let Some(model) = load() else {
        return LIB_ERROR;
    };
    match decode_and_compare(model, force_mismatch) {
        Ok(true) => PASS,
        Ok(false) => FAIL,
        // (No error text: its formatting is code this program does without.)
        Err(_) => {
            println!("error: picoformer refused a call");
            LIB_ERROR
        }
    }
}

/// Builds the model in place from the table. Not inlined: the loader's temporaries are off the
/// stack before decoding starts.
#[inline(never)]
fn load() -> Option<&'static TransformerWrapper<'static, MAX_DEPTH>> {
    // SAFETY: `load` runs once, on one core; nothing else refers to MODEL_SLOT.
    let slot = unsafe { &mut *addr_of_mut!(MODEL_SLOT) };
    if TransformerWrapper::from_source_in(CONFIG, &tensor, slot).is_err() {
        println!("error: the table's weights do not make the configured model");
        return None;
    }
    let model = slot.as_mut()?;
    model.set_int8_activations(expected::INT8);
    Some(model)
}

/// Greedy decoding checked against the host's tokens, then once more, timed.
#[inline(never)] // its own frame: the steps of `run` never overlap, so neither do their frames
fn decode_and_compare(
    model: &TransformerWrapper<'_, MAX_DEPTH>,
    force_mismatch: bool,
) -> Result<bool, Error> {
    // SAFETY: `run` is entered once, from the reset handler, on the only core, with interrupts
    // unused: these are the only references to the statics, ever.
    let (kv, sc, row) = unsafe {
        (
            &mut *addr_of_mut!(KV_CACHE),
            &mut *addr_of_mut!(SCRATCH),
            &mut *addr_of_mut!(ROW),
        )
    };
    let mut cache = KvCache::new(&DEC, N, kv)?;
    let mut scratch = Scratch::new(&DEC, CHUNK, sc)?;
    let mut tokens = [0u32; G];
    decode::greedy(model, &mut cache, &mut scratch, &PROMPT, &mut tokens, row)?;

    // The same greedy decoding once more, timed (instructions under QEMU's -icount).
    let timing = timed::greedy(model, &mut cache, &mut scratch, &PROMPT, &tokens, row)?;
    let timed_ok = timing.same_last_token;

    let mut expected = EXPECTED;
    if force_mismatch {
        expected[G - 1] = (expected[G - 1] + 1) % V as u32;
        println!("negative check: expected token {} corrupted", G - 1);
    }
    let tokens_ok = tokens == expected;
    println!("prompt:   {:?}", PROMPT);
    println!("tokens:   {:?} (device, greedy)", tokens);
    println!("expected: {:?} (host) -> {}", expected, verdict(tokens_ok));
    println!("timed greedy pass: same last token: {}", verdict(timed_ok));
    timing.print(expected::MACS);
    println!(
        "memory: kv cache {} B, scratch {} B (max_positions {}), logits {} B, model file {} B (in place), host reference 0 B",
        KvCache::<f32>::bytes(&DEC, N),
        Scratch::bytes(&DEC, CHUNK),
        CHUNK,
        core::mem::size_of_val(row),
        MODEL_FILE.0.len()
    );
    Ok(tokens_ok && timed_ok)
}
