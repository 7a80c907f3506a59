//! The `[impala]` section.

use serde::{Deserialize, Serialize};

use crate::agent::LrSchedule;
use crate::checks::{check_positive, check_range};
use crate::config::NetConfig;
use crate::error::Result;
use crate::vtrace::Clips;

/// IMPALA hyperparameters: the paper's V-trace truncation (ρ̄ = c̄ = 1), baseline and entropy
/// costs as RLlib's IMPALA (0.5, 0.01), Adam as RLlib's default optimizer (the paper used
/// RMSProp), and actor/learner sizes for CartPole on two cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImpalaConfig {
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over `stop.env_steps`.
    pub anneal_lr: bool,
    /// Steps per env in one trajectory fragment (the paper's unroll length n).
    pub unroll_length: usize,
    /// Fragments (each `env.num_envs × unroll_length` rows) per learner batch.
    pub batch_fragments: usize,
    pub gamma: f64,
    /// V-trace truncation: ρ̄ for the value targets, c̄ for the trace, ρ̄_pg for the policy
    /// gradient's importance weight.
    pub rho_bar: f64,
    pub c_bar: f64,
    pub pg_rho_bar: f64,
    /// The trace's λ (`c_t = λ·min(c̄, π/μ)`): 1 is the paper's V-trace, lower trades
    /// variance for bias as GAE's λ does.
    pub lambda: f64,
    pub vf_coef: f64,
    pub ent_coef: f64,
    /// Normalize each batch's policy-gradient advantages to mean 0, std 1 (as CleanRL's PPO;
    /// the paper does not).
    pub norm_adv: bool,
    pub max_grad_norm: f64,
    pub adam_eps: f64,
    /// The trajectory queue's capacity in fragments; when the learner falls behind, actors
    /// wait for room (and the oldest fragments are dropped after a second).
    pub queue_fragments: usize,
    /// Fragments each actor collects per training iteration (embedded) or per report.
    pub actor_fragments: usize,
    /// Learner updates between two parameter publishes.
    pub publish_every: u64,
    pub shared_trunk: bool,
    pub init_log_std: f64,
    pub net: NetConfig,
}

impl Default for ImpalaConfig {
    fn default() -> Self {
        ImpalaConfig {
            learning_rate: 1e-3,
            anneal_lr: false,
            unroll_length: 32,
            batch_fragments: 2,
            gamma: 0.99,
            rho_bar: 1.0,
            c_bar: 1.0,
            pg_rho_bar: 1.0,
            lambda: 1.0,
            vf_coef: 0.5,
            ent_coef: 0.01,
            norm_adv: false,
            max_grad_norm: 40.0,
            adam_eps: 1e-8,
            queue_fragments: 8,
            actor_fragments: 4,
            publish_every: 1,
            shared_trunk: false,
            init_log_std: 0.0,
            net: NetConfig { hidden: vec![64, 64], activation: "tanh".into(), ..NetConfig::default() },
        }
    }
}

impl ImpalaConfig {
    /// Every key in range, the queue large enough for a batch.
    pub fn validate(&self) -> Result<()> {
        check_range("impala.learning_rate", self.learning_rate, 0.0, 1.0)?;
        check_range("impala.gamma", self.gamma, 0.0, 1.0)?;
        check_range("impala.lambda", self.lambda, 0.0, 1.0)?;
        for (key, value) in
            [("impala.rho_bar", self.rho_bar), ("impala.c_bar", self.c_bar), ("impala.pg_rho_bar", self.pg_rho_bar)]
        {
            check_range(key, value, 1e-6, 1e6)?;
        }
        check_range("impala.vf_coef", self.vf_coef, 0.0, 1e6)?;
        check_range("impala.ent_coef", self.ent_coef, 0.0, 1e6)?;
        for (key, value) in [
            ("impala.unroll_length", self.unroll_length),
            ("impala.batch_fragments", self.batch_fragments),
            ("impala.queue_fragments", self.queue_fragments),
            ("impala.actor_fragments", self.actor_fragments),
            ("impala.publish_every", self.publish_every as usize),
        ] {
            check_positive(key, value)?;
        }
        if self.queue_fragments < self.batch_fragments {
            return Err(crate::error::config_err(format!(
                "impala.queue_fragments = {} cannot hold one batch of impala.batch_fragments = {}; raise queue_fragments",
                self.queue_fragments, self.batch_fragments
            )));
        }
        Ok(())
    }

    pub(crate) fn clips(&self) -> Clips {
        Clips { rho: self.rho_bar, c: self.c_bar, pg_rho: self.pg_rho_bar, lambda: self.lambda }
    }

    pub(crate) fn lr(&self) -> LrSchedule {
        LrSchedule { learning_rate: self.learning_rate, anneal: self.anneal_lr }
    }
}
