// The wrapper runs unchanged in Deno (the `deno` npm package's binary): same tokens as `trl`,
// abort, errors; and the threaded module on 2 threads, with the same output, exiting without
// close(). Skipped when the binary is not installed (`npm ci` in web/ installs it).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

import { WASM, THREADS_WASM, trl, syntheticModel, comparable } from "./helpers.mjs";

const DENO = fileURLToPath(new URL("../node_modules/.bin/deno", import.meta.url));
const skip = existsSync(DENO) ? false : "no deno (npm ci in web/)";

function runDeno(wasm, threads) {
  const model = syntheticModel();
  const script = fileURLToPath(new URL("./deno-run.mjs", import.meta.url));
  const out = execFileSync(DENO, ["run", "--no-prompt", "--allow-read", script, wasm, model, "Once upon a time", "24", ...(threads ? [String(threads)] : [])], {
    encoding: "utf8",
    timeout: 120_000, // a worker left running would keep Deno alive
    env: { ...process.env, DENO_DIR: join(fileURLToPath(new URL("../node_modules/.cache/deno", import.meta.url))), NO_COLOR: "1" },
  });
  const got = JSON.parse(out);
  const expected = trl(["generate", "--model", model, "--prompt", "Once upon a time", "-n", "24", "--json"]);
  assert.ok(got.progress > 0);
  assert.deepEqual(comparable(got.greedy), comparable(expected));
  assert.equal(got.abortName, "AbortError");
  assert.deepEqual(comparable(got.again), comparable(expected));
  assert.deepEqual(got.error, { isTrlError: true, status: 6 });
  return got;
}

it("runs under Deno with the same output as trl", { skip }, () => {
  assert.deepEqual(runDeno(WASM).threads, { wrapper: 1, diagnostics: 1 });
});

it("runs the threaded module under Deno on 2 threads with the same output", { skip: skip || (existsSync(THREADS_WASM) ? false : "no threaded module (make wasm-threads)") }, () => {
  assert.deepEqual(runDeno(THREADS_WASM, 2).threads, { wrapper: 2, diagnostics: 2 });
});
