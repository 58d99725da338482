//! Verifying an SLM1 package while its bytes arrive, front to back.
//!
//! [`PackageVerifier::advance`] is told how many leading bytes of the package exist and runs every
//! check those bytes make possible; a check runs once, as soon as the last byte it needs is there:
//!
//! 1. the header (magic and version at once, the rest when its 128 or 160 bytes are in), its
//!    section bounds against the announced length, and its hyperparameters;
//! 2. the directory, when complete: its CRC32 first, then each entry, the architecture's tensor
//!    table, `n_params` and the v2 dominant dtype;
//! 3. the tokenizer section, when complete: its CRC32 (and, for a load, its contents:
//!    [`Tokenizer::parse`]);
//! 4. the zero padding before the data, each tensor's scales and f32 values block by block, and the
//!    zero padding after each tensor, as they arrive;
//! 5. the artifact CRC32 of everything before the trailer, hashed as the bytes arrive and compared
//!    when the trailer is in.
//!
//! A package held whole in memory ([`super::parse`]) goes through the same steps in one call, so
//! the status of a broken package does not depend on how it was cut into chunks: each step looks
//! only at bytes up to its own end, and the steps end in file order. Corruption inside the directory
//! or the tokenizer section is therefore reported by that section's checksum; elsewhere, by the first
//! rule it breaks, or, when it breaks none, by the artifact checksum at the end.

use alloc::vec::Vec;

use super::{
    bad, check_hparams, check_sections, read_directory, read_header, resolve_tensors, u32_at, Package, RawHeader, Resolved, Sections, TensorEntry,
    FORMAT_VERSION_2, HEADER_LEN, HEADER_LEN_V2, MAGIC, TRAILER_LEN,
};
use crate::error::{Error, Result, Status};
use crate::field;
use crate::model::arch::Hyperparams;
use crate::quant::DType;
use crate::tokenizer::Tokenizer;

/// How far a load has got: bytes announced, bytes received, and how many leading bytes have passed
/// every check they take part in except the artifact CRC (which can only pass at the end, and then
/// `verified == total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadProgress {
    pub total: u64,
    pub received: u64,
    pub verified: u64,
}

impl LoadProgress {
    /// The `TRL_RESULT_LOAD_PROGRESS` encoding: total, received, verified (u64 LE each).
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[0..8].copy_from_slice(&self.total.to_le_bytes());
        out[8..16].copy_from_slice(&self.received.to_le_bytes());
        out[16..24].copy_from_slice(&self.verified.to_le_bytes());
        out
    }
}

/// The header once checked on its own and against the announced length.
struct Header {
    raw: RawHeader,
    sections: Sections,
    hparams: Hyperparams,
    quant: DType,
}

/// The directory once checked.
struct Directory {
    tensors: Vec<TensorEntry>,
    resolved: Resolved,
}

/// Where the data step stands: the next byte to check, and the tensor whose bytes or trailing
/// padding it is in (`None`: the padding between the tokenizer section and the data).
struct DataCursor {
    at: usize,
    tensor: Option<usize>,
}

pub struct PackageVerifier {
    total: usize,
    received: usize,
    /// Running CRC32 of `[0, hashed)`, up to the trailer.
    artifact: crc32fast::Hasher,
    hashed: usize,
    header: Option<Header>,
    directory: Option<Directory>,
    tokenizer_checked: bool,
    data: Option<DataCursor>,
    artifact_crc: Option<u32>,
    /// What a load adds to the package's own rules ([`PackageVerifier::for_load`]).
    load: Option<LoadChecks>,
}

/// The checks of a load beyond the package's own rules, run inside the steps so that they too
/// fail at the same place however the bytes are cut: the requested context against the header's
/// `max_context` (step 1) and the tokenizer section's contents (step 3).
struct LoadChecks {
    context_len: u32,
    tokenizer: Option<Tokenizer>,
}

impl PackageVerifier {
    /// A verifier for a package of `total` bytes.
    pub fn new(total: usize) -> PackageVerifier {
        PackageVerifier {
            total,
            received: 0,
            artifact: crc32fast::Hasher::new(),
            hashed: 0,
            header: None,
            directory: None,
            tokenizer_checked: false,
            data: None,
            artifact_crc: None,
            load: None,
        }
    }

