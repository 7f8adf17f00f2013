//! `picoformer generate`, `bench` and `bpc`: text generation with a byte-level model (by default
//! the bundled demo model, compiled into the binary), prefill/decode speed, and bits per
//! character on a text.

use std::io::Write as _;
use std::ops::ControlFlow;
use std::time::Instant;

use picoformer::generate::{CrossContext, GenerateConfig, Generator, Overflow, StopReason};
use picoformer::metrics;
use picoformer::options::ModelKind;
use picoformer::parallel::Rayon;
use picoformer::sampling::{default_top_k, Candidate, Sampler, SamplerConfig};
use picoformer::{f16, Element, KvCache, Model, Scratch, TransformerWrapper, XTransformer};

use crate::args::{json_number, json_string};
use crate::args::{Args, CliError};
use crate::files::{filled, human, Aligned, AlignedVec, ModelFile, MAX_FILE};
use crate::progress::{Progress, Ticker};

/// Bytes on a 64-byte boundary, so the bundled model's tensors can be viewed in place (and its
/// matrices, at multiples of 64 bytes in the file, start on cache lines).
#[repr(C, align(64))]
struct Align64<T: ?Sized>(T);

/// The bundled demo model (see `models/README.md` and `tools/train_demo.py`).
static BUNDLED_MODEL: &Align64<[u8]> = &Align64(*include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/demo.safetensors"
)));
/// Held-out text of the demo model (the default text of `bpc`).
static BUNDLED_HELDOUT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/demo.heldout.txt"
));

const DEFAULT_PROMPT: &str = "It is a truth universally acknowledged";
/// Positions per prefill chunk (the scratch arena is sized for this many).
const CHUNK: usize = 64;

const GENERATE_OPTIONS: &[&str] = &[
    "model",
    "prompt",
    "prompt-file",
    "source",
    "json",
    "max-tokens",
    "temperature",
    "top-k",
    "top-p",
    "min-p",
    "repetition-penalty",
    "repetition-window",
    "seed",
    "kv",
    "capacity",
    "slide",
    "prefill",
    "dot",
    "threads",
];

/// The model's bytes: `--model PATH`, or the bundled model.
enum Source {
    File(String, ModelFile),
    Bundled,
}

impl Source {
    fn new(args: &Args) -> Result<Source, CliError> {
        Ok(match args.text("model") {
            Some(path) => Source::File(path.to_string(), ModelFile::open(path)?),
            None => Source::Bundled,
        })
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Source::File(_, a) => a.bytes(),
            Source::Bundled => &BUNDLED_MODEL.0,
        }
    }

    fn name(&self) -> &str {
        match self {
            Source::File(p, _) => p,
            Source::Bundled => "bundled demo model (models/demo.safetensors)",
        }
    }

    /// The file's `XTransformer`, if it holds one (its decoder generates over the encoded
    /// `--source`).
    fn xtransformer(&self) -> Result<Option<XTransformer<'_>>, CliError> {
        match Model::<16>::from_safetensors(self.bytes()) {
            Err(e) if e == ModelKind::XTransformer.refusal() => {
                XTransformer::from_safetensors(self.bytes())
                    .map(Some)
                    .map_err(|e| CliError::Failed(format!("{}: {e}", self.name())))
            }
            _ => Ok(None),
        }
    }

    fn wrapper(&self) -> Result<TransformerWrapper<'_>, CliError> {
        match Model::from_safetensors(self.bytes()) {
            Ok(Model::Wrapper(w)) => Ok(w),
            Ok(Model::Decoder(_)) => Err(CliError::Failed(format!(
                "{}: a raw Decoder has no tokens: generation needs a TransformerWrapper",
                self.name()
            ))),
            Err(e) => Err(CliError::Failed(format!("{}: {e}", self.name()))),
        }
    }
}

/// The longest `--source` an encoder without absolute positions reads (its scratch grows with
/// the square of the length).
const MAX_SOURCE: usize = 4096;

