//! The number types the engine runs on: `f32` for speed, `f64` for gradient checks.
//!
//! Everything numeric in the engine is generic over [`Scalar`], so the exact code that trains
//! in `f32` is verified against finite differences in `f64`, where a tight tolerance means
//! something. The two types differ only in their GEMM routine and their `tanh`: `f32` uses a
//! fast rational approximation (see [`crate::tanh`]), `f64` the exact function.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use num_traits::Float;

use crate::kernel;
use crate::tanh::fast_tanh;

/// A floating-point type the engine computes in.
pub trait Scalar:
    Float + Default + Debug + Send + Sync + Sum + AddAssign + SubAssign + MulAssign + DivAssign + 'static
{
    /// Converts a constant (always representable closely enough for our purposes).
    fn of(x: f64) -> Self;

    /// Converts to `f64` for reporting.
    fn as_f64(self) -> f64;

    /// The `tanh` used by the tanh activation.
    fn tanh_act(x: Self) -> Self;

    /// Adds `bias` to every row of `z` and applies [`Scalar::tanh_act`] in place: the hottest
    /// elementwise loop of a tanh network, so `f32` picks a SIMD-width-specific build of it.
    fn bias_tanh(z: &mut [Self], bias: &[Self]) {
        bias_tanh_generic(z, bias)
    }

    /// `z[rows, out] = x·wᵀ` through [`crate::kernel`] when it takes the shape on this CPU
    /// (`f32` only): false, with `z` untouched, otherwise.
    fn kernel_x_wt(_x: &[Self], _w: &[Self], _rows: usize, _in_dim: usize, _out_dim: usize, _z: &mut [Self]) -> bool {
        false
    }

    /// `z[rows, out] = f(x·wᵀ + bias)` with the bias and activation `unit` applied in
    /// [`crate::kernel`]'s store when the 6×16 kernel takes the shape on this CPU (`f32`
    /// only): false, with `z` untouched, otherwise.
    #[allow(clippy::too_many_arguments)]
    fn kernel_x_wt_bias(
        _x: &[Self],
        _w: &[Self],
        _bias: &[Self],
        _unit: kernel::Unit,
        _rows: usize,
        _in_dim: usize,
        _out_dim: usize,
        _z: &mut [Self],
    ) -> bool {
        false
    }

    /// `gw[out, in] += dzᵀ·x` through [`crate::kernel`], as [`Scalar::kernel_x_wt`].
    fn kernel_acc_dzt_x(
        _dz: &[Self],
        _x: &[Self],
        _rows: usize,
        _in_dim: usize,
        _out_dim: usize,
        _gw: &mut [Self],
    ) -> bool {
        false
    }

    /// `dx[rows, in] = dz·w` through [`crate::kernel`], as [`Scalar::kernel_x_wt`].
    fn kernel_dz_w(_dz: &[Self], _w: &[Self], _rows: usize, _in_dim: usize, _out_dim: usize, _dx: &mut [Self]) -> bool {
        false
    }

    /// `C ← α·A·B + β·C` for strided matrices: `A` is `m×k`, `B` is `k×n`, `C` is `m×n`.
    ///
    /// # Safety
    /// Every element addressed through the pointers and strides must be in bounds, and `c`
    /// must not alias `a` or `b`. Call through [`crate::gemm::gemm`], which checks this.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

/// Implements `Scalar::gemm_raw` by forwarding to a `matrixmultiply` routine of the same shape.
macro_rules! forward_gemm {
    ($routine:ident) => {
        unsafe fn gemm_raw(
            m: usize,
            k: usize,
            n: usize,
            alpha: Self,
            a: *const Self,
            rsa: isize,
            csa: isize,
            b: *const Self,
            rsb: isize,
            csb: isize,
            beta: Self,
            c: *mut Self,
            rsc: isize,
            csc: isize,
        ) {
            // SAFETY: forwarded contract (bounds and aliasing checked by `gemm::gemm`).
            unsafe { matrixmultiply::$routine(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
        }
    };
}

impl Scalar for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn tanh_act(x: Self) -> Self {
        fast_tanh(x)
    }
    fn bias_tanh(z: &mut [Self], bias: &[Self]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports the features the function was compiled for.
                return unsafe { simd::bias_tanh_avx512(z, bias) };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                return unsafe { simd::bias_tanh_avx2(z, bias) };
            }
        }
        bias_tanh_generic(z, bias)
    }
    fn kernel_x_wt(x: &[Self], w: &[Self], rows: usize, in_dim: usize, out_dim: usize, z: &mut [Self]) -> bool {
        if let Some(isa) = kernel::applies(out_dim, in_dim) {
            kernel::product_bt(isa, rows, out_dim, in_dim, x, (in_dim, 1), w, z, kernel::Store::Overwrite);
        } else if kernel::applies_narrow(out_dim, in_dim) {
            kernel::narrow_product_bt(rows, out_dim, in_dim, x, w, z);
        } else {
            return false;
        }
        true
    }
    fn kernel_x_wt_bias(
        x: &[Self],
        w: &[Self],
        bias: &[Self],
        unit: kernel::Unit,
        rows: usize,
        in_dim: usize,
        out_dim: usize,
        z: &mut [Self],
    ) -> bool {
        let Some(isa) = kernel::applies(out_dim, in_dim) else {
            return false;
        };
        kernel::product_bt(isa, rows, out_dim, in_dim, x, (in_dim, 1), w, z, kernel::Store::Bias(bias, unit));
        true
    }
    fn kernel_acc_dzt_x(dz: &[Self], x: &[Self], rows: usize, in_dim: usize, out_dim: usize, gw: &mut [Self]) -> bool {
        if rows == 0 {
            return false;
        }
        if let Some(isa) = kernel::applies(in_dim, rows) {
            // `∂W[out, in] += ∂Zᵀ·X` directly (m = out, n = in, k = rows; `∂Z` read by columns).
            kernel::product(isa, out_dim, in_dim, rows, dz, (1, out_dim), x, in_dim, gw, kernel::Store::Accumulate);
            return true;
        }
        // A layer with few inputs: `∂Wᵀ[in, out] = Xᵀ·∂Z` (m = in, n = out, k = rows) as a thin
        // product, then added into `gw` transposed.
        let Some(isa) = kernel::applies_thin(in_dim, out_dim) else {
            return false;
        };
        kernel::with_scratch(in_dim * out_dim, |gwt| {
            kernel::product(isa, in_dim, out_dim, rows, x, (1, in_dim), dz, out_dim, gwt, kernel::Store::Overwrite);
            for (i, column) in gwt.chunks_exact(out_dim).enumerate() {
                for (o, &g) in column.iter().enumerate() {
                    gw[o * in_dim + i] += g;
                }
            }
        });
        true
    }
    fn kernel_dz_w(dz: &[Self], w: &[Self], rows: usize, in_dim: usize, out_dim: usize, dx: &mut [Self]) -> bool {
        // m = rows, k = out, n = in; `w` is `[out, in]`, already `k×n` row-major.
        let Some(isa) = kernel::applies(in_dim, out_dim) else {
            return false;
        };
        kernel::product(isa, rows, in_dim, out_dim, dz, (out_dim, 1), w, in_dim, dx, kernel::Store::Overwrite);
        true
    }
    forward_gemm!(sgemm);
}

