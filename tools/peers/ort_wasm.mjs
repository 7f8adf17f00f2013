// picoformer's WebAssembly builds against onnxruntime-web's WASM backend in Node, on the bundled
// demo model (models/demo.safetensors: x-transformers decoder, dim 128, depth 4, f16 weights), one
// thread each, on the same tokens:
//   prefill  the first 128 bytes of models/demo.heldout.txt:
//            onnxruntime-web: full.onnx (tokens [1, 128] -> logits [1, 128, 256]) in one run;
//            picoformer: m.prefill(prompt) (the last position's logits; chunks of 16 positions,
//            the default, or --chunk for the f32 configuration).
//   decode   128 steps after it, fed the next 128 bytes of the text (the same tokens for both, not
//            sampled): onnxruntime-web: decode.onnx, one run per token with the cache as inputs and
//            outputs (present_* fed back as past_*), starting from the prompt's cache (computed once
//            per session, untimed, by decode.onnx over the prompt); picoformer: m.step(token) after
//            the prefill (f32 cache, capacity 256).
// Both graphs come from tools/peers/ort_export.py (weights: the f16 values widened to f32, exact).
// picoformer's configurations (--engines): simd128 and plain load the file as stored (f16
// weights, chunk 16: the defaults); simd128-f32 and plain-f32 load it with `weights: 'f32'` (the
// f16 tensors widened to f32 at load, exact, as onnxruntime-web's graphs hold them), `panels:
// true` (the decoder's matrices packed into f32 panels for prefill; --panels 0: not) and
// `chunk: --chunk` (default 128: the prompt in one pass).
//
// Steady state: every engine loaded once; --warmup untimed rounds, --settle seconds idle (V8's
// background compilation of onnxruntime's module after loading), then --rounds rounds, each
// timing prefill then decode for every engine in turn (the order rotates every round); medians,
// and the medians of the per-round ratios picoformer / onnxruntime-web. Cold: --cold fresh Node
// processes per engine (interleaved), each timing loading, the first prefill after loading and the
// first 128 decode steps after it (for onnxruntime-web its decode session is created after the
// prefill, untimed, and starts from the prompt's cache computed by the parent); medians.
// Probe: one decode step's latency after caches of 0, 128 and 255 positions (onnxruntime-web's
// cache goes into and out of the graph at every step). Agreement: the largest |difference| of the logits, onnxruntime-web vs each picoformer build, over
// the prefill's last position and all 128 decode steps; fails above --tol (default 1e-4).
//
//   /tmp/ort-venv/bin/python tools/peers/ort_export.py --out-dir target/peers/ort
//   (mkdir -p /tmp/ort-node && cd /tmp/ort-node && npm install onnxruntime-web@1.31.1)
//   (cd wasm && ./build.sh)        # or only the two .wasm builds, see wasm/build.sh
//   node tools/peers/ort_wasm.mjs --ort /tmp/ort-node/node_modules/onnxruntime-web \
//        --onnx target/peers/ort --rounds 7 --warmup 5 --settle 10 --cold 7 [--json out.json]
//        [--engines simd128,simd128-f32,plain] [--chunk 128] [--panels 1]
import { readFileSync, writeFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tmpdir, cpus } from 'node:os';
import path from 'node:path';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

function parseArgs(argv) {
  const a = {
    ort: '/tmp/ort-node/node_modules/onnxruntime-web', onnx: path.join(REPO, 'target', 'peers', 'ort'),
    rounds: 7, warmup: 5, settle: 10, cold: 7, prompt: 128, steps: 128, tol: 1e-4, json: null, child: null, cache: null,
    engines: 'simd128,simd128-f32,plain', chunk: 128, panels: 1,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in a)) throw new Error(`unknown option ${argv[i]}`);
    const v = argv[++i];
    a[k] = typeof a[k] === 'number' ? Number(v) : v;
  }
  return a;
}
const args = parseArgs(process.argv.slice(2));
const text = readFileSync(path.join(REPO, 'models', 'demo.heldout.txt'));
const PROMPT = Array.from(text.subarray(0, args.prompt));
const NEXT = Array.from(text.subarray(args.prompt, args.prompt + args.steps));
const SEQ = [...PROMPT, ...NEXT];
const MODEL = readFileSync(path.join(REPO, 'models', 'demo.safetensors'));
const WASM = { simd128: 'picoformer-simd128.wasm', plain: 'picoformer.wasm' };
const now = () => performance.now();

