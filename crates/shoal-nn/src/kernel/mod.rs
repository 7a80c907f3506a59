//! Register-blocked `f32` micro-kernels, chosen at run time for the CPU (AVX-512, else AVX2 +
//! FMA; see [`Isa`]), for the products of the layers policies use — a first layer (`k` = the
//! observation's size), 64-wide layers, and with AVX-512 the 256-wide layers of SAC, TD3 and
//! DQN configs — where the GEMM crate packs both operands into a fresh buffer on every call.
//!
//! Each block of `C` lives in accumulator registers (6×16 in twelve `ymm`, 12×32 in 24 `zmm`)
//! while `k` rank-1 updates stream past: a row of `B`, and a broadcast of `A` per row. `B` is
//! read in place when its rows are contiguous (`∂X = ∂Z·W`, `∂W = ∂Zᵀ·X`); the forward
//! product's `Wᵀ` is transposed once into a per-thread buffer, in 8×8 register tiles. Both
//! builds sum every output over `k` in order with fused multiply-adds from zero and add `C`
//! after — which is also what the GEMM crate computes while `k` fits its block of 256 — so
//! which path a product takes (past `k` = 64 only the AVX-512 build takes it, see
//! [`Isa::max_k`]) does not change a bit: a run gives the same results on either CPU (tests
//! compare the builds with each other and with the crate).
//!
//! Against matrixmultiply 0.3 (and gemm 0.18) on the update's shapes, 256 rows, one thread, µs.
//! AVX2 on an AMD EPYC (Zen 3): `X[256,4]·Wᵀ[4,64]` 2.4 vs 4.0 (3.9); `X[256,64]·Wᵀ[64,64]`
//! 25.0 vs 30.7 (24.7); `∂Z[256,64]·W[64,64]` 22.8 vs 30.5 (24.1); but `X[256,256]·Wᵀ[256,256]`
//! 545 vs 429 (394) — past `k` = 64 the crate's cache blocking wins there. On an Intel Xeon
//! with AVX-512 (Sapphire Rapids class), where matrixmultiply 0.3.11 runs its own AVX-512
//! kernel: `X[256,64]·Wᵀ[64,64]` 14.2 vs 17.9 (the AVX2 build 25.6), `∂Z[256,64]·W[64,64]`
//! 12.2 vs 17.0 (AVX2 24.0), `X[256,17]·Wᵀ[17,256]` 17.0 vs 21.9 (AVX2 27.3), `∂Z·W` at
//! `k` = 256 209 vs 225. On an AMD EPYC with AVX-512 (Zen 4), at `k` = 256, `n` = 256, after
//! the tiled transpose (which took the forward's copy of `Wᵀ` from ~100 µs to ~20): forward
//! 313 vs 357 (AVX2 build 325), `∂Z·W` 291 vs 328 (AVX2 321), `∂Zᵀ·X` 292 vs 308 (AVX2 395);
//! inside SAC's update on HalfCheetah's shapes (`shoal bench sac`) the crate did worse than
//! alone, and routing these products to the AVX-512 build took two threads from 4.24 to 3.49
//! ms. At 512 the crate wins again (Xeon).

mod avx2;
mod avx512;
mod block;

use std::sync::OnceLock;

pub use block::Unit;
use block::{Finish, Operands};

/// Output columns per block of the narrowest build (two 8-lane registers): a product's `n`
/// must be a multiple of it.
const NR: usize = avx2::NR;

/// The rows of a product may be computed in parts (two threads taking the halves of a batch)
/// at multiples of this without changing a bit: every path sums each row's outputs in one
/// order whatever the rows around it — the block kernels, the GEMM crate — except the narrow
/// kernel, which sums the rows past its last block of 8 another way.
pub const ROW_SPLIT: usize = avx2::NARROW_ROWS;

/// Rows of `C` a thin product ([`applies_thin`]) may have, whichever the build.
const THIN_ROWS: usize = avx2::MR;

/// The instruction set the kernels run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// AVX2 with FMA: 8 lanes, 16 registers.
    Avx2,
    /// AVX-512F: 16 lanes, 32 registers.
    Avx512,
}

