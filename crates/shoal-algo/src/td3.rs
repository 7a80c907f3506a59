//! Twin Delayed DDPG (Fujimoto et al., 2018), read top to bottom like CleanRL's
//! `td3_continuous_action.py`; with its three tricks off (`twin_critics = false`,
//! `policy_frequency = 1`, `policy_noise = 0`) it is DDPG (Lillicrap et al., 2016).
//!
//! A deterministic actor `μ(s) = tanh(f(s))` explores with Gaussian noise; each iteration takes
//! `train_frequency` steps of every env into the replay buffer (uniform random actions before
//! `learning_starts`), then `gradient_steps` updates:
//!
//! ```text
//! a'   = clip(μ'(s') + clip(N(0, policy_noise), −noise_clip, noise_clip), −1, 1)   (target smoothing)
//! y    = r + γᵏ(1 − d)·min_i Q'_i(s', a')                                          (clipped double Q)
//! J_Q  = ½·Σ_i mean (Q_i(s, a) − y)²
//! J_μ  = −mean Q_1(s, μ(s))                       every policy_frequency critic updates (delayed)
//! θ' ← τθ + (1 − τ)θ'  for the actor and both critics, at the same times
//! ```
//!
//! Actions live in [−1, 1] inside the agent and are rescaled to the env's bounds when stepped.

use std::collections::HashMap;
use std::path::Path;

use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use shoal_dist::replay::Transitions;
use shoal_nn::mlp::{Mlp, MlpWorkspace};
use shoal_nn::{io, Adam, ParamLayout};

use crate::agent::Agent;
use crate::checks::{check_positive, check_range};
use crate::config::{CommonConfig, NetConfig};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::off_policy::{forward_to_run, ContinuousLearner, OffPolicyRun, UpdateStats};
use crate::twin_critic::{actor, publish, published_layout, soft_update, take_published, CriticStep, TwinCritic};

/// TD3 hyperparameters (Stable-Baselines3's defaults; CleanRL's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Td3Config {
    /// Adam's step size for the actor and the critics.
    pub learning_rate: f64,
    pub buffer_size: usize,
    pub gamma: f64,
    /// Polyak rate of the target networks.
    pub tau: f64,
    pub batch_size: usize,
    /// Env steps of uniformly random actions before learning starts.
    pub learning_starts: u64,
    /// Vector-env steps between rounds of updates.
    pub train_frequency: usize,
    /// Updates per round.
    pub gradient_steps: usize,
    /// Standard deviation of the exploration noise, in the [−1, 1] action scale.
    pub exploration_noise: f64,
    /// Critic updates per actor (and target) update: TD3's delay (1 for DDPG).
    pub policy_frequency: u64,
    /// Standard deviation of the target policy's smoothing noise (0 for DDPG).
    pub policy_noise: f64,
    /// Bound of the smoothing noise.
    pub noise_clip: f64,
    /// Two critics and the smaller of their targets (false for DDPG: one critic).
    pub twin_critics: bool,
    pub adam_eps: f64,
    pub net: NetConfig,
}

impl Default for Td3Config {
    fn default() -> Self {
        Td3Config {
            learning_rate: 1e-3,
            buffer_size: 1_000_000,
            gamma: 0.99,
            tau: 0.005,
            batch_size: 256,
            learning_starts: 100,
            train_frequency: 1,
            gradient_steps: 1,
            exploration_noise: 0.1,
            policy_frequency: 2,
            policy_noise: 0.2,
            noise_clip: 0.5,
            twin_critics: true,
            adam_eps: 1e-8,
            net: NetConfig { hidden: vec![400, 300], activation: "relu".into(), ..NetConfig::default() },
        }
    }
}

impl Td3Config {
    fn validate(&self) -> Result<()> {
        check_range("td3.learning_rate", self.learning_rate, 0.0, 1.0)?;
        check_range("td3.gamma", self.gamma, 0.0, 1.0)?;
        check_range("td3.tau", self.tau, 0.0, 1.0)?;
        check_range("td3.exploration_noise", self.exploration_noise, 0.0, 10.0)?;
        check_range("td3.policy_noise", self.policy_noise, 0.0, 10.0)?;
        check_range("td3.noise_clip", self.noise_clip, 0.0, 10.0)?;
        check_positive("td3.buffer_size", self.buffer_size)?;
        check_positive("td3.batch_size", self.batch_size)?;
        check_positive("td3.train_frequency", self.train_frequency)?;
        check_positive("td3.policy_frequency", self.policy_frequency as usize)
    }
}

/// Buffers of one update, kept between calls.
#[derive(Default)]
struct Scratch {
    actions: Vec<f32>,
    targets: Vec<f32>,
    q_used: Vec<f32>,
    d_actions: Vec<f32>,
    td_abs: Vec<f32>,
    actor_ws: MlpWorkspace<f32>,
}

