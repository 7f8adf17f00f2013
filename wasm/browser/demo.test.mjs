// The web demo in a real headless Chromium (Debian's, driven by playwright-core): the page
// loads from a local server, generates, the text streams in, and nothing logs an error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { launchChromium } from './chromium.mjs';
import { serve } from '../serve.mjs';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
let server;
let browser;

before(async () => {
  server = await serve(0);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.close();
});

for (const simd of [true, false]) {
  test(`demo page streams generated text (${simd ? 'simd128' : 'plain'} build)`, async () => {
    const page = await browser.newPage();
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    const base = `http://127.0.0.1:${server.address().port}/web/`;
    await page.goto(simd ? base : `${base}?simd=0`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 30000 });
    assert.match(await page.textContent('#model-note'), simd ? /simd128 build/ : /plain build/);
    await page.fill('#maxTokens', '120');
    assert.match(await page.textContent('#model-note'), /demo\.safetensors \(256 tokens/);
    await page.click('#generate');
    await page.waitForSelector('body[data-state="done"]', { timeout: 60000 });
    assert.equal(await page.getAttribute('body', 'data-tokens'), '120');
    assert.equal(await page.getAttribute('body', 'data-stop'), 'maxTokens');
    const out = await page.textContent('#out');
    const prompt = 'It is a truth universally acknowledged, that';
    assert.ok(out.startsWith(prompt) && out.length > prompt.length + 20, out);
    // The trained model writes English: mostly letters and spaces, and some common words.
    const text = out.slice(prompt.length);
    assert.ok((text.match(/[A-Za-z ,.;'"\n-]/g) ?? []).length > 0.9 * text.length, text);
    assert.match(text, /\b(the|and|of|to|a|in|her|was|be|that)\b/, text);
    assert.match(await page.textContent('#stats'), /120 tokens in [\d.]+ s: [\d.]+ tokens\/s.*ended: token limit/);
    assert.ok(await page.evaluate(() => window.demoPaints ?? 0) >= 1, 'text was painted while generating');
    assert.equal(await page.textContent('#error'), '');
    if (simd) await page.screenshot({ path: path.join(DIST, 'demo.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test('the Stop button aborts a long generation (for await with an AbortSignal) past the capacity', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${server.address().port}/web/`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 30000 });
  await page.fill('#maxTokens', '1000000');
  await page.click('#generate');
  // Past the 256 positions of the cache the window slides: wait for a slide, then stop.
  await page.waitForFunction(() => /^\d+ tokens,/.test(document.getElementById('stats').textContent)
    && Number(document.getElementById('stats').textContent.split(' ')[0]) > 300, null, { timeout: 60000 });
  await page.click('#stop');
  await page.waitForSelector('body[data-state="done"]', { timeout: 30000 });
  assert.equal(await page.getAttribute('body', 'data-stop'), 'aborted');
  const n = Number(await page.getAttribute('body', 'data-tokens'));
  assert.ok(n > 300 && n < 1000000, `${n}`);
  assert.match(await page.textContent('#stats'), /[1-9]\d* window slides; ended: stopped/);
  assert.equal(await page.textContent('#error'), '');
  assert.deepEqual(errors, []);
  await page.close();
});

test('PicoformerWorker: the demo model in a Web Worker, a stream aborted, the page free meanwhile', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${server.address().port}/web/`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 30000 });
  const r = await page.evaluate(async () => {
    const { PicoformerWorker, PicoformerError } = await import('/js/client.mjs');
    const { Picoformer } = await import('/js/picoformer.mjs');
    const bytes = new Uint8Array(await (await fetch('/dist/demo.safetensors')).arrayBuffer());
    const worker = new Worker('/js/worker.mjs', { type: 'module' });
    const m = await PicoformerWorker.create(worker, bytes.slice(), { capacity: 64 });
    const prompt = Array.from(new TextEncoder().encode('Emma'));
    const local = await Picoformer.create(bytes, { capacity: 64 });
    const same = JSON.stringify(await m.generate(prompt, { maxTokens: 30 })) === JSON.stringify(local.generate(prompt, { maxTokens: 30 }));
    await m.reset();
    let frames = 0;
    let counting = true;
    const count = () => { frames++; if (counting) requestAnimationFrame(count); };
    requestAnimationFrame(count);
    const ac = new AbortController();
    const s = m.stream(prompt, { maxTokens: 1e6, slide: 32, temperature: 1, signal: ac.signal });
    let n = 0;
    const t0 = performance.now();
    for await (const t of s) { if (++n === 600) ac.abort(); void t; }
    counting = false;
    const ms = performance.now() - t0;
    let refused = false;
    try { await m.generate(prompt, { topP: Number.NaN }); } catch (e) { refused = e instanceof PicoformerError && e.codeName === 'BAD_ARGUMENT'; }
    m.terminate();
    return { same, n, stop: s.stopReason, frames, ms, refused };
  });
  assert.equal(r.same, true);
  assert.equal(r.stop, 'aborted');
  assert.ok(r.n >= 600 && r.n < 1e6, `${r.n}`);
  assert.equal(r.refused, true);
  // The page kept painting frames while the worker generated (about one per 16 ms).
  assert.ok(r.frames >= Math.min(3, r.ms / 100), `${r.frames} frames in ${r.ms} ms`);
  assert.deepEqual(errors, []);
  await page.close();
});
