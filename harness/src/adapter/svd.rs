//! Truncated SVD for `trl adapter diff --kind lowrank`, in f64 and deterministic (seeded).
//!
//! Randomized range finder (Halko, Martinsson & Tropp 2011, algorithms 4.4 and 5.1): sample the
//! range of `M` (`m × n`) with `k = r + OVERSAMPLE` random vectors, sharpen it with power
//! iterations, and solve the small problem exactly: with `Q` (`m × k`) an orthonormal basis and
//! `S = Qᵀ M` (`k × n`), the eigenvectors `W` of `S Sᵀ` (Jacobi) give the best rank-`r`
//! approximation inside that basis, `M ≈ (Q W_r) (W_rᵀ S)`. No division by singular values, so
//! exactly-low-rank inputs come back exactly (to rounding).

use crate::synth::SplitMix64;

/// Extra sample vectors beyond the rank (Halko et al. suggest 5 to 10).
pub const OVERSAMPLE: usize = 8;
/// Power iterations: enough for the slowly decaying spectra of fine-tuning deltas.
pub const POWER_ITERATIONS: usize = 4;

/// `M ≈ B · A` with `B` `m × r` and `A` `r × n`, both row-major, and the `r` singular values.
pub struct LowRank {
    pub rank: usize,
    pub b: Vec<f64>,
    pub a: Vec<f64>,
    pub singular_values: Vec<f64>,
}

/// Rank-`r` approximation of the row-major `m × n` matrix `m_rows` (`r ≤ min(m, n)`).
pub fn truncated(mat: &[f64], m: usize, n: usize, r: usize, seed: u64) -> LowRank {
    assert!(mat.len() == m * n && r >= 1 && r <= m.min(n));
    let k = (r + OVERSAMPLE).min(m).min(n);
    let mut rng = SplitMix64(seed);
    let omega: Vec<Vec<f64>> = (0..k).map(|_| (0..n).map(|_| rng.next_signed() as f64).collect()).collect();
    let mut q = orthonormalize(times(mat, m, n, &omega));
    for _ in 0..POWER_ITERATIONS {
        let z = orthonormalize(transpose_times(mat, m, n, &q));
        q = orthonormalize(times(mat, m, n, &z));
    }
    // Rows of S = Qᵀ M, as k vectors of length n.
    let s = transpose_times(mat, m, n, &q);
    let mut g = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..=i {
            let v = dot(&s[i], &s[j]);
            g[i * k + j] = v;
            g[j * k + i] = v;
        }
    }
    let (eigenvalues, w) = jacobi_eigen(&mut g, k);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&x, &y| eigenvalues[y].total_cmp(&eigenvalues[x]).then(x.cmp(&y)));
    let top = &order[..r];
    let mut b = vec![0f64; m * r];
    let mut a = vec![0f64; r * n];
    for (t, &e) in top.iter().enumerate() {
        for c in 0..k {
            let wct = w[c * k + e];
            if wct == 0.0 {
                continue;
            }
            for i in 0..m {
                b[i * r + t] += q[c][i] * wct;
            }
            for (aj, sj) in a[t * n..(t + 1) * n].iter_mut().zip(&s[c]) {
                *aj += wct * sj;
            }
        }
    }
    let singular_values = top.iter().map(|&e| eigenvalues[e].max(0.0).sqrt()).collect();
    LowRank { rank: r, b, a, singular_values }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `M · v` for each vector `v` (length n): k vectors of length m.
fn times(mat: &[f64], m: usize, n: usize, vs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut out = vec![vec![0f64; m]; vs.len()];
    for i in 0..m {
        let row = &mat[i * n..(i + 1) * n];
        for (o, v) in out.iter_mut().zip(vs) {
            o[i] = dot(row, v);
        }
    }
    out
}

/// `Mᵀ · u` for each vector `u` (length m): k vectors of length n.
fn transpose_times(mat: &[f64], m: usize, n: usize, us: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut out = vec![vec![0f64; n]; us.len()];
    for i in 0..m {
        let row = &mat[i * n..(i + 1) * n];
        for (o, u) in out.iter_mut().zip(us) {
            let ui = u[i];
            if ui != 0.0 {
                o.iter_mut().zip(row).for_each(|(x, &w)| *x += ui * w);
            }
        }
    }
    out
}

