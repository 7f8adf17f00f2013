#!/usr/bin/env node
// Cargo runner for wasm32-wasip1 test binaries (CARGO_TARGET_WASM32_WASIP1_RUNNER):
//   node wasm/wasi-runner.mjs TEST.wasm [ARGS...]
// Preopens the current directory (cargo runs tests from the package root) as `.` and under its
// absolute path (what env!("CARGO_MANIFEST_DIR") gives the tests), so tests read tests/fixtures.
// PICOFORMER_WASI_ROOT, if set, replaces the host directory behind the absolute path (CI's
// negative check points it at an empty directory). Exits with the module's exit status.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: [file, ...args],
  env: process.env,
  preopens: { '.': process.cwd(), [process.cwd()]: process.env.PICOFORMER_WASI_ROOT ?? process.cwd() },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
