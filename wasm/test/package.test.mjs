// The JS package against torch's numbers and the host's tokens, for both wasm builds.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';

import { Picoformer, PicoformerError, ErrorCode, readSafetensors } from '../js/picoformer.mjs';
import { BUILDS, FIXTURES, fixture, model, hostTokens, maxAbsDiff } from './helpers.mjs';

// Token models the package runs (raw decoders take embeddings; cross_wrap, which needs a
// context, has tests of its own).
const WRAPPERS = ['wrap_tied', 'wrap_abs', 'wrap_f16', 'wrap_bf16'];

for (const build of BUILDS) {
  const load = (name, opts) => Picoformer.load(build.bytes, model(name), opts);

  describe(`${build.name} build`, () => {
    for (const name of WRAPPERS) {
      test(`${name}: full and step-wise logits equal torch's within 1e-4`, async () => {
        const io = readSafetensors(fixture(`${name}.io.safetensors`)).tensors;
        const [b, n] = io.tokens.shape;
        const v = io.full.shape[2];
        const m = await load(name, { capacity: n, fullRows: n });
        for (let r = 0; r < b; r++) {
          const tokens = Array.from(io.tokens.data.subarray(r * n, (r + 1) * n), Number);
          const full = io.full.data.subarray(r * n * v, (r + 1) * n * v);
          const stepwise = io.stepwise.data.subarray(r * n * v, (r + 1) * n * v);
          m.reset();
          assert.ok(maxAbsDiff(m.forward(tokens), full) < 1e-4, 'full');
          m.reset();
          const rows = new Float32Array(n * v);
          tokens.forEach((t, i) => rows.set(i === 0 ? m.prefill([t]) : m.step(t), i * v));
          assert.ok(maxAbsDiff(rows, stepwise) < 1e-4, 'stepwise');
          assert.equal(m.length, n);
        }
      });
    }

    test('cross_wrap: with its contexts, full and step-wise logits equal torch\'s within 1e-4', async () => {
      const io = readSafetensors(fixture('cross_wrap.io.safetensors')).tensors;
      const [b, n] = io.tokens.shape;
      const [, rows, w] = io.context.shape;
      const v = io.full.shape[2];
      const m = await load('cross_wrap', { capacity: n, fullRows: n, maxContext: rows, chunk: 3 });
      assert.equal(m.plan.dimContext, w);
      assert.equal(m.plan.maxContext, rows);
      for (let r = 0; r < b; r++) {
        const tokens = Array.from(io.tokens.data.subarray(r * n, (r + 1) * n), Number);
        const full = io.full.data.subarray(r * n * v, (r + 1) * n * v);
        const stepwise = io.stepwise.data.subarray(r * n * v, (r + 1) * n * v);
        m.setContext(io.context.data.subarray(r * rows * w, (r + 1) * rows * w));
        assert.ok(maxAbsDiff(m.forward(tokens), full) < 1e-4, 'full');
        // reset keeps the context: the next call projects it again.
        m.reset();
        const out = new Float32Array(n * v);
        tokens.forEach((t, i) => out.set(i === 0 ? m.prefill([t]) : m.step(t), i * v));
        assert.ok(maxAbsDiff(out, stepwise) < 1e-4, 'stepwise');
        assert.ok(m.fullVsStepwise(tokens) < 1e-5);
      }
      // A shorter context (fewer rows than maxContext) is a context of its own.
      m.setContext(io.context.data.subarray(0, 2 * w));
      assert.equal(m.length, 0);
      const short = m.prefill([1, 2]).slice();
      m.setContext(io.context.data.subarray(0, rows * w));
      assert.ok(maxAbsDiff(m.prefill([1, 2]), short) > 1e-6, 'the context matters');
    });

    test('step-wise equals full (f32 cache), and stays close with f16/bf16 caches', async () => {
      const tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3];
      const m = await load('wrap_tied', { capacity: 32, fullRows: 32, chunk: 4 });
      assert.ok(m.fullVsStepwise(tokens) < 1e-5);
      for (const kv of ['f16', 'bf16']) {
        const h = await load('wrap_tied', { capacity: 32, fullRows: 32, kv });
        // A 1e-7 difference between the full and step-wise kernels' sums can flip the rounding of
        // a cached key to 16 bits: simd128 with an f16 cache measured 3.4e-5.
        const d = h.fullVsStepwise(tokens);
        assert.ok(d < 1e-4, `${kv}: ${d}`);
        assert.equal(h.plan.kvCache, m.plan.kvCache / 2);
      }
    });

    test('prefill in chunks equals one prefill and truncate rewinds', async () => {
      const m = await load('wrap_tied', { capacity: 32, chunk: 3 });
      const a = m.prefill([1, 2, 3, 4, 5, 6, 7]).slice();
      m.reset();
      m.prefill([1, 2, 3]);
      const b = m.prefill([4, 5, 6, 7]).slice();
      assert.ok(maxAbsDiff(a, b) < 1e-6);
      m.truncate(3);
      assert.equal(m.length, 3);
      assert.ok(maxAbsDiff(m.prefill([4, 5, 6, 7]), a) < 1e-6);
    });

    for (const name of ['wrap_tied', 'wrap_abs', 'wrap_f16']) {
      test(`${name}: greedy tokens equal the host's`, async () => {
        const prompt = [1, 2, 3];
        const expected = hostTokens(path.join(FIXTURES, `${name}.model.safetensors`), prompt, 12);
        const m = await load(name, { capacity: 15 });
        assert.deepEqual(m.generate(prompt, { maxTokens: 12 }), expected);
        m.reset();
        const seen = [];
        assert.deepEqual(m.generate(prompt, { maxTokens: 12, onToken: (t) => seen.push(t) }), expected);
        assert.deepEqual(seen, expected);
      });
    }

    test('bundled demo model: greedy and sampled tokens equal the host\'s', async () => {
      const file = path.join(FIXTURES, '..', '..', 'models', 'demo.safetensors');
      const prompt = Array.from(new TextEncoder().encode('It is a truth'));
      const m = await Picoformer.load(build.bytes, readFileSync(file), { capacity: 256 });
      assert.deepEqual(m.generate(prompt, { maxTokens: 40 }), hostTokens(file, prompt, 40));
      const sampling = { temperature: 0.8, topK: 0, topP: 0.95, seed: 7 };
      m.reset();
      assert.deepEqual(m.generate(prompt, { maxTokens: 40, ...sampling }), hostTokens(file, prompt, 40, sampling));
    });

    test('sampled tokens (temperature, top-k, top-p, min-p, seed) equal the host\'s', async () => {
      const sampling = { temperature: 0.8, topK: 10, topP: 0.9, minP: 0.02, seed: 42 };
      const file = path.join(FIXTURES, 'wrap_tied.model.safetensors');
      const expected = hostTokens(file, [5, 6], 24, sampling);
      const m = await load('wrap_tied', { capacity: 32 });
      assert.deepEqual(m.generate([5, 6], { maxTokens: 24, ...sampling }), expected);
      m.reset();
      assert.deepEqual(m.generate([5, 6], { maxTokens: 24, ...sampling, onToken() {} }), expected);
      m.reset();
      const other = m.generate([5, 6], { maxTokens: 24, ...sampling, seed: 43 });
      assert.notDeepEqual(other, expected);
    });

    test('generation stops at the cache capacity and the position table', async () => {
      const m = await load('wrap_tied', { capacity: 8 });
      assert.equal(m.generate([1, 2, 3], { maxTokens: 50 }).length, 6); // 5 fed back + 1 last
      const a = await load('wrap_abs', { capacity: 32 }); // max_seq_len 16
      assert.equal(a.generate([1], { maxTokens: 50 }).length, 16);
    });

    test('the plan adds up and memory does not grow while generating', async () => {
      const m = await load('wrap_tied', { capacity: 64 });
      const p = m.plan;
      // 2 · depth · kv_heads · dim_head · capacity · 4 bytes
      assert.equal(p.kvCache, 2 * 2 * 1 * 16 * 64 * 4);
      assert.equal(p.logits, 40 * 4);
      assert.equal(p.contextCache + p.context + p.maxContext, 0);
      const parts = p.weights + p.kvCache + p.scratch + p.logits + p.fullLogits + p.sampler + p.tokens;
      assert.ok(p.arena >= parts && p.arena < parts + 16 * 9, `${p.arena} vs ${parts}`);
      const before = m.memoryBytes;
      m.generate([1], { maxTokens: 60, temperature: 1, seed: 1, onToken() {} });
      assert.equal(m.memoryBytes, before);
      assert.equal(p.memory, before);
      // A cross-attending model: the context's keys and values (2 · depth · kv_heads ·
      // dim_head · maxContext elements of the cache type) and the context itself (f32).
      const c = (await load('cross_wrap', { capacity: 8, maxContext: 5, kv: 'f16' })).plan;
      const kvRow = c.kvCache / (2 * 8);
      assert.equal(c.contextCache, kvRow * 2 * 5);
      assert.equal(c.context, 5 * c.dimContext * 4);
      const all = c.weights + c.kvCache + c.contextCache + c.context + c.scratch + c.logits
        + c.fullLogits + c.sampler + c.tokens;
      assert.ok(c.arena >= all && c.arena < all + 16 * 11, `${c.arena} vs ${all}`);
    });

    describe('errors are thrown as PicoformerError and never trap', () => {
      const rejects = (promise, code, re) => assert.rejects(promise, (e) =>
        e instanceof PicoformerError && e.code === code && re.test(e.message));
      const throws = (fn, code, re) => assert.throws(fn, (e) =>
        e instanceof PicoformerError && e.code === code && re.test(e.message));

      test('corrupt, truncated and unsupported model files', async () => {
        const good = model('wrap_tied');
        await rejects(Picoformer.load(build.bytes, new Uint8Array(100).fill(0xff)), ErrorCode.LOAD, /malformed safetensors/);
        await rejects(Picoformer.load(build.bytes, good.subarray(0, good.length - 10)), ErrorCode.LOAD, /malformed safetensors/);
        await rejects(Picoformer.load(build.bytes, new Uint8Array(0)), ErrorCode.LOAD, /./);
        // A bare Decoder loads (kind 'decoder', test/family.test.mjs); this one cross-attends.
        await rejects(Picoformer.load(build.bytes, model('seed')), ErrorCode.BAD_ARGUMENT, /maxContext/);
        await rejects(Picoformer.load(build.bytes, model('cross_wrap')), ErrorCode.BAD_ARGUMENT, /maxContext/);
        await rejects(load('wrap_tied', { capacity: 0 }), ErrorCode.BAD_ARGUMENT, /capacity/);
        await rejects(load('wrap_tied', { capacity: 2 ** 30 }), ErrorCode.OUT_OF_MEMORY, /cannot grow memory/);
      });

      test('random byte flips in the header: a clean error or a model, never a trap', async () => {
        const good = model('wrap_tied');
        const headerEnd = 8 + Number(new DataView(good.buffer, good.byteOffset).getBigUint64(0, true));
        let seed = 12345;
        const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
        const m = await load('wrap_tied', { capacity: 8 });
        for (let i = 0; i < 200; i++) {
          const bad = Uint8Array.from(good);
          for (let k = 0; k < 3; k++) bad[rnd(headerEnd)] = rnd(256);
          try {
            await Picoformer.load(build.bytes, bad, { capacity: 8 });
          } catch (e) {
            assert.ok(e instanceof PicoformerError, `flip ${i}: ${e}`);
          }
        }
        assert.equal(m.generate([1], { maxTokens: 3 }).length, 3);
      });

      test('contexts: missing, malformed, too long, or for a model without cross-attention', async () => {
        const io = readSafetensors(fixture('cross_wrap.io.safetensors')).tensors;
        const w = io.context.shape[2];
        const m = await load('cross_wrap', { capacity: 8, maxContext: 3 });
        throws(() => m.prefill([1]), ErrorCode.BAD_ARGUMENT, /context/);
        throws(() => m.setContext(new Float32Array(w + 1)), ErrorCode.BAD_ARGUMENT, /whole rows/);
        throws(() => m.setContext([]), ErrorCode.BAD_ARGUMENT, /whole rows/);
        throws(() => m.setContext(new Float32Array(4 * w)), ErrorCode.BAD_ARGUMENT, /maxContext/);
        assert.equal(m.length, 0);
        m.setContext(io.context.data.subarray(0, 3 * w));
        const l = m.prefill([1, 2]).slice();
        // A refused context changes nothing: not the cache, not the context set.
        throws(() => m.setContext(new Float32Array(4 * w)), ErrorCode.BAD_ARGUMENT, /maxContext/);
        assert.equal(m.length, 2);
        m.reset();
        assert.ok(maxAbsDiff(m.prefill([1, 2]), l) === 0);
        const t = await load('wrap_tied', { capacity: 8, maxContext: 4 });
        assert.equal(t.plan.maxContext, 0);
        throws(() => t.setContext(new Float32Array(32)), ErrorCode.BAD_ARGUMENT, /no cross-attention/);
        assert.equal(t.generate([1], { maxTokens: 2 }).length, 2);
      });

      test('token out of range, cache full, misuse: nothing changes', async () => {
        const m = await load('wrap_tied', { capacity: 4 });
        throws(() => m.sample(), ErrorCode.BAD_ARGUMENT, /prefill/);
        m.prefill([1]);
        throws(() => m.sample({ temperature: -1 }), ErrorCode.BAD_ARGUMENT, /temperature/);
        throws(() => m.sample({ temperature: 1, topP: -0.5 }), ErrorCode.BAD_ARGUMENT, /topP/);
        m.reset();
        throws(() => m.prefill([1, 40]), ErrorCode.TOKEN_OUT_OF_RANGE, /40/);
        throws(() => m.prefill([1, -1]), ErrorCode.TOKEN_OUT_OF_RANGE, /-1/);
        assert.equal(m.length, 0);
        throws(() => m.prefill([1, 2, 3, 4, 5]), ErrorCode.CACHE_FULL, /capacity/);
        throws(() => m.prefill([]), ErrorCode.BAD_ARGUMENT, /empty/i);
        const l = m.prefill([1, 2, 3, 4]).slice();
        throws(() => m.step(1), ErrorCode.CACHE_FULL, /full/i);
        throws(() => m.truncate(5), ErrorCode.BAD_ARGUMENT, /truncate|beyond/i);
        assert.equal(m.length, 4);
        assert.deepEqual(m.logits.slice(), l);
        throws(() => m.forward([1]), ErrorCode.BAD_ARGUMENT, /fullRows/);
        const a = await load('wrap_abs', { capacity: 32 });
        a.prefill(new Array(16).fill(1));
        throws(() => a.step(1), ErrorCode.POSITION_OUT_OF_RANGE, /16/);
        m.reset();
        assert.equal(m.generate([1], { maxTokens: 2 }).length, 2);
      });
    });
  });
}
