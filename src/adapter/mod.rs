//! Adapter deltas: turn the loaded parent model into a descendant, atomically and reversibly.
//!
//! Three formats share one header (byte layout in `abi/FORMAT.md`, "Adapters"): `ADP1` carries a
//! dense delta per target tensor, `ASP1` sparse `(index, value)` pairs, `ALR1` a low-rank pair
//! `A` (`r × in`), `B` (`out × r`) applied LoRA-style as `W += scale · B·A`. Every adapter names the
//! identity of the parent it was made for, and [`parse`] refuses it before a weight is touched if
//! that is not the loaded model.
//!
//! Pipeline: [`parse`] checks the bytes (and, given the parent, binds targets to its tensors) →
//! `patch::for_each_change` computes the new bytes of every changed unit (an `f32` element or a
//! quant block) and checks they are finite → [`AdapterStack::apply`] stages them, then swaps them
//! into the package bytes in one pass that cannot fail. The staged buffer, after the swap, holds the
//! parent's bytes: that is the undo log, and swapping again restores the parent bit for bit.
//!
//! The arithmetic (what another implementation must do to get the same bytes) is in `patch.rs`.

use alloc::vec::Vec;

use crate::error::{oom, Error, Field, Result, Status};
use crate::format::{ModelIdentity, TensorEntry};
use crate::model::Model;

mod parse;
mod patch;
#[cfg(test)]
mod tests;

pub use parse::parse;
pub use patch::for_each_change;

pub const MAGIC_DENSE: [u8; 4] = *b"ADP1";
pub const MAGIC_SPARSE: [u8; 4] = *b"ASP1";
pub const MAGIC_LOW_RANK: [u8; 4] = *b"ALR1";
pub const FORMAT_VERSION: u32 = 1;
/// Fixed header: magic, version, header_len, reserved, total_len, parent identity (24 bytes),
/// scale, n_targets.
pub const HEADER_LEN: usize = 56;
/// The artifact CRC32 after the last payload.
pub const TRAILER_LEN: usize = 4;
/// Byte offset of the 24-byte parent identity in the header (`ModelIdentity::to_bytes` layout).
pub const PARENT_OFFSET: usize = 24;

/// Targets per adapter: one per parent tensor at most, and SLM1 allows 4096 tensors.
pub const MAX_TARGETS: u32 = 4096;
/// Largest low-rank `r` (also bounded by `min(rows, cols)` of the target). LoRA adapters in use
/// stay at or below 256; the cap bounds the `f64` copy of `A` made while applying.
pub const MAX_RANK: u32 = 256;
/// Adapters applied at once. Each keeps an undo log, so memory, not this cap, is the usual limit.
pub const MAX_APPLIED: usize = 64;
/// Tensor names in SLM1 are 1..=64 bytes of `[a-z0-9_.]`; a target name outside that cannot
/// name a tensor.
pub const MAX_NAME_LEN: usize = crate::format::MAX_TENSOR_NAME_LEN;

/// Dense payload encodings (`param` of an `ADP1` target).
pub const DENSE_F32: u32 = 0;
pub const DENSE_Q8_0: u32 = 1;

/// Which format an adapter is, from its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dense,
    Sparse,
    LowRank,
}

impl Kind {
    pub fn from_magic(magic: &[u8]) -> Option<Kind> {
        match magic {
            m if m == MAGIC_DENSE => Some(Kind::Dense),
            m if m == MAGIC_SPARSE => Some(Kind::Sparse),
            m if m == MAGIC_LOW_RANK => Some(Kind::LowRank),
            _ => None,
        }
    }
    pub fn magic(self) -> [u8; 4] {
        match self {
            Kind::Dense => MAGIC_DENSE,
            Kind::Sparse => MAGIC_SPARSE,
            Kind::LowRank => MAGIC_LOW_RANK,
        }
    }
    /// `"dense"`, `"sparse"` or `"lowrank"` (the `trl adapter diff --kind` values).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dense => "dense",
            Kind::Sparse => "sparse",
            Kind::LowRank => "lowrank",
        }
    }
}

/// How an `ADP1` target's delta is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseEncoding {
    /// `rows × cols` little-endian `f32`.
    F32,
    /// `rows` rows of `cols / 32` `q8_0` blocks (34 bytes each, FORMAT.md "Dtypes").
    Q8_0,
}

