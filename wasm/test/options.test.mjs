// Issue 28: every option's bad values are refused (BAD_ARGUMENT, or the token codes), and a
// refused call leaves every observable state as it was. The oracle: two models loaded and driven
// the same way, one of them given the refused call; then both must agree on the cache length,
// the logits, the stop reason, and on what a continued generation produces (which depends on the
// cache contents, the context, the RNG, the generation's history and its last token).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { Picoformer, PicoformerError, ErrorCode, readSafetensors } from '../js/picoformer.mjs';
import { BUILDS, fixture, model } from './helpers.mjs';

const BAD = ErrorCode.BAD_ARGUMENT;
const TOKEN = ErrorCode.TOKEN_OUT_OF_RANGE;

function isError(code, re) {
  return (e) => {
    assert.ok(e instanceof PicoformerError, `not a PicoformerError: ${e}`);
    assert.equal(e.codeName, Object.keys(ErrorCode).find((k) => ErrorCode[k] === code), e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

/** The observable state, and what continuing produces (this changes the model). */
function observe(m) {
  const attempt = (f) => { try { return Array.from(f()); } catch (e) { return e.codeName ?? String(e); } };
  const state = { length: m.length, logits: Array.from(m.logits), stopReason: m.stopReason };
  const more = attempt(() => m.generate([], { maxTokens: 4, temperature: 1, repetitionPenalty: 1.3 }));
  const after = attempt(() => m.generate([2], { maxTokens: 3, temperature: 1 }));
  return { ...state, more, after };
}

// A prompt, a sampled generation left in progress (history, last token, RNG advanced).
function setup(m) {
  m.generate([1, 2, 3], { maxTokens: 3, temperature: 1, seed: 5, repetitionPenalty: 1.3, repetitionWindow: 6 });
}

for (const build of BUILDS) {
  const load = (name, opts) => Picoformer.load(build.bytes, model(name), opts);
  // Two identical models; `call` must throw as `check` says on one; then they must still agree.
  async function unchanged(call, check, { name = 'wrap_tied', opts = { capacity: 12, fullRows: 4 }, prepare = setup } = {}) {
    const a = await load(name, opts);
    const b = await load(name, opts);
    prepare(a);
    prepare(b);
    assert.throws(() => call(a), check);
    assert.deepEqual(observe(a), observe(b));
  }

  describe(`${build.name} build: bad arguments are refused and change nothing`, () => {
    test('load options: integers in range only, known names only', async () => {
      const cases = [
        ['capacity', [0, -1, 2.7, 2 ** 32, 2 ** 32 + 4, NaN, Infinity, '8', null, 8n]],
        ['chunk', [0, 1.5, 2 ** 32, -3, '4']],
        ['fullRows', [-1, 0.5, 2 ** 32, NaN]],
        ['maxContext', [-1, 1.5, 2 ** 32]],
        ['kv', ['f64', 1, null, 'F32']],
      ];
      for (const [key, values] of cases) {
        for (const v of values) {
          await assert.rejects(load('wrap_tied', { [key]: v }), isError(BAD, new RegExp(key)), `${key}: ${v}`);
          await assert.rejects(Picoformer.create(model('wrap_tied'), { [key]: v }), isError(BAD, new RegExp(key)));
        }
      }
      await assert.rejects(load('wrap_tied', { capacty: 8 }), isError(BAD, /unknown option 'capacty'/));
      await assert.rejects(load('wrap_tied', 'big'), isError(BAD, /must be an object/));
      await assert.rejects(Picoformer.create(model('wrap_tied'), { build: 'avx' }), isError(BAD, /build/));
      for (const bytes of ['model.safetensors', null, [1, 2, 3], 5]) {
        await assert.rejects(Picoformer.create(bytes), isError(BAD, /model must be an ArrayBuffer/));
        await assert.rejects(Picoformer.load(build.bytes, bytes), isError(BAD, /model must be an ArrayBuffer/));
      }
      await assert.rejects(Picoformer.load('x.wasm', model('wrap_tied')), isError(BAD, /wasm must be/));
      // In range still loads.
      assert.equal((await load('wrap_tied', { capacity: 5, chunk: 1, kv: 'bf16' })).capacity, 5);
    });

    const genCases = [
      ['temperature', [-1, NaN, Infinity, -Infinity, '1', null]],
      ['topK', [-1, 1.5, 2 ** 32, NaN, '3']],
      ['topP', [2, -0.1, NaN, Infinity, 1.0001, '0.9']],
      ['minP', [NaN, 2, -1, Infinity]],
      ['maxTokens', [-1, 1.5, NaN, 2 ** 32, Infinity, '5']],
      ['seed', [-1, 1.5, NaN, 2 ** 53, -1n, 1n << 64n, 'x']],
      ['repetitionPenalty', [0, -1, NaN, Infinity]],
      ['repetitionWindow', [-1, 13, 1.5, NaN]],
      ['slide', [-1, 13, 0.5, NaN, true]],
      ['stopTokens', [[40], [-1], [1.5], new Array(17).fill(1), 'x', 3]],
      ['signal', ['x', {}, null]],
    ];

    test('generate and stream options: every bad value of every option', async () => {
      for (const [key, values] of genCases) {
        for (const v of values) {
          const re = key === 'stopTokens' ? /stop|token/ : new RegExp(key);
          const code = key === 'stopTokens' && Array.isArray(v) && v.length === 1 && v[0] !== 40 ? TOKEN : BAD;
          await unchanged((m) => m.generate([4, 5], { temperature: 1, [key]: v }), isError(code, re));
          await unchanged((m) => m.generate([4, 5], { temperature: 1, onToken() {}, [key]: v }), isError(code, re));
          // A stream checks its options when it is made, before anything runs.
          await unchanged((m) => m.stream([4, 5], { [key]: v }), isError(code, re));
        }
      }
      await unchanged((m) => m.generate([4], { onToken: 5 }), isError(BAD, /onToken/));
      await unchanged((m) => m.generate([4], { top_p: 0.5 }), isError(BAD, /unknown option 'top_p'/));
      await unchanged((m) => m.generate([4], 7), isError(BAD, /object/));
      await unchanged((m) => m.stream([4], { onToken() {} }), isError(BAD, /onToken/));
    });

    test('generate and stream prompts: bad tokens, too long, positions, all before anything runs', async () => {
      for (const call of [
        (m, p, o) => m.generate(p, o),
        (m, p, o) => m.generate(p, { ...o, onToken() {} }),
        (m, p, o) => [...m.stream(p, o)],
      ]) {
        await unchanged((m) => call(m, [4, 40], {}), isError(TOKEN, /40/));
        await unchanged((m) => call(m, [4, -1], {}), isError(TOKEN, /-1/));
        await unchanged((m) => call(m, [4, 1.5], {}), isError(TOKEN));
        await unchanged((m) => call(m, [4, NaN], {}), isError(TOKEN));
        await unchanged((m) => call(m, 'abc', {}), isError(BAD, /tokens/));
        await unchanged((m) => call(m, new Array(13).fill(1), {}), isError(ErrorCode.CACHE_FULL));
        // 5 positions cached (the 3rd generated token is pending): 8 more do not fit 12
        // without a sliding window...
        await unchanged((m) => call(m, [1, 2, 3, 4, 5, 6, 7, 8], {}), isError(ErrorCode.CACHE_FULL));
        // ... and a temperature refused after a valid prompt still runs nothing (it did before).
        await unchanged((m) => call(m, [4, 5], { temperature: -1 }), isError(BAD, /temperature/));
        await unchanged((m) => call(m, [4, 5], { temperature: 1, topP: 2 }), isError(BAD, /topP/));
        // Absolute positions: the table (16) is checked as the cache is.
        await unchanged((m) => call(m, new Array(14).fill(1), {}), isError(ErrorCode.POSITION_OUT_OF_RANGE),
          { name: 'wrap_abs', opts: { capacity: 32 } });
        await unchanged((m) => call(m, [1], { slide: 17 }), isError(BAD, /slide/),
          { name: 'wrap_abs', opts: { capacity: 32 } });
      }
      // An empty prompt with nothing to continue.
      await unchanged((m) => m.generate([], {}), isError(BAD, /prefill/), { prepare() {} });
    });

    test('sample, seed, step, prefill, forward, truncate', async () => {
      for (const [key, values] of genCases.slice(0, 4)) {
        if (key === 'maxTokens') continue;
        for (const v of values) {
          await unchanged((m) => m.sample({ temperature: 1, [key]: v }), isError(BAD, new RegExp(key)));
        }
      }
      await unchanged((m) => m.sample({ maxTokens: 3 }), isError(BAD, /unknown option/));
      for (const v of [-1, 1.5, NaN, 'x', 1n << 64n, -5n, 2 ** 53]) {
        await unchanged((m) => m.seed(v), isError(BAD, /seed/));
      }
      for (const v of [-1, 1.5, 40, 'x', 2 ** 32, NaN, undefined]) {
        await unchanged((m) => m.step(v), isError(TOKEN));
      }
      await unchanged((m) => m.prefill([]), isError(BAD, /empty/i));
      await unchanged((m) => m.prefill({ length: 2 }), isError(BAD, /tokens/));
      await unchanged((m) => m.forward([1, 2, 3, 4, 5]), isError(BAD, /fullRows/));
      for (const v of [2 ** 32, 2 ** 32 + 3, -1, 1.5, NaN, '1', 6]) {
        // 6: beyond the 5 cached positions.
        await unchanged((m) => m.truncate(v), isError(BAD, /length|truncate|beyond/));
      }
    });

    test('fullVsStepwise: more tokens than rows (or bad ones) refused before the cache is reset', async () => {
      await unchanged((m) => m.fullVsStepwise([1, 2, 3, 4, 5]), isError(BAD, /fullRows/));
      await unchanged((m) => m.fullVsStepwise([1, 40]), isError(TOKEN, /40/));
      await unchanged((m) => m.fullVsStepwise([]), isError(BAD));
      await unchanged((m) => m.fullVsStepwise(new Array(17).fill(1)), isError(ErrorCode.POSITION_OUT_OF_RANGE),
        { name: 'wrap_abs', opts: { capacity: 32, fullRows: 32 } });
    });

    test('contexts: refused ones keep the context and the cache', async () => {
      const io = readSafetensors(fixture('cross_wrap.io.safetensors')).tensors;
      const w = io.context.shape[2];
      const ctx = io.context.data.subarray(0, 2 * w);
      const prepare = (m) => { m.setContext(ctx); setup(m); };
      const opts = { name: 'cross_wrap', opts: { capacity: 12, maxContext: 3, fullRows: 4 }, prepare };
      const nan = Float32Array.from(ctx);
      nan[3] = NaN;
      for (const [bad, re] of [[new Float32Array(4 * w), /maxContext/], [new Float32Array(w + 1), /whole rows/],
        [[], /whole rows/], [nan, /finite/], [new Array(w).fill(1e300), /f32/], [new Array(w).fill(-Infinity), /finite/], ['x', /array/], [new Array(w).fill('1'), /finite/]]) {
        await unchanged((m) => m.setContext(bad), isError(BAD, re), opts);
      }
      await unchanged((m) => m.generate([4, 40]), isError(TOKEN), opts);
      await unchanged((m) => m.fullVsStepwise([1, 2, 3, 4, 5]), isError(BAD, /fullRows/), opts);
      // Without a context: nothing runs, and nothing is left half done.
      await unchanged((m) => m.generate([1, 2]), isError(BAD, /context/), { ...opts, prepare() {} });
      await unchanged((m) => m.fullVsStepwise([1, 2]), isError(BAD, /context/), { ...opts, prepare() {} });
    });

    test('a trap marks the instance broken: every later call throws TRAPPED', async () => {
      // No input traps the real module; an instance whose pf_step traps stands in for a bug.
      const { instance } = await WebAssembly.instantiate(build.bytes, {});
      const exports = { ...instance.exports, pf_step: () => { throw new WebAssembly.RuntimeError('unreachable'); } };
      Object.defineProperty(instance, 'exports', { value: exports });
      const m = await Picoformer.load(instance, model('wrap_tied'), { capacity: 8 });
      m.prefill([1, 2]);
      assert.equal(m.broken, false);
      assert.throws(() => m.step(3), isError(ErrorCode.TRAPPED, /trapped \(unreachable\)/));
      assert.equal(m.broken, true);
      assert.throws(() => m.prefill([1]), isError(ErrorCode.TRAPPED, /trapped earlier/));
      assert.throws(() => m.length, isError(ErrorCode.TRAPPED));
      assert.throws(() => m.generate([1]), isError(ErrorCode.TRAPPED));
      assert.throws(() => m.reset(), isError(ErrorCode.TRAPPED));
      // A fresh load is a fresh instance.
      const fresh = await Picoformer.load(build.bytes, model('wrap_tied'), { capacity: 8 });
      assert.equal(fresh.generate([1], { maxTokens: 2 }).length, 2);
    });
  });
}
