//! The `[apex]` section and what an Ape-X run is built from: the learner's algorithm
//! (`apex.learner`) with its own section.

use serde::{Deserialize, Serialize};
use shoal_nn::TdLoss;

use crate::agent::LrSchedule;
use crate::checks::{check_positive, check_range};
use crate::config::{NetConfig, Precision};
use crate::dqn::td_loss;
use crate::error::{config_err, Result};
use crate::sac::SacConfig;
use crate::td3::Td3Config;

/// Ape-X hyperparameters. The paper's values where CartPole allows (ε = 0.4, α = 7 for the
/// actors' exploration, priority exponent 0.6, β from 0.4); the learner's DQN settings are
/// `cartpole-dqn.toml`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApexConfig {
    /// The learner's algorithm: `"dqn"` (the paper's), or `"sac"` / `"td3"` (its DPG variant,
    /// with the hyperparameters of the `[sac]` / `[td3]` section; then the DQN keys below —
    /// learning rate, loss, network, target period, buffer and batch sizes, γ,
    /// `learning_starts` — come from that section instead).
    pub learner: LearnerKind,
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over `stop.env_steps`.
    pub anneal_lr: bool,
    /// Replay capacity in transitions.
    pub buffer_size: usize,
    pub gamma: f64,
    pub n_step: usize,
    pub batch_size: usize,
    /// Priority exponent α: sampling ∝ pᵅ (0 = uniform).
    pub priority_alpha: f64,
    /// Importance-weight exponent β at the start, annealed linearly to 1 over the run.
    pub priority_beta: f64,
    /// Base exploration ε and exponent α of the actors' `εᵢ = ε^(1 + α·i/(N−1))`.
    pub epsilon: f64,
    pub epsilon_alpha: f64,
    /// Learner updates between two copies of the online network into the target network.
    pub target_network_frequency: u64,
    /// Replay size at which the learner starts.
    pub learning_starts: usize,
    /// Transitions an actor gathers before inserting them (one call).
    pub actor_batch: usize,
    /// Env steps (per env) an actor takes between two parameter pulls.
    pub actor_pull_every: u64,
    /// Vector-env steps each actor takes per training iteration (embedded) or per report.
    pub actor_steps: u64,
    /// The arithmetic actors act in: `"int8"` quantizes each pull of the DQN learner's
    /// parameters (`shoal_nn::quant`) while the learner stays f32 (ActorQ, Lam et al.).
    pub actor_precision: Precision,
    /// Learner updates between two parameter publishes.
    pub publish_every: u64,
    /// Rows sampled per row inserted (update-to-data ratio × batch size), enforced on both
    /// sides: the learner waits for data, actors wait for the learner once they are more than
    /// `rate_limit_buffer` rows ahead (DeepMind Reverb's SampleToInsertRatio).
    pub samples_per_insert: f64,
    pub rate_limit_buffer: usize,
    /// `"mse"` or `"huber"`.
    pub loss: String,
    pub max_grad_norm: f64,
    pub adam_eps: f64,
    pub dueling: bool,
    /// Save the replay with checkpoints, so a resumed run does not start with an empty one.
    pub checkpoint_replay: bool,
    pub net: NetConfig,
}

impl Default for ApexConfig {
    fn default() -> Self {
        ApexConfig {
            learner: LearnerKind::Dqn,
            learning_rate: 1e-3,
            anneal_lr: false,
            buffer_size: 100_000,
            gamma: 0.98,
            n_step: 3,
            batch_size: 128,
            priority_alpha: 0.6,
            priority_beta: 0.4,
            epsilon: 0.4,
            epsilon_alpha: 7.0,
            target_network_frequency: 250,
            learning_starts: 1000,
            actor_batch: 64,
            actor_pull_every: 100,
            actor_steps: 250,
            publish_every: 10,
            samples_per_insert: 32.0,
            rate_limit_buffer: 2000,
            loss: "huber".into(),
            max_grad_norm: 10.0,
            adam_eps: 1e-8,
            dueling: false,
            actor_precision: Precision::F32,
            checkpoint_replay: false,
            net: NetConfig { hidden: vec![64, 64], activation: "relu".into(), ..NetConfig::default() },
        }
    }
}

impl ApexConfig {
    pub(crate) fn validate(&self) -> Result<TdLoss> {
        check_range("apex.learning_rate", self.learning_rate, 0.0, 1.0)?;
        check_range("apex.gamma", self.gamma, 0.0, 1.0)?;
        check_range("apex.priority_alpha", self.priority_alpha, 0.0, 1.0)?;
        check_range("apex.priority_beta", self.priority_beta, 0.0, 1.0)?;
        check_range("apex.epsilon", self.epsilon, 0.0, 1.0)?;
        check_range("apex.epsilon_alpha", self.epsilon_alpha, 0.0, 1e3)?;
        check_range("apex.samples_per_insert", self.samples_per_insert, 1e-3, 1e6)?;
        for (key, value) in [
            ("apex.buffer_size", self.buffer_size),
            ("apex.n_step", self.n_step),
            ("apex.batch_size", self.batch_size),
            ("apex.learning_starts", self.learning_starts),
            ("apex.actor_batch", self.actor_batch),
            ("apex.actor_pull_every", self.actor_pull_every as usize),
            ("apex.actor_steps", self.actor_steps as usize),
            ("apex.publish_every", self.publish_every as usize),
            ("apex.target_network_frequency", self.target_network_frequency as usize),
        ] {
            check_positive(key, value)?;
        }
        td_loss("apex.loss", &self.loss)
    }

