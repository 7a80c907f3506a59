//! The AVX2 + FMA build: 6×16 blocks of `C` in twelve `ymm` accumulators, and the narrow
//! kernel for outputs fewer than 16.

use std::arch::x86_64::*;

use super::block::{apply_unit, by_stripes, Finish, Operands, Unit};

/// Output columns per block (two 8-lane registers).
pub(super) const NR: usize = 16;

/// Rows per block: 6 × 2 accumulators + 2 rows of `B` + 1 broadcast = 15 of 16 registers.
pub(super) const MR: usize = 6;

/// `C[m×n] (+)= A·B` over `k`, with `ops.ldc = n`, `n` a multiple of [`NR`].
///
/// # Safety
/// AVX2 and FMA present; all addressed elements in bounds (checked by `super::product`).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn product(m: usize, n: usize, k: usize, ops: Operands) {
    let stripe = |rows: usize, ops: Operands| {
        for j in (0..n).step_by(NR) {
            // SAFETY (all blocks): rows ≤ MR of `C` from the stripe's first, columns j..j+16 ≤ n.
            unsafe {
                let at = ops.at(0, j);
                match rows {
                    1 => block::<1>(k, at),
                    2 => block::<2>(k, at),
                    3 => block::<3>(k, at),
                    4 => block::<4>(k, at),
                    5 => block::<5>(k, at),
                    _ => block::<MR>(k, at),
                }
            }
        }
    };
    // SAFETY: the caller's contract.
    unsafe { by_stripes(m, n, MR, ops, stripe, |unit, out| activate(unit, out)) }
}

/// [`apply_unit`] built for AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
fn activate(unit: Unit, out: &mut [f32]) {
    apply_unit(unit, out)
}

/// Rows summed side by side in [`narrow_product_bt`].
pub(super) const NARROW_ROWS: usize = 8;

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
    // SAFETY: the caller's bounds (see `super::product`).
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
