//! The losses RL algorithms train with, each returning its value and writing its gradient
//! with respect to the network outputs (the model then backpropagates that gradient).
//!
//! Every loss is a mean over the batch; the formulas follow CleanRL's PPO/A2C/DQN and
//! PyTorch's `mse_loss` / `smooth_l1_loss`, so hyperparameters transfer.

use crate::policy::PolicyHead;
use crate::scalar::Scalar;

/// How the policy-gradient term weighs `log π(a|s)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PolicyObjective {
    /// PPO: `max(−A·r, −A·clip(r, 1−ε, 1+ε))` with `r = π/π_old` (Schulman et al., 2017).
    Clipped { clip: f64 },
    /// A2C: `−A·log π(a|s)`.
    Vanilla,
}

/// Statistics of one policy-loss evaluation (means over the batch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicyStats {
    pub loss: f64,
    pub entropy: f64,
    /// `mean((r − 1) − log r)`: the low-variance KL estimator CleanRL logs.
    pub approx_kl: f64,
    /// Fraction of samples whose ratio left `[1−ε, 1+ε]`.
    pub clip_fraction: f64,
}

/// What the policy-gradient loss needs per sample: `[rows, action_dim]` actions (a discrete
/// action is its index as a float), advantages and the behaviour policy's log-probabilities.
#[derive(Debug, Clone, Copy)]
pub struct PolicySamples<'a, T> {
    pub actions: &'a [T],
    pub advantages: &'a [T],
    pub old_log_probs: &'a [T],
}

/// Policy loss minus `ent_coef`·entropy. Writes `∂/∂outputs` into `d_out` (`[rows, out_dim]`,
/// overwritten) and adds `∂/∂log_std` into `d_log_std` (Gaussian heads).
#[allow(clippy::too_many_arguments)]
pub fn policy_loss<T: Scalar>(
    head: &PolicyHead,
    outputs: &[T],
    log_std: &[T],
    rows: usize,
    samples: PolicySamples<'_, T>,
    objective: PolicyObjective,
    ent_coef: f64,
    d_out: &mut [T],
    d_log_std: &mut [T],
) -> PolicyStats {
    let width = head.out_dim();
    let action_dim = head.action_dim();
    let inv_rows = 1.0 / rows as f64;
    let mut stats = PolicyStats::default();
    for i in 0..rows {
        let out = &outputs[i * width..(i + 1) * width];
        let d = &mut d_out[i * width..(i + 1) * width];
        let action = &samples.actions[i * action_dim..(i + 1) * action_dim];
        let (advantage, old_logp) = (samples.advantages[i].as_f64(), samples.old_log_probs[i].as_f64());
        // ∂loss/∂log π for this sample, and the sample's loss.
        let (logp, normalizer) = head.log_prob_and_normalizer(out, log_std, action);
        let (coef, loss) = match objective {
            PolicyObjective::Clipped { clip } => {
                let log_ratio = logp - old_logp;
                let ratio = log_ratio.exp();
                let unclipped = -advantage * ratio;
                let clipped = -advantage * ratio.clamp(1.0 - clip, 1.0 + clip);
                stats.approx_kl += (ratio - 1.0) - log_ratio;
                if (ratio - 1.0).abs() > clip {
                    stats.clip_fraction += 1.0;
                }
                // The max picks the unclipped branch (gradient −A·r) unless clipping binds.
                if unclipped >= clipped {
                    (-advantage * ratio, unclipped)
                } else {
                    (0.0, clipped)
                }
            }
            PolicyObjective::Vanilla => (-advantage, -advantage * logp),
        };
        stats.loss += loss;
        let entropy = head.backprop_log_prob_and_entropy(
            out,
            log_std,
            action,
            normalizer,
            T::of(coef * inv_rows),
            T::of(-ent_coef * inv_rows),
            d,
            d_log_std,
        );
        stats.entropy += entropy;
    }
    stats.loss *= inv_rows;
    stats.entropy *= inv_rows;
    stats.approx_kl *= inv_rows;
    stats.clip_fraction *= inv_rows;
    stats.loss -= ent_coef * stats.entropy;
    stats
}

