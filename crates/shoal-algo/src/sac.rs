//! Soft Actor-Critic (Haarnoja et al., 2018, "Soft Actor-Critic Algorithms and Applications"),
//! read top to bottom like CleanRL's `sac_continuous_action.py`: a tanh-squashed Gaussian actor,
//! twin Q critics with Polyak-averaged targets, and automatic entropy tuning.
//!
//! Each iteration takes `train_frequency` steps of every env into the replay buffer (uniform
//! random actions before `learning_starts`), then `gradient_steps` updates on sampled batches:
//!
//! ```text
//! y    = r + γᵏ(1 − d)·(min_i Q'_i(s', a') − α·log π(a'|s')),      a' ~ π(·|s')
//! J_Q  = ½·Σ_i mean (Q_i(s, a) − y)²                               (both critics)
//! J_π  = mean (α·log π(ã|s) − min_i Q_i(s, ã)),   ã = tanh(μ(s) + σ(s)·ε)   (every policy_frequency)
//! J_α  = −log α · mean(log π(ã|s) + H̄),           H̄ = −dim(A) unless set
//! θ'_i ← τ·θ_i + (1 − τ)·θ'_i                                     (every target_network_frequency)
//! ```
//!
//! With `use_sde` the actor explores with gSDE instead (`squashed_policy.rs`: noise from the
//! actor's features through a learned σ matrix, redrawn every `sde_sample_freq` steps), as
//! rl-zoo3 does for sparse-reward tasks like MountainCarContinuous.
//!
//! Actions live in [−1, 1] inside the agent (replay, critics) and are rescaled to the env's
//! Box bounds when stepped; `predict` returns env-scaled actions. The squashed Gaussian and its
//! gradients are `shoal_nn::squashed` / `shoal_nn::gsde` (finite-difference checked); the
//! critics' gradient in the action comes from backpropagating to their input.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use shoal_dist::replay::Transitions;
use shoal_nn::squashed::temperature_loss;
use shoal_nn::{io, Adam, Optimizer, ParamLayout};

use crate::agent::Agent;
use crate::checks::{check_positive, check_range};
use crate::config::{CommonConfig, NetConfig};
use crate::error::{config_err, Result};
use crate::metrics::Metrics;
use crate::off_policy::{forward_to_run, ContinuousLearner, OffPolicyRun, UpdateStats};
use crate::squashed_policy::{Noise, SquashedPolicy};
use crate::twin_critic::{publish, published_layout, take_published, CriticStep, TwinCritic};

/// SAC hyperparameters (Stable-Baselines3's defaults; CleanRL's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SacConfig {
    /// Adam's step size for the critics.
    pub q_lr: f64,
    /// Adam's step size for the actor and the temperature.
    pub policy_lr: f64,
    pub buffer_size: usize,
    pub gamma: f64,
    /// Polyak rate of the target critics.
    pub tau: f64,
    pub batch_size: usize,
    /// Env steps of uniformly random actions before learning starts.
    pub learning_starts: u64,
    /// Vector-env steps between rounds of updates.
    pub train_frequency: usize,
    /// Updates per round.
    pub gradient_steps: usize,
    /// Critic updates per actor (and temperature) update.
    pub policy_frequency: u64,
    /// Critic updates between target updates.
    pub target_network_frequency: u64,
    /// Tune the temperature α toward `target_entropy` (otherwise α stays `alpha`).
    pub autotune: bool,
    /// The initial (or, without autotune, fixed) temperature.
    pub alpha: f64,
    /// The entropy α is tuned toward; `None`: −dim(A).
    pub target_entropy: Option<f64>,
    /// Explore with gSDE (state-dependent noise, smooth in time) instead of fresh Gaussian
    /// noise each step: what sparse-reward tasks such as MountainCarContinuous need.
    pub use_sde: bool,
    /// gSDE: env steps between two draws of an env's exploration matrix; 0 draws once per
    /// round of `train_frequency` steps (SB3's `sde_sample_freq = -1`).
    pub sde_sample_freq: u64,
    /// gSDE: the initial log σ of the exploration matrix (SB3's `log_std_init`).
    pub log_std_init: f64,
    pub adam_eps: f64,
    pub net: NetConfig,
}

