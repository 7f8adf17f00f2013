// picoformer for JavaScript: runs x-transformers TransformerWrapper models (safetensors files
// exported by picoformer's tools/export.py) in a WebAssembly module that owns one linear arena.
//
//   const m = await Picoformer.load(wasmBytes, modelBytes, { capacity: 256, kv: 'f32' });
//   m.plan;                        // bytes of weights, KV cache, scratch, ... (see README)
//   const logits = m.prefill([1, 2, 3]);   // Float32Array(numTokens), last position
//   m.step(7);                     // one more token
//   m.generate([1, 2, 3], { maxTokens: 20, temperature: 0.8, topK: 40, topP: 0.95, seed: 1,
//                           onToken: (t) => console.log(t) });
//   m.reset();
//
// Works in Node (>= 18) and browsers; no dependencies.

/** Error codes returned (negated) by the wasm exports. */
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
});

const CODE_NAMES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));
const KV_KINDS = { f32: 0, f16: 1, bf16: 2 };
const PLAN_FIELDS = [
  'weights', 'kvCache', 'scratch', 'logits', 'fullLogits', 'sampler', 'tokens', 'arena',
  'capacity', 'chunk', 'numTokens', 'dim', 'depth', 'memory',
  'contextCache', 'context', 'maxContext', 'dimContext',
];

/** A refused call: `code` is one of {@link ErrorCode}, `message` the module's own text. */
export class PicoformerError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'PicoformerError';
    this.code = code;
    this.codeName = CODE_NAMES[code] ?? 'UNKNOWN';
  }
}

function bytesOf(src, what) {
  if (src instanceof Uint8Array) return src;
  if (src instanceof ArrayBuffer) return new Uint8Array(src);
  if (ArrayBuffer.isView(src)) return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  throw new TypeError(`${what} must be an ArrayBuffer or a typed array`);
}

function checkToken(t) {
  if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) {
    throw new RangeError(`token ${t} is not an integer in 0..2^32-1`);
  }
  return t;
}

/** A loaded model with its KV cache: prefill, step, sample, generate. */
export class Picoformer {
  #x; // the instance's exports
  #memory;
  #plan;
  #logits = null;
  #broken = false;

  constructor(instance) {
    this.#x = instance.exports;
    this.#memory = instance.exports.memory;
  }

  /**
   * Instantiates the module and loads a model.
   * @param {BufferSource|WebAssembly.Module} wasm the picoformer .wasm (plain or simd128)
   * @param {BufferSource} model a safetensors model file
   * @param {{capacity?: number, kv?: 'f32'|'f16'|'bf16', chunk?: number, fullRows?: number, maxContext?: number}} [options]
   *   capacity: KV cache positions (default 256); kv: cache element type (default 'f32');
   *   chunk: prefill positions per pass (default 16); fullRows: rows for {@link forward} (default 0);
   *   maxContext: context rows a cross-attending model can be given (needed for one, ignored otherwise).
   */
  static async load(wasm, model, options = {}) {
    const instance = wasm instanceof WebAssembly.Module
      ? await WebAssembly.instantiate(wasm, {})
      : (await WebAssembly.instantiate(bytesOf(wasm, 'wasm'), {})).instance;
    const m = new Picoformer(instance);
    m.#loadModel(bytesOf(model, 'model'), options);
    return m;
  }

