//! The ABI's facts are defined once, as tables in the runtime (`tinyrustlm::abi_facts`,
//! `tinyrustlm::diag::FIELDS`). Other places restate them by hand or by construction: the C
//! header, the built module's import and export sections, the JS wrapper with its type
//! declarations, and the Python package's `_abi.py` (generated from the tables). Each test reads one
//! place and fails on any difference from the tables, in either direction (a constant, export,
//! import, flag or diagnostics field missing, extra, renamed, renumbered or retyped), naming every
//! difference at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;

use tinyrustlm::abi_facts::{
    Function, WasmType, ABI_VERSION, CONSTANT_GROUPS, DIAGNOSTICS_FIELDS, DIAGNOSTICS_LEN, EXPORTED_MEMORY, EXPORTS, HEADER_SCALARS, IMPORTS, IMPORT_MODULE,
    LINKER_GLOBALS, STACK_POINTER_GLOBAL, THREAD_EXPORTS, TOKENIZE_KNOWN,
};

fn read_abi_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../abi").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Collects differences between what the tables say and what a file says.
#[derive(Default)]
struct Diff(Vec<String>);

impl Diff {
    /// Every key in exactly one map, and every key whose values differ.
    fn maps<K: Ord + Debug, V: PartialEq + Debug>(&mut self, what: &str, tables: &BTreeMap<K, V>, file: &BTreeMap<K, V>) {
        for (k, v) in tables {
            match file.get(k) {
                None => self.0.push(format!("{what}: {k:?} is in the tables but missing from the file")),
                Some(f) if f != v => self.0.push(format!("{what}: {k:?} is {f:?} in the file, {v:?} in the tables")),
                Some(_) => {}
            }
        }
        for k in file.keys().filter(|k| !tables.contains_key(k)) {
            self.0.push(format!("{what}: {k:?} is in the file but not in the tables"));
        }
    }

    fn sets<K: Ord + Debug + Clone>(&mut self, what: &str, tables: &BTreeSet<K>, file: &BTreeSet<K>) {
        let unit = |s: &BTreeSet<K>| s.iter().map(|k| (k.clone(), ())).collect::<BTreeMap<K, ()>>();
        self.maps(what, &unit(tables), &unit(file));
    }

    fn expect<T: PartialEq + Debug>(&mut self, what: &str, tables: T, file: T) {
        if tables != file {
            self.0.push(format!("{what}: {file:?} in the file, {tables:?} in the tables"));
        }
    }