/// `vf_coef · ½·mean((v − R)²)`, or with `clip` the clipped form
/// `½·mean(max((v − R)², (v_old + clip(v − v_old, ±ε) − R)²))`. Writes `∂/∂v` into `d_values`.
/// Returns the unweighted value loss.
pub fn value_loss<T: Scalar>(
    values: &[T],
    returns: &[T],
    old_values: &[T],
    clip: Option<f64>,
    vf_coef: f64,
    d_values: &mut [T],
) -> f64 {
    let rows = values.len();
    let scale = vf_coef / rows as f64;
    let mut total = 0.0;
    for i in 0..rows {
        let (v, ret) = (values[i].as_f64(), returns[i].as_f64());
        let error = v - ret;
        let (loss, grad) = match clip {
            None => (error * error, error),
            Some(eps) => {
                let old = old_values[i].as_f64();
                let delta = v - old;
                let clipped_error = old + delta.clamp(-eps, eps) - ret;
                if error * error >= clipped_error * clipped_error {
                    (error * error, error)
                } else {
                    // The clipped branch moves with v only inside the clip range.
                    (clipped_error * clipped_error, if delta.abs() < eps { clipped_error } else { 0.0 })
                }
            }
        };
        total += 0.5 * loss;
        d_values[i] = T::of(grad * scale);
    }
    total / rows as f64
}

/// The per-sample TD loss of DQN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TdLoss {
    /// `(q − y)²` (PyTorch `mse_loss`, CleanRL's DQN).
    Mse,
    /// `½x²` for `|x| < δ`, else `δ(|x| − ½δ)` (PyTorch `smooth_l1_loss`/`huber_loss`, SB3's DQN).
    Huber { delta: f64 },
}

/// Mean (optionally importance-weighted) TD loss on the taken actions' Q-values.
/// `q`: `[rows, n_actions]`; `actions`: `[rows]` indices as floats. Writes `∂/∂q` into `d_q`
/// (zero except at taken actions) and `q(s,a) − y` into `td_errors` (for priorities).
#[allow(clippy::too_many_arguments)]
pub fn td_loss<T: Scalar>(
    q: &[T],
    n_actions: usize,
    actions: &[T],
    targets: &[T],
    weights: Option<&[T]>,
    kind: TdLoss,
    d_q: &mut [T],
    td_errors: &mut [T],
) -> f64 {
    let rows = targets.len();
    d_q.fill(T::zero());
    let mut total = 0.0;
    for i in 0..rows {
        let a = actions[i].as_f64() as usize;
        let x = q[i * n_actions + a].as_f64() - targets[i].as_f64();
        let w = weights.map_or(1.0, |w| w[i].as_f64());
        let (loss, grad) = match kind {
            TdLoss::Mse => (x * x, 2.0 * x),
            TdLoss::Huber { delta } if x.abs() < delta => (0.5 * x * x, x),
            TdLoss::Huber { delta } => (delta * (x.abs() - 0.5 * delta), delta * x.signum()),
        };
        total += w * loss;
        d_q[i * n_actions + a] = T::of(w * grad / rows as f64);
        td_errors[i] = T::of(x);
    }
    total / rows as f64
}

/// Policy distillation (Rusu et al., 2016): `mean KL(softmax(t/τ) ‖ softmax(s/τ))` from teacher
/// logits `t` to student logits `s`, both `[rows, n]`. Writes `∂/∂s` into `d_student`.
pub fn distill_kl<T: Scalar>(student: &[T], teacher: &[T], n: usize, temperature: f64, d_student: &mut [T]) -> f64 {
    let rows = student.len() / n;
    let mut total = 0.0;
    let mut p_t = vec![0.0; n];
    let mut logp_s = vec![0.0; n];
    for i in 0..rows {
        let range = i * n..(i + 1) * n;
        log_softmax_scaled(&teacher[range.clone()], temperature, &mut p_t);
        log_softmax_scaled(&student[range.clone()], temperature, &mut logp_s);
        for j in 0..n {
            let (lt, ls) = (p_t[j], logp_s[j]);
            let pt = lt.exp();
            total += pt * (lt - ls);
            d_student[i * n + j] = T::of((ls.exp() - pt) / temperature / rows as f64);
        }
    }
    total / rows as f64
}

/// `log_softmax(z / τ)` into `out`, in `f64`.
fn log_softmax_scaled<T: Scalar>(z: &[T], temperature: f64, out: &mut [f64]) {
    let max = z.iter().map(|x| x.as_f64() / temperature).fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|x| (x.as_f64() / temperature - max).exp()).sum();
    let lse = max + sum.ln();
    for (o, x) in out.iter_mut().zip(z) {
        *o = x.as_f64() / temperature - lse;
    }
}
