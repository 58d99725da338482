// Shared by the Node and browser tests: repo paths, and the wasmtime harness (`trl`) as the
// independent host whose output the JavaScript host must reproduce byte for byte.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const WASM = join(ROOT, "target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm");
/** The threaded flavour (`make wasm-threads`, abi/THREADS.md). */
export const THREADS_WASM = join(ROOT, "target/threads/wasm32-unknown-unknown/wasm/tinyrustlm.wasm");
export const TRL = join(ROOT, "target/release/trl");
export const MODELS = process.env.TRL_MODELS ?? join(ROOT, "models");
export const Q8_0 = join(MODELS, "smollm2-135m-q8_0.slm");
export const Q4_0 = join(MODELS, "smollm2-135m-q4_0.slm");

/** Runs `trl` with the module under test; parses stdout as JSON when `json` is set. */
export function trl(args, { json = true } = {}) {
  const out = execFileSync(TRL, ["--wasm", WASM, ...args], { encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "pipe"] });
  return json ? JSON.parse(out) : out;
}

let scratch = null;
/** A temporary folder for this process's generated files. */
export function scratchDir() {
  scratch ??= mkdtempSync(join(tmpdir(), "trl-js-"));
  return scratch;
}

const made = new Map();
/** A synthetic package (random weights, byte tokenizer), made once per process per seed/shape. */
export function syntheticModel({ seed = 7, layers = 2 } = {}) {
  const path = join(scratchDir(), `synthetic-s${seed}-l${layers}-q8_0.slm`);
  if (!made.has(path)) {
    trl(["pack", "--synthetic", "--seed", String(seed), "--layers", String(layers), "--quant", "q8_0", "-o", path], { json: false });
    made.set(path, true);
  }
  return path;
}

/**
 * An adapter that turns package `from` into package `to` (`trl adapter diff`), e.g.
 * adapterBetween(a, b, "sparse", ["--top-k", "500"]).
 */
export function adapterBetween(from, to, kind, extra = []) {
  const ext = { dense: "adp", sparse: "asp", lowrank: "alr" }[kind];
  const path = join(scratchDir(), `${basename(from, ".slm")}-to-${basename(to, ".slm")}-${kind}${extra.join("")}.${ext}`);
  if (!made.has(path)) {
    trl(["adapter", "diff", from, to, "--kind", kind, ...extra, "-o", path], { json: false });
    made.set(path, true);
  }
  return path;
}

/** Whether the built module has the named exports (optional features: adapters, eval). */
export function moduleHas(...names) {
  const exports = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(WASM))).map((e) => e.name);
  return names.every((n) => exports.includes(n));
}

export const haveRealModel = existsSync(Q8_0);
export const skipWithoutModel = haveRealModel ? false : `no ${Q8_0} (run \`make model\`)`;

/** The fields `trl generate --json` and the JS wrapper's results share. */
export function comparable(r) {
  return { prompt_tokens: r.prompt_tokens, tokens: r.tokens, text: r.text, stop_reason: r.stop_reason };
}

/** Whether `trl` has a subcommand (optional features land in the CLI at their own pace). */
export function trlHas(subcommand) {
  return new RegExp(`^\\s+${subcommand}\\s`, "m").test(execFileSync(TRL, ["--help"], { encoding: "utf8" }));
}

/**
 * An eval-case file for the synthetic model (FORMAT.md "Eval cases and sidecars"): the expected
 * texts are what `trl generate` produces, except one case made to fail, so 3 of 4 pass.
 */
export function syntheticCases(model) {
  const produced = (prompt, n) => trl(["generate", "--model", model, "--prompt", prompt, "-n", String(n), "--json"]).text;
  const lines = [
    { suite: "synthetic-smoke", version: "1", min_pass_rate: 0.5 },
    { id: "hello", prompt: "hello", expected: produced("hello", 8), max_tokens: 8 },
    { id: "prefix", prompt: "abc", expected: produced("abc", 12).slice(0, 3), match: "prefix", max_tokens: 12 },
    { id: "trim", prompt: "xyz", expected: ` ${produced("xyz", 6)} `, match: "trim", max_tokens: 6 },
    { id: "wrong", prompt: "hello", expected: "certainly not this", max_tokens: 8 },
  ];
  return lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
}

/**
 * Release packets for a small family of synthetic assemblies (`trl eval` + `trl packet build`):
 * the parent, parent + A, parent + A + B, and parent + C. Returns the packet paths and the folder.
 */
export function syntheticPackets() {
  const dir = join(scratchDir(), "packets");
  const packets = join(dir, "out");
  if (made.has(packets)) return { dir: packets, files: made.get(packets) };
  mkdirSync(packets, { recursive: true });
  const parent = syntheticModel({ seed: 7 });
  const a = adapterBetween(parent, syntheticModel({ seed: 8 }), "sparse", ["--top-k", "500"]);
  const b = adapterBetween(parent, syntheticModel({ seed: 11 }), "sparse", ["--top-k", "100"]);
  const c = adapterBetween(parent, syntheticModel({ seed: 12 }), "lowrank", ["--rank", "2"]);
  const cases = join(dir, "cases.jsonl");
  writeFileSync(cases, syntheticCases(parent));
  const files = [];
  for (const [name, adapters] of [["parent", []], ["child", [a]], ["grandchild", [a, b]], ["sibling", [c]]]) {
    const flags = adapters.flatMap((x) => ["--adapter", x]);
    const sidecar = join(dir, `${name}.sidecar.json`);
    trl(["eval", "--model", parent, ...flags, "--cases", cases, "--out", sidecar], { json: false });
    const out = join(packets, `${name}.json`);
    trl(["packet", "build", "--parent", parent, ...flags, "--eval", sidecar, "--cases", cases, "--diagnostics", "--note", name, "--out", out], { json: false });
    files.push(out);
  }
  made.set(packets, files);
  return { dir: packets, files };
}
