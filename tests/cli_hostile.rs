//! The `picoformer` tool on hostile command lines: every one ends within a time limit with exit
//! status 1 (failure) or 2 (usage) and a one-line message on stderr: never a panic (101), an
//! abort (134), a signal or a hang.
#![cfg(all(feature = "cli", unix))]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_picoformer");
const LIMIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the tool with `args`, killing it after [`LIMIT`]; returns (exit code, stderr).
fn run(args: &[OsString]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (status.code(), String::from_utf8_lossy(&out.stderr).into());
        }
        if start.elapsed() > LIMIT {
            child.kill().unwrap();
            panic!("picoformer {args:?} did not end within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn hostile_command_lines_fail_cleanly() {
    let seed = fixture("seed.model.safetensors");
    let wrap = fixture("wrap_abs.model.safetensors");
    let io = fixture("seed.io.safetensors");
    let out = std::env::temp_dir().join(format!("picoformer-hostile-{}", std::process::id()));
    let out = out.to_string_lossy().into_owned();
    let max = u64::MAX.to_string();
    let cases: Vec<Vec<OsString>> = vec![
        os(&["generate", "--capacity", &max]),
        os(&["generate", "--capacity", "100000000000"]),
        os(&["generate", "--capacity", "0"]),
        os(&["generate", "--capacity", "-1"]),
        os(&["generate", "--repetition-window", &max, "--max-tokens", "2"]),
        os(&["generate", "--slide", &max]),
        os(&["generate", "--temperature", "NaN"]),
        os(&["generate", "--temperature", "-1"]),
        os(&["generate", "--top-p", "2"]),
        os(&["generate", "--top-k", "0"]),
        os(&["generate", "--min-p", "NaN"]),
        os(&["generate", "--repetition-penalty", "0"]),
        os(&["generate", "--prompt", ""]),
        os(&["generate", "--kv", "f64"]),
        os(&["generate", "--model", "/dev/zero"]),
        os(&["generate", "--model", "/nonexistent/model"]),
        os(&["generate", "--model", &seed]),
        os(&["generate", "--model", "/"]),
        os(&["generate", "--max-tokens"]),
        os(&["generate", "--unknown", "1"]),
        os(&["generate", "extra"]),
        os(&["bench", "--prompt-tokens", &max, "--tokens", &max]),
        os(&["bench", "--repeat", "0"]),
        os(&["bpc", "--window", &max]),
        os(&["bpc", "--window", "0"]),
        os(&["bpc", "--text", "/dev/zero"]),
        os(&["demo", "--tokens", &max]),
        os(&["inspect", "/dev/zero"]),
        os(&["inspect", "/dev/null"]),
        os(&["inspect", &seed, "--chunk", "0"]),
        os(&["inspect", &io]),
        os(&["inspect"]),
        os(&["run", &seed, "/dev/zero", &out]),
        os(&["run", &seed, &wrap, &out]),
        os(&["run", &wrap, &io, &out]),
        os(&["run", &seed, &io, "/nonexistent/dir/out"]),
        os(&["quantize", "/dev/zero", &out]),
        os(&["quantize", &seed]),
        os(&["nonsense"]),
        vec![],
        vec![OsString::from_vec(vec![0xff, 0xfe])],
        vec![
            OsString::from("generate"),
            OsString::from("--prompt"),
            OsString::from_vec(vec![b'a', 0x80]),
        ],
    ];
    for args in &cases {
        let (code, err) = run(args);
        assert!(
            matches!(code, Some(1 | 2)),
            "picoformer {args:?}: exit {code:?}, stderr:\n{err}"
        );
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("picoformer: ") && !err.contains("panicked"),
            "picoformer {args:?}: stderr:\n{err}"
        );
    }
    let _ = std::fs::remove_file(&out);
}

#[test]
fn help_and_version_succeed() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["generate", "--help"],
        &["bench", "-h"],
        &["bpc", "--help"],
        &["demo", "--help"],
        &["inspect", "--help"],
        &["run", "--help"],
        &["quantize", "--help"],
    ] {
        let output = Command::new(BIN).args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "picoformer {args:?}");
        assert!(
            stdout.starts_with("usage:") || stdout.starts_with("picoformer "),
            "{stdout}"
        );
        if args.len() == 2 {
            // One command's usage, not every command's.
            assert!(
                stdout.contains(&format!("picoformer {}", args[0])),
                "{stdout}"
            );
            assert_eq!(stdout.matches("  picoformer ").count(), 1, "{stdout}");
        }
    }
}

/// Standard output closed early (`picoformer ... | head -c 1`): exit 1 with a message, never
/// the panic of `println!`.
#[test]
fn a_closed_standard_output_is_an_error_not_a_panic() {
    let seed = fixture("seed.model.safetensors");
    for args in [
        &["generate", "--max-tokens", "500"][..],
        &["inspect", &seed],
        &["bench", "--repeat", "1", "--json"],
        &["--help"],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0 | 1)) && !err.contains("panicked"),
            "picoformer {args:?}: {:?} {err}",
            out.status
        );
    }
}
