// tinyrustlm.mjs — the TinyRustLM WebAssembly module from JavaScript.
//
// A hand-written ES module over the raw exports documented in `tinyrustlm.h`, with no dependencies
// and no bundler. The same file runs in browsers (main thread or a Web Worker), Node ≥ 20 and Deno.
//
//     import { TinyRustLM } from "./tinyrustlm.mjs";
//     const lm = await TinyRustLM.load("tinyrustlm.wasm");
//     await lm.loadModel("smollm2-135m-q8_0.slm", { onProgress: (p) => console.log(p.loaded, p.total) });
//     for await (const text of lm.chat([{ role: "user", content: "Hi!" }])) process.stdout.write(text);
//
// Threads (abi/THREADS.md): load the threaded module (`make wasm-threads`) and the wrapper starts its
// workers (`node:worker_threads` in Node and Deno, module Web Workers in browsers), one per core
// unless told:
//
//     const lm = await TinyRustLM.load(DEFAULT_THREADS_WASM_URL, { threads: 2 });
//     lm.threads;                // 2, or 1 with lm.threadsFallbackReason saying why
//     await lm.close();          // stops and joins the workers (the instance keeps working alone)
//
// Where memory cannot be shared (a page that is not cross-origin isolated) it loads the
// single-thread module instead, sets `threadsFallbackReason` and warns on the console once.
//
// Conventions
// - Methods and options are camelCase. Records that mirror a record of the ABI or of `trl ... --json`
//   (diagnostics, generation results) keep its snake_case field names, so the C header, the CLI's JSON
//   and this module share one vocabulary.
// - Every failed export call throws a `TrlError` (an `Error`) with `.status` (the code from the
//   header) and `.message` (the module's `last_error` text). As the header promises, a failed call
//   changed nothing, so the instance stays usable.
// - One instance holds one model. Calls are synchronous inside the module; `generate` yields to the
//   event loop between tokens so an AbortSignal (or a worker's "stop" message) is seen at once.

// ---- Constants from tinyrustlm.h ----------------------------------------------------------------
// These restate the runtime's tables (src/abi_facts.rs, src/diag.rs); harness/tests/abi_facts.rs
// fails when a constant, an export this file calls, or a diagnostics field here differs from them.

/** ABI version this wrapper speaks (`TRL_ABI_VERSION`). */
export const ABI_VERSION = 1;

/** Status codes (`TRL_STATUS_*`), by name. */
export const Status = Object.freeze({
  OK: 0,
  OUT_OF_BOUNDS: 1,
  INVALID_ARGUMENT: 2,
  WRONG_STATE: 3,
  OUT_OF_MEMORY: 4,
  CONTEXT_FULL: 5,
  INVALID_SAMPLING: 6,
  BUFFER_TOO_SMALL: 7,
  TRUNCATED: 16,
  BAD_MAGIC: 17,
  UNSUPPORTED_VERSION: 18,
  BAD_HEADER_LENGTH: 19,
  BAD_FLAGS: 20,
  BAD_HYPERPARAMETER: 21,
  BAD_SECTION_BOUNDS: 22,
  BAD_ALIGNMENT: 23,
  BAD_PADDING: 24,
  BAD_TENSOR_NAME: 25,
  UNSUPPORTED_DTYPE: 26,
  BAD_TENSOR_SHAPE: 27,
  MISSING_TENSOR: 28,
  DUPLICATE_TENSOR: 29,
  UNKNOWN_TENSOR: 30,
  BAD_TENSOR_DATA: 31,
  BAD_QUANT_MODE: 32,
  BAD_PARAMETER_COUNT: 33,
  TOKENIZER_CHECKSUM: 34,
  TENSOR_LAYOUT_CHECKSUM: 35,
  ARTIFACT_CHECKSUM: 36,
  LIMIT_EXCEEDED: 37,
  BAD_TOKENIZER_KIND: 40,
  BAD_TOKEN: 41,
  BAD_MERGE: 42,
  BAD_SPECIAL_TOKEN: 43,
  // Adapter packages (64..=79; FORMAT.md, "Adapters").
  ADAPTER_BAD_MAGIC: 64,
  ADAPTER_UNSUPPORTED_VERSION: 65,
  ADAPTER_BAD_HEADER: 66,
  ADAPTER_TRUNCATED: 67,
  ADAPTER_CHECKSUM: 68,
  ADAPTER_PARENT_MISMATCH: 69,
  ADAPTER_UNKNOWN_TARGET: 70,
  ADAPTER_DUPLICATE_TARGET: 71,
  ADAPTER_SHAPE_MISMATCH: 72,
  ADAPTER_BAD_RANK: 73,
  ADAPTER_BAD_INDEX: 74,
  ADAPTER_NON_FINITE: 75,
  ADAPTER_BAD_ENCODING: 76,
  ADAPTER_LIMIT_EXCEEDED: 77,
  // Eval case files (80..=95; FORMAT.md, "Eval cases and sidecars").
  EVAL_BAD_JSON: 80,
  EVAL_BAD_HEADER: 81,
  EVAL_BAD_CASE: 82,
  EVAL_UNKNOWN_FIELD: 83,
  EVAL_DUPLICATE_FIELD: 84,
  EVAL_DUPLICATE_ID: 85,
  EVAL_BAD_MATCH_RULE: 86,
  EVAL_LIMIT_EXCEEDED: 87,
  EVAL_NO_CASES: 88,
  // Grammars and JSON Schemas (96..=111; README, "Structured output").
  GRAMMAR_SYNTAX: 96,
  GRAMMAR_UNDEFINED_RULE: 97,
  GRAMMAR_LEFT_RECURSION: 98,
  GRAMMAR_EMPTY_LANGUAGE: 99,
  GRAMMAR_LIMIT_EXCEEDED: 100,
  SCHEMA_INVALID: 101,
  SCHEMA_UNSUPPORTED: 102,
  SCHEMA_TOO_DEEP: 103,
  // Session snapshots (112..=127; FORMAT.md, "Session snapshots").
  SESSION_BAD_MAGIC: 112,
  SESSION_UNSUPPORTED_VERSION: 113,
  SESSION_TRUNCATED: 114,
  SESSION_BAD_HEADER: 115,
  SESSION_CHECKSUM: 116,
  SESSION_MODEL_MISMATCH: 117,
  SESSION_ADAPTER_MISMATCH: 118,
  SESSION_KV_DTYPE_MISMATCH: 119,
  SESSION_CONTEXT_TOO_SMALL: 120,
  SESSION_BAD_TOKEN: 121,
});

/**
 * The header's name for a status code ("CONTEXT_FULL"), or "STATUS_<n>" for a code this wrapper
 * does not know (a newer module).
 * @param {number} code
 * @returns {string}
 */
export function statusName(code) {
  for (const [name, value] of Object.entries(Status)) if (value === code) return name;
  return `STATUS_${code}`;
}

/** `load_model` flags (`TRL_LOAD_*`). */
export const LoadFlags = Object.freeze({ KV_F16: 1 });

/** `generate_start` flags (`TRL_GEN_*`). */
export const GenFlags = Object.freeze({ PARSE_SPECIAL: 1, CONTINUE: 2, IGNORE_EOG: 4 });

/** `render_chat` flags (`TRL_CHAT_*`). */
export const ChatFlags = Object.freeze({ ADD_GENERATION_PROMPT: 1, CONTINUE: 2, NO_DEFAULT_SYSTEM: 4 });

/** `set_grammar` flags (`TRL_GRAMMAR_*`). */
export const GrammarFlags = Object.freeze({ JSON_SCHEMA: 1 });

/** `read_result` kinds (`TRL_RESULT_*`). */
export const ResultKind = Object.freeze({
  TEXT: 0, TOKENS: 1, PROMPT_TOKENS: 2, STATE: 3, TOKENIZED: 4, LOGITS: 5, EVAL_SIDECAR: 6, CHAT_PROMPT: 7, SCORE_LOGPROBS: 8, SCORE_ARGMAX: 9,
  GRAMMAR_STATS: 10, GRAMMAR: 11, LOAD_PROGRESS: 12, SESSION: 13,
});

/** Generation states (`TRL_STATE_*`). */
export const GenState = Object.freeze({ IDLE: 0, RUNNING: 1, FINISHED: 2 });

/** Why a generation finished (`TRL_STOP_*`). */
export const StopReason = Object.freeze({
  NONE: 0, END_OF_GENERATION: 1, MAX_TOKENS: 2, STOP_STRING: 3, CONTEXT_FULL: 4, GRAMMAR_COMPLETE: 5, GRAMMAR_INCOMPLETE: 6,
});

/** Storage dtype codes (FORMAT.md, "Dtypes"), as reported in `diagnostics().quant_mode`. */
export const DTypeName = Object.freeze({ 0: "f32", 1: "q8_0", 2: "q4_0", 3: "q4_1" });

/**
 * Chat template codes (FORMAT.md, tokenizer section `chat_template`), as reported in
 * `diagnostics().chat_template`: ChatML with SmolLM2's or Qwen2.5's default system prompt, or Gemma 3's
 * turns (`<start_of_turn>`, `<end_of_turn>`, no default system prompt).
 */
export const ChatTemplateName = Object.freeze({ 0: "none", 1: "chatml", 2: "chatml_qwen2", 3: "gemma" });

/** @private The token each template's answers end on, which a continued chat finds in the KV cache. */
const END_OF_TURN_TEXT = { 1: "<|im_end|>", 2: "<|im_end|>", 3: "<end_of_turn>" };

/** SmolLM2's default system prompt, as its chat template (and `trl --chat`) adds it. */
export const SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/** Size of the diagnostics record, layout version 1. */
const DIAGNOSTICS_LEN = 128;
/** Bytes of the wrapper's reusable scratch buffer; results larger than this get a buffer of their own. */
const SCRATCH_CAP = 16384;
/** Bytes handed to one load_append (a larger chunk from the source is split). */
const STREAM_CHUNK = 1 << 20;
/** `last_error` messages are short; longer ones are cut here (must not exceed SCRATCH_CAP). */
const ERROR_CAP = 4096;
/** The buffer `last_error` is read into when there is no memory for the scratch buffer. */
const SMALL_ERROR_CAP = 512;
/** Largest buffer wasm32 can address (`alloc` takes a u32). */
const MAX_U32 = 0xffffffff;