    /// A verifier that also checks `context_len` (0: the default) against the header and parses
    /// the tokenizer section once its checksum matches ([`PackageVerifier::take_tokenizer`]).
    pub fn for_load(total: usize, context_len: u32) -> PackageVerifier {
        PackageVerifier { load: Some(LoadChecks { context_len, tokenizer: None }), ..PackageVerifier::new(total) }
    }

    /// The parsed tokenizer of a [`PackageVerifier::for_load`] verifier, once step 3 has run.
    pub fn take_tokenizer(&mut self) -> Option<Tokenizer> {
        self.load.as_mut()?.tokenizer.take()
    }

    pub fn progress(&self) -> LoadProgress {
        let verified = match (&self.header, &self.directory, self.tokenizer_checked, &self.data, self.artifact_crc) {
            (_, _, _, _, Some(_)) => self.total,
            (None, ..) => 0,
            (Some(h), None, ..) => h.sections.dir.start,
            (Some(h), Some(_), false, ..) => h.sections.tokenizer.start,
            (Some(_), Some(_), true, Some(d), None) => d.at,
            (Some(h), Some(_), true, None, None) => h.sections.tokenizer.end,
        };
        LoadProgress { total: self.total as u64, received: self.received as u64, verified: verified as u64 }
    }

    /// Runs every check that `bytes`, the first `bytes.len()` bytes of the package, make possible
    /// and that has not run yet. `bytes` must extend the previous call's bytes (same leading bytes,
    /// at least as many) and stay within the announced length.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<()> {
        debug_assert!(bytes.len() >= self.received && bytes.len() <= self.total);
        self.received = bytes.len();
        let body_end = self.received.min(self.total.saturating_sub(TRAILER_LEN));
        if body_end > self.hashed {
            self.artifact.update(&bytes[self.hashed..body_end]);
            self.hashed = body_end;
        }
        if self.header.is_none() && !self.check_header(bytes)? {
            return Ok(());
        }
        if self.directory.is_none() && !self.check_directory(bytes)? {
            return Ok(());
        }
        if !self.tokenizer_checked && !self.check_tokenizer_section(bytes)? {
            return Ok(());
        }
        if !self.check_data(bytes)? {
            return Ok(());
        }
        if self.artifact_crc.is_none() && self.received == self.total {
            let stored = u32_at(bytes, self.total - TRAILER_LEN);
            if self.artifact.clone().finalize() != stored {
                return Err(bad(Status::ArtifactChecksum, "trailer.artifact_crc", stored as u64, "must equal the CRC32 of all preceding bytes"));
            }
            self.artifact_crc = Some(stored);
        }
        Ok(())
    }

    /// The validated package; `TRUNCATED` when fewer bytes than announced arrived.
    pub fn finish(self) -> Result<Package> {
        let (Some(h), Some(d), Some(artifact_crc)) = (self.header, self.directory, self.artifact_crc) else {
            return Err(Error::new(Status::Truncated, "load.received", self.received as u64, "the stream ended before the announced total_len"));
        };
        let p = h.hparams;
        let r = &h.raw;
        Ok(Package {
            hparams: p,
            quant: h.quant,
            identity: super::ModelIdentity {
                n_params: d.resolved.n_params,
                tensor_layout_crc: r.tensor_layout_crc,
                tokenizer_crc: r.tokenizer_crc,
                flags: r.flags,
                n_tensors: r.n_tensors,
            },
            tensors: d.tensors,
            format_version: r.version,
            arch: p.arch,
            model_tensors: d.resolved.model_tensors,
            layers: d.resolved.layers,
            tokenizer_range: h.sections.tokenizer,
            artifact_crc,
        })
    }

    /// Step 1. `Ok(false)`: the header is not complete yet.
    fn check_header(&mut self, bytes: &[u8]) -> Result<bool> {
        // A wrong magic is wrong whatever follows (read_header reports it first).
        if bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] != MAGIC {
            read_header(&bytes[..MAGIC.len()])?;
        }
        let header_end = if self.total < HEADER_LEN {
            self.total
        } else if bytes.len() < HEADER_LEN {
            return Ok(false);
        } else if u32_at(bytes, 4) == FORMAT_VERSION_2 {
            self.total.min(HEADER_LEN_V2)
        } else {
            HEADER_LEN
        };
        if bytes.len() < header_end {
            return Ok(false);
        }
        let raw = read_header(&bytes[..header_end])?;
        let sections = check_sections(&raw, self.total)?;
        let (hparams, quant) = check_hparams(&raw)?;
        if let Some(load) = &self.load {
            if load.context_len > hparams.max_context {
                return Err(Error::new(Status::InvalidArgument, "context_len", load.context_len as u64, "must not exceed the package's max_context"));
            }
        }
        self.header = Some(Header { raw, sections, hparams, quant });
        Ok(true)
    }

    /// Step 2.
    fn check_directory(&mut self, bytes: &[u8]) -> Result<bool> {
        let Some(h) = &self.header else { return Ok(false) };
        let dir = h.sections.dir.clone();
        if bytes.len() < dir.end {
            return Ok(false);
        }
        let dir_bytes = &bytes[dir];
        if crc32fast::hash(dir_bytes) != h.raw.tensor_layout_crc {
            return Err(bad(
                Status::TensorLayoutChecksum,
                "header.tensor_layout_crc",
                h.raw.tensor_layout_crc as u64,
                "must equal the CRC32 of the tensor directory",
            ));
        }
        let tensors = read_directory(dir_bytes, &h.raw, &h.sections)?;
        let resolved = resolve_tensors(&h.raw, &h.hparams, h.quant, &tensors)?;
        self.directory = Some(Directory { tensors, resolved });
        Ok(true)
    }

    /// Step 3.
    fn check_tokenizer_section(&mut self, bytes: &[u8]) -> Result<bool> {
        let Some(h) = &self.header else { return Ok(false) };
        let tok = h.sections.tokenizer.clone();
        if bytes.len() < tok.end {
            return Ok(false);
        }
        if crc32fast::hash(&bytes[tok.clone()]) != h.raw.tokenizer_crc {
            return Err(bad(Status::TokenizerChecksum, "header.tokenizer_crc", h.raw.tokenizer_crc as u64, "must equal the CRC32 of the tokenizer section"));
        }
        if let Some(load) = &mut self.load {
            load.tokenizer = Some(Tokenizer::parse(&bytes[tok.clone()], h.hparams.vocab_size)?);
        }
        self.tokenizer_checked = true;
        self.data = Some(DataCursor { at: tok.end, tensor: None });
        Ok(true)
    }

    /// Step 4, as far as the bytes go. `Ok(true)`: the whole data section has been checked.
    fn check_data(&mut self, bytes: &[u8]) -> Result<bool> {
        let (Some(h), Some(d), Some(cursor)) = (&self.header, &self.directory, &mut self.data) else { return Ok(false) };
        let data = &h.sections.data;
        let have = bytes.len();
        loop {
            let Some(i) = cursor.tensor else {
                let end = have.min(data.start);
                if let Some(p) = first_non_zero(&bytes[cursor.at..end]) {
                    return Err(bad(Status::BadPadding, "padding.tokenizer_to_data", (cursor.at + p) as u64, "padding bytes must be zero"));
                }
                cursor.at = end;
                if end < data.start {
                    return Ok(false);
                }
                if d.tensors.is_empty() {
                    return Ok(cursor.at == data.end);
                }
                cursor.tensor = Some(0);
                continue;
            };
            let e = &d.tensors[i];
            if cursor.at < e.range.end {
                let block = e.dtype.block_bytes();
                let end = have.min(e.range.end);
                let whole = (end - cursor.at) / block * block;
                if let Some(b) = crate::quant::first_non_finite(e.dtype, &bytes[cursor.at..cursor.at + whole]) {
                    let at = (cursor.at - e.range.start) / block + b;
                    return Err(bad(
                        Status::BadTensorData,
                        field!("tensor[{}]", e.name),
                        at as u64,
                        "scales and f32 values must be finite (value = block/element index)",
                    ));
                }
                cursor.at += whole;
                if cursor.at < e.range.end {
                    return Ok(false);
                }
            }
            // The tensors tile the data section (read_directory), so the padding runs to the next.
            let pad_end = d.tensors.get(i + 1).map_or(data.end, |next| next.range.start);
            let end = have.min(pad_end);
            if let Some(p) = first_non_zero(&bytes[cursor.at..end]) {
                return Err(bad(Status::BadPadding, field!("tensor[{}].padding", e.name), (cursor.at + p) as u64, "padding after a tensor must be zero"));
            }
            cursor.at = end;
            if end < pad_end {
                return Ok(false);
            }
            if i + 1 == d.tensors.len() {
                return Ok(true);
            }
            cursor.tensor = Some(i + 1);
        }
    }
}

fn first_non_zero(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b != 0)
}
