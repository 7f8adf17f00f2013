// picoformer for JavaScript: runs x-transformers models (safetensors files exported by
// picoformer's tools/export.py: decoder and encoder TransformerWrappers, bare Decoders and
// Encoders, ContinuousTransformerWrappers, XTransformers) in a WebAssembly module that owns one
// linear arena. `m.kind` says which kind a file holds; a call the kind does not take is refused.
//
//   const m = await Picoformer.create(modelBytes, { capacity: 256 });   // picks the .wasm build
//   const logits = m.prefill([1, 2, 3]);   // Float32Array(numTokens), last position
//   const out = m.generate([1, 2, 3], { maxTokens: 20, temperature: 0.8, stopTokens: [0] });
//   out.stopReason;                 // 'maxTokens' | 'stopToken' | 'stopString' | 'cacheFull' | 'aborted'
//   m.generate(prompt, { stopStrings: ['\n\n'] });   // byte-level tokens, or give `tokenText`
//   for await (const t of m.stream([4], { signal })) { ... }
//   enc.encode([5, 6, 7], { mask: [1, 1, 0] });   // an encoder: Float32Array(n × plan.outputWidth)
//   xt.encode(source, { mask }); xt.generate([startToken], { maxTokens: 40 });   // an XTransformer
//
// Works in Node (>= 18) and browsers; no dependencies. Every argument is checked before anything
// runs: a refused call throws a PicoformerError and changes nothing.

/** Error codes: those returned (negated) by the wasm exports, and TRAPPED (this module's own). */
export const ErrorCode = Object.freeze({
  LOAD: 1,
  UNSUPPORTED_MODEL: 2,
  OUT_OF_MEMORY: 3,
  TOKEN_OUT_OF_RANGE: 4,
  CACHE_FULL: 5,
  POSITION_OUT_OF_RANGE: 6,
  NOT_LOADED: 7,
  BAD_ARGUMENT: 8,
  OTHER: 9,
  TRAPPED: 10,
});

const CODE_NAMES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));
const KV_KINDS = { f32: 0, f16: 1, bf16: 2 };
/** The load option `weights`: the tensors as the file stores them, or f16/bf16 widened to f32. */
const WEIGHTS = ['stored', 'f32'];
const PLAN_FIELDS = [
  'weights', 'kvCache', 'scratch', 'logits', 'fullLogits', 'sampler', 'tokens', 'arena',
  'capacity', 'chunk', 'numTokens', 'dim', 'depth', 'memory',
  'contextCache', 'context', 'maxContext', 'dimContext',
  'kind', 'inputWidth', 'outputWidth', 'pooled', 'inputs', 'outputs', 'masks',
  'encoderKvCache', 'encoderScratch', 'sourceTokens', 'panels',
];
/** The kinds of model file, by the module's code. */
const KINDS = ['decoderWrapper', 'encoderWrapper', 'decoder', 'encoder', 'continuousDecoder',
  'continuousEncoder', 'xtransformer'];
/** Kinds that take token ids and generate. */
const GENERATING = ['decoderWrapper', 'xtransformer'];
/** Kinds that encode a window (or a source). */
const ENCODING = ['encoderWrapper', 'encoder', 'continuousEncoder', 'xtransformer'];
/** Kinds that stream rows of values over the cache. */
const STREAMING = ['decoder', 'continuousDecoder'];
const STOP_REASONS = [undefined, 'maxTokens', 'stopToken', 'cacheFull'];
const U32_MAX = 0xffffffff;
const F32_MAX = 3.4028234663852886e38;
/** Stop tokens a generation can have. */
export const MAX_STOP_TOKENS = 16;
/** Stop strings a generation can have. */
export const MAX_STOP_STRINGS = 16;

const LOAD_KEYS = ['capacity', 'kv', 'chunk', 'fullRows', 'maxContext', 'weights', 'panels'];
const ENCODE_KEYS = ['mask', 'output'];
const SAMPLE_KEYS = ['temperature', 'topK', 'topP', 'minP'];
const GENERATE_KEYS = [...SAMPLE_KEYS, 'maxTokens', 'seed', 'repetitionPenalty', 'repetitionWindow',
  'slide', 'stopTokens', 'stopStrings', 'tokenText', 'signal', 'onToken'];

/** A refused call: `code` is one of {@link ErrorCode}, `message` the module's own text. */
export class PicoformerError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'PicoformerError';
    this.code = code;
    this.codeName = CODE_NAMES[code] ?? 'UNKNOWN';
  }
}

function show(v) {
  try {
    if (typeof v === 'string') return JSON.stringify(v);
    if (typeof v === 'bigint') return `${v}n`;
    if (Array.isArray(v)) return 'an array';
    return typeof v === 'object' && v !== null ? 'an object' : String(v);
  } catch { return typeof v; }
}

const badArgument = (msg) => new PicoformerError(ErrorCode.BAD_ARGUMENT, msg);

/** An integer Number in min..max, else BAD_ARGUMENT naming the option. */
function int(name, v, min, max) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw badArgument(`${name} must be an integer in ${min}..${max}; got ${show(v)}`);
  }
  return v;
}

/** A Number in min..max (`open`: min excluded), NaN and infinities refused. */
function real(name, v, min, max, open = false) {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (open && v === min)) {
    const range = max === Infinity ? (open ? `> ${min}` : `>= ${min}`) : `in ${min}..${max}`;
    throw badArgument(`${name} must be a finite number ${range}; got ${show(v)}`);
  }
  return v;
}