/// A target's delta, borrowed from the adapter bytes. Lengths are checked by [`parse`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Payload<'a> {
    Dense {
        encoding: DenseEncoding,
        bytes: &'a [u8],
    },
    /// `n_entries × (u32 index, f32 value)`, indices strictly increasing, `< rows · cols`.
    Sparse {
        pairs: &'a [u8],
    },
    /// `a`: `rank × cols` f32 (row-major), then `b`: `rows × rank` f32.
    LowRank {
        rank: usize,
        a: &'a [u8],
        b: &'a [u8],
    },
}

impl Payload<'_> {
    /// Number of sparse entries (0 for the other kinds).
    pub fn n_entries(&self) -> usize {
        match self {
            Payload::Sparse { pairs } => pairs.len() / 8,
            _ => 0,
        }
    }
    /// The sparse `(index, value)` pairs in file order (empty for the other kinds).
    pub fn entries(&self) -> impl Iterator<Item = (u32, f32)> + '_ {
        let pairs: &[u8] = match self {
            Payload::Sparse { pairs } => pairs,
            _ => &[],
        };
        pairs.chunks_exact(8).map(|p| (le_u32(&p[0..4]), f32::from_bits(le_u32(&p[4..8]))))
    }
}

/// One target tensor of an adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Target<'a> {
    pub name: &'a str,
    /// `[rows, cols]` as the adapter states it; a 1-D tensor is `[1, len]`.
    pub rows: usize,
    pub cols: usize,
    /// The parent's directory index, when parsed against a parent.
    pub tensor: Option<usize>,
    pub payload: Payload<'a>,
}

/// A parsed adapter: header fields and borrowed payloads.
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter<'a> {
    pub kind: Kind,
    pub parent: ModelIdentity,
    pub scale: f32,
    pub targets: Vec<Target<'a>>,
    /// The trailer: CRC32 of every byte before it. Also the adapter's digest in the assembly chain.
    pub artifact_crc: u32,
}

/// What [`parse`] checks an adapter against: the loaded model's identity and tensor directory.
#[derive(Clone, Copy, Debug)]
pub struct Parent<'p> {
    pub identity: ModelIdentity,
    pub tensors: &'p [TensorEntry],
}

impl<'p> Parent<'p> {
    pub fn of(package: &'p crate::format::Package) -> Parent<'p> {
        Parent { identity: package.identity, tensors: &package.tensors }
    }
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn le_f32(b: &[u8]) -> f32 {
    f32::from_bits(le_u32(b))
}

/// One link of the assembly-state chain: `crc32(state as u32 LE ++ digest as u32 LE)`.
/// `state_0 = crc32(parent identity bytes)`; applying an adapter with artifact CRC `d` moves the
/// state to `chain(state, d)`; removing it moves it back.
pub fn chain(state: u32, digest: u32) -> u32 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&state.to_le_bytes());
    b[4..].copy_from_slice(&digest.to_le_bytes());
    crc32fast::hash(&b)
}

/// Spans of the package bytes with replacement contents. Before the swap it holds the adapter's
/// new bytes; after it, the parent's (the undo log). Spans are disjoint, in the order they were
/// pushed, and contiguous pushes are merged.
#[derive(Debug, Default)]
pub struct UndoLog {
    /// `(offset in the package, length)`.
    spans: Vec<(usize, usize)>,
    bytes: Vec<u8>,
}

impl UndoLog {
    fn push(&mut self, offset: usize, new: &[u8]) -> Result<()> {
        if let Some(last) = self.spans.last_mut() {
            if last.0 + last.1 == offset {
                self.bytes.try_reserve(new.len()).map_err(|_| oom("adapter.undo_log", new.len()))?;
                self.bytes.extend_from_slice(new);
                last.1 += new.len();
                return Ok(());
            }
        }
        self.spans.try_reserve(1).map_err(|_| oom("adapter.undo_log", core::mem::size_of::<(usize, usize)>()))?;
        self.bytes.try_reserve(new.len()).map_err(|_| oom("adapter.undo_log", new.len()))?;
        self.spans.push((offset, new.len()));
        self.bytes.extend_from_slice(new);
        Ok(())
    }

