//! ggml's reference k-quant quantizers (`quantize_row_q4_K_ref`, `quantize_row_q5_K_ref`,
//! `quantize_row_q6_K_ref` with their searches `make_qkx2_quants` and `make_qx_quants`, in
//! `ggml-quants.c`), transcribed operation for operation so the bytes are ggml's: every `f32`
//! operation is rounded on its own (no fused multiply-add, as ggml's generic build without
//! `-ffp-contract`), in the order the C source writes it, and ggml's `nearest_int` (the
//! `+ 12582912` magic-number rounding: round half to even, garbage-in-garbage-out beyond `2^22`)
//! is reproduced bit for bit, including the `uint8_t` / `int8_t` truncations of its results.
//!
//! The adapter patcher uses them to requantize a patched super-block.
//!
//! # `make_qkx2_quants(n = 32, nmax, x, w, rmin, rdelta, nstep)` (affine: `x ≈ scale · L − min`)
//! 1. `min = min(x, 0)`, `max = max(x)` (first-element seeded, strict comparisons); `sum_w = Σ w`,
//!    `sum_x = Σ w·x` (left to right). If `max == min`: all `L = 0`, return `(0, −min)`.
//! 2. `iscale = nmax / (max − min)`, `scale = 1 / iscale`; `L = clamp(nearest_int(iscale · (x −
//!    min)), 0, nmax)`; `best_error = Σ w · (scale·L + min − x)²`.
//! 3. For `is = 0 ..= nstep`: `iscale = (rmin + rdelta·is + nmax) / (max − min)`, candidate levels
//!    `Laux` as in 2 (with the current `min` and `max − min`: ggml updates `min` in place when a
//!    candidate wins, and the later steps use the updated value); `sum_l = Σ w·l`, `sum_l2 = Σ (w·l)·l`, `sum_xl = Σ (w·l)·x`;
//!    `D = sum_w·sum_l2 − sum_l·sum_l`; if `D > 0`: `this_scale = (sum_w·sum_xl − sum_x·sum_l) / D`,
//!    `this_min = (sum_l2·sum_x − sum_l·sum_xl) / D`, and if `this_min > 0` then `this_min = 0`,
//!    `this_scale = sum_xl / sum_l2`; the candidate replaces the best when its error
//!    `Σ w · (this_scale·Laux + this_min − x)²` is strictly smaller.
//! 4. Return `(scale, −min)`.
//!
//! # `make_qx_quants(n = 16, nmax = 32, x, rmse_type = 1)` (symmetric: `x ≈ scale · (L − 32)`)
//! `max` = the element of largest magnitude (first on ties, strict `>`); if `|max| < 1e-15` all
//! `L = 0` and the scale is 0. Else `iscale = −32 / max`, `l = clamp(nearest_int(iscale·x), −32,
//! 31)`, `L = l + 32`, weights `w = x·x`, `sumlx = Σ (w·x)·l`, `suml2 = Σ (w·l)·l`,
//! `scale = suml2 ≠ 0 ? sumlx / suml2 : 0`, `best = scale · sumlx`; then for `is = −9 ..= 9`,
//! `is ≠ 0`: `iscale = −(32 + 0.1·is) / max` and the same sums; when `suml2 > 0` and
//! `sumlx·sumlx > best·suml2` the levels are replaced and `scale = sumlx / suml2`,
//! `best = scale·sumlx`.

