// The JavaScript wrapper (abi/tinyrustlm.mjs) under Node: every way to load, every result it reads,
// its errors, abort, and — the point of it all — byte-identical output to the wasmtime harness.
// Run: `node --test tests/` in web/ (needs `make wasm harness`; the SmolLM2 cases need `make model`).

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, before } from "node:test";
import { pathToFileURL } from "node:url";

import {
  TinyRustLM, TrlError, Status, StopReason, GenState, statusName, parseDiagnostics, formatChatML, compileModule, SMOLLM_SYSTEM,
  encodeChatMessages, scoreWindows, chooseModule, relaxedSimdSupported, DEFAULT_WASM_URL, DEFAULT_RELAXED_WASM_URL,
} from "../../abi/tinyrustlm.mjs";
import { MODELS, WASM, Q8_0, trl, trlHas, syntheticModel, syntheticCases, adapterBetween, moduleHas, scratchDir, skipWithoutModel, comparable } from "./helpers.mjs";

const PROMPT = "The capital of France is";
const Q4_1_PATH = join(MODELS, "smollm2-135m-q4_1.slm");

/** A Response whose body arrives in `chunk`-byte pieces, with or without a content-length. */
function chunkedResponse(bytes, { chunk = 4096, length = true } = {}) {
  let at = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
  return new Response(body, { headers: length ? { "content-length": String(bytes.length) } : {} });
}

async function expectTrlError(promiseOrFn, status) {
  let error = null;
  try {
    await (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof TrlError, `expected a TrlError, got ${error}`);
  assert.ok(error instanceof Error);
  assert.equal(error.status, status, `status ${error.status} (${error.statusName}): ${error.message}`);
  assert.equal(error.statusName, statusName(status));
  assert.ok(error.message.length > 0, "the error carries the module's text");
  return error;
}

describe("loading the module", () => {
  it("compiles from bytes, a path, a file: URL and a Response", async () => {
    const bytes = readFileSync(WASM);
    const sources = [bytes, bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), WASM, pathToFileURL(WASM),
      new Response(bytes, { headers: { "content-type": "application/wasm" } }), await compileModule(bytes)];
    for (const source of sources) {
      const lm = await TinyRustLM.load(source);
      assert.equal(lm.abiVersion, 1);
    }
  });

  it("defaults to the make wasm build and reports diagnostics with no model", async () => {
    const lm = await TinyRustLM.load();
    const d = lm.diagnostics();
    assert.equal(d.layout_version, 1);
    assert.equal(d.layout_len, 128);
    assert.equal(d.model_loaded, false);
    assert.equal(d.quant_mode, 0xffffffff);
    assert.equal(d.quant_name, null);
    assert.equal(typeof lm.features.adapters, "boolean");
    assert.equal(typeof lm.features.evaluate, "boolean");
  });

  it("chooses the relaxed-SIMD module where the engine validates it, and says which it took", async () => {
    const lm = await TinyRustLM.load();
    const want = relaxedSimdSupported() ? "relaxed-simd" : "simd128";
    assert.equal(lm.moduleChoice.flavour, want, lm.moduleChoice.reason);
    assert.equal(lm.moduleChoice.url, String(want === "relaxed-simd" ? DEFAULT_RELAXED_WASM_URL : DEFAULT_WASM_URL));
    assert.equal(chooseModule({ threads: 1 }).flavour, want);
    const named = await TinyRustLM.load(WASM);
    assert.equal(named.moduleChoice, null, "a module the caller named is not a choice");
  });

  it("rejects an HTTP error with a plain message", async () => {
    await assert.rejects(compileModule(new Response("nope", { status: 404, statusText: "Not Found" })), /HTTP 404/);
  });
});

