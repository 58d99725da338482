//! Evidence on the host side: `trl eval` (the runner itself is in the module, `src/eval.rs`), release
//! packets that tie a parent package, ordered adapters, eval sidecars and diagnostics together by
//! SHA-256, their verification, and the lineage DAG of a folder of packets.
//!
//! Packet schema (`tinyrustlm-release-packet/1`, documented in `abi/FORMAT.md`):
//! an assembly is a parent package plus ordered adapters; its id is the first 16 hex digits of
//! SHA-256 over the parent's SHA-256 followed by each adapter's SHA-256 (hex, joined by `/`), so
//! `chain[k]` (parent plus the first k adapters) names every ancestor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::runtime::{ModuleFile, Runtime};

pub const PACKET_SCHEMA: &str = "tinyrustlm-release-packet/1";
pub const SIDECAR_SCHEMA: &str = "tinyrustlm-eval-sidecar/1";

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Id of the assembly "parent + adapters" from their SHA-256 hex digests.
pub fn assembly_id(parent_sha: &str, adapter_shas: &[String]) -> String {
    let mut s = parent_sha.to_string();
    for a in adapter_shas {
        s.push('/');
        s.push_str(a);
    }
    sha256_hex(s.as_bytes())[..16].to_string()
}

/// A fresh instance with the package loaded and the adapters applied in order.
pub fn assemble(module: &ModuleFile, package: &[u8], adapters: &[(PathBuf, Vec<u8>)]) -> Result<Runtime> {
    let mut rt = Runtime::new(module)?;
    rt.load_model(package, 0).context("loading the package")?;
    for (path, bytes) in adapters {
        rt.apply_adapter(bytes).with_context(|| format!("applying {}", path.display()))?;
    }
    Ok(rt)
}

/// Runs a case file against an assembly and returns the sidecar bytes.
pub fn evaluate(module: &ModuleFile, package: &[u8], adapters: &[(PathBuf, Vec<u8>)], cases: &[u8]) -> Result<Vec<u8>> {
    let mut rt = assemble(module, package, adapters)?;
    rt.run_eval(cases)
}

fn load_module(wasm: &Option<PathBuf>) -> Result<ModuleFile> {
    let path = wasm.clone().unwrap_or_else(crate::default_wasm_path);
    if !path.exists() {
        bail!("module {} not found: run `make` first or pass --wasm", path.display());
    }
    ModuleFile::load(&path)
}

fn read_adapters(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    paths.iter().map(|p| Ok((p.clone(), read(p)?))).collect()
}

// ---- trl eval ----------------------------------------------------------------------------------

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Apply this adapter before evaluating (repeatable: applied in order).
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    /// The eval case file (JSONL; abi/FORMAT.md "Eval cases and sidecars").
    #[arg(long)]
    pub cases: PathBuf,
    /// Where to write the sidecar JSON.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn eval(wasm: &Option<PathBuf>, a: &EvalArgs) -> Result<()> {
    let module = load_module(wasm)?;
    let package = read(&a.model)?;
    let adapters = read_adapters(&a.adapter)?;
    let cases = read(&a.cases)?;
    let sidecar = evaluate(&module, &package, &adapters, &cases).with_context(|| format!("evaluating {}", a.cases.display()))?;
    std::fs::write(&a.out, &sidecar).with_context(|| format!("writing {}", a.out.display()))?;
    let v: Value = serde_json::from_slice(&sidecar)?;
    for c in v["cases"].as_array().into_iter().flatten() {
        let mark = if c["passed"].as_bool() == Some(true) { "pass" } else { "FAIL" };
        eprintln!("  {mark}  {:<24} {:?}", c["id"].as_str().unwrap_or(""), c["produced"].as_str().unwrap_or(""));
    }
    let t = &v["totals"];
    let qb = &v["quality_boundary"];
    eprintln!(
        "{} {}: {}/{} passed (boundary {} {}) → {}",
        v["suite"]["name"].as_str().unwrap_or(""),
        v["suite"]["version"].as_str().unwrap_or(""),
        t["passed"],
        t["cases"],
        qb["min_pass_rate"],
        if qb["met"].as_bool() == Some(true) { "met" } else { "NOT met" },
        a.out.display()
    );
    Ok(())
}

// ---- Packets -----------------------------------------------------------------------------------