/** The options object of `what` (undefined: none), with only `keys`. */
function optionsOf(what, o, keys) {
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object' || Array.isArray(o)) {
    throw badArgument(`the options of ${what} must be an object; got ${show(o)}`);
  }
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw badArgument(`unknown option '${k}' of ${what} (it takes ${keys.join(', ')})`);
  }
  return o;
}

function bytesOf(src, what) {
  if (src instanceof Uint8Array) return src;
  if (src instanceof ArrayBuffer) return new Uint8Array(src);
  if (ArrayBuffer.isView(src)) return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  throw badArgument(`${what} must be an ArrayBuffer or a typed array; got ${show(src)}`);
}

/** `tokens` checked: an array or typed array of integers in 0..2^32-1 (not written anywhere). */
function tokensOf(tokens) {
  if (!Array.isArray(tokens) && !(ArrayBuffer.isView(tokens) && !(tokens instanceof DataView))) {
    throw badArgument(`tokens must be an array or a typed array of token ids; got ${show(tokens)}`);
  }
  for (let i = 0; i < tokens.length; i++) checkToken(tokens[i], i);
  return tokens;
}

function checkToken(t, index = 0) {
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > U32_MAX) {
    throw new PicoformerError(ErrorCode.TOKEN_OUT_OF_RANGE,
      `token ${show(t)} at index ${index} is not an integer in 0..${U32_MAX}`);
  }
  return t;
}

/** `values` checked: an array or typed array of numbers finite as f32s, whole rows of `width`. */
function valuesOf(values, width, what) {
  if (!Array.isArray(values) && !(ArrayBuffer.isView(values) && !(values instanceof DataView))) {
    throw badArgument(`${what} is an array or a Float32Array of values; got ${show(values)}`);
  }
  const n = values.length;
  if (n === 0 || n % width !== 0) {
    throw badArgument(`${what} is whole rows of ${width} values; got ${n} values`);
  }
  for (let i = 0; i < n; i++) {
    const v = values[i];
    // Finite as an f32 too (1e300 would be stored as infinity).
    if (typeof v !== 'number' || !(Math.abs(v) <= F32_MAX)) {
      throw badArgument(`${what} value ${i} is not a finite number in f32's range: ${show(v)}`);
    }
  }
  return n / width;
}

/** A padding mask checked: `n` entries, each a boolean or 0/1 (true, 1: real; false, 0: padding). */
function maskOf(mask, n, what) {
  if (!Array.isArray(mask) && !(ArrayBuffer.isView(mask) && !(mask instanceof DataView))) {
    throw badArgument(`${what} is an array or a typed array of booleans or 0/1; got ${show(mask)}`);
  }
  if (mask.length !== n) throw badArgument(`${what} has ${mask.length} entries; it needs one per row (${n})`);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const v = mask[i];
    if (v === true || v === 1) out[i] = 1;
    else if (v !== false && v !== 0) throw badArgument(`${what} entry ${i} is not a boolean or 0/1: ${show(v)}`);
  }
  return out;
}