    fn assert_none(self, file: &str) {
        assert!(
            self.0.is_empty(),
            "{file} differs from the ABI tables (src/abi_facts.rs, src/diag.rs) in {} place(s):\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

// ---- what the tables say -------------------------------------------------------------------------

type Signature = (Vec<(String, WasmType)>, Option<WasmType>);

fn signature(f: &Function) -> Signature {
    (f.params.iter().map(|&(n, t)| (n.to_string(), t)).collect(), f.result)
}

/// The header declares every export of either flavour.
fn table_exports() -> BTreeMap<String, Signature> {
    EXPORTS.iter().chain(THREAD_EXPORTS).map(|f| (f.name.to_string(), signature(f))).collect()
}

/// Every numeric `#define` the header must hold: `TRL_STATUS_OK` -> 0, ...
fn table_header_constants() -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = HEADER_SCALARS.iter().map(|&(n, v)| (n.to_string(), v)).collect();
    for g in CONSTANT_GROUPS {
        out.extend(g.entries.iter().map(|&(n, v)| (format!("{}{n}", g.header_prefix), v)));
    }
    out
}

/// Per JS object (`Status`, `GenFlags`, ...): its `NAME: value` entries.
fn table_js_groups() -> BTreeMap<String, BTreeMap<String, u32>> {
    CONSTANT_GROUPS.iter().map(|g| (g.js_object.to_string(), g.entries.iter().map(|&(n, v)| (n.to_string(), v)).collect())).collect()
}

/// Compares JS constant groups object by object and entry by entry (`Status.OK`), so a difference
/// names the one constant.
fn js_groups(diff: &mut Diff, file: &BTreeMap<String, BTreeMap<String, u32>>) {
    let tables = table_js_groups();
    diff.sets("constant object", &tables.keys().cloned().collect(), &file.keys().cloned().collect());
    let flat = |m: &BTreeMap<String, BTreeMap<String, u32>>| -> BTreeMap<String, u32> {
        m.iter().flat_map(|(g, e)| e.iter().map(move |(n, v)| (format!("{g}.{n}"), *v))).collect()
    };
    diff.maps("constant", &flat(&tables), &flat(file));
}

/// Reserved fields are zero bytes a host has no use for; the wrappers leave them out.
fn is_reserved(name: &str) -> bool {
    name.starts_with("reserved")
}

/// Fields the JS wrapper's diagnostics record adds, computed from others (not in the record).
const JS_DERIVED_FIELDS: [&str; 2] = ["quant_name", "chat_template_name"];

/// JS `Object.freeze` objects that are not ABI constant groups (camelCase options, dtype and chat
/// template names).
const JS_OTHER_FROZEN: [&str; 3] = ["DTypeName", "ChatTemplateName", "DEFAULT_SAMPLING"];

fn table_diagnostics() -> BTreeMap<String, (usize, String)> {
    DIAGNOSTICS_FIELDS.iter().map(|f| (f.name.to_string(), (f.offset, f.ty().name().to_string()))).collect()
}

fn table_js_diagnostics_names() -> BTreeSet<String> {
    DIAGNOSTICS_FIELDS.iter().map(|f| f.name).filter(|n| !is_reserved(n)).chain(JS_DERIVED_FIELDS).map(String::from).collect()
}

// ---- small parsers -------------------------------------------------------------------------------

/// The text with every `/* ... */` comment replaced by a space.
fn strip_block_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        out.push(' ');
        rest = rest[i + 2..].find("*/").map_or("", |j| &rest[i + 2 + j + 2..]);
    }
    out.push_str(rest);
    out
}

/// The text with every `// ...` line comment removed (the wrapper has no `//` inside strings that
/// matter here: URLs are in `new URL("...")` calls, outside the parsed regions).
fn strip_line_comments(s: &str) -> String {
    s.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

/// The text between `start` (exclusive) and the first `end` after it.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

/// `UPPER_NAME: 12` pairs in a JS object literal or a TS object type.
fn upper_entries(body: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for item in body.split([',', ';', '\n']) {
        let Some((k, v)) = item.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.starts_with(|c: char| c.is_ascii_uppercase()) && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            out.insert(k.to_string(), v.parse().unwrap_or_else(|_| panic!("{k}: value {v:?} is not a number")));
        }
    }
    out
}

/// The arguments of every call `prefix NAME(...)` in `src`: name -> argument counts seen.
fn calls(src: &str, prefix: &str) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, _) in src.match_indices(prefix) {
        let rest = &src[i + prefix.len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let Some(args) = rest[name.len()..].strip_prefix('(') else { continue };
        let (mut depth, mut commas, mut any) = (0i32, 0usize, false);
        for c in args.chars() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' if depth == 0 => break,
                ')' | ']' | '}' => depth -= 1,
                ',' if depth == 0 => commas += 1,
                _ => {}
            }
            any |= !c.is_whitespace();
        }
        out.entry(name).or_default().insert(if any { commas + 1 } else { 0 });
    }
    out
}

fn c_type(t: &str) -> Option<WasmType> {
    match t {
        "uint32_t" | "trl_ptr" | "trl_status" => Some(WasmType::I32),
        "uint64_t" => Some(WasmType::I64),
        "float" => Some(WasmType::F32),
        "double" => Some(WasmType::F64),
        _ => None,
    }
}

// ---- the header ----------------------------------------------------------------------------------

/// Numeric `#define TRL_* <n>u` lines.
fn header_constants(code: &str) -> BTreeMap<String, u32> {
    code.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("#define")).then_some(())?;
            let name = w.next()?;
            let value = w.next()?.strip_suffix('u')?.parse().ok()?;
            name.starts_with("TRL_").then(|| (name.to_string(), value))
        })
        .collect()
}

