//! The shape every algorithm shares (Stable-Baselines3's `learn` / `predict` / `save` /
//! `load`), and the training loop that drives it until a stop criterion is met.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shoal_nn::ParamLayout;

use crate::config::{CommonConfig, StopConfig};
use crate::episodes::EpisodeTracker;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::policy_net::PolicyNet;
use crate::updater::Updater;

/// A reinforcement learning algorithm bound to its environments and model.
pub trait Agent: Send {
    /// One iteration: collect experience and learn from it. `progress` ∈ [0, 1] is the
    /// fraction of the env-step budget used so far (for learning-rate and ε schedules).
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics>;

    /// Environment steps taken so far, over all envs.
    fn env_steps(&self) -> u64;

    /// Finished training episodes.
    fn episodes(&self) -> &EpisodeTracker;

    /// The same, for a cluster that gathers its workers' episodes.
    fn episodes_mut(&mut self) -> &mut EpisodeTracker;

    /// The network a parameter server can hold, with the updater its gradients go through;
    /// `None` for tabular agents, which do not run in a cluster.
    fn network(&mut self) -> Option<Network<'_>> {
        None
    }

    /// The running statistics this agent keeps of its own experience (observation and reward
    /// normalization) as one vector, for a cluster's workers to share; `None` when it keeps
    /// none.
    fn statistics(&self) -> Option<Vec<f64>> {
        None
    }

    /// Normalizes from now on with its own statistics merged with `peers` (the other workers'
    /// [`Agent::statistics`]), as one process seeing every worker's experience would.
    fn set_peer_statistics(&mut self, _peers: &[Vec<f64>]) -> Result<()> {
        Ok(())
    }

    /// The network this agent acts with, detached from the algorithm (normalization, MLP
    /// chain, action head): what `shoal optimize` prunes, quantizes, distills and times.
    /// `None` for agents whose policy is not one chain of MLPs (tabular, dueling Q-networks).
    fn policy_net(&mut self) -> Option<PolicyNet> {
        None
    }

    /// Its servers and workers as they are now, for an embedded cluster run's
    /// `cluster-status.json` (what `shoal dashboard` shows); `None` for a single agent.
    fn cluster_status(&mut self) -> Option<shoal_dist::ClusterStatus> {
        None
    }

    /// Width of one observation row, as `predict` takes it.
    fn obs_dim(&self) -> usize;

    /// Width of one action row, as `predict` writes it (1 for a discrete action index).
    fn action_dim(&self) -> usize;

    /// Actions for `rows` observations: the greedy / mean action when `deterministic`,
    /// otherwise sampled as during training. Discrete actions are written as their index.
    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()>;

    /// Writes the complete training state (model, optimizer, RNG, env states, counters,
    /// replay) into the directory `dir`, so [`Agent::load`] resumes bit for bit.
    fn save(&mut self, dir: &Path) -> Result<()>;

    /// Restores what [`Agent::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<()>;
}

/// A learning rate, constant or annealed linearly to 0 over the env-step budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub learning_rate: f64,
    pub anneal: bool,
}

impl LrSchedule {
    /// The learning rate at `progress` ∈ [0, 1] of the run.
    pub fn at(&self, progress: f64) -> f64 {
        if self.anneal {
            self.learning_rate * (1.0 - progress)
        } else {
            self.learning_rate
        }
    }
}

/// An agent's network as a cluster sees it: a flat parameter vector, its layout, where its
/// gradients go, and the optimizer's learning-rate schedule (which a server applies).
pub struct Network<'a> {
    pub params: &'a mut [f32],
    pub layout: ParamLayout,
    pub updater: &'a mut Updater,
    pub lr: LrSchedule,
}

/// What a callback sees after each iteration.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub iteration: u64,
    pub env_steps: u64,
    /// Wall-clock seconds of the whole run, earlier sessions of a resumed run included.
    pub wall_seconds: f64,
    pub episode_return_mean: Option<f64>,
    pub episode_len_mean: Option<f64>,
    pub episodes: u64,
    pub metrics: &'a Metrics,
}

/// Whether the loop goes on after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
    /// Stop: a deterministic evaluation reached `stop.eval_return_mean`.
    Solved,
}

/// Hooks run after every iteration: logging, checkpointing, progress bars, Ctrl-C handling.
pub trait Callback {
    fn on_iteration(&mut self, agent: &mut dyn Agent, progress: &Progress<'_>) -> Result<Control>;
}

/// Why training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EnvSteps,
    WallTime,
    ReturnReached,
    /// A deterministic evaluation reached `stop.eval_return_mean`.
    EvalReturnReached,
    Callback,
}

