// The wllama side of the browser benchmark: llama.cpp compiled to WebAssembly, from npm, served from
// web/node_modules, on the CPU only, running the same prompt and the same number of greedy tokens
// (end-of-generation ignored) as bench-worker.js runs on our module. Two releases:
//
// - `@wllama/wllama` 3.x, the current one: one build (memory64, JSPI, compiled with pthreads) run
//   with n_threads=1, or more on a cross-origin isolated page (its pthreads then share the work, as
//   our workers do; the bench page is served with COOP/COEP). It wraps llama-server's `server-context` and takes prompts as text only (a
//   token-id array makes its worker fail), so it gets our prompt text and the run fails unless
//   llama.cpp's tokenizer cuts it into as many tokens as ours did. Timing comes from llama.cpp's own
//   per-request timings: prompt_ms is the prompt's forward pass plus sampling the first token;
//   predicted_ms runs from that first token to the last and predicted_n counts all generated tokens,
//   the first included. They exclude the page↔worker messaging (the request's wall-clock time,
//   also recorded, includes it).
// - `wllama-2` (npm alias of `@wllama/wllama` 2.4.0), the last release with a separate
//   single-thread build (memory32, no pthreads). Its low-level API takes our prompt's token ids
//   as they are: prefill = decode(prompt ids); decode = sample, accept and decode one token at a
//   time, timed with performance.now() around the calls to its worker (three messages per token).
//
// Our side counts the same way (generate_start = tokenizing the prompt and its forward pass; the
// decode loop samples `decode` tokens, every one but the first after a forward pass), so the rates
// divide like for like.

import { Wllama as Wllama3 } from "./node_modules/@wllama/wllama/esm/index.js";
import { Wllama as Wllama2 } from "./node_modules/wllama-2/esm/index.js";

const asset = (path) => new URL(`./node_modules/${path}`, import.meta.url).href;
async function versionOf(pkg) {
  return (await (await fetch(asset(`${pkg}/package.json`))).json()).version;
}

// wllama logs each loading step at debug level, and 2.x warns that it runs single-threaded, which
// is what we ask for; keep the other warnings and the errors.
const logger = {
  debug() {},
  log() {},
  info() {},
  warn: (...a) => String(a[0]).includes("single-thread") || console.warn(...a),
  error: console.error,
};

async function fetchBlob(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`HTTP ${response.status} for ${url}`);
  return response.blob();
}

/**
 * Loads `ggufUrl` into wllama (`release` "3" with `threads` threads, or "2" on 1; no WebGPU) and runs one short
 * untimed warm-up. The returned object's `run(decodeTokens)` times one greedy generation from the
 * prompt (`prompt` text for 3.x, `promptIds` for 2.x; `promptIds.length` tokens either way);
 * `close()` ends wllama's worker.
 */
export async function openWllama({ release, threads = 1, ggufUrl, prompt, promptIds, nCtx, onProgress = () => {} }) {
  onProgress("downloading");
  const blob = await fetchBlob(ggufUrl);
  const open = release === "3" ? openWllama3 : release === "2" ? openWllama2 : null;
  if (!open) throw new Error(`unknown wllama release ${release}`);
  onProgress("loading");
  if (release === "2" && threads !== 1) throw new Error("wllama 2.x runs its single-thread build only here (threads 1)");
  return open({ blob, package: ggufUrl.split("/").pop(), prompt, promptIds, nCtx, threads });
}

