// Issue 27: generation as a user drives it: stop reasons, stop tokens, repetition penalty,
// sliding window, continuing, streams (sync and async, with AbortSignal), the automatic build.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';

import { Picoformer, PicoformerError, ErrorCode, readSafetensors, simdSupported, wasmUrl } from '../js/picoformer.mjs';
import { BUILDS, FIXTURES, fixture, model, hostTokens } from './helpers.mjs';

const DEMO = path.join(FIXTURES, '..', '..', 'models', 'demo.safetensors');

/** Greedy generation with a sliding window, the slow way: reset and prefill the last `keep`. */
function slidingByHand(m, prompt, maxTokens, keep) {
  const history = Array.from(prompt);
  m.prefill(prompt);
  const out = [];
  for (;;) {
    const t = m.sample();
    out.push(t);
    history.push(t);
    if (out.length === maxTokens) return out;
    if (m.length === m.capacity) {
      m.reset(); // keeps the context of a cross-attending model
      m.prefill(history.slice(-keep));
    } else {
      m.step(t);
    }
  }
}

for (const build of BUILDS) {
  const load = (name, opts) => Picoformer.load(build.bytes, model(name), opts);

  describe(`${build.name} build: generation`, () => {
    test('every result says why it stopped', async () => {
      const prompt = Array.from(new TextEncoder().encode('It is a truth'));
      const d = await Picoformer.load(build.bytes, readFileSync(DEMO), { capacity: 256 });
      const all = d.generate(prompt, { maxTokens: 1000 });
      assert.equal(all.length, 256 - prompt.length + 1);
      assert.equal(all.stopReason, 'cacheFull');
      assert.equal(d.stopReason, 'cacheFull');
      assert.equal(d.length, 256);
      const m = await load('wrap_tied', { capacity: 8 });
      const two = m.generate([1], { maxTokens: 2 });
      assert.deepEqual([two.length, two.stopReason], [2, 'maxTokens']);
      const none = m.generate([1], { maxTokens: 0 });
      assert.deepEqual([none.length, none.stopReason], [0, 'maxTokens']);
      const s = m.stream([1, 2], { maxTokens: 50 });
      assert.equal(s.stopReason, undefined);
      assert.equal([...s].length, 8 - 3 - 2 + 1);
      assert.equal(s.stopReason, 'cacheFull');
      // The absolute position table (16 of wrap_abs) fills like the cache.
      const a = await load('wrap_abs', { capacity: 32 });
      const r = a.generate([1], { maxTokens: 50, onToken() {} });
      assert.deepEqual([r.length, r.stopReason], [16, 'cacheFull']);
    });

    test('stop tokens end it after the token, on every path', async () => {
      const m = await load('wrap_tied', { capacity: 32 });
      const greedy = Array.from(m.generate([1, 2, 3], { maxTokens: 20 }));
      const stop = greedy[6];
      const expected = greedy.slice(0, greedy.indexOf(stop) + 1);
      const paths = [
        () => m.generate([1, 2, 3], { maxTokens: 20, stopTokens: [39, stop] }),
        () => m.generate([1, 2, 3], { maxTokens: 20, stopTokens: new Uint32Array([stop]), onToken() {} }),
        () => { const s = m.stream([1, 2, 3], { maxTokens: 20, stopTokens: [stop] }); const t = [...s]; t.stopReason = s.stopReason; return t; },
      ];
      for (const run of paths) {
        m.reset();
        const got = run();
        assert.deepEqual(Array.from(got), expected);
        assert.equal(got.stopReason, 'stopToken');
      }
    });

    test('repetition penalty and sliding window: the tokens the host computes', async () => {
      const file = path.join(FIXTURES, 'wrap_tied.model.safetensors');
      const sampling = { temperature: 0.9, topK: 0, topP: 0.95, minP: 0, seed: 3 };
      for (const [penalty, window, keep] of [[1.5, 6, 4], [1.3, 8, 0], [1, 0, 8], [2, 3, 1]]) {
        const expected = hostTokens(file, [5, 6], 40, { ...sampling, extra: [penalty, window, keep, 8] });
        const m = await load('wrap_tied', { capacity: 8 });
        const opts = { maxTokens: 40, ...sampling, repetitionPenalty: penalty, repetitionWindow: window, slide: keep };
        const got = m.generate([5, 6], opts);
        assert.deepEqual(Array.from(got), expected, `${penalty} ${window} ${keep}`);
        m.reset();
        assert.deepEqual(m.generate([5, 6], { ...opts, onToken() {} }), expected);
        m.reset();
        assert.deepEqual([...m.stream([5, 6], opts)], expected);
        assert.equal(got.stopReason, keep ? 'maxTokens' : 'cacheFull');
        if (keep) assert.ok(m.reencodes > 0);
      }
      // The penalty changes greedy tokens (a sanity check that it is applied at all).
      const m = await load('wrap_tied', { capacity: 32 });
      const plain = Array.from(m.generate([1, 2], { maxTokens: 20 }));
      m.reset();
      assert.notDeepEqual(Array.from(m.generate([1, 2], { maxTokens: 20, repetitionPenalty: 3 })), plain);
    });

    test('a sliding window equals resetting and prefilling the last tokens, cross-attending models included', async () => {
      const m = await load('wrap_tied', { capacity: 8 });
      const h = await load('wrap_tied', { capacity: 8 });
      const got = m.generate([1, 2, 3], { maxTokens: 30, slide: 5 });
      assert.deepEqual(Array.from(got), slidingByHand(h, [1, 2, 3], 30, 5));
      assert.equal(m.reencodes, 6);
      // A prompt longer than the cache: its last `keep` tokens run.
      m.reset(); h.reset();
      const long = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
      const cut = m.generate(long, { maxTokens: 10, slide: 4 });
      assert.deepEqual(Array.from(cut), slidingByHand(h, long.slice(-4), 10, 4));
      const io = readSafetensors(fixture('cross_wrap.io.safetensors')).tensors;
      const ctx = io.context.data.subarray(0, 2 * io.context.shape[2]);
      const c = await load('cross_wrap', { capacity: 6, maxContext: 2 });
      const hc = await load('cross_wrap', { capacity: 6, maxContext: 2 });
      c.setContext(ctx); hc.setContext(ctx);
      const cg = c.generate([1, 2], { maxTokens: 25, slide: 3 });
      assert.equal(cg.stopReason, 'maxTokens');
      assert.deepEqual(Array.from(cg), slidingByHand(hc, [1, 2], 25, 3));
    });

    test('an empty prompt continues: the same tokens as one longer generation', async () => {
      const m = await load('wrap_tied', { capacity: 32 });
      const opts = { temperature: 0.8, seed: 9, repetitionPenalty: 1.2, repetitionWindow: 10 };
      const whole = Array.from(m.generate([3, 4], { maxTokens: 20, ...opts }));
      m.reset();
      const first = m.generate([3, 4], { maxTokens: 7, ...opts });
      const rest = [...m.stream([], { maxTokens: 13, ...opts, seed: undefined })];
      assert.deepEqual([...first, ...rest], whole);
      assert.equal(m.length, 2 + 19);
    });

    test('for await with an AbortSignal: aborted mid-way, before the start, and break', async () => {
      const m = await load('wrap_tied', { capacity: 16 });
      const ac = new AbortController();
      const got = [];
      const s = m.stream([1], { maxTokens: 10000, slide: 8, temperature: 1, seed: 1, signal: ac.signal });
      for await (const t of s) {
        got.push(t);
        if (got.length === 5) setTimeout(() => ac.abort(), 0);
      }
      assert.equal(s.stopReason, 'aborted');
      assert.equal(m.stopReason, 'aborted');
      assert.ok(got.length >= 5 && got.length < 10000, `${got.length}`);
      // Already aborted: nothing runs, nothing changes.
      m.reset();
      m.prefill([1, 2]);
      const pre = m.stream([3, 4], { signal: AbortSignal.abort() });
      assert.deepEqual([...pre], []);
      assert.equal(pre.stopReason, 'aborted');
      assert.equal(m.length, 2);
      const g = m.generate([3], { signal: AbortSignal.abort() });
      assert.deepEqual([g.length, g.stopReason, m.length], [0, 'aborted', 2]);
      // break ends a stream; the tokens so far are cached except the last.
      const b = m.stream([3], { maxTokens: 10 });
      let n = 0;
      for await (const t of b) { assert.equal(typeof t, 'number'); if (++n === 3) break; }
      assert.equal(m.length, 2 + 1 + 2);
      assert.deepEqual([...b], []);
    });

    test('a stream ended by a later call refuses to go on', async () => {
      const m = await load('wrap_tied', { capacity: 16 });
      for (const later of [(x) => x.prefill([1]), (x) => x.reset(), (x) => x.generate([2], { maxTokens: 1 }),
        (x) => [...x.stream([2], { maxTokens: 1 })], (x) => x.truncate(1)]) {
        m.reset();
        const s = m.stream([1, 2], { maxTokens: 5 });
        assert.equal(typeof s.next().value, 'number');
        later(m);
        assert.throws(() => s.next(), (e) => e instanceof PicoformerError && e.code === ErrorCode.BAD_ARGUMENT && /later call/.test(e.message));
      }
    });
  });
}

describe('the package picks its build', () => {
  test('create: simd128 where WebAssembly.validate says so, the same tokens either way', async () => {
    assert.equal(simdSupported(), true); // Node >= 16.4
    assert.match(wasmUrl().href, /picoformer-simd128\.wasm$/);
    assert.match(wasmUrl('plain').href, /dist\/picoformer\.wasm$/);
    const bytes = model('wrap_tied');
    const auto = await Picoformer.create(bytes, { capacity: 16 });
    const plain = await Picoformer.create(bytes, { capacity: 16, build: 'plain' });
    const expected = hostTokens(path.join(FIXTURES, 'wrap_tied.model.safetensors'), [1, 2], 10);
    assert.deepEqual(auto.generate([1, 2], { maxTokens: 10 }), expected);
    assert.deepEqual(plain.generate([1, 2], { maxTokens: 10 }), expected);
  });
});
