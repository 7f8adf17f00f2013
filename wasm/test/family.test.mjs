// Issue 25 (WASM/JS): every kind of model file of the family, in both builds. Encoders (token
// and frame inputs, padding and context masks, a pooled output), bare and continuous decoders
// (full and streaming), and XTransformers (the encoded source, full and step-wise decoder logits,
// greedy generation equal to x-transformers' `generate` token for token) against torch's numbers
// within 1e-5, as the library's own tests; every call a kind does not take, and every bad
// argument of the new calls, refused with the state unchanged.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { Picoformer, PicoformerError, ErrorCode, readSafetensors } from '../js/picoformer.mjs';
import { BUILDS, fixture, model, maxAbsDiff } from './helpers.mjs';

const TOLERANCE = 1e-5;
const BAD = ErrorCode.BAD_ARGUMENT;

const io = (name) => readSafetensors(fixture(`${name}.io.safetensors`)).tensors;
/** Row `b` of a batched tensor's data, as the typed array (or an array of numbers for ids). */
function row(t, b) {
  const per = t.data.length / t.shape[0];
  const r = t.data.subarray(b * per, (b + 1) * per);
  if (t.dtype === 'I64') return Array.from(r, Number);
  if (t.dtype === 'BOOL') return Array.from(r, (v) => v !== 0);
  return r;
}

