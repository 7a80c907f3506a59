//! The one trait algorithms train through: batched forward, gradient of a named loss, and the
//! flat parameter and gradient vectors that optimizers, checkpoints and the parameter server
//! move around. A model behind another engine (e.g. `burn`, for convolutional nets or GPUs)
//! implements the same trait; algorithms and the parameter server never see the difference.

use crate::error::Result;
use crate::layout::ParamLayout;
use crate::loss::{PolicyObjective, TdLoss};
use crate::scalar::Scalar;

/// What a forward pass produced; which fields are set depends on the model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outputs<'a, T> {
    /// Policy logits or Gaussian means, `[rows, out_dim]`.
    pub policy: Option<&'a [T]>,
    /// State values, `[rows]`.
    pub value: Option<&'a [T]>,
    /// Q-values, `[rows, n_actions]`.
    pub q: Option<&'a [T]>,
}

/// A batch for the PPO / A2C loss: the policy-gradient term, the value loss and the entropy
/// bonus, `loss = L_pg − ent_coef·H + vf_coef·L_v`.
#[derive(Debug, Clone, Copy)]
pub struct PolicyGradientBatch<'a, T> {
    /// `[rows, obs_dim]`.
    pub obs: &'a [T],
    pub rows: usize,
    /// `[rows, action_dim]`; a discrete action is its index as a float.
    pub actions: &'a [T],
    pub old_log_probs: &'a [T],
    pub advantages: &'a [T],
    pub returns: &'a [T],
    /// Values at collection time (for value clipping).
    pub old_values: &'a [T],
    pub objective: PolicyObjective,
    /// PPO's value clipping range (`None`: plain ½·MSE).
    pub value_clip: Option<f64>,
    pub ent_coef: f64,
    pub vf_coef: f64,
}

impl<'a, T> PolicyGradientBatch<'a, T> {
    /// Rows `..at` and rows `at..`, each a batch of its own (for a step split over threads);
    /// `at` beyond the batch is its end.
    pub fn split_at(&self, at: usize) -> (Self, Self) {
        let at = at.min(self.rows);
        let rows = self.rows.max(1);
        let cut = |v: &'a [T]| {
            let (head, tail) = v.split_at(at * (v.len() / rows));
            [head, tail]
        };
        let (obs, actions, old_log_probs) = (cut(self.obs), cut(self.actions), cut(self.old_log_probs));
        let (advantages, returns, old_values) = (cut(self.advantages), cut(self.returns), cut(self.old_values));
        let part = |i: usize, rows| PolicyGradientBatch {
            obs: obs[i],
            rows,
            actions: actions[i],
            old_log_probs: old_log_probs[i],
            advantages: advantages[i],
            returns: returns[i],
            old_values: old_values[i],
            ..*self
        };
        (part(0, at), part(1, self.rows - at))
    }
}

/// A batch for DQN's TD loss on the taken actions.
#[derive(Debug, Clone, Copy)]
pub struct TdBatch<'a, T> {
    pub obs: &'a [T],
    pub rows: usize,
    pub actions: &'a [T],
    /// Bootstrapped targets `y = r + γⁿ·(1 − done)·Q_target(s', a*)`.
    pub targets: &'a [T],
    /// Importance-sampling weights (prioritized replay), `None` for uniform replay.
    pub weights: Option<&'a [T]>,
    pub kind: TdLoss,
}

/// A batch for policy distillation: match a teacher's logits on the same observations.
#[derive(Debug, Clone, Copy)]
pub struct DistillBatch<'a, T> {
    pub obs: &'a [T],
    pub rows: usize,
    pub teacher_logits: &'a [T],
    pub temperature: f64,
}

/// The losses a model can be asked to differentiate.
#[derive(Debug, Clone, Copy)]
pub enum Loss<'a, T> {
    PolicyGradient(PolicyGradientBatch<'a, T>),
    Td(TdBatch<'a, T>),
    Distill(DistillBatch<'a, T>),
}

impl<T> Loss<'_, T> {
    pub fn name(&self) -> &'static str {
        match self {
            Loss::PolicyGradient(_) => "policy-gradient",
            Loss::Td(_) => "TD",
            Loss::Distill(_) => "distillation",
        }
    }
}

/// Scalar results of one loss evaluation, named as CleanRL logs them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// The optimized total.
    pub total: f64,
    pub policy: f64,
    pub value: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub clip_fraction: f64,
    /// TD or distillation loss.
    pub td: f64,
}

/// A trainable model over a flat parameter vector.
pub trait Model<T: Scalar = f32>: Send {
    /// A short name for error messages.
    fn name(&self) -> &'static str;

    fn layout(&self) -> &ParamLayout;

    fn params(&self) -> &[T];

    fn params_mut(&mut self) -> &mut [T];

    /// Gradients of the last `loss_and_grad`, laid out like `params`.
    fn grads(&self) -> &[T];

    /// Runs a batch of `[rows, obs_dim]` observations forward. Allocates nothing once the
    /// model has seen a batch this large.
    fn forward(&mut self, obs: &[T], rows: usize) -> Result<Outputs<'_, T>>;

    /// Evaluates `loss` on its batch and overwrites `grads()` with its gradient.
    fn loss_and_grad(&mut self, loss: Loss<'_, T>) -> Result<LossStats>;

    /// `q(s,a) − y` per sample from the last TD loss (for replay priorities); empty otherwise.
    fn td_errors(&self) -> &[T] {
        &[]
    }

    /// Replaces the parameters (e.g. pulled from a parameter server), checking the length.
    fn set_params(&mut self, params: &[T]) -> Result<()> {
        self.layout().check_len("parameter vector", params.len())?;
        self.params_mut().copy_from_slice(params);
        Ok(())
    }
}

/// Implements the `Model` methods of a model that keeps `layout`, `params` and `grads` fields.
macro_rules! flat_param_fields {
    ($name:expr) => {
        fn name(&self) -> &'static str {
            $name
        }
        fn layout(&self) -> &crate::layout::ParamLayout {
            &self.layout
        }
        fn params(&self) -> &[T] {
            &self.params
        }
        fn params_mut(&mut self) -> &mut [T] {
            &mut self.params
        }
        fn grads(&self) -> &[T] {
            &self.grads
        }
    };
}
pub(crate) use flat_param_fields;
