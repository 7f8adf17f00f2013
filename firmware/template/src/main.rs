//! picoformer on a real board: an STM32H743 generates text from the model in its flash and
//! streams it over RTT (defmt). Copy this folder to start your own firmware.
//!
//! - the model: `include_bytes!` of the file `build.rs` prepares (Q8_0 copy of
//!   `models/demo.safetensors` unless `PICOFORMER_MODEL` names another), viewed in place;
//! - every buffer a `static`, sized by picoformer's `const fn`s from the configuration `build.rs`
//!   read out of the file: no allocator, no heap;
//! - the KV cache in AXI SRAM (512 KiB), everything else and the stack in DTCM (see `memory.x`).
#![no_std]
#![no_main]

use core::ops::ControlFlow;
use core::ptr::{addr_of, addr_of_mut};

use cortex_m::peripheral::DWT;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use defmt::{Debug2Format, Display2Format};
use defmt_rtt as _; // the defmt transport: RTT, read by the probe
use panic_probe as _; // panics are logged over defmt, then the core halts

// picoformer's API in one place (paths may move between versions: update them here).
use picoformer::generate::{GenerateConfig, Generator, Overflow, StopReason};
use picoformer::sampling::{Candidate, Sampler, SamplerConfig};
use picoformer::{f16, DecoderConfig, KvCache, Model, Scratch, WrapperConfig};

/// `CONFIG` (the model's configuration), `DTYPE`, `SOURCE`: written by `build.rs`.
mod model {
    use super::{DecoderConfig, WrapperConfig};
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}
use model::CONFIG;

// ---- what to generate

/// The prompt: the demo model reads bytes (token i = byte i).
const PROMPT: &[u8] = b"\"My dear Emma,\" said Mr. Knightley, ";
/// Temperature 0.8, nucleus 0.9 (`SamplerConfig::greedy()` for argmax).
const SAMPLING: SamplerConfig = SamplerConfig::temperature(0.8).with_top_p(0.9);
/// Seed of the sampler's PRNG (same seed, same text; the H7's RNG peripheral can supply one).
const SEED: u64 = 42;
/// Tokens to generate, then stop. With `Overflow::Slide` the text can be longer than the cache:
/// when it is full, the last `KEEP` tokens are encoded again and generation goes on.
const GENERATE: GenerateConfig = GenerateConfig::new(2000).overflow(Overflow::Slide { keep: KEEP });

// ---- buffer sizes (every one from the configuration: a new model file resizes them)

const DEC: DecoderConfig = CONFIG.attn_layers;
/// Vocabulary size: one logit per token.
const V: usize = CONFIG.num_tokens;
/// Blocks the decoder's weight table has room for (it lives on the stack).
const MAX_DEPTH: usize = DEC.depth;
/// Element type of the KV cache: f16 halves it (f32 is the reference precision; with f32 set
/// `CAPACITY` to 128 to stay within the 512 KiB of AXI SRAM).
type Kv = f16;
/// Positions the KV cache holds: the model's whole context (`max_seq_len`, 256 for the demo):
/// 2 · depth · kv_heads · dim_head · CAPACITY elements = 512 KiB for the demo in f16.
const CAPACITY: usize = if CONFIG.max_seq_len > 0 {
    CONFIG.max_seq_len
} else {
    256
};
/// Tokens re-encoded when the window slides (the model then sees between KEEP and CAPACITY).
const KEEP: usize = CAPACITY / 2;
/// Positions the scratch arena holds at once: the prompt and each re-encode run in chunks of
/// this many (more is faster per token and costs `Scratch::elements(&DEC, 1)` f32 each).
const CHUNK: usize = 8;

const KV_LEN: usize = KvCache::<Kv>::elements(&DEC, CAPACITY);
const SCRATCH_LEN: usize = Scratch::elements(&DEC, CHUNK);
const WORK_LEN: usize = Sampler::work_len(V);
const HISTORY_LEN: usize = GENERATE.history_len(SAMPLING.repetition_window);

/// In AXI SRAM (section `.axisram` in `memory.x`): not zeroed at reset, `main` zeroes it.
#[link_section = ".axisram"]
static mut KV_CACHE: [Kv; KV_LEN] = [f16::ZERO; KV_LEN];
static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];
static mut LOGITS: [f32; V] = [0.0; V];
static mut WORK: [Candidate; WORK_LEN] = [Candidate::EMPTY; WORK_LEN];
static mut HISTORY: [u32; HISTORY_LEN] = [0; HISTORY_LEN];

