//! The AVX-512 build: 12×32 blocks of `C` in 24 `zmm` accumulators (a 16-column block where
//! `n` leaves one). Each output is summed over `k` in the same order, by the same fused
//! multiply-adds, as in the AVX2 build, so the two give the same bits.

use std::arch::x86_64::*;

use super::block::{apply_unit, by_stripes, Finish, Operands, Unit};

/// Lanes of one register.
const LANES: usize = 16;

/// Rows per block: 12 × 2 accumulators + 2 rows of `B` + 1 broadcast = 27 of 32 registers.
pub(super) const MR: usize = 12;

/// `C[m×n] (+)= A·B` over `k`, with `ops.ldc = n`, `n` a multiple of 16.
///
/// # Safety
/// AVX-512F present; all addressed elements in bounds (checked by `super::product`).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn product(m: usize, n: usize, k: usize, ops: Operands) {
    let stripe = |rows: usize, ops: Operands| {
        let mut j = 0;
        // SAFETY (all blocks): rows ≤ MR of `C` from the stripe's first; columns j..j+32 (or
        // the last 16) ≤ n.
        unsafe {
            while j + 2 * LANES <= n {
                rows_of::<2>(rows, k, ops.at(0, j));
                j += 2 * LANES;
            }
            if j < n {
                rows_of::<1>(rows, k, ops.at(0, j));
            }
        }
    };
    // SAFETY: the caller's contract.
    unsafe { by_stripes(m, n, MR, ops, stripe, |unit, out| activate(unit, out)) }
}

/// [`apply_unit`] built for AVX-512 (and FMA, which every AVX-512 CPU has).
#[target_feature(enable = "avx512f,fma")]
#[inline(never)]
fn activate(unit: Unit, out: &mut [f32]) {
    apply_unit(unit, out)
}

/// The block of `rows` (1 to [`MR`]) rows and `W` registers of columns.
///
/// # Safety
/// As [`block`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rows_of<const W: usize>(rows: usize, k: usize, ops: Operands) {
    // SAFETY: the caller's contract.
    unsafe {
        match rows {
            1 => block::<1, W>(k, ops),
            2 => block::<2, W>(k, ops),
            3 => block::<3, W>(k, ops),
            4 => block::<4, W>(k, ops),
            5 => block::<5, W>(k, ops),
            6 => block::<6, W>(k, ops),
            7 => block::<7, W>(k, ops),
            8 => block::<8, W>(k, ops),
            9 => block::<9, W>(k, ops),
            10 => block::<10, W>(k, ops),
            11 => block::<11, W>(k, ops),
            _ => block::<MR, W>(k, ops),
        }
    }
}

/// One `R×16W` block of `C`: `R` rows of `A` against `16·W` columns of `B`, over all of `k`.
///
/// # Safety
/// The block's rows and columns lie within `C`, `A` and `B` (see `super::product`).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block<const R: usize, const W: usize>(k: usize, ops: Operands) {
    let Operands { a, ars, acs, b, ldb, c, ldc, finish, bias } = ops;
    let mut acc = [[_mm512_setzero_ps(); W]; R];
    // SAFETY: the caller's bounds.
    unsafe {
        for p in 0..k {
            let row = b.add(p * ldb);
            let bv: [__m512; W] = std::array::from_fn(|w| _mm512_loadu_ps(row.add(w * LANES)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * ars + p * acs));
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(av, bv, *acc);
                }
            }
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let row = c.add(r * ldc);
            let added = match finish {
                Finish::Overwrite => None,
                Finish::Accumulate => Some(row.cast_const()),
                Finish::Bias(_) => Some(bias),
            };
            for (w, acc) in acc.iter_mut().enumerate() {
                if let Some(added) = added {
                    *acc = _mm512_add_ps(*acc, _mm512_loadu_ps(added.add(w * LANES)));
                }
                _mm512_storeu_ps(row.add(w * LANES), *acc);
            }
        }
    }
}