/// Modified Gram–Schmidt, twice ("twice is enough"). A vector with nothing left after projection
/// (the input had lower rank) becomes zero and stays out of the basis.
fn orthonormalize(mut vs: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let norms: Vec<f64> = vs.iter().map(|v| dot(v, v).sqrt()).collect();
    for _pass in 0..2 {
        for (i, &input_norm) in norms.iter().enumerate() {
            let (done, rest) = vs.split_at_mut(i);
            let v = &mut rest[0];
            for u in done.iter() {
                let p = dot(u, v);
                v.iter_mut().zip(u).for_each(|(x, &y)| *x -= p * y);
            }
            let norm = dot(v, v).sqrt();
            if norm <= 1e-13 * input_norm || norm == 0.0 {
                v.iter_mut().for_each(|x| *x = 0.0);
            } else {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
    }
    vs
}

/// Cyclic Jacobi for a symmetric `k × k` matrix (row-major, destroyed): eigenvalues and the
/// eigenvectors as the columns of the returned row-major matrix.
fn jacobi_eigen(a: &mut [f64], k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; k * k];
    for i in 0..k {
        v[i * k + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..k).flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * k + j] * a[i * k + j]).sum::<f64>().sqrt();
        if off <= 1e-15 * scale || scale == 0.0 {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                let apq = a[p * k + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * k + q] - a[p * k + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..k {
                    let (arp, arq) = (a[r * k + p], a[r * k + q]);
                    a[r * k + p] = c * arp - s * arq;
                    a[r * k + q] = s * arp + c * arq;
                }
                for r in 0..k {
                    let (apr, aqr) = (a[p * k + r], a[q * k + r]);
                    a[p * k + r] = c * apr - s * aqr;
                    a[q * k + r] = s * apr + c * aqr;
                }
                for r in 0..k {
                    let (vrp, vrq) = (v[r * k + p], v[r * k + q]);
                    v[r * k + p] = c * vrp - s * vrq;
                    v[r * k + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    ((0..k).map(|i| a[i * k + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frobenius(v: &[f64]) -> f64 {
        v.iter().map(|x| x * x).sum::<f64>().sqrt()
    }

    fn product(lr: &LowRank, m: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..lr.rank).map(|t| lr.b[i * lr.rank + t] * lr.a[t * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn exactly_low_rank_matrices_come_back_exactly() {
        let (m, n) = (37, 53);
        let mut rng = SplitMix64(3);
        let mut mat = vec![0f64; m * n];
        for _ in 0..3 {
            let u: Vec<f64> = (0..m).map(|_| rng.next_signed() as f64).collect();
            let v: Vec<f64> = (0..n).map(|_| rng.next_signed() as f64).collect();
            for i in 0..m {
                for j in 0..n {
                    mat[i * n + j] += u[i] * v[j];
                }
            }
        }
        let lr = truncated(&mat, m, n, 3, 1);
        let err: Vec<f64> = product(&lr, m, n).iter().zip(&mat).map(|(a, b)| a - b).collect();
        assert!(frobenius(&err) <= 1e-12 * frobenius(&mat), "relative error {}", frobenius(&err) / frobenius(&mat));
    }

    #[test]
    fn truncation_keeps_the_largest_singular_values() {
        // diag(5, 3, 1, 0.5) padded: rank 2 keeps 5 and 3; the error is sqrt(1 + 0.25).
        let (m, n) = (6, 4);
        let mut mat = vec![0f64; m * n];
        for (i, s) in [5.0, 3.0, 1.0, 0.5].iter().enumerate() {
            mat[i * n + i] = *s;
        }
        let lr = truncated(&mat, m, n, 2, 9);
        assert!((lr.singular_values[0] - 5.0).abs() < 1e-9 && (lr.singular_values[1] - 3.0).abs() < 1e-9, "{:?}", lr.singular_values);
        let err: Vec<f64> = product(&lr, m, n).iter().zip(&mat).map(|(a, b)| a - b).collect();
        assert!((frobenius(&err) - 1.25f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn a_row_vector_is_rank_one() {
        let mat = vec![1.0, -2.0, 0.5, 4.0];
        let lr = truncated(&mat, 1, 4, 1, 0);
        let p = product(&lr, 1, 4);
        for (a, b) in p.iter().zip(&mat) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
