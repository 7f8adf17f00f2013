// Random sequences of API calls with arguments drawn from good and bad values (issue 28): every
// failure is a PicoformerError (never a TypeError from inside the package, never a trap), and a
// refused call leaves the length, the logits and the stop reason as they were.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Picoformer, PicoformerError, ErrorCode, readSafetensors } from '../js/picoformer.mjs';
import { BUILDS, fixture, model } from './helpers.mjs';

const NUMBERS = [0, 1, 2, 3, 7, 39, 40, 41, -1, 0.5, 1.5, 2 ** 31, 2 ** 32, 2 ** 32 + 4, 2 ** 53, NaN, Infinity,
  -Infinity, -0, 1e-40, 1e300, '1', null, undefined, true, 1n, {}, []];
const TOKENS = [[], [1], [1, 2, 3], [0, 39], [40], [-1], [1.5], [NaN], new Uint32Array([5, 6]), new Float64Array([1, 2]),
  new Array(20).fill(3), new Array(40).fill(1), 'ab', null, undefined, { length: 3 }, [[1]]];
const KEYS = ['temperature', 'topK', 'topP', 'minP', 'maxTokens', 'seed', 'repetitionPenalty', 'repetitionWindow',
  'slide', 'stopTokens', 'signal', 'bogus'];

function rng(seed) {
  let s = seed >>> 0;
  return (n) => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s % n; };
}

for (const build of BUILDS) {
  test(`${build.name} build: 3000 random calls per model, no trap, refusals change nothing`, async () => {
    const io = readSafetensors(fixture('cross_wrap.io.safetensors')).tensors;
    const w = io.context.shape[2];
    for (const [name, opts] of [['wrap_tied', { capacity: 24, fullRows: 6, chunk: 3 }],
      ['wrap_abs', { capacity: 24, fullRows: 6 }], ['cross_wrap', { capacity: 16, maxContext: 3, fullRows: 4 }]]) {
      const m = await Picoformer.load(build.bytes, model(name), opts);
      const r = rng(name.length * 7919);
      const pick = (a) => a[r(a.length)];
      const options = () => {
        if (r(10) === 0) return pick([null, 5, 'x', []]);
        const o = {};
        for (let k = r(4); k > 0; k--) {
          const key = pick(KEYS);
          o[key] = key === 'stopTokens' ? pick(TOKENS) : key === 'signal' ? pick([AbortSignal.abort(), new AbortController().signal, 'x'])
            : r(3) === 0 ? pick(NUMBERS) : pick([0, 1, 2, 0.5, 0.9, 4]);
        }
        return o;
      };
      const contexts = [io.context.data.subarray(0, w), io.context.data.subarray(0, 3 * w), new Float32Array(4 * w),
        new Float32Array(w + 1), [NaN], 'x'];
      const ops = [
        () => m.prefill(pick(TOKENS)),
        () => m.step(pick(NUMBERS)),
        () => m.forward(pick(TOKENS)),
        () => m.fullVsStepwise(pick(TOKENS)),
        () => m.sample(options()),
        () => m.seed(pick(NUMBERS)),
        () => m.generate(pick(TOKENS), options()),
        () => m.generate(pick(TOKENS), { ...options(), onToken() {} }),
        () => [...m.stream(pick(TOKENS), options())],
        () => m.truncate(pick(NUMBERS)),
        () => m.reset(),
        () => m.setContext(pick(contexts)),
      ];
      let refused = 0;
      for (let i = 0; i < 3000; i++) {
        const before = { length: m.length, logits: Array.from(m.logits), stopReason: m.stopReason };
        try {
          pick(ops)();
        } catch (e) {
          assert.ok(e instanceof PicoformerError, `call ${i}: ${e?.stack ?? e}`);
          assert.notEqual(e.code, ErrorCode.TRAPPED, `call ${i}: ${e.message}`);
          assert.deepEqual({ length: m.length, logits: Array.from(m.logits), stopReason: m.stopReason }, before, `call ${i}: ${e.message}`);
          refused++;
        }
        assert.equal(m.broken, false);
      }
      assert.ok(refused > 300 && refused < 2900, `${name}: ${refused} refused`);
    }
  });
}
