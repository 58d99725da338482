//! The sidecar writer: canonical JSON (FORMAT.md "Eval cases and sidecars"), so that equal runs give equal
//! bytes and a sidecar can be compared byte for byte.

use alloc::string::String;
use core::fmt;

use super::{boundary_met, oom, CaseResult, Suite, TryWriter};
use super::{EVALUATOR_NAME, EVALUATOR_VERSION, RUNTIME_BUILD_ID, SIDECAR_SCHEMA};
use crate::engine::Identity;
use crate::error::Result;

/// A JSON string literal: `"` and `\` escaped, `\n` `\r` `\t` short, other controls as `\u00XX`,
/// everything else (including non-ASCII) as UTF-8.
pub fn push_json_string<W: fmt::Write>(out: &mut W, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

fn hex<W: fmt::Write>(out: &mut W, v: u32) -> fmt::Result {
    write!(out, "\"{v:08x}\"")
}

/// The sidecar, canonical: fixed key order (as listed in FORMAT.md), no whitespace except a newline
/// after each case and at the end, CRCs as 8 lower-case hex digits.
///
/// Out of memory is a status (the sidecar of a full suite can be megabytes).
pub fn write_sidecar(id: &Identity, suite: &Suite, results: &[CaseResult], source: &str) -> Result<String> {
    let mut o = TryWriter(String::new());
    sidecar_json(&mut o, id, suite, results, source).map_err(|_| oom("sidecar", o.0.len().saturating_mul(2)))?;
    Ok(o.0)
}

fn sidecar_json<W: fmt::Write>(o: &mut W, id: &Identity, suite: &Suite, results: &[CaseResult], source: &str) -> fmt::Result {
    o.write_str("{\"schema\":")?;
    push_json_string(o, SIDECAR_SCHEMA)?;
    o.write_str(",\"evaluator\":{\"name\":")?;
    push_json_string(o, EVALUATOR_NAME)?;
    o.write_str(",\"version\":")?;
    push_json_string(o, EVALUATOR_VERSION)?;
    o.write_str("},\"runtime_build\":")?;
    // Both parts are ASCII letters, digits and dots: nothing to escape.
    write!(o, "\"tinyrustlm/{}+{}\"", env!("CARGO_PKG_VERSION"), RUNTIME_BUILD_ID)?;
    o.write_str(",\"source\":")?;
    push_json_string(o, source)?;
    write!(o, ",\"model\":{{\"n_params\":{},\"tensor_layout_crc\":", id.model.n_params)?;
    hex(o, id.model.tensor_layout_crc)?;
    o.write_str(",\"tokenizer_crc\":")?;
    hex(o, id.model.tokenizer_crc)?;
    o.write_str(",\"artifact_crc\":")?;
    hex(o, id.artifact_crc)?;
    o.write_str(",\"quant_mode\":")?;
    push_json_string(o, id.quant.name())?;
    o.write_str("},\"adapters\":[")?;
    for (i, d) in id.adapter_digests.iter().enumerate() {
        if i > 0 {
            o.write_char(',')?;
        }
        hex(o, *d)?;
    }
    o.write_str("],\"assembly_state_crc\":")?;
    hex(o, id.assembly_state_crc)?;
    o.write_str(",\"suite\":{\"name\":")?;
    push_json_string(o, &suite.name)?;
    o.write_str(",\"version\":")?;
    push_json_string(o, &suite.version)?;
    o.write_str(",\"cases_crc\":")?;
    hex(o, suite.cases_crc)?;
    writeln!(o, ",\"n_cases\":{}}},\"decoding\":\"greedy\",\"cases\":[", suite.cases.len())?;
    for (i, (case, r)) in suite.cases.iter().zip(results).enumerate() {
        o.write_str("{\"id\":")?;
        push_json_string(o, &case.id)?;
        write!(o, ",\"passed\":{},\"match\":", r.passed)?;
        push_json_string(o, case.rule.name())?;
        o.write_str(",\"expected\":")?;
        push_json_string(o, &case.expected)?;
        o.write_str(",\"produced\":")?;
        push_json_string(o, &r.produced)?;
        write!(o, ",\"prompt_tokens\":{},\"generated_tokens\":{},\"stop_reason\":{}}}", r.prompt_tokens, r.generated_tokens, r.stop_reason)?;
        o.write_str(if i + 1 < results.len() { ",\n" } else { "\n" })?;
    }
    let n_passed = results.iter().filter(|r| r.passed).count();
    writeln!(
        o,
        "],\"totals\":{{\"cases\":{},\"passed\":{},\"failed\":{}}},\"quality_boundary\":{{\"min_pass_rate\":{},\"met\":{}}}}}",
        results.len(),
        n_passed,
        results.len() - n_passed,
        suite.min_pass_rate_text,
        boundary_met(suite, n_passed)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_canonically() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"\\\n\u{1}é").unwrap();
        assert_eq!(s, "\"a\\\"\\\\\\n\\u0001é\"");
    }
}
