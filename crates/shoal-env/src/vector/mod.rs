//! Vector envs: step many envs as one, into contiguous batch buffers.
//!
//! **Auto-reset is same-step** (Gymnasium's `AutoresetMode.SAME_STEP`): when env `i` ends an
//! episode on a step, that step's `obs` row already holds the *first observation of the next
//! episode*, and the episode's last observation is in `final_obs` row `i` (valid only where
//! `terminated[i] || truncated[i]`). A learner bootstraps a truncated episode from
//! `final_obs(i)`, never from `obs` — the mistake the next-step mode makes easy to avoid and
//! the same-step mode makes impossible to hide. The finished episode's return and length are in
//! `finished_return` / `finished_length` at the same index.
//!
//! The other Gymnasium mode, next-step ([`AutoresetMode::NextStep`], Gymnasium's default), is
//! there for Python users who expect it (`shoal.make_vec(..., autoreset_mode=...)`): the step
//! that ends an episode returns its last observation in `obs`, and the env's next step ignores
//! its action and resets it (reward 0, neither flag set). Shoal's learners use same-step.
//!
//! Env `i` is seeded with `seed + i` on `reset(Some(seed))`, as in Gymnasium.

pub(crate) mod slice;
mod sync;
mod threaded;

pub use slice::{EnvSlice, Rows};
pub use sync::SyncVectorEnv;
pub use threaded::ThreadedVectorEnv;

use serde::{Deserialize, Serialize};

use crate::env::Snapshot;
use crate::error::{EnvError, Result};
use crate::space::{Action, Space};

/// A batch of environments stepped together.
pub trait VecEnv: Send {
    fn num_envs(&self) -> usize;

    /// The observation space of one env.
    fn single_observation_space(&self) -> &Space;

    /// The action space of one env.
    fn single_action_space(&self) -> &Space;

    /// Resets every env (env `i` with `seed + i` when a seed is given).
    fn reset(&mut self, seed: Option<u64>) -> Result<()>;

    /// Steps every env with its action; finished envs are reset in the same step.
    fn step(&mut self, actions: Actions<'_>) -> Result<()>;

    /// The buffers the last `reset`/`step` wrote.
    fn batch(&self) -> &Batch;

    /// Every env's state and the batch buffers, so a checkpointed run resumes bit for bit.
    fn snapshot(&mut self) -> Result<Snapshot>;

    /// Restores a [`VecEnv::snapshot`] of a vector env built the same way.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<()>;

    /// Chooses when finished envs reset (same-step unless changed), from the next step on.
    /// Vector envs that cannot reset the other way say so (Python vector envs are same-step).
    fn set_autoreset_mode(&mut self, mode: AutoresetMode) -> Result<()>;
}

/// When a vector env resets an env that finished an episode (Gymnasium's `AutoresetMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoresetMode {
    /// In the step that ended the episode; its last observation goes to `final_obs`.
    #[default]
    SameStep,
    /// In the env's next step, whose action is ignored; the ending step's `obs` is the last one.
    NextStep,
}

/// The JSON layout of a vector env snapshot: `{"envs": [...], "batch": {...}}`.
pub(crate) fn pack_snapshot(envs: Vec<Snapshot>, batch: &Batch) -> Result<Snapshot> {
    let batch = serde_json::to_value(batch).map_err(|e| EnvError::SpaceMismatch(format!("batch snapshot: {e}")))?;
    Ok(serde_json::json!({ "envs": envs, "batch": batch }))
}

/// Splits a vector env snapshot, checking it holds `num_envs` envs.
pub(crate) fn unpack_snapshot(snapshot: &Snapshot, num_envs: usize) -> Result<(Vec<Snapshot>, Batch)> {
    let bad = |problem: String| EnvError::SpaceMismatch(format!("vector env snapshot: {problem}"));
    let envs = snapshot.get("envs").and_then(|e| e.as_array()).ok_or_else(|| bad("no `envs` list".into()))?;
    if envs.len() != num_envs {
        return Err(bad(format!("holds {} envs, this vector env has {num_envs}", envs.len())));
    }
    let mut batch: Batch = snapshot
        .get("batch")
        .map(|b| Batch::deserialize(b).map_err(|e| bad(e.to_string())))
        .ok_or_else(|| bad("no `batch`".into()))??;
    // Snapshots from before next-step mode existed have no pending resets.
    batch.pending_reset.resize(num_envs, false);
    Ok((envs.clone(), batch))
}