#[derive(Args)]
pub struct PacketArgs {
    #[command(subcommand)]
    pub command: PacketCommand,
}

#[derive(Subcommand)]
pub enum PacketCommand {
    /// Tie a parent package, ordered adapters and eval sidecars into a release packet.
    Build {
        #[command(flatten)]
        args: BuildArgs,
        /// Folder the given paths are relative to (they are stored as given).
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// `created_utc` to record (`YYYY-MM-DDTHH:MM:SSZ`), for reproducible packets; default:
        /// `SOURCE_DATE_EPOCH` when set, else now.
        #[arg(long)]
        created: Option<String>,
    },
    /// Re-run a packet's evals from the referenced files and check every digest and verdict.
    Verify {
        packet: PathBuf,
        /// Folder the packet's paths are relative to.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
}

#[derive(Args)]
pub struct BuildArgs {
    #[arg(long)]
    pub parent: PathBuf,
    /// Adapters, in the order they are applied.
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    /// A sidecar from `trl eval` (repeatable; paired in order with --cases).
    #[arg(long, required = true)]
    pub eval: Vec<PathBuf>,
    /// The case file each --eval sidecar was produced from (same order).
    #[arg(long, required = true)]
    pub cases: Vec<PathBuf>,
    /// Include the diagnostics record of the assembled model.
    #[arg(long)]
    pub diagnostics: bool,
    #[arg(long, default_value = "")]
    pub note: String,
    #[arg(long)]
    pub out: PathBuf,
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Checks that a sidecar describes this assembly; returns what differs.
fn sidecar_mismatches(sidecar: &Value, artifact_crc: u32, adapter_crcs: &[u32], assembly_state_crc: u32, cases_crc: u32) -> Vec<String> {
    let mut out = Vec::new();
    let hex = |v: u32| format!("{v:08x}");
    if sidecar["schema"] != SIDECAR_SCHEMA {
        out.push(format!("schema is {}, expected {SIDECAR_SCHEMA}", sidecar["schema"]));
    }
    if sidecar["model"]["artifact_crc"] != hex(artifact_crc).as_str() {
        out.push(format!("model artifact_crc {} ≠ parent's {}", sidecar["model"]["artifact_crc"], hex(artifact_crc)));
    }
    let want: Vec<Value> = adapter_crcs.iter().map(|c| Value::from(hex(*c))).collect();
    if sidecar["adapters"] != Value::Array(want.clone()) {
        out.push(format!("adapters {} ≠ applied {}", sidecar["adapters"], Value::Array(want)));
    }
    if sidecar["assembly_state_crc"] != hex(assembly_state_crc).as_str() {
        out.push(format!("assembly_state_crc {} ≠ assembled {}", sidecar["assembly_state_crc"], hex(assembly_state_crc)));
    }
    if sidecar["suite"]["cases_crc"] != hex(cases_crc).as_str() {
        out.push(format!("cases_crc {} ≠ case file's {}", sidecar["suite"]["cases_crc"], hex(cases_crc)));
    }
    out
}

/// Builds the packet value (refusing sidecars that do not match the assembly).
pub fn build_packet(module: &ModuleFile, a: &BuildArgs, created_utc: &str) -> Result<Value> {
    build_packet_in(module, Path::new(""), a, created_utc)
}

/// `created_utc` for a new packet: `--created` if given (checked), else `SOURCE_DATE_EPOCH` (the
/// reproducible-builds convention), else the clock.
pub fn created_utc(flag: Option<&str>) -> Result<String> {
    if let Some(s) = flag {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let shaped = b.len() == 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && b[19] == b'Z';
        if !shaped {
            bail!("--created {s:?}: expected UTC as YYYY-MM-DDTHH:MM:SSZ");
        }
        return Ok(s.to_string());
    }
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        let secs: u64 = epoch.trim().parse().with_context(|| format!("SOURCE_DATE_EPOCH={epoch:?} is not a number of seconds"))?;
        return Ok(utc_timestamp(secs));
    }
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(utc_timestamp(secs))
}

/// [`build_packet`] with every path resolved against `root` and stored as given, so a packet can
/// be built for a folder (the examples, a release directory) from anywhere.
pub fn build_packet_in(module: &ModuleFile, root: &Path, a: &BuildArgs, created_utc: &str) -> Result<Value> {
    if a.eval.len() != a.cases.len() {
        bail!("{} --eval sidecar(s) but {} --cases file(s): give one case file per sidecar, in the same order", a.eval.len(), a.cases.len());
    }
    let read = |p: &Path| read(&root.join(p));
    let package = read(&a.parent)?;
    let pkg = tinyrustlm::format::parse(&package).map_err(|e| anyhow::anyhow!("{}: {e}", a.parent.display()))?;
    let adapters: Vec<(PathBuf, Vec<u8>)> = a.adapter.iter().map(|p| Ok((p.clone(), read(p)?))).collect::<Result<_>>()?;
    let mut rt = assemble(module, &package, &adapters)?;
    let diag = rt.diagnostics()?;
    let adapter_crcs: Vec<u32> = adapters.iter().map(|(_, b)| adapter_crc(b)).collect();
    let parent_sha = sha256_hex(&package);
    let adapter_shas: Vec<String> = adapters.iter().map(|(_, b)| sha256_hex(b)).collect();
    let chain: Vec<String> = (0..=adapter_shas.len()).map(|k| assembly_id(&parent_sha, &adapter_shas[..k])).collect();
    let mut evals = Vec::new();
    for (sidecar_path, cases_path) in a.eval.iter().zip(&a.cases) {
        let bytes = read(sidecar_path)?;
        let cases = read(cases_path)?;
        let v: Value = serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", sidecar_path.display()))?;
        let bad = sidecar_mismatches(&v, pkg.artifact_crc, &adapter_crcs, diag.assembly_state_crc, crc32fast::hash(&cases));
        if !bad.is_empty() {
            bail!("refusing to build: {} does not match this assembly:\n  {}", sidecar_path.display(), bad.join("\n  "));
        }
        evals.push(json!({
            "sidecar": path_str(sidecar_path),
            "sidecar_sha256": sha256_hex(&bytes),
            "cases": path_str(cases_path),
            "cases_sha256": sha256_hex(&cases),
            "suite": v["suite"]["name"],
            "suite_version": v["suite"]["version"],
            "passed": v["totals"]["passed"],
            "n_cases": v["totals"]["cases"],
            "boundary_met": v["quality_boundary"]["met"],
        }));
    }
    Ok(json!({
        "schema": PACKET_SCHEMA,
        "id": chain.last().unwrap(),
        "chain": chain,
        "parent": { "path": path_str(&a.parent), "sha256": parent_sha, "artifact_crc": format!("{:08x}", pkg.artifact_crc) },
        "adapters": adapters.iter().zip(&adapter_shas).zip(&adapter_crcs).map(|(((p, _), sha), crc)| json!({ "path": path_str(p), "sha256": sha, "crc32": format!("{crc:08x}") })).collect::<Vec<_>>(),
        "assembly_state_crc": format!("{:08x}", diag.assembly_state_crc),
        "evals": evals,
        "diagnostics": if a.diagnostics { serde_json::to_value(diag)? } else { Value::Null },
        "created_utc": created_utc,
        "note": a.note,
    }))
}

/// An adapter's digest in the assembly chain: its CRC32 trailer (the last 4 bytes, little-endian).
fn adapter_crc(bytes: &[u8]) -> u32 {
    bytes.len().checked_sub(4).map_or(0, |at| u32::from_le_bytes(bytes[at..].try_into().unwrap()))
}

/// Everything that differs between a packet and the files it references (empty = verified).
pub fn verify_packet(module: &ModuleFile, packet: &Value, root: &Path) -> Result<Vec<String>> {
    let mut diffs = Vec::new();
    if packet["schema"] != PACKET_SCHEMA {
        bail!("not a release packet (schema {})", packet["schema"]);
    }
    let file = |v: &Value| root.join(v.as_str().unwrap_or(""));
    let check_sha = |diffs: &mut Vec<String>, path: &Path, want: &Value| -> Option<Vec<u8>> {
        match std::fs::read(path) {
            Ok(b) => {
                let got = sha256_hex(&b);
                if want.as_str() != Some(got.as_str()) {
                    diffs.push(format!("{}: sha256 {got} ≠ packet's {}", path.display(), want));
                }
                Some(b)
            }
            Err(e) => {
                diffs.push(format!("{}: {e}", path.display()));
                None
            }
        }
    };
    let parent_path = file(&packet["parent"]["path"]);
    let package = check_sha(&mut diffs, &parent_path, &packet["parent"]["sha256"]);
    let mut adapters = Vec::new();
    for a in packet["adapters"].as_array().into_iter().flatten() {
        let p = file(&a["path"]);
        if let Some(b) = check_sha(&mut diffs, &p, &a["sha256"]) {
            adapters.push((p, b));
        }
    }
    let Some(package) = package else { return Ok(diffs) };
    if adapters.len() != packet["adapters"].as_array().map_or(0, Vec::len) {
        return Ok(diffs);
    }
    let mut rt = match assemble(module, &package, &adapters) {
        Ok(rt) => rt,
        Err(e) => {
            diffs.push(format!("{}: the assembly no longer loads: {e:#}", parent_path.display()));
            return Ok(diffs);
        }
    };
    let assembly = format!("{:08x}", rt.diagnostics()?.assembly_state_crc);
    if packet["assembly_state_crc"] != assembly.as_str() {
        diffs.push(format!("assembly_state_crc: assembled {assembly} ≠ packet's {}", packet["assembly_state_crc"]));
    }
    for e in packet["evals"].as_array().into_iter().flatten() {
        let sidecar_path = file(&e["sidecar"]);
        let cases_path = file(&e["cases"]);
        let recorded = check_sha(&mut diffs, &sidecar_path, &e["sidecar_sha256"]);
        let Some(cases) = check_sha(&mut diffs, &cases_path, &e["cases_sha256"]) else { continue };
        let fresh = match rt.run_eval(&cases) {
            Ok(b) => b,
            Err(err) => {
                diffs.push(format!("{}: re-running failed: {err:#}", cases_path.display()));
                continue;
            }
        };
        if let Some(recorded) = recorded {
            if recorded != fresh {
                diffs.push(format!("{}: re-running {} gives a different sidecar", sidecar_path.display(), cases_path.display()));
            }
        }
        let v: Value = serde_json::from_slice(&fresh)?;
        for (key, got) in [("passed", &v["totals"]["passed"]), ("n_cases", &v["totals"]["cases"]), ("boundary_met", &v["quality_boundary"]["met"])] {
            if &e[key] != got {
                diffs.push(format!("{}: {key} is {got} on re-run ≠ packet's {}", sidecar_path.display(), e[key]));
            }
        }
    }
    Ok(diffs)
}

pub fn packet(wasm: &Option<PathBuf>, a: &PacketArgs) -> Result<()> {
    let module = load_module(wasm)?;
    match &a.command {
        PacketCommand::Build { args: b, root, created } => {
            let v = build_packet_in(&module, root, b, &created_utc(created.as_deref())?)?;
            std::fs::write(&b.out, serde_json::to_string_pretty(&v)? + "\n").with_context(|| format!("writing {}", b.out.display()))?;
            eprintln!("wrote {} (assembly {}, {} eval(s))", b.out.display(), v["id"].as_str().unwrap_or(""), v["evals"].as_array().map_or(0, Vec::len));
            Ok(())
        }
        PacketCommand::Verify { packet, root } => {
            let v: Value = serde_json::from_slice(&read(packet)?).with_context(|| format!("{} is not JSON", packet.display()))?;
            let diffs = verify_packet(&module, &v, root)?;
            if diffs.is_empty() {
                println!("{}: verified (assembly {}, every digest and verdict reproduced)", packet.display(), v["id"].as_str().unwrap_or(""));
                Ok(())
            } else {
                bail!("{} does not verify:\n  {}", packet.display(), diffs.join("\n  "))
            }
        }
    }
}

// ---- Lineage -----------------------------------------------------------------------------------

#[derive(Clone, Copy, ValueEnum)]
pub enum LineageFormat {
    Text,
    Dot,
    Mermaid,
    /// A standalone SVG drawing of the tree (no layout engine needed: one row per assembly).
    Svg,
}

#[derive(Args)]
pub struct LineageArgs {
    /// Folder of release packets (`*.json` with the packet schema).
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: LineageFormat,
    /// Print how to reassemble this assembly (an id or a unique prefix of one).
    #[arg(long)]
    pub rollback: Option<String>,
}

/// One assembly in the DAG.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub ancestor: Option<String>,
    /// Parent package path and the adapter paths applied to reach this node.
    pub parent: String,
    pub adapters: Vec<String>,
    /// Verdicts from the packet of this exact assembly, if there is one.
    pub verdicts: Vec<String>,
    pub has_packet: bool,
}

