//! The tanh-squashed diagonal Gaussian policy of SAC (Haarnoja et al., 2018, appendix C), and
//! the loss of its entropy temperature.
//!
//! With the reparameterization `u = μ + σ·ε`, `ε ~ N(0, I)`, the action is `a = tanh(u)` and
//!
//! ```text
//! log π(a|s) = Σ_j [ −½ε_j² − log σ_j − ½ log 2π − log(1 − a_j² + δ) ]
//! ```
//!
//! (the last term is the change of variables through `tanh`; `δ = 1e-6` keeps it finite at
//! |a| → 1, as SB3 and CleanRL do). `log σ` is clamped to `[LOG_STD_MIN, LOG_STD_MAX]`, with a
//! zero gradient where the clamp is active. Gradients with `ε` held fixed (the
//! reparameterization trick):
//!
//! ```text
//! ∂L/∂u_j    = ∂L/∂a_j·(1 − a_j²) + ∂L/∂logπ · 2a_j(1 − a_j²)/(1 − a_j² + δ)
//! ∂L/∂μ_j    = ∂L/∂u_j
//! ∂L/∂logσ_j = ∂L/∂u_j·σ_j·ε_j − ∂L/∂logπ          (inside the clamp)
//! ```
//!
//! The temperature `α = exp(log α)` is tuned to keep the policy's entropy near a target `H̄`
//! (usually `−dim(A)`): `J(log α) = −log α · mean(log π + H̄)`, so `∂J/∂log α = −mean(log π + H̄)`.

use crate::scalar::Scalar;

/// Bounds of `log σ` (SB3's).
pub const LOG_STD_MIN: f64 = -20.0;
pub const LOG_STD_MAX: f64 = 2.0;
/// Keeps `log(1 − a² + δ)` finite where `tanh` saturates.
const SQUASH_EPS: f64 = 1e-6;

/// Actions and log-probabilities of `rows` reparameterized samples: `mean`, `log_std` and `eps`
/// are `[rows, dim]`; writes `actions` (`[rows, dim]`, in (−1, 1)) and `log_probs` (`[rows]`).
pub fn squashed_sample<T: Scalar>(
    mean: &[T],
    log_std: &[T],
    eps: &[T],
    dim: usize,
    actions: &mut [T],
    log_probs: &mut [T],
) {
    let half_log_2pi = T::of(0.5 * (2.0 * std::f64::consts::PI).ln());
    let (lo, hi, delta) = (T::of(LOG_STD_MIN), T::of(LOG_STD_MAX), T::of(SQUASH_EPS));
    for (r, log_prob) in log_probs.iter_mut().enumerate() {
        let mut sum = T::zero();
        for j in r * dim..(r + 1) * dim {
            let log_sigma = log_std[j].max(lo).min(hi);
            let a = (mean[j] + log_sigma.exp() * eps[j]).tanh();
            actions[j] = a;
            sum += -T::of(0.5) * eps[j] * eps[j] - log_sigma - half_log_2pi - (T::one() - a * a + delta).ln();
        }
        *log_prob = sum;
    }
}

/// The gradients of a loss through [`squashed_sample`]: from `d_actions` (`[rows, dim]`) and
/// `d_log_probs` (`[rows]`) to `d_mean` and `d_log_std` (`[rows, dim]`, overwritten).
#[allow(clippy::too_many_arguments)]
pub fn squashed_backward<T: Scalar>(
    log_std: &[T],
    eps: &[T],
    actions: &[T],
    d_actions: &[T],
    d_log_probs: &[T],
    dim: usize,
    d_mean: &mut [T],
    d_log_std: &mut [T],
) {
    let (lo, hi, delta, two) = (T::of(LOG_STD_MIN), T::of(LOG_STD_MAX), T::of(SQUASH_EPS), T::of(2.0));
    for (r, &d_log_prob) in d_log_probs.iter().enumerate() {
        for j in r * dim..(r + 1) * dim {
            let a = actions[j];
            let one_minus = T::one() - a * a;
            let d_u = d_actions[j] * one_minus + d_log_prob * two * a * one_minus / (one_minus + delta);
            d_mean[j] = d_u;
            let clamped = log_std[j] < lo || log_std[j] > hi;
            d_log_std[j] = if clamped { T::zero() } else { d_u * log_std[j].exp() * eps[j] - d_log_prob };
        }
    }
}

/// The deterministic action `tanh(μ)` (evaluation, `predict(deterministic=True)`).
pub fn squashed_mean<T: Scalar>(mean: &[T], actions: &mut [T]) {
    actions.iter_mut().zip(mean).for_each(|(a, &m)| *a = m.tanh());
}

/// The temperature loss `−log α · mean(log π + target_entropy)` and its derivative in `log α`.
pub fn temperature_loss<T: Scalar>(log_alpha: T, log_probs: &[T], target_entropy: f64) -> (T, T) {
    let n = T::of(log_probs.len().max(1) as f64);
    let mean = log_probs.iter().map(|&l| l + T::of(target_entropy)).sum::<T>() / n;
    (-log_alpha * mean, -mean)
}
