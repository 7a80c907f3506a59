use crate::env::{Env, StepResult};
use crate::error::Result;
use crate::space::Action;

use super::forward_env;

/// Truncates episodes after `max_episode_steps` steps (Gymnasium's `TimeLimit`): the step that
/// reaches the limit reports `truncated = true` unless the env terminated on that same step.
#[derive(Debug, Clone)]
pub struct TimeLimit<E> {
    inner: E,
    max_episode_steps: u64,
    elapsed: u64,
}

impl<E: Env> TimeLimit<E> {
    pub fn new(inner: E, max_episode_steps: u64) -> Self {
        TimeLimit { inner, max_episode_steps, elapsed: 0 }
    }

    /// A wrapper `elapsed` steps into its episode (what a snapshot of it holds).
    pub(crate) fn resume(inner: E, max_episode_steps: u64, elapsed: u64) -> Self {
        TimeLimit { inner, max_episode_steps, elapsed }
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }

    pub fn max_episode_steps(&self) -> u64 {
        self.max_episode_steps
    }

    /// Steps taken in the current episode.
    pub fn elapsed_steps(&self) -> u64 {
        self.elapsed
    }
}

impl<E: Env> Env for TimeLimit<E> {
    crate::env::snapshot_fields!(inner; elapsed);

    forward_env!(name, observation_space, action_space);

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        self.elapsed = 0;
        self.inner.reset(seed, obs)
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        self.elapsed = 0;
        self.inner.reset_to_state(state, obs)
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let mut result = self.inner.step(action, obs)?;
        self.elapsed += 1;
        if self.elapsed >= self.max_episode_steps {
            result.truncated = true;
        }
        Ok(result)
    }
}
