// Type declarations for tinyrustlm.mjs (hand-written; the module's JSDoc says the same in prose).
// harness/tests/abi_facts.rs checks the constants and diagnostics fields against the runtime's tables.
// Records that mirror an ABI record or `trl ... --json` keep its snake_case field names.

/** ABI version this wrapper speaks (`TRL_ABI_VERSION`). */
export const ABI_VERSION: 1;

/** Status codes (`TRL_STATUS_*` in tinyrustlm.h), by name. */
export const Status: Readonly<{
  OK: 0;
  OUT_OF_BOUNDS: 1;
  INVALID_ARGUMENT: 2;
  WRONG_STATE: 3;
  OUT_OF_MEMORY: 4;
  CONTEXT_FULL: 5;
  INVALID_SAMPLING: 6;
  BUFFER_TOO_SMALL: 7;
  TRUNCATED: 16;
  BAD_MAGIC: 17;
  UNSUPPORTED_VERSION: 18;
  BAD_HEADER_LENGTH: 19;
  BAD_FLAGS: 20;
  BAD_HYPERPARAMETER: 21;
  BAD_SECTION_BOUNDS: 22;
  BAD_ALIGNMENT: 23;
  BAD_PADDING: 24;
  BAD_TENSOR_NAME: 25;
  UNSUPPORTED_DTYPE: 26;
  BAD_TENSOR_SHAPE: 27;
  MISSING_TENSOR: 28;
  DUPLICATE_TENSOR: 29;
  UNKNOWN_TENSOR: 30;
  BAD_TENSOR_DATA: 31;
  BAD_QUANT_MODE: 32;
  BAD_PARAMETER_COUNT: 33;
  TOKENIZER_CHECKSUM: 34;
  TENSOR_LAYOUT_CHECKSUM: 35;
  ARTIFACT_CHECKSUM: 36;
  LIMIT_EXCEEDED: 37;
  BAD_TOKENIZER_KIND: 40;
  BAD_TOKEN: 41;
  BAD_MERGE: 42;
  BAD_SPECIAL_TOKEN: 43;
  ADAPTER_BAD_MAGIC: 64;
  ADAPTER_UNSUPPORTED_VERSION: 65;
  ADAPTER_BAD_HEADER: 66;
  ADAPTER_TRUNCATED: 67;
  ADAPTER_CHECKSUM: 68;
  ADAPTER_PARENT_MISMATCH: 69;
  ADAPTER_UNKNOWN_TARGET: 70;
  ADAPTER_DUPLICATE_TARGET: 71;
  ADAPTER_SHAPE_MISMATCH: 72;
  ADAPTER_BAD_RANK: 73;
  ADAPTER_BAD_INDEX: 74;
  ADAPTER_NON_FINITE: 75;
  ADAPTER_BAD_ENCODING: 76;
  ADAPTER_LIMIT_EXCEEDED: 77;
  EVAL_BAD_JSON: 80;
  EVAL_BAD_HEADER: 81;
  EVAL_BAD_CASE: 82;
  EVAL_UNKNOWN_FIELD: 83;
  EVAL_DUPLICATE_FIELD: 84;
  EVAL_DUPLICATE_ID: 85;
  EVAL_BAD_MATCH_RULE: 86;
  EVAL_LIMIT_EXCEEDED: 87;
  EVAL_NO_CASES: 88;
  GRAMMAR_SYNTAX: 96;
  GRAMMAR_UNDEFINED_RULE: 97;
  GRAMMAR_LEFT_RECURSION: 98;
  GRAMMAR_EMPTY_LANGUAGE: 99;
  GRAMMAR_LIMIT_EXCEEDED: 100;
  SCHEMA_INVALID: 101;
  SCHEMA_UNSUPPORTED: 102;
  SCHEMA_TOO_DEEP: 103;
  SESSION_BAD_MAGIC: 112;
  SESSION_UNSUPPORTED_VERSION: 113;
  SESSION_TRUNCATED: 114;
  SESSION_BAD_HEADER: 115;
  SESSION_CHECKSUM: 116;
  SESSION_MODEL_MISMATCH: 117;
  SESSION_ADAPTER_MISMATCH: 118;
  SESSION_KV_DTYPE_MISMATCH: 119;
  SESSION_CONTEXT_TOO_SMALL: 120;
  SESSION_BAD_TOKEN: 121;
}>;

