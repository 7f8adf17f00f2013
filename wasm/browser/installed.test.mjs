// Issue 27: the package as a user's page gets it, in headless Chromium. `npm pack`, the tarball
// installed into an empty project in a temporary folder (test/helpers.mjs's packAndInstall, as
// test/installed.test.mjs does for Node), then that project served from 127.0.0.1: a plain page
// with no bundler imports `picoformer-wasm` and `picoformer-wasm/client` by name through an
// import map built from the installed package.json's `exports`, loads the demo model and, with
// the simd128 and the plain build, streams with `for await`: aborted by an AbortController,
// stop tokens, stop strings, maxTokens, a full cache, and the stop reason of each; the same
// through PicoformerWorker in a module Web Worker. Nothing may log an error or fail to load,
// and the page's script type-checks against the installed types.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchChromium } from './chromium.mjs';
import { serve } from '../serve.mjs';
import { WASM_DIR, packAndInstall, run } from '../test/helpers.mjs';

const PACKAGE = 'picoformer-wasm';
const PROMPT = 'It is a truth universally acknowledged, that';
const CAPACITY = 256;
const N = 48; // tokens of the reference generation

// The user's page script. Everything it sees comes from the installed package; it reports what
// happened as JSON in #results (the test decides whether that is right).
const PAGE_SCRIPT = `// @ts-check
import { Picoformer, PicoformerError } from '${PACKAGE}';
import { PicoformerWorker } from '${PACKAGE}/client';

const params = new URLSearchParams(location.search);
const build = params.get('build') === 'plain' ? 'plain' : 'simd128';
const prompt = Array.from(new TextEncoder().encode(${JSON.stringify(PROMPT)}));

/**
 * Iterates a stream with for await, aborting \`ac\` after \`abortAfter\` tokens.
 * @param {AsyncIterable<number> & { readonly stopReason: string | undefined }} stream
 * @param {number} [abortAfter]
 * @param {AbortController} [ac]
 */
async function collect(stream, abortAfter, ac) {
  /** @type {number[]} */
  const tokens = [];
  for await (const t of stream) {
    tokens.push(t);
    if (tokens.length === abortAfter) ac?.abort();
  }
  return { tokens, stopReason: stream.stopReason };
}

/** @param {number[] & { readonly stopReason: string }} r */
const plain = (r) => ({ tokens: Array.from(r), stopReason: r.stopReason });

/** @type {Record<string, unknown>} */
const out = { build };
try {
  const response = await fetch('./demo.safetensors');
  const bytes = new Uint8Array(await response.arrayBuffer());
  const m = await Picoformer.create(bytes, { capacity: ${CAPACITY}, build });
  out.numTokens = m.numTokens;

  const ref = m.generate(prompt, { maxTokens: ${N} });
  out.generate = plain(ref);
  // A stop token and a stop string taken from the reference text.
  const stopToken = ref[9];
  const stopString = String.fromCharCode(...ref.slice(20, 24));
  Object.assign(out, { stopToken, stopString });

  m.reset();
  out.maxTokens = await collect(m.stream(prompt, { maxTokens: ${N} }));
  m.reset();
  const ac = new AbortController();
  out.aborted = await collect(m.stream(prompt, { maxTokens: 100000, slide: 32, signal: ac.signal }), 5, ac);
  out.abortedModel = m.stopReason;
  m.reset();
  out.abortedBefore = await collect(m.stream(prompt, { signal: AbortSignal.abort() }));
  m.reset();
  out.stopTokenStream = await collect(m.stream(prompt, { maxTokens: ${N}, stopTokens: [stopToken] }));
  m.reset();
  out.stopTokenGenerate = plain(m.generate(prompt, { maxTokens: ${N}, stopTokens: new Uint32Array([stopToken]) }));
  m.reset();
  out.stopStringStream = await collect(m.stream(prompt, { maxTokens: ${N}, stopStrings: stopString }));
  m.reset();
  out.stopStringGenerate = plain(m.generate(prompt, { maxTokens: ${N}, stopStrings: ['\\u0000never', stopString] }));
  m.reset();
  out.cacheFull = await collect(m.stream(prompt, { maxTokens: 1000 }));
  try { m.stream(prompt, { stopTokens: [-1] }); } catch (e) {
    out.refused = e instanceof PicoformerError ? e.codeName : String(e);
  }

  const worker = new Worker(import.meta.resolve('${PACKAGE}/worker'), { type: 'module' });
  const w = await PicoformerWorker.create(worker, bytes.slice(), { capacity: ${CAPACITY}, build });
  /** @type {Record<string, unknown>} */
  const inWorker = {};
  out.worker = inWorker;
  inWorker.generate = plain(await w.generate(prompt, { maxTokens: ${N} }));
  await w.reset();
  inWorker.maxTokens = await collect(w.stream(prompt, { maxTokens: ${N} }));
  await w.reset();
  const wac = new AbortController();
  inWorker.aborted = await collect(w.stream(prompt, { maxTokens: 100000, slide: 32, signal: wac.signal }), 5, wac);
  await w.reset();
  inWorker.stopToken = await collect(w.stream(prompt, { maxTokens: ${N}, stopTokens: [stopToken] }));
  await w.reset();
  inWorker.stopString = await collect(w.stream(prompt, { maxTokens: ${N}, stopStrings: [stopString] }));
  w.terminate();
} catch (e) {
  out.error = e instanceof Error ? \`\${e.name}: \${e.message}\\n\${e.stack}\` : String(e);
}
/** @type {HTMLElement} */ (document.getElementById('results')).textContent = JSON.stringify(out);
document.body.dataset.state = 'done';
`;

