// tinyrustlm-worker.mjs — one worker thread of the threaded TinyRustLM module (abi/THREADS.md),
// started by tinyrustlm.mjs (`TinyRustLM.load` with the threaded module); not imported by callers.
//
// It receives { module, memory, index, top } (Node and Deno, where it is a `node:worker_threads`
// Worker: as workerData; browsers, a module Worker: as the first message), instantiates the module on the shared memory, points the instance's stack at `top` and
// calls worker_run(index), which returns when the leader calls stop_workers. It then posts
// { type: "exit", status }, or { type: "error", message } if anything failed. The same file runs as
// a `node:worker_threads` Worker (Node, Deno) and as a module Worker (browsers).

const nodeLike = typeof Deno !== "undefined" || (typeof process !== "undefined" && process.versions?.node != null);

function run({ module, memory, index, top }, post) {
  let exports;
  try {
    // Instantiating runs the start function, which sees the static data already in place.
    const instance = new WebAssembly.Instance(module, { env: { memory, trl_now_ms: () => performance.now() } });
    exports = instance.exports;
    // Before any call: the instance's own initial stack pointer is the leader's stack.
    exports.__stack_pointer.value = top;
  } catch (e) {
    post({ type: "error", index, message: `instantiating the module: ${e?.message ?? e}` });
    return;
  }
  try {
    post({ type: "exit", index, status: exports.worker_run(index) });
  } catch (e) {
    post({ type: "error", index, message: `worker_run trapped: ${e?.message ?? e}` });
  }
}

const threads = nodeLike ? await import("node:worker_threads") : null;
if (threads?.parentPort && threads.workerData) {
  run(threads.workerData, (m) => threads.parentPort.postMessage(m));
} else {
  self.onmessage = (event) => {
    self.onmessage = null;
    run(event.data, (m) => self.postMessage(m));
  };
}
