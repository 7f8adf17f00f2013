//! A progress line for long work (`bench`, `quantize`, a long `generate` prefill): on standard
//! error, redrawn in place with `\r`, erased when the work is done, and only when standard error
//! is a terminal, so that a redirected or piped stderr (a log, a test, `--json`) never holds it
//! and standard output never does. `PICOFORMER_PROGRESS=0` turns it off, `=1` on.

use std::io::{IsTerminal as _, Write as _};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Redraws at most this often.
const EVERY: Duration = Duration::from_millis(100);

/// Whether progress lines are shown: stderr is a terminal (or `PICOFORMER_PROGRESS=1`).
pub fn enabled() -> bool {
    match std::env::var_os("PICOFORMER_PROGRESS") {
        Some(v) if v == "0" => false,
        Some(v) if v == "1" => true,
        _ => std::io::stderr().is_terminal(),
    }
}

/// Writes `text` over the current stderr line (errors ignored: progress is decoration).
fn draw(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{text}");
    let _ = err.flush();
}

/// A counted progress line: `label done/total (p%)`.
pub struct Progress {
    on: bool,
    label: &'static str,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(label: &'static str) -> Progress {
        Progress {
            on: enabled(),
            label,
            last: None,
        }
    }

    /// Shows `done` of `total` (throttled).
    pub fn update(&mut self, done: usize, total: usize) {
        if !self.on || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let pct = 100.0 * done as f64 / total.max(1) as f64;
        draw(&format!("{} {done}/{total} ({pct:.0}%)", self.label));
    }

    /// Erases the line (if one was drawn).
    pub fn clear(&mut self) {
        if self.last.take().is_some() {
            draw("");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A progress line for work that reports nothing while it runs (a prefill inside one call):
/// `label` and the seconds elapsed, redrawn by a thread until [`Ticker::stop`].
pub struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts the line if progress is [`enabled`] (otherwise, or if no thread can be started,
    /// a ticker that does nothing).
    pub fn start(label: String) -> Ticker {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = enabled()
            .then(|| {
                std::thread::Builder::new()
                    .name("progress".into())
                    .spawn(move || {
                        let t0 = Instant::now();
                        loop {
                            draw(&format!("{label}: {:.1} s", t0.elapsed().as_secs_f64()));
                            if rx.recv_timeout(EVERY * 2) != Err(mpsc::RecvTimeoutError::Timeout) {
                                break;
                            }
                        }
                        draw("");
                    })
                    .ok()
            })
            .flatten();
        Ticker {
            stop: Some(tx),
            thread,
        }
    }

    /// A ticker that draws nothing.
    pub fn start_none() -> Ticker {
        Ticker {
            stop: None,
            thread: None,
        }
    }

    /// Whether a line is being drawn.
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// Stops and erases the line; returns when it is erased.
    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}
