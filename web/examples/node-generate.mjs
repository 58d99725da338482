#!/usr/bin/env node
// Generate text with TinyRustLM from Node (≥ 20): the same ES module the browser uses, no
// dependencies. Streams the answer to stdout and prints the speed to stderr; Ctrl-C stops the
// generation cleanly (the engine stays usable, and the partial result is reported).
//
//   node web/examples/node-generate.mjs [--model models/smollm2-135m-q8_0.slm] [--raw] [-n 128]
//        [--temperature 0.7 --seed 42] "What is the capital of France?"

import { parseArgs } from "node:util";

import { TinyRustLM, StopReason } from "../../abi/tinyrustlm.mjs";

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: "string", default: "models/smollm2-135m-q8_0.slm" },
    wasm: { type: "string" }, // default: the `make wasm` build of this checkout
    raw: { type: "boolean", default: false }, // the prompt as is, not a chat turn
    n: { type: "string", short: "n", default: "128" },
    temperature: { type: "string", default: "0" },
    seed: { type: "string", default: "0" },
  },
});
const prompt = positionals.join(" ") || "What is the capital of France? Answer in one sentence.";

const lm = await TinyRustLM.load(opt.wasm);
let shown = -1;
try {
  await lm.loadModel(opt.model, {
    onProgress: ({ phase, loaded, total }) => {
      const percent = total ? Math.floor((100 * loaded) / total) : 0;
      if (phase === "read" && process.stderr.isTTY && percent !== shown) process.stderr.write(`\rloading ${opt.model}: ${(shown = percent)}%`);
      if (phase === "done" && shown >= 0) process.stderr.write("\n");
    },
  });
} catch (e) {
  // A TrlError names the status and the rule the package broke; a missing file is Node's ENOENT.
  console.error(`\nerror: cannot load ${opt.model}: ${e.message}`);
  process.exit(1);
}

const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
const options = {
  maxTokens: Number(opt.n),
  sampling: { temperature: Number(opt.temperature), seed: BigInt(opt.seed) },
  signal: stop.signal,
};

try {
  const stream = opt.raw ? lm.generate(prompt, options) : lm.chat([{ role: "user", content: prompt }], options);
  for await (const text of stream) process.stdout.write(text);
  process.stdout.write("\n");
} catch (e) {
  if (e.name !== "AbortError") throw e; // a TrlError carries .status and the module's message
  process.stdout.write("\n[stopped]\n");
}

const d = lm.diagnostics();
const { stop_reason } = lm.state();
const why = Object.keys(StopReason).find((k) => StopReason[k] === stop_reason) ?? String(stop_reason);
console.error(
  `[${d.prompt_tokens} prompt tokens, ${d.generated_tokens} generated (${why.toLowerCase()}); ` +
    `prefill ${d.prefill_tokens_per_s.toFixed(1)} tok/s, decode ${d.decode_tokens_per_s.toFixed(1)} tok/s; ${d.quant_name}]`,
);
