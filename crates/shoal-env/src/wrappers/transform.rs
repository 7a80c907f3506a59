use crate::env::{Env, StepResult};
use crate::error::Result;
use crate::space::{Action, Space};

use super::forward_env;

/// Applies a function to every observation in place (Gymnasium's `TransformObservation`).
/// Give the new observation space when the function changes the bounds.
pub struct TransformObservation<E, F> {
    inner: E,
    func: F,
    observation_space: Space,
}

impl<E: Env, F: FnMut(&mut [f32]) + Send> TransformObservation<E, F> {
    /// `observation_space: None` keeps the inner env's space.
    pub fn new(inner: E, func: F, observation_space: Option<Space>) -> Self {
        let observation_space = observation_space.unwrap_or_else(|| inner.observation_space().clone());
        TransformObservation { inner, func, observation_space }
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }
}

impl<E: Env, F: FnMut(&mut [f32]) + Send> Env for TransformObservation<E, F> {
    crate::env::snapshot_fields!(inner;);

    forward_env!(name, action_space);

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        self.inner.reset(seed, obs)?;
        (self.func)(obs);
        Ok(())
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        self.inner.reset_to_state(state, obs)?;
        (self.func)(obs);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let result = self.inner.step(action, obs)?;
        (self.func)(obs);
        Ok(result)
    }
}

/// Applies a function to every reward (Gymnasium's `TransformReward`), e.g. clipping.
pub struct TransformReward<E, F> {
    inner: E,
    func: F,
}

impl<E: Env, F: FnMut(f64) -> f64 + Send> TransformReward<E, F> {
    pub fn new(inner: E, func: F) -> Self {
        TransformReward { inner, func }
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }
}

impl<E: Env, F: FnMut(f64) -> f64 + Send> Env for TransformReward<E, F> {
    crate::env::snapshot_fields!(inner;);

    forward_env!(name, observation_space, action_space, reset, reset_to_state);

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let mut result = self.inner.step(action, obs)?;
        result.reward = (self.func)(result.reward);
        Ok(result)
    }
}
