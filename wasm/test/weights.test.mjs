// Issue 30: the load options `weights: 'f32'` (f16/bf16 tensors widened to f32 at load, in JS)
// and `panels: true` (the decoder's matrices packed into f32 prefill panels, in the module).
// Widening is exact, so the logits may differ from the file as stored only by the kernels' sums
// (f32 against f16 products; panels sum in another order): the same greedy tokens, the logits
// within 1e-5, torch's within 1e-4; the plan reports the true sizes, memory does not grow, and
// bad values are refused with a PicoformerError.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';

import { Picoformer, PicoformerError, ErrorCode, readSafetensors } from '../js/picoformer.mjs';
import { BUILDS, WASM_DIR, fixture, model, maxAbsDiff } from './helpers.mjs';

const DEMO = readFileSync(path.resolve(WASM_DIR, '..', 'models', 'demo.safetensors'));
const TEXT = readFileSync(path.resolve(WASM_DIR, '..', 'models', 'demo.heldout.txt'));
const PROMPT = Array.from(TEXT.subarray(0, 40));
const NEXT = Array.from(TEXT.subarray(40, 60));

/** The last prefill position's logits and every step's after it, one Float32Array. */
function run(m, prompt, next) {
  m.reset();
  const v = m.numTokens;
  const out = new Float32Array((1 + next.length) * v);
  out.set(m.prefill(prompt), 0);
  next.forEach((t, i) => out.set(m.step(t), (i + 1) * v));
  return out;
}

function isBad(re) {
  return (e) => {
    assert.ok(e instanceof PicoformerError, `not a PicoformerError: ${e}`);
    assert.equal(e.code, ErrorCode.BAD_ARGUMENT, e.message);
    assert.match(e.message, re);
    return true;
  };
}

