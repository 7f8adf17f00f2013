// Runs a WASI (preview1) module under Node: `node tools/wasi-runner.mjs module.wasm [args...]`.
// Cargo uses it as CARGO_TARGET_WASM32_WASIP1_RUNNER to run `cargo test --target wasm32-wasip1`.
// Set WASI_NODE_FLAGS=--experimental-wasm-relaxed-simd (read by the caller) for relaxed-simd builds.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process, { argv, env, exit, cwd } from 'node:process';

const [, , file, ...args] = argv;
if (!file) {
  console.error('usage: node wasi-runner.mjs module.wasm [args...]');
  exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [file, ...args], env, preopens: { '.': cwd() }, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
