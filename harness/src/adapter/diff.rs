//! `trl adapter diff`: the adapter that turns one package into another of the same layout, and how
//! closely it does.
//!
//! * dense: per changed tensor, `δ = child − parent` on the dequantized values; for `f32` targets
//!   each `δ` is then nudged by a few ulps where needed so that the runtime's
//!   `f32(f64(parent) + δ)` lands exactly on the child's value (possible whenever the change is
//!   small next to the weight, i.e. for any fine-tune).
//! * sparse: the same `δ`s, keeping the `top_k` largest in magnitude over all tensors (ties: earlier
//!   tensor, then lower index), or every non-zero one.
//! * lowrank: per changed tensor, the rank-`r` truncated SVD of `child − parent` (`svd.rs`),
//!   `B = U_r`, `A = Σ_r V_rᵀ`, rank capped at `min(rows, cols, 256)`.
//!
//! The report comes from applying the adapter on the host (`apply_to_package`, the documented
//! arithmetic) and comparing with the child: bytes identical or not, max |error| and the error
//! relative to the change (Frobenius norms), per tensor.

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use tinyrustlm::format::{self, Package};

use super::*;

#[derive(Clone, Debug)]
pub struct DiffOptions {
    pub kind: Kind,
    /// Low-rank `r` (capped per tensor at `min(rows, cols, 256)`).
    pub rank: usize,
    /// Sparse: keep this many entries (all non-zero ones when `None`).
    pub top_k: Option<usize>,
    /// Dense: store the deltas as q8_0 (4× smaller, lossy).
    pub dense_q8_0: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions { kind: Kind::Dense, rank: 8, top_k: None, dense_q8_0: false }
    }
}

/// How well the adapter reproduces one changed tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub dtype: String,
    pub rows: usize,
    pub cols: usize,
    /// Elements whose dequantized value differs between parent and child.
    pub changed_elements: usize,
    /// parent + adapter has exactly the child's bytes for this tensor.
    pub bytes_identical: bool,
    /// max |(parent + adapter) − child| over the dequantized values.
    pub max_abs_error: f64,
    /// ‖(parent + adapter) − child‖ / ‖child − parent‖ (Frobenius); 0 is exact.
    pub relative_error: f64,
    /// Low-rank: the rank used and the kept singular values.
    pub rank: Option<usize>,
    pub singular_values: Option<Vec<f64>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiffReport {
    pub kind: String,
    pub adapter_bytes: usize,
    pub targets: Vec<TensorReport>,
    /// parent + adapter == child, every byte.
    pub packages_identical: bool,
    pub max_abs_error: f64,
    /// Over all changed tensors together.
    pub relative_error: f64,
}

fn parse(bytes: &[u8], what: &str) -> Result<Package> {
    format::parse(bytes).map_err(|e| anyhow!("{what}: {e}"))
}

fn values(bytes: &[u8], e: &format::TensorEntry) -> Vec<f32> {
    let mut v = vec![0f32; e.rows * e.row_len];
    let row_bytes = e.dtype.row_bytes(e.row_len).unwrap();
    for (src, dst) in bytes[e.range.clone()].chunks_exact(row_bytes).zip(v.chunks_exact_mut(e.row_len)) {
        quant::dequantize_row(e.dtype, src, dst);
    }
    v
}

/// The f32 `δ` for which the runtime's `f32(f64(p) + δ)` equals `c`, or the nearest try.
fn exact_delta(p: f32, c: f32) -> f32 {
    let lands = |d: f32| (p as f64 + d as f64) as f32 == c;
    let d0 = (c as f64 - p as f64) as f32;
    if lands(d0) {
        return d0;
    }
    let (mut up, mut down) = (d0, d0);
    for _ in 0..8 {
        up = up.next_up();
        down = down.next_down();
        for d in [up, down] {
            if d != 0.0 && lands(d) {
                return d;
            }
        }
    }
    d0
}