use super::layout::{q4_k, q5_k, q6_k};
use super::QK_K;
use crate::quant::{f16_to_f32, f32_to_f16};

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this quantizes to zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml `nearest_int`: adding `1.5 · 2^23` leaves the rounded integer (half to even) in the low
/// mantissa bits for `|v| ≤ 2^22`; outside that range the same bit arithmetic is kept.
#[inline]
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// `make_qkx2_quants` for 32 elements (module docs); returns `(scale, the_min)` and writes the
/// levels to `l_out`.
fn make_qkx2_quants(nmax: i32, x: &[f32; 32], w: &[f32; 32], l_out: &mut [u8; 32], rmin: f32, rdelta: f32, nstep: i32) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..32 {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.fill(0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    // `min` is read afresh each time: ggml's loop keeps using the variable after a better
    // candidate has replaced it (so later `iscale`s and levels are relative to `this_min`).
    let level = |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax);
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..32 {
        let l = level(iscale, x[i], min);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..32 {
            let l = level(iscale, x[i], min);
            laux[i] = l as u8;
            let lf = l as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..32 {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if cur_error < best_error {
                *l_out = laux;
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `make_qx_quants(16, 32, x, L, 1, NULL)` (module docs); returns the scale, writes `L` in `0..=63`.
fn make_qx_quants_16(x: &[f32], l_out: &mut [i8]) -> f32 {
    const NMAX: i32 = 32;
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-NMAX, NMAX - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let iscale = -(NMAX as f32) / max;
    for (o, &v) in l_out.iter_mut().zip(x) {
        *o = (level(iscale, v) + NMAX) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(NMAX as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in l_out.iter_mut().zip(x) {
                *o = (level(iscale, v) + NMAX) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// The shared part of `quantize_row_q4_K_ref` / `quantize_row_q5_K_ref` for one super-block:
/// per sub-block weights `av_x + |x|` (`av_x = sqrt(Σx² / 32)`), the `make_qkx2_quants` search,
/// the 6-bit scales and minimums packed into `scales` (ggml's order), `d = f16(max_scale / 63)`,
/// `dmin = f16(max_min / 63)`, and the levels recomputed from the stored scales (a sub-block whose
/// stored scale is zero keeps the search's levels). Returns the 256 levels.
#[allow(clippy::too_many_arguments)]
fn quantize_k45(x: &[f32], nmax: i32, rmin: f32, nstep: i32, block: &mut [u8], d_at: usize, dmin_at: usize, scales_at: usize) -> [u8; QK_K] {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs: &[f32; 32] = x[32 * j..32 * j + 32].try_into().expect("32 elements");
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = libm::sqrtf(sum_x2 / 32.0);
        let w: [f32; 32] = core::array::from_fn(|l| av_x + xs[l].abs());
        let l: &mut [u8; 32] = (&mut levels[32 * j..32 * j + 32]).try_into().expect("32 levels");
        let (scale, min) = make_qkx2_quants(nmax, xs, &w, l, rmin, 0.1, nstep);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let packed = &mut block[scales_at..scales_at + 12];
    for j in 0..8 {
        // C: `uint8_t ls = nearest_int(…)` truncates to 8 bits, then `MIN(63, ls)`.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d_bits = f32_to_f16(max_scale / 63.0);
    let dmin_bits = f32_to_f16(max_min / 63.0);
    block[d_at..d_at + 2].copy_from_slice(&d_bits.to_le_bytes());
    block[dmin_at..dmin_at + 2].copy_from_slice(&dmin_bits.to_le_bytes());
    let packed: [u8; 12] = core::array::from_fn(|i| block[scales_at + i]);
    for j in 0..8 {
        let (sc, m) = super::scale_min_k4(&packed, j);
        let d = f16_to_f32(d_bits) * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = f16_to_f32(dmin_bits) * m as f32;
        for ii in 0..32 {
            levels[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    levels
}

/// ggml `quantize_row_q4_K_ref` (module docs): `make_qkx2_quants(32, 15, …, −1, 0.1, 20)` per
/// sub-block; sub-blocks `2i` and `2i + 1` packed as low and high nibbles of `qs[32i..32i + 32]`.
///
/// Precondition: `src.len()` a multiple of 256 and `dst.len() == src.len() / 256 · 144`; only
/// whole super-blocks present in both are written.
pub fn quantize_row_q4_k(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(q4_k::BYTES)) {
        block.fill(0);
        let l = quantize_k45(x, 15, -1.0, 20, block, q4_k::D, q4_k::DMIN, q4_k::SCALES);
        for i in 0..4 {
            for j in 0..32 {
                block[q4_k::QS + 32 * i + j] = l[64 * i + j] | (l[64 * i + 32 + j] << 4);
            }
        }
    }
}

/// ggml `quantize_row_q5_K_ref` (module docs): `make_qkx2_quants(32, 31, …, −0.5, 0.1, 15)` per
/// sub-block; the low nibbles packed as for `q4_k`, bit 4 of element `32s + l` in bit `s` of `qh[l]`.
///
/// Precondition: `src.len()` a multiple of 256 and `dst.len() == src.len() / 256 · 176`.
pub fn quantize_row_q5_k(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(q5_k::BYTES)) {
        block.fill(0);
        let l = quantize_k45(x, 31, -0.5, 15, block, q5_k::D, q5_k::DMIN, q5_k::SCALES);
        for i in 0..4 {
            for j in 0..32 {
                let (l1, l2) = (l[64 * i + j], l[64 * i + 32 + j]);
                block[q5_k::QS + 32 * i + j] = (l1 & 15) | ((l2 & 15) << 4);
                block[q5_k::QH + j] |= ((l1 >> 4) << (2 * i)) | ((l2 >> 4) << (2 * i + 1));
            }
        }
    }
}

/// ggml `quantize_row_q6_K_ref` (module docs): `make_qx_quants(16, 32, …, 1)` per 16 elements;
/// `iscale = −128 / max_scale` for the sub-block scale of largest magnitude, `d = f16(1 / iscale)`,
/// `scales[t] = min(127, nearest_int(iscale · scale_t))` as `i8`, levels recomputed from the
/// stored scales (`clamp(nearest_int(x / (d · scales[t])), −32, 31) + 32`; a zero stored scale keeps
/// the search's levels); a super-block whose scales are all below `1e-15` is all zero bytes.
///
/// Precondition: `src.len()` a multiple of 256 and `dst.len() == src.len() / 256 · 210`.
pub fn quantize_row_q6_k(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(q6_k::BYTES)) {
        block.fill(0);
        let mut levels = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..16 {
            let scale = make_qx_quants_16(&x[16 * ib..16 * ib + 16], &mut levels[16 * ib..16 * ib + 16]);
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            continue; // all zero, `d = f16(0)` included
        }
        let iscale = -128.0 / max_scale;
        let d_bits = f32_to_f16(1.0 / iscale);
        block[q6_k::D..q6_k::D + 2].copy_from_slice(&d_bits.to_le_bytes());
        let mut stored = [0i8; 16];
        for ib in 0..16 {
            // C: `y.scales[ib] = MIN(127, nearest_int(…))` stored into an `int8_t`.
            stored[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
            block[q6_k::SCALES + ib] = stored[ib] as u8;
        }
        for j in 0..16 {
            let d = f16_to_f32(d_bits) * stored[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                levels[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        let l = |i: usize| levels[i] as u8;
        for h in 0..2 {
            let (j, ql, qh) = (128 * h, q6_k::QL + 64 * h, q6_k::QH + 32 * h);
            for i in 0..32 {
                block[ql + i] = (l(j + i) & 15) | ((l(j + i + 64) & 15) << 4);
                block[ql + i + 32] = (l(j + i + 32) & 15) | ((l(j + i + 96) & 15) << 4);
                block[qh + i] = (l(j + i) >> 4) | ((l(j + i + 32) >> 4) << 2) | ((l(j + i + 64) >> 4) << 4) | ((l(j + i + 96) >> 4) << 6);
            }
        }
    }
}
