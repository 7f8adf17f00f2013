// Compiled by `tsc --noEmit -p test/tsconfig.json` (CI): the declarations in js/picoformer.d.ts
// describe the API as the README shows it. Not run.
import {
  ErrorCode, MAX_STOP_STRINGS, MAX_STOP_TOKENS, Picoformer, PicoformerError, readSafetensors, simdSupported, wasmUrl,
} from '../js/picoformer.mjs';
import type { GenerateResult, ModelKind, StopReason, TokenStream } from '../js/picoformer.mjs';

export async function example(model: Uint8Array, wasm: ArrayBuffer): Promise<string[]> {
  const m = await Picoformer.create(model, { capacity: 64, kv: 'f16', build: 'auto' });
  const n: Picoformer = await Picoformer.load(wasm, model, { capacity: 8, chunk: 4, fullRows: 2 });
  const logits: Float32Array = m.prefill([1, 2, 3]);
  const next: number = m.sample({ temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 });
  m.step(next);
  const out: GenerateResult = m.generate([1], {
    maxTokens: 10, seed: 1n, repetitionPenalty: 1.2, repetitionWindow: 16, slide: 32,
    stopTokens: [0], onToken: (t: number, i: number) => void [t, i],
  });
  const why: StopReason = out.stopReason;
  const text: GenerateResult = m.generate([1], { stopStrings: ['\n\n', '.'], tokenText: (t: number) => String(t) });
  m.generate([1], { stopStrings: 'Emma', tokenText: ['a', 'b'] });
  const ended: boolean = text.stopReason === 'stopString';
  // @ts-expect-error: stop strings are strings
  m.generate([1], { stopStrings: [1] });
  const ac = new AbortController();
  const s: TokenStream = m.stream(new Uint32Array([4, 5]), { signal: ac.signal, maxTokens: 100 });
  const pieces: string[] = [why, String(logits.length), String(n.plan.kvCache), String(ended)];
  for await (const t of s) pieces.push(String(t));
  for (const t of m.stream([], { maxTokens: 2 })) pieces.push(String(t));
  const reason: StopReason | undefined = s.stopReason;
  try {
    m.truncate(2 ** 32);
  } catch (e) {
    if (e instanceof PicoformerError && e.code === ErrorCode.BAD_ARGUMENT) pieces.push(e.codeName);
  }
  const url: URL = wasmUrl(simdSupported() ? 'simd128' : 'plain');
  const st = readSafetensors(model);
  pieces.push(String(reason), url.href, String(MAX_STOP_TOKENS + MAX_STOP_STRINGS), String(Object.keys(st.tensors).length));
  // @ts-expect-error: an unknown kv type
  await Picoformer.create(model, { kv: 'f64' });
  const fast = await Picoformer.create(model, { weights: 'f32', panels: true, chunk: 128 });
  pieces.push(String(fast.plan.panels + fast.plan.weights));
  // @ts-expect-error: weights are 'stored' or 'f32'
  await Picoformer.create(model, { weights: 'f16' });
  // @ts-expect-error: panels is a boolean
  await Picoformer.create(model, { panels: 1 });
  // @ts-expect-error: stream takes no onToken
  m.stream([1], { onToken: () => {} });
  return pieces;
}

export async function family(encoder: Uint8Array, xt: Uint8Array, frames: Float32Array): Promise<number> {
  const e = await Picoformer.create(encoder, { capacity: 64 });
  const kind: ModelKind = e.kind;
  const scores: Float32Array = e.encode([1, 2, 3], { mask: [true, true, false] });
  const emb: Float32Array = e.encode(new Uint32Array([1, 2]), { mask: [1, 1], output: 'embeddings' });
  const pooled: boolean = e.plan.pooled;
  const out: Float32Array = e.forward(frames);
  e.setContext(frames, [1, 0]);
  const x = await Picoformer.create(xt, { capacity: 64, maxContext: 32 });
  const memory: Float32Array = x.encode([5, 6, 7], { mask: [1, 1, 0] });
  const translation: GenerateResult = x.generate([1], { maxTokens: 20, stopTokens: [2] });
  // @ts-expect-error: no such output
  e.encode([1], { output: 'hidden' });
  // @ts-expect-error: masks are booleans or numbers
  e.encode([1], { mask: ['yes'] });
  return scores.length + emb.length + out.length + memory.length + translation.length + kind.length + Number(pooled)
    + x.plan.encoderKvCache + x.plan.sourceTokens;
}

import { PicoformerWorker } from '../js/client.mjs';

export async function inWorker(model: Uint8Array): Promise<number> {
  const worker = new Worker(new URL('../js/worker.mjs', import.meta.url), { type: 'module' });
  const m = await PicoformerWorker.create(worker, model, { capacity: 64 });
  const r: GenerateResult = await m.generate([1], { maxTokens: 3, onToken: (t: number) => void t });
  const logits: Float32Array = await m.prefill([1, 2]);
  let n = r.length + logits.length;
  for await (const t of m.stream([], { signal: AbortSignal.timeout(10) })) n += t;
  // @ts-expect-error: no such method
  await m.call('generateAll');
  return n;
}