/// An XTransformer's `--source TEXT` (byte-level tokens) through its encoder:
/// `encoder(src, return_embeddings=True)` (`xt:4760`), n × dim.
fn encode_source(xt: &XTransformer, text: &str) -> Result<Vec<f32>, CliError> {
    let (ew, ecfg) = (xt.encoder().config(), *xt.encoder().decoder().config());
    let src = tokenize(text.as_bytes(), ew.num_tokens)?;
    let limit = if ew.has_abs_pos_emb() {
        ew.max_seq_len.min(MAX_SOURCE)
    } else {
        MAX_SOURCE
    };
    if src.is_empty() || src.len() > limit {
        return Err(CliError::Usage(format!(
            "--source must hold 1 to {limit} bytes for this model's encoder, it holds {}",
            src.len()
        )));
    }
    let positions = ew.cache_positions(src.len());
    let mut kv = filled(
        KvCache::<f32>::elements(&ecfg, positions),
        0.0f32,
        "the encoder's KV cache",
    )?;
    let mut sb = filled(
        Scratch::elements(&ecfg, positions),
        0.0f32,
        "the encoder's scratch arena",
    )?;
    let mut memory = filled(src.len() * ecfg.dim, 0.0f32, "the encoder's output")?;
    let mut cache = KvCache::new(&ecfg, positions, &mut kv)?;
    let mut scratch = Scratch::new(&ecfg, positions, &mut sb)?;
    xt.encode(&mut cache, &mut scratch, &src, None, &mut memory)?;
    Ok(memory)
}

/// `--kv f32|f16`.
#[derive(Clone, Copy)]
enum KvType {
    F32,
    F16,
}

fn kv_type(args: &Args) -> Result<KvType, CliError> {
    match args.text("kv").unwrap_or("f32") {
        "f32" => Ok(KvType::F32),
        "f16" => Ok(KvType::F16),
        other => Err(CliError::Usage(format!(
            "bad value `{other}` for `--kv` (f32 or f16)"
        ))),
    }
}

/// `--prefill stored|panels`: whether the model's matrices are packed into prefill panels
/// (`TransformerWrapper::with_prefill_panels`: faster prompts for an f32 copy of the matrices).
fn prefill_panels(args: &Args) -> Result<bool, CliError> {
    match args.text("prefill").unwrap_or("stored") {
        "stored" => Ok(false),
        "panels" => Ok(true),
        other => Err(CliError::Usage(format!(
            "bad value `{other}` for `--prefill` (stored or panels)"
        ))),
    }
}

/// The arenas [`prepare`] packs the matrices into.
#[derive(Default)]
struct Arenas {
    /// f32 prefill panels.
    panels: Vec<f32>,
    /// int8 panels.
    int8: Vec<u8>,
}

/// The model with its matrices packed into f32 prefill panels if `panels` (`--prefill
/// panels`), and on the int8 path over int8 panels if `int8` (`--dot int8`: the Q8_0 matrices
/// packed, as many bytes as the weights); the arenas are sized here.
fn prepare<'a>(
    model: TransformerWrapper<'a>,
    panels: bool,
    int8: bool,
    arenas: &'a mut Arenas,
) -> Result<TransformerWrapper<'a>, CliError> {
    let mut model = model;
    if panels {
        arenas.panels = filled(model.prefill_panels_len(), 0.0, "the prefill panels")?;
        model = model.with_prefill_panels(&mut arenas.panels)?;
    }
    if int8 {
        arenas.int8 = filled(model.int8_panels_len(), 0, "the int8 panels")?;
        model = model.with_int8_panels(&mut arenas.int8)?;
    }
    Ok(model)
}

/// Cache capacity: `--capacity`, default `max_seq_len` (256 if 0).
fn capacity(args: &Args, model: &TransformerWrapper) -> Result<usize, CliError> {
    let cfg = model.config();
    let default = if cfg.max_seq_len > 0 {
        cfg.max_seq_len
    } else {
        256
    };
    let cap = args.get("capacity", default)?;
    if cap == 0 {
        return Err(CliError::Usage("--capacity must be at least 1".into()));
    }
    if cfg.has_abs_pos_emb() && cap > cfg.max_seq_len {
        return Err(CliError::Usage(format!(
            "--capacity {cap} exceeds the model's absolute position table ({})",
            cfg.max_seq_len
        )));
    }
    Ok(cap)
}

