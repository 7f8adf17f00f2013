//! A keyword spotter on bare metal: x-transformers' `ContinuousTransformerWrapper` around an
//! `Encoder`, exported from PyTorch (`tests/fixtures/kws`), classifies windows of 49 frames × 10
//! features (say MFCCs of one second of audio) into 12 classes (`average_pool_embed`: the mean of
//! the real frames' hidden states, then `project_out`). The model file is embedded and loaded in
//! place; every buffer is a `static` sized by picoformer's `const fn`s.
//!
//! The windows are the fixture's four (one whole, two cut short and one started late, i.e.
//! padded at the end or at the start, given to the model as its padding `mask`). The scores are
//! checked against the host's (`build.rs` runs the same model on the same windows with the same
//! calls, `src/classify.rs`) and PyTorch's; the padded frames are replaced and the scores must
//! not move; the windows are classified once more, timed. Prints a report over semihosting; the
//! exit status is the verdict, as the decoder firmware's (`src/main.rs`): 0 pass, 1 a check
//! failed, 2 picoformer returned an error, 3 a fault, 101 a panic; the semihosting arguments
//! `mismatch` (one expected score moved), `panic` and `fault` must fail so.
#![no_std]
#![no_main]

mod classify;
mod clock;
#[allow(dead_code)] // the decoder firmware's decoding; this program uses argmax and the distances
mod decode;
mod harness;
mod rt;

/// What the host computed (`build.rs`): configuration, windows, masks, expected scores (the
/// host's and PyTorch's), and the model file itself.
mod expected {
    include!(concat!(env!("OUT_DIR"), "/kws_expected.rs"));
}

use core::ptr::addr_of_mut;

use picoformer::{
    ContinuousModel, ContinuousTransformerWrapper, DecoderConfig, Error, KvCache, Scratch,
};
use semihosting::println;

use classify::{classify, margin, repad};
use decode::{argmax, max_abs, max_abs_diff};
use expected::{CONFIG, HOST_CLASSES, HOST_SCORES, MODEL_FILE, REAL, TORCH_SCORES};
pub use harness::Aligned;
use harness::{verdict, FAIL, LIB_ERROR, PASS};

const LAYERS: DecoderConfig = CONFIG.attn_layers;
/// Frames per window.
const N: usize = expected::FRAMES;
/// Features per frame.
const F: usize = CONFIG.input_width();
/// Classes.
const C: usize = CONFIG.output_width();
/// Windows checked.
const W: usize = HOST_CLASSES.len();

/// Blocks the layers' type has room for: exactly the model's depth (its weight table is sized
/// for the model rather than picoformer's default of 16).
const MAX_DEPTH: usize = LAYERS.depth;

/// Largest |device − host| and |device − PyTorch| accepted, relative to the largest score.
const TOLERANCE: f32 = 1e-4;

// Every buffer is a `static` sized by picoformer's const fns: no allocator, no heap. A window
// runs in one chunk, so the KV cache and the scratch hold all of its N positions.
static mut KV_CACHE: [f32; KvCache::<f32>::elements(&LAYERS, N)] =
    [0.0; KvCache::<f32>::elements(&LAYERS, N)];
static mut SCRATCH: [f32; Scratch::elements(&LAYERS, N)] = [0.0; Scratch::elements(&LAYERS, N)];
/// Every window's scores, then the timed pass's.
static mut SCORES: [f32; W * C] = [0.0; W * C];
static mut TIMED: [f32; W * C] = [0.0; W * C];
/// A window with its padded frames replaced.
static mut REPADDED: [f32; N * F] = [0.0; N * F];
/// The loaded model (its table of views into the file), filled in place: it starts as an
/// unloaded encoder wrapper of this configuration, which the loader empties and fills field by
/// field, so the table is never assembled on the stack.
static mut MODEL_SLOT: Option<ContinuousModel<'static, MAX_DEPTH>> =
    Some(ContinuousModel::unloaded(CONFIG, true));

