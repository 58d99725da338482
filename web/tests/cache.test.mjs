// The demo page's package cache and module choice in real (headless) Chromium. A package loaded
// from the server is kept in OPFS (Origin Private File System) under its artifact CRC and size; the
// second visit loads it from there with no request for it; deleting it in the page brings the
// download back. TinyRustLM.load() with no module takes the relaxed-SIMD module where Chromium
// validates it, with the same bits as the SIMD128 module.
// Run: `make test-web` (needs chromium, `npm ci` in web/, `make wasm wasm-relaxed wasm-threads harness model`).

import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { launch, startServer } from "./browser.js";
import { MODELS, skipWithoutModel } from "./helpers.mjs";

const PACKAGE = "smollm2-135m-q8_0.slm";
const LOAD_TIMEOUT_MS = 180_000;

describe("the demo page keeps packages in OPFS", { skip: skipWithoutModel }, () => {
  let server;
  let browser;
  let page;

  before(async () => {
    server = await startServer({ logRequests: true });
    browser = await launch();
    page = browser.page;
  });

  after(async () => {
    await browser?.close();
    server?.stop();
  });

  const packageRequests = () => server.requests.filter((r) => r.endsWith(`/models/${PACKAGE}`)).length;

  /** Opens the page with ?autoload and waits until the model is loaded; returns where it came from. */
  async function visit() {
    await page.goto(`${server.url}?model=${PACKAGE}&autoload=1`);
    await page.waitForFunction(() => document.body.dataset.loadedFrom, null, { timeout: LOAD_TIMEOUT_MS });
    await page.waitForFunction(() => document.body.dataset.busy === "idle", null, { timeout: LOAD_TIMEOUT_MS });
    return {
      from: await page.evaluate(() => document.body.dataset.loadedFrom),
      status: await page.textContent("#status"),
      summary: await page.textContent("#model-summary"),
    };
  }

  it("downloads on the first visit, streams it into the module and keeps it", async () => {
    const first = await visit();
    assert.equal(first.from, "network", first.status);
    assert.match(first.summary, /parameters/);
    assert.equal(packageRequests(), 1);
    await page.waitForFunction(() => document.body.dataset.cacheEntries === "1");
    const listed = await page.textContent("#cache-list");
    assert.match(listed, new RegExp(`${PACKAGE.replaceAll(".", "\\.")}: .*artifact CRC [0-9a-f]{8}`));
    const size = statSync(join(MODELS, PACKAGE)).size;
    const name = await page.getAttribute("#cache-list button", "data-name");
    assert.match(name, new RegExp(`^[0-9a-f]{8}-${size}\\.slm$`), "kept under its artifact CRC and size");
  });

  it("loads the second visit from OPFS with no request for the package", async () => {
    const before = packageRequests();
    const second = await visit();
    assert.equal(second.from, "cache", second.status);
    assert.match(second.status, /from this browser's cache/);
    assert.equal(packageRequests(), before, "the package was requested again");
    assert.match(second.summary, /parameters/);
  });

  it("deletes a kept package on request; the next visit downloads again", async () => {
    await page.click("#cache-panel summary");
    await page.click("#cache-list button");
    await page.waitForFunction(() => document.body.dataset.cacheEntries === "0");
    const before = packageRequests();
    const third = await visit();
    assert.equal(third.from, "network", third.status);
    assert.equal(packageRequests(), before + 1);
  });

  it("chooses the module for the engine and says which", async () => {
    // Cross-origin isolated with every core: the threaded module.
    assert.equal(await page.getAttribute("#threads", "data-module"), "threads", await page.textContent("#threads"));
    assert.deepEqual(browser.problems, []);
  });
});

describe("TinyRustLM.load() in Chromium", { skip: skipWithoutModel }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer({ isolated: false });
    browser = await launch();
    await browser.page.goto(server.url);
  });

  after(async () => {
    await browser?.close();
    server?.stop();
  });

  it("takes the relaxed-SIMD module, which gives the SIMD128 module's bits", async () => {
    const result = await browser.page.evaluate(async (model) => {
      const { TinyRustLM, DEFAULT_WASM_URL, relaxedSimdSupported } = await import("../abi/tinyrustlm.mjs");
      const out = { relaxedSimdSupported: relaxedSimdSupported() };
      for (const [name, wasm] of [["auto", undefined], ["simd128", DEFAULT_WASM_URL]]) {
        const lm = await TinyRustLM.load(wasm);
        await lm.loadModel(model, { contextLength: 256 });
        const r = await lm.complete("The capital of France is", { maxTokens: 12, ignoreEog: true });
        out[name] = { flavour: lm.moduleChoice?.flavour ?? null, reason: lm.moduleChoice?.reason ?? null, tokens: r.tokens, logits: Array.from(new Uint32Array(lm.logits().slice().buffer)) };
        lm.unloadModel();
      }
      return out;
    }, `../models/smollm2-135m-q4_1.slm`);
    assert.equal(result.relaxedSimdSupported, true, "Chromium validates relaxed SIMD");
    assert.equal(result.auto.flavour, "relaxed-simd", result.auto.reason);
    assert.deepEqual(result.auto.tokens, result.simd128.tokens);
    assert.equal(result.auto.logits.length, result.simd128.logits.length);
    assert.ok(result.auto.logits.every((bits, i) => bits === result.simd128.logits[i]), "logits differ bit for bit");
  });
});
