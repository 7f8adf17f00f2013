//! Parallelism the caller provides: fork-join over independent parts of the work.
//!
//! The library never starts a thread. Where a step's or a chunk's work splits into independent
//! parts (one position: the rows of a matrix-vector product, every weight matrix and the logits,
//! and the heads of attention over a long cache; a chunk of positions: its positions, in every
//! matrix-matrix product and in attention), a decoder given an executor
//! (`Decoder::with_parallel`, feature `parallel`) hands the parts to [`Parallel::run`]; without
//! one it runs them itself, in order.
//! Without the feature the trait and [`Sequential`] are here but no decoder splits: the
//! splitting code is not compiled in, so a firmware image does not carry it. Each output element is computed by one part, by the same
//! kernel over the same weights in the same order as in one piece, so the results are identical
//! bit for bit whatever the executor, the number of parts or the order they run in.
//!
//! Executors:
//! - [`Sequential`]: the parts in order on the calling thread (what runs without an executor);
//! - with the `rayon` feature, `Rayon`: the parts on rayon's thread pool (persistent: a step
//!   starts no thread);
//! - on a dual-core microcontroller, the firmware's own: core 0 publishes the job (a pointer to
//!   `job` and the part's output) in a shared slot, core 1 spins on the slot, runs its part and
//!   sets a done flag, core 0 runs the other part and waits for the flag. The parts are disjoint
//!   `&mut [f32]`, so nothing else is shared.

use crate::error::Error;

/// The work on one part: `job(i, part)` for part `i` of the output.
pub type Job<'a> = dyn Fn(usize, &mut [f32]) -> Result<(), Error> + Sync + 'a;

/// A fork-join executor over disjoint parts of an output.
pub trait Parallel: Sync {
    /// How many parts the work is worth splitting into (the threads or cores available); 1 runs
    /// it in one piece.
    fn parts(&self) -> usize;

    /// Runs `job(i, part)` for every `part` of `out.chunks_mut(chunk)` (`i` its index), possibly
    /// at the same time, and returns when all have run: the first error if any failed.
    ///
    /// # Errors
    /// An error of a `job`.
    fn run(&self, out: &mut [f32], chunk: usize, job: &Job<'_>) -> Result<(), Error>;
}

/// The parts in order on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl Parallel for Sequential {
    fn parts(&self) -> usize {
        1
    }

    fn run(&self, out: &mut [f32], chunk: usize, job: &Job<'_>) -> Result<(), Error> {
        out.chunks_mut(chunk.max(1))
            .enumerate()
            .try_for_each(|(i, part)| job(i, part))
    }
}

/// The parts on rayon's thread pool: `parts` of them, 0 meaning one per thread of the pool.
///
/// Run the decoder inside the pool (`ThreadPool::install`, as `picoformer generate --threads`
/// does): each split is then a cheap `join` on a pool thread. Called from a thread outside the
/// pool, every split hands both parts to the pool and blocks the caller: the same numbers, but
/// slower than one thread (0.6× measured on two cores).
#[cfg(feature = "rayon")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Rayon {
    /// Parts to split into; 0: `rayon::current_num_threads()`.
    pub parts: usize,
}

#[cfg(feature = "rayon")]
impl Parallel for Rayon {
    fn parts(&self) -> usize {
        match self.parts {
            0 => rayon::current_num_threads(),
            n => n,
        }
    }

    fn run(&self, out: &mut [f32], chunk: usize, job: &Job<'_>) -> Result<(), Error> {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk.max(1))
            .enumerate()
            .try_for_each(|(i, part)| job(i, part))
    }
}

/// Rows per part of a product with `rows` output rows split `parts` ways: a multiple of 16
/// (whole strips of every matrix-vector kernel and whole int8 panels, so every row goes through
/// the same code as in one piece), for at least 256 rows; `rows` (one part) when splitting is not
/// worth it.
pub(crate) fn rows_per_part(rows: usize, parts: usize) -> usize {
    const ALIGN: usize = 16;
    const MIN: usize = 128;
    if parts <= 1 || rows < 2 * MIN {
        return rows;
    }
    rows.div_ceil(parts).div_ceil(ALIGN) * ALIGN
}

/// Positions per part of a chunk of `n` positions split `parts` ways, every part (the last
/// included) at least `min` positions; `None` when that leaves fewer than two parts.
pub(crate) fn positions_per_part(n: usize, parts: usize, min: usize) -> Option<usize> {
    let min = min.max(1);
    let mut p = parts.min(n / min);
    while p > 1 {
        let per = n.div_ceil(p);
        // The last of `n.div_ceil(per)` chunks of `per`.
        let last = n - (n.div_ceil(per) - 1) * per;
        if last >= min {
            return Some(per);
        }
        p -= 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part of a position split is at least `min` long, there are at least two and at
    /// most `parts`, and they cover the chunk.
    #[test]
    fn position_parts_are_long_enough() {
        for n in 0..200 {
            for parts in 1..9 {
                for min in [1, 8, 16] {
                    match positions_per_part(n, parts, min) {
                        Some(per) => {
                            // The chunks of `per`: all full but the last.
                            let count = n.div_ceil(per);
                            let last = n - (count - 1) * per;
                            assert!(count >= 2 && count <= parts, "{n} {parts}");
                            assert!(per >= min && last >= min, "{n} {parts} {min}");
                        }
                        None => assert!(parts < 2 || n < 2 * min, "{n} {parts} {min}"),
                    }
                }
            }
        }
        assert_eq!(positions_per_part(64, 2, 16), Some(32));
        assert_eq!(positions_per_part(50, 3, 16), Some(17));
        assert_eq!(positions_per_part(31, 2, 16), None);
    }
}