describe("loading a model", () => {
  let lm;
  let bytes;
  before(async () => {
    lm = await TinyRustLM.load(WASM);
    bytes = readFileSync(syntheticModel());
  });

  const sources = {
    "a file path": () => syntheticModel(),
    "an ArrayBuffer": () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
    "a Uint8Array": () => bytes,
    "a Blob": () => new Blob([bytes]),
    "a Response with a length": () => chunkedResponse(bytes, { chunk: 1000 }),
    "a Response without a length": () => chunkedResponse(bytes, { chunk: 1000, length: false }),
  };
  for (const [name, make] of Object.entries(sources)) {
    it(`from ${name}, with progress`, async () => {
      const progress = [];
      const d = await lm.loadModel(make(), { onProgress: (p) => progress.push(p) });
      assert.equal(d.model_loaded, true);
      assert.equal(d.package_bytes, bytes.length);
      const reads = progress.filter((p) => p.phase === "read");
      for (let i = 1; i < reads.length; i++) assert.ok(reads[i].loaded >= reads[i - 1].loaded, "progress never goes back");
      assert.equal(reads.at(-1).loaded, bytes.length);
      // A source of known size is streamed and verified as it arrives: no separate validation.
      const streamed = !["an ArrayBuffer", "a Uint8Array", "a Response without a length"].includes(name);
      assert.deepEqual(progress.slice(-2).map((p) => p.phase), [streamed ? "read" : "validate", "done"]);
      assert.equal(progress.at(-1).verified, bytes.length);
      lm.unloadModel();
    });
  }

  it("kvF16 halves the KV cache and is reported in the diagnostics", async () => {
    const f32 = await lm.loadModel(bytes);
    lm.unloadModel();
    const f16 = await lm.loadModel(bytes, { kvF16: true });
    assert.equal(f32.kv_dtype, 0);
    assert.equal(f16.kv_dtype, 1);
    assert.ok(f16.kv_cache_bytes > 0);
    assert.equal(f16.kv_cache_bytes * 2, f32.kv_cache_bytes);
    lm.unloadModel();
  });

  it("a corrupted package fails with its status and text; the instance stays usable", async () => {
    const bad = new Uint8Array(bytes);
    bad[bad.length - 100] ^= 0xff;
    const e = await expectTrlError(lm.loadModel(bad), Status.ARTIFACT_CHECKSUM);
    assert.equal(e.call, "load_model");
    await expectTrlError(lm.loadModel(bytes.subarray(0, 64)), Status.TRUNCATED);
    const magic = new Uint8Array(bytes);
    magic[0] = 0x58;
    await expectTrlError(lm.loadModel(magic), Status.BAD_MAGIC);
    assert.equal(lm.diagnostics().model_loaded, false);
    await lm.loadModel(bytes);
    assert.equal(lm.diagnostics().model_loaded, true);
    await expectTrlError(lm.loadModel(bytes), Status.WRONG_STATE);
    lm.unloadModel();
    await expectTrlError(() => lm.unloadModel(), Status.WRONG_STATE);
  });

  it("a source that ends early or is aborted is refused and leaves no model", async () => {
    const short = new Response(bytes.subarray(0, 1000), { headers: { "content-length": String(bytes.length) } });
    await assert.rejects(lm.loadModel(short), /ended after 1000 of the/);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(lm.loadModel(bytes, { signal: controller.signal }), { name: "AbortError" });
    assert.equal(lm.diagnostics().model_loaded, false);
  });

  it("an invalid context length is INVALID_ARGUMENT", async () => {
    await expectTrlError(lm.loadModel(bytes, { contextLength: 1 << 20 }), Status.INVALID_ARGUMENT);
  });
});

