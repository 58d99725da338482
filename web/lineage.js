// The lineage view: release packets (`trl packet build`, schema "tinyrustlm-release-packet/1") →
// the descendant DAG, drawn as SVG.
//
// A packet describes one assembly: a parent package (by SHA-256) plus an ordered list of adapters,
// and names its ancestors' assembly ids in `chain` (the bare parent first, itself last). Assemblies
// form a tree per parent: [a, b] descends from [a], which descends from the bare parent. The graph is
// built from that structure, so packets can be dropped in any order and an ancestor nobody dropped a
// packet for still appears (dashed), named by its id from the chain.

const SVG = "http://www.w3.org/2000/svg";
/** Monospace 12px: about 7.3 px per character (the node width follows the longest line). */
const CHAR_W = 7.3;
const LINE_H = 15;
const GAP_X = 30;
const GAP_Y = 46;

/** First defined value among `keys` of `o` (packets may name a field in either spelling). */
function pick(o, ...keys) {
  for (const k of keys) {
    const v = k.split(".").reduce((x, part) => (x == null ? undefined : x[part]), o);
    if (v !== undefined && v !== null) return v;
  }
  return undefined;
}

/** Long file names are cut in the middle so a node stays a readable width. */
const MAX_NAME = 44;
const cut = (name) => (name.length > MAX_NAME ? `${name.slice(0, MAX_NAME / 2 - 1)}…${name.slice(-MAX_NAME / 2)}` : name);
const short = (d) => (typeof d === "string" ? d.replace(/^sha256:/, "").slice(0, 12) : String(d ?? "?"));

/** The fields the view needs from one packet. */
export function describePacket(p, fallbackId) {
  const parent = pick(p, "parent.sha256", "parent.digest", "parent_sha256", "parent");
  const adapterList = pick(p, "adapters") ?? [];
  const adapters = adapterList.map((a) => (typeof a === "string" ? a : pick(a, "sha256", "digest", "crc32")));
  const adapterNames = adapterList.map((a, i) => {
    const path = typeof a === "string" ? null : pick(a, "path", "name");
    return path ? cut(String(path).split(/[\\/]/).pop()) : short(adapters[i]);
  });
  const evals = (pick(p, "evals") ?? []).map((e) => ({
    suite: pick(e, "suite.name", "suite") ?? "eval",
    passed: pick(e, "passed", "totals.passed"),
    total: pick(e, "n_cases", "total", "totals.cases"),
    met: pick(e, "boundary_met", "quality_boundary.met", "met"),
  }));
  const crc = pick(p, "assembly_state_crc", "diagnostics.assembly_state_crc");
  const parentPath = pick(p, "parent.path");
  return {
    id: pick(p, "id") ?? fallbackId,
    chain: Array.isArray(p.chain) ? p.chain : null,
    note: pick(p, "note") ?? "",
    parent: typeof parent === "object" ? JSON.stringify(parent) : parent,
    parentName: parentPath ? cut(String(parentPath).split(/[\\/]/).pop()) : null,
    adapters,
    adapterNames,
    evals,
    crc: typeof crc === "number" ? crc.toString(16).padStart(8, "0") : crc,
    decode: pick(p, "diagnostics.decode_tokens_per_s"),
  };
}

/** Parses dropped files; returns the packets and a sentence per file that was not one. */
export async function readPackets(files) {
  const packets = [];
  const problems = [];
  for (const f of files) {
    try {
      const json = JSON.parse(await f.text());
      const list = Array.isArray(json) ? json : [json];
      for (const [i, p] of list.entries()) {
        const d = describePacket(p, list.length > 1 ? `${f.name}#${i}` : f.name);
        if (d.parent === undefined) throw new Error("it names no parent package");
        packets.push(d);
      }
    } catch (e) {
      problems.push(`${f.name} is not a release packet: ${e.message}.`);
    }
  }
  return { packets, problems };
}