impl Scalar for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn tanh_act(x: Self) -> Self {
        x.tanh()
    }
    forward_gemm!(dgemm);
}

/// The portable body of [`Scalar::bias_tanh`].
fn bias_tanh_generic<T: Scalar>(z: &mut [T], bias: &[T]) {
    bias_apply(z, bias, T::tanh_act)
}

/// `z ← f(z + bias)` row by row; inlined into each SIMD-specific build.
#[inline(always)]
fn bias_apply<T: Scalar>(z: &mut [T], bias: &[T], f: impl Fn(T) -> T) {
    for row in z.chunks_exact_mut(bias.len()) {
        for (x, &b) in row.iter_mut().zip(bias) {
            *x = f(*x + b);
        }
    }
}

/// Builds of the elementwise kernels for wider SIMD than the baseline target, selected at run
/// time. The baseline x86-64 target only has 4-wide SSE, and the tanh's division is then the
/// bottleneck of a whole forward pass; the same code compiled for AVX-512 runs 16 lanes. Both
/// builds have fused multiply-adds, so they evaluate [`crate::tanh::fast_tanh_fma`]: a
/// 256×64 layer's bias + tanh took 9.4–10.2 µs with separate multiplies and adds, 6.3–8.2 µs
/// fused (AVX2).
#[cfg(target_arch = "x86_64")]
mod simd {
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn bias_tanh_avx512(z: &mut [f32], bias: &[f32]) {
        super::bias_apply(z, bias, crate::tanh::fast_tanh_fma)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn bias_tanh_avx2(z: &mut [f32], bias: &[f32]) {
        super::bias_apply(z, bias, crate::tanh::fast_tanh_fma)
    }
}