describe("generation on the synthetic model", () => {
  let lm;
  const model = () => syntheticModel();
  before(async () => {
    lm = await TinyRustLM.load(WASM);
    await lm.loadModel(model());
  });

  it("greedy output equals trl generate --json, token for token and byte for byte", async () => {
    for (const [prompt, n] of [["hello", 16], ["Once upon a time", 40], ["é", 7]]) {
      const expected = trl(["generate", "--model", model(), "--prompt", prompt, "-n", String(n), "--json"]);
      const got = await lm.complete(prompt, { maxTokens: n, sampling: {} });
      assert.deepEqual(comparable(got), comparable(expected));
      assert.equal(lm.diagnostics().assembly_state_crc, expected.diagnostics.assembly_state_crc);
    }
  });

  it("seeded sampling and stop strings equal trl's", async () => {
    const args = ["--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.02", "--repeat-penalty", "1.1", "--seed", "12345678901"];
    const expected = trl(["generate", "--model", model(), "--prompt", "abc", "-n", "48", ...args, "--stop", "xy", "--json"]);
    const sampling = { temperature: 0.9, topK: 40, topP: 0.95, minP: 0.02, repetitionPenalty: 1.1, seed: 12345678901n };
    const got = await lm.complete("abc", { maxTokens: 48, sampling, stop: ["xy"] });
    assert.deepEqual(comparable(got), comparable(expected));
    lm.setStopStrings([]);
    lm.setSampling();
  });

  it("the streamed chunks add up to the whole text", async () => {
    const chunks = [];
    const result = await lm.complete("stream", { maxTokens: 30, onText: (t) => chunks.push(t) });
    assert.ok(chunks.length > 1);
    assert.equal(chunks.join(""), result.text);
    const it2 = lm.generate("stream", { maxTokens: 30 });
    let text = "";
    for await (const t of it2) text += t;
    assert.equal(text, result.text);
  });

  it("abort stops after the current token and leaves the engine usable", async () => {
    const controller = new AbortController();
    let seen = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of lm.generate("abort me", { maxTokens: 200, ignoreEog: true, signal: controller.signal })) {
          if (++seen === 3) controller.abort();
        }
      })(),
      { name: "AbortError" },
    );
    const st = lm.state();
    assert.equal(st.state, GenState.RUNNING, "stopped between steps, not finished");
    assert.ok(st.generated_tokens >= 3 && st.generated_tokens < 10, `generated ${st.generated_tokens}`);
    // The next generation is the same as on a fresh engine.
    const expected = trl(["generate", "--model", model(), "--prompt", "after", "-n", "12", "--json"]);
    assert.deepEqual(comparable(await lm.complete("after", { maxTokens: 12 })), comparable(expected));
  });

  it("a custom abort reason is what the iterator throws", async () => {
    const controller = new AbortController();
    const reason = new Error("user pressed stop");
    const it = lm.generate("x", { maxTokens: 50, signal: controller.signal });
    await it.next();
    controller.abort(reason);
    await assert.rejects(async () => { for (;;) if ((await it.next()).done) break; }, (e) => e === reason);
  });

  it("breaking out of the loop releases the instance; two open generations are refused", async () => {
    for await (const _ of lm.generate("one", { maxTokens: 20 })) break;
    const a = lm.generate("a", { maxTokens: 5 });
    await a.next();
    await expectTrlError(lm.generate("b", { maxTokens: 5 }).next(), Status.WRONG_STATE);
    await expectTrlError(() => lm.reset(), Status.WRONG_STATE);
    await a.return();
    lm.reset();
  });

  it("CONTINUE extends the conversation", async () => {
    await lm.complete("ab", { maxTokens: 4 });
    const kv = lm.diagnostics().kv_len;
    const r = await lm.complete("cd", { maxTokens: 4, continue: true });
    assert.ok(lm.diagnostics().kv_len > kv);
    assert.deepEqual(r.prompt_tokens, [99, 100], "no BOS when continuing");
  });

  it("errors carry status and text: sampling, stop strings, context, chat without a template", async () => {
    const e = await expectTrlError(() => lm.setSampling({ temperature: -1 }), Status.INVALID_SAMPLING);
    assert.match(e.message, /temperature/);
    await expectTrlError(() => lm.setSampling({ topP: 0 }), Status.INVALID_SAMPLING);
    await expectTrlError(() => lm.setStopStrings([""]), Status.INVALID_ARGUMENT);
    await expectTrlError(() => lm.setStopStrings(Array.from({ length: 9 }, (_, i) => `s${i}`)), Status.LIMIT_EXCEEDED);
    await expectTrlError(lm.generate("x".repeat(1000), { maxTokens: 1 }).next(), Status.CONTEXT_FULL);
    await expectTrlError(lm.chat([{ role: "user", content: "hi" }]).next(), Status.INVALID_ARGUMENT);
    // Still fine afterwards.
    lm.setStopStrings([]);
    assert.equal((await lm.complete("ok", { maxTokens: 3 })).tokens.length, 3);
  });

  it("scoreTokens: argmax after a prompt is the first greedy token; bad input is refused", async () => {
    const g = await lm.complete("abc", { maxTokens: 1 });
    const s = lm.scoreTokens(g.prompt_tokens, { firstScored: g.prompt_tokens.length });
    assert.equal(s.logprobs.length, 0);
    assert.deepEqual(s.argmax, g.tokens);
    const all = lm.scoreTokens([...g.prompt_tokens, ...g.tokens]);
    assert.equal(all.logprobs.length, g.prompt_tokens.length);
    assert.ok([...all.logprobs].every((x) => Number.isFinite(x) && x <= 0));
    assert.equal(lm.diagnostics().kv_len, 0, "scoring leaves the KV cache empty");
    await expectTrlError(() => lm.scoreTokens([]), Status.INVALID_ARGUMENT);
    await expectTrlError(() => lm.scoreTokens([1, 258]), Status.INVALID_ARGUMENT);
    await expectTrlError(() => lm.scoreTokens([1, 2], { firstScored: 3 }), Status.INVALID_ARGUMENT);
    await expectTrlError(() => lm.scoreTokens(new Array(lm.diagnostics().context_len + 1).fill(1)), Status.CONTEXT_FULL);
    assert.ok(lm.tokenize("").length < 2);
    await expectTrlError(lm.score(""), Status.INVALID_ARGUMENT);
    assert.throws(() => lm.scoreTokens([-1]), TypeError);
  });

  it("tokenize and logits match trl", async () => {
    const expected = trl(["tokenize", "--model", model(), "--text", "Héllo <|x|>", "--json"]);
    assert.deepEqual(lm.tokenize("Héllo <|x|>"), expected.tokens);
    await lm.complete("z", { maxTokens: 1 });
    const { hparams } = trl(["inspect", model(), "--json"]);
    const logits = lm.logits();
    assert.equal(logits.length, hparams.vocab_size);
    assert.ok(logits.every(Number.isFinite));
  });

  it("diagnostics after a generation", async () => {
    await lm.complete("count", { maxTokens: 8, ignoreEog: true });
    const d = lm.diagnostics();
    assert.equal(d.generated_tokens, 8);
    assert.equal(d.kv_len, d.prompt_tokens + 7, "the last sampled token is fed only when continuing");
    assert.ok(d.decode_tokens_per_s > 0 && d.prefill_tokens_per_s > 0);
    assert.equal(d.quant_name, "q8_0");
  });

  it("adapters and eval are feature-detected", async () => {
    if (!lm.features.adapters) await expectTrlError(() => lm.validateAdapter(new Uint8Array(4)), Status.INVALID_ARGUMENT);
    if (!lm.features.evaluate) await expectTrlError(lm.evaluate("{}"), Status.INVALID_ARGUMENT);
  });
});

