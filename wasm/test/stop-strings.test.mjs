// Issue 27: stop strings. A generation ends once its text contains one of them, stopReason
// 'stopString', the completing token returned: byte-level by default (the demo model), or
// through `tokenText` (an array or a function), on generate, onToken, stream (sync and async)
// and the worker; refused arguments are BAD_ARGUMENT before anything runs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

import { Picoformer, PicoformerError, ErrorCode, MAX_STOP_STRINGS } from '../js/picoformer.mjs';
import { PicoformerWorker } from '../js/client.mjs';
import { BUILDS, FIXTURES, WASM_DIR } from './helpers.mjs';

const DEMO = readFileSync(path.join(FIXTURES, '..', '..', 'models', 'demo.safetensors'));
const PROMPT = Array.from(new TextEncoder().encode('"My dear Emma," said Mr. Knightley, '));
const ascii = (tokens) => String.fromCharCode(...tokens);

/** The tokens of `all` up to the one whose text completes the first occurrence of a stop string. */
function expected(all, text, stops) {
  let seen = '';
  for (let i = 0; i < all.length; i++) {
    seen += text(all[i]);
    if (stops.some((x) => seen.includes(x))) return all.slice(0, i + 1);
  }
  return null;
}

/** `m` with its cache emptied: a generation with a prompt goes on from what is cached. */
const fresh = (m) => { m.reset(); return m; };

const bad = (f, re) => assert.throws(f, (e) => e instanceof PicoformerError
  && e.code === ErrorCode.BAD_ARGUMENT && re.test(e.message));

