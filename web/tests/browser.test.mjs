// The demo page in real (headless) Chromium: the runtime in a Web Worker loads SmolLM2, generates
// greedily — token for token what the wasmtime harness produces — stops on request and carries on,
// and shows errors plainly. Served with COOP/COEP (web/serve.py), the page is cross-origin isolated
// and runs the threaded module on every core; served without them, it runs the single-thread
// module and says why. Leaves target/web/screenshot.png behind.
// Run: `make test-web` (needs chromium, `npm ci` in web/, `make wasm harness model`).

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { launch, startServer } from "./browser.js";
import { TinyRustLM } from "../../abi/tinyrustlm.mjs";
import { ROOT, WASM, Q8_0, trl, trlHas, syntheticModel, syntheticCases, syntheticPackets, adapterBetween, moduleHas, scratchDir, skipWithoutModel } from "./helpers.mjs";

const PROMPT = "The capital of France is";
const QUESTION = "What is the capital of France? Answer in one sentence.";
const SCREENSHOT = join(ROOT, "target/web/screenshot.png");
/** Loading 140 MB and compiling happen well within this on the 2-core CI machine. */
const LOAD_TIMEOUT_MS = 120_000;
const GENERATE_TIMEOUT_MS = 120_000;

describe("demo page in Chromium", { skip: skipWithoutModel }, () => {
  let server;
  let browser;
  let page;

  before(async () => {
    server = await startServer();
    browser = await launch();
    page = browser.page;
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset.busy === "idle", null, { timeout: LOAD_TIMEOUT_MS });
  });

  after(async () => {
    await browser?.close();
    server?.stop();
  });

  const idle = (timeout = GENERATE_TIMEOUT_MS) => page.waitForFunction(() => document.body.dataset.busy === "idle", null, { timeout });
  const lastTokens = async () => JSON.parse(await page.textContent("#last-tokens"));
  const lastPromptTokens = async () => JSON.parse(await page.textContent("#last-prompt-tokens"));
  const lastText = () => page.locator("#transcript .msg:last-child .text").textContent();

  /** Sends with trl's default sampling (greedy, no repetition penalty) unless told otherwise. */
  async function send(mode, text, { maxTokens, temperature = 0, repeatPenalty = 1 }) {
    await page.check(`input[name="mode"][value="${mode}"]`);
    await page.fill("#temperature", String(temperature));
    await page.fill("#repeat-penalty", String(repeatPenalty));
    await page.fill("#max-tokens", String(maxTokens));
    await page.fill("#prompt", text);
    await page.click("#send");
  }

  it("starts the runtime in a worker and lists the packages in models/", async () => {
    assert.match(await page.textContent("#status"), /Runtime ready/);
    // Cross-origin isolated, so the threaded module runs on every core (the rest of this file's
    // generations compare its tokens with trl's).
    const { isolated, cores } = await page.evaluate(() => ({ isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency }));
    assert.equal(isolated, true, "serve.py's COOP/COEP headers make the page cross-origin isolated");
    const threads = Number(await page.getAttribute("#threads", "data-threads"));
    assert.equal(threads, Math.min(cores, 64), await page.textContent("#threads"));
    assert.ok(threads > 1 || cores === 1, `${threads} threads on ${cores} cores`);
    assert.equal(await page.getAttribute("#threads", "data-fallback"), "0");
    assert.equal(await page.textContent('#diagnostics dd[data-field="Threads"]'), String(threads), "diagnostics: every worker runs");
    const options = await page.$$eval("#model-select option", (os) => os.map((o) => o.value));
    assert.ok(options.includes("smollm2-135m-q8_0.slm"), `models offered: ${options}`);
    assert.equal(await page.isVisible("#error"), false);
  });

  it("a damaged package is refused with its status, plainly", async () => {
    const bytes = readFileSync(syntheticModel());
    bytes[bytes.length - 50] ^= 0x5a;
    await page.setInputFiles("#model-file", { name: "damaged.slm", mimeType: "application/octet-stream", buffer: bytes });
    await idle();
    assert.equal(await page.isVisible("#error"), true);
    assert.match(await page.textContent("#error-title"), /ARTIFACT_CHECKSUM \(status 36\)/);
    assert.match(await page.textContent("#error-text"), /not a valid model package/);
    assert.match(await page.textContent("#model-summary"), /No model loaded/);
    await page.click("#error-close");
  });

  it("loads SmolLM2 q8_0 from the server with progress", async () => {
    await page.selectOption("#model-select", "smollm2-135m-q8_0.slm");
    await page.click("#model-load-url");
    // Progress is reported while the bytes stream in (seen at least once before validation).
    await page.waitForFunction(() => /Loading .*: .* of /.test(document.getElementById("status").textContent) || document.body.dataset.busy === "idle", null, { timeout: LOAD_TIMEOUT_MS });
    await idle(LOAD_TIMEOUT_MS);
    assert.equal(await page.isVisible("#error"), false, await page.textContent("#error"));
    assert.match(await page.textContent("#model-summary"), /134,515,008 parameters, q8_0/);
    assert.equal(await page.getAttribute("#load-progress", "data-done"), "1");
    const expected = trl(["inspect", Q8_0, "--json"]);
    assert.equal(await page.textContent('#diagnostics dd[data-field="Layout CRC"]'), expected.identity.tensor_layout_crc);
  });

  let greedy;
  it("greedy tokens are byte-identical to trl generate --json", async () => {
    const expected = trl(["generate", "--model", Q8_0, "--prompt", PROMPT, "-n", "16", "--json"]);
    await send("raw", PROMPT, { maxTokens: 16 });
    await idle();
    greedy = { prompt_tokens: await lastPromptTokens(), tokens: await lastTokens(), text: await lastText() };
    assert.deepEqual(greedy.prompt_tokens, expected.prompt_tokens);
    assert.deepEqual(greedy.tokens, expected.tokens);
    assert.equal(greedy.text, expected.text);
  });

  it("Stop aborts mid-generation, the page stays responsive, and the engine carries on", async () => {
    // A seed whose story does not end early with the page's sampling (top-k 40, top-p 0.95): with
    // the page's default seed 42 it reaches end-of-text after 49 tokens, before a click can land.
    // Checked first with trl, so a change of arithmetic that shortens it fails here, not as a
    // timeout on a disabled Stop button.
    const LONG_SEED = "3";
    const story = trl(["generate", "--model", Q8_0, "--prompt", "Once upon a time", "-n", "300", "--temperature", "0.8", "--top-k", "40", "--top-p", "0.95", "--seed", LONG_SEED, "--json"]);
    assert.equal(story.tokens.length, 300, `seed ${LONG_SEED} must not end the story within 300 tokens`);
    await page.fill("#seed", LONG_SEED);
    await send("raw", "Once upon a time", { maxTokens: 2000, temperature: 0.8 });
    await page.waitForFunction(() => (document.querySelector("#transcript .msg:last-child .text")?.textContent.length ?? 0) > 20, null, { timeout: GENERATE_TIMEOUT_MS });
    // The page's thread keeps running timers while the worker generates. A frozen page would show
    // a gap as long as the whole generation; the bound is loose so a busy machine cannot fail it.
    const maxGapMs = await page.evaluate(
      () =>
        new Promise((resolve) => {
          let last = performance.now();
          let max = 0;
          let n = 0;
          const tick = () => {
            const now = performance.now();
            max = Math.max(max, now - last);
            last = now;
            if (++n < 20) setTimeout(tick, 25);
            else resolve(max);
          };
          setTimeout(tick, 25);
        }),
    );
    assert.ok(maxGapMs < 2000, `the page's thread stalled for ${maxGapMs} ms while generating`);
    assert.equal(await page.isEnabled("#stop"), true);
    // The Stop button stays put while text streams in (a moving target is missed by a user's click).
    const box = await page.locator("#stop").boundingBox();
    await page.waitForTimeout(300);
    assert.deepEqual(await page.locator("#stop").boundingBox(), box, "the Stop button moved while generating");
    await page.click("#stop");
    await idle();
    assert.equal(await page.getAttribute("#last-stop", "data-stop"), "aborted");
    const n = (await lastTokens()).length;
    assert.ok(n > 0 && n < 2000, `${n} tokens before the stop`);
    assert.equal(await page.isVisible("#error"), false);
    await page.fill("#seed", "42");
    // The same greedy request again: identical output.
    await send("raw", PROMPT, { maxTokens: 16 });
    await idle();
    assert.deepEqual(await lastTokens(), greedy.tokens);
    assert.equal(await lastText(), greedy.text);
  });

  it("chat answers as trl generate --chat does", async () => {
    await page.click("#new-chat");
    await idle();
    const expected = trl(["generate", "--model", Q8_0, "--chat", "--prompt", QUESTION, "-n", "64", "--json"]);
    await send("chat", QUESTION, { maxTokens: 64 });
    await idle();
    assert.deepEqual(await lastPromptTokens(), expected.prompt_tokens);
    assert.deepEqual(await lastTokens(), expected.tokens);
    assert.equal(await lastText(), expected.text);
    // Diagnostics are live: the record matches the harness's for the same generation.
    assert.equal(await page.textContent('#diagnostics dd[data-field="KV length"]'), `${expected.diagnostics.kv_len} / ${expected.diagnostics.context_len}`);
    assert.equal(await page.textContent('#diagnostics dd[data-field="Assembly CRC"]'), expected.diagnostics.assembly_state_crc.toString(16).padStart(8, "0"));
  });

  it("a follow-up question continues the conversation", async () => {
    await send("chat", "And the capital of Italy?", { maxTokens: 48 });
    await idle();
    assert.ok((await lastText()).length > 0);
    assert.equal(await page.locator("#transcript .msg").count(), 4);
    mkdirSync(join(ROOT, "target/web"), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.deepEqual(browser.problems, []);
  });

  it("JSON output: the schema box constrains the answer to a valid object, as trl --json-schema does", async () => {
    await page.click("#new-chat");
    await idle();
    await page.check("#json-output");
    const schema = await page.inputValue("#json-schema");
    const schemaFile = join(scratchDir(), "demo-schema.json");
    writeFileSync(schemaFile, schema);
    const ask = "Describe a fictional person.";
    const expected = trl(["generate", "--model", Q8_0, "--chat", "--json-schema", schemaFile, "--prompt", ask, "-n", "96", "--json"]);
    await send("chat", ask, { maxTokens: 96 });
    await idle();
    assert.deepEqual(await lastTokens(), expected.tokens);
    const text = await lastText();
    assert.equal(text, expected.text);
    const value = JSON.parse(text);
    assert.deepEqual(Object.keys(value).sort(), ["age", "city", "name"]);
    assert.ok(Number.isInteger(value.age) && value.age >= 0 && value.age <= 120, text);
    await page.uncheck("#json-output");
    await page.click("#new-chat");
    await idle();
  });

  it("draws the lineage of dropped release packets as trl lineage does", { skip: trlHas("packet") ? false : "trl has no packet subcommand yet" }, async () => {
    const { dir, files } = syntheticPackets();
    // Dropped out of order, and without the parent's packet: the parent is drawn dashed, by its id.
    const dropped = files.filter((f) => !f.endsWith("parent.json")).reverse();
    await page.setInputFiles("#packet-files", dropped);
    await page.waitForSelector("#lineage svg");
    assert.equal(await page.locator("#lineage svg rect").count(), 4);
    assert.equal(await page.locator("#lineage svg rect.ghost").count(), 1);
    const edges = await page.$$eval("#lineage svg path.edge", (ps) => ps.map((p) => `${p.dataset.from} -> ${p.dataset.to}`).sort());
    const dot = trl(["lineage", dir, "--format", "dot"], { json: false });
    const expected = [...dot.matchAll(/"(\w+)" -> "(\w+)"/g)].map((m) => `${m[1]} -> ${m[2]}`).sort();
    assert.equal(expected.length, 3);
    assert.deepEqual(edges, expected);
    const text = await page.textContent("#lineage svg");
    for (const f of dropped) {
      const packet = JSON.parse(readFileSync(f, "utf8"));
      assert.ok(text.includes(packet.id) && text.includes(packet.assembly_state_crc), `node ${packet.id} with its checksum`);
      const e = packet.evals[0];
      assert.ok(text.includes(`${e.suite} ${e.passed}/${e.n_cases} ${e.boundary_met ? "✓ met" : "✗ not met"}`));
    }
    await page.locator("#lineage-panel").screenshot({ path: join(ROOT, "target/web/lineage.png") });
  });

  it("a prompt longer than the context is refused plainly, and the model stays loaded", async () => {
    await page.fill("#context-len", "32");
    await page.setInputFiles("#model-file", { name: "small-context.slm", mimeType: "application/octet-stream", buffer: readFileSync(syntheticModel()) });
    await idle(LOAD_TIMEOUT_MS);
    await page.fill("#context-len", "0");
    assert.match(await page.textContent("#model-summary"), /context 32/);
    await send("raw", "x".repeat(100), { maxTokens: 4 });
    await idle();
    assert.match(await page.textContent("#error-title"), /CONTEXT_FULL \(status 5\)/);
    assert.match(await page.textContent("#error-text"), /no longer fits/);
    await page.click("#error-close");
    await send("raw", "short", { maxTokens: 4 });
    await idle();
    assert.equal((await lastTokens()).length, 4);
    assert.equal(await page.isVisible("#error"), false);
  });

  it("runs an eval file and downloads the sidecar trl eval writes, byte for byte", { skip: moduleHas("run_eval") ? false : "no run_eval export in this build" }, async () => {
    const model = syntheticModel();
    const cases = syntheticCases(model);
    let expected;
    if (trlHas("eval")) {
      const casesPath = join(scratchDir(), "browser-cases.jsonl");
      const out = join(scratchDir(), "browser-expected.sidecar.json");
      writeFileSync(casesPath, cases);
      trl(["eval", "--model", model, "--cases", casesPath, "--out", out], { json: false });
      expected = new Uint8Array(readFileSync(out));
    } else {
      // Before `trl eval` existed: the same module under Node.
      const node = await TinyRustLM.load(WASM);
      await node.loadModel(model);
      expected = (await node.evaluate(cases)).bytes;
    }

    await page.setInputFiles("#model-file", { name: "synthetic.slm", mimeType: "application/octet-stream", buffer: readFileSync(model) });
    await idle(LOAD_TIMEOUT_MS);
    await page.setInputFiles("#eval-file", { name: "smoke.jsonl", mimeType: "application/jsonl", buffer: Buffer.from(cases) });
    await page.click("#eval-run");
    await idle();
    assert.equal(await page.isVisible("#error"), false);
    assert.match(await page.textContent("#eval-summary"), /synthetic-smoke v1 · 3 of 4 passed · quality boundary met/);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#eval-download")]);
    assert.equal(download.suggestedFilename(), "smoke.sidecar.json");
    const got = readFileSync(await download.path());
    assert.deepEqual(new Uint8Array(got), expected);
  });

  const adapters = moduleHas("validate_adapter_delta", "apply_adapter_delta", "remove_last_adapter", "reset_adapters");
  it("applies and removes adapters as trl does, and refuses one made for another model", { skip: adapters ? false : "no adapter exports in this build" }, async () => {
    const parent = syntheticModel({ seed: 7 });
    const adapter = adapterBetween(parent, syntheticModel({ seed: 8 }), "sparse", ["--top-k", "500"]);
    const foreign = adapterBetween(syntheticModel({ seed: 9, layers: 3 }), syntheticModel({ seed: 10, layers: 3 }), "dense");
    const file = (path, name) => ({ name, mimeType: "application/octet-stream", buffer: readFileSync(path) });
    const generate = (extra) => trl(["generate", "--model", parent, ...extra, "--prompt", "hello", "-n", "12", "--json"]);

    await page.setInputFiles("#model-file", file(parent, "parent.slm"));
    await idle(LOAD_TIMEOUT_MS);
    assert.equal(await page.isChecked('input[name="mode"][value="raw"]'), true, "no chat template: raw mode");
    await page.setInputFiles("#adapter-file", file(adapter, "child.asp"));
    await page.click("#adapter-validate");
    await idle();
    await page.click("#adapter-apply");
    await idle();
    const applied = generate(["--adapter", adapter]);
    assert.equal(await page.textContent('#diagnostics dd[data-field="Adapters"]'), "1");
    assert.equal(await page.textContent('#diagnostics dd[data-field="Assembly CRC"]'), applied.diagnostics.assembly_state_crc.toString(16).padStart(8, "0"));
    await send("raw", "hello", { maxTokens: 12 });
    await idle();
    assert.deepEqual(await lastTokens(), applied.tokens);

    await page.setInputFiles("#adapter-file", file(foreign, "foreign.adp"));
    await page.click("#adapter-apply");
    await idle();
    assert.match(await page.textContent("#error-title"), /ADAPTER_PARENT_MISMATCH/);
    assert.match(await page.textContent("#error-text"), /made for another model/);
    assert.equal(await page.textContent('#diagnostics dd[data-field="Adapters"]'), "1", "the refused adapter changed nothing");
    await page.click("#error-close");

    await page.click("#adapter-remove");
    await idle();
    const base = generate([]);
    assert.equal(await page.textContent('#diagnostics dd[data-field="Assembly CRC"]'), base.diagnostics.assembly_state_crc.toString(16).padStart(8, "0"));
    await send("raw", "hello", { maxTokens: 12 });
    await idle();
    assert.deepEqual(await lastTokens(), base.tokens);
  });
});

