// The browser benchmark page: for each storage mode, our module (web/bench-worker.js, in a Web Worker
// as the demo runs it) and wllama (web/bench-wllama.js: llama.cpp in WebAssembly, 1 thread; the
// current 3.x release and 2.4.0's single-thread build) on a GGUF of the same weights, given the same
// prompt. All engines are loaded side by side and their runs alternate, so all see the same machine
// load. `make bench-web` drives the page in headless Chromium and reads #results.

import { openWllama } from "./bench-wllama.js";

/** Each storage mode's GGUF for wllama (the Makefile's GGUF rule makes the first two). */
const GGUF_OF = {
  q8_0: "smollm2-135m-q8_0.gguf", // requantized by llama.cpp from the shipped Q4_1
  q4_0: "smollm2-135m-q4_0.gguf", // likewise
  q4_1: "SmolLM2-135M-Instruct.Q4_1.gguf", // as shipped; our q4_1 package keeps these weights bit for bit
};

const params = new URLSearchParams(location.search);
const quants = (params.get("quants") ?? "q8_0,q4_0,q4_1").split(",").filter(Boolean);
const config = {
  runs: Number(params.get("runs") ?? 3),
  promptTokens: Number(params.get("prompt") ?? 128),
  decodeTokens: Number(params.get("decode") ?? 128),
};
// wllama releases to run: "3" (@wllama/wllama), "2" (wllama-2, the 2.4.0 single-thread build); "0": none.
const releases = (params.get("wllama") ?? "3,2").split(",").filter((r) => r && r !== "0");
// wllama's context: the prompt, the generated tokens and headroom, rounded up to 256.
const nCtx = Math.ceil((config.promptTokens + config.decodeTokens + 64) / 256) * 256;
const wasmUrl = new URL(params.get("wasm") ?? "../target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", location.href).href;
const modelUrl = (file) => new URL(`../models/${file}`, location.href).href;
const statusLine = document.getElementById("status");
/** Shows progress on the page and in the console (`make bench-web` echoes "[bench]" lines). */
function status(text) {
  statusLine.textContent = text;
  console.info(`[bench] ${text}`);
}

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Our module in a worker: load(), then run() as often as wanted, then close(). */
async function openOurs(model) {
  const worker = new Worker(new URL("./bench-worker.js", import.meta.url), { type: "module" });
  const call = (message) =>
    new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => {
        if (data.progress) return status(`${model}: ${data.progress}`);
        data.error ? reject(new Error(`${model}: ${data.error}`)) : resolve(data.loaded ?? data.sample);
      };
      worker.onerror = (e) => reject(new Error(`${model}: worker failed: ${e.message}`));
      worker.postMessage(message);
    });
  try {
    const info = await call({ cmd: "load", wasmUrl, modelUrl: modelUrl(model), promptTokens: config.promptTokens });
    return { info, run: (decodeTokens) => call({ cmd: "run", decodeTokens }), close: () => worker.terminate() };
  } catch (e) {
    worker.terminate();
    throw e;
  }
}

/** Medians of the runs' samples, with the samples and the first run's text kept. */
function summarize(info, samples) {
  return {
    ...info,
    prefill_tokens: info.prompt_ids?.length ?? config.promptTokens,
    prefill_tokens_per_s: median(samples.map((s) => s.prefill_tokens_per_s)),
    decode_tokens: config.decodeTokens,
    decode_tokens_per_s: median(samples.map((s) => s.decode_tokens_per_s)),
    runs: samples.length,
    samples: samples.map(({ text, tokens, ...figures }) => figures),
    text: samples[0]?.text ?? null,
    tokens: samples[0]?.tokens ?? null,
  };
}

/** How many leading items (characters or tokens) two greedy continuations of one prompt share. */
function agreeing(a, b) {
  if (a == null || b == null) return null;
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const v of cells) {
    const td = document.createElement("td");
    td.textContent = v;
    tr.append(td);
  }
  document.querySelector("#table tbody").append(tr);
}

const fixed = (v, d = 1) => (v == null ? "–" : v.toFixed(d));

async function measure(quant) {
  const ours = await openOurs(`smollm2-135m-${quant}.slm`);
  const others = [];
  try {
    for (const release of releases) {
      const gguf = GGUF_OF[quant];
      others.push(await openWllama({
        release,
        ggufUrl: modelUrl(gguf),
        prompt: ours.info.prompt,
        promptIds: ours.info.prompt_ids,
        nCtx,
        onProgress: (p) => status(`${gguf} (wllama ${release}): ${p}`),
      }));
    }
    const engines = [ours, ...others];
    const samples = engines.map(() => []);
    for (let run = 0; run < config.runs; run++) {
      status(`${quant}: run ${run + 1} of ${config.runs}`);
      for (const [i, engine] of engines.entries()) samples[i].push(await engine.run(config.decodeTokens));
    }
    const { prompt, prompt_ids, ...oursInfo } = ours.info;
    const entry = { quant, prompt, ours: summarize(oursInfo, samples[0]), wllama: [] };
    for (const [i, other] of others.entries()) {
      const wl = summarize(other.info, samples[i + 1]);
      entry.wllama.push({
        ...wl,
        decode_ratio: entry.ours.decode_tokens_per_s / wl.decode_tokens_per_s,
        prefill_ratio: entry.ours.prefill_tokens_per_s / wl.prefill_tokens_per_s,
        agreeing_chars: agreeing(entry.ours.text, wl.text),
        agreeing_tokens: agreeing(entry.ours.tokens, wl.tokens),
      });
    }
    return entry;
  } finally {
    ours.close();
    for (const other of others) await other.close();
  }
}

const results = [];
try {
  for (const q of quants) if (!GGUF_OF[q]) throw new Error(`unknown storage mode ${q} (known: ${Object.keys(GGUF_OF).join(", ")})`);
  for (const quant of quants) {
    const entry = await measure(quant);
    results.push(entry);
    const { ours } = entry;
    row([quant, ours.engine, ours.package, fixed(ours.load_ms, 0), fixed(ours.prefill_tokens_per_s), fixed(ours.decode_tokens_per_s), "", ""]);
    for (const wl of entry.wllama) {
      row([quant, wl.engine, wl.package, fixed(wl.load_ms, 0), fixed(wl.prefill_tokens_per_s), fixed(wl.decode_tokens_per_s),
        `${fixed(wl.decode_ratio, 2)}×`, `${fixed(wl.prefill_ratio, 2)}×`]);
    }
  }
  status("Done.");
  document.getElementById("results").textContent = JSON.stringify(
    { userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency, ...config, wllamaContext: releases.length ? nCtx : null, results },
    null, 2);
} catch (e) {
  status(`Failed: ${e.message}`);
  document.getElementById("results").textContent = JSON.stringify({ error: e.message, results });
}
document.body.dataset.done = "1";