const ADAPTER_EXPORTS = ["validate_adapter_delta", "apply_adapter_delta", "remove_last_adapter", "reset_adapters"];

describe("adapters on the synthetic model", { skip: moduleHas(...ADAPTER_EXPORTS) ? false : "this module build has no adapter exports" }, () => {
  let lm;
  let parent;
  let sparse;
  let lowrank;
  let foreign;
  before(async () => {
    parent = syntheticModel({ seed: 7 });
    const child = syntheticModel({ seed: 8 });
    sparse = readFileSync(adapterBetween(parent, child, "sparse", ["--top-k", "500"]));
    lowrank = readFileSync(adapterBetween(parent, child, "lowrank", ["--rank", "4"]));
    // Made for a package of another shape: its parent identity cannot match.
    foreign = readFileSync(adapterBetween(syntheticModel({ seed: 9, layers: 3 }), syntheticModel({ seed: 10, layers: 3 }), "dense"));
    lm = await TinyRustLM.load(WASM);
    await lm.loadModel(parent);
  });

  const run = (adapters) => {
    const files = adapters.map((a) => adapterBetween(parent, syntheticModel({ seed: 8 }), ...a));
    return trl(["generate", "--model", parent, ...files.flatMap((f) => ["--adapter", f]), "--prompt", "hello", "-n", "12", "--json"]);
  };

  it("applying in order gives trl's tokens and assembly checksum; removing returns to the parent", async () => {
    const base = run([]);
    assert.equal(lm.features.adapters, true);
    lm.validateAdapter(sparse);
    assert.equal(lm.diagnostics().adapters_applied, 0, "validate changes nothing");

    let d = lm.applyAdapter(sparse);
    const one = run([["sparse", ["--top-k", "500"]]]);
    assert.equal(d.adapters_applied, 1);
    assert.equal(d.assembly_state_crc, one.diagnostics.assembly_state_crc);
    assert.deepEqual(comparable(await lm.complete("hello", { maxTokens: 12 })), comparable(one));

    d = lm.applyAdapter(lowrank);
    const two = run([["sparse", ["--top-k", "500"]], ["lowrank", ["--rank", "4"]]]);
    assert.equal(d.adapters_applied, 2);
    assert.equal(d.assembly_state_crc, two.diagnostics.assembly_state_crc);
    assert.deepEqual(comparable(await lm.complete("hello", { maxTokens: 12 })), comparable(two));

    d = lm.removeLastAdapter();
    assert.equal(d.assembly_state_crc, one.diagnostics.assembly_state_crc);
    assert.deepEqual(comparable(await lm.complete("hello", { maxTokens: 12 })), comparable(one));

    d = lm.resetAdapters();
    assert.equal(d.adapters_applied, 0);
    assert.equal(d.assembly_state_crc, base.diagnostics.assembly_state_crc);
    assert.deepEqual(comparable(await lm.complete("hello", { maxTokens: 12 })), comparable(base));
  });

  it("a refused adapter changes nothing and says why", async () => {
    lm.applyAdapter(sparse);
    const before_ = lm.diagnostics();
    const e = await expectTrlError(() => lm.applyAdapter(foreign), Status.ADAPTER_PARENT_MISMATCH);
    assert.match(e.message, /parent/);
    await expectTrlError(() => lm.validateAdapter(foreign), Status.ADAPTER_PARENT_MISMATCH);
    const damaged = new Uint8Array(sparse);
    damaged[damaged.length - 10] ^= 1;
    await expectTrlError(() => lm.applyAdapter(damaged), Status.ADAPTER_CHECKSUM);
    await expectTrlError(() => lm.applyAdapter(new TextEncoder().encode("not an adapter at all, clearly")), Status.ADAPTER_BAD_MAGIC);
    const after_ = lm.diagnostics();
    assert.equal(after_.assembly_state_crc, before_.assembly_state_crc);
    assert.equal(after_.adapters_applied, 1);
    lm.removeLastAdapter();
    await assert.rejects(async () => lm.removeLastAdapter(), TrlError);
  });
});