impl Default for SacConfig {
    fn default() -> Self {
        SacConfig {
            q_lr: 3e-4,
            policy_lr: 3e-4,
            buffer_size: 1_000_000,
            gamma: 0.99,
            tau: 0.005,
            batch_size: 256,
            learning_starts: 100,
            train_frequency: 1,
            gradient_steps: 1,
            policy_frequency: 1,
            target_network_frequency: 1,
            autotune: true,
            alpha: 1.0,
            target_entropy: None,
            use_sde: false,
            sde_sample_freq: 0,
            log_std_init: -3.0,
            adam_eps: 1e-8,
            net: NetConfig { hidden: vec![256, 256], activation: "relu".into(), ..NetConfig::default() },
        }
    }
}

impl SacConfig {
    fn validate(&self) -> Result<()> {
        check_range("sac.q_lr", self.q_lr, 0.0, 1.0)?;
        check_range("sac.policy_lr", self.policy_lr, 0.0, 1.0)?;
        check_range("sac.gamma", self.gamma, 0.0, 1.0)?;
        check_range("sac.tau", self.tau, 0.0, 1.0)?;
        check_positive("sac.buffer_size", self.buffer_size)?;
        check_positive("sac.batch_size", self.batch_size)?;
        check_positive("sac.train_frequency", self.train_frequency)?;
        check_positive("sac.policy_frequency", self.policy_frequency as usize)?;
        check_positive("sac.target_network_frequency", self.target_network_frequency as usize)?;
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(config_err(format!("sac.alpha must be a positive number, got {}", self.alpha)));
        }
        Ok(())
    }
}

/// Buffers of one update, kept between calls.
#[derive(Default)]
struct Scratch {
    targets: Vec<f32>,
    /// The actor step's min(Q1, Q2) per row.
    q_min: Vec<f32>,
    d_actions: Vec<f32>,
    d_log_probs: Vec<f32>,
    td_abs: Vec<f32>,
    next_actions: Vec<f32>,
}

/// SAC's networks and their update, wherever the batches come from (its own replay in
/// [`Sac`], or Ape-X's).
pub struct SacLearner {
    cfg: SacConfig,
    /// The actor `s → (μ, log σ)` (or `s → μ` and gSDE's σ matrix).
    policy: SquashedPolicy,
    actor_opt: Adam<f32>,
    critic: TwinCritic,
    log_alpha: f32,
    alpha_opt: Adam<f32>,
    target_entropy: f64,
    updates: u64,
    scratch: Scratch,
}

impl SacLearner {
    /// Fresh networks for `obs_dim` observations and `act_dim` actions, drawn from `rng`.
    pub fn new(obs_dim: usize, act_dim: usize, cfg: &SacConfig, rng: &mut Pcg64Mcg) -> Result<Self> {
        let cfg = cfg.clone();
        cfg.validate()?;
        let gsde_init = cfg.use_sde.then_some(cfg.log_std_init);
        let policy = SquashedPolicy::new(obs_dim, act_dim, &cfg.net, gsde_init, rng)?;
        let critic = TwinCritic::new(obs_dim, act_dim, &cfg.net, "sac", cfg.adam_eps, rng)?;
        Ok(SacLearner {
            actor_opt: Adam::new(policy.params.len(), 0.9, 0.999, cfg.adam_eps),
            critic,
            log_alpha: cfg.alpha.ln() as f32,
            alpha_opt: Adam::new(1, 0.9, 0.999, cfg.adam_eps),
            target_entropy: cfg.target_entropy.unwrap_or(-(act_dim as f64)),
            scratch: Scratch::default(),
            updates: 0,
            policy,
            cfg,
        })
    }

    fn alpha(&self) -> f32 {
        self.log_alpha.exp()
    }

    /// The soft TD targets `y` of `batch` into `scratch.targets`.
    fn soft_targets(&mut self, batch: &Transitions, rng: &mut Pcg64Mcg) {
        let (s, rows) = (&mut self.scratch, batch.len());
        self.policy.forward(&batch.next_obs, rows, self.critic.helper());
        self.policy.sample(rows, Noise::Batch, rng);
        self.critic.target_values(&batch.next_obs, &self.policy.actions, rows, true, &mut s.targets);
        let alpha = self.log_alpha.exp();
        for (i, y) in s.targets.iter_mut().enumerate() {
            let soft = *y - alpha * self.policy.log_probs[i];
            *y = batch.rewards[i] + batch.discounts[i] * (1.0 - batch.dones[i]) * soft;
        }
    }

