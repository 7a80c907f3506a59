//! [`EnvSlice`]: the envs one thread of a vector env steps, and the batch rows it writes.
//!
//! A `Vec` of any [`Env`] is a slice stepped one env at a time. An env type may bring a slice
//! of its own that steps all its envs at once — CartPole's structure of arrays
//! ([`crate::envs::cartpole::CartPoleLanes`]) runs four or eight envs per vector instruction —
//! and [`super::SyncVectorEnv`] and [`super::ThreadedVectorEnv`] take either. The episode
//! bookkeeping every slice must do the same way (statistics, final observations, the two
//! auto-reset modes) lives in [`Rows`], so a slice only steps and resets its envs.

use crate::env::{Env, Snapshot, StepResult};
use crate::error::{EnvError, Result};
use crate::space::Space;

use super::{Actions, AutoresetMode};

/// A contiguous run of envs that one thread resets and steps into its rows of a batch.
pub trait EnvSlice: Send + Sized + 'static {
    fn num_envs(&self) -> usize;

    /// Splits off envs `at..`, keeping `..at` (a threaded vector env gives each thread a run).
    fn split_off(&mut self, at: usize) -> Self;

    /// The observation and action space of one env; an error when there is no env or the
    /// envs' spaces differ.
    fn spaces(&self) -> Result<(Space, Space)>;

    /// Resets every env (env `j` with `seed + first_index + j`) and writes the first
    /// observations; [`Rows::clear`] the rest.
    fn reset(&mut self, seed: Option<u64>, first_index: usize, rows: Rows<'_>) -> Result<()>;

    /// Steps env `j` with action `j` of `actions` (`per_env` values each). An env whose
    /// [`Rows::take_pending_reset`] is true is reset instead; every other env's step goes
    /// through [`Rows::record_step`], which says whether to reset it now. `first_index` is the
    /// vector env's index of env 0, for error messages.
    fn step(&mut self, actions: Actions<'_>, per_env: usize, first_index: usize, rows: Rows<'_>) -> Result<()>;

    /// Each env's [`Env::snapshot`], in order.
    fn snapshots(&self) -> Result<Vec<Snapshot>>;

    /// Restores one snapshot per env.
    fn restore(&mut self, snapshots: &[Snapshot]) -> Result<()>;
}

/// Mutable views of a contiguous range of rows of a [`super::Batch`]: what one thread writes.
pub struct Rows<'a> {
    pub(crate) obs_dim: usize,
    pub(crate) obs: &'a mut [f32],
    pub(crate) rewards: &'a mut [f32],
    pub(crate) terminated: &'a mut [bool],
    pub(crate) truncated: &'a mut [bool],
    pub(crate) final_obs: &'a mut [f32],
    pub(crate) episode_return: &'a mut [f64],
    pub(crate) episode_length: &'a mut [u64],
    pub(crate) finished_return: &'a mut [f64],
    pub(crate) finished_length: &'a mut [u64],
    pub(crate) autoreset: AutoresetMode,
    pub(crate) pending_reset: &'a mut [bool],
}

impl Rows<'_> {
    /// Every observation row, contiguous (`[envs, obs_dim]`).
    pub fn all_obs(&mut self) -> &mut [f32] {
        self.obs
    }

    /// The observation row of env `j`.
    pub fn obs(&mut self, j: usize) -> &mut [f32] {
        &mut self.obs[j * self.obs_dim..(j + 1) * self.obs_dim]
    }

    /// True when env `j` waits for a next-step reset (it ended an episode on the last step);
    /// a slice must not step it then.
    pub fn reset_pending(&self, j: usize) -> bool {
        self.pending_reset[j]
    }

    /// Next-step mode: when env `j` ended its episode on the last step, clears the pending
    /// reset and this step's outputs (reward 0, neither flag) and returns true — the slice then
    /// resets the env instead of stepping it.
    pub fn take_pending_reset(&mut self, j: usize) -> bool {
        if !std::mem::take(&mut self.pending_reset[j]) {
            return false;
        }
        self.rewards[j] = 0.0;
        self.terminated[j] = false;
        self.truncated[j] = false;
        true
    }

    /// Records env `j`'s step (its observation already in its row): reward, flags, episode
    /// statistics and, when the episode ended, its final observation. Returns true when the
    /// env must be reset now (same-step mode); in next-step mode its reset is left pending.
    pub fn record_step(&mut self, j: usize, result: StepResult) -> bool {
        self.rewards[j] = result.reward as f32;
        self.terminated[j] = result.terminated;
        self.truncated[j] = result.truncated;
        self.episode_return[j] += result.reward;
        self.episode_length[j] += 1;
        if !result.done() {
            return false;
        }
        let row = j * self.obs_dim..(j + 1) * self.obs_dim;
        self.final_obs[row.clone()].copy_from_slice(&self.obs[row]);
        self.finished_return[j] = std::mem::take(&mut self.episode_return[j]);
        self.finished_length[j] = std::mem::take(&mut self.episode_length[j]);
        match self.autoreset {
            AutoresetMode::SameStep => true,
            AutoresetMode::NextStep => {
                self.pending_reset[j] = true;
                false
            }
        }
    }

    /// Records a step with `reward` that ended no episode for every env `j` with
    /// `!special[j]`, in one pass the compiler vectorizes (every row is written, the special
    /// ones with what they held). A batched slice records the special envs — pending resets,
    /// episode ends — one by one afterwards, with [`Rows::take_pending_reset`] and
    /// [`Rows::record_step`].
    #[inline(always)]
    pub fn record_ongoing_steps(&mut self, reward: f64, special: &[bool]) {
        // One loop per array: each reads `special` and writes one array, which the compiler
        // vectorizes without alias checks (one loop over all five stayed scalar).
        for (r, &s) in self.rewards.iter_mut().zip(special) {
            *r = if s { *r } else { reward as f32 };
        }
        for flags in [&mut *self.terminated, &mut *self.truncated] {
            for (flag, &s) in flags.iter_mut().zip(special) {
                *flag &= s;
            }
        }
        for (ret, &s) in self.episode_return.iter_mut().zip(special) {
            *ret = if s { *ret } else { *ret + reward };
        }
        for (length, &s) in self.episode_length.iter_mut().zip(special) {
            *length += u64::from(!s);
        }
    }

    /// After a reset of every env: no reward, no flag, no episode in progress.
    pub fn clear(&mut self) {
        self.rewards.fill(0.0);
        self.terminated.fill(false);
        self.truncated.fill(false);
        self.episode_return.fill(0.0);
        self.episode_length.fill(0);
        self.pending_reset.fill(false);
    }
}

