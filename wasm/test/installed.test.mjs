// Issue 27: the package as a user gets it. `npm pack`, install the tarball into an empty project
// in a temporary folder, then import it by name from Node (the .wasm found by the package
// itself, the builds resolvable through `exports`) and type-check a TypeScript file against its
// types with the tsc of this folder's devDependencies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { WASM_DIR, FIXTURES, hostTokens, packAndInstall, run } from './helpers.mjs';

let dir;
let project;
let files;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'picoformer-installed-'));
  ({ project, files } = packAndInstall(dir));
});

after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

test('the tarball holds the module, its types and both builds, nothing else', () => {
  assert.deepEqual(files, ['README.md', 'dist/picoformer-simd128.wasm', 'dist/picoformer.wasm',
    'js/client.d.mts', 'js/client.mjs', 'js/picoformer.d.mts', 'js/picoformer.mjs', 'js/worker.mjs', 'package.json']);
});

test('imported by name from Node: finds its .wasm, generates, streams with abort', () => {
  writeFileSync(path.join(project, 'main.mjs'), `
    import { readFileSync } from 'node:fs';
    import { Worker } from 'node:worker_threads';
    import { Picoformer, PicoformerError, ErrorCode } from 'picoformer-wasm';
    import { PicoformerWorker } from 'picoformer-wasm/client';
    const bytes = readFileSync(process.argv[2]);
    const m = await Picoformer.create(bytes, { capacity: 16 });
    const plain = await Picoformer.create(bytes, { capacity: 16, build: 'plain' });
    const tokens = m.generate([1, 2], { maxTokens: 10 });
    const ac = new AbortController();
    const streamed = [];
    const s = m.stream([3], { maxTokens: 1000, slide: 8, signal: ac.signal });
    for await (const t of s) { streamed.push(t); if (streamed.length === 3) ac.abort(); }
    const pw = await PicoformerWorker.create(new Worker(new URL(import.meta.resolve('picoformer-wasm/worker'))), bytes, { capacity: 16 });
    const viaWorker = await pw.generate([1, 2], { maxTokens: 10 });
    await pw.terminate();
    let code;
    try { m.truncate(2 ** 32); } catch (e) { code = e instanceof PicoformerError && e.code === ErrorCode.BAD_ARGUMENT; }
    console.log(JSON.stringify({
      tokens, plain: plain.generate([1, 2], { maxTokens: 10 }), viaWorker, stopReason: tokens.stopReason,
      streamed: streamed.length, streamStop: s.stopReason, refused: code,
      wasm: [import.meta.resolve('picoformer-wasm/picoformer.wasm'),
        import.meta.resolve('picoformer-wasm/picoformer-simd128.wasm')],
    }));
  `);
  const model = path.join(FIXTURES, 'wrap_tied.model.safetensors');
  const out = JSON.parse(run('node', ['main.mjs', model], project));
  const expected = hostTokens(model, [1, 2], 10);
  assert.deepEqual(out.tokens, expected);
  assert.deepEqual(out.plain, expected);
  assert.deepEqual(out.viaWorker, expected);
  assert.equal(out.stopReason, 'maxTokens');
  assert.deepEqual([out.streamed, out.streamStop, out.refused], [3, 'aborted', true]);
  for (const url of out.wasm) {
    assert.match(url, /node_modules\/picoformer-wasm\/dist\/picoformer(-simd128)?\.wasm$/);
    assert.ok(existsSync(new URL(url)), url);
  }
});

test('a TypeScript file type-checks against the installed types (tsc --noEmit)', () => {
  writeFileSync(path.join(project, 'main.ts'), `
    import { Picoformer, type GenerateResult, type StopReason } from 'picoformer-wasm';
    import { PicoformerWorker } from 'picoformer-wasm/client';
    export async function viaWorker(w: Worker, bytes: Uint8Array): Promise<number[]> {
      const m = await PicoformerWorker.create(w, bytes);
      return m.generate([1], { maxTokens: 3 });
    }
    export async function main(bytes: Uint8Array): Promise<StopReason | undefined> {
      const m = await Picoformer.create(bytes, { capacity: 64, build: 'auto' });
      const r: GenerateResult = m.generate([1], { maxTokens: 4, stopTokens: [0], slide: 32 });
      const s = m.stream([], { signal: AbortSignal.timeout(100) });
      for await (const t of s) { const n: number = t; void n; }
      // @ts-expect-error: topP is a number
      m.sample({ topP: '0.9' });
      return r.stopReason ?? s.stopReason;
    }
  `);
  writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2022', 'dom'], types: [] },
    files: ['main.ts'],
  }));
  const tsc = path.join(WASM_DIR, 'node_modules', '.bin', 'tsc');
  assert.ok(existsSync(tsc), 'typescript is a devDependency: npm ci');
  run(tsc, ['-p', 'tsconfig.json'], project);
  // And a wrong program is refused (the check has teeth).
  writeFileSync(path.join(project, 'main.ts'), `
    import { Picoformer } from 'picoformer-wasm';
    export const x: string = Picoformer.create(new Uint8Array(0), { kv: 'f64' });
  `);
  assert.throws(() => run(tsc, ['-p', 'tsconfig.json'], project),
    (e) => /main\.ts.*error TS2322/s.test(e.stdout) && /f64/.test(e.stdout));
});
