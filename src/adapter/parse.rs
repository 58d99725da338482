//! Adapter bytes → [`Adapter`]: every length, count, name, shape, index and value checked, in the
//! order `abi/FORMAT.md` ("Adapters", "Checks, in order") lists them, so each defect has one status.

use alloc::vec::Vec;

use super::*;
use crate::field;
use crate::format::read_tensor_name;
use crate::quant::{self, DType};
use crate::reader::{Entry as At, Reader};

fn bad(status: Status, field: impl Into<Field>, value: u64, rule: &'static str) -> Error {
    Error::new(status, field, value, rule)
}

/// A target-table entry before its payload is located.
struct Entry<'a> {
    name: &'a str,
    rows: usize,
    cols: usize,
    tensor: Option<usize>,
    /// `encoding` (dense), `n_entries` (sparse) or `rank` (low-rank).
    param: u32,
    payload_len: usize,
}

/// Parses and checks an adapter. With `parent`, also checks that it was made for that model
/// (identity, then each target's name and shape) and records each target's directory index.
/// Without it (inspection), only what the file alone can tell is checked.
pub fn parse<'a>(bytes: &'a [u8], parent: Option<Parent<'_>>) -> Result<Adapter<'a>> {
    let file_len = bytes.len();
    if file_len < 4 {
        return Err(bad(Status::AdapterTruncated, "header", file_len as u64, "an adapter is at least 60 bytes (56-byte header and 4-byte CRC)"));
    }
    let Some(kind) = Kind::from_magic(&bytes[0..4]) else {
        let rule = if bytes[0..4] == crate::format::MAGIC {
            "must be \"ADP1\", \"ASP1\" or \"ALR1\" (this is an SLM1 model package, not an adapter)"
        } else {
            "must be \"ADP1\", \"ASP1\" or \"ALR1\""
        };
        return Err(bad(Status::AdapterBadMagic, "header.magic", le_u32(&bytes[0..4]) as u64, rule));
    };
    if file_len < HEADER_LEN + TRAILER_LEN {
        return Err(bad(Status::AdapterTruncated, "header", file_len as u64, "an adapter is at least 60 bytes (56-byte header and 4-byte CRC)"));
    }
    // The fixed fields (the length is checked above, so these reads cannot fail); they are checked
    // in the order FORMAT.md lists, the CRC before anything it protects is interpreted.
    let mut h = Reader::new(&bytes[4..HEADER_LEN], 4, "header", Status::AdapterTruncated);
    let version = h.u32("format_version")?;
    let header_len = h.u32("header_len")?;
    let reserved = h.u32("reserved")?;
    let total_len = h.u64("total_len")?;
    let identity = ModelIdentity {
        n_params: h.u64("parent_n_params")?,
        tensor_layout_crc: h.u32("parent_tensor_layout_crc")?,
        tokenizer_crc: h.u32("parent_tokenizer_crc")?,
        flags: h.u32("parent_flags")?,
        n_tensors: h.u32("parent_n_tensors")?,
    };
    let scale = h.f32("scale")?;
    let n_targets = h.u32("n_targets")?;
    if version != FORMAT_VERSION {
        return Err(bad(Status::AdapterUnsupportedVersion, "header.format_version", version as u64, "must be 1"));
    }
    if header_len as usize != HEADER_LEN {
        return Err(bad(Status::AdapterBadHeader, "header.header_len", header_len as u64, "must be 56"));
    }
    if total_len > file_len as u64 {
        return Err(bad(Status::AdapterTruncated, "header.total_len", total_len, "the file is shorter than total_len says"));
    }
    if total_len < file_len as u64 {
        return Err(bad(Status::AdapterBadHeader, "header.total_len", total_len, "must equal the file length (bytes follow the CRC trailer)"));
    }
    let body_end = file_len - TRAILER_LEN;
    let artifact_crc = le_u32(&bytes[body_end..]);
    if crc32fast::hash(&bytes[..body_end]) != artifact_crc {
        return Err(bad(Status::AdapterChecksum, "trailer.artifact_crc", artifact_crc as u64, "must equal the CRC32 of all preceding bytes"));
    }
    // From here on every byte is what the writer wrote.
    if reserved != 0 {
        return Err(bad(Status::AdapterBadHeader, "header.reserved", reserved as u64, "must be 0"));
    }
    if !scale.is_finite() {
        return Err(bad(Status::AdapterNonFinite, "header.scale", scale.to_bits() as u64, "must be finite (value shown as f32 bits)"));
    }
    if n_targets == 0 {
        return Err(bad(Status::AdapterBadHeader, "header.n_targets", 0, "must be at least 1"));
    }
    if n_targets > MAX_TARGETS {
        return Err(bad(Status::AdapterLimitExceeded, "header.n_targets", n_targets as u64, "must be at most 4096"));
    }
    if let Some(parent) = &parent {
        check_identity(&identity, &parent.identity)?;
    }

    let entries = read_table(bytes, body_end, n_targets as usize, kind, parent.as_ref())?;
    let table_end = HEADER_LEN + entries.1;
    let entries = entries.0;

    // Payloads follow the table back to back, in target order, and end at the trailer.
    let mut targets: Vec<Target<'a>> = Vec::new();
    targets.try_reserve_exact(entries.len()).map_err(|_| oom("targets", entries.len().saturating_mul(core::mem::size_of::<Target<'a>>())))?;
    let mut pos = table_end;
    for e in &entries {
        let end = pos.checked_add(e.payload_len).filter(|&end| end <= body_end);
        let Some(end) = end else {
            return Err(bad(Status::AdapterTruncated, field!("target[{}].payload", e.name), e.payload_len as u64, "payload runs past the CRC trailer"));
        };
        let data = &bytes[pos..end];
        let payload = match kind {
            Kind::Dense => Payload::Dense { encoding: if e.param == DENSE_Q8_0 { DenseEncoding::Q8_0 } else { DenseEncoding::F32 }, bytes: data },
            Kind::Sparse => Payload::Sparse { pairs: data },
            Kind::LowRank => {
                let a_len = e.param as usize * e.cols * 4;
                Payload::LowRank { rank: e.param as usize, a: &data[..a_len], b: &data[a_len..] }
            }
        };
        targets.push(Target { name: e.name, rows: e.rows, cols: e.cols, tensor: e.tensor, payload });
        pos = end;
    }
    if pos != body_end {
        return Err(bad(Status::AdapterBadHeader, "payload", (body_end - pos) as u64, "bytes left between the last payload and the CRC trailer"));
    }
    for t in &targets {
        check_payload(t)?;
    }
    Ok(Adapter { kind, parent: identity, scale, targets, artifact_crc })
}

fn check_identity(have: &ModelIdentity, want: &ModelIdentity) -> Result<()> {
    let rule = "must equal the loaded model's (the adapter was made for another model)";
    let parts: [(&str, u64, u64); 5] = [
        ("header.parent_n_params", have.n_params, want.n_params),
        ("header.parent_tensor_layout_crc", have.tensor_layout_crc as u64, want.tensor_layout_crc as u64),
        ("header.parent_tokenizer_crc", have.tokenizer_crc as u64, want.tokenizer_crc as u64),
        ("header.parent_flags", have.flags as u64, want.flags as u64),
        ("header.parent_n_tensors", have.n_tensors as u64, want.n_tensors as u64),
    ];
    for (field, have, want) in parts {
        if have != want {
            return Err(bad(Status::AdapterParentMismatch, field, have, rule));
        }
    }
    Ok(())
}

/// Reads the target table; returns the entries and the table's byte length.
fn read_table<'a>(bytes: &'a [u8], body_end: usize, n: usize, kind: Kind, parent: Option<&Parent<'_>>) -> Result<(Vec<Entry<'a>>, usize)> {
    let mut r = Reader::new(&bytes[HEADER_LEN..body_end], HEADER_LEN, "target", Status::AdapterTruncated);
    // The smallest entry is 2 + 1 + 4 + 4 + 4 = 15 bytes: bound the allocation by the bytes present.
    r.room_for(n as u64, 15, "header.n_targets", n as u64, "the file is too short for this many target entries")?;
    let mut entries: Vec<Entry<'a>> = Vec::new();
    entries.try_reserve_exact(n).map_err(|_| oom("targets", n.saturating_mul(core::mem::size_of::<Entry<'a>>())))?;
    for i in 0..n {
        r.enter("target", At::Index(i));
        let name = read_tensor_name(&mut r, Status::AdapterUnknownTarget)?;
        r.enter("target", At::Name(name));
        if entries.iter().any(|e| e.name == name) {
            return Err(bad(Status::AdapterDuplicateTarget, r.field("name"), i as u64, "each tensor may be targeted once (value = entry index)"));
        }
        let tensor = match parent {
            Some(p) => Some(p.tensors.iter().position(|t| t.name == name).ok_or_else(|| {
                bad(Status::AdapterUnknownTarget, r.field(""), i as u64, "no tensor of the loaded model has this name (value = entry index)")
            })?),
            None => None,
        };
        let rows = r.u32("rows")?;
        let cols = r.u32("cols")?;
        if rows == 0 || cols == 0 {
            let (field, v) = if rows == 0 { ("rows", rows) } else { ("cols", cols) };
            return Err(bad(Status::AdapterShapeMismatch, r.field(field), v as u64, "every dim must be at least 1"));
        }
        let (rows, cols) = (rows as usize, cols as usize);
        if let (Some(p), Some(ti)) = (parent, tensor) {
            let t = &p.tensors[ti];
            if t.rows != rows || t.row_len != cols {
                return Err(Error::shape(
                    Status::AdapterShapeMismatch,
                    r.field("shape"),
                    rows as u32,
                    cols as u32,
                    "must equal the tensor's [rows, row_len] (a vector is [1, len]); value = [rows, cols]",
                ));
            }
        }
        let param_field = match kind {
            Kind::Dense => "encoding",
            Kind::Sparse => "n_entries",
            Kind::LowRank => "rank",
        };
        let param = r.u32(param_field)?;
        let n_elements = rows as u64 * cols as u64;
        let payload_len: Option<u64> = match kind {
            Kind::Dense => match param {
                DENSE_F32 => n_elements.checked_mul(4),
                DENSE_Q8_0 if cols % quant::QK == 0 => n_elements.checked_mul(DType::Q8_0.block_bytes() as u64).map(|b| b / quant::QK as u64),
                DENSE_Q8_0 => return Err(bad(Status::AdapterBadEncoding, r.field("encoding"), param as u64, "q8_0 (1) needs cols to be a multiple of 32")),
                _ => return Err(bad(Status::AdapterBadEncoding, r.field("encoding"), param as u64, "must be 0 (f32) or 1 (q8_0)")),
            },
            Kind::Sparse => {
                if param as u64 > n_elements {
                    return Err(bad(Status::AdapterBadIndex, r.field("n_entries"), param as u64, "at most rows · cols entries (indices are distinct)"));
                }
                (param as u64).checked_mul(8)
            }
            Kind::LowRank => {
                let max = (rows.min(cols) as u64).min(MAX_RANK as u64);
                if param == 0 || param as u64 > max {
                    return Err(bad(Status::AdapterBadRank, r.field("rank"), param as u64, "must be in 1..=min(rows, cols, 256)"));
                }
                let r = param as u64;
                (r * cols as u64).checked_add(rows as u64 * r).and_then(|n| n.checked_mul(4))
            }
        };
        // A length that does not fit in memory cannot fit in the file either.
        let payload_len = payload_len.and_then(|n| usize::try_from(n).ok()).unwrap_or(usize::MAX);
        entries.push(Entry { name, rows, cols, tensor, param, payload_len });
    }
    Ok((entries, r.offset() - HEADER_LEN))
}

fn check_payload(t: &Target<'_>) -> Result<()> {
    let named = |field: &str| field!("target[{}].{}", t.name, field);
    let first_non_finite_f32 = |b: &[u8]| b.chunks_exact(4).position(|v| !le_f32(v).is_finite());
    match t.payload {
        Payload::Dense { encoding: DenseEncoding::F32, bytes } => {
            if let Some(i) = first_non_finite_f32(bytes) {
                return Err(bad(Status::AdapterNonFinite, named("delta"), i as u64, "delta values must be finite (value = element index)"));
            }
        }
        Payload::Dense { encoding: DenseEncoding::Q8_0, bytes } => {
            if let Some(i) = quant::first_non_finite(DType::Q8_0, bytes) {
                return Err(bad(Status::AdapterNonFinite, named("delta"), i as u64, "q8_0 block scales must be finite (value = block index)"));
            }
        }
        Payload::Sparse { .. } => {
            let n_elements = t.rows as u64 * t.cols as u64;
            let mut prev: Option<u32> = None;
            for (k, (index, value)) in t.payload.entries().enumerate() {
                if index as u64 >= n_elements {
                    return Err(bad(Status::AdapterBadIndex, named("index"), index as u64, "must be below rows · cols"));
                }
                if prev.is_some_and(|p| index <= p) {
                    return Err(bad(Status::AdapterBadIndex, named("index"), index as u64, "indices must be strictly increasing"));
                }
                if !value.is_finite() {
                    return Err(bad(Status::AdapterNonFinite, named("value"), k as u64, "values must be finite (value = entry number)"));
                }
                prev = Some(index);
            }
        }
        Payload::LowRank { a, b, .. } => {
            if let Some(i) = first_non_finite_f32(a) {
                return Err(bad(Status::AdapterNonFinite, named("a"), i as u64, "A values must be finite (value = element index)"));
            }
            if let Some(i) = first_non_finite_f32(b) {
                return Err(bad(Status::AdapterNonFinite, named("b"), i as u64, "B values must be finite (value = element index)"));
            }
        }
    }
    Ok(())
}
