//! Timing helpers the `shoal bench` commands share: the median they report over repeated
//! rounds, and the mean time of a call repeated for a fixed duration.

use std::time::{Duration, Instant};

use anyhow::Result;

/// The median of `values`, the figure the benchmarks print over repeated runs (sorted in
/// place; the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Calls `f` for about `seconds` and returns the mean seconds per call.
pub fn per_call(seconds: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        f()?;
        calls += 1;
    }
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}
