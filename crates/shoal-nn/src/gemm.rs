//! A bounds-checked front for the GEMM crate: the only place the engine multiplies matrices.

use crate::activation::{add_bias_and_activate, Activation};
use crate::kernel::Unit;
use crate::scalar::Scalar;

/// A strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows × cols` matrix.
    pub fn rows(data: &'a [T], rows: usize, cols: usize) -> Self {
        Mat { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose (no copy: swaps the strides).
    pub fn t(self) -> Self {
        Mat { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        }
    }
}

/// `c ← alpha·a·b + beta·c` with `c` row-major `a.rows × b.cols`.
///
/// Panics on mismatched shapes or short buffers: every call site derives them from the model's
/// own layout, so a panic here is an engine bug, never bad user input (checked earlier).
pub fn gemm<T: Scalar>(alpha: T, a: Mat<'_, T>, b: Mat<'_, T>, beta: T, c: &mut [T]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert!(a.span() <= a.data.len() && b.span() <= b.data.len(), "gemm: operand out of bounds");
    assert!(c.len() >= m * n, "gemm: output buffer too short");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: spans checked above; `c` is a distinct `&mut` borrow, so it aliases neither input.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// Batches of at most this many rows use the simple loops below instead of the GEMM crate.
///
/// The crate packs both operands into a freshly allocated, aligned buffer on every call (it
/// has no API to reuse one) — the right trade for big products, pure overhead for the single
/// observation an actor evaluates per step. Measured on this machine (actor + critic
/// 4→64→64, forward): one row took 7.2 µs through the crate and 1.5–1.9 µs through these
/// loops, with no allocation; the crate wins from about 8 rows.
pub const SMALL_ROWS: usize = 4;

/// `z[rows, out] = x[rows, in] · wᵀ` with `w` stored `[out, in]` (a layer's forward product).
pub fn x_wt<T: Scalar>(x: &[T], w: &[T], rows: usize, in_dim: usize, out_dim: usize, z: &mut [T]) {
    if rows <= SMALL_ROWS {
        for (xr, zr) in x.chunks_exact(in_dim).zip(z.chunks_exact_mut(out_dim)).take(rows) {
            for (zo, wo) in zr.iter_mut().zip(w.chunks_exact(in_dim)) {
                *zo = dot(xr, wo);
            }
        }
    } else if !T::kernel_x_wt(x, w, rows, in_dim, out_dim, z) {
        gemm(T::one(), Mat::rows(x, rows, in_dim), Mat::rows(w, out_dim, in_dim).t(), T::zero(), z);
    }
}

/// `z[rows, out] = f(x·wᵀ + bias)`, a layer's forward (`activation` none for an output
/// layer): with the bias and activation fused into [`crate::kernel`]'s store where it takes
/// the shape — one pass over `z` where [`x_wt`] and then the activation's own pass make two
/// (1–1.4 µs less per 256-row tanh layer, see `kernel`) — and those two elsewhere. Both
/// compute the same bits.
#[allow(clippy::too_many_arguments)]
pub fn x_wt_bias<T: Scalar>(
    x: &[T],
    w: &[T],
    bias: &[T],
    activation: Option<Activation>,
    rows: usize,
    in_dim: usize,
    out_dim: usize,
    z: &mut [T],
) {
    let unit = match activation {
        None => Unit::Identity,
        Some(Activation::Tanh) => Unit::Tanh,
        Some(Activation::Relu) => Unit::Relu,
    };
    if rows > SMALL_ROWS && T::kernel_x_wt_bias(x, w, bias, unit, rows, in_dim, out_dim, z) {
        return;
    }
    x_wt(x, w, rows, in_dim, out_dim, z);
    add_bias_and_activate(z, bias, activation);
}

/// Layers with at most this many outputs (a policy's logits, a value) accumulate their
/// weight gradient row by row instead of through the GEMM crate: `∂W[2,64]` over 256 rows
/// took 5.2 µs through the crate (packing both operands) and 3.5 µs in these loops; at 3
/// outputs the two are even (5.4 vs 5.0), from 4 the crate wins.
pub const NARROW_GRADIENT: usize = 2;

/// `gw[out, in] += dzᵀ · x` (a layer's weight gradient).
pub fn acc_dzt_x<T: Scalar>(dz: &[T], x: &[T], rows: usize, in_dim: usize, out_dim: usize, gw: &mut [T]) {
    if rows <= SMALL_ROWS || out_dim <= NARROW_GRADIENT {
        for (dzr, xr) in dz.chunks_exact(out_dim).zip(x.chunks_exact(in_dim)).take(rows) {
            for (&d, gwo) in dzr.iter().zip(gw.chunks_exact_mut(in_dim)) {
                axpy(d, xr, gwo);
            }
        }
    } else if !T::kernel_acc_dzt_x(dz, x, rows, in_dim, out_dim, gw) {
        gemm(T::one(), Mat::rows(dz, rows, out_dim).t(), Mat::rows(x, rows, in_dim), T::one(), gw);
    }
}

/// `dx[rows, in] = dz[rows, out] · w` (the gradient passed to the layer below).
pub fn dz_w<T: Scalar>(dz: &[T], w: &[T], rows: usize, in_dim: usize, out_dim: usize, dx: &mut [T]) {
    if rows <= SMALL_ROWS {
        for (dzr, dxr) in dz.chunks_exact(out_dim).zip(dx.chunks_exact_mut(in_dim)).take(rows) {
            dxr.fill(T::zero());
            for (&d, wo) in dzr.iter().zip(w.chunks_exact(in_dim)) {
                axpy(d, wo, dxr);
            }
        }
    } else if !T::kernel_dz_w(dz, w, rows, in_dim, out_dim, dx) {
        gemm(T::one(), Mat::rows(dz, rows, out_dim), Mat::rows(w, out_dim, in_dim), T::zero(), dx);
    }
}

/// `y += a·x`.
#[inline]
fn axpy<T: Scalar>(a: T, x: &[T], y: &mut [T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// A dot product with eight independent accumulators, so it vectorizes without reordering
/// any single accumulator's sums (which strict IEEE semantics forbid the compiler to do).
#[inline]
fn dot<T: Scalar>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = a8.remainder().iter().zip(b8.remainder()).map(|(&x, &y)| x * y).sum();
    for (ca, cb) in a8.zip(b8) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(ca).zip(cb) {
            *lane += x * y;
        }
    }
    lanes.iter().copied().sum::<T>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The small-row loops and the GEMM crate compute the same three products.
    #[test]
    fn small_and_large_paths_agree() {
        for (rows, in_dim, out_dim) in [1, SMALL_ROWS, SMALL_ROWS + 1, 40]
            .into_iter()
            .flat_map(|rows| [(rows, 13, 7), (rows, 13, NARROW_GRADIENT)])
        {
            let x: Vec<f64> = (0..rows * in_dim).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
            let w: Vec<f64> = (0..out_dim * in_dim).map(|i| ((i * 5 % 13) as f64 - 6.0) / 4.0).collect();
            let dz: Vec<f64> = (0..rows * out_dim).map(|i| ((i * 3 % 7) as f64 - 3.0) / 2.0).collect();
            let mut z = vec![0.0; rows * out_dim];
            x_wt(&x, &w, rows, in_dim, out_dim, &mut z);
            let mut gw = vec![1.0; out_dim * in_dim];
            acc_dzt_x(&dz, &x, rows, in_dim, out_dim, &mut gw);
            let mut dx = vec![9.0; rows * in_dim];
            dz_w(&dz, &w, rows, in_dim, out_dim, &mut dx);
            for r in 0..rows {
                for o in 0..out_dim {
                    let want: f64 = (0..in_dim).map(|k| x[r * in_dim + k] * w[o * in_dim + k]).sum();
                    assert!((z[r * out_dim + o] - want).abs() < 1e-12, "rows {rows}");
                }
                for k in 0..in_dim {
                    let want: f64 = (0..out_dim).map(|o| dz[r * out_dim + o] * w[o * in_dim + k]).sum();
                    assert!((dx[r * in_dim + k] - want).abs() < 1e-12, "rows {rows}");
                }
            }
            for o in 0..out_dim {
                for k in 0..in_dim {
                    let want: f64 = 1.0 + (0..rows).map(|r| dz[r * out_dim + o] * x[r * in_dim + k]).sum::<f64>();
                    assert!((gw[o * in_dim + k] - want).abs() < 1e-12, "rows {rows}");
                }
            }
        }
    }

    /// The `f32` products through whichever path each shape takes on this CPU — the wide,
    /// narrow and thin kernels, the row loops, the GEMM crate — against a naive `f64` product.
    #[test]
    fn f32_paths_match_a_naive_product() {
        let rows = 256;
        for (in_dim, out_dim) in
            [(4, 64), (64, 64), (64, 2), (64, 1), (64, 3), (13, 7), (3, 48), (80, 16), (256, 32), (32, 256)]
        {
            let x: Vec<f32> = (0..rows * in_dim).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
            let w: Vec<f32> = (0..out_dim * in_dim).map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0).collect();
            let dz: Vec<f32> = (0..rows * out_dim).map(|i| ((i * 3 % 7) as f32 - 3.0) / 2.0).collect();
            let close = |got: f32, want: f64| (got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0);
            let mut z = vec![f32::NAN; rows * out_dim];
            x_wt(&x, &w, rows, in_dim, out_dim, &mut z);
            let mut gw = vec![1.0f32; out_dim * in_dim];
            acc_dzt_x(&dz, &x, rows, in_dim, out_dim, &mut gw);
            let mut dx = vec![f32::NAN; rows * in_dim];
            dz_w(&dz, &w, rows, in_dim, out_dim, &mut dx);
            let shape = format!("{in_dim}→{out_dim}");
            for r in 0..rows {
                for o in 0..out_dim {
                    let want: f64 = (0..in_dim).map(|k| x[r * in_dim + k] as f64 * w[o * in_dim + k] as f64).sum();
                    assert!(close(z[r * out_dim + o], want), "x·wᵀ {shape}");
                }
                for k in 0..in_dim {
                    let want: f64 = (0..out_dim).map(|o| dz[r * out_dim + o] as f64 * w[o * in_dim + k] as f64).sum();
                    assert!(close(dx[r * in_dim + k], want), "dz·w {shape}");
                }
            }
            for o in 0..out_dim {
                for k in 0..in_dim {
                    let sum: f64 = (0..rows).map(|r| dz[r * out_dim + o] as f64 * x[r * in_dim + k] as f64).sum();
                    assert!(close(gw[o * in_dim + k], 1.0 + sum), "dzᵀ·x {shape}");
                }
            }
        }
    }

    /// A layer's forward with the bias and activation fused into the kernel's store equals
    /// the product followed by the separate pass, bit for bit, on every path: rows through the
    /// small-row loops, the 6×16 kernel with each remainder of rows, the narrow kernel.
    #[test]
    fn fused_bias_and_activation_equal_the_separate_pass() {
        for (in_dim, out_dim) in [(4, 64), (64, 64), (64, 2), (13, 32)] {
            for rows in [1, SMALL_ROWS, SMALL_ROWS + 1, 6, 11, 256] {
                let x: Vec<f32> = (0..rows * in_dim).map(|i| ((i * 7 % 11) as f32 - 5.0) / 9.0).collect();
                let w: Vec<f32> = (0..out_dim * in_dim).map(|i| ((i * 5 % 13) as f32 - 6.0) / 11.0).collect();
                let bias: Vec<f32> = (0..out_dim).map(|o| (o % 5) as f32 / 7.0 - 0.3).collect();
                for activation in [None, Some(Activation::Tanh), Some(Activation::Relu)] {
                    let mut fused = vec![f32::NAN; rows * out_dim];
                    x_wt_bias(&x, &w, &bias, activation, rows, in_dim, out_dim, &mut fused);
                    let mut separate = vec![f32::NAN; rows * out_dim];
                    x_wt(&x, &w, rows, in_dim, out_dim, &mut separate);
                    add_bias_and_activate(&mut separate, &bias, activation);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fused), bits(&separate), "{in_dim}→{out_dim}, {rows} rows, {activation:?}");
                    assert!(fused.iter().any(|&v| v < 0.0) || activation == Some(Activation::Relu));
                }
            }
        }
    }

    #[test]
    fn matches_naive_product_with_transposes() {
        let a: Vec<f64> = (0..6).map(|x| x as f64).collect(); // 2×3
        let b: Vec<f64> = (0..12).map(|x| (x as f64) * 0.5 - 2.0).collect(); // 4×3 (used transposed)
        let mut c = vec![1.0; 8];
        gemm(2.0, Mat::rows(&a, 2, 3), Mat::rows(&b, 4, 3).t(), 1.0, &mut c);
        for i in 0..2 {
            for j in 0..4 {
                let dot: f64 = (0..3).map(|k| a[i * 3 + k] * b[j * 3 + k]).sum();
                assert_eq!(c[i * 4 + j], 2.0 * dot + 1.0);
            }
        }
    }
}
