//! `picoformer generate`, `bench` and `bpc` end to end: the bundled model works with no
//! arguments from any directory, output is deterministic for a seed, the summary line reports
//! speed and memory, bits per character match PyTorch's, and bad arguments exit 2, failures 1.
#![cfg(feature = "cli")]

mod common;
mod reference;

use std::process::Command;

use picoformer::{DecoderConfig, WrapperConfig};

const BIN: &str = env!("CARGO_BIN_EXE_picoformer");

fn run(args: &[&str]) -> (i32, String, String) {
    // From a directory outside the repository: the bundled model is inside the binary.
    let out = Command::new(BIN)
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tmp(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("picoformer-cli-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

/// The generated text (standard output, which holds nothing else), and the summary line
/// (standard error).
fn split<'a>(out: &'a str, err: &'a str) -> (&'a str, &'a str) {
    assert!(!out.contains("\n-- "), "statistics on stdout: {out}");
    let summary = err.lines().last().expect("summary line");
    assert!(summary.starts_with("-- "), "{err}");
    (out.strip_suffix('\n').unwrap_or(out), summary)
}

/// The generated text alone.
fn text(out: &str) -> &str {
    out.strip_suffix('\n').unwrap_or(out)
}

#[test]
fn generate_with_no_arguments_uses_the_bundled_model() {
    let (code, out, err) = run(&["generate"]);
    assert_eq!(code, 0, "{err}");
    let (text, summary) = split(&out, &err);
    assert!(
        text.starts_with("It is a truth universally acknowledged"),
        "{text}"
    );
    assert!(text.len() > 150, "{text}");
    assert!(
        summary.starts_with("-- 200 tokens (--max-tokens reached)"),
        "{summary}"
    );
    for part in [
        "tokens/s",
        "weights 2.01 MiB (bundled)",
        "KV cache 1.00 MiB (f32 x 256 positions)",
        "arena",
        "seed 0",
    ] {
        assert!(summary.contains(part), "{part} missing from {summary}");
    }
    // mostly letters and spaces: it was trained on English
    let letters = text
        .chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
        .count();
    assert!(letters * 10 > text.chars().count() * 8, "{text}");
}

/// Prefill over panels: the run reports the panels' memory, and greedy text from the same
/// prompt is the text of the stored weights (their logits differ by f32 rounding only).
#[test]
fn prefill_panels_give_the_same_greedy_text() {
    let args = |prefill| {
        run(&[
            "generate",
            "--prompt",
            "It is a truth universally acknowledged, that a single man",
            "--temperature",
            "0",
            "--max-tokens",
            "40",
            "--prefill",
            prefill,
        ])
    };
    let ((c1, a, e1), (c2, b, e2)) = (args("stored"), args("panels"));
    assert_eq!((c1, c2), (0, 0), "{e1}{e2}");
    assert_eq!(split(&a, &e1).0, split(&b, &e2).0);
    assert!(split(&b, &e2).1.contains("prefill panels"), "{e2}");
    assert!(!split(&a, &e1).1.contains("prefill panels"), "{e1}");
    let (code, out, err) = run(&["bench", "--repeat", "1", "--prefill", "panels"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("over prefill panels"), "{out}");
}

/// The demo model quantised to Q8_0, on the int8 path (`--dot int8`): it reports the path,
/// writes English-like text, and its bits per character stay within 0.01 of the f32 model's
/// (measured: 1.893699 vs 1.893495).
#[test]
fn int8_dot_products_on_the_quantised_demo_model() {
    let q = tmp("demo.q8.safetensors");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.safetensors");
    let (code, _, err) = run(&["quantize", demo, &q]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&[
        "generate",
        "--model",
        &q,
        "--dot",
        "int8",
        "--temperature",
        "0",
        "--max-tokens",
        "60",
    ]);
    assert_eq!(code, 0, "{err}");
    let (text, summary) = split(&out, &err);
    assert!(summary.contains("int8 dot products"), "{summary}");
    let letters = text
        .chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
        .count();
    assert!(letters * 10 > text.chars().count() * 8, "{text}");
    let bpc = |args: &[&str]| -> f64 {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{err}");
        out.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (f32_bpc, int8_bpc) = (bpc(&["bpc"]), bpc(&["bpc", "--model", &q, "--dot", "int8"]));
    assert!((int8_bpc - f32_bpc).abs() < 0.01, "{int8_bpc} vs {f32_bpc}");
    let (code, out, err) = run(&["bench", "--model", &q, "--dot", "int8", "--repeat", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("int8 dot products"), "{out}");
    let (code, _, err) = run(&["bench", "--dot", "int4"]);
    assert_eq!((code, err.contains("--dot")), (2, true), "{err}");
}

#[test]
fn the_same_seed_gives_the_same_text() {
    let args = [
        "generate",
        "--prompt",
        "Emma",
        "--max-tokens",
        "60",
        "--seed",
        "3",
        "--top-p",
        "0.9",
    ];
    let (c1, a, _) = run(&args);
    let (c2, b, _) = run(&args);
    assert_eq!((c1, c2), (0, 0));
    assert_eq!(text(&a), text(&b));
    let (_, c, _) = run(&[
        "generate",
        "--prompt",
        "Emma",
        "--max-tokens",
        "60",
        "--seed",
        "4",
        "--top-p",
        "0.9",
    ]);
    assert_ne!(text(&a), text(&c));
    // greedy ignores the seed
    let g = |seed| {
        run(&[
            "generate",
            "--temperature",
            "0",
            "--max-tokens",
            "30",
            "--seed",
            seed,
        ])
        .1
    };
    assert_eq!(text(&g("1")), text(&g("2")));
}

#[test]
fn options_f16_cache_filters_sliding_window_and_full_cache() {
    let (code, out, err) = run(&[
        "generate",
        "--kv",
        "f16",
        "--top-k",
        "default",
        "--min-p",
        "0.05",
        "--temperature",
        "0.7",
        "--repetition-penalty",
        "1.2",
        "--max-tokens",
        "80",
        "--capacity",
        "64",
        "--slide",
        "32",
    ]);
    assert_eq!(code, 0, "{err}");
    let summary = split(&out, &err).1;
    assert!(summary.contains("-- 80 tokens"), "{summary}");
    assert!(summary.contains("window slid"), "{summary}");
    assert!(summary.contains("(f16 x 64 positions)"), "{summary}");
    // without --slide it stops when the cache is full: 64 − 38 prompt bytes + 1 tokens
    let (code, out, err) = run(&["generate", "--capacity", "64", "--max-tokens", "100"]);
    assert_eq!(code, 0);
    assert!(
        split(&out, &err)
            .1
            .starts_with("-- 27 tokens (KV cache full"),
        "{err}"
    );
}

#[test]
fn bench_prints_prefill_and_decode_speed() {
    for args in [
        &[
            "bench",
            "--repeat",
            "1",
            "--prompt-tokens",
            "32",
            "--tokens",
            "16",
        ][..],
        &["generate", "--bench", "--repeat", "1", "--kv", "f16"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("prefill") && out.contains("decode"), "{out}");
        assert_eq!(out.matches("tokens/s").count(), 2, "{out}");
    }
}

#[test]
fn bpc_matches_pytorch_on_a_window() {
    // The first window of the committed held-out sample (257 bytes: 256 predicted).
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/demo.heldout.txt"
    ))
    .unwrap();
    let path = tmp("window0.txt");
    std::fs::write(&path, &text[..257]).unwrap();
    let (code, out, err) = run(&["bpc", "--text", &path]);
    assert_eq!(code, 0, "{err}");
    let bpc: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let json =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json")).unwrap();
    let key = json.find("\"sample_window_bits_f16\"").unwrap();
    let first: f64 = json[key..]
        .split(['[', ','])
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (bpc - first / 256.0).abs() < 1e-4,
        "picoformer {bpc} vs torch {}",
        first / 256.0
    );
    assert!(out.contains("over 256 characters"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    for args in [
        &["generate", "--top-p", "2"][..],
        &["generate", "--temperature", "-1"],
        &["generate", "--top-k", "0"],
        &["generate", "--kv", "f8"],
        &["generate", "--prefill", "packed"],
        &["bench", "--prefill", "yes"],
        &["generate", "--max-tokens", "many"],
        &["generate", "--frobnicate", "1"],
        &["generate", "--prompt", ""],
        &["generate", "--slide", "999"],
        &["generate", "--capacity", "0"],
        &["generate", "extra"],
        &["bench", "--prompt-tokens", "300"],
        &["bpc", "--window", "0"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("usage:"), "{args:?}: {err}");
    }
    let decoder = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed.model.safetensors"
    );
    let not_a_model = tmp("garbage.safetensors");
    std::fs::write(&not_a_model, b"not a model").unwrap();
    for args in [
        &["generate", "--model", "/nonexistent/model.safetensors"][..],
        &["generate", "--model", decoder],
        &["generate", "--model", &not_a_model],
        &["bpc", "--text", "/nonexistent.txt"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The prompt from a file or standard input (`-`) gives the same text as `--prompt`; both at
/// once is a usage error.
#[test]
fn prompt_from_a_file_or_standard_input() {
    use std::io::Write as _;
    let prompt = "Emma Woodhouse, handsome, clever, and rich";
    let args = ["--temperature", "0", "--max-tokens", "20"];
    let (code, expected, err) = run(&[&["generate", "--prompt", prompt][..], &args].concat());
    assert_eq!(code, 0, "{err}");
    let file = tmp("prompt.txt");
    std::fs::write(&file, prompt).unwrap();
    let (code, out, err) = run(&[&["generate", "--prompt-file", &file][..], &args].concat());
    assert_eq!((code, out.as_str()), (0, expected.as_str()), "{err}");
    let mut child = Command::new(BIN)
        .args([&["generate", "--prompt-file", "-"][..], &args].concat())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(prompt.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    let (code, _, err) = run(&["generate", "--prompt", "a", "--prompt-file", &file]);
    assert_eq!(code, 2, "{err}");
}

/// `--json`: generate's statistics (stderr), bench and inspect (stdout) are one JSON object
/// each, with the fields a script reads.
#[test]
fn json_output_parses() {
    fn field<'a>(json: &'a str, key: &str) -> &'a str {
        let at = json
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {json}"));
        let rest = &json[at + key.len() + 3..];
        rest[..rest.find([',', '}']).unwrap()].trim_matches('"')
    }
    let (code, out, err) = run(&["generate", "--max-tokens", "7", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("It is a truth"), "{out}");
    let stats = err.trim_end();
    assert!(stats.starts_with('{') && stats.ends_with('}'), "{stats}");
    assert_eq!(field(stats, "tokens"), "7");
    assert_eq!(field(stats, "stop"), "max_tokens");
    assert!(field(stats, "tokens_per_s").parse::<f64>().unwrap() > 0.0);
    let (code, out, err) = run(&["bench", "--repeat", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(field(&out, "decode_tokens_per_s").parse::<f64>().unwrap() > 0.0);
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed.model.safetensors"
    );
    let (code, out, err) = run(&["inspect", seed, "--json", "--capacity", "100"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&out, "parameters"), "1577104");
    assert_eq!(field(&out, "kv_cache_f32_bytes"), "819200");
}

/// Models whose logits are not `num_tokens` wide (`logits_dim`): 200 logits for 256 byte tokens
/// generate bytes below 200 and score a text whose bytes all have a logit, while a byte without
/// one is a typed failure (exit 1); 300 logits are refused by `generate` (a sampled index could be
/// no token id) with a message; `bench` runs both. Nothing indexes past the logits (no panic).
#[test]
fn logits_dim_models_generate_bench_and_score() {
    let cfg = DecoderConfig::new(16, 1).heads(2).attn_dim_head(8);
    let text = tmp("ascii.txt");
    std::fs::write(&text, "it is a truth universally acknowledged").unwrap();
    let euro = tmp("euro.txt");
    std::fs::write(&euro, "a price in \u{20ac}").unwrap(); // 0xE2 0x82 0xAC: 226 has no logit
    for logits in [200usize, 300] {
        let w = WrapperConfig::new(256, 64, cfg).logits_dim(logits);
        let meta = format!(
            "{{\"decoder\": {{\"dim\": 16, \"depth\": 1, \"heads\": 2, \"attn_dim_head\": 8}}, \
             \"wrapper\": {{\"num_tokens\": 256, \"max_seq_len\": 64, \"logits_dim\": {logits}}}}}"
        );
        let (words, len) = common::model_file(&meta, &cfg, Some(&w));
        let model = tmp(&format!("logits{logits}.safetensors"));
        std::fs::write(&model, &bytemuck::cast_slice::<u64, u8>(&words)[..len]).unwrap();

        let (code, out, err) = run(&["bench", "--model", &model, "--repeat", "1"]);
        assert_eq!(code, 0, "{logits}: {err}");
        assert!(out.contains("decode"), "{out}");

        let gen = [
            "generate",
            "--model",
            &model,
            "--prompt",
            "ab",
            "--max-tokens",
            "30",
        ];
        let (code, out, err) = run(&[&gen[..], &["--seed", "3", "--top-k", "default"]].concat());
        let (code_bpc, out_bpc, err_bpc) = run(&["bpc", "--model", &model, "--text", &text]);
        let (code_euro, _, err_euro) = run(&["bpc", "--model", &model, "--text", &euro]);
        assert!(![&err, &err_bpc, &err_euro]
            .iter()
            .any(|e| e.contains("panicked")));
        if logits == 200 {
            assert_eq!(code, 0, "{err}");
            // ASCII prompt bytes echoed, then bytes below 200 (U+FFFD for invalid UTF-8)
            assert!(out.starts_with("ab"), "{out}");
            assert_eq!(code_bpc, 0, "{err_bpc}");
            assert!(out_bpc.contains("bits per character"), "{out_bpc}");
            assert_eq!(code_euro, 1, "{err_euro}");
            assert!(
                err_euro.contains("token 226") && err_euro.contains("no logit"),
                "{err_euro}"
            );
        } else {
            assert_eq!(code, 1, "{out}");
            assert!(err.contains("wider than its vocabulary"), "{err}");
            assert_eq!(code_bpc, 0, "{err_bpc}");
            assert_eq!(code_euro, 0, "{err_euro}");
        }
    }
}