// ---- Errors ---------------------------------------------------------------------------------------

/**
 * A failed call: `.status` is the code from `tinyrustlm.h`, `.statusName` its name, `.message` the
 * module's `last_error` text (which names the field, the value and the rule it broke).
 */
export class TrlError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {string} [call] the export that failed
   */
  constructor(status, message, call) {
    super(message);
    this.name = "TrlError";
    /** @type {number} */
    this.status = status;
    /** @type {string} */
    this.statusName = statusName(status);
    /** @type {string | undefined} */
    this.call = call;
  }
}

function abortError(signal) {
  if (signal.reason !== undefined) return signal.reason;
  // DOMException exists in browsers, Node ≥ 17 and Deno.
  return new DOMException("The operation was aborted.", "AbortError");
}

// ---- Host helpers ---------------------------------------------------------------------------------

const isNode = typeof process !== "undefined" && process.versions != null && process.versions.node != null && typeof Deno === "undefined";

/** Yields to the event loop (a macrotask), so messages and abort events are delivered. */
const yieldToEventLoop = (() => {
  if (typeof setImmediate === "function") return () => new Promise((resolve) => setImmediate(resolve));
  if (typeof MessageChannel === "function") {
    // A message round trip is not clamped the way nested setTimeout(0) is (4 ms in browsers).
    const queue = [];
    let channel = null;
    return () =>
      new Promise((resolve) => {
        if (channel === null) {
          channel = new MessageChannel();
          channel.port1.onmessage = () => queue.shift()();
        }
        queue.push(resolve);
        channel.port2.postMessage(0);
      });
  }
  return () => new Promise((resolve) => setTimeout(resolve, 0));
})();

/** True for a string that parses as an absolute URL (http:, https:, file:, blob:, data:). */
function isAbsoluteUrl(s) {
  try {
    new URL(s);
    return /^[a-z][a-z0-9+.-]*:/i.test(s) && !/^[a-z]:[\\/]/i.test(s); // not a Windows drive path
  } catch {
    return false;
  }
}

/** In Node, a string that is not an absolute URL, or a file: URL, is read from the file system. */
function nodeFilePath(source) {
  if (!isNode) return null;
  if (source instanceof URL) return source.protocol === "file:" ? source : null;
  if (typeof source === "string") {
    if (!isAbsoluteUrl(source)) return source;
    if (source.startsWith("file:")) return new URL(source);
  }
  return null;
}

/** A web ReadableStream as an async iterable of Uint8Array (not every browser iterates streams). */
async function* readChunks(stream) {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value instanceof Uint8Array ? value : new Uint8Array(value);
    }
  } finally {
    // Runs on early exit too (an error or abort in the consumer): stop the download.
    reader.cancel().catch(() => {});
  }
}

function asBytes(source) {
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  if (typeof SharedArrayBuffer !== "undefined" && source instanceof SharedArrayBuffer) return new Uint8Array(source);
  return null;
}

// ---- Loading the module ---------------------------------------------------------------------------

/** Where `make wasm` puts the module, relative to this file (used when no source is given). */
export const DEFAULT_WASM_URL = new URL("../target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", import.meta.url);

/** Where `make wasm-threads` puts the threaded module, relative to this file. */
export const DEFAULT_THREADS_WASM_URL = new URL("../target/threads/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", import.meta.url);

/** Where `make wasm-relaxed` puts the relaxed-SIMD module, relative to this file. */
export const DEFAULT_RELAXED_WASM_URL = new URL("../target/relaxed/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", import.meta.url);

/**
 * A module with one function running `i32x4.relaxed_dot_i8x16_i7x16_add_s`, the relaxed
 * instruction the relaxed-SIMD flavour's kernels use: a host that validates it runs that flavour.
 */
const RELAXED_PROBE = (() => {
  const zeros = new Array(16).fill(0);
  const v128Const = [0xfd, 0x0c, ...zeros];
  // no locals; three v128 operands; the relaxed dot (0xfd 0x113, LEB128); drop; end
  const body = [0x00, ...v128Const, ...v128Const, ...v128Const, 0xfd, 0x93, 0x02, 0x1a, 0x0b];
  const code = [0x01, body.length, ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x0a, code.length, ...code, // code section
  ]);
})();

