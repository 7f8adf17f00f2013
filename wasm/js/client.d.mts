// Types of js/client.mjs (PicoformerWorker: a Picoformer in a Web Worker or a Node worker thread).
import type {
  Bytes, CreateOptions, EncodeOptions, GenerateOptions, GenerateResult, Mask, ModelKind, Plan, SampleOptions, StopReason,
  StreamOptions, TokenIds,
} from './picoformer.mjs';
export { PicoformerError, ErrorCode } from './picoformer.mjs';

/** A browser Worker or a Node worker_threads Worker started from js/worker.mjs. */
export type WorkerLike =
  | { postMessage(message: unknown): void; addEventListener(type: 'message', listener: (e: MessageEvent) => void): void; terminate(): unknown }
  | { postMessage(message: unknown): void; on(type: 'message', listener: (data: any) => void): unknown; terminate(): unknown };

/** The tokens of a generation in the worker, for `for await`. */
export interface WorkerTokenStream extends AsyncIterableIterator<number> {
  /** Why it ended; undefined while it runs. */
  readonly stopReason: StopReason | undefined;
}

export declare class PicoformerWorker {
  constructor(worker: WorkerLike);
  /** Loads `model` in `worker` (the worker picks its build, as Picoformer.create). */
  static create(worker: WorkerLike, model: Bytes, options?: CreateOptions): Promise<PicoformerWorker>;
  readonly plan: Readonly<Plan>;
  /** What the file holds. */
  readonly kind: ModelKind;
  readonly numTokens: number;
  readonly capacity: number;
  /** Positions cached, as of the last call that finished. */
  readonly length: number | undefined;
  readonly stopReason: StopReason | undefined;
  readonly reencodes: number | undefined;
  call(method: 'reset' | 'truncate' | 'prefill' | 'step' | 'forward' | 'sample' | 'seed' | 'setContext' | 'fullVsStepwise' | 'encode',
    ...args: unknown[]): Promise<unknown>;
  reset(): Promise<void>;
  truncate(length: number): Promise<void>;
  /** A copy of the last position's logits. */
  prefill(tokens: TokenIds): Promise<Float32Array>;
  step(token: number): Promise<Float32Array>;
  sample(options?: SampleOptions): Promise<number>;
  seed(seed: number | bigint): Promise<void>;
  setContext(context: ArrayLike<number>, mask?: Mask): Promise<void>;
  /** As Picoformer.encode; resolves to the outputs. */
  encode(input: TokenIds | ArrayLike<number>, options?: EncodeOptions): Promise<Float32Array>;
  /** As Picoformer.forward. */
  forward(input: TokenIds | ArrayLike<number>): Promise<Float32Array>;
  generate(prompt: TokenIds, options?: GenerateOptions): Promise<GenerateResult>;
  stream(prompt: TokenIds, options?: StreamOptions): WorkerTokenStream;
  terminate(): unknown;
}
