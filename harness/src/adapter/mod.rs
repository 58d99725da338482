//! Adapters on the host: the writer for ADP1 / ASP1 / ALR1 (`abi/FORMAT.md`, "Adapters"), an
//! independent implementation of what applying one does to a package (the conformance suite checks
//! the runtime against it bit for bit), `diff` (parent + child → adapter), the PEFT LoRA importer and
//! the `trl adapter` CLI.
//!
//! The writer serialises exactly what it is given, checks nothing, so tests can build broken
//! adapters with it; [`diff`] is the path that builds correct ones.

pub mod cli;
pub mod diff;
pub mod peft;
pub mod svd;

use anyhow::{anyhow, ensure, Context, Result};
use tinyrustlm::adapter as rt;
use tinyrustlm::format::ModelIdentity;
use tinyrustlm::quant::{self, DType, QK};

pub use diff::{diff, DiffOptions, DiffReport, TensorReport};
pub use tinyrustlm::adapter::Kind;

/// Byte offsets of the fixed header fields (56 bytes).
pub mod hdr {
    pub const MAGIC: usize = 0;
    pub const FORMAT_VERSION: usize = 4;
    pub const HEADER_LEN: usize = 8;
    pub const RESERVED: usize = 12;
    pub const TOTAL_LEN: usize = 16;
    pub const PARENT: usize = 24;
    pub const PARENT_N_PARAMS: usize = 24;
    pub const PARENT_TENSOR_LAYOUT_CRC: usize = 32;
    pub const PARENT_TOKENIZER_CRC: usize = 36;
    pub const PARENT_FLAGS: usize = 40;
    pub const PARENT_N_TENSORS: usize = 44;
    pub const SCALE: usize = 48;
    pub const N_TARGETS: usize = 52;
    pub const LEN: usize = 56;
}

/// A target's delta as the writer takes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta {
    /// `rows × cols` values, row-major (`ADP1`, encoding 0).
    DenseF32(Vec<f32>),
    /// `rows` rows of q8_0 blocks (`ADP1`, encoding 1).
    DenseQ8_0(Vec<u8>),
    /// `(flat index, value)` pairs (`ASP1`), written in the order given.
    Sparse(Vec<(u32, f32)>),
    /// `a`: `rank × cols`, `b`: `rows × rank`, both row-major (`ALR1`).
    LowRank { rank: u32, a: Vec<f32>, b: Vec<f32> },
}

impl Delta {
    /// The table entry's `param`: encoding, n_entries or rank.
    fn param(&self) -> u32 {
        match self {
            Delta::DenseF32(_) => rt::DENSE_F32,
            Delta::DenseQ8_0(_) => rt::DENSE_Q8_0,
            Delta::Sparse(p) => p.len() as u32,
            Delta::LowRank { rank, .. } => *rank,
        }
    }