/** Whether this engine validates the relaxed-SIMD instruction the relaxed flavour uses. */
export function relaxedSimdSupported() {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

/**
 * Which module {@link TinyRustLM.load} runs when given none: the threaded one when more than one
 * thread was asked for and memory can be shared here; else the relaxed-SIMD one when the engine
 * validates a relaxed instruction; else the plain SIMD128 one. All three give the same bits.
 * @param {{ threads?: number }} [options]
 * @returns {{ flavour: "threads" | "relaxed-simd" | "simd128", url: URL, reason: string, threadsUnavailable?: string }}
 *   `threadsUnavailable`: why threads were asked for but cannot run here
 */
export function chooseModule({ threads } = {}) {
  const single = relaxedSimdSupported()
    ? { flavour: "relaxed-simd", url: DEFAULT_RELAXED_WASM_URL, reason: "the engine validates relaxed SIMD (i32x4.relaxed_dot_i8x16_i7x16_add_s)" }
    : { flavour: "simd128", url: DEFAULT_WASM_URL, reason: "the engine does not validate relaxed SIMD" };
  if (threads > 1) {
    const unavailable = sharedMemoryUnavailable();
    if (unavailable === null) return { flavour: "threads", url: DEFAULT_THREADS_WASM_URL, reason: `${threads} threads were asked for and memory can be shared` };
    return { ...single, reason: `${single.reason}; no threads: ${unavailable}`, threadsUnavailable: unavailable };
  }
  return single;
}

/** The script each worker thread runs (beside this file). */
export const WORKER_URL = new URL("./tinyrustlm-worker.mjs", import.meta.url);

/**
 * Compiles the TinyRustLM module (it can then be instantiated many times).
 * Sources: a URL or URL string (fetched and compiled while it streams in; in Node a path or file:
 * URL is read from disk), a `Response`, bytes (ArrayBuffer / typed array), or a compiled
 * `WebAssembly.Module` (returned as is).
 * @param {string | URL | Response | ArrayBuffer | ArrayBufferView | WebAssembly.Module} [source]
 * @returns {Promise<WebAssembly.Module>}
 */
export async function compileModule(source = DEFAULT_WASM_URL) {
  if (source instanceof WebAssembly.Module) return source;
  const bytes = asBytes(source);
  if (bytes) return compileBytes(bytes);
  const path = nodeFilePath(source);
  if (path !== null) {
    const { readFile } = await import("node:fs/promises");
    return compileBytes(await readFile(path));
  }
  const response = typeof Response !== "undefined" && source instanceof Response ? source : await fetch(source);
  if (!response.ok) throw new Error(`fetching the module: HTTP ${response.status} ${response.statusText} for ${response.url || source}`);
  if (typeof WebAssembly.compileStreaming === "function" && (response.headers.get("content-type") || "").startsWith("application/wasm")) {
    // A copy of the body is kept for the memory import's limits (read only for the threaded flavour).
    const copy = response.clone();
    const module = await WebAssembly.compileStreaming(response);
    if (importsMemory(module)) moduleLimits.set(module, memoryImportLimits(new Uint8Array(await copy.arrayBuffer())));
    else copy.body?.cancel().catch(() => {});
    return module;
  }
  // A server that does not say application/wasm: compile from the whole body instead.
  return compileBytes(new Uint8Array(await response.arrayBuffer()));
}

/** @private The declared limits of each compiled module's memory import, when its bytes were seen. */
const moduleLimits = new WeakMap();

async function compileBytes(bytes) {
  const module = await WebAssembly.compile(bytes);
  if (importsMemory(module)) moduleLimits.set(module, memoryImportLimits(bytes));
  return module;
}

/** Whether a module imports its memory (`env.memory`: the threaded flavour) instead of exporting it. */
function importsMemory(module) {
  return WebAssembly.Module.imports(module).some((i) => i.kind === "memory" && i.module === "env" && i.name === "memory");
}

/**
 * @private Reads the limits of the `env.memory` import from a module's bytes (the import section;
 * JavaScript's reflection does not give them): { minimum, maximum, shared } in 64 KiB pages.
 */
function memoryImportLimits(bytes) {
  let at = 8; // magic and version
  const byte = () => {
    if (at >= bytes.length) throw new Error("the module's import section ends early");
    return bytes[at++];
  };
  const uleb = () => {
    let result = 0;
    let scale = 1;
    for (;;) {
      const b = byte();
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
  };
  const name = () => {
    const len = uleb();
    at += len;
    return decoder.decode(bytes.subarray(at - len, at));
  };
  const limits = () => {
    const flags = byte();
    const minimum = uleb();
    const maximum = flags & 1 ? uleb() : null;
    return { minimum, maximum, shared: (flags & 2) !== 0 };
  };
  while (at < bytes.length) {
    const id = byte();
    const size = uleb();
    const end = at + size;
    if (id === 2) {
      for (let n = uleb(); n > 0; n--) {
        const [module, field, kind] = [name(), name(), byte()];
        if (kind === 0) uleb(); // function: type index
        else if (kind === 1) (byte(), limits()); // table: reference type, limits
        else if (kind === 2) {
          const l = limits();
          if (module === "env" && field === "memory") return l;
        } else if (kind === 3) (byte(), byte()); // global: value type, mutability
        else if (kind === 4) (byte(), uleb()); // tag: attribute, type index
        else throw new Error(`unknown import kind ${kind} in the module's import section`);
      }
    }
    at = end;
  }
  throw new Error("the module imports no env.memory");
}

/**
 * The declared limits of the threaded module's imported memory, in 64 KiB pages (a host makes the
 * shared memory with these; abi/THREADS.md), or null for a module that owns its memory (the
 * single-thread flavours). A module compiled elsewhere (whose bytes this wrapper never saw) is
 * probed: the smallest shared memory it links against is its minimum.
 * @param {WebAssembly.Module} module
 * @returns {Promise<{ minimum: number, maximum: number | null, shared: boolean } | null>}
 */
export async function importedMemoryLimits(module) {
  if (!importsMemory(module)) return null;
  const known = moduleLimits.get(module);
  if (known) return known;
  const links = async (pages) => {
    try {
      await WebAssembly.instantiate(module, imports(new WebAssembly.Memory({ initial: pages, maximum: MAX_PAGES, shared: true })));
      return true;
    } catch (e) {
      if (e instanceof WebAssembly.LinkError) return false;
      throw e;
    }
  };
  let [low, high] = [0, 1];
  while (!(await links(high))) [low, high] = [high, high * 2];
  while (high - low > 1) {
    const mid = (low + high) >>> 1;
    if (await links(mid)) high = mid;
    else low = mid;
  }
  const limits = { minimum: high, maximum: MAX_PAGES, shared: true };
  moduleLimits.set(module, limits);
  return limits;
}

/**
 * The module's imports: a monotonic clock in milliseconds, only used for tokens/s, and for the
 * threaded flavour the shared memory the host made.
 * @param {WebAssembly.Memory} [memory]
 */
function imports(memory) {
  const env = { trl_now_ms: () => performance.now() };
  if (memory !== undefined) env.memory = memory;
  return { env };
}

// ---- Diagnostics ----------------------------------------------------------------------------------

/**
 * Parses the 128-byte diagnostics record (layout version 1, see `read_diagnostics` in the header).
 * Field names are the header's; 64-bit fields become Numbers (exact below 2^53, which byte and token
 * counts are). `quant_name` is added: the dtype name of `quant_mode`, or null with no model; and
 * `chat_template_name`: FORMAT.md's name of `chat_template` ({@link ChatTemplateName}).
 * @param {Uint8Array} bytes at least 128 bytes
 * @returns {Diagnostics}
 */
export function parseDiagnostics(bytes) {
  if (bytes.byteLength < DIAGNOSTICS_LEN) throw new Error(`diagnostics record is ${bytes.byteLength} bytes, expected ${DIAGNOSTICS_LEN}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, DIAGNOSTICS_LEN);
  const u32 = (at) => v.getUint32(at, true);
  const u64 = (at) => Number(v.getBigUint64(at, true));
  const f32 = (at) => v.getFloat32(at, true);
  const quant_mode = u32(12);
  const chat_template = u32(108);
  return {
    layout_version: u32(0),
    layout_len: u32(4),
    model_loaded: u32(8) !== 0,
    quant_mode,
    quant_name: DTypeName[quant_mode] ?? null,
    prompt_tokens: u32(16),
    generated_tokens: u32(20),
    prefill_tokens_per_s: f32(24),
    decode_tokens_per_s: f32(28),
    peak_scratch_bytes: u64(32),
    kv_len: u32(40),
    context_len: u32(44),
    adapters_applied: u32(48),
    assembly_state_crc: u32(52),
    package_bytes: u64(56),
    kv_cache_bytes: u64(64),
    n_params: u64(72),
    tensor_layout_crc: u32(80),
    tokenizer_crc: u32(84),
    linear_memory_bytes: u64(88),
    prefill_ms: f32(96),
    decode_ms: f32(100),
    kv_dtype: u32(104),
    chat_template,
    chat_template_name: ChatTemplateName[chat_template] ?? null,
    total_generated_tokens: u64(112),
    unencodable_bytes: u32(120),
    threads: u32(124),
  };
}

// ---- Chat format ----------------------------------------------------------------------------------

/**
 * Renders messages in ChatML, the way SmolLM2's chat template does, without a model:
 * `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`.
 * When the first message is not a system message, `defaultSystem` is put first (SmolLM2's own
 * default; pass null to leave it out).
 * @deprecated Kept for callers that have no model at hand. The wrapper itself renders with the
 *   module ({@link TinyRustLM#formatChat}, the `render_chat` export), which uses the loaded package's
 *   chat template; for SmolLM2 the two give the same text.
 * @param {ChatMessage[]} messages
 * @param {{ defaultSystem?: string | null, addGenerationPrompt?: boolean }} [options]
 * @returns {string}
 */
export function formatChatML(messages, { defaultSystem = SMOLLM_SYSTEM, addGenerationPrompt = true } = {}) {
  checkMessages(messages);
  let out = "";
  if (defaultSystem != null && (messages.length === 0 || messages[0].role !== "system")) {
    out += `<|im_start|>system\n${defaultSystem}<|im_end|>\n`;
  }
  for (const m of messages) out += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
  if (addGenerationPrompt) out += "<|im_start|>assistant\n";
  return out;
}

/** @private Throws a TypeError unless `messages` is an array of { role: string, content: string }. */
function checkMessages(messages) {
  if (!Array.isArray(messages)) throw new TypeError("messages must be an array of { role, content }");
  for (const [i, m] of messages.entries()) {
    if (m == null || typeof m.role !== "string" || typeof m.content !== "string") {
      throw new TypeError(`messages[${i}] must be { role: string, content: string }`);
    }
  }
}

/**
 * The message list `render_chat` reads (tinyrustlm.h): u32 n_messages, then per message u32
 * role_len, the role's UTF-8, u32 content_len, the content's UTF-8; little-endian, no padding.
 * @param {ChatMessage[]} messages
 * @returns {Uint8Array}
 */
export function encodeChatMessages(messages) {
  checkMessages(messages);
  const parts = messages.flatMap((m) => [encoder.encode(m.role), encoder.encode(m.content)]);
  const out = new Uint8Array(4 + parts.reduce((n, p) => n + 4 + p.byteLength, 0));
  const view = new DataView(out.buffer);
  view.setUint32(0, messages.length, true);
  let at = 4;
  for (const p of parts) {
    view.setUint32(at, p.byteLength, true);
    out.set(p, at + 4);
    at += 4 + p.byteLength;
  }
  return out;
}

/**
 * The windows a text of `nTokens` is scored in with a context of `context` positions (tinyrustlm.h
 * `score_tokens`; Rust `tinyrustlm::score::windows`): the whole text when it fits, otherwise
 * windows of `context` tokens starting every `context / 2`, each scoring the tokens after the
 * previous window's end. `firstScored` is relative to `start`.
 * @param {number} nTokens
 * @param {number} context
 * @returns {{ start: number, end: number, firstScored: number }[]}
 */
export function scoreWindows(nTokens, context) {
  const stride = Math.floor(context / 2);
  if (nTokens < 2 || (nTokens > context && stride < 1)) return [];
  const out = [{ start: 0, end: Math.min(nTokens, context), firstScored: 1 }];
  while (out.at(-1).end < nTokens) {
    const prev = out.at(-1);
    const start = prev.start + stride;
    out.push({ start, end: Math.min(start + context, nTokens), firstScored: prev.end - start });
  }
  return out;
}

// ---- The runtime ----------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Names of the optional exports this wrapper feature-detects. */
const ADAPTER_EXPORTS = ["validate_adapter_delta", "apply_adapter_delta", "remove_last_adapter", "reset_adapters"];
const EVAL_EXPORTS = ["run_eval"];

// ---- Threads (abi/THREADS.md) -------------------------------------------------------------------

/** The threaded flavour's extra exports (worker_run is called by tinyrustlm-worker.mjs). */
const THREAD_EXPORTS = ["worker_stack_top", "worker_run", "stop_workers"];
/** `TRL_MAX_WORKERS`: workers one instance can run, so at most MAX_WORKERS + 1 threads in all. */
const MAX_WORKERS = 63;
/** The shared memory's maximum in 64 KiB pages (4 GiB, the module's declared maximum). */
const MAX_PAGES = 65536;
/** How long load() waits for every worker to enter worker_run. */
const WORKER_START_TIMEOUT_MS = 30_000;
/** How long close() waits for a worker's worker_run to return before terminating it anyway. */
const WORKER_STOP_TIMEOUT_MS = 5_000;

/** Threads the host has: `os.availableParallelism()` in Node, `navigator.hardwareConcurrency` elsewhere. */
async function hostThreads() {
  if (isNode) {
    const os = await import("node:os");
    return typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  }
  return globalThis.navigator?.hardwareConcurrency || 1;
}

/** Why this host cannot run the threaded module, or null when it can. */
function sharedMemoryUnavailable() {
  if (globalThis.crossOriginIsolated === false) {
    return "the page is not cross-origin isolated (crossOriginIsolated is false): shared memory needs the headers " +
      "Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp";
  }
  if (typeof SharedArrayBuffer === "undefined") return "this host has no SharedArrayBuffer";
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch (e) {
    return `this host cannot make a shared WebAssembly.Memory (${e?.message ?? e})`;
  }
  if (!isNode && typeof Worker !== "function") return "this host has no Worker";
  return null;
}

/**
 * @private Starts one worker thread running tinyrustlm-worker.mjs with `data` ({ module, memory,
 * index, top }). `done` resolves with worker_run's status when it returns, and rejects when the
 * thread fails (a trap, a script that did not load, a thread that ended early).
 */
async function spawnWorker(url, data) {
  let settle;
  const done = new Promise((resolve, reject) => (settle = { resolve, reject }));
  const onMessage = (m) => {
    if (m?.type === "exit") settle.resolve(m.status);
    else if (m?.type === "error") settle.reject(new Error(`worker ${data.index}: ${m.message}`));
  };
  let terminate;
  // Deno runs `node:worker_threads` too, whose workers (unlike its Web Workers) can be unref'd.
  if (isNode || typeof Deno !== "undefined") {
    const { Worker: NodeWorker } = await import("node:worker_threads");
    // The script is a file: options that apply to `node -e` code only are not passed on.
    const execArgv = (globalThis.process?.execArgv ?? []).filter((a, i, all) => !a.startsWith("--input-type") && all[i - 1] !== "--input-type");
    const w = new NodeWorker(url, { workerData: data, name: `tinyrustlm-worker-${data.index}`, execArgv });
    w.on("message", onMessage);
    w.on("error", (e) => settle.reject(new Error(`worker ${data.index}: ${e?.message ?? e}`)));
    w.on("exit", (code) => settle.reject(new Error(`worker ${data.index}: its thread ended (exit code ${code}) before worker_run returned`)));
    // A worker must never keep the process alive: close() ends it, and so does the process's exit
    // (the thread is terminated: a worker parked in worker_run is woken for it). After the
    // listeners, which would ref it again.
    w.unref();
    terminate = () => w.terminate().catch(() => {});
  } else {
    const w = new Worker(url, { type: "module", name: `tinyrustlm-worker-${data.index}` });
    w.onmessage = (e) => onMessage(e.data);
    w.onerror = (e) => {
      e.preventDefault?.();
      settle.reject(new Error(`worker ${data.index}: ${e.message || "the worker script failed to load"}`));
    };
    w.onmessageerror = () => settle.reject(new Error(`worker ${data.index}: a message could not be deserialized`));
    w.postMessage(data);
    terminate = () => w.terminate();
  }
  const worker = { index: data.index, done, settled: null, terminate };
  done.then((status) => (worker.settled = { status }), (error) => (worker.settled = { error }));
  return worker;
}

/** The status a module's error text starts with ("OUT_OF_MEMORY: ..."), or `fallback`. */
function statusOfMessage(message, fallback) {
  const name = /^([A-Z_]+):/.exec(message)?.[1];
  return name !== undefined && name in Status ? Status[name] : fallback;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One instance of the TinyRustLM module: one model, one conversation at a time.
 * Create it with {@link TinyRustLM.load}.
 */
export class TinyRustLM {
  /**
   * Compiles (or reuses) the module and instantiates it.
   *
   * With the threaded flavour (`make wasm-threads`, {@link DEFAULT_THREADS_WASM_URL}) the wrapper
   * makes the shared memory and starts `threads - 1` worker threads (abi/THREADS.md: Node's and
   * Deno's `node:worker_threads`, a module `Worker` in browsers), and resolves once every one of
   * them works on the model's matrix products; the output is bit-identical for any thread count.
   * Workers do not keep a Node or Deno process alive; {@link close} stops them.
   *
   * Where memory cannot be shared (a page that is not cross-origin isolated, no SharedArrayBuffer,
   * no Worker), the threaded module cannot even be instantiated: `options.fallback`, the
   * single-thread module, is loaded instead, on 1 thread; {@link threadsFallbackReason} says why and
   * the reason is written once with `console.warn`. A single-thread module given `threads` > 1 also
   * runs on 1 thread and says so.
   * @param {string | URL | Response | ArrayBuffer | ArrayBufferView | WebAssembly.Module} [wasm]
   *   the module; when omitted, the build beside this checkout that suits this host
   *   ({@link chooseModule}: threaded, relaxed-SIMD or SIMD128), named in {@link moduleChoice}
   * @param {LoadOptions} [options]
   * @returns {Promise<TinyRustLM>}
   * @throws {TrlError} OUT_OF_MEMORY (no memory for a worker's stack; `maxMemoryBytes`), or the
   *   status `worker_run` returned at once; an Error when a worker thread fails to start
   */
  static async load(wasm, options = {}) {
    const { threads, fallback = DEFAULT_WASM_URL, maxMemoryBytes, workerUrl = WORKER_URL } = options;
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw new RangeError(`threads: ${threads} is not a whole number ≥ 1`);
    if (wasm === undefined) {
      const choice = chooseModule({ threads });
      const lm = await TinyRustLM.load(choice.url, { ...options, fallback: choice.flavour === "threads" ? fallback : null });
      lm.moduleChoice = Object.freeze({ flavour: lm.threaded ? "threads" : choice.flavour, url: String(choice.url), reason: choice.reason });
      if (choice.threadsUnavailable) lm._fallBack(`${choice.threadsUnavailable}; running the ${choice.flavour} module`);
      return lm;
    }
    const module = await compileModule(wasm);
    if (!importsMemory(module)) {
      const lm = new TinyRustLM(await WebAssembly.instantiate(module, imports()));
      if (threads > 1) lm._fallBack("this module is a single-thread flavour (it has no shared memory): threads need the threaded module (`make wasm-threads`)");
      return lm;
    }
    const unavailable = sharedMemoryUnavailable();
    if (unavailable !== null) {
      if (fallback === null) throw new Error(`the threaded module cannot run here: ${unavailable}`);
      const lm = await TinyRustLM.load(fallback);
      if (lm._shared) throw new Error("options.fallback is the threaded module too: give the single-thread module (`make wasm`)");
      lm._fallBack(`${unavailable}; running the single-thread module`);
      return lm;
    }
    const limits = await importedMemoryLimits(module);
    let maximum = limits.maximum ?? MAX_PAGES;
    if (maxMemoryBytes !== undefined) maximum = Math.max(limits.minimum, Math.min(maximum, Math.floor(maxMemoryBytes / 65536)));
    const memory = new WebAssembly.Memory({ initial: limits.minimum, maximum, shared: true });
    const lm = new TinyRustLM(await WebAssembly.instantiate(module, imports(memory)), { memory });
    const wanted = Math.min(threads ?? (await hostThreads()), MAX_WORKERS + 1);
    await lm._startWorkers(module, wanted - 1, workerUrl);
    return lm;
  }

  /**
   * Wraps an instance made elsewhere (it must have been given the module's imports: `env.trl_now_ms`,
   * and for the threaded flavour `env.memory`, which is then passed here too). Starts no workers.
   * Prefer {@link TinyRustLM.load}.
   * @param {WebAssembly.Instance} instance
   * @param {{ memory?: WebAssembly.Memory }} [options] the memory the instance imports, if it does
   */
  constructor(instance, { memory } = {}) {
    /** @private */
    this._x = instance.exports;
    /** @private */
    this._memory = /** @type {WebAssembly.Memory} */ (memory ?? instance.exports.memory);
    if (!(this._memory instanceof WebAssembly.Memory)) throw new TypeError("the instance exports no memory: pass the memory it imports as { memory }");
    /** @private whether the memory is shared (the threaded flavour) */
    this._shared = typeof SharedArrayBuffer !== "undefined" && this._memory.buffer instanceof SharedArrayBuffer;
    /** @private running worker threads (see _startWorkers) */
    this._workers = [];
    /** @private set once a worker failed: the instance is then discarded (abi/THREADS.md, "Failures") */
    this._workerFailure = null;
    /**
     * Why this instance runs on 1 thread although more were asked for (or the threaded module was
     * given), or null. Set when the wrapper fell back to the single-thread module.
     * @type {string | null}
     */
    this.threadsFallbackReason = null;
    /**
     * Which module {@link TinyRustLM.load} chose when given none ({@link chooseModule}): its flavour,
     * URL and why; null when the caller named the module.
     * @type {{ flavour: "threads" | "relaxed-simd" | "simd128", url: string, reason: string } | null}
     */
    this.moduleChoice = null;
    const version = this._x.abi_version();
    if (version !== ABI_VERSION) throw new Error(`module speaks ABI version ${version}; this wrapper speaks ${ABI_VERSION}`);
    /** @private one reusable buffer for small results and out-lengths */
    this._scratch = 0;
    /** @private true while a generate() iterator is open */
    this._busy = false;
    /** @private the text now in the KV cache, when a chat can continue it (see chat()) */
    this._transcript = null;
    /** @private cached id of the template's end-of-turn token (undefined = not looked up yet) */
    this._endOfTurnId = undefined;
    /**
     * Optional exports present in this build.
     * @type {{ adapters: boolean, evaluate: boolean }}
     */
    this.features = Object.freeze({
      adapters: ADAPTER_EXPORTS.every((n) => typeof this._x[n] === "function"),
      evaluate: EVAL_EXPORTS.some((n) => typeof this._x[n] === "function"),
    });
  }

  /** The module's ABI version. @returns {number} */
  get abiVersion() {
    return this._x.abi_version();
  }

  /** The raw exports, for callers who need an export this wrapper does not cover. */
  get exports() {
    return this._x;
  }

  /** The module's linear memory size in bytes. @returns {number} */
  get memoryBytes() {
    return this._memory.buffer.byteLength;
  }

  // ---- threads ----

  /**
   * Threads sharing the work: 1 + the running workers (1 for the single-thread module and after
   * {@link close}).
   * @returns {number}
   */
  get threads() {
    return 1 + this._workers.length;
  }

  /** Whether this instance runs the threaded module (its memory is shared). @returns {boolean} */
  get threaded() {
    return this._shared;
  }

  /**
   * Stops the worker threads and waits until they ended (`stop_workers`, then each thread is
   * joined or terminated). The instance keeps working on the calling thread alone, with the same
   * output. Does nothing when no worker runs. Call it between requests (a generation may be open).
   * @returns {Promise<void>}
   */
  async close() {
    const workers = this._workers;
    if (workers.length === 0) return;
    this._workers = [];
    // A worker still starting enters worker_run after a stop_workers call and would wait there:
    // the call is repeated until every worker has returned.
    const deadline = performance.now() + WORKER_STOP_TIMEOUT_MS;
    const allDone = Promise.all(workers.map((w) => w.done.catch(() => {})));
    for (;;) {
      this._x.stop_workers();
      if (workers.every((w) => w.settled !== null) || performance.now() > deadline) break;
      await Promise.race([allDone, sleep(10)]);
    }
    for (const w of workers) w.terminate();
  }

  /** @private Records and announces a fall-back to one thread. */
  _fallBack(reason) {
    this.threadsFallbackReason = reason;
    console.warn(`TinyRustLM: running on 1 thread: ${reason}`);
  }

  /**
   * @private Starts `count` workers (abi/THREADS.md, "Starting workers") and waits until each is
   * inside worker_run (diagnostics `threads`). On any failure the workers started so far are
   * stopped and the error is thrown: a TrlError for a status, an Error for a thread that failed.
   */
  async _startWorkers(module, count, workerUrl) {
    // Every stack first: a worker that cannot have one fails load() before any thread starts.
    const tops = [];
    for (let index = 0; index < count; index++) {
      const top = this._x.worker_stack_top(index);
      if (top === 0) {
        const message = this._lastError();
        throw new TrlError(statusOfMessage(message, Status.OUT_OF_MEMORY), message, "worker_stack_top");
      }
      tops.push(top);
    }
    try {
      for (const [index, top] of tops.entries()) {
        const worker = await spawnWorker(workerUrl, { module, memory: this._memory, index, top });
        this._workers.push(worker);
        worker.done.then(
          (status) => this._workers.includes(worker) &&
            this._workerFailed(new TrlError(status || Status.WRONG_STATE, `worker ${index}: worker_run returned ${statusName(status)} without stop_workers`, "worker_run")),
          (error) => this._workers.includes(worker) && this._workerFailed(error),
        );
      }
      const deadline = performance.now() + WORKER_START_TIMEOUT_MS;
      for (;;) {
        if (this._workerFailure) throw this._workerFailure;
        if (this.diagnostics().threads >= count + 1) break;
        if (performance.now() > deadline) throw new Error(`the workers did not start within ${WORKER_START_TIMEOUT_MS / 1000} s`);
        await sleep(1);
      }
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /**
   * @private A worker failed (a trap, a thread that died) or left worker_run unasked. At start
   * this fails load(); later the leader may be waiting on that worker's share of a job, so the
   * instance is discarded: every later call throws WRONG_STATE naming the failure.
   */
  _workerFailed(error) {
    if (this._workerFailure) return;
    this._workerFailure = error;
    const workers = this._workers;
    this._workers = [];
    const real = this._x;
    real.stop_workers();
    for (const w of workers) w.terminate();
    const message = `a worker thread of this instance failed (${error.message}); the instance is discarded: load a new one`;
    const refuse = (name) => () => {
      throw new TrlError(Status.WRONG_STATE, message, name);
    };
    this._x = Object.fromEntries(Object.entries(real).map(([name, v]) => [name, typeof v === "function" ? refuse(name) : v]));
  }

  // ---- memory plumbing (private) ----

  /** @private Fresh view: memory.buffer is replaced whenever the module grows its memory. */
  _bytes(ptr, len) {
    return new Uint8Array(this._memory.buffer, ptr, len);
  }

  /** @private */
  _u32(ptr) {
    return new DataView(this._memory.buffer).getUint32(ptr, true);
  }

  /**
   * @private The module's last error text (the header: a failed call sets it). Read through the
   * scratch buffer, so the text of an OUT_OF_MEMORY failure does not need a fresh allocation.
   */
  _lastError() {
    let buf = this._scratch;
    let cap = ERROR_CAP;
    let lenAt = buf + SCRATCH_CAP;
    let temporary = false;
    if (buf === 0) {
      buf = this._scratch = this._x.alloc(SCRATCH_CAP + 4);
      lenAt = buf + SCRATCH_CAP;
      if (buf === 0) {
        // Memory is nearly full: a small buffer for this one text.
        cap = SMALL_ERROR_CAP;
        buf = this._x.alloc(cap + 4);
        if (buf === 0) return "(error text unavailable: no memory for it)";
        lenAt = buf + cap;
        temporary = true;
      }
    }
    try {
      const s = this._x.last_error(buf, cap, lenAt);
      if (s !== 0) return `(error text unavailable: last_error returned ${s})`;
      const len = Math.min(this._u32(lenAt), cap);
      return new TextDecoder().decode(this._bytes(buf, len).slice()); // a copy: browsers decode no shared memory
    } finally {
      if (temporary) this._x.dealloc(buf);
    }
  }

  /** @private Throws a TrlError for a non-zero status. */
  _check(status, call) {
    if (status !== 0) throw new TrlError(status, this._lastError(), call);
  }

  /** @private */
  _alloc(size) {
    if (!(Number.isInteger(size) && size >= 1 && size <= MAX_U32)) {
      throw new TrlError(Status.INVALID_ARGUMENT, `size: ${size} is not a buffer size the module can allocate (1..=${MAX_U32})`, "alloc");
    }
    const ptr = this._x.alloc(size);
    if (ptr === 0) throw new TrlError(Status.OUT_OF_MEMORY, this._lastError(), "alloc");
    return ptr;
  }

  /** @private */
  _free(ptr) {
    this._check(this._x.dealloc(ptr), "dealloc");
  }

  /** @private Copies bytes into a fresh host buffer (at least 1 byte, so empty input has an address). */
  _put(bytes) {
    const ptr = this._alloc(Math.max(bytes.byteLength, 1));
    this._bytes(ptr, bytes.byteLength).set(bytes);
    return ptr;
  }

  /** @private Calls `fn(ptr, len)` with `input` copied into a temporary host buffer. */
  _withInput(input, call, fn) {
    const bytes = typeof input === "string" ? encoder.encode(input) : asBytes(input);
    if (bytes === null) throw new TypeError(`${call}: expected a string or bytes`);
    const ptr = this._put(bytes);
    let status;
    try {
      status = fn(ptr, bytes.byteLength);
    } finally {
      this._free(ptr);
    }
    this._check(status, call);
  }

  /** @private */
  _scratchBuf() {
    if (this._scratch === 0) this._scratch = this._alloc(SCRATCH_CAP + 4);
    return this._scratch;
  }

  /**
   * @private Reads a result kind whole; a result larger than the scratch buffer gets a buffer of the
   * size the module asks for (BUFFER_TOO_SMALL reports it). Returns a copy.
   */
  _readResult(kind) {
    const scratch = this._scratchBuf();
    const s = this._x.read_result(kind, scratch, SCRATCH_CAP, scratch + SCRATCH_CAP);
    const len = this._u32(scratch + SCRATCH_CAP);
    if (s === 0) return this._bytes(scratch, len).slice();
    if (s !== Status.BUFFER_TOO_SMALL || kind === ResultKind.TEXT) this._check(s, "read_result");
    const buf = this._alloc(len + 4);
    try {
      this._check(this._x.read_result(kind, buf, len, buf + len), "read_result");
      return this._bytes(buf, this._u32(buf + len)).slice();
    } finally {
      this._free(buf);
    }
  }

  /** @private */
  _readU32s(kind) {
    const b = this._readResult(kind);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out = new Array(b.byteLength >>> 2);
    for (let i = 0; i < out.length; i++) out[i] = v.getUint32(i * 4, true);
    return out;
  }

  /** @private Reads all unread output text (TEXT is cut on character boundaries by the module). */
  _readText() {
    const scratch = this._scratchBuf();
    let text = "";
    for (;;) {
      this._check(this._x.read_result(ResultKind.TEXT, scratch, SCRATCH_CAP, scratch + SCRATCH_CAP), "read_result");
      const len = this._u32(scratch + SCRATCH_CAP);
      if (len === 0) return text;
      text += decoder.decode(this._bytes(scratch, len).slice());
    }
  }

  // ---- model ----

  /**
   * Loads an SLM1 package and validates every byte of it (FORMAT.md). Sources: bytes (ArrayBuffer or
   * typed array), a `Blob`/`File`, a `Response`, or a URL (in Node also a file path). When the size
   * is known up front (a file, a `Blob`, a response with a Content-Length) the package is streamed
   * (`load_begin` / `load_append` / `load_finish`): each chunk is copied once into the memory the
   * model will use and verified as it arrives, so the checks overlap the download or the file read
   * and a corrupt package is refused at the chunk that breaks a rule. Bytes already in memory, or a
   * body of unknown size, go through `load_model` (the same checks, in the same order).
   * `onProgress` gets `{ phase, loaded, total, verified }`: bytes received and bytes verified.
   * @param {ModelSource} source
   * @param {LoadModelOptions} [options]
   * @returns {Promise<Diagnostics>} the diagnostics right after loading
   * @throws {TrlError} a package status (16..43) naming the field and rule; WRONG_STATE if a model is
   *   already loaded (call {@link unloadModel} first); OUT_OF_MEMORY
   */
  async loadModel(source, { contextLength = 0, kvF16 = false, onProgress, signal } = {}) {
    if (this.diagnostics().model_loaded) {
      throw new TrlError(Status.WRONG_STATE, "load_model: a model is already loaded (unload it first)", "load_model");
    }
    const report = (phase, loaded, total, verified = 0) => onProgress?.({ phase, loaded, total, verified });
    const flags = kvF16 ? LoadFlags.KV_F16 : 0;
    const received = await this._receivePackage(source, report, signal, contextLength, flags);
    const len = received.len;
    if (!received.streamed) {
      report("validate", len, len, 0);
      const status = this._x.load_model(received.ptr, len, contextLength, flags);
      if (status !== 0) {
        const err = new TrlError(status, this._lastError(), "load_model");
        this._free(received.ptr); // on failure the buffer stays the host's
        throw err;
      }
    }
    this._transcript = null;
    this._endOfTurnId = undefined;
    report("done", len, len, len);
    return this.diagnostics();
  }

  /**
   * Where the current or last load stands (`TRL_RESULT_LOAD_PROGRESS`): bytes announced, received
   * and verified (every check but the artifact CRC passed; `verified === total` once it passed too).
   * Readable at any time, with or without a model.
   * @returns {{ total: number, received: number, verified: number }}
   */
  loadProgress() {
    const b = this._readResult(ResultKind.LOAD_PROGRESS);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    return { total: Number(v.getBigUint64(0, true)), received: Number(v.getBigUint64(8, true)), verified: Number(v.getBigUint64(16, true)) };
  }

  /**
   * @private Receives a package: streamed through the module's checks when its size is known
   * (returns `{ streamed: true, len }`, the model loaded), else copied into a host buffer that the
   * caller passes to load_model (returns `{ ptr, len }`).
   */
  async _receivePackage(source, report, signal, contextLength, flags) {
    signal?.throwIfAborted();
    const bytes = asBytes(source);
    if (bytes) {
      report("read", 0, bytes.byteLength);
      const ptr = this._put(bytes);
      report("read", bytes.byteLength, bytes.byteLength);
      return { ptr, len: bytes.byteLength };
    }
    const load = { contextLength, flags };
    const path = nodeFilePath(source);
    if (path !== null) {
      const { stat } = await import("node:fs/promises");
      const { createReadStream } = await import("node:fs");
      const { size } = await stat(path);
      const stream = createReadStream(path, { highWaterMark: STREAM_CHUNK });
      try {
        return await this._streamInto(stream, size, report, signal, load);
      } finally {
        stream.destroy();
      }
    }
    if (typeof Blob !== "undefined" && source instanceof Blob) {
      return this._streamInto(readChunks(source.stream()), source.size, report, signal, load);
    }
    const response = typeof Response !== "undefined" && source instanceof Response ? source : await fetch(source, { signal });
    if (!response.ok) throw new Error(`fetching the model: HTTP ${response.status} ${response.statusText} for ${response.url || source}`);
    // With a content-encoding the length header counts compressed bytes: size unknown then.
    const header = response.headers.get("content-length");
    const total = header !== null && !response.headers.get("content-encoding") ? Number(header) : null;
    if (response.body === null) return this._receivePackage(await response.arrayBuffer(), report, signal, contextLength, flags);
    return this._streamInto(readChunks(response.body), total, report, signal, load);
  }

  /**
   * @private With `total` known: a streaming load, each chunk handed to load_append as it arrives
   * (through one reusable host buffer of STREAM_CHUNK bytes). With `total` null (size unknown) the
   * chunks are collected into a host buffer for load_model.
   */
  async _streamInto(chunks, total, report, signal, { contextLength, flags }) {
    if (total === null) return this._collect(chunks, report, signal);
    if (total > MAX_U32) throw new TrlError(Status.OUT_OF_MEMORY, `a package of ${total} bytes does not fit in the module's 4 GiB memory`, "load_begin");
    this._check(this._x.load_begin(total, contextLength, flags), "load_begin");
    let chunkPtr = 0;
    let loaded = 0;
    try {
      chunkPtr = this._alloc(STREAM_CHUNK);
      report("read", 0, total, 0);
      for await (const value of chunks) {
        signal?.throwIfAborted();
        if (loaded + value.byteLength > total) throw new Error(`the model source sent more than the ${total} bytes it announced`);
        for (let at = 0; at < value.byteLength; at += STREAM_CHUNK) {
          const part = value.subarray(at, Math.min(at + STREAM_CHUNK, value.byteLength));
          this._bytes(chunkPtr, part.byteLength).set(part);
          this._check(this._x.load_append(chunkPtr, part.byteLength), "load_append");
          loaded += part.byteLength;
          report("read", loaded, total, this.loadProgress().verified);
        }
      }
      signal?.throwIfAborted();
      if (loaded !== total) throw new Error(`the model source ended after ${loaded} of the ${total} bytes it announced`);
      this._check(this._x.load_finish(), "load_finish");
      return { streamed: true, len: total };
    } catch (e) {
      // A refused chunk or load_finish has ended the stream already (then this is WRONG_STATE).
      this._x.load_abort();
      throw e;
    } finally {
      if (chunkPtr !== 0) this._x.dealloc(chunkPtr);
    }
  }

  /** @private Collects chunks of unknown total size into one host buffer. */
  async _collect(chunks, report, signal) {
    let loaded = 0;
    const held = [];
    report("read", 0, null);
    for await (const value of chunks) {
      signal?.throwIfAborted();
      held.push(value);
      loaded += value.byteLength;
      report("read", loaded, null);
    }
    signal?.throwIfAborted();
    const ptr = this._alloc(Math.max(loaded, 1));
    let at = ptr;
    for (const c of held) {
      this._bytes(at, c.byteLength).set(c);
      at += c.byteLength;
    }
    return { ptr, len: loaded };
  }

  /**
   * Frees the model, its KV cache and the session. Sampling and stop strings stay set.
   * @throws {TrlError} WRONG_STATE if no model is loaded
   */
  unloadModel() {
    this._assertIdle("unload_model");
    this._check(this._x.unload_model(), "unload_model");
    this._transcript = null;
  }

  /**
   * Empties the KV cache and the session (the model, sampling and stop strings stay).
   * @throws {TrlError} WRONG_STATE if no model is loaded
   */
  reset() {
    this._assertIdle("reset");
    this._check(this._x.reset(), "reset");
    this._transcript = null;
  }

  // ---- session snapshots ----

  /**
   * Saves the conversation in the KV cache (tokens, last logits, sampler state and the used part of
   * the KV cache, bound to the package, the applied adapters and the KV dtype) as SES1 bytes
   * (FORMAT.md "Session snapshots"): store them (OPFS, IndexedDB, a file) and hand them to
   * {@link restoreSession} here, in another instance of the same package, or after a reload.
   * @returns {Uint8Array}
   * @throws {TrlError} WRONG_STATE without a model or with an empty KV cache; OUT_OF_MEMORY
   */
  saveSession() {
    this._assertIdle("save_session");
    this._check(this._x.save_session(), "save_session");
    return this._readResult(ResultKind.SESSION);
  }

  /**
   * Restores a conversation saved by {@link saveSession}; the next generation with
   * `continue: true` gives exactly the tokens the saved conversation would have given (same
   * sampling settings). A snapshot of another package, adapter stack or KV dtype, a damaged one,
   * or one longer than this context is refused and nothing changes. `chat()` starts a new
   * conversation afterwards (its transcript is not in the snapshot); continue with `start` /
   * `complete` and `continue: true`.
   * @param {ArrayBuffer | ArrayBufferView} bytes
   * @throws {TrlError} a SESSION_* status naming the field (e.g. header.tensor_layout_crc)
   */
  restoreSession(bytes) {
    this._assertIdle("restore_session");
    this._withInput(bytes, "restore_session", (ptr, len) => this._x.restore_session(ptr, len));
    this._transcript = null;
  }

  // ---- sampling and stop strings ----

  /**
   * Sets sampling for the next generation. Missing fields take the greedy defaults
   * ({@link DEFAULT_SAMPLING}); temperature 0 is greedy decoding.
   * @param {SamplingOptions} [options]
   * @throws {TrlError} INVALID_SAMPLING naming the field
   */
  setSampling(options = {}) {
    const p = { ...DEFAULT_SAMPLING, ...options };
    const seed = BigInt.asUintN(64, BigInt(p.seed));
    this._check(this._x.set_sampling(p.temperature, p.topK, p.topP, p.minP, p.repetitionPenalty, p.repetitionWindow, seed), "set_sampling");
  }

  /**
   * Replaces the stop strings (at most 8, each 1..=64 bytes of UTF-8). If one is rejected, the list is
   * left empty.
   * @param {string[]} strings
   * @throws {TrlError} INVALID_ARGUMENT, LIMIT_EXCEEDED
   */
  setStopStrings(strings) {
    this._check(this._x.clear_stop_strings(), "clear_stop_strings");
    try {
      for (const s of strings) this._withInput(s, "add_stop_string", (ptr, len) => this._x.add_stop_string(ptr, len));
    } catch (e) {
      this._x.clear_stop_strings();
      throw e;
    }
  }

  // ---- grammar-constrained generation ----

  /**
   * Constrains the following generations: `{ jsonSchema }` (an object or its JSON text) or
   * `{ grammar }` (GBNF text); with neither, generation is unconstrained again (clear_grammar).
   * @param {{ jsonSchema?: object | string, grammar?: string }} options
   * @throws {TrlError} GRAMMAR_* / SCHEMA_* (the message names the rule or schema path)
   */
  setGrammar({ jsonSchema, grammar } = {}) {
    if (jsonSchema !== undefined && jsonSchema !== null) {
      const text = typeof jsonSchema === "string" ? jsonSchema : JSON.stringify(jsonSchema);
      this._withInput(text, "set_grammar", (ptr, len) => this._x.set_grammar(ptr, len, GrammarFlags.JSON_SCHEMA));
    } else if (grammar !== undefined && grammar !== null) {
      this._withInput(grammar, "set_grammar", (ptr, len) => this._x.set_grammar(ptr, len, 0));
    } else {
      this._check(this._x.clear_grammar(), "clear_grammar");
    }
  }

  // ---- tokens and generation ----

  /**
   * Token ids of a text, as a prompt is encoded (with BOS when the model's tokenizer adds one).
   * @param {string} text
   * @param {{ parseSpecial?: boolean }} [options] recognise `<|im_start|>`-style text (default true)
   * @returns {number[]}
   */
  tokenize(text, { parseSpecial = true } = {}) {
    this._withInput(text, "tokenize", (ptr, len) => this._x.tokenize(ptr, len, parseSpecial ? GenFlags.PARSE_SPECIAL : 0));
    return this._readU32s(ResultKind.TOKENIZED);
  }

  /**
   * Generates text from a prompt, yielding each new piece of text as the model produces it (whole
   * UTF-8 characters; text that might still become a stop string is held back until decided).
   *
   * The iterator yields to the event loop between tokens. Aborting the signal ends the iteration with
   * the signal's reason (an "AbortError" DOMException by default) after the current token; the engine
   * stays usable, and {@link result} reports what was generated up to that point. Breaking out of a
   * `for await` loop stops generation the same way.
   * @param {string} prompt
   * @param {GenerateOptions} [options]
   * @returns {AsyncGenerator<string, GenerationResult, void>} returns the {@link result}, with the
   *   whole text, when done
   * @throws {TrlError} WRONG_STATE (no model; another generation of this instance still open),
   *   CONTEXT_FULL (the prompt does not fit), INVALID_SAMPLING (options.sampling)
   */
  async *generate(prompt, options = {}) {
    const { maxTokens = 256, parseSpecial = true, ignoreEog = false, signal } = options;
    this._claim("generate");
    try {
      signal?.throwIfAborted();
      if (options.sampling) this.setSampling(options.sampling);
      if (options.stop) this.setStopStrings(options.stop);
      // Each call says its own constraint: none means unconstrained.
      this.setGrammar(options);
      const flags = (parseSpecial ? GenFlags.PARSE_SPECIAL : 0) | (options.continue ? GenFlags.CONTINUE : 0) | (ignoreEog ? GenFlags.IGNORE_EOG : 0);
      this._transcript = null;
      this._withInput(prompt, "generate_start", (ptr, len) => this._x.generate_start(ptr, len, maxTokens, flags));
      let text = "";
      for await (const t of this._stream(signal)) {
        text += t;
        yield t;
      }
      return { ...this.result(), text };
    } finally {
      this._busy = false;
    }
  }

  /**
   * Low level: starts a generation (tokenize + prefill) without streaming it, for hosts that drive
   * the steps themselves (benchmarks, custom schedulers). Follow with {@link step} and
   * {@link readText}. Prefer {@link generate}.
   * @param {string} prompt
   * @param {{ maxTokens?: number, parseSpecial?: boolean, continue?: boolean, ignoreEog?: boolean }} [options]
   * @throws {TrlError} as {@link generate}
   */
  start(prompt, { maxTokens = 256, parseSpecial = true, ignoreEog = false, ...rest } = {}) {
    this._assertIdle("generate_start");
    const flags = (parseSpecial ? GenFlags.PARSE_SPECIAL : 0) | (rest.continue ? GenFlags.CONTINUE : 0) | (ignoreEog ? GenFlags.IGNORE_EOG : 0);
    this._transcript = null;
    this._withInput(prompt, "generate_start", (ptr, len) => this._x.generate_start(ptr, len, maxTokens, flags));
  }

  /**
   * Low level: runs up to `maxSteps` decode steps synchronously and returns the state after them.
   * @param {number} [maxSteps]
   * @returns {GenerationState}
   * @throws {TrlError} WRONG_STATE when no generation is running
   */
  step(maxSteps = 1) {
    this._assertIdle("generate_step");
    this._check(this._x.generate_step(maxSteps), "generate_step");
    return this.state();
  }

  /**
   * Low level: the output text not read yet (reading consumes it; whole UTF-8 characters).
   * @returns {string}
   */
  readText() {
    return this._readText();
  }

  /** @private The step loop shared by generate() and chat(). */
  async *_stream(signal) {
    let first = this._readText();
    if (first) yield first;
    while (this.state().state === GenState.RUNNING) {
      await yieldToEventLoop();
      signal?.throwIfAborted();
      this._check(this._x.generate_step(1), "generate_step");
      const text = this._readText();
      if (text) yield text;
    }
  }

  /**
   * Runs a whole generation and returns its outcome (the fields of `trl generate --json`). `onText`
   * receives the text as it streams.
   * @param {string} prompt
   * @param {GenerateOptions & { onText?: (text: string) => void }} [options]
   * @returns {Promise<GenerationResult>}
   */
  async complete(prompt, options = {}) {
    const it = this.generate(prompt, options);
    for (;;) {
      const { done, value } = await it.next();
      if (done) return value;
      options.onText?.(value);
    }
  }

  /**
   * Chats: renders `messages` in the model's chat format ({@link formatChat}: the package's
   * template, ChatML for SmolLM2 and Qwen, Gemma's turns for Gemma) and streams the assistant's answer
   * like {@link generate}.
   *
   * When the previous call was a chat whose answer ended with the template's end-of-turn token
   * (`<|im_end|>`, `<end_of_turn>`), and `messages` extend
   * that conversation (the earlier messages unchanged, the answer passed back as the assistant
   * message), only the new turns are run through the model (the KV cache is kept); otherwise the
   * whole conversation is. Both give the same kind of answer; the first is faster.
   * @param {ChatMessage[]} messages
   * @param {ChatOptions} [options]
   * @returns {AsyncGenerator<string, GenerationResult, void>}
   * @throws {TrlError} INVALID_ARGUMENT if the model has no chat template; as {@link generate};
   *   TypeError for messages that are not { role: string, content: string }
   */
  async *chat(messages, options = {}) {
    const { maxTokens = 256, signal, defaultSystem, reuseContext = true } = options;
    this._claim("chat");
    try {
      signal?.throwIfAborted();
      const full = this.formatChat(messages, { defaultSystem });
      if (options.sampling) this.setSampling(options.sampling);
      if (options.stop) this.setStopStrings(options.stop);
      this.setGrammar(options);
      const base = GenFlags.PARSE_SPECIAL | (options.ignoreEog ? GenFlags.IGNORE_EOG : 0);
      const known = this._transcript;
      this._transcript = null;
      let started = false;
      if (reuseContext && known !== null && full.length > known.length && full.startsWith(known)) {
        try {
          this._withInput(full.slice(known.length), "generate_start", (ptr, len) => this._x.generate_start(ptr, len, maxTokens, base | GenFlags.CONTINUE));
          started = true;
        } catch (e) {
          if (!(e instanceof TrlError && e.status === Status.CONTEXT_FULL)) throw e;
          // The conversation no longer fits on top of the cache: start over from the whole text.
        }
      }
      if (!started) this._withInput(full, "generate_start", (ptr, len) => this._x.generate_start(ptr, len, maxTokens, base));
      let answer = "";
      for await (const t of this._stream(signal)) {
        answer += t;
        yield t;
      }
      const result = this.result();
      // The KV cache now holds `full + answer + <end-of-turn>` exactly when the answer ended on that
      // token (it is fed when the conversation continues); other endings are not reused.
      const endOfTurn = this._endOfTurn();
      if (result.stop_reason === StopReason.END_OF_GENERATION && endOfTurn !== null && result.tokens.at(-1) === endOfTurn.id) {
        this._transcript = `${full}${answer}${endOfTurn.text}`;
      }
      return { ...result, text: answer };
    } finally {
      this._busy = false;
    }
  }

  /**
   * Renders a conversation with the loaded package's chat template (the `render_chat` export), as
   * {@link chat} does before generating. When the first message is not a system message,
   * `defaultSystem` goes first: the template's own default when it is not given (SmolLM2:
   * {@link SMOLLM_SYSTEM}; Gemma's template has none), this text when it is a string, none when it
   * is null. (Gemma's template writes a system message as the start of the first turn's text.)
   * @param {ChatMessage[]} messages
   * @param {{ defaultSystem?: string | null, addGenerationPrompt?: boolean }} [options]
   * @returns {string}
   * @throws {TrlError} INVALID_ARGUMENT if the package names no chat template; WRONG_STATE without a
   *   model; TypeError for malformed messages
   */
  formatChat(messages, { defaultSystem, addGenerationPrompt = true } = {}) {
    checkMessages(messages);
    let flags = addGenerationPrompt ? ChatFlags.ADD_GENERATION_PROMPT : 0;
    if (defaultSystem !== undefined) {
      flags |= ChatFlags.NO_DEFAULT_SYSTEM;
      if (defaultSystem !== null && (messages.length === 0 || messages[0].role !== "system")) {
        messages = [{ role: "system", content: String(defaultSystem) }, ...messages];
      }
    }
    this._withInput(encodeChatMessages(messages), "render_chat", (ptr, len) => this._x.render_chat(ptr, len, flags));
    return decoder.decode(this._readResult(ResultKind.CHAT_PROMPT));
  }

  /**
   * @private The package's chat template's end-of-turn token (`<|im_end|>`, `<end_of_turn>`) as
   * { text, id }, or null when the template has none or the vocabulary no single token for it.
   */
  _endOfTurn() {
    if (this._endOfTurnId === undefined) {
      const text = END_OF_TURN_TEXT[this.diagnostics().chat_template];
      this._endOfTurnId = null;
      if (text !== undefined) {
        // tokenize adds BOS where the tokenizer does (Gemma): one token more than an empty text.
        const ids = this.tokenize(text);
        if (ids.length === this.tokenize("").length + 1) this._endOfTurnId = { text, id: ids.at(-1) };
      }
    }
    return this._endOfTurnId;
  }

  /** @private */
  _claim(call) {
    if (this._busy) throw new TrlError(Status.WRONG_STATE, `${call}: another generation of this instance is still open (finish, abort or break out of it first)`, call);
    this._busy = true;
  }

  /** @private */
  _assertIdle(call) {
    if (this._busy) throw new TrlError(Status.WRONG_STATE, `${call}: a generation of this instance is still open`, call);
  }

  /**
   * The state of the current (or last) generation.
   * @returns {GenerationState}
   */
  state() {
    const w = this._readU32s(ResultKind.STATE);
    return { state: w[0], stop_reason: w[1], prompt_tokens: w[2], generated_tokens: w[3] };
  }

  /**
   * The outcome of the current (or last) generation, with `trl generate --json`'s field names. `text`
   * is not included here (the module hands text out once; {@link complete} and the generators'
   * return value carry it).
   * @returns {GenerationResult}
   */
  result() {
    const st = this.state();
    return {
      prompt_tokens: this._readU32s(ResultKind.PROMPT_TOKENS),
      tokens: this._readU32s(ResultKind.TOKENS),
      stop_reason: st.stop_reason,
      state: st.state,
    };
  }

  /**
   * The logits that chose the last generated token (or the prompt's last logits), vocab_size of them.
   * @returns {Float32Array}
   */
  logits() {
    const b = this._readResult(ResultKind.LOGITS);
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength >>> 2);
  }

  // ---- scoring ----

  /**
   * Low level: scores token ids (the `score_tokens` export) from an empty KV cache.
   * `logprobs[j]` = ln P(tokens[firstScored + j] | the tokens before it); `argmax[j]` = the most
   * likely token after tokens[0 .. firstScored + j) (one more entry than logprobs: the last is the
   * prediction after the whole sequence). The conversation is forgotten (as by {@link reset}).
   * @param {number[]} tokens at most the context length
   * @param {{ firstScored?: number }} [options] tokens before it are context only (default 1)
   * @returns {{ logprobs: Float32Array, argmax: number[] }}
   * @throws {TrlError} INVALID_ARGUMENT (no tokens, an id >= vocab_size, firstScored outside
   *   1..=tokens.length), CONTEXT_FULL (longer than the context), WRONG_STATE (no model)
   */
  scoreTokens(tokens, { firstScored = 1 } = {}) {
    this._assertIdle("score_tokens");
    return this._scoreTokens(tokens, firstScored);
  }

  /** @private scoreTokens without the open-generation check (score() holds the claim). */
  _scoreTokens(tokens, firstScored) {
    if (!Array.isArray(tokens) || !tokens.every((t) => Number.isInteger(t) && t >= 0 && t <= MAX_U32)) {
      throw new TypeError("scoreTokens: tokens must be an array of token ids (u32)");
    }
    const bytes = new Uint8Array(tokens.length * 4);
    const view = new DataView(bytes.buffer);
    tokens.forEach((t, i) => view.setUint32(i * 4, t, true));
    this._transcript = null;
    this._withInput(bytes, "score_tokens", (ptr) => this._x.score_tokens(ptr, tokens.length, firstScored >>> 0, 0));
    const b = this._readResult(ResultKind.SCORE_LOGPROBS);
    return { logprobs: new Float32Array(b.buffer, b.byteOffset, b.byteLength >>> 2), argmax: this._readU32s(ResultKind.SCORE_ARGMAX) };
  }

  /**
   * Scores a text as `trl perplexity --json` does, with its field names (`JSON.stringify` of the
   * result is that command's output, byte for byte): the text is tokenized as the model's tokenizer
   * does (BOS when it adds one; special-token text is plain text), every token after the first is
   * scored given the tokens before it, in windows of the context length when the text is longer
   * ({@link scoreWindows}), and perplexity = exp(mean nll), the mean summed in token order.
   * The conversation is forgotten (as by {@link reset}).
   * @param {string} text
   * @returns {Promise<ScoreResult>} tokens (BOS included); argmax[i], the most likely token after
   *   tokens[0..=i]; nll[i] = -ln P(tokens[i + 1]); perplexity
   * @throws {TrlError} INVALID_ARGUMENT for a text of fewer than 2 tokens; WRONG_STATE (no model;
   *   a generation of this instance still open)
   */
  async score(text) {
    this._claim("score");
    try {
      const tokens = this.tokenize(text, { parseSpecial: false });
      if (tokens.length < 2) {
        throw new TrlError(Status.INVALID_ARGUMENT, `score: the text has ${tokens.length} token(s): perplexity needs at least 2 (one to condition on, one to score)`, "score");
      }
      const windows = scoreWindows(tokens.length, this.diagnostics().context_len);
      const argmax = [];
      const nll = [];
      for (const [k, w] of windows.entries()) {
        if (k > 0) await yieldToEventLoop();
        const s = this._scoreTokens(tokens.slice(w.start, w.end), w.firstScored);
        for (const lp of s.logprobs) nll.push(-lp);
        // argmax[i] comes from the window that scores token i + 1; the last, from the last window.
        argmax.push(...(k + 1 === windows.length ? s.argmax : s.argmax.slice(0, -1)));
      }
      let sum = 0;
      for (const x of nll) sum += x;
      return { tokens, argmax, nll, perplexity: Math.exp(sum / nll.length) };
    } finally {
      this._busy = false;
    }
  }

  // ---- diagnostics ----

  /**
   * The diagnostics record (works with no model loaded: `model_loaded` false).
   * @returns {Diagnostics}
   */
  diagnostics() {
    const scratch = this._scratchBuf();
    this._check(this._x.read_diagnostics(scratch, DIAGNOSTICS_LEN), "read_diagnostics");
    return parseDiagnostics(this._bytes(scratch, DIAGNOSTICS_LEN).slice());
  }

  /**
   * The module's text for the most recent failed call ("" if none yet).
   * @returns {string}
   */
  lastError() {
    return this._lastError();
  }

  // ---- adapters (feature-detected: `features.adapters`) ----

  /** @private */
  _requireAdapters(call) {
    if (!this.features.adapters) throw new TrlError(Status.INVALID_ARGUMENT, `${call}: this build of the module has no adapter exports`, call);
  }

  /**
   * Checks an adapter package (ADP1 / ASP1 / ALR1) against the loaded model without changing anything.
   * @param {ArrayBuffer | ArrayBufferView} bytes
   * @throws {TrlError} the adapter's status (parent identity mismatch, unknown target, …)
   */
  validateAdapter(bytes) {
    this._requireAdapters("validate_adapter_delta");
    this._withInput(bytes, "validate_adapter_delta", (ptr, len) => this._x.validate_adapter_delta(ptr, len));
  }

  /**
   * Validates, then applies an adapter to the loaded model; a failed apply changes nothing. The
   * KV cache no longer matches the weights afterwards, so the session is reset.
   * @param {ArrayBuffer | ArrayBufferView} bytes
   * @returns {Diagnostics} after applying (`adapters_applied`, `assembly_state_crc`)
   * @throws {TrlError}
   */
  applyAdapter(bytes) {
    this._requireAdapters("apply_adapter_delta");
    this._assertIdle("apply_adapter_delta");
    this._withInput(bytes, "apply_adapter_delta", (ptr, len) => this._x.apply_adapter_delta(ptr, len));
    this._transcript = null;
    return this.diagnostics();
  }

  /**
   * Removes the most recently applied adapter.
   * @returns {Diagnostics}
   * @throws {TrlError} WRONG_STATE when none is applied
   */
  removeLastAdapter() {
    this._requireAdapters("remove_last_adapter");
    this._assertIdle("remove_last_adapter");
    this._check(this._x.remove_last_adapter(), "remove_last_adapter");
    this._transcript = null;
    return this.diagnostics();
  }

  /**
   * Removes every applied adapter: back to the parent's weights and assembly-state checksum.
   * @returns {Diagnostics}
   */
  resetAdapters() {
    this._requireAdapters("reset_adapters");
    this._assertIdle("reset_adapters");
    this._check(this._x.reset_adapters(), "reset_adapters");
    this._transcript = null;
    return this.diagnostics();
  }

  // ---- evaluation (feature-detected: `features.evaluate`) ----

  /**
   * Runs an eval-case file (JSONL, FORMAT.md "Eval cases and sidecars") in the module, greedily, and
   * returns the sidecar it writes: its exact bytes (keep these to hash or download: the module
   * writes them canonically, byte-identical on every host) and the parsed JSON. The session is reset.
   * Returns a promise so a future module may run cases incrementally; today the call is synchronous
   * inside the module, so run it in a Worker to keep a page responsive.
   * @param {string | ArrayBuffer | ArrayBufferView} cases the eval-case file
   * @returns {Promise<{ bytes: Uint8Array, text: string, sidecar: any }>}
   * @throws {TrlError} an EVAL_* status naming the line and field; WRONG_STATE without a model
   */
  async evaluate(cases) {
    if (!this.features.evaluate) throw new TrlError(Status.INVALID_ARGUMENT, "run_eval: this build of the module has no eval export", "run_eval");
    this._assertIdle("run_eval");
    this._transcript = null;
    this._withInput(cases, "run_eval", (ptr, len) => this._x.run_eval(ptr, len, 0));
    const bytes = this._readResult(ResultKind.EVAL_SIDECAR);
    const text = new TextDecoder().decode(bytes);
    return { bytes, text, sidecar: JSON.parse(text) };
  }
}

/**
 * Greedy decoding with the header's defaults; {@link TinyRustLM.setSampling} fills missing fields
 * from here.
 * @type {Readonly<Required<SamplingOptions>>}
 */
export const DEFAULT_SAMPLING = Object.freeze({
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  repetitionWindow: 64,
  seed: 0,
});

/**
 * @typedef {{ role: string, content: string }} ChatMessage
 * @typedef {{ temperature?: number, topK?: number, topP?: number, minP?: number,
 *   repetitionPenalty?: number, repetitionWindow?: number, seed?: number | bigint }} SamplingOptions
 * @typedef {{ maxTokens?: number, parseSpecial?: boolean, continue?: boolean, ignoreEog?: boolean,
 *   signal?: AbortSignal, sampling?: SamplingOptions, stop?: string[], jsonSchema?: object | string,
 *   grammar?: string }} GenerateOptions
 * @typedef {{ maxTokens?: number, ignoreEog?: boolean, signal?: AbortSignal, sampling?: SamplingOptions,
 *   stop?: string[], defaultSystem?: string | null, reuseContext?: boolean, jsonSchema?: object | string,
 *   grammar?: string }} ChatOptions
 * @typedef {{ phase: "read" | "validate" | "done", loaded: number, total: number | null, verified: number }} LoadProgress
 *   `loaded`: bytes received; `verified`: bytes that passed their checks (streamed loads; 0 until
 *   `done` for bytes loaded whole)
 * @typedef {{ contextLength?: number, kvF16?: boolean, onProgress?: (p: LoadProgress) => void, signal?: AbortSignal }} LoadModelOptions
 * @typedef {ArrayBuffer | ArrayBufferView | Blob | Response | URL | string} ModelSource
 * @typedef {{ threads?: number, fallback?: string | URL | Response | ArrayBuffer | ArrayBufferView | WebAssembly.Module | null,
 *   maxMemoryBytes?: number, workerUrl?: string | URL }} LoadOptions
 *   `threads`: threads in all for the threaded module (default: the host's cores, at most 64);
 *   `fallback`: the single-thread module to load where memory cannot be shared (default
 *   {@link DEFAULT_WASM_URL}; null: throw instead); `maxMemoryBytes`: the shared memory's maximum
 *   (threaded module only; default 4 GiB); `workerUrl`: the worker script (default {@link WORKER_URL})
 * @typedef {{ state: number, stop_reason: number, prompt_tokens: number, generated_tokens: number }} GenerationState
 * @typedef {{ prompt_tokens: number[], tokens: number[], stop_reason: number, state: number, text?: string }} GenerationResult
 * @typedef {ReturnType<typeof parseDiagnostics>} Diagnostics
 * @typedef {{ tokens: number[], argmax: number[], nll: number[], perplexity: number }} ScoreResult
 */