/** The header's name for a status code ("CONTEXT_FULL"), or "STATUS_<n>" for an unknown code. */
export function statusName(code: number): string;

/** `load_model` flags (`TRL_LOAD_*`). */
export const LoadFlags: Readonly<{ KV_F16: 1 }>;
/** `generate_start` flags (`TRL_GEN_*`). */
export const GenFlags: Readonly<{ PARSE_SPECIAL: 1; CONTINUE: 2; IGNORE_EOG: 4 }>;
/** `render_chat` flags (`TRL_CHAT_*`). */
export const ChatFlags: Readonly<{ ADD_GENERATION_PROMPT: 1; CONTINUE: 2; NO_DEFAULT_SYSTEM: 4 }>;
/** `set_grammar` flags (`TRL_GRAMMAR_*`). */
export const GrammarFlags: Readonly<{ JSON_SCHEMA: 1 }>;
/** `read_result` kinds (`TRL_RESULT_*`). */
export const ResultKind: Readonly<{
  TEXT: 0; TOKENS: 1; PROMPT_TOKENS: 2; STATE: 3; TOKENIZED: 4; LOGITS: 5; EVAL_SIDECAR: 6; CHAT_PROMPT: 7; SCORE_LOGPROBS: 8; SCORE_ARGMAX: 9;
  GRAMMAR_STATS: 10; GRAMMAR: 11; LOAD_PROGRESS: 12; SESSION: 13;
}>;
/** Generation states (`TRL_STATE_*`). */
export const GenState: Readonly<{ IDLE: 0; RUNNING: 1; FINISHED: 2 }>;
/** Why a generation finished (`TRL_STOP_*`). */
export const StopReason: Readonly<{ NONE: 0; END_OF_GENERATION: 1; MAX_TOKENS: 2; STOP_STRING: 3; CONTEXT_FULL: 4; GRAMMAR_COMPLETE: 5; GRAMMAR_INCOMPLETE: 6 }>;
/** Storage dtype names by code (FORMAT.md). */
export const DTypeName: Readonly<Record<number, "f32" | "q8_0" | "q4_0" | "q4_1">>;
/** Chat template names by code (FORMAT.md, tokenizer section `chat_template`). */
export const ChatTemplateName: Readonly<Record<number, "none" | "chatml" | "chatml_qwen2" | "gemma">>;
/** SmolLM2's default system prompt. */
export const SMOLLM_SYSTEM: string;
/** Where `make wasm` puts the module, relative to tinyrustlm.mjs. */
export const DEFAULT_WASM_URL: URL;
/** Where `make wasm-threads` puts the threaded module, relative to tinyrustlm.mjs. */
export const DEFAULT_THREADS_WASM_URL: URL;
/** The script each worker thread runs (tinyrustlm-worker.mjs beside tinyrustlm.mjs). */
export const WORKER_URL: URL;
/** Greedy decoding with the header's defaults. */
export const DEFAULT_SAMPLING: Readonly<Required<SamplingOptions>>;

/** A failed call: the status code from tinyrustlm.h and the module's `last_error` text. */
export class TrlError extends Error {
  constructor(status: number, message: string, call?: string);
  readonly name: "TrlError";
  /** `TRL_STATUS_*` code. */
  status: number;
  /** Its name in the header, e.g. "CONTEXT_FULL". */
  statusName: string;
  /** The export (or wrapper method) that failed. */
  call?: string;
}

export type WasmSource = string | URL | Response | ArrayBuffer | ArrayBufferView | WebAssembly.Module;
/** A package: bytes, a Blob/File, a Response, or a URL (in Node also a file path). */
export type ModelSource = ArrayBuffer | ArrayBufferView | Blob | Response | URL | string;

/** Compiles the module (streaming when fetched with the application/wasm type). */
export function compileModule(source?: WasmSource): Promise<WebAssembly.Module>;
/** The declared limits (64 KiB pages) of the threaded module's imported memory; null for a module
 *  that owns its memory (the single-thread flavours). */
export function importedMemoryLimits(module: WebAssembly.Module): Promise<{ minimum: number; maximum: number | null; shared: boolean } | null>;