describe("demo page without cross-origin isolation", () => {
  let server;
  let browser;

  after(async () => {
    await browser?.close();
    server?.stop();
  });

  it("runs the single-thread module on 1 thread, says why, and gives the same tokens", async () => {
    server = await startServer({ isolated: false });
    browser = await launch();
    const { page } = browser;
    const warnings = [];
    page.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset.busy === "idle", null, { timeout: LOAD_TIMEOUT_MS });
    assert.equal(await page.evaluate(() => crossOriginIsolated), false);
    assert.equal(await page.getAttribute("#threads", "data-threads"), "1");
    assert.equal(await page.getAttribute("#threads", "data-fallback"), "1");
    assert.match(await page.textContent("#threads"), /Running on 1 thread — the page is not cross-origin isolated/);
    assert.ok(warnings.some((w) => /running on 1 thread/.test(w)), `the wrapper warns: ${warnings}`);
    const model = syntheticModel();
    await page.setInputFiles("#model-file", { name: "synthetic.slm", mimeType: "application/octet-stream", buffer: readFileSync(model) });
    await page.waitForFunction(() => document.body.dataset.busy === "idle", null, { timeout: LOAD_TIMEOUT_MS });
    await page.check('input[name="mode"][value="raw"]');
    await page.fill("#temperature", "0");
    await page.fill("#repeat-penalty", "1");
    await page.fill("#max-tokens", "12");
    await page.fill("#prompt", "hello");
    await page.click("#send");
    await page.waitForFunction(() => document.body.dataset.busy === "idle", null, { timeout: GENERATE_TIMEOUT_MS });
    const expected = trl(["generate", "--model", model, "--prompt", "hello", "-n", "12", "--json"]);
    assert.deepEqual(JSON.parse(await page.textContent("#last-tokens")), expected.tokens);
    assert.equal(await page.textContent('#diagnostics dd[data-field="Threads"]'), "1");
    assert.deepEqual(browser.problems, []);
  });
});