const ortPkg = JSON.parse(readFileSync(path.join(args.ort, 'package.json'), 'utf8'));
let ort = null;
async function ortModule() {
  if (!ort) {
    ort = await import(pathToFileURL(path.join(args.ort, 'dist', 'ort.node.min.mjs')).href);
    ort.env.wasm.numThreads = 1;   // single thread (its only wasm binary is the SIMD one)
    ort.env.wasm.simd = true;
  }
  return ort;
}
const SESSION = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
const L = 4, KVH = 2, DH = 64;   // the demo model's attention layers, key/value heads, head width
const emptyCache = (o) => new o.Tensor('float32', new Float32Array(0), [L, 1, KVH, 0, DH]);

// --- engines: load(), prefill() -> last logits, decode() -> [logits of every step] ---------------

async function ortEngine() {
  const o = await ortModule();
  const t0 = now();
  const full = await o.InferenceSession.create(path.join(args.onnx, 'full.onnx'), SESSION);
  const loadMs = now() - t0;
  let dec = null, past = null;
  const tok = (t) => new o.Tensor('int64', BigInt64Array.of(BigInt(t)), [1, 1]);
  async function steps(tokens, k, v, keep) {
    const rows = [];
    for (const t of tokens) {
      const r = await dec.run({ token: tok(t), past_keys: k, past_values: v });
      k = r.present_keys; v = r.present_values;
      if (keep) rows.push(r.logits.data);
    }
    return { rows, k, v };
  }
  return {
    name: 'onnxruntime-web', loadMs,
    async prefill() {
      const ids = new o.Tensor('int64', BigInt64Array.from(PROMPT, BigInt), [1, PROMPT.length]);
      const r = await full.run({ tokens: ids });
      return r.logits.data.slice((PROMPT.length - 1) * 256);
    },
    // The decode session and the prompt's cache (untimed); `cache` ({k, v} arrays) skips computing it.
    async prepareDecode(cache) {
      if (!dec) dec = await o.InferenceSession.create(path.join(args.onnx, 'decode.onnx'), SESSION);
      if (!past) {
        if (cache) {
          const dims = [L, 1, KVH, PROMPT.length, DH];
          past = { k: new o.Tensor('float32', cache.k, dims), v: new o.Tensor('float32', cache.v, dims) };
        } else {
          const r = await steps(PROMPT, emptyCache(o), emptyCache(o), false);
          past = { k: r.k, v: r.v };
        }
      }
      return past;
    },
    async decode() {
      return (await steps(NEXT, past.k, past.v, true)).rows;
    },
    // One decode step after a cache of p positions (of the prompt and the next tokens), to time.
    async stepper(p) {
      await this.prepareDecode();
      const r = await steps(SEQ.slice(0, p), emptyCache(o), emptyCache(o), false);
      return () => dec.run({ token: tok(SEQ[p]), past_keys: r.k, past_values: r.v });
    },
  };
}

async function picoEngine(build, f32) {
  const { Picoformer } = await import(pathToFileURL(path.join(REPO, 'wasm', 'js', 'picoformer.mjs')).href);
  const t0 = now();
  const module = new WebAssembly.Module(readFileSync(path.join(REPO, 'wasm', 'dist', WASM[build])));
  const opts = f32 ? { weights: 'f32', panels: args.panels === 1, chunk: args.chunk } : {};
  const m = await Picoformer.load(module, MODEL, { capacity: 256, kv: 'f32', ...opts });
  const loadMs = now() - t0;
  let primed = false;   // the cache holds exactly the prompt
  return {
    name: f32 ? `picoformer ${build}, weights f32${args.panels === 1 ? ', panels' : ''}, chunk ${args.chunk}` : `picoformer ${build}`, loadMs,
    async prefill() { m.reset(); const out = m.prefill(PROMPT).slice(); primed = true; return out; },
    async prepareDecode() { if (!primed) { m.reset(); m.prefill(PROMPT); primed = true; } },
    async decode() { primed = false; return NEXT.map((t) => m.step(t).slice()); },
    async stepper(p) {
      primed = false;
      m.reset();
      if (p > 0) m.prefill(SEQ.slice(0, p));
      return async () => { m.truncate(p); m.step(SEQ[p]); };
    },
  };
}

const ENGINES = {
  ort: ortEngine,
  simd128: () => picoEngine('simd128', false),
  'simd128-f32': () => picoEngine('simd128', true),
  plain: () => picoEngine('plain', false),
  'plain-f32': () => picoEngine('plain', true),
};

async function timed(f) {
  const t0 = now();
  const out = await f();
  return { ms: now() - t0, out };
}

// --- cold: one child process per measurement ----------------------------------------------------

