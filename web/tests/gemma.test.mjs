// Gemma 3 270M in headless Chromium through the demo page's worker (loads, names Gemma's template,
// a greedy chat answer byte-identical to `trl generate --chat --json`), and through the JavaScript
// wrapper under Node: the package names Gemma's chat template,
// formatChat renders Gemma's turns (llama.cpp's text for the same conversation), chat() and raw
// completion are byte-identical to `trl generate` with and without --chat, and a chat answer that
// ends on <end_of_turn> would be continued from the cache. Needs `make gemma` (skipped without it).
// Run: `make test-web`.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { launch, startServer } from "./browser.js";
import { ChatTemplateName, TinyRustLM } from "../../abi/tinyrustlm.mjs";
import { MODELS, WASM, comparable, trl } from "./helpers.mjs";

const GEMMA = join(MODELS, "gemma-3-270m-q4_k_m.slm");
const MAX_TOKENS = 8;
/** abi/FORMAT.md: chat_template 3 is `gemma`. */
const GEMMA_TEMPLATE = 3;

const skipWithout = (path) => (existsSync(path) ? false : `no ${path} (run \`make gemma\`)`);

async function collect(it) {
  let text = "";
  let step;
  while (!(step = await it.next()).done) text += step.value;
  return { ...step.value, streamed: text };
}

describe("Gemma 3 270M under Node", { skip: skipWithout(GEMMA) }, () => {
  let lm;
  before(async () => {
    lm = await TinyRustLM.load(WASM);
    await lm.loadModel(GEMMA, { contextLength: 512 });
  });

  it("names Gemma's template and renders its turns", () => {
    const d = lm.diagnostics();
    assert.equal(d.chat_template, GEMMA_TEMPLATE);
    assert.equal(d.chat_template_name, "gemma");
    assert.equal(ChatTemplateName[GEMMA_TEMPLATE], "gemma");
    // llama.cpp's `gemma` template writes the same text (harness/tests/gemma3.rs holds the ids).
    const messages = [
      { role: "system", content: "Answer in one word." },
      { role: "user", content: "Capital of France?" },
      { role: "assistant", content: "Paris." },
      { role: "user", content: "And of Italy?" },
    ];
    assert.equal(
      lm.formatChat(messages),
      "<start_of_turn>user\nAnswer in one word.\n\nCapital of France?<end_of_turn>\n<start_of_turn>model\nParis.<end_of_turn>\n" +
        "<start_of_turn>user\nAnd of Italy?<end_of_turn>\n<start_of_turn>model\n",
    );
    // No default system prompt; a given one starts the first turn.
    const user = [{ role: "user", content: "Hi" }];
    assert.equal(lm.formatChat(user), "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
    assert.equal(lm.formatChat(user, { defaultSystem: "Be brief." }), "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
    assert.deepEqual(lm.tokenize("<start_of_turn><end_of_turn>"), [2, 105, 106]);
  });

  it("chat() is byte-identical to trl generate --chat --json, with and without a system prompt", async () => {
    const question = "What is the capital of France?";
    for (const system of [undefined, "You are a pirate."]) {
      const args = ["generate", "--model", GEMMA, "--chat", "--prompt", question, "-n", String(MAX_TOKENS), "--json"];
      if (system) args.push("--system", system);
      const expected = trl(args);
      const got = await collect(lm.chat([{ role: "user", content: question }], { maxTokens: MAX_TOKENS, defaultSystem: system }));
      assert.deepEqual(comparable(got), comparable(expected));
      assert.equal(got.streamed, expected.text);
    }
  });

  it("raw completion (the base model's mode) is byte-identical to trl generate --json", async () => {
    const prompt = "The three primary colours are";
    const expected = trl(["generate", "--model", GEMMA, "--prompt", prompt, "-n", String(MAX_TOKENS), "--json"]);
    assert.deepEqual(comparable(await lm.complete(prompt, { maxTokens: MAX_TOKENS })), comparable(expected));
  });

  it("finds the end-of-turn token a continued chat needs in the cache", () => {
    // The base model does not end its answers on <end_of_turn> (it was not tuned to), so the
    // continuation itself is exercised on SmolLM2 (wrapper.test.mjs); here, that the wrapper knows
    // Gemma's token and its id (tokenize adds BOS for Gemma).
    assert.deepEqual(lm._endOfTurn(), { text: "<end_of_turn>", id: 106 });
  });
});

describe("Gemma 3 270M in Chromium", { skip: skipWithout(GEMMA) }, () => {
  const QUESTION = "What is the capital of France?";
  let server;
  let browser;
  let page;

  before(async () => {
    server = await startServer();
    browser = await launch();
    page = browser.page;
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset.busy === "idle", null, { timeout: 120_000 });
  });

  after(async () => {
    await browser?.close();
    server?.stop();
  });

  const idle = (timeout) => page.waitForFunction(() => document.body.dataset.busy === "idle", null, { timeout });
  const field = (name) => page.textContent(`#diagnostics dd[data-field="${name}"]`);

  it("the demo page loads the package and answers a chat as trl does", async () => {
    await page.selectOption("#model-select", "gemma-3-270m-q4_k_m.slm");
    await page.click("#model-load-url");
    await idle(600_000);
    assert.equal(await page.isVisible("#error"), false, await page.textContent("#error"));
    assert.equal(await field("Layout CRC"), trl(["inspect", GEMMA, "--json"]).identity.tensor_layout_crc);
    assert.equal(await field("Chat format"), "Gemma");
    const expected = trl(["generate", "--model", GEMMA, "--chat", "--prompt", QUESTION, "-n", String(MAX_TOKENS), "--json"]);
    await page.check('input[name="mode"][value="chat"]');
    await page.fill("#temperature", "0");
    await page.fill("#repeat-penalty", "1");
    await page.fill("#max-tokens", String(MAX_TOKENS));
    await page.fill("#prompt", QUESTION);
    await page.click("#send");
    await idle(300_000);
    assert.equal(await page.isVisible("#error"), false, await page.textContent("#error"));
    assert.deepEqual(JSON.parse(await page.textContent("#last-prompt-tokens")), expected.prompt_tokens);
    assert.deepEqual(JSON.parse(await page.textContent("#last-tokens")), expected.tokens);
    assert.deepEqual(browser.problems, []);
  });
});
