// Session snapshots in Chromium (web/session.html): a turn is saved to OPFS, the page is reloaded,
// the conversation is restored from OPFS and the next turn gives exactly the tokens `trl generate
// --load-session` gives from the snapshot trl saved — which is the same bytes as the page's.
// Run: `make test-web` (needs chromium, `npm ci` in web/, `make wasm harness model`).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { launch, startServer } from "./browser.js";
import { Q8_0, trl, scratchDir, skipWithoutModel } from "./helpers.mjs";

const FIRST = "The capital of France is";
const NEXT = " The capital of Italy is";
const TIMEOUT_MS = 180_000;

describe("session snapshots in OPFS across a reload (Chromium)", { skip: skipWithoutModel }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    server?.stop();
  });

  const ready = (page) => page.waitForFunction(() => document.body.dataset.ready === "1", null, { timeout: TIMEOUT_MS });

  it("saves a turn, reloads, restores and continues with trl's tokens", async () => {
    const file = join(scratchDir(), "page.ses");
    const first = trl(["generate", "--model", Q8_0, "--prompt", FIRST, "-n", "8", "--save-session", file, "--json"]);
    const next = trl(["generate", "--model", Q8_0, "--prompt", NEXT, "-n", "12", "--load-session", file, "--json"]);
    const trlSha = createHash("sha256").update(readFileSync(file)).digest("hex");

    const page = browser.page;
    await page.goto(`${server.url}session.html`);
    await ready(page);
    await page.evaluate(() => window.trlSession.forget());
    await page.reload();
    await ready(page);
    assert.equal(await page.evaluate(() => window.trlSession.restored), false, "a fresh origin has no saved conversation");

    const t1 = await page.evaluate(([p]) => window.trlSession.turn(p, 8), [FIRST]);
    assert.deepEqual(t1.tokens, first.tokens);
    assert.equal(t1.snapshotSha256, trlSha, "the page saved the bytes trl saved");

    await page.reload();
    await ready(page);
    const after = await page.evaluate(() => ({ restored: window.trlSession.restored, sha: window.trlSession.savedSha256, status: document.getElementById("status").textContent }));
    assert.equal(after.restored, true, after.status);
    assert.equal(after.sha, trlSha, "OPFS kept the snapshot across the reload");
    assert.match(after.status, /Restored a \d+\.\d MB conversation \(\d+ positions\)/);

    const t2 = await page.evaluate(([p]) => window.trlSession.turn(p, 12), [NEXT]);
    assert.deepEqual(t2.tokens, next.tokens, "the turn after the reload continues as trl does");
    assert.deepEqual(browser.problems, []);
  });
});
