//! Tabular Q-learning (Watkins, 1989) for envs with discrete observations:
//!
//! `Q(s,a) ← Q(s,a) + α·[r + γ·(1 − terminated)·max_a' Q(s',a') − Q(s,a)]`
//!
//! with ε-greedy exploration on a linear schedule and an optionally decaying α. A truncated
//! episode bootstraps from its final state (the time limit is not part of the MDP).

use std::path::Path;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use shoal_env::{Actions, Space, VecEnv};
use shoal_nn::LinearSchedule;

use crate::agent::{build_vec_env, Agent};
use crate::checkpoint::{read_json, write_json, CommonState};
use crate::checks::{check_positive, check_range};
use crate::config::CommonConfig;
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, Result};
use crate::explore::{argmax, epsilon_greedy};
use crate::metrics::Metrics;

/// Q-learning hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QLearningConfig {
    /// α at the start of training.
    pub learning_rate: f64,
    /// α at the end of the env-step budget (linear decay; equal to `learning_rate` to hold it).
    pub final_learning_rate: f64,
    pub gamma: f64,
    pub start_e: f64,
    pub end_e: f64,
    pub exploration_fraction: f64,
    /// Vector-env steps per iteration (between metric reports).
    pub steps_per_iteration: usize,
}

impl Default for QLearningConfig {
    fn default() -> Self {
        QLearningConfig {
            learning_rate: 0.1,
            final_learning_rate: 0.1,
            gamma: 0.99,
            start_e: 1.0,
            end_e: 0.05,
            exploration_fraction: 0.5,
            steps_per_iteration: 1000,
        }
    }
}

/// A tabular Q-learning agent.
pub struct QLearning {
    cfg: QLearningConfig,
    env: Box<dyn VecEnv>,
    /// `Q[s · n_actions + a]`.
    q: Vec<f64>,
    n_actions: usize,
    rng: Pcg64Mcg,
    episodes: EpisodeTracker,
    env_steps: u64,
    states: Vec<usize>,
    actions: Vec<i64>,
}

#[derive(Serialize, Deserialize)]
struct QLearningState {
    common: CommonState,
    q: Vec<f64>,
}

impl QLearning {
    pub fn new(config: &CommonConfig, cfg: &QLearningConfig) -> Result<Self> {
        let cfg = cfg.clone();
        check_range("q_learning.learning_rate", cfg.learning_rate, 0.0, 1.0)?;
        check_range("q_learning.final_learning_rate", cfg.final_learning_rate, 0.0, 1.0)?;
        check_range("q_learning.gamma", cfg.gamma, 0.0, 1.0)?;
        check_range("q_learning.start_e", cfg.start_e, 0.0, 1.0)?;
        check_range("q_learning.end_e", cfg.end_e, 0.0, 1.0)?;
        check_range("q_learning.exploration_fraction", cfg.exploration_fraction, 0.0, 1.0)?;
        check_positive("q_learning.steps_per_iteration", cfg.steps_per_iteration)?;
        let env = build_vec_env(config)?;
        let n_states = match env.single_observation_space() {
            Space::Discrete { n, start: 0 } => *n as usize,
            other => {
                return Err(config_err(format!(
                    "q_learning needs a Discrete observation space, but {} has {other}; use dqn or ppo",
                    config.env.id
                )))
            }
        };
        let n_actions = match env.single_action_space() {
            Space::Discrete { n, start: 0 } => *n as usize,
            other => {
                return Err(config_err(format!(
                    "q_learning needs a Discrete action space, but {} has {other}",
                    config.env.id
                )))
            }
        };
        let num_envs = config.env.num_envs;
        Ok(QLearning {
            cfg,
            env,
            q: vec![0.0; n_states * n_actions],
            n_actions,
            rng: Pcg64Mcg::seed_from_u64(config.seed.wrapping_add(0x5eed)),
            episodes: EpisodeTracker::default(),
            env_steps: 0,
            states: vec![0; num_envs],
            actions: vec![0; num_envs],
        })
    }

    /// The learned table, `[n_states × n_actions]`.
    pub fn q_table(&self) -> &[f64] {
        &self.q
    }
}

impl Agent for QLearning {
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        let cfg = &self.cfg;
        let epsilon =
            LinearSchedule { start: cfg.start_e, end: cfg.end_e, fraction: cfg.exploration_fraction }.value(progress);
        let alpha =
            LinearSchedule { start: cfg.learning_rate, end: cfg.final_learning_rate, fraction: 1.0 }.value(progress);
        let na = self.n_actions;
        let mut td_sum = 0.0;
        for _ in 0..cfg.steps_per_iteration {
            for (i, (s, a)) in self.states.iter_mut().zip(&mut self.actions).enumerate() {
                *s = self.env.batch().obs[i] as usize;
                *a = epsilon_greedy(&self.q[*s * na..(*s + 1) * na], epsilon, &mut self.rng) as i64;
            }
            self.env.step(Actions::Discrete(&self.actions))?;
            self.env_steps += self.states.len() as u64;
            let batch = self.env.batch();
            self.episodes.record_batch(batch);
            for (i, (&s, &a)) in self.states.iter().zip(&self.actions).enumerate() {
                let next = batch.final_obs(i).map_or(batch.obs[i], |o| o[0]) as usize;
                let bootstrap = if batch.terminated[i] {
                    0.0
                } else {
                    self.q[argmax(&self.q[next * na..(next + 1) * na]) + next * na]
                };
                let k = s * na + a as usize;
                let td = batch.rewards[i] as f64 + cfg.gamma * bootstrap - self.q[k];
                self.q[k] += alpha * td;
                td_sum += td.abs();
            }
        }
        let updates = (cfg.steps_per_iteration * self.states.len()) as f64;
        Ok(vec![("charts/epsilon", epsilon), ("charts/learning_rate", alpha), ("loss/td_abs", td_sum / updates)])
    }

    fn env_steps(&self) -> u64 {
        self.env_steps
    }
    fn episodes(&self) -> &EpisodeTracker {
        &self.episodes
    }
    fn episodes_mut(&mut self) -> &mut EpisodeTracker {
        &mut self.episodes
    }
    fn obs_dim(&self) -> usize {
        1
    }
    fn action_dim(&self) -> usize {
        1
    }

    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        let na = self.n_actions;
        let n_states = self.q.len() / na;
        for (a, &s) in actions.iter_mut().zip(obs).take(rows) {
            let s = s as usize;
            if s >= n_states {
                return Err(config_err(format!("observation {s} is not a state of this Q-table (0..{n_states})")));
            }
            let row = &self.q[s * na..(s + 1) * na];
            *a = if deterministic { argmax(row) } else { epsilon_greedy(row, self.cfg.end_e, &mut self.rng) } as f32;
        }
        Ok(())
    }

    fn save(&mut self, dir: &Path) -> Result<()> {
        let common = CommonState::capture(self.env_steps, &self.rng, &self.episodes, self.env.as_mut())?;
        write_json(&dir.join("state.json"), &QLearningState { common, q: self.q.clone() })
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let state: QLearningState = read_json(&dir.join("state.json"))?;
        if state.q.len() != self.q.len() {
            return Err(config_err(format!(
                "checkpoint Q-table has {} entries, this env needs {}",
                state.q.len(),
                self.q.len()
            )));
        }
        self.env.restore(&state.common.env)?;
        self.q = state.q;
        self.env_steps = state.common.env_steps;
        self.rng = state.common.rng;
        self.episodes = state.common.episodes;
        Ok(())
    }
}
