// The threaded module under Node (abi/THREADS.md; the wrapper starts `worker_threads` workers):
// the logits after every step and the tokens are bit-identical for 1, 2, 3 and 4 threads (more than
// this machine's cores included) to the single-thread module's, and the tokens to `trl`'s; a
// generation stopped mid-way and a new prompt; a worker without memory for its stack is a status,
// not a hang; the fall-back to one thread where memory cannot be shared; workers never keep the
// process alive. (wasmtime: harness/tests/threads.rs; Deno: deno.test.mjs; Chromium: browser.test.mjs.)

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";

import { TinyRustLM, TrlError, Status, GenState, compileModule, importedMemoryLimits } from "../../abi/tinyrustlm.mjs";
import { WASM, THREADS_WASM, Q8_0, Q4_0, trl, syntheticModel, comparable, haveRealModel } from "./helpers.mjs";

const THREAD_COUNTS = [1, 2, 3, 4];
const skipWithoutThreads = existsSync(THREADS_WASM) ? false : `no ${THREADS_WASM} (run \`make wasm-threads\`)`;

/** Greedy generation driven step by step: the tokens and a copy of the logits after every step. */
async function trace(lm, prompt, n) {
  lm.setSampling();
  lm.start(prompt, { maxTokens: n });
  const logits = [lm.logits().slice()];
  while (lm.state().state === GenState.RUNNING) {
    lm.step(1);
    logits.push(lm.logits().slice());
  }
  lm.readText();
  const { prompt_tokens, tokens } = lm.result();
  return { prompt_tokens, tokens, logits };
}