/** The 128-byte diagnostics record (layout version 1), field names as in the header. */
export interface Diagnostics {
  layout_version: number;
  layout_len: number;
  model_loaded: boolean;
  /** dtype code of the package's matrices; 0xFFFFFFFF with no model. */
  quant_mode: number;
  /** "f32" | "q8_0" | "q4_0" | "q4_1", or null with no model. */
  quant_name: string | null;
  prompt_tokens: number;
  generated_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  /** Activations + KV cache. */
  peak_scratch_bytes: number;
  kv_len: number;
  context_len: number;
  adapters_applied: number;
  assembly_state_crc: number;
  package_bytes: number;
  kv_cache_bytes: number;
  n_params: number;
  tensor_layout_crc: number;
  tokenizer_crc: number;
  linear_memory_bytes: number;
  prefill_ms: number;
  decode_ms: number;
  /** 0 = f32, 1 = f16 (`kvF16` at load). */
  kv_dtype: number;
  /** 0 none, 1 ChatML (SmolLM2's default system prompt), 2 ChatML (Qwen's), 3 Gemma. */
  chat_template: number;
  /** FORMAT.md's name of `chat_template` ("none", "chatml", "chatml_qwen2", "gemma"), null for a code this wrapper does not know. */
  chat_template_name: string | null;
  total_generated_tokens: number;
  /** Input bytes of the last tokenize / generate text that no token covers (0: the ids decode back to it). */
  unencodable_bytes: number;
  /** Threads sharing the matrix products: 1 + running workers (threaded module), else 1. */
  threads: number;
}

/** Parses a diagnostics record (at least 128 bytes). */
export function parseDiagnostics(bytes: Uint8Array): Diagnostics;

export interface ChatMessage {
  role: "system" | "user" | "assistant" | (string & {});
  content: string;
}

/**
 * Renders messages as ChatML (SmolLM2's template) without a model, ending with the assistant prompt.
 * @deprecated The wrapper renders with the module: `lm.formatChat` (the package's template).
 */
export function formatChatML(messages: ChatMessage[], options?: { defaultSystem?: string | null; addGenerationPrompt?: boolean }): string;

/** The message list `render_chat` reads: u32 n_messages, then per message u32 role_len, role, u32 content_len, content (UTF-8, LE). */
export function encodeChatMessages(messages: ChatMessage[]): Uint8Array;

/** The windows `score()` and `trl perplexity` score a text of nTokens in, with a context of `context` positions. */
export function scoreWindows(nTokens: number, context: number): { start: number; end: number; firstScored: number }[];

/** `lm.score(text)`: the fields of `trl perplexity --json`, in its order. */
export interface ScoreResult {
  /** Every token of the text, BOS included. */
  tokens: number[];
  /** argmax[i]: the most likely token after tokens[0..=i] (as many as tokens). */
  argmax: number[];
  /** nll[i] = -ln P(tokens[i + 1] | tokens[0..=i]) (one fewer than tokens). */
  nll: number[];
  /** exp(mean nll). */
  perplexity: number;
}

/** `set_sampling`'s parameters; see tinyrustlm.h for ranges. */
export interface SamplingOptions {
  /** 0 = greedy (default). */
  temperature?: number;
  /** 0 = off. */
  topK?: number;
  /** (0, 1]; 1 = off. */
  topP?: number;
  /** [0, 1); 0 = off. */
  minP?: number;
  /** 1..=10; 1 = off. */
  repetitionPenalty?: number;
  repetitionWindow?: number;
  /** u64; same seed ⇒ same tokens on every host. */
  seed?: number | bigint;
}

export interface GenerateOptions {
  /** Default 256. */
  maxTokens?: number;
  /** Recognise `<|im_start|>`-style text in the prompt (default true). */
  parseSpecial?: boolean;
  /** Keep the KV cache: the prompt extends the conversation so far (`TRL_GEN_CONTINUE`). */
  continue?: boolean;
  /** Do not stop at end-of-generation tokens. */
  ignoreEog?: boolean;
  signal?: AbortSignal;
  /** Set before starting (otherwise the settings in force are kept). */
  sampling?: SamplingOptions;
  /** Constrain the output to JSON valid against this schema (an object or its JSON text; README "Structured output"). */
  jsonSchema?: object | string;
  /** Constrain the output to this GBNF grammar. Without jsonSchema or grammar the call is unconstrained. */
  grammar?: string;
  /** Replace the stop strings before starting. */
  stop?: string[];
}

