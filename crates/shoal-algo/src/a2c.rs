//! Advantage Actor-Critic (Mnih et al., 2016), synchronous: every `num_steps` steps of all envs
//! make one gradient step on `−E[A·log π(a|s)] − c_ent·H[π] + c_vf·½·E[(V−R)²]` with RMSProp,
//! as Stable-Baselines3's A2C (GAE with λ = 1 is the plain n-step return).

use serde::{Deserialize, Serialize};
use shoal_nn::{clip_grad_norm, Model, RmsProp};

use crate::agent::{Agent, LrSchedule};
use crate::checks::{check_positive, check_range};
use crate::config::{CommonConfig, NetConfig};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::normalize::NormalizeConfig;
use crate::on_policy::OnPolicyCore;
use crate::updater::Updater;

/// A2C hyperparameters (Stable-Baselines3's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct A2cConfig {
    pub learning_rate: f64,
    pub anneal_lr: bool,
    pub num_steps: usize,
    pub gamma: f64,
    pub gae_lambda: f64,
    pub ent_coef: f64,
    pub vf_coef: f64,
    pub max_grad_norm: f64,
    pub norm_adv: bool,
    /// RMSProp smoothing and epsilon (SB3: 0.99, 1e-5).
    pub rms_alpha: f64,
    pub rms_eps: f64,
    pub shared_trunk: bool,
    pub init_log_std: f64,
    /// Observation and reward normalization, saved with the model (`{ obs = true, reward = true }`).
    pub normalize: NormalizeConfig,
    pub net: NetConfig,
}

impl Default for A2cConfig {
    fn default() -> Self {
        A2cConfig {
            learning_rate: 7e-4,
            anneal_lr: false,
            num_steps: 5,
            gamma: 0.99,
            gae_lambda: 1.0,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            norm_adv: false,
            rms_alpha: 0.99,
            rms_eps: 1e-5,
            shared_trunk: false,
            init_log_std: 0.0,
            normalize: NormalizeConfig::default(),
            net: NetConfig::default(),
        }
    }
}

/// An A2C agent.
pub struct A2c {
    cfg: A2cConfig,
    core: OnPolicyCore,
    /// RMSProp alone; a parameter server in a cluster (A3C: asynchronous).
    updater: Updater,
    grads: Vec<f32>,
}

impl A2c {
    /// An A2C agent with the hyperparameters of section `[name]`: `a2c`, or `a3c` (A3C runs
    /// this same agent in an asynchronous cluster).
    pub fn new(config: &CommonConfig, cfg: &A2cConfig, name: &str) -> Result<Self> {
        let cfg = cfg.clone();
        check_range(&format!("{name}.learning_rate"), cfg.learning_rate, 0.0, 1.0)?;
        check_range(&format!("{name}.gamma"), cfg.gamma, 0.0, 1.0)?;
        check_range(&format!("{name}.gae_lambda"), cfg.gae_lambda, 0.0, 1.0)?;
        check_range(&format!("{name}.rms_alpha"), cfg.rms_alpha, 0.0, 1.0)?;
        check_positive(&format!("{name}.num_steps"), cfg.num_steps)?;
        let core = OnPolicyCore::new(
            config,
            &cfg.net,
            name,
            cfg.shared_trunk,
            cfg.init_log_std,
            cfg.num_steps,
            cfg.normalize,
            cfg.gamma,
        )?;
        let params = core.model.layout().len();
        Ok(A2c {
            updater: Updater::Local(Box::new(RmsProp::new(params, cfg.rms_alpha, cfg.rms_eps, false, 0.0))),
            grads: vec![0.0; params],
            cfg,
            core,
        })
    }
}

impl Agent for A2c {
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        let cfg = &self.cfg;
        let lr = LrSchedule { learning_rate: cfg.learning_rate, anneal: cfg.anneal_lr }.at(progress);
        self.updater.sync(self.core.model.params_mut())?;
        self.core.collect(cfg.gamma, cfg.gae_lambda)?;
        let stats = self.core.vanilla_gradient(cfg.norm_adv, cfg.ent_coef, cfg.vf_coef)?;
        self.grads.copy_from_slice(self.core.model.grads());
        let grad_norm = clip_grad_norm(&mut self.grads, cfg.max_grad_norm);
        self.updater.step(self.core.model.params_mut(), &self.grads, lr as f32)?;
        let mut metrics = vec![
            ("loss/policy", stats.policy),
            ("loss/value", stats.value),
            ("loss/entropy", stats.entropy),
            ("loss/explained_variance", self.core.explained_variance()),
            ("loss/grad_norm", grad_norm),
            ("charts/learning_rate", lr),
        ];
        metrics.extend(self.updater.metrics());
        Ok(metrics)
    }

    crate::on_policy::forward_to_core!();
}
