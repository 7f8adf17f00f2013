// PicoformerWorker (js/client.mjs) driving js/worker.mjs in a Node worker thread: the same
// tokens as in the main thread, streams with abort, errors, and a main thread that keeps running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';

import { Picoformer } from '../js/picoformer.mjs';
import { PicoformerWorker, PicoformerError, ErrorCode } from '../js/client.mjs';
import { model } from './helpers.mjs';

const start = () => new Worker(new URL('../js/worker.mjs', import.meta.url));

test('a model in a worker thread: tokens, stream with abort, errors, a free main thread', async () => {
  const bytes = model('wrap_tied');
  const w = await PicoformerWorker.create(start(), bytes, { capacity: 16 });
  try {
    const local = await Picoformer.create(bytes, { capacity: 16 });
    const opts = { maxTokens: 30, temperature: 0.9, seed: 4, slide: 8, repetitionPenalty: 1.2 };
    const expected = local.generate([1, 2], opts);
    const seen = [];
    const got = await w.generate([1, 2], { ...opts, onToken: (t) => seen.push(t) });
    assert.deepEqual(got, Array.from(expected));
    assert.deepEqual(seen, got);
    assert.equal(got.stopReason, 'maxTokens');
    assert.equal(w.stopReason, 'maxTokens');
    assert.equal(w.length, local.length);
    assert.equal(w.capacity, 16);

    // Calls run in order; logits come back as copies.
    await w.reset();
    const logits = await w.prefill([1, 2, 3]);
    assert.deepEqual(Array.from(logits), Array.from((local.reset(), local.prefill([1, 2, 3]))));
    assert.equal(w.length, 3);

    // A refused call rejects with a PicoformerError; nothing changed in the worker.
    await assert.rejects(w.generate([1], { topP: 2 }), (e) => e instanceof PicoformerError && e.code === ErrorCode.BAD_ARGUMENT);
    await assert.rejects(w.truncate(2 ** 32), (e) => e instanceof PicoformerError && e.code === ErrorCode.BAD_ARGUMENT);
    await assert.rejects(w.call('bogus'), (e) => e instanceof PicoformerError);
    await assert.rejects(w.call('fullVsStepwise', [1]), /fullRows/);
    assert.equal(w.length, 3);
    await w.reset();

    // A long stream, aborted; the main thread ran timers meanwhile.
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 1);
    const ac = new AbortController();
    const s = w.stream([1], { maxTokens: 1e9, slide: 8, temperature: 1, signal: ac.signal });
    const tokens = [];
    for await (const t of s) {
      tokens.push(t);
      if (tokens.length === 200) ac.abort();
    }
    clearInterval(timer);
    assert.equal(s.stopReason, 'aborted');
    assert.ok(tokens.length >= 200 && tokens.length < 1e6, `${tokens.length}`);
    assert.ok(ticks > 0);
    // break ends it too, and the worker goes on serving.
    await w.reset();
    for await (const t of w.stream([2], { maxTokens: 50 })) { assert.equal(typeof t, 'number'); break; }
    await w.reset();
    const after = await w.generate([3], { maxTokens: 2 });
    assert.equal(after.length, 2);
  } finally {
    await w.terminate();
  }
});

test('a worker refuses bad model bytes and options', async () => {
  const workers = [start(), start()];
  try {
    await assert.rejects(PicoformerWorker.create(workers[0], new Uint8Array(10), {}),
      (e) => e instanceof PicoformerError && e.code === ErrorCode.LOAD);
    await assert.rejects(PicoformerWorker.create(workers[1], model('wrap_tied'), { capacity: -1 }),
      (e) => e instanceof PicoformerError && e.code === ErrorCode.BAD_ARGUMENT);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
});

test('the family in a worker thread: an encoder and an XTransformer', async () => {
  const e = await PicoformerWorker.create(start(), model('enc_wrap'), { capacity: 8 });
  const x = await PicoformerWorker.create(start(), model('xt_bytes'), { capacity: 16 });
  try {
    const local = await Picoformer.create(model('enc_wrap'), { capacity: 8 });
    assert.equal(e.kind, 'encoderWrapper');
    const got = await e.encode([1, 2, 3], { mask: [1, 1, 0] });
    assert.ok(got instanceof Float32Array);
    assert.deepEqual(got, local.encode([1, 2, 3], { mask: [1, 1, 0] }));
    await assert.rejects(e.generate([1]), (err) => err instanceof PicoformerError && err.code === ErrorCode.BAD_ARGUMENT);
    assert.equal(x.kind, 'xtransformer');
    await x.encode([72, 101, 108, 108, 111], { mask: [1, 1, 1, 1, 0] });
    const lx = await Picoformer.create(model('xt_bytes'), { capacity: 16 });
    lx.encode([72, 101, 108, 108, 111], { mask: [1, 1, 1, 1, 0] });
    assert.deepEqual(await x.generate([1], { maxTokens: 10 }), Array.from(lx.generate([1], { maxTokens: 10 })));
  } finally {
    e.terminate();
    x.terminate();
  }
});

test("a worker takes weights: 'f32' and panels (issue 30): the main thread's tokens and plan", async () => {
  const bytes = model('wrap_f16');
  const opts = { capacity: 16, weights: 'f32', panels: true, chunk: 4 };
  const w = await PicoformerWorker.create(start(), bytes, opts);
  const bad = start();
  try {
    const local = await Picoformer.create(bytes, opts);
    assert.deepEqual(w.plan, local.plan);
    assert.ok(w.plan.panels > 0 && w.plan.weights > bytes.length);
    const gen = { maxTokens: 10, temperature: 0.9, seed: 3 };
    assert.deepEqual(await w.generate([1, 2, 3], gen), Array.from(local.generate([1, 2, 3], gen)));
    await assert.rejects(PicoformerWorker.create(bad, bytes, { weights: 'f16' }),
      (e) => e instanceof PicoformerError && e.code === ErrorCode.BAD_ARGUMENT && /weights/.test(e.message));
  } finally {
    await w.terminate();
    await bad.terminate();
  }
});