/** Nodes (one per assembly) and edges (child → the assembly with its last adapter removed). */
export function buildGraph(packets) {
  const nodes = new Map();
  const key = (parent, adapters) => JSON.stringify([parent, adapters]);
  const ensure = (p, n) => {
    const k = key(p.parent, p.adapters.slice(0, n));
    if (!nodes.has(k)) nodes.set(k, { key: k, parent: p.parent, adapters: p.adapters.slice(0, n), depth: n, packets: [], id: null, name: null, parentName: null });
    const node = nodes.get(k);
    node.id ??= p.chain?.length === p.adapters.length + 1 ? p.chain[n] : null;
    node.name ??= n > 0 ? p.adapterNames[n - 1] : null;
    node.parentName ??= p.parentName;
    return node;
  };
  for (const p of packets) {
    for (let n = 0; n < p.adapters.length; n++) ensure(p, n);
    const node = ensure(p, p.adapters.length);
    node.packets.push(p);
    node.id = p.id;
  }
  const edges = [];
  for (const n of nodes.values()) {
    if (n.depth > 0) edges.push([nodes.get(key(n.parent, n.adapters.slice(0, -1))), n]);
  }
  return { nodes: [...nodes.values()], edges };
}

function lines(node) {
  const out = [];
  const p = node.packets[0];
  const id = node.id ?? (node.depth === 0 ? "parent" : "assembly");
  out.push({ text: `${id}${p?.note ? ` — ${p.note}` : p ? "" : " (no packet)"}`, cls: "title" });
  if (node.depth === 0) out.push({ text: `parent ${node.parentName ? `${node.parentName} ` : ""}${short(node.parent)}` });
  else out.push({ text: `+ ${node.name} (${node.depth} applied)` });
  for (const q of node.packets) {
    if (q.crc !== undefined) out.push({ text: `assembly crc ${q.crc}` });
    if (q.decode) out.push({ text: `decode ${Number(q.decode).toFixed(1)} tok/s` });
    for (const e of q.evals) {
      const score = e.passed !== undefined && e.total !== undefined ? ` ${e.passed}/${e.total}` : "";
      const verdict = e.met === true ? "✓ met" : e.met === false ? "✗ not met" : "";
      out.push({ text: `${e.suite}${score} ${verdict}`.trim(), cls: e.met === false ? "bad" : e.met === true ? "good" : "" });
    }
  }
  return out;
}

/** Draws the DAG of `packets` into `container` (replacing what was there). */
export function renderLineage(container, packets) {
  const { nodes, edges } = buildGraph(packets);
  if (nodes.length === 0) return container.replaceChildren();
  const layers = [];
  for (const n of nodes) (layers[n.depth] ??= []).push(n);
  // Children sit in their parents' order, so edges cross as little as a layered drawing allows.
  const parentOf = new Map(edges.map(([from, to]) => [to, from]));
  const order = new Map();
  for (const layer of layers) {
    if (!layer) continue;
    layer.sort((a, b) => (order.get(parentOf.get(a)) ?? 0) - (order.get(parentOf.get(b)) ?? 0) || a.key.localeCompare(b.key));
    layer.forEach((n, i) => order.set(n, i));
  }
  const heights = new Map(nodes.map((n) => [n, lines(n).length * LINE_H + 12]));
  const NODE_W = Math.max(200, Math.ceil(Math.max(...nodes.flatMap((n) => lines(n).map((l) => l.text.length))) * CHAR_W) + 16);
  let y = 10;
  let width = 0;
  for (const layer of layers) {
    if (!layer) continue;
    const h = Math.max(...layer.map((n) => heights.get(n)));
    // Each node as far left as its parent, without overlapping its left neighbour.
    let cursor = 10;
    for (const n of layer) {
      n.x = Math.max(cursor, parentOf.get(n)?.x ?? 10);
      n.y = y;
      cursor = n.x + NODE_W + GAP_X;
    }
    width = Math.max(width, cursor);
    y += h + GAP_Y;
  }
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", String(width + 10));
  svg.setAttribute("height", String(y - GAP_Y + 10));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `lineage of ${packets.length} release packets`);
  const el = (name, attrs, text) => {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  for (const [from, to] of edges) {
    const x1 = from.x + NODE_W / 2;
    const y1 = from.y + heights.get(from);
    const x2 = to.x + NODE_W / 2;
    const y2 = to.y;
    el("path", { d: `M${x1},${y1} C${x1},${y1 + GAP_Y / 2} ${x2},${y2 - GAP_Y / 2} ${x2},${y2}`, class: "edge", "data-from": from.id ?? "", "data-to": to.id ?? "" });
  }
  for (const n of nodes) {
    el("rect", { x: n.x, y: n.y, width: NODE_W, height: heights.get(n), rx: 6, class: n.packets.length ? "node" : "node ghost", "data-id": n.id ?? "" });
    lines(n).forEach((l, i) => el("text", { x: n.x + 8, y: n.y + 17 + i * LINE_H, class: l.cls ?? "" }, l.text));
  }
  container.replaceChildren(svg);
}