    /// One actor step, and one temperature step with autotune; returns (actor loss, entropy
    /// estimate `−mean log π`).
    fn update_actor(&mut self, obs: &[f32], rows: usize, rng: &mut Pcg64Mcg) -> (f64, f64) {
        let (alpha, scale) = (self.alpha(), 1.0 / rows as f32);
        let (s, p) = (&mut self.scratch, &mut self.policy);
        p.forward(obs, rows, self.critic.helper());
        p.sample(rows, Noise::Batch, rng);
        // ∂J_π/∂ã = −(1/B)·∂Q_min/∂ã, through whichever critic is smaller per row.
        self.critic.action_gradient(obs, &p.actions, rows, true, &mut s.q_min, &mut s.d_actions);
        s.d_log_probs.clear();
        s.d_log_probs.resize(rows, alpha * scale);
        p.backward(obs, rows, &s.d_actions, &s.d_log_probs, self.critic.helper());
        self.actor_opt.step_with(self.critic.helper(), &mut p.params, &p.grads, self.cfg.policy_lr as f32);
        let mean_log_prob = p.log_probs.iter().map(|&l| l as f64).sum::<f64>() / rows as f64;
        let actor_loss =
            p.log_probs.iter().zip(&s.q_min).map(|(&l, &q)| (alpha * l - q) as f64).sum::<f64>() / rows as f64;
        if self.cfg.autotune {
            let (_, d_log_alpha) = temperature_loss(self.log_alpha, &p.log_probs, self.target_entropy);
            let mut log_alpha = [self.log_alpha];
            self.alpha_opt.step(&mut log_alpha, &[d_log_alpha], self.cfg.policy_lr as f32);
            self.log_alpha = log_alpha[0];
        }
        (actor_loss, -mean_log_prob)
    }
}

impl ContinuousLearner for SacLearner {
    /// `tanh(μ)` without `explore`, a sample of the policy with it (its σ is the exploration).
    fn act(&mut self, obs: &[f32], rows: usize, explore: Option<f64>, rng: &mut Pcg64Mcg, out: &mut [f32]) {
        self.policy.forward(obs, rows, self.critic.helper());
        if explore.is_none() {
            self.policy.mean_actions(out);
        } else {
            // gSDE: a matrix of its own per row, as if each were an env.
            self.policy.resample_env_noise(rows, rng);
            self.policy.sample(rows, Noise::Envs, rng);
            out.copy_from_slice(&self.policy.actions);
        }
    }

    fn update(&mut self, batch: &Transitions, weights: Option<&[f32]>, rng: &mut Pcg64Mcg) -> Result<UpdateStats> {
        self.soft_targets(batch, rng);
        let step = CriticStep { twin: true, weights, lr: self.cfg.q_lr as f32, lr_key: "sac.q_lr" };
        let s = &mut self.scratch;
        let (critic_loss, mean_q) = self.critic.update(batch, &s.targets, step, &mut s.td_abs)?;
        self.updates += 1;
        let (mut actor_loss, mut entropy) = (f64::NAN, f64::NAN);
        if self.updates.is_multiple_of(self.cfg.policy_frequency) {
            (actor_loss, entropy) = self.update_actor(&batch.obs, batch.len(), rng);
        }
        if self.updates.is_multiple_of(self.cfg.target_network_frequency) {
            self.critic.soft_update(self.cfg.tau);
        }
        Ok(UpdateStats { critic_loss, mean_q, actor_loss, entropy })
    }

    fn td_abs(&self) -> &[f32] {
        &self.scratch.td_abs
    }

    /// Next actions are the policy's means (an actor's priority needs no entropy term).
    fn td_errors(&mut self, batch: &Transitions, rng: &mut Pcg64Mcg, out: &mut Vec<f32>) {
        let mut next = std::mem::take(&mut self.scratch.next_actions);
        next.resize(batch.len() * self.policy.dim(), 0.0);
        self.act(&batch.next_obs, batch.len(), None, rng, &mut next);
        self.critic.online_td_errors(batch, &next, true, out);
        self.scratch.next_actions = next;
    }

    fn published_layout(&self) -> ParamLayout {
        published_layout(&self.policy.layout, &self.critic)
    }

    fn published(&self, out: &mut Vec<f32>) {
        publish(&self.policy.params, &self.critic, out);
    }

