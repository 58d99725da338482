//! The arithmetic of applying an adapter: which bytes change and to what. Deterministic on every
//! host (IEEE-754 `f64` and `f32`, no fused multiply-add, fixed summation order).
//!
//! For every element `(i, j)` of a target tensor the adapter defines an addend in `f64`:
//!
//! * dense: `add = f64(scale) · f64(δ[i][j])` (`δ` the stored `f32`, or the `q8_0` payload row
//!   dequantized to `f32` by the FORMAT.md formula `d · q`);
//! * sparse: `add = f64(scale) · f64(value)` at `index = i · cols + j`, `0.0` elsewhere;
//! * low-rank: `Δ = Σ_{k = 0}^{r − 1} f64(B[i][k]) · f64(A[k][j])`, summed from `0.0` in
//!   increasing `k`, then `add = f64(scale) · Δ`.
//!
//! A unit — one element of an `f32` tensor, one block of a quantized one (32 elements for today's
//! dtypes; its size comes from the dtype's block layout) — whose addends are all `0.0` is left
//! exactly as it is. Any other unit is rewritten:
//!
//! * `f32`: `w' = f32(f64(w) + add)` (round to nearest, ties to even);
//! * `q8_0` / `q4_0` / `q4_1`: the block is dequantized to its `f32` values `v` (FORMAT.md
//!   formulas), each element with a non-zero addend becomes `f32(f64(v) + add)`, and the values are
//!   requantized with ggml's reference quantizer of the block's dtype (`quant::quantize_row`).
//!
//! A rewritten unit must be finite (every `f32`; the requantized block's `d`, and `m` for `q4_1`,
//! as `f16`), else the adapter is refused with `ADAPTER_NON_FINITE` before anything is written.

use alloc::vec::Vec;

use super::*;
use crate::field;
use crate::quant::{self, BlockLayout, DType, MAX_BLOCK_BYTES, MAX_BLOCK_ELEMENTS};

fn try_vec<T: Clone>(len: usize, fill: T, field: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| oom(field, len.saturating_mul(core::mem::size_of::<T>())))?;
    v.resize(len, fill);
    Ok(v)
}

fn non_finite(name: &str, element: usize) -> Error {
    Error::new(
        Status::AdapterNonFinite,
        field!("target[{}].result", name),
        element as u64,
        "the updated weights must be finite (f32 values; requantized block scales as f16); value = element index",
    )
}

/// `(elements, bytes)` of one block of `layout`, or a refusal when the patcher's fixed block
/// buffers (sized by [`MAX_BLOCK_BYTES`] / [`MAX_BLOCK_ELEMENTS`], the largest layout of any
/// dtype) cannot hold it — so a layout added without updating those bounds is a status, not a
/// panic.
fn block_size(layout: &BlockLayout, name: &str) -> Result<(usize, usize)> {
    if layout.bytes > MAX_BLOCK_BYTES || layout.elements > MAX_BLOCK_ELEMENTS || layout.elements == 0 {
        return Err(Error::new(
            Status::UnsupportedDtype,
            field!("target[{}].dtype", name),
            layout.bytes as u64,
            "the adapter patcher holds blocks of at most MAX_BLOCK_BYTES bytes / MAX_BLOCK_ELEMENTS elements (value = block bytes)",
        ));
    }
    Ok((layout.elements, layout.bytes))
}

/// Upper bound of the bytes [`for_each_change`] can report for `adapter`: every unit it could touch.
pub(crate) fn max_changed_bytes(adapter: &Adapter<'_>, tensors: &[TensorEntry]) -> usize {
    adapter
        .targets
        .iter()
        .filter_map(|t| {
            let e = tensors.get(t.tensor?)?;
            let all = e.range.len();
            Some(match t.payload {
                Payload::Sparse { .. } => t.payload.n_entries().saturating_mul(e.dtype.block_bytes()).min(all),
                _ => all,
            })
        })
        .fold(0usize, |a, b| a.saturating_add(b))
}

