// Run by Deno (not Node) from deno.test.mjs: the wrapper, unchanged, under Deno's own loader,
// fetch(file:) and timers. Prints one JSON object for the Node side to compare with `trl`.
//   deno run --allow-read tests/deno-run.mjs WASM_PATH MODEL_PATH PROMPT N [THREADS]
// With THREADS (and the threaded module) the wrapper starts THREADS - 1 workers; the script never
// calls close(), so Deno exiting at the end shows the workers do not keep it alive.

import { TinyRustLM, TrlError } from "../../abi/tinyrustlm.mjs";

const [wasm, model, prompt, n, threadsArg] = Deno.args;
const toUrl = (p) => new URL(`file://${p}`);
const lm = await TinyRustLM.load(toUrl(wasm), threadsArg ? { threads: Number(threadsArg) } : {});
const threads = { wrapper: lm.threads, diagnostics: lm.diagnostics().threads };
let progress = 0;
await lm.loadModel(toUrl(model), { onProgress: () => progress++ });
const greedy = await lm.complete(prompt, { maxTokens: Number(n) });

const controller = new AbortController();
let chunks = 0;
let abortName = null;
try {
  for await (const _ of lm.generate(prompt, { maxTokens: 200, ignoreEog: true, signal: controller.signal })) if (++chunks === 3) controller.abort();
} catch (e) {
  abortName = e.name;
}
const again = await lm.complete(prompt, { maxTokens: Number(n) });

let error = null;
try {
  lm.setSampling({ temperature: -1 });
} catch (e) {
  error = { isTrlError: e instanceof TrlError, status: e.status };
}
console.log(JSON.stringify({ progress, greedy, abortName, again, error, threads }));
