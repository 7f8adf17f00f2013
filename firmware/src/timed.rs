//! The timed greedy pass both decoder programs (`src/main.rs`, `src/decode_only.rs`) end with:
//! the prompt in one `forward_last`, then one `step` per generated token but the last, with the
//! board timer read around them (instructions under QEMU's `-icount`, `clock`), and the report
//! lines `firmware/run.sh` and `count.sh` read.

use picoformer::{Error, KvCache, Scratch, TransformerWrapper};
use semihosting::println;

use crate::clock::Clock;
use crate::decode::argmax;

/// What the timed pass measured.
pub struct Timing {
    /// Timer readings: before the prompt, after it, after the last step.
    marks: [u64; 3],
    /// Instructions of the prompt and of all the steps.
    prefill: u64,
    decode: u64,
    per_tick_q16: u64,
    prompt: usize,
    steps: usize,
    /// Whether the last step's logits pick the last of `tokens` again.
    pub same_last_token: bool,
}

/// Decodes `prompt` then `tokens[..len - 1]` again from an empty cache, timed; `row` is one row
/// of logits. `tokens` holds at least one token.
pub fn greedy<const D: usize>(
    model: &TransformerWrapper<'_, D>,
    cache: &mut KvCache<'_, f32>,
    scratch: &mut Scratch<'_>,
    prompt: &[u32],
    tokens: &[u32],
    row: &mut [f32],
) -> Result<Timing, Error> {
    let (&last, fed) = tokens.split_last().unwrap_or((&0, &[]));
    let mut clock = Clock::calibrate();
    cache.reset();
    let t0 = clock.ticks();
    model.forward_last(cache, scratch, prompt, None, row)?;
    let t1 = clock.ticks();
    for &t in fed {
        model.step(cache, scratch, t, row)?;
        // Read once per step: the 24-bit SysTick must not wrap twice between two reads.
        clock.ticks();
    }
    let t2 = clock.ticks();
    Ok(Timing {
        marks: [t0, t1, t2],
        prefill: clock.instructions(t1 - t0),
        decode: clock.instructions(t2 - t1),
        per_tick_q16: clock.per_tick_q16(),
        prompt: prompt.len(),
        steps: fed.len(),
        same_last_token: argmax(row) == last as usize,
    })
}

impl Timing {
    /// The report's timing lines: the marks, the clock, instructions per token; `macs` is the
    /// model's weight multiply-adds per decoded token.
    pub fn print(&self, macs: usize) {
        let [t0, t1, t2] = self.marks;
        println!("mark prefill-start {t0}");
        println!("mark prefill-end {t1}");
        println!("mark decode-end {t2}");
        let q = self.per_tick_q16;
        println!(
            "clock: {}.{:03} instructions per tick (calibrated; exact only under -icount shift=0)",
            q >> 16,
            ((q & 0xFFFF) * 1000) >> 16
        );
        println!(
            "instructions: prefill {} per token ({} over {} tokens), decode {} per token ({} over {} steps)",
            self.prefill / self.prompt.max(1) as u64,
            self.prefill,
            self.prompt,
            self.decode / self.steps.max(1) as u64,
            self.decode,
            self.steps
        );
        println!("weights: {macs} multiply-adds per decoded token");
    }
}
