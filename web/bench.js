// The browser benchmark page: runs web/bench-worker.js once per package and shows the figures.
// `make bench-web` drives it in headless Chromium and reads #results.

const params = new URLSearchParams(location.search);
const models = (params.get("models") ?? "smollm2-135m-q8_0.slm,smollm2-135m-q4_0.slm").split(",").filter(Boolean);
const config = {
  runs: Number(params.get("runs") ?? 3),
  promptTokens: Number(params.get("prompt") ?? 128),
  decodeTokens: Number(params.get("decode") ?? 128),
};
const wasmUrl = new URL(params.get("wasm") ?? "../target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", location.href).href;
const status = document.getElementById("status");

function measure(model) {
  const worker = new Worker(new URL("./bench-worker.js", import.meta.url), { type: "module" });
  return new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => {
      if (data.progress) return (status.textContent = `${model}: ${data.progress}`);
      worker.terminate();
      data.error ? reject(new Error(`${model}: ${data.error}`)) : resolve(data.figures);
    };
    worker.onerror = (e) => {
      worker.terminate();
      reject(new Error(`${model}: worker failed: ${e.message}`));
    };
    worker.postMessage({ wasmUrl, modelUrl: new URL(`../models/${model}`, location.href).href, ...config });
  });
}

function row(f) {
  const tr = document.createElement("tr");
  const mib = (b) => `${(b / 1048576).toFixed(0)} MiB`;
  for (const v of [f.package, f.quant, f.load_ms.toFixed(0), f.prefill_tokens_per_s.toFixed(1), f.decode_tokens_per_s.toFixed(1), mib(f.memory_bytes)]) {
    const td = document.createElement("td");
    td.textContent = v;
    tr.append(td);
  }
  document.querySelector("#table tbody").append(tr);
}

const results = [];
try {
  for (const model of models) {
    const figures = await measure(model);
    results.push(figures);
    row(figures);
  }
  status.textContent = "Done.";
  document.getElementById("results").textContent = JSON.stringify({ userAgent: navigator.userAgent, ...config, results }, null, 2);
} catch (e) {
  status.textContent = `Failed: ${e.message}`;
  document.getElementById("results").textContent = JSON.stringify({ error: e.message, results });
}
document.body.dataset.done = "1";