    /// Exchanges the logged bytes with the package's. Spans were computed from this package and
    /// lie inside it; a span that does not (a bug) is skipped rather than trapping.
    fn swap_with(&mut self, package: &mut [u8]) {
        let mut at = 0;
        for &(offset, len) in &self.spans {
            if let (Some(dst), Some(src)) = (package.get_mut(offset..offset + len), self.bytes.get_mut(at..at + len)) {
                dst.swap_with_slice(src);
            }
            at += len;
        }
    }

    /// Memory the log holds: the saved bytes plus the span table.
    pub fn byte_len(&self) -> usize {
        self.bytes.len() + self.spans.len() * core::mem::size_of::<(usize, usize)>()
    }

    /// Bytes of the package this log covers.
    pub fn covered_bytes(&self) -> usize {
        self.bytes.len()
    }
}

struct Applied {
    digest: u32,
    state_crc: u32,
    undo: UndoLog,
}

/// The adapters applied to a model, newest last, each with the bytes that restore its parent.
#[derive(Default)]
pub struct AdapterStack {
    applied: Vec<Applied>,
}

impl AdapterStack {
    pub fn new() -> AdapterStack {
        AdapterStack { applied: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.applied.len()
    }

    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
    }

    /// The assembly-state checksum: `base` (the CRC32 of the parent identity) chained with every
    /// applied adapter's digest, oldest first.
    pub fn state_crc(&self, base: u32) -> u32 {
        self.applied.last().map_or(base, |a| a.state_crc)
    }

    /// Bytes held by all undo logs.
    pub fn undo_bytes(&self) -> usize {
        self.applied.iter().map(|a| a.undo.byte_len()).sum()
    }

    fn check_room(&self) -> Result<()> {
        if self.applied.len() >= MAX_APPLIED {
            return Err(Error::new(Status::LimitExceeded, "adapters_applied", self.applied.len() as u64, "at most 64 adapters can be applied at once"));
        }
        Ok(())
    }

    /// Everything [`apply`](Self::apply) checks, without changing anything: the bytes, the parent
    /// identity, the targets, and that every updated weight would be finite.
    pub fn validate(&self, bytes: &[u8], model: &Model) -> Result<()> {
        self.check_room()?;
        let package = model.package();
        let adapter = parse(bytes, Some(Parent::of(package)))?;
        for_each_change(&adapter, &package.tensors, model.bytes(), &mut |_, _| Ok(()))
    }

    /// Validates `bytes` against `model` and applies them. On error nothing has changed.
    pub fn apply(&mut self, bytes: &[u8], model: &mut Model, base: u32) -> Result<()> {
        self.check_room()?;
        self.applied.try_reserve(1).map_err(|_| oom("adapters", core::mem::size_of::<Applied>()))?;
        let package = model.package();
        let adapter = parse(bytes, Some(Parent::of(package)))?;
        let mut log = UndoLog::default();
        // Reserve the worst case up front (every unit of every target changes) so the log does not
        // grow by doubling: a dense adapter on one big tensor would otherwise peak at twice its size.
        let worst = patch::max_changed_bytes(&adapter, &package.tensors);
        log.bytes.try_reserve_exact(worst).map_err(|_| oom("adapter.undo_log", worst))?;
        for_each_change(&adapter, &package.tensors, model.bytes(), &mut |offset, new| log.push(offset, new))?;
        // Commit: nothing below can fail.
        log.swap_with(model.bytes_mut());
        let state_crc = chain(self.state_crc(base), adapter.artifact_crc);
        self.applied.push(Applied { digest: adapter.artifact_crc, state_crc, undo: log });
        Ok(())
    }

    /// Restores the parent of the newest adapter. `WRONG_STATE` when none is applied.
    pub fn remove_last(&mut self, model: &mut Model) -> Result<()> {
        let Some(mut last) = self.applied.pop() else {
            return Err(Error::new(Status::WrongState, "adapters_applied", 0, "no adapter is applied"));
        };
        last.undo.swap_with(model.bytes_mut());
        Ok(())
    }

    /// Removes every adapter, newest first: the model is its base weights again.
    pub fn reset(&mut self, model: &mut Model) {
        while self.remove_last(model).is_ok() {}
    }

    /// Artifact CRCs of the applied adapters, oldest first.
    pub fn digests(&self) -> impl Iterator<Item = u32> + '_ {
        self.applied.iter().map(|a| a.digest)
    }
}
