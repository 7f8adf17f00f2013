// Types of js/picoformer.mjs (checked with `tsc --noEmit` in CI against test/types-check.ts).

/** Error codes: those of the wasm exports, and TRAPPED (the module trapped; load again). */
export declare const ErrorCode: Readonly<{
  LOAD: 1;
  UNSUPPORTED_MODEL: 2;
  OUT_OF_MEMORY: 3;
  TOKEN_OUT_OF_RANGE: 4;
  CACHE_FULL: 5;
  POSITION_OUT_OF_RANGE: 6;
  NOT_LOADED: 7;
  BAD_ARGUMENT: 8;
  OTHER: 9;
  TRAPPED: 10;
}>;
export type ErrorCodeName = keyof typeof ErrorCode;

/** Stop tokens a generation can have (16). */
export declare const MAX_STOP_TOKENS: number;
/** Stop strings a generation can have (16). */
export declare const MAX_STOP_STRINGS: number;

/** A refused call; nothing changed (except where the README says otherwise). */
export declare class PicoformerError extends Error {
  constructor(code: number, message: string);
  readonly name: 'PicoformerError';
  /** One of {@link ErrorCode}. */
  readonly code: number;
  /** Its name, e.g. 'BAD_ARGUMENT'. */
  readonly codeName: ErrorCodeName | 'UNKNOWN';
}

export type KvType = 'f32' | 'f16' | 'bf16';
export type Build = 'auto' | 'simd128' | 'plain';
/** How weights are held: as the file stores them, or f16/bf16 tensors widened to f32. */
export type Weights = 'stored' | 'f32';
export type TokenIds = ArrayLike<number>;
/** Bytes: an ArrayBuffer or any typed array / view (a Node Buffer too). */
export type Bytes = ArrayBuffer | ArrayBufferView;

export interface LoadOptions {
  /** KV cache positions (prompt + generated tokens), an integer in 1..2^32-1. Default 256. */
  capacity?: number;
  /** Cache element type. Default 'f32'. */
  kv?: KvType;
  /** Prefill positions per pass, 1..2^32-1. Default 16. */
  chunk?: number;
  /** Rows for {@link Picoformer.forward}, 0..2^32-1. Default 0. */
  fullRows?: number;
  /** Context rows of a cross-attending model (required for one). Default 0. */
  maxContext?: number;
  /**
   * 'stored' (default): the tensors as the file stores them, read in place. 'f32': f16 and bf16
   * tensors widened to f32 at load (exact; twice their bytes in `plan.weights`), which runs
   * faster where the runtime has no f16 conversion (simd128). Q8_0 and f32 tensors are kept.
   */
  weights?: Weights;
  /**
   * Also pack the decoder's matrices into f32 panels for prefill (`plan.panels` bytes): faster
   * prefill of a model that generates tokens (other kinds ignore it). Default false.
   */
  panels?: boolean;
}

export interface CreateOptions extends LoadOptions {
  /** Which of the package's builds: 'auto' (simd128 where supported, the default), 'simd128', 'plain'. */
  build?: Build;
}

export interface SampleOptions {
  /** 0 (default) is greedy; otherwise a finite temperature > 0. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 (default) is off. */
  topK?: number;
  /** Nucleus threshold in 0..1; 1 (default) is off. */
  topP?: number;
  /** Drop tokens below minP × the most likely one's probability, 0..1; 0 (default) is off. */
  minP?: number;
}

/** Why a generation ended. */
export type StopReason = 'maxTokens' | 'stopToken' | 'stopString' | 'cacheFull' | 'aborted';

export interface StreamOptions extends SampleOptions {
  /** At most this many new tokens, an integer in 0..2^32-1. Default 32. */
  maxTokens?: number;
  /** Reseeds the sampler first. */
  seed?: number | bigint;
  /** Penalty (> 0) on the logits of recent tokens; 1 (default) is off. */
  repetitionPenalty?: number;
  /** How many recent tokens (prompt and generated) it covers, 0..capacity. Default: the capacity. */
  repetitionWindow?: number;
  /** Sliding window: when the cache is full, re-encode the last `slide` tokens (1..capacity) and go on. 0 (default): stop. */
  slide?: number;
  /** Stop after producing one of these (at most 16; it is returned). */
  stopTokens?: TokenIds;
  /**
   * Stop once the generated text (not the prompt's) contains one of these (at most 16, each
   * non-empty), with stopReason 'stopString': the token that completes it is returned, the
   * generation ends after it. The text of a token is `tokenText`'s; without it the tokens are
   * bytes (token t < 256 is byte t, as in the demo model) and the strings match as UTF-8.
   */
  stopStrings?: string | readonly string[];
  /** The text of each token id, for `stopStrings` (in a worker: an array only). */
  tokenText?: readonly string[] | ((token: number) => string);
  /** Ends the generation with stopReason 'aborted'. */
  signal?: AbortSignal;
}

export interface GenerateOptions extends StreamOptions {
  /** Called with each token as soon as it is sampled. */
  onToken?: (token: number, index: number) => void;
}

/** The generated tokens, and why it stopped (not enumerable). */
export type GenerateResult = number[] & { readonly stopReason: StopReason };