for (const build of BUILDS) {
  describe(`${build.name} build: stop strings`, () => {
    const load = () => Picoformer.load(build.bytes, DEMO, { capacity: 256 });

    test('byte-level: ends after the token that completes the string, on every path', async () => {
      const m = await load();
      const all = fresh(m).generate(PROMPT, { maxTokens: 120 });
      assert.equal(all.stopReason, 'maxTokens');
      const text = ascii(all);
      // A string from the middle of the text (its first occurrence ends the generation there),
      // and one that never occurs.
      const stop = text.slice(40, 44);
      const stops = ['never \u00e9 here', stop];
      const want = expected(all, (t) => String.fromCharCode(t), stops);
      assert.ok(want && want.length <= 44 && want.length >= 4, `${JSON.stringify(text)} / ${JSON.stringify(stop)}`);
      assert.ok(ascii(want).endsWith(stop));

      const paths = {
        generate: () => fresh(m).generate(PROMPT, { maxTokens: 120, stopStrings: stops }),
        onToken: () => {
          const seen = [];
          const r = fresh(m).generate(PROMPT, { maxTokens: 120, stopStrings: stops, onToken: (t, i) => seen.push([t, i]) });
          assert.deepEqual(seen, r.map((t, i) => [t, i]));
          return r;
        },
        stream: () => {
          const s = fresh(m).stream(PROMPT, { maxTokens: 120, stopStrings: stops });
          const r = [...s];
          assert.equal(s.stopReason, 'stopString');
          return Object.defineProperty(r, 'stopReason', { value: s.stopReason });
        },
      };
      for (const [name, run] of Object.entries(paths)) {
        const got = run();
        assert.deepEqual(Array.from(got), want, name);
        assert.equal(got.stopReason, 'stopString', name);
        assert.equal(m.stopReason, 'stopString', name);
      }
      // `for await`, and a single string instead of an array.
      const s = fresh(m).stream(PROMPT, { maxTokens: 120, stopStrings: stop });
      const got = [];
      for await (const t of s) got.push(t);
      assert.deepEqual(got, expected(all, (t) => String.fromCharCode(t), [stop]));
      assert.equal(s.stopReason, 'stopString');
      // The generation can go on from there, like after a stop token.
      const more = m.generate([], { maxTokens: 3 });
      assert.deepEqual([more.length, more.stopReason], [3, 'maxTokens']);
    });

    test('a string that never occurs changes nothing; a stop token may come first', async () => {
      const m = await load();
      const all = fresh(m).generate(PROMPT, { maxTokens: 60 });
      const same = fresh(m).generate(PROMPT, { maxTokens: 60, stopStrings: ['\u0000\u0001 nowhere'] });
      assert.deepEqual(Array.from(same), Array.from(all));
      assert.equal(same.stopReason, 'maxTokens');
      // A stop token and a stop string: whichever comes first ends it.
      const late = ascii(all.slice(20, 30));
      const byToken = all.findIndex((t) => t === all[10]) + 1;
      const byString = expected(all, (t) => String.fromCharCode(t), [late]).length;
      const r = fresh(m).generate(PROMPT, { maxTokens: 60, stopTokens: [all[10]], stopStrings: [late] });
      assert.deepEqual([r.length, r.stopReason],
        byToken <= byString ? [byToken, 'stopToken'] : [byString, 'stopString']);
    });

    test('tokenText: an array or a function gives each token its text', async () => {
      const m = await load();
      const all = fresh(m).generate(PROMPT, { maxTokens: 80 });
      // Pieces of several characters: a stop string can span two tokens' texts.
      const piece = (t) => `<${t}>`;
      const table = Array.from({ length: 256 }, (_, t) => piece(t));
      const stop = `${all[30]}><${all[31]}`;
      const want = expected(all, piece, [stop]);
      assert.ok(want.length <= 32);
      for (const tokenText of [table, piece]) {
        const r = fresh(m).generate(PROMPT, { maxTokens: 80, stopStrings: [stop], tokenText });
        assert.deepEqual(Array.from(r), want);
        assert.equal(r.stopReason, 'stopString');
      }
      // A string inside one token's text ends it at that token.
      const inner = fresh(m).generate(PROMPT, { maxTokens: 80, stopStrings: [`${all[12]}>`], tokenText: piece });
      assert.deepEqual(Array.from(inner), expected(all, piece, [`${all[12]}>`]));
      // Entries missing from a short table are empty text.
      const none = fresh(m).generate(PROMPT, { maxTokens: 20, stopStrings: ['x'], tokenText: [] });
      assert.deepEqual([none.length, none.stopReason], [20, 'maxTokens']);
    });

    test('refused arguments: BAD_ARGUMENT, nothing runs', async () => {
      const m = await load();
      m.prefill([1, 2, 3]);
      bad(() => m.generate(PROMPT, { stopStrings: [''] }), /non-empty/);
      bad(() => m.generate(PROMPT, { stopStrings: [7] }), /stop string/);
      bad(() => m.generate(PROMPT, { stopStrings: 7 }), /stopStrings/);
      bad(() => m.stream(PROMPT, { stopStrings: new Array(MAX_STOP_STRINGS + 1).fill('a') }), /at most 16/);
      bad(() => m.generate(PROMPT, { stopStrings: ['a'], tokenText: 'abc' }), /tokenText/);
      bad(() => m.generate(PROMPT, { stopStrings: ['a'], tokenText: ['a', 3] }), /tokenText\[1\]/);
      assert.equal(m.length, 3, 'a refused call changes nothing');
      // A tokenText function that gives no string: refused when it is called.
      const s = m.stream(PROMPT, { maxTokens: 5, stopStrings: ['a'], tokenText: () => 1 });
      bad(() => [...s], /must give a string/);
    });
  });
}

describe('stop strings in a worker', () => {
  test('the worker ends the generation with stopReason stopString', async () => {
    const worker = new Worker(path.join(WASM_DIR, 'js', 'worker.mjs'));
    try {
      const m = await PicoformerWorker.create(worker, DEMO, { capacity: 128 });
      const all = await fresh(m).generate(PROMPT, { maxTokens: 60 });
      const stop = ascii(all.slice(25, 28));
      const want = expected(Array.from(all), (t) => String.fromCharCode(t), [stop]);
      const r = await fresh(m).generate(PROMPT, { maxTokens: 60, stopStrings: [stop] });
      assert.deepEqual(Array.from(r), want);
      assert.equal(r.stopReason, 'stopString');
      const s = fresh(m).stream(PROMPT, { maxTokens: 60, stopStrings: stop, tokenText: Array.from({ length: 256 }, (_, t) => String.fromCharCode(t)) });
      const got = [];
      for await (const t of s) got.push(t);
      assert.deepEqual(got, want);
      assert.equal(s.stopReason, 'stopString');
      assert.throws(() => fresh(m).stream(PROMPT, { stopStrings: ['a'], tokenText: String }),
        (e) => e instanceof PicoformerError && e.code === ErrorCode.BAD_ARGUMENT);
    } finally {
      await worker.terminate();
    }
  });
});
