// The demo page's thread: UI only. The runtime lives in worker.js, so the page stays responsive
// while the model loads, generates or evaluates.
//
// Query parameters: ?model=NAME.slm selects a package from models/ (and ?autoload=1 loads it);
// ?wasm=URL picks another module build; ?threads=N runs the threaded module on N threads (default:
// the machine's cores). The threaded module (`make wasm-threads`) needs a cross-origin isolated page
// (web/serve.py sends the COOP/COEP headers); elsewhere the single-thread one runs, and the page
// says why.

import { renderLineage, readPackets } from "./lineage.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// ---- the worker and its request/reply protocol ------------------------------------------------

const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const pending = new Map();
let nextId = 1;

/**
 * Sends a request; `onEvent` receives progress and chunk messages. Resolves with the reply's value,
 * rejects with the worker's error record.
 */
function request(op, args = {}, onEvent = null, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onEvent });
    worker.postMessage({ id, op, ...args }, transfer);
  });
}

worker.onmessage = ({ data }) => {
  if (data.type === "diagnostics") return showDiagnostics(data);
  const p = pending.get(data.id);
  if (!p) return;
  if (data.type === "done") {
    pending.delete(data.id);
    p.resolve(data.value);
  } else if (data.type === "error") {
    pending.delete(data.id);
    p.reject(data.error);
  } else {
    p.onEvent?.(data);
  }
};

worker.onerror = (e) => {
  e.preventDefault();
  showError({ message: `The runtime's worker failed to start: ${e.message || "see the browser console"}` });
  setBusy("broken");
};

// ---- page state ---------------------------------------------------------------------------------

const state = {
  busy: "starting",
  features: { adapters: false, evaluate: false },
  diagnostics: null,
  modelName: null,
  /** Chat conversation so far (rendered with the package's template): { role, content } */
  messages: [],
  adapters: [],
  adapterFile: null,
  evalFile: null,
  packets: [],
};

function setBusy(busy) {
  state.busy = busy;
  document.body.dataset.busy = busy;
  const loaded = !!state.diagnostics?.model_loaded;
  const idle = busy === "idle";
  $("send").disabled = !(idle && loaded);
  $("stop").disabled = busy !== "generating";
  $("new-chat").disabled = !(idle && loaded);
  $("model-load-url").disabled = !idle || !$("model-select").value;
  $("model-file").disabled = !idle;
  const adapters = idle && loaded && state.features.adapters;
  $("adapter-validate").disabled = !(adapters && state.adapterFile);
  $("adapter-apply").disabled = !(adapters && state.adapterFile);
  $("adapter-remove").disabled = !(adapters && state.adapters.length > 0);
  $("adapter-reset").disabled = !(adapters && state.adapters.length > 0);
  $("eval-run").disabled = !(idle && loaded && state.features.evaluate && state.evalFile);
}

function setStatus(text) {
  $("status").textContent = text;
}

// ---- errors, shown plainly ---------------------------------------------------------------------

/** A sentence for the person in front of the page, by status code (tinyrustlm.h). */
function explain(e) {
  const s = e.status;
  if (s === undefined) return e.name === "AbortError" ? "Stopped." : "";
  if (s >= 16 && s <= 43) return "This file is not a valid model package, or it is damaged. Nothing was loaded.";
  if (s === 5) return "The conversation no longer fits in the model's context. Start a new chat, or reload the model with a larger context.";
  if (s === 4) return "The runtime ran out of memory. Nothing was changed; try a smaller model or a shorter context.";
  if (s === 6) return "A sampling setting is out of range.";
  if (s >= 96 && s <= 103) return "The grammar or JSON Schema was refused (the message names the rule or keyword). Nothing was generated.";
  if (s === 69) return "This adapter was made for another model (its parent identity differs from the loaded model's). Nothing was changed.";
  if ((s >= 64 && s <= 79) || (e.call && /adapter/.test(e.call))) return "The adapter was refused and nothing was changed (it must be made for exactly this model).";
  return "";
}

function showError(e) {
  const title = e.statusName ? `${e.statusName} (status ${e.status})` : e.name && e.name !== "Error" ? e.name : "Error";
  $("error-title").textContent = title;
  const hint = explain(e);
  // The module's text starts with the status name, already in the title.
  const message = String(e.message ?? e).replace(new RegExp(`^${e.statusName ?? "\\0"}: `), "");
  $("error-text").textContent = `${hint ? `${hint} ` : ""}${message}`;
  $("error").hidden = false;
}

$("error-close").onclick = () => ($("error").hidden = true);

function clearError() {
  $("error").hidden = true;
}