/// The prompt's bytes: `--prompt TEXT`, `--prompt-file PATH` (`-` reads standard input, at
/// most [`MAX_FILE`] bytes), or the default prompt.
fn prompt_bytes(args: &Args) -> Result<Vec<u8>, CliError> {
    match (args.text("prompt"), args.text("prompt-file")) {
        (Some(_), Some(_)) => Err(CliError::Usage(
            "give --prompt or --prompt-file, not both".into(),
        )),
        (Some(text), None) => Ok(text.as_bytes().to_vec()),
        (None, Some("-")) => {
            use std::io::Read as _;
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .take(MAX_FILE + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::Failed(format!("cannot read standard input: {e}")))?;
            if bytes.len() as u64 > MAX_FILE {
                return Err(CliError::Failed(format!(
                    "standard input holds more than the {} this tool reads",
                    human(MAX_FILE)
                )));
            }
            Ok(bytes)
        }
        (None, Some(path)) => Ok(Aligned::read(path)?.bytes().to_vec()),
        (None, None) => Ok(DEFAULT_PROMPT.as_bytes().to_vec()),
    }
}

/// Byte-level tokens of a text (token i = byte i), checked against the vocabulary.
fn tokenize(text: &[u8], num_tokens: usize) -> Result<Vec<u32>, CliError> {
    if num_tokens < 256 {
        return Err(CliError::Failed(format!(
            "the byte-level tokenizer needs num_tokens >= 256, the model has {num_tokens}"
        )));
    }
    Ok(text.iter().map(|&b| b as u32).collect())
}

/// Turns a stream of byte tokens into text: complete UTF-8 sequences are written as soon as
/// they are complete, invalid bytes as U+FFFD, tokens above 255 as U+FFFD.
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, token: u32, out: &mut String) {
        if token > 255 {
            self.flush(out);
            out.push('\u{FFFD}');
            return;
        }
        self.pending.push(token as u8);
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or(""));
                    match e.error_len() {
                        // Incomplete: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    fn flush(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
    }
}

/// The sampler of the command line; `width` is the logits' (x-transformers' default top-k is a
/// tenth of it).
fn sampler_config(args: &Args, width: usize) -> Result<SamplerConfig, CliError> {
    let mut cfg = SamplerConfig::temperature(args.get("temperature", 0.8f32)?);
    match args.text("top-k") {
        None => {}
        Some("default") => cfg = cfg.with_top_k(default_top_k(width)),
        Some(_) => cfg = cfg.with_top_k(args.get("top-k", 0usize)?),
    }
    if let Some(p) = args
        .text("top-p")
        .map(|_| args.get("top-p", 0.0f32))
        .transpose()?
    {
        cfg = cfg.with_top_p(p);
    }
    if let Some(p) = args
        .text("min-p")
        .map(|_| args.get("min-p", 0.0f32))
        .transpose()?
    {
        cfg = cfg.with_min_p(p);
    }
    cfg = cfg.with_repetition_penalty(
        args.get("repetition-penalty", 1.0f32)?,
        args.get("repetition-window", 64usize)?,
    );
    cfg.validate().map_err(|e| {
        CliError::Usage(format!(
            "{e} (temperature >= 0, top-k >= 1, top-p and min-p in [0, 1], repetition penalty > 0)"
        ))
    })?;
    Ok(cfg)
}

