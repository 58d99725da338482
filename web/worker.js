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

// ---- the package cache: OPFS (Origin Private File System) --------------------------------------
// One folder; each package is a file named after its artifact CRC and size; index.json maps the
// URL it came from to its file. Where OPFS is missing (an insecure context, an old browser) there
// is no cache: every load downloads, and the page says so.

const CACHE_DIR = "tinyrustlm-packages";
const CACHE_INDEX = "index.json";

/** The cache folder, or null where OPFS is missing or refuses. */
async function packageCache() {
  try {
    if (typeof navigator.storage?.getDirectory !== "function") return null;
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle(CACHE_DIR, { create: true });
  } catch {
    return null;
  }
}

async function readIndex(dir) {
  try {
    const text = await (await (await dir.getFileHandle(CACHE_INDEX)).getFile()).text();
    const index = JSON.parse(text);
    if (Array.isArray(index?.entries)) return index;
  } catch {
    // No index yet, or an unreadable one: start empty.
  }
  return { entries: [] };
}

async function writeIndex(dir, index) {
  const writable = await (await dir.getFileHandle(CACHE_INDEX, { create: true })).createWritable();
  await writable.write(JSON.stringify(index));
  await writable.close();
}

/** Deletes a cached package and its index entry. */
async function forget(dir, name) {
  await dir.removeEntry(name).catch(() => {});
  const index = await readIndex(dir);
  index.entries = index.entries.filter((e) => e.name !== name);
  await writeIndex(dir, index);
}

/** The last `n` bytes of `previous` followed by `chunk`. */
function lastBytes(previous, chunk, n) {
  if (chunk.byteLength >= n) return chunk.slice(chunk.byteLength - n);
  const joined = new Uint8Array(previous.byteLength + chunk.byteLength);
  joined.set(previous);
  joined.set(chunk, previous.byteLength);
  return joined.slice(Math.max(0, joined.byteLength - n));
}

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
  // With no ?wasm the wrapper chooses (TinyRustLM.load with no module): the threaded module on
  // `threads` threads (default: the machine's cores) where this worker is cross-origin isolated,
  // else the relaxed-SIMD module where the engine validates it, else the SIMD128 one; it says which
  // and why. `wasmUrl` names a module instead, with `fallbackUrl` where memory cannot be shared. A
  // module that is not built falls back to `fallbackUrl`.
  async init({ wasmUrl, fallbackUrl, threads }) {
    try {
      lm = wasmUrl ? await TinyRustLM.load(wasmUrl, { threads, fallback: fallbackUrl }) : await TinyRustLM.load(undefined, { threads: threads ?? navigator.hardwareConcurrency ?? 1 });
    } catch (e) {
      if (!(fallbackUrl && /^fetching the module: HTTP 404/.test(e?.message))) throw e;
      lm = await TinyRustLM.load(fallbackUrl);
      lm.threadsFallbackReason = `${wasmUrl ?? "the chosen module"} is not built (make wasm-threads wasm-relaxed); running the single-thread module`;
    }
    return {
      features: lm.features,
      abiVersion: lm.abiVersion,
      threads: lm.threads,
      threaded: lm.threaded,
      threadsFallbackReason: lm.threadsFallbackReason,
      moduleChoice: lm.moduleChoice,
      crossOriginIsolated: self.crossOriginIsolated === true,
      cacheAvailable: (await packageCache()) !== null,
    };
  },

  // A URL is looked up in the package cache first (no request when it is there); a download is
  // written to the cache while it streams into the module, and kept once the package loaded.
  async load({ source, contextLength }, id) {
    const m = requireModule();
    if (m.diagnostics().model_loaded) m.unloadModel();
    let last = 0;
    const onProgress = (p) => {
      const now = performance.now();
      if (p.phase !== "read" || now - last > 50 || p.loaded === p.total) {
        last = now;
        postMessage({ id, type: "progress", progress: p });
      }
    };
    const dir = typeof source === "string" ? await packageCache() : null;
    if (dir === null) {
      const diagnostics = await m.loadModel(source, { contextLength, onProgress });
      return { diagnostics, from: typeof source === "string" ? "network" : "file" };
    }
    const index = await readIndex(dir);
    const entry = index.entries.find((e) => e.url === source);
    if (entry) {
      const file = await dir.getFileHandle(entry.name).then((h) => h.getFile(), () => null);
      if (file !== null && file.size === entry.size) {
        try {
          const diagnostics = await m.loadModel(file, { contextLength, onProgress });
          return { diagnostics, from: "cache", cached: entry };
        } catch (e) {
          // A cached copy that no longer verifies is dropped (the next load downloads it again).
          await forget(dir, entry.name);
          throw e;
        }
      }
      await forget(dir, entry.name);
    }
    const response = await fetch(source);
    if (!response.ok) throw new Error(`fetching the model: HTTP ${response.status} ${response.statusText} for ${source}`);
    const size = Number(response.headers.get("content-length"));
    if (response.body === null || !(size > 0) || response.headers.get("content-encoding")) {
      // Size unknown: loaded, not cached (the cache is keyed by size and artifact CRC).
      return { diagnostics: await m.loadModel(response, { contextLength, onProgress }), from: "network" };
    }
    const partial = `partial-${Date.now()}.slm`;
    const writable = await (await dir.getFileHandle(partial, { create: true })).createWritable();
    let tail = new Uint8Array(0);
    const teed = response.body.pipeThrough(
      new TransformStream({
        async transform(chunk, controller) {
          await writable.write(chunk);
          tail = lastBytes(tail, chunk, 4);
          controller.enqueue(chunk);
        },
      }),
    );
    let diagnostics;
    try {
      diagnostics = await m.loadModel(new Response(teed, { headers: { "content-length": String(size) } }), { contextLength, onProgress });
      await writable.close();
    } catch (e) {
      await writable.abort().catch(() => {});
      await dir.removeEntry(partial).catch(() => {});
      throw e;
    }
    // The package verified: keep it under its artifact CRC (its last 4 bytes) and size.
    const crc = new DataView(tail.buffer, tail.byteOffset, 4).getUint32(0, true);
    const name = `${crc.toString(16).padStart(8, "0")}-${size}.slm`;
    const cached = { url: source, name, size, crc, stored: new Date().toISOString() };
    try {
      const handle = await dir.getFileHandle(partial);
      if (name !== partial) {
        await dir.removeEntry(name).catch(() => {});
        await handle.move(name);
      }
      const fresh = await readIndex(dir);
      fresh.entries = fresh.entries.filter((e) => e.url !== source && e.name !== name);
      fresh.entries.push(cached);
      await writeIndex(dir, fresh);
    } catch (e) {
      // Caching is best effort: the model is loaded either way.
      await dir.removeEntry(partial).catch(() => {});
      return { diagnostics, from: "network", cacheError: String(e?.message ?? e) };
    }
    return { diagnostics, from: "network", cached };
  },

  async cacheList() {
    const dir = await packageCache();
    if (dir === null) return { available: false, entries: [] };
    return { available: true, entries: (await readIndex(dir)).entries };
  },

  async cacheDelete({ name }) {
    const dir = await packageCache();
    if (dir === null) return;
    await forget(dir, name);
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