// ---- formatting ---------------------------------------------------------------------------------

function bytes(n) {
  if (!Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

const hex = (n) => n.toString(16).padStart(8, "0");
const STOP_REASONS = ["none", "end of generation", "max tokens", "stop string", "context full", "grammar complete", "grammar incomplete (max tokens before the JSON was complete)"];

// ---- diagnostics ------------------------------------------------------------------------------

function showDiagnostics({ diagnostics: d, features }) {
  state.diagnostics = d;
  if (features) state.features = features;
  const rows = d.model_loaded
    ? [
        ["Model", state.modelName ?? "(loaded)"],
        ["Storage", d.quant_name],
        ["Parameters", d.n_params.toLocaleString("en")],
        ["Threads", String(d.threads)],
        ["Decode", `${d.decode_tokens_per_s.toFixed(1)} tok/s`],
        ["Prefill", `${d.prefill_tokens_per_s.toFixed(1)} tok/s`],
        ["Last prompt", `${d.prompt_tokens} tokens`],
        ["Last output", `${d.generated_tokens} tokens`],
        ["KV length", `${d.kv_len} / ${d.context_len}`],
        ["Peak scratch", bytes(d.peak_scratch_bytes)],
        ["Package", bytes(d.package_bytes)],
        ["Linear memory", bytes(d.linear_memory_bytes)],
        ["Adapters", String(d.adapters_applied)],
        ["Assembly CRC", hex(d.assembly_state_crc)],
        ["Layout CRC", hex(d.tensor_layout_crc)],
        ["Tokenizer CRC", hex(d.tokenizer_crc)],
        ["Chat format", chatFormatName(d.chat_template)],
        ["Tokens since load", String(d.total_generated_tokens)],
      ]
    : [["Model", "none"], ["Threads", String(d.threads)], ["Linear memory", bytes(d.linear_memory_bytes)]];
  const dl = $("diagnostics");
  dl.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dd.dataset.field = k;
      return [dt, dd];
    }),
  );
  setBusy(state.busy);
}

/**
 * The package's chat template as shown (diagnostics `chat_template`, abi/FORMAT.md): 1 and 2 are
 * both ChatML and differ in the default system prompt, so Qwen's is named; 3 is Gemma's turns.
 */
function chatFormatName(template) {
  return { 0: "none", 1: "ChatML", 2: "ChatML (Qwen)", 3: "Gemma" }[template] ?? `template ${template}`;
}

// ---- loading a model --------------------------------------------------------------------------