/// Entered once from the reset handler (`rt`).
pub fn run() -> ! {
    harness::run_program!(
        println!(
            "picoformer kws: {} on {}, model {} ({}, {} bytes at {:#010x})",
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

/// Loads, classifies, compares; prints the report. Returns the exit status.
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
    match classify_and_compare(model, force_mismatch) {
        Ok(true) => PASS,
        Ok(false) => FAIL,
        Err(e) => {
            println!("error: {e}");
            LIB_ERROR
        }
    }
}

/// Loads the embedded model file. Zero-copy: the weights stay where the file is. The model
/// value (its table of tensor views, a few KB) is built in place in a static, like the other
/// large buffers, so it costs no stack. Not inlined: the loader's temporaries are off the stack
/// before classifying starts.
#[inline(never)]
fn load() -> Result<&'static ContinuousTransformerWrapper<'static, MAX_DEPTH>, i32> {
    // SAFETY: `load` runs once, on one core; nothing else refers to MODEL_SLOT.
    let slot = unsafe { &mut *addr_of_mut!(MODEL_SLOT) };
    match ContinuousModel::<MAX_DEPTH>::from_safetensors_in(&MODEL_FILE.0, slot) {
        Ok(()) => match &*slot {
            Some(ContinuousModel::Encoder(w)) => Ok(w),
            _ => {
                println!("error: the model file's wrapper is around a Decoder, not an Encoder");
                Err(LIB_ERROR)
            }
        },
        Err(e) => {
            println!("error: cannot load the model: {e}");
            Err(LIB_ERROR)
        }
    }
}

/// Window `w`'s frames (N × F) and which of them are real (N).
fn window(w: usize) -> (&'static [f32], &'static [bool]) {
    (
        expected::INPUT
            .get(w * N * F..(w + 1) * N * F)
            .unwrap_or(&[]),
        REAL.get(w * N..(w + 1) * N).unwrap_or(&[]),
    )
}

/// Bit for bit the same scores.
fn identical(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Every window classified, checked against the host and PyTorch; the padding replaced; the
/// windows once more, timed.
#[inline(never)] // its own frame: the steps of `run` never overlap, so neither do their frames
fn classify_and_compare(
    model: &ContinuousTransformerWrapper<'_, MAX_DEPTH>,
    force_mismatch: bool,
) -> Result<bool, Error> {
    // SAFETY: `run` is entered once, from the reset handler, on the only core, with interrupts
    // unused: these are the only references to the statics, ever.
    let (kv, sc, scores, timed, repadded) = unsafe {
        (
            &mut *addr_of_mut!(KV_CACHE),
            &mut *addr_of_mut!(SCRATCH),
            &mut *addr_of_mut!(SCORES),
            &mut *addr_of_mut!(TIMED),
            &mut *addr_of_mut!(REPADDED),
        )
    };
    let mut cache = KvCache::new(&LAYERS, N, kv)?;
    let mut scratch = Scratch::new(&LAYERS, N, sc)?;

    for (w, out) in scores.chunks_exact_mut(C).enumerate() {
        let (frames, real) = window(w);
        classify(model, &mut cache, &mut scratch, frames, real, out)?;
    }

    // Padding: whatever the padded frames hold, the scores are the same, bit for bit.
    let (mut padded, mut padding_ok) = (0, true);
    let mut row = [0.0f32; C];
    for (w, want) in scores.chunks_exact(C).enumerate() {
        let (frames, real) = window(w);
        if real.iter().all(|&r| r) {
            continue;
        }
        padded += 1;
        repad(frames, real, repadded);
        classify(model, &mut cache, &mut scratch, repadded, real, &mut row)?;
        padding_ok &= identical(&row, want);
    }

    // The windows once more, timed (instructions under QEMU's -icount, `clock`): one reading
    // per window, far within the 24-bit SysTick's wrap.
    let mut clock = clock::Clock::calibrate();
    let mut marks = [0u64; W + 1];
    marks[0] = clock.ticks();
    for (w, out) in timed.chunks_exact_mut(C).enumerate() {
        let (frames, real) = window(w);
        classify(model, &mut cache, &mut scratch, frames, real, out)?;
        marks[w + 1] = clock.ticks();
    }
    let timed_ok = identical(timed, scores);

    let mut host = HOST_SCORES;
    if force_mismatch {
        host[W * C - 1] += 1.0;
        println!(
            "negative check: expected score {} of window {} moved by 1",
            C - 1,
            W - 1
        );
    }
    let scale = max_abs(&host).max(1.0);
    let host_diff = max_abs_diff(scores, &host);
    let torch_diff = max_abs_diff(scores, &TORCH_SCORES);
    let host_ok = host_diff <= TOLERANCE * scale;
    let torch_ok = torch_diff <= TOLERANCE * scale;
    let mut classes_ok = true;

    let c = &CONFIG.attn_layers;
    println!(
        "model: ContinuousTransformerWrapper(dim_in={}, dim_out={}, max_seq_len={}, average_pool_embed={}) Encoder(dim={}, depth={}, heads={}, dim_head={}, ff_mult={})",
        F,
        C,
        CONFIG.max_seq_len,
        CONFIG.average_pool_embed,
        c.dim,
        c.depth,
        c.heads,
        c.attn_dim_head,
        c.ff_mult
    );
    for (w, s) in scores.chunks_exact(C).enumerate() {
        let (_, real) = window(w);
        let class = argmax(s);
        let torch_class = argmax(TORCH_SCORES.get(w * C..(w + 1) * C).unwrap_or(&[]));
        let want = HOST_CLASSES.get(w).copied().unwrap_or(usize::MAX);
        classes_ok &= class == want && class == torch_class;
        let first = real.iter().position(|&r| r).unwrap_or(N);
        let count = real.iter().filter(|&&r| r).count();
        println!(
            "window {w}: frames {}..{} real ({count} of {N}), class {class} (host {want}, PyTorch {torch_class}), top-1/top-2 gap {:.1e}",
            first,
            first + count,
            margin(s)
        );
    }
    println!(
        "device vs host scores: max |diff| = {:e} over {}x{} scores (max |score| {:.3}, tolerance {:.1e}) -> {}",
        host_diff,
        W,
        C,
        scale,
        TOLERANCE * scale,
        verdict(host_ok)
    );
    println!(
        "device vs PyTorch scores: max |diff| = {:e} -> {}",
        torch_diff,
        verdict(torch_ok)
    );
    println!(
        "classes = host's = PyTorch's: {} (smallest top-1/top-2 gap on the host {:.1e})",
        verdict(classes_ok),
        expected::MARGIN
    );
    println!(
        "padded frames replaced, same scores bit for bit: {} ({padded} padded windows)",
        verdict(padding_ok)
    );
    println!("timed pass: same scores bit for bit: {}", verdict(timed_ok));
    for (w, t) in marks.iter().enumerate() {
        if w < W {
            println!("mark window-{w} {t}");
        } else {
            println!("mark windows-end {t}");
        }
    }
    let per_tick = clock.per_tick_q16();
    println!(
        "clock: {}.{:03} instructions per tick (calibrated; exact only under -icount shift=0)",
        per_tick >> 16,
        ((per_tick & 0xFFFF) * 1000) >> 16
    );
    let window0 = clock.instructions(marks[1] - marks[0]);
    let all = clock.instructions(marks[W] - marks[0]);
    println!(
        "instructions: per window {} (window 0: {N} frames, no padding; {} per frame), {} over {W} windows",
        window0,
        window0 / N as u64,
        all
    );
    println!(
        "memory: kv cache {} B, scratch {} B (max_positions {N}), scores and a repadded window {} B, model file {} B (in place), host reference windows and scores {} B",
        KvCache::<f32>::bytes(&LAYERS, N),
        Scratch::bytes(&LAYERS, N),
        core::mem::size_of_val(scores)
            + core::mem::size_of_val(timed)
            + core::mem::size_of_val(repadded),
        MODEL_FILE.0.len(),
        core::mem::size_of_val(&expected::INPUT)
            + core::mem::size_of_val(&REAL)
            + core::mem::size_of_val(&HOST_SCORES)
            + core::mem::size_of_val(&TORCH_SCORES)
    );
    Ok(host_ok && torch_ok && classes_ok && padding_ok && timed_ok)
}
