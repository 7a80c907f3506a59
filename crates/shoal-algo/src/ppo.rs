//! Proximal Policy Optimization (Schulman et al., 2017), read top to bottom like CleanRL's
//! `ppo.py`: collect `num_steps × num_envs` transitions, compute GAE advantages, then run
//! `update_epochs` passes of shuffled minibatches over the clipped-surrogate loss
//!
//! `L = E[max(−A·r, −A·clip(r, 1−ε, 1+ε))] − c_ent·H[π] + c_vf·½·E[max((V−R)², (V_clip−R)²)]`
//!
//! with `r = π(a|s)/π_old(a|s)`, gradient clipping by global norm, and Adam with a linearly
//! annealed learning rate.

use rand::Rng;
use serde::{Deserialize, Serialize};
use shoal_nn::{clip_grad_norm, Adam, Loss, Model, PolicyGradientBatch, PolicyObjective};

use crate::agent::{Agent, LrSchedule};
use crate::checks::{check_positive, check_range};
use crate::config::{CommonConfig, NetConfig};
use crate::error::{config_err, Result};
use crate::metrics::Metrics;
use crate::normalize::NormalizeConfig;
use crate::on_policy::{normalize_advantages, OnPolicyCore};
use crate::updater::Updater;

/// PPO hyperparameters (CleanRL's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over `stop.env_steps`.
    pub anneal_lr: bool,
    /// Steps per env per rollout.
    pub num_steps: usize,
    pub gamma: f64,
    pub gae_lambda: f64,
    pub num_minibatches: usize,
    pub update_epochs: usize,
    /// Normalize advantages per minibatch.
    pub norm_adv: bool,
    /// The surrogate clipping ε.
    pub clip_coef: f64,
    /// Anneal `clip_coef` linearly to 0 as well (rl-zoo3's `lin_0.2`).
    pub anneal_clip: bool,
    /// Clip the value loss with the same ε.
    pub clip_vloss: bool,
    pub ent_coef: f64,
    pub vf_coef: f64,
    pub max_grad_norm: f64,
    /// Stop an update's epochs early once the approximate KL exceeds this.
    pub target_kl: Option<f64>,
    pub adam_eps: f64,
    /// One trunk for policy and value instead of two networks.
    pub shared_trunk: bool,
    /// Initial log-std of a Gaussian policy (continuous actions).
    pub init_log_std: f64,
    /// Observation and reward normalization, saved with the model (`{ obs = true, reward = true }`).
    pub normalize: NormalizeConfig,
    pub net: NetConfig,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            learning_rate: 2.5e-4,
            anneal_lr: true,
            num_steps: 128,
            gamma: 0.99,
            gae_lambda: 0.95,
            num_minibatches: 4,
            update_epochs: 4,
            norm_adv: true,
            clip_coef: 0.2,
            anneal_clip: false,
            clip_vloss: true,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            target_kl: None,
            adam_eps: 1e-5,
            shared_trunk: false,
            init_log_std: 0.0,
            normalize: NormalizeConfig::default(),
            net: NetConfig::default(),
        }
    }
}

impl PpoConfig {
    fn validate(&self, num_envs: usize) -> Result<()> {
        check_range("ppo.learning_rate", self.learning_rate, 0.0, 1.0)?;
        check_range("ppo.gamma", self.gamma, 0.0, 1.0)?;
        check_range("ppo.gae_lambda", self.gae_lambda, 0.0, 1.0)?;
        check_range("ppo.clip_coef", self.clip_coef, 0.0, 10.0)?;
        check_range("ppo.max_grad_norm", self.max_grad_norm, 0.0, f64::MAX)?;
        check_positive("ppo.num_steps", self.num_steps)?;
        check_positive("ppo.update_epochs", self.update_epochs)?;
        check_positive("ppo.num_minibatches", self.num_minibatches)?;
        let batch = self.num_steps * num_envs;
        if !batch.is_multiple_of(self.num_minibatches) {
            return Err(config_err(format!(
                "ppo.num_minibatches = {} must divide the rollout size num_steps × num_envs = {batch}",
                self.num_minibatches
            )));
        }
        Ok(())
    }
}

/// A PPO agent.
pub struct Ppo {
    cfg: PpoConfig,
    core: OnPolicyCore,
    /// Adam alone; a parameter server in a cluster.
    updater: Updater,
    grads: Vec<f32>,
    /// Rollout indices, shuffled every epoch.
    order: Vec<usize>,
    mb: Minibatch,
}

/// One minibatch gathered contiguously from the rollout.
#[derive(Default)]
struct Minibatch {
    obs: Vec<f32>,
    actions: Vec<f32>,
    log_probs: Vec<f32>,
    advantages: Vec<f32>,
    returns: Vec<f32>,
    values: Vec<f32>,
}