pub fn read_lineage(dir: &Path) -> Result<BTreeMap<String, Node>> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let Ok(v) = serde_json::from_slice::<Value>(&read(&path)?) else { continue };
        if v["schema"] != PACKET_SCHEMA {
            continue;
        }
        let chain: Vec<String> = v["chain"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect();
        let adapters: Vec<String> = v["adapters"].as_array().into_iter().flatten().map(|a| a["path"].as_str().unwrap_or("").to_string()).collect();
        if chain.len() != adapters.len() + 1 {
            bail!("{}: chain has {} ids for {} adapters", path.display(), chain.len(), adapters.len());
        }
        for (k, id) in chain.iter().enumerate() {
            let node = nodes.entry(id.clone()).or_default();
            node.ancestor = if k == 0 { None } else { Some(chain[k - 1].clone()) };
            node.parent = v["parent"]["path"].as_str().unwrap_or("").to_string();
            node.adapters = adapters[..k].to_vec();
            if k + 1 == chain.len() {
                node.has_packet = true;
                for e in v["evals"].as_array().into_iter().flatten() {
                    node.verdicts.push(format!(
                        "{} {}/{}{}",
                        e["suite"].as_str().unwrap_or(""),
                        e["passed"],
                        e["n_cases"],
                        if e["boundary_met"] == true { " ✓" } else { " ✗" }
                    ));
                }
            }
        }
    }
    Ok(nodes)
}

