//! A JSON Schema subset compiled to GBNF. Every keyword is either applied or refused by name
//! (SCHEMA_UNSUPPORTED, the field naming its path): a schema is never silently loosened.
//!
//! | keyword | generated |
//! |---|---|
//! | `type` (one or a list) | `object`, `array`, `string`, `integer`, `number`, `boolean`, `null` |
//! | `properties`, `required`, `additionalProperties` (boolean) | the declared properties in declared order, required ones always, optional ones maybe; never other keys |
//! | `items`, `minItems`, `maxItems` (≤ 1024) | `[` item (`,` item){min-1,max-1} `]` |
//! | `minLength`, `maxLength` (≤ 1024), `pattern` (see [`super::regex`]) | a JSON string whose text has that many characters / matches |
//! | `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numbers, \|x\| < 2^53) | integers by digit ranges; `number` adds decimals strictly inside the bounds |
//! | `enum`, `const` | the values' JSON text |
//! | `anyOf`, `oneOf` | alternatives (`oneOf` branches should not overlap: the grammar cannot forbid a value matching two) |
//! | `$ref` to `#`, `#/$defs/…`, `#/definitions/…` | a rule per definition (recursion allowed) |
//! | `$schema`, `$id`, `$comment`, `title`, `description`, `default`, `examples`, `deprecated`, `readOnly`, `writeOnly` | annotations: nothing to generate |
//!
//! Strings never use `\u` escapes (every character is written as itself, so a length is a count
//! of code points); integers have at most 16 digits, decimals at most 16, exponents 2. Whitespace
//! between tokens is `| " " | "\n" [ \t]{0,20}`, llama.cpp's. Schemas nest at most
//! [`MAX_SCHEMA_DEPTH`] levels (SCHEMA_TOO_DEEP).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

use super::json::{self, Value};
use super::MAX_REPEAT;
use crate::error::{Error, Result, Status};
use crate::field;

/// Schema nesting accepted: a subschema inside `properties`, `items`, `anyOf`, `oneOf` or a `$ref`
/// target is one level deeper than its parent.
pub const MAX_SCHEMA_DEPTH: usize = 32;

const ANNOTATIONS: &[&str] = &["$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"];
const OBJECT_KW: &[&str] = &["properties", "required", "additionalProperties"];
const ARRAY_KW: &[&str] = &["items", "minItems", "maxItems"];
const STRING_KW: &[&str] = &["minLength", "maxLength", "pattern"];
const NUMBER_KW: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
const OTHER_KW: &[&str] = &["type", "enum", "const", "anyOf", "oneOf", "$ref", "$defs", "definitions"];