export interface ChatOptions {
  maxTokens?: number;
  ignoreEog?: boolean;
  signal?: AbortSignal;
  sampling?: SamplingOptions;
  stop?: string[];
  /** As in GenerateOptions: constrain the answer (none: unconstrained). */
  jsonSchema?: object | string;
  grammar?: string;
  /** Put first when messages[0] is not a system message; default: the package's template's own (SMOLLM_SYSTEM for SmolLM2, none for Gemma), null for none. */
  defaultSystem?: string | null;
  /** Continue the KV cache when the messages extend the previous chat (default true). */
  reuseContext?: boolean;
}

export interface LoadProgress {
  phase: "read" | "validate" | "done";
  loaded: number;
  /** null when the source does not say its size. */
  total: number | null;
  /** Bytes that passed their checks (a streamed load verifies as it receives; 0 until "done" for
   *  bytes loaded whole). */
  verified: number;
}

export interface LoadModelOptions {
  /** KV cache positions; 0 = min(max_context, 2048). */
  contextLength?: number;
  /** Keep the KV cache in f16 (half its memory; `diagnostics().kv_dtype` becomes 1). */
  kvF16?: boolean;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

export interface GenerationState {
  state: number;
  stop_reason: number;
  prompt_tokens: number;
  generated_tokens: number;
}

/** The outcome of a generation, with `trl generate --json`'s field names. */
export interface GenerationResult {
  prompt_tokens: number[];
  tokens: number[];
  stop_reason: number;
  state: number;
  /** Present on the value returned by complete(), generate() and chat(). */
  text?: string;
}

export interface EvalResult {
  /** The sidecar's exact bytes (UTF-8 JSON). */
  bytes: Uint8Array;
  text: string;
  sidecar: any;
}

/** Options of TinyRustLM.load for the threaded module (abi/THREADS.md). */
export interface LoadOptions {
  /** Threads in all (the leader and threads - 1 workers) for the threaded module; default: the
   *  host's cores (`os.availableParallelism()`, `navigator.hardwareConcurrency`), at most 64. */
  threads?: number;
  /** The single-thread module loaded where memory cannot be shared (a page that is not
   *  cross-origin isolated); default DEFAULT_WASM_URL; null: throw instead. */
  fallback?: WasmSource | null;
  /** The shared memory's maximum in bytes (threaded module only; default 4 GiB). */
  maxMemoryBytes?: number;
  /** The worker script; default WORKER_URL. */
  workerUrl?: string | URL;
}

/** Where `make wasm-relaxed` puts the relaxed-SIMD module. */
export const DEFAULT_RELAXED_WASM_URL: URL;
/** Whether this engine validates the relaxed-SIMD instruction the relaxed flavour uses. */
export function relaxedSimdSupported(): boolean;
export interface ModuleChoice {
  flavour: "threads" | "relaxed-simd" | "simd128";
  url: string;
  reason: string;
}
/** The module TinyRustLM.load() runs when given none: threaded (threads > 1 asked for and memory
 *  can be shared), else relaxed-SIMD (the engine validates it), else SIMD128; the same bits. */
export function chooseModule(options?: { threads?: number }): { flavour: ModuleChoice["flavour"]; url: URL; reason: string; threadsUnavailable?: string };

/** One instance of the module: one model, one conversation at a time. */
export class TinyRustLM {
  /**
   * Compiles (or reuses) the module and instantiates it. The threaded module gets a shared memory
   * and threads - 1 workers (resolves when all work); where memory cannot be shared the fallback
   * single-thread module is loaded and threadsFallbackReason says why.
   */
  static load(wasm?: WasmSource, options?: LoadOptions): Promise<TinyRustLM>;
  /** Wraps an instance that was given the module's imports (`env.trl_now_ms`; for the threaded
   *  module also `env.memory`, passed here as `memory`). Starts no workers. */
  constructor(instance: WebAssembly.Instance, options?: { memory?: WebAssembly.Memory });
  /** Threads sharing the work: 1 + running workers (1 for the single-thread module, after close()). */
  readonly threads: number;
  /** Whether this instance runs the threaded module (shared memory). */
  readonly threaded: boolean;
  /** Why this instance runs on 1 thread although threads were asked for, or null. */
  threadsFallbackReason: string | null;
  /** The module load() chose when given none (flavour, URL, why); null when the caller named it. */
  moduleChoice: Readonly<ModuleChoice> | null;
  /** Stops and joins the workers; the instance keeps working alone with the same output. */
  close(): Promise<void>;
  /** Optional exports present in this build. */
  readonly features: Readonly<{ adapters: boolean; evaluate: boolean }>;
  readonly abiVersion: number;
  /** The raw exports. */
  readonly exports: WebAssembly.Exports;
  /** Linear memory size in bytes. */
  readonly memoryBytes: number;

