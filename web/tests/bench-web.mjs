// `make bench-web`: prefill and decode tokens/s of the module in headless Chromium (a Web Worker,
// as the demo runs it) for the q8_0 and q4_0 packages, beside the same figures under wasmtime
// (`trl bench`) from the same run. Prints a table and writes target/web/bench.{json,md}.
// Figures only: nothing here is asserted.
//
//   node tests/bench-web.mjs [--runs 3] [--prompt 128] [--decode 128] [--models a.slm,b.slm] [--no-wasmtime]

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { launch, startServer } from "./browser.js";
import { ROOT, WASM, TRL, MODELS } from "./helpers.mjs";

const { values: opt } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    prompt: { type: "string", default: "128" },
    decode: { type: "string", default: "128" },
    models: { type: "string", default: "smollm2-135m-q8_0.slm,smollm2-135m-q4_0.slm" },
    "no-wasmtime": { type: "boolean", default: false },
  },
});
const OUT = join(ROOT, "target/web");
mkdirSync(OUT, { recursive: true });

const server = await startServer();
const browser = await launch();
let report;
try {
  const query = new URLSearchParams({ models: opt.models, runs: opt.runs, prompt: opt.prompt, decode: opt.decode });
  const { page } = browser;
  await page.goto(`${server.url}bench.html?${query}`);
  await page.waitForFunction(() => document.body.dataset.done === "1", null, { timeout: 30 * 60_000, polling: 1000 });
  report = JSON.parse(await page.textContent("#results"));
  if (report.error) throw new Error(report.error);
} finally {
  await browser.close();
  server.stop();
}

// The same packages under wasmtime, in this run, for the ratio.
const wasmtime = new Map();
if (!opt["no-wasmtime"]) {
  const quants = report.results.map((r) => r.quant).join(",");
  const out = join(OUT, "bench-wasmtime");
  execFileSync(TRL, ["--wasm", WASM, "bench", "--models", MODELS, "--quant", quants, "--no-native", "--runs", opt.runs,
    "--prompt-tokens", opt.prompt, "--decode-tokens", opt.decode, "--out", out], { stdio: ["ignore", "ignore", "inherit"] });
  for (const f of JSON.parse(readFileSync(join(out, "results.json"), "utf8")).results) wasmtime.set(f.quant, f);
}

const lines = [
  `Browser: ${report.userAgent}`,
  `Prompt ${report.promptTokens} tokens, decode ${report.decodeTokens} tokens, median of ${report.runs} runs.`,
  "",
  "| package | storage | load ms | prefill tok/s | decode tok/s | wasmtime prefill | wasmtime decode | browser / wasmtime decode |",
  "|---|---|---:|---:|---:|---:|---:|---:|",
];
for (const f of report.results) {
  const w = wasmtime.get(f.quant);
  const cell = (v) => (v === undefined ? "—" : v.toFixed(1));
  lines.push(`| ${f.package} | ${f.quant} | ${f.load_ms.toFixed(0)} | ${f.prefill_tokens_per_s.toFixed(1)} | ${f.decode_tokens_per_s.toFixed(1)} | ` +
    `${cell(w?.prefill_tokens_per_s)} | ${cell(w?.decode_tokens_per_s)} | ${w ? (f.decode_tokens_per_s / w.decode_tokens_per_s).toFixed(2) + "×" : "—"} |`);
}
const md = lines.join("\n");
console.log(md);
writeFileSync(join(OUT, "bench.md"), md + "\n");
writeFileSync(join(OUT, "bench.json"), JSON.stringify({ ...report, wasmtime: [...wasmtime.values()] }, null, 2) + "\n");
console.log(`\nwrote ${join(OUT, "bench.md")} and bench.json`);