describe("evaluation on the synthetic model", { skip: moduleHas("run_eval") ? false : "this module build has no run_eval export" }, () => {
  let lm;
  let model;
  let cases;
  before(async () => {
    model = syntheticModel();
    cases = syntheticCases(model);
    lm = await TinyRustLM.load(WASM);
    await lm.loadModel(model);
  });

  it("runs the cases greedily and returns the canonical sidecar", async () => {
    const { bytes, text, sidecar } = await lm.evaluate(cases);
    assert.equal(new TextDecoder().decode(bytes), text);
    assert.deepEqual(sidecar.cases.map((c) => [c.id, c.passed]), [["hello", true], ["prefix", true], ["trim", true], ["wrong", false]]);
    assert.deepEqual(sidecar.totals, { cases: 4, passed: 3, failed: 1 });
    assert.equal(sidecar.quality_boundary.met, true);
    assert.equal(sidecar.suite.name, "synthetic-smoke");
    // Produced text equals an independent greedy run of the same prompt through trl.
    assert.equal(sidecar.cases[0].produced, trl(["generate", "--model", model, "--prompt", "hello", "-n", "8", "--json"]).text);
    assert.equal(sidecar.assembly_state_crc, lm.diagnostics().assembly_state_crc.toString(16).padStart(8, "0"));
    // Same inputs, same bytes.
    assert.deepEqual((await lm.evaluate(new TextEncoder().encode(cases))).bytes, bytes);
  });

  it("is byte-identical to the sidecar trl eval writes", { skip: trlHas("eval") ? false : "trl has no eval subcommand yet" }, async () => {
    const casesPath = join(scratchDir(), "synthetic-cases.jsonl");
    const out = join(scratchDir(), "synthetic-sidecar.json");
    writeFileSync(casesPath, cases);
    trl(["eval", "--model", model, "--cases", casesPath, "--out", out], { json: false });
    assert.deepEqual((await lm.evaluate(cases)).bytes, new Uint8Array(readFileSync(out)));
  });

  it("a bad case file is refused with the line that broke the rule", async () => {
    const header = '{"suite":"s","version":"1","min_pass_rate":0.5}\n';
    let e = await expectTrlError(lm.evaluate(header), Status.EVAL_NO_CASES);
    e = await expectTrlError(lm.evaluate(`${header}{"id":"a","prompt":"p","expected":"e","max_tokens":4,"colour":1}\n`), Status.EVAL_UNKNOWN_FIELD);
    assert.match(e.message, /line 2/);
    await expectTrlError(lm.evaluate("not json\n"), Status.EVAL_BAD_JSON);
    assert.equal((await lm.complete("ok", { maxTokens: 3 })).tokens.length, 3, "still usable");
  });
});

