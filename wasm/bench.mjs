// Tokens/s in Node for both builds on the random byte-level bench model (dist/bench.model.safetensors,
// dim 256, depth 4, 256 tokens, ~3.2 M f32 parameters): greedy, 5-token prompt, 200 new tokens,
// the whole loop inside wasm; best of 3 runs after a warm-up.
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Picoformer } from './js/picoformer.mjs';

const DIR = path.dirname(fileURLToPath(import.meta.url));
const model = readFileSync(path.join(DIR, 'dist', 'bench.model.safetensors'));
const TOKENS = 200;
for (const [name, file] of [['plain', 'picoformer.wasm'], ['simd128', 'picoformer-simd128.wasm']]) {
  const wasmFile = path.join(DIR, 'dist', file);
  const m = await Picoformer.load(readFileSync(wasmFile), model, { capacity: 256 });
  m.generate([72, 101, 108, 108, 111], { maxTokens: 20 });
  let best = 0;
  for (let run = 0; run < 3; run++) {
    m.reset();
    const t0 = performance.now();
    const n = m.generate([72, 101, 108, 108, 111], { maxTokens: TOKENS }).length;
    best = Math.max(best, n / ((performance.now() - t0) / 1000));
  }
  console.log(`${name}: ${statSync(wasmFile).size} bytes wasm, ${best.toFixed(1)} tokens/s (Node ${process.versions.node})`);
}