let dir;
let project;
let server;
let browser;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'picoformer-browser-installed-'));
  ({ project } = packAndInstall(dir));
  // The import map a bundler-less page writes: each JavaScript entry of the package's `exports`.
  const pkg = JSON.parse(readFileSync(path.join(project, 'node_modules', PACKAGE, 'package.json'), 'utf8'));
  const imports = {};
  for (const [key, target] of Object.entries(pkg.exports)) {
    const file = typeof target === 'string' ? target : target.default;
    if (file.endsWith('.mjs')) imports[PACKAGE + key.slice(1)] = `./node_modules/${PACKAGE}/${file.slice(2)}`;
  }
  writeFileSync(path.join(project, 'index.html'), `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>picoformer-wasm, installed</title>
<link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify({ imports })}</script>
<script type="module" src="./page.mjs"></script>
</head><body><pre id="results"></pre></body></html>
`);
  writeFileSync(path.join(project, 'page.mjs'), PAGE_SCRIPT);
  // The package ships no model: the page fetches the demo model from its own folder.
  copyFileSync(path.join(WASM_DIR, '..', 'models', 'demo.safetensors'), path.join(project, 'demo.safetensors'));
  server = await serve(0, project);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The first index at which `needle` occurs in `hay` (arrays of numbers), or -1. */
function indexOfRun(hay, needle) {
  for (let i = 0; i + needle.length <= hay.length; i++) {
    if (needle.every((x, j) => hay[i + j] === x)) return i;
  }
  return -1;
}