function isError(code, re) {
  return (e) => {
    assert.ok(e instanceof PicoformerError, `not a PicoformerError: ${e}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

const KINDS = {
  wrap_tied: 'decoderWrapper',
  enc_wrap: 'encoderWrapper',
  seed: 'decoder',
  enc_bare: 'encoder',
  cont_dec: 'continuousDecoder',
  cont_enc: 'continuousEncoder',
  cont_enc_pool: 'continuousEncoder',
  xt_pad: 'xtransformer',
};

for (const build of BUILDS) {
  const load = (name, opts) => Picoformer.load(build.bytes, model(name), opts);

  describe(`${build.name} build: the model family`, () => {
    test('each file loads as its kind', async () => {
      for (const [name, kind] of Object.entries(KINDS)) {
        const m = await load(name, { capacity: 16, maxContext: 8 });
        assert.equal(m.kind, kind, name);
        assert.equal(m.plan.kind, kind, name);
      }
      const p = (await load('cont_enc_pool', { capacity: 49 })).plan;
      assert.deepEqual([p.inputWidth, p.outputWidth, p.pooled], [10, 12, true]);
      const e = (await load('enc_wrap', { capacity: 8 })).plan;
      assert.deepEqual([e.inputWidth, e.outputWidth, e.numTokens, e.pooled], [1, 40, 40, false]);
    });

    for (const name of ['enc_wrap', 'enc_bare', 'enc_bare_mask', 'enc_cross', 'cont_enc', 'cont_enc_pool']) {
      test(`${name}: encode equals torch's within 1e-5`, async () => {
        const t = io(name);
        const input = t.tokens ?? t.x;
        const [b, n] = input.shape;
        const rows = t.context?.shape[1] ?? 0;
        const m = await load(name, { capacity: n, maxContext: rows });
        let worst = 0;
        // Twice: each window starts from an empty cache.
        for (const _ of [0, 1]) {
          for (let r = 0; r < b; r++) {
            if (t.context) m.setContext(row(t.context, r), t.context_mask ? row(t.context_mask, r) : undefined);
            const mask = t.mask ? row(t.mask, r) : undefined;
            const out = m.encode(row(input, r), mask ? { mask } : undefined);
            worst = Math.max(worst, maxAbsDiff(out, row(t.full, r)));
          }
        }
        assert.ok(worst <= TOLERANCE, `${worst}`);
      });
    }

    test('enc_wrap: embeddings, a shorter window, and 0/1 or boolean masks alike', async () => {
      const t = io('enc_wrap');
      const m = await load('enc_wrap', { capacity: 8 });
      const tokens = row(t.tokens, 1);
      const mask = row(t.mask, 1);
      const logits = m.encode(tokens, { mask });
      const emb = m.encode(tokens, { mask, output: 'embeddings' });
      assert.equal(emb.length, 8 * m.plan.dim);
      assert.equal(maxAbsDiff(m.encode(tokens, { mask: mask.map(Number) }), logits), 0);
      assert.equal(maxAbsDiff(m.encode(Uint32Array.from(tokens), { mask, output: 'logits' }), logits), 0);
      // Three tokens: a window of its own (not the first three rows of a longer one).
      const short = m.encode(tokens.slice(0, 3));
      assert.equal(short.length, 3 * 40);
      assert.equal(m.length, 3);
    });

    for (const name of ['cont_dec', 'cont_dec_ctx', 'seed']) {
      test(`${name}: forward (all frames, then one at a time) equals torch's within 1e-5`, async () => {
        const t = io(name);
        const [b, n, wi] = t.x.shape;
        const rows = t.context?.shape[1] ?? 0;
        const m = await load(name, { capacity: n, maxContext: rows, chunk: 3 });
        const wo = m.plan.outputWidth;
        let [full, step] = [0, 0];
        for (let r = 0; r < b; r++) {
          if (t.context) m.setContext(row(t.context, r), t.context_mask ? row(t.context_mask, r) : undefined);
          else m.reset();
          const x = row(t.x, r);
          full = Math.max(full, maxAbsDiff(m.forward(x), row(t.full, r)));
          assert.equal(m.length, n);
          m.reset();
          const out = new Float32Array(n * wo);
          for (let i = 0; i < n; i++) out.set(m.forward(x.subarray(i * wi, (i + 1) * wi)), i * wo);
          step = Math.max(step, maxAbsDiff(out, row(t.stepwise, r)));
          // truncate rewinds: the last frame again gives its output again.
          m.truncate(n - 1);
          assert.ok(maxAbsDiff(m.forward(x.subarray((n - 1) * wi)), out.subarray((n - 1) * wo)) <= 1e-6);
        }
        assert.ok(full <= TOLERANCE && step <= TOLERANCE, `${full} ${step}`);
      });
    }

    for (const name of ['xt_pad', 'xt_tie', 'xt_bytes']) {
      test(`${name}: the encoded source, full and step-wise decoder logits equal torch's within 1e-5`, async () => {
        const t = io(name);
        const [b, n] = t.src.shape;
        const mTgt = t.tgt.shape[1];
        const v = t.full.shape[2];
        const m = await load(name, { capacity: mTgt, fullRows: mTgt, maxContext: n, chunk: 2 });
        assert.equal(m.plan.maxContext, n);
        let [enc, full, step] = [0, 0, 0];
        for (let r = 0; r < b; r++) {
          const mask = row(t.src_mask, r);
          enc = Math.max(enc, maxAbsDiff(m.encode(row(t.src, r), { mask }), row(t.enc, r)));
          assert.equal(m.length, 0);
          const tgt = row(t.tgt, r);
          full = Math.max(full, maxAbsDiff(m.forward(tgt), row(t.full, r)));
          // reset keeps the encoded source (and its mask): the next call projects it again.
          m.reset();
          const out = new Float32Array(mTgt * v);
          tgt.forEach((tok, i) => out.set(i === 0 ? m.prefill([tok]) : m.step(tok), i * v));
          step = Math.max(step, maxAbsDiff(out, row(t.stepwise, r)));
        }
        assert.ok(enc <= TOLERANCE && full <= TOLERANCE && step <= TOLERANCE, `${enc} ${full} ${step}`);
      });
    }

    test('xt_bytes: greedy generation equals x-transformers\' generate token for token, on every path', async () => {
      const t = io('xt_bytes');
      const [b, g] = t.gen.shape;
      // The default maxContext of an XTransformer is its encoder's max_seq_len (32).
      const m = await load('xt_bytes', { capacity: 1 + g });
      assert.equal(m.plan.maxContext, 32);
      for (let r = 0; r < b; r++) {
        const want = row(t.gen, r);
        const start = row(t.gen_start, r);
        m.encode(row(t.src, r), { mask: row(t.src_mask, r) });
        const out = m.generate(start, { maxTokens: g });
        assert.deepEqual(out, want, `row ${r}`);
        assert.equal(out.stopReason, 'maxTokens');
        m.reset();
        const seen = [];
        assert.deepEqual(m.generate(start, { maxTokens: g, onToken: (tok) => seen.push(tok) }), want);
        assert.deepEqual(seen, want);
        m.reset();
        const streamed = [];
        for await (const tok of m.stream(start, { maxTokens: g })) streamed.push(tok);
        assert.deepEqual(streamed, want);
        // Without the mask the source's padding is attended: another translation.
        m.encode(row(t.src, r));
        const unmasked = m.generate(start, { maxTokens: g });
        if (row(t.src_mask, r).includes(false)) assert.notDeepEqual(unmasked, want);
      }
    });

    test('xt_bytes: sampling, stop tokens, a sliding window and continuing, over the encoded source', async () => {
      const t = io('xt_bytes');
      const m = await load('xt_bytes', { capacity: 6 });
      const src = row(t.src, 0);
      const mask = row(t.src_mask, 0);
      const start = row(t.gen_start, 0);
      m.encode(src, { mask });
      const opts = { maxTokens: 20, temperature: 0.9, topK: 50, topP: 0.95, seed: 3, repetitionPenalty: 1.3, slide: 3 };
      const a = m.generate(start, opts);
      assert.equal(a.length, 20);
      assert.ok(m.reencodes > 0);
      m.reset();
      assert.deepEqual(m.generate(start, opts), a, 'seeded: the same again');
      m.reset();
      const streamed = [];
      for (const tok of m.stream(start, opts)) streamed.push(tok);
      assert.deepEqual(streamed, a);
      // The sliding window keeps the source: re-encoding it changes nothing.
      m.encode(src, { mask });
      assert.deepEqual(m.generate(start, opts), a);
      // A stop token ends it; an empty prompt continues it.
      m.encode(src, { mask });
      const stop = m.generate(start, { ...opts, stopTokens: [a[4]] });
      assert.equal(stop.stopReason, 'stopToken');
      assert.deepEqual(stop, a.slice(0, a.indexOf(a[4]) + 1));
      m.encode(src, { mask });
      const first = m.generate(start, { maxTokens: 2 });
      const more = m.generate([], { maxTokens: 3 });
      m.encode(src, { mask });
      assert.deepEqual([...first, ...more], m.generate(start, { maxTokens: 5 }));
      // The cache fills without a window.
      m.encode(src, { mask });
      assert.equal(m.generate(start, { maxTokens: 50 }).stopReason, 'cacheFull');
    });

    test('memory: the plan adds up and nothing grows while encoding or generating', async () => {
      const e = await load('enc_wrap', { capacity: 8 });
      const p = e.plan;
      assert.equal(p.kvCache, 2 * 2 * 32 * 8 * 4);
      assert.equal(p.outputs, 8 * 40 * 4);
      assert.equal(p.inputs, 8 * 4);
      const parts = p.weights + p.kvCache + p.scratch + p.outputs + p.inputs + p.masks;
      assert.ok(p.arena >= parts && p.arena < parts + 16 * 11, `${p.arena} vs ${parts}`);
      const before = e.memoryBytes;
      for (let i = 0; i < 20; i++) e.encode([1, 2, 3, 4, 5, 6, 7, i]);
      assert.equal(e.memoryBytes, before);
      const x = await load('xt_bytes', { capacity: 8, maxContext: 6, kv: 'f16' });
      const q = x.plan;
      // The decoder's cache and the source's keys and values (f16), the encoder's cache for
      // the longest source (f32 whatever `kv` says: an encoder's cache is one window's scratch),
      // its scratch for that window.
      assert.equal(q.contextCache, 2 * 2 * 16 * 6 * 2);
      assert.equal(q.encoderKvCache, 2 * 1 * 16 * 6 * 4);
      assert.equal(q.sourceTokens, 256);
      const all = q.weights + q.kvCache + q.contextCache + q.context + q.scratch + q.logits + q.sampler
        + q.tokens + q.masks + q.encoderKvCache + q.encoderScratch;
      assert.ok(q.arena >= all && q.arena < all + 16 * 16, `${q.arena} vs ${all}`);
      const at = x.memoryBytes;
      const t = io('xt_bytes');
      for (let r = 0; r < 2; r++) {
        x.encode(row(t.src, r), { mask: row(t.src_mask, r) });
        x.generate([1], { maxTokens: 50, temperature: 1, seed: r, slide: 4 });
      }
      assert.equal(x.memoryBytes, at);
    });

    describe('calls a kind does not take, and bad arguments: refused, nothing changed', () => {
      // Each model's observable state: length, logits, and what the next calls produce.
      const t = io('xt_bytes');
      const src = row(t.src, 0);
      const srcMask = row(t.src_mask, 0);
      const attempt = (f) => { try { return Array.from(f()); } catch (e) { return e.codeName ?? String(e); } };
      const observers = {
        encoderWrapper: (m) => ({ length: m.length, out: attempt(() => m.encode([1, 2, 3], { mask: [1, 1, 0] })) }),
        encoder: (m) => ({ length: m.length, out: attempt(() => m.encode(new Float32Array(64).fill(0.5))) }),
        continuousEncoder: (m) => ({ length: m.length, out: attempt(() => m.encode(new Float32Array(30).fill(0.25))) }),
        continuousDecoder: (m) => ({ length: m.length, out: attempt(() => m.forward(new Float32Array(10).fill(0.5))), more: m.length }),
        xtransformer: (m) => ({
          length: m.length,
          logits: Array.from(m.logits),
          stopReason: m.stopReason,
          more: attempt(() => m.generate([], { maxTokens: 3, temperature: 1 })),
          again: attempt(() => m.generate([5], { maxTokens: 3, temperature: 1 })),
        }),
      };
      const setups = {
        encoderWrapper: ['enc_wrap', { capacity: 8 }, (m) => m.encode([4, 5, 6])],
        encoder: ['enc_bare', { capacity: 8 }, (m) => m.encode(new Float32Array(96).fill(0.1))],
        continuousEncoder: ['cont_enc_pool', { capacity: 8 }, (m) => m.encode(new Float32Array(40).fill(0.2))],
        continuousDecoder: ['cont_dec', { capacity: 8 }, (m) => m.forward(new Float32Array(30).fill(0.3))],
        xtransformer: ['xt_bytes', { capacity: 12, maxContext: 6, fullRows: 4 }, (m) => {
          m.encode(src, { mask: srcMask });
          m.generate([1], { maxTokens: 3, temperature: 1, seed: 5, repetitionPenalty: 1.3 });
        }],
      };
      async function unchanged(kind, call, check) {
        const [name, opts, prepare] = setups[kind];
        const a = await load(name, opts);
        const b = await load(name, opts);
        prepare(a);
        prepare(b);
        assert.throws(() => call(a), check);
        assert.deepEqual(observers[kind](a), observers[kind](b));
      }

      test('calls that do not fit the kind', async () => {
        const kindError = (re) => isError(BAD, re);
        for (const kind of ['encoderWrapper', 'encoder', 'continuousEncoder', 'continuousDecoder']) {
          await unchanged(kind, (m) => m.prefill([1]), kindError(/prefill does not fit this model: it is an? \w+/));
          await unchanged(kind, (m) => m.step(1), kindError(/step does not fit/));
          await unchanged(kind, (m) => m.generate([1]), kindError(/generate does not fit/));
          await unchanged(kind, (m) => m.stream([1]), kindError(/stream does not fit/));
          await unchanged(kind, (m) => m.sample(), kindError(/sample does not fit/));
          await unchanged(kind, (m) => m.seed(1), kindError(/seed does not fit/));
          await unchanged(kind, (m) => m.fullVsStepwise([1]), kindError(/fullVsStepwise does not fit/));
          await unchanged(kind, (m) => m.setContext(new Float32Array(32)), kindError(/no cross-attention/));
        }
        for (const kind of ['encoderWrapper', 'encoder', 'continuousEncoder']) {
          await unchanged(kind, (m) => m.forward([1]), kindError(/forward does not fit/));
        }
        await unchanged('continuousDecoder', (m) => m.encode(new Float32Array(10)), kindError(/encode does not fit.*continuousDecoder/));
        await unchanged('continuousEncoder', (m) => m.encode(new Float32Array(10), { output: 'embeddings' }), kindError(/encoderWrapper/));
        await unchanged('xtransformer', (m) => m.encode(src, { output: 'embeddings' }), kindError(/encoderWrapper/));
        const d = await load('wrap_tied', { capacity: 8 });
        d.generate([1], { maxTokens: 2 });
        assert.throws(() => d.encode([1, 2]), kindError(/encode does not fit this model: it is a decoderWrapper/));
        assert.equal(d.length, 2);
        // An XTransformer generates only over a source.
        const x = await load('xt_bytes', { capacity: 8 });
        for (const f of [(m) => m.generate([1]), (m) => m.prefill([1]), (m) => m.stream([1]), (m) => m.forward([1])]) {
          assert.throws(() => f(x), kindError(/encode a source first/));
        }
        assert.equal(x.length, 0);
      });

      test('encode: bad inputs, masks and options', async () => {
        const TOKEN = ErrorCode.TOKEN_OUT_OF_RANGE;
        const FULL = ErrorCode.CACHE_FULL;
        const cases = {
          encoderWrapper: [
            [(m) => m.encode([1, 40]), isError(TOKEN, /40/)],
            [(m) => m.encode([1, -1]), isError(TOKEN)],
            [(m) => m.encode([1, 1.5]), isError(TOKEN)],
            [(m) => m.encode('abc'), isError(BAD, /tokens/)],
            [(m) => m.encode([]), isError(BAD, /empty/i)],
            [(m) => m.encode(new Array(9).fill(1)), isError(FULL, /capacity/)],
            [(m) => m.encode([1, 2], { mask: [1] }), isError(BAD, /entries/)],
            [(m) => m.encode([1, 2], { mask: [1, 2] }), isError(BAD, /0\/1/)],
            [(m) => m.encode([1, 2], { mask: [1, 'x'] }), isError(BAD, /0\/1/)],
            [(m) => m.encode([1, 2], { mask: 'ab' }), isError(BAD, /mask/)],
            [(m) => m.encode([1, 2], { output: 'hidden' }), isError(BAD, /output/)],
            [(m) => m.encode([1, 2], { masks: [1, 1] }), isError(BAD, /unknown option 'masks'/)],
            [(m) => m.encode([1, 2], 5), isError(BAD, /object/)],
          ],
          encoder: [
            [(m) => m.encode(new Float32Array(33)), isError(BAD, /whole rows of 32/)],
            [(m) => m.encode(new Float32Array(0)), isError(BAD, /whole rows/)],
            [(m) => m.encode(new Float32Array(9 * 32)), isError(FULL, /capacity/)],
            [(m) => m.encode(new Array(32).fill(NaN)), isError(BAD, /finite/)],
            [(m) => m.encode(new Array(32).fill(1e300)), isError(BAD, /f32/)],
            [(m) => m.encode(new Array(32).fill('1')), isError(BAD, /finite/)],
            [(m) => m.encode([1, 2, 3]), isError(BAD, /whole rows/)],
            [(m) => m.encode(new Float32Array(64), { mask: [true] }), isError(BAD, /entries/)],
          ],
          continuousEncoder: [
            [(m) => m.encode(new Float32Array(11)), isError(BAD, /whole rows of 10/)],
            [(m) => m.encode(new Float32Array(90)), isError(FULL)],
            [(m) => m.encode(new Float32Array(20), { mask: [1, 1, 1] }), isError(BAD, /entries/)],
            [(m) => m.encode(new DataView(new ArrayBuffer(40))), isError(BAD, /array/)],
          ],
          continuousDecoder: [
            [(m) => m.forward(new Float32Array(11)), isError(BAD, /whole rows of 10/)],
            [(m) => m.forward(new Float32Array(60)), isError(FULL)], // 3 cached + 6 > 8
            [(m) => m.forward([Infinity, 0, 0, 0, 0, 0, 0, 0, 0, 0]), isError(BAD, /finite/)],
            [(m) => m.truncate(4), isError(BAD, /truncate|beyond/)],
          ],
          xtransformer: [
            [(m) => m.encode([1, 256]), isError(TOKEN, /256/)],
            [(m) => m.encode(new Array(7).fill(1)), isError(BAD, /maxContext/)],
            [(m) => m.encode([]), isError(BAD, /empty/i)],
            [(m) => m.encode(src, { mask: srcMask.slice(1) }), isError(BAD, /entries/)],
            [(m) => m.encode(src, { mask: srcMask.map(() => null) }), isError(BAD, /0\/1/)],
            [(m) => m.setContext(new Float32Array(7 * 16)), isError(BAD, /maxContext/)],
            [(m) => m.setContext(new Float32Array(2 * 16), [1]), isError(BAD, /entries/)],
            [(m) => m.generate([256]), isError(TOKEN)],
          ],
        };
        for (const [kind, list] of Object.entries(cases)) {
          for (const [call, check] of list) await unchanged(kind, call, check);
        }
      });
    });

    test('an XTransformer\'s source with absolute positions is refused past the table', async () => {
      // xt_pad: enc_max_seq_len 16; room for 20 source tokens, but no position past 16.
      const m = await load('xt_pad', { capacity: 8, maxContext: 20 });
      assert.throws(() => m.encode(new Array(17).fill(1)), isError(ErrorCode.POSITION_OUT_OF_RANGE, /16/));
      assert.equal(m.encode(new Array(16).fill(1)).length, 16 * 32);
    });
  });
}
