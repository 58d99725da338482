// Out of memory from JavaScript. A module's own exported memory cannot be given a maximum from the
// host, so these tests use what a page can really meet: a package bigger than a wasm32 module can
// hold (announced by a Content-Length header, or a file on disk). The wrapper must throw a TrlError
// with status OUT_OF_MEMORY (4) and the module's text (from load_begin) before reading the body, and the instance must
// then load and generate exactly as `trl` does. (Caps on memory growth itself are tested in wasmtime:
// harness/tests/memory_limits.rs.)

import assert from "node:assert/strict";
import { closeSync, openSync, ftruncateSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it, before } from "node:test";

import { TinyRustLM, TrlError, Status } from "../../abi/tinyrustlm.mjs";
import { WASM, trl, syntheticModel, scratchDir, comparable } from "./helpers.mjs";

/** More than a wasm32 module can address in one buffer (its memory is at most 4 GiB, and Rust caps an allocation at 2 GiB). */
const TOO_BIG = 3_000_000_000;

async function expectOutOfMemory(promise) {
  let error = null;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof TrlError, `expected a TrlError, got ${error}`);
  assert.ok(error instanceof Error);
  assert.equal(error.status, Status.OUT_OF_MEMORY);
  assert.equal(error.status, 4);
  assert.equal(error.statusName, "OUT_OF_MEMORY");
  // A package of known size is streamed: load_begin reserves its memory and refuses first.
  assert.equal(error.call, "load_begin");
  assert.match(error.message, /^OUT_OF_MEMORY: total_len = 3000000000: /, "the module's text names the size that did not fit");
  return error;
}

describe("out of memory", () => {
  let lm;
  const model = () => syntheticModel();
  before(async () => {
    lm = await TinyRustLM.load(WASM);
  });

  async function assertStillWorks() {
    assert.equal(lm.diagnostics().model_loaded, false, "a failed load left a model loaded");
    await lm.loadModel(model());
    const expected = trl(["generate", "--model", model(), "--prompt", "after", "-n", "12", "--json"]);
    assert.deepEqual(comparable(await lm.complete("after", { maxTokens: 12 })), comparable(expected));
    lm.unloadModel();
  }

  it("a download announcing more bytes than the module can hold is OUT_OF_MEMORY before its body is read", async () => {
    let pulled = 0;
    const body = new ReadableStream({
      pull(controller) {
        pulled += 1;
        controller.enqueue(new Uint8Array(1 << 16));
      },
    });
    const response = new Response(body, { headers: { "content-length": String(TOO_BIG) } });
    assert.equal(response.headers.get("content-length"), String(TOO_BIG));
    const before = lm.diagnostics().linear_memory_bytes;
    await expectOutOfMemory(lm.loadModel(response));
    // The stream may have been primed, but nothing was copied: memory did not grow for it.
    assert.ok(pulled <= 1, `the body was read (${pulled} chunks) after the allocation failed`);
    assert.ok(lm.diagnostics().linear_memory_bytes - before < 1 << 20, "linear memory grew for a refused package");
    await assertStillWorks();
  });

  it("a package file larger than the module can hold is OUT_OF_MEMORY", async () => {
    // A sparse file: its size is real, its blocks are not written.
    const path = join(scratchDir(), "too-big.slm");
    const fd = openSync(path, "w");
    try {
      ftruncateSync(fd, TOO_BIG);
    } finally {
      closeSync(fd);
    }
    // Removed once the test is over: the wrapper's read stream of it is still closing.
    after(() => rmSync(path, { force: true }));
    await expectOutOfMemory(lm.loadModel(path));
    await assertStillWorks();
  });
});