const COMMON: &[(&str, &str)] = &[
    ("ws", r#"| " " | "\n" [ \t]{0,20}"#),
    ("char", r#"[^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt]"#),
    ("string", r#""\"" char* "\"" ws"#),
    ("int", r#""-"? ("0" | [1-9] [0-9]{0,15})"#),
    ("integer", "int ws"),
    ("number", r#"int ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})? ws"#),
    ("boolean", r#"("true" | "false") ws"#),
    ("null", r#""null" ws"#),
    ("value", "object | array | string | number | boolean | null"),
    ("object", r#""{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws"#),
    ("array", r#""[" ws ( value ( "," ws value )* )? "]" ws"#),
    ("frac", r#""." [0-9]{0,15} [1-9]"#),
];

fn unsupported(path: &str, kw: &str, rule: &'static str) -> Error {
    Error::new(Status::SchemaUnsupported, field!("{path}.{kw}"), 0, rule)
}

fn invalid(path: &str, kw: &str, rule: &'static str) -> Error {
    Error::new(Status::SchemaInvalid, field!("{path}.{kw}"), 0, rule)
}

struct Compiler<'a> {
    root: &'a Value,
    rules: Vec<(String, String)>,
    used: BTreeMap<String, ()>,
    /// `$ref` target → its rule.
    refs: BTreeMap<String, String>,
}

/// The GBNF grammar for values valid against the schema in `bytes`.
pub fn to_gbnf(bytes: &[u8]) -> Result<String> {
    let root = json::parse(bytes)?;
    let mut c = Compiler { root: &root, rules: Vec::new(), used: BTreeMap::new(), refs: BTreeMap::new() };
    c.used.insert("root".to_string(), ());
    for (name, _) in COMMON {
        c.used.insert(name.to_string(), ());
    }
    let body = c.schema(&root, "root", "schema", 0)?;
    let mut out = String::new();
    let _ = writeln!(out, "root ::= {body}");
    for (name, body) in &c.rules {
        let _ = writeln!(out, "{name} ::= {body}");
    }
    // The shared rules, only those some rule needs (references, transitively).
    let mut needed: Vec<&str> = Vec::new();
    loop {
        let before = needed.len();
        for (name, body) in COMMON {
            if needed.contains(name) {
                continue;
            }
            let refers = |text: &str| contains_word(text, name);
            if refers(&out) || needed.iter().any(|n| COMMON.iter().any(|(m, b)| m == n && refers(b))) {
                needed.push(name);
                let _ = body;
            }
        }
        if needed.len() == before {
            break;
        }
    }
    for (name, body) in COMMON {
        if needed.contains(name) {
            let _ = writeln!(out, "{name} ::= {body}");
        }
    }
    Ok(out)
}

/// Whether `text` mentions rule `name` as a whole word outside string literals and classes.
fn contains_word(text: &str, name: &str) -> bool {
    let b = text.as_bytes();
    let (mut i, mut in_str, mut in_class) = (0, false, false);
    while i < b.len() {
        let c = b[i];
        if in_str || in_class {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if (in_str && c == b'"') || (in_class && c == b']') {
                in_str = false;
                in_class = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' => in_class = true,
            _ if text[i..].starts_with(name) => {
                let before = i == 0 || !is_word(b[i - 1]);
                let after = b.get(i + name.len()).is_none_or(|&c| !is_word(c));
                if before && after {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// `text` as a GBNF string literal.
fn literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_text(v: &Value) -> String {
    let mut s = String::new();
    v.write(&mut s);
    s
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(x, _) if *x == libm::trunc(*x) => "integer",
        Value::Number(..) => "number",
        Value::Str(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Compiler<'_> {
    /// A fresh rule name from a path hint.
    fn name(&mut self, hint: &str) -> String {
        let mut base: String = hint.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
        if base.is_empty() {
            base.push('r');
        }
        let mut name = base.clone();
        let mut n = 1;
        while self.used.contains_key(&name) {
            n += 1;
            name = alloc::format!("{base}-{n}");
        }
        self.used.insert(name.clone(), ());
        name
    }

    fn define(&mut self, hint: &str, body: String) -> String {
        let name = self.name(hint);
        self.rules.push((name.clone(), body));
        name
    }

    /// A GBNF expression for values valid against `s` (trailing whitespace included).
    fn schema(&mut self, s: &Value, hint: &str, path: &str, depth: usize) -> Result<String> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(Error::new(Status::SchemaTooDeep, field!("{path}"), depth as u64, "schemas nest at most 32 levels"));
        }
        let fields = match s {
            Value::Bool(true) => return Ok("value".to_string()),
            Value::Bool(false) => return Err(invalid(path, "false", "the schema `false` admits no value")),
            Value::Object(f) => f,
            _ => return Err(Error::new(Status::SchemaInvalid, field!("{path}"), 0, "a schema must be an object or a boolean")),
        };
        for (k, _) in fields {
            let known = [ANNOTATIONS, OBJECT_KW, ARRAY_KW, STRING_KW, NUMBER_KW, OTHER_KW].iter().any(|kws| kws.contains(&k.as_str()));
            if !known {
                return Err(unsupported(path, k, "keyword outside the supported subset (README \"Structured output\")"));
            }
        }
        let has = |kw: &str| s.get(kw).is_some();
        let constraints: Vec<&str> =
            fields.iter().map(|(k, _)| k.as_str()).filter(|k| !ANNOTATIONS.contains(k) && !["$defs", "definitions"].contains(k)).collect();
        let alone = |kw: &str, allowed: &[&str]| -> Result<()> {
            match constraints.iter().find(|k| **k != kw && !allowed.contains(k)) {
                Some(other) => Err(unsupported(path, other, "cannot be combined with $ref, anyOf, oneOf, enum or const here")),
                None => Ok(()),
            }
        };

        if let Some(target) = s.get("$ref") {
            alone("$ref", &[])?;
            let Value::Str(target) = target else { return Err(invalid(path, "$ref", "must be a string")) };
            return self.reference(target, path, depth);
        }
        for kw in ["anyOf", "oneOf"] {
            if let Some(list) = s.get(kw) {
                alone(kw, &[])?;
                let Value::Array(items) = list else { return Err(invalid(path, kw, "must be a non-empty array of schemas")) };
                if items.is_empty() {
                    return Err(invalid(path, kw, "must be a non-empty array of schemas"));
                }
                let mut alts = Vec::new();
                for (i, sub) in items.iter().enumerate() {
                    alts.push(self.schema(sub, &alloc::format!("{hint}-{i}"), &alloc::format!("{path}.{kw}[{i}]"), depth + 1)?);
                }
                return Ok(self.define(hint, alts.join(" | ")));
            }
        }
        let types: Vec<&str> = match s.get("type") {
            None => Vec::new(),
            Some(Value::Str(t)) => alloc::vec![t.as_str()],
            Some(Value::Array(ts)) if !ts.is_empty() => {
                let mut v = Vec::new();
                for t in ts {
                    match t {
                        Value::Str(t) => v.push(t.as_str()),
                        _ => return Err(invalid(path, "type", "must be a type name or a non-empty array of them")),
                    }
                }
                v
            }
            Some(_) => return Err(invalid(path, "type", "must be a type name or a non-empty array of them")),
        };
        for t in &types {
            if !["object", "array", "string", "integer", "number", "boolean", "null"].contains(t) {
                return Err(invalid(path, "type", "unknown type (object, array, string, integer, number, boolean, null)"));
            }
        }
        let type_ok = |v: &Value| types.is_empty() || types.iter().any(|t| *t == type_of(v) || (*t == "number" && type_of(v) == "integer"));
        for kw in ["const", "enum"] {
            if let Some(v) = s.get(kw) {
                alone(kw, &["type"])?;
                let values: &[Value] = match (kw, v) {
                    ("const", v) => core::slice::from_ref(v),
                    (_, Value::Array(items)) if !items.is_empty() => items,
                    _ => return Err(invalid(path, kw, "must be a non-empty array")),
                };
                let mut alts = Vec::new();
                for v in values {
                    if !type_ok(v) {
                        return Err(invalid(path, kw, "a value is not of the schema's type"));
                    }
                    alts.push(literal(&json_text(v)));
                }
                return Ok(self.define(hint, alloc::format!("({}) ws", alts.join(" | "))));
            }
        }
        // Which family each present keyword belongs to; with no `type`, the families decide.
        let families = [("object", OBJECT_KW), ("array", ARRAY_KW), ("string", STRING_KW), ("number", NUMBER_KW)];
        let present: Vec<&str> = families.iter().filter(|(_, kws)| kws.iter().any(|k| has(k))).map(|(f, _)| *f).collect();
        let types = if types.is_empty() {
            match present.len() {
                0 => return Ok("value".to_string()),
                1 => alloc::vec![present[0]],
                _ => return Err(unsupported(path, "type", "keywords of several types without `type` are not supported; give `type`")),
            }
        } else {
            types
        };
        for f in &present {
            let applies = types.iter().any(|t| t == f || (*f == "number" && *t == "integer"));
            if !applies {
                let kw = families.iter().find(|(g, _)| g == f).and_then(|(_, kws)| kws.iter().find(|k| has(k))).copied().unwrap_or("type");
                return Err(invalid(path, kw, "does not apply to the schema's type"));
            }
        }
        let mut alts = Vec::new();
        for t in &types {
            let sub_hint = if types.len() > 1 { alloc::format!("{hint}-{t}") } else { hint.to_string() };
            alts.push(match *t {
                "object" => self.object(s, &sub_hint, path, depth)?,
                "array" => self.array(s, &sub_hint, path, depth)?,
                "string" => self.string(s, &sub_hint, path)?,
                "integer" => self.numeric(s, &sub_hint, path, true)?,
                "number" => self.numeric(s, &sub_hint, path, false)?,
                "boolean" => "boolean".to_string(),
                _ => "null".to_string(),
            });
        }
        Ok(if alts.len() == 1 { alts.pop().unwrap_or_default() } else { alloc::format!("({})", alts.join(" | ")) })
    }

    fn reference(&mut self, target: &str, path: &str, depth: usize) -> Result<String> {
        if let Some(rule) = self.refs.get(target) {
            return Ok(rule.clone());
        }
        let (schema, hint) = if target == "#" {
            (self.root, "ref-root".to_string())
        } else if let Some(name) = target.strip_prefix("#/$defs/").or_else(|| target.strip_prefix("#/definitions/")) {
            let defs = if target.starts_with("#/$defs/") { "$defs" } else { "definitions" };
            let found = self.root.get(defs).and_then(|d| d.get(name));
            match found {
                Some(s) => (s, alloc::format!("def-{name}")),
                None => return Err(invalid(path, "$ref", "names no definition in the root's $defs / definitions")),
            }
        } else {
            return Err(unsupported(path, "$ref", "only #, #/$defs/NAME and #/definitions/NAME are supported"));
        };
        let rule = self.name(&hint);
        self.refs.insert(target.to_string(), rule.clone());
        let body = self.schema(schema, &rule, &alloc::format!("{path}.$ref({target})"), depth + 1)?;
        self.rules.push((rule.clone(), body));
        Ok(rule)
    }

    fn count(&self, s: &Value, kw: &str, path: &str) -> Result<Option<u32>> {
        match s.get(kw) {
            None => Ok(None),
            Some(Value::Number(x, _)) if *x >= 0.0 && *x == libm::trunc(*x) => {
                if *x > MAX_REPEAT as f64 {
                    return Err(unsupported(path, kw, "above 1024 is not supported"));
                }
                Ok(Some(*x as u32))
            }
            Some(_) => Err(invalid(path, kw, "must be a non-negative integer")),
        }
    }

    fn object(&mut self, s: &Value, hint: &str, path: &str, depth: usize) -> Result<String> {
        let additional = match s.get("additionalProperties") {
            None | Some(Value::Bool(true)) => true,
            Some(Value::Bool(false)) => false,
            Some(_) => return Err(unsupported(path, "additionalProperties", "only true or false is supported")),
        };
        let props: &[(String, Value)] = match s.get("properties") {
            None => &[],
            Some(Value::Object(p)) => p,
            Some(_) => return Err(invalid(path, "properties", "must be an object of schemas")),
        };
        let mut required: Vec<&str> = Vec::new();
        match s.get("required") {
            None => {}
            Some(Value::Array(names)) => {
                for n in names {
                    let Value::Str(n) = n else { return Err(invalid(path, "required", "must be an array of property names")) };
                    if required.contains(&n.as_str()) {
                        return Err(invalid(path, "required", "names a property twice"));
                    }
                    if !props.iter().any(|(k, _)| k == n) {
                        return Err(Error::new(Status::SchemaInvalid, field!("{path}.required[{n}]"), 0, "names a property not in properties"));
                    }
                    required.push(n);
                }
            }
            Some(_) => return Err(invalid(path, "required", "must be an array of property names")),
        }
        if props.is_empty() {
            // No declared properties: any object, or (additionalProperties false) the empty one.
            return Ok(if additional { "object".to_string() } else { r#""{" ws "}" ws"#.to_string() });
        }
        // `first_k`: properties k.. with none written yet; `rest_k`: some written (comma first).
        let mut kvs = Vec::new();
        for (k, v) in props {
            let value = self.schema(v, &alloc::format!("{hint}-{k}"), &alloc::format!("{path}.properties.{k}"), depth + 1)?;
            let mut key = String::new();
            json::write_string(k, &mut key);
            kvs.push(alloc::format!("{} ws \":\" ws {value}", literal(&key)));
        }
        let n = props.len();
        let mut rest_next = String::new();
        let mut first_next = String::new();
        for k in (0..n).rev() {
            let req = required.contains(&props[k].0.as_str());
            let rest_body = if rest_next.is_empty() { alloc::format!("\",\" ws {}", kvs[k]) } else { alloc::format!("\",\" ws {} {rest_next}", kvs[k]) };
            let rest_body = if req {
                rest_body
            } else if rest_next.is_empty() {
                alloc::format!("({rest_body})?")
            } else {
                alloc::format!("{rest_body} | {rest_next}")
            };
            let first_body = if rest_next.is_empty() { kvs[k].clone() } else { alloc::format!("{} {rest_next}", kvs[k]) };
            let first_body = if req {
                first_body
            } else if first_next.is_empty() {
                alloc::format!("({first_body})?")
            } else {
                alloc::format!("{first_body} | {first_next}")
            };
            rest_next = self.define(&alloc::format!("{hint}-rest{k}"), rest_body);
            first_next = self.define(&alloc::format!("{hint}-from{k}"), first_body);
        }
        Ok(self.define(hint, alloc::format!(r#""{{" ws {first_next} "}}" ws"#)))
    }

    fn array(&mut self, s: &Value, hint: &str, path: &str, depth: usize) -> Result<String> {
        let item = match s.get("items") {
            None => "value".to_string(),
            Some(Value::Array(_)) => return Err(unsupported(path, "items", "an array of schemas (tuple form) is not supported")),
            Some(sub) => self.schema(sub, &alloc::format!("{hint}-item"), &alloc::format!("{path}.items"), depth + 1)?,
        };
        let min = self.count(s, "minItems", path)?.unwrap_or(0);
        let max = self.count(s, "maxItems", path)?;
        if max.is_some_and(|m| m < min) {
            return Err(invalid(path, "maxItems", "must not be below minItems"));
        }
        let more = match max {
            Some(0) => return Ok(self.define(hint, r#""[" ws "]" ws"#.to_string())),
            Some(max) => alloc::format!("{{{},{}}}", min.saturating_sub(1), max - 1),
            None => alloc::format!("{{{},}}", min.saturating_sub(1)),
        };
        let items = alloc::format!(r#"{item} ("," ws {item}){more}"#);
        let body = if min == 0 { alloc::format!(r#""[" ws ({items})? "]" ws"#) } else { alloc::format!(r#""[" ws {items} "]" ws"#) };
        Ok(self.define(hint, body))
    }

    fn string(&mut self, s: &Value, hint: &str, path: &str) -> Result<String> {
        let min = self.count(s, "minLength", path)?;
        let max = self.count(s, "maxLength", path)?;
        if let Some(p) = s.get("pattern") {
            let Value::Str(p) = p else { return Err(invalid(path, "pattern", "must be a string")) };
            if min.is_some() || max.is_some() {
                return Err(unsupported(path, "pattern", "pattern together with minLength/maxLength is not supported"));
            }
            let body = super::regex::to_gbnf(p, path)?;
            return Ok(self.define(hint, alloc::format!(r#""\"" ({body}) "\"" ws"#)));
        }
        if min.is_none() && max.is_none() {
            return Ok("string".to_string());
        }
        let min = min.unwrap_or(0);
        if max.is_some_and(|m| m < min) {
            return Err(invalid(path, "maxLength", "must not be below minLength"));
        }
        let rep = match max {
            Some(max) => alloc::format!("{{{min},{max}}}"),
            None => alloc::format!("{{{min},}}"),
        };
        Ok(self.define(hint, alloc::format!(r#""\"" char{rep} "\"" ws"#)))
    }

    fn bound(&self, s: &Value, kw: &str, path: &str) -> Result<Option<f64>> {
        match s.get(kw) {
            None => Ok(None),
            Some(Value::Number(x, _)) if x.abs() < 9.007_199_254_740_992e15 => Ok(Some(*x)),
            Some(Value::Number(..)) => Err(unsupported(path, kw, "bounds must be below 2^53 in magnitude")),
            Some(_) => Err(invalid(path, kw, "must be a number")),
        }
    }

    fn numeric(&mut self, s: &Value, hint: &str, path: &str, integer: bool) -> Result<String> {
        let (min, max) = (self.bound(s, "minimum", path)?, self.bound(s, "maximum", path)?);
        let (xmin, xmax) = (self.bound(s, "exclusiveMinimum", path)?, self.bound(s, "exclusiveMaximum", path)?);
        if min.is_none() && max.is_none() && xmin.is_none() && xmax.is_none() {
            return Ok(if integer { "integer" } else { "number" }.to_string());
        }
        // The tightest lower and upper bounds; `true` = exclusive.
        let lo = match (min, xmin) {
            (Some(a), Some(b)) => Some(if b >= a { (b, true) } else { (a, false) }),
            (Some(a), None) => Some((a, false)),
            (None, Some(b)) => Some((b, true)),
            (None, None) => None,
        };
        let hi = match (max, xmax) {
            (Some(a), Some(b)) => Some(if b <= a { (b, true) } else { (a, false) }),
            (Some(a), None) => Some((a, false)),
            (None, Some(b)) => Some((b, true)),
            (None, None) => None,
        };
        let ilo = lo.map(|(l, x)| if x { libm::floor(l) as i64 + 1 } else { libm::ceil(l) as i64 });
        let ihi = hi.map(|(h, x)| if x { libm::ceil(h) as i64 - 1 } else { libm::floor(h) as i64 });
        let mut alts = Vec::new();
        if let Some(e) = int_range(ilo, ihi) {
            alts.push(e);
        }
        if !integer {
            // Decimals with a non-zero fraction: I.f in (I, I+1), and -J.f in (-(J+1), -J).
            let i_lo = lo.map_or(0, |(l, _)| (libm::ceil(l) as i64).max(0));
            let i_hi = hi.map(|(h, _)| libm::floor(h) as i64 - 1);
            if i_hi.is_none_or(|h| h >= i_lo) {
                alts.push(alloc::format!("({}) frac", nonneg(i_lo as u64, i_hi.map(|h| h as u64))));
            }
            let j_lo = hi.map_or(0, |(h, _)| (libm::ceil(-h) as i64).max(0));
            let j_hi = lo.map(|(l, _)| libm::floor(-l) as i64 - 1);
            if j_hi.is_none_or(|h| h >= j_lo) {
                alts.push(alloc::format!("\"-\" ({}) frac", nonneg(j_lo as u64, j_hi.map(|h| h as u64))));
            }
        }
        if alts.is_empty() {
            return Err(invalid(path, "minimum", "the bounds admit no value"));
        }
        Ok(self.define(hint, alloc::format!("({}) ws", alts.join(" | "))))
    }
}

/// Integers in `lo..=hi` (either side open), no leading zeros; `None` if the range is empty.
fn int_range(lo: Option<i64>, hi: Option<i64>) -> Option<String> {
    if let (Some(l), Some(h)) = (lo, hi) {
        if l > h {
            return None;
        }
    }
    let mut alts = Vec::new();
    // Non-negative part.
    if hi.is_none_or(|h| h >= 0) {
        alts.push(nonneg(lo.map_or(0, |l| l.max(0)) as u64, hi.map(|h| h as u64)));
    }
    // Negative part: -v for v in max(1, -hi)..=-lo.
    if lo.is_none_or(|l| l < 0) {
        let v_lo = hi.map_or(1, |h| (-(h.min(-1) as i128)) as u64);
        let v_hi = lo.map(|l| (-(l as i128)) as u64);
        alts.push(alloc::format!("\"-\" ({})", nonneg(v_lo, v_hi)));
    }
    Some(alts.join(" | "))
}

/// Non-negative integers in `a..=b` (`b` None: at most 16 digits) as a GBNF expression.
fn nonneg(a: u64, b: Option<u64>) -> String {
    let digits = |x: u64| x.to_string().len();
    let mut alts = Vec::new();
    let (la, lb) = (digits(a), b.map_or(16, digits).max(digits(a)));
    for len in la..=lb {
        let lo = if len == la { a } else { 10u64.pow(len as u32 - 1) };
        let top = if len >= 20 { u64::MAX } else { 10u64.pow(len as u32) - 1 };
        let hi = match b {
            Some(b) if len == lb => b.min(top),
            _ => top,
        };
        if lo <= hi {
            alts.push(same_len(lo.to_string().as_bytes(), hi.to_string().as_bytes()));
        }
    }
    alts.join(" | ")
}

/// Numbers of `x.len()` digits from `x` to `y` (same length, `x <= y`).
fn same_len(x: &[u8], y: &[u8]) -> String {
    let rest = x.len() - 1;
    let any = |k: usize| if k == 0 { String::new() } else { alloc::format!(" [0-9]{{{k}}}") };
    if x[1..].iter().all(|&c| c == b'0') && y[1..].iter().all(|&c| c == b'9') {
        return alloc::format!("[{}-{}]{}", x[0] as char, y[0] as char, any(rest));
    }
    if x[0] == y[0] {
        return alloc::format!("\"{}\" ({})", x[0] as char, same_len(&x[1..], &y[1..]));
    }
    let nines: Vec<u8> = alloc::vec![b'9'; rest];
    let zeros: Vec<u8> = alloc::vec![b'0'; rest];
    let mut alts = alloc::vec![alloc::format!("\"{}\" ({})", x[0] as char, same_len(&x[1..], &nines))];
    if x[0] + 1 < y[0] {
        alts.push(alloc::format!("[{}-{}]{}", (x[0] + 1) as char, (y[0] - 1) as char, any(rest)));
    }
    alts.push(alloc::format!("\"{}\" ({})", y[0] as char, same_len(&zeros, &y[1..])));
    alloc::format!("({})", alts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::super::gbnf;
    use super::super::matcher::Matcher;
    use super::*;
    use alloc::rc::Rc;

    fn compile(schema: &str) -> Rc<super::super::Grammar> {
        let text = to_gbnf(schema.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        Rc::new(gbnf::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}")))
    }

    fn accepts(g: &Rc<super::super::Grammar>, s: &str) -> bool {
        let mut m = Matcher::new(g.clone());
        m.accept_bytes(s.as_bytes()) && m.is_complete()
    }

    #[test]
    fn integer_ranges_are_exact() {
        for (lo, hi) in [(Some(0), Some(150)), (Some(-37), Some(205)), (Some(17), None), (None, Some(-3)), (Some(-1000), Some(-999)), (Some(5), Some(5))] {
            let text = alloc::format!("root ::= {}\n", int_range(lo, hi).unwrap());
            let g = Rc::new(gbnf::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}")));
            for v in -1200i64..1200 {
                let want = lo.is_none_or(|l| v >= l) && hi.is_none_or(|h| v <= h);
                let mut m = Matcher::new(g.clone());
                let got = m.accept_bytes(v.to_string().as_bytes()) && m.is_complete();
                assert_eq!(got, want, "{v} in {lo:?}..={hi:?}: {text}");
            }
            assert!(!accepts(&g, "007"));
        }
    }

    #[test]
    fn objects_arrays_and_strings() {
        let g = compile(
            r#"{"type":"object","properties":{"name":{"type":"string","maxLength":5},"age":{"type":"integer","minimum":0,"maximum":150},
               "tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":2}},"required":["name"],"additionalProperties":false}"#,
        );
        assert!(accepts(&g, r#"{"name": "Bob", "age": 42, "tags": ["a", "b"]}"#));
        assert!(accepts(&g, r#"{"name":"Bob","tags":[]}"#));
        assert!(accepts(&g, "{\n  \"name\": \"Al\"\n}"));
        assert!(!accepts(&g, r#"{"age": 42}"#));
        assert!(!accepts(&g, r#"{"name": "Bobbie"}"#));
        assert!(!accepts(&g, r#"{"name": "B", "age": 151}"#));
        assert!(!accepts(&g, r#"{"name": "B", "tags": ["a","b","a"]}"#));
        assert!(!accepts(&g, r#"{"name": "B",}"#));
        let n = compile(r#"{"type":"number","minimum":-2.5,"exclusiveMaximum":3}"#);
        for (s, ok) in [("-2", true), ("-2.5", false), ("-1.5", true), ("2.999", true), ("3", false), ("0.5", true), ("-3", false), ("-0.25", true)] {
            assert_eq!(accepts(&n, s), ok, "{s}");
        }
        let r = compile(
            r##"{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/node"}"##,
        );
        assert!(accepts(&r, r#"{"v": 1, "next": {"v": 2, "next": null}}"#));
        let p = compile(r#"{"type":"string","pattern":"^[A-Z]{2}-\\d{3}$"}"#);
        assert!(accepts(&p, r#""AB-123""#) && !accepts(&p, r#""AB-12""#));
    }

    #[test]
    fn unsupported_keywords_are_refused_by_name() {
        let cases = [
            (r#"{"type":"string","format":"date"}"#, Status::SchemaUnsupported, "schema.format"),
            (r#"{"type":"object","properties":{"a":{"type":"array","uniqueItems":true}}}"#, Status::SchemaUnsupported, "schema.properties.a.uniqueItems"),
            (r#"{"type":"object","additionalProperties":{"type":"string"}}"#, Status::SchemaUnsupported, "schema.additionalProperties"),
            (r#"{"type":"strin"}"#, Status::SchemaInvalid, "schema.type"),
            (r#"{"type":"integer","minLength":2}"#, Status::SchemaInvalid, "schema.minLength"),
            (r#"{"type":"object","properties":{},"required":["x"]}"#, Status::SchemaInvalid, "schema.required[x]"),
            (r##"{"$ref":"#/$defs/missing"}"##, Status::SchemaInvalid, "schema.$ref"),
            (r#"{"type":"string""#, Status::SchemaInvalid, "schema (byte offset)"),
        ];
        for (schema, status, field) in cases {
            let e = to_gbnf(schema.as_bytes()).unwrap_err();
            assert_eq!((e.status, e.field.as_str()), (status, field), "{schema}");
        }
        let mut deep = String::new();
        for _ in 0..40 {
            deep.push_str(r#"{"type":"array","items":"#);
        }
        deep.push_str("true");
        for _ in 0..40 {
            deep.push('}');
        }
        assert_eq!(to_gbnf(deep.as_bytes()).unwrap_err().status, Status::SchemaTooDeep);
    }
}
