// Our module's side of the browser benchmark, measured the way `trl bench` measures it under
// wasmtime: a prompt of exactly `promptTokens` tokens cut from the same prose, prefill =
// generate_start, decode = `decodeTokens` greedy tokens with end-of-generation ignored.
//
// Messages: {cmd: "load", wasmUrl, threads, modelUrl, promptTokens} → {loaded: {load_ms, quant, prompt,
// prompt_ids, ...}} (the prompt goes to wllama too); then {cmd: "run", decodeTokens} →
// {sample: {prefill_tokens_per_s, decode_tokens_per_s, tokens, text}} as many times as the page
// wants, so that it can alternate our runs with wllama's and all see the same machine load.
// Failures come back as {error}. `threads` > 1 needs the threaded module (`wasmUrl`) and a
// cross-origin isolated page; the run fails rather than fall back to fewer threads.

import { TinyRustLM, GenState } from "../abi/tinyrustlm.mjs";

/** `trl bench`'s prompt source (harness/src/bench.rs), so both hosts run the same tokens. */
const PROMPT_SOURCE =
  "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg " +
  "combined movable metal type, oil-based ink and a wooden press adapted from those used to make wine. Books, " +
  "which had been copied by hand for centuries, could now be produced in hundreds of identical copies, and " +
  "ideas travelled across Europe faster than ever before. ";

/** A prompt of exactly n tokens: whole words while they fit, then " a" until the count is exact. */
function promptOf(lm, n) {
  const words = PROMPT_SOURCE.split(" ").filter((w) => w);
  const count = (t) => lm.tokenize(t, { parseSpecial: false }).length;
  let text = "";
  for (let i = 0; ; i++) {
    const candidate = text ? `${text} ${words[i % words.length]}` : words[i % words.length];
    const c = count(candidate);
    if (c > n) break;
    text = candidate;
    if (c === n) return text;
  }
  while (count(text) < n) text += " a";
  if (count(text) !== n) throw new Error(`could not build a prompt of exactly ${n} tokens`);
  return text;
}

let lm = null;
let prompt = null;
let promptIds = null;

async function load({ wasmUrl, threads = 1, modelUrl, promptTokens }) {
  postMessage({ progress: "downloading" });
  const response = await fetch(modelUrl);
  if (!response.ok) throw new Error(`HTTP ${response.status} for ${modelUrl}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  lm = await TinyRustLM.load(wasmUrl, { threads, fallback: null });
  if (lm.threads !== threads) throw new Error(`the module runs ${lm.threads} threads, wanted ${threads}${lm.threadsFallbackReason ? `: ${lm.threadsFallbackReason}` : ""}`);
  postMessage({ progress: "loading" });
  const t0 = performance.now();
  await lm.loadModel(bytes);
  const loadMs = performance.now() - t0;
  prompt = promptOf(lm, promptTokens);
  promptIds = [...lm.tokenize(prompt, { parseSpecial: false })];
  // One short untimed generation first, as wllama gets (bench-wllama.js).
  lm.start(prompt.slice(0, 64), { maxTokens: 4, parseSpecial: false, ignoreEog: true });
  while (lm.step(16).state === GenState.RUNNING);
  lm.readText();
  const d = lm.diagnostics();
  return {
    engine: lm.threaded ? "tinyrustlm wasm threaded (browser worker)" : "tinyrustlm wasm (browser worker)",
    threads: lm.diagnostics().threads,
    package: modelUrl.split("/").pop(),
    quant: d.quant_name,
    load_ms: loadMs,
    memory_bytes: lm.memoryBytes,
    prompt,
    prompt_ids: promptIds,
  };
}

function run({ decodeTokens }) {
  let t = performance.now();
  lm.start(prompt, { maxTokens: decodeTokens, parseSpecial: false, ignoreEog: true });
  const prefillMs = performance.now() - t;
  t = performance.now();
  while (lm.step(16).state === GenState.RUNNING);
  const decodeMs = performance.now() - t;
  const result = lm.result();
  if (result.tokens.length !== decodeTokens) throw new Error(`generated ${result.tokens.length} tokens, wanted ${decodeTokens}`);
  if (result.prompt_tokens.join() !== promptIds.join()) throw new Error(`the prompt ran as ${result.prompt_tokens.length} tokens other than the ${promptIds.length} tokenized`);
  return {
    prefill_tokens_per_s: (promptIds.length * 1000) / prefillMs,
    decode_tokens_per_s: (decodeTokens * 1000) / decodeMs,
    tokens: [...result.tokens],
    text: lm.readText(), // read after the clock stopped
  };
}

onmessage = async ({ data }) => {
  try {
    if (data.cmd === "load") postMessage({ loaded: await load(data) });
    else if (data.cmd === "run") postMessage({ sample: run(data) });
    else throw new Error(`unknown command ${data.cmd}`);
  } catch (e) {
    postMessage({ error: String(e?.message ?? e) });
  }
};