/// Any env type, stepped one env at a time.
impl<E: Env + 'static> EnvSlice for Vec<E> {
    fn num_envs(&self) -> usize {
        self.len()
    }

    fn split_off(&mut self, at: usize) -> Self {
        Vec::split_off(self, at)
    }

    fn spaces(&self) -> Result<(Space, Space)> {
        let first =
            self.first().ok_or_else(|| EnvError::SpaceMismatch("a vector env needs at least one env".into()))?;
        for (i, env) in self.iter().enumerate().skip(1) {
            if env.observation_space() != first.observation_space() || env.action_space() != first.action_space() {
                return Err(EnvError::SpaceMismatch(format!(
                    "env {i} has spaces {} / {}, env 0 has {} / {}; all envs of a vector env must share their spaces",
                    env.observation_space(),
                    env.action_space(),
                    first.observation_space(),
                    first.action_space()
                )));
            }
        }
        Ok((first.observation_space().clone(), first.action_space().clone()))
    }

    fn reset(&mut self, seed: Option<u64>, first_index: usize, mut rows: Rows<'_>) -> Result<()> {
        for (j, env) in self.iter_mut().enumerate() {
            env.reset(seed.map(|s| s.wrapping_add((first_index + j) as u64)), rows.obs(j))?;
        }
        rows.clear();
        Ok(())
    }

    fn step(&mut self, actions: Actions<'_>, per_env: usize, first_index: usize, mut rows: Rows<'_>) -> Result<()> {
        for (j, env) in self.iter_mut().enumerate() {
            if rows.take_pending_reset(j) {
                env.reset(None, rows.obs(j))?;
                continue;
            }
            let result = env.step(actions.get(j, per_env), rows.obs(j))?;
            check_finite(env.name(), result.reward, rows.obs(j), first_index + j)?;
            if rows.record_step(j, result) {
                env.reset(None, rows.obs(j))?;
            }
        }
        Ok(())
    }

    fn snapshots(&self) -> Result<Vec<Snapshot>> {
        self.iter().map(|env| env.snapshot()).collect()
    }

    fn restore(&mut self, snapshots: &[Snapshot]) -> Result<()> {
        check_snapshot_count(snapshots, self.len())?;
        self.iter_mut().zip(snapshots).try_for_each(|(env, s)| env.restore(s))
    }
}

/// Rejects NaN or infinite rewards and observations before they reach a learner.
pub(crate) fn check_finite(env: &str, reward: f64, obs: &[f32], index: usize) -> Result<()> {
    let non_finite = |what, value: f64| EnvError::NonFinite { env: env.to_string(), what, value, index };
    if !reward.is_finite() {
        return Err(non_finite("reward", reward));
    }
    match obs.iter().find(|x| !x.is_finite()) {
        Some(&x) => Err(non_finite("observation", x as f64)),
        None => Ok(()),
    }
}

/// A slice restores exactly one snapshot per env.
pub(crate) fn check_snapshot_count(snapshots: &[Snapshot], num_envs: usize) -> Result<()> {
    if snapshots.len() != num_envs {
        return Err(EnvError::SpaceMismatch(format!(
            "vector env snapshot: {} env snapshots for {num_envs} envs",
            snapshots.len()
        )));
    }
    Ok(())
}

/// The indices of the lanes whose flag is set (not `T::default()`), skipping unset blocks of
/// 16 with one vectorized test: for per-lane slow paths that a few percent of lanes take (a
/// struct-of-arrays env's special steps, its libm fallbacks).
#[inline(always)]
pub(crate) fn marked_lanes<T: Copy + Default + PartialEq>(flags: &[T]) -> impl Iterator<Item = usize> + '_ {
    let set = |f: T| f != T::default();
    flags.chunks(16).enumerate().filter(move |(_, block)| block.iter().fold(false, |any, &f| any | set(f))).flat_map(
        move |(b, block)| block.iter().enumerate().filter(move |&(_, &f)| set(f)).map(move |(k, _)| b * 16 + k),
    )
}