/// The outcome of [`learn`], as `summary.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub env_steps: u64,
    pub iterations: u64,
    pub wall_seconds: f64,
    pub env_steps_per_sec: f64,
    pub episodes: u64,
    pub final_episode_return_mean: Option<f64>,
    pub best_episode_return_mean: Option<f64>,
    pub stop_reason: StopReason,
}

/// Counters the loop keeps across a resume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    pub iteration: u64,
    pub wall_seconds: f64,
    pub best_return_mean: Option<f64>,
}

/// The criterion of `stop` that `progress` meets besides the env-step budget: the wall clock,
/// or the mean training return over a full window of episodes.
pub(crate) fn time_or_return_reached(stop: &StopConfig, progress: &Progress<'_>) -> Option<StopReason> {
    if stop.wall_seconds.is_some_and(|s| progress.wall_seconds >= s) {
        return Some(StopReason::WallTime);
    }
    match (stop.episode_return_mean, progress.episode_return_mean) {
        (Some(target), Some(mean)) if mean >= target && progress.episodes >= EpisodeTracker::WINDOW as u64 => {
            Some(StopReason::ReturnReached)
        }
        _ => None,
    }
}

/// Trains `agent` until a criterion of `stop` is met or a callback stops it.
pub fn learn(
    agent: &mut dyn Agent,
    stop: &StopConfig,
    state: &mut LoopState,
    callbacks: &mut [&mut dyn Callback],
) -> Result<Summary> {
    learn_from(agent, stop, state, callbacks, 0)
}

/// Trains a trained `agent` for `steps` more env steps as if its run started now: schedules
/// (learning rate, exploration) restart over the window instead of staying at their end —
/// fine-tuning, e.g. after pruning.
pub fn fine_tune(
    agent: &mut dyn Agent,
    steps: u64,
    state: &mut LoopState,
    callbacks: &mut [&mut dyn Callback],
) -> Result<Summary> {
    let origin = agent.env_steps();
    let stop = StopConfig { env_steps: Some(origin + steps), ..StopConfig::default() };
    learn_from(agent, &stop, state, callbacks, origin)
}

/// [`learn`] with the schedules' progress counted from `origin` env steps.
fn learn_from(
    agent: &mut dyn Agent,
    stop: &StopConfig,
    state: &mut LoopState,
    callbacks: &mut [&mut dyn Callback],
    origin: u64,
) -> Result<Summary> {
    let start = Instant::now();
    let wall_before = state.wall_seconds;
    let steps_before = agent.env_steps();
    let reason = loop {
        let progress = stop.env_steps.map_or(0.0, |total| {
            let done = agent.env_steps().saturating_sub(origin) as f64;
            (done / total.saturating_sub(origin).max(1) as f64).min(1.0)
        });
        let metrics = agent.train_iteration(progress)?;
        state.iteration += 1;
        state.wall_seconds = wall_before + start.elapsed().as_secs_f64();
        let mean = agent.episodes().mean_return();
        if let Some(m) = mean {
            state.best_return_mean = Some(state.best_return_mean.map_or(m, |b| b.max(m)));
        }
        let report = Progress {
            iteration: state.iteration,
            env_steps: agent.env_steps(),
            wall_seconds: state.wall_seconds,
            episode_return_mean: mean,
            episode_len_mean: agent.episodes().mean_length(),
            episodes: agent.episodes().total(),
            metrics: &metrics,
        };
        let mut stopped = None;
        for callback in callbacks.iter_mut() {
            match callback.on_iteration(agent, &report)? {
                Control::Continue => {}
                Control::Stop => stopped = stopped.or(Some(StopReason::Callback)),
                Control::Solved => stopped = Some(StopReason::EvalReturnReached),
            }
        }
        if let Some(reason) = stopped {
            break reason;
        }
        if stop.env_steps.is_some_and(|n| agent.env_steps() >= n) {
            break StopReason::EnvSteps;
        }
        if let Some(reason) = time_or_return_reached(stop, &report) {
            break reason;
        }
    };
    let session_seconds = start.elapsed().as_secs_f64().max(1e-9);
    Ok(Summary {
        env_steps: agent.env_steps(),
        iterations: state.iteration,
        wall_seconds: state.wall_seconds,
        env_steps_per_sec: (agent.env_steps() - steps_before) as f64 / session_seconds,
        episodes: agent.episodes().total(),
        final_episode_return_mean: agent.episodes().mean_return(),
        best_episode_return_mean: state.best_return_mean,
        stop_reason: reason,
    })
}

/// Builds the config's vector env, seeded with the config's seed.
pub fn build_vec_env(config: &CommonConfig) -> Result<Box<dyn shoal_env::VecEnv>> {
    let options = config.env.options()?;
    let options: Vec<(&str, shoal_env::OptionValue)> = options.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut env = shoal_env::make_vec(&config.env.id, &options, config.env.num_envs, config.env.threads)?;
    env.reset(Some(config.seed))?;
    Ok(env)
}
