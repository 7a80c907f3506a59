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

/// `out[cols×rows] = inputᵀ` (`input` `rows×cols` row-major) in 8×8 tiles of eight `ymm`
/// loads, three rounds of shuffles and eight stores; the edges element by element. Exact (a
/// copy), so every build may share it.
///
/// # Safety
/// AVX present; `input` holds `rows·cols` elements and `out` as many.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn transpose(input: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    assert!(input.len() >= rows * cols && out.len() >= rows * cols, "transpose: buffers too short");
    let (full_rows, full_cols) = (rows - rows % 8, cols - cols % 8);
    let (src, dst) = (input.as_ptr(), out.as_mut_ptr());
    // SAFETY (all accesses): tiles lie within rows × cols, checked above.
    unsafe {
        for r in (0..full_rows).step_by(8) {
            for c in (0..full_cols).step_by(8) {
                let row = |i: usize| _mm256_loadu_ps(src.add((r + i) * cols + c));
                let (r0, r1, r2, r3, r4, r5, r6, r7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7));
                // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves.
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                let (u0, u1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
                let (u2, u3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
                let (u4, u5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
                let (u6, u7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
                let column = |i: usize, v: __m256| _mm256_storeu_ps(dst.add((c + i) * rows + r), v);
                column(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
                column(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
                column(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
                column(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
                column(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
                column(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
                column(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
                column(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
            }
        }
        for r in 0..rows {
            let edge = if r < full_rows { full_cols } else { 0 };
            for c in edge..cols {
                *dst.add(c * rows + r) = *src.add(r * cols + c);
            }
        }
    }
}