async function openWllama3({ blob, package: pkg, prompt, promptIds, nCtx, threads }) {
  const version = await versionOf("@wllama/wllama");
  const wllama = new Wllama3({ default: asset("@wllama/wllama/esm/wasm/wllama.wasm") }, { suppressNativeLog: true, logger });
  try {
    const t0 = performance.now();
    await wllama.loadModel([blob], {
      n_threads: threads,
      n_gpu_layers: 0, // CPU (WebAssembly SIMD) only, as our module runs
      n_ctx: nCtx,
      n_batch: nCtx, // the whole prompt in one batch, as generate_start does
      n_parallel: 1,
      seed: 1,
    });
    const loadMs = performance.now() - t0;
    if (wllama.isMultithread() !== threads > 1 || wllama.getNumThreads() !== threads) {
      throw new Error(`wllama ${version} runs ${wllama.getNumThreads()} threads, wanted ${threads}` + (threads > 1 && !crossOriginIsolated ? " (the page is not cross-origin isolated)" : ""));
    }
    const completion = (text, maxTokens) =>
      wllama.createCompletion({
        prompt: text,
        max_tokens: maxTokens,
        temperature: 0, // greedy
        ignore_eos: true,
        cache_prompt: false, // every run evaluates the whole prompt
      });
    // The first generation after loading pays one-time setup; ours gets the same warm-up.
    await completion(prompt.slice(0, 64), 4);
    return {
      info: { engine: `wllama ${version}`, threads, wllama_version: version, llama_cpp_version: Wllama3.getLibllamaVersion(), package: pkg, load_ms: loadMs, context: nCtx },
      async run(decodeTokens) {
        const t = performance.now();
        const r = await completion(prompt, decodeTokens);
        const wallMs = performance.now() - t;
        const tm = r.timings;
        if (!tm) throw new Error(`wllama ${version} returned no timings`);
        if (tm.prompt_n !== promptIds.length) throw new Error(`llama.cpp cut the prompt into ${tm.prompt_n} tokens, ours into ${promptIds.length}`);
        if (tm.predicted_n !== decodeTokens) throw new Error(`wllama ${version} generated ${tm.predicted_n} tokens, wanted ${decodeTokens}`);
        return {
          prefill_tokens_per_s: (tm.prompt_n * 1000) / tm.prompt_ms,
          decode_tokens_per_s: (tm.predicted_n * 1000) / tm.predicted_ms,
          request_wall_ms: wallMs,
          text: r.choices[0].text,
        };
      },
      close: () => wllama.exit(),
    };
  } catch (e) {
    await wllama.exit().catch(() => {});
    throw e;
  }
}

async function openWllama2({ blob, package: pkg, promptIds, nCtx }) {
  const version = await versionOf("wllama-2");
  const wllama = new Wllama2({ "single-thread/wllama.wasm": asset("wllama-2/esm/single-thread/wllama.wasm") }, { suppressNativeLog: true, logger });
  try {
    const t0 = performance.now();
    await wllama.loadModel([blob], { n_threads: 1, n_ctx: nCtx, n_batch: nCtx, seed: 1 });
    const loadMs = performance.now() - t0;
    if (wllama.isMultithread() || wllama.getNumThreads() !== 1) throw new Error(`wllama ${version} runs ${wllama.getNumThreads()} threads, wanted 1`);
    /** Greedy: prefill the ids, then `n` tokens, the last one sampled but not fed back (as ours). */
    const generate = async (ids, n) => {
      await wllama.kvClear();
      await wllama.samplingInit({ temp: 0, top_k: 1, penalty_repeat: 1, penalty_last_n: 0 });
      await wllama.samplingAccept(ids);
      let t = performance.now();
      await wllama.decode(ids, {});
      const prefillMs = performance.now() - t;
      const tokens = [];
      t = performance.now();
      for (let i = 0; i < n; i++) {
        const { token } = await wllama.samplingSample(); // end-of-generation ignored
        tokens.push(token);
        if (i + 1 === n) break;
        await wllama.samplingAccept([token]);
        await wllama.decode([token], {});
      }
      return { prefillMs, decodeMs: performance.now() - t, tokens };
    };
    await generate(promptIds.slice(0, 16), 4); // warm-up, as for 3.x and ours
    return {
      info: { engine: `wllama ${version} single-thread build`, threads: 1, wllama_version: version, llama_cpp_version: Wllama2.getLibllamaVersion(), package: pkg, load_ms: loadMs, context: nCtx },
      async run(decodeTokens) {
        const g = await generate(promptIds, decodeTokens);
        return {
          prefill_tokens_per_s: (promptIds.length * 1000) / g.prefillMs,
          decode_tokens_per_s: (decodeTokens * 1000) / g.decodeMs,
          tokens: g.tokens,
          text: await wllama.detokenize(g.tokens, true), // after the clock stopped
        };
      },
      close: () => wllama.exit(),
    };
  } catch (e) {
    await wllama.exit().catch(() => {});
    throw e;
  }
}