  #loadModel(bytes, { capacity = 256, kv = 'f32', chunk = 16, fullRows = 0, maxContext = 0 } = {}) {
    const kind = KV_KINDS[kv];
    if (kind === undefined) throw new RangeError(`kv must be one of ${Object.keys(KV_KINDS)}`);
    const ptr = this.#x.pf_alloc_model(bytes.length) >>> 0;
    if (ptr === 0) this.#throw(-ErrorCode.OUT_OF_MEMORY);
    new Uint8Array(this.#memory.buffer, ptr, bytes.length).set(bytes);
    this.#check(this.#x.pf_load(capacity >>> 0, kind, chunk >>> 0, fullRows >>> 0, maxContext >>> 0));
    const table = new Uint32Array(this.#memory.buffer, this.#x.pf_plan_ptr() >>> 0, PLAN_FIELDS.length);
    this.#plan = Object.freeze(Object.fromEntries(PLAN_FIELDS.map((k, i) => [k, table[i]])));
  }

  /** Bytes of each buffer in the arena and the model's sizes (a frozen object). */
  get plan() { return this.#plan; }
  /** Vocabulary size. */
  get numTokens() { return this.#plan.numTokens; }
  /** KV cache capacity in positions. */
  get capacity() { return this.#plan.capacity; }
  /** Bytes of the module's linear memory (constant after loading: nothing is allocated per token). */
  get memoryBytes() { return this.#memory.buffer.byteLength; }
  /** Positions cached. */
  get length() { return this.#x.pf_len() >>> 0; }

  /** The last position's logits: a view into wasm memory, overwritten by the next call (copy with .slice()). */
  get logits() {
    // Views die when memory grows; memory grows only while loading, but re-check anyway.
    if (this.#logits === null || this.#logits.buffer !== this.#memory.buffer) {
      this.#logits = new Float32Array(this.#memory.buffer, this.#x.pf_logits_ptr() >>> 0, this.numTokens);
    }
    return this.#logits;
  }

  /**
   * Sets the cross-attention context of a cross-attending model (what its encoder produced):
   * `context` holds rows × `plan.dimContext` values, row-major (a Float32Array or an array of
   * numbers), at most `plan.maxContext` rows. Starts a new sequence: the cache is reset, and the
   * next prefill or step computes the context's keys and values (later calls reuse them, as in
   * x-transformers). A cross-attending model refuses prefill and step until it has a context.
   */
  setContext(context) {
    const { dimContext: w, maxContext: max } = this.#plan;
    // No room for a context: the module says why (no cross-attention) and writes nothing.
    if (max === 0) this.#check(this.#x.pf_set_context(0));
    const n = context.length;
    if (n === 0 || n % w !== 0) {
      throw new PicoformerError(ErrorCode.BAD_ARGUMENT,
        `a context is whole rows of ${w} values (dimContext); got ${n} values`);
    }
    if (n / w > max) {
      throw new PicoformerError(ErrorCode.BAD_ARGUMENT,
        `${n / w} context rows do not fit the ${max} of the load option maxContext`);
    }
    new Float32Array(this.#memory.buffer, this.#x.pf_context_ptr() >>> 0, n).set(context);
    this.#check(this.#x.pf_set_context(n / w));
  }

  /** Runs `tokens` after what is cached; returns the last position's logits (see {@link logits}). */
  prefill(tokens) {
    this.#check(this.#x.pf_prefill(this.#writeTokens(tokens)));
    return this.logits;
  }

  /** Runs one token; returns its logits (see {@link logits}). */
  step(token) {
    this.#check(this.#x.pf_step(checkToken(token)));
    return this.logits;
  }

  /** Runs `tokens` and returns every position's logits, a new Float32Array(n × numTokens). Needs `fullRows >= n`. */
  forward(tokens) {
    const n = this.#writeTokens(tokens);
    this.#check(this.#x.pf_forward_all(n));
    const ptr = this.#x.pf_full_logits_ptr() >>> 0;
    return new Float32Array(this.#memory.buffer, ptr, n * this.numTokens).slice();
  }

  /** Largest |full − stepwise| logit difference over `tokens` from an empty cache (needs `fullRows`). */
  fullVsStepwise(tokens) {
    const d = this.#x.pf_full_vs_stepwise(this.#writeTokens(tokens));
    if (d < 0) this.#throw(d);
    return d;
  }

  /** Seeds the sampler (a non-negative integer Number or a BigInt). */
  seed(seed) {
    const s = BigInt.asUintN(64, BigInt(seed));
    this.#x.pf_seed(Number(s & 0xffffffffn), Number(s >> 32n));
  }

  /**
   * Picks the next token from the current logits with picoformer's sampler: temperature 0
   * (default) is greedy; topK 0, topP 1 and minP 0 are off.
   */
  sample({ temperature = 0, topK = 0, topP = 1, minP = 0 } = {}) {
    return this.#check(this.#x.pf_sample(temperature, topK >>> 0, topP, minP));
  }

  /**
   * Yields generated tokens one at a time: prefills `prompt` (may be empty to continue), then
   * samples and feeds back each token. Stops after `maxTokens` or when the cache is full.
   */
  *stream(prompt, { maxTokens = 32, temperature = 0, topK = 0, topP = 1, minP = 0, seed } = {}) {
    if (seed !== undefined) this.seed(seed);
    if (prompt.length > 0) this.prefill(prompt);
    const opts = { temperature, topK, topP, minP };
    for (let i = 0; i < maxTokens; i++) {
      const t = this.sample(opts);
      yield t;
      if (i + 1 === maxTokens) break;
      const r = this.#x.pf_step(t);
      if (r === -ErrorCode.CACHE_FULL || r === -ErrorCode.POSITION_OUT_OF_RANGE) break;
      this.#check(r);
    }
  }

  /**
   * Generates up to `maxTokens` tokens after `prompt` and returns them as an array. With
   * `onToken(token, index)` each token is reported as soon as it is sampled; without it the whole
   * loop runs inside wasm (same tokens, fewer calls).
   */
  generate(prompt, { maxTokens = 32, temperature = 0, topK = 0, topP = 1, minP = 0, seed, onToken } = {}) {
    if (onToken) {
      const out = [];
      for (const t of this.stream(prompt, { maxTokens, temperature, topK, topP, minP, seed })) {
        onToken(t, out.length);
        out.push(t);
      }
      return out;
    }
    if (seed !== undefined) this.seed(seed);
    const n = this.#writeTokens(prompt);
    const max = Math.min(maxTokens, this.capacity);
    const count = this.#check(this.#x.pf_generate(n, max, temperature, topK >>> 0, topP, minP));
    return Array.from(new Uint32Array(this.#memory.buffer, this.#x.pf_out_ptr() >>> 0, count));
  }

  /** Forgets everything cached (a context set stays set: the next call projects it again). */
  reset() { this.#x.pf_reset(); }

  /** Rewinds the cache to `length` positions. */
  truncate(length) { this.#check(this.#x.pf_truncate(length >>> 0)); }

  #writeTokens(tokens) {
    const n = tokens.length;
    if (n > this.capacity) {
      throw new PicoformerError(ErrorCode.CACHE_FULL,
        `${n} tokens do not fit the KV cache capacity of ${this.capacity}`);
    }
    const buf = new Uint32Array(this.#memory.buffer, this.#x.pf_tokens_ptr() >>> 0, n);
    for (let i = 0; i < n; i++) buf[i] = checkToken(tokens[i]);
    return n;
  }

  #check(r) {
    if (this.#broken) throw new Error('picoformer: the module trapped earlier and cannot be used');
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