for (const build of ['simd128', 'plain']) {
  test(`installed package in Chromium (${build} build): for await with abort, stop tokens, stop strings, stop reasons, the worker`, async () => {
    const page = await browser.newPage();
    const errors = [];
    const requests = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    page.on('request', (r) => requests.push(new URL(r.url()).pathname));
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });
    await page.goto(`http://127.0.0.1:${server.address().port}/?build=${build}`);
    await page.waitForSelector('body[data-state="done"]', { timeout: 120000 });
    const r = JSON.parse(await page.textContent('#results'));
    assert.equal(r.error, undefined, r.error);
    assert.equal(r.build, build);
    assert.equal(r.numTokens, 256);

    const prompt = Array.from(Buffer.from(PROMPT));
    const ref = r.generate.tokens;
    assert.equal(ref.length, N);
    assert.equal(r.generate.stopReason, 'maxTokens');
    // The demo model writes English: the stop string is printable ASCII, the stop token a byte.
    assert.match(Buffer.from(ref).toString('latin1'), /\b(the|and|of|to|a|in|her|was|be|that)\b/);
    assert.match(r.stopString, /^[\x20-\x7e\n]{4}$/);
    const byToken = ref.slice(0, ref.indexOf(r.stopToken) + 1);
    const byString = ref.slice(0, indexOfRun(ref, Array.from(Buffer.from(r.stopString))) + 4);
    assert.ok(byToken.length <= 10 && byString.length <= 24 && byString.length >= 4);

    assert.deepEqual(r.maxTokens, { tokens: ref, stopReason: 'maxTokens' });
    // Aborted after the 5th token: the loop ends before a 6th, nothing thrown.
    assert.deepEqual(r.aborted, { tokens: ref.slice(0, 5), stopReason: 'aborted' });
    assert.equal(r.abortedModel, 'aborted');
    assert.deepEqual(r.abortedBefore, { tokens: [], stopReason: 'aborted' });
    assert.deepEqual(r.stopTokenStream, { tokens: byToken, stopReason: 'stopToken' });
    assert.deepEqual(r.stopTokenGenerate, { tokens: byToken, stopReason: 'stopToken' });
    assert.deepEqual(r.stopStringStream, { tokens: byString, stopReason: 'stopString' });
    assert.deepEqual(r.stopStringGenerate, { tokens: byString, stopReason: 'stopString' });
    // Greedy, so a full cache holds the reference's continuation: capacity - prompt + 1 tokens.
    assert.equal(r.cacheFull.stopReason, 'cacheFull');
    assert.equal(r.cacheFull.tokens.length, CAPACITY - prompt.length + 1);
    assert.deepEqual(r.cacheFull.tokens.slice(0, N), ref);
    assert.equal(r.refused, 'TOKEN_OUT_OF_RANGE');

    // The worker: the same tokens and stop reasons; its abort reaches it a few tokens late.
    const w = r.worker;
    assert.deepEqual(w.generate, { tokens: ref, stopReason: 'maxTokens' });
    assert.deepEqual(w.maxTokens, { tokens: ref, stopReason: 'maxTokens' });
    assert.equal(w.aborted.stopReason, 'aborted');
    assert.ok(w.aborted.tokens.length >= 5 && w.aborted.tokens.length < 100000, `${w.aborted.tokens.length}`);
    assert.deepEqual(w.aborted.tokens.slice(0, N), ref.slice(0, w.aborted.tokens.length));
    assert.deepEqual(w.stopToken, { tokens: byToken, stopReason: 'stopToken' });
    assert.deepEqual(w.stopString, { tokens: byString, stopReason: 'stopString' });

    // Everything came from the installed project: the package's modules through the import map,
    // the chosen build only, found by the package itself (fetched twice: by the page and by the worker).
    const dist = `/node_modules/${PACKAGE}/dist/`;
    const wanted = build === 'plain' ? 'picoformer.wasm' : 'picoformer-simd128.wasm';
    const other = build === 'plain' ? 'picoformer-simd128.wasm' : 'picoformer.wasm';
    assert.equal(requests.filter((p) => p === dist + wanted).length, 2, requests.join(' '));
    assert.ok(!requests.includes(dist + other), requests.join(' '));
    for (const file of ['picoformer.mjs', 'client.mjs', 'worker.mjs']) {
      assert.ok(requests.includes(`/node_modules/${PACKAGE}/js/${file}`), `${file}: ${requests.join(' ')}`);
    }
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('the page script type-checks against the installed types (tsc --noEmit, checkJs)', () => {
  writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, allowJs: true, checkJs: true, target: 'es2022', module: 'nodenext',
      moduleResolution: 'nodenext', lib: ['es2022', 'dom'], types: [],
    },
    files: ['page.mjs'],
  }));
  const tsc = path.join(WASM_DIR, 'node_modules', '.bin', 'tsc');
  assert.ok(existsSync(tsc), 'typescript is a devDependency: npm ci');
  run(tsc, ['-p', 'tsconfig.json'], project);
  // The check has teeth: a misspelt option in the page is refused.
  writeFileSync(path.join(project, 'bad.mjs'), PAGE_SCRIPT.replace('stopTokens: [stopToken] }))', 'stopToken: [stopToken] }))'));
  writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({
    ...JSON.parse(readFileSync(path.join(project, 'tsconfig.json'), 'utf8')), files: ['bad.mjs'],
  }));
  assert.throws(() => run(tsc, ['-p', 'tsconfig.json'], project),
    (e) => /bad\.mjs.*error TS\d+/s.test(e.stdout) && /stopToken/.test(e.stdout));
});