describe("pure helpers", () => {
  it("parseDiagnostics reads every field at its header offset", () => {
    const b = new Uint8Array(128);
    const v = new DataView(b.buffer);
    v.setUint32(0, 1, true); v.setUint32(4, 128, true); v.setUint32(8, 1, true); v.setUint32(12, 2, true);
    v.setUint32(16, 5, true); v.setUint32(20, 6, true); v.setFloat32(24, 1.5, true); v.setFloat32(28, 2.5, true);
    v.setBigUint64(32, 7n, true); v.setUint32(40, 8, true); v.setUint32(44, 9, true); v.setUint32(48, 10, true);
    v.setUint32(52, 0xdeadbeef, true); v.setBigUint64(56, 2n ** 40n, true); v.setBigUint64(64, 12n, true);
    v.setBigUint64(72, 13n, true); v.setUint32(80, 14, true); v.setUint32(84, 15, true); v.setBigUint64(88, 16n, true);
    v.setFloat32(96, 17.5, true); v.setFloat32(100, 18.5, true); v.setUint32(104, 0, true); v.setUint32(108, 1, true);
    v.setBigUint64(112, 20n, true); v.setUint32(120, 21, true); v.setUint32(124, 22, true);
    assert.deepEqual(parseDiagnostics(b), {
      layout_version: 1, layout_len: 128, model_loaded: true, quant_mode: 2, quant_name: "q4_0", prompt_tokens: 5, generated_tokens: 6,
      prefill_tokens_per_s: 1.5, decode_tokens_per_s: 2.5, peak_scratch_bytes: 7, kv_len: 8, context_len: 9, adapters_applied: 10,
      assembly_state_crc: 0xdeadbeef, package_bytes: 2 ** 40, kv_cache_bytes: 12, n_params: 13, tensor_layout_crc: 14, tokenizer_crc: 15,
      linear_memory_bytes: 16, prefill_ms: 17.5, decode_ms: 18.5, kv_dtype: 0, chat_template: 1, chat_template_name: "chatml",
      total_generated_tokens: 20, unencodable_bytes: 21, threads: 22,
    });
    v.setUint32(108, 3, true);
    assert.equal(parseDiagnostics(b).chat_template_name, "gemma");
    v.setUint32(108, 99, true);
    assert.equal(parseDiagnostics(b).chat_template_name, null);
    assert.throws(() => parseDiagnostics(new Uint8Array(64)), /64 bytes/);
  });

  it("formatChatML renders SmolLM2's template", () => {
    assert.equal(
      formatChatML([{ role: "user", content: "Hi" }]),
      `<|im_start|>system\n${SMOLLM_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n`,
    );
    assert.equal(
      formatChatML([{ role: "system", content: "S" }, { role: "user", content: "U" }, { role: "assistant", content: "A" }], { addGenerationPrompt: false }),
      "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n",
    );
    assert.equal(formatChatML([{ role: "user", content: "U" }], { defaultSystem: null }), "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    assert.throws(() => formatChatML([{ role: "user" }]), TypeError);
  });

  it("encodes chat messages as render_chat reads them and windows as score_tokens documents", () => {
    assert.deepEqual([...encodeChatMessages([{ role: "user", content: "Hi" }])], [1, 0, 0, 0, 4, 0, 0, 0, 117, 115, 101, 114, 2, 0, 0, 0, 72, 105]);
    assert.deepEqual([...encodeChatMessages([])], [0, 0, 0, 0]);
    assert.throws(() => encodeChatMessages([{ role: "user" }]), TypeError);
    assert.deepEqual(scoreWindows(5, 8), [{ start: 0, end: 5, firstScored: 1 }]);
    assert.deepEqual(scoreWindows(10, 4), [
      { start: 0, end: 4, firstScored: 1 }, { start: 2, end: 6, firstScored: 2 }, { start: 4, end: 8, firstScored: 2 }, { start: 6, end: 10, firstScored: 2 },
    ]);
    for (let context = 2; context < 12; context++) {
      for (let n = 2; n < 40; n++) {
        const scored = scoreWindows(n, context).flatMap((w) => Array.from({ length: w.end - w.start - w.firstScored }, (_, i) => w.start + w.firstScored + i));
        assert.deepEqual(scored, Array.from({ length: n - 1 }, (_, i) => i + 1), `n ${n}, context ${context}`);
      }
    }
    assert.deepEqual(scoreWindows(1, 8), []);
  });

  it("statusName knows the header's names", () => {
    assert.equal(statusName(5), "CONTEXT_FULL");
    assert.equal(statusName(36), "ARTIFACT_CHECKSUM");
    assert.equal(statusName(99), "GRAMMAR_EMPTY_LANGUAGE");
    assert.equal(statusName(200), "STATUS_200");
  });
});

describe("streaming a package (load_begin / load_append / load_finish)", { skip: skipWithoutModel }, () => {
  const good = () => readFileSync(Q4_1_PATH);
  const fingerprint = async (lm) => {
    const r = await lm.complete(PROMPT, { maxTokens: 8, ignoreEog: true });
    return { tokens: r.tokens, logits: Array.from(new Uint32Array(lm.logits().buffer.slice(0))) };
  };

  it("streams a file, a Blob and a sized response, verifying as it receives; the same model as bytes loaded whole", async () => {
    const bytes = good();
    const lm = await TinyRustLM.load(WASM);
    await lm.loadModel(bytes, { contextLength: 256 });
    const want = await fingerprint(lm);
    for (const [name, source] of [["path", Q4_1_PATH], ["Blob", new Blob([bytes])], ["Response", chunkedResponse(bytes, { chunk: 65536 })]]) {
      lm.unloadModel();
      const seen = [];
      await lm.loadModel(source, { contextLength: 256, onProgress: (p) => seen.push(p) });
      const reads = seen.filter((p) => p.phase === "read" && p.loaded > 0);
      assert.ok(reads.length > 10, `${name}: progress while reading`);
      assert.ok(reads.some((p) => p.verified > 0 && p.loaded < bytes.length), `${name}: bytes verified before the last one arrived`);
      assert.ok(reads.every((p) => p.verified <= p.loaded), `${name}: verified never passes received`);
      assert.ok(!seen.some((p) => p.phase === "validate"), `${name}: no separate validation pass`);
      assert.deepEqual(lm.loadProgress(), { total: bytes.length, received: bytes.length, verified: bytes.length });
      assert.deepEqual(await fingerprint(lm), want, `${name}: streamed model generates otherwise`);
    }
  });

  it("refuses a corrupt file at the chunk that breaks a rule, and keeps nothing", async () => {
    const bytes = good();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const tokenizerEnd = Number(view.getBigUint64(96, true) + view.getBigUint64(104, true));
    const corrupt = Buffer.from(bytes);
    corrupt[tokenizerEnd - 10] ^= 0x04;
    const path = join(scratchDir(), "corrupt-tokenizer.slm");
    writeFileSync(path, corrupt);
    const lm = await TinyRustLM.load(WASM);
    const e = await expectTrlError(lm.loadModel(path), Status.TOKENIZER_CHECKSUM);
    assert.match(e.message, /header\.tokenizer_crc/);
    const p = lm.loadProgress();
    assert.ok(p.received >= tokenizerEnd && p.received < bytes.length, `refused after ${p.received} of ${bytes.length} bytes`);
    assert.equal(lm.diagnostics().model_loaded, false);
    // A body shorter than its Content-Length: the stream is aborted and nothing is kept.
    const short = new Response(bytes.subarray(0, bytes.length - 100), { headers: { "content-length": String(bytes.length) } });
    await assert.rejects(lm.loadModel(short), /ended after/);
    assert.equal(lm.exports.load_finish(), Status.WRONG_STATE, "no stream is left open");
    await lm.loadModel(bytes);
    assert.equal(lm.diagnostics().model_loaded, true);
  });
});

describe("SmolLM2-135M q8_0", { skip: skipWithoutModel }, () => {
  let lm;
  before(async () => {
    lm = await TinyRustLM.load(WASM);
    await lm.loadModel(Q8_0);
  });

  it("greedy tokens equal trl generate --json", async () => {
    const expected = trl(["generate", "--model", Q8_0, "--prompt", PROMPT, "-n", "16", "--json"]);
    const got = await lm.complete(PROMPT, { maxTokens: 16 });
    assert.deepEqual(comparable(got), comparable(expected));
    const d = lm.diagnostics();
    for (const k of ["assembly_state_crc", "tensor_layout_crc", "tokenizer_crc", "n_params", "package_bytes", "kv_len", "context_len", "quant_mode", "chat_template"]) {
      assert.equal(d[k], expected.diagnostics[k], k);
    }
  });

  it("chat equals trl generate --chat, then continues the conversation from the cache", async () => {
    // SmolLM2 answers this one in a sentence and ends with <|im_end|> (checked below).
    const question = "What is the capital of France? Answer in one sentence.";
    const expected = trl(["generate", "--model", Q8_0, "--chat", "--prompt", question, "-n", "64", "--json"]);
    const messages = [{ role: "user", content: question }];
    let answer = "";
    const it = lm.chat(messages, { maxTokens: 64 });
    let step;
    while (!(step = await it.next()).done) answer += step.value;
    assert.deepEqual(comparable(step.value), comparable(expected));
    assert.equal(answer, expected.text);
    assert.equal(step.value.stop_reason, StopReason.END_OF_GENERATION);

    messages.push({ role: "assistant", content: answer }, { role: "user", content: "And of Italy?" });
    const second = await collect(lm.chat(messages, { maxTokens: 32 }));
    const delta = lm.tokenize("\n<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n");
    assert.deepEqual(second.prompt_tokens, delta, "only the new turn was run through the model");
    assert.ok(second.text.length > 0);
    // An edited history falls back to running the whole conversation.
    messages[1] = { role: "assistant", content: "Paris." };
    const third = await collect(lm.chat(messages, { maxTokens: 8 }));
    assert.deepEqual(third.prompt_tokens, lm.tokenize(formatChatML(messages)));
  });

  it("formatChat (the module's renderer) equals formatChatML on SmolLM2", () => {
    const lists = [
      [], [{ role: "user", content: "Hi" }], [{ role: "system", content: "S" }, { role: "user", content: "U" }, { role: "assistant", content: "A" }],
      [{ role: "user", content: "Grüß dich 🌍 <|im_end|>" }, { role: "assistant", content: "" }],
    ];
    for (const m of lists) {
      for (const options of [{}, { defaultSystem: null }, { defaultSystem: "Be brief." }, { addGenerationPrompt: false }, { defaultSystem: SMOLLM_SYSTEM, addGenerationPrompt: false }]) {
        assert.equal(lm.formatChat(m, options), formatChatML(m, options), `${JSON.stringify(m)} ${JSON.stringify(options)}`);
      }
    }
    assert.throws(() => lm.formatChat([{ role: "user" }]), TypeError);
  });

  it("score equals trl perplexity --json byte for byte, in one window and in many", async () => {
    const file = join(scratchDir(), "score.txt");
    writeFileSync(file, `${PROMPT} Paris. The capital of Germany is Berlin, and <|im_end|> is only text here.\n`);
    const text = readFileSync(file, "utf8");
    const expected = trl(["perplexity", "--model", Q8_0, "--file", file, "--json"], { json: false });
    const got = await lm.score(text);
    assert.equal(`${JSON.stringify(got)}\n`, expected);
    assert.equal(got.argmax[lm.tokenize(PROMPT).length - 1], (await lm.complete(PROMPT, { maxTokens: 1 })).tokens[0], "the argmax after the prompt is the first greedy token");
    const short = await TinyRustLM.load(WASM);
    await short.loadModel(Q8_0, { contextLength: 8 });
    const windowed = await short.score(text);
    assert.equal(`${JSON.stringify(windowed)}\n`, trl(["perplexity", "--model", Q8_0, "--file", file, "--json", "--context", "8"], { json: false }));
    assert.deepEqual(windowed.tokens, got.tokens);
    assert.deepEqual(windowed.nll.slice(0, 7), got.nll.slice(0, 7), "the first window has the whole text's context");
  });
});

describe("session snapshots on SmolLM2-135M q8_0", { skip: skipWithoutModel }, () => {
  const args = ["--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.02", "--repeat-penalty", "1.1", "--seed", "777"];
  const sampling = { temperature: 0.9, topK: 40, topP: 0.95, minP: 0.02, repetitionPenalty: 1.1, seed: 777n };

  it("saveSession → restoreSession in a fresh instance continues with the same tokens, and trl reads the bytes", async () => {
    const a = await TinyRustLM.load(WASM);
    await a.loadModel(Q8_0);
    await a.complete(PROMPT, { maxTokens: 8, sampling, ignoreEog: true });
    const snapshot = a.saveSession();
    assert.ok(snapshot instanceof Uint8Array);
    assert.equal(new TextDecoder().decode(snapshot.subarray(0, 4)), "SES1");
    const neverStopped = await a.complete(" Also,", { maxTokens: 12, sampling, continue: true, ignoreEog: true });

    const b = await TinyRustLM.load(WASM);
    await b.loadModel(Q8_0);
    b.restoreSession(snapshot);
    assert.equal(b.state().state, GenState.IDLE);
    const restored = await b.complete(" Also,", { maxTokens: 12, sampling, continue: true, ignoreEog: true });
    assert.deepEqual(restored.tokens, neverStopped.tokens);
    assert.equal(restored.text, neverStopped.text);

    // The wasmtime host continues the same bytes the same way (trl stops at end of generation, so
    // compare the common prefix it produced).
    const file = join(scratchDir(), "js.ses");
    writeFileSync(file, snapshot);
    const fromTrl = trl(["generate", "--model", Q8_0, "--prompt", " Also,", "-n", "12", ...args, "--load-session", file, "--json"]);
    assert.deepEqual(fromTrl.tokens, neverStopped.tokens.slice(0, fromTrl.tokens.length));
    assert.ok(fromTrl.tokens.length > 0);
  });

  it("restores what trl saved, and refuses a damaged snapshot or another model's without changing anything", async () => {
    const file = join(scratchDir(), "trl.ses");
    trl(["generate", "--model", Q8_0, "--prompt", PROMPT, "-n", "6", "--save-session", file, "--json"]);
    const expected = trl(["generate", "--model", Q8_0, "--prompt", " Then", "-n", "10", "--load-session", file, "--json"]);
    const lm = await TinyRustLM.load(WASM);
    await lm.loadModel(Q8_0);
    const bytes = readFileSync(file);
    lm.restoreSession(bytes);
    const damaged = Uint8Array.from(bytes);
    damaged[damaged.length - 1000] ^= 1;
    const e = await expectTrlError(() => lm.restoreSession(damaged), Status.SESSION_CHECKSUM);
    assert.match(e.message, /crc32/);
    await expectTrlError(() => lm.restoreSession(bytes.subarray(0, 100)), Status.SESSION_TRUNCATED);
    const got = await lm.complete(" Then", { maxTokens: 10, sampling: {}, continue: true });
    assert.deepEqual(comparable(got), comparable(expected));

    const other = await TinyRustLM.load(WASM);
    await other.loadModel(syntheticModel());
    const m = await expectTrlError(() => other.restoreSession(bytes), Status.SESSION_MODEL_MISMATCH);
    assert.match(m.message, /header\.n_params/);
    await expectTrlError(() => other.saveSession(), Status.WRONG_STATE);
  });
});

async function collect(gen) {
  for (;;) {
    const { done, value } = await gen.next();
    if (done) return value;
  }
}