fn label(id: &str, n: &Node) -> String {
    let what = match n.adapters.last() {
        None => n.parent.clone(),
        Some(a) => format!("+ {a}"),
    };
    let verdicts = if n.verdicts.is_empty() { String::new() } else { format!(" [{}]", n.verdicts.join(", ")) };
    format!("{id} {what}{verdicts}{}", if n.has_packet { "" } else { " (no packet)" })
}

pub fn render(nodes: &BTreeMap<String, Node>, format: LineageFormat) -> String {
    let mut children: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (id, n) in nodes {
        if let Some(a) = &n.ancestor {
            children.entry(a.as_str()).or_default().insert(id.as_str());
        }
    }
    let mut out = String::new();
    match format {
        LineageFormat::Text => {
            fn walk(
                out: &mut String,
                id: &str,
                nodes: &BTreeMap<String, Node>,
                children: &BTreeMap<&str, BTreeSet<&str>>,
                prefix: &str,
                last: bool,
                root: bool,
            ) {
                let (branch, next) = if root {
                    ("", String::new())
                } else if last {
                    ("└── ", format!("{prefix}    "))
                } else {
                    ("├── ", format!("{prefix}│   "))
                };
                out.push_str(&format!("{prefix}{branch}{}\n", label(id, &nodes[id])));
                let kids: Vec<&str> = children.get(id).map(|k| k.iter().copied().collect()).unwrap_or_default();
                for (i, k) in kids.iter().enumerate() {
                    walk(out, k, nodes, children, &next, i + 1 == kids.len(), false);
                }
            }
            for (id, n) in nodes {
                if n.ancestor.is_none() {
                    walk(&mut out, id, nodes, &children, "", true, true);
                }
            }
        }
        LineageFormat::Dot => {
            out.push_str("digraph lineage {\n  rankdir=TB;\n  node [shape=box];\n");
            for (id, n) in nodes {
                out.push_str(&format!("  \"{id}\" [label=\"{}\"];\n", label(id, n).replace('"', "\\\"")));
            }
            for (id, n) in nodes {
                if let Some(a) = &n.ancestor {
                    out.push_str(&format!("  \"{a}\" -> \"{id}\";\n"));
                }
            }
            out.push_str("}\n");
        }
        LineageFormat::Svg => out = svg(nodes, &children),
        LineageFormat::Mermaid => {
            out.push_str("graph TD\n");
            for (id, n) in nodes {
                out.push_str(&format!("  n{id}[\"{}\"]\n", label(id, n).replace('"', "'")));
            }
            for (id, n) in nodes {
                if let Some(a) = &n.ancestor {
                    out.push_str(&format!("  n{a} --> n{id}\n"));
                }
            }
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The tree drawn as the text format lays it out: one row per assembly in depth-first order,
/// indented by depth, with elbow connectors from each ancestor. Boxes are sized for a 12 px
/// monospace font (7.2 px per character), so no text measuring is needed.
fn svg(nodes: &BTreeMap<String, Node>, children: &BTreeMap<&str, BTreeSet<&str>>) -> String {
    const ROW: usize = 54;
    const BOX_H: usize = 40;
    const INDENT: usize = 36;
    const CHAR_W: f64 = 7.2;
    fn order<'a>(id: &'a str, depth: usize, children: &BTreeMap<&str, BTreeSet<&'a str>>, rows: &mut Vec<(&'a str, usize)>) {
        rows.push((id, depth));
        for k in children.get(id).into_iter().flatten() {
            order(k, depth + 1, children, rows);
        }
    }
    let mut rows = Vec::new();
    for (id, n) in nodes {
        if n.ancestor.is_none() {
            order(id, 0, children, &mut rows);
        }
    }
    let lines = |id: &str, n: &Node| -> (String, String) {
        let what = match n.adapters.last() {
            None => n.parent.clone(),
            Some(a) => format!("+ {a}"),
        };
        let second = if !n.has_packet {
            "(no packet)".to_string()
        } else if n.verdicts.is_empty() {
            "no evals".to_string()
        } else {
            n.verdicts.join(" · ")
        };
        (format!("{id}  {what}"), second)
    };
    let mut width = 0usize;
    let mut boxes = String::new();
    let mut edges = String::new();
    let mut at: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (row, &(id, depth)) in rows.iter().enumerate() {
        let n = &nodes[id];
        let (first, second) = lines(id, n);
        let chars = first.chars().count().max(second.chars().count());
        let w = (chars as f64 * CHAR_W).ceil() as usize + 20;
        let (x, y) = (10 + depth * INDENT, 10 + row * ROW);
        width = width.max(x + w + 10);
        at.insert(id, (x, y));
        if let Some(a) = &n.ancestor {
            if let Some(&(ax, ay)) = at.get(a.as_str()) {
                edges.push_str(&format!(
                    "  <path d=\"M{} {} V{} H{x}\" fill=\"none\" stroke=\"#555\" marker-end=\"url(#arrow)\"/>\n",
                    ax + 14,
                    ay + BOX_H,
                    y + BOX_H / 2
                ));
            }
        }
        let fill = if !n.has_packet {
            "#f4f4f4"
        } else if n.verdicts.iter().all(|v| v.ends_with('✓')) {
            "#e8f5e9"
        } else {
            "#fff3e0"
        };
        boxes.push_str(&format!(
            "  <g><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{BOX_H}\" rx=\"4\" fill=\"{fill}\" stroke=\"#333\"/>\n    <text x=\"{}\" y=\"{}\">{}</text>\n    <text x=\"{}\" y=\"{}\" fill=\"#444\">{}</text></g>\n",
            x + 10, y + 16, xml_escape(&first), x + 10, y + 32, xml_escape(&second)
        ));
    }
    let height = 10 + rows.len() * ROW;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"12\">\n  <defs><marker id=\"arrow\" viewBox=\"0 0 8 8\" refX=\"8\" refY=\"4\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto\"><path d=\"M0 0 L8 4 L0 8 z\" fill=\"#555\"/></marker></defs>\n  <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{edges}{boxes}</svg>\n"
    )
}

pub fn lineage(a: &LineageArgs) -> Result<()> {
    let nodes = read_lineage(&a.dir)?;
    if let Some(want) = &a.rollback {
        let hits: Vec<_> = nodes.iter().filter(|(id, _)| id.starts_with(want.as_str())).collect();
        let (id, n) = match hits.as_slice() {
            [one] => *one,
            [] => bail!("no assembly {want} in {}", a.dir.display()),
            _ => bail!("{want} is ambiguous: {}", hits.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")),
        };
        println!("assembly {id}: parent {} then {} adapter(s) in this order:", n.parent, n.adapters.len());
        for (i, ad) in n.adapters.iter().enumerate() {
            println!("  {}. {ad}", i + 1);
        }
        let flags: String = n.adapters.iter().map(|ad| format!(" --adapter {ad}")).collect();
        println!("reassemble: trl generate --model {}{flags} --prompt …", n.parent);
        return Ok(());
    }
    print!("{}", render(&nodes, a.format));
    Ok(())
}
