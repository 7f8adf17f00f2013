// The browser demo: loads the wasm build (simd128 when the browser has it) and a model, then
// streams generated text as it is produced, with tokens/s. No framework.
// URL parameters: ?model=URL (a picoformer safetensors file; default the bundled demo model),
// ?simd=0 to force the plain build.
import { Picoformer } from '../js/picoformer.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') ?? '../dist/demo.safetensors';

// A tiny module using one v128 instruction: does this browser run simd128?
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1,
  0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
const simd = params.get('simd') !== '0' && WebAssembly.validate(SIMD_PROBE);

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

const fmt = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

// Byte-level models (256 tokens) are UTF-8 bytes; smaller vocabularies map onto printable ASCII.
function codec(numTokens) {
  if (numTokens >= 256) {
    return {
      encode: (s) => Array.from(new TextEncoder().encode(s)),
      decoder: () => { const d = new TextDecoder(); return (t) => d.decode(new Uint8Array([t]), { stream: true }); },
    };
  }
  const chars = ' etaoinshrdlucmfwypvbgkjqxz.,!?ETAOINSHRDLUCMFWYPVBGKJQXZ0123456789';
  return {
    encode: (s) => Array.from(s, (c) => Math.max(0, chars.indexOf(c)) % numTokens),
    decoder: () => (t) => chars[t % chars.length],
  };
}

let model;
let busy = false;

async function start() {
  const wasmUrl = simd ? '../dist/picoformer-simd128.wasm' : '../dist/picoformer.wasm';
  const [wasm, bytes] = await Promise.all([fetchBytes(wasmUrl), fetchBytes(MODEL_URL)]);
  model = await Picoformer.load(wasm, bytes, { capacity: 256 });
  const p = model.plan;
  $('model-note').textContent = `${MODEL_URL.split('/').pop()} (${p.numTokens} tokens, dim ${p.dim}, depth ${p.depth}) ` +
    `on the ${simd ? 'simd128' : 'plain'} build.` +
    (MODEL_URL.includes('bench.model') ? ' Random weights: the text is noise.'
      : MODEL_URL.endsWith('/demo.safetensors') ? ' A 1 M-parameter byte-level model trained on Jane Austen\'s novels (models/README.md).' : '');
  $('plan').textContent = `Memory plan: weights ${fmt(p.weights)}, KV cache ${fmt(p.kvCache)} (${p.capacity} positions), ` +
    `scratch ${fmt(p.scratch)}, logits ${fmt(p.logits)}, arena ${fmt(p.arena)}, wasm memory ${fmt(p.memory)}.`;
  $('generate').disabled = false;
  document.body.dataset.state = 'ready';
}

async function generate(event) {
  event.preventDefault();
  if (busy) return;
  busy = true;
  $('generate').disabled = true;
  $('error').textContent = '';
  document.body.dataset.state = 'generating';
  const { encode, decoder } = codec(model.numTokens);
  const prompt = encode($('prompt').value);
  const maxTokens = Math.min(Number($('maxTokens').value), model.capacity - prompt.length);
  const out = $('out');
  out.replaceChildren(Object.assign(document.createElement('span'), { className: 'prompt', textContent: $('prompt').value }));
  const text = out.appendChild(document.createTextNode(''));
  const decode = decoder();
  model.reset();
  const t0 = performance.now();
  let n = 0;
  let lastPaint = t0;
  try {
    for (const token of model.stream(prompt, {
      maxTokens,
      temperature: Number($('temperature').value),
      topK: Number($('topK').value),
      topP: Number($('topP').value),
      seed: Number($('seed').value),
    })) {
      text.appendData(decode(token));
      n++;
      const now = performance.now();
      if (now - lastPaint > 30) { // let the browser paint: the text streams in
        $('stats').textContent = `${n} tokens, ${(n / ((now - t0) / 1000)).toFixed(1)} tokens/s`;
        window.demoPaints = (window.demoPaints ?? 0) + 1;
        await new Promise((r) => setTimeout(r, 0));
        lastPaint = performance.now();
      }
    }
    const s = (performance.now() - t0) / 1000;
    $('stats').textContent = `${n} tokens in ${s.toFixed(2)} s: ${(n / s).toFixed(1)} tokens/s (prompt ${prompt.length} tokens, cache ${model.length}/${model.capacity})`;
    document.body.dataset.tokens = String(n);
    document.body.dataset.state = 'done';
  } catch (e) {
    $('error').textContent = String(e);
    document.body.dataset.state = 'error';
    console.error(e);
  } finally {
    busy = false;
    $('generate').disabled = false;
  }
}

$('form').addEventListener('submit', generate);
start().catch((e) => {
  $('model-note').textContent = '';
  $('error').textContent = `Could not start: ${e}`;
  document.body.dataset.state = 'error';
  console.error(e);
});