/// Every function prototype: name -> (params, result); `Err` for a type the header should not use.
fn header_prototypes(code: &str) -> Result<BTreeMap<String, Signature>, String> {
    let decls: String =
        code.lines().filter(|l| !l.trim_start().starts_with('#') && !l.contains("extern \"C\"") && l.trim() != "}").collect::<Vec<_>>().join(" ");
    let mut out = BTreeMap::new();
    for stmt in decls.split(';').map(str::trim).filter(|s| s.contains('(')) {
        let (head, params) = stmt.split_once('(').unwrap();
        let params = params.trim_end().strip_suffix(')').ok_or_else(|| format!("not a prototype: {stmt:?}"))?;
        let head: Vec<&str> = head.split_whitespace().collect();
        let [ret, name] = head[..] else { return Err(format!("not a prototype: {stmt:?}")) };
        let result = if ret == "void" { None } else { Some(c_type(ret).ok_or_else(|| format!("{name}: result type {ret}"))?) };
        let mut ps = Vec::new();
        if params.trim() != "void" {
            for p in params.split(',') {
                let w: Vec<&str> = p.split_whitespace().collect();
                let [ty, pname] = w[..] else { return Err(format!("{name}: parameter {p:?} is not `type name`")) };
                ps.push((pname.to_string(), c_type(ty).ok_or_else(|| format!("{name}: parameter {pname} has type {ty}"))?));
            }
        }
        out.insert(name.to_string(), (ps, result));
    }
    Ok(out)
}

/// `off type name` triples of the diagnostics table in the comment above `read_diagnostics`.
fn header_diagnostics(header: &str) -> BTreeMap<String, (usize, String)> {
    let block = between(header, "Writes the 128-byte diagnostics record", "trl_status read_diagnostics").expect("the read_diagnostics comment");
    let words: Vec<&str> = block.split_whitespace().collect();
    let mut out = BTreeMap::new();
    for w in words.windows(3) {
        if let (Ok(offset), "u32" | "u64" | "f32") = (w[0].parse::<usize>(), w[1]) {
            let name: String = w[2].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            out.insert(name, (offset, w[1].to_string()));
        }
    }
    out
}

#[test]
fn header_matches_the_tables() {
    let header = read_abi_file("tinyrustlm.h");
    let code = strip_block_comments(&header);
    let mut diff = Diff::default();
    diff.maps("#define", &table_header_constants(), &header_constants(&code));
    match header_prototypes(&code) {
        Ok(protos) => diff.maps("prototype (params, result)", &table_exports(), &protos),
        Err(e) => diff.0.push(e),
    }
    diff.maps("diagnostics table (offset, type)", &table_diagnostics(), &header_diagnostics(&header));
    // The import line: `env.trl_now_ms : () -> f64`.
    for f in IMPORTS {
        let params: Vec<&str> = f.params.iter().map(|p| p.1.name()).collect();
        let line = format!("{IMPORT_MODULE}.{} : ({}) -> {}", f.name, params.join(", "), f.result.map_or("()", WasmType::name));
        if !header.contains(&line) {
            diff.0.push(format!("import: the header does not say `{line}`"));
        }
    }
    for name in LINKER_GLOBALS.iter().chain([&EXPORTED_MEMORY]) {
        if !header.contains(&format!("`{name}`")) {
            diff.0.push(format!("export {name}: the header does not mention `{name}`"));
        }
    }
    // tokenize takes the TRL_GEN_* bits of TOKENIZE_KNOWN, named in its comment.
    let tokenize_doc = between(&header, "/* Tokenizes text", "trl_status tokenize").expect("the tokenize comment");
    let named: BTreeSet<String> =
        tokenize_doc.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter_map(|w| w.strip_prefix("TRL_GEN_")).map(String::from).collect();
    let gen = CONSTANT_GROUPS.iter().find(|g| g.header_prefix == "TRL_GEN_").unwrap();
    let allowed: BTreeSet<String> = gen.entries.iter().filter(|e| e.1 & TOKENIZE_KNOWN != 0).map(|e| e.0.to_string()).collect();
    diff.sets("tokenize flags", &allowed, &named);
    diff.assert_none("abi/tinyrustlm.h");
}

// ---- the module ----------------------------------------------------------------------------------