if (args.child) {
  const e = await ENGINES[args.child]();
  const p = await timed(() => e.prefill());
  let cache = null;
  if (args.child === 'ort') {
    const buf = readFileSync(args.cache);
    const f = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    cache = { k: f.slice(0, f.length / 2), v: f.slice(f.length / 2) };
  }
  await e.prepareDecode(cache);
  const d = await timed(() => e.decode());
  process.stdout.write(JSON.stringify({ loadMs: e.loadMs, prefillMs: p.ms, decodeMs: d.ms }) + '\n');
  process.exit(0);
}

// --- main ---------------------------------------------------------------------------------------

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const tps = (n, ms) => n / (ms / 1000);
const maxDiff = (a, b) => { let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i])); return d; };
const argmax = (a) => { let j = 0; for (let i = 1; i < a.length; i++) if (a[i] > a[j]) j = i; return j; };

const picos = args.engines.split(',');
for (const n of picos) if (n === 'ort' || !(n in ENGINES)) throw new Error(`unknown engine ${n} (${Object.keys(ENGINES).slice(1).join(', ')})`);
const names = ['ort', ...picos];
const eng = {};
for (const n of names) eng[n] = await ENGINES[n]();
for (const n of names) await eng[n].prepareDecode();

// agreement
const ref = { prefill: await eng.ort.prefill(), decode: await eng.ort.decode() };
const agreement = {};
for (const n of picos) {
  const p = await eng[n].prefill();
  await eng[n].prepareDecode();
  const d = await eng[n].decode();
  let dd = 0, same = 0;
  d.forEach((row, i) => { dd = Math.max(dd, maxDiff(row, ref.decode[i])); same += argmax(row) === argmax(ref.decode[i]); });
  agreement[n] = { prefillMaxAbs: maxDiff(p, ref.prefill), decodeMaxAbs: dd, argmaxSame: same + (argmax(p) === argmax(ref.prefill)), rows: d.length + 1 };
}

// steady state
const samples = Object.fromEntries(names.map((n) => [n, { prefill: [], decode: [] }]));
for (let r = 0; r < args.warmup + args.rounds; r++) {
  // V8 compiles onnxruntime's large module's hot functions in the background for a while after
  // loading (it slowed picoformer's prefill here by up to half on 2 busy cores): wait for it.
  if (r === args.warmup) await new Promise((resolve) => setTimeout(resolve, args.settle * 1000));
  const order = names.map((_, i) => names[(i + r) % names.length]);
  for (const n of order) {
    const p = await timed(() => eng[n].prefill());
    await eng[n].prepareDecode();
    const d = await timed(() => eng[n].decode());
    if (r >= args.warmup) { samples[n].prefill.push(tps(PROMPT.length, p.ms)); samples[n].decode.push(tps(NEXT.length, d.ms)); }
  }
}
const steady = {};
for (const n of names) steady[n] = { prefill: median(samples[n].prefill), decode: median(samples[n].decode) };
const ratio = (n, phase) => median(samples[n][phase].map((x, i) => x / samples.ort[phase][i]));

// one decode step's latency after caches of 0, half and all but one of the positions
const probeAt = [0, PROMPT.length, PROMPT.length + NEXT.length - 1];
const probe = Object.fromEntries(names.map((n) => [n, {}]));
for (const p of probeAt) {
  const run = {};
  for (const n of names) { run[n] = await eng[n].stepper(p); probe[n][p] = []; }
  // blocks of 10 steps per engine (2 untimed): stepping the engines in turn step by step would
  // time each one's step with the other's weights in the caches
  for (let r = 0; r < 6; r++) {
    for (const n of names) {
      for (let i = 0; i < 10; i++) { const t = await timed(run[n]); if (r >= 1 && i >= 2) probe[n][p].push(t.ms); }
    }
  }
  for (const n of names) probe[n][p] = median(probe[n][p]);
}

// the prompt's cache for the cold onnxruntime-web children
const dir = mkdtempSync(path.join(tmpdir(), 'ort-bench-'));
const cacheFile = path.join(dir, 'cache.f32');
const past = await eng.ort.prepareDecode();
writeFileSync(cacheFile, Buffer.concat([Buffer.from(past.k.data.buffer, past.k.data.byteOffset, past.k.data.byteLength),
  Buffer.from(past.v.data.buffer, past.v.data.byteOffset, past.v.data.byteLength)]));