/// Builds the adapter from `parent` to `child` and reports how exactly it reproduces the child.
pub fn diff(parent: &[u8], child: &[u8], opts: &DiffOptions) -> Result<(AdapterSpec, DiffReport)> {
    let pp = parse(parent, "parent")?;
    let cp = parse(child, "child")?;
    if pp.identity != cp.identity {
        bail!("the child has another layout (identity {:?} vs the parent's {:?}): an adapter can only change weights", cp.identity, pp.identity);
    }
    let changed: Vec<usize> = (0..pp.tensors.len()).filter(|&i| parent[pp.tensors[i].range.clone()] != child[pp.tensors[i].range.clone()]).collect();
    // δ of a tensor: dequantized child − parent, ulp-exact where possible.
    let delta_of = |e: &format::TensorEntry| -> Vec<f32> {
        let (p, c) = (values(parent, e), values(child, e));
        p.iter().zip(&c).map(|(&p, &c)| if p.to_bits() == c.to_bits() { 0.0 } else { exact_delta(p, c) }).collect()
    };
    let mut targets = Vec::new();
    let mut lowrank_info: Vec<(usize, Vec<f64>)> = Vec::new();
    match opts.kind {
        Kind::Dense => {
            for &ti in &changed {
                let e = &pp.tensors[ti];
                let delta = delta_of(e);
                let delta = if opts.dense_q8_0 {
                    if e.row_len % QK != 0 {
                        bail!("tensor {}: q8_0 deltas need a row length that is a multiple of 32 (it is {})", e.name, e.row_len);
                    }
                    let row_bytes = DType::Q8_0.row_bytes(e.row_len).unwrap();
                    let mut out = vec![0u8; e.rows * row_bytes];
                    for (src, dst) in delta.chunks_exact(e.row_len).zip(out.chunks_exact_mut(row_bytes)) {
                        quant::quantize_row(DType::Q8_0, src, dst);
                    }
                    Delta::DenseQ8_0(out)
                } else {
                    Delta::DenseF32(delta)
                };
                targets.push(TargetSpec { name: e.name.clone(), rows: e.rows as u32, cols: e.row_len as u32, delta });
            }
        }
        Kind::Sparse => {
            let mut all: Vec<(usize, u32, f32)> = Vec::new();
            for &ti in &changed {
                for (j, d) in delta_of(&pp.tensors[ti]).into_iter().enumerate() {
                    if d != 0.0 {
                        let j =
                            u32::try_from(j).map_err(|_| anyhow!("tensor {} has more than 2^32 elements: too big for ASP1 indices", pp.tensors[ti].name))?;
                        all.push((ti, j, d));
                    }
                }
            }
            if let Some(k) = opts.top_k {
                all.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
                all.truncate(k);
                all.sort_by_key(|&(t, j, _)| (t, j));
            }
            // `all` is ordered by (tensor, index): one run per target.
            for run in all.chunk_by(|x, y| x.0 == y.0) {
                let pairs: Vec<(u32, f32)> = run.iter().map(|x| (x.1, x.2)).collect();
                let e = &pp.tensors[run[0].0];
                targets.push(TargetSpec { name: e.name.clone(), rows: e.rows as u32, cols: e.row_len as u32, delta: Delta::Sparse(pairs) });
            }
        }
        Kind::LowRank => {
            for &ti in &changed {
                let e = &pp.tensors[ti];
                let r = opts.rank.min(e.rows).min(e.row_len).min(rt::MAX_RANK as usize).max(1);
                // The exact change, in f64.
                let (p, c) = (values(parent, e), values(child, e));
                let m: Vec<f64> = p.iter().zip(&c).map(|(&p, &c)| c as f64 - p as f64).collect();
                let lr = svd::truncated(&m, e.rows, e.row_len, r, crc32fast::hash(e.name.as_bytes()) as u64);
                let a = lr.a.iter().map(|&x| x as f32).collect();
                let b = lr.b.iter().map(|&x| x as f32).collect();
                targets.push(TargetSpec { name: e.name.clone(), rows: e.rows as u32, cols: e.row_len as u32, delta: Delta::LowRank { rank: r as u32, a, b } });
                lowrank_info.push((r, lr.singular_values));
            }
        }
    }
    if targets.is_empty() {
        bail!("parent and child have the same weights: there is nothing to diff");
    }
    let spec = AdapterSpec { kind: opts.kind, parent: pp.identity, scale: 1.0, targets };
    let adapter_bytes = spec.to_bytes().len();
    let result = apply_to_package(parent, &spec)?;

    let mut reports = Vec::new();
    let (mut err2, mut change2, mut max_abs) = (0f64, 0f64, 0f64);
    for (n, &ti) in changed.iter().enumerate() {
        let e = &pp.tensors[ti];
        let (p, c, r) = (values(parent, e), values(child, e), values(&result, e));
        let (mut e2, mut c2, mut m) = (0f64, 0f64, 0f64);
        let mut n_changed = 0;
        for ((&p, &c), &r) in p.iter().zip(&c).zip(&r) {
            n_changed += (p.to_bits() != c.to_bits()) as usize;
            let d = r as f64 - c as f64;
            e2 += d * d;
            c2 += (c as f64 - p as f64).powi(2);
            m = m.max(d.abs());
        }
        err2 += e2;
        change2 += c2;
        max_abs = max_abs.max(m);
        let (rank, singular_values) = match lowrank_info.get(n) {
            Some((r, s)) if opts.kind == Kind::LowRank => (Some(*r), Some(s.clone())),
            _ => (None, None),
        };
        reports.push(TensorReport {
            name: e.name.clone(),
            dtype: e.dtype.name().to_string(),
            rows: e.rows,
            cols: e.row_len,
            changed_elements: n_changed,
            bytes_identical: result[e.range.clone()] == child[e.range.clone()],
            max_abs_error: m,
            relative_error: if c2 > 0.0 { (e2 / c2).sqrt() } else { 0.0 },
            rank,
            singular_values,
        });
    }
    let report = DiffReport {
        kind: opts.kind.name().to_string(),
        adapter_bytes,
        targets: reports,
        packages_identical: result == child,
        max_abs_error: max_abs,
        relative_error: if change2 > 0.0 { (err2 / change2).sqrt() } else { 0.0 },
    };
    Ok((spec, report))
}