fn wasm_type(t: &wasmtime::ValType) -> Option<WasmType> {
    Some(match t {
        wasmtime::ValType::I32 => WasmType::I32,
        wasmtime::ValType::I64 => WasmType::I64,
        wasmtime::ValType::F32 => WasmType::F32,
        wasmtime::ValType::F64 => WasmType::F64,
        _ => return None,
    })
}

/// Types only: the module's type section has no parameter names.
fn wasm_signature(name: &str, f: &wasmtime::FuncType) -> Result<(Vec<WasmType>, Option<WasmType>), String> {
    let params = f.params().map(|t| wasm_type(&t).ok_or_else(|| format!("{name}: parameter type {t}"))).collect::<Result<Vec<_>, _>>()?;
    let results = f.results().map(|t| wasm_type(&t).ok_or_else(|| format!("{name}: result type {t}"))).collect::<Result<Vec<_>, _>>()?;
    match results[..] {
        [] => Ok((params, None)),
        [r] => Ok((params, Some(r))),
        _ => Err(format!("{name}: {} results", results.len())),
    }
}

fn types_only(f: &Function) -> (Vec<WasmType>, Option<WasmType>) {
    (f.params.iter().map(|p| p.1).collect(), f.result)
}

#[test]
fn module_exports_and_imports_match_the_tables() {
    check_module(common::module().module(), false, &harness::default_wasm_path().display().to_string());
}

/// The threaded flavour: the same exports plus THREAD_EXPORTS and a mutable `__stack_pointer`; its
/// memory imported (shared) instead of exported.
#[test]
fn threaded_module_exports_and_imports_match_the_tables() {
    let path = harness::threads_wasm_path();
    assert!(path.exists(), "{} is missing: run `make wasm-threads` (these tests never skip)", path.display());
    let file = harness::runtime::ModuleFile::load(&path).unwrap();
    check_module(file.module(), true, &path.display().to_string());
}