    fn payload(&self, out: &mut Vec<u8>) {
        match self {
            Delta::DenseF32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Delta::DenseQ8_0(b) => out.extend_from_slice(b),
            Delta::Sparse(p) => p.iter().for_each(|(i, x)| {
                out.extend_from_slice(&i.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }),
            Delta::LowRank { a, b, .. } => a.iter().chain(b).for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TargetSpec {
    /// The parent tensor's name.
    pub name: String,
    /// `[rows, cols]`; a 1-D tensor is `[1, len]`.
    pub rows: u32,
    pub cols: u32,
    pub delta: Delta,
}

/// An adapter in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSpec {
    pub kind: Kind,
    pub parent: ModelIdentity,
    pub scale: f32,
    pub targets: Vec<TargetSpec>,
}

impl AdapterSpec {
    /// Serialises: header, target table, payloads, CRC trailer (FORMAT.md "Adapters").
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&self.kind.magic());
        b.extend_from_slice(&rt::FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&(hdr::LEN as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes()); // total_len, filled in by reseal
        b.extend_from_slice(&self.parent.to_bytes());
        b.extend_from_slice(&self.scale.to_le_bytes());
        b.extend_from_slice(&(self.targets.len() as u32).to_le_bytes());
        for t in &self.targets {
            b.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
            b.extend_from_slice(t.name.as_bytes());
            for v in [t.rows, t.cols, t.delta.param()] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        for t in &self.targets {
            t.delta.payload(&mut b);
        }
        b.extend_from_slice(&[0; 4]);
        reseal(&mut b);
        b
    }

    /// Reads an adapter with the runtime's parser (every file rule checked; no parent).
    pub fn from_bytes(bytes: &[u8]) -> Result<AdapterSpec> {
        let a = rt::parse(bytes, None).map_err(|e| anyhow!("{e}"))?;
        let f32s = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<f32>>();
        let targets = a
            .targets
            .iter()
            .map(|t| TargetSpec {
                name: t.name.to_string(),
                rows: t.rows as u32,
                cols: t.cols as u32,
                delta: match t.payload {
                    rt::Payload::Dense { encoding: rt::DenseEncoding::F32, bytes } => Delta::DenseF32(f32s(bytes)),
                    rt::Payload::Dense { encoding: rt::DenseEncoding::Q8_0, bytes } => Delta::DenseQ8_0(bytes.to_vec()),
                    rt::Payload::Sparse { .. } => Delta::Sparse(t.payload.entries().collect()),
                    rt::Payload::LowRank { rank, a, b } => Delta::LowRank { rank: rank as u32, a: f32s(a), b: f32s(b) },
                },
            })
            .collect();
        Ok(AdapterSpec { kind: a.kind, parent: a.parent, scale: a.scale, targets })
    }
}

/// Sets `total_len` to the buffer's length and recomputes the trailer CRC, so a test can break one
/// rule without tripping the length and checksum checks first.
pub fn reseal(b: &mut [u8]) {
    let n = b.len();
    if n >= hdr::TOTAL_LEN + 8 {
        b[hdr::TOTAL_LEN..hdr::TOTAL_LEN + 8].copy_from_slice(&(n as u64).to_le_bytes());
    }
    if n >= 4 {
        let crc = crc32fast::hash(&b[..n - 4]);
        b[n - 4..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The adapter's digest in the assembly-state chain: its trailer (the artifact CRC32).
pub fn digest(adapter_bytes: &[u8]) -> u32 {
    let n = adapter_bytes.len();
    u32::from_le_bytes(adapter_bytes[n - 4..].try_into().unwrap())
}

/// `state_k = crc32(state_{k−1} as u32 LE ++ digest_k as u32 LE)`, written out independently of the
/// runtime's `adapter::chain`.
pub fn assembly_state(identity: &ModelIdentity, digests: &[u32]) -> u32 {
    let mut state = crc32fast::hash(&identity.to_bytes());
    for d in digests {
        let mut h = crc32fast::Hasher::new();
        h.update(&state.to_le_bytes());
        h.update(&d.to_le_bytes());
        state = h.finalize();
    }
    state
}

/// The addends of one row of a target, in f64 (the documented arithmetic, written out plainly).
/// `sparse_row`: the row's `(column, value)` entries, for sparse targets.
fn row_addends(t: &TargetSpec, scale: f64, i: usize, sparse_row: &[(usize, f32)], out: &mut [f64]) {
    let cols = t.cols as usize;
    out.iter_mut().for_each(|a| *a = 0.0);
    match &t.delta {
        Delta::DenseF32(v) => {
            for j in 0..cols {
                out[j] = scale * v[i * cols + j] as f64;
            }
        }
        Delta::DenseQ8_0(bytes) => {
            let row_bytes = cols / DType::Q8_0.block_elems() * DType::Q8_0.block_bytes();
            let mut d = vec![0f32; cols];
            quant::dequantize_row(DType::Q8_0, &bytes[i * row_bytes..(i + 1) * row_bytes], &mut d);
            for j in 0..cols {
                out[j] = scale * d[j] as f64;
            }
        }
        Delta::Sparse(_) => {
            for &(j, value) in sparse_row {
                out[j] = scale * value as f64;
            }
        }
        Delta::LowRank { rank, a, b } => {
            let r = *rank as usize;
            for j in 0..cols {
                let mut sum = 0.0f64;
                for k in 0..r {
                    sum += b[i * r + k] as f64 * a[k * cols + j] as f64;
                }
                out[j] = scale * sum;
            }
        }
    }
}

/// What applying `adapter` to `package` gives, as a new package (artifact CRC updated), computed on
/// the host from the rules in FORMAT.md. Checks only what it needs to compute: the targets must
/// exist with the stated shapes, and the results must be finite.
pub fn apply_to_package(package: &[u8], adapter: &AdapterSpec) -> Result<Vec<u8>> {
    let pkg = tinyrustlm::format::parse(package).map_err(|e| anyhow!("parent package: {e}"))?;
    ensure!(adapter.parent == pkg.identity, "the adapter was made for another model");
    let mut out = package.to_vec();
    let scale = adapter.scale as f64;
    for t in &adapter.targets {
        let e = pkg.tensors.iter().find(|e| e.name == t.name).with_context(|| format!("no tensor {}", t.name))?;
        ensure!(e.rows == t.rows as usize && e.row_len == t.cols as usize, "target {}: shape [{}, {}] is not the tensor's", t.name, t.rows, t.cols);
        let (rows, cols) = (e.rows, e.row_len);
        let row_bytes = e.dtype.row_bytes(cols).unwrap();
        let mut sparse_rows: std::collections::BTreeMap<usize, Vec<(usize, f32)>> = Default::default();
        if let Delta::Sparse(pairs) = &t.delta {
            for &(index, value) in pairs {
                sparse_rows.entry(index as usize / cols).or_default().push((index as usize % cols, value));
            }
        }
        let is_sparse = matches!(t.delta, Delta::Sparse(_));
        let mut add = vec![0f64; cols];
        let mut vals = vec![0f32; cols];
        for i in 0..rows {
            let sparse_row = sparse_rows.get(&i).map_or(&[][..], |v| v.as_slice());
            if is_sparse && sparse_row.is_empty() {
                continue;
            }
            row_addends(t, scale, i, sparse_row, &mut add);
            let row = &mut out[e.range.start + i * row_bytes..e.range.start + (i + 1) * row_bytes];
            quant::dequantize_row(e.dtype, row, &mut vals);
            let unit = e.dtype.block_elems();
            let unit_bytes = e.dtype.block_bytes();
            for u in 0..cols / unit {
                let adds = &add[u * unit..(u + 1) * unit];
                if adds.iter().all(|&a| a == 0.0) {
                    continue; // untouched, bit for bit
                }
                let v = &mut vals[u * unit..(u + 1) * unit];
                for (x, &a) in v.iter_mut().zip(adds) {
                    if a != 0.0 {
                        *x = (*x as f64 + a) as f32;
                        ensure!(x.is_finite(), "target {}: a weight of row {i} becomes non-finite", t.name);
                    }
                }
                let dst = &mut row[u * unit_bytes..(u + 1) * unit_bytes];
                quant::quantize_row(e.dtype, v, dst);
                ensure!(quant::first_non_finite(e.dtype, dst).is_none(), "target {}: a requantized scale of row {i} is not finite", t.name);
            }
        }
    }
    crate::package::reseal(&mut out);
    Ok(out)
}

/// Dequantized values of tensor `name` in `package` (row-major).
pub fn tensor_values(package: &[u8], name: &str) -> Result<Vec<f32>> {
    let pkg = tinyrustlm::format::parse(package).map_err(|e| anyhow!("{e}"))?;
    let e = pkg.tensors.iter().find(|e| e.name == name).with_context(|| format!("no tensor {name}"))?;
    let mut v = vec![0f32; e.rows * e.row_len];
    let row_bytes = e.dtype.row_bytes(e.row_len).unwrap();
    for (src, dst) in package[e.range.clone()].chunks_exact(row_bytes).zip(v.chunks_exact_mut(e.row_len)) {
        quant::dequantize_row(e.dtype, src, dst);
    }
    Ok(v)
}
