// The runtime's thread: owns one TinyRustLM instance, so the page's thread never runs the model.
//
// Requests from the page: { id, op, ...args }. Replies: { id, type: "done", value } or
// { id, type: "error", error }, with { id, type: "progress" | "chunk" } on the way. The worker also
// posts { type: "diagnostics", diagnostics } after every request and a few times a second while
// generating. { op: "stop" } aborts the generation in progress (between two tokens).

import { TinyRustLM, TrlError } from "../abi/tinyrustlm.mjs";

/** How often live diagnostics are sent while generating. */
const DIAGNOSTICS_INTERVAL_MS = 200;

/** @type {TinyRustLM | null} */
let lm = null;
/** @type {AbortController | null} */
let generation = null;

function errorRecord(e) {
  if (e instanceof TrlError) return { name: e.name, status: e.status, statusName: e.statusName, call: e.call, message: e.message };
  if (e && e.name === "AbortError") return { name: "AbortError", message: "stopped" };
  return { name: e?.name ?? "Error", message: String(e?.message ?? e) };
}

function postDiagnostics() {
  if (lm) postMessage({ type: "diagnostics", diagnostics: lm.diagnostics(), features: lm.features, memoryBytes: lm.memoryBytes });
}

function requireModule() {
  if (!lm) throw new Error("the module is not loaded yet");
  return lm;
}

const ops = {
  // The threaded module with `threads` threads (default: the machine's cores) where this worker is
  // cross-origin isolated, else the single-thread module `fallbackUrl` (the wrapper decides and
  // says why in threadsFallbackReason). A threaded module that is not built is also a fall-back.
  async init({ wasmUrl, fallbackUrl, threads }) {
    const options = { threads, fallback: fallbackUrl };
    try {
      lm = await TinyRustLM.load(wasmUrl, options);
    } catch (e) {
      if (!(fallbackUrl && /^fetching the module: HTTP 404/.test(e?.message))) throw e;
      lm = await TinyRustLM.load(fallbackUrl);
      lm.threadsFallbackReason = `${wasmUrl} is not built (make wasm-threads); running the single-thread module`;
    }
    return {
      features: lm.features,
      abiVersion: lm.abiVersion,
      threads: lm.threads,
      threaded: lm.threaded,
      threadsFallbackReason: lm.threadsFallbackReason,
      crossOriginIsolated: self.crossOriginIsolated === true,
    };
  },

  async load({ source, contextLength }, id) {
    const m = requireModule();
    if (m.diagnostics().model_loaded) m.unloadModel();
    let last = 0;
    const diagnostics = await m.loadModel(source, {
      contextLength,
      onProgress: (p) => {
        const now = performance.now();
        if (p.phase !== "read" || now - last > 50 || p.loaded === p.total) {
          last = now;
          postMessage({ id, type: "progress", progress: p });
        }
      },
    });
    return { diagnostics };
  },

  unload() {
    requireModule().unloadModel();
  },

  reset() {
    requireModule().reset();
  },

  async generate({ mode, prompt, messages, maxTokens, sampling, stop, continueChat, jsonSchema }, id) {
    const m = requireModule();
    generation = new AbortController();
    const options = { maxTokens, sampling, stop: stop ?? [], signal: generation.signal, reuseContext: continueChat !== false, jsonSchema };
    const it = mode === "chat" ? m.chat(messages, options) : m.generate(prompt, options);
    let lastDiag = 0;
    let text = "";
    try {
      for (;;) {
        const { done, value } = await it.next();
        if (done) return { result: value, diagnostics: m.diagnostics() };
        text += value;
        postMessage({ id, type: "chunk", text: value });
        const now = performance.now();
        if (now - lastDiag > DIAGNOSTICS_INTERVAL_MS) {
          lastDiag = now;
          postDiagnostics();
        }
      }
    } catch (e) {
      if (e?.name !== "AbortError") throw e;
      // Stopped by the user: report what was generated; the engine is ready for the next request.
      return { result: { ...m.result(), text, aborted: true }, diagnostics: m.diagnostics() };
    } finally {
      generation = null;
    }
  },

  validateAdapter({ bytes }) {
    requireModule().validateAdapter(bytes);
  },
  applyAdapter({ bytes }) {
    return requireModule().applyAdapter(bytes);
  },
  removeLastAdapter() {
    return requireModule().removeLastAdapter();
  },
  resetAdapters() {
    return requireModule().resetAdapters();
  },

  async evaluate({ bytes }) {
    const { bytes: sidecarBytes, sidecar } = await requireModule().evaluate(bytes);
    return { sidecarBytes, sidecar };
  },

  diagnostics() {
    return requireModule().diagnostics();
  },
};

self.onmessage = async (event) => {
  const { id, op, ...args } = event.data;
  if (op === "stop") {
    generation?.abort();
    return;
  }
  try {
    if (!(op in ops)) throw new Error(`unknown request ${op}`);
    const value = await ops[op](args, id);
    postMessage({ id, type: "done", value });
  } catch (e) {
    postMessage({ id, type: "error", error: errorRecord(e) });
  }
  try {
    postDiagnostics();
  } catch {
    // Diagnostics are best effort; the request's own reply already went out.
  }
};