for (const build of BUILDS) {
  const load = (bytes, opts) => Picoformer.load(build.bytes, bytes, opts);

  describe(`${build.name} build: weights 'f32' and prefill panels`, () => {
    test("the demo model: weights 'f32' is the file's tensors widened (twice the f16 bytes), the same tokens and logits", async () => {
      const stored = await load(DEMO, { capacity: 128 });
      const wide = await load(DEMO, { capacity: 128, weights: 'f32' });
      const { tensors } = readSafetensors(DEMO);
      const f16 = Object.values(tensors).filter((t) => t.dtype === 'F16').reduce((a, t) => a + t.data.length, 0);
      assert.ok(f16 > 0);
      assert.equal(stored.plan.weights, DEMO.length);
      // The f16 bytes twice, the other tensors as they were, a header padded to 64 (at most).
      assert.ok(wide.plan.weights >= DEMO.length + f16 && wide.plan.weights < DEMO.length + f16 + 64 + 128,
        `${wide.plan.weights} vs ${DEMO.length} + ${f16}`);
      assert.equal(wide.plan.panels, 0);
      assert.ok(maxAbsDiff(run(wide, PROMPT, NEXT), run(stored, PROMPT, NEXT)) <= 1e-5);
      stored.reset();
      wide.reset();
      const opts = { maxTokens: 60, temperature: 0 };
      assert.deepEqual(wide.generate(PROMPT, opts), stored.generate(PROMPT, opts));
      // Sampled, with the same seed: the same tokens.
      const sampled = { maxTokens: 40, temperature: 0.9, topK: 20, seed: 7 };
      assert.deepEqual(wide.generate([72, 101], sampled), stored.generate([72, 101], sampled));
    });

    test("the widened file holds exactly the f32 values of the stored tensors", async () => {
      // Widened in JS and loaded: the same model; read the rewritten file back by loading it
      // through forward() at both dtypes of fixtures made with f16 and bf16 weights.
      for (const name of ['wrap_f16', 'wrap_bf16']) {
        const io = readSafetensors(fixture(`${name}.io.safetensors`)).tensors;
        const [b, n] = io.tokens.shape;
        const v = io.full.shape[2];
        const stored = await load(model(name), { capacity: n, fullRows: n });
        const wide = await load(model(name), { capacity: n, fullRows: n, weights: 'f32' });
        assert.ok(wide.plan.weights > stored.plan.weights, name);
        for (let r = 0; r < b; r++) {
          const tokens = Array.from(io.tokens.data.subarray(r * n, (r + 1) * n), Number);
          const full = io.full.data.subarray(r * n * v, (r + 1) * n * v);
          wide.reset();
          const f = wide.forward(tokens);
          assert.ok(maxAbsDiff(f, full) < 1e-4, `${name}: torch's full logits`);
          stored.reset();
          assert.ok(maxAbsDiff(f, stored.forward(tokens)) <= 1e-5, `${name}: as stored`);
          assert.ok(maxAbsDiff(run(wide, tokens.slice(0, 3), tokens.slice(3)),
            run(stored, tokens.slice(0, 3), tokens.slice(3))) <= 1e-5, `${name}: prefill and steps`);
        }
      }
    });

    test("weights 'f32' on a file with nothing to widen loads it as it is", async () => {
      const a = await load(model('wrap_tied'), { capacity: 16 });
      const b = await load(model('wrap_tied'), { capacity: 16, weights: 'f32' });
      assert.deepEqual(b.plan, a.plan);
      assert.deepEqual(Array.from(run(b, [1, 2, 3], [4, 5])), Array.from(run(a, [1, 2, 3], [4, 5])));
    });

    test('panels: the plan counts them, prefill agrees with the unpacked pass, memory does not grow', async () => {
      const plain = await load(DEMO, { capacity: 128, chunk: 32 });
      for (const weights of ['stored', 'f32']) {
        const m = await load(DEMO, { capacity: 128, chunk: 32, weights, panels: true });
        const p = m.plan;
        // q, k, v, out and the feed-forward's two matrices of each of the 4 blocks, f32:
        // 128·(256 + 128 + 128) + 256·128 + 128·768 + 384·128 values a block (and each of the
        // 24 matrices some alignment slack: `picoformer::packing::prefill_panels_len`).
        const values = 4 * 4 * (128 * 512 + 256 * 128 + 128 * 768 + 384 * 128);
        assert.ok(p.panels >= values && p.panels < values + 24 * 64, `${weights}: ${p.panels} vs ${values}`);
        const parts = p.weights + p.kvCache + p.scratch + p.logits + p.fullLogits + p.sampler + p.tokens + p.panels;
        assert.ok(p.arena >= parts && p.arena < parts + 16 * 10, `${p.arena} vs ${parts}`);
        assert.ok(maxAbsDiff(run(m, PROMPT, NEXT), run(plain, PROMPT, NEXT)) <= 1e-5, weights);
        const before = m.memoryBytes;
        m.reset();
        plain.reset();
        const opts = { maxTokens: 60, temperature: 0 };
        assert.deepEqual(m.generate(PROMPT, opts), plain.generate(PROMPT, opts), weights);
        assert.equal(m.memoryBytes, before);
        assert.equal(p.memory, before);
      }
    });

    test('panels on the fixtures: full and step-wise logits equal torch\'s within 1e-4', async () => {
      for (const name of ['wrap_tied', 'wrap_abs', 'wrap_f16', 'wrap_bf16']) {
        const io = readSafetensors(fixture(`${name}.io.safetensors`)).tensors;
        const [b, n] = io.tokens.shape;
        const v = io.full.shape[2];
        const m = await load(model(name), { capacity: n, fullRows: n, panels: true, weights: 'f32', chunk: 4 });
        assert.ok(m.plan.panels > 0, name);
        for (let r = 0; r < b; r++) {
          const tokens = Array.from(io.tokens.data.subarray(r * n, (r + 1) * n), Number);
          m.reset();
          assert.ok(maxAbsDiff(m.forward(tokens), io.full.data.subarray(r * n * v, (r + 1) * n * v)) < 1e-4, `${name}: full`);
          m.reset();
          const out = run(m, tokens.slice(0, 1), tokens.slice(1));
          assert.ok(maxAbsDiff(out, io.stepwise.data.subarray(r * n * v, (r + 1) * n * v)) < 1e-4, `${name}: step-wise`);
        }
      }
    });

    test('panels: a cross-attending decoder and an XTransformer pack them; an encoder ignores the option', async () => {
      const c = await load(model('cross_wrap'), { capacity: 8, maxContext: 5, panels: true });
      assert.ok(c.plan.panels > 0);
      // An XTransformer's decoder packs them too: the same translation.
      const xo = { capacity: 16, chunk: 4 };
      const [xa, xb] = [await load(model('xt_bytes'), xo), await load(model('xt_bytes'), { ...xo, panels: true, weights: 'f32' })];
      assert.ok(xb.plan.panels > 0);
      const source = [72, 101, 108, 108, 111];
      assert.ok(maxAbsDiff(xb.encode(source), xa.encode(source)) <= 1e-5);
      assert.deepEqual(xb.generate([1, 2, 3, 4, 5], { maxTokens: 10 }), xa.generate([1, 2, 3, 4, 5], { maxTokens: 10 }));
      const e = await load(model('enc_wrap'), { capacity: 8, panels: true, weights: 'f32' });
      assert.equal(e.kind, 'encoderWrapper');
      assert.equal(e.plan.panels, 0);
    });

    test('bad values of weights and panels are refused with a PicoformerError (BAD_ARGUMENT)', async () => {
      for (const v of ['f64', 'F32', 'f16', 'bf16', '', 32, null, true, {}]) {
        await assert.rejects(load(DEMO, { weights: v }), isBad(/^weights must be one of 'stored', 'f32'; got /), String(v));
        await assert.rejects(Picoformer.create(DEMO, { weights: v }), isBad(/weights/));
      }
      for (const v of [1, 0, 'true', null, 'yes', []]) {
        await assert.rejects(load(DEMO, { panels: v }), isBad(/^panels must be true or false; got /), String(v));
        await assert.rejects(Picoformer.create(DEMO, { panels: v }), isBad(/panels/));
      }
      // `undefined` is the default, as for every option.
      assert.equal((await load(DEMO, { capacity: 4, weights: undefined, panels: undefined })).plan.weights, DEMO.length);
    });

    test("weights 'f32': a corrupt file is the same LOAD error as stored, and nothing is rewritten", async () => {
      const good = model('wrap_f16');
      const bad = [
        new Uint8Array(100).fill(0xff),
        good.subarray(0, good.length - 10),
        new Uint8Array(0),
      ];
      // A header whose offsets overlap: JSON that reads fine but a file the module refuses.
      const { tensors } = readSafetensors(good);
      const headerLen = Number(new DataView(good.buffer, good.byteOffset).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(good.subarray(8, 8 + headerLen)));
      const first = Object.keys(tensors)[0];
      header[first].data_offsets = [0, header[first].data_offsets[1]];
      const second = Object.keys(tensors)[1];
      header[second].data_offsets = [0, header[second].data_offsets[1] - header[second].data_offsets[0]];
      const text = new TextEncoder().encode(JSON.stringify(header).padEnd(headerLen, ' '));
      if (text.length === headerLen) {
        const overlap = Uint8Array.from(good);
        overlap.set(text, 8);
        bad.push(overlap);
      }
      for (const bytes of bad) {
        let stored;
        try { await load(bytes, { capacity: 8 }); } catch (e) { stored = e; }
        assert.ok(stored instanceof PicoformerError && stored.code === ErrorCode.LOAD, String(stored));
        await assert.rejects(load(bytes, { capacity: 8, weights: 'f32' }), (e) => {
          assert.ok(e instanceof PicoformerError, String(e));
          assert.equal(e.code, stored.code);
          assert.equal(e.message, stored.message);
          return true;
        });
      }
    });
  });
}