    /// Actor `i` of `n`'s exploration rate, `ε^(1 + α·i/(n−1))` (ε itself for one actor).
    pub fn actor_epsilon(&self, i: usize, n: usize) -> f64 {
        if n <= 1 {
            return self.epsilon;
        }
        self.epsilon.powf(1.0 + self.epsilon_alpha * i as f64 / (n - 1) as f64)
    }

    /// β at `progress` ∈ [0, 1] of the run.
    pub fn beta(&self, progress: f64) -> f64 {
        self.priority_beta + (1.0 - self.priority_beta) * progress.clamp(0.0, 1.0)
    }

    pub(crate) fn lr(&self) -> LrSchedule {
        LrSchedule { learning_rate: self.learning_rate, anneal: self.anneal_lr }
    }
}

/// Which algorithm an Ape-X learner runs (`apex.learner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LearnerKind {
    #[default]
    Dqn,
    Sac,
    Td3,
}

impl LearnerKind {
    pub fn name(self) -> &'static str {
        match self {
            LearnerKind::Dqn => "dqn",
            LearnerKind::Sac => "sac",
            LearnerKind::Td3 => "td3",
        }
    }
}

/// The learner's algorithm with its hyperparameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ApexLearner {
    /// The `[apex]` section's own DQN keys.
    Dqn,
    Sac(SacConfig),
    Td3(Td3Config),
}

/// Everything an Ape-X run's roles are built from: the `[apex]` section and the learner's.
#[derive(Debug, Clone, PartialEq)]
pub struct ApexSetup {
    pub apex: ApexConfig,
    pub learner: ApexLearner,
}

impl ApexSetup {
    /// The setup of `apex.learner` with its section (`sac`, `td3`: given or default); an
    /// error names a DQN key set for another learner, or a section of the wrong learner.
    pub fn new(apex: &ApexConfig, sac: Option<&SacConfig>, td3: Option<&Td3Config>) -> Result<Self> {
        let kind = apex.learner;
        let stray = match kind {
            LearnerKind::Dqn => sac.map(|_| "sac").or(td3.map(|_| "td3")),
            LearnerKind::Sac => td3.map(|_| "td3"),
            LearnerKind::Td3 => sac.map(|_| "sac"),
        };
        if let Some(section) = stray {
            return Err(config_err(format!(
                "section [{section}] is given but apex.learner = \"{}\"; set apex.learner = \"{section}\" or remove the section",
                kind.name()
            )));
        }
        let learner = match kind {
            LearnerKind::Dqn => ApexLearner::Dqn,
            LearnerKind::Sac => ApexLearner::Sac(sac.cloned().unwrap_or_default()),
            LearnerKind::Td3 => ApexLearner::Td3(td3.cloned().unwrap_or_default()),
        };
        if kind != LearnerKind::Dqn {
            apex.check_dqn_keys_unset(kind.name())?;
        }
        Ok(ApexSetup { apex: apex.clone(), learner })
    }

    /// The n-step returns' discount.
    pub fn gamma(&self) -> f64 {
        match &self.learner {
            ApexLearner::Dqn => self.apex.gamma,
            ApexLearner::Sac(c) => c.gamma,
            ApexLearner::Td3(c) => c.gamma,
        }
    }

    pub fn buffer_size(&self) -> usize {
        match &self.learner {
            ApexLearner::Dqn => self.apex.buffer_size,
            ApexLearner::Sac(c) => c.buffer_size,
            ApexLearner::Td3(c) => c.buffer_size,
        }
    }

    pub fn batch_size(&self) -> usize {
        match &self.learner {
            ApexLearner::Dqn => self.apex.batch_size,
            ApexLearner::Sac(c) => c.batch_size,
            ApexLearner::Td3(c) => c.batch_size,
        }
    }

    /// Replay size at which the learner starts.
    pub fn learning_starts(&self) -> usize {
        match &self.learner {
            ApexLearner::Dqn => self.apex.learning_starts,
            ApexLearner::Sac(c) => c.learning_starts as usize,
            ApexLearner::Td3(c) => c.learning_starts as usize,
        }
    }
}

impl ApexConfig {
    /// With a SAC or TD3 learner, the `[apex]` keys of the DQN learner must keep their
    /// defaults: a value set there would silently do nothing.
    fn check_dqn_keys_unset(&self, learner: &str) -> Result<()> {
        let d = ApexConfig::default();
        let changed = [
            ("learning_rate", self.learning_rate != d.learning_rate),
            ("anneal_lr", self.anneal_lr != d.anneal_lr),
            ("buffer_size", self.buffer_size != d.buffer_size),
            ("gamma", self.gamma != d.gamma),
            ("batch_size", self.batch_size != d.batch_size),
            ("target_network_frequency", self.target_network_frequency != d.target_network_frequency),
            ("learning_starts", self.learning_starts != d.learning_starts),
            ("loss", self.loss != d.loss),
            ("max_grad_norm", self.max_grad_norm != d.max_grad_norm),
            ("adam_eps", self.adam_eps != d.adam_eps),
            ("dueling", self.dueling != d.dueling),
            ("actor_precision", self.actor_precision != d.actor_precision),
            ("net", self.net != d.net),
        ];
        match changed.iter().find(|(_, changed)| *changed) {
            Some((key, _)) => Err(config_err(format!(
                "apex.{key} is the DQN learner's; with apex.learner = \"{learner}\" the learner's settings come from [{learner}]: remove apex.{key}"
            ))),
            None => Ok(()),
        }
    }
}