  /** Loads and validates an SLM1 package; resolves to the diagnostics after loading. A source of
   *  known size (a file, a Blob, a response with Content-Length) is streamed and verified chunk by
   *  chunk (load_begin / load_append / load_finish). */
  loadModel(source: ModelSource, options?: LoadModelOptions): Promise<Diagnostics>;
  /** TRL_RESULT_LOAD_PROGRESS: bytes announced, received and verified by the current or last load. */
  loadProgress(): { total: number; received: number; verified: number };
  unloadModel(): void;
  /** Empties the KV cache and the session. */
  reset(): void;
  /** The conversation in the KV cache as SES1 bytes (FORMAT.md "Session snapshots"). */
  saveSession(): Uint8Array;
  /** Restores saveSession() bytes (same package, adapters and KV dtype); continue with `continue: true`. */
  restoreSession(bytes: ArrayBuffer | ArrayBufferView): void;

  setSampling(options?: SamplingOptions): void;
  setStopStrings(strings: string[]): void;

  /** Constrain later generations by a JSON Schema or GBNF grammar; with neither, clear it. */
  setGrammar(options?: { jsonSchema?: object | string; grammar?: string }): void;
  /** Token ids of a text, as a prompt is encoded (with BOS when the tokenizer adds one). */
  tokenize(text: string, options?: { parseSpecial?: boolean }): number[];
  /** Streams text chunks; abort with options.signal. Returns the result (with text) when done. */
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<string, GenerationResult & { text?: string }, void>;
  /** A whole generation; onText sees the chunks. */
  complete(prompt: string, options?: GenerateOptions & { onText?: (text: string) => void }): Promise<GenerationResult & { text: string }>;
  /** Streams the assistant's answer to a ChatML conversation. */
  chat(messages: ChatMessage[], options?: ChatOptions): AsyncGenerator<string, GenerationResult & { text: string }, void>;
  /** Renders a conversation with the loaded package's chat template (render_chat), as chat() does. */
  formatChat(messages: ChatMessage[], options?: { defaultSystem?: string | null; addGenerationPrompt?: boolean }): string;
  /** Scores a text as `trl perplexity --json` does (JSON.stringify gives its bytes); resets the session. */
  score(text: string): Promise<ScoreResult>;
  /** Low level: score_tokens on ids (at most the context length); resets the session. */
  scoreTokens(tokens: number[], options?: { firstScored?: number }): { logprobs: Float32Array; argmax: number[] };
  /** Low level: generate_start without streaming (follow with step() and readText()). */
  start(prompt: string, options?: { maxTokens?: number; parseSpecial?: boolean; continue?: boolean; ignoreEog?: boolean }): void;
  /** Low level: up to maxSteps decode steps, synchronously; returns the state after them. */
  step(maxSteps?: number): GenerationState;
  /** Low level: output text not read yet (reading consumes it). */
  readText(): string;
  state(): GenerationState;
  /** Tokens of the current/last generation (no text: the module hands text out once). */
  result(): GenerationResult;
  logits(): Float32Array;

  diagnostics(): Diagnostics;
  lastError(): string;

  /** Requires features.adapters. */
  validateAdapter(bytes: ArrayBuffer | ArrayBufferView): void;
  applyAdapter(bytes: ArrayBuffer | ArrayBufferView): Diagnostics;
  removeLastAdapter(): Diagnostics;
  resetAdapters(): Diagnostics;

  /** Runs an eval-case file (run_eval) and returns the sidecar's exact bytes; requires features.evaluate. */
  evaluate(cases: string | ArrayBuffer | ArrayBufferView): Promise<EvalResult>;
}
