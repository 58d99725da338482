// The browser benchmark page: for each storage mode, our module (web/bench-worker.js, in a Web Worker
// as the demo runs it) and wllama (web/bench-wllama.js: llama.cpp in WebAssembly; the current 3.x
// release and 2.4.0's single-thread build) on a GGUF of the same weights, given the same prompt, at
// each thread count of ?threads= (default 1,2): ours on 1 thread is the single-thread module, on more
// the threaded module (`make wasm-threads`); wllama 3.x runs n_threads of each count, 2.4.0 one. More
// than one thread needs a cross-origin isolated page (web/serve.py sends COOP/COEP). All engines are
// loaded side by side and their runs alternate, so all see the same machine load. `make bench-web`
// drives the page in headless Chromium and reads #results.

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
  threads: (params.get("threads") ?? "1,2").split(",").filter(Boolean).map(Number),
};
if (!config.threads.every((t) => Number.isInteger(t) && t >= 1)) throw new Error(`threads: ${params.get("threads")} is not a list of thread counts`);
// wllama releases to run: "3" (@wllama/wllama), "2" (wllama-2, the 2.4.0 single-thread build); "0": none.
const releases = (params.get("wllama") ?? "3,2").split(",").filter((r) => r && r !== "0");
// wllama's context: the prompt, the generated tokens and headroom, rounded up to 256.
const nCtx = Math.ceil((config.promptTokens + config.decodeTokens + 64) / 256) * 256;
const wasmUrl = new URL(params.get("wasm") ?? "../target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", location.href).href;
const threadsWasmUrl = new URL(params.get("threadsWasm") ?? "../target/threads/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", location.href).href;
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

/** Our module in a worker on `threads` threads: load(), then run() as often as wanted, then close(). */
async function openOurs(model, threads) {
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
    const info = await call({ cmd: "load", wasmUrl: threads > 1 ? threadsWasmUrl : wasmUrl, threads, modelUrl: modelUrl(model), promptTokens: config.promptTokens });
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

/**
 * One storage mode: ours at every thread count, then each wllama release (3.x at every thread
 * count, 2.4.0 on 1), loaded side by side; `runs` rounds in which every engine runs once.
 */
async function measure(quant) {
  const opened = [];
  try {
    for (const threads of config.threads) {
      opened.push({ side: "ours", ...(await openOurs(`smollm2-135m-${quant}.slm`, threads)) });
    }
    const { prompt, prompt_ids } = opened[0].info;
    for (const release of releases) {
      const gguf = GGUF_OF[quant];
      for (const threads of release === "3" ? config.threads : [1]) {
        opened.push({
          side: "wllama",
          ...(await openWllama({ release, threads, ggufUrl: modelUrl(gguf), prompt, promptIds: prompt_ids, nCtx, onProgress: (p) => status(`${gguf} (wllama ${release}, ${threads} threads): ${p}`) })),
        });
      }
    }
    const samples = opened.map(() => []);
    for (let run = 0; run < config.runs; run++) {
      status(`${quant}: run ${run + 1} of ${config.runs}`);
      for (const [i, engine] of opened.entries()) samples[i].push(await engine.run(config.decodeTokens));
    }
    const engines = opened.map((e, i) => {
      const { prompt: _p, prompt_ids: _ids, ...info } = e.info;
      return { side: e.side, ...summarize(info, samples[i]) };
    });
    return { quant, prompt, prompt_ids, engines };
  } finally {
    for (const e of opened) await e.close();
  }
}

const results = [];
try {
  for (const q of quants) if (!GGUF_OF[q]) throw new Error(`unknown storage mode ${q} (known: ${Object.keys(GGUF_OF).join(", ")})`);
  for (const quant of quants) {
    const entry = await measure(quant);
    results.push(entry);
    for (const e of entry.engines) row([quant, e.engine, String(e.threads), e.package, fixed(e.load_ms, 0), fixed(e.prefill_tokens_per_s), fixed(e.decode_tokens_per_s)]);
  }
  status("Done.");
  document.getElementById("results").textContent = JSON.stringify(
    { userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency, crossOriginIsolated, ...config, wllamaContext: releases.length ? nCtx : null, results },
    null, 2);
} catch (e) {
  status(`Failed: ${e.message}`);
  document.getElementById("results").textContent = JSON.stringify({ error: e.message, results });
}
document.body.dataset.done = "1";
