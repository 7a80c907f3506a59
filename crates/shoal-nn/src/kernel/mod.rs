//! A register-blocked `f32` micro-kernel (AVX2 + FMA, chosen at run time) for the products
//! whose inner dimension is small — a policy's first layer (`k` = observation size) and the
//! 64-wide layers of CartPole-sized networks — where the GEMM crate's packing of both operands
//! into a fresh buffer costs as much as the arithmetic.
//!
//! Each 6×16 block of `C` lives in twelve `ymm` accumulators while `k` rank-1 updates stream
//! past: a row of `B` (two loads) and six broadcasts of `A`'s column. `B` is read in place when
//! its rows are contiguous (`∂X = ∂Z·W`); the forward product's `Wᵀ` is transposed once into a
//! per-thread buffer. Measured against matrixmultiply 0.3 and gemm 0.18 on the update's
//! shapes (256 rows, AMD EPYC Zen 3, one thread; µs): `X[256,4]·Wᵀ[4,64]` 2.4 vs 4.0 and 3.9;
//! `X[256,64]·Wᵀ[64,64]` 25.0 vs 30.7 and 24.7; `∂Z[256,64]·W[64,64]` 22.8 vs 30.5 and 24.1;
//! but `X[256,256]·Wᵀ[256,256]` 545 vs 429 and 394 — past `k` = 64 the crate's cache blocking
//! wins, so [`MAX_K`] hands those back. (The gemm crate gains 10–20 % there, for some fifty
//! more crates to compile; not taken.)

/// The largest inner dimension this kernel takes (see the module's measurements).
pub const MAX_K: usize = 64;

/// Output columns per block (two 8-lane registers).
const NR: usize = 16;

/// Rows per block: 6 × 2 accumulators + 2 rows of `B` + 1 broadcast = 15 of 16 registers.
const MR: usize = 6;

/// What [`product`] does with each block of `A·B` on its way into `C`.
#[derive(Clone, Copy, Debug)]
pub enum Store<'a> {
    /// `C ← A·B`.
    Overwrite,
    /// `C ← C + A·B`.
    Accumulate,
    /// `C ← f(A·B + bias)`, one bias per column: a layer's forward, the bias added while the
    /// block is in registers and the activation applied while its rows are in L1, instead of
    /// a second pass over all of `C`. The same arithmetic as that pass
    /// ([`crate::scalar::Scalar::bias_tanh`]), so the same bits.
    Bias(&'a [f32], Unit),
}

/// The nonlinearity of a [`Store::Bias`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// None: an output layer.
    Identity,
    /// [`crate::tanh::fast_tanh_fma`].
    Tanh,
    /// `max(x, 0)`.
    Relu,
}

/// Whether `c[m×n] = a·b` (shapes as in [`product`]) goes through this kernel on this CPU.
pub fn applies(n: usize, k: usize) -> bool {
    n.is_multiple_of(NR) && n > 0 && (1..=MAX_K).contains(&k) && has_avx2_fma()
}

