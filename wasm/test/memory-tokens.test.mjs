// Issue 24: a decoder TransformerWrapper with `num_memory_tokens` through the package, in both
// builds. x-transformers turns its KV cache off for memory tokens; picoformer caches them as a
// prefix, so the full pass and the step-wise logits must both equal torch's full pass (the
// fixture's `full` and `stepwise`) within 1e-5. The cache's `capacity` counts the memory rows too.
// (`memory_tokens_abs` cross-attends: the family test's context handling covers that path.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { Picoformer, PicoformerError, ErrorCode, readSafetensors } from '../js/picoformer.mjs';
import { BUILDS, fixture, model, maxAbsDiff } from './helpers.mjs';

const TOLERANCE = 1e-5;
const NAME = 'memory_tokens';
const io = readSafetensors(fixture(`${NAME}.io.safetensors`)).tensors;
const MEMORY = JSON.parse(readSafetensors(model(NAME)).metadata.x_transformers).wrapper.num_memory_tokens;
const [B, N] = io.tokens.shape;
const V = io.full.shape[2];

const tokens = (b) => Array.from(io.tokens.data.subarray(b * N, (b + 1) * N), Number);
/** Position `i` of row `b` of a [B, N, V] tensor (all positions from `i` with `count`). */
const logits = (t, b, i, count = 1) => t.data.subarray((b * N + i) * V, (b * N + i + count) * V);

for (const build of BUILDS) {
  const load = (opts) => Picoformer.load(build.bytes, model(NAME), opts);

  describe(`${build.name} build: memory tokens (num_memory_tokens = ${MEMORY})`, () => {
    test('the full pass equals torch within 1e-5', async () => {
      const m = await load({ capacity: MEMORY + N, fullRows: N });
      let worst = 0;
      for (let b = 0; b < B; b++) {
        m.reset();
        worst = Math.max(worst, maxAbsDiff(m.forward(tokens(b)), logits(io.full, b, 0, N)));
        assert.equal(m.length, MEMORY + N);
      }
      assert.ok(worst <= TOLERANCE, `${worst}`);
    });

    test("step-wise logits equal torch's full pass (and the fixture's step-wise) within 1e-5", async () => {
      const m = await load({ capacity: 16 });
      let worst = 0;
      for (let b = 0; b < B; b++) {
        m.reset();
        const t = tokens(b);
        for (let i = 0; i < N; i++) {
          const out = i === 0 ? m.prefill([t[0]]) : m.step(t[i]);
          worst = Math.max(worst, maxAbsDiff(out, logits(io.full, b, i)), maxAbsDiff(out, logits(io.stepwise, b, i)));
          // The memory rows are cached once, as a prefix.
          assert.equal(m.length, MEMORY + i + 1);
        }
      }
      assert.ok(worst <= TOLERANCE, `${worst}`);
    });

    test('a prompt in one prefill, then steps: the same logits', async () => {
      const m = await load({ capacity: MEMORY + N, chunk: 3 });
      let worst = 0;
      for (let b = 0; b < B; b++) {
        m.reset();
        const t = tokens(b);
        worst = Math.max(worst, maxAbsDiff(m.prefill(t.slice(0, 5)), logits(io.full, b, 4)));
        for (let i = 5; i < N; i++) worst = Math.max(worst, maxAbsDiff(m.step(t[i]), logits(io.full, b, i)));
      }
      assert.ok(worst <= TOLERANCE, `${worst}`);
    });

    test('capacity counts the memory tokens: N tokens need N + memory positions', async () => {
      const m = await load({ capacity: MEMORY + N - 1 });
      const t = tokens(0);
      m.prefill(t.slice(0, N - 2));
      m.step(t[N - 2]);
      assert.equal(m.length, m.capacity);
      assert.throws(() => m.step(t[N - 1]), (e) => e instanceof PicoformerError && e.code === ErrorCode.CACHE_FULL);
      // A capacity that cannot even hold the memory rows and one token.
      const tiny = await load({ capacity: MEMORY });
      assert.throws(() => tiny.prefill([t[0]]), (e) => e instanceof PicoformerError && e.code === ErrorCode.CACHE_FULL);
    });
  });
}
