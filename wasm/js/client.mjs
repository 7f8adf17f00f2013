// PicoformerWorker: a Picoformer that runs in a Web Worker (or a Node worker thread) started
// from js/worker.mjs, so that a page never blocks while a model loads or generates. Every
// method is async; calls run one after another in the order they were made.
//
//   const worker = new Worker(new URL('picoformer-wasm/worker', import.meta.url), { type: 'module' });
//   const m = await PicoformerWorker.create(worker, modelBytes, { capacity: 256 });
//   for await (const t of m.stream(prompt, { maxTokens: 200, signal })) { ... }
//   const out = await m.generate(prompt, { maxTokens: 20, onToken: (t) => ... });   // out.stopReason
import { PicoformerError, ErrorCode } from './picoformer.mjs';

/** A function cannot be posted to the worker: `tokenText` goes there as an array of strings. */
function posted(options) {
  if (typeof options?.tokenText === 'function') {
    throw new PicoformerError(ErrorCode.BAD_ARGUMENT,
      'picoformer: in a worker, tokenText is an array of strings (a function cannot be posted to it)');
  }
  return options;
}

function result(tokens, stopReason) {
  Object.defineProperty(tokens, 'stopReason', { value: stopReason, enumerable: false });
  return tokens;
}

export class PicoformerWorker {
  #worker;
  #nextId = 1;
  #pending = new Map();
  #queue = Promise.resolve();
  #state = {};
  #plan;

  constructor(worker) {
    this.#worker = worker;
    const receive = (m) => this.#receive(m);
    if (typeof worker.addEventListener === 'function') worker.addEventListener('message', (e) => receive(e.data));
    else worker.on('message', receive);
  }

  /**
   * Loads `model` (bytes) in `worker` (started from js/worker.mjs) with the options of
   * `Picoformer.create` (the worker picks its build).
   */
  static async create(worker, model, options) {
    const w = new PicoformerWorker(worker);
    w.#plan = (await w.#request({ op: 'create', model, options })).plan;
    return w;
  }

  get plan() { return this.#plan; }
  /** What the file holds (Picoformer's `kind`). */
  get kind() { return this.#plan.kind; }
  get numTokens() { return this.#plan.numTokens; }
  get capacity() { return this.#plan.capacity; }
  /** Positions cached, as of the last call that finished. */
  get length() { return this.#state.length; }
  /** Why the last generation ended, as of the last call that finished. */
  get stopReason() { return this.#state.stopReason; }
  get reencodes() { return this.#state.reencodes; }

  #receive(m) {
    const p = this.#pending.get(m?.id);
    if (!p) return;
    if ('token' in m) {
      p.onToken?.(m.token);
      return;
    }
    this.#pending.delete(m.id);
    if (m.state) this.#state = m.state;
    if (m.error) p.reject(new PicoformerError(m.error.code, m.error.message));
    else p.resolve(m.result);
  }

  /** Sends `msg` once the calls before it have finished; `started(id)` runs when it is sent. */
  #request(msg, { onToken, started } = {}) {
    const send = () => new Promise((resolve, reject) => {
      const id = this.#nextId++;
      this.#pending.set(id, { resolve, reject, onToken });
      this.#worker.postMessage({ ...msg, id });
      started?.(id);
    });
    const p = this.#queue.then(send, send);
    this.#queue = p.catch(() => {});
    return p;
  }

  /** Calls a Picoformer method in the worker: reset, truncate, prefill, step, forward, sample, seed, setContext, fullVsStepwise, encode. */
  call(method, ...args) { return this.#request({ op: 'call', method, args }); }
  reset() { return this.call('reset'); }
  truncate(length) { return this.call('truncate', length); }
  /** Resolves to a copy of the logits. */
  prefill(tokens) { return this.call('prefill', tokens); }
  step(token) { return this.call('step', token); }
  sample(options) { return this.call('sample', options); }
  seed(seed) { return this.call('seed', seed); }
  setContext(context, mask) { return this.call('setContext', context, mask); }
  /** Resolves to the outputs (a Float32Array). */
  encode(input, options) { return this.call('encode', input, options); }
  /** Resolves to the outputs (a Float32Array). */
  forward(input) { return this.call('forward', input); }

  /** As Picoformer.generate (same options, `onToken` called as tokens arrive); resolves to the tokens with `stopReason`. */
  async generate(prompt, options = {}) {
    const { onToken, signal, ...rest } = posted(options) ?? {};
    const out = [];
    const r = await this.#run(prompt, rest, signal, (t) => { out.push(t); onToken?.(t, out.length - 1); });
    return result(out, r.stopReason);
  }

  /** As Picoformer.stream, for `for await`: the tokens as the worker produces them; `stopReason` once it has ended. */
  stream(prompt, options = {}) {
    const { signal, ...rest } = posted(options) ?? {};
    const tokens = [];
    let wake = null;
    let end = null;
    const s = {
      stopReason: undefined,
      [Symbol.asyncIterator]() { return this; },
      next: async () => {
        for (;;) {
          if (tokens.length > 0) return { done: false, value: tokens.shift() };
          if (end) {
            if (end.error) throw end.error;
            return { done: true, value: undefined };
          }
          await new Promise((resolve) => { wake = resolve; });
        }
      },
      return: async () => { controller.abort(); return { done: true, value: undefined }; },
    };
    // `break` aborts the generation in the worker; so does the caller's signal.
    const controller = new AbortController();
    signal?.addEventListener('abort', () => controller.abort(), { once: true });
    if (signal?.aborted) controller.abort();
    const poke = () => { const w = wake; wake = null; w?.(); };
    this.#run(prompt, rest, controller.signal, (t) => { tokens.push(t); poke(); }).then(
      (r) => { s.stopReason = r.stopReason; end = {}; poke(); },
      (error) => { end = { error }; poke(); },
    );
    return s;
  }

  #run(prompt, options, signal, onToken) {
    return this.#request({ op: 'generate', prompt, options }, {
      onToken,
      started: (id) => {
        const abort = () => this.#worker.postMessage({ op: 'abort', target: id });
        if (signal?.aborted) abort();
        else signal?.addEventListener('abort', abort, { once: true });
      },
    });
  }

  /** Stops the worker. */
  terminate() { return this.#worker.terminate(); }
}

export { PicoformerError, ErrorCode };