async function listServerModels() {
  const select = $("model-select");
  try {
    const res = await fetch("../models/");
    if (!res.ok) return;
    const html = await res.text();
    const names = [...new Set([...html.matchAll(/href="([^"?#/]+\.slm)"/g)].map((m) => decodeURIComponent(m[1])))].sort();
    if (names.length === 0) return;
    select.replaceChildren(...names.map((n) => new Option(n, n)));
    const wanted = params.get("model") ?? names.find((n) => n.includes("q8_0")) ?? names[0];
    if (names.includes(wanted)) select.value = wanted;
  } catch {
    // Not served from the repository: the file picker and drop zone still work.
  }
}

async function loadModel(source, name) {
  clearError();
  setBusy("loading");
  const bar = $("load-progress");
  bar.hidden = false;
  bar.value = 0;
  bar.removeAttribute("data-done");
  setStatus(`Loading ${name}…`);
  const contextLength = Number($("context-len").value) || 0;
  try {
    state.modelName = null;
    const started = performance.now();
    const { diagnostics, from, cacheError } = await request("load", { source, contextLength }, ({ progress: p }) => {
      if (p.phase === "read") {
        if (p.total) {
          bar.max = p.total;
          bar.value = p.loaded;
          setStatus(`Loading ${name}: ${bytes(p.loaded)} of ${bytes(p.total)} received, ${bytes(p.verified)} verified`);
        } else {
          bar.removeAttribute("value");
          setStatus(`Loading ${name}: ${bytes(p.loaded)}`);
        }
      } else if (p.phase === "validate") {
        setStatus(`Checking ${name} (every byte is validated)…`);
      }
    });
    state.modelName = name;
    state.messages = [];
    state.adapters = [];
    renderAdapters();
    $("transcript").replaceChildren();
    bar.dataset.done = "1";
    bar.hidden = true;
    showDiagnostics({ diagnostics });
    const d = diagnostics;
    $("model-summary").textContent = `${name}: ${d.n_params.toLocaleString("en")} parameters, ${d.quant_name}, context ${d.context_len}, ` +
      `${d.chat_template === 0 ? "no chat template (use raw prompts)" : `${chatFormatName(d.chat_template)} chat`}.`;
    if (d.chat_template === 0) document.querySelector('input[name="mode"][value="raw"]').checked = true;
    const origin = { cache: " (from this browser's cache: nothing downloaded)", network: " (downloaded)", file: "" }[from] ?? "";
    // Read by the browser benchmark (bench-web: first and second visit).
    document.body.dataset.loadMs = String(Math.round(performance.now() - started));
    document.body.dataset.loadedFrom = from ?? "";
    setStatus(`Ready: ${name}${origin}` + (cacheError ? ` — not kept for the next visit: ${cacheError}` : ""));
    renderCache();
  } catch (e) {
    bar.hidden = true;
    showError(e);
    $("model-summary").textContent = "No model loaded.";
    setStatus("No model loaded.");
  } finally {
    setBusy("idle");
  }
}

/** Lists the packages kept in OPFS, each with a button that deletes it. */
async function renderCache() {
  const { available, entries } = await request("cacheList");
  const status = $("cache-status");
  const list = $("cache-list");
  document.body.dataset.cacheEntries = String(entries.length);
  if (!available) {
    status.textContent = "This browser gives the page no Origin Private File System: packages are downloaded on every visit.";
    list.replaceChildren();
    return;
  }
  status.textContent = entries.length === 0
    ? "None yet. A package loaded from this server is kept here (keyed by its artifact CRC and size) and loads without a download next time."
    : `${entries.length} package${entries.length === 1 ? "" : "s"}, ${bytes(entries.reduce((n, e) => n + e.size, 0))}. A kept package is verified again on every load.`;
  list.replaceChildren(...entries.map((e) => {
    const li = document.createElement("li");
    const label = decodeURIComponent(new URL(e.url).pathname.split("/").pop());
    li.textContent = `${label}: ${bytes(e.size)}, artifact CRC ${e.crc.toString(16).padStart(8, "0")} `;
    const del = document.createElement("button");
    del.type = "button";
    del.textContent = "Delete";
    del.dataset.name = e.name;
    del.onclick = async () => {
      await request("cacheDelete", { name: e.name });
      renderCache();
    };
    li.append(del);
    return li;
  }));
}

$("model-load-url").onclick = () => {
  const name = $("model-select").value;
  if (name) loadModel(new URL(`../models/${encodeURIComponent(name)}`, location.href).href, name);
};

$("model-file").onchange = (e) => {
  const file = e.target.files[0];
  if (file) loadModel(file, file.name);
};

// ---- chat ---------------------------------------------------------------------------------------

function bubble(role, text = "") {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(who, body);
  $("transcript").append(div);
  div.scrollIntoView({ block: "end" });
  return body;
}

for (const id of ["json-schema", "json-note"]) $(id).hidden = true;
$("json-output").addEventListener("change", () => {
  for (const id of ["json-schema", "json-note"]) $(id).hidden = !$("json-output").checked;
});

function sampling() {
  const num = (id) => Number($(id).value);
  return {
    temperature: num("temperature"),
    topK: num("top-k"),
    topP: num("top-p"),
    minP: num("min-p"),
    repetitionPenalty: num("repeat-penalty"),
    seed: BigInt(Math.max(0, Math.floor(num("seed")) || 0)),
  };
}

async function send() {
  const text = $("prompt").value;
  if (!text.trim() || state.busy !== "idle") return;
  clearError();
  const mode = document.querySelector('input[name="mode"]:checked').value;
  const request_ = { mode, maxTokens: Number($("max-tokens").value) || 256, sampling: sampling() };
  if ($("json-output").checked) {
    // Sent as text: the module parses and checks the schema (a bad one is a status, shown below).
    request_.jsonSchema = $("json-schema").value;
  }
  if (mode === "chat") {
    state.messages.push({ role: "user", content: text });
    request_.messages = state.messages.slice();
    bubble("user", text);
  } else {
    request_.prompt = text;
    bubble("prompt", text);
  }
  $("prompt").value = "";
  const out = bubble(mode === "chat" ? "assistant" : "completion");
  out.parentElement.classList.add("streaming");
  setBusy("generating");
  setStatus("Generating…");
  try {
    const { result } = await request("generate", request_, ({ text: t }) => {
      out.textContent += t;
      out.parentElement.scrollIntoView({ block: "end" });
    });
    if (mode === "chat") state.messages.push({ role: "assistant", content: result.text });
    const why = result.aborted ? "stopped" : STOP_REASONS[result.stop_reason] ?? String(result.stop_reason);
    $("last-stop").textContent = `${result.tokens.length} tokens, ${why}`;
    $("last-stop").dataset.stop = result.aborted ? "aborted" : String(result.stop_reason);
    $("last-tokens").textContent = JSON.stringify(result.tokens);
    $("last-prompt-tokens").textContent = JSON.stringify(result.prompt_tokens);
    if (result.aborted) out.parentElement.classList.add("stopped");
    setStatus(result.aborted ? "Stopped." : "Ready.");
  } catch (e) {
    if (mode === "chat") state.messages.pop();
    out.parentElement.classList.add("failed");
    showError(e);
    setStatus("The last request failed; the model is still loaded.");
  } finally {
    out.parentElement.classList.remove("streaming");
    setBusy("idle");
  }
}

$("composer").onsubmit = (e) => {
  e.preventDefault();
  send();
};
$("prompt").onkeydown = (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    send();
  }
};
$("stop").onclick = () => worker.postMessage({ op: "stop" });
$("new-chat").onclick = async () => {
  state.messages = [];
  $("transcript").replaceChildren();
  try {
    await request("reset");
  } catch (e) {
    showError(e);
  }
};
// Greedy as `trl generate` does it by default: argmax with no repetition penalty.
$("greedy").onclick = () => {
  $("temperature").value = "0";
  $("repeat-penalty").value = "1";
};

// ---- adapters -----------------------------------------------------------------------------------

function renderAdapters() {
  $("adapter-list").replaceChildren(
    ...state.adapters.map((a) => {
      const li = document.createElement("li");
      li.textContent = `${a.name} → assembly CRC ${hex(a.crc)}`;
      return li;
    }),
  );
  setBusy(state.busy);
}

async function adapterOp(op, label) {
  clearError();
  setBusy("working");
  try {
    const bytes = op === "validateAdapter" || op === "applyAdapter" ? new Uint8Array(await state.adapterFile.arrayBuffer()) : undefined;
    const value = await request(op, { bytes });
    if (op === "validateAdapter") setStatus(`${state.adapterFile.name} fits the loaded model.`);
    if (op === "applyAdapter") state.adapters.push({ name: state.adapterFile.name, crc: value.assembly_state_crc });
    if (op === "removeLastAdapter") state.adapters.pop();
    if (op === "resetAdapters") state.adapters = [];
    if (op !== "validateAdapter") {
      state.messages = [];
      setStatus(`${label}: assembly CRC ${hex(value.assembly_state_crc)}, ${value.adapters_applied} applied.`);
    }
    renderAdapters();
  } catch (e) {
    showError(e);
  } finally {
    setBusy("idle");
  }
}

$("adapter-file").onchange = (e) => {
  state.adapterFile = e.target.files[0] ?? null;
  setBusy(state.busy);
};
$("adapter-validate").onclick = () => adapterOp("validateAdapter", "Validated");
$("adapter-apply").onclick = () => adapterOp("applyAdapter", "Applied");
$("adapter-remove").onclick = () => adapterOp("removeLastAdapter", "Removed");
$("adapter-reset").onclick = () => adapterOp("resetAdapters", "Back to the parent");

// ---- evaluation -------------------------------------------------------------------------------

$("eval-file").onchange = (e) => {
  state.evalFile = e.target.files[0] ?? null;
  setBusy(state.busy);
};

$("eval-run").onclick = async () => {
  clearError();
  setBusy("working");
  setStatus(`Evaluating ${state.evalFile.name}…`);
  try {
    const cases = new Uint8Array(await state.evalFile.arrayBuffer());
    const { sidecarBytes, sidecar } = await request("evaluate", { bytes: cases });
    const link = $("eval-download");
    if (link.href) URL.revokeObjectURL(link.href);
    // The exact bytes the module wrote, so the download hashes the same as the CLI's sidecar.
    link.href = URL.createObjectURL(new Blob([sidecarBytes], { type: "application/json" }));
    link.download = state.evalFile.name.replace(/\.jsonl?$/, "") + ".sidecar.json";
    link.hidden = false;
    $("eval-summary").textContent = summarizeSidecar(sidecar);
    setStatus("Evaluation finished.");
  } catch (e) {
    showError(e);
  } finally {
    setBusy("idle");
  }
};

function summarizeSidecar(s) {
  const t = s?.totals ?? {};
  const passed = t.passed ?? t.n_passed;
  const total = t.cases ?? t.total ?? t.n_cases;
  const met = s?.boundary_met ?? s?.quality_boundary?.met ?? t.boundary_met;
  const parts = [];
  if (s?.suite) parts.push(`${s.suite.name ?? s.suite}${s.suite.version ? ` v${s.suite.version}` : ""}`);
  if (passed !== undefined && total !== undefined) parts.push(`${passed} of ${total} passed`);
  if (met !== undefined) parts.push(met ? "quality boundary met" : "quality boundary NOT met");
  return parts.join(" · ") || "Sidecar written.";
}

// ---- drop anything on the page ------------------------------------------------------------------

/** What a dropped file is, from its first bytes (packages and adapters) or its name. */
async function classify(file) {
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  const magic = String.fromCharCode(...head);
  if (magic === "SLM1") return "model";
  if (["ADP1", "ASP1", "ALR1"].includes(magic)) return "adapter";
  if (/\.jsonl$/i.test(file.name)) return "eval";
  if (/\.json$/i.test(file.name)) return "packet";
  return "unknown";
}

async function takeFiles(files) {
  const packets = [];
  for (const file of files) {
    const kind = await classify(file);
    if (kind === "model") {
      if (state.busy === "idle") await loadModel(file, file.name);
    } else if (kind === "adapter") {
      state.adapterFile = file;
      setStatus(`Adapter ${file.name} selected: Validate or Apply it.`);
    } else if (kind === "eval") {
      state.evalFile = file;
      setStatus(`Eval file ${file.name} selected: press Run.`);
    } else if (kind === "packet") {
      packets.push(file);
    } else {
      showError({ message: `${file.name}: not a model package (SLM1), an adapter (ADP1/ASP1/ALR1), an eval file (.jsonl) or a release packet (.json).` });
    }
  }
  if (packets.length) await addPackets(packets);
  setBusy(state.busy);
}

async function addPackets(files) {
  try {
    const { packets, problems } = await readPackets(files);
    state.packets.push(...packets);
    renderLineage($("lineage"), state.packets);
    if (problems.length) showError({ message: problems.join(" ") });
  } catch (e) {
    showError(e);
  }
}

$("packet-files").onchange = (e) => addPackets([...e.target.files]);

const zone = $("drop-zone");
document.addEventListener("dragover", (e) => {
  e.preventDefault();
  zone.classList.add("over");
});
document.addEventListener("dragleave", (e) => {
  if (e.relatedTarget === null) zone.classList.remove("over");
});
document.addEventListener("drop", (e) => {
  e.preventDefault();
  zone.classList.remove("over");
  if (e.dataTransfer?.files?.length) takeFiles([...e.dataTransfer.files]);
});

// ---- start ----------------------------------------------------------------------------------------

const SINGLE_THREAD_WASM = "../target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm";

/** Shows how many threads the runtime runs on, and why only one when more were wanted. */
function showThreads({ threads, threadsFallbackReason, moduleChoice }) {
  const el = $("threads");
  el.dataset.threads = String(threads);
  el.dataset.fallback = threadsFallbackReason ? "1" : "0";
  el.textContent = `Running on ${threads} thread${threads === 1 ? "" : "s"}` + (threadsFallbackReason ? ` — ${threadsFallbackReason}.` : ".") +
    (moduleChoice ? ` Module: ${moduleChoice.flavour} (${moduleChoice.reason}).` : "");
  el.dataset.module = moduleChoice?.flavour ?? "";
}

async function start() {
  // No ?wasm: the wrapper chooses the module (threaded, relaxed-SIMD or SIMD128) and says which.
  const wasmUrl = params.has("wasm") ? new URL(params.get("wasm"), location.href).href : undefined;
  const fallbackUrl = new URL(SINGLE_THREAD_WASM, location.href).href;
  const threads = params.has("threads") ? Number(params.get("threads")) : undefined;
  try {
    const init = await request("init", { wasmUrl, fallbackUrl, threads });
    const { features } = init;
    state.features = features;
    showThreads(init);
    renderCache();
    $("adapter-support").textContent = features.adapters ? "Apply adapters made for the loaded model; remove them to return to the parent." : "This build of the module has no adapter exports.";
    $("eval-support").textContent = features.evaluate ? "Run an eval-case file (.jsonl) greedily and download its sidecar." : "This build of the module has no eval export.";
    setStatus("Runtime ready. Load a model.");
  } catch (e) {
    showError({ ...e, message: `Could not start the runtime from ${wasmUrl} (run \`make wasm wasm-threads\`, then \`make demo\`): ${e.message}` });
    setBusy("broken");
    return;
  }
  await listServerModels();
  setBusy("idle");
  if (params.get("autoload") && $("model-select").value) $("model-load-url").click();
}

start();