/// The model file, in flash, aligned so that its tensors are viewed in place (and, as the
/// exporter lays them out, each matrix starts on a cache line).
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);
static MODEL_FILE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/model.safetensors"
)));

/// The core clock. After reset the STM32H743 runs from its 64 MHz HSI oscillator; set up the PLL
/// (e.g. with `stm32h7xx-hal`'s `rcc`) for up to 480 MHz and change this (used for tokens/s only).
const CORE_HZ: u32 = 64_000_000;

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    // The Cortex-M7's caches: the weights are read from flash once per token. The RTT buffers are
    // in DTCM, which is never cached, so the probe always reads what the core wrote.
    cp.SCB.enable_icache();
    cp.SCB.enable_dcache(&mut cp.CPUID);
    cp.DCB.enable_trace();
    DWT::unlock();
    cp.DWT.enable_cycle_counter();

    defmt::info!(
        "picoformer template: {=str} ({=str}, {=usize} B in flash at {=usize:#x})",
        model::SOURCE,
        model::DTYPE,
        MODEL_FILE.0.len(),
        MODEL_FILE.0.as_ptr() as usize
    );
    match run() {
        Ok(reason) => defmt::info!("stopped: {}", Debug2Format(&reason)),
        Err(()) => defmt::error!("stopped on an error"),
    }
    stack_report();
    // Halts the core: `probe-rs run` ends here (without a debugger the core stays in a fault loop).
    loop {
        cortex_m::asm::bkpt();
    }
}

/// Loads the model, generates, streams the text. Errors are logged here.
fn run() -> Result<StopReason, ()> {
    // Zero-copy: the weights stay in flash.
    let model = match Model::<MAX_DEPTH>::from_safetensors(&MODEL_FILE.0) {
        Ok(Model::Wrapper(w)) => w,
        Ok(Model::Decoder(_)) => {
            defmt::error!("the model file holds a raw Decoder");
            return Err(());
        }
        Err(e) => {
            defmt::error!("cannot load the model: {}", Display2Format(&e));
            return Err(());
        }
    };
    // build.rs read the same file: the buffers were sized for this configuration.
    assert!(*model.config() == CONFIG);
    defmt::info!(
        "RAM: kv cache {=usize} B ({=usize} positions), scratch {=usize} B ({=usize} per chunk), logits and sampler {=usize} B",
        KvCache::<Kv>::bytes(&DEC, CAPACITY),
        CAPACITY,
        Scratch::bytes(&DEC, CHUNK),
        CHUNK,
        core::mem::size_of::<[f32; V]>()
            + core::mem::size_of::<[Candidate; WORK_LEN]>()
            + core::mem::size_of::<[u32; HISTORY_LEN]>()
    );

    // SAFETY: `run` is called once, from `main`, on the only core, and no interrupt handler uses
    // these statics: these are the only references to them, ever. The KV cache is zeroed through
    // its pointer first (its section is NOLOAD: memory.x).
    let (kv, scratch, logits, work, history) = unsafe {
        core::ptr::write_bytes(addr_of_mut!(KV_CACHE), 0, 1);
        (
            &mut *addr_of_mut!(KV_CACHE),
            &mut *addr_of_mut!(SCRATCH),
            &mut *addr_of_mut!(LOGITS),
            &mut *addr_of_mut!(WORK),
            &mut *addr_of_mut!(HISTORY),
        )
    };
    let (mut cache, mut scratch) = match (
        KvCache::new(&DEC, CAPACITY, kv),
        Scratch::new(&DEC, CHUNK, scratch),
    ) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            defmt::error!("buffers: {}", Display2Format(&e));
            return Err(());
        }
    };
    let sampler = Sampler::new(SAMPLING, SEED).map_err(|e| {
        defmt::error!("sampler: {}", Display2Format(&e));
    })?;
    let mut generator = Generator::new(sampler, GENERATE, logits, work, history).map_err(|e| {
        defmt::error!("generator: {}", Display2Format(&e));
    })?;

    let mut prompt = [0u32; PROMPT.len()];
    for (t, &b) in prompt.iter_mut().zip(PROMPT) {
        *t = u32::from(b);
    }
    let mut text = Lines::new();
    for &b in PROMPT {
        text.push(b);
    }

    let start = DWT::cycle_count();
    let mut last = start;
    let mut first_token_cycles = 0u32;
    let mut cycles = 0u64;
    let done = generator.run(&model, &mut cache, &mut scratch, &prompt, |token| {
        let now = DWT::cycle_count();
        let dt = now.wrapping_sub(last); // the counter wraps every 2^32 cycles (67 s at 64 MHz)
        last = now;
        if cycles == 0 {
            first_token_cycles = dt; // includes the prompt
        }
        cycles += u64::from(dt);
        defmt::debug!("token {=u32} ({=u32} cycles)", token, dt);
        // A byte-level model: the token is the byte. Other tokenizers: look the token up here.
        text.push(token as u8);
        ControlFlow::Continue(())
    });
    text.finish();
    let done = done.map_err(|e| defmt::error!("generation: {}", Display2Format(&e)))?;

    let ms = |c: u64| (c * 1000 / u64::from(CORE_HZ)) as u32;
    let rest = cycles - u64::from(first_token_cycles);
    let per_token = if done.new_tokens > 1 {
        rest / (done.new_tokens as u64 - 1)
    } else {
        0
    };
    defmt::info!(
        "{=usize} prompt tokens, {=usize} new tokens ({=usize} re-encodes) in {=u32} ms: first token {=u32} ms, then {=u32} ms per token at {=u32} MHz",
        done.prompt_tokens,
        done.new_tokens,
        done.reencodes,
        ms(cycles),
        ms(u64::from(first_token_cycles)),
        ms(per_token),
        CORE_HZ / 1_000_000
    );
    Ok(done.reason)
}