/** A generation's tokens, for `for...of` or `for await...of`. */
export interface TokenStream extends IterableIterator<number>, AsyncIterable<number> {
  /** Why it ended; undefined while it runs. */
  readonly stopReason: StopReason | undefined;
}

/**
 * What a model file holds: a decoder or encoder `TransformerWrapper`, a bare `Decoder` or
 * `Encoder`, a `ContinuousTransformerWrapper` around a decoder or an encoder, an `XTransformer`.
 */
export type ModelKind =
  | 'decoderWrapper'
  | 'encoderWrapper'
  | 'decoder'
  | 'encoder'
  | 'continuousDecoder'
  | 'continuousEncoder'
  | 'xtransformer';

/** A padding mask: one entry per position (or context row); true or 1 is real, false or 0 padding. */
export type Mask = ArrayLike<boolean | number>;

export interface EncodeOptions {
  /** x-transformers' `mask` of the window (or source). Default: every position is real. */
  mask?: Mask;
  /** An encoderWrapper's output: its logits (default) or its embeddings (`plan.dim` wide). */
  output?: 'logits' | 'embeddings';
}

export interface Plan {
  weights: number;
  kvCache: number;
  scratch: number;
  logits: number;
  fullLogits: number;
  sampler: number;
  tokens: number;
  arena: number;
  capacity: number;
  chunk: number;
  numTokens: number;
  dim: number;
  depth: number;
  memory: number;
  contextCache: number;
  context: number;
  maxContext: number;
  dimContext: number;
  kind: ModelKind;
  /** Values per input position: 1 (a token id), `dim_in` (continuous) or `dim` (bare layers). */
  inputWidth: number;
  /** Values per output row: logits width, `dim_out` or `dim` (an XTransformer's embeddings: `dim`). */
  outputWidth: number;
  /** The output is one row (`average_pool_embed`). */
  pooled: boolean;
  /** Bytes of the input buffer of an encoder or streaming decoder. */
  inputs: number;
  /** Bytes of its output buffer. */
  outputs: number;
  /** Bytes of the padding masks (the module's and the ones written from JS). */
  masks: number;
  /** An XTransformer: bytes of its encoder's KV cache and scratch (for `maxContext` source tokens). */
  encoderKvCache: number;
  encoderScratch: number;
  /** An XTransformer: its encoder's vocabulary. */
  sourceTokens: number;
  /** Bytes of the decoder's f32 prefill panels (the `panels` load option; 0 without). */
  panels: number;
}

export declare class Picoformer {
  private constructor(instance: WebAssembly.Instance);
  /** Loads a model into the package's own .wasm (simd128 where supported). */
  static create(model: Bytes, options?: CreateOptions): Promise<Picoformer>;
  /** Loads a model into the given build (bytes, compiled module, or a fresh instance). */
  static load(
    wasm: Bytes | WebAssembly.Module | WebAssembly.Instance,
    model: Bytes,
    options?: LoadOptions,
  ): Promise<Picoformer>;

  readonly plan: Readonly<Plan>;
  readonly numTokens: number;
  readonly capacity: number;
  readonly memoryBytes: number;
  /** What the file holds; a call it does not take throws BAD_ARGUMENT. */
  readonly kind: ModelKind;
  /** Positions cached. */
  readonly length: number;
  /** Why the last generation ended. */
  readonly stopReason: StopReason | undefined;
  /** Sliding-window re-encodes since loading. */
  readonly reencodes: number;
  /** The module trapped: every call throws TRAPPED. */
  readonly broken: boolean;
  /** The last position's logits (a view, overwritten by the next call). */
  readonly logits: Float32Array;

  /** A cross-attending model's context (rows × `plan.dimContext`), with its padding mask. */
  setContext(context: ArrayLike<number>, mask?: Mask): void;
  /**
   * An encoder's window (token ids for an encoderWrapper, rows of `plan.inputWidth` values
   * otherwise) or an XTransformer's source (token ids): a new Float32Array of rows × width.
   */
  encode(input: TokenIds | ArrayLike<number>, options?: EncodeOptions): Float32Array;
  prefill(tokens: TokenIds): Float32Array;
  step(token: number): Float32Array;
  /** Decoder wrappers: every position's logits. Bare and continuous decoders: rows of values in, their outputs out. */
  forward(input: TokenIds | ArrayLike<number>): Float32Array;
  fullVsStepwise(tokens: TokenIds): number;
  seed(seed: number | bigint): void;
  sample(options?: SampleOptions): number;
  generate(prompt: TokenIds, options?: GenerateOptions): GenerateResult;
  stream(prompt: TokenIds, options?: StreamOptions): TokenStream;
  reset(): void;
  truncate(length: number): void;
}

/** Whether this runtime runs WebAssembly simd128. */
export declare function simdSupported(): boolean;
/** The URL of one of the package's builds. */
export declare function wasmUrl(build?: Build): URL;

export interface SafetensorsTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | BigInt64Array | Uint8Array;
}
/** Reads a safetensors file. */
export declare function readSafetensors(src: Bytes): {
  metadata: Record<string, string>;
  tensors: Record<string, SafetensorsTensor>;
};