/// `picoformer generate [options] [--bench]`.
pub fn main(argv: &[String]) -> Result<(), CliError> {
    let bench_flag = argv.iter().any(|a| a == "--bench");
    let rest: Vec<String> = argv.iter().filter(|a| *a != "--bench").cloned().collect();
    if bench_flag {
        return bench(&rest);
    }
    let args = Args::parse(&rest, GENERATE_OPTIONS)?;
    args.positional(&[])?;
    let kv = kv_type(&args)?;
    let (panels, int8) = (prefill_panels(&args)?, crate::args::int8_dot(&args)?);
    let source = Source::new(&args)?;
    let (model, context) = match source.xtransformer()? {
        None => {
            let wrapper = source.wrapper()?;
            if args.text("source").is_some() {
                return Err(CliError::Usage(format!(
                    "--source is for an XTransformer's file; {} holds a TransformerWrapper",
                    source.name()
                )));
            }
            (wrapper, None)
        }
        Some(xt) => {
            let text = args.text("source").ok_or_else(|| {
                CliError::Usage(format!(
                    "{} holds an XTransformer: give the text to translate with --source TEXT",
                    source.name()
                ))
            })?;
            (xt.decoder().clone(), Some(encode_source(&xt, text)?))
        }
    };
    let mut arenas = Arenas::default();
    let model = prepare(model, panels, int8, &mut arenas)?;
    let (pool, executor) = threads(&args)?;
    let model = model.with_parallel(&executor);
    let context = context.as_deref();
    pool.install(|| match kv {
        KvType::F32 => run_generate::<f32>(&args, &source, &model, context),
        KvType::F16 => run_generate::<f16>(&args, &source, &model, context),
    })
}