/// Collects the generated bytes and logs them a line at a time (a defmt message per token would
/// put every character on its own line): at a newline, at a space past `WRAP` bytes, or when full.
/// Only whole UTF-8 characters are printed; a character cut by the line end goes to the next one.
struct Lines {
    buf: [u8; 128],
    len: usize,
}

const WRAP: usize = 72;

impl Lines {
    const fn new() -> Self {
        Self {
            buf: [0; 128],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
        if b == b'\n' || (b == b' ' && self.len >= WRAP) || self.len == self.buf.len() {
            self.flush(false);
        }
    }

    fn finish(&mut self) {
        if self.len > 0 {
            self.flush(true);
        }
    }

    fn flush(&mut self, last: bool) {
        // Invalid bytes become '?'; an incomplete character at the end waits for its other bytes.
        let keep = loop {
            match core::str::from_utf8(&self.buf[..self.len]) {
                Ok(_) => break self.len,
                Err(e) => {
                    let at = e.valid_up_to();
                    let bad = e.error_len().unwrap_or(self.len - at);
                    if e.error_len().is_none() && !last && self.len < self.buf.len() {
                        break at;
                    }
                    self.buf[at..at + bad].fill(b'?');
                }
            }
        };
        let line = core::str::from_utf8(&self.buf[..keep]).unwrap_or("");
        defmt::println!("{=str}", line.strip_suffix('\n').unwrap_or(line));
        self.buf.copy_within(keep..self.len, 0);
        self.len -= keep;
    }
}

/// Logs the stack's peak use: cortex-m-rt (feature `paint-stack`) fills the stack with a pattern
/// at reset, and the lowest word no longer holding it is as deep as the stack went.
fn stack_report() {
    extern "C" {
        static _stack_start: u32;
        static _stack_end: u32;
    }
    let (top, bottom) = (
        addr_of!(_stack_start) as usize,
        addr_of!(_stack_end) as usize,
    );
    let mut at = bottom;
    // SAFETY: [bottom, top) is the stack region the linker script reserves (in DTCM); every word
    // of it is readable, and reading below the live frames changes nothing.
    while at < top
        && unsafe { core::ptr::read_volatile(at as *const u32) } == cortex_m_rt::STACK_PAINT_VALUE
    {
        at += 4;
    }
    defmt::info!(
        "stack: peak {=usize} B of {=usize} B",
        top - at,
        top - bottom
    );
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!("HardFault at pc {=u32:#010x}", frame.pc());
    loop {
        cortex_m::asm::bkpt();
    }
}
