// Tokens/s in Node for both builds: greedy, 200 new tokens after a 5-token prompt, the whole loop
// inside wasm, best of 3 runs after a warm-up, on two models:
//   demo:  models/demo.safetensors (the bundled byte-level model: dim 128, depth 4, f16, 1.05 M parameters)
//   bench: dist/bench.model.safetensors (random weights: dim 256, depth 4, f32, 3.2 M parameters)
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Picoformer } from './js/picoformer.mjs';

const DIR = path.dirname(fileURLToPath(import.meta.url));
const TOKENS = 200;
const models = [
  ['demo', path.join(DIR, '..', 'models', 'demo.safetensors')],
  ['bench', path.join(DIR, 'dist', 'bench.model.safetensors')],
];
for (const [name, file] of [['plain', 'picoformer.wasm'], ['simd128', 'picoformer-simd128.wasm']]) {
  const wasmFile = path.join(DIR, 'dist', file);
  const wasm = new WebAssembly.Module(readFileSync(wasmFile));
  const speeds = [];
  for (const [label, modelFile] of models) {
    const m = await Picoformer.load(wasm, readFileSync(modelFile), { capacity: 256 });
    m.generate([72, 101, 108, 108, 111], { maxTokens: 20 });
    let best = 0;
    for (let run = 0; run < 3; run++) {
      m.reset();
      const t0 = performance.now();
      const n = m.generate([72, 101, 108, 108, 111], { maxTokens: TOKENS }).length;
      best = Math.max(best, n / ((performance.now() - t0) / 1000));
    }
    speeds.push(`${label} ${best.toFixed(1)} tokens/s`);
  }
  console.log(`${name}: ${statSync(wasmFile).size} bytes wasm; ${speeds.join(', ')} (Node ${process.versions.node})`);
}
