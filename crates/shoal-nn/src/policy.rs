//! Action distributions on top of a network's outputs: categorical (logits) for discrete
//! actions, diagonal Gaussian (means plus a learned, state-independent log-std) for continuous.
//!
//! Per-row math is done in `f64`: it is O(actions) per sample, negligible next to the matrix
//! products, and keeps `log π` and its gradient accurate for PPO's ratios.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::scalar::Scalar;

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// The distribution a policy network parameterizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyHead {
    /// `n` logits → softmax over `n` actions.
    Categorical { n: usize },
    /// `dim` means, with a learned log-std vector of the same size.
    Gaussian { dim: usize },
}

impl PolicyHead {
    /// Network outputs per row.
    pub fn out_dim(&self) -> usize {
        match *self {
            PolicyHead::Categorical { n } => n,
            PolicyHead::Gaussian { dim } => dim,
        }
    }

    /// Values per action (1 for a discrete index).
    pub fn action_dim(&self) -> usize {
        match *self {
            PolicyHead::Categorical { .. } => 1,
            PolicyHead::Gaussian { dim } => dim,
        }
    }

    /// `log π(action | out)`.
    pub fn log_prob<T: Scalar>(&self, out: &[T], log_std: &[T], action: &[T]) -> f64 {
        self.log_prob_and_normalizer(out, log_std, action).0
    }

    /// `log π(action | out)` and the log-normalizer it subtracted (`log Σ exp(out)` of a
    /// categorical, 0 for a Gaussian), which the loss's backward pass takes instead of
    /// computing it again: exponentials and logarithms were a sixth of the actor's half of a
    /// CartPole PPO update.
    pub(crate) fn log_prob_and_normalizer<T: Scalar>(&self, out: &[T], log_std: &[T], action: &[T]) -> (f64, f64) {
        match self {
            PolicyHead::Categorical { .. } => {
                let lse = log_sum_exp(out);
                (out[action[0].as_f64() as usize].as_f64() - lse, lse)
            }
            PolicyHead::Gaussian { .. } => (self.gaussian_log_prob(out, log_std, action), 0.0),
        }
    }

    fn gaussian_log_prob<T: Scalar>(&self, out: &[T], log_std: &[T], action: &[T]) -> f64 {
        out.iter()
            .zip(log_std)
            .zip(action)
            .map(|((&mu, &ls), &a)| {
                let z = (a.as_f64() - mu.as_f64()) / ls.as_f64().exp();
                -0.5 * z * z - ls.as_f64() - HALF_LN_2PI
            })
            .sum()
    }

    /// Entropy of the distribution at `out`.
    pub fn entropy<T: Scalar>(&self, out: &[T], log_std: &[T]) -> f64 {
        match self {
            PolicyHead::Categorical { .. } => {
                let lse = log_sum_exp(out);
                -out.iter().map(|&z| (z.as_f64() - lse).exp() * (z.as_f64() - lse)).sum::<f64>()
            }
            PolicyHead::Gaussian { .. } => log_std.iter().map(|&ls| 0.5 + HALF_LN_2PI + ls.as_f64()).sum(),
        }
    }

    /// Writes `c_logp·∂log π/∂out + c_ent·∂H/∂out` into `d_out`, adds the same combination of
    /// `∂/∂log_std` into `d_log_std`, and returns the entropy `H`. `normalizer` is what
    /// [`PolicyHead::log_prob_and_normalizer`] returned for this row.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backprop_log_prob_and_entropy<T: Scalar>(
        &self,
        out: &[T],
        log_std: &[T],
        action: &[T],
        normalizer: f64,
        c_logp: T,
        c_ent: T,
        d_out: &mut [T],
        d_log_std: &mut [T],
    ) -> f64 {
        let (c_logp, c_ent) = (c_logp.as_f64(), c_ent.as_f64());
        match self {
            PolicyHead::Categorical { .. } => {
                let lse = normalizer;
                let taken = action[0].as_f64() as usize;
                // Probabilities are needed twice (the entropy, then each gradient): kept for
                // up to 16 actions, computed again (the same expression) beyond.
                let mut kept = [0.0f64; 16];
                let keep = out.len() <= kept.len();
                let prob = |z: T| (z.as_f64() - lse).exp();
                let mut entropy = 0.0;
                for (j, &z) in out.iter().enumerate() {
                    let p = prob(z);
                    if keep {
                        kept[j] = p;
                    }
                    entropy -= p * (z.as_f64() - lse);
                }
                for (j, (d, &z)) in d_out.iter_mut().zip(out).enumerate() {
                    let logp = z.as_f64() - lse;
                    let p = if keep { kept[j] } else { prob(z) };
                    let d_logp = if j == taken { 1.0 - p } else { -p };
                    let d_entropy = -p * (logp + entropy);
                    *d = T::of(c_logp * d_logp + c_ent * d_entropy);
                }
                entropy
            }
            PolicyHead::Gaussian { .. } => {
                for (k, d) in d_out.iter_mut().enumerate() {
                    let std = log_std[k].as_f64().exp();
                    let z = (action[k].as_f64() - out[k].as_f64()) / std;
                    *d = T::of(c_logp * z / std);
                    d_log_std[k] += T::of(c_logp * (z * z - 1.0) + c_ent);
                }
                self.entropy(out, log_std)
            }
        }
    }

    /// Draws an action into `action` and returns its log-probability.
    pub fn sample<T: Scalar, R: Rng + ?Sized>(&self, out: &[T], log_std: &[T], rng: &mut R, action: &mut [T]) -> f64 {
        match self {
            PolicyHead::Categorical { .. } => {
                let lse = log_sum_exp(out);
                let u: f64 = rng.random();
                let mut cumulative = 0.0;
                let mut chosen = out.len() - 1;
                for (j, &z) in out.iter().enumerate() {
                    cumulative += (z.as_f64() - lse).exp();
                    if u < cumulative {
                        chosen = j;
                        break;
                    }
                }
                action[0] = T::of(chosen as f64);
            }
            PolicyHead::Gaussian { .. } => {
                for ((a, &mu), &ls) in action.iter_mut().zip(out).zip(log_std) {
                    let noise: f64 = rng.sample(StandardNormal);
                    *a = T::of(mu.as_f64() + ls.as_f64().exp() * noise);
                }
            }
        }
        self.log_prob(out, log_std, action)
    }

    /// The most likely action (argmax, or the mean): what `predict(deterministic)` returns.
    pub fn mode<T: Scalar>(&self, out: &[T], action: &mut [T]) {
        match self {
            PolicyHead::Categorical { .. } => {
                let best = out.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (j, &z)| {
                    if z.as_f64() > best.1 {
                        (j, z.as_f64())
                    } else {
                        best
                    }
                });
                action[0] = T::of(best.0 as f64);
            }
            PolicyHead::Gaussian { .. } => action.copy_from_slice(out),
        }
    }
}

fn log_sum_exp<T: Scalar>(z: &[T]) -> f64 {
    let max = z.iter().map(|x| x.as_f64()).fold(f64::NEG_INFINITY, f64::max);
    max + z.iter().map(|x| (x.as_f64() - max).exp()).sum::<f64>().ln()
}
