//! Action selection over a row of action values, shared by DQN and tabular Q-learning.

use rand::Rng;

/// Index of the largest value (the first on ties; NaN is never chosen over a number).
pub(crate) fn argmax<T: Copy + Into<f64>>(row: &[T]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| if v.into() > best.1 { (i, v.into()) } else { best })
        .0
}

/// ε-greedy: with probability `epsilon` a uniformly random action, otherwise the greedy one.
/// Draws one uniform number, and a second only when exploring.
pub(crate) fn epsilon_greedy<T: Copy + Into<f64>>(row: &[T], epsilon: f64, rng: &mut impl Rng) -> usize {
    if rng.random::<f64>() < epsilon {
        rng.random_range(0..row.len())
    } else {
        argmax(row)
    }
}
