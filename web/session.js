// Session snapshots in the browser: the conversation is saved to OPFS after every turn
// (lm.saveSession()) and restored after a reload (lm.restoreSession()), so it continues without
// prefilling it again. Single-thread module on the page's main thread; a small page of its own,
// driven by web/tests/session.test.mjs through `window.trlSession`.

import { TinyRustLM } from "../abi/tinyrustlm.mjs";

const WASM = "../target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm";
const FILE = "conversation.ses";
const params = new URLSearchParams(location.search);
const modelName = params.get("model") ?? "smollm2-135m-q8_0.slm";
const $ = (id) => document.getElementById(id);

async function opfsFile(create) {
  const root = await navigator.storage.getDirectory();
  try {
    return await root.getFileHandle(FILE, { create });
  } catch (e) {
    if (e.name === "NotFoundError") return null;
    throw e;
  }
}

/** The saved snapshot's bytes, or null when there is none. */
async function readSaved() {
  const handle = await opfsFile(false);
  return handle ? new Uint8Array(await (await handle.getFile()).arrayBuffer()) : null;
}

async function writeSaved(bytes) {
  const w = await (await opfsFile(true)).createWritable();
  await w.write(bytes);
  await w.close();
}

async function forget() {
  const root = await navigator.storage.getDirectory();
  await root.removeEntry(FILE).catch((e) => {
    if (e.name !== "NotFoundError") throw e;
  });
}

async function sha256(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

const lm = await TinyRustLM.load(new URL(WASM, location.href).href);
await lm.loadModel(new URL(`../models/${modelName}`, location.href).href);
// Whether the KV cache holds a conversation (restored, or from an earlier turn on this page).
let inConversation = false;
let restoreMs = null;
const saved = await readSaved();
if (saved) {
  const t0 = performance.now();
  lm.restoreSession(saved);
  restoreMs = performance.now() - t0;
  inConversation = true;
}
$("status").textContent = saved
  ? `Restored a ${(saved.byteLength / 1e6).toFixed(1)} MB conversation (${lm.diagnostics().kv_len} positions) from OPFS in ${restoreMs.toFixed(0)} ms.`
  : "No saved conversation: starting a new one.";

/** One turn: the text continues the conversation when there is one; then it is saved to OPFS. */
async function turn(text, maxTokens) {
  const result = await lm.complete(text, { maxTokens, continue: inConversation, sampling: {} });
  inConversation = true;
  const snapshot = lm.saveSession();
  await writeSaved(snapshot);
  $("transcript").textContent += `${text}${result.text}\n`;
  return { tokens: result.tokens, text: result.text, snapshotBytes: snapshot.byteLength, snapshotSha256: await sha256(snapshot) };
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await turn($("prompt").value, 64);
});
$("forget").addEventListener("click", async () => {
  await forget();
  lm.reset();
  inConversation = false;
  $("status").textContent = "Forgotten: the next message starts a new conversation.";
});

window.trlSession = { turn, forget, restored: saved !== null, restoreMs, savedSha256: saved ? await sha256(saved) : null };
document.body.dataset.ready = "1";
