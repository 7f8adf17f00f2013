// Shared by the Node tests: where the builds, fixtures and the host tool are.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const WASM_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES = path.resolve(WASM_DIR, '..', 'tests', 'fixtures');

/** The two builds; both must exist (build.sh makes them). */
export const BUILDS = [
  ['plain', path.join(WASM_DIR, 'dist', 'picoformer.wasm')],
  ['simd128', path.join(WASM_DIR, 'dist', 'picoformer-simd128.wasm')],
].map(([name, file]) => {
  if (!existsSync(file)) throw new Error(`${file} is missing: run wasm/build.sh`);
  return { name, bytes: readFileSync(file) };
});

export const fixture = (name) => readFileSync(path.join(FIXTURES, name));
export const model = (name) => fixture(`${name}.model.safetensors`);

/** Tokens the native host computes with the same engine (`host-tokens`), as an array. */
export function hostTokens(modelFile, prompt, maxTokens, sampling) {
  const tool = path.join(WASM_DIR, 'target', 'release', 'host-tokens');
  const args = [modelFile, prompt.join(','), String(maxTokens)];
  if (sampling) {
    const { temperature, topK, topP, minP = 0, seed, extra = [] } = sampling;
    // extra: [penalty, window, keep, capacity] (repetition penalty, sliding window).
    args.push(String(temperature), String(topK), String(topP), String(minP), String(seed), ...extra.map(String));
  }
  const tokens = JSON.parse(execFileSync(tool, args, { encoding: 'utf8' }));
  // CI's negative check: a wrong expectation must make the tests fail.
  if (process.env.PICOFORMER_FORCE_MISMATCH) tokens[tokens.length - 1] ^= 1;
  return tokens;
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`lengths ${a.length} != ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
  }
  return worst;
}

/** Runs a command in `cwd`, returning its stdout (throws with stdout and stderr on failure). */
export const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/**
 * The package as a user gets it (issue 27): `npm pack` into `dir`, then the tarball installed
 * (`npm install --offline`) into an empty project `dir/app`. Returns the project's folder, the
 * tarball and the packed files (sorted).
 */
export function packAndInstall(dir) {
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', dir], WASM_DIR));
  const tarball = path.join(dir, packed.filename);
  const project = path.join(dir, 'app');
  mkdirSync(project, { recursive: true });
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project);
  return { project, tarball, files: packed.files.map((f) => f.path).sort() };
}