    fn set_published(&mut self, params: &[f32]) {
        take_published(params, &mut self.policy.params, &mut self.critic);
    }

    fn updates(&self) -> u64 {
        self.updates
    }

    fn set_updates(&mut self, updates: u64) {
        self.updates = updates;
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let (meta, p) = (HashMap::new(), &self.policy);
        io::save_flat(&dir.join("actor.safetensors"), &p.layout, &p.params, Some(&self.actor_opt), &meta)?;
        self.critic.save(dir)?;
        io::save_flat(
            &dir.join("alpha.safetensors"),
            &alpha_layout(),
            &[self.log_alpha],
            Some(&self.alpha_opt),
            &meta,
        )?;
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let p = &mut self.policy;
        io::load_flat(&dir.join("actor.safetensors"), &p.layout, &mut p.params, Some(&mut self.actor_opt))?;
        self.critic.load(dir)?;
        let mut log_alpha = [0.0f32];
        io::load_flat(&dir.join("alpha.safetensors"), &alpha_layout(), &mut log_alpha, Some(&mut self.alpha_opt))?;
        self.log_alpha = log_alpha[0];
        Ok(())
    }
}

/// The temperature's checkpoint tensor.
fn alpha_layout() -> ParamLayout {
    let mut layout = ParamLayout::new();
    layout.push("log_alpha", &[1]);
    layout
}

/// A SAC agent: the learner, and the envs and replay it learns from.
pub struct Sac {
    learner: SacLearner,
    /// Envs, replay, RNG and counters.
    run: OffPolicyRun,
    /// gSDE: the envs' exploration matrices of draw `i` come from an RNG seeded by
    /// `noise_seed` and `i` (so a resumed run draws the same ones without saving them), and
    /// which draw they are now.
    noise_seed: u64,
    noise_draw: Option<u64>,
}

impl Sac {
    pub fn new(config: &CommonConfig, cfg: &SacConfig) -> Result<Self> {
        cfg.validate()?;
        let mut run = OffPolicyRun::new(config, "sac", cfg.buffer_size, cfg.gamma, 0x5ac)?;
        let (obs_dim, act_dim) = (run.obs_dim, run.act_dim);
        Ok(Sac {
            learner: SacLearner::new(obs_dim, act_dim, cfg, &mut run.rng)?,
            run,
            noise_seed: config.seed.wrapping_add(0x65de),
            noise_draw: None,
        })
    }

    /// One vector-env step (random actions before `learning_starts`) into the replay buffer.
    fn collect_step(&mut self) -> Result<()> {
        let cfg = &self.learner.cfg;
        if self.run.begin_step(cfg.learning_starts) {
            let n = self.run.env.num_envs();
            let every = if cfg.sde_sample_freq == 0 { cfg.train_frequency as u64 } else { cfg.sde_sample_freq };
            let draw = self.run.env_steps / n as u64 / every;
            let policy = &mut self.learner.policy;
            if self.noise_draw != Some(draw) {
                let mut rng = Pcg64Mcg::seed_from_u64(self.noise_seed ^ draw.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                policy.resample_env_noise(n, &mut rng);
                self.noise_draw = Some(draw);
            }
            policy.forward(&self.run.step_obs, n, self.learner.critic.helper());
            policy.sample(n, Noise::Envs, &mut self.run.rng);
            self.run.step_actions.copy_from_slice(&policy.actions);
        }
        self.run.finish_step()
    }
}

impl Agent for Sac {
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
            ("loss/entropy", stats.entropy),
            ("charts/alpha", self.learner.alpha() as f64),
            ("charts/updates", self.learner.updates as f64),
            ("replay/size", self.run.replay.len() as f64),
        ])
    }

    forward_to_run!();

    /// `[actor | critics]`, for averaging workers (see `ParamSharing`).
    fn network(&mut self) -> Option<crate::agent::Network<'_>> {
        Some(self.run.sharing.network(&self.learner, self.learner.cfg.q_lr))
    }

    /// The mean action `tanh(μ)` when `deterministic`, a sample otherwise; in the env's bounds.
    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        self.run.predict(&mut self.learner, obs, rows, (!deterministic).then_some(1.0), actions)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.run.load(dir, &mut self.learner)?;
        self.noise_draw = None;
        Ok(())
    }
}
