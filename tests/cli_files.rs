//! The tool's model files and its progress line: a model memory-mapped gives what a model read
//! into memory gives (`PICOFORMER_MMAP=0`) for `generate`, `inspect`, `run` and `quantize`
//! (OUT may be MODEL: the map is dropped before writing); files that cannot be mapped (empty,
//! directories) are typed errors; and the progress line of `bench`, `quantize` and a long
//! `generate` prefill appears on stderr only when it is a terminal (here a pipe: never; forced
//! with `PICOFORMER_PROGRESS=1`: on stderr, stdout unchanged).
#![cfg(feature = "cli")]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_picoformer");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run_env(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("PICOFORMER_MMAP")
        .env_remove("PICOFORMER_PROGRESS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tmp(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("picoformer-cli-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

const MAPPED: &[(&str, &str)] = &[];
const READ: &[(&str, &str)] = &[("PICOFORMER_MMAP", "0")];

#[test]
fn mapped_and_read_models_give_the_same_results() {
    let demo = format!("{ROOT}/models/demo.safetensors");
    let gen = [
        "generate",
        "--model",
        &demo,
        "--max-tokens",
        "40",
        "--seed",
        "3",
    ];
    let (code, mapped, err) = run_env(MAPPED, &gen);
    assert_eq!(code, 0, "{err}");
    let (code, read, err) = run_env(READ, &gen);
    assert_eq!(code, 0, "{err}");
    assert_eq!(mapped, read);
    // The bundled copy of the same file: the same text again.
    let (_, bundled, _) = run_env(
        MAPPED,
        &gen[..1]
            .iter()
            .chain(&gen[3..])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(mapped, bundled);

    let inspect = ["inspect", &demo, "--json"];
    let (code, a, err) = run_env(MAPPED, &inspect);
    assert_eq!(code, 0, "{err}");
    assert_eq!(a, run_env(READ, &inspect).1);

    let fixture = |f: &str| format!("{ROOT}/tests/fixtures/{f}");
    for (env, out) in [(MAPPED, tmp("mapped.out")), (READ, tmp("read.out"))] {
        let io = fixture("wrap_tied.io.safetensors");
        let (code, stdout, err) = run_env(
            env,
            &["run", &fixture("wrap_tied.model.safetensors"), &io, &out],
        );
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("max |full - stepwise|"), "{stdout}");
    }
    assert_eq!(
        std::fs::read(tmp("mapped.out")).unwrap(),
        std::fs::read(tmp("read.out")).unwrap()
    );
}

#[test]
fn quantize_in_place_and_unmappable_files() {
    // OUT = MODEL: the input's map is gone before the file is rewritten.
    let copy = tmp("inplace.safetensors");
    std::fs::copy(format!("{ROOT}/models/demo.safetensors"), &copy).unwrap();
    let (code, out, err) = run_env(MAPPED, &["quantize", &copy, &copy]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("as Q8_0"), "{out}");
    let (code, out, err) = run_env(MAPPED, &["generate", "--model", &copy, "--max-tokens", "5"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
    let (code, _, err) = run_env(MAPPED, &["quantize", &copy, &tmp("again.safetensors")]);
    assert_eq!(code, 1);
    assert!(err.contains("already quantised"), "{err}");

    // An empty file cannot be mapped: it is read, then refused as a model.
    let empty = tmp("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    for env in [MAPPED, READ] {
        let (code, _, err) = run_env(env, &["inspect", &empty]);
        assert_eq!(code, 1, "{err}");
        assert!(err.starts_with("picoformer: "), "{err}");
        let dir = std::env::temp_dir();
        let (code, _, err) = run_env(env, &["inspect", dir.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(err.contains("not a regular file"), "{err}");
        let (code, _, err) = run_env(env, &["bench", "--model", "/nonexistent.safetensors"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("cannot read /nonexistent.safetensors"),
            "{err}"
        );
    }
}

#[test]
fn progress_line_only_on_a_terminal() {
    let prompt = "It is a truth universally acknowledged, ".repeat(4); // 160 tokens: a long prefill
    let quant_out = tmp("progress.q8.safetensors");
    let demo = format!("{ROOT}/models/demo.safetensors");
    let jobs: [Vec<&str>; 3] = [
        vec![
            "bench",
            "--repeat",
            "2",
            "--prompt-tokens",
            "64",
            "--tokens",
            "64",
        ],
        vec!["quantize", &demo, &quant_out],
        vec!["generate", "--prompt", &prompt, "--max-tokens", "8"],
    ];
    for job in &jobs {
        // stderr is a pipe here: no progress line, whatever the job.
        let (code, out, err) = run_env(MAPPED, job);
        assert_eq!(code, 0, "{job:?}: {err}");
        assert!(
            !err.contains('\r') && !err.contains('\x1b'),
            "{job:?}: {err:?}"
        );
        assert!(
            !out.contains('\r') && !out.contains('\x1b'),
            "{job:?}: {out:?}"
        );
        // Forced on: drawn and erased on stderr, stdout unchanged (timings aside).
        let (code, forced_out, forced_err) = run_env(&[("PICOFORMER_PROGRESS", "1")], job);
        assert_eq!(code, 0, "{job:?}: {forced_err}");
        assert!(forced_err.contains("\r\x1b[2K"), "{job:?}: {forced_err:?}");
        assert!(!forced_out.contains('\r'), "{job:?}: {forced_out:?}");
        if job[0] == "generate" {
            assert_eq!(forced_out, out);
            assert!(forced_err.contains("prefill 160 tokens"), "{forced_err:?}");
            assert!(forced_err.ends_with('\n') && forced_err.contains("\r\x1b[2K-- "));
        }
        // Turned off explicitly.
        let (_, _, off) = run_env(&[("PICOFORMER_PROGRESS", "0")], job);
        assert!(!off.contains('\r'), "{job:?}: {off:?}");
    }
}