/// Computes the adapter's effect on `package` (the loaded model's bytes, `tensors` its directory)
/// without changing it: calls `sink(offset, new_bytes)` for every rewritten unit, targets in file
/// order and units in increasing offset within a target. Fails with `ADAPTER_NON_FINITE` on the
/// first non-finite result, or with whatever `sink` returns.
///
/// The adapter must have been parsed against this model (every target bound to a tensor of the
/// stated shape).
pub fn for_each_change(adapter: &Adapter<'_>, tensors: &[TensorEntry], package: &[u8], sink: &mut dyn FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
    let scale = adapter.scale as f64;
    for t in &adapter.targets {
        let e = t.tensor.and_then(|i| tensors.get(i)).filter(|e| e.rows == t.rows && e.row_len == t.cols && e.range.end <= package.len());
        let Some(e) = e else {
            return Err(Error::new(Status::AdapterUnknownTarget, field!("target[{}]", t.name), 0, "the adapter was not parsed against the loaded model"));
        };
        match t.payload {
            Payload::Sparse { .. } => sparse(t, e, package, scale, sink)?,
            _ => dense_or_low_rank(t, e, package, scale, sink)?,
        }
    }
    Ok(())
}

fn dense_or_low_rank(t: &Target<'_>, e: &TensorEntry, package: &[u8], scale: f64, sink: &mut dyn FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
    let (rows, cols) = (t.rows, t.cols);
    let row_bytes = e.range.len() / rows;
    let mut add = try_vec(cols, 0.0f64, "adapter.scratch")?;
    let mut row = try_vec(cols, 0.0f32, "adapter.scratch")?;
    // Low-rank: A widened to f64 once, shape [rank, cols].
    let a64 = match t.payload {
        Payload::LowRank { rank, a, .. } => {
            let mut v = try_vec(rank * cols, 0.0f64, "adapter.scratch")?;
            for (x, b) in v.iter_mut().zip(a.chunks_exact(4)) {
                *x = le_f32(b) as f64;
            }
            v
        }
        _ => Vec::new(),
    };
    let q8_row = DType::Q8_0.row_bytes(cols).unwrap_or(0);
    for i in 0..rows {
        match t.payload {
            Payload::Dense { encoding: DenseEncoding::F32, bytes } => {
                for (a, d) in add.iter_mut().zip(bytes[i * cols * 4..(i + 1) * cols * 4].chunks_exact(4)) {
                    *a = scale * le_f32(d) as f64;
                }
            }
            Payload::Dense { encoding: DenseEncoding::Q8_0, bytes } => {
                quant::dequantize_row(DType::Q8_0, &bytes[i * q8_row..(i + 1) * q8_row], &mut row);
                for (a, &d) in add.iter_mut().zip(&row) {
                    *a = scale * d as f64;
                }
            }
            Payload::LowRank { rank, b, .. } => {
                add.fill(0.0);
                for k in 0..rank {
                    let bk = le_f32(&b[(i * rank + k) * 4..]) as f64;
                    for (acc, &ak) in add.iter_mut().zip(&a64[k * cols..(k + 1) * cols]) {
                        *acc += bk * ak;
                    }
                }
                for a in add.iter_mut() {
                    *a *= scale;
                }
            }
            Payload::Sparse { .. } => return Ok(()),
        }
        let start = e.range.start + i * row_bytes;
        update_row(e.dtype, &package[start..start + row_bytes], start, i * cols, &add, &mut row, t.name, sink)?;
    }
    Ok(())
}