impl Isa {
    /// The widest set this CPU has, or none (the kernels are then never chosen). The
    /// environment variable `SHOAL_NN_ISA` caps it — `avx2`, or `none` for the GEMM crate
    /// alone — to measure or debug the narrower paths on a wider CPU.
    pub fn here() -> Option<Isa> {
        static HERE: OnceLock<Option<Isa>> = OnceLock::new();
        *HERE.get_or_init(|| {
            let cap = match std::env::var("SHOAL_NN_ISA").as_deref() {
                Err(_) | Ok("avx512") => Some(Isa::Avx512),
                Ok("avx2") => Some(Isa::Avx2),
                Ok("none") => None,
                Ok(other) => {
                    eprintln!("shoal-nn: SHOAL_NN_ISA={other} is not avx512, avx2 or none; ignored");
                    Some(Isa::Avx512)
                }
            };
            Isa::ALL.into_iter().filter(|&isa| isa.runs_here() && Some(isa) <= cap).max()
        })
    }

    /// The largest inner dimension this build takes for more than [`THIN_ROWS`] rows of `C`
    /// (see the module's measurements): past it, the GEMM crate's cache blocking wins.
    pub fn max_k(self) -> usize {
        match self {
            Isa::Avx2 => 64,
            Isa::Avx512 => 256,
        }
    }

    /// Every set, narrowest first.
    pub const ALL: [Isa; 2] = [Isa::Avx2, Isa::Avx512];