/** The first step whose logits differ bit for bit, or -1. */
function firstDifferentStep(a, b) {
  const bits = (f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (!a[i] || !b[i] || !bits(a[i]).equals(bits(b[i]))) return i;
  return -1;
}

async function traceWith(wasm, options, model, prompt, n) {
  const lm = await TinyRustLM.load(wasm, options);
  try {
    await lm.loadModel(model);
    return { threads: lm.threads, diagnosed: lm.diagnostics().threads, ...(await trace(lm, prompt, n)) };
  } finally {
    await lm.close();
  }
}

const cases = [
  { name: "synthetic q8_0", model: () => syntheticModel(), prompt: "Once upon a time", n: 24, skip: false },
  { name: "SmolLM2 q8_0", model: () => Q8_0, prompt: "The capital of France is", n: 8, skip: !haveRealModel && `no ${Q8_0}` },
  { name: "SmolLM2 q4_0", model: () => Q4_0, prompt: "Water boils at", n: 8, skip: !(haveRealModel && existsSync(Q4_0)) && `no ${Q4_0}` },
];

describe("threads in Node", { skip: skipWithoutThreads }, () => {
  for (const c of cases) {
    it(`${c.name}: logits after every step and tokens bit-identical for 1-4 threads, tokens equal to trl`, { skip: c.skip }, async () => {
      const model = c.model();
      const expected = trl(["generate", "--model", model, "--prompt", c.prompt, "-n", String(c.n), "--json"]);
      const reference = await traceWith(WASM, {}, model, c.prompt, c.n);
      assert.deepEqual({ prompt_tokens: reference.prompt_tokens, tokens: reference.tokens }, { prompt_tokens: expected.prompt_tokens, tokens: expected.tokens });
      for (const threads of THREAD_COUNTS) {
        const got = await traceWith(THREADS_WASM, { threads }, model, c.prompt, c.n);
        assert.equal(got.threads, threads, "lm.threads");
        assert.equal(got.diagnosed, threads, "diagnostics threads");
        assert.deepEqual(got.tokens, reference.tokens, `tokens with ${threads} threads`);
        assert.equal(got.logits.length, reference.logits.length, `steps with ${threads} threads`);
        assert.equal(firstDifferentStep(got.logits, reference.logits), -1, `logits with ${threads} threads`);
      }
    });
  }

  it("a generation stopped mid-way, then a new prompt; then the same alone after close()", async () => {
    const model = haveRealModel ? Q8_0 : syntheticModel();
    const expected = trl(["generate", "--model", model, "--prompt", "Water boils at", "-n", "10", "--json"]);
    const lm = await TinyRustLM.load(THREADS_WASM, { threads: 2 });
    await lm.loadModel(model);
    const controller = new AbortController();
    let chunks = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of lm.generate("Tell me a long story about a dragon", { maxTokens: 200, ignoreEog: true, signal: controller.signal })) {
          if (++chunks === 3) controller.abort();
        }
      })(),
      { name: "AbortError" },
    );
    assert.equal(lm.state().state, GenState.RUNNING, "stopped between steps");
    assert.equal(lm.diagnostics().threads, 2);
    assert.deepEqual(comparable(await lm.complete("Water boils at", { maxTokens: 10 })), comparable(expected));
    await lm.close();
    assert.equal(lm.threads, 1);
    assert.equal(lm.diagnostics().threads, 1, "every worker left worker_run");
    assert.deepEqual(comparable(await lm.complete("Water boils at", { maxTokens: 10 })), comparable(expected));
    await lm.close(); // again: nothing to do
  });

  it("a worker without memory for its stack is OUT_OF_MEMORY from load(), not a hang", async () => {
    // The module's own minimum plus one page: no room for a 256 KiB worker stack.
    const { minimum } = await importedMemoryLimits(await compileModule(THREADS_WASM));
    const started = performance.now();
    let error = null;
    try {
      await TinyRustLM.load(THREADS_WASM, { threads: 3, maxMemoryBytes: (minimum + 1) * 65536 });
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof TrlError, `expected a TrlError, got ${error}`);
    assert.equal(error.status, Status.OUT_OF_MEMORY, error.message);
    assert.equal(error.call, "worker_stack_top");
    assert.match(error.message, /worker.*stack/);
    assert.ok(performance.now() - started < 10_000, "load() took too long to fail");
    // Nothing is left behind: a new instance with room runs its workers.
    const lm = await TinyRustLM.load(THREADS_WASM, { threads: 2 });
    assert.equal(lm.diagnostics().threads, 2);
    await lm.close();
  });

  it("falls back to the single-thread module, and says so, where memory cannot be shared", async (t) => {
    const warnings = [];
    t.mock.method(console, "warn", (...a) => warnings.push(a.join(" ")));
    globalThis.crossOriginIsolated = false; // what a page served without COOP/COEP sees
    try {
      const lm = await TinyRustLM.load(THREADS_WASM, { threads: 2, fallback: WASM });
      assert.equal(lm.threads, 1);
      assert.equal(lm.threaded, false);
      assert.match(lm.threadsFallbackReason, /not cross-origin isolated.*Cross-Origin-Opener-Policy: same-origin.*Cross-Origin-Embedder-Policy: require-corp/);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /running on 1 thread/);
      await lm.loadModel(syntheticModel());
      const expected = trl(["generate", "--model", syntheticModel(), "--prompt", "hello", "-n", "8", "--json"]);
      assert.deepEqual(comparable(await lm.complete("hello", { maxTokens: 8 })), comparable(expected));
      await assert.rejects(TinyRustLM.load(THREADS_WASM, { fallback: null }), /cannot run here: the page is not cross-origin isolated/);
    } finally {
      delete globalThis.crossOriginIsolated;
    }
    const single = await TinyRustLM.load(WASM, { threads: 2 });
    assert.equal(single.threads, 1);
    assert.match(single.threadsFallbackReason, /single-thread flavour/);
    assert.equal((await TinyRustLM.load(WASM)).threadsFallbackReason, null, "no threads asked for: nothing to say");
    await assert.rejects(TinyRustLM.load(THREADS_WASM, { threads: 0 }), RangeError);
  });

  it("workers do not keep the process alive (no close())", () => {
    const script = `
      import { TinyRustLM } from ${JSON.stringify(new URL("../../abi/tinyrustlm.mjs", import.meta.url).href)};
      const lm = await TinyRustLM.load(${JSON.stringify(THREADS_WASM)}, { threads: 3 });
      await lm.loadModel(${JSON.stringify(syntheticModel())});
      const r = await lm.complete("hello", { maxTokens: 8 });
      console.log(JSON.stringify({ threads: lm.threads, tokens: r.tokens }));`;
    const started = performance.now();
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    const expected = trl(["generate", "--model", syntheticModel(), "--prompt", "hello", "-n", "8", "--json"]);
    assert.deepEqual(JSON.parse(out), { threads: 3, tokens: expected.tokens });
    assert.ok(performance.now() - started < 60_000);
  });
});