/// TD3's (or DDPG's) networks and their update, wherever the batches come from (its own
/// replay in [`Td3`], or Ape-X's).
pub struct Td3Learner {
    cfg: Td3Config,
    /// The actor `s → f(s)`, acting as `tanh(f(s))`.
    actor_net: Mlp,
    actor_layout: ParamLayout,
    actor: Vec<f32>,
    actor_target: Vec<f32>,
    actor_grads: Vec<f32>,
    actor_opt: Adam<f32>,
    critic: TwinCritic,
    updates: u64,
    scratch: Scratch,
}

impl Td3Learner {
    /// Fresh networks for `obs_dim` observations and `act_dim` actions, drawn from `rng`.
    pub fn new(obs_dim: usize, act_dim: usize, cfg: &Td3Config, rng: &mut Pcg64Mcg) -> Result<Self> {
        let cfg = cfg.clone();
        cfg.validate()?;
        let (actor_net, actor_layout, actor) = actor(obs_dim, act_dim, &cfg.net, "td3", rng)?;
        let critic = TwinCritic::new(obs_dim, act_dim, &cfg.net, "td3", cfg.adam_eps, rng)?;
        Ok(Td3Learner {
            actor_target: actor.clone(),
            actor_grads: vec![0.0; actor.len()],
            actor_opt: Adam::new(actor.len(), 0.9, 0.999, cfg.adam_eps),
            critic,
            updates: 0,
            scratch: Scratch::default(),
            actor_net,
            actor_layout,
            actor,
            cfg,
        })
    }

    /// `tanh(f(s))` of `params` (the actor or its target) for `rows` observations, into
    /// `scratch.actions`; with `noise`, Gaussian noise of that std (clipped to ±`clip`) is added
    /// and the result clipped to [−1, 1].
    fn forward(&mut self, target: bool, obs: &[f32], rows: usize, noise: f64, clip: f64, rng: &mut Pcg64Mcg) {
        let params = if target { &self.actor_target } else { &self.actor };
        let s = &mut self.scratch;
        self.actor_net.forward_with(self.critic.helper(), params, obs, rows, &mut s.actor_ws);
        s.actions.clear();
        s.actions.extend(s.actor_ws.output().iter().map(|&z| z.tanh()));
        if noise > 0.0 {
            for a in s.actions.iter_mut() {
                let n = (noise * rng.sample::<f64, _>(StandardNormal)).clamp(-clip, clip);
                *a = (*a + n as f32).clamp(-1.0, 1.0);
            }
        }
    }

    /// One actor step on `−mean Q_1(s, μ(s))`; returns the loss.
    fn update_actor(&mut self, obs: &[f32], rows: usize, rng: &mut Pcg64Mcg) -> f64 {
        self.forward(false, obs, rows, 0.0, 0.0, rng);
        let s = &mut self.scratch;
        self.critic.action_gradient(obs, &s.actions, rows, false, &mut s.q_used, &mut s.d_actions);
        // Through tanh: ∂a/∂f = 1 − a².
        let out_grad = s.actor_ws.output_grad(rows, self.critic.act_dim());
        for ((g, &d), &a) in out_grad.iter_mut().zip(&s.d_actions).zip(&s.actions) {
            *g = d * (1.0 - a * a);
        }
        self.actor_grads.fill(0.0);
        let (actor, grads) = (&self.actor, &mut self.actor_grads);
        self.actor_net.backward_with(self.critic.helper(), actor, grads, obs, rows, &mut s.actor_ws, false);
        self.actor_opt.step_with(
            self.critic.helper(),
            &mut self.actor,
            &self.actor_grads,
            self.cfg.learning_rate as f32,
        );
        -s.q_used.iter().map(|&q| q as f64).sum::<f64>() / rows as f64
    }
}

impl ContinuousLearner for Td3Learner {
    /// `μ(s)` without `explore`, plus Gaussian noise of std `explore` with it.
    fn act(&mut self, obs: &[f32], rows: usize, explore: Option<f64>, rng: &mut Pcg64Mcg, out: &mut [f32]) {
        self.forward(false, obs, rows, explore.unwrap_or(0.0), f64::INFINITY, rng);
        out.copy_from_slice(&self.scratch.actions);
    }

