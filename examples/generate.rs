//! The README's host example, as a program: load a model file, then stream 200 sampled tokens.
//!
//!     cargo run --release --example generate
//!
//! (tests/readme.rs checks that the README shows this file's code.)

use std::io::Write;
use std::ops::ControlFlow;

use picoformer::generate::{GenerateConfig, Overflow};
use picoformer::sampling::SamplerConfig;
use picoformer::session::{Session, SessionConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The file, the KV cache (256 positions) and every other buffer, sized from the model.
    let mut session = Session::open(
        "models/demo.safetensors",
        SessionConfig::new().capacity(256),
    )?
    .with_sampler(SamplerConfig::temperature(0.8).with_top_p(0.9), 42)?;

    let prompt: Vec<u32> = b"Emma Woodhouse".iter().map(|&b| u32::from(b)).collect();
    let config = GenerateConfig::new(200).overflow(Overflow::Slide { keep: 64 });
    let mut out = std::io::stdout();
    let done = session.generate(&prompt, config, |token| {
        let _ = out.write_all(&[token as u8]); // the demo model is byte-level
        ControlFlow::Continue(())
    })?;
    println!("\n{} tokens, stopped by {:?}", done.new_tokens, done.reason);
    Ok(())
}
