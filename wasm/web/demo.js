// The browser demo: loads a model into the package's wasm build (simd128 when the browser has
// it: Picoformer.create chooses), then streams generated text as it is produced
// (`for await` over model.stream, a Stop button through an AbortSignal), with tokens/s and why
// it stopped. Past the cache's capacity the window slides. No framework.
// URL parameters: ?model=URL (a picoformer safetensors file; default the bundled demo model),
// ?simd=0 to force the plain build.
import { Picoformer, simdSupported } from '../js/picoformer.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') ?? '../dist/demo.safetensors';

const simd = params.get('simd') !== '0' && simdSupported();

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
let stopper = null;

async function start() {
  const bytes = await fetchBytes(MODEL_URL);
  model = await Picoformer.create(bytes, { capacity: 256, build: simd ? 'auto' : 'plain' });
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
  $('stop').disabled = false;
  $('error').textContent = '';
  document.body.dataset.state = 'generating';
  delete document.body.dataset.stop;
  const { encode, decoder } = codec(model.numTokens);
  const prompt = encode($('prompt').value);
  const out = $('out');
  out.replaceChildren(Object.assign(document.createElement('span'), { className: 'prompt', textContent: $('prompt').value }));
  const text = out.appendChild(document.createTextNode(''));
  const decode = decoder();
  model.reset();
  stopper = new AbortController();
  const t0 = performance.now();
  let n = 0;
  let lastPaint = t0;
  try {
    const stream = model.stream(prompt, {
      maxTokens: Number($('maxTokens').value),
      temperature: Number($('temperature').value),
      topK: Number($('topK').value),
      topP: Number($('topP').value),
      seed: Number($('seed').value),
      repetitionPenalty: Number($('penalty').value),
      repetitionWindow: 64,
      slide: model.capacity / 2, // past the capacity: keep the last half and go on
      signal: stopper.signal,
    });
    // Each step yields to the event loop: the page paints and the Stop button works.
    for await (const token of stream) {
      text.appendData(decode(token));
      n++;
      const now = performance.now();
      if (now - lastPaint > 30) {
        $('stats').textContent = `${n} tokens, ${(n / ((now - t0) / 1000)).toFixed(1)} tokens/s`;
        window.demoPaints = (window.demoPaints ?? 0) + 1;
        lastPaint = now;
      }
    }
    const s = (performance.now() - t0) / 1000;
    const why = { maxTokens: 'token limit', stopToken: 'stop token', cacheFull: 'cache full', aborted: 'stopped' }[stream.stopReason];
    $('stats').textContent = `${n} tokens in ${s.toFixed(2)} s: ${(n / s).toFixed(1)} tokens/s (prompt ${prompt.length} tokens, ` +
      `cache ${model.length}/${model.capacity}, ${model.reencodes} window slides; ended: ${why})`;
    document.body.dataset.tokens = String(n);
    document.body.dataset.stop = stream.stopReason;
    document.body.dataset.state = 'done';
  } catch (e) {
    $('error').textContent = String(e);
    document.body.dataset.state = 'error';
    console.error(e);
  } finally {
    busy = false;
    stopper = null;
    $('generate').disabled = false;
    $('stop').disabled = true;
  }
}

$('stop').addEventListener('click', () => stopper?.abort());
$('form').addEventListener('submit', generate);
start().catch((e) => {
  $('model-note').textContent = '';
  $('error').textContent = `Could not start: ${e}`;
  document.body.dataset.state = 'error';
  console.error(e);
});