    fn update(&mut self, batch: &Transitions, weights: Option<&[f32]>, rng: &mut Pcg64Mcg) -> Result<UpdateStats> {
        let (rows, twin) = (batch.len(), self.cfg.twin_critics);
        self.forward(true, &batch.next_obs, rows, self.cfg.policy_noise, self.cfg.noise_clip, rng);
        let s = &mut self.scratch;
        self.critic.target_values(&batch.next_obs, &s.actions, rows, twin, &mut s.targets);
        for (i, y) in s.targets.iter_mut().enumerate() {
            *y = batch.rewards[i] + batch.discounts[i] * (1.0 - batch.dones[i]) * *y;
        }
        let step = CriticStep { twin, weights, lr: self.cfg.learning_rate as f32, lr_key: "td3.learning_rate" };
        let (critic_loss, mean_q) = self.critic.update(batch, &s.targets, step, &mut s.td_abs)?;
        self.updates += 1;
        let mut actor_loss = f64::NAN;
        if self.updates.is_multiple_of(self.cfg.policy_frequency) {
            actor_loss = self.update_actor(&batch.obs, rows, rng);
            soft_update(self.critic.helper(), &mut self.actor_target, &self.actor, self.cfg.tau);
            self.critic.soft_update(self.cfg.tau);
        }
        Ok(UpdateStats { critic_loss, mean_q, actor_loss, entropy: f64::NAN })
    }

    fn td_abs(&self) -> &[f32] {
        &self.scratch.td_abs
    }

    fn td_errors(&mut self, batch: &Transitions, rng: &mut Pcg64Mcg, out: &mut Vec<f32>) {
        self.forward(false, &batch.next_obs, batch.len(), 0.0, 0.0, rng);
        let next = std::mem::take(&mut self.scratch.actions);
        self.critic.online_td_errors(batch, &next, self.cfg.twin_critics, out);
        self.scratch.actions = next;
    }

    fn published_layout(&self) -> ParamLayout {
        published_layout(&self.actor_layout, &self.critic)
    }

    fn published(&self, out: &mut Vec<f32>) {
        publish(&self.actor, &self.critic, out);
    }

    fn set_published(&mut self, params: &[f32]) {
        take_published(params, &mut self.actor, &mut self.critic);
    }

    fn updates(&self) -> u64 {
        self.updates
    }

    fn set_updates(&mut self, updates: u64) {
        self.updates = updates;
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let meta = HashMap::new();
        io::save_flat(&dir.join("actor.safetensors"), &self.actor_layout, &self.actor, Some(&self.actor_opt), &meta)?;
        io::save_flat(&dir.join("actor_target.safetensors"), &self.actor_layout, &self.actor_target, None, &meta)?;
        self.critic.save(dir)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        io::load_flat(&dir.join("actor.safetensors"), &self.actor_layout, &mut self.actor, Some(&mut self.actor_opt))?;
        io::load_flat(&dir.join("actor_target.safetensors"), &self.actor_layout, &mut self.actor_target, None)?;
        self.critic.load(dir)
    }
}

/// A TD3 (or DDPG) agent: the learner, and the envs and replay it learns from.
pub struct Td3 {
    learner: Td3Learner,
    /// Envs, replay, RNG and counters.
    run: OffPolicyRun,
}

impl Td3 {
    pub fn new(config: &CommonConfig, cfg: &Td3Config) -> Result<Self> {
        cfg.validate()?;
        let mut run = OffPolicyRun::new(config, "td3", cfg.buffer_size, cfg.gamma, 0x7d3)?;
        let (obs_dim, act_dim) = (run.obs_dim, run.act_dim);
        Ok(Td3 { learner: Td3Learner::new(obs_dim, act_dim, cfg, &mut run.rng)?, run })
    }

    /// One vector-env step (random actions before `learning_starts`) into the replay buffer.
    fn collect_step(&mut self) -> Result<()> {
        if self.run.begin_step(self.learner.cfg.learning_starts) {
            let (run, noise) = (&mut self.run, self.learner.cfg.exploration_noise);
            let n = run.env.num_envs();
            self.learner.act(&run.step_obs, n, Some(noise), &mut run.rng, &mut run.step_actions);
        }
        self.run.finish_step()
    }
}

impl Agent for Td3 {
    fn train_iteration(&mut self, _progress: f64) -> Result<Metrics> {
        let cfg = self.learner.cfg.clone();
        self.run.sharing.sync(&mut self.learner)?;
        for _ in 0..cfg.train_frequency {
            self.collect_step()?;
        }
        let stats = self.run.learn(&mut self.learner, cfg.batch_size, cfg.gradient_steps, cfg.learning_starts)?;
        Ok(vec![
            ("loss/qf", stats.critic_loss),
            ("loss/q_values", stats.mean_q),
            ("loss/actor", stats.actor_loss),
            ("charts/updates", self.learner.updates as f64),
            ("replay/size", self.run.replay.len() as f64),
        ])
    }

    forward_to_run!();

    /// `[actor | critics]`, for averaging workers (see `ParamSharing`).
    fn network(&mut self) -> Option<crate::agent::Network<'_>> {
        Some(self.run.sharing.network(&self.learner, self.learner.cfg.learning_rate))
    }

    /// `μ(s)` when `deterministic`, with the exploration noise otherwise; in the env's bounds.
    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        let explore = (!deterministic).then_some(self.learner.cfg.exploration_noise);
        self.run.predict(&mut self.learner, obs, rows, explore, actions)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.run.load(dir, &mut self.learner)
    }
}
