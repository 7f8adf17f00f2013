//! The `picoformer` command-line tool (feature `cli`): inspect a model file, run it on inputs,
//! and decode a demo. Every failure is a message on stderr and a non-zero exit status:
//! 2 for usage errors, 1 for everything else.

/// `println!` that returns [`CliError::Failed`] from the enclosing function when standard output
/// is closed (e.g. piped into `head`), instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(|e| {
            crate::args::CliError::Failed(format!("cannot write the output: {e}"))
        })?
    }};
}

mod args;
mod demo;
mod files;
mod generate;
mod inspect;
mod progress;
mod quantize;
mod run;
mod rust;

use args::{Args, CliError};

/// Each command and its usage text (`picoformer COMMAND --help` prints one).
const COMMANDS: &[(&str, &str)] = &[
    (
        "generate",
        "  picoformer generate [--model PATH] [--prompt TEXT | --prompt-file PATH|-] [--max-tokens N]
                      [--source TEXT] [--temperature T]
                      [--top-k K|default] [--top-p P] [--min-p P] [--repetition-penalty R]
                      [--repetition-window N] [--seed S] [--kv f32|f16] [--capacity N]
                      [--slide KEEP] [--prefill stored|panels] [--dot f32|int8] [--threads N]
                      [--json] [--bench]
      stream text to stdout, statistics to stderr (--json: as one JSON object), from a
      byte-level model (default: the bundled demo model, trained on Jane
      Austen), or an XTransformer's decoder over its encoded --source (required for one);
      temperature 0 is greedy; --slide KEEP re-encodes the last KEEP tokens when the
      KV cache is full instead of stopping; --prefill panels packs the matrices into an f32
      copy for faster prompts; --dot int8 quantises the activations of products by Q8_0
      weights (faster, less exact); --threads N splits each decode step's matrix products over
      N threads (the same numbers); --bench runs `bench` instead",
    ),
    (
        "bench",
        "  picoformer bench [--model PATH] [--kv f32|f16] [--prompt-tokens N] [--tokens N] [--repeat R]
                   [--prefill stored|panels] [--dot f32|int8] [--threads N] [--json]
      prefill and decode tokens/s (--json: one JSON object)",
    ),
    (
        "bpc",
        "  picoformer bpc [--model PATH] [--text PATH] [--window N] [--kv f32|f16] [--dot f32|int8]
      bits per character of a text (default: the demo model's held-out sample)",
    ),
    (
        "demo",
        "  picoformer demo [--tokens N] [--prompt TEXT]
      decode with a small built-in random-weight model and report speed and memory",
    ),
    (
        "inspect",
        "  picoformer inspect MODEL [--capacity N] [--context M] [--chunk P] [--json | --rust]
      configuration, parameter count, weight bytes and the exact RAM plan (--json: one JSON
      object; --rust: the configuration as Rust constants and the static buffers a firmware
      declares, sized by picoformer's const fns)",
    ),
    (
        "run",
        "  picoformer run MODEL INPUTS OUT [--dot f32|int8]
      INPUTS: safetensors with `x` (b,n,dim) f32 or `tokens` (b,n) i64, optional `context`
      (b,m,dim_context) f32. OUT gets `full` and `stepwise` (prefill of the first position,
      then one step per position), shaped like x-transformers' outputs",
    ),
    (
        "quantize",
        "  picoformer quantize MODEL OUT
      rewrite the weight matrices as Q8_0 (int8 blocks of 32 with an f16 scale)",
    ),
];

/// The usage text of every command, or of `command` alone.
fn usage(command: Option<&str>) -> String {
    let mut text = String::from("usage:");
    for (name, help) in COMMANDS {
        if command.is_none_or(|c| c == *name) {
            text.push('\n');
            text.push_str(help);
        }
    }
    text
}

fn main() {
    // Arguments that are not UTF-8 are a usage error, not a panic in `std::env::args`.
    let argv: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(argv) => argv,
        Err(bad) => {
            eprintln!(
                "picoformer: argument {bad:?} is not valid UTF-8\n{}",
                usage(None)
            );
            std::process::exit(2);
        }
    };
    let command = argv.first().map(String::as_str);
    let result = match command {
        Some("generate") => generate::main(&argv[1..]),
        Some("bench") => generate::bench(&argv[1..]),
        Some("bpc") => generate::bpc(&argv[1..]),
        Some("demo") => Args::parse(&argv[1..], &["tokens", "prompt"]).and_then(|a| demo::main(&a)),
        Some("inspect") => Args::parse(
            &argv[1..],
            &["capacity", "context", "chunk", "json", "rust"],
        )
        .and_then(|a| inspect::main(&a)),
        Some("run") => Args::parse(&argv[1..], &["dot"]).and_then(|a| run::main(&a)),
        Some("quantize") => Args::parse(&argv[1..], &[]).and_then(|a| quantize::main(&a)),
        Some("-h" | "--help" | "help") => (|| {
            outln!("{}", usage(argv.get(1).map(String::as_str)));
            Ok(())
        })(),
        Some("-V" | "--version" | "version") => (|| {
            outln!("picoformer {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        })(),
        Some(other) => Err(CliError::Usage(format!("unknown command `{other}`"))),
        None => Err(CliError::Usage("no command given".into())),
    };
    // The usage of the command given, if it is one.
    let known = command.filter(|c| COMMANDS.iter().any(|(name, _)| name == c));
    match result {
        Ok(()) => {}
        Err(CliError::Help) => {
            use std::io::Write as _;
            // A closed stdout (`--help | head -1`) is not worth an error.
            let _ = writeln!(std::io::stdout(), "{}", usage(known));
        }
        Err(CliError::Usage(m)) => {
            eprintln!("picoformer: {m}\n{}", usage(known));
            std::process::exit(2);
        }
        Err(CliError::Failed(m)) => {
            eprintln!("picoformer: {m}");
            std::process::exit(1);
        }
    }
}