/// Whether [`product`] takes `c[m×n] = a·b` over any `k`: when `C` is at most one block of
/// rows, each 16-column panel of `B` streams past once, however long `k` is — a weight
/// gradient `∂Wᵀ[in, out] = Xᵀ·∂Z` of a layer with few inputs (`k` = the batch's rows).
/// `∂W[64,4]` over 256 rows: 5.5 µs through the GEMM crate.
pub fn applies_thin(m: usize, n: usize) -> bool {
    (1..=MR).contains(&m) && applies(n, 1)
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c ← a·b`, finished as `store` says: `a` is `m×k` with element `(i, p)` at
/// `a[i·ars + p·acs]`, `b` is `k×n` row-major with rows `ldb` apart, `c` is `m×n` row-major.
///
/// Panics on out-of-bounds shapes (engine bugs: callers derive them from the model's layout)
/// and when neither [`applies`] nor [`applies_thin`] holds.
#[allow(clippy::too_many_arguments)]
pub fn product(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    (ars, acs): (usize, usize),
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    store: Store<'_>,
) {
    assert!(applies(n, k) || (applies_thin(m, n) && k > 0), "kernel::product called for a shape it does not take");
    if m == 0 {
        return;
    }
    assert!((m - 1) * ars + (k - 1) * acs < a.len(), "kernel: a out of bounds");
    assert!((k - 1) * ldb + n <= b.len() && ldb >= n, "kernel: b out of bounds");
    assert!(c.len() >= m * n, "kernel: c too short");
    if let Store::Bias(bias, _) = store {
        assert!(bias.len() >= n, "kernel: bias shorter than a row of c");
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX2 and FMA (`applies`); bounds are checked above.
    unsafe {
        let (finish, bias) = match store {
            Store::Overwrite => (avx2::Finish::Overwrite, std::ptr::null()),
            Store::Accumulate => (avx2::Finish::Accumulate, std::ptr::null()),
            Store::Bias(bias, unit) => (avx2::Finish::Bias(unit), bias.as_ptr()),
        };
        let ops =
            avx2::Operands { a: a.as_ptr(), ars, acs, b: b.as_ptr(), ldb, c: c.as_mut_ptr(), ldc: n, finish, bias };
        avx2::product(m, n, k, ops)
    }
}

/// [`product`] with `b` given transposed: `bt` is `n×k` row-major (a layer's weight `[out, in]`
/// for `X·Wᵀ`), copied into a per-thread buffer in `k×n` order first.
#[allow(clippy::too_many_arguments)]
pub fn product_bt(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    strides: (usize, usize),
    bt: &[f32],
    c: &mut [f32],
    store: Store<'_>,
) {
    assert!(bt.len() >= n * k, "kernel: bt out of bounds");
    with_scratch(k * n, |b| {
        for (j, row) in bt.chunks_exact(k).take(n).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                b[p * n + j] = v;
            }
        }
        product(m, n, k, a, strides, b, n, c, store);
    });
}

/// Runs `f` on this thread's scratch buffer cut to `len` elements (contents unspecified), so
/// an operand that has to be rearranged costs no allocation after the first call of a shape.
/// Not re-entrant: `f` must not call `with_scratch` again (nothing in the kernels does).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|buffer| {
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        f(&mut buffer[..len])
    })
}

/// Whether `c[m×n] = a·btᵀ` (shapes as in [`narrow_product_bt`]) goes through the narrow
/// kernel on this CPU: outputs narrower than one block, as a policy's or a value's last layer.
pub fn applies_narrow(n: usize, k: usize) -> bool {
    (1..NR).contains(&n) && k > 0 && has_avx2_fma()
}

/// `c ← a·btᵀ` for fewer than 16 outputs: `a` is `m×k` row-major, `bt` is `n×k` row-major (a
/// layer's weight `[out, in]`), `c` is `m×n` row-major.
///
/// The 6×16 block would waste most of its lanes on 1–3 outputs, and the GEMM crate packs
/// both operands for 0.2 MFLOP of work: `X[256,64]·Wᵀ[64,2]` took 7.4 µs through the crate
/// and 4.9 µs as one dot product per output (each a chain of dependent adds). Here 8 rows are
/// summed side by side against one weight row, so the adds do not wait on each other, and the
/// eight sums are reduced into one register together.
///
/// Panics on out-of-bounds shapes and when [`applies_narrow`] is false (engine bugs, as for
/// [`product`]).
pub fn narrow_product_bt(m: usize, n: usize, k: usize, a: &[f32], bt: &[f32], c: &mut [f32]) {
    assert!(applies_narrow(n, k), "kernel::narrow_product_bt called for a shape it does not take");
    assert!(a.len() >= m * k && bt.len() >= n * k && c.len() >= m * n, "kernel: operand out of bounds");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX2 and FMA (`applies_narrow`); bounds are checked above.
    unsafe {
        avx2::narrow_product_bt(m, n, k, a.as_ptr(), bt.as_ptr(), c.as_mut_ptr())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Unit, MR, NR};
    use crate::tanh::fast_tanh_fma;

    /// `super::Store` without its borrow: the bias is `Operands::bias`.
    #[derive(Clone, Copy)]
    pub(super) enum Finish {
        Overwrite,
        Accumulate,
        Bias(Unit),
    }

    /// Where one product's operands live (as `super::product` describes them), `c` with rows
    /// `ldc` apart, and the bias of a `Finish::Bias` (else null): the pointers move together
    /// from block to block.
    #[derive(Clone, Copy)]
    pub(super) struct Operands {
        pub(super) a: *const f32,
        pub(super) ars: usize,
        pub(super) acs: usize,
        pub(super) b: *const f32,
        pub(super) ldb: usize,
        pub(super) c: *mut f32,
        pub(super) ldc: usize,
        pub(super) finish: Finish,
        pub(super) bias: *const f32,
    }

    impl Operands {
        /// The operands of the block whose first output is row `i`, column `j` of `C`.
        ///
        /// # Safety
        /// `(i, j)` lies within `C` (and so its row of `A` and column of `B` within theirs).
        unsafe fn at(self, i: usize, j: usize) -> Self {
            // SAFETY: in bounds by the caller's contract.
            unsafe {
                Operands {
                    a: self.a.add(i * self.ars),
                    b: self.b.add(j),
                    c: self.c.add(i * self.ldc + j),
                    bias: self.bias.wrapping_add(j),
                    ..self
                }
            }
        }
    }

    /// `C[m×n] (+)= A·B` over `k`, with `ops.ldc = n`.
    ///
    /// # Safety
    /// AVX2 and FMA present; all addressed elements in bounds (checked by `super::product`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product(m: usize, n: usize, k: usize, ops: Operands) {
        let full = m - m % MR;
        // SAFETY (all blocks): rows i..i+R ≤ m, columns j..j+16 ≤ n, p < k — in bounds.
        unsafe {
            for i in (0..full).step_by(MR) {
                for j in (0..n).step_by(NR) {
                    block::<MR>(k, ops.at(i, j));
                }
                if let Finish::Bias(unit) = ops.finish {
                    activate(unit, ops.c.add(i * n), MR * n);
                }
            }
            // The last 1–5 rows (no pointer is formed past `C` when there are none).
            if full < m {
                for j in (0..n).step_by(NR) {
                    let rest = ops.at(full, j);
                    match m - full {
                        1 => block::<1>(k, rest),
                        2 => block::<2>(k, rest),
                        3 => block::<3>(k, rest),
                        4 => block::<4>(k, rest),
                        _ => block::<5>(k, rest),
                    }
                }
                if let Finish::Bias(unit) = ops.finish {
                    activate(unit, ops.c.add(full * n), (m - full) * n);
                }
            }
        }
    }

    /// A `Finish::Bias`'s activation `unit` on `len` values of `C`: a stripe of up to 6 whole rows
    /// just stored, still in L1, written as the separate pass writes it, so the same bits.
    /// Per stripe rather than per block: called for each block's 16-value rows it gained
    /// nothing over the separate pass. Per stripe (256 rows, one thread, min of 200 rounds):
    /// `4→64` tanh 9.1–9.4 µs separate, 8.1–8.3 fused; `64→64` 32.8–34.4 vs 31.4–33.2 (the
    /// product alone 25.7–27.1) — the pass over memory goes, the tanh's arithmetic stays.
    ///
    /// # Safety
    /// AVX2 and FMA present; `c` addresses `len` elements.
    #[target_feature(enable = "avx2,fma")]
    #[inline(never)]
    unsafe fn activate(unit: Unit, c: *mut f32, len: usize) {
        // SAFETY: by the caller's contract.
        let out = unsafe { std::slice::from_raw_parts_mut(c, len) };
        match unit {
            Unit::Identity => {}
            Unit::Tanh => out.iter_mut().for_each(|x| *x = fast_tanh_fma(*x)),
            Unit::Relu => out.iter_mut().for_each(|x| *x = x.max(0.0)),
        }
    }

    /// Rows summed side by side in [`narrow_product_bt`].
    const NARROW_ROWS: usize = 8;

    /// `C[m×n] = A·Btᵀ`, `n` < 16 (see `super::narrow_product_bt`).
    ///
    /// # Safety
    /// AVX2 and FMA present; `a` holds `m×k`, `bt` `n×k`, `c` `m×n` elements.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn narrow_product_bt(m: usize, n: usize, k: usize, a: *const f32, bt: *const f32, c: *mut f32) {
        let full = m - m % NARROW_ROWS;
        let k8 = k - k % 8;
        // SAFETY (all accesses): rows < m, outputs < n, columns < k — in bounds.
        unsafe {
            for i in (0..full).step_by(NARROW_ROWS) {
                for o in 0..n {
                    let w = bt.add(o * k);
                    let mut acc = [_mm256_setzero_ps(); NARROW_ROWS];
                    for p in (0..k8).step_by(8) {
                        let wv = _mm256_loadu_ps(w.add(p));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.add((i + r) * k + p)), wv, *acc);
                        }
                    }
                    let mut sums = [0.0f32; NARROW_ROWS];
                    _mm256_storeu_ps(sums.as_mut_ptr(), sum_each(acc));
                    for (r, sum) in sums.iter().enumerate() {
                        *c.add((i + r) * n + o) = sum + dot(a.add((i + r) * k), w, k8..k);
                    }
                }
            }
            // The last 1–7 rows, one dot product each.
            for i in full..m {
                for o in 0..n {
                    *c.add(i * n + o) = dot(a.add(i * k), bt.add(o * k), 0..k);
                }
            }
        }
    }

    /// `Σ row[p]·w[p]` over `columns`, one element at a time (the narrow kernel's tails).
    ///
    /// # Safety
    /// Both pointers address at least `columns.end` elements.
    #[inline]
    unsafe fn dot(row: *const f32, w: *const f32, columns: std::ops::Range<usize>) -> f32 {
        // SAFETY: in bounds by the caller's contract.
        columns.map(|p| unsafe { *row.add(p) * *w.add(p) }).sum()
    }

    /// The eight sums of `v[0]`…`v[7]`'s lanes, as lanes 0–7 of one register.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn sum_each(v: [__m256; 8]) -> __m256 {
        // Pairwise adds within each 128-bit half: lane j of the half holds a partial sum of
        // v[j] (first four) or v[4 + j]; the halves are added last.
        let low = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
        let high = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
        _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20), _mm256_permute2f128_ps(low, high, 0x31))
    }

    /// One `R×16` block of `C`: `R` rows of `A` against 16 columns of `B`, over all of `k`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block<const R: usize>(k: usize, ops: Operands) {
        let Operands { a, ars, acs, b, ldb, c, ldc, finish, bias } = ops;
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        // SAFETY: the caller's bounds (see `product`).
        unsafe {
            for p in 0..k {
                let b_lo = _mm256_loadu_ps(b.add(p * ldb));
                let b_hi = _mm256_loadu_ps(b.add(p * ldb + 8));
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*a.add(r * ars + p * acs));
                    lo[r] = _mm256_fmadd_ps(av, b_lo, lo[r]);
                    hi[r] = _mm256_fmadd_ps(av, b_hi, hi[r]);
                }
            }
            for r in 0..R {
                let row = c.add(r * ldc);
                let added = match finish {
                    Finish::Overwrite => None,
                    Finish::Accumulate => Some(row.cast_const()),
                    Finish::Bias(_) => Some(bias),
                };
                if let Some(added) = added {
                    lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(added));
                    hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(added.add(8)));
                }
                _mm256_storeu_ps(row, lo[r]);
                _mm256_storeu_ps(row.add(8), hi[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this CPU runs the kernels (said on stderr when not: the tests then check nothing).
    fn kernel_here() -> bool {
        let here = has_avx2_fma();
        if !here {
            eprintln!("no AVX2+FMA on this CPU: the kernel is never chosen here");
        }
        here
    }

    /// Two operands of `a_len` and `b_len` small exact values, different patterns.
    fn operands(a_len: usize, b_len: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..a_len).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let b = (0..b_len).map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0).collect();
        (a, b)
    }

    /// Every remainder of rows (0–5 past a multiple of 6), several column blocks, `k` from 1 to
    /// the limit, overwrite and accumulate, strided `a` — against a naive `f64` product.
    #[test]
    fn matches_a_naive_product() {
        if !kernel_here() {
            return;
        }
        for m in [1, 5, 6, 7, 12, 17, 40] {
            for n in [16, 48] {
                for k in [1, 4, 13, 64] {
                    let (a, bt) = operands(m * k, n * k);
                    let want = |i: usize, j: usize, a_at: &dyn Fn(usize, usize) -> f32| -> f64 {
                        (0..k).map(|p| a_at(i, p) as f64 * bt[j * k + p] as f64).sum()
                    };
                    // a row-major (X·Wᵀ), through the transposing entry.
                    let mut c = vec![f32::NAN; m * n];
                    product_bt(m, n, k, &a, (k, 1), &bt, &mut c, Store::Overwrite);
                    // a read transposed (a column-major view), b in place, accumulating.
                    let mut b = vec![0.0; k * n];
                    for j in 0..n {
                        for p in 0..k {
                            b[p * n + j] = bt[j * k + p];
                        }
                    }
                    let mut acc = vec![1.0f32; m * n];
                    product(m, n, k, &a, (1, m), &b, n, &mut acc, Store::Accumulate);
                    for i in 0..m {
                        for j in 0..n {
                            let row_major = want(i, j, &|i, p| a[i * k + p]);
                            let col_major = want(i, j, &|i, p| a[p * m + i]);
                            assert!((c[i * n + j] as f64 - row_major).abs() < 1e-4, "m {m} n {n} k {k}");
                            assert!((acc[i * n + j] as f64 - 1.0 - col_major).abs() < 1e-4, "m {m} n {n} k {k}");
                        }
                    }
                }
            }
        }
    }

    /// Every remainder of rows (0–7 past a multiple of 8), 1–15 outputs, `k` with and without
    /// a tail past a multiple of 8 — against a naive `f64` product.
    #[test]
    fn narrow_matches_a_naive_product() {
        if !kernel_here() {
            return;
        }
        for m in [1, 7, 8, 9, 16, 23, 256] {
            for n in [1, 2, 3, 15] {
                for k in [1, 4, 8, 13, 64] {
                    let (a, bt) = operands(m * k, n * k);
                    let mut c = vec![f32::NAN; m * n];
                    narrow_product_bt(m, n, k, &a, &bt, &mut c);
                    for i in 0..m {
                        for j in 0..n {
                            let want: f64 = (0..k).map(|p| a[i * k + p] as f64 * bt[j * k + p] as f64).sum();
                            assert!((c[i * n + j] as f64 - want).abs() < 1e-4, "m {m} n {n} k {k}");
                        }
                    }
                }
            }
        }
    }

    /// One block of rows or fewer over `k` far past [`MAX_K`], `a` read transposed as a
    /// weight gradient reads `X`.
    #[test]
    fn thin_products_take_any_k() {
        if !kernel_here() {
            return;
        }
        for (m, n, k) in [(1, 16, 300), (4, 64, 256), (6, 32, 65), (5, 16, 1000)] {
            assert!(applies_thin(m, n) && !applies(n, k));
            let (a, b) = operands(m * k, k * n);
            let mut c = vec![f32::NAN; m * n];
            product(m, n, k, &a, (1, m), &b, n, &mut c, Store::Overwrite);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| a[p * m + i] as f64 * b[p * n + j] as f64).sum();
                    assert!((c[i * n + j] as f64 - want).abs() < 1e-3, "m {m} n {n} k {k}");
                }
            }
        }
        assert!(!applies_thin(MR + 1, 16) && !applies_thin(4, 15) && !applies_thin(0, 16));
    }

    #[test]
    fn shapes_it_does_not_take_are_refused() {
        assert!(!applies_narrow(0, 4) && !applies_narrow(16, 4) && !applies_narrow(2, 0));
        assert!(!applies(15, 4));
        assert!(!applies(16, 0));
        assert!(!applies(16, MAX_K + 1));
        assert!(!applies(0, 4));
    }
}