fn check_module(module: &wasmtime::Module, threaded: bool, what: &str) {
    let mut diff = Diff::default();
    let mut mutable_globals = BTreeSet::new();
    let (mut functions, mut memories, mut globals, mut others) = (BTreeMap::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for e in module.exports() {
        match e.ty() {
            wasmtime::ExternType::Func(f) => match wasm_signature(e.name(), &f) {
                Ok(sig) => {
                    functions.insert(e.name().to_string(), sig);
                }
                Err(msg) => diff.0.push(msg),
            },
            wasmtime::ExternType::Memory(_) => {
                memories.insert(e.name().to_string());
            }
            wasmtime::ExternType::Global(g) => {
                if matches!(g.content(), wasmtime::ValType::I32) && g.mutability() == wasmtime::Mutability::Const {
                    globals.insert(e.name().to_string());
                } else if matches!(g.content(), wasmtime::ValType::I32) {
                    mutable_globals.insert(e.name().to_string());
                } else {
                    diff.0.push(format!("global {} is not an immutable i32", e.name()));
                }
            }
            _ => {
                others.insert(e.name().to_string());
            }
        }
    }
    let thread_exports = if threaded { THREAD_EXPORTS } else { &[] };
    let exports = EXPORTS.iter().chain(thread_exports).map(|f| (f.name.to_string(), types_only(f))).collect();
    diff.maps("exported function (params, result)", &exports, &functions);
    let memory = if threaded { BTreeSet::new() } else { BTreeSet::from([EXPORTED_MEMORY.to_string()]) };
    diff.sets("exported memory", &memory, &memories);
    diff.sets("exported global", &LINKER_GLOBALS.iter().map(|s| s.to_string()).collect(), &globals);
    let stack_pointer = if threaded { BTreeSet::from([STACK_POINTER_GLOBAL.to_string()]) } else { BTreeSet::new() };
    diff.sets("exported mutable i32 global", &stack_pointer, &mutable_globals);
    diff.sets("other export", &BTreeSet::new(), &others);

    let mut imports = BTreeMap::new();
    for i in module.imports() {
        let key = format!("{}.{}", i.module(), i.name());
        match i.ty() {
            wasmtime::ExternType::Func(f) => match wasm_signature(&key, &f) {
                Ok(sig) => {
                    imports.insert(key, sig);
                }
                Err(msg) => diff.0.push(msg),
            },
            wasmtime::ExternType::Memory(m) if threaded && key == format!("{IMPORT_MODULE}.memory") => {
                if !m.is_shared() || m.maximum() != Some(65536) || m.is_64() {
                    diff.0.push(format!("import {key}: not a shared 32-bit memory with a maximum of 65536 pages"));
                }
            }
            _ => diff.0.push(format!("import {key} is not a function")),
        }
    }
    diff.maps("import (params, result)", &IMPORTS.iter().map(|f| (format!("{IMPORT_MODULE}.{}", f.name), types_only(f))).collect(), &imports);
    diff.assert_none(what);
}

// ---- the JS wrapper and its type declarations ----------------------------------------------------

/// `export const NAME = Object.freeze({ ... })` objects.
fn js_frozen_objects(js: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for (i, _) in js.match_indices("export const ") {
        let rest = &js[i + "export const ".len()..];
        let Some((name, after)) = rest.split_once(" = Object.freeze({") else { continue };
        if name.contains(char::is_whitespace) {
            continue;
        }
        let body = &after[..after.find("})").expect("Object.freeze({ ... }) closes")];
        out.insert(name.to_string(), upper_entries(body));
    }
    out
}

/// `export const NAME: Readonly<{ ... }>;` declarations.
fn ts_readonly_objects(ts: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for (i, _) in ts.match_indices("export const ") {
        let rest = &ts[i + "export const ".len()..];
        let Some((name, after)) = rest.split_once(": Readonly<{") else { continue };
        if name.contains(char::is_whitespace) {
            continue;
        }
        let body = &after[..after.find("}>").expect("Readonly<{ ... }> closes")];
        out.insert(name.to_string(), upper_entries(body));
    }
    out
}

/// `parseDiagnostics`'s reads: `name: u32(12)` or `const name = u32(12)`; and every key it returns.
fn js_diagnostics(js: &str) -> (BTreeMap<String, (usize, String)>, BTreeSet<String>) {
    let body = between(js, "export function parseDiagnostics(", "\n}\n").expect("parseDiagnostics in tinyrustlm.mjs");
    let mut reads = BTreeMap::new();
    for ty in ["u32", "u64", "f32"] {
        for (i, _) in body.match_indices(&format!(" {ty}(")) {
            let before = body[..i].trim_end().trim_end_matches([':', '=']).trim_end();
            let name: String = before.chars().rev().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<Vec<_>>().into_iter().rev().collect();
            let offset = &body[i + ty.len() + 2..];
            let offset: String = offset.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(offset) = offset.parse() {
                reads.insert(name, (offset, ty.to_string()));
            }
        }
    }
    let returned = between(body, "return {", "};").expect("parseDiagnostics returns an object literal");
    let keys = returned.split(',').map(|item| item.split(':').next().unwrap().trim().to_string()).filter(|k| !k.is_empty()).collect();
    (reads, keys)
}

#[test]
fn js_wrapper_matches_the_tables() {
    let js = strip_line_comments(&read_abi_file("tinyrustlm.mjs"));
    let mut diff = Diff::default();
    let mut objects = js_frozen_objects(&js);
    for other in JS_OTHER_FROZEN {
        objects.remove(other);
    }
    js_groups(&mut diff, &objects);
    diff.expect("ABI_VERSION", Some(ABI_VERSION.to_string()), between(&js, "export const ABI_VERSION = ", ";").map(String::from));
    diff.expect("DIAGNOSTICS_LEN", Some(DIAGNOSTICS_LEN.to_string()), between(&js, "const DIAGNOSTICS_LEN = ", ";").map(String::from));

    let (reads, keys) = js_diagnostics(&js);
    let fields: BTreeMap<String, (usize, String)> = table_diagnostics().into_iter().filter(|(n, _)| !is_reserved(n)).collect();
    diff.maps("parseDiagnostics read (offset, type)", &fields, &reads);
    diff.sets("parseDiagnostics field", &table_js_diagnostics_names(), &keys);

    // Every export the wrapper (and its worker script) calls exists, with as many arguments as it
    // takes; the threaded flavour's exports count (the wrapper calls them only on that flavour).
    let arity: BTreeMap<String, usize> = EXPORTS.iter().chain(THREAD_EXPORTS).map(|f| (f.name.to_string(), f.params.len())).collect();
    let worker = strip_line_comments(&read_abi_file("tinyrustlm-worker.mjs"));
    for (file, src, prefix) in [("tinyrustlm.mjs", &js, "this._x."), ("tinyrustlm-worker.mjs", &worker, "exports.")] {
        for (name, counts) in calls(src, prefix) {
            match arity.get(&name) {
                None => diff.0.push(format!("{file} calls {prefix}{name}, which is not an export")),
                Some(&n) if counts.iter().any(|&c| c != n) => diff.0.push(format!("{file} calls {name} with {counts:?} arguments; it takes {n}")),
                Some(_) => {}
            }
        }
    }
    diff.expect("worker script's stack pointer global", Some(STACK_POINTER_GLOBAL.to_string()), between(&worker, "exports.", ".value = top").map(String::from));
    let thread_exports = between(&js, "const THREAD_EXPORTS = [", "]").expect("const THREAD_EXPORTS in tinyrustlm.mjs");
    let thread_exports: BTreeSet<String> = thread_exports.split(',').map(|n| n.trim().trim_matches('"').to_string()).filter(|n| !n.is_empty()).collect();
    diff.sets("THREAD_EXPORTS", &THREAD_EXPORTS.iter().map(|f| f.name.to_string()).collect(), &thread_exports);
    diff.expect("MAX_WORKERS", Some(tinyrustlm::pool::MAX_WORKERS.to_string()), between(&js, "const MAX_WORKERS = ", ";").map(String::from));
    for list in ["const ADAPTER_EXPORTS = [", "const EVAL_EXPORTS = ["] {
        let names = between(&js, list, "]").unwrap_or_else(|| panic!("{list} in tinyrustlm.mjs"));
        for name in names.split(',').map(|n| n.trim().trim_matches('"')).filter(|n| !n.is_empty()) {
            if !arity.contains_key(name) {
                diff.0.push(format!("{list}...]: {name} is not an export"));
            }
        }
    }
    diff.assert_none("abi/tinyrustlm.mjs");
}

#[test]
fn type_declarations_match_the_tables() {
    let ts = strip_line_comments(&read_abi_file("tinyrustlm.d.ts"));
    let mut diff = Diff::default();
    js_groups(&mut diff, &ts_readonly_objects(&ts));
    diff.expect("ABI_VERSION", Some(ABI_VERSION.to_string()), between(&ts, "export const ABI_VERSION: ", ";").map(String::from));
    let body = between(&ts, "export interface Diagnostics {", "\n}").expect("interface Diagnostics in tinyrustlm.d.ts");
    let body = strip_block_comments(body);
    let names: BTreeSet<String> = body.lines().filter_map(|l| l.split_once(':')).map(|(k, _)| k.trim().to_string()).filter(|k| !k.is_empty()).collect();
    diff.sets("interface Diagnostics field", &table_js_diagnostics_names(), &names);
    diff.assert_none("abi/tinyrustlm.d.ts");
}

// ---- the parsers themselves ----------------------------------------------------------------------

#[test]
fn parsers_find_what_they_are_given() {
    let h = "#define TRL_X 3u /* c */\ntrl_status f(trl_ptr p, uint64_t s);\nuint32_t g(void);\n";
    assert_eq!(header_constants(&strip_block_comments(h)), BTreeMap::from([("TRL_X".to_string(), 3)]));
    let protos = header_prototypes(&strip_block_comments(h)).unwrap();
    assert_eq!(protos["f"], (vec![("p".to_string(), WasmType::I32), ("s".to_string(), WasmType::I64)], Some(WasmType::I32)));
    assert_eq!(protos["g"], (vec![], Some(WasmType::I32)));
    assert!(header_prototypes("trl_status h(int x);").is_err(), "an unknown C type is reported");
    let js = "export const A = Object.freeze({\n  X_Y: 1, // one\n  Z: 16,\n});\n";
    assert_eq!(js_frozen_objects(&strip_line_comments(js))["A"], BTreeMap::from([("X_Y".to_string(), 1), ("Z".to_string(), 16)]));
    assert_eq!(
        calls("this._x.f(a, g(b, c)); this._x.h();", "this._x."),
        BTreeMap::from([("f".to_string(), BTreeSet::from([2])), ("h".to_string(), BTreeSet::from([0]))])
    );
}

// ---- the Python package's tables -----------------------------------------------------------------

/// The Python package's ABI module (`python/tinyrustlm/_abi.py`) as the tables define it: it is
/// generated from them, so the test compares the whole file and `TRL_WRITE_PYTHON_ABI=1` rewrites it.
fn python_abi_module() -> String {
    let mut s = String::from(
        "\"\"\"ABI facts of the TinyRustLM module, generated from src/abi_facts.rs and src/diag.rs.\n\n\
         Do not edit: `TRL_WRITE_PYTHON_ABI=1 cargo test --release -p harness --test abi_facts` rewrites this\n\
         file, and the same test fails while it differs from the tables.\n\"\"\"\n\n",
    );
    s.push_str(&format!("ABI_VERSION = {ABI_VERSION}\n"));
    for (name, value) in HEADER_SCALARS {
        let name = name.trim_start_matches("TRL_");
        if name != "ABI_VERSION" {
            s.push_str(&format!("{name} = {value}\n"));
        }
    }
    s.push_str(&format!("DIAGNOSTICS_LEN = {DIAGNOSTICS_LEN}\n"));
    for g in CONSTANT_GROUPS {
        // `TRL_STATUS_` -> `STATUS`: the group named as the header's prefix.
        let group = g.header_prefix.trim_start_matches("TRL_").trim_end_matches('_');
        s.push_str(&format!("\n# {}* ({} in the JS wrapper)\n{group} = {{\n", g.header_prefix, g.js_object));
        for (n, v) in g.entries {
            s.push_str(&format!("    \"{n}\": {v},\n"));
        }
        s.push_str("}\n");
    }
    s.push_str("\n# What each status means, by code (the header's comments).\nSTATUS_MEANING = {\n");
    for st in tinyrustlm::abi_facts::Status::ALL {
        s.push_str(&format!("    {}: {:?},\n", st.code(), st.meaning()));
    }
    s.push_str("}\n\n# The diagnostics record: (name, offset, type), little-endian.\nDIAGNOSTICS_FIELDS = (\n");
    for f in DIAGNOSTICS_FIELDS {
        s.push_str(&format!("    (\"{}\", {}, \"{}\"),\n", f.name, f.offset, f.ty().name()));
    }
    s.push_str(")\n\n# Every export of the single-thread module: name -> number of parameters.\nEXPORTS = {\n");
    for f in EXPORTS {
        s.push_str(&format!("    \"{}\": {},\n", f.name, f.params.len()));
    }
    s.push_str(&format!("}}\n\nIMPORT_MODULE = \"{IMPORT_MODULE}\"\nIMPORTS = ({})\n", IMPORTS.iter().map(|f| format!("\"{}\",", f.name)).collect::<String>()));
    s.push_str(&format!("EXPORTED_MEMORY = \"{EXPORTED_MEMORY}\"\nTOKENIZE_KNOWN = {TOKENIZE_KNOWN}\n"));
    s
}

#[test]
fn python_tables_match_the_tables() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../python/tinyrustlm/_abi.py");
    let want = python_abi_module();
    if std::env::var_os("TRL_WRITE_PYTHON_ABI").is_some() {
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let have = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut diff = Diff::default();
    let (want_lines, have_lines): (BTreeSet<&str>, BTreeSet<&str>) = (want.lines().collect(), have.lines().collect());
    for l in want_lines.difference(&have_lines) {
        diff.0.push(format!("missing or changed: {l}"));
    }
    for l in have_lines.difference(&want_lines) {
        diff.0.push(format!("not in the tables: {l}"));
    }
    if diff.0.is_empty() && want != have {
        diff.0.push("same lines in another order (TRL_WRITE_PYTHON_ABI=1 rewrites the file)".into());
    }
    diff.assert_none("python/tinyrustlm/_abi.py");
}