/** The seed as [lo, hi] u32 halves: an integer Number in 0..2^53-1 or a BigInt in 0..2^64-1. */
function seedOf(seed) {
  let s;
  if (typeof seed === 'bigint' && seed >= 0n && seed < 1n << 64n) s = seed;
  else if (typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0) s = BigInt(seed);
  else throw badArgument(`seed must be an integer in 0..2^53-1 or a BigInt in 0..2^64-1; got ${show(seed)}`);
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

function samplingOf(o) {
  const { temperature = 0, topK = 0, topP = 1, minP = 0 } = o;
  return {
    temperature: real('temperature', temperature, 0, Infinity),
    topK: int('topK', topK, 0, U32_MAX),
    topP: real('topP', topP, 0, 1),
    minP: real('minP', minP, 0, 1),
  };
}

/** A bare module that uses one v128 instruction: WebAssembly.validate says whether simd128 runs. */
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1,
  0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

/** Whether this runtime runs WebAssembly simd128 (the faster build). */
export function simdSupported() {
  try { return WebAssembly.validate(SIMD_PROBE); } catch { return false; }
}

/** The URL of a build shipped with the package: 'simd128', 'plain' or 'auto' (simd128 if supported). */
export function wasmUrl(build = 'auto') {
  if (build === 'auto') build = simdSupported() ? 'simd128' : 'plain';
  if (build === 'simd128') return new URL('../dist/picoformer-simd128.wasm', import.meta.url);
  if (build === 'plain') return new URL('../dist/picoformer.wasm', import.meta.url);
  throw badArgument(`build must be 'auto', 'simd128' or 'plain'; got ${show(build)}`);
}

async function readUrl(url) {
  if (url.protocol === 'file:') {
    const { readFile } = await import('node:fs/promises');
    return readFile(url);
  }
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** A macrotask: lets timers (an abort), I/O and painting run between two tokens. */
const nextTask = typeof setImmediate === 'function'
  ? () => new Promise((resolve) => setImmediate(resolve))
  : (() => {
    if (typeof MessageChannel !== 'function') return () => new Promise((resolve) => setTimeout(resolve, 0));
    const channel = new MessageChannel();
    const waiting = [];
    channel.port1.onmessage = () => waiting.shift()?.();
    return () => new Promise((resolve) => { waiting.push(resolve); channel.port2.postMessage(0); });
  })();

/**
 * What ends a generation at a stop string: a function of each generated token that is true once
 * the text generated so far (the prompt's not included) contains one of `stops`. Without
 * `tokenText` the tokens are bytes (token t < 256 is the byte t, as in a byte-level model; a
 * larger one matches nothing) and the strings are matched as their UTF-8 bytes; with it, each
 * token's text is `tokenText[t]` (an array; a missing entry is '') or `tokenText(t)`.
 */
function stopMatcher(stops, tokenText) {
  if (tokenText === undefined) {
    const encoder = new TextEncoder();
    const patterns = stops.map((x) => encoder.encode(x));
    const longest = Math.max(...patterns.map((p) => p.length));
    const tail = [];
    return (t) => {
      tail.push(t < 256 ? t : -1);
      if (tail.length > longest) tail.shift();
      const at = tail.length;
      return patterns.some((p) => p.length <= at && p.every((b, i) => tail[at - p.length + i] === b));
    };
  }
  const text = typeof tokenText === 'function' ? tokenText : (t) => tokenText[t] ?? '';
  const keep = Math.max(...stops.map((x) => x.length)) - 1;
  let tail = '';
  return (t) => {
    const piece = text(t);
    if (typeof piece !== 'string') throw badArgument(`tokenText(${t}) must give a string; got ${show(piece)}`);
    const seen = tail + piece;
    // What is kept cannot hold a whole stop string (it would have matched already).
    tail = keep > 0 ? seen.slice(-keep) : '';
    return stops.some((x) => seen.includes(x));
  };
}

/** An array of tokens with the reason the generation stopped (not enumerable: still a plain array to compare). */
function result(tokens, stopReason) {
  Object.defineProperty(tokens, 'stopReason', { value: stopReason, enumerable: false });
  return tokens;
}

/**
 * The tokens of one generation, iterated with `for...of` (each token computed as it is asked for)
 * or `for await...of` (the same, yielding to the event loop before each token so that a page
 * paints and an `AbortSignal` can fire). `stopReason` is set once it has ended.
 */
class TokenStream {
  #model;
  #start;
  #signal;
  #match;
  #matched = false;
  #done = false;
  #reason;

  constructor(model, start, signal, match) {
    this.#model = model;
    this.#start = start;
    this.#signal = signal;
    this.#match = match;
  }

  /** Why it ended: 'maxTokens', 'stopToken', 'stopString', 'cacheFull' or 'aborted' (undefined while it runs). */
  get stopReason() { return this.#reason; }

  [Symbol.iterator]() { return this; }

  next() {
    if (this.#done) return { done: true, value: undefined };
    // The token that completed a stop string has been returned: that ends it, as a stop token does.
    if (this.#matched) return this.#end('stopString');
    if (this.#signal?.aborted) return this.#end('aborted');
    let t;
    try {
      if (this.#start) {
        const start = this.#start;
        this.#start = null;
        start();
      }
      t = this.#model._nextToken(this);
      if (typeof t === 'string') return this.#end(t);
      if (this.#match?.(t)) this.#matched = true;
    } catch (e) {
      this.#done = true;
      throw e;
    }
    return { done: false, value: t };
  }

  /** Ends it early (what `break` calls): the last token stays out of the cache, as always. */
  return() {
    this.#done = true;
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator]() {
    return {
      next: async () => {
        if (!this.#done) await nextTask();
        return this.next();
      },
      return: async () => this.return(),
      [Symbol.asyncIterator]() { return this; },
    };
  }

  #end(reason) {
    this.#done = true;
    this.#reason = reason;
    if (reason === 'aborted' || reason === 'stopString') this.#model._stopped(this, reason);
    return { done: true, value: undefined };
  }
}

/**
 * A loaded model with its KV cache. A decoder wrapper (and an XTransformer's decoder): prefill,
 * step, sample, generate, stream. An encoder or an XTransformer: encode. A bare or continuous
 * decoder: forward rows of values. `kind` says which.
 */
export class Picoformer {
  #x; // the instance's exports, guarded (see #guard)
  #memory;
  #plan;
  /** Whether a context is set (setContext, or an XTransformer's encode). */
  #hasContext = false;
  #logits = null;
  #broken = false;
  #stopReason;
  /** The stream the module's generation belongs to (null: none or a generate call). */
  #owner = null;

  constructor(instance) {
    this.#memory = instance.exports.memory;
    this.#x = this.#guard(instance.exports);
  }

  /** The exports, each wrapped: a trap marks the instance unusable, and every later call refuses. */
  #guard(exports) {
    const out = {};
    for (const [name, f] of Object.entries(exports)) {
      if (typeof f !== 'function') continue;
      out[name] = (...args) => {
        if (this.#broken) {
          throw new PicoformerError(ErrorCode.TRAPPED,
            'picoformer: the module trapped earlier and cannot be used: load the model again');
        }
        try {
          return f(...args);
        } catch (e) {
          // An export only throws when it traps (or exhausts the stack).
          this.#broken = true;
          throw new PicoformerError(ErrorCode.TRAPPED, `picoformer: the module trapped (${e?.message ?? e}); load the model again`);
        }
      };
    }
    return out;
  }

  /**
   * Loads a model into the package's own .wasm build, chosen for this runtime ({@link simdSupported}).
   * @param {BufferSource} model a safetensors model file
   * @param {object} [options] the options of {@link Picoformer.load}, and `build`: 'auto'
   *   (default), 'simd128' or 'plain'.
   */
  static async create(model, options = {}) {
    const { build = 'auto', ...rest } = optionsOf('create', options, [...LOAD_KEYS, 'build']);
    const url = wasmUrl(build);
    Picoformer.#loadOptions(rest);
    bytesOf(model, 'model');
    return Picoformer.load(await readUrl(url), model, rest);
  }

  /**
   * Instantiates the module and loads a model.
   * @param {BufferSource|WebAssembly.Module|WebAssembly.Instance} wasm the picoformer .wasm (plain
   *   or simd128), compiled, or a fresh instance of it
   * @param {BufferSource} model a safetensors model file
   * @param {{capacity?: number, kv?: 'f32'|'f16'|'bf16', chunk?: number, fullRows?: number, maxContext?: number, weights?: 'stored'|'f32', panels?: boolean}} [options]
   *   capacity: KV cache positions (default 256); kv: cache element type (default 'f32');
   *   chunk: prefill positions per pass (default 16); fullRows: rows for {@link forward} (default 0);
   *   maxContext: context rows a cross-attending model can be given (needed for one, ignored otherwise);
   *   weights: 'stored' (default, the file's tensors in place) or 'f32' (f16/bf16 tensors widened
   *   to f32 at load, exact: faster under simd128, which has no f16 conversion; twice their bytes);
   *   panels: also pack the decoder's matrices into f32 panels for prefill (default false;
   *   `plan.panels` bytes; faster prefill; a model that generates tokens only).
   */
  static async load(wasm, model, options = {}) {
    const opts = Picoformer.#loadOptions(options);
    const bytes = bytesOf(model, 'model');
    let instance;
    if (wasm instanceof WebAssembly.Instance) instance = wasm;
    else if (wasm instanceof WebAssembly.Module) instance = await WebAssembly.instantiate(wasm, {});
    else instance = (await WebAssembly.instantiate(bytesOf(wasm, 'wasm'), {})).instance;
    const m = new Picoformer(instance);
    m.#loadModel(bytes, opts);
    return m;
  }

  static #loadOptions(options) {
    const o = optionsOf('load', options, LOAD_KEYS);
    const { capacity = 256, kv = 'f32', chunk = 16, fullRows = 0, maxContext = 0, weights = 'stored', panels = false } = o;
    if (!Object.hasOwn(KV_KINDS, kv)) throw badArgument(`kv must be one of ${Object.keys(KV_KINDS).join(', ')}; got ${show(kv)}`);
    if (!WEIGHTS.includes(weights)) throw badArgument(`weights must be one of ${WEIGHTS.map((w) => `'${w}'`).join(', ')}; got ${show(weights)}`);
    if (typeof panels !== 'boolean') throw badArgument(`panels must be true or false; got ${show(panels)}`);
    return {
      capacity: int('capacity', capacity, 1, U32_MAX),
      kind: KV_KINDS[kv],
      chunk: int('chunk', chunk, 1, U32_MAX),
      fullRows: int('fullRows', fullRows, 0, U32_MAX),
      maxContext: int('maxContext', maxContext, 0, U32_MAX),
      widen: weights === 'f32',
      panels,
    };
  }

  #loadModel(bytes, opts) {
    this.#loadFile(bytes, opts);
    if (!opts.widen) return;
    // The file as stored was loaded first: it is checked by the module (every error is the one
    // loading it as stored gives), and only a well-formed file is rewritten. The second load
    // reuses the same arena, so memory ends up as if the widened file had been loaded alone.
    const wide = widenSafetensors(bytes);
    if (wide !== null) this.#loadFile(wide, opts);
  }

  #loadFile(bytes, { capacity, kind, chunk, fullRows, maxContext, panels }) {
    const ptr = this.#x.pf_alloc_model(bytes.length) >>> 0;
    if (ptr === 0) this.#throw(-ErrorCode.OUT_OF_MEMORY);
    new Uint8Array(this.#memory.buffer, ptr, bytes.length).set(bytes);
    this.#check(this.#x.pf_load(capacity, kind, chunk, fullRows, maxContext, panels ? 1 : 0));
    const table = new Uint32Array(this.#memory.buffer, this.#x.pf_plan_ptr() >>> 0, PLAN_FIELDS.length);
    const plan = Object.fromEntries(PLAN_FIELDS.map((k, i) => [k, table[i]]));
    plan.kind = KINDS[plan.kind];
    plan.pooled = plan.pooled === 1;
    this.#plan = Object.freeze(plan);
  }

  /** Refuses `what` unless the model is of one of `kinds` (BAD_ARGUMENT naming the kind). */
  #only(kinds, what) {
    const kind = this.#plan.kind;
    if (!kinds.includes(kind)) {
      const a = /^[ae]/.test(kind) ? 'an' : 'a';
      throw badArgument(`${what} does not fit this model: it is ${a} ${kind} (${what} is for ${kinds.join(', ')})`);
    }
  }

  /** Bytes of each buffer in the arena and the model's sizes (a frozen object). */
  get plan() { return this.#plan; }
  /**
   * What the file holds: 'decoderWrapper', 'encoderWrapper', 'decoder', 'encoder',
   * 'continuousDecoder', 'continuousEncoder' or 'xtransformer'.
   */
  get kind() { return this.#plan.kind; }
  /** Vocabulary size. */
  get numTokens() { return this.#plan.numTokens; }
  /** KV cache capacity in positions. */
  get capacity() { return this.#plan.capacity; }
  /** Bytes of the module's linear memory (constant after loading: nothing is allocated per token). */
  get memoryBytes() { return this.#memory.buffer.byteLength; }
  /** Positions cached. */
  get length() { return this.#x.pf_len() >>> 0; }
  /** Why the last generation ended (see {@link generate}); undefined while one runs or before. */
  get stopReason() { return this.#stopReason; }
  /** Times a sliding window (the `slide` option) re-encoded its last tokens since loading. */
  get reencodes() { return this.#x.pf_reencodes() >>> 0; }
  /** Whether the module trapped (a bug): then every call throws TRAPPED. */
  get broken() { return this.#broken; }

  /** The last position's logits: a view into wasm memory, overwritten by the next call (copy with .slice()). */
  get logits() {
    if (!GENERATING.includes(this.#plan.kind)) return new Float32Array(0);
    // Views die when memory grows; memory grows only while loading, but re-check anyway.
    if (this.#logits === null || this.#logits.buffer !== this.#memory.buffer) {
      this.#logits = new Float32Array(this.#memory.buffer, this.#x.pf_logits_ptr() >>> 0, this.numTokens);
    }
    return this.#logits;
  }

  /**
   * Sets the cross-attention context of a cross-attending model (what its encoder produced):
   * `context` holds rows × `plan.dimContext` finite values, row-major (a Float32Array or an
   * array of numbers), at most `plan.maxContext` rows. Starts a new sequence: the cache is reset,
   * and the next prefill or step computes the context's keys and values (later calls reuse them,
   * as in x-transformers). A cross-attending model refuses prefill and step until it has a context.
   */
  setContext(context, mask) {
    const { dimContext: w, maxContext: max } = this.#plan;
    // No room for a context: the module says why (no cross-attention) and writes nothing.
    if (max === 0) this.#check(this.#x.pf_set_context(0, 0));
    if (!Array.isArray(context) && !(ArrayBuffer.isView(context) && !(context instanceof DataView))) {
      throw badArgument(`a context is an array or a Float32Array; got ${show(context)}`);
    }
    const n = context.length;
    if (n === 0 || n % w !== 0) {
      throw badArgument(`a context is whole rows of ${w} values (dimContext); got ${n} values`);
    }
    if (n / w > max) {
      throw badArgument(`${n / w} context rows do not fit the ${max} of the load option maxContext`);
    }
    for (let i = 0; i < n; i++) {
      const v = context[i];
      // Finite as an f32 too (1e300 would be stored as infinity).
      if (typeof v !== 'number' || !(Math.abs(v) <= F32_MAX)) {
        throw badArgument(`context value ${i} is not a finite number in f32's range: ${show(v)}`);
      }
    }
    const bytes = mask === undefined ? undefined : maskOf(mask, n / w, 'a context mask');
    // The buffers are the module's context input; the context in use changes only on success.
    new Float32Array(this.#memory.buffer, this.#x.pf_context_ptr() >>> 0, n).set(context);
    if (bytes) new Uint8Array(this.#memory.buffer, this.#x.pf_context_mask_ptr() >>> 0, n / w).set(bytes);
    this.#check(this.#x.pf_set_context(n / w, bytes ? 1 : 0));
    this.#hasContext = true;
    this.#ended();
  }

  /**
   * Encodes a window (an encoder) or a source (an XTransformer) and returns a new Float32Array
   * of rows × width, row-major:
   * - encoderWrapper: token ids in; logits (width `plan.outputWidth`: num_tokens or logits_dim,
   *   the class scores of a classifier) out, or with `output: 'embeddings'` the embeddings
   *   (width `plan.dim`);
   * - encoder: embeddings (n × `plan.dim`) in, hidden states out;
   * - continuousEncoder: frames (n × `plan.inputWidth`) in, n × `plan.outputWidth` out, or one
   *   row if it pools (`plan.pooled`, average_pool_embed);
   * - xtransformer: source token ids in (at most `plan.maxContext`); their embeddings out, which
   *   become the decoder's context (its cache is reset; generate then translates).
   * `mask` (one boolean or 0/1 per position, false/0 for padding) is x-transformers' `mask`.
   * Windows hold at most `capacity` positions (the longest source: `maxContext`).
   */
  encode(input, options) {
    const kind = this.#plan.kind;
    this.#only(ENCODING, 'encode');
    const { mask, output = 'logits' } = optionsOf('encode', options, ENCODE_KEYS);
    if (output !== 'logits' && output !== 'embeddings') {
      throw badArgument(`output must be 'logits' or 'embeddings'; got ${show(output)}`);
    }
    if (output === 'embeddings' && kind !== 'encoderWrapper') {
      throw badArgument(`output 'embeddings' is for an encoderWrapper (this model is ${kind}: its output is ${kind === 'xtransformer' ? 'embeddings' : 'its own'})`);
    }
    const { capacity, maxContext, inputWidth } = this.#plan;
    let n;
    if (kind === 'encoderWrapper' || kind === 'xtransformer') {
      tokensOf(input);
      n = input.length;
      const max = kind === 'xtransformer' ? maxContext : capacity;
      if (n > max) {
        throw new PicoformerError(kind === 'xtransformer' ? ErrorCode.BAD_ARGUMENT : ErrorCode.CACHE_FULL,
          `${n} tokens do not fit the ${max} of the load option ${kind === 'xtransformer' ? 'maxContext' : 'capacity'}`);
      }
    } else {
      n = valuesOf(input, inputWidth, 'an input');
      if (n > capacity) {
        throw new PicoformerError(ErrorCode.CACHE_FULL, `${n} rows do not fit the load option capacity of ${capacity}`);
      }
    }
    const bytes = mask === undefined ? undefined : maskOf(mask, n, 'a mask');
    if (kind === 'encoderWrapper' || kind === 'xtransformer') {
      new Uint32Array(this.#memory.buffer, this.#x.pf_tokens_ptr() >>> 0, n).set(input);
    } else {
      new Float32Array(this.#memory.buffer, this.#x.pf_values_ptr() >>> 0, n * inputWidth).set(input);
    }
    if (bytes) new Uint8Array(this.#memory.buffer, this.#x.pf_mask_ptr() >>> 0, n).set(bytes);
    const rows = this.#check(this.#x.pf_encode(n, bytes ? 1 : 0, output === 'embeddings' ? 1 : 0));
    const width = output === 'embeddings' || kind === 'xtransformer' ? this.#plan.dim : this.#plan.outputWidth;
    if (kind === 'xtransformer') {
      this.#hasContext = true;
      this.#ended();
    }
    return new Float32Array(this.#memory.buffer, this.#x.pf_output_ptr() >>> 0, rows * width).slice();
  }

  /** Runs `tokens` after what is cached; returns the last position's logits (see {@link logits}). */
  prefill(tokens) {
    this.#generating('prefill');
    this.#check(this.#x.pf_prefill(this.#writeTokens(tokens)));
    this.#ended();
    return this.logits;
  }

  /** Runs one token; returns its logits (see {@link logits}). */
  step(token) {
    this.#generating('step');
    this.#check(this.#x.pf_step(checkToken(token)));
    this.#ended();
    return this.logits;
  }

  /**
   * Runs `tokens` and returns every position's logits, a new Float32Array(n × numTokens). Needs
   * `fullRows >= n`. A bare or continuous decoder: runs rows of values (n × `plan.inputWidth`)
   * after what is cached and returns their outputs (n × `plan.outputWidth`).
   */
  forward(tokens) {
    if (STREAMING.includes(this.#plan.kind)) return this.#forwardValues(tokens);
    this.#generating('forward');
    const n = this.#writeTokens(tokens);
    this.#check(this.#x.pf_forward_all(n));
    this.#ended();
    const ptr = this.#x.pf_full_logits_ptr() >>> 0;
    return new Float32Array(this.#memory.buffer, ptr, n * this.numTokens).slice();
  }

  /** Largest |full − stepwise| logit difference over `tokens` from an empty cache (needs `fullRows`). */
  fullVsStepwise(tokens) {
    this.#generating('fullVsStepwise');
    const d = this.#x.pf_full_vs_stepwise(this.#writeTokens(tokens));
    if (d < 0) this.#throw(d);
    this.#ended();
    return d;
  }

  /** Seeds the sampler: an integer Number in 0..2^53-1 or a BigInt in 0..2^64-1. */
  seed(seed) {
    this.#only(GENERATING, 'seed');
    const [lo, hi] = seedOf(seed);
    this.#x.pf_seed(lo, hi);
  }

  /**
   * Picks the next token from the current logits with picoformer's sampler: temperature 0
   * (default) is greedy; topK 0, topP 1 and minP 0 are off.
   */
  sample(options) {
    this.#only(GENERATING, 'sample');
    const { temperature, topK, topP, minP } = samplingOf(optionsOf('sample', options, SAMPLE_KEYS));
    return this.#check(this.#x.pf_sample(temperature, topK, topP, minP));
  }

  /**
   * Generates up to `maxTokens` tokens after `prompt` (empty: continue the last generation) and
   * returns them as an array whose `stopReason` says why it ended. With `onToken(token, index)`
   * each token is reported as soon as it is sampled; without it the whole loop runs inside wasm
   * (same tokens, fewer calls).
   */
  generate(prompt, options) {
    const o = this.#generateOptions('generate', prompt, options);
    const { onToken, signal } = o;
    if (onToken !== undefined || signal !== undefined || o.match !== undefined) {
      const s = this.stream(prompt, { ...options, onToken: undefined });
      const out = [];
      for (const t of s) {
        out.push(t);
        if (onToken) onToken(t, out.length - 1);
      }
      return result(out, s.stopReason);
    }
    this.#begin(o, null);
    const out = [];
    const buf = () => new Uint32Array(this.#memory.buffer, this.#x.pf_out_ptr() >>> 0, this.capacity);
    for (;;) {
      const n = this.#check(this.#x.pf_gen_run(this.capacity));
      const b = buf();
      for (let i = 0; i < n; i++) out.push(b[i]);
      const why = STOP_REASONS[this.#x.pf_gen_reason()];
      if (why !== undefined) return result(out, this.#stopReason = why);
    }
  }

  /**
   * The tokens of a generation as they are sampled: `for (const t of m.stream(prompt, opts))` or
   * `for await (const t of m.stream(prompt, { signal }))`. Options as {@link generate} (no
   * `onToken`); `signal` (an AbortSignal) ends it with stopReason 'aborted'. The options and
   * tokens are checked now; the prompt runs when the first token is asked for.
   */
  stream(prompt, options) {
    const o = this.#generateOptions('stream', prompt, options);
    if (o.onToken !== undefined) throw badArgument('stream takes no onToken: iterate it');
    let s;
    s = new TokenStream(this, () => this.#begin(o, s), o.signal, o.match);
    return s;
  }

  /** The next token of `stream`'s generation, or its stop reason. Internal (TokenStream). */
  _nextToken(stream) {
    if (this.#owner !== stream) {
      throw badArgument('this stream was ended by a later call (generate, stream, prefill, step, reset, ...)');
    }
    const n = this.#check(this.#x.pf_gen_run(1));
    if (n === 1) return new Uint32Array(this.#memory.buffer, this.#x.pf_out_ptr() >>> 0, 1)[0];
    this.#owner = null;
    return this.#stopReason = STOP_REASONS[this.#x.pf_gen_reason()];
  }

  /** `stream` was aborted or met a stop string: if its generation is the module's, that is why it ended. Internal. */
  _stopped(stream, reason) {
    if (this.#owner === stream) this.#stopReason = reason;
  }

  #generateOptions(what, prompt, options) {
    this.#generating(what);
    const o = optionsOf(what, options, GENERATE_KEYS);
    const cap = this.capacity;
    const { maxTokens = 32, repetitionPenalty = 1, repetitionWindow = cap, slide = 0, stopTokens = [],
      stopStrings, tokenText, seed, signal, onToken } = o;
    int('slide', slide, 0, cap);
    let tokens = tokensOf(prompt);
    // With a sliding window a longer prompt is fine: its end goes in (the window and the
    // penalty's history see at most `capacity` tokens).
    const cut = slide > 0 && tokens.length > cap;
    if (cut) tokens = Array.prototype.slice.call(tokens, -cap);
    if (tokens.length > cap) {
      throw new PicoformerError(ErrorCode.CACHE_FULL,
        `${tokens.length} tokens do not fit the KV cache capacity of ${cap}`);
    }
    const stops = tokensOf(stopTokens);
    if (stops.length > MAX_STOP_TOKENS) throw badArgument(`at most ${MAX_STOP_TOKENS} stopTokens; got ${stops.length}`);
    for (const t of stops) {
      if (t >= this.numTokens) throw badArgument(`stop token ${t} is out of range (numTokens = ${this.numTokens})`);
    }
    const strings = typeof stopStrings === 'string' ? [stopStrings] : stopStrings ?? [];
    if (!Array.isArray(strings)) throw badArgument(`stopStrings must be a string or an array of strings; got ${show(stopStrings)}`);
    if (strings.length > MAX_STOP_STRINGS) throw badArgument(`at most ${MAX_STOP_STRINGS} stopStrings; got ${strings.length}`);
    for (const x of strings) {
      if (typeof x !== 'string' || x.length === 0) throw badArgument(`a stop string is a non-empty string; got ${show(x)}`);
    }
    if (tokenText !== undefined && typeof tokenText !== 'function') {
      if (!Array.isArray(tokenText)) throw badArgument(`tokenText must be an array of strings or a function; got ${show(tokenText)}`);
      const bad = tokenText.findIndex((x) => typeof x !== 'string');
      if (bad >= 0) throw badArgument(`tokenText[${bad}] must be a string; got ${show(tokenText[bad])}`);
    }
    if (signal !== undefined && (signal === null || typeof signal !== 'object' || typeof signal.aborted !== 'boolean')) {
      throw badArgument(`signal must be an AbortSignal; got ${show(signal)}`);
    }
    if (onToken !== undefined && typeof onToken !== 'function') {
      throw badArgument(`onToken must be a function; got ${show(onToken)}`);
    }
    return {
      prompt: tokens,
      sampling: samplingOf(o),
      maxTokens: int('maxTokens', maxTokens, 0, U32_MAX),
      repetitionPenalty: real('repetitionPenalty', repetitionPenalty, 0, Infinity, true),
      repetitionWindow: int('repetitionWindow', repetitionWindow, 0, cap),
      slide,
      cut,
      stops,
      match: strings.length > 0 ? stopMatcher(strings, tokenText) : undefined,
      seed: seed === undefined ? undefined : seedOf(seed),
      signal,
      onToken,
    };
  }

  /** Starts the module's generation for `owner` (a stream, or null for generate). */
  #begin(o, owner) {
    const n = this.#writeTokens(o.prompt);
    new Uint32Array(this.#memory.buffer, this.#x.pf_stop_ptr() >>> 0, MAX_STOP_TOKENS).set(o.stops);
    const { temperature, topK, topP, minP } = o.sampling;
    const [lo, hi] = o.seed ?? [0, 0];
    this.#check(this.#x.pf_gen_begin(n, o.maxTokens, temperature, topK, topP, minP,
      o.repetitionPenalty, o.repetitionWindow, o.slide, o.stops.length, lo, hi, o.seed ? 1 : 0, o.cut ? 1 : 0));
    this.#owner = owner;
    this.#stopReason = undefined;
  }

  /** Forgets everything cached (a context set stays set: the next call projects it again). */
  reset() {
    this.#x.pf_reset();
    this.#ended();
  }

  /** Rewinds the cache to `length` positions (an integer in 0..length). */
  truncate(length) {
    this.#check(this.#x.pf_truncate(int('length', length, 0, U32_MAX)));
    this.#ended();
  }

  /** Refuses `what` unless the model generates, and an XTransformer until it has a source. */
  #generating(what) {
    this.#only(GENERATING, what);
    if (this.#plan.kind === 'xtransformer' && !this.#hasContext) {
      throw badArgument(`${what}: encode a source first (an XTransformer's decoder attends to it)`);
    }
  }

  #forwardValues(values) {
    const { inputWidth, outputWidth, capacity } = this.#plan;
    const n = valuesOf(values, inputWidth, 'an input');
    if (n > capacity) {
      throw new PicoformerError(ErrorCode.CACHE_FULL, `${n} rows do not fit the KV cache capacity of ${capacity}`);
    }
    new Float32Array(this.#memory.buffer, this.#x.pf_values_ptr() >>> 0, n * inputWidth).set(values);
    this.#check(this.#x.pf_forward_values(n));
    return new Float32Array(this.#memory.buffer, this.#x.pf_output_ptr() >>> 0, n * outputWidth).slice();
  }

  /** A call that ended the module's generation: streams of it are over. */
  #ended() { this.#owner = null; }

  #writeTokens(tokens) {
    tokensOf(tokens);
    const n = tokens.length;
    if (n > this.capacity) {
      throw new PicoformerError(ErrorCode.CACHE_FULL,
        `${n} tokens do not fit the KV cache capacity of ${this.capacity}`);
    }
    new Uint32Array(this.#memory.buffer, this.#x.pf_tokens_ptr() >>> 0, n).set(tokens);
    return n;
  }

  #check(r) {
    if (r < 0) this.#throw(r);
    return r;
  }

  #throw(r) {
    const ptr = this.#x.pf_error_ptr() >>> 0;
    const len = this.#x.pf_error_len() >>> 0;
    const msg = new TextDecoder().decode(new Uint8Array(this.#memory.buffer, ptr, len));
    throw new PicoformerError(-r, msg);
  }
}

/** Bytes per element of the safetensors dtypes (others, F8_E5M2 and F8_E4M3: 1, placed last). */
const ELEM_SIZE = { F64: 8, I64: 8, U64: 8, F32: 4, I32: 4, U32: 4, F16: 2, BF16: 2, I16: 2, U16: 2,
  I8: 1, U8: 1, BOOL: 1 };

/** The f32 bit pattern of the f16 bit pattern `h` (exact: every f16 is an f32). */
function f16Bits(h) {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  let bits;
  if (exp === 0x1f) bits = 0x7f800000 | (mant << 13);       // infinities, NaNs (payload kept)
  else if (exp !== 0) bits = ((exp + 112) << 23) | (mant << 13);
  else if (mant === 0) bits = 0;                             // ±0
  else {                                                     // subnormal: normalised
    let e = 113;
    while ((mant & 0x400) === 0) { mant <<= 1; e--; }
    bits = (e << 23) | ((mant & 0x3ff) << 13);
  }
  return (sign | bits) >>> 0;
}

// (Functions of their own: called once per tensor, they are optimised after the first few.)
function widenF16(h, out) {
  for (let i = 0; i < h.length; i++) {
    const x = h[i];
    const e = x & 0x7c00;
    // Normal numbers (almost all weights): the exponent rebiased (+112), the mantissa shifted.
    out[i] = e !== 0 && e !== 0x7c00 ? ((x & 0x8000) << 16) | (((x & 0x7fff) << 13) + 0x38000000) : f16Bits(x);
  }
}

function widenBf16(h, out) {
  for (let i = 0; i < h.length; i++) out[i] = h[i] << 16;
}

/**
 * `bytes`, a well-formed safetensors file, with every F16 and BF16 tensor widened to F32 (exact),
 * the other tensors (F32, Q8_0's U8 blocks, ...) and the metadata kept; null if it has none to
 * widen. Laid out as tools/export.py lays a file out: the data section at a multiple of 64, the
 * tensors by element size (largest first), those whose size is a multiple of 64 first, no holes:
 * every tensor aligned to its element size, and the matrices to 64 bytes.
 */
function widenSafetensors(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  const base = 8 + headerLen;
  const wide = (dtype) => dtype === 'F16' || dtype === 'BF16';
  const entries = Object.entries(header).filter(([name]) => name !== '__metadata__')
    .map(([name, t], index) => {
      const [begin, end] = t.data_offsets;
      const size = wide(t.dtype) ? 2 * (end - begin) : end - begin;
      const elem = wide(t.dtype) ? 4 : ELEM_SIZE[t.dtype] ?? 1;
      return { name, t, begin, end, size, elem, index };
    });
  if (!entries.some((e) => wide(e.t.dtype))) return null;
  entries.sort((a, b) => (b.elem - a.elem) || ((a.size % 64 !== 0) - (b.size % 64 !== 0))
    || ((a.size % 8 !== 0) - (b.size % 8 !== 0)) || (a.index - b.index));
  const out = {};
  if (header.__metadata__ !== undefined) out.__metadata__ = header.__metadata__;
  let offset = 0;
  for (const e of entries) {
    e.at = offset;
    out[e.name] = { ...e.t, dtype: wide(e.t.dtype) ? 'F32' : e.t.dtype, data_offsets: [offset, offset + e.size] };
    offset += e.size;
  }
  const text = new TextEncoder().encode(JSON.stringify(out));
  const padded = text.length + ((64 - ((8 + text.length) % 64)) % 64);
  const file = new Uint8Array(8 + padded + offset);
  new DataView(file.buffer).setBigUint64(0, BigInt(padded), true);
  file.set(text, 8);
  file.fill(0x20, 8 + text.length, 8 + padded);   // spaces
  const data = 8 + padded;
  for (const e of entries) {
    const src = base + e.begin;
    const dst = data + e.at;
    if (wide(e.t.dtype)) {
      // Typed views in the host's byte order, which this package takes as little-endian (as the
      // wasm memory views are): the file's u16s in, the f32 bit patterns out (4-byte aligned:
      // only 8-byte tensors, whole multiples of 8, come before the 4-byte ones).
      const n = (e.end - e.begin) / 2;
      const at = bytes.byteOffset + src;
      const h = at % 2 === 0 ? new Uint16Array(bytes.buffer, at, n) : new Uint16Array(bytes.slice(src, src + 2 * n).buffer);
      const out = new Uint32Array(file.buffer, dst, n);
      if (e.t.dtype === 'F16') widenF16(h, out);
      else widenBf16(h, out);
    } else {
      file.set(bytes.subarray(src, base + e.end), dst);
    }
  }
  return file;
}

/** Reads a safetensors file: `{ metadata, tensors: { name: { dtype, shape, data } } }` (F32 → Float32Array, I64 → BigInt64Array, others → Uint8Array). */
export function readSafetensors(src) {
  const bytes = bytesOf(src, 'safetensors');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  const base = 8 + headerLen;
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = t.data_offsets;
    const raw = new Uint8Array(end - begin); // a copy, aligned for typed arrays
    raw.set(bytes.subarray(base + begin, base + end));
    const data = t.dtype === 'F32' ? new Float32Array(raw.buffer)
      : t.dtype === 'I64' ? new BigInt64Array(raw.buffer) : raw;
    tensors[name] = { dtype: t.dtype, shape: t.shape, data };
  }
  return { metadata: header.__metadata__ ?? {}, tensors };
}