/// `--threads N` (default 1): a pool of N threads that a step's products are split over
/// (`picoformer::parallel::Rayon`); the work runs inside it, so the splits are cheap.
fn threads(args: &Args) -> Result<(rayon::ThreadPool, Rayon), CliError> {
    let n: usize = args.get("threads", 1)?;
    if n == 0 || n > 256 {
        return Err(CliError::Usage("--threads must be 1 to 256".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start {n} threads: {e}")))?;
    Ok((pool, Rayon { parts: n }))
}

/// Generates with `model`; `context` is what a cross-attending decoder attends to (an
/// XTransformer's encoded source, n × dim).
fn run_generate<K: Element>(
    args: &Args,
    source: &Source,
    model: &TransformerWrapper,
    context: Option<&[f32]>,
) -> Result<(), CliError> {
    let cfg = *model.config();
    let d = cfg.attn_layers;
    // Token ids are below num_tokens; a position's logits are logits_width wide (logits_dim),
    // which is what the sampler and x-transformers' default top_k see.
    let (v, lw) = (cfg.num_tokens, cfg.logits_width());
    let prompt_text = prompt_bytes(args)?;
    let prompt = tokenize(&prompt_text, v)?;
    if prompt.is_empty() {
        return Err(CliError::Usage("the prompt must not be empty".into()));
    }
    let max_new = args.get("max-tokens", 200usize)?;
    let cap = capacity(args, model)?;
    let slide = args.get("slide", 0usize)?;
    if slide > cap {
        return Err(CliError::Usage(format!(
            "--slide {slide} exceeds the cache capacity {cap}"
        )));
    }
    let scfg = sampler_config(args, lw)?;
    let seed = args.get("seed", 0u64)?;
    let gcfg = GenerateConfig::new(max_new).overflow(if slide == 0 {
        Overflow::Stop
    } else {
        Overflow::Slide { keep: slide }
    });

    let mut kv_buf = AlignedVec::<K>::zeroed(
        KvCache::<K>::elements(&d, cfg.cache_positions(cap)),
        "the KV cache",
    )?;
    let mut scratch_buf =
        AlignedVec::<f32>::zeroed(Scratch::elements(&d, CHUNK), "the scratch arena")?;
    let mut logits = filled(lw, 0.0f32, "the logits")?;
    let mut work = filled(Sampler::work_len(lw), Candidate::EMPTY, "the sampler")?;
    // Twice what it must keep, so dropping old tokens is one copy per `need` tokens.
    let mut history = filled(history_len(&gcfg, &scfg), 0u32, "the token history")?;
    let context_rows = context.map_or(0, |c| c.len() / d.dim_context());
    let mut context_buf = AlignedVec::<K>::zeroed(
        KvCache::<K>::context_elements(&d, context_rows),
        "the context cache",
    )?;
    let mut cache = if context.is_some() {
        KvCache::with_context(
            &d,
            cfg.cache_positions(cap),
            &mut kv_buf,
            context_rows,
            &mut context_buf,
        )?
    } else {
        KvCache::new(&d, cfg.cache_positions(cap), &mut kv_buf)?
    };
    let mut scratch = Scratch::new(&d, CHUNK, &mut scratch_buf)?;
    let sampler = Sampler::new(scfg, seed).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut generator = Generator::new(sampler, gcfg, &mut logits, &mut work, &mut history)?;

    let mut stdout = std::io::stdout().lock();
    let mut text = String::new();
    let mut utf8 = Utf8Stream {
        pending: Vec::new(),
    };
    // A long prompt's prefill shows a progress line on a terminal's stderr; the prompt's echo
    // then waits until the line is gone (a terminal shows stdout and stderr on the same line).
    let mut ticker = match prompt.len() > CHUNK {
        true => Ticker::start(format!("prefill {} tokens", prompt.len())),
        false => Ticker::start_none(),
    };
    let mut echoed = !ticker.is_running();
    if echoed {
        let _ = stdout.write_all(&prompt_text);
        let _ = stdout.flush();
    }
    let t0 = Instant::now();
    let mut first_token_at = None;
    let mut io_error = None;
    let cross = CrossContext {
        rows: context,
        mask: None,
    };
    let result = generator.run_with(model, &mut cache, &mut scratch, &prompt, cross, |token| {
        first_token_at.get_or_insert_with(|| t0.elapsed());
        if !echoed {
            ticker.stop();
            let _ = stdout.write_all(&prompt_text);
            echoed = true;
        }
        text.clear();
        utf8.push(token, &mut text);
        if let Err(e) = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // e.g. a closed pipe: stop generating, report it below.
            io_error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    let total = t0.elapsed();
    ticker.stop();
    if !echoed {
        let _ = stdout.write_all(&prompt_text);
    }
    text.clear();
    utf8.flush(&mut text);
    let _ = writeln!(stdout, "{text}");
    if let Some(e) = io_error {
        return Err(CliError::Failed(format!("cannot write the output: {e}")));
    }
    let out = result.map_err(|e| CliError::Failed(e.to_string()))?;

    let prefill = first_token_at.unwrap_or(total);
    let decode = total.saturating_sub(prefill);
    let decode_tps = if out.new_tokens > 1 {
        (out.new_tokens - 1) as f64 / decode.as_secs_f64()
    } else {
        0.0
    };
    let why = match out.reason {
        StopReason::EndToken => "end token".to_string(),
        StopReason::MaxTokens => "--max-tokens reached".to_string(),
        StopReason::CacheFull => format!("KV cache full ({cap} positions; --slide KEEP goes on)"),
        StopReason::Stopped => "stopped".to_string(),
    };
    let slid = if out.reencodes > 0 {
        format!(
            ", window slid {}x re-encoding {} positions",
            out.reencodes, out.reencoded_tokens
        )
    } else {
        String::new()
    };
    let arena = Scratch::bytes(&d, CHUNK) as u64
        + 4 * v as u64
        + (std::mem::size_of::<Candidate>() * Sampler::work_len(v)) as u64
        + 4 * history_len(&gcfg, &scfg) as u64;
    // What the run adds to the defaults: prefill panels (memory), int8 dot products.
    let mut extras = if model.decoder().has_prefill_panels() {
        format!(
            ", prefill panels {}",
            human(4 * model.prefill_panels_len() as u64)
        )
    } else {
        String::new()
    };
    if model.decoder().has_int8_panels() {
        extras.push_str(&format!(
            ", int8 panels {}; int8 dot products",
            human(model.int8_panels_len() as u64)
        ));
    }
    let context_bytes = KvCache::<K>::context_bytes(&d, context_rows);
    if context.is_some() {
        extras.push_str(&format!(
            ", context cache {} ({context_rows} source positions)",
            human(context_bytes as u64)
        ));
    }
    // Statistics go to stderr, so stdout holds the text alone (`generate > out.txt`).
    if args.switch("json") {
        let stop = match out.reason {
            StopReason::EndToken => "end_token",
            StopReason::MaxTokens => "max_tokens",
            StopReason::CacheFull => "cache_full",
            StopReason::Stopped => "stopped",
        };
        eprintln!(
            "{{\"tokens\":{},\"stop\":\"{stop}\",\"seconds\":{},\"tokens_per_s\":{},\"prompt_tokens\":{},\"first_token_ms\":{},\"decode_tokens_per_s\":{},\"reencodes\":{},\"reencoded_tokens\":{},\"weights_bytes\":{},\"kv\":\"{}\",\"capacity\":{cap},\"kv_cache_bytes\":{},\"context_cache_bytes\":{context_bytes},\"arena_bytes\":{arena},\"seed\":{seed}}}",
            out.new_tokens,
            json_number(total.as_secs_f64()),
            json_number(out.new_tokens as f64 / total.as_secs_f64()),
            out.prompt_tokens,
            json_number(prefill.as_secs_f64() * 1e3),
            json_number(decode_tps),
            out.reencodes,
            out.reencoded_tokens,
            source.bytes().len(),
            kv_name::<K>(),
            KvCache::<K>::bytes(&d, cfg.cache_positions(cap)),
        );
        return Ok(());
    }
    eprintln!(
        "-- {} tokens ({why}{slid}) in {:.2} s: {:.1} tokens/s (prompt {} tokens + first token {:.1} ms, then {:.1} tokens/s); memory: weights {} ({}), KV cache {} ({} x {} positions), arena {} (scratch {CHUNK}-position chunks + logits + sampler + history){extras}; seed {seed}",
        out.new_tokens,
        total.as_secs_f64(),
        out.new_tokens as f64 / total.as_secs_f64(),
        out.prompt_tokens,
        prefill.as_secs_f64() * 1e3,
        decode_tps,
        human(source.bytes().len() as u64),
        if matches!(source, Source::Bundled) { "bundled" } else { "file" },
        human(KvCache::<K>::bytes(&d, cfg.cache_positions(cap)) as u64),
        kv_name::<K>(),
        cap,
        human(arena),
    );
    Ok(())
}

/// `f32` or `f16` (the only cache types the CLI offers).
fn kv_name<K: Element>() -> &'static str {
    if std::mem::size_of::<K>() == 4 {
        "f32"
    } else {
        "f16"
    }
}

fn history_len(g: &GenerateConfig, s: &SamplerConfig) -> usize {
    g.history_len(s.repetition_window).max(1).saturating_mul(2)
}

/// `picoformer bench [--model PATH] [--kv f32|f16] [--prompt-tokens N] [--tokens N] [--repeat R]
/// [--prefill stored|panels] [--dot f32|int8]`.
pub fn bench(argv: &[String]) -> Result<(), CliError> {
    let args = Args::parse(
        argv,
        &[
            "model",
            "kv",
            "prompt-tokens",
            "tokens",
            "repeat",
            "capacity",
            "prefill",
            "dot",
            "threads",
            "json",
        ],
    )?;
    args.positional(&[])?;
    let kv = kv_type(&args)?;
    let (panels, int8) = (prefill_panels(&args)?, crate::args::int8_dot(&args)?);
    let source = Source::new(&args)?;
    let mut arenas = Arenas::default();
    let model = prepare(source.wrapper()?, panels, int8, &mut arenas)?;
    let (pool, executor) = threads(&args)?;
    let model = model.with_parallel(&executor);
    pool.install(|| match kv {
        KvType::F32 => run_bench::<f32>(&args, &source, &model),
        KvType::F16 => run_bench::<f16>(&args, &source, &model),
    })
}

fn run_bench<K: Element>(
    args: &Args,
    source: &Source,
    model: &TransformerWrapper,
) -> Result<(), CliError> {
    let cfg = *model.config();
    let d = cfg.attn_layers;
    let (v, lw) = (cfg.num_tokens, cfg.logits_width());
    let cap = capacity(args, model)?;
    let n_prompt = args.get("prompt-tokens", cap / 2)?;
    let n_decode = args.get("tokens", cap - cap / 2)?;
    let repeat = args.get("repeat", 3usize)?;
    if n_prompt == 0 || repeat == 0 || n_prompt.saturating_add(n_decode) > cap {
        return Err(CliError::Usage(format!(
            "need --prompt-tokens >= 1, --repeat >= 1 and --prompt-tokens + --tokens <= capacity {cap}"
        )));
    }
    // Text-like tokens: the held-out sample's bytes, repeated.
    let prompt: Vec<u32> = BUNDLED_HELDOUT
        .iter()
        .cycle()
        .take(n_prompt)
        .map(|&b| u32::from(b) % v as u32)
        .collect();
    let mut kv_buf = AlignedVec::<K>::zeroed(
        KvCache::<K>::elements(&d, cfg.cache_positions(cap)),
        "the KV cache",
    )?;
    let mut scratch_buf =
        AlignedVec::<f32>::zeroed(Scratch::elements(&d, CHUNK), "the scratch arena")?;
    let mut logits = filled(lw, 0.0f32, "the logits")?;
    let mut work = filled(lw, Candidate::EMPTY, "the sampler")?;
    let mut cache = KvCache::new(&d, cfg.cache_positions(cap), &mut kv_buf)?;
    let mut scratch = Scratch::new(&d, CHUNK, &mut scratch_buf)?;
    let mut sampler = Sampler::new(SamplerConfig::greedy(), 0)?;
    let (mut best_prefill, mut best_decode) = (f64::INFINITY, f64::INFINITY);
    // Counted in tokens: each repeat's prefill, then its decode steps.
    let mut progress = Progress::new("bench: tokens");
    let total = repeat.saturating_mul(n_prompt.saturating_add(n_decode));
    for r in 0..repeat {
        let base = r * (n_prompt + n_decode);
        progress.update(base, total);
        cache.reset();
        let t0 = Instant::now();
        model.forward_last(&mut cache, &mut scratch, &prompt, None, &mut logits)?;
        best_prefill = best_prefill.min(t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        for i in 0..n_decode {
            progress.update(base + n_prompt + i, total);
            // A logits_dim wider than the vocabulary can pick an index that is no token id; the
            // benchmark only needs some token to feed back.
            let t = sampler.sample(&logits, &[], &mut work)? % v as u32;
            model.step(&mut cache, &mut scratch, t, &mut logits)?;
        }
        best_decode = best_decode.min(t1.elapsed().as_secs_f64());
    }
    progress.clear();
    let (panels, int8) = (
        model.decoder().has_prefill_panels(),
        model.decoder().int8_activations(),
    );
    if args.switch("json") {
        outln!(
            "{{\"model\":{},\"dim\":{},\"depth\":{},\"heads\":{},\"kv_heads\":{},\"num_tokens\":{v},\"kv\":\"{}\",\"capacity\":{cap},\"chunk\":{CHUNK},\"prefill_panels\":{panels},\"int8\":{int8},\"repeat\":{repeat},\"prefill_tokens\":{n_prompt},\"prefill_seconds\":{},\"prefill_tokens_per_s\":{},\"decode_tokens\":{n_decode},\"decode_seconds\":{},\"decode_tokens_per_s\":{}}}",
            json_string(source.name()),
            d.dim,
            d.depth,
            d.heads,
            d.kv_heads(),
            kv_name::<K>(),
            json_number(best_prefill),
            json_number(n_prompt as f64 / best_prefill),
            json_number(best_decode),
            json_number(n_decode as f64 / best_decode.max(f64::MIN_POSITIVE)),
        );
        return Ok(());
    }
    outln!(
        "model   {} (dim {}, depth {}, heads {}/{} kv, {} tokens), KV cache {} x {cap}, prefill chunks of {CHUNK}{}",
        source.name(),
        d.dim,
        d.depth,
        d.heads,
        d.kv_heads(),
        v,
        kv_name::<K>(),
        match (panels, int8) {
            (false, false) => "",
            (true, false) => " over prefill panels",
            (false, true) => ", int8 dot products",
            (true, true) => " over prefill panels, int8 dot products",
        }
    );
    outln!(
        "prefill {n_prompt} tokens: {:.0} tokens/s ({:.2} ms, best of {repeat})",
        n_prompt as f64 / best_prefill,
        best_prefill * 1e3
    );
    outln!(
        "decode  {n_decode} tokens after the prompt: {:.0} tokens/s ({:.3} ms/token, greedy, best of {repeat})",
        n_decode as f64 / best_decode.max(f64::MIN_POSITIVE),
        best_decode * 1e3 / n_decode.max(1) as f64
    );
    Ok(())
}

/// `picoformer bpc [--model PATH] [--text PATH] [--window N] [--kv f32|f16]`: mean −log2 p per
/// byte over non-overlapping windows of N+1 bytes (the model reads N, predicts bytes 1..=N of
/// each window; `tools/train_demo.py` computes the same in PyTorch).
pub fn bpc(argv: &[String]) -> Result<(), CliError> {
    let args = Args::parse(argv, &["model", "text", "window", "kv", "dot"])?;
    args.positional(&[])?;
    let kv = kv_type(&args)?;
    let int8 = crate::args::int8_dot(&args)?;
    let source = Source::new(&args)?;
    let mut arenas = Arenas::default();
    let model = prepare(source.wrapper()?, false, int8, &mut arenas)?;
    let text = match args.text("text") {
        Some(p) => Aligned::read(p)?.bytes().to_vec(),
        None => BUNDLED_HELDOUT.to_vec(),
    };
    match kv {
        KvType::F32 => run_bpc::<f32>(&args, &model, &text),
        KvType::F16 => run_bpc::<f16>(&args, &model, &text),
    }
}

fn run_bpc<K: Element>(
    args: &Args,
    model: &TransformerWrapper,
    text: &[u8],
) -> Result<(), CliError> {
    let cfg = *model.config();
    let d = cfg.attn_layers;
    let v = cfg.num_tokens;
    let window = args.get(
        "window",
        if cfg.max_seq_len > 0 {
            cfg.max_seq_len
        } else {
            256
        },
    )?;
    if window == 0 {
        return Err(CliError::Usage("--window must be at least 1".into()));
    }
    let tokens = tokenize(text, v)?;
    if tokens.len() < 2 {
        return Err(CliError::Failed("the text needs at least 2 bytes".into()));
    }
    let mut kv_buf = AlignedVec::<K>::zeroed(
        KvCache::<K>::elements(&d, cfg.cache_positions(window)),
        "the KV cache",
    )?;
    let mut scratch_buf =
        AlignedVec::<f32>::zeroed(Scratch::elements(&d, CHUNK), "the scratch arena")?;
    let mut logits = filled(
        CHUNK.saturating_mul(cfg.logits_width()),
        0.0f32,
        "the logits",
    )?;
    let mut cache = KvCache::new(&d, cfg.cache_positions(window), &mut kv_buf)?;
    let mut scratch = Scratch::new(&d, CHUNK, &mut scratch_buf)?;
    let t0 = Instant::now();
    let (mut bits, mut scored) = (0.0f64, 0usize);
    for start in (0..tokens.len() - 1).step_by(window) {
        let w = &tokens[start
            ..start
                .saturating_add(window)
                .saturating_add(1)
                .min(tokens.len())];
        cache.reset();
        bits += metrics::bits(model, &mut cache, &mut scratch, w, &mut logits)?;
        scored += w.len() - 1;
    }
    outln!(
        "{:.6} bits per character over {scored} characters (windows of {window}, KV cache {}, {:.1} s)",
        bits / scored as f64,
        kv_name::<K>(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
