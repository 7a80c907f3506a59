use crate::env::{Env, StepResult};
use crate::error::{EnvError, Result};
use crate::space::{Action, Space};

use super::forward_env;

/// Clips continuous actions into the inner env's bounds (Gymnasium's `ClipAction`), so a
/// Gaussian policy's unbounded samples are valid actions. The wrapper's own action space is
/// unbounded with the same shape. Non-finite actions are still rejected by the inner env.
#[derive(Debug, Clone)]
pub struct ClipAction<E> {
    inner: E,
    low: Vec<f32>,
    high: Vec<f32>,
    clipped: Vec<f32>,
    action_space: Space,
}

impl<E: Env> ClipAction<E> {
    /// Fails unless the inner env has a `Box` action space.
    pub fn new(inner: E) -> Result<Self> {
        let Space::Box { low, high, shape } = inner.action_space().clone() else {
            return Err(EnvError::SpaceMismatch(format!(
                "ClipAction needs a Box action space, but {} has {}",
                inner.name(),
                inner.action_space()
            )));
        };
        let action_space = Space::box_uniform(f32::NEG_INFINITY, f32::INFINITY, shape);
        Ok(ClipAction { clipped: vec![0.0; low.len()], low, high, inner, action_space })
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }
}

impl<E: Env> Env for ClipAction<E> {
    crate::env::snapshot_fields!(inner; );

    forward_env!(name, observation_space, reset, reset_to_state);

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let values = self.action_space.continuous_action(action).or_else(|e| match action {
            // Out-of-range is this wrapper's job; only the kind, length and NaN checks apply.
            Action::Continuous(v) if v.len() == self.low.len() && v.iter().all(|x| !x.is_nan()) => Ok(v),
            _ => Err(e),
        })?;
        for (((out, &x), &lo), &hi) in self.clipped.iter_mut().zip(values).zip(&self.low).zip(&self.high) {
            *out = x.clamp(lo, hi);
        }
        self.inner.step(Action::Continuous(&self.clipped), obs)
    }
}