impl Minibatch {
    fn gather(&mut self, core: &OnPolicyCore, rows: &[usize], norm_adv: bool) {
        let (od, ad) = (core.obs_dim, core.act_dim);
        self.obs.clear();
        self.actions.clear();
        self.log_probs.clear();
        self.advantages.clear();
        self.returns.clear();
        self.values.clear();
        for &k in rows {
            self.obs.extend_from_slice(&core.obs[k * od..(k + 1) * od]);
            self.actions.extend_from_slice(&core.actions[k * ad..(k + 1) * ad]);
            self.log_probs.push(core.log_probs[k]);
            self.advantages.push(core.advantages[k]);
            self.returns.push(core.returns[k]);
            self.values.push(core.values[k]);
        }
        if norm_adv {
            normalize_advantages(&mut self.advantages);
        }
    }
}

impl Ppo {
    pub fn new(config: &CommonConfig, cfg: &PpoConfig) -> Result<Self> {
        let cfg = cfg.clone();
        cfg.validate(config.env.num_envs)?;
        let core = OnPolicyCore::new(
            config,
            &cfg.net,
            "ppo",
            cfg.shared_trunk,
            cfg.init_log_std,
            cfg.num_steps,
            cfg.normalize,
            cfg.gamma,
        )?;
        let params = core.model.layout().len();
        Ok(Ppo {
            updater: Updater::Local(Box::new(Adam::new(params, 0.9, 0.999, cfg.adam_eps))),
            grads: vec![0.0; params],
            order: (0..cfg.num_steps * config.env.num_envs).collect(),
            mb: Minibatch::default(),
            cfg,
            core,
        })
    }

    /// A fresh Fisher–Yates permutation from the agent's RNG (so runs are reproducible and
    /// the permutation depends on nothing a checkpoint does not hold).
    fn shuffle(order: &mut [usize], rng: &mut impl Rng) {
        order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
    }
}

impl Agent for Ppo {
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        let cfg = &self.cfg;
        let remaining = 1.0 - progress;
        let lr = LrSchedule { learning_rate: cfg.learning_rate, anneal: cfg.anneal_lr }.at(progress);
        let clip = if cfg.anneal_clip { cfg.clip_coef * remaining } else { cfg.clip_coef };

        self.updater.sync(self.core.model.params_mut())?;
        self.core.collect(cfg.gamma, cfg.gae_lambda)?;

        let batch_size = self.order.len();
        let minibatch = batch_size / cfg.num_minibatches;
        let mut sums = [0.0f64; 6];
        let mut updates = 0.0;
        'epochs: for _ in 0..cfg.update_epochs {
            Self::shuffle(&mut self.order, &mut self.core.rng);
            for start in (0..batch_size).step_by(minibatch) {
                self.mb.gather(&self.core, &self.order[start..start + minibatch], cfg.norm_adv);
                let stats = self.core.model.loss_and_grad(Loss::PolicyGradient(PolicyGradientBatch {
                    obs: &self.mb.obs,
                    rows: minibatch,
                    actions: &self.mb.actions,
                    old_log_probs: &self.mb.log_probs,
                    advantages: &self.mb.advantages,
                    returns: &self.mb.returns,
                    old_values: &self.mb.values,
                    objective: PolicyObjective::Clipped { clip },
                    value_clip: cfg.clip_vloss.then_some(clip),
                    ent_coef: cfg.ent_coef,
                    vf_coef: cfg.vf_coef,
                }))?;
                self.grads.copy_from_slice(self.core.model.grads());
                let grad_norm = clip_grad_norm(&mut self.grads, cfg.max_grad_norm);
                self.updater.step(self.core.model.params_mut(), &self.grads, lr as f32)?;
                for (s, v) in sums.iter_mut().zip([
                    stats.policy,
                    stats.value,
                    stats.entropy,
                    stats.approx_kl,
                    stats.clip_fraction,
                    grad_norm,
                ]) {
                    *s += v;
                }
                updates += 1.0;
                if cfg.target_kl.is_some_and(|kl| stats.approx_kl > kl) {
                    break 'epochs;
                }
            }
        }
        let [policy, value, entropy, kl, clipfrac, grad_norm] = sums.map(|s| s / updates);
        let mut metrics = vec![
            ("loss/policy", policy),
            ("loss/value", value),
            ("loss/entropy", entropy),
            ("loss/approx_kl", kl),
            ("loss/clipfrac", clipfrac),
            ("loss/explained_variance", self.core.explained_variance()),
            ("loss/grad_norm", grad_norm),
            ("charts/learning_rate", lr),
        ];
        metrics.extend(self.updater.metrics());
        Ok(metrics)
    }

    crate::on_policy::forward_to_core!();
}
