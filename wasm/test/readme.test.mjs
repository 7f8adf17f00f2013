// Issue 27: the README's JS example runs as written. Its ```js block is taken from README.md and
// run by Node as an ES module from the repository's root (its relative imports and file paths
// are written from there), on the bundled demo model; it must exit 0 after printing the plan and
// the generated text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { WASM_DIR } from './helpers.mjs';

const ROOT = path.resolve(WASM_DIR, '..');

test("README.md's JS example runs as written", () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  assert.equal(blocks.length, 1, 'README.md has one ```js block');
  const [code] = blocks;
  assert.match(code, /Picoformer\.load\(/);
  const out = execFileSync(process.execPath, ['--input-type=module', '--eval', code], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  // console.log(m.plan), then onToken wrote each of the 50 tokens (bytes) to stdout.
  assert.match(out, /kvCache: \d+/);
  const text = out.slice(out.lastIndexOf('}') + 1).replace(/^\n/, '');
  assert.equal(text.length, 50, `the generated text: ${JSON.stringify(text)}`);
});