/// One action per env, contiguous: `[num_envs]` integers or `[num_envs, action_dim]` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Actions<'a> {
    Discrete(&'a [i64]),
    Continuous(&'a [f32]),
    MultiDiscrete(&'a [i64]),
}

impl<'a> Actions<'a> {
    fn len(&self) -> usize {
        match self {
            Actions::Discrete(v) | Actions::MultiDiscrete(v) => v.len(),
            Actions::Continuous(v) => v.len(),
        }
    }

    /// The action of env `i`, `per_env` values wide.
    pub(crate) fn get(&self, i: usize, per_env: usize) -> Action<'a> {
        let range = i * per_env..(i + 1) * per_env;
        match *self {
            Actions::Discrete(v) => Action::Discrete(v[i]),
            Actions::Continuous(v) => Action::Continuous(&v[range]),
            Actions::MultiDiscrete(v) => Action::MultiDiscrete(&v[range]),
        }
    }

    /// The actions of envs `start..end`.
    fn slice(&self, start: usize, end: usize, per_env: usize) -> Actions<'a> {
        let (a, b) = (start * per_env, end * per_env);
        match *self {
            Actions::Discrete(v) => Actions::Discrete(&v[a..b]),
            Actions::Continuous(v) => Actions::Continuous(&v[a..b]),
            Actions::MultiDiscrete(v) => Actions::MultiDiscrete(&v[a..b]),
        }
    }
}

/// Checks there is exactly one action per env before anything is stepped.
pub(crate) fn check_action_count(actions: &Actions<'_>, num_envs: usize, space: &Space) -> Result<usize> {
    let per_env = match space {
        Space::Discrete { .. } => 1,
        other => other.flat_dim(),
    };
    let expected = num_envs * per_env;
    if actions.len() != expected {
        return Err(EnvError::ActionCount { got: actions.len(), expected, num_envs, per_env });
    }
    Ok(per_env)
}

/// The contiguous buffers of a vector env, one row per env.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub num_envs: usize,
    pub obs_dim: usize,
    /// `[num_envs, obs_dim]`: the current observation of each env.
    pub obs: Vec<f32>,
    pub rewards: Vec<f32>,
    pub terminated: Vec<bool>,
    pub truncated: Vec<bool>,
    /// `[num_envs, obs_dim]`: the last observation of the episode that ended this step.
    pub final_obs: Vec<f32>,
    /// Return and length of the episode in progress.
    pub episode_return: Vec<f64>,
    pub episode_length: Vec<u64>,
    /// Return and length of the episode that ended this step (valid where done).
    pub finished_return: Vec<f64>,
    pub finished_length: Vec<u64>,
    /// When finished envs reset.
    #[serde(default)]
    pub autoreset: AutoresetMode,
    /// Next-step mode: env `i` ended an episode on the last step and resets on the next.
    #[serde(default)]
    pub pending_reset: Vec<bool>,
}

impl Batch {
    pub fn new(num_envs: usize, obs_dim: usize) -> Self {
        Batch {
            num_envs,
            obs_dim,
            obs: vec![0.0; num_envs * obs_dim],
            rewards: vec![0.0; num_envs],
            terminated: vec![false; num_envs],
            truncated: vec![false; num_envs],
            final_obs: vec![0.0; num_envs * obs_dim],
            episode_return: vec![0.0; num_envs],
            episode_length: vec![0; num_envs],
            finished_return: vec![0.0; num_envs],
            finished_length: vec![0; num_envs],
            autoreset: AutoresetMode::SameStep,
            pending_reset: vec![false; num_envs],
        }
    }

    /// The observation row of env `i`.
    pub fn obs_row(&self, i: usize) -> &[f32] {
        &self.obs[i * self.obs_dim..(i + 1) * self.obs_dim]
    }

    /// True when env `i` ended an episode on the last step.
    pub fn done(&self, i: usize) -> bool {
        self.terminated[i] || self.truncated[i]
    }

    /// The final observation of the episode env `i` ended on the last step, if it ended one.
    pub fn final_obs(&self, i: usize) -> Option<&[f32]> {
        self.done(i).then(|| &self.final_obs[i * self.obs_dim..(i + 1) * self.obs_dim])
    }

    /// Returns and lengths of the episodes that ended on the last step.
    pub fn finished_episodes(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        (0..self.num_envs).filter(|&i| self.done(i)).map(|i| (self.finished_return[i], self.finished_length[i]))
    }

    /// A mutable view of every row, for stepping on one thread.
    fn all_rows(&mut self) -> Rows<'_> {
        Rows {
            obs_dim: self.obs_dim,
            obs: &mut self.obs,
            rewards: &mut self.rewards,
            terminated: &mut self.terminated,
            truncated: &mut self.truncated,
            final_obs: &mut self.final_obs,
            episode_return: &mut self.episode_return,
            episode_length: &mut self.episode_length,
            finished_return: &mut self.finished_return,
            finished_length: &mut self.finished_length,
            autoreset: self.autoreset,
            pending_reset: &mut self.pending_reset,
        }
    }
}
