//! DQN's and SAC's experience replay: per-env n-step assembly ([`NStepAssembler`]) into a ring of
//! transitions ([`PrioritizedReplay`], the storage Ape-X's replay service uses too), sampled
//! uniformly into a contiguous batch.

use std::collections::VecDeque;
use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};
use shoal_dist::replay::{NStepAssembler, PendingStep, PrioritizedReplay, Step, Transitions};
use shoal_env::vector::Batch;

use crate::error::{AlgoError, Result};

/// Env `i`'s transition in the vector step that produced `batch`: the observation and the
/// action the agent chose it on, the reward and ending from `batch`, and the observation it
/// bootstraps from (the episode's last one when it ended here).
pub(crate) fn env_step<'a>(batch: &'a Batch, i: usize, obs: &'a [f32], action: &'a [f32]) -> Step<'a> {
    Step {
        obs,
        action,
        reward: batch.rewards[i],
        next_obs: batch.final_obs(i).unwrap_or_else(|| batch.obs_row(i)),
        terminated: batch.terminated[i],
        episode_end: batch.done(i),
    }
}

/// A uniform replay with n-step returns.
#[derive(Debug)]
pub struct ReplayBuffer {
    rows: PrioritizedReplay,
    nstep: NStepAssembler,
    /// Transitions a step completed, on their way into the ring.
    completed: Transitions,
}

/// What of the buffer goes into `state.json` (the rows go to `replay.safetensors`).
#[derive(Debug, Serialize, Deserialize)]
struct ReplayMeta {
    pending: Vec<VecDeque<PendingStep>>,
}

impl ReplayBuffer {
    /// A buffer of `capacity` transitions of observation width `obs_dim` and action width
    /// `act_dim` (1 for a discrete index) from `num_envs` envs.
    pub fn new(
        capacity: usize,
        obs_dim: usize,
        act_dim: usize,
        num_envs: usize,
        n_step: usize,
        gamma: f64,
    ) -> Result<Self> {
        Ok(ReplayBuffer {
            rows: PrioritizedReplay::with_act_dim(capacity, obs_dim, act_dim, 0.0)?,
            nstep: NStepAssembler::new(num_envs, n_step, gamma),
            completed: Transitions::with_act_dim(obs_dim, act_dim),
        })
    }

    /// Number of stored transitions.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Adds env `env`'s step; the transitions it completes enter the ring.
    pub fn add(&mut self, env: usize, step: Step<'_>) -> Result<()> {
        self.completed.clear();
        self.nstep.add(env, step, &mut self.completed);
        if !self.completed.is_empty() {
            self.rows.insert(&self.completed, None)?;
        }
        Ok(())
    }

    /// Samples `size` transitions uniformly (with replacement) into `batch`.
    pub fn sample(&mut self, size: usize, rng: &mut impl Rng, batch: &mut Transitions) {
        self.rows.sample_uniform(size, rng, batch);
    }

    /// Saves the rows to `path` and returns the n-step windows for `state.json`.
    pub fn save(&self, path: &Path) -> Result<serde_json::Value> {
        self.rows.save(path)?;
        let meta = ReplayMeta { pending: self.nstep.pending().to_vec() };
        serde_json::to_value(meta)
            .map_err(|e| AlgoError::Io { path: path.display().to_string(), message: e.to_string() })
    }

    /// Restores what [`ReplayBuffer::save`] wrote.
    pub fn load(&mut self, path: &Path, meta: &serde_json::Value) -> Result<()> {
        let bad = |message: String| AlgoError::Io { path: path.display().to_string(), message };
        let meta: ReplayMeta = serde_json::from_value(meta.clone()).map_err(|e| bad(e.to_string()))?;
        self.rows.load(path)?;
        self.nstep.restore(meta.pending).map_err(bad)
    }
}
