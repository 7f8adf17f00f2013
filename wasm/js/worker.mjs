// The worker side of PicoformerWorker (js/client.mjs): runs a Picoformer inside a Web Worker
// (or a Node worker thread) so that a page never blocks while a model loads or generates.
// Start it as a module worker:
//   new Worker(new URL('picoformer-wasm/worker', import.meta.url), { type: 'module' })
// and drive it with PicoformerWorker from 'picoformer-wasm/client'. Messages (all with an `id`):
//   { op: 'create', model, options }            -> { id, result: { plan } }
//   { op: 'call', method, args }                 -> { id, result }   (reset, prefill, step, ...)
//   { op: 'generate', prompt, options }          -> { id, token } ... then { id, result: { stopReason, length } }
//   { op: 'abort', target }                      ends generation `target` ('aborted')
// A refused call answers { id, error: { code, message } }.
import { Picoformer, PicoformerError, ErrorCode } from './picoformer.mjs';

const METHODS = new Set(['reset', 'truncate', 'prefill', 'step', 'forward', 'sample', 'seed', 'setContext',
  'fullVsStepwise', 'encode']);
const GETTERS = ['length', 'capacity', 'numTokens', 'stopReason', 'reencodes', 'memoryBytes'];

/** Serves one model over `post` (a postMessage); returns the message handler. */
export function serve(post) {
  let model = null;
  const running = new Map();
  const fail = (id, e) => post({
    id,
    error: e instanceof PicoformerError ? { code: e.code, message: e.message }
      : { code: ErrorCode.OTHER, message: String(e?.message ?? e) },
  });
  const state = () => Object.fromEntries(GETTERS.map((k) => [k, model[k]]));

  return async function onMessage(msg) {
    const { id, op } = msg ?? {};
    try {
      if (op === 'create') {
        model = await Picoformer.create(msg.model, msg.options);
        post({ id, result: { plan: model.plan, state: state() } });
      } else if (op === 'abort') {
        running.get(msg.target)?.abort();
      } else if (model === null) {
        throw new PicoformerError(ErrorCode.NOT_LOADED, 'no model loaded: create first');
      } else if (op === 'call') {
        if (!METHODS.has(msg.method)) throw new PicoformerError(ErrorCode.BAD_ARGUMENT, `no method ${msg.method}`);
        let result = model[msg.method](...(msg.args ?? []));
        if (result instanceof Float32Array) result = result.slice(); // a view: copy before it moves
        post({ id, result, state: state() });
      } else if (op === 'generate') {
        const ac = new AbortController();
        running.set(id, ac);
        try {
          // for await yields before each token: an 'abort' message is handled in between.
          const s = model.stream(msg.prompt, { ...msg.options, signal: ac.signal });
          for await (const token of s) post({ id, token });
          post({ id, result: { stopReason: s.stopReason }, state: state() });
        } finally {
          running.delete(id);
        }
      } else {
        throw new PicoformerError(ErrorCode.BAD_ARGUMENT, `unknown operation ${op}`);
      }
    } catch (e) {
      fail(id, e);
    }
  };
}

// Start serving when loaded as a worker: a browser's dedicated worker, or a Node worker thread.
if (typeof WorkerGlobalScope !== 'undefined' && typeof self !== 'undefined' && self instanceof WorkerGlobalScope) {
  const handle = serve((m) => self.postMessage(m));
  self.onmessage = (e) => handle(e.data);
} else if (typeof process !== 'undefined' && process.versions?.node) {
  const { parentPort, isMainThread } = await import('node:worker_threads');
  if (!isMainThread && parentPort) {
    const handle = serve((m) => parentPort.postMessage(m));
    parentPort.on('message', handle);
  }
}
