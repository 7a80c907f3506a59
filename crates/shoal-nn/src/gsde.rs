//! Generalized state-dependent exploration (gSDE; Raffin, Kober & Stulp, 2022, "Smooth
//! Exploration for Robotic Reinforcement Learning") for SAC's tanh-squashed Gaussian policy.
//!
//! Instead of fresh noise every step, an exploration matrix `W = σ ⊙ Z` (`[latent, dim]`,
//! `Z ~ N(0, I)` drawn now and then, `σ = exp(log σ)` learned) maps the policy's last hidden
//! features `h(s)` (held constant: no gradient flows into the features) to a noise that
//! changes smoothly with the state. Where plain noise averages out (MountainCarContinuous'
//! sparse goal), this keeps pushing one way long enough to find the reward.
//!
//! ```text
//! n_k = Σ_j h_j·σ_jk·Z_jk             v_k = Σ_j h_j²·σ_jk² + δ_v
//! u_k = μ_k + n_k                     a_k = tanh(u_k)
//! log π(a|s) = Σ_k [ −n_k²/(2v_k) − ½·log(2π·v_k) − log(1 − a_k² + δ) ]
//! ```
//!
//! (`δ_v = 1e-6` as SB3's `StateDependentNoiseDistribution`, `δ = 1e-6` as in
//! [`crate::squashed`]). Gradients with `Z` fixed, from `∂L/∂a` and `∂L/∂log π`:
//!
//! ```text
//! ∂L/∂u_k      = ∂L/∂a_k·(1 − a_k²) + ∂L/∂logπ · 2a_k(1 − a_k²)/(1 − a_k² + δ)
//! ∂L/∂μ_k      = ∂L/∂u_k
//! ∂L/∂n_k      = ∂L/∂u_k − ∂L/∂logπ · n_k/v_k
//! ∂L/∂v_k      = ∂L/∂logπ · (n_k²/(2v_k²) − 1/(2v_k))
//! ∂L/∂logσ_jk  = Σ_rows ∂L/∂n_k·h_j·σ_jk·Z_jk + ∂L/∂v_k·2h_j²·σ_jk²
//! ```
//!
//! A batch uses one `Z` for all rows (SB3 resets it before each gradient step) or one per row
//! (one per env while collecting).

use crate::scalar::Scalar;

/// Added to the variance (SB3's `epsilon`), so a zero feature vector still has a density.
const VARIANCE_EPS: f64 = 1e-6;
/// Keeps `log(1 − a² + δ)` finite where `tanh` saturates.
const SQUASH_EPS: f64 = 1e-6;

/// The shape of a gSDE head: `latent` features in, `dim` actions out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gsde {
    pub latent: usize,
    pub dim: usize,
}

/// One batch of samples, kept for the backward pass.
#[derive(Debug, Clone, Default)]
pub struct GsdeSamples<T> {
    /// `[rows, dim]`: the noise `n` added to the mean.
    pub noise: Vec<T>,
    /// `[rows, dim]`: the variance `v` of `u` given the state.
    pub variance: Vec<T>,
    /// `[rows, dim]`: the squashed actions, in (−1, 1).
    pub actions: Vec<T>,
    /// `[rows]`: their log-probabilities.
    pub log_probs: Vec<T>,
}

impl Gsde {
    /// The number of values of one exploration matrix (and of `log σ`).
    pub fn matrix_len(&self) -> usize {
        self.latent * self.dim
    }

    /// Row `r`'s exploration matrix in `z`: the only one, or the row's own.
    fn z_of<'a, T>(&self, z: &'a [T], r: usize) -> &'a [T] {
        let m = self.matrix_len();
        let group = if z.len() == m { 0 } else { r };
        &z[group * m..(group + 1) * m]
    }

    /// Samples actions for the rows of `mean` (`[rows, dim]`) and `features` (`[rows, latent]`)
    /// with `log_std` (`[latent, dim]`) and `z` (one `[latent, dim]` matrix, or one per row).
    pub fn sample<T: Scalar>(&self, mean: &[T], features: &[T], log_std: &[T], z: &[T], out: &mut GsdeSamples<T>) {
        let (l, d) = (self.latent, self.dim);
        let rows = features.len() / l.max(1);
        debug_assert!(z.len() == self.matrix_len() || z.len() == rows * self.matrix_len());
        for buf in [&mut out.noise, &mut out.variance, &mut out.actions] {
            buf.clear();
            buf.resize(rows * d, T::zero());
        }
        out.log_probs.clear();
        out.log_probs.resize(rows, T::zero());
        let half_log_2pi = T::of(0.5 * (2.0 * std::f64::consts::PI).ln());
        let (var_eps, delta, half) = (T::of(VARIANCE_EPS), T::of(SQUASH_EPS), T::of(0.5));
        for r in 0..rows {
            let h = &features[r * l..(r + 1) * l];
            let zr = self.z_of(z, r);
            let (noise, variance) = (&mut out.noise[r * d..(r + 1) * d], &mut out.variance[r * d..(r + 1) * d]);
            for (j, &hj) in h.iter().enumerate() {
                for k in 0..d {
                    let sigma = log_std[j * d + k].exp();
                    noise[k] += hj * sigma * zr[j * d + k];
                    variance[k] += hj * hj * sigma * sigma;
                }
            }
            let mut log_prob = T::zero();
            for k in 0..d {
                let v = variance[k] + var_eps;
                variance[k] = v;
                let a = (mean[r * d + k] + noise[k]).tanh();
                out.actions[r * d + k] = a;
                log_prob +=
                    -half * noise[k] * noise[k] / v - half * v.ln() - half_log_2pi - (T::one() - a * a + delta).ln();
            }
            out.log_probs[r] = log_prob;
        }
    }

    /// The gradients of a loss through [`Gsde::sample`] (same inputs, its `samples`): from
    /// `d_actions` (`[rows, dim]`) and `d_log_probs` (`[rows]`) to `d_mean` (`[rows, dim]`,
    /// overwritten) and `d_log_std` (`[latent, dim]`, accumulated).
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Scalar>(
        &self,
        features: &[T],
        log_std: &[T],
        z: &[T],
        samples: &GsdeSamples<T>,
        d_actions: &[T],
        d_log_probs: &[T],
        d_mean: &mut [T],
        d_log_std: &mut [T],
    ) {
        let (l, d) = (self.latent, self.dim);
        let (delta, two, half) = (T::of(SQUASH_EPS), T::of(2.0), T::of(0.5));
        for (r, &d_log_prob) in d_log_probs.iter().enumerate() {
            let h = &features[r * l..(r + 1) * l];
            let zr = self.z_of(z, r);
            for k in 0..d {
                let i = r * d + k;
                let a = samples.actions[i];
                let one_minus = T::one() - a * a;
                let d_u = d_actions[i] * one_minus + d_log_prob * two * a * one_minus / (one_minus + delta);
                d_mean[i] = d_u;
                let (n, v) = (samples.noise[i], samples.variance[i]);
                let d_noise = d_u - d_log_prob * n / v;
                let d_variance = d_log_prob * (half * n * n / (v * v) - half / v);
                for (j, &hj) in h.iter().enumerate() {
                    let sigma = log_std[j * d + k].exp();
                    d_log_std[j * d + k] +=
                        d_noise * hj * sigma * zr[j * d + k] + d_variance * two * hj * hj * sigma * sigma;
                }
            }
        }
    }
}
