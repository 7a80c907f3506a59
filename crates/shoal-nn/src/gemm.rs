//! A bounds-checked front for the GEMM crate: the only place the engine multiplies matrices.

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
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (no copy: swaps the strides).
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
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
    assert!(
        a.span() <= a.data.len() && b.span() <= b.data.len(),
        "gemm: operand out of bounds"
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_with_transposes() {
        let a: Vec<f64> = (0..6).map(|x| x as f64).collect(); // 2×3
        let b: Vec<f64> = (0..12).map(|x| (x as f64) * 0.5 - 2.0).collect(); // 4×3 (used transposed)
        let mut c = vec![1.0; 8];
        gemm(
            2.0,
            Mat::rows(&a, 2, 3),
            Mat::rows(&b, 4, 3).t(),
            1.0,
            &mut c,
        );
        for i in 0..2 {
            for j in 0..4 {
                let dot: f64 = (0..3).map(|k| a[i * 3 + k] * b[j * 3 + k]).sum();
                assert_eq!(c[i * 4 + j], 2.0 * dot + 1.0);
            }
        }
    }
}