    /// Whether this CPU runs the set (whatever `SHOAL_NN_ISA` says).
    pub fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            match self {
                Isa::Avx2 => avx2,
                Isa::Avx512 => avx2 && has!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

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

/// The instruction set to compute `c[m×n] = a·b` (shapes as in [`product`]) with on this
/// CPU, or none when the kernels do not take it.
pub fn applies(n: usize, k: usize) -> Option<Isa> {
    Isa::here().filter(|&isa| n.is_multiple_of(NR) && n > 0 && (1..=isa.max_k()).contains(&k))
}

/// Whether [`product`] takes `c[m×n] = a·b` over any `k`: when `C` is at most one block of
/// rows, each 16-column panel of `B` streams past once, however long `k` is — a weight
/// gradient `∂Wᵀ[in, out] = Xᵀ·∂Z` of a layer with few inputs (`k` = the batch's rows).
/// `∂W[64,4]` over 256 rows: 5.5 µs through the GEMM crate.
pub fn applies_thin(m: usize, n: usize) -> Option<Isa> {
    applies(n, 1).filter(|_| (1..=THIN_ROWS).contains(&m))
}

/// `c ← a·b` on `isa` (as [`applies`] or [`applies_thin`] gave it), finished as `store` says:
/// `a` is `m×k` with element `(i, p)` at `a[i·ars + p·acs]`, `b` is `k×n` row-major with rows
/// `ldb` apart, `c` is `m×n` row-major. Any `k` is computed right; the limits of [`applies`]
/// are about speed.
///
/// Panics on out-of-bounds shapes, `n` not a multiple of 16, and an `isa` this CPU lacks
/// (engine bugs: callers derive shapes from the model's layout and `isa` from [`applies`]).
#[allow(clippy::too_many_arguments)]
pub fn product(
    isa: Isa,
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
    assert!(n.is_multiple_of(NR) && n > 0 && k > 0, "kernel::product called for a shape it does not take");
    assert!(isa.runs_here(), "kernel::product called for {isa:?}, which this CPU lacks");
    if m == 0 {
        return;
    }
    assert!((m - 1) * ars + (k - 1) * acs < a.len(), "kernel: a out of bounds");
    assert!((k - 1) * ldb + n <= b.len() && ldb >= n, "kernel: b out of bounds");
    assert!(c.len() >= m * n, "kernel: c too short");
    let (finish, bias) = match store {
        Store::Overwrite => (Finish::Overwrite, std::ptr::null()),
        Store::Accumulate => (Finish::Accumulate, std::ptr::null()),
        Store::Bias(bias, unit) => {
            assert!(bias.len() >= n, "kernel: bias shorter than a row of c");
            (Finish::Bias(unit), bias.as_ptr())
        }
    };
    let ops = Operands { a: a.as_ptr(), ars, acs, b: b.as_ptr(), ldb, c: c.as_mut_ptr(), ldc: n, finish, bias };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instruction set (asserted above); bounds are checked above.
    unsafe {
        match isa {
            Isa::Avx512 => avx512::product(m, n, k, ops),
            Isa::Avx2 => avx2::product(m, n, k, ops),
        }
    }
}

/// [`product`] with `b` given transposed: `bt` is `n×k` row-major (a layer's weight `[out, in]`
/// for `X·Wᵀ`), copied into a per-thread buffer in `k×n` order first.
#[allow(clippy::too_many_arguments)]
pub fn product_bt(
    isa: Isa,
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
    assert!(isa.runs_here(), "kernel::product_bt called for {isa:?}, which this CPU lacks");
    with_scratch(k * n, |b| {
        // SAFETY: `isa` runs here (asserted above), and every build's CPU has AVX2.
        unsafe { avx2::transpose(&bt[..n * k], n, k, b) };
        product(isa, m, n, k, a, strides, b, n, c, store);
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
    (1..NR).contains(&n) && k > 0 && Isa::here().is_some()
}

/// `c ← a·btᵀ` for fewer than 16 outputs: `a` is `m×k` row-major, `bt` is `n×k` row-major (a
/// layer's weight `[out, in]`), `c` is `m×n` row-major. One build (AVX2) on every CPU that has
/// the kernels, so one summation order.
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
    // SAFETY: every CPU with the kernels has AVX2 and FMA (`Isa::runs_here`); bounds are
    // checked above.
    unsafe {
        avx2::narrow_product_bt(m, n, k, a.as_ptr(), bt.as_ptr(), c.as_mut_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instruction sets this CPU runs (said on stderr when none: the tests then check
    /// nothing, and the engine never chooses the kernels here).
    fn sets_here() -> Vec<Isa> {
        let sets: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.runs_here()).collect();
        if sets.is_empty() {
            eprintln!("no AVX2+FMA on this CPU: the kernels are never chosen here");
        }
        sets
    }

    /// Two operands of `a_len` and `b_len` small exact values, different patterns.
    fn operands(a_len: usize, b_len: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..a_len).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let b = (0..b_len).map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0).collect();
        (a, b)
    }

    /// `bt` (`n×k`) as `k×n`.
    fn transposed(bt: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut b = vec![0.0; k * n];
        for j in 0..n {
            for p in 0..k {
                b[p * n + j] = bt[j * k + p];
            }
        }
        b
    }

    /// On every build: every remainder of rows past a multiple of the block's, 16-column
    /// blocks next to 32-column ones, `k` from 1 to the build's limit, overwrite and
    /// accumulate, `a` read row-major and column-major — against a naive `f64` product.
    #[test]
    fn matches_a_naive_product() {
        for isa in sets_here() {
            for m in [1, 5, 6, 7, 11, 12, 13, 17, 40] {
                for n in [16, 48, 64] {
                    for k in [1, 4, 13, 64, 300] {
                        let (a, bt) = operands(m * k, n * k);
                        let b = transposed(&bt, n, k);
                        let want = |i: usize, j: usize, a_at: &dyn Fn(usize, usize) -> f32| -> f64 {
                            (0..k).map(|p| a_at(i, p) as f64 * bt[j * k + p] as f64).sum()
                        };
                        let mut c = vec![f32::NAN; m * n];
                        product(isa, m, n, k, &a, (k, 1), &b, n, &mut c, Store::Overwrite);
                        let mut acc = vec![1.0f32; m * n];
                        product(isa, m, n, k, &a, (1, m), &b, n, &mut acc, Store::Accumulate);
                        for i in 0..m {
                            for j in 0..n {
                                let row_major = want(i, j, &|i, p| a[i * k + p]);
                                let col_major = want(i, j, &|i, p| a[p * m + i]);
                                let shape = format!("{isa:?} m {m} n {n} k {k}");
                                assert!((c[i * n + j] as f64 - row_major).abs() < 1e-3, "{shape}");
                                assert!((acc[i * n + j] as f64 - 1.0 - col_major).abs() < 1e-3, "{shape}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The builds give the same bits for every store, every block remainder and long `k`
    /// (random operands, where any change of summation order would show): a run does not
    /// depend on which of them the CPU has.
    #[test]
    fn the_builds_agree_bit_for_bit() {
        let sets = sets_here();
        if sets.len() < 2 {
            eprintln!("one build on this CPU ({sets:?}): nothing to compare");
            return;
        }
        let mut uniform = uniform_from(0x2545_f491_4f6c_dd1d);
        for (m, n, k) in [(256, 64, 4), (256, 64, 64), (37, 48, 200), (13, 256, 256), (6, 16, 1000)] {
            let a: Vec<f32> = (0..m * k).map(|_| uniform()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| uniform()).collect();
            let bias: Vec<f32> = (0..n).map(|_| uniform()).collect();
            let start: Vec<f32> = (0..m * n).map(|_| uniform()).collect();
            let stores = [
                Store::Overwrite,
                Store::Accumulate,
                Store::Bias(&bias, Unit::Identity),
                Store::Bias(&bias, Unit::Tanh),
                Store::Bias(&bias, Unit::Relu),
            ];
            for store in stores {
                let results: Vec<Vec<u32>> = sets
                    .iter()
                    .map(|&isa| {
                        let mut c = start.clone();
                        product(isa, m, n, k, &a, (k, 1), &b, n, &mut c, store);
                        c.iter().map(|x| x.to_bits()).collect()
                    })
                    .collect();
                assert!(results.windows(2).all(|w| w[0] == w[1]), "m {m} n {n} k {k} {store:?}");
            }
        }
    }

    /// Uniform values in [−1, 1) from a xorshift generator seeded with `seed`: operands where
    /// any change of summation order would show.
    fn uniform_from(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// Up to the GEMM crate's `kc` (256) each build computes the crate's bits: both sum every
    /// output over `k` in order with FMAs from zero (the crate in one pass when `k ≤ kc`) and
    /// add `C` after, so where a product goes — kernel or crate, which differs by CPU past
    /// `k` = 64 ([`Isa::max_k`]) — does not change a run.
    #[test]
    fn the_builds_compute_the_gemm_crates_bits_up_to_its_block_of_k() {
        let mut uniform = uniform_from(0x9e37_79b9_7f4a_7c15);
        for (m, n, k) in [(256, 64, 4), (256, 256, 17), (100, 64, 64), (256, 32, 200), (37, 256, 256)] {
            let a: Vec<f32> = (0..m * k).map(|_| uniform()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| uniform()).collect();
            let start: Vec<f32> = (0..m * n).map(|_| uniform()).collect();
            let bits = |c: &[f32]| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for accumulate in [false, true] {
                let mut want = start.clone();
                let beta = if accumulate { 1.0 } else { 0.0 };
                // SAFETY: row-major operands of the stated shapes; `want` is a buffer of its own.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        beta,
                        want.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                let store = if accumulate { Store::Accumulate } else { Store::Overwrite };
                for isa in sets_here() {
                    let mut c = start.clone();
                    product(isa, m, n, k, &a, (k, 1), &b, n, &mut c, store);
                    assert!(bits(&c) == bits(&want), "{isa:?}: m {m} n {n} k {k}, accumulate {accumulate}");
                }
            }
        }
    }

    /// Every remainder of rows (0–7 past a multiple of 8), 1–15 outputs, `k` with and without
    /// a tail past a multiple of 8 — against a naive `f64` product.
    #[test]
    fn narrow_matches_a_naive_product() {
        if Isa::here().is_none() {
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

    /// One block of rows or fewer over `k` far past [`Isa::max_k`], `a` read transposed
    /// as a weight gradient reads `X`.
    #[test]
    fn thin_products_take_any_k() {
        for isa in sets_here() {
            for (m, n, k) in [(1, 16, 300), (4, 64, 256), (6, 32, 65), (5, 16, 1000), (6, 48, 2000)] {
                let (a, b) = operands(m * k, k * n);
                let mut c = vec![f32::NAN; m * n];
                product(isa, m, n, k, &a, (1, m), &b, n, &mut c, Store::Overwrite);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k).map(|p| a[p * m + i] as f64 * b[p * n + j] as f64).sum();
                        assert!((c[i * n + j] as f64 - want).abs() < 1e-3, "{isa:?} m {m} n {n} k {k}");
                    }
                }
            }
        }
        if Isa::here().is_some() {
            assert!(applies_thin(THIN_ROWS, 16).is_some() && applies(16, 2000).is_none());
        }
        assert!([(THIN_ROWS + 1, 16), (4, 15), (0, 16)].iter().all(|&(m, n)| applies_thin(m, n).is_none()));
    }

    /// The 8×8-tile transpose, with edges of every width on both sides.
    #[test]
    fn the_tiled_transpose_transposes() {
        if !Isa::Avx2.runs_here() {
            return;
        }
        for (rows, cols) in [(1, 1), (8, 8), (16, 24), (13, 21), (7, 64), (64, 5), (256, 17)] {
            let input: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut out = vec![f32::NAN; rows * cols];
            // SAFETY: AVX2 was detected; both buffers hold rows × cols.
            unsafe { avx2::transpose(&input, rows, cols, &mut out) };
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(out[c * rows + r], input[r * cols + c], "{rows}×{cols} at ({r}, {c})");
                }
            }
        }
    }

    #[test]
    fn shapes_it_does_not_take_are_refused() {
        assert!(!applies_narrow(0, 4) && !applies_narrow(16, 4) && !applies_narrow(2, 0));
        let past = Isa::here().map_or(1, |isa| isa.max_k() + 1);
        assert!([(15, 4), (16, 0), (16, past), (0, 4)].iter().all(|&(n, k)| applies(n, k).is_none()));
    }
}
