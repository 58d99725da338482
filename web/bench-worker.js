// One package's figures, measured the way `trl bench` measures the module under wasmtime: a prompt
// of exactly `promptTokens` tokens cut from the same prose, prefill = generate_start, decode =
// `decodeTokens` steps with end-of-generation ignored, median over `runs`.

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

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

onmessage = async ({ data: { wasmUrl, modelUrl, runs, promptTokens, decodeTokens } }) => {
  try {
    postMessage({ progress: "downloading" });
    const response = await fetch(modelUrl);
    if (!response.ok) throw new Error(`HTTP ${response.status} for ${modelUrl}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const lm = await TinyRustLM.load(wasmUrl);
    const t0 = performance.now();
    await lm.loadModel(bytes);
    const loadMs = performance.now() - t0;
    const prompt = promptOf(lm, promptTokens);
    const prefill = [];
    const decode = [];
    for (let run = 0; run < runs; run++) {
      postMessage({ progress: `run ${run + 1} of ${runs}` });
      let t = performance.now();
      lm.start(prompt, { maxTokens: decodeTokens, parseSpecial: false, ignoreEog: true });
      prefill.push((promptTokens * 1000) / (performance.now() - t));
      t = performance.now();
      while (lm.step(16).state === GenState.RUNNING);
      const n = lm.result().tokens.length;
      if (n !== decodeTokens) throw new Error(`generated ${n} tokens, wanted ${decodeTokens}`);
      decode.push((n * 1000) / (performance.now() - t));
    }
    const d = lm.diagnostics();
    postMessage({
      figures: {
        engine: "tinyrustlm wasm (browser worker)",
        package: modelUrl.split("/").pop(),
        quant: d.quant_name,
        load_ms: loadMs,
        prefill_tokens: promptTokens,
        prefill_tokens_per_s: median(prefill),
        decode_tokens: decodeTokens,
        decode_tokens_per_s: median(decode),
        memory_bytes: lm.memoryBytes,
        runs,
      },
    });
  } catch (e) {
    postMessage({ error: String(e?.message ?? e) });
  }
};