const coldSamples = Object.fromEntries(names.map((n) => [n, []]));
for (let r = 0; r < args.cold; r++) {
  for (const n of names) {
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', n, '--cache', cacheFile,
      '--ort', args.ort, '--onnx', args.onnx, '--prompt', String(args.prompt), '--steps', String(args.steps), '--chunk', String(args.chunk), '--panels', String(args.panels)], { encoding: 'utf8' });
    coldSamples[n].push(JSON.parse(out.trim().split('\n').pop()));
  }
}
rmSync(dir, { recursive: true });
const cold = {};
for (const n of names) {
  const s = coldSamples[n];
  cold[n] = {
    loadMs: median(s.map((x) => x.loadMs)),
    prefill: median(s.map((x) => tps(PROMPT.length, x.prefillMs))),
    decode: median(s.map((x) => tps(NEXT.length, x.decodeMs))),
  };
}
const coldRatio = (n, phase) => median(coldSamples[n].map((x, i) => coldSamples.ort[i][`${phase}Ms`] / x[`${phase}Ms`]));

// report
const f1 = (x) => x.toFixed(1), f2 = (x) => x.toFixed(2);
const sizes = Object.fromEntries(Object.entries(WASM).map(([k, f]) => [k, statSync(path.join(REPO, 'wasm', 'dist', f)).size]));
console.log(`Node ${process.version}, onnxruntime-web ${ortPkg.version} (wasm, numThreads 1, SIMD), ${cpus()[0].model}`);
console.log(`prefill ${PROMPT.length} tokens, decode ${NEXT.length} steps after it; steady: ${args.warmup} warm-up rounds, ${args.settle} s idle, ${args.rounds} interleaved rounds (medians); cold: ${args.cold} fresh processes per engine (medians)\n`);
console.log('| engine | prefill tok/s (steady) | decode tok/s (steady) | prefill tok/s (cold) | decode tok/s (cold) | load ms (cold) |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const n of names) {
  console.log(`| ${eng[n].name} | ${f1(steady[n].prefill)} | ${f1(steady[n].decode)} | ${f1(cold[n].prefill)} | ${f1(cold[n].decode)} | ${f1(cold[n].loadMs)} |`);
}
console.log('\n| picoformer / onnxruntime-web (same-run ratios, medians) | prefill steady | decode steady | prefill cold | decode cold |');
console.log('|---|---:|---:|---:|---:|');
for (const n of picos) {
  console.log(`| ${n} | ${f2(ratio(n, 'prefill'))}× | ${f2(ratio(n, 'decode'))}× | ${f2(coldRatio(n, 'prefill'))}× | ${f2(coldRatio(n, 'decode'))}× |`);
}
// The fastest round of each engine: on a busy machine, the closest to its speed undisturbed.
const best = (n, phase) => Math.max(...samples[n][phase]);
console.log(`\n| best round / onnxruntime-web's best round | prefill steady | decode steady |`);
console.log('|---|---:|---:|');
for (const n of picos) console.log(`| ${n} | ${f2(best(n, 'prefill') / best('ort', 'prefill'))}× | ${f2(best(n, 'decode') / best('ort', 'decode'))}× |`);
console.log(`\n| one decode step (ms, median of 40) | ${probeAt.map((p) => `cache ${p}`).join(' | ')} |`);
console.log(`|---|${probeAt.map(() => '---:').join('|')}|`);
for (const n of names) console.log(`| ${eng[n].name} | ${probeAt.map((p) => probe[n][p].toFixed(3)).join(' | ')} |`);
let ok = true;
console.log('');
for (const [n, a] of Object.entries(agreement)) {
  const worst = Math.max(a.prefillMaxAbs, a.decodeMaxAbs);
  ok &&= worst <= args.tol;
  console.log(`logits, picoformer ${n} vs onnxruntime-web: max |diff| prefill ${a.prefillMaxAbs.toExponential(2)}, decode ${a.decodeMaxAbs.toExponential(2)} (tolerance ${args.tol}); same argmax ${a.argmaxSame}/${a.rows}`);
}
if (args.json) {
  writeFileSync(args.json, JSON.stringify({ node: process.version, onnxruntimeWeb: ortPkg.version, cpu: cpus()[0].model, args, sizes,
    agreement, steady, cold, samples, coldSamples, probe,
    ratios: Object.fromEntries(picos.map((n) => [n, { prefillSteady: ratio(n, 'prefill'), decodeSteady: ratio(n, 'decode'), prefillCold: coldRatio(n, 'prefill'), decodeCold: coldRatio(n, 'decode') }])) }, null, 2) + '\n');
}
if (!ok) { console.error('FAIL: logits differ by more than the tolerance'); process.exit(1); }
