//! Orthogonal initialization (Saxe et al., 2014), as `torch.nn.init.orthogonal_` does it and
//! CleanRL uses it: gain √2 for hidden layers, 0.01 for policy outputs, 1 for value outputs.

use rand::Rng;
use rand_distr::StandardNormal;

/// A `rows × cols` row-major matrix with orthonormal rows (if `rows ≤ cols`) or columns,
/// scaled by `gain`.
///
/// Draws a Gaussian matrix and orthonormalizes it (QR by modified Gram–Schmidt, in `f64`),
/// keeping the sign convention of `R`'s positive diagonal, like PyTorch.
pub fn orthogonal<R: Rng + ?Sized>(rows: usize, cols: usize, gain: f64, rng: &mut R) -> Vec<f64> {
    let (tall, short) = (rows.max(cols), rows.min(cols));
    // `short` column vectors of length `tall`.
    let mut q: Vec<Vec<f64>> = (0..short).map(|_| (0..tall).map(|_| rng.sample(StandardNormal)).collect()).collect();
    for j in 0..short {
        let (done, rest) = q.split_at_mut(j);
        let v = &mut rest[0];
        for u in done.iter() {
            let dot: f64 = u.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(x, &y)| *x -= dot * y);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    }
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            // Tall: column c is q[c]; wide: row r is q[r].
            out[r * cols + c] = gain * if rows >= cols { q[c][r] } else { q[r][c] };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn check_orthonormal(rows: usize, cols: usize) {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let w = orthogonal(rows, cols, 1.0, &mut rng);
        // W Wᵀ = I for wide matrices, Wᵀ W = I for tall ones: check the Gram matrix of the
        // shorter side's vectors.
        let vectors: Vec<Vec<f64>> = if rows <= cols {
            (0..rows).map(|r| w[r * cols..(r + 1) * cols].to_vec()).collect()
        } else {
            (0..cols).map(|c| (0..rows).map(|r| w[r * cols + c]).collect()).collect()
        };
        for (i, u) in vectors.iter().enumerate() {
            for (j, v) in vectors.iter().enumerate() {
                let dot: f64 = u.iter().zip(v).map(|(a, b)| a * b).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-10, "{rows}x{cols}: ({i},{j}) = {dot}");
            }
        }
    }

    #[test]
    fn rows_or_columns_are_orthonormal() {
        check_orthonormal(64, 4);
        check_orthonormal(4, 64);
        check_orthonormal(64, 64);
        check_orthonormal(2, 64);
    }
}