/// Rewrites the units of one row (or one block, for sparse) that have a non-zero addend.
/// `old` the row's bytes at package offset `offset`, `first` the flat index of its first element,
/// `add` one addend per element, `vals` scratch of at least `add.len()` values.
#[allow(clippy::too_many_arguments)]
fn update_row(
    dtype: DType,
    old: &[u8],
    offset: usize,
    first: usize,
    add: &[f64],
    vals: &mut [f32],
    name: &str,
    sink: &mut dyn FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    if dtype == DType::F32 {
        for (j, (&a, w)) in add.iter().zip(old.chunks_exact(4)).enumerate() {
            if a == 0.0 {
                continue;
            }
            let new = (le_f32(w) as f64 + a) as f32;
            if !new.is_finite() {
                return Err(non_finite(name, first + j));
            }
            sink(offset + j * 4, &new.to_le_bytes())?;
        }
        return Ok(());
    }
    let (block_elems, block_bytes) = block_size(dtype.layout(), name)?;
    let mut block = [0u8; MAX_BLOCK_BYTES];
    let block = &mut block[..block_bytes];
    for (b, (add, old)) in add.chunks_exact(block_elems).zip(old.chunks_exact(block_bytes)).enumerate() {
        if add.iter().all(|&a| a == 0.0) {
            continue;
        }
        // Callers pass at least one block of scratch (a whole row, or a MAX_BLOCK_ELEMENTS array);
        // anything shorter means the target's shape is not the tensor's.
        let Some(v) = vals.get_mut(..block_elems) else {
            return Err(Error::new(
                Status::AdapterShapeMismatch,
                field!("target[{}]", name),
                vals.len() as u64,
                "a target row must hold whole blocks of the tensor's dtype",
            ));
        };
        quant::dequantize_row(dtype, old, v);
        for (j, (x, &a)) in v.iter_mut().zip(add).enumerate() {
            if a != 0.0 {
                *x = (*x as f64 + a) as f32;
                if !x.is_finite() {
                    return Err(non_finite(name, first + b * block_elems + j));
                }
            }
        }
        quant::quantize_row(dtype, v, block);
        if quant::first_non_finite(dtype, block).is_some() {
            return Err(non_finite(name, first + b * block_elems));
        }
        sink(offset + b * block_bytes, block)?;
    }
    Ok(())
}

fn sparse(t: &Target<'_>, e: &TensorEntry, package: &[u8], scale: f64, sink: &mut dyn FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
    // Elements per unit: 1 (f32) or the dtype's block.
    let (unit, unit_bytes) = block_size(e.dtype.layout(), t.name)?;
    let mut add = [0.0f64; MAX_BLOCK_ELEMENTS];
    let mut vals = [0.0f32; MAX_BLOCK_ELEMENTS];
    let mut entries = t.payload.entries().peekable();
    while let Some((index, value)) = entries.next() {
        // Units never straddle rows (the parser requires row lengths to be whole blocks), so the
        // flat element index locates the unit directly.
        let u = index as usize / unit;
        add[..unit].fill(0.0);
        add[index as usize % unit] = scale * value as f64;
        while let Some(&(next, v)) = entries.peek() {
            if next as usize / unit != u {
                break;
            }
            add[next as usize % unit] = scale * v as f64;
            entries.next();
        }
        let start = e.range.start + u * unit_bytes;
        update_row(e.dtype, &package[start..start + unit_bytes], start, u * unit, &add[..unit], &mut vals, t.name, sink)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_fits_the_fixed_block_buffers() {
        for dtype in DType::ALL {
            let l = dtype.layout();
            assert_eq!(block_size(l, "t").ok(), Some((l.elements, l.bytes)), "{}", dtype.name());
        }
    }

    /// A layout larger than any dtype's (a future super-block added without raising the bounds)
    /// is refused with a status instead of overrunning the fixed arrays.
    #[test]
    fn a_block_larger_than_the_bounds_is_refused() {
        const FIELDS: &[quant::BlockField] = &[quant::BlockField { name: "qs", offset: 0, len: MAX_BLOCK_BYTES + 1, kind: quant::FieldKind::I8Quants }];
        let too_many_bytes = BlockLayout { elements: 32, bytes: MAX_BLOCK_BYTES + 1, fields: FIELDS };
        let e = block_size(&too_many_bytes, "blk.0.attn_q.weight").unwrap_err();
        assert_eq!((e.status, e.value), (Status::UnsupportedDtype, (MAX_BLOCK_BYTES + 1) as u64));
        assert_eq!(e.field, "target[blk.0.attn_q.weight].dtype");
        let too_many_elements = BlockLayout { elements: 8 * MAX_BLOCK_ELEMENTS, bytes: 4, fields: FIELDS };
        assert_eq!(block_size(&too_many_elements, "x").unwrap_err().status, Status::UnsupportedDtype);
    }

    /// Scratch shorter than one block is a status, not an out-of-bounds slice.
    #[test]
    fn short_scratch_is_refused() {
        let old = [0u8; 34];
        let add = [1.0f64; 32];
        let mut vals = [0.0f32; 8];
        let e = update_row(DType::Q8_0, &old, 0, 0, &add, &mut vals, "t", &mut |_, _| Ok(())).unwrap_err();
        assert_eq!(e.status, Status::AdapterShapeMismatch);
    }
}
