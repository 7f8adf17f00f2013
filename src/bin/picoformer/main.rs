//! The `picoformer` command-line tool (feature `cli`): inspect a model file, run it on inputs,
//! and decode a demo. Every failure is a message on stderr and a non-zero exit status:
//! 2 for usage errors, 1 for everything else.

mod args;
mod demo;
mod files;
mod generate;
mod inspect;
mod quantize;
mod run;

use args::{Args, CliError};

const USAGE: &str = "usage:
  picoformer generate [--model PATH] [--prompt TEXT] [--max-tokens N] [--temperature T]
                      [--top-k K|default] [--top-p P] [--min-p P] [--repetition-penalty R]
                      [--repetition-window N] [--seed S] [--kv f32|f16] [--capacity N]
                      [--slide KEEP] [--prefill stored|panels] [--dot f32|int8] [--bench]
      stream text from a byte-level model (default: the bundled demo model, trained on Jane
      Austen); temperature 0 is greedy; --slide KEEP re-encodes the last KEEP tokens when the
      KV cache is full instead of stopping; --prefill panels packs the matrices into an f32
      copy for faster prompts; --dot int8 quantises the activations of products by Q8_0
      weights (faster, less exact); --bench runs `bench` instead
  picoformer bench [--model PATH] [--kv f32|f16] [--prompt-tokens N] [--tokens N] [--repeat R]
                   [--prefill stored|panels] [--dot f32|int8]
      prefill and decode tokens/s
  picoformer bpc [--model PATH] [--text PATH] [--window N] [--kv f32|f16] [--dot f32|int8]
      bits per character of a text (default: the demo model's held-out sample)
  picoformer demo [--tokens N] [--prompt TEXT]
      decode with a small built-in random-weight model and report speed and memory
  picoformer inspect MODEL [--capacity N] [--context M] [--chunk P]
      configuration, parameter count, weight bytes and the exact RAM plan
  picoformer run MODEL INPUTS OUT [--dot f32|int8]
      INPUTS: safetensors with `x` (b,n,dim) f32 or `tokens` (b,n) i64, optional `context`
      (b,m,dim_context) f32. OUT gets `full` and `stepwise` (prefill of the first position,
      then one step per position), shaped like x-transformers' outputs
  picoformer quantize MODEL OUT
      rewrite the weight matrices as Q8_0 (int8 blocks of 32 with an f16 scale)";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("generate") => generate::main(&argv[1..]),
        Some("bench") => generate::bench(&argv[1..]),
        Some("bpc") => generate::bpc(&argv[1..]),
        Some("demo") => Args::parse(&argv[1..], &["tokens", "prompt"]).and_then(|a| demo::main(&a)),
        Some("inspect") => Args::parse(&argv[1..], &["capacity", "context", "chunk"])
            .and_then(|a| inspect::main(&a)),
        Some("run") => Args::parse(&argv[1..], &["dot"]).and_then(|a| run::main(&a)),
        Some("quantize") => Args::parse(&argv[1..], &[]).and_then(|a| quantize::main(&a)),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(CliError::Usage(format!("unknown command `{other}`"))),
        None => Err(CliError::Usage("no command given".into())),
    };
    match result {
        Ok(()) => {}
        Err(CliError::Usage(m)) => {
            eprintln!("picoformer: {m}\n{USAGE}");
            std::process::exit(2);
        }
        Err(CliError::Failed(m)) => {
            eprintln!("picoformer: {m}");
            std::process::exit(1);
        }
    }
}
